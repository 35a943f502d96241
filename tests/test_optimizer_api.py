"""One API contract, checked for every registered optimiser (whoever registered it).

Shapes and dtype, idempotent ``ask``, seeded determinism, resume equal to an uninterrupted run,
NaN / all-NaN / constant scores, and improvement on a known function.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from xdream.errors import XDreamError
from xdream.generators.spectrum import CodeSpectrum
from xdream.optimizers import (  # noqa: F401  (registration, whatever the package imports)
    Optimizer,
    annealed_es,
    cholesky_cma,
    make,
    names,
    nevergrad_adapter,
    pycma,
    sep_cma,
    sphere_cma,
)

DIM = 12
TARGET = 2.0 + np.random.default_rng(7).normal(size=DIM)
SPECTRUM = CodeSpectrum.dct(3, 2, 2)  # DIM directions; optimisers that use a spectrum get it

HYPER: dict[str, dict[str, Any]] = {
    # small populations keep the suite fast; everything else is the optimiser's default
    "genetic": {"population_size": 10},
    "fdgd": {"n_samples": 10},
    "nes": {"n_samples": 10},
    "cholesky-cma": {"population_size": 10, "sigma0": 1.0},
    "sep-cma": {"population_size": 10},
    "sphere-cma": {"population_size": 10, "generations": 30},
    "annealed-es": {"population_size": 10, "generations": 30},
    "pycma": {"population_size": 10},
    "pycma-diag": {"population_size": 10},
    "nevergrad": {"optimizer": "TwoPointsDE", "population_size": 10, "budget": 400},
}
NEEDS = {"pycma": "cma", "pycma-diag": "cma", "nevergrad": "nevergrad"}


def build(name: str, seed: int | None = 0, dim: int = DIM) -> Optimizer:
    module = NEEDS.get(name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"optional package {module!r} not installed")
    spectrum = SPECTRUM if dim == DIM else None
    return make(name, dim=dim, seed=seed, spectrum=spectrum, **HYPER.get(name, {}))


def score(codes: np.ndarray) -> np.ndarray:
    """A known function to maximise: ``-0.05 |x - t|^2``."""
    return -0.05 * np.sum((codes - TARGET) ** 2, axis=1)


def with_nans(codes: np.ndarray) -> np.ndarray:
    s = score(codes)
    s[1::4] = np.nan
    return s


def run(opt: Optimizer, generations: int, f: Callable[[np.ndarray], np.ndarray] = score) -> None:
    for _ in range(generations):
        codes = opt.ask()
        opt.tell(codes, f(codes))


ALL = names()


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_idempotent_ask(name: str) -> None:
    opt = build(name)
    codes = opt.ask()
    assert codes.dtype == np.float32 and codes.ndim == 2 and codes.shape[1] == DIM
    assert np.isfinite(codes).all()
    ids = opt.image_ids
    assert len(ids) == len(codes) == len(opt.genealogy) and len(set(ids)) == len(ids)
    np.testing.assert_array_equal(opt.ask(), codes)  # no tell in between: same codes
    assert opt.image_ids == ids
    opt.tell(codes, score(codes))
    assert opt.generation == 1 and opt.best.score == score(codes).max()
    assert opt.ask().shape[1] == DIM


@pytest.mark.parametrize("name", ALL)
def test_the_rng_is_numpys_pcg64_as_checkpoints_record_it(name: str) -> None:
    """Every optimiser draws from PCG64 seeded as NumPy's default_rng seeds it, and its state
    says so: checkpoints written by earlier runs hold PCG64 states, which another bit generator
    would refuse to restore, and a seed must draw what it drew before (audit C: the
    determinism tests pass for any generator)."""
    from xdream.optimizers.base import make_rng

    state = build(name, seed=3).state_dict()["rng"]
    assert state["bit_generator"] == "PCG64"
    assert make_rng(3).random(4).tolist() == np.random.default_rng(3).random(4).tolist()


@pytest.mark.parametrize("name", ALL)
def test_seeded_determinism(name: str) -> None:
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    for _ in range(4):
        ca, cb, cc = a.ask(), b.ask(), c.ask()
        np.testing.assert_array_equal(ca, cb)
        for opt, codes in ((a, ca), (b, cb), (c, cc)):
            opt.tell(codes, with_nans(codes))
    ca, cb = a.ask(), b.ask()  # both asked: ids an optimiser leaves to the base class agree too
    np.testing.assert_array_equal(ca, cb)
    assert not np.array_equal(ca, c.ask())
    assert a.image_ids == b.image_ids


@pytest.mark.parametrize("name", ALL)
def test_seed_says_how_to_draw_the_same_again(name: str) -> None:
    """``seed`` is the one given, or for an unseeded optimiser the entropy NumPy drew, which
    draws the same codes again (summary.json records it)."""
    assert build(name, seed=3).seed == 3
    unseeded = build(name, seed=None)
    assert isinstance(unseeded.seed, int)
    again = build(name, seed=unseeded.seed)
    for _ in range(2):
        codes = unseeded.ask()
        np.testing.assert_array_equal(codes, again.ask())
        unseeded.tell(codes, score(codes))
        again.tell(codes, score(codes))


@pytest.mark.parametrize("name", ALL)
def test_a_numpy_integer_seed_is_reported_as_the_seed(name: str) -> None:
    """A seed from ``np.arange`` seeded the optimiser but ``seed`` read ``None``, so the run
    recorded its seed as null: it is the Python int, and draws as that int does."""
    numpy_seeded, seeded = build(name, seed=np.int64(3)), build(name, seed=3)  # type: ignore[arg-type]
    assert numpy_seeded.seed == 3 and type(numpy_seeded.seed) is int
    np.testing.assert_array_equal(numpy_seeded.ask(), seeded.ask())


def test_an_optimizer_whose_ask_has_the_wrong_shape_is_named() -> None:
    """A user's optimiser whose _ask() returned another shape gave a bare AssertionError (and
    none under python -O)."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Params:
        population_size: int = 4

    class Wide(Optimizer):
        name = "wide"

        def _ask(self) -> np.ndarray:
            return np.zeros((4, self.dim + 1))

        def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
            pass

    with pytest.raises(XDreamError, match=r"^optimizer 'wide': _ask\(\) returned codes of shape "
                       r"\(4, 13\); expected \(n, 12\)"):  # fmt: skip
        Wide(DIM, Params()).ask()


