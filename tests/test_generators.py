"""Generators: one API test parametrised over every registered name, then per-family semantics."""

from __future__ import annotations

import itertools
import math
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xdream import weights
from xdream.errors import ConfigError, XDreamError
from xdream.generators import Generator, make, names
from xdream.generators.cppn import CPPNParams
from xdream.generators.fourier import code_layout
from xdream.generators.pixels import PixelsParams

ALL = [name for name in names() if weights.info(name) is None]
"""Generators that need no weight file (DeePSiM's are tested in test_deepsim.py)."""


@cache
def default(name: str) -> Generator:
    """The generator ``name`` with default parameters (built once per test session)."""
    return make(name)


def codes_for(gen: Generator, n: int, seed: int = 0) -> np.ndarray:
    return gen.initial_codes(n, np.random.default_rng(seed))


def test_registry_holds_the_three_families() -> None:
    assert {"fourier", "pixels", "cppn"} <= set(ALL)


# --- the Generator contract, for every registered generator ---------------------------------


@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_and_range(name: str) -> None:
    gen = default(name)
    codes = codes_for(gen, 5)
    assert codes.shape == (5, gen.code_dim) and codes.dtype == np.float32
    images = gen.generate(codes)
    assert images.shape == (5, 3, *gen.output_size)
    assert images.dtype == torch.float32
    assert torch.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    # Extreme codes stay in range too.
    assert gen.generate(100 * codes).min() >= 0.0 and gen.generate(100 * codes).max() <= 1.0


@pytest.mark.parametrize("name", ALL)
def test_made_in_evaluation_mode(name: str) -> None:
    """make and build (a config's parameters) give a generator in evaluation mode, as make
    says. Mutation audit W: build leaving it in training mode survived."""
    from xdream.generators import build

    for gen in (make(name), build(name, {}, python=False)):
        assert not any(module.training for module in gen.modules())


@pytest.mark.parametrize("name", ALL)
def test_zero_code_is_mid_grey(name: str) -> None:
    gen = default(name)
    image = gen.generate(np.zeros((1, gen.code_dim)))
    torch.testing.assert_close(image, torch.full_like(image, 0.5))


