"""Exceptions that xdream raises for problems the user can fix.

Every :class:`XDreamError` message says what was expected, what came, and how to fix it. The
command line prints the message (no traceback) and exits with status 2, or with the error's
own ``exit_status`` where it has one (a rig run paused by ``on_timeout = "pause"``: 3).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


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
    """

    def __init__(self, message: str, saved: dict[str, Any], now: dict[str, Any]) -> None:
        super().__init__(message)
        self.saved = saved
        self.now = now


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest of ``choices`` to ``name``, or ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""