def test_scores_that_are_not_real_numbers_are_refused_by_tell() -> None:
    """String scores failed with a raw ValueError; complex ones were taken, their imaginary
    part dropped without a word."""
    opt = build("genetic")
    codes = opt.ask()
    with pytest.raises(XDreamError, match=r"^scores must be real numbers or NaN .*got \['x'"):
        opt.tell(codes, ["x"] * len(codes))
    with pytest.raises(XDreamError, match=r"got complex numbers$"):
        opt.tell(codes, np.arange(len(codes)) + 5j)
    assert opt.generation == 0
    opt.tell(codes, list(range(len(codes))))  # plain numbers are taken
    assert opt.generation == 1


@pytest.mark.parametrize("name", ALL)
def test_resume_equals_uninterrupted(name: str) -> None:
    straight = build(name, seed=5)
    run(straight, 3, with_nans)
    first = build(name, seed=5)
    run(first, 3, with_nans)
    first.ask()  # a pending ask must not disturb the checkpoint
    state = pickle.loads(pickle.dumps(first.state_dict()))
    resumed = build(name, seed=999)  # the checkpoint overrides the seed
    resumed.load_state_dict(state)
    assert resumed.status() == first.status()  # what it found out survives too
    assert resumed.best.score == first.best.score  # the best so far, before any generation
    np.testing.assert_array_equal(resumed.best.code, first.best.code)  # could overtake it
    if name in ("annealed-es", "cholesky-cma", "sep-cma", "pycma", "pycma-diag"):
        assert resumed.status()["step_size"] > 0
    json.dumps(resumed.status())  # and can go to summary.json
    for _ in range(3):
        a, b = straight.ask(), resumed.ask()
        np.testing.assert_array_equal(a, b)
        assert straight.image_ids == resumed.image_ids
        straight.tell(a, with_nans(a))
        resumed.tell(b, with_nans(b))
    assert straight.best.score == resumed.best.score
    assert straight.generation == resumed.generation == 6


@pytest.mark.parametrize("name", ALL)
def test_nan_all_nan_and_constant_scores_survive(name: str) -> None:
    opt = build(name)
    for scores in (with_nans, lambda c: np.full(len(c), np.nan), lambda c: np.full(len(c), 2.0)):
        for _ in range(3):
            codes = opt.ask()
            opt.tell(codes, scores(codes))
            assert np.isfinite(opt.ask()).all()
    assert opt.generation == 9
    run(opt, 2)  # and it carries on normally
    assert np.isfinite(opt.best.score)


@pytest.mark.parametrize("name", ALL)
def test_refuses_foreign_codes_and_inf(name: str) -> None:
    opt = build(name)
    codes = opt.ask()
    with pytest.raises(XDreamError):
        opt.tell(codes + 1.0, score(codes))
    clipped = codes.copy()
    clipped[3] = np.clip(clipped[3], -0.01, 0.01)  # changed by the caller: the shape is the same
    with pytest.raises(XDreamError) as err:
        opt.tell(clipped, score(codes))
    assert (
        f"these have the same shape {codes.shape} but different values (1 of {len(codes)} codes "
        "differ, the first at row 3); tell the codes unchanged"
    ) in str(err.value)
    with pytest.raises(XDreamError, match="inf"):
        opt.tell(codes, np.full(len(codes), np.inf))
    assert opt.generation == 0
    opt.tell(codes, score(codes))


@pytest.mark.parametrize("name", ALL)
def test_improves_on_a_known_function(name: str) -> None:
    opt = build(name, seed=1)
    start = score(opt.ask()).max()
    run(opt, 30)
    assert opt.best.score > 0.6 * start, (start, opt.best.score)  # closes 40% of the gap to 0


