"""Tests of the XDream optimisers: API, exact GA rules (spec 2), FDGD (spec 3) and NES (spec 4)."""

from __future__ import annotations

import doctest
import math
import pickle
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xdream.errors import ConfigError, XDreamError
from xdream.optimizers import Optimizer, fdgd, genetic, make, names, nes
from xdream.optimizers.fdgd import FDGD
from xdream.optimizers.genetic import CARRIED, CONSERVED, fitness
from xdream.optimizers.nes import NES

ALL = ["genetic", "fdgd", "nes"]
DIM = 50
TARGET = np.random.default_rng(1).normal(size=DIM)


def make_fdgd(**hyper: Any) -> FDGD:
    opt = make("fdgd", dim=DIM, **hyper)
    assert isinstance(opt, FDGD)
    return opt


def make_nes(**hyper: Any) -> NES:
    opt = make("nes", dim=DIM, **hyper)
    assert isinstance(opt, NES)
    return opt


def sphere(codes: np.ndarray) -> np.ndarray:
    """A known function to maximise: ``-0.03 ||x - t||^2`` (maximum 0 at ``TARGET``)."""
    return -0.03 * np.sum((codes - TARGET) ** 2, axis=1)


def run(
    opt: Optimizer, generations: int, score: Callable[[np.ndarray], np.ndarray] = sphere
) -> None:
    for _ in range(generations):
        codes = opt.ask()
        opt.tell(codes, score(codes))


def with_nans(codes: np.ndarray) -> np.ndarray:
    """Sphere scores with every seventh-ish code unanswered, to exercise NaN paths."""
    scores = sphere(codes)
    scores[::7] = np.nan
    return scores


# ----------------------------------------------------------------------------- shared API
def test_registered() -> None:
    assert set(ALL) <= set(names())


@pytest.mark.parametrize("module", [genetic, fdgd, nes])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", ALL)
def test_ask_shape_and_idempotent(name: str) -> None:
    opt = make(name, dim=DIM, seed=0)
    first, ids = opt.ask(), opt.image_ids
    assert first.dtype == np.float32 and first.shape == (20, DIM)
    second = opt.ask()  # no tell in between: the same pending codes, no RNG consumed
    np.testing.assert_array_equal(first, second)
    assert opt.image_ids == ids and len(set(ids)) == len(ids)
    assert all(i.startswith("gen000_") for i in ids)
    opt.tell(first, sphere(first))
    assert opt.generation == 1
    assert any(i.startswith("gen001_") for i in opt.image_ids)
    assert not np.array_equal(opt.ask(), first)


@pytest.mark.parametrize("name", ALL)
def test_seeded_determinism(name: str) -> None:
    a, b, c = (make(name, dim=DIM, seed=s) for s in (7, 7, 8))
    for _ in range(5):
        ca, cb, cc = a.ask(), b.ask(), c.ask()
        np.testing.assert_array_equal(ca, cb)
        assert not np.array_equal(ca, cc)
        for opt, codes in ((a, ca), (b, cb), (c, cc)):
            opt.tell(codes, with_nans(codes))
    assert a.image_ids == b.image_ids and a.genealogy == b.genealogy


@pytest.mark.parametrize("name", ALL)
def test_resume_equals_uninterrupted(name: str) -> None:
    hyper: dict[str, Any] = {"n_conserve": 2} if name == "genetic" else {}
    straight = make(name, dim=DIM, seed=3, **hyper)
    run(straight, 4, with_nans)
    first = make(name, dim=DIM, seed=3, **hyper)
    run(first, 4, with_nans)
    first.ask()  # a pending ask must not disturb the checkpoint
    state = pickle.loads(pickle.dumps(first.state_dict()))
    resumed = make(name, dim=DIM, seed=999, **hyper)  # seed is overwritten by the checkpoint
    resumed.load_state_dict(state)
    for _ in range(4):
        a, b = straight.ask(), resumed.ask()
        np.testing.assert_array_equal(a, b)
        assert straight.image_ids == resumed.image_ids
        assert straight.genealogy == resumed.genealogy
        straight.tell(a, with_nans(a))
        resumed.tell(b, with_nans(b))
    assert straight.best.score == resumed.best.score
    assert straight.best.code is not None and resumed.best.code is not None
    np.testing.assert_array_equal(straight.best.code, resumed.best.code)
    assert straight.generation == resumed.generation == 8


