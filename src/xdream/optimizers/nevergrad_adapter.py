"""Adapter to any optimiser of nevergrad (Rapin & Teytaud 2018) by name; an optional extra.

``make("nevergrad", dim, optimizer="TwoPointsDE")``. nevergrad minimises, so scores are
negated here and nowhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pickle
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from xdream.errors import ConfigError, XDreamError, did_you_mean
from xdream.optimizers import register
from xdream.optimizers.base import MinimiserAdapter
from xdream.optimizers.es_common import (
    FloatArray,
    check_float,
    check_int,
    check_shape,
    initial_mean,
)
from xdream.types import Codes, StateDict


def import_nevergrad() -> Any:
    """The ``nevergrad`` module, or an :class:`XDreamError` that says how to install it."""
    try:
        import nevergrad
    except ImportError:
        raise XDreamError(
            "the 'nevergrad' optimizer needs the optional package nevergrad: "
            "pip install 'xdream[nevergrad]' (or pip install nevergrad)"
        ) from None
    return nevergrad


@contextlib.contextmanager
def nevergrad_calls(name: str = "") -> Iterator[None]:
    """Around every call into nevergrad: an error raised inside nevergrad becomes one
    :class:`XDreamError` that names the optimiser (``name``) and what to do; its warnings
    silenced, and CSA instead of TPA as the
    step-size rule of the pycma CMA-ES that nevergrad's CMA family builds (``CMA``,
    ``DiagonalCMA``, the CMA that ``NGOpt`` picks, ...).

    pycma uses two-point adaptation (TPA) from 300 dimensions on, and TPA needs the two
    mean-shift samples it injects into the first ``ask`` after each ``tell``. nevergrad asks its
    CMA for a second population before telling the first whenever its own population (at least
    ``4 + 3 ln N``, more for some variants) differs from the candidates asked per generation, and
    pycma then fails with "Mean shift samples are expected but missing" (nevergrad issue 1690,
    open for nevergrad 1.0.12 with cma 4): at every code space's dimension and within the first
    25 generations. CSA, pycma's rule below 300 dimensions, has no such samples. Only the
    CMA-ES created during these calls is affected; the module's setting is restored after.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import cma.evolution_strategy as pycma_es
        except ImportError:  # nevergrad without pycma: nothing to change
            pycma_es = None
        saved = pycma_es.TPA_dimension if pycma_es is not None else None
        if pycma_es is not None:
            pycma_es.TPA_dimension = math.inf
        try:
            yield
        except Exception as err:
            first_line = str(err).splitlines()[0] if str(err) else "no message"
            raise XDreamError(
                f"nevergrad's optimizer {name!r} failed inside nevergrad "
                f"({type(err).__name__}: {first_line}). Some of nevergrad's optimizers fail on "
                "some problems (NGOpt, for one, in its meta-model on small problems with numpy "
                "2): choose another, e.g. optimizer = 'TwoPointsDE' or 'DiagonalCMA', or "
                "another xdream optimizer"
            ) from err
        finally:
            if pycma_es is not None:
                pycma_es.TPA_dimension = saved


@dataclasses.dataclass(frozen=True)
class NevergradParams:
    """Hyperparameters of :class:`Nevergrad`.

    Attributes:
        optimizer: a name from ``nevergrad.optimizers.registry``: "TwoPointsDE" (default),
            "DiagonalCMA", "PSO", "NGOpt" (which, in nevergrad 1.0.12 with numpy 2, can fail
            inside its meta-model on small problems), ...
        population_size: codes per generation (nevergrad's ``num_workers``).
        sigma0: mutation scale of the ``Array`` parametrisation, in code units.
        budget: expected number of presentations, a hint that some optimisers (NGOpt) use to
            choose their method; ``None`` gives none.
    """

    optimizer: str = "TwoPointsDE"
    population_size: int = 40
    sigma0: float = 1.0
    budget: int | None = 3000

    def __post_init__(self) -> None:
        if not isinstance(self.optimizer, str) or not self.optimizer:
            raise ValueError(
                f"optimizer must be a nevergrad optimizer name, got {self.optimizer!r}"
            )
        check_int("population_size", self.population_size, 1)
        check_float("sigma0", self.sigma0, 0.0)
        check_int("budget", self.budget, 1, allow_none=True)


