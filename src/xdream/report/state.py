"""Whether a run is running, stopped or finished (its summary, its process, the lock on its
folder), and how to continue or rebuild it."""

from __future__ import annotations

import errno
import os
import re
import socket
from pathlib import Path
from typing import Any

from xdream import records
from xdream.errors import SummaryUnreadableError


def find_runs(root: str | Path) -> list[Path]:
    """Experiment folders (holding ``record.h5``) under ``root``, in name order."""
    return sorted(p.parent for p in Path(root).rglob("record.h5"))


def resume_folder(run: Path) -> Path:
    """The folder ``xdream resume`` continues ``run`` from: ``run`` itself, or for a unit of a
    many-unit run (``RUN/units/<unit>`` beside ``RUN/config.yaml``) the many-unit run, which
    continues every unit together."""
    units = run.parent
    if units.name == "units" and (units.parent / "config.yaml").is_file():
        return units.parent
    return run


TRIAL_FOLDER = re.compile(r"trial\d{4,}")
"""A trial's folder of an ``xdream tune`` study (``trial0001``)."""


def tune_study_of(run: Path) -> tuple[Path, str | None] | None:
    """The ``--out`` and ``--study`` (None: the default study) of the ``xdream tune`` whose
    trial folder holds ``run``; None for a run of no study. The default study's trials are in
    ``OUT/trialNNNN`` beside ``tune.db`` or ``tune.csv``, study NAME's in
    ``OUT/study-NAME/trialNNNN``."""
    trial = next((p for p in Path(run).resolve().parents if TRIAL_FOLDER.fullmatch(p.name)), None)
    if trial is None:
        return None
    study = trial.parent
    if (study / "tune.db").exists():
        return study, None
    if study.name.startswith("study-") and (
        (study / "tune.csv").exists() or (study.parent / "tune.db").exists()
    ):
        return study.parent, study.name[len("study-") :]
    if (study / "tune.csv").exists():
        return study, None
    return None


def continue_with(run: Path) -> str:
    """How to continue ``run``: ``xdream resume`` of its folder (:func:`resume_folder`), or
    for a run built in Python, which has no ``config.yaml``, from Python
    (:data:`xdream.records.PYTHON_CONTINUE`); for a trial of an ``xdream tune`` study, the
    study's command, which resumes the trial and counts it in the study."""
    study = tune_study_of(run)
    if study is not None:
        out, name = study
        named = f" --study {name}" if name is not None else ""
        return (
            f"xdream tune CONFIG --out {out}{named} (the study's command again: it resumes "
            "this trial and counts it in the study)"
        )
    return records.continue_command(resume_folder(run))


def _rebuild_hint(run: Path) -> str:
    """How to recover an unreadable record, short, for a row of the folder report."""
    if not records.journal_rebuilds(run):
        return "cannot be rebuilt (its journal is gone): restore a backup"
    if (resume_folder(run) / "config.yaml").exists():
        return f"xdream resume {resume_folder(run)} rebuilds it"
    return "continuing it in Python (e = Experiment(...); e.restore(); e.run()) rebuilds it"


def _row_status(run: Path, summary: dict[str, Any]) -> str:
    """A run's status in a folder's table: as its own page says it (a run whose process is
    gone is "stopped", with the command that continues it)."""
    if run_state(summary, run) == "stopped":
        return f"stopped: {continue_with(run)}"
    if not summary:
        return "starting"
    return str(summary.get("status", "starting"))


def run_state(summary: dict[str, Any], run: str | Path | None = None) -> str:
    """``"running"``, ``"stopped"`` or the summary's own final status (``"finished"``).

    A run is running while its ``summary.json`` says so (or before it has written one), unless
    the summary names a process on this machine that no longer exists: then the run was killed
    or crashed and ``xdream resume`` continues it. A process on another machine is taken to be
    alive. Without a process in the summary (a run killed before its first generation was
    recorded) the experiment folder ``run``, when given, tells: a run holds its
    :data:`~xdream.records.LOCK_FILE` locked while it runs (:func:`folder_held`).
    """
    status = str(summary.get("status", "running"))
    if status != "running":
        return status
    process = summary.get("process")
    if not isinstance(process, dict):
        return "stopped" if run is not None and folder_held(Path(run)) is False else "running"
    if process.get("host") != socket.gethostname():
        return "running"
    try:
        os.kill(int(process["pid"]), 0)
    except ProcessLookupError:
        return "stopped"
    except (OSError, KeyError, TypeError, ValueError):  # another user's process, odd entry
        return "running"
    return "running"


PROC_LOCKS = "/proc/locks"
"""Linux's table of the file locks held on this machine (read by :func:`folder_held`)."""

_kept_open: list[int] = []
"""Lock files this process holds, opened by :func:`folder_held`: never closed, since closing
any descriptor of a file releases the process's POSIX locks on it."""


def folder_held(run: Path) -> bool | None:
    """Whether a process holds ``run``'s lock file (:meth:`xdream.records.RunFolder.lock`), as
    a running experiment does: ``None`` where it cannot be told (no lock file, no POSIX locks,
    or the file names a process on another machine).

    On Linux the answer comes from ``/proc/locks``, which takes no lock: the lock file is only
    read when no process of this machine holds it. Elsewhere a non-blocking shared lock is
    tried on the file (released at once; nothing is written to it).
    """
    lock = run / records.LOCK_FILE
    try:
        stat = os.stat(lock)
    except OSError:
        return None
    try:
        table = Path(PROC_LOCKS).read_text()
    except OSError:
        return _probe_lock(lock)
    device = (os.major(stat.st_dev), os.minor(stat.st_dev))
    same_inode = False
    for line in table.splitlines():  # "1: POSIX  ADVISORY  WRITE 4312 fe:00:2146337 0 EOF"
        for field in line.split():
            parts = field.split(":")
            if len(parts) != 3 or not parts[2].isdigit() or int(parts[2]) != stat.st_ino:
                continue
            try:
                if (int(parts[0], 16), int(parts[1], 16)) == device:
                    return True
            except ValueError:
                pass
            same_inode = True  # another file system's file, or one seen through an overlay
    if same_inode:
        return _probe_lock(lock)
    try:  # no process here holds it: a run on another machine (a shared folder) may
        holder = lock.read_text(errors="replace")
    except OSError:
        return None
    return False if f" on {socket.gethostname()}," in holder else None


def _probe_lock(lock: Path) -> bool | None:
    """:func:`folder_held` without ``/proc/locks``: try a shared lock on the file."""
    try:
        import fcntl
    except ImportError:  # Windows: runs do not lock their folders there
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        holder = os.read(fd, 300).decode(errors="replace")
        if f"pid {os.getpid()} on {socket.gethostname()}," in holder:
            _kept_open.append(fd)  # this process runs it: closing fd would release its lock
            fd = -1
            return True
        if holder.strip() and f" on {socket.gethostname()}," not in holder:
            return None  # a process on another machine: its lock may not show here
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            return True if err.errno in (errno.EACCES, errno.EAGAIN) else None
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def is_running(path: str | Path) -> bool:
    """Whether the experiment (or any experiment under the folder) is still running
    (:func:`run_state`; a folder without ``summary.json`` yet counts as starting while a
    process holds its lock)."""
    path = Path(path)
    runs = [path] if (path / "record.h5").exists() else find_runs(path)
    for run in runs:
        try:
            summary = records.read_summary(run)
        except SummaryUnreadableError:  # damaged for good (runs replace it whole): no wait
            continue
        if run_state(summary, run) == "running":
            return True
    return False