@pytest.mark.parametrize("name", ALL)
def test_batch_independence(name: str) -> None:
    gen = default(name)
    codes = codes_for(gen, 4)
    batched = gen.generate(codes)
    for i in range(len(codes)):
        single = gen.generate(codes[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-5, rtol=0)
    # Chunking inside generate() does not change the result either.
    torch.testing.assert_close(gen.generate(codes, batch_size=3), batched, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ALL)
def test_deterministic(name: str) -> None:
    codes = codes_for(default(name), 3)
    first = default(name).generate(codes)
    assert torch.equal(first, default(name).generate(codes))
    assert torch.equal(first, make(name).generate(codes))  # a fresh instance agrees


@pytest.mark.parametrize("name", ALL)
def test_differentiable_every_code_entry_matters(name: str) -> None:
    gen = default(name)
    assert gen.differentiable
    codes = torch.tensor(codes_for(gen, 2), requires_grad=True)
    images = gen(codes)
    probe = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    (images * probe).sum().backward()
    assert codes.grad is not None and torch.isfinite(codes.grad).all()
    assert (codes.grad != 0).all(), "some code entries have no effect on the image"


@pytest.mark.parametrize("name", ALL)
def test_generate_accepts_numpy_float64_and_tensors(name: str) -> None:
    gen = default(name)
    codes = codes_for(gen, 2)
    from_np = gen.generate(codes.astype(np.float64))
    from_tensor = gen.generate(torch.from_numpy(codes))
    assert not from_np.requires_grad
    torch.testing.assert_close(from_np, from_tensor)
    assert gen.generate(np.zeros((0, gen.code_dim))).shape == (0, 3, *gen.output_size)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", ["wrong_dim", "one_d", "three_d"])
def test_bad_code_shape_raises(name: str, shape: str) -> None:
    gen = default(name)
    bad = {
        "wrong_dim": np.zeros((2, gen.code_dim + 1)),
        "one_d": np.zeros(gen.code_dim),
        "three_d": np.zeros((1, 1, gen.code_dim)),
    }[shape]
    with pytest.raises(XDreamError, match=rf"\(n, {gen.code_dim}\)"):
        gen.generate(bad)


class Drawn(Generator):
    """A user's generator that returns ``draw(n)`` for ``n`` codes, at output size 8."""

    name = "drawn"

    def __init__(self, draw: object) -> None:
        super().__init__(None)
        self.code_dim, self.output_size, self.draw = 2, (8, 8), draw

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.draw(len(codes))  # type: ignore[operator,no-any-return]


@pytest.mark.parametrize(
    ("draw", "message"),
    [
        (lambda n: torch.rand(n, 3, 9, 9), r"shape \(2, 3, 9, 9\); .* = \(2, 3, 8, 8\) \(n codes"),
        (lambda n: torch.rand(n, 8, 8, 3), r"shape \(2, 8, 8, 3\); .* = \(2, 3, 8, 8\)"),
        (lambda n: torch.rand(1, 3, 8, 8), r"shape \(1, 3, 8, 8\); .* = \(2, 3, 8, 8\)"),
        (lambda n: np.random.rand(n, 3, 8, 8), r"shape a numpy.ndarray of shape \(2, 3, 8, 8\)"),
        (lambda n: torch.rand(n, 3, 8, 8) * 255, r"got values from .* to 2.*\(divide by 255\)"),
        (lambda n: (torch.rand(n, 3, 8, 8) * 255).byte(), r"got uint8 with values up to 2"),
        (lambda n: torch.full((n, 3, 8, 8), math.nan), r"got NaN or inf values in 2 of 2 images"),
        (lambda n: torch.rand(n, 3, 8, 8) * 2 - 1, r"\(map \[-1, 1\] to \[0, 1\]"),
    ],
)
def test_a_generators_images_are_checked(draw: object, message: str) -> None:
    """A user's generator returning images of another shape ended in a raw torch error (or
    ran on), and images outside [0, 1] were scored silently: one line names the generator."""
    with pytest.raises(XDreamError, match=r"generator 'drawn'.*" + message):
        Drawn(draw).generate(np.zeros((2, 2)))


def test_forward_gets_float32_codes() -> None:
    """generate() hands forward float32 codes, whatever it was given (mutation audit F)."""
    seen = []
    drawn = Drawn(lambda n: torch.zeros(n, 3, 8, 8))
    drawn.forward = lambda codes: seen.append(codes.dtype) or torch.zeros(len(codes), 3, 8, 8)  # type: ignore[method-assign]
    drawn.generate(torch.zeros(2, 2, dtype=torch.float64))
    drawn.generate(np.zeros((2, 2), dtype=np.float64))
    assert seen == [torch.float32, torch.float32]


def test_images_a_hair_outside_0_1_pass_and_codes_must_be_numbers() -> None:
    """Rounding (a resize, half precision) may leave values a hair outside [0, 1]."""
    # every image reaches 0.0004 below 0 and above 1 (random values seldom left [0, 1])
    a_hair = Drawn(lambda n: torch.linspace(-0.0004, 1.0004, 192).repeat(n, 1).view(n, 3, 8, 8))
    assert a_hair.generate(np.zeros((2, 2))).shape == (2, 3, 8, 8)
    with pytest.raises(XDreamError, match=r"generator 'drawn' expects codes .*numbers, got str"):
        a_hair.generate("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_codes_raise(name: str, value: float) -> None:
    gen = default(name)
    codes = codes_for(gen, 2)
    codes[1, -1] = value  # the last coordinate: a generator may have only a few
    with pytest.raises(XDreamError, match="NaN"):
        gen.generate(codes)


@pytest.mark.parametrize("name", ALL)
def test_unknown_param_names_the_nearest_key(name: str) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'size'"):
        make(name, sise=64)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [0, -3, 2.5, "128"])
def test_invalid_size_is_a_config_error(name: str, size: object) -> None:
    with pytest.raises(ConfigError, match="size"):
        make(name, size=size)


@pytest.mark.parametrize("name", ALL)
def test_size_param_sets_output_size(name: str) -> None:
    gen = make(name, size=40)
    assert gen.output_size == (40, 40)
    assert gen.generate(codes_for(gen, 1)).shape == (1, 3, 40, 40)


@pytest.mark.parametrize("name", ALL)
def test_fixed_tensors_are_buffers_and_follow_to(name: str) -> None:
    gen = make(name, size=32)
    codes = codes_for(gen, 2)
    reference = gen.generate(codes)
    assert not list(gen.parameters())  # nothing trainable: the code is the only input
    gen64 = make(name, size=32).double()
    assert all(b.dtype == torch.float64 for b in gen64.buffers() if b.is_floating_point())
    out64 = gen64(torch.from_numpy(codes).double())
    torch.testing.assert_close(out64.float(), reference, atol=1e-5, rtol=0)
    if any(b.is_floating_point() for b in gen64.buffers()):  # computed in the buffers' dtype
        assert out64.dtype == torch.float64
    assert gen64.generate(codes).dtype == torch.float32  # generate() returns float32 images


@pytest.mark.parametrize("name", ALL)
def test_initial_codes_are_normal_draws_from_the_given_rng(name: str) -> None:
    """Codes to start from are N(0, 1) draws from the rng passed in (an experiment's seeded
    stream), not from NumPy's global one: the same seed, the same codes (mutation audit F)."""
    gen = default(name)
    assert not gen.custom_initial_codes
    np.random.seed(1)
    expected = np.random.default_rng(5).standard_normal((3, gen.code_dim)).astype(np.float32)
    np.testing.assert_array_equal(gen.initial_codes(3, np.random.default_rng(5)), expected)


def test_device_is_where_the_buffers_are() -> None:
    """``device`` follows ``.to()`` (encode puts its codes there); CPU without buffers."""
    assert make("fourier", size=8).to("meta").device == torch.device("meta")
    assert make("pixels", size=8, code_size=2).device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name: str) -> None:
    gen = make(name)
    codes = codes_for(gen, 3)
    cpu = gen.generate(codes)
    gpu = gen.to("cuda").generate(codes)
    assert gpu.device.type == "cpu"  # generate() returns CPU images
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=0)


