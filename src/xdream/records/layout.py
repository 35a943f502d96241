"""What a run folder's files hold: the names and datasets of ``record.h5`` (laid out in
:mod:`xdream.records`), one generation's record (:class:`GenerationRecord`) and its journal
file, and what h5py raises for a damaged record (:data:`UNREADABLE`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import h5py
import numpy as np
import numpy.typing as npt

LAYOUT_VERSION = 1
MARK_SUFFIX = ".ok"
"""``.record.h5.ok``: the mark of a record left complete and closed (:meth:`H5Record.mark`)."""
DROPPED_JOURNAL = ".journal.dropped"
"""The journal of a finished run while it is deleted (:meth:`RunFolder.drop_journal`)."""
BASE_FILE = "base.h5"
"""``journal/base.h5``: a finished run's record as it was when the run was continued with a
larger budget (its journal was removed when it finished): rebuilds start from it."""
LOCK_FILE = ".xdream.lock"
"""The file an experiment's process holds locked while it runs (:meth:`RunFolder.lock`)."""

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
    ``generation`` dataset with one entry per row (see :meth:`H5Record.truncate`), which
    :func:`checked_extra` adds where the scorer gave none."""

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


OWN_NAMES = ("references", "generations", *ROW_FIELDS)
"""Names at the top of ``record.h5`` that are xdream's own: a scorer's extra rows
(:attr:`GenerationRecord.extra`) go in groups of other names."""

EXTRA_KINDS = "biufcU"
"""NumPy dtype kinds a scorer's extra rows may have: booleans, numbers and (unicode) strings."""


class ExtraRowsError(ValueError):
    """A scorer's ``last_extra`` that the record cannot hold (:func:`checked_extra`)."""


