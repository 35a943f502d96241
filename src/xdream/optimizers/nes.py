"""XDream's natural evolution strategy (after Ilyas et al. 2017); ``xdream-spec.md`` section 4."""

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

MIN_RADIUS = 0.01  # floor of the learned search radius (spec 4)


@dataclass(frozen=True)
class NESParams:
    """Hyperparameters of :class:`NES`; defaults are XDream's values for DeePSiM-fc6.

    Attributes:
        n_samples: codes per generation ``N >= 2`` in antithetic pairs (odd ``N`` uses ``N - 1``).
        search_radius: initial sampling radius ``r`` (XDream: 1.25).
        learning_rate: step size ``lr`` of the centre (XDream: 1.75).
        radius_learning_rate: step size of the radius update (XDream: 0.05); 0 keeps ``r`` fixed.
    """

    n_samples: int = 20
    search_radius: float = 1.25
    learning_rate: float = 1.75
    radius_learning_rate: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.n_samples, bool) or not isinstance(self.n_samples, (int, np.integer)):
            raise ValueError(f"n_samples must be an integer >= 2, got {self.n_samples!r}")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be an integer >= 2, got {self.n_samples!r}")
        for key in ("search_radius", "learning_rate"):
            value = getattr(self, key)
            if not math.isfinite(float(value)) or value <= 0:
                raise ValueError(f"{key} must be a finite number > 0, got {value!r}")
        rlr = self.radius_learning_rate
        if not math.isfinite(float(rlr)) or rlr < 0:
            raise ValueError(f"radius_learning_rate must be a finite number >= 0, got {rlr!r}")


@register
class NES(Optimizer[NESParams]):
    """Natural evolution strategy as in XDream (Xiao & Kreiman 2020; Ilyas et al. 2017).

    Antithetic samples ``x +- r eps_i`` with ``eps_i ~ N(0, I)``, ordered ``x + r eps_1 ..
    x + r eps_m, x - r eps_1 .. x - r eps_m``. With raw scores ``f_k`` (no shaping) and
    ``eps_k = -eps_i`` for a minus sample: ``g = mean_k(f_k eps_k) / r`` and ``x <- x + lr g``.
    Radius learning: ``g_r = mean_{k,j}(f_k (eps_kj^2 - 1)) / r`` (mean over samples AND
    dimensions, which keeps ``radius_learning_rate`` independent of the dimension) and
    ``r <- max(r + radius_learning_rate * g_r, 0.01)``.

    No response (NaN): a pair with a NaN member is left out of both means; if no pair is valid the
    centre and radius stay and fresh samples are drawn.

    The centre starts at zeros, or at the mean of ``init_codes`` (the code itself for one).

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("nes", dim=8, seed=0, n_samples=10)
    >>> for _ in range(3):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, opt.radius != 1.25
    ((10, 8), True)
    """

    name: ClassVar[str] = "nes"
    Params: ClassVar[type[NESParams]] = NESParams

    def __init__(
        self,
        dim: int,
        params: NESParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params if params is not None else NESParams(), seed, init_codes)
        self._mean: FloatArray = initial_mean(self._init_codes, self._dim)
        self._radius = float(self._params.search_radius)
        self._sample(step=0)

    @property
    def mean(self) -> FloatArray:
        """The current centre ``x`` (a copy), shape ``(dim,)``."""
        return self._mean.copy()

    @property
    def radius(self) -> float:
        """The current sampling radius ``r``."""
        return self._radius

    def _sample(self, step: int) -> None:
        """Draw the directions and codes of generation ``step``."""
        m = self._params.n_samples // 2
        self._eps: FloatArray = self._rng.standard_normal((m, self._dim))
        step_ = self._radius * self._eps
        self._codes: Codes = np.concatenate([self._mean + step_, self._mean - step_]).astype(
            np.float32
        )
        self._ids = [f"gen{step:03d}_{i:06d}" for i in range(2 * m)]
        self._genealogy = [f"centre+r*eps{i}" for i in range(m)] + [
            f"centre-r*eps{i}" for i in range(m)
        ]

    def _ask(self) -> Codes:
        return self._codes.copy()

    def _tell(self, codes: Codes, scores: Scores) -> None:
        check_pending(self.name, codes, self._codes)
        m = len(self._eps)
        f_plus, f_minus = scores[:m], scores[m:]
        ok = ~(np.isnan(f_plus) | np.isnan(f_minus))  # drop pairs with a missing response
        if ok.any():
            eps = np.concatenate([self._eps[ok], -self._eps[ok]])
            f = np.concatenate([f_plus[ok], f_minus[ok]])
            r = self._radius
            g = np.mean(f[:, None] * eps, axis=0) / r  # search gradient of the centre
            g_r = float(np.mean(f[:, None] * (eps**2 - 1.0))) / r  # ... and of the radius
            self._mean = self._stepped(self._mean + self._params.learning_rate * g, scores)
            if self._params.radius_learning_rate > 0:
                self._radius = max(r + self._params.radius_learning_rate * g_r, MIN_RADIUS)
        self._sample(step=self._generation + 1)

    def _state(self) -> StateDict:
        return {
            "mean": self._mean.copy(),
            "radius": self._radius,
            "eps": self._eps.copy(),
            "codes": self._codes.copy(),
        }

    def _load_state(self, state: StateDict) -> None:
        self._mean = np.array(state["mean"], dtype=np.float64)
        self._radius = float(state["radius"])
        self._eps = np.array(state["eps"], dtype=np.float64)
        self._codes = np.array(state["codes"], dtype=np.float32)
        if self._mean.shape != (self._dim,) or self._codes.shape[1:] != (self._dim,):
            raise XDreamError(
                f"checkpoint holds codes of dimension {self._mean.shape}, expected ({self._dim},)"
            )
        m = self._params.n_samples // 2
        check_shape("directions", self._eps, (m, self._dim))
        check_shape("codes", self._codes, (2 * m, self._dim))
