"""Which spatial frequency each direction of a code space carries.

An image code space often has an obvious coarse-to-fine structure: the ``fourier`` code *is* a
list of Fourier coefficients, and a ``pixels`` code is a small image whose 2-D cosine transform
orders its directions from smooth to fine. A generator that knows this describes it with a
:class:`CodeSpectrum` (:meth:`xdream.generators.Generator.code_spectrum`): an orthonormal basis
of the code space and the frequency of each basis direction. Optimisers that sample random
directions (``annealed-es``) can then draw coarse directions with larger steps than fine ones,
which is where units of deep layers respond (``docs/optimizers.md``). A spectrum can also say
which directions change the images' luminance and which their colour (``colour``), so steps can
favour luminance. Generators without such structure (CPPN, DeePSiM) return ``None`` and the
optimisers sample isotropically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.fft

from xdream.errors import XDreamError

FloatArray = npt.NDArray[np.float64]

COLOUR_LAYOUTS = ("rgb", "opponent")
"""How a code's three colour channels are laid out (:attr:`CodeSpectrum.colour`)."""


@dataclass(frozen=True)
class CodeSpectrum:
    """Spatial frequency of each direction of an orthonormal basis of a code space.

    Attributes:
        frequency: ``(dim,)`` frequency of basis direction ``j``, in cycles per image (0 for
            the mean level of a channel).
        image_shape: ``None`` when the basis is the code's own coordinates; ``(channels, h, w)``
            when the code is ``channels`` images of ``h x w`` values (flattened channel-major)
            and the basis is their orthonormal 2-D DCT-II: direction ``j`` is the cosine
            pattern ``(c, ky, kx)`` in the same flattened order, with frequency
            ``hypot(ky, kx) / 2`` cycles per image.
        default_power: the ``spectrum_power`` ``annealed-es`` uses on this code space unless
            told otherwise: step scales ``(f + 1) ** -default_power``. Chosen per code space on
            the benchmark's tuning units (``docs/optimizers.md``): 1 for ``pixels`` (white, so
            a 1/f tilt helps), 0 for ``fourier`` (its code already weights frequencies by
            ``1/f**1.5``; further tilts won on some units and lost on others).
        colour: which directions carry colour. ``"rgb"``: the code is red, green and blue
            images (``image_shape`` with 3 channels); a pixel's luminance direction is its
            three channels moving together, its colour directions the rest. ``"opponent"``:
            the basis coordinates are three equal blocks, luminance then two colour-opponent
            channels. ``None``: no colour structure known. See :meth:`scale_colour`.
        default_chroma: the ``chroma`` ``annealed-es`` uses on this code space unless told
            otherwise: colour steps ``default_chroma`` times as large as luminance steps.
            Chosen per code space on the benchmark's tuning units (``docs/optimizers.md``): 0.3
            on ``pixels`` (whose RGB channels would otherwise give colour two thirds of every
            step), 1 on ``fourier`` (its code already mixes colours with natural-image
            statistics).
        default_power_end: the ``spectrum_power_end`` ``annealed-es`` uses on this code space
            unless told otherwise: while the responses are repeatable (and not counts) its
            power moves from ``default_power`` to this one as its step size shrinks. ``None``
            (default): the power stays at ``default_power``. -0.5 on ``fourier`` (steps turn
            finer: per unit 1.016 times version 7's best image on the tuning units, 1.019 on
            the benchmark's, without noise; ``docs/optimizers.md``).
    """

    frequency: FloatArray
    image_shape: tuple[int, int, int] | None = None
    default_power: float = 0.0
    colour: str | None = None
    default_chroma: float = 1.0
    default_power_end: float | None = None

    def __post_init__(self) -> None:
        freq = np.asarray(self.frequency, dtype=np.float64).reshape(-1)
        if not np.isfinite(freq).all() or (freq < 0).any():
            raise XDreamError("a code spectrum's frequencies must be finite and >= 0")
        object.__setattr__(self, "frequency", freq)
        if not math.isfinite(self.default_power):
            raise XDreamError(f"default_power must be finite, got {self.default_power!r}")
        end = self.default_power_end
        if end is not None and not math.isfinite(end):
            raise XDreamError(f"default_power_end must be finite or None, got {end!r}")
        if self.image_shape is not None and math.prod(self.image_shape) != freq.size:
            raise XDreamError(
                f"image_shape {self.image_shape} holds {math.prod(self.image_shape)} values, "
                f"but the spectrum has {freq.size} frequencies"
            )
        if self.colour is not None and self.colour not in COLOUR_LAYOUTS:
            raise XDreamError(
                f"colour must be one of {COLOUR_LAYOUTS} or None, got {self.colour!r}"
            )
        if self.colour == "rgb" and (self.image_shape is None or self.image_shape[0] != 3):
            raise XDreamError(
                'colour "rgb" needs an image_shape with 3 channels (red, green, blue), '
                f"got {self.image_shape}"
            )
        if self.colour == "opponent" and freq.size % 3:
            raise XDreamError(
                f'colour "opponent" needs three equal blocks, but {freq.size} directions '
                "do not divide by 3"
            )
        if not math.isfinite(self.default_chroma) or self.default_chroma < 0:
            raise XDreamError(
                f"default_chroma must be finite and >= 0, got {self.default_chroma!r}"
            )

    @property
    def dim(self) -> int:
        """Dimension of the code space."""
        return int(self.frequency.size)

    @classmethod
    def dct(
        cls,
        channels: int,
        height: int,
        width: int,
        default_power: float = 0.0,
        colour: str | None = None,
        default_chroma: float = 1.0,
        default_power_end: float | None = None,
    ) -> CodeSpectrum:
        """The spectrum of codes that are ``channels`` small images of ``height x width``."""
        ky = np.arange(height)[:, None] / height
        kx = np.arange(width)[None, :] / width
        # DCT-II pattern k over n samples has k/2 periods across the image: k / (2 n) cycles
        # per sample, k / 2 cycles per image when the image spans the whole output
        per_image = np.hypot(ky * height, kx * width) / 2
        return cls(
            np.tile(per_image.reshape(-1), channels),
            (channels, height, width),
            default_power,
            colour,
            default_chroma,
            default_power_end,
        )

    def to_code(self, coefficients: npt.ArrayLike) -> FloatArray:
        """Codes ``(n, dim)`` from coefficients ``(n, dim)`` on the basis (orthonormal, so the
        norm of each row is kept)."""
        coef = np.asarray(coefficients, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[1] != self.dim:
            raise XDreamError(f"expected coefficients of shape (n, {self.dim}), got {coef.shape}")
        if self.image_shape is None:
            return coef
        images = coef.reshape(len(coef), *self.image_shape)
        out = scipy.fft.idctn(images, type=2, axes=(2, 3), norm="ortho")
        return np.asarray(out, dtype=np.float64).reshape(len(coef), self.dim)

    def scales(self, power: float, offset: float = 1.0) -> FloatArray:
        """Per-direction step scales ``(f + offset) ** -power``, normalised to mean square 1 (so
        a draw scaled by them has the same expected norm as an isotropic one); all ones for
        ``power`` 0, coarse directions larger for ``power`` > 0, fine ones for ``power`` < 0."""
        if not math.isfinite(power):
            raise XDreamError(f"power must be finite, got {power!r}")
        if offset <= 0:
            raise XDreamError(f"offset must be > 0, got {offset!r}")
        s = (self.frequency + offset) ** -float(power)
        return np.asarray(s / math.sqrt(float(np.mean(s**2))), dtype=np.float64)

    def scale_colour(self, directions: npt.ArrayLike, chroma: float) -> FloatArray:
        """Directions ``(n, dim)`` (codes) with their colour part scaled by ``chroma`` relative to
        their luminance part, then by ``sqrt(3 / (1 + 2 chroma**2))`` so that a draw whose three
        colour channels are alike in distribution keeps its expected squared norm.

        >>> spec = CodeSpectrum(np.zeros(3), colour="opponent")
        >>> spec.scale_colour(np.array([[1.0, 1.0, 1.0]]), 0.5).round(3).tolist()
        [[1.414, 0.707, 0.707]]
        """
        y = np.asarray(directions, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise XDreamError(f"expected directions of shape (n, {self.dim}), got {y.shape}")
        if self.colour is None:
            raise XDreamError("this code spectrum has no colour channels (colour is None)")
        if not math.isfinite(chroma) or chroma < 0:
            raise XDreamError(f"chroma must be finite and >= 0, got {chroma!r}")
        gain = math.sqrt(3 / (1 + 2 * chroma**2))
        channels = y.reshape(len(y), 3, -1)
        if self.colour == "rgb":
            grey = channels.mean(axis=1, keepdims=True)  # the luminance part of each pixel
            out = grey + chroma * (channels - grey)
        else:
            out = channels * np.array([1.0, chroma, chroma])[None, :, None]
        return np.asarray(gain * out.reshape(len(y), self.dim), dtype=np.float64)
