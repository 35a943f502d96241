"""XDream's genetic algorithm (Xiao & Kreiman 2020), exact; see ``xdream-spec.md`` section 2."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from xdream.errors import XDreamError
from xdream.optimizers import register
from xdream.optimizers.base import Optimizer
from xdream.optimizers.es_common import check_pending
from xdream.types import Codes, Scores, StateDict

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

CONSERVED = "conserved"
CARRIED = "carried (no response)"


@dataclass(frozen=True)
class GeneticParams:
    """Hyperparameters of :class:`Genetic`; defaults are XDream's values for DeePSiM-fc6.

    Attributes:
        population_size: codes per generation ``P`` (XDream: 20).
        mutation_rate: probability that a gene of a child is mutated (XDream: 0.5).
        mutation_size: standard deviation of the Gaussian added to a mutated gene (XDream: 0.5).
        selectivity: ``kT = std(scores) / selectivity`` (XDream: 2).
        heritability: probability that a gene comes from the first parent; clipped to [0, 1] and
            ``h < 0.5`` mirrored to ``1 - h`` (XDream: 0.5).
        n_conserve: best codes passed on unmutated, keeping their ids (XDream: 0 in silico, 1 rig).
        kT_multiplier: Ponce-lab rig variant: ``kT = std(scores) * kT_multiplier`` and no
            95th-percentile clip (their value: 2; their other settings, which this key does
            not set: population_size 30-40, mutation_rate 0.25, mutation_size 0.75,
            n_conserve 10, heritability 0.75). ``None`` (default) is XDream's rule.
    """

    population_size: int = 20
    mutation_rate: float = 0.5
    mutation_size: float = 0.5
    selectivity: float = 2.0
    heritability: float = 0.5
    n_conserve: int = 0
    kT_multiplier: float | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.population_size) or self.population_size < 2:
            raise ValueError(
                f"population_size must be an integer >= 2, got {self.population_size!r}"
            )
        if not _is_int(self.n_conserve) or not 0 <= self.n_conserve < self.population_size:
            raise ValueError(
                f"n_conserve must be an integer in [0, population_size={self.population_size}), "
                f"got {self.n_conserve!r}"
            )
        if not _finite(self.mutation_rate) or not 0.0 <= self.mutation_rate <= 1.0:
            raise ValueError(
                f"mutation_rate must be a probability in [0, 1], got {self.mutation_rate!r}"
            )
        if not _finite(self.mutation_size) or self.mutation_size < 0:
            raise ValueError(f"mutation_size must be a number >= 0, got {self.mutation_size!r}")
        if not _finite(self.selectivity) or self.selectivity <= 0:
            raise ValueError(f"selectivity must be a number > 0, got {self.selectivity!r}")
        if not _finite(self.heritability):
            raise ValueError(
                "heritability must be a finite number (it is clipped to [0, 1]), "
                f"got {self.heritability!r}"
            )
        if self.kT_multiplier is not None and (
            not _finite(self.kT_multiplier) or self.kT_multiplier <= 0
        ):
            raise ValueError(
                f"kT_multiplier must be a number > 0 or None, got {self.kT_multiplier!r}"
            )

    @property
    def effective_heritability(self) -> float:
        """Heritability clipped to [0, 1], with ``h < 0.5`` mirrored to ``1 - h`` (spec 2.6)."""
        h = min(max(float(self.heritability), 0.0), 1.0)
        return 1.0 - h if h < 0.5 else h


def fitness(
    scores: Scores, selectivity: float, kT_multiplier: float | None = None
) -> tuple[IntArray, FloatArray]:
    """Selection weights of XDream's GA for finite ``scores`` (spec 2, steps 2, 3 and 5).

    Returns ``order`` (indices of ``scores`` sorted best first) and the fitness ``f`` of
    ``scores[order]``. With ``kT_multiplier`` set (Ponce-lab variant) ``kT = std * kT_multiplier``
    and the scores are not clipped.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0 or not np.isfinite(s).all():
        raise ValueError(f"fitness needs a non-empty 1-d array of finite scores, got {s!r}")
    # Step 2: the temperature, from the population std (ddof 0) BEFORE the clip.
    with np.errstate(over="ignore", invalid="ignore"):
        std = float(np.std(s))
    if not math.isfinite(std):
        # the squares overflowed (|scores| above ~1e154): the fitness does not change with the
        # scale of the scores (kT is proportional to it), so compute it on scores scaled to 1
        s = s / float(np.abs(s).max())
        std = float(np.std(s))
    kT = std * kT_multiplier if kT_multiplier is not None else std / selectivity
    kT = max(kT, 1e-8)
    # Step 3: sort descending (stable, so ties keep population order), clip at the 95th percentile.
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    if kT_multiplier is None:
        s_sorted = np.minimum(s_sorted, np.percentile(s, 95))
    # Step 5: Boltzmann fitness relative to the (clipped) maximum.
    f = np.exp((s_sorted - s_sorted.max()) / kT)
    if f.max() == 0:
        f[np.argmax(f)] = 0.001
    positive = f[f > 0]
    f[f <= 0] = positive.min()
    return order, f