@register
class Nevergrad(MinimiserAdapter[NevergradParams]):
    """Any nevergrad optimiser, asked for ``population_size`` candidates per generation.

    The parametrisation is ``ng.p.Array`` starting at zeros or the mean of ``init_codes``, with
    mutation scale ``sigma0``; its random state is seeded from the optimiser's seed, so runs are
    reproducible and a checkpoint (the pickled nevergrad optimiser) resumes exactly. A code
    without a response (NaN) is told as the worst answered loss of its generation; a generation
    without any answer is not told: the same codes are shown again. The CMA-ES of nevergrad's
    CMA family adapts its step size by CSA here, also from 300 dimensions on, where pycma would
    use TPA and fail under nevergrad's batching (:func:`nevergrad_calls`). Needs ``pip install
    nevergrad``.

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("nevergrad", dim=8, seed=0, optimizer="TwoPointsDE", population_size=10)
    >>> for _ in range(30):  # doctest: +SKIP
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    """

    name: ClassVar[str] = "nevergrad"
    Params: ClassVar[type[NevergradParams]] = NevergradParams
    # 2: nevergrad's CMA family steps with CSA, not pycma's TPA (see nevergrad_calls)
    version: ClassVar[int] = 2

    def __init__(
        self,
        dim: int,
        params: NevergradParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params or NevergradParams(), seed, init_codes)
        ng = import_nevergrad()
        p = self._params
        registry = ng.optimizers.registry
        if p.optimizer not in registry:
            raise ConfigError(
                f"unknown nevergrad optimizer {p.optimizer!r}.{did_you_mean(p.optimizer, registry)}"
                " Names are case-sensitive; common ones are TwoPointsDE (the default), "
                f"DiagonalCMA, CMA, PSO, OnePlusOne and NGOpt. All {len(registry)}: "
                'python -c "import nevergrad; print(sorted(nevergrad.optimizers.registry))"'
            )
        param = ng.p.Array(init=initial_mean(self._init_codes, self._dim)).set_mutation(
            sigma=float(p.sigma0)
        )
        param.random_state = np.random.RandomState(int(self._rng.integers(2**31 - 1)))
        with nevergrad_calls(p.optimizer):
            self._opt = registry[p.optimizer](
                parametrization=param, budget=p.budget, num_workers=p.population_size
            )
        self._sample(step=0)

    @property
    def optimizer(self) -> Any:
        """The wrapped nevergrad optimiser (read it; calling it breaks determinism)."""
        return self._opt

    def _sample(self, step: int) -> None:
        with nevergrad_calls(self._params.optimizer):
            self._candidates = [self._opt.ask() for _ in range(self._params.population_size)]
        self._show(
            np.stack([np.asarray(c.value, dtype=np.float64) for c in self._candidates]), step
        )

    def _tell_losses(self, losses: FloatArray) -> None:
        with nevergrad_calls(self._params.optimizer):
            for candidate, value in zip(self._candidates, losses):
                self._opt.tell(candidate, float(value))

    def _state(self) -> StateDict:
        blob = pickle.dumps((self._opt, self._candidates), protocol=pickle.HIGHEST_PROTOCOL)
        return {"nevergrad": blob, "codes": self._codes.copy()}

    def _load_state(self, state: StateDict) -> None:
        self._opt, self._candidates = pickle.loads(state["nevergrad"])
        self._codes = np.array(state["codes"], dtype=np.float32)
        if self._codes.ndim != 2 or self._codes.shape[1] != self._dim:
            raise XDreamError(
                f"checkpoint codes have shape {self._codes.shape}, expected (n, {self._dim})"
            )
        check_shape("codes", self._codes, (self._params.population_size, self._dim))
