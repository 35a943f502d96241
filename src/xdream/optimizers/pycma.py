"""Adapters to pycma (the ``cma`` package, Hansen et al.): full and diagonal CMA-ES.

pycma minimises, so scores are negated here and nowhere else. pycma draws its samples from
numpy's *global* random state (``np.random.randn``); each adapter keeps its own copy of that
state and swaps it in only around its calls into pycma, so adapters neither disturb nor are
disturbed by anything else using ``np.random``, and a resumed run is exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pickle
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from xdream.errors import XDreamError, did_you_mean
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

QUIET: dict[str, Any] = {"verbose": -9, "verb_disp": 0, "verb_log": 0}
"""pycma options that keep it from printing and from writing log files."""


def import_cma() -> Any:
    """The ``cma`` module, or an :class:`XDreamError` that says how to install it."""
    try:
        import cma
    except ImportError:
        raise XDreamError(
            "the pycma optimizers need the optional package 'cma': "
            "pip install 'xdream[pycma]' (or pip install cma)"
        ) from None
    return cma


@dataclasses.dataclass(frozen=True)
class PycmaParams:
    """Hyperparameters of the pycma adapters.

    Attributes:
        sigma0: initial step size (about 1 for N(0, 1)-scaled codes).
        population_size: codes per generation; ``None`` is pycma's ``4 + floor(3 ln N)``.
        options: further pycma options (``cma.CMAOptions()`` lists them; pycma also takes a
            unique prefix of a name, in any case); ``seed``, ``popsize``, the verbosity and,
            for ``pycma-diag``, ``CMA_diagonal`` are set by the adapter. An unknown name is
            refused, a value that pycma refuses stops with pycma's message, and a string that
            pycma cannot read as a value or an expression (``"100 * N"``) is refused.
    """

    sigma0: float = 1.0
    population_size: int | None = None
    options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_float("sigma0", self.sigma0, 0.0)
        check_int("population_size", self.population_size, 2, allow_none=True)
        if self.options is not None and not isinstance(self.options, dict):
            raise ValueError(f"options must be a mapping of pycma options, got {self.options!r}")
        keys = {str(key): str(key) for key in self.options or {}}
        if keys:
            try:
                import cma
            except ImportError:  # the adapter says how to install it
                cma = None
            if cma is not None:
                valid = cma.CMAOptions()
                for key in keys:
                    corrected = valid.corrected_key(key)
                    if corrected is None:
                        raise ValueError(
                            f"unknown pycma option {key!r}.{did_you_mean(key, valid)} "
                            "cma.CMAOptions() lists them"
                        )
                    keys[key] = corrected
        reserved = {"seed", "popsize"} & set(keys.values())
        if reserved:
            raise ValueError(
                f"options {sorted(reserved)} are set by the adapter; use the seed and "
                "population_size arguments instead"
            )


class PycmaAdapter(MinimiserAdapter[PycmaParams]):
    """Base of the pycma adapters: ``ask``/``tell`` on a ``cma.CMAEvolutionStrategy``.

    The strategy is seeded with ``cma_seed``, drawn from the optimiser's seed. Scores are
    negated for pycma; a code without a response (NaN) is told to pycma as the worst answered
    loss of its generation (ranked last, tied). A generation without any answer is not told to
    pycma: the same codes are shown again.
    """

    Params: ClassVar[type[PycmaParams]] = PycmaParams
    diagonal: ClassVar[bool] = False

    def __init__(
        self,
        dim: int,
        params: PycmaParams | None = None,
        seed: int | None = None,
        init_codes: Codes | None = None,
    ) -> None:
        super().__init__(dim, params or PycmaParams(), seed, init_codes)
        cma = import_cma()
        p = self._params
        self.cma_seed = int(self._rng.integers(1, 2**31 - 1))
        opts: dict[str, Any] = {**QUIET, **(p.options or {}), "seed": self.cma_seed}
        if p.population_size is not None:
            opts["popsize"] = p.population_size
        if self.diagonal:
            opts["CMA_diagonal"] = True
        self._np_state: dict[str, Any] | None = None
        with self._pycma_rng():
            try:
                self._es = cma.CMAEvolutionStrategy(
                    initial_mean(self._init_codes, self._dim), float(p.sigma0), opts
                )
            except Exception as err:  # pycma's own checks of the options' values
                first_line = str(err).splitlines()[0] if str(err) else "no message"
                raise XDreamError(
                    f"pycma refused the optimizer's settings ({type(err).__name__}: "
                    f"{first_line}); see cma.CMAOptions() for what each option takes"
                ) from None
            _check_option_values(self._es, p.options or {})
        self._sample(step=0)
        self._popsize = len(self._x)  # pycma's default when population_size is None

    @property
    def es(self) -> Any:
        """The wrapped ``cma.CMAEvolutionStrategy`` (read it; calling it breaks determinism)."""
        return self._es

    @property
    def mean(self) -> FloatArray:
        """pycma's distribution mean (a copy)."""
        return np.array(self._es.mean, dtype=np.float64)

    @property
    def sigma(self) -> float:
        """pycma's overall step size."""
        return float(self._es.sigma)

    def status(self) -> dict[str, Any]:
        """``step_size``: the adapted ``sigma`` (a collapsed one means the search has stopped)."""
        return {"step_size": self.sigma}

    @contextlib.contextmanager
    def _pycma_rng(self) -> Iterator[None]:
        """Swap this adapter's numpy global random state in, and pycma's warnings off."""
        outside = np.random.get_state(legacy=False)
        if self._np_state is not None:
            np.random.set_state(self._np_state)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            self._np_state = np.random.get_state(legacy=False)
            np.random.set_state(outside)

    def _sample(self, step: int) -> None:
        with self._pycma_rng():
            solutions = self._es.ask()
        self._x: FloatArray = np.array(solutions, dtype=np.float64)
        self._show(self._x, step)

    def _tell_losses(self, losses: FloatArray) -> None:
        with self._pycma_rng():
            self._es.tell(list(self._x), losses.tolist())

    def _state(self) -> StateDict:
        return {
            "es": _dumps(self._es),
            "np_state": self._np_state,
            "x": self._x.copy(),
        }

    def _load_state(self, state: StateDict) -> None:
        self._es = pickle.loads(state["es"])
        self._np_state = state["np_state"]
        self._x = np.array(state["x"], dtype=np.float64)
        self._codes = self._x.astype(np.float32)
        if self._x.ndim != 2 or self._x.shape[1] != self._dim:
            raise XDreamError(
                f"checkpoint codes have shape {self._x.shape}, expected (n, {self._dim})"
            )
        check_shape("codes", self._x, (self._popsize, self._dim))