# --- fourier: the embedded default ------------------------------------------------------------


def radial_power_slope(gray: torch.Tensor, lo: int, hi: int) -> float:
    """Slope of log power against log frequency, radially averaged over ``lo..hi`` cycles."""
    x = gray - gray.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x.double()).abs().pow(2).mean(dim=0)  # (H, W), averaged over images
    size = gray.shape[-1]
    f = torch.fft.fftfreq(size, 1 / size, dtype=torch.float64)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).round().long()
    freqs = np.arange(lo, hi + 1)
    mean_power = [power[radius == r].mean().item() for r in freqs]
    return float(np.polyfit(np.log(freqs), np.log(mean_power), 1)[0])


def test_fourier_defaults() -> None:
    gen = default("fourier")
    assert gen.output_size == (128, 128)
    assert gen.code_dim == 2391 == len(code_layout(16))


def test_fourier_images_have_natural_statistics() -> None:
    gen = default("fourier")
    images = gen.generate(codes_for(gen, 32, seed=1))
    gray = images.mean(dim=1)  # (n, H, W) luminance
    assert 0.3 < images.mean().item() < 0.7
    per_image_std = gray.std(dim=(1, 2))
    assert 0.05 < per_image_std.mean().item() < 0.3, "images are flat or harsh"
    assert (per_image_std > 0.02).all(), "some images are flat"
    saturated = ((images < 0.01) | (images > 0.99)).float().mean().item()
    assert saturated < 0.01, f"{saturated:.1%} of pixel values are clipped by the sigmoid"
    slope = radial_power_slope(gray, 2, 12)
    assert -3.5 < slope < -1.5, f"power-spectrum slope {slope:.2f} is not natural-image-like"
    # Colour is present but weaker than luminance contrast, as in natural images.
    chroma = (images - gray[:, None]).std().item()
    assert 0.01 < chroma < per_image_std.mean().item()


