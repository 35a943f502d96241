"""The optimiser role: ``ask()`` proposes codes, ``tell()`` receives their scores.

Optimisers are numpy on the CPU and maximise: a higher score is better. A NaN score means "no
response" (a rig that missed an image); each optimiser documents how it treats one.
"""

from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from xdream.errors import XDreamError
from xdream.optimizers.es_common import check_pending, minimiser_losses
from xdream.params import check_seed
from xdream.types import Codes, Scores, StateDict


@dataclass(frozen=True)
class Best:
    """The best code seen so far and its score (``-inf`` and ``None`` before any response)."""

    code: Codes | None
    score: float


def make_rng(seed: int | None) -> np.random.Generator:
    """The project's RNG: PCG64 seeded from ``seed`` (fresh entropy when ``None``); a seed that
    is not an integer >= 0 raises :class:`~xdream.errors.ConfigError`. Any integer type is
    taken (a NumPy integer from ``np.arange`` too): the generator's seed sequence holds it as a
    Python ``int``, which is what :attr:`Optimizer.seed` reports."""
    check_seed(seed, allow_none=True, python=True)
    return np.random.Generator(np.random.PCG64(None if seed is None else int(seed)))


def rng_seed(rng: np.random.Generator) -> int | None:
    """The seed ``rng`` was made with by :func:`make_rng`: the one given, or the fresh entropy
    NumPy drew for ``None`` (either way, ``make_rng`` of it draws the same); ``None`` when that
    cannot be told (a generator that was spawned from another)."""
    seq = getattr(rng.bit_generator, "seed_seq", None)
    if not isinstance(seq, np.random.SeedSequence) or seq.spawn_key:
        return None
    entropy = seq.entropy
    if isinstance(entropy, numbers.Integral) and not isinstance(entropy, bool):
        return int(entropy) if entropy >= 0 else None
    return None


def _real_scores(scores: Any) -> Scores:
    """``scores`` as float64, or one :class:`XDreamError` for strings, complex numbers and
    other things that are not real numbers."""
    try:
        raw = np.asarray(scores)
        if raw.dtype.kind not in "USc":
            return raw.astype(np.float64)
    except (TypeError, ValueError):
        raw = None
    got = "complex numbers" if raw is not None and raw.dtype.kind == "c" else repr(scores)[:60]
    raise XDreamError(f"scores must be real numbers or NaN (no response), got {got}")


P = TypeVar("P")
"""The hyperparameter dataclass of an optimiser (``Optimizer[GeneticParams]``)."""


