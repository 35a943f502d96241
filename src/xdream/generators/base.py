"""The generator role: a code ``(n, code_dim)`` becomes an RGB image ``(n, 3, H, W)`` in [0, 1]."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np
import torch

from xdream.errors import XDreamError
from xdream.generators.spectrum import CodeSpectrum
from xdream.types import Codes, Images


class Generator(torch.nn.Module, abc.ABC):
    """Base class for image generators.

    Subclasses set ``name``, ``Params`` (a frozen dataclass), ``code_dim`` and ``output_size`` and
    implement :meth:`forward` on a float tensor. Generators are differentiable unless they say
    otherwise (``differentiable = False``), so codes can be fitted to images by gradient descent.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[Any]]
    differentiable: ClassVar[bool] = True
    custom_initial_codes: bool = False
    """True when :meth:`initial_codes` is not plain N(0, 1): experiments built from a config then
    seed the optimiser with it."""
    same_image_params: ClassVar[frozenset[str]] = frozenset()
    """Parameters that do not change the picture a code draws (only its resolution, how a search
    starts, or which file holds the weights): codes encoded under other values of them still fit
    (:func:`xdream.encode.load_codes` compares the others with the codes' own)."""

    def __init__(self, params: Any) -> None:
        super().__init__()
        self.params = params
        self.code_dim: int = 0
        self.output_size: tuple[int, int] = (0, 0)

    @abc.abstractmethod
    def forward(self, codes: torch.Tensor) -> Images:
        """Map a float tensor ``(n, code_dim)`` to images ``(n, 3, H, W)`` in [0, 1]."""

    @property
    def device(self) -> torch.device:
        """Device of the generator's parameters and buffers (CPU when it has none)."""
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def code_spectrum(self) -> CodeSpectrum | None:
        """The spatial frequency of each direction of the code space, for optimisers that take
        larger steps along coarse directions (:mod:`xdream.generators.spectrum`); ``None``
        (the default) when the code space has no such known structure."""
        return None

    def code_bounds(self) -> tuple[Codes | None, Codes | None]:
        """Per-entry ``(lower, upper)`` bounds, ``(code_dim,)`` arrays or ``None`` (unbounded on
        that side), that :meth:`forward` clamps codes to; :func:`xdream.encode.encode` keeps
        the codes it fits within them. Unbounded by default."""
        return None, None

    def initial_codes(self, n: int, rng: np.random.Generator) -> Codes:
        """``n`` codes to start a search from; N(0, 1) unless a generator knows better."""
        return rng.standard_normal((n, self.code_dim)).astype(np.float32)

    @torch.inference_mode()
    def generate(self, codes: Codes | torch.Tensor, batch_size: int = 64) -> Images:
        """Render codes (numpy or tensor) in batches, without gradients; returns CPU images."""
        codes_t = (
            torch.as_tensor(np.asarray(codes, dtype=np.float32))
            if not isinstance(codes, torch.Tensor)
            else codes.float()
        )
        if codes_t.ndim != 2 or codes_t.shape[1] != self.code_dim:
            raise XDreamError(
                f"generator {self.name!r} expects codes of shape (n, {self.code_dim}), "
                f"got {tuple(codes_t.shape)}"
            )
        if not torch.isfinite(codes_t).all():
            raise XDreamError("codes contain NaN or inf; codes must be finite numbers")
        out = [self(chunk.to(self.device)).float().cpu() for chunk in codes_t.split(batch_size)]
        if len(out) == 1 and not _same_memory(out[0], codes_t):
            return out[0]  # rendered into memory of its own: no copy needed
        return torch.cat(out) if out else torch.zeros(0, 3, *self.output_size)


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
