"""Records that lose nothing: one folder per experiment.

Layout of an experiment folder::

    config.yaml        the resolved configuration (``xdream run`` accepts it back)
    record.h5          HDF5 record, one row per presented image, grows every generation
    checkpoint.pkl     state after the last complete generation (optimiser with RNG, ...)
    summary.json       headline numbers, rewritten every generation
    best.png           best image so far
    images/            best image of each generation: gen000_best.png, ...
    journal/           write-ahead journal, one .npz per generation, removed when the run ends
    .record.h5.ok      mark of record.h5's last complete append (size, times, inode)
    .xdream.lock       held (POSIX lock) by the process that runs the experiment

Every file but ``record.h5`` is written to a temporary name and renamed into place, so a kill
(even ``kill -9``) leaves either the old or the new version. ``record.h5`` is made under a
temporary name, then appended in place: a kill during an append can tear it, and a reader can
catch it mid-append (:func:`read` refuses a record whose datasets disagree). A generation is
first written to the journal (fsynced), then its best image, then the checkpoint; ``record.h5``
and ``summary.json`` follow at most ``record_interval`` seconds later (several generations per
append). Each append removes the mark ``.record.h5.ok`` first and writes it anew once the file
is closed and on disk. On resume a record its mark matches is brought up to date from the
journal; any other is rebuilt from the journal (or, for a finished run, cut back to the
checkpoint; a finished run that goes on keeps its record as ``journal/base.h5``, from which
later rebuilds start).

``record.h5`` layout (all datasets at the root unless named; strings are UTF-8, variable length,
which MATLAB's ``h5read`` returns as cell arrays; MATLAB shows (n, d) datasets as d x n):

=============================== =========== ==================================================
dataset                         shape       meaning
=============================== =========== ==================================================
``codes``                       (N, d) f32  every evolved code shown, in order
``scores``                      (N,) f64    score the optimiser received (NaN = no response)
``clean_scores``                (N,) f64    noise-free score (equals ``scores`` without noise)
``generation``                  (N,) i32    generation of each row
``image_ids``                   (N,) str    ``gen{g:03d}_{i:06d}``
``genealogy``                   (N,) str    how the code came about (``parentA+parentB+mut``)
``references/ids``              (M,) str    reference crop ids (``ref_{photo}_{top}_{left}_{side}``)
``references/scores``           (M,) f64    their scores
``references/clean_scores``     (M,) f64    their noise-free scores
``references/generation``       (M,) i32    generation each reference was shown in
``generations/best_score``      (G,) f64    best evolved score of each generation
``generations/mean_score``      (G,) f64    mean evolved score (NaN ignored)
``generations/best_reference``  (G,) f64    best reference score of each generation
``generations/presentations``   (G,) i64    cumulative presentations of evolved images
``generations/seconds``         (G, 4) f64  seconds in ask, generate (+ references), score, tell
=============================== =========== ==================================================

Root attributes: ``layout_version`` (1), ``xdream_version``, ``code_dim``, ``config`` (JSON).
``layout_version`` changes when a dataset above changes meaning, shape or type; groups only some
scorers write (``rig/``; :attr:`Record.extra` when read) are additions and do not change it.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import pickle
import shutil
import socket
import struct
import tempfile
import threading
import time
import types
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import h5py
import numpy as np
import numpy.typing as npt
import torch

from xdream.errors import (
    ConfigError,
    DiskFullError,
    FolderInUseError,
    RecordUnreadableError,
    SummaryUnreadableError,
    UnknownNameError,
    XDreamError,
)
from xdream.types import Images

if TYPE_CHECKING:
    from xdream.config import Config

_deflate: types.ModuleType
try:  # Intel ISA-L's deflate: the same zlib streams, about 4x faster at level 1
    from isal import isal_zlib as _deflate
except ImportError:  # pragma: no cover (isal is a dependency; zlib is the fallback)
    _deflate = zlib

LAYOUT_VERSION = 1
TMP_SUFFIX = ".xdream.tmp"
MARK_SUFFIX = ".ok"
"""``.record.h5.ok``: the mark of a record left complete and closed (:meth:`H5Record.mark`)."""
DROPPED_JOURNAL = ".journal.dropped"
"""The journal of a finished run while it is deleted (:meth:`RunFolder.drop_journal`)."""
BASE_FILE = "base.h5"
"""``journal/base.h5``: a finished run's record as it was when the run was continued with a
larger budget (its journal was removed when it finished): rebuilds start from it."""
LOCK_FILE = ".xdream.lock"
"""The file an experiment's process holds locked while it runs (:meth:`RunFolder.lock`)."""

try:
    import fcntl
except ImportError:  # Windows: no POSIX locks; folders are not locked there
    fcntl = None  # type: ignore[assignment]
"""Ending of xdream's temporary files (hidden, renamed into place when complete)."""
TIMING_COLUMNS = ("ask", "generate", "score", "tell")
_STR = h5py.string_dtype("utf-8")

ROW_FIELDS = ("codes", "scores", "clean_scores", "generation", "image_ids", "genealogy")
REF_FIELDS = ("ids", "scores", "clean_scores", "generation")
GEN_FIELDS = ("best_score", "mean_score", "best_reference", "presentations", "seconds")