@pytest.mark.parametrize("name", ALL)
def test_checkpoint_of_other_optimizer_rejected(name: str) -> None:
    other = "nes" if name != "nes" else "fdgd"
    state = make(other, dim=DIM, seed=0).state_dict()
    with pytest.raises(XDreamError, match="checkpoint"):
        make(name, dim=DIM, seed=0).load_state_dict(state)


@pytest.mark.parametrize("name", ALL)
def test_bad_input(name: str) -> None:
    opt = make(name, dim=DIM, seed=0)
    codes = opt.ask()
    bad = codes.copy()
    bad[0, 0] = np.nan
    with pytest.raises(XDreamError, match="NaN or inf"):
        opt.tell(bad, sphere(codes))
    with pytest.raises(XDreamError, match="shape"):
        opt.tell(codes[:, :-1], sphere(codes))
    with pytest.raises(XDreamError, match="shape"):
        opt.tell(codes, sphere(codes)[:-1])
    with pytest.raises(XDreamError, match="inf"):
        opt.tell(codes, np.full(len(codes), np.inf))
    with pytest.raises(XDreamError, match="last ask"):
        opt.tell(codes + 1.0, sphere(codes))
    with pytest.raises(XDreamError, match="NaN or inf"):
        make(name, dim=DIM, init_codes=np.full((2, DIM), np.nan, dtype=np.float32))
    with pytest.raises(XDreamError, match="empty"):
        make(name, dim=DIM, init_codes=np.zeros((0, DIM), dtype=np.float32))
    assert opt.generation == 0  # nothing was consumed by the rejected calls
    opt.tell(codes, sphere(codes))


@pytest.mark.parametrize(
    ("name", "key", "near"),
    [
        ("genetic", "populaton_size", "population_size"),
        ("genetic", "mutation_rat", "mutation_rate"),
        ("fdgd", "learningrate", "learning_rate"),
        ("nes", "radius_lr", "radius_learning_rate"),
    ],
)
def test_unknown_hyperparameter_names_nearest(name: str, key: str, near: str) -> None:
    with pytest.raises(ConfigError, match=f"Did you mean '{near}'"):
        make(name, dim=DIM, **{key: 1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "hyper", "message"),
    [
        ("genetic", {"population_size": 1}, "population_size"),
        ("genetic", {"n_conserve": 20}, "n_conserve"),
        ("genetic", {"mutation_rate": 1.5}, "mutation_rate"),
        ("genetic", {"mutation_size": -1.0}, "mutation_size"),
        ("genetic", {"selectivity": 0.0}, "selectivity"),
        ("genetic", {"heritability": math.nan}, "heritability"),
        ("genetic", {"kT_multiplier": -2.0}, "kT_multiplier"),
        ("fdgd", {"n_samples": 1}, "n_samples"),
        ("fdgd", {"search_radius": 0.0}, "search_radius"),
        ("fdgd", {"learning_rate": math.inf}, "learning_rate"),
        ("nes", {"n_samples": 2.5}, "n_samples"),
        ("nes", {"radius_learning_rate": -0.1}, "radius_learning_rate"),
    ],
)
def test_invalid_hyperparameters(name: str, hyper: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make(name, dim=DIM, **hyper)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(ALL),
    scores=st.lists(
        st.one_of(
            st.just(math.nan),
            st.sampled_from([0.0, 1.0, -1.0]),  # ties and constants
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
        ),
        min_size=3,
        max_size=3,
    ),
)
def test_nan_constant_and_tied_scores_survive(name: str, scores: list[float]) -> None:
    opt = make(name, dim=5, seed=0, n_samples=6) if name != "genetic" else None
    opt = opt or make("genetic", dim=5, seed=0, population_size=6, n_conserve=1)
    pattern = np.resize(np.array(scores), 6)
    for _ in range(3):
        codes = opt.ask()
        opt.tell(codes, pattern)
        assert np.isfinite(opt.ask()).all()


