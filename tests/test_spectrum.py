"""Code spectra: the frequency of each direction of a code space, and the ES that uses them."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from xdream.errors import XDreamError
from xdream.generators import make as make_generator
from xdream.generators.fourier import code_layout
from xdream.generators.spectrum import CodeSpectrum
from xdream.optimizers import make
from xdream.optimizers.annealed_es import AnnealedES


def _play(opt: object, generations: int, target: float | np.ndarray = 0.5) -> AnnealedES:
    """Run ``generations`` of an annealed-es on the sphere around ``target``."""
    assert isinstance(opt, AnnealedES)
    for _ in range(generations):
        codes = opt.ask()
        opt.tell(codes, -np.sum((codes - target) ** 2, axis=1))
    return opt


def _distance_after(generations: int, target: np.ndarray, **params: object) -> float:
    """Distance of an annealed-es mean from ``target`` after ``generations`` on the sphere
    around it (schedule over the same ``generations``)."""
    opt = make("annealed-es", dim=target.size, generations=generations, **params)
    return float(np.linalg.norm(_play(opt, generations, target).mean - target))


def test_dct_basis_is_orthonormal_cosines_with_their_frequencies() -> None:
    spec = CodeSpectrum.dct(2, 4, 3)
    assert spec.dim == 24 and spec.image_shape == (2, 4, 3)
    basis = spec.to_code(np.eye(24))  # row j: direction j as a code
    np.testing.assert_allclose(basis @ basis.T, np.eye(24), atol=1e-12)
    # direction (c=1, ky=2, kx=1): a separable cosine pattern in channel 1 only
    j = 12 + 2 * 3 + 1
    pattern = basis[j].reshape(2, 4, 3)
    assert np.abs(pattern[0]).max() < 1e-12
    y, x = np.arange(4)[:, None], np.arange(3)[None, :]
    cos = np.cos(np.pi * (2 * y + 1) * 2 / 8) * np.cos(np.pi * (2 * x + 1) * 1 / 6)
    np.testing.assert_allclose(pattern[1], cos / np.linalg.norm(cos), atol=1e-12)
    assert spec.frequency[j] == pytest.approx(math.hypot(2, 1) / 2)
    assert spec.frequency[0] == spec.frequency[12] == 0.0


def test_scales_and_bad_spectra() -> None:
    spec = CodeSpectrum(np.array([0.0, 1.0, 3.0]))
    s = spec.scales(1.0)
    assert np.mean(s**2) == pytest.approx(1.0)
    assert s[0] / s[1] == pytest.approx(2.0) and s[1] / s[2] == pytest.approx(2.0)
    np.testing.assert_allclose(spec.scales(0.0), 1.0)
    np.testing.assert_allclose(spec.to_code(np.eye(3)), np.eye(3))  # own coordinates
    with pytest.raises(XDreamError, match=">= 0"):
        CodeSpectrum(np.array([1.0, -1.0]))
    with pytest.raises(XDreamError, match="holds 8 values"):
        CodeSpectrum(np.zeros(6), (2, 2, 2))
    with pytest.raises(XDreamError, match=r"shape \(n, 3\)"):
        spec.to_code(np.zeros((2, 4)))
    # mutation audit F: an offset of 0 (an infinite scale at frequency 0) and a default chroma
    # of 0 (grey steps, documented as >= 0) were let through and refused
    for offset in (0.0, -1.0):
        with pytest.raises(XDreamError, match="offset must be > 0"):
            spec.scales(1.0, offset)
    assert CodeSpectrum(np.zeros(3), colour="opponent", default_chroma=0.0).default_chroma == 0
    with pytest.raises(XDreamError, match="default_chroma must be finite and >= 0"):
        CodeSpectrum(np.zeros(3), colour="opponent", default_chroma=-0.1)
    with pytest.raises(XDreamError, match="default_power must be finite"):
        CodeSpectrum(np.zeros(3), default_power=math.nan)


def test_generators_describe_their_spectra() -> None:
    fourier = make_generator("fourier", size=32, max_freq=5)
    spec = fourier.code_spectrum()
    assert spec is not None and spec.dim == fourier.code_dim and spec.image_shape is None
    expected = [math.hypot(fy, fx) for _, fy, fx, _ in code_layout(5)]
    np.testing.assert_allclose(spec.frequency, expected)
    pixels = make_generator("pixels", size=32, code_size=8)
    spec = pixels.code_spectrum()
    assert spec is not None and spec.dim == pixels.code_dim == 192
    # the lowest direction of channel 0 is a flat red image; the next one varies along x only
    flat = pixels.generate(spec.to_code(np.eye(192)[:1]) * 24).numpy()[0]
    assert np.ptp(flat[0]) < 1e-6 and flat[0].mean() > 0.9 and abs(flat[1].mean() - 0.5) < 1e-6
    ramp = pixels.generate(spec.to_code(np.eye(192)[1:2]) * 24).numpy()[0, 0]
    assert np.ptp(ramp[:, 0]) < 1e-6 and np.all(np.diff(ramp[0]) <= 1e-7) and np.ptp(ramp) > 0.5
    assert make_generator("cppn", size=32).code_spectrum() is None
    # defaults chosen on the benchmark's tuning units: a 1/f tilt on pixels, none on fourier
    assert (spec.default_power, spec.default_power_end) == (1.0, None)
    on_fourier = fourier.code_spectrum()
    assert on_fourier is not None
    assert (on_fourier.default_power, on_fourier.default_power_end) == (0.0, -0.5)
    with pytest.raises(XDreamError, match="default_power_end must be finite"):
        CodeSpectrum(np.zeros(3), default_power_end=float("inf"))


def test_annealed_es_draws_coarse_directions_larger() -> None:
    spec = CodeSpectrum.dct(3, 8, 8)
    opt = make(
        "annealed-es", dim=192, seed=0, population_size=402, spectrum_power=1.0, spectrum=spec
    )
    y = (opt.ask()[2:].astype(np.float64) - opt.mean) / opt.sigma  # the random directions
    coef = spec.to_code(y @ spec.to_code(np.eye(192)).T)  # round trip: codes are on the basis
    np.testing.assert_allclose(coef, y, atol=1e-4)
    on_basis = y @ spec.to_code(np.eye(192)).T  # coefficients of each draw
    std = on_basis.std(axis=0)
    expected = spec.scales(1.0)
    assert np.median(np.abs(std / expected - 1)) < 0.08
    low, high = spec.frequency < 1, spec.frequency > 4
    assert std[low].mean() > 3 * std[high].mean()
    # power 0, the spectrum's default power 0, or no spectrum: exactly the isotropic draws
    iso = make("annealed-es", dim=192, seed=0, population_size=40).ask()
    for power in (0.0, None):
        flat = make("annealed-es", dim=192, seed=0, spectrum_power=power, spectrum=spec)
        np.testing.assert_array_equal(flat.ask(), iso)
        assert flat.spectrum is None  # type: ignore[attr-defined]
    # a negative power favours fine directions; the spectrum's default_power applies otherwise
    fine = make("annealed-es", dim=192, seed=0, spectrum_power=-1.0, spectrum=spec)
    assert fine.spectrum is spec  # type: ignore[attr-defined]
    tilted = CodeSpectrum.dct(3, 8, 8, default_power=1.0)
    by_default = make("annealed-es", dim=192, seed=0, spectrum=tilted).ask()
    explicit = make("annealed-es", dim=192, seed=0, spectrum_power=1.0, spectrum=spec).ask()
    np.testing.assert_array_equal(by_default, explicit)
    with pytest.raises(XDreamError, match="spectrum_power must be a finite number or None"):
        make("annealed-es", dim=192, seed=0, spectrum_power=float("nan"))
    with pytest.raises(XDreamError, match="spectrum has 192 directions"):
        make("annealed-es", dim=191, seed=0, spectrum=spec)


def test_spectrum_helps_on_a_smooth_target() -> None:
    """A target made of coarse patterns (what deep units prefer, docs/optimizers.md) is
    approached faster with steps shaped by the spectrum than with isotropic ones."""
    spec = CodeSpectrum.dct(3, 12, 12)
    rng = np.random.default_rng(1)
    target = spec.to_code((rng.standard_normal(spec.dim) * spec.scales(2.0))[None])[0]

    def final_distance(power: float, seed: int) -> float:
        return _distance_after(40, target, seed=seed, spectrum_power=power, spectrum=spec)

    for seed in range(3):
        assert final_distance(1.0, seed) < 0.8 * final_distance(0.0, seed)


def test_experiments_from_a_config_hand_the_spectrum_to_the_optimiser(tmp_path: Path) -> None:
    from xdream import config as config_mod
    from xdream.experiment import Experiment

    def built(generator: dict[str, object]) -> Experiment:
        cfg = config_mod.from_dict(
            {
                "experiment": {"seed": 0, "generations": 1, "n_references": 0},
                "generator": generator,
                "optimizer": {"name": "annealed-es"},
                "target": {"network": "efficientnet-lite0", "layer": "blocks.2", "channel": 3},
            }
        )
        return Experiment.from_config(cfg, tmp_path / str(generator["name"]))

    pixels = built({"name": "pixels", "size": 32, "code_size": 8}).optimizer
    assert isinstance(pixels, AnnealedES) and pixels.spectrum is not None
    assert pixels.spectrum.image_shape == (3, 8, 8)
    cppn = built({"name": "cppn", "size": 32}).optimizer
    assert isinstance(cppn, AnnealedES) and cppn.spectrum is None


def test_a_resumed_run_keeps_drawing_as_it_began() -> None:
    spec = CodeSpectrum.dct(3, 4, 4, default_power=1.0)

    straight = make("annealed-es", dim=48, seed=2, population_size=10, spectrum=spec)
    _play(straight, 6)
    first = make("annealed-es", dim=48, seed=2, population_size=10, spectrum=spec)
    _play(first, 3)
    state = first.state_dict()
    # built with another power (say the default changed in a later release): the checkpoint's wins
    resumed = make(
        "annealed-es", dim=48, seed=9, population_size=10, spectrum_power=0.0, spectrum=spec
    )
    resumed.load_state_dict(state)
    _play(resumed, 3)
    np.testing.assert_array_equal(resumed.ask(), straight.ask())
    # a checkpoint written before code spectra existed (no "spectrum_power") continues isotropic
    old = make("annealed-es", dim=48, seed=2, population_size=10)
    _play(old, 3)
    legacy = old.state_dict()
    del legacy["own"]["spectrum_power"]
    again = make("annealed-es", dim=48, seed=5, population_size=10, spectrum=spec)
    again.load_state_dict(legacy)
    _play(again, 2)
    _play(old, 2)
    np.testing.assert_array_equal(again.ask(), old.ask())
    # a tilted checkpoint cannot continue without the spectrum
    bare = make("annealed-es", dim=48, seed=2, population_size=10)
    with pytest.raises(XDreamError, match="resume with the same generator"):
        bare.load_state_dict(state)


def test_colour_scaling_keeps_the_norm_and_splits_luminance_from_colour() -> None:
    rgb = CodeSpectrum.dct(3, 4, 4, colour="rgb")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4000, 48))
    for chroma in (0.0, 0.3, 1.0, 2.0):
        y = rgb.scale_colour(z, chroma)
        # expected squared norm kept for draws whose channels are alike in distribution
        assert np.mean(np.sum(y**2, axis=1)) == pytest.approx(48, rel=0.03)
        pixels = y.reshape(-1, 3, 16)
        grey = pixels.mean(axis=1, keepdims=True)
        colour = np.sum((pixels - grey) ** 2) / np.sum(3 * grey**2)
        assert colour == pytest.approx(2 * chroma**2, rel=0.05, abs=1e-12)
    np.testing.assert_allclose(rgb.scale_colour(z[:3], 1.0), z[:3])
    # a grey step stays grey (only rescaled); chroma 0 makes every step grey
    grey_step = np.tile(rng.standard_normal(16), 3)[None]
    out = rgb.scale_colour(grey_step, 0.5)
    np.testing.assert_allclose(out, grey_step * math.sqrt(3 / 1.5))
    flat = rgb.scale_colour(z[:2], 0.0).reshape(2, 3, 16)
    np.testing.assert_allclose(flat[:, 0], flat[:, 2])
    # opponent blocks (luminance first): the last two blocks scale
    opp = CodeSpectrum(np.zeros(6), colour="opponent")
    np.testing.assert_allclose(
        opp.scale_colour(np.ones((1, 6)), 0.5), np.sqrt(2) * np.array([[1, 1, 0.5, 0.5, 0.5, 0.5]])
    )
    with pytest.raises(XDreamError, match="no colour channels"):
        CodeSpectrum(np.zeros(6)).scale_colour(np.ones((1, 6)), 0.5)
    with pytest.raises(XDreamError, match="chroma must be finite and >= 0"):
        opp.scale_colour(np.ones((1, 6)), -1.0)
    with pytest.raises(XDreamError, match="shape"):
        opp.scale_colour(np.ones((1, 5)), 0.5)
    with pytest.raises(XDreamError, match="colour must be one of"):
        CodeSpectrum(np.zeros(6), colour="hsv")
    with pytest.raises(XDreamError, match="3 channels"):
        CodeSpectrum.dct(2, 4, 4, colour="rgb")
    with pytest.raises(XDreamError, match="do not divide by 3"):
        CodeSpectrum(np.zeros(4), colour="opponent")
    with pytest.raises(XDreamError, match="default_chroma"):
        CodeSpectrum(np.zeros(3), colour="opponent", default_chroma=float("nan"))


def test_annealed_es_scales_colour_steps_on_pixels_only() -> None:
    pixels = make_generator("pixels", size=16, code_size=8).code_spectrum()
    fourier = make_generator("fourier", size=16, max_freq=3).code_spectrum()
    assert pixels is not None and fourier is not None
    assert (pixels.colour, pixels.default_chroma) == ("rgb", 0.3)
    assert (fourier.colour, fourier.default_chroma) == ("opponent", 1.0)

    def colour_share(opt: AnnealedES) -> float:
        y = (opt.ask()[2:].astype(np.float64) - opt.mean) / opt.sigma
        per_pixel = y.reshape(len(y), 3, -1)
        grey = per_pixel.mean(axis=1, keepdims=True)
        return float(np.sum((per_pixel - grey) ** 2) / np.sum(3 * grey**2))

    kw = {"dim": 192, "seed": 0, "population_size": 402, "spectrum": pixels}
    default = make("annealed-es", **kw)
    assert colour_share(default) == pytest.approx(2 * 0.3**2, rel=0.1)
    rgb_alike = make("annealed-es", chroma=1.0, **kw)
    assert colour_share(rgb_alike) == pytest.approx(2.0, rel=0.1)
    # chroma 1 draws exactly what version 6 drew (the tilt alone)
    no_colour = CodeSpectrum.dct(3, 8, 8, default_power=1.0)
    np.testing.assert_array_equal(
        rgb_alike.ask(), make("annealed-es", **{**kw, "spectrum": no_colour}).ask()
    )
    # fourier's default is 1: the isotropic draws, no spectrum used at all
    iso = make("annealed-es", dim=fourier.dim, seed=0).ask()
    on_fourier = make("annealed-es", dim=fourier.dim, seed=0, spectrum=fourier)
    np.testing.assert_array_equal(on_fourier.ask(), iso)
    greyer = make("annealed-es", dim=fourier.dim, seed=0, chroma=0.5, spectrum=fourier)
    assert greyer.spectrum is fourier  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="chroma must be a finite number >= 0"):
        make("annealed-es", dim=192, seed=0, chroma=-0.1)


def test_luminance_steps_reach_a_grey_target_faster() -> None:
    """A target that differs from the start in luminance only (the pixels default's bet,
    docs/optimizers.md) is approached faster with colour steps scaled down, while the target
    is still far (as a unit's preferred image is within a 3000-presentation budget; near the
    optimum the larger luminance steps cost precision)."""
    spec = CodeSpectrum.dct(3, 8, 8, colour="rgb")
    rng = np.random.default_rng(3)
    target = np.tile(rng.standard_normal(64), 3)

    def final_distance(chroma: float, seed: int) -> float:
        return _distance_after(15, target, seed=seed, chroma=chroma, spectrum=spec)

    for seed in range(3):
        assert final_distance(0.3, seed) < 0.8 * final_distance(1.0, seed)


def test_a_resumed_run_keeps_its_colour_scaling() -> None:
    spec = CodeSpectrum.dct(3, 4, 4, default_power=1.0, colour="rgb", default_chroma=0.3)

    straight = make("annealed-es", dim=48, seed=4, population_size=10, spectrum=spec)
    _play(straight, 5)
    first = make("annealed-es", dim=48, seed=4, population_size=10, spectrum=spec)
    _play(first, 2)
    state = first.state_dict()
    assert state["own"]["chroma"] == 0.3
    resumed = make("annealed-es", dim=48, seed=8, population_size=10, chroma=1.0, spectrum=spec)
    resumed.load_state_dict(state)
    _play(resumed, 3)
    np.testing.assert_array_equal(resumed.ask(), straight.ask())
    # a version-6 checkpoint (no "chroma") continues without colour scaling
    legacy = dict(state, own={k: v for k, v in state["own"].items() if k != "chroma"})
    old = make("annealed-es", dim=48, seed=8, population_size=10, spectrum=spec)
    old.load_state_dict(legacy)
    assert old._chroma == 1.0  # type: ignore[attr-defined]
    # a colour-scaled checkpoint needs a spectrum with colour channels
    grey_blind = CodeSpectrum.dct(3, 4, 4, default_power=1.0)
    blind = make("annealed-es", dim=48, seed=4, population_size=10, spectrum=grey_blind)
    with pytest.raises(XDreamError, match="no colour channels"):
        blind.load_state_dict(state)
    bare = make("annealed-es", dim=48, seed=4, population_size=10)
    with pytest.raises(XDreamError, match=r"chroma 0\.3"):
        bare.load_state_dict(state)


def _fine_share(opt: AnnealedES, spec: CodeSpectrum) -> float:
    """Mean squared step of the pending generation's random directions along the finest half of
    ``spec``'s directions over that along the coarsest half (1 for isotropic draws)."""
    y = (opt.ask()[3:].astype(np.float64) - opt.mean) / opt.sigma  # after mean, mean/line
    fine = spec.frequency > np.median(spec.frequency)
    return float(np.mean(y[:, fine] ** 2) / np.mean(y[:, ~fine] ** 2))