@dataclass
class GenerationRecord:
    """Everything recorded about one generation."""

    generation: int
    codes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float64]
    clean_scores: npt.NDArray[np.float64]
    image_ids: list[str]
    genealogy: list[str]
    ref_ids: list[str]
    ref_scores: npt.NDArray[np.float64]
    ref_clean_scores: npt.NDArray[np.float64]
    presentations: int
    seconds: npt.NDArray[np.float64]  # (4,) ask, generate, score, tell
    extra: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    """Scorer-specific rows, ``{"group/sub/dataset": array}``; every group holds a
    ``generation`` dataset with one entry per row (see :meth:`H5Record.truncate`)."""

    @property
    def best_score(self) -> float:
        return _nanmax(self.scores)

    @property
    def mean_score(self) -> float:
        valid = self.scores[~np.isnan(self.scores)]
        return float(valid.mean()) if valid.size else float("nan")

    @property
    def best_reference(self) -> float:
        return _nanmax(self.ref_scores)

    def nbytes(self) -> int:
        """The size of its arrays (strings as numpy stores them): about what it adds to a file."""
        return sum(int(a.nbytes) for a in self.to_arrays().values())

    def to_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Flat arrays for the journal (``np.savez``)."""
        return {
            "generation": np.array(self.generation),
            "codes": self.codes,
            "scores": self.scores,
            "clean_scores": self.clean_scores,
            "image_ids": np.array(self.image_ids, dtype=str),
            "genealogy": np.array(self.genealogy, dtype=str),
            "ref_ids": np.array(self.ref_ids, dtype=str),
            "ref_scores": self.ref_scores,
            "ref_clean_scores": self.ref_clean_scores,
            "presentations": np.array(self.presentations),
            "seconds": self.seconds,
            **{f"extra/{k}": v for k, v in self.extra.items()},
        }

    @classmethod
    def from_arrays(cls, a: Any) -> GenerationRecord:
        return cls(
            generation=int(a["generation"]),
            codes=np.asarray(a["codes"], dtype=np.float32),
            scores=np.asarray(a["scores"], dtype=np.float64),
            clean_scores=np.asarray(a["clean_scores"], dtype=np.float64),
            image_ids=[str(s) for s in a["image_ids"]],
            genealogy=[str(s) for s in a["genealogy"]],
            ref_ids=[str(s) for s in a["ref_ids"]],
            ref_scores=np.asarray(a["ref_scores"], dtype=np.float64),
            ref_clean_scores=np.asarray(a["ref_clean_scores"], dtype=np.float64),
            presentations=int(a["presentations"]),
            seconds=np.asarray(a["seconds"], dtype=np.float64),
            extra={k[6:]: np.asarray(a[k]) for k in a.files if k.startswith("extra/")},
        )


def _nanmax(x: npt.NDArray[np.float64]) -> float:
    valid = x[~np.isnan(x)]
    return float(valid.max()) if valid.size else float("nan")


# --------------------------------------------------------------------------- atomic files
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", durable: bool = True) -> Iterator[IO[Any]]:
    """Write ``path`` via a temporary file in the same folder, then rename it into place.

    The rename alone makes the write atomic for a killed process. ``durable`` also fsyncs the
    data first, so it survives a power cut or kernel crash; files that can be regenerated
    (images, the summary) skip that cost.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        fh = os.fdopen(fd, mode)
        try:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        except BaseException:
            with suppress(OSError):  # close() flushes again what failed: one error, not two
                fh.close()
            raise
        fh.close()
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fsync_folder(folder: Path) -> None:
    """fsync a folder, so that names made or removed in it are on disk (a no-op where the
    system cannot open or fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Any, durable: bool = True) -> None:
    """Atomically write pretty JSON (NaN written as null)."""
    with atomic_write(path, "w", durable) as fh:
        json.dump(_json_safe(data), fh, indent=2)
        fh.write("\n")


def make_folder(folder: str | Path, exist_ok: bool = False) -> list[Path]:
    """Create ``folder`` with its missing parents and check that a file can be written into it
    (before work that may take minutes); returns the folders created, deepest first, so that
    a command that then writes nothing can remove them again (:func:`remove_empty`).

    On failure the folders it created are removed again and the ``OSError`` is raised;
    ``FileExistsError`` (``folder`` exists and not ``exist_ok``: another command took the name)
    removes nothing, as ``folder`` is not this call's and its parents then hold it.
    """
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        raise
    except OSError:
        remove_empty(created)
        raise
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        remove_empty(created)
        raise
    return created


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that exists and is empty."""
    for path in folders:
        # rmdir refuses a folder that is not empty; OSError also: not there (or a name too
        # long to be), not a folder
        with suppress(OSError):
            path.rmdir()


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def encode_png(image: npt.NDArray[np.uint8], level: int = 1) -> bytes:
    """An (H, W, 3) uint8 array as an 8-bit RGB PNG (lossless), fast: every row carries PNG's
    "Up" filter, computed with NumPy, then deflate at ``level`` (0-3 with ISA-L, 0-9 with the
    zlib fallback), which releases the GIL. Deflate is ISA-L's (the ``isal`` package) where it
    is installed: on the 2-core development machine it compresses 40 images of 128 px in 9 ms
    where zlib level 1 took 36 ms, into slightly smaller files; zlib's level 1 in turn was
    about 3x faster than Pillow's encoder. Pillow and every PNG reader decode the result (PNG
    specification, filter type 2)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise XDreamError(f"PNG images are (H, W, 3) uint8 arrays, got {image.dtype} {image.shape}")
    h, w, _ = image.shape
    flat = image.reshape(h, w * 3)
    rows = np.empty((h, w * 3 + 1), np.uint8)
    rows[:, 0] = 2  # filter type "Up": each byte minus the byte above it, modulo 256
    rows[0, 1:] = flat[0]
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", _deflate.compress(rows.tobytes(), level)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: torch.Tensor) -> bytes:
    """One (3, H, W) image in [0, 1] encoded as an 8-bit PNG (:func:`encode_png`)."""
    x = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).contiguous()
    return encode_png(x.mul_(255).add_(0.5).to(torch.uint8).numpy())


def save_png(image: torch.Tensor | bytes, path: str | Path) -> None:
    """Atomically save an image (or PNG bytes from :func:`png_bytes`); PNGs can be re-rendered
    from the recorded codes, so they skip the fsync."""
    data = image if isinstance(image, bytes) else png_bytes(image)
    with atomic_write(path, durable=False) as fh:
        fh.write(data)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically pickle the experiment state."""
    with atomic_write(path) as fh:
        pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (only open your own files).

    A damaged file (unpickling bytes that are not a pickle raises almost anything) is one
    :class:`~xdream.errors.XDreamError` that says what can be done."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            state = pickle.load(fh)
    except OSError as err:
        problem = f"{type(err).__name__}: {err.strerror or err}"
    except Exception as err:  # garbage gives ValueError, KeyError, EOFError, ...
        problem = f"damaged: {type(err).__name__}: {err}"
    else:
        if isinstance(state, dict):
            return state
        problem = f"damaged: it holds a {type(state).__name__}, not a checkpoint"
    raise XDreamError(checkpoint_unusable(path, problem))