def checked_extra(
    extra: Any, generation: int, layout: ExtraLayout | None = None
) -> dict[str, npt.NDArray[Any]]:
    """A scorer's ``last_extra`` of generation ``generation`` as :attr:`GenerationRecord.extra`
    holds it: ``{"group/dataset": rows}`` with each value a NumPy array of rows, and in each
    group a ``generation`` dataset, one entry per row, added where the scorer gave none; but
    not in a group that ``layout`` has without one (recorded so by an earlier xdream, which
    did not add it): that group is kept as it was, its ``generation`` rows left out.

    Raises :class:`ExtraRowsError` saying what is wrong: a key that is not ``group/dataset``
    or that is in one of xdream's own names (:data:`OWN_NAMES`), a value that is no array of
    rows of numbers or strings (a single value, objects), datasets of one group with different
    numbers of rows, a ``generation`` dataset that holds another generation's number; and,
    given the ``layout`` of the rows recorded so far (which it then extends), a group with
    other datasets than before, or a dataset whose rows changed shape or went from numbers to
    text or back: ``record.h5`` could not append them."""
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise ExtraRowsError(f"it is a {type(extra).__name__}, not a dict")
    out: dict[str, npt.NDArray[Any]] = {}
    rows: dict[str, tuple[str, int]] = {}  # group: (its first dataset, its rows)
    for key, value in extra.items():
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) < 2 or not all(parts):
            raise ExtraRowsError(f"key {key!r} is not 'group/dataset'")
        if parts[0] in OWN_NAMES:
            raise ExtraRowsError(f"key {key!r} is in xdream's own {parts[0]!r}")
        try:
            array = np.asarray(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ExtraRowsError(f"{key!r} is no array ({type(err).__name__}: {err})") from None
        if array.ndim == 0 or array.dtype.kind not in EXTRA_KINDS:
            what = "a single value" if array.ndim == 0 else f"an array of {array.dtype}"
            raise ExtraRowsError(
                f"{key!r} is {what} ({type(value).__name__}), not an array of rows of numbers "
                "or strings"
            )
        group = key.rsplit("/", 1)[0]
        first, n = rows.setdefault(group, (key, len(array)))
        if len(array) != n:
            raise ExtraRowsError(
                f"{key!r} has {len(array)} rows and {first!r} {n}, where the datasets of a "
                "group have a row each for every entry"
            )
        out[key] = array
    for group, (_, n) in rows.items():
        key = f"{group}/generation"
        given = out.get(key)
        if given is None:
            out[key] = np.full(n, generation, np.int32)
        elif given.dtype.kind not in "iu" or given.ndim != 1 or (given != generation).any():
            raise ExtraRowsError(
                f"{key!r} holds {given.tolist()!r}, not this generation's number ({generation}) "
                "in each row (leave it out: the experiment writes it)"
            )
        if layout is not None and "generation" not in layout.get(group, ("generation",)):
            # recorded without one (an earlier xdream, for a scorer that gave none): a column
            # begun now would be shorter than the group's others, so the group goes on without
            del out[key]
    if layout is not None:
        _check_layout(out, rows, layout)
    return out


def _check_layout(
    out: dict[str, npt.NDArray[Any]], groups: Mapping[str, Any], layout: ExtraLayout
) -> None:
    """Raise :class:`ExtraRowsError` where ``out`` does not go on the extra rows of
    ``layout`` (see :func:`checked_extra`); then add it to ``layout``."""
    found: ExtraLayout = {}
    for group in groups:
        names = tuple(sorted(k.rsplit("/", 1)[1] for k in out if k.rsplit("/", 1)[0] == group))
        found[group] = names
        before = layout.get(group)
        if before is not None and before != names:
            raise ExtraRowsError(
                f"group {group!r} has the datasets {', '.join(names)}, where earlier "
                f"generations recorded {', '.join(before)}: give the same ones every time"
            )
    for key, array in out.items():
        shape, kind = array.shape[1:], "text" if array.dtype.kind == "U" else array.dtype.str
        before = layout.get(key)
        if before is None:
            found[key] = (shape, kind)
            continue
        if before[0] == shape and (
            before[1] == kind == "text"
            or (
                "text" not in (kind, before[1])
                and np.can_cast(array.dtype, np.dtype(before[1]), "safe")
            )
        ):
            continue
        was = "text" if before[1] == "text" else f"{np.dtype(before[1])}"
        now = "text" if kind == "text" else f"{array.dtype}"
        raise ExtraRowsError(
            f"{key!r} holds rows of {now} and shape {shape}, where earlier generations "
            f"recorded {was} of shape {before[0]}, which these cannot be appended to"
        )
    layout.update(found)


ExtraLayout = dict[str, tuple[Any, ...]]
"""What the extra rows recorded so far look like (:func:`checked_extra` keeps it): each group's
datasets (``"group"``: their sorted names), and each dataset's shape after its rows and its
type (``"group/dataset"``: ``(shape, "text")`` or ``(shape, dtype.str)``), as first recorded."""


def _nanmax(x: npt.NDArray[np.float64]) -> float:
    valid = x[~np.isnan(x)]
    return float(valid.max()) if valid.size else float("nan")


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


def _extra_groups(f: h5py.File, *, without_generation: bool = False) -> list[h5py.Group]:
    """Groups of scorer-specific rows (any group but the core ones with a ``generation``);
    ``without_generation``: those too that hold datasets but no ``generation`` (earlier
    versions wrote them for a scorer that gave none)."""
    found: list[h5py.Group] = []

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Group) or name.split("/")[0] in OWN_NAMES:
            return
        if isinstance(obj.get("generation"), h5py.Dataset) or (
            without_generation and any(isinstance(v, h5py.Dataset) for v in obj.values())
        ):
            found.append(obj)

    f.visititems(visit)
    return found


UNREADABLE = (OSError, KeyError, RuntimeError, ValueError)
"""What h5py raises for a damaged or half-written file, depending on where the damage is: a kill
before HDF5 wrote back its superblock leaves a file that opens and fails at the first link it
follows (RuntimeError, "addr overflow"); a reader that catches a record mid-write sees the same."""
