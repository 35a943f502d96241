"""XDream's finite-difference gradient ascent (Xiao & Kreiman 2020); spec section 3."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from xdream.errors import XDreamError
from xdream.optimizers import register
from xdream.optimizers.base import Optimizer
from xdream.optimizers.es_common import check_pending, check_shape, initial_mean
from xdream.types import Codes, Scores, StateDict

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FDGDParams:
    """Hyperparameters of :class:`FDGD`; defaults are XDream's values for DeePSiM-fc6.

    Attributes:
        n_samples: codes per generation ``N >= 2``; antithetic with odd ``N`` uses ``N - 1``.
        search_radius: standard deviation ``r`` of the perturbations (XDream: 1.25).
        learning_rate: constant step size ``lr`` (XDream: 1.25).
        antithetic: pairs ``x +- d_i`` (default) instead of ``x`` and ``N - 1`` codes ``x + d_i``.
    """

    n_samples: int = 20
    search_radius: float = 1.25
    learning_rate: float = 1.25
    antithetic: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, (int, np.integer)):
            raise ValueError(f"n_samples must be an integer >= 2, got {self.n_samples!r}")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {self.n_samples!r}")
        for key in ("search_radius", "learning_rate"):
            value = getattr(self, key)
            if not math.isfinite(float(value)) or value <= 0:
                raise ValueError(f"{key} must be a finite number > 0, got {value!r}")
        if not isinstance(self.antithetic, (bool, np.bool_)):
            raise ValueError(f"antithetic must be True or False, got {self.antithetic!r}")


@register
class FDGD(Optimizer[FDGDParams]):
    """Finite-difference gradient ascent, as in XDream (Xiao & Kreiman, PLoS Comput Biol 2020).

    Perturbations ``d_i ~ N(0, r^2 I)`` around the centre ``x``; with ``nu_i = mean_j |d_ij|`` and
    ``Delta_i = (f(x + d_i) - f(x - d_i)) / 2`` (antithetic) or ``f(x + d_i) - f(x)``, the step is
    ``x <- x + lr * mean_i(Delta_i d_i / nu_i^2)``. Codes are ordered ``x + d_1 .. x + d_m,
    x - d_1 .. x - d_m`` (antithetic) or ``x, x + d_1, ..`` (otherwise).

    No response (NaN): a pair with a NaN member (or every sample, when ``f(x)`` itself is NaN in
    the non-antithetic scheme) is left out of the average; if no pair is valid the centre stays
    and fresh perturbations are drawn.

    The centre starts at zeros, or at the mean of ``init_codes`` (the code itself for one).

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("fdgd", dim=8, seed=0, n_samples=10)
    >>> for _ in range(3):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, opt.mean.shape
    ((10, 8), (8,))
    """

    name: ClassVar[str] = "fdgd"
    Params: ClassVar[type[FDGDParams]] = FDGDParams

    def __init__(
        self,
        dim: int,
        params: FDGDParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params if params is not None else FDGDParams(), seed, init_codes)
        self._mean: FloatArray = initial_mean(self._init_codes, self._dim)
        self._sample(step=0)

    @property
    def mean(self) -> FloatArray:
        """The current centre ``x`` (a copy), shape ``(dim,)``."""
        return self._mean.copy()

    def _pairs(self) -> int:
        """Perturbations per generation: ``n_samples // 2`` pairs ``x ± d`` (antithetic), else
        ``n_samples - 1`` codes ``x + d`` beside the centre."""
        p = self._params
        return p.n_samples // 2 if p.antithetic else p.n_samples - 1

    def _sample(self, step: int) -> None:
        """Draw the perturbations and codes of generation ``step``."""
        p = self._params
        n = self._pairs()
        self._perturb: FloatArray = self._rng.normal(0.0, p.search_radius, (n, self._dim))
        if p.antithetic:
            codes = [self._mean + self._perturb, self._mean - self._perturb]
            lineage = [f"centre+d{i}" for i in range(n)] + [f"centre-d{i}" for i in range(n)]
        else:
            codes = [self._mean[None], self._mean + self._perturb]
            lineage = ["centre"] + [f"centre+d{i}" for i in range(n)]
        self._codes: Codes = np.concatenate(codes).astype(np.float32)
        self._ids = [f"gen{step:03d}_{i:06d}" for i in range(len(self._codes))]
        self._genealogy = lineage

    def _ask(self) -> Codes:
        return self._codes.copy()

    def _tell(self, codes: Codes, scores: Scores) -> None:
        check_pending(self.name, codes, self._codes)
        d = self._perturb
        if self._params.antithetic:
            m = len(d)
            delta = (scores[:m] - scores[m:]) / 2.0  # central difference per pair
        else:
            delta = scores[1:] - scores[0]  # forward difference from the centre
        ok = ~np.isnan(delta)  # drop pairs with a missing response
        if ok.any():
            nu = np.mean(np.abs(d[ok]), axis=1)
            g = np.mean(delta[ok, None] * d[ok] / nu[:, None] ** 2, axis=0)
            self._mean = self._stepped(self._mean + self._params.learning_rate * g, scores)
        self._sample(step=self._generation + 1)

    def _state(self) -> StateDict:
        return {
            "mean": self._mean.copy(),
            "perturb": self._perturb.copy(),
            "codes": self._codes.copy(),
        }

    def _load_state(self, state: StateDict) -> None:
        self._mean = np.array(state["mean"], dtype=np.float64)
        self._perturb = np.array(state["perturb"], dtype=np.float64)
        self._codes = np.array(state["codes"], dtype=np.float32)
        if self._mean.shape != (self._dim,) or self._codes.shape[1:] != (self._dim,):
            raise XDreamError(
                f"checkpoint holds codes of dimension {self._mean.shape}, expected ({self._dim},)"
            )
        n = self._pairs()
        check_shape("perturbations", self._perturb, (n, self._dim))
        check_shape("codes", self._codes, (2 * n if self._params.antithetic else n + 1, self._dim))