def checkpoint_unusable(path: Path, problem: str) -> str:
    """The message for a ``checkpoint.pkl`` that cannot be used: what is wrong, what to do."""
    run = path.parent
    return (
        f"cannot read checkpoint {str(path)!r} ({problem}). The run cannot continue without "
        "it (it holds the optimiser's and the random streams' state): put back a copy from a "
        "backup if you have one. The records so far stay readable (xdream.records.read("
        f"{str(run)!r}), `xdream report {run}`); otherwise start a new run with another --out."
    )


def relative_to_references(summary: Mapping[str, Any]) -> float | None:
    """The best noise-free score of an evolved image over that of a reference image: ``None``
    when either is missing or the reference's is not positive (a ratio to zero or a negative
    number says nothing). A summary of an earlier xdream, which lacks the reference's clean
    score, gives the ratio only when no noise model changed its scores (``best_clean_score``
    equal to ``best_score``): then its best reference score is the clean one."""
    best = summary.get("best_clean_score")
    if "best_clean_reference_score" in summary:
        ref = summary["best_clean_reference_score"]
    elif best is not None and best == summary.get("best_score"):
        ref = summary.get("best_reference_score")
    else:
        ref = None
    numbers = all(isinstance(v, (int, float)) and np.isfinite(v) for v in (best, ref))
    return best / ref if numbers and ref > 0 else None


# --------------------------------------------------------------------------- the folder
_HELD: dict[tuple[int, int], int] = {}
"""The lock files (device, inode) that this process holds, each with the holder's pid (a
forked child does not hold its parent's locks)."""
_HELD_GUARD = threading.RLock()  # re-entrant: the collector may free a FolderLock inside it


def _after_fork() -> None:
    """A forked child gets a fresh guard: the parent's may be held by a thread the child does
    not have (its table entries name the parent's pid, which the child ignores)."""
    global _HELD_GUARD
    _HELD_GUARD = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _lock_key(stat: os.stat_result) -> tuple[int, int]:
    return (stat.st_dev, stat.st_ino)


def _held_here(lock_file: Path) -> bool:
    """Whether this process holds ``lock_file`` (:meth:`RunFolder.lock`)."""
    try:
        key = _lock_key(os.stat(lock_file))
    except OSError:
        return False
    return _HELD.get(key) == os.getpid()


class FolderLock:
    """A held :meth:`RunFolder.lock`; :meth:`release` (or the process's end, a kill included)
    frees the folder."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._key = _lock_key(os.fstat(fd)) if fd is not None else None
        if self._key is not None:
            _HELD[self._key] = os.getpid()

    @property
    def held(self) -> bool:
        """False where the file system has no locks (or on Windows): nothing was held."""
        return self._fd is not None

    def release(self) -> None:
        with _HELD_GUARD:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            if self._key is not None and _HELD.get(self._key) == os.getpid():
                del _HELD[self._key]
            os.close(fd)

    def __del__(self) -> None:
        self.release()


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
        with _HELD_GUARD:
            return self._lock()

    def _lock(self) -> FolderLock:
        if _held_here(self.path / LOCK_FILE):
            raise FolderInUseError(
                f"{str(self.path)!r} is in use by another experiment of this process (an "
                "Experiment or MultiExperiment that has not finished with it). Let it finish, "
                "or let go of it first: release_folder() on an Experiment (release_folders() "
                "on a MultiExperiment), or `del` it (a notebook's last traceback may keep it: "
                "restart the kernel); then Experiment(...).restore() (MultiExperiment.resume) "
                "continues where it stopped."
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if fcntl is None:
                return FolderLock(None)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as err:
            raise self._unwritable(err) from None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.read(fd, 300).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                return FolderLock(None)  # a file system without locks: go on unlocked
            raise FolderInUseError(
                f"{str(self.path)!r} is in use by another xdream process ({holder}). Wait "
                "for it to finish, or stop it first: a stopped or killed process frees the "
                "folder at once, and `xdream resume` then continues where it stopped."
            ) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode())
        return FolderLock(fd)

    def create(self) -> None:
        """Make the folder (and sub-folders); a clear error if it cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.images.mkdir(exist_ok=True)
            self.journal.mkdir(exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise self._unwritable(err) from None

    def _unwritable(self, err: OSError) -> XDreamError:
        if self.recorded():  # xdream resume (or a run into it, which refuse_outputs refuses)
            return XDreamError(
                f"cannot write to experiment folder {str(self.path)!r}: "
                f"{err.strerror or err}. Make it writable again (a read-only mount, changed "
                f"permissions), then continue the run: {continue_how(self.path)}."
            )
        return XDreamError(
            f"cannot write to output folder {str(self.path)!r}: {err.strerror or err}. "
            "Choose a writable folder with --out."
        )

    def journal_path(self, generation: int) -> Path:
        return self.journal / f"gen{generation:06d}.npz"

    def write_journal(self, rec: GenerationRecord) -> None:
        """Durably write one generation to the journal."""
        with atomic_write(self.journal_path(rec.generation)) as fh:
            np.savez(fh, **rec.to_arrays())  # type: ignore[arg-type]

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
            return config_mod.load(self.config)  # MissingFileError
        try:
            empty = not self.config.read_text(encoding="utf-8").strip()
            if not empty:
                return config_mod.load(self.config)
            problem = "it is empty"
        except UnknownNameError as err:
            raise XDreamError(
                f"{str(self.config)!r} names the {err.kind} {err.name!r}, which is not "
                f"registered in this process ({err}). A component registered from Python "
                "exists only in a process that imports the module registering it, so this "
                "command cannot rebuild the experiment: in Python, import that module, then "
                f"xdream.Experiment.resume({str(self.path)!r}) continues the run (and "
                "xdream.records.read reads its records)."
            ) from None
        except (ConfigError, UnicodeDecodeError) as err:
            problem = " ".join(str(err).split())  # a YAML error's lines, on one line
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
            f"(xdream.records.read({str(self.path)!r}).config, written back with yaml.safe_dump "
            "into config.yaml), or copy the config.yaml of a backup."
        )

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
            config_mod.from_dict({**data, "experiment": {**section, "presentations": None}})
        except (XDreamError, ValueError):  # something else is wrong too
            return None
        return section["generations"], section["presentations"]

    def journal_holds(self, start: int, stop: int) -> bool:
        """Whether the journal has a file for each generation from ``start`` to ``stop - 1``."""
        return all(self.journal_path(g).exists() for g in range(start, stop))

    def journal_base(self) -> tuple[Path, int] | None:
        """``journal/base.h5`` and its generations (a finished run that went on), or None."""
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