def test_annealed_es_turns_its_steps_finer_on_fourier_while_responses_repeat() -> None:
    spec = make_generator("fourier", size=16, max_freq=4).code_spectrum()
    assert spec is not None
    kw = {"dim": spec.dim, "seed": 0, "population_size": 403, "generations": 11}
    opt = make("annealed-es", spectrum=spec, **kw)
    constant = make("annealed-es", spectrum=spec, spectrum_power_end=0.0, **kw)
    assert opt.power_at(0) == 0.0  # type: ignore[attr-defined]
    for step in range(11):
        # identical draws while the noise checks run (3 generations), then finer ones
        if step < 3:
            np.testing.assert_array_equal(opt.ask(), constant.ask())
            assert "spectrum_power" in opt.status() and opt.status()["spectrum_power"] == 0.0
        else:
            expected = -0.5 * step / 10
            assert opt.status()["spectrum_power"] == pytest.approx(expected)
            assert not np.array_equal(opt.ask(), constant.ask())
        _play(opt, 1)
        _play(constant, 1)
    assert opt.status()["responses"] == "repeatable"
    assert opt.power_at(10) == opt.power_at(50) == -0.5  # type: ignore[attr-defined]
    assert "spectrum_power" not in constant.status()
    # at the end fine directions get (f + 1) ** 0.5 times the step: about 1.5x the coarse
    # half's mean square here; the constant-power run stays isotropic
    assert 1.3 < _fine_share(opt, spec) < 1.8
    assert 0.9 < _fine_share(constant, spec) < 1.1
    # an explicit power is kept constant unless an end is given too
    tilted = make("annealed-es", spectrum=spec, spectrum_power=0.5, noise_checks=0, **kw)
    assert tilted.power_at(10) == 0.5  # type: ignore[attr-defined]
    both = make(
        "annealed-es",
        spectrum=spec,
        spectrum_power=1.0,
        spectrum_power_end=0.0,
        noise_checks=0,
        **kw,
    )
    assert both.power_at(0) == 1.0 and both.power_at(5) == 0.5  # type: ignore[attr-defined]
    # pixels has no schedule by default: its power stays at 1
    pixels = make_generator("pixels", size=16, code_size=8).code_spectrum()
    on_pixels = make("annealed-es", dim=192, seed=0, noise_checks=0, spectrum=pixels)
    assert on_pixels.power_at(74) == 1.0  # type: ignore[attr-defined]
    with pytest.raises(XDreamError, match="spectrum_power_end must be a finite number or None"):
        make("annealed-es", dim=8, seed=0, spectrum_power_end=float("nan"))