# -------------------------------------------------------------------- genetic (spec 2)
def test_defaults_are_xdreams_fc6_values_and_the_first_population_is_standard_normal() -> None:
    """Spec 2: P 20, mutation rate 0.5 and size 0.5, selectivity 2, heritability 0.5,
    n_conserve 0, XDream's kT rule; the initial population is N(0, 1) of shape (P, dim)."""
    opt = make("genetic", dim=500, seed=0)
    p = opt.params
    assert (p.population_size, p.mutation_rate, p.mutation_size) == (20, 0.5, 0.5)
    assert (p.selectivity, p.heritability, p.n_conserve, p.kT_multiplier) == (2.0, 0.5, 0, None)
    pop = opt.ask().astype(np.float64)
    assert pop.shape == (20, 500) and opt.genealogy == ["init"] * 20
    # 10,000 draws: standard errors 0.01 (mean) and 0.007 (sd)
    assert abs(pop.mean()) < 0.04 and abs(pop.std() - 1.0) < 0.03


def test_fitness_matches_hand_computation_with_std_before_clip() -> None:
    scores = np.array([*range(19), 100.0])  # one outlier that would dominate without the clip
    order, f = fitness(scores, selectivity=2.0)
    assert order[0] == 19 and list(order[1:]) == list(range(18, -1, -1))
    p95 = 18 + 0.05 * (100 - 18)  # linear interpolation at rank 0.95 * 19 = 18.05
    kT = statistics.pstdev(scores.tolist()) / 2.0  # std of the UNclipped scores
    expected = [math.exp((min(s, p95) - p95) / kT) for s in sorted(scores, reverse=True)]
    np.testing.assert_allclose(f, expected, rtol=1e-12)
    # The clip puts the outlier level with the runner-up's neighbourhood: no single winner.
    assert f[0] == 1.0 and f[1] > 0.5
    # std taken after the clip would give a different (sharper) fitness.
    kT_after = statistics.pstdev([min(s, p95) for s in scores]) / 2.0
    after = [math.exp((min(s, p95) - p95) / kT_after) for s in sorted(scores, reverse=True)]
    assert not np.allclose(f, after)


def test_fitness_rig_variant_and_underflow() -> None:
    scores = np.array([3.0, 1.0, 2.0, 10.0])
    order, f = fitness(scores, selectivity=2.0, kT_multiplier=2.0)
    kT = statistics.pstdev(scores.tolist()) * 2.0
    np.testing.assert_allclose(f, [math.exp((s - 10.0) / kT) for s in (10, 3, 2, 1)])
    assert list(order) == [3, 0, 2, 1]
    # exp underflows to 0 for the loser: it gets the smallest positive fitness instead.
    _, f = fitness(np.array([0.0, 1.0]), selectivity=1e6)
    assert list(f) == [1.0, 1.0]
    # constant scores: kT floors at 1e-8, everyone equally fit.
    _, f = fitness(np.full(5, 4.0), selectivity=2.0)
    assert list(f) == [1.0] * 5


def test_fitness_temperature_floor_is_1e_8_so_tiny_differences_still_select() -> None:
    """Spec 2.2: kT = max(std / selectivity, 1e-8); scores 1e-6 apart keep their own kT."""
    scores = np.array([0.0, 1e-6])
    _, f = fitness(scores, selectivity=2.0)
    kT = 0.5e-6 / 2.0  # population std of the two scores, over the selectivity
    p95 = 0.95e-6  # the clip: linear interpolation at rank 0.95
    np.testing.assert_allclose(f, [1.0, math.exp(-p95 / kT)], rtol=1e-9)
    assert f[1] < 0.03