class _NotNpz(Exception):
    """A journal file that does not start like a zip archive."""


JOURNAL_ARRAYS = (
    "generation",
    "codes",
    "scores",
    "clean_scores",
    "image_ids",
    "genealogy",
    "ref_ids",
    "ref_scores",
    "ref_clean_scores",
    "presentations",
    "seconds",
)
"""The arrays every journal file holds (:meth:`GenerationRecord.to_arrays`'s, extras aside)."""


def _open_npz(fh: IO[bytes]) -> Any:
    """``np.load`` of a journal file open in ``fh`` (its arrays read when asked for), or
    :class:`_NotNpz` where it does not start like the zip archive ``np.savez`` writes."""
    if fh.read(4) != b"PK\x03\x04":
        raise _NotNpz
    fh.seek(0)
    return np.load(fh, allow_pickle=False)


# --------------------------------------------------------------------------- a full disk
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
            "resume` there, or Experiment(...).restore() in Python for a run built there)."
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
            err.add_note(
                f"record.h5 and summary.json in {where} were not brought up to date "
                f"({type(late).__name__}: {late}); {fix}"
            )
    raise_for_folder(err, out)


# --------------------------------------------------------------------------- HDF5 record
def _append(group: h5py.Group, name: str, data: npt.NDArray[Any], dtype: Any = None) -> None:
    data = np.asarray(data) if dtype is None else np.asarray(data, dtype=object)
    if name not in group:
        shape = (0, *data.shape[1:])
        group.create_dataset(
            name,
            shape=shape,
            maxshape=(None, *data.shape[1:]),
            dtype=dtype or data.dtype,
            chunks=True,
        )
    ds = group[name]
    n = ds.shape[0]
    ds.resize(n + len(data), axis=0)
    if len(data):
        ds[n:] = data