class Optimizer(abc.ABC, Generic[P]):
    """Base class: validation, best-so-far tracking, ids, and state with the RNG.

    Subclasses implement :meth:`_ask`, :meth:`_tell` and, when they hold state beyond the base's,
    :meth:`_state` / :meth:`_load_state`. ``Params`` is the frozen hyperparameter dataclass.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[Any]]
    uses_spectrum: ClassVar[bool] = False
    """True when the constructor takes ``spectrum`` (a :class:`xdream.generators.spectrum.
    CodeSpectrum` or ``None``): :func:`xdream.optimizers.make` then passes the generator's."""
    version: ClassVar[int] = 1
    """Bumped when the algorithm changes for the same hyperparameters, so that benchmark rows of
    the old behaviour are not mixed with new ones (``xdream.bench.optimizers``)."""

    def __init__(
        self, dim: int, params: P, seed: int | None = None, init_codes: Codes | None = None
    ) -> None:
        if not isinstance(dim, (int, np.integer)) or dim < 1:
            raise XDreamError(f"code dimension must be a positive integer, got {dim!r}")
        self._dim = int(dim)
        self._params = params
        self._rng = make_rng(seed)
        self._generation = 0
        self._best_code: Codes | None = None
        self._best_score = -np.inf
        self._ids: list[str] = []
        self._genealogy: list[str] = []
        if init_codes is not None:
            init_codes = self._check_codes(init_codes, "init_codes", any_n=True)
        self._init_codes = init_codes

    # ----------------------------------------------------------------- public API
    @property
    def dim(self) -> int:
        """Dimension of the code space."""
        return self._dim

    @property
    def params(self) -> P:
        """The hyperparameters (a frozen dataclass)."""
        return self._params

    @property
    def generation(self) -> int:
        """Number of completed ``tell`` calls."""
        return self._generation

    @property
    def seed(self) -> int | None:
        """The seed of the random generator: the one the optimiser was made with, or the fresh
        entropy NumPy drew for it when it was made without one (either way, an optimiser made
        with this seed draws the same); ``None`` when that cannot be told (a generator that
        was restored or spawned from another)."""
        return rng_seed(self._rng)

    @property
    def best(self) -> Best:
        """Best code and score seen so far (copies)."""
        code = None if self._best_code is None else self._best_code.copy()
        return Best(code, float(self._best_score))

    @property
    def image_ids(self) -> list[str]:
        """Ids of the codes returned by the last :meth:`ask` (``gen{g:03d}_{i:06d}``)."""
        return list(self._ids)

    @property
    def genealogy(self) -> list[str]:
        """How each code of the last :meth:`ask` came about (empty strings if not tracked)."""
        return list(self._genealogy)

    def status(self) -> dict[str, Any]:
        """What the optimiser has found out about the search, for people: JSON-serialisable
        facts (empty unless the optimiser adapts to what it sees). ``"note"``, when present, is
        one sentence worth telling the user; the command line prints it when it changes, and
        ``summary.json`` (``optimizer_status``) and ``xdream report`` show the whole status."""
        return {}

    def ask(self) -> Codes:
        """Propose the next codes, shape ``(n, dim)`` float32 (what :meth:`_ask` returns, in
        that shape, or one :class:`XDreamError` naming the optimiser)."""
        codes = np.ascontiguousarray(self._ask(), dtype=np.float32)
        if codes.ndim != 2 or codes.shape[1] != self._dim:
            raise XDreamError(
                f"optimizer {self.name!r}: _ask() returned codes of shape {codes.shape}; "
                f"expected (n, {self._dim}), n codes of the optimiser's dim"
            )
        if len(self._ids) != len(codes):
            self._ids = [f"gen{self._generation:03d}_{i:06d}" for i in range(len(codes))]
        if len(self._genealogy) != len(codes):
            self._genealogy = [""] * len(codes)
        return codes

    def tell(self, codes: Codes, scores: Scores) -> None:
        """Receive ``scores`` (n,) for ``codes`` (n, dim); NaN means "no response"."""
        codes = self._check_codes(codes, "codes")
        scores = _real_scores(scores)
        if scores.shape != (len(codes),):
            raise XDreamError(
                f"scores must have shape ({len(codes)},) to match the codes, got {scores.shape}"
            )
        if np.isinf(scores).any():
            raise XDreamError(
                "scores must be finite numbers or NaN (no response); got +-inf. "
                "Map failed measurements to NaN."
            )
        old_ids = self._ids
        self._tell(codes, scores)
        if self._ids is old_ids:  # the subclass named no new codes: ask() makes default ids
            self._ids, self._genealogy = [], []
        # best-so-far only after _tell accepted the codes
        if (~np.isnan(scores)).any():
            i = int(np.nanargmax(scores))
            if scores[i] > self._best_score:
                self._best_score = float(scores[i])
                self._best_code = codes[i].copy()
        self._generation += 1

    def state_dict(self) -> StateDict:
        """The run's state: RNG, progress, best so far and the optimiser's own state.

        The hyperparameters are not in it: load it into an optimiser made with the same ones
        (as ``xdream resume`` does from the run's config) to continue exactly. A state of
        another optimiser, dimension or population size is refused on load.
        """
        return {
            "name": self.name,
            "dim": self._dim,
            "rng": self._rng.bit_generator.state,
            "generation": self._generation,
            "best_code": None if self._best_code is None else self._best_code.copy(),
            "best_score": float(self._best_score),
            "ids": list(self._ids),
            "genealogy": list(self._genealogy),
            "own": self._state(),
        }

    def load_state_dict(self, state: StateDict) -> None:
        """Restore a state produced by :meth:`state_dict` of the same optimiser, dimension and
        population size; the other hyperparameters are this optimiser's (they are not compared).
        A state that is refused leaves the optimiser as it was.
        """
        if state.get("name") != self.name or state.get("dim") != self._dim:
            raise XDreamError(
                f"checkpoint is for optimizer {state.get('name')!r} with dim {state.get('dim')}, "
                f"not {self.name!r} with dim {self._dim}"
            )
        before = self.state_dict()
        try:
            self._load_all(state)
        except BaseException:
            self._load_all(before)  # its own state, as it was: all or nothing
            raise

    def _load_all(self, state: StateDict) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._generation = int(state["generation"])
        self._best_code = None if state["best_code"] is None else np.array(state["best_code"])
        self._best_score = float(state["best_score"])
        self._ids = list(state["ids"])
        self._genealogy = list(state["genealogy"])
        self._load_state(state["own"])

    # ------------------------------------------------------------- for subclasses
    @abc.abstractmethod
    def _ask(self) -> Codes:
        """The pending codes, ``(n, dim)``. Called more than once per generation (by the
        experiment's checks and :meth:`done` too): return the same codes each time and draw
        new ones in :meth:`_tell` (and the constructor)."""

    @abc.abstractmethod
    def _tell(self, codes: Codes, scores: Scores) -> None:
        """Learn from the scores of the pending codes and draw the next ones."""

    def _state(self) -> StateDict:
        return {}

    def _load_state(self, state: StateDict) -> None:
        del state

    def _stepped(self, mean: npt.NDArray[np.float64], scores: Scores) -> npt.NDArray[np.float64]:
        """``mean`` after a step taken in proportion to the scores, refused with a clear error
        when it left the numbers a code can hold (scores too large for the learning rate)."""
        with np.errstate(over="ignore", invalid="ignore"):
            fits = bool(np.isfinite(mean.astype(np.float32)).all())
        if not fits:
            largest = float(np.nanmax(np.abs(scores))) if np.isfinite(scores).any() else np.nan
            raise XDreamError(
                f"{self.name}: its step from this generation's scores (largest magnitude "
                f"{largest:.3g}) overflowed; {self.name} steps in proportion to the scores, so "
                "scale them down or lower learning_rate"
            )
        return mean

    def _check_codes(self, codes: Any, what: str, any_n: bool = False) -> Codes:
        arr = np.asarray(codes, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != self._dim or (not any_n and len(arr) == 0):
            raise XDreamError(f"{what} must have shape (n, {self._dim}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise XDreamError(f"{what} contain NaN or inf; codes must be finite numbers")
        return arr


class MinimiserAdapter(Optimizer[P]):
    """Base of the adapters to minimising libraries (pycma, nevergrad).

    A generation shows the library's candidates (:meth:`_show`, called by the subclass's
    :meth:`_sample`) and tells it ``-score``, with a missing response told as the worst answered
    loss (:func:`~xdream.optimizers.es_common.minimiser_losses`). A generation without any
    answer is not told: the same codes, with their ids, are shown again. Subclasses implement
    :meth:`_sample` (ask the library, then :meth:`_show`) and :meth:`_tell_losses`.
    """

    _codes: Codes

    @abc.abstractmethod
    def _sample(self, step: int) -> None:
        """Ask the library for generation ``step``'s candidates and :meth:`_show` them."""

    @abc.abstractmethod
    def _tell_losses(self, losses: npt.NDArray[np.float64]) -> None:
        """Tell the library the losses of the candidates shown, in their order."""

    def _show(self, candidates: npt.ArrayLike, step: int) -> None:
        self._codes = np.asarray(candidates, dtype=np.float32)
        self._ids = [f"gen{step:03d}_{i:06d}" for i in range(len(self._codes))]
        self._genealogy = ["sample"] * len(self._codes)

    def _ask(self) -> Codes:
        return self._codes.copy()

    def _tell(self, codes: Codes, scores: Scores) -> None:
        check_pending(self.name, codes, self._codes)
        losses = minimiser_losses(scores)
        if losses is None:
            self._ids = list(self._ids)  # the same codes, with their ids, once more
            return
        self._tell_losses(losses)
        self._sample(step=self._generation + 1)