def test_fitness_of_huge_scores_keeps_its_temperature() -> None:
    """The std is scale-safe: squares that overflow must not make selection uniform (kT = inf)
    or NaN (scores near the largest float)."""
    scores = np.array([1.0, -1.0, 0.0, 1e-100])
    _, small = fitness(scores, selectivity=2.0)
    for scale in (1e200, 1.7e308):
        order, f = fitness(scores * scale, selectivity=2.0)
        assert list(order) == [0, 3, 2, 1]
        np.testing.assert_allclose(f, small, rtol=1e-12)
        assert f[-1] < 0.01  # not uniform
    opt = make("genetic", dim=4, seed=0, population_size=4)
    codes = opt.ask()
    opt.tell(codes, np.array([1.7e308, -1.7e308, 0.0, 1.0]))
    assert np.isfinite(opt.ask()).all()


def test_outlier_does_not_take_over_selection() -> None:
    def outlier_share(**clip: Any) -> float:
        opt = make("genetic", dim=4, seed=0, population_size=400, mutation_rate=0.0, **clip)
        codes, ids = opt.ask(), opt.image_ids
        scores = np.linspace(0.0, 1.0, 400)
        scores[-1] = 1e6
        opt.tell(codes, scores)
        parents = [g.split("+")[0] for g in opt.genealogy]
        return parents.count(ids[-1]) / len(parents)

    assert outlier_share() < 0.02  # clipped at the 95th percentile: one code among many
    assert outlier_share(kT_multiplier=0.5) == 1.0  # same kT, no clip: it fathers every child


def test_elites_conserved_with_their_ids() -> None:
    opt = make("genetic", dim=DIM, seed=0, n_conserve=3)
    codes, ids = opt.ask(), opt.image_ids
    scores = sphere(codes)
    opt.tell(codes, scores)
    top = np.argsort(-scores)[:3]
    new = opt.ask()
    np.testing.assert_array_equal(new[:3], codes[top])
    assert opt.image_ids[:3] == [ids[i] for i in top]
    assert opt.genealogy[:3] == [CONSERVED] * 3
    assert all(i.startswith("gen001_") for i in opt.image_ids[3:])


def test_tied_elites_are_conserved_in_population_order() -> None:
    """Ranking is stable (spec 2.3 sorts; ties keep population order), also in a population
    of 40 where an unstable sort reorders tied scores."""
    opt = make("genetic", dim=4, seed=0, population_size=40, n_conserve=5)
    codes, ids = opt.ask(), opt.image_ids
    opt.tell(codes, np.array([1.0, 3.0, 2.0, 3.0] * 10))
    np.testing.assert_array_equal(opt.ask()[:5], codes[[1, 3, 5, 7, 9]])
    assert opt.image_ids[:5] == [ids[i] for i in (1, 3, 5, 7, 9)]


def test_children_ids_are_numbered_by_their_place_in_the_population() -> None:
    """Ids are gen{step:03d}_{index:06d}: children follow the carried and conserved codes."""
    opt = make("genetic", dim=DIM, seed=0, n_conserve=3)
    codes = opt.ask()
    scores = sphere(codes)
    scores[[4, 9]] = np.nan
    opt.tell(codes, scores)
    assert opt.genealogy[:5] == [CARRIED] * 2 + [CONSERVED] * 3
    assert opt.image_ids[5:] == [f"gen001_{i:06d}" for i in range(5, 20)]


def test_nan_codes_carried_unchanged_before_elites() -> None:
    opt = make("genetic", dim=DIM, seed=0, n_conserve=1)
    run(opt, 2)
    codes, ids = opt.ask(), opt.image_ids
    scores = sphere(codes)
    scores[[3, 7]] = np.nan
    opt.tell(codes, scores)
    new = opt.ask()
    np.testing.assert_array_equal(new[:2], codes[[3, 7]])
    assert opt.image_ids[:2] == [ids[3], ids[7]]
    assert opt.genealogy[:3] == [CARRIED, CARRIED, CONSERVED]
    np.testing.assert_array_equal(new[2], codes[np.nanargmax(scores)])
    assert len(new) == 20 and len(set(opt.image_ids)) == 20