class H5Record:
    """The growing HDF5 record of an experiment (see the module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _open(self, mode: str) -> h5py.File:
        return h5py.File(self.path, mode, locking=False)

    def _open_existing(self) -> h5py.File:
        """Open the record to change it ("r+": a record that is gone is not made anew, without
        its attributes and generations, but stops the run, and resume rebuilds it)."""
        try:
            return self._open("r+")
        except FileNotFoundError:
            if not self.path.parent.is_dir():
                raise  # the whole folder is gone: the run says so
            raise XDreamError(
                f"{str(self.path)!r} is gone: it was moved or deleted while the run went on. "
                "Every generation is kept in the journal and the checkpoint: continuing the "
                f"run rebuilds record.h5 from them ({continue_how(self.path.parent)})."
            ) from None

    @property
    def mark_path(self) -> Path:
        """The mark of a complete write (:meth:`mark`): ``.record.h5.ok`` beside the record."""
        return self.path.with_name(f".{self.path.name}{MARK_SUFFIX}")

    def forget_mark(self) -> None:
        """Remove the mark, durably, before the record is changed in place: from then until the
        next :meth:`mark` the file may be torn (a kill inside an HDF5 write), and resume must
        not trust it."""
        try:
            self.mark_path.unlink()
        except FileNotFoundError:
            return
        fsync_folder(self.path.parent)  # gone on disk before any byte of the record changes

    def mark(self, generations: int) -> None:
        """Say that the record is complete and closed with ``generations`` generations: its
        data is fsynced, then its size, times and inode are written to the mark.
        :meth:`trusted_generations` trusts the record while they are unchanged. The mark itself
        is not fsynced: lost or torn by a power cut, it is no mark, and the record is rebuilt."""
        with open(self.path, "rb") as fh:
            os.fsync(fh.fileno())
        st = os.stat(self.path)
        mark = {
            "generations": generations,
            "layout_version": LAYOUT_VERSION,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
            "inode": st.st_ino,
        }
        write_json(self.mark_path, mark, durable=False)

    def trusted_generations(self) -> int | None:
        """The generations of a record left complete and closed by its last write (its mark
        matches the file, which reads back with them: :meth:`verify`), or None: no mark (a
        write was under way, or an earlier xdream wrote it), a file changed or replaced since,
        or one that does not read back whole."""
        try:
            mark = json.loads(self.mark_path.read_text(encoding="utf-8"))
            st = os.stat(self.path)
            same = mark["layout_version"] == LAYOUT_VERSION and (
                mark["size"],
                mark["mtime_ns"],
                mark["ctime_ns"],
                mark["inode"],
            ) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            generations = int(mark["generations"])
            if not same or self.verify() != generations:  # and it reads back whole
                return None
        except (*UNREADABLE, TypeError, AttributeError):  # no mark, or not one xdream wrote
            return None
        return generations

    def initialise(
        self, code_dim: int, config: dict[str, Any], version: str, mark: bool = True
    ) -> None:
        """Create an empty record with its attributes (overwrites); ``mark``: then
        :meth:`mark` it (0 generations), so that its appends mark it in turn."""
        check_space(self.path.parent, 0)
        self.forget_mark()
        with atomic_write(self.path) as fh, h5py.File(fh, "w") as f:
            f.attrs["layout_version"] = LAYOUT_VERSION
            f.attrs["xdream_version"] = version
            f.attrs["code_dim"] = code_dim
            f.attrs["config"] = json.dumps(config)
            f.attrs["timing_columns"] = list(TIMING_COLUMNS)
        if mark:
            self.mark(0)

    def append(self, *recs: GenerationRecord, mark: bool = True) -> None:
        """Append generations (one HDF5 write per dataset) and close the file, so it is
        consistent between appends. The mark is removed before the file changes; ``mark``:
        then :meth:`mark` it again, where it was marked before (no earlier write was left
        unfinished: an append stopped between two datasets and made again holds some rows
        twice) and its datasets agree in length."""
        if not recs:
            return

        def cat(get: Any, dtype: Any = None) -> npt.NDArray[Any]:
            return np.concatenate([np.asarray(get(r), dtype=dtype) for r in recs])

        def strings(get: Any) -> npt.NDArray[Any]:
            return np.array([s for r in recs for s in get(r)], dtype=object)

        def per_row(n: Any) -> npt.NDArray[np.int32]:
            return np.concatenate([np.full(n(r), r.generation, np.int32) for r in recs])

        check_space(self.path.parent, 2 * sum(r.nbytes() for r in recs))
        mark = mark and self.mark_path.exists()
        self.forget_mark()
        with self._open_existing() as f:
            _append(f, "codes", cat(lambda r: r.codes))
            _append(f, "scores", cat(lambda r: r.scores))
            _append(f, "clean_scores", cat(lambda r: r.clean_scores))
            _append(f, "generation", per_row(lambda r: len(r.scores)))
            _append(f, "image_ids", strings(lambda r: r.image_ids), _STR)
            _append(f, "genealogy", strings(lambda r: r.genealogy), _STR)
            refs = f.require_group("references")
            _append(refs, "ids", strings(lambda r: r.ref_ids), _STR)
            _append(refs, "scores", cat(lambda r: r.ref_scores))
            _append(refs, "clean_scores", cat(lambda r: r.ref_clean_scores))
            _append(refs, "generation", per_row(lambda r: len(r.ref_ids)))
            gens = f.require_group("generations")
            _append(gens, "best_score", np.array([r.best_score for r in recs]))
            _append(gens, "mean_score", np.array([r.mean_score for r in recs]))
            _append(gens, "best_reference", np.array([r.best_reference for r in recs]))
            _append(gens, "presentations", np.array([r.presentations for r in recs], np.int64))
            _append(gens, "seconds", np.stack([r.seconds for r in recs]).astype(np.float64))
            keys = list(dict.fromkeys(k for r in recs for k in r.extra))
            for key in keys:
                value = np.concatenate([np.asarray(r.extra[key]) for r in recs if key in r.extra])
                path, name = key.rsplit("/", 1)
                text = value.dtype.kind in "UO"
                _append(f.require_group(path), name, value, _STR if text else None)
            f.flush()
            generations = _whole_generations(f)
        if mark and generations is not None:
            self.mark(generations)

    def generations(self) -> int:
        """Number of complete generations in the record (raises if unreadable)."""
        with self._open("r") as f:
            return int(f["generations/best_score"].shape[0]) if "generations" in f else 0

    def verify(self) -> int:
        """Read the whole record but its codes (of those, the last row), and check that its
        datasets hold the same whole generations; returns the generations. Raises as an
        unreadable or torn record does (:data:`UNREADABLE`, :class:`TornRead`): a file torn by
        a kill can still give its generation count."""
        with self._open("r") as f:
            rec = _record_from(f, {}, codes=False)
            if "codes" in f and f["codes"].shape[0]:
                f["codes"][-1]  # its last chunk reads back
        return len(rec.best_per_generation)

    def set_config(self, config: dict[str, Any], marked: int | None = None) -> None:
        """Rewrite the ``config`` attribute when it differs (a resumed run's allowed edits);
        ``marked``: the generations of a record found marked (:meth:`trusted_generations`),
        which is marked again once the attribute is written."""
        text = json.dumps(config)
        with self._open("r") as f:
            if f.attrs.get("config") == text:
                return
        check_space(self.path.parent, len(text))
        self.forget_mark()
        with self._open_existing() as f:
            f.attrs["config"] = text
        if marked is not None:
            self.mark(marked)

    def truncate(self, generations: int) -> None:
        """Cut the record back to its first ``generations`` generations."""
        self.forget_mark()
        with self._open_existing() as f:
            if "generation" in f:
                n = int(np.searchsorted(f["generation"][:], generations, side="left"))
                for name in ROW_FIELDS:
                    f[name].resize(n, axis=0)
            if "references" in f:
                g = f["references/generation"][:]
                m = int(np.searchsorted(g, generations, side="left"))
                for name in REF_FIELDS:
                    f["references"][name].resize(m, axis=0)
            if "generations" in f:
                for name in GEN_FIELDS:
                    f["generations"][name].resize(generations, axis=0)
            for group in _extra_groups(f):
                g = group["generation"][:]
                m = int(np.searchsorted(g, generations, side="left"))
                for ds in group.values():
                    if isinstance(ds, h5py.Dataset) and ds.shape[:1] == g.shape:
                        ds.resize(m, axis=0)


def _whole_generations(f: h5py.File) -> int | None:
    """The generations of an open record whose datasets agree in length (rows, references
    and per-generation ones, each among themselves, and as many rows as presentations), or
    None; reads only shapes and one number."""
    lengths = [
        {f[name].shape[0] for name in fields if name in group}
        for fields, group in (
            (ROW_FIELDS, f),
            ([f"references/{n}" for n in REF_FIELDS], f),
            ([f"generations/{n}" for n in GEN_FIELDS], f),
        )
    ]
    if any(len(found) > 1 for found in lengths):
        return None
    generations = next(iter(lengths[2]), 0)
    rows = next(iter(lengths[0]), 0)
    shown = int(f["generations/presentations"][-1]) if generations else 0
    return generations if shown == rows else None


def _extra_groups(f: h5py.File) -> list[h5py.Group]:
    """Groups of scorer-specific rows (any group but the core ones with a ``generation``)."""
    found: list[h5py.Group] = []

    def visit(name: str, obj: Any) -> None:
        if (
            isinstance(obj, h5py.Group)
            and name not in ("references", "generations")
            and isinstance(obj.get("generation"), h5py.Dataset)
        ):
            found.append(obj)

    f.visititems(visit)
    return found


COPY_BUFFER = 16 << 20
"""Bytes per read when a record is copied (``journal/base.h5``)."""

REBUILD_CHUNK = 64
"""Generations appended at once when ``record.h5`` is rebuilt from the journal (an HDF5 append
costs about as much for one generation as for many; the chunk bounds the memory)."""

UNREADABLE = (OSError, KeyError, RuntimeError, ValueError)
"""What h5py raises for a damaged or half-written file, depending on where the damage is: a kill
before HDF5 wrote back its superblock leaves a file that opens and fails at the first link it
follows (RuntimeError, "addr overflow"); a reader that catches a record mid-write sees the same."""


def unreadable(run: Path, err: BaseException) -> RecordUnreadableError:
    """The error for a ``record.h5`` that h5py failed to read with ``err``: what failed and
    how to recover."""
    return RecordUnreadableError(
        f"cannot read the records in {str(run)!r} ({type(err).__name__}: {err}). "
        f"{rebuild_advice(run)}."
    )


PYTHON_CONTINUE = (
    "Experiment(...).restore(), then run(), in Python with the objects it was built with (it "
    "was built in Python: it has no config.yaml for xdream resume)"
)
"""How to continue a run built from Python objects."""


def continue_how(run: Path) -> str:
    """:func:`continue_command` as a sentence's end: the command quoted, or what to do."""
    how = continue_command(run)
    return f"`{how}`" if how.startswith("xdream resume") else how


def config_yaml_lost(run: Path) -> bool:
    """Whether ``run`` has no ``config.yaml`` but was made from a config (lost, or deleted):
    its ``record.h5`` (a many-unit run's: its units') holds the resolved config
    (:func:`_made_from_config`). False where the record cannot tell (missing, unreadable)."""
    run = Path(run)
    if (run / "config.yaml").exists():
        return False
    if not (run / "record.h5").exists():  # a many-unit run's folder: its units' records say
        units = run / "units"
        records = sorted(units.glob("*/record.h5")) if units.is_dir() else []
        return bool(records) and _made_from_config(records[0])
    return _made_from_config(run / "record.h5")


def _made_from_config(record: Path) -> bool:
    """Whether ``record`` was written by a run made from a config: its ``config`` attribute is
    a resolved config (:meth:`Config.to_dict`), whose ``experiment`` table holds every key
    (``record_interval`` among them), where a run built in Python records a few."""
    try:
        with h5py.File(record, "r", locking=False) as f:
            config = json.loads(f.attrs["config"])
    except (*UNREADABLE, KeyError, TypeError, json.JSONDecodeError):
        return False
    experiment = config.get("experiment") if isinstance(config, dict) else None
    return isinstance(experiment, dict) and "record_interval" in experiment


def put_config_back(run: Path) -> str:
    """What to do for a run made from a config whose ``config.yaml`` is gone
    (:func:`config_yaml_lost`): a single run's ``record.h5`` keeps a copy; a many-unit run's
    units keep only their own, without its ``[[targets]]``."""
    if not (Path(run) / "record.h5").exists():
        return (
            "its config.yaml is missing: put back the config it was started with, its "
            "[[targets]] included (the file you ran, or a backup's config.yaml), then "
            f"xdream resume {run}"
        )
    return (
        f"its config.yaml is missing: put it back (record.h5 keeps a copy: "
        f"xdream.records.read({str(run)!r}).config, written with yaml.safe_dump into "
        f"config.yaml), then xdream resume {run}"
    )


def continue_command(run: Path) -> str:
    """How to continue the run in ``run``: ``xdream resume RUN``, for a run built in Python
    (no ``config.yaml``) :data:`PYTHON_CONTINUE`, and for one made from a config whose
    ``config.yaml`` is gone, how to put it back (:func:`config_yaml_lost`). A unit of a
    many-unit run goes on with its run (``RUN/units/UNIT``: ``xdream resume RUN``)."""
    run = Path(run)
    if run.parent.name == "units" and (run.parent.parent / "config.yaml").exists():
        run = run.parent.parent  # its units go on together
    if (run / "config.yaml").exists():
        return f"xdream resume {run}"
    if config_yaml_lost(run):
        return put_config_back(run)
    return PYTHON_CONTINUE


def journal_rebuilds(run: Path) -> bool:
    """Whether the journal in ``run`` holds every generation from the first (from the last of
    ``journal/base.h5``, for a finished run that went on), from which continuing the run
    rebuilds an unreadable ``record.h5``."""
    folder = RunFolder(run)
    journal = folder.journal_generations()
    base = folder.journal_base()
    start = 0 if base is None else base[1]
    return bool(journal or start) and journal == list(range(start, start + len(journal)))


def rebuild_advice(run: Path) -> str:
    """What can be done about an unreadable ``record.h5`` in ``run``: ``xdream resume``
    rebuilds it where the journal holds every generation from the first (a killed run); a
    finished run's journal is gone (it is removed at the end), so only a backup helps."""
    if journal_rebuilds(run):
        if not (Path(run) / "config.yaml").exists():  # its record cannot say how it was made
            return (
                "If the run was killed, continuing it rebuilds record.h5 from its journal: "
                "Experiment(...).restore(), then run(), in Python with the objects it was "
                "built with for a run built in Python; for one made from a config whose "
                "config.yaml is gone, put back the resolved config.yaml it was started with "
                f"(a backup's), then `xdream resume {run}`"
            )
        return f"If the run was killed, `xdream resume {run}` rebuilds record.h5 from its journal"
    try:
        finished = read_summary(run).get("status") == "finished"
    except SummaryUnreadableError:
        finished = False
    lost = (
        "The run finished, and a finished run's journal is removed"
        if finished
        else "Its journal is incomplete"
    )
    return (
        f"{lost}, so record.h5 cannot be rebuilt (`xdream resume` cannot either): put back a "
        "copy from a backup if you have one; summary.json, best.png and images/ do not "
        "depend on it"
    )


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


# --------------------------------------------------------------------------- reading back
@dataclass(eq=False)
class Record:
    """An experiment's record read back into memory (see :func:`read`).

    Two records are equal (``==``) when every field is: arrays of the same shape, dtype kind
    and values (NaN equal to NaN), and the same lists, config and summary.
    """

    codes: npt.NDArray[np.float32]
    """(N, d): every code, in row order; (0, d) when read with ``codes=False``."""
    scores: npt.NDArray[np.float64]
    clean_scores: npt.NDArray[np.float64]
    generation: npt.NDArray[np.int32]
    image_ids: list[str]
    genealogy: list[str]
    ref_ids: list[str]
    ref_scores: npt.NDArray[np.float64]
    ref_clean_scores: npt.NDArray[np.float64]
    ref_generation: npt.NDArray[np.int32]
    best_per_generation: npt.NDArray[np.float64]
    mean_per_generation: npt.NDArray[np.float64]
    best_reference_per_generation: npt.NDArray[np.float64]
    presentations_per_generation: npt.NDArray[np.int64]
    """Cumulative presentations of evolved images after each generation."""
    seconds: npt.NDArray[np.float64]
    """(G, 4): seconds of each generation's steps, named by :attr:`timing_columns`."""
    timing_columns: tuple[str, ...]
    config: dict[str, Any]
    summary: dict[str, Any]
    extra: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    """Scorer-specific datasets by path, e.g. ``extra["rig/presentations/response"]``."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in fields(Record))

    # mutable and compared by value, as the generated __eq__ made it
    __hash__ = None  # type: ignore[assignment]


def _same(a: Any, b: Any) -> bool:
    """Value equality that compares arrays element-wise and takes NaN as equal to NaN."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
            return False
        nan_aware = a.dtype.kind in "fc"
        return bool(np.array_equal(a, b, equal_nan=nan_aware))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN in a summary or config
    return bool(a == b)


def read(path: str | Path, *, codes: bool = True) -> Record:
    """Read an experiment folder's ``record.h5`` and ``summary.json``.

    ``codes=False`` leaves out the codes, the bulk of a record (N x d float32): the record's
    :attr:`Record.codes` is then empty, shape (0, d), and every other field is read as usual;
    :func:`read_codes` reads the rows wanted. The torn-read check below counts the ``codes``
    rows all the same.

    Raises :class:`~xdream.errors.RecordUnreadableError` when h5py cannot read the record (a
    kill left it damaged, or the run is writing it at this moment), or when its datasets do not
    hold the same whole generations (:class:`TornRead`: read while the run appended to it,
    which HDF5 does not make atomic): read again.
    """
    folder = RunFolder(path)
    if not folder.record.exists():
        units = unit_folders(folder.path)
        if units:
            raise XDreamError(
                f"{str(folder.path)!r} is a many-unit run: each unit's record is in its own "
                f"folder, so read one, e.g. xdream.records.read({str(units[0])!r}). "
                f"{list_units(units)}"
            )
        raise XDreamError(f"{str(folder.path)!r} holds no record.h5: is it an experiment folder?")
    summary = read_summary(folder.path)
    try:
        with h5py.File(folder.record, "r", locking=False) as f:
            return _record_from(f, summary, codes)
    # TornRead is named on purpose: that it is a ValueError (one of UNREADABLE) is not what
    # makes a torn read retryable, and it stays caught if either changes
    except (TornRead, *UNREADABLE) as err:
        raise unreadable(folder.path, err) from err


SHOWN_UNITS = 5
"""Unit folders named when a many-unit run's folder is given where one unit's is needed."""


def unit_folders(run: Path) -> list[Path]:
    """The unit folders (``units/NAME`` holding a ``record.h5``) of a many-unit run's folder,
    sorted; ``[]`` for any other folder, one with a ``record.h5`` of its own included."""
    units = run / "units"
    if (run / "record.h5").exists() or not units.is_dir():
        return []
    return sorted(p for p in units.iterdir() if (p / "record.h5").exists())


def list_units(units: list[Path]) -> str:
    """``Its units (N): a, b, ... and K more``: the first :data:`SHOWN_UNITS` folder names."""
    listed = ", ".join(p.name for p in units[:SHOWN_UNITS])
    more = f" and {len(units) - SHOWN_UNITS} more" if len(units) > SHOWN_UNITS else ""
    return f"Its units ({len(units)}): {listed}{more}"


def read_codes(
    path: str | Path, rows: Iterable[int], *, seen: int | None = None
) -> npt.NDArray[np.float32]:
    """Rows ``rows`` of an experiment folder's recorded ``codes``, read without the others:
    an (len(rows), d) float32 array in the order given (a row may come more than once), the
    same values as ``read(path).codes[rows]``. Row numbers are those of :func:`read` (of
    ``codes=False`` too): rows are only ever appended, so a row read once keeps its number.

    ``seen``: how many rows the caller's :func:`read` found. A record that now holds fewer (cut
    short, or replaced, since) raises :class:`~xdream.errors.RecordUnreadableError`, as a torn
    read does (:class:`TornRead`; try again). Otherwise a row beyond the record is an
    ``IndexError``, and a negative row a ``ValueError``; an unreadable record raises
    :class:`~xdream.errors.RecordUnreadableError` as :func:`read` does.
    """
    folder = RunFolder(path)
    if not folder.record.exists():
        raise XDreamError(f"{str(folder.path)!r} holds no record.h5: is it an experiment folder?")
    wanted = np.fromiter(rows, dtype=np.int64)
    if wanted.size and int(wanted.min()) < 0:
        raise ValueError(f"rows are numbered from 0, got {int(wanted.min())}")
    try:
        with h5py.File(folder.record, "r", locking=False) as f:
            d = int(f.attrs["code_dim"])
            n = f["codes"].shape[0] if "codes" in f else 0
            if seen is not None and n < seen:
                raise TornRead(
                    f"{n} rows of codes where {seen} were read: cut short or replaced since"
                )
            if wanted.size and int(wanted.max()) >= n:
                raise IndexError(
                    f"row {int(wanted.max())} asked for, but record.h5 in {str(folder.path)!r} "
                    f"holds {n} rows of codes (numbered from 0)"
                )
            unique, where = np.unique(wanted, return_inverse=True)
            found = np.empty((len(unique), d), np.float32)
            start = 0  # one read per run of consecutive rows (a generation's rows are one)
            for run in np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1):
                if run.size:
                    found[start : start + run.size] = f["codes"][int(run[0]) : int(run[-1]) + 1]
                    start += run.size
    except (TornRead, *UNREADABLE) as err:
        raise unreadable(folder.path, err) from err
    return found if np.array_equal(unique, wanted) else found[where]