def test_fourier_decay_power_sets_the_spectrum_slope() -> None:
    # Small contrast keeps the sigmoid almost linear, so power ~ f ** (-2 * decay_power).
    for decay in (1.0, 2.0):
        gen = make("fourier", size=64, max_freq=24, decay_power=decay, contrast=0.2)
        gray = gen.generate(codes_for(gen, 48, seed=2)).mean(dim=1)
        assert radial_power_slope(gray, 2, 20) == pytest.approx(-2 * decay, abs=0.3)


def test_fourier_code_layout_each_entry_is_one_sinusoid() -> None:
    size, max_freq = 32, 5
    gen = make("fourier", size=size, max_freq=max_freq, saturation=1.0)
    layout = code_layout(max_freq)
    color = gen.color.double()
    for index in (0, 1, 2, 9, 40, len(layout) // 3 + 7):
        channel, fy, fx, part = layout[index]
        codes = np.zeros((1, gen.code_dim))
        codes[0, index] = 1.0
        rgb = torch.logit(gen.generate(codes).double())[0]  # undo the sigmoid
        field = torch.einsum("cr,rhw->chw", torch.linalg.inv(color), rgb)
        assert field[[c for c in range(3) if c != channel]].abs().max() < 1e-4
        y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
        phase = 2 * math.pi * (fy * y + fx * x) / size
        basis = {"dc": torch.ones_like(phase), "cos": phase.cos(), "sin": phase.sin()}[part]
        expected = gen.weights[index % len(gen.weights)].item() * basis.double()
        torch.testing.assert_close(field[channel], expected, atol=1e-5, rtol=0)


def test_fourier_max_freq_defaults_below_nyquist() -> None:
    assert make("fourier").params.max_freq == 16
    assert make("fourier", size=32).params.max_freq == 15  # below size / 2
    assert make("fourier", size=32, max_freq=4).code_dim == len(code_layout(4))


def test_fourier_params_are_validated() -> None:
    # size 2 was let through and refused as "max_freq ... got 0", a key the user never set
    for size in (1, 2):
        with pytest.raises(ConfigError, match=rf"size must be an integer >= 3 .*got {size}$"):
            make("fourier", size=size)
    assert make("fourier", size=3).code_dim == len(code_layout(1))
    with pytest.raises(ConfigError, match="max_freq"):
        make("fourier", size=32, max_freq=16)  # at the Nyquist limit
    with pytest.raises(ConfigError, match="decay_power"):
        make("fourier", decay_power=-1.0)
    with pytest.raises(ConfigError, match="contrast"):
        make("fourier", contrast=math.nan)


def fourier_weights(max_freq: int, decay_power: float) -> np.ndarray:
    """Each entry's weight of one channel block by the definition: ``1 / max(f, 1) ** p`` with
    ``f`` the radius of its frequency, normalised to unit sum of squares."""
    block = [(fy, fx) for c, fy, fx, _ in code_layout(max_freq) if c == 0]
    w = np.array([1 / max(math.hypot(fy, fx), 1.0) ** decay_power for fy, fx in block])
    return w / np.sqrt(np.sum(w**2))


def test_fourier_channel_means_map_through_the_scaled_colour_matrix() -> None:
    """A code holding only one channel's mean (DC) draws a flat image whose RGB logits are that
    column of the colour-correlation square root, normalised by its largest column (the
    luminance one), times ``contrast`` (luminance) or ``contrast * saturation`` (colour), times
    the DC weight ``1 / 1**p``, normalised. Mutation audit F: saturation applied to luminance,
    contrast ignored, the rows normalised instead of the columns, and the DC weight changed all
    passed the tests above."""
    from xdream.generators.fourier import COLOR_CORRELATION_SQRT

    contrast, saturation, decay, max_freq = 1.5, 0.4, 2.0, 3
    gen = make(
        "fourier",
        size=8,
        max_freq=max_freq,
        decay_power=decay,
        contrast=contrast,
        saturation=saturation,
    )
    block = gen.code_dim // 3
    w_dc = fourier_weights(max_freq, decay)[0]
    matrix = COLOR_CORRELATION_SQRT / np.linalg.norm(COLOR_CORRELATION_SQRT[:, 0])
    for channel, gain in ((0, contrast), (1, contrast * saturation), (2, contrast * saturation)):
        codes = np.zeros((1, gen.code_dim))
        codes[0, channel * block] = 1.0
        logits = torch.logit(gen.generate(codes).double())[0]
        expected = matrix[:, channel] * gain * w_dc
        for rgb in range(3):
            torch.testing.assert_close(
                logits[rgb],
                torch.full((8, 8), expected[rgb], dtype=torch.float64),
                atol=1e-5,
                rtol=0,
            )


def test_fourier_entry_weights_follow_the_decay_power() -> None:
    """A unit code entry draws a sinusoid of amplitude ``w(f) ∝ 1 / max(f, 1) ** decay_power``
    (module docstring); frequencies below 1 do not exist but the DC entry weighs as f = 1."""
    max_freq, decay = 4, 1.5
    gen = make("fourier", size=16, max_freq=max_freq, decay_power=decay, saturation=1.0)
    np.testing.assert_allclose(gen.weights.numpy(), fourier_weights(max_freq, decay), rtol=1e-6)


def test_fourier_saturation_zero_gives_grey_images_and_contrast_sets_the_logit_spread() -> None:
    """``saturation = 0`` gives (almost) grey images (docs/config.md), a documented value >= 0
    that a bound of > 0 would refuse; ``contrast = 0`` gives the mid-grey image. Each RGB channel's
    logit has a standard deviation over N(0, 1) codes of about 0.44 * contrast (``contrast``
    in docs/config.md): the colour matrix's row norm 0.6 times the pre-colour channels' standard
    deviation sqrt(0.55) (a cosine and a sine of one frequency share a pixel's variance)."""
    codes = codes_for(make("fourier", size=32), 64, seed=7)
    grey = make("fourier", size=32, saturation=0.0).generate(codes)
    # luminance alone: the matrix's luminance column (0.26, 0.27, 0.27) leaves a faint tint
    torch.testing.assert_close(grey[:, 2], grey[:, 1], atol=1e-6, rtol=0)
    assert float((grey[:, 0] - grey[:, 1]).abs().max()) < 0.01
    flat = make("fourier", size=32, contrast=0.0).generate(codes)
    torch.testing.assert_close(flat, torch.full_like(flat, 0.5))
    for contrast in (0.5, 2.5):
        gen = make("fourier", size=32, contrast=contrast, saturation=1.0)
        spread = torch.logit(gen.generate(codes).double()).std(dim=(0, 2, 3))
        assert ((spread / contrast - 0.44).abs() < 0.06).all(), spread / contrast


def test_fourier_max_freq_must_be_at_least_one() -> None:
    """max_freq runs from 1 to below size / 2 (docs/config.md); 0 would keep only the means."""
    with pytest.raises(ConfigError, match="max_freq must be an integer from 1"):
        make("fourier", size=32, max_freq=0)


# --- pixels -----------------------------------------------------------------------------------


def test_pixels_code_is_a_low_resolution_image() -> None:
    gen = make("pixels", size=64, code_size=8)
    assert gen.code_dim == 3 * 8 * 8
    rng = np.random.default_rng(3)
    target = rng.uniform(0.1, 0.9, (2, 3, 8, 8))
    image = gen.generate(np.log(target / (1 - target)).reshape(2, -1)).double()
    # Bilinear upsampling by 8 (align_corners=False) averaged back over each 8x8 block is the
    # low-res image blurred by [1/8, 3/4, 1/8] along each axis, edges replicated.
    blocks = F.avg_pool2d(image, 8)
    kernel = torch.tensor([1 / 8, 3 / 4, 1 / 8], dtype=torch.float64)
    expected = torch.from_numpy(target)
    expected = F.pad(expected, (1, 1, 1, 1), mode="replicate")
    expected = (kernel[0] * expected[..., :-2, :] + kernel[1] * expected[..., 1:-1, :]) + kernel[
        2
    ] * expected[..., 2:, :]
    expected = (kernel[0] * expected[..., :-2] + kernel[1] * expected[..., 1:-1]) + kernel[
        2
    ] * expected[..., 2:]
    torch.testing.assert_close(blocks, expected, atol=1e-6, rtol=0)


def test_pixels_full_resolution_code_is_the_image() -> None:
    gen = make("pixels", size=8, code_size=8)
    target = np.random.default_rng(4).uniform(0.05, 0.95, (1, 3, 8, 8))
    image = gen.generate(np.log(target / (1 - target)).reshape(1, -1))
    torch.testing.assert_close(image.double(), torch.from_numpy(target), atol=1e-6, rtol=0)


def test_pixels_channel_layout_and_grey_centre() -> None:
    gen = default("pixels")
    assert gen.code_dim == 768 and gen.output_size == (128, 128)
    codes = np.zeros((1, gen.code_dim))
    codes[0, : 16 * 16] = 4.0  # the first block is the red channel
    image = gen.generate(codes)[0]
    torch.testing.assert_close(image[0], torch.full((128, 128), 1 / (1 + math.exp(-4))))
    torch.testing.assert_close(image[1:], torch.full((2, 128, 128), 0.5))
    noise = gen.generate(codes_for(gen, 16))
    assert abs(noise.mean().item() - 0.5) < 0.02


def test_pixels_code_size_is_validated() -> None:
    with pytest.raises(ConfigError, match="code_size"):
        make("pixels", size=32, code_size=64)


# --- cppn -------------------------------------------------------------------------------------


def neighbour_difference(images: torch.Tensor) -> float:
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return float((dx + dy) / 2)


def test_cppn_images_are_smooth_but_not_flat() -> None:
    gen = default("cppn")
    images = gen.generate(codes_for(gen, 16, seed=5))
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(0))
    assert neighbour_difference(images) < 0.1 * neighbour_difference(noise)
    assert (images.std(dim=(2, 3)).mean(dim=1) > 0.02).all(), "some patterns are flat"