@pytest.mark.parametrize("name", ALL)
def test_state_of_another_population_size_is_refused(name: str) -> None:
    """A state holds no hyperparameters, but one drawn for another population size must not
    load (it would show one generation of the old size, then the new one)."""
    key = "n_samples" if name in ("fdgd", "nes") else "population_size"
    other = build(name)
    codes = other.ask()
    other.tell(codes, score(codes))
    state = other.state_dict()
    hyper = {**HYPER.get(name, {}), key: 14}
    bigger, twin = (make(name, dim=DIM, seed=0, spectrum=SPECTRUM, **hyper) for _ in "ab")
    for opt in (bigger, twin):
        run(opt, 1)
    with pytest.raises(XDreamError, match="checkpoint"):
        bigger.load_state_dict(state)
    # refused, it is as it was (it had taken the state's RNG, generation, best and ids, and
    # cholesky-cma the state's 10 codes for its population of 14: audit C)
    assert bigger.generation == twin.generation == 1
    assert bigger.best.score == twin.best.score
    np.testing.assert_array_equal(bigger.ask(), twin.ask())
    run(bigger, 1)
    run(twin, 1)
    np.testing.assert_array_equal(bigger.ask(), twin.ask())


@pytest.mark.parametrize("name", ALL)
def test_state_of_another_dimension_is_refused_by_name_and_dimension(name: str) -> None:
    state = build(name).state_dict()
    other = build(name, dim=DIM + 1)
    with pytest.raises(XDreamError, match=f"checkpoint is for optimizer '{name}' with dim {DIM},"):
        other.load_state_dict(state)


@pytest.mark.parametrize("name", ALL)
def test_a_tie_keeps_the_first_best_code(name: str) -> None:
    opt = build(name)
    first = opt.ask()
    opt.tell(first, np.full(len(first), 1.0))
    np.testing.assert_array_equal(opt.best.code, first[0])
    codes = opt.ask()
    opt.tell(codes, np.full(len(codes), 1.0))
    np.testing.assert_array_equal(opt.best.code, first[0])


@pytest.mark.parametrize("name", ALL)
def test_the_best_code_is_a_copy_of_the_told_codes(name: str) -> None:
    """The caller may reuse its array of codes after ``tell``: the best code must not change."""
    opt = build(name)
    codes = opt.ask()
    scores = score(codes)
    opt.tell(codes, scores)
    best = codes[int(np.argmax(scores))].copy()
    codes[:] = 0.0
    np.testing.assert_array_equal(opt.best.code, best)
    state = opt.state_dict()
    assert state["best_code"] is not None
    np.testing.assert_array_equal(state["best_code"], best)


def test_an_optimizer_that_names_no_codes_gets_the_default_ids() -> None:
    """Ids are ``gen{generation:03d}_{index:06d}`` (spec 2) for an optimiser that leaves them
    to the base class, renumbered after each ``tell``."""
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Params:
        population_size: int = 3

    class Fixed(Optimizer):
        name = "fixed"

        def _ask(self) -> np.ndarray:
            return np.full((3, self.dim), float(self.generation))

        def _tell(self, codes: np.ndarray, scores: np.ndarray) -> None:
            pass

    opt = Fixed(DIM, Params())
    codes = opt.ask()
    assert opt.image_ids == ["gen000_000000", "gen000_000001", "gen000_000002"]
    assert opt.genealogy == ["", "", ""]
    opt.tell(codes, np.zeros(3))
    opt.ask()
    assert opt.image_ids == ["gen001_000000", "gen001_000001", "gen001_000002"]


@pytest.mark.parametrize("name", ALL)
def test_refused_codes_never_become_the_best(name: str) -> None:
    opt = build(name)
    codes = opt.ask()
    with pytest.raises(XDreamError):
        opt.tell(codes + 1.0, np.full(len(codes), 1e6))  # not the codes asked for
    assert opt.best.score == -np.inf and opt.best.code is None


@pytest.mark.parametrize("name", ALL)
def test_a_state_is_a_snapshot(name: str) -> None:
    """Changing the arrays of a state in place (as a caller reusing them might) must not
    change the optimiser's next codes."""
    opt, twin = build(name, seed=2), build(name, seed=2)
    if name == "cholesky-cma":  # with a factor update behind it, so its arrays are in the state
        opt, twin = (
            make(name, dim=DIM, seed=2, population_size=10, a_update_every=1) for _ in "ab"
        )
    for o in (opt, twin):
        run(o, 2, with_nans)
    state = opt.state_dict()

    def spoil(value: Any) -> None:
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            value[...] = 0.0
        elif isinstance(value, dict):
            for item in value.values():
                spoil(item)

    spoil(state)
    np.testing.assert_array_equal(opt.ask(), twin.ask())
    run(opt, 1)
    run(twin, 1)
    np.testing.assert_array_equal(opt.ask(), twin.ask())