def _check_option_values(es: Any, options: dict[str, Any]) -> None:
    """Refuse option values that pycma cannot read.

    pycma evaluates a string value as an expression (``"100 * N"``) when it first needs it, and
    one it cannot read (``CMA_active = "notabool"``) only gives a warning and is then used as the
    string itself, which silently acts as ``True`` or fails much later.
    """
    for key, value in options.items():
        if not isinstance(value, str):
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:  # pycma turns a failed evaluation into a warning
                es.opts.eval(es.opts.corrected_key(key) or key)
            except Exception as err:
                warnings.warn(str(err), stacklevel=1)
        if caught:
            why = str(caught[0].message).split(" (known words")[0].splitlines()[0]
            raise XDreamError(
                f"pycma option {key!r} = {value!r} is not a value pycma can read ({why}): give "
                "a number, a boolean or an expression of N, dim and popsize (such as "
                "'100 * N'); cma.CMAOptions() shows what each option takes"
            )


class _GlobalRandnPickler(pickle.Pickler):
    """Pickles the *global* ``np.random.randn`` (pycma's sampler) as a reference to it.

    By default a bound method pickles its ``RandomState`` by value, so an unpickled strategy
    would draw from a private copy instead of the state this adapter swaps in.
    """

    def reducer_override(self, obj: Any) -> Any:
        if (
            type(obj) is type(np.random.randn)
            and getattr(obj, "__self__", None) is np.random.mtrand._rand
        ):
            return _global_random_method, (obj.__name__,)
        return NotImplemented


def _global_random_method(name: str) -> Any:
    """``np.random.<name>`` of numpy's global random state (what unpickling calls)."""
    return getattr(np.random, name)


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _GlobalRandnPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


@register
class Pycma(PycmaAdapter):
    """pycma's full-covariance CMA-ES (Hansen 2016), through the ``cma`` package.

    ``O(N^2)`` memory and ``O(lambda N^2)`` time per generation plus periodic ``O(N^3)``
    eigendecompositions: about 0.7 s per generation at N = 4096 (Wang & Ponce 2022).

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("pycma", dim=8, seed=0, sigma0=0.5)
    >>> for _ in range(40):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, bool(np.abs(opt.mean - 1.0).max() < 0.1)
    ((10, 8), True)
    """

    name: ClassVar[str] = "pycma"


@register
class PycmaDiagonal(PycmaAdapter):
    """pycma with a diagonal covariance throughout (``CMA_diagonal=True``, Ros & Hansen 2008).

    >>> import numpy as np
    >>> from xdream.optimizers import make
    >>> opt = make("pycma-diag", dim=8, seed=0, sigma0=0.5)
    >>> for _ in range(40):
    ...     codes = opt.ask()
    ...     opt.tell(codes, -np.sum((codes - 1.0) ** 2, axis=1))
    >>> opt.ask().shape, bool(np.abs(opt.mean - 1.0).max() < 0.1)
    ((10, 8), True)
    """

    name: ClassVar[str] = "pycma-diag"
    diagonal: ClassVar[bool] = True
