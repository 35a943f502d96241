"""Cholesky rank-one CMA-ES as used by Wang & Ponce (GECCO 2022); ``xdream-spec.md`` section 5.

The covariance ``C = A^T A`` is carried by its Cholesky-like factor ``A`` and its inverse (Igel,
Suttorp & Hansen 2006), updated by the rank-one path ``pc`` only once every
``a_update_every`` generations. At ``N = 4096`` the learning rate ``c1 = 2 / (N + sqrt 2)^2`` is
~1e-7, so ``C`` stays near the identity and the step-size path does the work (Wang & Ponce 2022).

Both factors are kept as ``alpha I + P^T Q`` with one low-rank term per update, so a generation
costs ``O(lambda N k)`` (``k`` updates so far) instead of ``O(lambda N^2)``: exact, not an
approximation.
"""

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
class CholeskyCMAParams:
    """Hyperparameters of :class:`CholeskyCMA`.

    Attributes:
        population_size: codes per generation ``lambda``; ``None`` is ``4 + floor(3 log2 N)``
            (40 at N = 4096, the published value).
        sigma0: initial step size (Wang & Ponce: 3 for DeePSiM-fc6 codes; codes of xdream's
            built-in generators are N(0, 1)-scaled, where about 1 works).
        a_update_every: generations between rank-one updates of the factor ``A`` (10: every
            ``10 lambda`` evaluations, as published).
        show_mean: make the first code of every generation the current mean itself. In high
            dimension a sample scores below its mean; showing the mean puts the estimate the
            search has converged on in front of the unit (our addition, off as published).
        cc: time constant of the rank-one path; ``None`` is the published ``4 / (N + 4)``.
        c1: rank-one learning rate; ``None`` is the published ``2 / (N + sqrt 2)^2``.
    """

    population_size: int | None = None
    sigma0: float = 3.0
    a_update_every: int = 10
    show_mean: bool = False
    cc: float | None = None
    c1: float | None = None

    def __post_init__(self) -> None:
        check_int("population_size", self.population_size, 4, allow_none=True)
        check_float("sigma0", self.sigma0, 0.0)
        check_int("a_update_every", self.a_update_every, 1)
        for key in ("cc", "c1"):
            value = getattr(self, key)
            if value is not None:
                check_float(key, value, 0.0)
                if value >= 1:
                    raise ValueError(f"{key} must be below 1, got {value!r}")
        if not isinstance(self.show_mean, (bool, np.bool_)):
            raise ValueError(f"show_mean must be True or False, got {self.show_mean!r}")


class LowRankFactor:
    """A square matrix ``alpha I + P^T Q`` (``P``, ``Q`` of shape ``(k, N)``), applied to rows."""

    def __init__(self, dim: int) -> None:
        self.alpha = 1.0
        self.p: FloatArray = np.zeros((0, dim))
        self.q: FloatArray = np.zeros((0, dim))

    def right(self, rows: FloatArray) -> FloatArray:
        """``rows @ M`` for rows ``(n, N)`` (or one row ``(N,)``)."""
        return self.alpha * rows + (rows @ self.p.T) @ self.q

    def right_transposed(self, rows: FloatArray) -> FloatArray:
        """``rows @ M^T``."""
        return self.alpha * rows + (rows @ self.q.T) @ self.p

    def scale_and_add(self, scale: float, p: FloatArray, q: FloatArray) -> None:
        """``M <- scale M + p^T q`` for rows ``p``, ``q`` of length ``N``."""
        self.alpha *= scale
        self.p = np.vstack([self.p * scale, p[None]])
        self.q = np.vstack([self.q, q[None]])

    def dense(self) -> FloatArray:
        """The matrix itself, ``(N, N)`` (for tests and inspection)."""
        return self.alpha * np.eye(self.p.shape[1]) + self.p.T @ self.q

    def state(self) -> StateDict:
        return {"alpha": self.alpha, "p": self.p.copy(), "q": self.q.copy()}

    def load(self, state: StateDict) -> None:
        self.alpha = float(state["alpha"])
        self.p = np.array(state["p"], dtype=np.float64)
        self.q = np.array(state["q"], dtype=np.float64)


