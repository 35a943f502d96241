"""``record.h5``: :class:`H5Record` makes it, appends generations to it, cuts it back, and
marks each complete write (``.record.h5.ok``) so that a resume can trust it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from xdream.errors import XDreamError
from xdream.records.faults import check_space
from xdream.records.files import atomic_write, fsync_folder, is_tensor, write_json
from xdream.records.layout import (
    _STR,
    GEN_FIELDS,
    LAYOUT_VERSION,
    MARK_SUFFIX,
    REF_FIELDS,
    ROW_FIELDS,
    TIMING_COLUMNS,
    UNREADABLE,
    ExtraLayout,
    GenerationRecord,
    _extra_groups,
)
from xdream.records.messages import continue_how
from xdream.records.reading import _record_from


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


def _numpy_value(value: Any) -> Any:
    """A NumPy array or scalar, or a torch tensor, in a config (a scorer's ``describe()`` may
    hold one) as JSON writes a list or number; anything else is refused as
    :func:`json.dumps` refuses it."""
    if isinstance(value, (np.ndarray, np.generic)) or is_tensor(value):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class H5Record:
    """The growing HDF5 record of an experiment (see :mod:`xdream.records` for the layout)."""

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
            f.attrs["config"] = json.dumps(config, default=_numpy_value)
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

    def extra_layout(self) -> ExtraLayout:
        """What the scorer's extra rows in the record look like (:data:`ExtraLayout`), for
        :func:`~xdream.records.checked_extra` to check a continued run's against; a group
        recorded without a ``generation`` dataset is there without one, so it stays so."""
        layout: ExtraLayout = {}
        with self._open("r") as f:
            for group in _extra_groups(f, without_generation=True):
                name = group.name.lstrip("/")
                datasets = {k: v for k, v in group.items() if isinstance(v, h5py.Dataset)}
                layout[name] = tuple(sorted(datasets))
                for key, ds in datasets.items():
                    text = h5py.check_string_dtype(ds.dtype) is not None
                    layout[f"{name}/{key}"] = (ds.shape[1:], "text" if text else ds.dtype.str)
        return layout

    def set_config(self, config: dict[str, Any], marked: int | None = None) -> None:
        """Rewrite the ``config`` attribute when it differs (a resumed run's allowed edits);
        ``marked``: the generations of a record found marked (:meth:`trusted_generations`),
        which is marked again once the attribute is written."""
        text = json.dumps(config, default=_numpy_value)
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
