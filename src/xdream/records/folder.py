"""One experiment's folder: :class:`RunFolder`, its paths, its journal, its configuration,
what a new or continued run finds in it, and the lock that a running experiment holds on it
(:mod:`.locks`).

Where :class:`RunFolder` needs :mod:`.messages`, :mod:`.h5` or :mod:`.reading`, it imports them
inside the method: those modules import this one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xdream.errors import (
    ConfigError,
    SummaryUnreadableError,
    UnknownNameError,
    XDreamError,
)
from xdream.records import locks
from xdream.records.files import TMP_SUFFIX, atomic_write, fsync_folder
from xdream.records.layout import (
    BASE_FILE,
    DROPPED_JOURNAL,
    JOURNAL_ARRAYS,
    LOCK_FILE,
    UNREADABLE,
    GenerationRecord,
    _NotNpz,
    _open_npz,
)
from xdream.records.locks import FolderLock, take_lock

if TYPE_CHECKING:
    from xdream.config import Config


class RunFolder:
    """Paths and durable writes of one experiment folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.record = self.path / "record.h5"
        self.checkpoint = self.path / "checkpoint.pkl"
        self.summary = self.path / "summary.json"
        self.best_png = self.path / "best.png"
        self.images = self.path / "images"
        self.journal = self.path / "journal"

    OUTPUTS = (
        "config.yaml",
        "record.h5",
        "checkpoint.pkl",
        "summary.json",
        "best.png",
        "images",
        "journal",
        "init_codes.npy",  # xdream.experiment.INIT_CODES_FILE
        "units",  # a many-unit run's experiments (xdream.multi)
        "units.csv",
        "rig",  # a [rig] target's journal, status, log and backups
        "report.html",  # xdream report (xdream.report.REPORT_FILE, FIGURES_DIR)
        "report",
        "renders",  # xdream render's default output folder
        ".record.h5.ok",  # the mark of record.h5's last complete append (H5Record.mark)
    )
    """What experiments, their reports and renders write in an experiment folder (besides
    :data:`LOCK_FILE` and ``record.h5.unreadable-*``): a new run refuses a folder that holds
    any of them (:meth:`outputs_present`)."""

    def outputs_present(self) -> list[str]:
        """The files (and folders that are not empty) in this folder that a run, a report or
        a render writes, which a new run would overwrite or mix with its own."""
        found = []
        for name in self.OUTPUTS:
            path = self.path / name
            if path.is_dir():
                if any(path.iterdir()):
                    found.append(f"{name}/")
            elif path.exists():
                found.append(name)
        found += sorted(p.name for p in self.path.glob("record.h5.unreadable-*"))
        return found

    def refuse_outputs(self) -> None:
        """Raise unless the folder is free for a new run (:meth:`outputs_present`): missing,
        empty, or holding only files that no experiment writes."""
        found = self.outputs_present()
        if not found:
            return
        held = {"config.yaml", "record.h5", "checkpoint.pkl", "units/"} & set(found)
        if held:
            from xdream.records.messages import continue_how

            how = (
                f"`xdream resume {self.path}`"
                if {"config.yaml", "units/"} & held
                else continue_how(self.path)
            )
            raise XDreamError(
                f"{str(self.path)!r} already holds an experiment ({', '.join(found)}). "
                f"Continue it ({how}), or choose another output folder."
            )
        raise XDreamError(
            f"{str(self.path)!r} holds files that a run writes ({', '.join(found)}), which it "
            "would overwrite. Choose another output folder (--out), or move them away first."
        )

    def lock(self) -> FolderLock:
        """Hold the folder for this process while it runs the experiment, so that a second
        process (``xdream resume`` of a run that is still going) stops with a
        :class:`~xdream.errors.FolderInUseError` that names the holder instead of writing the
        same records. A POSIX lock on :data:`LOCK_FILE`: the system frees it when the process
        ends, however it ends, so a killed run never leaves a stale lock. POSIX locks belong to
        the process, so the folders a process holds are also kept in a table: a second
        :class:`~xdream.experiment.Experiment` of the same process is refused too (opening and
        closing the file there would have freed the first one's lock)."""
        with locks._HELD_GUARD:  # not imported by name: a forked child makes its own
            return self._lock()

    def _lock(self) -> FolderLock:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise self._unwritable(err) from None
        return take_lock(
            self.path / LOCK_FILE,
            held_here=(
                f"{str(self.path)!r} is in use by another experiment of this process (an "
                "Experiment or MultiExperiment that has not finished with it). Let it finish, "
                "or let go of it first: release_folder() on an Experiment (release_folders() "
                "on a MultiExperiment), or `del` it (a notebook's last traceback may keep it: "
                "restart the kernel); then e = Experiment(...); e.restore(); e.run() "
                "(MultiExperiment.resume) continues where it stopped."
            ),
            held_elsewhere=lambda holder: (
                f"{str(self.path)!r} is in use by another xdream process ({holder}). Wait "
                "for it to finish, or stop it first: a stopped or killed process frees the "
                "folder at once, and `xdream resume` then continues where it stopped."
            ),
            unwritable=self._unwritable,
        )

    def create(self, images: bool = True) -> None:
        """Make the folder and its sub-folders (``images/`` only where ``images``: a run that
        saves each generation's best image); a clear error if it cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if images:
                self.images.mkdir(exist_ok=True)
            self.journal.mkdir(exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise self._unwritable(err) from None
        fsync_folder(self.path)  # the journal's folder itself survives a power cut

    def _unwritable(self, err: OSError) -> XDreamError:
        from xdream.records.messages import continue_how

        if self.recorded():  # xdream resume (or a run into it, which refuse_outputs refuses)
            return XDreamError(
                f"cannot write to experiment folder {str(self.path)!r}: "
                f"{err.strerror or err}. Make it writable again (a read-only mount, changed "
                f"permissions), then continue the run: {continue_how(self.path)}."
            )
        return XDreamError(
            f"cannot write to output folder {str(self.path)!r}: {err.strerror or err}. "
            "Choose a writable folder (--out on the command line, the folder argument in "
            "Python)."
        )

    def journal_path(self, generation: int) -> Path:
        return self.journal / f"gen{generation:06d}.npz"

    def write_journal(self, rec: GenerationRecord) -> None:
        """Durably write one generation to the journal: its data, and its name in the journal's
        folder (fsynced, as POSIX asks for a new name to survive a power cut, before the
        checkpoint that counts on it is written)."""
        with atomic_write(self.journal_path(rec.generation)) as fh:
            np.savez(fh, **rec.to_arrays())  # type: ignore[arg-type]
        fsync_folder(self.journal)

    def read_journal(self, generation: int) -> GenerationRecord:
        """One generation from the journal; a damaged file is one clear
        :class:`~xdream.errors.XDreamError` naming it."""
        path = self.journal_path(generation)
        try:
            with open(path, "rb") as fh, _open_npz(fh) as a:
                return GenerationRecord.from_arrays(a)
        except Exception as err:
            raise self._damaged_journal(path, err) from None

    def check_journal(self, start: int, stop: int) -> None:
        """Raise what :meth:`read_journal` would for generations ``start`` to ``stop - 1``,
        without reading their arrays: each file is there, a complete ``.npz`` archive (its
        directory reads) and names what a generation holds. Data damaged inside a whole
        archive shows only when it is read."""
        for generation in range(start, stop):
            path = self.journal_path(generation)
            try:
                with open(path, "rb") as fh, _open_npz(fh) as a:
                    lacking = set(JOURNAL_ARRAYS) - set(a.files)
                    if lacking:
                        raise KeyError(f"{', '.join(sorted(lacking))} is not in the archive")
            except Exception as err:
                raise self._damaged_journal(path, err) from None

    def _damaged_journal(self, path: Path, err: Exception) -> XDreamError:
        """The error for a journal file that cannot be read (``err``): what failed, and what
        can be done."""
        if isinstance(err, _NotNpz):
            problem = "not an .npz archive"
        elif isinstance(err, FileNotFoundError):
            problem = "missing"
        else:  # a torn zip: BadZipFile, EOFError, KeyError, ...
            problem = f"{type(err).__name__}: {err}"
        return XDreamError(
            f"journal file {str(path)!r} is damaged ({problem}), so record.h5 cannot be rebuilt "
            "from the journal and the run cannot resume. Put back a "
            "copy of the file from a backup if you have one. Otherwise the records so far stay "
            f"readable as last written (xdream.records.read({str(self.path)!r}), `xdream "
            f"report {self.path}`), and a new run starts with another --out."
        )

    def stopped_before_writing(self) -> bool:
        """Whether this folder holds nothing but the lock (and empty ``units/``, ``images/``,
        ``journal/``): a run stopped while it loaded its network, or before it could write its
        configuration (a full disk). Nothing was recorded, and ``xdream run CONFIG --out``
        this folder starts it."""
        if not (self.path / LOCK_FILE).is_file():  # an empty folder is not a run's
            return False
        empty = {self.path / name for name in ("units", "images", "journal")}
        rest = [p for p in self.path.iterdir() if p.name != LOCK_FILE and p not in empty]
        return not rest and not any(p.is_dir() and any(p.iterdir()) for p in empty)

    def recorded(self) -> bool:
        """Whether a run has recorded anything here that it can continue from: its
        ``config.yaml`` (a run from a config, a many-unit run), or a ``checkpoint.pkl`` (an
        experiment built in Python)."""
        return self.config.exists() or self.checkpoint.exists()

    def refuse_unstarted(self) -> None:
        """Raise the error that says how to start a run that stopped before it wrote
        anything (:meth:`stopped_before_writing`); nothing when it did write."""
        if self.stopped_before_writing():
            raise XDreamError(
                f"{str(self.path)!r} holds no experiment yet: its run stopped before it wrote "
                "its configuration (while loading the network, say), so nothing was recorded. "
                f"Start it again with `xdream run CONFIG --out {self.path}`."
            )

    def load_config(self) -> Config:
        """The folder's ``config.yaml``, validated; an empty or damaged one is one clear
        :class:`~xdream.errors.XDreamError` that says how to put it back."""
        from xdream import config as config_mod

        if not self.config.exists():
            self.refuse_unstarted()
            return config_mod.load(self.config, recorded=True)  # MissingFileError
        try:
            empty = not self.config.read_text(encoding="utf-8").strip()
            if not empty:
                return config_mod.load(self.config, recorded=True)
            problem = "it is empty"
        except UnknownNameError as err:
            raise self.unregistered(err) from None
        except (ConfigError, UnicodeDecodeError) as err:
            # a YAML error's lines on one line, without a full stop of its own (one follows)
            problem = " ".join(str(err).split()).rstrip(".")
            both = self._both_budgets()
            if both is not None:  # a budget of the other kind given, the old one left in
                generations, presentations = both
                raise XDreamError(
                    f"cannot use {str(self.config)!r}: {problem}. The budget may change between "
                    "sessions, in one of the two keys: keep one and set the other to null in its "
                    f"[experiment] (generations: null to run to presentations: {presentations}, "
                    f"or presentations: null to run to generations: {generations}), then "
                    "resume again."
                ) from None
        raise XDreamError(
            f"cannot use {str(self.config)!r}, which defines the experiment: {problem}. Put "
            "back the resolved configuration the run was started with: record.h5 keeps a copy "
            f"(xdream.config.dump_yaml(xdream.records.read({str(self.path)!r}).config, "
            f"{str(self.config)!r}) writes it back), or copy the config.yaml of a backup."
        )

    def unregistered(self, err: UnknownNameError) -> XDreamError:
        """The error for a ``config.yaml`` that names a component this process does not know
        (``err``): one registered from Python, and how to go on there (for a many-unit run,
        with :class:`~xdream.multi.MultiExperiment` and one unit's folder)."""
        path = str(self.path)
        if self.holds_many_units():
            units = sorted(p.name for p in (self.path / "units").glob("*") if p.is_dir())
            unit = str(self.path / "units" / (units[0] if units else "<unit>"))
            go_on = (
                f"xdream.multi.MultiExperiment.resume({path!r}).run() continues the run (its "
                f"units together), xdream.render.render({unit!r}, ['best']) draws a unit's "
                "images (ids as for `xdream render`), and xdream.records.read of a unit's folder "
                "reads its records."
            )
        else:
            go_on = (
                f"xdream.experiment.Experiment.resume({path!r}).run() continues the run, "
                f"xdream.render.render({path!r}, ['best']) draws its images (ids as for "
                "`xdream render`), and xdream.records.read reads its records."
            )
        return XDreamError(
            f"{str(self.config)!r} names the {err.kind} {err.name!r}, which is not "
            f"registered in this process ({err}). A component registered from Python "
            "exists only in a process that imports the module registering it, so this "
            f"command cannot rebuild it: in Python, import that module, then {go_on}"
        )

    def holds_many_units(self) -> bool:
        """Whether the folder holds a many-unit run: a ``config.yaml`` beside ``units/``, or one
        with ``[[targets]]``, read as text (whatever components it names, registered or not).
        A folder without ``config.yaml`` holds no run yet, ``units/`` or not."""
        from xdream import config as config_mod

        if not self.config.exists():
            return False
        if (self.path / "units").is_dir():
            return True
        try:
            return bool(config_mod.read(self.config).get("targets"))
        except (XDreamError, OSError, ValueError):
            return False

    def _both_budgets(self) -> tuple[Any, Any] | None:
        """``config.yaml``'s ``generations`` and ``presentations`` when it sets both and is
        valid with ``presentations`` left out (a change of the budget's kind on resume, half
        made); None otherwise."""
        from xdream import config as config_mod

        try:
            data = config_mod.read(self.config)
            section = data.get("experiment")
            if not isinstance(section, dict) or None in (
                section.get("generations"),
                section.get("presentations"),
            ):
                return None
            config_mod.from_dict(
                {**data, "experiment": {**section, "presentations": None}}, recorded=True
            )
        except (XDreamError, ValueError):  # something else is wrong too
            return None
        return section["generations"], section["presentations"]

    def journal_holds(self, start: int, stop: int) -> bool:
        """Whether the journal has a file for each generation from ``start`` to ``stop - 1``."""
        return all(self.journal_path(g).exists() for g in range(start, stop))

    def journal_base(self) -> tuple[Path, int] | None:
        """``journal/base.h5`` and its generations (a finished run that went on), or None."""
        from xdream.records.h5 import H5Record

        path = self.journal / BASE_FILE
        if not path.exists():
            return None
        try:
            return path, H5Record(path).generations()
        except UNREADABLE:
            return None

    def journal_generations(self) -> list[int]:
        """The generations that have a file in the journal, in order."""
        found = []
        for p in self.journal.glob("gen*.npz") if self.journal.is_dir() else ():
            try:
                found.append(int(p.stem[3:]))
            except ValueError:
                continue
        return sorted(found)

    def progress_without_checkpoint(self) -> list[str]:
        """What shows that generations finished in a folder whose ``checkpoint.pkl`` is
        missing (empty where the run was killed during its first generation: one journal file
        at most, no generation in ``record.h5``, no finished summary)."""
        from xdream.records.h5 import H5Record
        from xdream.records.reading import read_summary

        found = []
        journal = self.journal_generations()
        if len(journal) > 1:
            found.append(f"{len(journal)} generations in journal/")
        if self.record.exists():
            try:
                have = H5Record(self.record).generations()
            except UNREADABLE:
                found.append("a record.h5 that cannot be read")
            else:
                if have:
                    found.append(f"{have} generations in record.h5")
        try:
            summary = read_summary(self.path)
        except SummaryUnreadableError:
            summary = {}
        if summary.get("status") == "finished":
            found.append("the summary of a finished run")
        elif not found and isinstance(summary.get("generations"), int) and summary["generations"]:
            found.append(f"a summary of {summary['generations']} generations")
        return found

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files of xdream's atomic writes that a kill interrupted (only
        xdream's own: a rig may be writing its own temporaries in a folder inside this one)."""
        stale = [p for p in self.path.rglob(f".*{TMP_SUFFIX}") if p.is_file()]
        for p in stale:
            p.unlink(missing_ok=True)
        if (self.path / DROPPED_JOURNAL).is_dir():  # a kill while a finished run dropped it
            shutil.rmtree(self.path / DROPPED_JOURNAL, ignore_errors=True)
        return stale

    def drop_journal(self) -> None:
        """Remove the journal once the record is complete and closed. It is renamed aside
        first, so that a kill while its files are deleted leaves none of them under its name
        (a journal that lacked its first files would read as a continued run's)."""
        aside = self.path / DROPPED_JOURNAL
        shutil.rmtree(aside, ignore_errors=True)  # left by a kill during an earlier drop
        try:
            os.replace(self.journal, aside)
        except FileNotFoundError:
            return
        shutil.rmtree(aside, ignore_errors=True)
