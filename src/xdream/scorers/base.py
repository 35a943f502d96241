"""The scorer role: images (and their ids) in, one score per image out (NaN = no response)."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xdream.errors import XDreamError
from xdream.types import Images, Scores, StateDict


class Scorer(abc.ABC):
    """Base class for scorers: a network unit, a recording rig, or anything else.

    ``score`` receives the images of a generation in one call; a scorer that answers block by
    block (a rig) may return NaN for images that got no response. Stateful scorers (noise RNGs,
    rig block counters) implement :meth:`state_dict` / :meth:`load_state_dict`.

    A scorer may record rows of its own (a rig's blocks and presentations): it sets
    ``last_extra`` in each :meth:`score` call to ``{"group/dataset": rows}`` (or ``None``), and
    the experiment records that generation's rows in ``record.h5``, where
    ``xdream.records.read(DIR).extra`` returns them (``{"group/dataset": array}``, the rows of
    every generation in order). Each key is a path of at least two names (``"mine/latency"``,
    ``"mine/trials/response"``), the first not one of xdream's own
    (:data:`xdream.records.OWN_NAMES`: ``references``, ``generations``, ``codes``, ...); each
    value an array (a list, a NumPy array, a CPU tensor) of rows: numbers, booleans or strings,
    one row per entry along its first axis. The datasets of a group (the path without its last
    name) have as many rows each, and in every generation the same datasets with the same row
    shape and a type that fits the first (ints, then floats, is refused). The experiment adds
    each group's ``generation`` dataset, the generation of each row (a scorer that gives one
    must give that number). Anything else stops the run with an :class:`XDreamError` naming
    the key and what is wrong, before the generation is told or recorded.
    """

    records_in_background: bool = True
    """Whether the experiment may write a generation's records (journal, PNGs, checkpoint) in a
    background thread while this scorer scores the next generation. A scorer whose own durable
    state must stay in step with the experiment's checkpoint (a rig remembers only the last
    answered generation) sets this to False and gets the records through :meth:`run_when_idle`.
    """

    @abc.abstractmethod
    def score(self, images: Images, ids: list[str]) -> Scores:
        """Scores ``(n,)`` float64 for ``images`` ``(n, 3, H, W)`` in [0, 1]."""

    def check_folder(self, folder: Path) -> None:  # noqa: B027 (optional hook)
        """Called with the experiment folder before the experiment makes or writes anything
        there for a new run (before it makes the folder) or a resume (before it writes); the
        experiment then calls :meth:`bind`.

        A scorer that would refuse ``folder`` in :meth:`bind` (a rig's share not mounted,
        another session's files in its folders) raises the same :class:`XDreamError` here,
        so that a refused run leaves no folder behind and the same call works once the cause
        is fixed. It must not write anything. A resume of a run whose budget is spent (nothing
        left to score) goes on without :meth:`bind` where this refuses (:meth:`close` still
        comes).
        """

    def bind(self, folder: Path) -> None:  # noqa: B027 (optional hook)
        """Called with the experiment folder before the first generation and on resume.

        A scorer that keeps its own durable state (a rig's journal of blocks) keeps it there.
        """

    def start_generation(self, generation: int) -> None:  # noqa: B027 (optional hook)
        """Called before each generation's :meth:`score` with its number (0-based)."""

    def prepare(self, images: Images, ids: list[str]) -> None:  # noqa: B027 (optional hook)
        """Called after :meth:`start_generation` with what :meth:`score` receives next.

        It may come before the previous generation's checkpoint is written, so a scorer may
        start slow work here (a rig encodes its first block's files) but must not change
        anything durable or that :meth:`state_dict` returns until :meth:`score` is called.
        """

    def run_when_idle(self, task: Callable[[], None]) -> None:
        """Run ``task`` (the experiment's records, its progress line) when the scorer would
        otherwise wait.

        By default at once. A scorer that runs it later, during the next :meth:`score` (a rig:
        once the next block is out), must answer the previous generation again if it is asked
        to (the experiment may be resumed from the checkpoint before it), and run whatever is
        left in :meth:`close`.
        """
        task()

    def describe(self) -> dict[str, Any]:
        """A JSON-able description of the target for records and summaries.

        It should hold only what defines the target (what the scores mean: the unit, the
        model, its parameters), nothing of the session (a time, a host, ``repr(self)``):
        :meth:`Experiment.restore() <xdream.experiment.Experiment.restore>` of a run built
        from Python objects compares it, key by key, with the description the run was built
        with, and refuses the run where a key differs (``batch_size`` and ``device`` may).
        ``restore(accept=["target.key"])`` takes a difference known to be harmless."""
        return {"kind": type(self).__name__}

    def state_dict(self) -> StateDict:
        """State needed to continue exactly (RNGs, counters)."""
        return {}

    def load_state_dict(self, state: StateDict) -> None:
        """Restore :meth:`state_dict`."""
        del state

    def stopped(self, error: BaseException) -> None:  # noqa: B027 (optional hook)
        """Called when ``error`` stops the run before its budget is spent (an error, Ctrl-C,
        SIGTERM or SIGHUP, a rig's pause, a ``break`` out of the experiment's generations),
        once the experiment has written what it could and before it lets its folder go; also
        when a restore (``xdream resume``) fails after it called :meth:`bind`.

        A scorer that reports to someone (a rig's status file) says here that the run stopped.
        The run may be continued later, which calls :meth:`bind` again. It should not raise
        (the experiment notes an error from it on ``error``, which goes on).
        """

    def close(self) -> None:  # noqa: B027 (optional hook, nothing to release by default)
        """Release resources (files, processes); the experiment calls it when the run finishes."""


def as_scores(raw: Any) -> np.ndarray:
    """A scorer's answer as float64 scores: a sequence, NumPy array or tensor (detached, moved
    to the CPU) of real numbers, ``None`` or NaN for a missing response."""
    if raw is None:  # np.asarray(None) is a 0-d NaN: the error would have been about its shape
        raise XDreamError(
            f"the scorer returned None (does it end with `return scores`?); {_EXPECTED_SCORES}"
        )
    try:
        if isinstance(raw, torch.Tensor):
            if raw.is_complex():
                raise TypeError("complex")
            raw = raw.detach().to("cpu", torch.float64).numpy()
        if isinstance(raw, (dict, str, bytes)) or np.asarray(raw).dtype.kind in "cSUmMV":
            raise TypeError("not real numbers")
        return np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise XDreamError(
            f"the scorer returned {type(raw).__name__} {brief(raw)}; {_EXPECTED_SCORES}"
        ) from None


_EXPECTED_SCORES = (
    "expected one real number per image (a list, NumPy array or tensor of floats; NaN or None "
    "for no response)"
)


def brief(value: Any) -> str:
    """``repr(value)``, cut to 60 characters (for error messages)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FunctionScorer(Scorer):
    """A plain function ``score(images, ids) -> scores`` as a scorer (:class:`Experiment`
    wraps one given as its scorer). It keeps no state, so a run resumes exactly only if the
    function is deterministic."""

    def __init__(self, function: Callable[[Images, list[str]], Any]) -> None:
        if isinstance(function, type) and issubclass(function, Scorer):
            raise XDreamError(
                f"the scorer is the class {function.__name__}; give an instance of it "
                f"({function.__name__}(...))"
            )
        if not callable(function):
            raise XDreamError(
                f"a scorer function must be callable as score(images, ids), got "
                f"{type(function).__name__} {brief(function)}"
            )
        _check_takes_images_and_ids(function)
        self.function: Callable[[Images, list[str]], Any] = function

    def score(self, images: Images, ids: list[str]) -> Scores:
        return as_scores(self.function(images, ids))

    def describe(self) -> dict[str, Any]:
        """``function``: the function's module and name (restore compares the name alone
        where either side's module is ``__main__``: a run started as a script is continued
        from an import of it)."""
        name = getattr(self.function, "__qualname__", type(self.function).__name__)
        return {"kind": "function", "function": f"{self.function.__module__}.{name}"}


def _check_takes_images_and_ids(function: Callable[..., Any]) -> None:
    """Refuse ``function`` if it certainly cannot be called with two positional arguments."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature to read (some built-ins): the call will tell
        return
    try:
        signature.bind(None, None)
    except TypeError:
        name = getattr(function, "__name__", type(function).__name__)
        raise XDreamError(
            f"the scorer function {name}{signature} cannot be called as score(images, ids): it "
            "is given each generation's images (an (n, 3, H, W) tensor in [0, 1]) and their ids "
            "(n strings), and returns one score per image; write it as `def score(images, ids):` "
            "or `lambda images, ids: ...`"
        ) from None
