"""The embedded default generator: images built from low-frequency Fourier coefficients.

What a code means
-----------------
A ``fourier`` code is three equal blocks, one per *decorrelated* colour channel (channel 0 is
roughly luminance, channels 1 and 2 are colour-opponent). Each block holds the real degrees of
freedom of the spatial frequencies ``(fy, fx)`` (cycles per image) inside the disc
``fy**2 + fx**2 <= max_freq**2``:

* entry 0 is the channel's mean (DC);
* then, for each frequency of the half-disc (``fx == 0, fy = 1..max_freq`` first, then the rows
  ``fy = -max_freq..max_freq`` of ``fx >= 1``), a cosine and a sine amplitude.

Each entry is multiplied by ``w(f) ∝ 1 / max(f, 1) ** decay_power`` (``f`` the frequency's
radius), so an N(0, 1) code has a natural-image-like ``1/f**decay_power`` amplitude spectrum;
the weights are normalised to unit sum of squares per channel (so a pixel's variance over
codes is about 0.55, not 1: a frequency's cosine and sine share it). The channels are mixed
into RGB by the colour-correlation square root of Mordvintsev et al. (2018), scaled by
``contrast`` (luminance) and ``contrast * saturation`` (colour), and squashed to [0, 1] by a
sigmoid, so the zero code is mid-grey. :func:`code_layout` lists ``(channel, fy, fx, part)``
for every entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from xdream.generators import register
from xdream.generators.base import Generator
from xdream.generators.spectrum import CodeSpectrum
from xdream.types import Images

COLOR_CORRELATION_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float64
)
"""Square root of the RGB colour covariance of ImageNet (Mordvintsev et al. 2018, Distill):
column 0 maps the luminance channel to RGB, columns 1 and 2 the colour-opponent channels."""


@dataclass(frozen=True)
class FourierParams:
    """Hyperparameters of :class:`FourierGenerator`.

    Attributes:
        size: Output height and width in pixels, at least 3.
        max_freq: Highest spatial frequency kept, in cycles per image (the radius of the kept
            disc of frequencies). The code dimension grows as ``3 * pi * max_freq**2``:
            16 -> 2391, 14 -> 1839, 12 -> 1323. ``None`` (the default) means 16, or the highest
            frequency below the Nyquist limit ``size / 2`` for images smaller than 34 pixels; the
            resolved value is stored.
        decay_power: Amplitude falls as ``1 / f**decay_power``. Natural images have about 1.0
            (Mordvintsev et al. 2018 use 1.0), but with random phases a 1/f image looks like
            noise; 1.5 (a power-spectrum slope of -3) gives cloud- and blob-like images and is
            the default, chosen by eye.
        contrast: Standard deviation of each RGB channel before the sigmoid is about
            ``0.44 * contrast`` over N(0, 1) codes: 0.6, the row norm of the normalised colour
            matrix, times 0.74, that of each decorrelated channel (its weights have unit sum of
            squares, and a frequency's cosine and sine share a pixel's variance); 2.5 gives
            pixel standard deviations near 0.19 within an image, with almost no clipping.
        saturation: Gain of the two colour-opponent channels relative to luminance; 1.0 is the
            ImageNet colour covariance, 0.0 gives grey images (faintly cyan: the luminance
            column of the matrix is (0.26, 0.27, 0.27)); 0.6 (by eye) looks less garish.
    """

    size: int = 128
    max_freq: int | None = None
    decay_power: float = 1.5
    contrast: float = 2.5
    saturation: float = 0.6

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 3:
            raise ValueError(
                f"size must be an integer >= 3 (pixels: a code holds at least one frequency "
                f"below the Nyquist limit size/2), got {self.size!r}"
            )
        if self.max_freq is None:
            object.__setattr__(self, "max_freq", min(16, (self.size - 1) // 2))
        if not isinstance(self.max_freq, int) or not 1 <= self.max_freq < self.size / 2:
            raise ValueError(
                f"max_freq must be an integer from 1 to below the Nyquist limit size/2 = "
                f"{self.size / 2:g} cycles per image, got {self.max_freq!r}"
            )
        for key in ("decay_power", "contrast", "saturation"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")


def half_disc(max_freq: int) -> list[tuple[int, int]]:
    """The non-DC frequencies ``(fy, fx)`` of the half-disc of radius ``max_freq``, in code order.

    First the column ``fx == 0`` (``fy = 1..max_freq``), then rows ``fy = -max_freq..max_freq``
    of ``fx >= 1``; the other half of the disc follows by symmetry (the image is real).

    >>> half_disc(1)
    [(1, 0), (0, 1)]
    """
    m = max_freq
    column = [(fy, 0) for fy in range(1, m + 1)]
    rows = [
        (fy, fx) for fy in range(-m, m + 1) for fx in range(1, m + 1) if fy * fy + fx * fx <= m * m
    ]
    return column + rows


def code_layout(max_freq: int) -> list[tuple[int, int, int, str]]:
    """``(channel, fy, fx, part)`` for each entry of a code, ``part`` in {"dc", "cos", "sin"}.

    >>> code_layout(1)[:5]
    [(0, 0, 0, 'dc'), (0, 1, 0, 'cos'), (0, 1, 0, 'sin'), (0, 0, 1, 'cos'), (0, 0, 1, 'sin')]
    """
    per_channel: list[tuple[int, int, str]] = [(0, 0, "dc")]
    for fy, fx in half_disc(max_freq):
        per_channel += [(fy, fx, "cos"), (fy, fx, "sin")]
    return [(c, fy, fx, part) for c in range(3) for fy, fx, part in per_channel]


@register
class FourierGenerator(Generator[FourierParams]):
    """Natural-statistics images from a Fourier code (the embedded default generator).

    Image parameterisation of Mordvintsev et al. (2018), "Differentiable image
    parameterizations", Distill: low-frequency Fourier coefficients with a ``1/f**decay_power``
    amplitude spectrum in decorrelated colour space, mapped to RGB and squashed by a sigmoid. It
    stands in for the pretrained GAN of Xiao & Kreiman (2020) when no weights are available. See
    the module docstring for the layout of a code.

    >>> import numpy as np
    >>> from xdream.generators import make
    >>> gen = make("fourier", size=64, max_freq=8)
    >>> gen.code_dim, gen.output_size
    (591, (64, 64))
    >>> images = gen.generate(gen.initial_codes(4, np.random.default_rng(0)))
    >>> tuple(images.shape)
    (4, 3, 64, 64)
    """

    name = "fourier"
    Params = FourierParams
    same_image_params = frozenset({"size"})  # the same picture at another resolution

    weights: torch.Tensor
    color: torch.Tensor
    slots: torch.Tensor

    def __init__(self, params: FourierParams) -> None:
        super().__init__(params)
        size, m = params.size, self.max_freq
        freqs = half_disc(m)
        self.code_dim = 3 * (1 + 2 * len(freqs))
        self.output_size = (size, size)

        # Weight of each entry of one channel's block: DC first, then (cos, sin) pairs.
        radius = np.array([0.0] + [math.hypot(fy, fx) for fy, fx in freqs for _ in (0, 1)])
        w = 1.0 / np.maximum(radius, 1.0) ** params.decay_power
        w /= np.sqrt(np.sum(w**2))  # unit sum of squares: pixel variance (1 + w[0]**2) / 2
        self.register_buffer("weights", torch.tensor(w, dtype=torch.float32))

        # Where DC, the half-disc and the mirrored column fx == 0 (fy = -1..-m) go in the
        # flattened half-spectrum (size rows in FFT order, fx = 0..m columns).
        cells = [(0, 0), *freqs, *[(-fy, 0) for fy in range(1, m + 1)]]
        slots = [(fy % size) * (m + 1) + fx for fy, fx in cells]
        self.register_buffer("slots", torch.tensor(slots, dtype=torch.long))

        gain = np.array([1.0, params.saturation, params.saturation]) * params.contrast
        scale = np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0).max()
        color = COLOR_CORRELATION_SQRT / scale * gain[None, :]
        self.register_buffer("color", torch.tensor(color, dtype=torch.float32))

    @property
    def max_freq(self) -> int:
        """The highest kept frequency (``params.max_freq`` after resolving ``None``)."""
        assert self.params.max_freq is not None  # resolved by FourierParams.__post_init__
        return self.params.max_freq

    def code_spectrum(self) -> CodeSpectrum:
        """Each entry's frequency ``hypot(fy, fx)`` (0 for the channels' means): the code's
        coordinates are already Fourier coefficients, in three blocks (luminance, then the two
        colour-opponent channels). ``annealed-es`` draws isotropically on it at first and turns
        its steps towards fine patterns over its schedule (``default_power_end`` -0.5)."""
        freq = [math.hypot(fy, fx) for _, fy, fx, _ in code_layout(self.max_freq)]
        return CodeSpectrum(np.array(freq), colour="opponent", default_power_end=-0.5)

    def forward(self, codes: torch.Tensor) -> Images:
        """Render codes ``(n, code_dim)`` as images ``(n, 3, size, size)`` in [0, 1]."""
        n, size, m = codes.shape[0], self.params.size, self.max_freq
        if n == 0:  # an empty batch upsets some FFT backends
            return codes.new_zeros(0, 3, size, size, dtype=self.weights.dtype)
        entries = self.weights.shape[0]  # per channel
        coef = codes.to(self.weights.dtype).reshape(n, 3, entries) * self.weights
        # Colour mixing is linear, so it is applied to the coefficients, not to the pixels.
        coef = torch.matmul(self.color, coef)  # (n, 3 RGB, entries)
        dc, pairs = coef[..., :1], coef[..., 1:].reshape(n, 3, entries // 2, 2)
        # A real field sum_j (a_j cos + b_j sin) is the inverse real FFT (unscaled) of the
        # spectrum (a - i b) / 2 on the half-plane, Hermitian-completed on the column fx == 0.
        half = torch.complex(pairs[..., 0], -pairs[..., 1]) / 2
        values = torch.cat(
            [torch.complex(dc, torch.zeros_like(dc)), half, half[..., :m].conj()], -1
        )
        spec = values.new_zeros(n, 3, size * (m + 1))
        spec[..., self.slots] = values
        rgb = torch.fft.irfft2(spec.reshape(n, 3, size, m + 1), s=(size, size), norm="forward")
        return torch.sigmoid(rgb)