def _scheduled_and_constant(
    seed: int, score: Callable[[np.ndarray, np.random.Generator], np.ndarray]
) -> tuple[AnnealedES, AnnealedES, dict[str, object]]:
    """An annealed-es on a small ``fourier`` spectrum with its default power schedule and one
    with a constant power, each played 10 generations with ``score(codes, rng)``; and the
    keyword arguments both were made with."""
    spec = make_generator("fourier", size=16, max_freq=4).code_spectrum()
    assert spec is not None
    kw = {"dim": spec.dim, "seed": seed, "population_size": 20, "generations": 8, "spectrum": spec}
    opt = make("annealed-es", **kw)
    constant = make("annealed-es", spectrum_power_end=0.0, **kw)
    for o in (opt, constant):
        rng = np.random.default_rng(5)
        for _ in range(10):
            codes = o.ask()
            o.tell(codes, score(codes, rng))
    assert isinstance(opt, AnnealedES) and isinstance(constant, AnnealedES)
    return opt, constant, kw


def test_noisy_responses_keep_the_start_power_and_version_7_draws() -> None:
    """Under noise the steps stay as version 7 drew them (the benchmark's noisy rows prefer
    them, docs/optimizers.md): the schedule runs only on repeatable responses."""
    opt, constant, _ = _scheduled_and_constant(
        1, lambda codes, rng: -np.sum((codes - 0.5) ** 2, axis=1) + rng.standard_normal(20)
    )
    assert opt.status()["responses"] == "noisy" and opt.power_at(7) == 0.0  # type: ignore[attr-defined]
    np.testing.assert_array_equal(opt.ask(), constant.ask())
    np.testing.assert_array_equal(opt.mean, constant.mean)