@register
class Genetic(Optimizer[GeneticParams]):
    """XDream's genetic algorithm (Xiao & Kreiman, PLoS Comput Biol 2020), exact.

    Each generation: codes without a response (NaN) are shown again unchanged; the valid codes
    are ranked, the best ``n_conserve`` pass on unchanged, and the rest of the population are
    children of two roulette-wheel parents (Boltzmann fitness ``exp((s - s_max) / kT)`` on
    95th-percentile-clipped scores), made by uniform crossover and Gaussian mutation. Carried and
    conserved codes keep their ids. The new population is ordered carried, conserved, children.
    Genealogy per code: ``"idA+idB+mut"`` for a child (``+mut`` only if a gene was mutated),
    ``"conserved"``, ``"carried (no response)"``, ``"init"`` or ``"loaded"`` (from ``init_codes``).
    With ``kT_multiplier`` set, the Ponce-lab rig variant: ``kT = std * kT_multiplier``, no clip.

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("genetic", dim=8, seed=0, population_size=10)
    >>> for _ in range(3):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, opt.image_ids[0][:6]
    ((10, 8), 'gen003')
    """

    name: ClassVar[str] = "genetic"
    Params: ClassVar[type[GeneticParams]] = GeneticParams

    def __init__(
        self,
        dim: int,
        params: GeneticParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params if params is not None else GeneticParams(), seed, init_codes)
        self._population = self._initial_population()

    @property
    def population(self) -> Codes:
        """The current population (a copy), shape ``(population_size, dim)``."""
        return self._population.copy()

    # ------------------------------------------------------------------ algorithm
    def _initial_population(self) -> Codes:
        """N(0, 1) codes, or ``init_codes`` (first P; the rest by uniform mating + mutation)."""
        p = self._params
        n = p.population_size
        ids = [f"gen000_{i:06d}" for i in range(n)]
        if self._init_codes is None:
            self._ids, self._genealogy = ids, ["init"] * n
            return self._rng.standard_normal((n, self._dim)).astype(np.float32)
        loaded = self._init_codes[:n]
        if len(loaded) == 0:
            raise XDreamError("init_codes is empty; pass at least one code or None for N(0, 1)")
        k = len(loaded)
        # Fill: parents drawn uniformly with replacement from the loaded codes.
        pa = self._rng.integers(k, size=n - k)
        pb = self._rng.integers(k, size=n - k)
        children, mutated = self._mate(loaded, pa, pb)
        self._ids = ids
        self._genealogy = ["loaded"] * k + [
            _lineage(ids[a], ids[b], m) for a, b, m in zip(pa, pb, mutated)
        ]
        return np.concatenate([loaded, children]).astype(np.float32)

    def _mate(self, pool: Codes, pa: IntArray, pb: IntArray) -> tuple[Codes, npt.NDArray[np.bool_]]:
        """Uniform crossover (step 6) then per-gene Gaussian mutation (step 7)."""
        p = self._params
        shape = (len(pa), self._dim)
        from_a = self._rng.random(shape) < p.effective_heritability
        children = np.where(from_a, pool[pa], pool[pb]).astype(np.float64)
        mutate = self._rng.random(shape) < p.mutation_rate
        children += mutate * self._rng.normal(0.0, p.mutation_size, shape)
        return children.astype(np.float32), np.asarray(mutate.any(axis=1), dtype=np.bool_)

    def _ask(self) -> Codes:
        return self._population.copy()

    def _tell(self, codes: Codes, scores: Scores) -> None:
        check_pending(self.name, codes, self._population)
        p = self._params
        n = p.population_size
        step = self._generation + 1  # generation number of the new population
        old_ids = self._ids if len(self._ids) == n else [f"gen?_{i:06d}" for i in range(n)]
        # Step 1: codes without a response are carried over unchanged, with their ids.
        nan = np.isnan(scores)
        carried = np.flatnonzero(nan)
        valid = np.flatnonzero(~nan)
        if len(valid) == 0:
            self._ids, self._genealogy = list(old_ids), [CARRIED] * n
            return
        # Steps 2, 3, 5: temperature from the std before the clip, rank, clip, fitness.
        order, f = fitness(scores[valid], p.selectivity, p.kT_multiplier)
        # Step 4: the pool is the top min(n_valid, P); the first n_conserve pass on unchanged.
        n_pool = min(len(valid), n)
        pool_idx = valid[order[:n_pool]]
        f = f[:n_pool]
        elites = pool_idx[: min(p.n_conserve, n_pool)]
        # Step 6: children by two independent roulette-wheel draws with replacement.
        n_children = n - len(carried) - len(elites)
        prob = f / f.sum()
        pa = self._rng.choice(n_pool, size=n_children, p=prob)
        pb = self._rng.choice(n_pool, size=n_children, p=prob)
        children, mutated = self._mate(self._population[pool_idx], pa, pb)
        # New population: carried, conserved, children.
        self._population = np.concatenate(
            [self._population[carried], self._population[elites], children]
        ).astype(np.float32)
        first_child = len(carried) + len(elites)
        self._ids = (
            [old_ids[i] for i in carried]
            + [old_ids[i] for i in elites]
            + [f"gen{step:03d}_{first_child + j:06d}" for j in range(n_children)]
        )
        self._genealogy = (
            [CARRIED] * len(carried)
            + [CONSERVED] * len(elites)
            + [
                _lineage(old_ids[pool_idx[a]], old_ids[pool_idx[b]], m)
                for a, b, m in zip(pa, pb, mutated)
            ]
        )

    def _state(self) -> StateDict:
        return {"population": self._population.copy()}

    def _load_state(self, state: StateDict) -> None:
        population = np.asarray(state["population"], dtype=np.float32)
        if population.shape != (self._params.population_size, self._dim):
            raise XDreamError(
                f"checkpoint population has shape {population.shape}, expected "
                f"({self._params.population_size}, {self._dim}); were the hyperparameters changed?"
            )
        self._population = population.copy()


def _lineage(parent_a: str, parent_b: str, mutated: bool | np.bool_) -> str:
    """Genealogy string ``"parentA+parentB"``, with ``"+mut"`` when a gene was mutated."""
    return f"{parent_a}+{parent_b}" + ("+mut" if mutated else "")


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _finite(x: object) -> bool:
    return (
        isinstance(x, (int, float, np.integer, np.floating))
        and not isinstance(x, bool)
        and math.isfinite(float(x))
    )