def read_summary(path: str | Path) -> dict[str, Any]:
    """An experiment folder's ``summary.json`` (``{}`` before the first generation wrote one).

    Raises :class:`~xdream.errors.SummaryUnreadableError` when the file is there but is not a
    JSON object (cut short by a power loss or a full disk); the message says how to rewrite it.
    """
    folder = RunFolder(path)
    try:
        text = folder.summary.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        problem = f"{type(err).__name__}: {err}"
    else:
        try:
            data = json.loads(text)
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            problem = "empty" if not text.strip() else f"not JSON: {err}"
        else:
            if isinstance(data, dict):
                return data
            problem = f"a JSON {type(data).__name__}, not an object"
    raise SummaryUnreadableError(
        f"cannot read {str(folder.summary)!r} ({problem}). The run's record.h5, images and "
        f"checkpoint do not depend on it: `xdream resume {folder.path}` writes it again (an "
        "experiment built in Python: Experiment(...).restore(), then run())."
    )


class TornRead(ValueError):
    """A ``record.h5`` whose datasets disagree in length: read while the run appended to it
    (HDF5 may write part of an append's metadata back before the rest)."""


def _record_from(f: h5py.File, summary: dict[str, Any], codes: bool = True) -> Record:
    def strings(ds: h5py.Dataset) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else str(s) for s in ds[:]]

    def data(name: str, empty: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return f[name][:] if name in f else empty

    empty = np.zeros(0)
    no_codes = np.zeros((0, int(f.attrs["code_dim"])), np.float32)
    rec = Record(
        codes=data("codes", no_codes) if codes else no_codes,
        scores=data("scores", empty),
        clean_scores=data("clean_scores", empty),
        generation=data("generation", empty.astype(np.int32)),
        image_ids=strings(f["image_ids"]) if "image_ids" in f else [],
        genealogy=strings(f["genealogy"]) if "genealogy" in f else [],
        ref_ids=strings(f["references/ids"]) if "references/ids" in f else [],
        ref_scores=data("references/scores", empty),
        ref_clean_scores=data("references/clean_scores", empty),
        ref_generation=data("references/generation", empty.astype(np.int32)),
        best_per_generation=data("generations/best_score", empty),
        mean_per_generation=data("generations/mean_score", empty),
        best_reference_per_generation=data("generations/best_reference", empty),
        presentations_per_generation=data("generations/presentations", empty.astype(np.int64)),
        seconds=data("generations/seconds", np.zeros((0, 4))),
        timing_columns=tuple(
            s.decode() if isinstance(s, bytes) else str(s)
            for s in f.attrs.get("timing_columns", TIMING_COLUMNS)
        ),
        config=json.loads(f.attrs.get("config", "{}")),
        summary=summary,
        extra=_read_extra(f),
    )
    _check_complete(rec, None if codes else (f["codes"].shape[0] if "codes" in f else 0))
    return rec


def _check_complete(rec: Record, code_rows: int | None = None) -> None:
    """Raise :class:`TornRead` unless ``rec`` holds whole generations: every row dataset as
    long as the others, the reference datasets likewise, the per-generation ones likewise, the
    last row of the last generation and as many rows as its cumulative presentations.
    ``code_rows``: the length of the ``codes`` dataset, for a record read without them."""
    rows = {k: len(getattr(rec, k)) for k in ROW_FIELDS}
    if code_rows is not None:
        rows["codes"] = code_rows
    refs = {"ids": len(rec.ref_ids), "scores": len(rec.ref_scores)}
    refs.update(clean_scores=len(rec.ref_clean_scores), generation=len(rec.ref_generation))
    presentations = rec.presentations_per_generation
    gens = {
        "best_score": len(rec.best_per_generation),
        "mean_score": len(rec.mean_per_generation),
        "best_reference": len(rec.best_reference_per_generation),
        "presentations": len(presentations),
        "seconds": len(rec.seconds),
    }
    problems = [
        f"{what} datasets of different lengths ({', '.join(f'{k} {v}' for k, v in d.items())})"
        for what, d in (("row", rows), ("references/", refs), ("generations/", gens))
        if len(set(d.values())) > 1
    ]
    g, n = gens["best_score"], rows["codes"]
    if not problems:
        if n and int(rec.generation[-1]) != g - 1:
            problems.append(f"rows up to generation {int(rec.generation[-1])}, {g} generations")
        shown = int(presentations[-1]) if g else 0
        if shown != n:
            problems.append(f"{n} rows, {shown} presentations")
        if refs["ids"] and int(rec.ref_generation[-1]) >= g:
            problems.append(f"references of generation {int(rec.ref_generation[-1])}")
        elif (
            g
            and np.isfinite(rec.best_reference_per_generation[-1])
            and (not refs["ids"] or int(rec.ref_generation[-1]) != g - 1)
        ):
            problems.append(f"no references of generation {g - 1}, which has a best reference")
        for key, values in rec.extra.items():
            if key.endswith("/generation") and len(values) and int(values[-1]) >= g:
                problems.append(f"{key} up to generation {int(values[-1])}")
    if problems:
        raise TornRead(
            f"{'; '.join(problems)}: read while the run was appending to it, or cut short"
        )


def _read_extra(f: h5py.File) -> dict[str, npt.NDArray[Any]]:
    out: dict[str, npt.NDArray[Any]] = {}
    for group in _extra_groups(f):
        for name, ds in group.items():
            if isinstance(ds, h5py.Dataset):
                data = ds[:]
                if ds.dtype.kind == "O":
                    data = np.array([s.decode() if isinstance(s, bytes) else s for s in data])
                out[f"{group.name.lstrip('/')}/{name}"] = data
    return out


def save_best_image(images: Images, scores: npt.NDArray[np.float64], path: Path) -> int | None:
    """Save the best-scoring image of a batch; returns its index (None if all NaN)."""
    if not np.isfinite(scores).any():
        return None
    i = int(np.nanargmax(scores))
    save_png(images[i], path)
    return i
