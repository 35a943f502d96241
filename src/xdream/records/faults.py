"""A run stopped by its folder: a full disk or quota (:func:`check_space` before HDF5 writes,
:func:`raise_if_disk_full`), a folder that can no longer be written, moved or deleted
(:func:`raise_if_folder_fault`), and :func:`stop_run`, which writes what it can and raises
the one clear error that says how to continue."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from xdream.errors import DiskFullError, XDreamError, add_note
from xdream.records.files import TMP_SUFFIX
from xdream.records.folder import RunFolder
from xdream.records.messages import continue_how

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
"""The errors of a full disk and of a full quota."""

SPACE_MARGIN = 4 * 2**20
"""Bytes that must stay free beyond an HDF5 write's own data (new chunks of up to ~128 KiB per
dataset, the string heap, metadata) before :class:`H5Record` writes at all."""


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err``, or an error it was raised from or while handling, is a full disk or
    quota (h5py reports one as a ``RuntimeError`` or ``OSError`` that quotes the system's
    message)."""
    return _full_disk_cause(err) is not None


def _full_disk_cause(err: BaseException | None) -> BaseException | None:
    """The deepest error in ``err``'s chain that says the disk is full, or ``None``."""
    found, seen = None, set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if (
            isinstance(err, DiskFullError)
            or (isinstance(err, OSError) and err.errno in NO_SPACE)
            or "No space left on device" in text
            or "Disk quota exceeded" in text
        ):
            found = err
        err = err.__cause__ or err.__context__
    return found


def check_space(folder: Path, nbytes: int) -> None:
    """Raise :class:`~xdream.errors.DiskFullError` unless ``folder``'s disk has ``nbytes`` plus
    :data:`SPACE_MARGIN` free. HDF5 must not meet a full disk: h5py then fails to close the
    file and can crash the interpreter (a segmentation fault) when it frees it."""
    free = shutil.disk_usage(folder).free
    if free < nbytes + SPACE_MARGIN:
        raise DiskFullError(
            f"{free / 2**20:.1f} MiB free where the next write to the records needs "
            f"{(nbytes + SPACE_MARGIN) / 2**20:.1f} MiB"
        )


class Flushable(Protocol):
    """What :func:`stop_run` needs of an experiment."""

    folder: RunFolder

    def flush(self) -> None: ...


def raise_if_disk_full(err: BaseException, out: Path) -> None:
    """Raise a :class:`~xdream.errors.DiskFullError` (from ``err``) that says how to continue
    the run in ``out`` when ``err`` is a full disk; return otherwise."""
    cause = _full_disk_cause(err)
    if cause is None:
        return
    detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    if not RunFolder(out).recorded():
        raise DiskFullError(
            f"the disk of {out} is full ({detail}), and the run stopped before it wrote its "
            f"configuration, so nothing was recorded: free some space, then start it again "
            f"with `xdream run CONFIG --out {out}`."
        ) from err
    raise DiskFullError(
        f"the disk of {out} is full ({detail}). Every generation finished before is kept in "
        f"its journal and checkpoint: free some space, then continue the run: "
        f"{continue_how(out)}."
    ) from err


FOLDER_FAULTS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR)
"""The errors of a folder that can no longer be written: made read-only, its permissions taken
away, moved or deleted (or a part of it)."""


def _folder_fault(err: BaseException | None) -> OSError | None:
    """The first error in ``err``'s chain that is a :data:`FOLDER_FAULTS` ``OSError``."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in FOLDER_FAULTS:
            return err
        err = err.__cause__ or err.__context__
    return None


def _written_name(filename: Any) -> str:
    """The file an atomic write was writing, for the temporary file it failed on."""
    path = Path(os.fsdecode(filename))
    name = path.name
    if name.startswith(".") and name.endswith(TMP_SUFFIX):  # .NAME.RANDOM.xdream.tmp
        name = name[1 : -len(TMP_SUFFIX)].rsplit(".", 1)[0]
    return str(path.with_name(name))


def _writable(out: Path) -> bool:
    """Whether a file can be made in ``out`` now (a probe, as :func:`make_folder`'s)."""
    try:
        with tempfile.TemporaryFile(dir=out):
            return True
    except OSError:
        return False


def raise_if_folder_fault(err: BaseException, out: Path) -> None:
    """Raise an :class:`~xdream.errors.XDreamError` (from ``err``) that names what could not
    be written and says how to continue the run in ``out`` when ``err`` is a folder that can
    no longer be written (:data:`FOLDER_FAULTS`): an error about a file in ``out``, or one that
    names no file while ``out`` cannot be written (a probe); return otherwise, so that, for
    example, a scorer's own ``PermissionError`` is shown as it is."""
    fault = None if isinstance(err, XDreamError) else _folder_fault(err)
    if fault is None:
        return
    inside = os.path.abspath(out) + os.sep
    if fault.filename:
        if not os.path.abspath(os.fsdecode(fault.filename)).startswith(inside):
            return  # another folder's (a rig's write_dir elsewhere): its own error says more
    elif _writable(out):
        return  # no file named (a scorer's own error, ...), and the folder is fine: not ours
    what = _written_name(fault.filename) if fault.filename else str(out)
    reason = fault.strerror or str(fault)
    kept = "Every generation finished before is kept in its journal and checkpoint"
    if not out.is_dir():
        raise XDreamError(
            f"the folder {out} was moved or deleted while the run went on (writing {what}: "
            f"{reason}). If it was moved, its journal and checkpoint hold every generation "
            "finished before: continue the run from the folder's current path (`xdream "
            "resume` there, or e = Experiment(...); e.restore(); e.run() in Python for a run "
            "built there)."
        ) from err
    if not RunFolder(out).recorded():
        raise XDreamError(
            f"cannot write {what} ({reason}), so the run stopped before it wrote its "
            f"configuration and nothing was recorded: make {out} writable, then start it again "
            f"with `xdream run CONFIG --out {out}`."
        ) from err
    if fault.errno in (errno.ENOENT, errno.ENOTDIR):
        raise XDreamError(
            f"cannot write {what} ({reason}): a part of {out} was moved or deleted while the "
            f"run went on. Put it back if you can, then continue the run from what its journal "
            f"and checkpoint hold: {continue_how(out)}."
        ) from err
    raise XDreamError(
        f"cannot write {what} ({reason}): {out} can no longer be written (a read-only mount, "
        f"changed permissions). {kept}: make it writable again, then continue the run: "
        f"{continue_how(out)}."
    ) from err


def raise_for_folder(err: BaseException, out: Path) -> None:
    """:func:`raise_if_disk_full`, then :func:`raise_if_folder_fault`: the one clear error of a
    run in ``out`` stopped by its folder's disk or file system; return otherwise."""
    raise_if_disk_full(err, out)
    raise_if_folder_fault(err, out)


def stop_run(experiments: Iterable[Flushable], err: BaseException, out: Path) -> None:
    """After ``err`` stopped the run in ``out``: write what can be written (a failure to is
    noted on ``err`` instead of hiding it; ``xdream resume`` rebuilds ``record.h5`` from the
    journal), then :func:`raise_for_folder`. The caller re-raises ``err``."""
    for experiment in experiments:
        try:
            experiment.flush()
        except Exception as late:
            where = experiment.folder.path
            fix = (
                f"continuing the run rebuilds them ({continue_how(where)})"
                if where.is_dir()
                else "the folder was moved or deleted: continuing the run from its current "
                "path rebuilds them"
            )
            add_note(
                err,
                f"record.h5 and summary.json in {where} were not brought up to date "
                f"({type(late).__name__}: {late}); {fix}",
            )
    raise_for_folder(err, out)