def test_cppn_code_layout_output_bias_is_last() -> None:
    gen = make("cppn", size=16, hidden=[4, 4], activations=["tanh", "gauss"])
    assert gen.code_dim == (3 * 4 + 4) + (4 * 4 + 4) + (4 * 3 + 3)
    codes = np.zeros((1, gen.code_dim))
    codes[0, -3:] = [2.0, 0.0, -1.0]  # output biases only: a constant colour
    image = gen.generate(codes)[0]
    expected = torch.sigmoid(torch.tensor([2.0, 0.0, -1.0]))[:, None, None].expand(3, 16, 16)
    torch.testing.assert_close(image, expected)


def test_cppn_params_are_validated() -> None:
    gen = make("cppn", hidden=[8, 8], activations=["sin", "gauss"])  # lists from configs
    assert gen.params.hidden == (8, 8)
    with pytest.raises(ConfigError, match="one activation per hidden layer"):
        make("cppn", hidden=[8, 8])
    with pytest.raises(ConfigError, match="unknown activation 'relu'"):
        make("cppn", hidden=[8], activations=["relu"])
    with pytest.raises(ConfigError, match="hidden"):
        make("cppn", hidden=[], activations=[])


def test_cppn_matches_its_definition() -> None:
    """The CPPN of the class docstring, written out in NumPy: inputs ``(x, y, r)`` at pixel
    centres on ``[-input_scale, input_scale]`` (x along the width), each layer's weights
    ``(fan_out, fan_in)`` row-major then its bias, weights scaled by ``gain / sqrt(fan_in)``,
    the named activations, sigmoid RGB. Mutation audit F: a Gaussian of other width, x and y
    swapped, pixel corners for centres, ``r**2`` for ``r``, input_scale ignored, the two gains
    swapped, weights read column-major or the activations reversed all passed."""
    size, hidden, acts = 5, (3, 2, 2), ("gauss", "tanh", "sin")
    scale, weight_gain, output_gain = 2.0, 1.5, 0.7
    gen = make(
        "cppn",
        size=size,
        hidden=list(hidden),
        activations=list(acts),
        input_scale=scale,
        weight_gain=weight_gain,
        output_gain=output_gain,
    )
    functions = {"gauss": lambda v: np.exp(-v * v), "tanh": np.tanh, "sin": np.sin}
    codes = np.random.default_rng(8).standard_normal((2, gen.code_dim))
    t = ((np.arange(size) + 0.5) / size * 2 - 1) * scale
    x, y = np.meshgrid(t, t)  # x varies along a row (the width), y down the columns
    h0 = np.stack([x, y, np.hypot(x, y)], axis=-1).reshape(-1, 3)
    widths = (3, *hidden, 3)
    for code, image in zip(codes, gen.generate(codes).double().numpy()):
        h, start = h0, 0
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            gain = output_gain if i == len(hidden) else weight_gain
            w = code[start : start + fan_out * fan_in].reshape(fan_out, fan_in)
            b = code[start + fan_out * fan_in : start + fan_out * (fan_in + 1)]
            start += fan_out * (fan_in + 1)
            z = h @ (w * gain / math.sqrt(fan_in)).T + b
            h = 1 / (1 + np.exp(-z)) if i == len(hidden) else functions[acts[i]](z)
        assert start == gen.code_dim
        np.testing.assert_allclose(image, h.T.reshape(3, size, size), atol=1e-5)


