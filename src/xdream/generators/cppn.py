"""A compositional pattern-producing network (CPPN) whose weights are the code."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from xdream.generators import register
from xdream.generators.base import Generator
from xdream.types import Images


def _gauss(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-x * x)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin,
    "tanh": torch.tanh,
    "gauss": _gauss,
}
"""Hidden-layer activations by name: ``sin`` (repetition), ``tanh`` (sigmoidal edges) and
``gauss`` = ``exp(-x**2)`` (symmetry), the pattern-producing functions of Stanley (2007)."""


@dataclass(frozen=True)
class CPPNParams:
    """Hyperparameters of :class:`CPPNGenerator`.

    Attributes:
        size: Output height and width in pixels.
        hidden: Widths of the hidden layers; with the default (16, 16, 16) the code has 659
            entries.
        activations: One activation name per hidden layer: ``sin``, ``tanh`` or ``gauss``
            (``exp(-x**2)``).
        input_scale: Pixel coordinates ``x, y`` run over ``[-input_scale, input_scale]``; larger
            values give busier patterns.
        weight_gain: Hidden-layer weights are ``code * weight_gain / sqrt(fan_in)``; gains above
            1 push units into the curved part of their activations (more intricate shapes).
        output_gain: The same for the output layer; larger values give more contrast and more
            saturated colours. Biases are the code entries themselves (N(0, 1) for N(0, 1)
            codes). The defaults (3, 2, 2) were chosen by eye: smooth shapes, neither flat nor
            busy.
    """

    size: int = 128
    hidden: tuple[int, ...] = (16, 16, 16)
    activations: tuple[str, ...] = ("sin", "tanh", "gauss")
    input_scale: float = 3.0
    weight_gain: float = 2.0
    output_gain: float = 2.0

    def __post_init__(self) -> None:
        # Configs give lists; store tuples so the dataclass stays hashable and immutable.
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "activations", tuple(self.activations))
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"size must be a positive integer (pixels), got {self.size!r}")
        widths_ok = all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in self.hidden
        )
        if not self.hidden or not widths_ok:
            raise ValueError(
                f"hidden must be a non-empty list of positive layer widths, got {self.hidden!r}"
            )
        if len(self.activations) != len(self.hidden):
            raise ValueError(
                f"activations must name one activation per hidden layer ({len(self.hidden)}), "
                f"got {len(self.activations)}: {self.activations!r}"
            )
        for act in self.activations:
            if act not in ACTIVATIONS:
                raise ValueError(
                    f"unknown activation {act!r}; expected one of {', '.join(ACTIVATIONS)}"
                )
        for key in ("input_scale", "weight_gain", "output_gain"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{key} must be a finite number > 0, got {value!r}")


@register
class CPPNGenerator(Generator[CPPNParams]):
    """Smooth abstract patterns: a small per-pixel network whose weights are the code.

    A CPPN (Stanley 2007, "Compositional pattern producing networks"; used as an image
    parameterisation by Mordvintsev et al. 2018, Distill) maps each pixel's coordinates
    ``(x, y, r = sqrt(x**2 + y**2))`` through fully connected layers with the activations of
    ``activations`` to three sigmoid outputs (RGB). The code is every layer's weight matrix
    ``(fan_out, fan_in)`` (row-major) followed by its bias, layer by layer; weights are scaled by
    ``gain / sqrt(fan_in)`` inside :meth:`forward`, so N(0, 1) codes give smooth patterns on the
    scale of the image instead of noise. A batch of codes is a batch of networks, evaluated
    together with ``bmm``.

    >>> import numpy as np
    >>> from xdream.generators import make
    >>> gen = make("cppn", size=32, hidden=[8, 8], activations=["sin", "tanh"])
    >>> gen.code_dim, gen.output_size
    (131, (32, 32))
    >>> tuple(gen.generate(gen.initial_codes(2, np.random.default_rng(0))).shape)
    (2, 3, 32, 32)
    """

    name = "cppn"
    Params = CPPNParams
    same_image_params = frozenset({"size"})  # the same picture at another resolution

    coords: torch.Tensor

    def __init__(self, params: CPPNParams) -> None:
        super().__init__(params)
        size = params.size
        self.output_size = (size, size)
        widths = (3, *params.hidden, 3)
        self._layers = list(itertools.pairwise(widths))  # (fan_in, fan_out) per layer
        self.code_dim = sum(fan_out * (fan_in + 1) for fan_in, fan_out in self._layers)

        # Pixel centres on [-input_scale, input_scale]: (size*size, 3) inputs x, y, r.
        t = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
        y, x = torch.meshgrid(t, t, indexing="ij")
        xyr = torch.stack([x, y, torch.sqrt(x * x + y * y)], dim=-1).reshape(-1, 3)
        self.register_buffer("coords", (xyr * params.input_scale).float())

    def forward(self, codes: torch.Tensor) -> Images:
        """Render codes ``(n, code_dim)`` as images ``(n, 3, size, size)`` in [0, 1]."""
        n, p = codes.shape[0], self.params
        codes = codes.to(self.coords.dtype).reshape(n, self.code_dim)
        acts = [ACTIVATIONS[a] for a in p.activations] + [torch.sigmoid]
        gains = [p.weight_gain] * len(p.hidden) + [p.output_gain]
        h = self.coords.expand(n, -1, -1)  # (n, pixels, 3)
        start = 0
        for (fan_in, fan_out), act, gain in zip(self._layers, acts, gains):
            stop = start + fan_out * fan_in
            w = codes[:, start:stop].reshape(n, fan_out, fan_in) * (gain / math.sqrt(fan_in))
            b = codes[:, stop : stop + fan_out].unsqueeze(1)
            start = stop + fan_out
            h = act(torch.baddbmm(b, h, w.transpose(1, 2)))  # (n, pixels, fan_out)
        return h.transpose(1, 2).reshape(n, 3, *self.output_size)
