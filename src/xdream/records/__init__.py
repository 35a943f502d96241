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

The package's modules, each imported here (``xdream.records.NAME`` names everything public):
:mod:`.layout` (the names and datasets above, :class:`GenerationRecord`), :mod:`.files`
(atomic writes, JSON, PNG, checkpoint), :mod:`.locks` and :mod:`.folder` (:class:`RunFolder`),
:mod:`.faults` (a full disk, a folder that can no longer be written), :mod:`.h5`
(:class:`H5Record`), :mod:`.messages` (how to continue a run), :mod:`.resume` (:func:`reconcile`
on resume) and :mod:`.reading` (:func:`read`, :func:`read_codes`, :func:`read_summary`).
"""

from __future__ import annotations

# xdream.errors' class, also reached as records.RecordUnreadableError (records.py imported it)
from xdream.errors import RecordUnreadableError as RecordUnreadableError
from xdream.records.faults import (
    FOLDER_FAULTS,
    NO_SPACE,
    SPACE_MARGIN,
    Flushable,
    check_space,
    is_disk_full,
    raise_for_folder,
    raise_if_disk_full,
    raise_if_folder_fault,
    stop_run,
)
from xdream.records.files import (
    TMP_SUFFIX,
    atomic_write,
    checkpoint_unusable,
    encode_png,
    fsync_folder,
    load_checkpoint,
    make_folder,
    png_bytes,
    remove_empty,
    save_best_image,
    save_checkpoint,
    save_png,
    write_json,
)
from xdream.records.folder import RunFolder
from xdream.records.h5 import H5Record
from xdream.records.layout import (
    BASE_FILE,
    DROPPED_JOURNAL,
    GEN_FIELDS,
    JOURNAL_ARRAYS,
    LAYOUT_VERSION,
    LOCK_FILE,
    MARK_SUFFIX,
    OWN_NAMES,
    REF_FIELDS,
    ROW_FIELDS,
    TIMING_COLUMNS,
    UNREADABLE,
    ExtraLayout,
    ExtraRowsError,
    GenerationRecord,
    checked_extra,
)
from xdream.records.locks import FolderLock
from xdream.records.messages import (
    PYTHON_CONTINUE,
    config_yaml_lost,
    continue_command,
    continue_how,
    journal_rebuilds,
    put_config_back,
    rebuild_advice,
    unreadable,
)
from xdream.records.reading import (
    SHOWN_UNITS,
    Record,
    TornRead,
    list_units,
    no_record_error,
    read,
    read_codes,
    read_summary,
    relative_to_references,
    unit_folders,
)
from xdream.records.resume import COPY_BUFFER, REBUILD_CHUNK, RecordPlan, check_reconcile, reconcile

__all__ = [
    "BASE_FILE",
    "COPY_BUFFER",
    "DROPPED_JOURNAL",
    "FOLDER_FAULTS",
    "GEN_FIELDS",
    "JOURNAL_ARRAYS",
    "LAYOUT_VERSION",
    "LOCK_FILE",
    "MARK_SUFFIX",
    "NO_SPACE",
    "OWN_NAMES",
    "PYTHON_CONTINUE",
    "REBUILD_CHUNK",
    "REF_FIELDS",
    "ROW_FIELDS",
    "SHOWN_UNITS",
    "SPACE_MARGIN",
    "TIMING_COLUMNS",
    "TMP_SUFFIX",
    "UNREADABLE",
    "ExtraLayout",
    "ExtraRowsError",
    "Flushable",
    "FolderLock",
    "GenerationRecord",
    "H5Record",
    "Record",
    "RecordPlan",
    "RunFolder",
    "TornRead",
    "atomic_write",
    "check_reconcile",
    "check_space",
    "checked_extra",
    "checkpoint_unusable",
    "config_yaml_lost",
    "continue_command",
    "continue_how",
    "encode_png",
    "fsync_folder",
    "is_disk_full",
    "journal_rebuilds",
    "list_units",
    "load_checkpoint",
    "make_folder",
    "no_record_error",
    "png_bytes",
    "put_config_back",
    "raise_for_folder",
    "raise_if_disk_full",
    "raise_if_folder_fault",
    "read",
    "read_codes",
    "read_summary",
    "rebuild_advice",
    "reconcile",
    "relative_to_references",
    "remove_empty",
    "save_best_image",
    "save_checkpoint",
    "save_png",
    "stop_run",
    "unit_folders",
    "unreadable",
    "write_json",
]
