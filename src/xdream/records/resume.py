"""``record.h5`` brought in line with the checkpoint when a run is continued
(:func:`reconcile`, planned by :func:`check_reconcile`): appended from the journal, rebuilt from
it, or cut back."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xdream.errors import RecordUnreadableError, XDreamError
from xdream.records.faults import check_space
from xdream.records.files import _UMASK, atomic_write, fsync_folder
from xdream.records.folder import RunFolder
from xdream.records.h5 import H5Record
from xdream.records.layout import BASE_FILE, UNREADABLE
from xdream.records.messages import rebuild_advice

COPY_BUFFER = 16 << 20
"""Bytes per read when a record is copied (``journal/base.h5``)."""

REBUILD_CHUNK = 64
"""Generations appended at once when ``record.h5`` is rebuilt from the journal (an HDF5 append
costs about as much for one generation as for many; the chunk bounds the memory)."""


def reconcile(
    folder: RunFolder,
    generations: int,
    code_dim: int,
    config: dict[str, Any],
    version: str,
    continues: bool = True,
    plan: RecordPlan | None = None,
) -> str:
    """Make ``record.h5`` hold exactly ``generations`` generations; returns what was done.

    A record whose mark says it was left complete and closed (:meth:`H5Record.mark`) is
    brought up to date in place with the journal's later generations. Otherwise, while the
    journal holds every generation (from ``journal/base.h5`` on, where a finished run went on),
    the record is rebuilt from it: a process killed inside an HDF5 write can leave a file that
    opens but can no longer be written, so the unmarked record of a killed run is never
    trusted. Rows after the checkpoint are dropped (they are recomputed identically); an
    unreadable record is kept aside, not deleted. Without a journal (a finished run) the
    record is only cut back, and where the run ``continues`` (with a larger budget) it is
    kept as ``journal/base.h5``, from which later rebuilds start. ``plan`` is what
    :func:`check_reconcile` found for ``generations`` (found again where not given).
    """
    if plan is None:
        plan = check_reconcile(folder, generations)
    note = _reconcile(folder, plan, generations, code_dim, config, version)
    if continues:
        _keep_base(folder, generations)
    return note


def _keep_base(folder: RunFolder, generations: int) -> None:
    """Copy the complete ``record.h5`` (``generations``) to ``journal/base.h5`` where the
    journal cannot rebuild it: a finished run, whose journal was removed, going on. (The
    journal is written in order and removed whole, so its first file says whether it is
    there.)"""
    start = _journal_start(folder, generations)
    if start == generations or folder.journal_path(start).exists():
        return
    check_space(folder.path, folder.record.stat().st_size)
    folder.journal.mkdir(exist_ok=True)
    with open(folder.record, "rb") as src, atomic_write(folder.journal / BASE_FILE) as dst:
        shutil.copyfileobj(src, dst, COPY_BUFFER)
    fsync_folder(folder.journal)  # its name, and the journal's own in the run's folder
    fsync_folder(folder.path)


@dataclass(frozen=True)
class RecordPlan:
    """How :func:`reconcile` brings ``record.h5`` to the checkpoint's generations, as
    :func:`check_reconcile` found it: ``"append"`` the journal from generation ``start`` to a
    marked record, ``"rebuild"`` it from the journal from ``start`` (0, or the generations of
    ``journal/base.h5``), or ``"keep"`` a record the journal cannot rebuild (a finished run's),
    cut back from ``have`` generations. ``have`` and ``problem`` say what the record held
    (None and what is wrong with it: missing, unreadable)."""

    how: Literal["append", "rebuild", "keep"]
    start: int = 0
    have: int | None = None
    problem: str = ""


def check_reconcile(folder: RunFolder, generations: int) -> RecordPlan:
    """How :func:`reconcile` would bring ``record.h5`` to ``generations``, found without
    writing anything; raises what it would refuse with: a record that neither the journal
    nor its own generations can bring there, or a journal file it needs that is damaged
    (:meth:`RunFolder.check_journal`). A many-unit resume checks every unit this way before it
    writes in any unit's folder."""
    record = H5Record(folder.record)
    trusted = _appendable(record, folder, generations)
    if trusted is not None:
        folder.check_journal(trusted, generations)
        return RecordPlan("append", start=trusted)
    have, problem = _record_problem(folder, record)
    start = _rebuild_start(folder, generations)
    if start is not None:
        folder.check_journal(start, generations)
        return RecordPlan("rebuild", start=start, have=have, problem=problem)
    if have is not None:  # kept as it is: it must read back whole, not only count
        try:
            record.verify()
        except UNREADABLE as err:
            have, problem = None, f"record.h5 was unreadable ({err})"
    if have is None:
        raise RecordUnreadableError(
            f"{problem} in {str(folder.path)!r}. {rebuild_advice(folder.path)}."
        )
    if have < generations:
        base_lost = (folder.journal / BASE_FILE).exists() and folder.journal_base() is None
        raise XDreamError(
            f"record.h5 in {str(folder.path)!r} holds {have} generations, the checkpoint "
            f"{generations}, and the journal is incomplete"
            + (
                " (journal/base.h5, the record this run was continued from, cannot be read)"
                if base_lost
                else ""
            )
            + ": cannot rebuild."
        )
    return RecordPlan("keep", have=have)


def _appendable(record: H5Record, folder: RunFolder, generations: int) -> int | None:
    """The generations of a marked record (:meth:`H5Record.trusted_generations`) that the
    journal brings up to ``generations`` in place, or None."""
    trusted = record.trusted_generations()
    if trusted is None or trusted > generations:
        return None
    return trusted if folder.journal_holds(trusted, generations) else None


def _rebuild_start(folder: RunFolder, generations: int) -> int | None:
    """Where a rebuild of ``generations`` generations starts (0, or the generations of
    ``journal/base.h5``), or None where the journal does not hold the rest."""
    start = _journal_start(folder, generations)
    return start if folder.journal_holds(start, generations) else None


def _journal_start(folder: RunFolder, generations: int) -> int:
    """The first generation the journal must hold to reach ``generations``: 0, or the
    generations of ``journal/base.h5`` (a finished run that went on) where it holds no more."""
    base = folder.journal_base()
    return 0 if base is None or base[1] > generations else base[1]


def _record_problem(folder: RunFolder, record: H5Record) -> tuple[int | None, str]:
    """The record's generations and "", or None and what is wrong with it."""
    try:
        return record.generations(), ""
    except UNREADABLE as err:
        if not folder.record.exists():
            return None, "record.h5 was missing"
        return None, f"record.h5 was unreadable ({err})"


def _reconcile(
    folder: RunFolder,
    plan: RecordPlan,
    generations: int,
    code_dim: int,
    config: dict[str, Any],
    version: str,
) -> str:
    record = H5Record(folder.record)
    if plan.how == "rebuild":
        return _rebuild(folder, plan, generations, code_dim, config, version)
    # the budget may have changed since (a marked record is marked again)
    record.set_config(config, marked=plan.start if plan.how == "append" else None)
    if plan.how == "append":
        if plan.start == generations:
            return ""
        _append_journal(record, folder, plan.start, generations)
        record.mark(generations)
        appended = generations - plan.start
        return f"record.h5 brought up to date from the journal ({appended} generation(s) appended)"
    assert plan.have is not None  # a kept record holds its generations (check_reconcile)
    note = ""
    if plan.have > generations:
        record.truncate(generations)
        note = f"cut {plan.have - generations} unfinished generation(s) from record.h5"
    record.mark(generations)  # complete as it stands (a finished run's)
    return note


def _rebuild(
    folder: RunFolder,
    plan: RecordPlan,
    generations: int,
    code_dim: int,
    config: dict[str, Any],
    version: str,
) -> str:
    """Rebuild ``record.h5`` from the journal (from ``journal/base.h5`` where the plan starts
    after 0) beside it, then swap it into place; an unreadable record is kept aside."""
    record = H5Record(folder.record)
    start, have = plan.start, plan.have
    notes = [plan.problem] if plan.problem else []
    rebuilt = H5Record(folder.path / ".record.h5.rebuild")
    try:  # record.h5 is left as it is until the rebuild is complete
        if start:
            check_space(folder.path, (folder.journal / BASE_FILE).stat().st_size)
            with (
                open(folder.journal / BASE_FILE, "rb") as src,
                atomic_write(rebuilt.path, durable=False) as dst,
            ):
                shutil.copyfileobj(src, dst, COPY_BUFFER)
            rebuilt.set_config(config)
        else:
            rebuilt.initialise(code_dim, config, version, mark=False)
        _append_journal(rebuilt, folder, start, generations)
    except BaseException:
        rebuilt.path.unlink(missing_ok=True)
        raise
    if have is None and folder.record.exists():
        aside = _free_name(folder.path / f"record.h5.unreadable-{int(time.time())}")
        os.replace(folder.record, aside)  # over the empty file that took the name
        notes.append(f"kept it as {aside.name}")
    if have is not None and have > generations:
        notes.append(f"cut {have - generations} unfinished generation(s)")
    record.forget_mark()
    os.replace(rebuilt.path, folder.record)
    record.mark(generations)
    source = "the journal"
    if start:
        source = f"the record of its first {start} generations and the journal"
    return "; ".join([*notes, f"record.h5 rebuilt from {source} ({generations} generations)"])


def _append_journal(record: H5Record, folder: RunFolder, start: int, stop: int) -> None:
    """Append the journal's generations ``start`` to ``stop - 1`` to ``record``, unmarked."""
    for first in range(start, stop, REBUILD_CHUNK):  # one HDF5 write per chunk
        chunk = range(first, min(first + REBUILD_CHUNK, stop))
        record.append(*(folder.read_journal(g) for g in chunk), mark=False)


def _free_name(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... the first name that no file has: taken (made
    empty, with ``O_EXCL``) for the caller, so that nothing kept there earlier is replaced (a
    second record kept aside in the same second, or after the clock was set back)."""
    for n in itertools.count(1):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK))
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")  # pragma: no cover
