"""Separable (diagonal) CMA-ES (Ros & Hansen, PPSN 2008): ``O(lambda N)`` per generation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from xdream.optimizers import register
from xdream.optimizers.base import Optimizer
from xdream.optimizers.es_common import (
    FloatArray,
    check_float,
    check_int,
    check_pending,
    check_shape,
    default_population,
    initial_mean,
    log_weights,
    mu_eff,
    select,
)
from xdream.types import Codes, Scores, StateDict


@dataclass(frozen=True)
class SepCMAParams:
    """Hyperparameters of :class:`SepCMA`.

    Attributes:
        population_size: codes per generation ``lambda``; ``None`` is ``4 + floor(3 log2 N)``.
        sigma0: initial step size, in code units (about 1 for N(0, 1)-scaled codes).
        show_mean: make the first code of every generation the current mean itself (our
            addition; a sample in high dimension scores below its mean).
    """

    population_size: int | None = None
    sigma0: float = 1.0
    show_mean: bool = False

    def __post_init__(self) -> None:
        check_int("population_size", self.population_size, 4, allow_none=True)
        check_float("sigma0", self.sigma0, 0.0)
        if not isinstance(self.show_mean, (bool, np.bool_)):
            raise ValueError(f"show_mean must be True or False, got {self.show_mean!r}")


@register
class SepCMA(Optimizer[SepCMAParams]):
    """Separable CMA-ES: CMA-ES with a diagonal covariance ``C = diag(d^2)`` (Ros & Hansen 2008).

    Samples ``x_k = m + sigma d * z_k`` (elementwise), ``z_k ~ N(0, I)``. With the best
    ``mu = lambda / 2`` codes, log-rank weights, ``z_w = sum w_i z_i`` and ``y_i = d * z_i``
    (equations of Hansen's 2016 tutorial, with the diagonal learning rates of Ros & Hansen):

    * ``m <- m + sigma d * z_w``;
    * ``ps <- (1 - cs) ps + sqrt(cs (2 - cs) mu_eff) z_w``;
      ``h = 1`` if ``|ps| / sqrt(1 - (1 - cs)^(2 (g + 1))) < (1.4 + 2 / (N + 1)) chiN`` else 0;
      ``pc <- (1 - cc) pc + h sqrt(cc (2 - cc) mu_eff) d * z_w``;
    * ``d^2 <- (1 - c1 - cmu + (1 - h) c1 cc (2 - cc)) d^2 + c1 pc^2 + cmu sum w_i y_i^2``;
    * ``sigma <- sigma exp((cs / damps) (|ps| / chiN - 1))``.

    Constants: ``cc = (4 + mu_eff / N) / (N + 4 + 2 mu_eff / N)``,
    ``cs = (mu_eff + 2) / (N + mu_eff + 5)``, ``damps = 1 + 2 max(0, sqrt((mu_eff - 1) / (N + 1))
    - 1) + cs``, and the full-covariance rates ``c1 = 2 / ((N + 1.3)^2 + mu_eff)``,
    ``cmu = 2 (mu_eff - 2 + 1 / mu_eff) / ((N + 2)^2 + mu_eff)`` scaled by ``(N + 2) / 3``
    (``cmu`` at most ``1 - c1``), as Ros & Hansen do for the diagonal.

    No response (NaN): never selected, weights of the answered codes renormalised; a generation
    without any answer leaves the state and draws fresh samples.

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("sep-cma", dim=8, seed=0, sigma0=0.5)
    >>> for _ in range(30):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, bool(np.abs(opt.mean - 1.0).max() < 0.1)
    ((13, 8), True)
    """

    name: ClassVar[str] = "sep-cma"
    Params: ClassVar[type[SepCMAParams]] = SepCMAParams

    def __init__(
        self,
        dim: int,
        params: SepCMAParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params or SepCMAParams(), seed, init_codes)
        n = self._dim
        self.lam = self._params.population_size or default_population(n)
        self.weights = log_weights(self.lam // 2)
        me = self.mu_eff = mu_eff(self.weights)
        self.cc = (4 + me / n) / (n + 4 + 2 * me / n)  # time constant of the rank-one path
        self.cs = (me + 2) / (n + me + 5)  # time constant of the step-size path
        self.damps = 1 + 2 * max(0.0, math.sqrt((me - 1) / (n + 1)) - 1) + self.cs
        sep = (n + 2) / 3  # Ros & Hansen: the diagonal learns (N + 2) / 3 times faster
        self.c1 = min(1.0, sep * 2 / ((n + 1.3) ** 2 + me))
        self.cmu = min(1 - self.c1, sep * 2 * (me - 2 + 1 / me) / ((n + 2) ** 2 + me))
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
        self._mean = initial_mean(self._init_codes, n)
        self._sigma = float(self._params.sigma0)
        self._var: FloatArray = np.ones(n)  # diagonal of C, d^2
        self._ps: FloatArray = np.zeros(n)
        self._pc: FloatArray = np.zeros(n)
        self._sample(step=0)

    @property
    def mean(self) -> FloatArray:
        """The distribution mean ``m`` (a copy)."""
        return self._mean.copy()

    @property
    def sigma(self) -> float:
        """The step size ``sigma``."""
        return self._sigma

    def status(self) -> dict[str, Any]:
        """``step_size``: the adapted ``sigma`` (a collapsed one means the search has stopped)."""
        return {"step_size": self.sigma}

    @property
    def variances(self) -> FloatArray:
        """The diagonal of ``C`` (a copy); the sampling s.d. per entry is ``sigma sqrt(C_ii)``."""
        return self._var.copy()

    def _sample(self, step: int) -> None:
        z = self._rng.standard_normal((self.lam, self._dim))
        if self._params.show_mean:
            z[0] = 0.0
        self._z: FloatArray = z
        self._codes: Codes = (self._mean + self._sigma * np.sqrt(self._var) * z).astype(np.float32)
        self._ids = [f"gen{step:03d}_{i:06d}" for i in range(self.lam)]
        self._genealogy = ["mean" if self._params.show_mean else "sample"] + ["sample"] * (
            self.lam - 1
        )

    def _ask(self) -> Codes:
        return self._codes.copy()

    def _tell(self, codes: Codes, scores: Scores) -> None:
        check_pending(self.name, codes, self._codes)
        top, w = select(scores, self.weights)
        if len(top):
            n, cs, cc = self._dim, self.cs, self.cc
            d = np.sqrt(self._var)
            mueff = mu_eff(w)
            z_w = w @ self._z[top]
            self._mean = self._mean + self._sigma * d * z_w
            self._ps = (1 - cs) * self._ps + math.sqrt(cs * (2 - cs) * mueff) * z_w
            norm_ps = float(np.linalg.norm(self._ps))
            g = self._generation + 1
            h = norm_ps / math.sqrt(1 - (1 - cs) ** (2 * g)) < (1.4 + 2 / (n + 1)) * self.chi_n
            self._pc = (1 - cc) * self._pc + h * math.sqrt(cc * (2 - cc) * mueff) * d * z_w
            y2 = w @ (d * self._z[top]) ** 2  # rank-mu term, sum w_i y_i^2
            decay = 1 - self.c1 - self.cmu + (1 - h) * self.c1 * cc * (2 - cc)
            self._var = decay * self._var + self.c1 * self._pc**2 + self.cmu * y2
            self._sigma *= math.exp((cs / self.damps) * (norm_ps / self.chi_n - 1))
        self._sample(step=self._generation + 1)

    def _state(self) -> StateDict:
        return {
            "mean": self._mean.copy(),
            "sigma": self._sigma,
            "var": self._var.copy(),
            "ps": self._ps.copy(),
            "pc": self._pc.copy(),
            "z": self._z.copy(),  # the codes are mean + sigma sqrt(var) z: not stored twice
        }

    def _load_state(self, state: StateDict) -> None:
        self._mean = np.array(state["mean"], dtype=np.float64)
        self._sigma = float(state["sigma"])
        self._var = np.array(state["var"], dtype=np.float64)
        self._ps = np.array(state["ps"], dtype=np.float64)
        self._pc = np.array(state["pc"], dtype=np.float64)
        self._z = np.array(state["z"], dtype=np.float64)
        check_shape("z", self._z, (self.lam, self._dim))
        check_shape("mean", self._mean, (self._dim,))
        if "codes" in state:  # checkpoints before 27 November 2026 stored them too
            self._codes = np.array(state["codes"], dtype=np.float32)
            check_shape("codes", self._codes, (self.lam, self._dim))
        else:  # as _sample computed them, to the bit (element-wise: no BLAS to differ)
            self._codes = (self._mean + self._sigma * np.sqrt(self._var) * self._z).astype(
                np.float32
            )
