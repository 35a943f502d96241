"""Reading a run back: :func:`read` (the whole record, or all but its codes),
:func:`read_codes` (chosen rows), :func:`read_summary`, and the checks that refuse a record
read while the run appended to it (:class:`TornRead`)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from xdream.errors import SummaryUnreadableError, XDreamError
from xdream.records.folder import RunFolder
from xdream.records.layout import ROW_FIELDS, TIMING_COLUMNS, UNREADABLE, _extra_groups
from xdream.records.messages import unreadable


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


def _runs_said(path: Path, runs: list[Path], call: str, verb: str) -> str:
    """``; VERB one of those (e.g. CALL); runs with a record (N): a, b, ... and K more``: the
    first :data:`SHOWN_UNITS` run folders of ``runs`` (their ``record.h5``) under ``path``."""
    if not runs:
        return " (none holds a record yet)"
    folders = [r.parent for r in runs]
    listed = ", ".join(f.relative_to(path).as_posix() for f in folders[:SHOWN_UNITS])
    more = f" and {len(folders) - SHOWN_UNITS} more" if len(folders) > SHOWN_UNITS else ""
    example = call.format(repr(str(folders[0])))
    return (
        f"; {verb} one of those (e.g. {example}); runs with a record ({len(runs)}): {listed}{more}"
    )


def _sweep_or_study(path: Path, call: str, verb: str) -> str | None:
    """What an ``xdream sweep`` folder (``sweep.csv`` tables its runs) or an ``xdream tune``
    folder (``tune.csv`` tables a study's trials, ``tune.db`` holds the study) is and where its
    runs are, to give ``call`` (a ``{}`` for the folder) instead; None for another folder."""
    if (path / "sweep.csv").is_file():
        runs = sorted(path.glob("*/*/seed*/record.h5"))
        return (
            f"{str(path)!r} is an `xdream sweep` folder: its sweep.csv tables the runs, each in "
            f"its own folder UNIT/OPTIMIZER/seedS{_runs_said(path, runs, call, verb)}"
        )
    tables = [t for t in [path / "tune.csv", *sorted(path.glob("study-*/tune.csv"))] if t.is_file()]
    if not tables and not (path / "tune.db").is_file():
        return None
    runs = []
    for study in [path, *sorted(path.glob("study-*"))]:  # a seed's run of one unit, or of many
        runs += sorted(study.glob("trial*/seed*/record.h5"))
        runs += sorted(study.glob("trial*/seed*/units/*/record.h5"))
    named = ", ".join(t.relative_to(path).as_posix() for t in tables)
    return (
        f"{str(path)!r} is an `xdream tune` folder: {named or 'its tune.csv'} tables a tuning "
        "study's trials, each trial's runs in its own folder trialNNNN/seedS (of many units, "
        f"trialNNNN/seedS/units/UNIT){_runs_said(path, runs, call, verb)}"
    )


def no_record_error(
    path: str | Path, call: str = "xdream.records.read({})", verb: str = "read"
) -> XDreamError:
    """The error for ``path``, a folder without a ``record.h5``, given to ``call`` (``{}`` for
    the folder; ``verb``: what it does with a run): what the folder is where xdream made it
    (a many-unit run, an ``xdream sweep`` or ``xdream tune`` folder), and the run folders in
    it to give instead."""
    path = Path(path)
    units = unit_folders(path)
    if units:
        return XDreamError(
            f"{str(path)!r} is a many-unit run: each unit's record is in its own folder, so "
            f"{verb} one, e.g. {call.format(repr(str(units[0])))}. {list_units(units)}"
        )
    said = _sweep_or_study(path, call, verb)
    if said is not None:
        return XDreamError(said)
    below = _records_below(path)
    if below:  # a sweep's UNIT/ or UNIT/OPTIMIZER/ folder, a study's trialNNNN/, a folder of runs
        return XDreamError(
            f"{str(path)!r} holds no record.h5 of its own: the run folders below it hold theirs"
            f"{_runs_said(path, below, call, verb)}"
        )
    return XDreamError(f"{str(path)!r} holds no record.h5: is it an experiment folder?")


def _records_below(path: Path, depth: int = 3) -> list[Path]:
    """The ``record.h5`` files in the folders 1 to ``depth`` levels below ``path``."""
    found: list[Path] = []
    for level in range(1, depth + 1):
        found += sorted(path.glob("/".join(["*"] * level) + "/record.h5"))
    return found


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
        raise no_record_error(folder.path)
    summary = read_summary(folder.path)
    try:
        with h5py.File(folder.record, "r", locking=False) as f:
            rec = _record_from(f, summary, codes)
    # TornRead is named on purpose: that it is a ValueError (one of UNREADABLE) is not what
    # makes a torn read retryable, and it stays caught if either changes
    except (TornRead, *UNREADABLE) as err:
        raise unreadable(folder.path, err) from err
    for group, lengths in _uneven_groups(rec.extra).items():
        warnings.warn(
            f"record.h5 in {str(folder.path)!r}: the datasets of group {group!r} differ in "
            f"length ({', '.join(f'{k} {v}' for k, v in lengths.items())}), so their rows do "
            "not pair up: read again if the run is writing it; otherwise the group was "
            "continued by two xdream versions (docs/records.md, extra rows)",
            stacklevel=2,
        )
    return rec


def _uneven_groups(extra: Mapping[str, npt.NDArray[Any]]) -> dict[str, dict[str, int]]:
    """The groups of :attr:`Record.extra` whose datasets differ in length: ``{group: {dataset:
    rows}}``."""
    groups: dict[str, dict[str, int]] = {}
    for key, values in extra.items():
        group, name = key.rsplit("/", 1)
        groups.setdefault(group, {})[name] = len(values)
    return {g: d for g, d in groups.items() if len(set(d.values())) > 1}


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
        "experiment built in Python: `e = Experiment(...); e.restore(); e.run()`)."
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
