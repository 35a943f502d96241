"""Exceptions that xdream raises for problems the user can fix.

Every :class:`XDreamError` message says what was expected, what came, and how to fix it. The
command line prints the message (no traceback) and exits with status 2, or with the error's
own ``exit_status`` where it has one (a rig run paused by ``on_timeout = "pause"``: 3).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def add_note(err: BaseException, note: str) -> None:
    """Add ``note`` to ``err``'s ``__notes__``, as ``BaseException.add_note`` does from Python
    3.11 on (a traceback shows them there) and on Python 3.10 too, where that method is
    missing and calling it would replace ``err`` with an ``AttributeError``. The command line
    prints each note after the error's line."""
    notes = getattr(err, "__notes__", None)
    if not isinstance(notes, list):
        notes = []
        object.__setattr__(err, "__notes__", notes)  # an attribute Python 3.10 does not declare
    notes.append(note)


def notes_of(err: BaseException) -> list[str]:
    """The notes added (:func:`add_note`) to ``err`` and to the errors it was raised from or
    while handling (an :class:`XDreamError` raised for an ``OSError`` that was noted), as
    text, each once."""
    found: list[str] = []
    seen: set[int] = set()
    at: BaseException | None = err
    while at is not None and id(at) not in seen:
        seen.add(id(at))
        notes = getattr(at, "__notes__", None)
        if isinstance(notes, list):
            found += [str(n) for n in notes if str(n) not in found]
        at = at.__cause__ or at.__context__
    return found


class XDreamError(Exception):
    """A problem with the user's input, configuration, files or environment."""


class ConfigError(XDreamError, ValueError):
    """A configuration value or key is invalid."""


class UnknownNameError(ConfigError):
    """A registry has nothing under the name asked for (``kind``: "generator", "optimizer",
    ...; ``name``: the name)."""

    def __init__(self, message: str, kind: str, name: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class MissingFileError(XDreamError, FileNotFoundError):
    """A file xdream needs (weights, a config, a record) is not where it was expected."""


class RecordUnreadableError(XDreamError):
    """An experiment's ``record.h5`` exists but HDF5 cannot read it: damaged by a kill, or
    caught by a reader while the run was writing it (``xdream resume`` rebuilds it)."""


class FolderInUseError(XDreamError):
    """Another process is running the experiment in this folder (``xdream resume`` of a run
    that is still going, or two runs given one ``--out``)."""


class DiskFullError(XDreamError):
    """The disk (or the quota) of an experiment's folder is full. What the run finished before
    is kept (journal and checkpoint): free some space, then ``xdream resume`` continues it."""


class SummaryUnreadableError(XDreamError):
    """An experiment's ``summary.json`` exists but is not a JSON object: cut short by a power
    loss or a full disk (runs replace it whole, so a reader never sees it half-written).
    ``xdream resume`` writes it again from the checkpoint."""


class ConfigChangedError(XDreamError):
    """A resume refused because the config changed in a key that defines the experiment.

    Attributes:
        saved: the resolved config the run started with (``Config.to_dict()``).
        now: the resolved config it would continue with.
        notes: by ``"section.key"``, what the file a changed weight-file path now names is,
            where it is another file than the run read
            (:func:`xdream.experiment.other_files`).
    """

    def __init__(
        self,
        message: str,
        saved: dict[str, Any],
        now: dict[str, Any],
        notes: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.saved = saved
        self.now = now
        self.notes = dict(notes or {})


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices`` to ``name``, or ``""``.

    Case does not count: a choice equal to ``name`` but for case is taken first (``NGOPT`` ->
    ``NGOpt``), then the closest by lower-cased names; the choice is named as it is spelled.
    """
    spelled: dict[str, str] = {}
    for choice in choices:
        spelled.setdefault(str(choice).lower(), str(choice))
    lower = str(name).lower()
    if lower in spelled:
        return f" Did you mean {spelled[lower]!r}?"
    close = difflib.get_close_matches(lower, list(spelled), n=1, cutoff=0.5)
    return f" Did you mean {spelled[close[0]]!r}?" if close else ""
