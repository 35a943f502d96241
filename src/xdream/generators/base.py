"""The generator role: a code ``(n, code_dim)`` becomes an RGB image ``(n, 3, H, W)`` in [0, 1]."""

from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from xdream.errors import XDreamError
from xdream.generators.spectrum import CodeSpectrum
from xdream.types import Codes, Images

IMAGE_TOLERANCE = 1e-3
"""How far outside [0, 1] an image's values may lie (rounding in a resize or in half precision)
before :func:`check_image_values` refuses them."""


def check_images(images: Any, what: str = "images") -> torch.Tensor:
    """``images`` when they are what a scorer takes: a ``(n, 3, H, W)`` tensor of float RGB
    values in [0, 1] (:func:`check_image_values`); otherwise one :class:`XDreamError` saying
    what was given and how to make it so."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise XDreamError(f"{what} must be a (n, 3, H, W) tensor, got {_shape_of(images)}")
    check_image_values(images, what)
    return images


def check_ids(ids: Any, n: int) -> None:
    """Raise :class:`XDreamError` unless ``ids`` is a list of ``n`` ids, one per image."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise XDreamError(
            f"ids must be a list of {n} strings, one per image, got {type(ids).__name__}"
        )
    if len(ids) != n:
        raise XDreamError(f"got {n} images but {len(ids)} ids")


def _shape_of(images: Any) -> str:
    """What ``images`` are, for a message, with the usual fix."""
    shape = getattr(images, "shape", None)
    if not isinstance(images, torch.Tensor):
        kind = f"{type(images).__module__}.{type(images).__name__}".removeprefix("builtins.")
        if shape is None:
            return f"a {kind}"
        fix = " (convert it with torch.from_numpy)" if isinstance(images, np.ndarray) else ""
        return f"a {kind} of shape {tuple(shape)}{fix}"
    shape = tuple(images.shape)
    if images.ndim == 3 and shape[0] == 3:
        return f"{shape}: one image (add the batch dimension: images[None])"
    if images.ndim == 4 and shape[3] == 3:
        return f"{shape}: channels last (make them channels first: images.permute(0, 3, 1, 2))"
    if images.ndim == 4 and shape[1] == 1:
        return f"{shape}: grey images (repeat the channel: images.expand(-1, 3, -1, -1))"
    return str(shape)


def check_image_values(images: torch.Tensor, what: str = "images") -> None:
    """Raise :class:`XDreamError` unless ``images`` hold floats in [0, 1] (within
    :data:`IMAGE_TOLERANCE`): not uint8 (0..255), not 0..255 floats, not NaN or inf. It costs
    one pass for the minimum and maximum."""
    if images.numel() == 0:
        return
    expected = f"{what} must be float RGB in [0, 1], got"
    if not images.is_floating_point():
        top = images.max().item() if images.dtype != torch.bool else 1
        dtype = str(images.dtype).removeprefix("torch.")
        fix = "divide by 255: images.float() / 255" if top > 1 else "convert: images.float()"
        raise XDreamError(f"{expected} {dtype} with values up to {top} ({fix})")
    low, high = (float(v) for v in torch.aminmax(images.detach()))
    if low >= -IMAGE_TOLERANCE and high <= 1 + IMAGE_TOLERANCE:
        return
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(images.detach())).flatten(1).any(1).sum())
        raise XDreamError(
            f"{expected} NaN or inf values in {bad} of {len(images)} images "
            "(a failed load or a generator's overflow)"
        )
    if high > 2 and low >= -IMAGE_TOLERANCE:
        fix = "divide by 255"
    elif low >= -1 - IMAGE_TOLERANCE and high <= 1 + IMAGE_TOLERANCE:
        fix = "map [-1, 1] to [0, 1]: (images + 1) / 2"
    else:
        fix = "clamp or rescale them into [0, 1]"
    raise XDreamError(f"{expected} values from {low:.4g} to {high:.4g} ({fix})")


P = TypeVar("P")
"""The hyperparameter dataclass of a generator (``Generator[FourierParams]``)."""


class Generator(torch.nn.Module, abc.ABC, Generic[P]):
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

    def __init__(self, params: P) -> None:
        super().__init__()
        self.params: P = params
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
        """Render codes (numpy or tensor) in batches, without gradients; returns CPU images.

        What :meth:`forward` returns is checked: ``(n, 3, H, W)`` at :attr:`output_size`, float
        RGB in [0, 1] (:func:`check_image_values`); anything else is one :class:`XDreamError`
        naming the generator."""
        if isinstance(codes, torch.Tensor):
            codes_t = codes.float()
        else:
            try:
                codes_t = torch.as_tensor(np.asarray(codes, dtype=np.float32))
            except (TypeError, ValueError):
                raise XDreamError(
                    f"generator {self.name!r} expects codes of shape (n, {self.code_dim}): "
                    f"numbers, got {type(codes).__name__} {str(codes)[:40]!r}"
                ) from None
        if codes_t.ndim != 2 or codes_t.shape[1] != self.code_dim:
            raise XDreamError(
                f"generator {self.name!r} expects codes of shape (n, {self.code_dim}), "
                f"got {tuple(codes_t.shape)}"
            )
        if not torch.isfinite(codes_t).all():
            raise XDreamError("codes contain NaN or inf; codes must be finite numbers")
        out = [
            self._checked(self(chunk.to(self.device)), len(chunk)).float().cpu()
            for chunk in codes_t.split(batch_size)
        ]
        if len(out) == 1 and not _same_memory(out[0], codes_t):
            return out[0]  # rendered into memory of its own: no copy needed
        return torch.cat(out) if out else torch.zeros(0, 3, *self.output_size)

    def _checked(self, images: Any, n: int) -> torch.Tensor:
        """``images`` that :meth:`forward` returned for ``n`` codes, refused with one line
        naming the generator unless ``(n, 3, H, W)`` at :attr:`output_size`, floats in [0, 1]."""
        expected = (n, 3, *self.output_size)
        if not isinstance(images, torch.Tensor) or tuple(images.shape) != expected:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else _shape_of(images)
            raise XDreamError(
                f"generator {self.name!r} returned images of shape {got}; a generator returns "
                f"(n, 3, H, W) = {expected} (n codes, RGB, its output_size)"
            )
        check_image_values(images, f"the images of generator {self.name!r}")
        return images


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