def test_tied_scores_of_different_codes_keep_the_start_power() -> None:
    """Repeatable but coarse responses (counts; a unit silent on many images) tie between
    different codes; the fine late steps cannot be resolved by them, so the power stays."""
    opt, constant, kw = _scheduled_and_constant(  # repeatable scores, in steps of one
        2, lambda codes, _: np.floor(-np.sum((codes - 0.5) ** 2, axis=1) / 50)
    )
    assert opt.status()["responses"] == "repeatable"
    assert opt.power_at(7) == 0.0  # type: ignore[attr-defined]
    np.testing.assert_array_equal(opt.ask(), constant.ask())
    state = opt.state_dict()
    assert state["own"]["ties"] is True
    resumed = make("annealed-es", **kw)
    resumed.load_state_dict(state)
    assert resumed.power_at(7) == 0.0  # type: ignore[attr-defined]


def test_a_resumed_run_keeps_its_power_schedule() -> None:
    spec = CodeSpectrum.dct(3, 4, 4, default_power=0.0, default_power_end=-1.0)
    kw = {"dim": 48, "population_size": 10, "generations": 8, "noise_checks": 1}
    straight = make("annealed-es", seed=3, spectrum=spec, **kw)
    _play(straight, 6)
    first = make("annealed-es", seed=3, spectrum=spec, **kw)
    _play(first, 3)
    state = first.state_dict()
    assert (state["own"]["spectrum_power"], state["own"]["spectrum_power_end"]) == (0.0, -1.0)
    # built with another schedule (a later release's default, say): the checkpoint's wins
    resumed = make("annealed-es", seed=7, spectrum=spec, spectrum_power_end=0.0, **kw)
    resumed.load_state_dict(state)
    _play(resumed, 3)
    np.testing.assert_array_equal(resumed.ask(), straight.ask())
    # a version-7 checkpoint (no "spectrum_power_end") continues at its constant power
    legacy = dict(state, own={k: v for k, v in state["own"].items() if k != "spectrum_power_end"})
    old = make("annealed-es", seed=3, spectrum=spec, **kw)
    old.load_state_dict(legacy)
    assert old.power_at(7) == 0.0 and old.spectrum is None  # type: ignore[attr-defined]
    with pytest.raises(XDreamError, match=r"spectrum_power 0 to -1"):
        make("annealed-es", seed=3, **kw).load_state_dict(state)


def test_an_experiment_resumed_during_the_power_schedule_equals_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    from tests.helpers import RedScorer
    from tests.test_experiment import assert_same_records
    from xdream.experiment import Experiment

    def experiment(out: Path) -> Experiment:
        gen = make_generator("fourier", size=32, max_freq=4)
        opt = make(
            "annealed-es",
            dim=gen.code_dim,
            seed=3,
            population_size=12,
            generations=8,
            spectrum=gen.code_spectrum(),
        )
        return Experiment(gen, RedScorer(0.1), opt, out, generations=8, n_references=0, seed=3)

    experiment(tmp_path / "full").run()
    first = experiment(tmp_path / "cut")
    first._start()
    for _ in range(5):  # past the noise checks: the power is moving
        first.step()
    assert first.optimizer.status()["spectrum_power"] == pytest.approx(-0.5 * 5 / 7)
    del first  # "killed": fresh objects, state only from disk
    second = experiment(tmp_path / "cut")
    second.restore()
    assert second.generation == 5
    second.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")