def test_all_nan_generation_carries_everything() -> None:
    opt = make("genetic", dim=DIM, seed=0)
    run(opt, 1)
    codes, ids = opt.ask(), opt.image_ids
    opt.tell(codes, np.full(20, np.nan))
    np.testing.assert_array_equal(opt.ask(), codes)
    assert opt.image_ids == ids and opt.genealogy == [CARRIED] * 20
    assert opt.generation == 2
    opt.tell(codes, sphere(codes))  # and the run goes on normally
    assert not np.array_equal(opt.ask(), codes)


def _children_and_parents(
    hyper: dict[str, Any], generations: int = 3
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """(child, parent A, parent B, genealogy) for every child of several generations."""
    opt = make("genetic", dim=200, seed=1, **hyper)
    out = []
    for _ in range(generations):
        codes, ids = opt.ask(), opt.image_ids
        by_id = dict(zip(ids, codes))
        opt.tell(codes, sphere(codes[:, :DIM]))
        for child, lineage in zip(opt.ask(), opt.genealogy):
            a, b, *rest = lineage.split("+")
            out.append((child, by_id[a], by_id[b], "+".join(rest)))
    return out


def test_without_mutation_every_gene_comes_from_a_recorded_parent() -> None:
    for child, a, b, rest in _children_and_parents({"mutation_rate": 0.0}):
        assert rest == ""
        assert np.all((child == a) | (child == b))


def test_mutation_rate_and_size() -> None:
    changed, steps = [], []
    for child, a, b, rest in _children_and_parents({"mutation_rate": 0.3, "mutation_size": 2.0}):
        assert rest == "mut"
        off = (child != a) & (child != b)
        changed.append(off.mean())
        steps.extend(np.minimum(abs(child - a), abs(child - b))[off])
    assert abs(np.mean(changed) - 0.3) < 0.03
    assert 1.0 < np.std(steps) < 3.0  # roughly N(0, 2^2), seen through the nearest parent


@pytest.mark.parametrize("size", [0.5, 2.0])
def test_mutation_size_is_the_standard_deviation_of_each_step(size: float) -> None:
    """Spec 2.7: + N(0, mutation_size^2). With heritability 1 every gene comes from parent A,
    so child - A over the mutated genes is that normal exactly (not seen through a parent)."""
    steps = []
    for child, a, _, _ in _children_and_parents(
        {"mutation_rate": 0.3, "mutation_size": size, "heritability": 1.0}
    ):
        steps.extend((child - a)[child != a].astype(np.float64))
    # about 3 generations x 20 children x 200 genes x 0.3 = 3600 steps: one standard error is
    # 1.2% of the sd for the sample sd and size / 60 for the mean (bounds: 4 and 3 of them)
    assert len(steps) > 3000
    assert np.std(steps) == pytest.approx(size, rel=0.05)
    assert abs(np.mean(steps)) < 0.05 * size


@pytest.mark.parametrize(("h", "expected"), [(0.8, 0.8), (0.2, 0.8), (1.0, 1.0), (1.7, 1.0)])
def test_heritability_clipped_and_mirrored(h: float, expected: float) -> None:
    assert genetic.GeneticParams(heritability=h).effective_heritability == expected
    share = [
        np.mean(child == a)
        for child, a, b, _ in _children_and_parents({"mutation_rate": 0.0, "heritability": h})
        if not np.array_equal(a, b)
    ]
    assert abs(np.mean(share) - expected) < 0.03


def test_heritability_mirror_is_exact() -> None:
    a = make("genetic", dim=DIM, seed=5, heritability=0.2)
    b = make("genetic", dim=DIM, seed=5, heritability=0.8)
    run(a, 3)
    run(b, 3)
    np.testing.assert_array_equal(a.ask(), b.ask())


def test_roulette_with_replacement_follows_fitness() -> None:
    n = 2000
    opt = make("genetic", dim=1, seed=0, population_size=n, mutation_rate=0.0)
    codes, ids = opt.ask(), opt.image_ids
    scores = np.random.default_rng(0).normal(size=n)
    opt.tell(codes, scores)
    order, f = fitness(scores, selectivity=2.0)
    p = np.empty(n)
    p[order] = f / f.sum()
    bins = np.digitize(p, np.quantile(p, [0.2, 0.4, 0.6, 0.8]))  # five groups by fitness
    row = {code_id: i for i, code_id in enumerate(ids)}
    pairs = [[row[x] for x in g.split("+")[:2]] for g in opt.genealogy]
    for slot in (0, 1):  # parent A and parent B: independent draws from the same wheel
        drawn = np.array([pair[slot] for pair in pairs])
        share = np.bincount(bins[drawn], minlength=5) / n
        np.testing.assert_allclose(share, [p[bins == b].sum() for b in range(5)], atol=0.03)
        assert np.bincount(drawn).max() > 1  # the same code drawn again: with replacement
    assert any(a == b for a, b in pairs)  # a code can even mate with itself
    # ... as often as two independent draws agree: sum p^2, not always (parent B = parent A)
    same = sum(a == b for a, b in pairs) / n
    assert abs(same - float(np.sum(p**2))) < 0.005  # sum p^2 = 0.002, one s.e. 0.001


def test_init_codes_fill_and_truncate() -> None:
    loaded = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    opt = make("genetic", dim=DIM, seed=0, init_codes=loaded)
    pop = opt.ask()
    np.testing.assert_array_equal(pop[:3], loaded)
    assert opt.genealogy[:3] == ["loaded"] * 3
    assert all(g.count("+") >= 1 for g in opt.genealogy[3:])
    assert np.isfinite(pop).all() and len(np.unique(pop, axis=0)) == 20
    many = np.random.default_rng(0).normal(size=(25, DIM)).astype(np.float32)
    opt = make("genetic", dim=DIM, seed=0, init_codes=many)
    np.testing.assert_array_equal(opt.ask(), many[:20])


def test_init_codes_fill_draws_both_parents_uniformly_from_every_loaded_code() -> None:
    loaded = np.random.default_rng(0).normal(size=(3, DIM)).astype(np.float32)
    opt = make("genetic", dim=DIM, seed=0, population_size=300, init_codes=loaded)
    parents = [g.split("+")[:2] for g in opt.genealogy[3:]]
    for slot in (0, 1):
        drawn = [pair[slot] for pair in parents]
        # 297 draws of p = 1/3 each: a share's standard error is 0.027
        for i in range(3):
            assert abs(drawn.count(f"gen000_{i:06d}") / len(drawn) - 1 / 3) < 0.1
    # drawn independently: the two parents differ 2 times in 3 (not always the same code)
    assert abs(sum(a != b for a, b in parents) / len(parents) - 2 / 3) < 0.1


def test_genetic_improves() -> None:
    opt = make("genetic", dim=DIM, seed=0)
    first = sphere(opt.ask()).max()
    run(opt, 60)
    assert opt.best.score > first + 0.3


# -------------------------------------------------------------------- FDGD (spec 3), NES (spec 4)
@pytest.mark.parametrize("name", ["fdgd", "nes"])
def test_climbs_a_known_function(name: str) -> None:
    opt = make_fdgd(seed=0) if name == "fdgd" else make_nes(seed=0)
    start = np.linalg.norm(opt.mean - TARGET)
    run(opt, 100)
    assert np.linalg.norm(opt.mean - TARGET) < 0.05 * start
    assert opt.best.score > sphere(np.zeros((1, DIM)))[0]


def test_fdgd_and_nes_defaults_are_xdreams_values() -> None:
    """Spec 3 and 4: N 20, r 1.25, lr 1.25 (FDGD, antithetic) and 1.75 (NES, radius learning
    rate 0.05); the centre starts at zeros and the perturbations have sd r."""
    fd, ne = make("fdgd", dim=200, seed=0), make("nes", dim=200, seed=0)
    assert isinstance(fd, FDGD) and isinstance(ne, NES)
    p = fd.params
    assert (p.n_samples, p.search_radius, p.learning_rate, p.antithetic) == (20, 1.25, 1.25, True)
    q = ne.params
    assert (q.n_samples, q.search_radius, q.learning_rate, q.radius_learning_rate) == (
        20,
        1.25,
        1.75,
        0.05,
    )
    for opt in (fd, ne):
        assert not opt.mean.any() and opt.ask().shape == (20, 200)
        # 10 perturbations x 200 entries: the sample sd's standard error is 0.02
        assert np.std(opt.ask()[:10].astype(np.float64)) == pytest.approx(1.25, abs=0.08)


def test_fdgd_step_matches_spec() -> None:
    for antithetic in (True, False):
        opt = make_fdgd(seed=2, n_samples=7, antithetic=antithetic)
        x = opt.mean
        codes = opt.ask().astype(np.float64)
        scores = sphere(codes)
        if antithetic:  # odd N uses N - 1 samples: pairs (i, i + 3)
            assert len(codes) == 6
            d = codes[:3] - x
            np.testing.assert_allclose(codes[3:] - x, -d, atol=1e-6)
            delta = (scores[:3] - scores[3:]) / 2
        else:  # x itself, then N - 1 perturbed
            assert len(codes) == 7
            np.testing.assert_array_equal(codes[0], x.astype(np.float32))
            d = codes[1:] - x
            delta = scores[1:] - scores[0]
        nu = np.abs(d).mean(axis=1)
        g = np.mean(delta[:, None] * d / nu[:, None] ** 2, axis=0)
        opt.tell(opt.ask(), scores)
        np.testing.assert_allclose(opt.mean, x + 1.25 * g, atol=1e-4)


def test_fdgd_nan_pairs_dropped_and_all_nan_keeps_centre() -> None:
    opt = make_fdgd(seed=2, n_samples=6, learning_rate=0.5)
    x, codes = opt.mean, opt.ask()
    scores = sphere(codes)
    scores[4] = np.nan  # the minus member of pair 1
    d = codes[:3].astype(np.float64) - x
    keep = [0, 2]
    delta = (scores[keep] - scores[[3, 5]]) / 2
    nu = np.abs(d[keep]).mean(axis=1)
    g = np.mean(delta[:, None] * d[keep] / nu[:, None] ** 2, axis=0)
    opt.tell(codes, scores)
    np.testing.assert_allclose(opt.mean, x + 0.5 * g, atol=1e-4)
    x, codes = opt.mean, opt.ask()
    opt.tell(codes, np.full(6, np.nan))
    np.testing.assert_array_equal(opt.mean, x)
    assert not np.array_equal(opt.ask(), codes)  # fresh samples around the same centre
    # without antithetic pairs every difference needs f(x): a missing centre keeps the centre
    opt = make_fdgd(seed=2, n_samples=6, antithetic=False)
    x, codes = opt.mean, opt.ask()
    scores = sphere(codes)
    scores[0] = np.nan
    opt.tell(codes, scores)
    np.testing.assert_array_equal(opt.mean, x)


def test_nes_step_and_radius_match_spec() -> None:
    opt = make_nes(seed=4, n_samples=8, search_radius=0.5, radius_learning_rate=0.1)
    x, r, codes = opt.mean, opt.radius, opt.ask()
    scores = sphere(codes)
    scores[6] = np.nan  # the minus member of pair 2: pair 2 is dropped
    eps = (codes[:4].astype(np.float64) - x) / r
    np.testing.assert_allclose((codes[4:] - x) / r, -eps, atol=1e-5)
    keep = [0, 1, 3]
    e = np.concatenate([eps[keep], -eps[keep]])
    f = np.concatenate([scores[keep], scores[[4, 5, 7]]])
    g = (f[:, None] * e).mean(axis=0) / r
    g_r = (f[:, None] * (e**2 - 1)).mean() / r
    opt.tell(codes, scores)
    np.testing.assert_allclose(opt.mean, x + 1.75 * g, atol=1e-4)
    assert opt.radius == pytest.approx(max(r + 0.1 * g_r, 0.01), abs=1e-5)


def test_nes_radius_learning() -> None:
    fixed = make_nes(seed=0, radius_learning_rate=0.0)
    learned = make_nes(seed=0, radius_learning_rate=0.5)
    run(fixed, 30)
    run(learned, 30)
    assert fixed.radius == 1.25
    # E[f(x + r eps)] = f(x) - 0.03 d r^2 on this sphere: the learned radius shrinks.
    assert learned.radius < 0.8
    floor = make_nes(seed=0, radius_learning_rate=1.0)
    run(floor, 1, lambda codes: -10.0 * np.sum(codes**2, axis=1))  # g_r ~ -20 r: to the floor
    assert floor.radius == 0.01
    centre = floor.mean
    codes = floor.ask()
    floor.tell(codes, np.full(len(codes), np.nan))
    np.testing.assert_array_equal(floor.mean, centre)


def test_nes_samples_at_the_learned_radius_and_a_zero_rate_keeps_any_radius() -> None:
    """After a radius update the next samples are ``x +- r_new eps``; with
    ``radius_learning_rate`` 0 the radius stays as given, even below the learning's floor."""
    opt = make_nes(seed=1, n_samples=6, radius_learning_rate=0.5)
    run(opt, 2)
    r, x = opt.radius, opt.mean
    assert abs(r - 1.25) > 0.05
    eps = opt.state_dict()["own"]["eps"]
    codes = opt.ask().astype(np.float64)
    np.testing.assert_allclose(codes, np.concatenate([x + r * eps, x - r * eps]), atol=1e-5)
    fixed = make_nes(seed=1, n_samples=6, search_radius=0.005, radius_learning_rate=0.0)
    run(fixed, 2)
    assert fixed.radius == 0.005


@pytest.mark.parametrize("name", ["fdgd", "nes"])
def test_a_step_that_overflows_is_blamed_on_the_scores_and_leaves_the_codes(name: str) -> None:
    """fdgd and nes step in proportion to the raw scores: scores too large for the learning
    rate are named (the next tell blamed the user's codes for the optimiser's own inf), and
    the same codes are asked again, so scaled scores can be told."""
    opt = make(name, dim=8, seed=0)
    codes = opt.ask()
    huge = np.linspace(1.0, 2.0, len(codes)) * 1e100
    with pytest.raises(XDreamError, match=rf"{name}: its step .* \(largest magnitude 2e\+100\)"):
        opt.tell(codes, huge)
    np.testing.assert_array_equal(opt.ask(), codes)
    opt.tell(codes, huge / 1e100)
    assert np.isfinite(opt.ask()).all()


def test_a_schedule_of_one_generation_reaches_its_end_value_after_it() -> None:
    """sphere-cma's angle and annealed-es's step size (and spectrum power) follow a schedule
    from generation 0 to ``generations - 1``, keeping the end value after it. With
    ``generations = 1`` they kept their start value for ever (audit C); now generation 0 has
    the start value and every later one the end value, as for longer schedules."""
    from xdream.optimizers.es_common import schedule_fraction

    assert [schedule_fraction(g, 1) for g in (0, 1, 7)] == [0.0, 1.0, 1.0]
    assert [schedule_fraction(g, 5) for g in (0, 1, 4, 9)] == [0.0, 0.25, 1.0, 1.0]
    for generations in (1, 2):
        es = make("annealed-es", dim=8, seed=0, generations=generations)
        assert es.step_size(0) == pytest.approx(1.0)
        assert es.step_size(1) == es.step_size(6) == pytest.approx(0.3)
        cma = make(
            "sphere-cma", dim=8, seed=0, generations=generations, angle_start=60, angle_end=10
        )
        assert cma.angle(0) == pytest.approx(60) and cma.angle(1) == pytest.approx(10)
        assert cma.angle(8) == pytest.approx(10)