@pytest.mark.parametrize("key", ["input_scale", "weight_gain", "output_gain"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_cppn_scales_and_gains_must_be_finite_and_positive(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"{key} must be a finite number > 0"):
        make("cppn", **{key: value})


def test_cppn_hidden_widths_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="positive layer widths"):
        make("cppn", hidden=[8, 0], activations=["sin", "tanh"])


# --------------------------------------------------------------------------- audit M: mutants
def test_images_within_the_tolerance_pass_and_beyond_it_are_refused() -> None:
    """Values up to IMAGE_TOLERANCE outside [0, 1] pass (rounding); a little more is refused.
    The test above draws values that seldom leave [0, 1] at all (mutants M-I7, M-I8)."""
    from xdream.generators.base import IMAGE_TOLERANCE, check_images

    edge = torch.zeros(1, 3, 8, 8)
    edge[0, 0, 0, 0], edge[0, 0, 0, 1] = -0.9 * IMAGE_TOLERANCE, 1 + 0.9 * IMAGE_TOLERANCE
    assert check_images(edge) is edge
    assert Drawn(lambda n: edge.expand(n, -1, -1, -1)).generate(np.zeros((2, 2))).shape[0] == 2
    for bad in (-2 * IMAGE_TOLERANCE, 1 + 2 * IMAGE_TOLERANCE):
        edge[0, 0, 0, 0] = bad
        with pytest.raises(XDreamError, match=r"float RGB in \[0, 1\], got values from"):
            check_images(edge)


def test_generated_images_do_not_share_memory_with_the_codes() -> None:
    """A user's generator that returns its codes reshaped (a view of them): what generate()
    returns is a copy, so the caller (an optimiser reusing its array) changing the codes
    afterwards leaves the images as they were drawn (mutant M-I17)."""
    view = Drawn(lambda n: None)
    view.code_dim, view.output_size = 12, (2, 2)
    view.forward = lambda codes: codes.reshape(-1, 3, 2, 2)  # type: ignore[method-assign]
    codes = np.full((2, 12), 0.25, np.float32)
    drawn = view.generate(codes)
    codes[:] = 0.75
    assert torch.equal(drawn, torch.full((2, 3, 2, 2), 0.25))


@pytest.mark.parametrize(
    ("params", "said"),
    [
        (lambda: CPPNParams(size=True), "size"),
        (
            lambda: CPPNParams(hidden=(16, True), activations=("tanh", "tanh")),
            "hidden",
        ),
        (
            lambda: PixelsParams(size=True),
            "size",
        ),
        (
            lambda: PixelsParams(code_size=True),
            "code_size",
        ),
    ],
)
def test_params_built_in_python_refuse_a_boolean_for_a_whole_number(params: Any, said: str) -> None:
    """True is an int to Python: CPPNParams(size=True) made a 1-pixel generator (make() and
    configs refused it earlier, FourierParams already did; audit F)."""
    with pytest.raises(ValueError, match=f"^{said} must be"):
        params()
