"""SphereCMA (Wang & Ponce, GECCO 2022): search on a sphere of codes with a decaying angle.

``xdream-spec.md`` section 5. All codes have the same norm ``radius``; the mean moves along the
great circle towards the weighted mean of the best codes, overshooting it (``learning_rate``
1.5), and samples sit at a fixed angle from the mean that shrinks geometrically with the
generation. There is no adaptation to be fooled by noise, and ``O(lambda N)`` work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from xdream.errors import XDreamError
from xdream.optimizers import register
from xdream.optimizers.base import Optimizer
from xdream.optimizers.es_common import (
    FloatArray,
    check_float,
    check_int,
    check_pending,
    check_shape,
    initial_mean,
    log_weights,
    schedule_fraction,
    select,
)
from xdream.types import Codes, Scores, StateDict


@dataclass(frozen=True)
class SphereCMAParams:
    """Hyperparameters of :class:`SphereCMA`; defaults are Wang & Ponce's except ``radius``.

    Attributes:
        population_size: codes per generation (40).
        n_select: best codes averaged into the new mean direction; ``None`` is half the
            population (20 of 40).
        radius: norm of every code. Wang & Ponce use 300 for DeePSiM-fc6 codes; ``None`` is
            the norm of the mean of ``init_codes`` when given, else ``sqrt(N)``, the typical
            norm of an N(0, 1) code of xdream's built-in generators.
        learning_rate: step along the great circle towards the new direction, as a fraction of
            the angle to it; above 1 extrapolates (1.5).
        angle_start: angle in degrees between the mean and each sample in the first generation
            of the schedule (50).
        angle_end: the same angle in its last generation (7.3).
        generations: length of the geometric angle schedule (75 = 3000 presentations / 40);
            later generations keep ``angle_end``. A config that leaves it out sets it to the
            run's number of generations (:func:`xdream.config.schedule_generations`).
        show_mean: make the first code of every generation the mean itself (our addition).
    """

    population_size: int = 40
    n_select: int | None = None
    radius: float | None = None
    learning_rate: float = 1.5
    angle_start: float = 50.0
    angle_end: float = 7.3
    generations: int = 75
    show_mean: bool = False

    def __post_init__(self) -> None:
        check_int("population_size", self.population_size, 2)
        check_int("n_select", self.n_select, 1, allow_none=True)
        if self.n_select is not None and self.n_select > self.population_size:
            raise ValueError(
                f"n_select must be at most population_size={self.population_size}, "
                f"got {self.n_select!r}"
            )
        if self.radius is not None:
            check_float("radius", self.radius, 0.0)
        check_float("learning_rate", self.learning_rate, 0.0)
        for key in ("angle_start", "angle_end"):
            value = getattr(self, key)
            check_float(key, value, 0.0)
            if value >= 180:
                raise ValueError(f"{key} must be below 180 degrees, got {value!r}")
        check_int("generations", self.generations, 1)
        if not isinstance(self.show_mean, (bool, np.bool_)):
            raise ValueError(f"show_mean must be True or False, got {self.show_mean!r}")


def slerp(a: FloatArray, b: FloatArray, t: float) -> FloatArray:
    """The unit vector at fraction ``t`` of the great-circle arc from unit ``a`` to unit ``b``.

    ``t > 1`` continues past ``b``. Returns ``a`` when the two coincide.
    """
    omega = math.acos(min(1.0, max(-1.0, float(a @ b))))
    if omega < 1e-12:
        return a.copy()
    out = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    return np.asarray(out / np.linalg.norm(out), dtype=np.float64)


@register
class SphereCMA(Optimizer[SphereCMAParams]):
    """Spherical search with a decaying angle (Wang & Ponce, GECCO 2022).

    Every code has norm ``R``. Generation 0 (without ``init_codes``) is ``lambda`` random
    directions (with ``init_codes``, ``u`` starts as the direction of their mean). Then, with
    ``u`` the unit mean direction:

    * samples ``x_k = R (cos(theta_g) u + sin(theta_g) v_k)``, ``v_k`` the unit tangent part of
      ``N(0, I)`` at ``u`` (the exponential map at ``u`` of a tangent step of angle ``theta_g``),
      ``theta_g = angle_start (angle_end / angle_start)^(g / (generations - 1))``;
    * with the best ``n_select`` codes and weights ``w_i ∝ ln(mu + 1/2) - ln i``, the direction
      ``t = sum w_i x_i / |sum w_i x_i|``, and ``u <- slerp(u, t, learning_rate)``.

    No response (NaN): never selected, weights of the answered codes renormalised; a generation
    without any answer keeps ``u`` and draws fresh samples. Needs ``dim >= 2`` (the sphere of a
    line has no tangent directions).

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> target = np.ones(8) / np.sqrt(8)
    >>> opt = make("sphere-cma", dim=8, seed=0, population_size=12, generations=20)
    >>> for _ in range(20):
    ...     codes = opt.ask()
    ...     opt.tell(codes, codes @ target)
    >>> opt.ask().shape, bool(opt.direction @ target > 0.98)
    ((12, 8), True)
    """

    name: ClassVar[str] = "sphere-cma"
    Params: ClassVar[type[SphereCMAParams]] = SphereCMAParams

    def __init__(
        self,
        dim: int,
        params: SphereCMAParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params or SphereCMAParams(), seed, init_codes)
        if self._dim < 2:
            raise XDreamError(
                f"sphere-cma searches a sphere and needs codes of at least 2 dimensions, got "
                f"dim {self._dim}; use another optimizer (e.g. annealed-es) for one dimension"
            )
        p = self._params
        self.lam = p.population_size
        self.weights = log_weights(p.n_select or max(1, self.lam // 2))
        self._dir: FloatArray | None = None
        radius = math.sqrt(self._dim)
        if self._init_codes is not None:
            start = initial_mean(self._init_codes, self._dim)
            radius = float(np.linalg.norm(start)) or radius
            self._dir = _unit(start, self._rng)
        self.radius = float(p.radius) if p.radius is not None else radius
        self._sample(step=0)

    @property
    def direction(self) -> FloatArray | None:
        """The unit mean direction ``u`` (``None`` before the first ``tell``)."""
        return None if self._dir is None else self._dir.copy()

    @property
    def mean(self) -> FloatArray | None:
        """The mean code ``R u`` (``None`` before the first ``tell``)."""
        return None if self._dir is None else self.radius * self._dir

    def angle(self, generation: int) -> float:
        """Sampling angle ``theta_g`` in degrees."""
        p = self._params
        frac = schedule_fraction(generation, p.generations)
        return float(p.angle_start * (p.angle_end / p.angle_start) ** frac)

    def _sample(self, step: int) -> None:
        g = self._rng.standard_normal((self.lam, self._dim))
        if self._dir is None:
            x = g / np.linalg.norm(g, axis=1, keepdims=True)
            genealogy = ["random"] * self.lam
        else:
            u = self._dir
            tangent = g - np.outer(g @ u, u)
            tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
            theta = math.radians(self.angle(step))
            x = math.cos(theta) * u + math.sin(theta) * tangent
            genealogy = ["sample"] * self.lam
            if self._params.show_mean:
                x[0], genealogy[0] = u, "mean"
        self._codes: Codes = (self.radius * x).astype(np.float32)
        self._ids = [f"gen{step:03d}_{i:06d}" for i in range(self.lam)]
        self._genealogy = genealogy

    def _ask(self) -> Codes:
        return self._codes.copy()

    def _tell(self, codes: Codes, scores: Scores) -> None:
        check_pending(self.name, codes, self._codes)
        top, w = select(scores, self.weights)
        if len(top):
            target = w @ self._codes[top].astype(np.float64)
            norm = float(np.linalg.norm(target))
            if norm > 0:
                target /= norm
                if self._dir is None:
                    self._dir = target
                else:
                    self._dir = slerp(self._dir, target, self._params.learning_rate)
        self._sample(step=self._generation + 1)

    def _state(self) -> StateDict:
        return {
            "dir": None if self._dir is None else self._dir.copy(),
            "codes": self._codes.copy(),
        }

    def _load_state(self, state: StateDict) -> None:
        self._dir = None if state["dir"] is None else np.array(state["dir"], dtype=np.float64)
        self._codes = np.array(state["codes"], dtype=np.float32)
        check_shape("codes", self._codes, (self.lam, self._dim))


def _unit(x: FloatArray, rng: np.random.Generator) -> FloatArray:
    """``x / |x|``; a random direction for the zero vector."""
    norm = float(np.linalg.norm(x))
    if norm == 0:
        x = rng.standard_normal(x.shape)
        norm = float(np.linalg.norm(x))
    return np.asarray(x / norm, dtype=np.float64)
