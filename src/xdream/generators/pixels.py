"""Raw pixels: a low-resolution RGB image, squashed to [0, 1] and upsampled bilinearly."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xdream.generators import register
from xdream.generators.base import Generator
from xdream.generators.spectrum import CodeSpectrum
from xdream.types import Images


@dataclass(frozen=True)
class PixelsParams:
    """Hyperparameters of :class:`PixelsGenerator`.

    Attributes:
        size: Output height and width in pixels.
        code_size: Height and width of the low-resolution image that is the code; the code has
            ``3 * code_size**2`` entries (16 -> 768).
    """

    size: int = 128
    code_size: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"size must be a positive integer (pixels), got {self.size!r}")
        if (
            not isinstance(self.code_size, int)
            or isinstance(self.code_size, bool)
            or not 1 <= self.code_size <= self.size
        ):
            raise ValueError(
                f"code_size must be an integer between 1 and size={self.size}, "
                f"got {self.code_size!r}"
            )


@register
class PixelsGenerator(Generator[PixelsParams]):
    """A code is a low-resolution image: ``sigmoid(code)`` upsampled bilinearly to ``size``.

    The simplest code space, the baseline against which Xiao & Kreiman (2020) compare the
    generative network ("raw pixels"). A code is laid out channel-major, ``(3, code_size,
    code_size)`` flattened, with one logit per low-resolution pixel. The sigmoid (rather than a
    clamp) keeps every code valid and every pixel differentiable; an N(0, 1) code gives an image
    centred on mid-grey (mean 0.5, standard deviation about 0.21), and ``logit(v)`` encodes the
    value ``v``. Upsampling uses ``align_corners=False``, so a constant code gives a constant
    image.

    >>> import numpy as np
    >>> from xdream.generators import make
    >>> gen = make("pixels", size=64, code_size=8)
    >>> gen.code_dim, gen.output_size
    (192, (64, 64))
    >>> float(gen.generate(np.zeros((1, 192))).mean())
    0.5
    """

    name = "pixels"
    Params = PixelsParams
    same_image_params = frozenset({"size"})  # the same picture at another resolution

    def __init__(self, params: PixelsParams) -> None:
        super().__init__(params)
        self.code_dim = 3 * params.code_size**2
        self.output_size = (params.size, params.size)

    def code_spectrum(self) -> CodeSpectrum:
        """The 2-D cosine transform of each channel's ``code_size x code_size`` logits (red,
        green, blue); the ES steps along it with a 1/f tilt (``default_power`` 1) and colour
        steps 0.3 times its luminance steps (``default_chroma``) by default."""
        c = self.params.code_size
        return CodeSpectrum.dct(3, c, c, default_power=1.0, colour="rgb", default_chroma=0.3)

    def forward(self, codes: torch.Tensor) -> Images:
        """Render codes ``(n, 3 * code_size**2)`` as images ``(n, 3, size, size)`` in [0, 1]."""
        c = self.params.code_size
        low = torch.sigmoid(codes.float().reshape(-1, 3, c, c))
        if c == self.params.size:
            return low
        return F.interpolate(low, size=self.output_size, mode="bilinear", align_corners=False)