@register
class CholeskyCMA(Optimizer[CholeskyCMAParams]):
    """Cholesky rank-one CMA-ES (Wang & Ponce, GECCO 2022; after Igel et al. 2006).

    Samples ``x_k = m + sigma z_k A``, ``z_k ~ N(0, I)``. With the best ``mu = lambda / 2``
    codes and weights ``w_i ∝ ln(mu + 1/2) - ln i``, ``z_w = sum w_i z_i``:

    * ``m <- m + sigma z_w A``;
    * ``ps <- (1 - cs) ps + sqrt(cs (2 - cs) mu_eff) z_w``,
      ``pc <- (1 - cc) pc + sqrt(cc (2 - cc) mu_eff) z_w A``;
    * ``sigma <- sigma exp((cs / damps) (|ps| / chiN - 1))``;
    * every ``a_update_every`` generations, with ``v = pc A^-1`` and ``s = sqrt(1 - c1)``:
      ``A <- s A + (s / |v|^2) (sqrt(1 + c1 |v|^2 / (1 - c1)) - 1) v^T pc``, the rank-one update
      ``C <- (1 - c1) C + c1 pc^T pc`` of ``C = A^T A``, and its inverse likewise.

    Constants (spec 5): ``cc = 4 / (N + 4)``, ``cs = sqrt(mu_eff) / (sqrt(mu_eff) + sqrt(N))``,
    ``c1 = 2 / (N + sqrt 2)^2``, ``damps = 1 + cs + 2 max(0, sqrt((mu_eff - 1) / (N + 1)) - 1)``,
    ``chiN = sqrt(N) (1 - 1 / (4N) + 1 / (21 N^2))``.

    No response (NaN): never selected; the weights of the answered codes are renormalised. A
    generation without any answer leaves the state as it was and draws fresh samples.

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("cholesky-cma", dim=8, seed=0, sigma0=0.5)
    >>> for _ in range(20):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, bool(np.abs(opt.mean - 1.0).max() < 0.5)
    ((13, 8), True)
    """

    name: ClassVar[str] = "cholesky-cma"
    Params: ClassVar[type[CholeskyCMAParams]] = CholeskyCMAParams

    def __init__(
        self,
        dim: int,
        params: CholeskyCMAParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params or CholeskyCMAParams(), seed, init_codes)
        p, n = self._params, self._dim
        self.lam = p.population_size or default_population(n)
        self.weights = log_weights(self.lam // 2)
        self.mu_eff = mu_eff(self.weights)
        self.cc = p.cc if p.cc is not None else 4.0 / (n + 4.0)  # rank-one path time constant
        self.cs = math.sqrt(self.mu_eff) / (math.sqrt(self.mu_eff) + math.sqrt(n))  # step-size path
        self.c1 = p.c1 if p.c1 is not None else 2.0 / (n + math.sqrt(2.0)) ** 2  # rank-one rate
        self.damps = 1.0 + self.cs + 2.0 * max(0.0, math.sqrt((self.mu_eff - 1) / (n + 1)) - 1)
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))  # E|N(0, I)|
        self._mean = initial_mean(self._init_codes, n)
        self._sigma = float(p.sigma0)
        self._ps: FloatArray = np.zeros(n)
        self._pc: FloatArray = np.zeros(n)
        self._a = LowRankFactor(n)
        self._a_inv = LowRankFactor(n)
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
    def factor(self) -> FloatArray:
        """The factor ``A`` (``C = A^T A``) as a dense ``(N, N)`` matrix; costly at large N."""
        return self._a.dense()

    def _sample(self, step: int) -> None:
        z = self._rng.standard_normal((self.lam, self._dim))
        if self._params.show_mean:
            z[0] = 0.0
        self._z: FloatArray = z
        self._codes: Codes = (self._mean + self._sigma * self._a.right(z)).astype(np.float32)
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
            z_w = w @ self._z[top]
            y_w = self._a.right(z_w)
            mueff = mu_eff(w)
            self._mean = self._mean + self._sigma * y_w
            self._ps = (1 - self.cs) * self._ps + math.sqrt(self.cs * (2 - self.cs) * mueff) * z_w
            self._pc = (1 - self.cc) * self._pc + math.sqrt(self.cc * (2 - self.cc) * mueff) * y_w
            norm_ps = float(np.linalg.norm(self._ps))
            self._sigma *= math.exp((self.cs / self.damps) * (norm_ps / self.chi_n - 1))
            if (self._generation + 1) % self._params.a_update_every == 0:
                self._rank_one_update()
        self._sample(step=self._generation + 1)

    def _rank_one_update(self) -> None:
        """``C <- (1 - c1) C + c1 pc^T pc`` through ``A`` and ``A^-1`` (Igel et al. 2006)."""
        c1, pc = self.c1, self._pc
        v = self._a_inv.right(pc)
        nv = float(v @ v)
        if nv <= 0 or not math.isfinite(nv):
            return
        s = math.sqrt(1 - c1)
        root = math.sqrt(1 + nv * c1 / (1 - c1))
        a_inv_vt = self._a_inv.right_transposed(v)  # (A^-1 v^T)^T
        self._a.scale_and_add(s, (s / nv) * (root - 1) * v, pc)
        self._a_inv.scale_and_add(1 / s, -(1 / s / nv) * (1 - 1 / root) * a_inv_vt, v)

    def _state(self) -> StateDict:
        return {
            "mean": self._mean.copy(),
            "sigma": self._sigma,
            "ps": self._ps.copy(),
            "pc": self._pc.copy(),
            "a": self._a.state(),
            "a_inv": self._a_inv.state(),
            "z": self._z.copy(),
            "codes": self._codes.copy(),
        }

    def _load_state(self, state: StateDict) -> None:
        self._mean = np.array(state["mean"], dtype=np.float64)
        self._sigma = float(state["sigma"])
        self._ps = np.array(state["ps"], dtype=np.float64)
        self._pc = np.array(state["pc"], dtype=np.float64)
        self._a.load(state["a"])
        self._a_inv.load(state["a_inv"])
        self._z = np.array(state["z"], dtype=np.float64)
        self._codes = np.array(state["codes"], dtype=np.float32)
        check_shape("codes", self._codes, (self.lam, self._dim))
        check_shape("mean", self._mean, (self._dim,))
