"""The XDream loop: show images, score them, let the optimiser propose the next codes, repeat.

One generation (Xiao & Kreiman 2020, Methods)::

    codes = optimizer.ask()                               # propose codes
    images = generator.generate(codes)                    # render them
    refs, ref_ids = references.sample(n_references)       # fresh natural photos
    scores = scorer.score(images + refs, ids + ref_ids)   # one response per image
    optimizer.tell(codes, scores[:n])                     # references never reach the optimiser
    record(...)                                           # journal, PNG, checkpoint; record.h5

Everything the loop needs to continue is checkpointed after each generation, so an experiment
killed at any moment resumes (:meth:`Experiment.resume`) to exactly the records an uninterrupted
run with the same seed writes.

:meth:`Experiment.run` overlaps consecutive generations where that saves time: the next
generation is proposed (and handed to :meth:`~xdream.scorers.base.Scorer.prepare`, so a rig
can encode its first block) before the finished one is written. The finished generation's
records are then written from a snapshot taken right after its tell: in a background thread
while a network scores the next generation, or while a rig waits for the next response (after
its next block is out). ``record.h5`` is appended at most every ``record_interval`` seconds.
A kill loses at most the generation being written, which a resumed run repeats exactly;
resume brings ``record.h5`` up to date from the journal (or rebuilds it from there), so its
lag loses nothing.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import functools
import hashlib
import json
import os
import pickle
import socket
import time
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch

import xdream
from xdream import config as config_mod
from xdream import generators, optimizers, scorers
from xdream.config import Config
from xdream.encode import load_codes, recorded_generator_spec
from xdream.errors import (
    ConfigChangedError,
    FolderInUseError,
    MissingFileError,
    XDreamError,
    add_note,
)
from xdream.generators.base import Generator
from xdream.multi import Unit, many_unit_run_of, shared_scorer, started_square
from xdream.optimizers.base import Optimizer
from xdream.params import check_seed
from xdream.precision import tf32_mode
from xdream.records import (
    OWN_NAMES,
    UNREADABLE,
    ExtraLayout,
    ExtraRowsError,
    FolderLock,
    GenerationRecord,
    H5Record,
    RecordPlan,
    RunFolder,
    atomic_write,
    check_reconcile,
    checked_extra,
    checkpoint_unusable,
    config_yaml_lost,
    continue_how,
    load_checkpoint,
    png_bytes,
    put_config_back,
    raise_for_folder,
    read_summary,
    reconcile,
    save_png,
    stop_run,
    write_json,
)
from xdream.records.files import json_safe
from xdream.references import ReferenceImages
from xdream.scorers.base import FunctionScorer, Scorer, as_scores, brief
from xdream.types import Codes, Images

CHECKPOINT_VERSION = 1


class _SummaryOptional(TypedDict, total=False):
    lockstep_units: int
    """In a many-unit run: the number of units stepped together, this one included."""
    process: dict[str, Any]
    """While the run is running: ``{"pid", "host"}`` of the process writing it."""


class Summary(_SummaryOptional):
    """The headline numbers of a run, as :meth:`Experiment.run` returns them and
    ``summary.json`` holds them (docs/records.md says what each means). ``None`` where there
    is no such score yet."""

    status: Literal["running", "finished"]
    best_score: float | None
    best_clean_score: float | None
    best_image: str | None
    best_image_id: str | None
    best_generation: int | None
    first_generation_best_score: float | None
    best_reference_score: float | None
    best_clean_reference_score: float | None
    generations: int
    presentations: int
    seconds: float
    target: dict[str, Any]
    generator: str
    optimizer: str
    optimizer_status: dict[str, Any]
    seed: int | None
    code_dim: int
    xdream_version: str


INIT_CODES_FILE = "init_codes.npy"


_HOST = socket.gethostname()

CHANGEABLE = {
    "experiment": ("generations", "presentations", "record_interval", "batch_size", "tf32"),
    "target": ("batch_size", "device"),
    "rig": ("timeout", "on_timeout", "poll_interval", "settle", "settle_always", "match"),
}
"""Config keys that may change between the sessions of a run (``xdream resume`` after an edit
of ``config.yaml``): the budget, how often ``record.h5`` is written, batch sizes, the device
and TF32, the rig's waiting, and how it pairs the names in a response with the files it
wrote (``match``: what is shown and recorded stays the same). Every other key defines the
experiment, and a change to it is refused: the records would mix two experiments."""
CHANGEABLE_KEYS = tuple(f"{section}.{key}" for section, keys in CHANGEABLE.items() for key in keys)

ACCEPTED = "accepted"
"""The key, beside ``generator``, ``optimizer``, ``target`` and ``experiment``, under which a
run built from Python objects records what :meth:`Experiment.restore` took with ``accept``:
a list of ``{"generation": G, "changes": ["section.key: old -> new", ...]}``, G the
generations run before the change (its checkpoint and ``record.h5``'s ``config`` attribute)."""

ADDED_KEYS = {"experiment.noise_seed": None}
"""Keys added since a run may have started, with the value that means what an older xdream
did: a config without one is compared as if it held that value, so setting ``noise_seed`` on
resume of a run started before it existed is refused like any change of a defining key."""

DROPPED_SECTIONS = {"target": "rig"}
"""Sections that a config no longer records beside another (``{section: beside}``), with which
an earlier xdream recorded them unused: a rig's run recorded the default ``[target]`` unit. A
config that holds such a section and one that does not, both with the other section, are
compared as if neither held it, so a run recorded the old way resumes with the new one."""

READ_AGAIN = (("target", "weights"), ("generator", "weights"))
"""Config keys naming a file that every session reads again (``xdream resume`` builds the
network and the generator from it): the checkpoint records which file each one was
(:func:`file_identity`), and resume refuses another file, since the records would mix two sets
of weights. A relative path is taken from the current directory, so another directory can hold
another file of that name."""

FINGERPRINT_BYTES = 2**20
"""A file's fingerprint is the SHA-256 of its first and last this many bytes."""


@functools.cache
def _fingerprint(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of the first and last :data:`FINGERPRINT_BYTES` of ``path`` (once per version
    of the file in a process: the units of a many-unit run share their weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        digest.update(fh.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            fh.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(fh.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def file_identity(path: str | Path) -> dict[str, Any]:
    """Which file ``path`` is now: its resolved path, size and a cheap fingerprint (the SHA-256
    of its first and last MiB), as the checkpoint records it."""
    resolved = Path(path).expanduser().resolve()
    stat = resolved.stat()
    fingerprint = _fingerprint(str(resolved), stat.st_size, stat.st_mtime_ns)
    return {"path": str(resolved), "size": stat.st_size, "sha256_ends": fingerprint}


def files_read(config: Config) -> dict[str, dict[str, Any]]:
    """:func:`file_identity` of each :data:`READ_AGAIN` file ``config`` names, by
    ``"section.key"`` (a rig's run, whose config has no ``[target]``, reads no unit weights)."""
    return files_named(config.to_dict())


def files_named(built: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`file_identity` of each :data:`READ_AGAIN` file that ``built`` names (a config's
    sections, or :meth:`Experiment._built` of a run built in Python: a CNN unit's ``weights``,
    a generator's), by ``"section.key"``; a value that is no existing file is left out."""
    found: dict[str, dict[str, Any]] = {}
    for section, key in READ_AGAIN:
        part = built.get(section)
        value = part.get(key) if isinstance(part, dict) else None
        if isinstance(value, str) and Path(value).expanduser().is_file():
            found[f"{section}.{key}"] = file_identity(value)
    return found


def _described(identity: dict[str, Any]) -> str:
    """A :func:`file_identity` record in words: ``'/p/w.pth' (123 bytes, fingerprint abc...)``."""
    fingerprint = str(identity.get("sha256_ends"))[:12]
    return f"{identity.get('path')!r} ({identity.get('size')} bytes, fingerprint {fingerprint})"


def _same_file(then: Any, now: Any) -> bool:
    """Whether two :func:`file_identity` records name files of the same size and fingerprint."""
    if not isinstance(then, dict) or not isinstance(now, dict):
        return False
    return (then.get("size"), then.get("sha256_ends")) == (now["size"], now["sha256_ends"])


def moved_files(
    then: dict[str, Any], now: dict[str, Any], files: Any, read: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """``then`` (what a run was built with: a run built in Python, or the config its
    checkpoint holds) with the path of each :data:`READ_AGAIN` file that the checkpoint's
    ``files`` record and that the objects or config ``now`` name otherwise (another path, a
    relative path or one through a link to the same place, a virtual environment made again
    elsewhere, a run moved to another machine) but with the same size and fingerprint as the
    file read now (``read``, :func:`files_named` of ``now``) made the path ``now`` gives: the
    same file, not a change."""
    if not isinstance(files, dict):
        return then
    moved = dict(then)
    for key, identity in read.items():
        section, name = key.split(".")
        part, given = moved.get(section), now.get(section)
        if not isinstance(part, dict) or not isinstance(given, dict):
            continue
        if part.get(name) != given.get(name) and _same_file(files.get(key), identity):
            moved[section] = {**part, name: given.get(name)}
    return moved


def moved_said(then: dict[str, Any], moved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The :data:`READ_AGAIN` paths that :func:`moved_files` took as the same file at a new
    path (``moved`` is ``then`` with them taken), each as a change that resume prints and
    :attr:`Experiment.config_changes` lists: ``target.weights: 'a' -> 'b' (the same file:
    same size and fingerprint)``."""
    return [
        f"{section}.{key}: {then[section][key]!r} -> {now[section][key]!r} (the same file: "
        "same size and fingerprint)"
        for section, key in READ_AGAIN
        if moved.get(section) is not then.get(section)
    ]


def other_files(
    files: Any, read: dict[str, dict[str, Any]], whose: str = "the run"
) -> dict[str, str]:
    """What each :data:`READ_AGAIN` file that ``read`` (:func:`files_named` of a new config
    or of the objects given) names is, by ``"section.key"``, where it is an existing file other
    than the one the checkpoint's ``files`` record that ``whose`` read: a note for the refusal of
    that key's change (:func:`with_notes`), so that a user who wrote a moved weight file's new
    path learns the file there is another one, not only that the key changed."""
    if not isinstance(files, dict):
        return {}
    return {
        key: (
            f" (another file: {_described(now)}, not the one {whose} read, "
            f"{_described(files[key])}; where that file is now elsewhere, give its path)"
        )
        for key, now in read.items()
        if isinstance(files.get(key), dict) and not _same_file(files[key], now)
    }


def with_notes(defining: list[str], notes: dict[str, str]) -> list[str]:
    """:func:`config_changes`'s ``defining`` differences, each followed by the note
    :func:`other_files` gives its key, if any."""
    return [change + notes.get(_changed_key(change), "") for change in defining]


def missing_file_message(err: BaseException, checkpoint: Path) -> str:
    """A weight file's missing-file error ``err`` followed by :func:`where_files_were` of the
    run in ``checkpoint``'s folder, as its own sentence."""
    return with_hint(err, where_files_were(checkpoint))


def with_hint(err: BaseException, hint: str) -> str:
    """The error ``err`` followed by ``hint`` (a sentence, from a space on; '' for none)."""
    text = str(err)
    return f"{text}{'' if not hint or text.endswith('.') else '.'}{hint}"


def where_files_were(checkpoint: Path) -> str:
    """A sentence naming the :data:`READ_AGAIN` files the run in ``checkpoint``'s folder read
    (its checkpoint records them), for a resume that cannot find one; '' when unknown."""
    return files_hint(
        files_recorded([checkpoint]),
        read_by="The run",
        again="resume from the directory the run was started in",
        config="the run's config.yaml: resume takes it",
        recorded_by="the run",
    )


def files_recorded(checkpoints: Iterable[Path]) -> dict[str, Any] | None:
    """The :data:`READ_AGAIN` files (``files``: :func:`file_identity` by ``"section.key"``)
    that the first of ``checkpoints`` to record any records; None where none can be read."""
    for checkpoint in checkpoints:
        try:
            files = load_checkpoint(checkpoint).get("files") if checkpoint.exists() else None
        except (XDreamError, OSError):
            continue
        if isinstance(files, dict) and files:
            return files
    return None


def files_hint(files: Any, read_by: str, again: str, config: str, recorded_by: str) -> str:
    """A sentence naming the :data:`READ_AGAIN` files of ``files`` (a checkpoint's record, as
    :func:`files_recorded` gives it), for a command that cannot find one: ``read_by`` read them
    (``"The run"``), the command is run ``again`` from the directory it started in, and the
    file's new path goes into ``config`` (which takes it: ``"the run's config.yaml: resume
    takes it"``) when it is the file ``recorded_by`` recorded. '' when no file is known."""
    if not isinstance(files, dict):
        return ""
    read = [
        f"[{key.split('.')[0]}] {key.split('.')[-1]} was {then['path']}"
        for key, then in files.items()
        if isinstance(then, dict) and isinstance(then.get("path"), str)
    ]
    if not read:
        return ""
    return (
        f" {read_by} read these files: {'; '.join(read)} (a relative path is taken from the "
        f"current directory: {again}, or put the file back there; where the same file is now "
        f"elsewhere, write its path into {config} when its size and fingerprint are the ones "
        f"{recorded_by} recorded)."
    )


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The differences between two resolved configs (:meth:`Config.to_dict`), each as
    ``"section.key: old -> new"``: those of keys that define the experiment, and those of
    :data:`CHANGEABLE` keys. Keys that only one of them has are not compared: a config
    resolved by an older or newer xdream may lack a key or hold one since removed (a section
    that is there or not, such as ``[noise]``, is compared as a whole); those of
    :data:`ADDED_KEYS` are, as their old meaning. A section of :data:`DROPPED_SECTIONS` that
    only one side holds, both holding the section it is dropped beside, is not compared."""
    defining: list[str] = []
    allowed: list[str] = []

    def compare(a: Any, b: Any, key: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            # sections: all of them; within one, a key only one side has came or went with
            # another xdream version
            for k in dict.fromkeys([*a, *b]):
                name = f"{key}.{k}" if key else str(k)
                beside = None if key else DROPPED_SECTIONS.get(name)
                if beside is not None and (k in a) != (k in b) and beside in a and beside in b:
                    continue  # recorded by an earlier xdream beside [rig], unused
                if key and (k not in a or k not in b):
                    if name not in ADDED_KEYS:
                        continue
                    default = ADDED_KEYS[name]
                    compare(a.get(k, default), b.get(k, default), name)
                else:
                    compare(a.get(k), b.get(k), name)
        elif a != b:
            change = f"{key}: {a!r} -> {b!r}"
            (allowed if key in CHANGEABLE_KEYS else defining).append(change)

    compare(old, new, "")
    return defining, allowed


def config_changed_message(folder: Path, defining: list[str]) -> str:
    """Why resuming ``folder`` is refused: the ``defining`` changes (from
    :func:`config_changes`) and what to do."""
    return (
        f"cannot resume {str(folder)!r}: its configuration changed since the run started "
        f"({'; '.join(defining)}), and continuing would mix two experiments in one record. "
        "Put the old value back in config.yaml, or start a new run with the new one (`xdream "
        "run CONFIG --out` another folder). Keys that may change between sessions: "
        f"{', '.join(CHANGEABLE_KEYS)}."
    )


def objects_changed_message(folder: Path, defining: list[str]) -> str:
    """Why :meth:`Experiment.restore` of a run built from Python objects is refused: the
    ``defining`` differences (from :func:`config_changes`) between the objects it was built with
    and those given now, and what to do (there is no ``config.yaml`` to edit)."""
    path = str(folder)
    keys = [key for key in map(_changed_key, defining) if _acceptable(key)]
    accept = (  # no key filled in: the first one may well be the unit (audit Q2)
        "; only a difference that you know does not change the experiment (a time or a host "
        "in your own scorer's description) may be taken, by naming its key: "
        "restore(accept=['target.KEY'])"
        if keys
        else ""
    )
    changed = set(map(_changed_key, defining))
    explained = "".join(why for key, why in _WHY_CHANGED.items() if key in changed)
    return (
        f"cannot restore {path!r}: the objects given differ from those the run was built with "
        f"({'; '.join(defining)}), and continuing would mix two experiments in one record, so "
        f"nothing was changed.{explained} Build the generator, scorer and optimiser (and "
        "n_references, reference_seed) as the run was built (xdream.records.read("
        f"{path!r}).config says how), or start a new run with the new ones in another folder. "
        "What may change between sessions: the budget (generations=, presentations=), "
        f"batch_size, record_interval, tf32 and the scorer's device{accept}."
    )


_WHY_CHANGED = {
    "target.module_sha256": (
        " target.module_sha256 is a fingerprint of the module's parameters and buffers: this "
        "module's values differ from the run's (other weights loaded, weights trained or edited, "
        "a .half() or .double() copy, batch norms folded into the convolutions)."
    ),
}
"""What a difference in a key whose values say little by themselves (two hashes) means."""


def _changed_key(change: str) -> str:
    """The key of one of :func:`config_changes`'s differences, ``"section.key: old -> new"``."""
    return change.split(": ", 1)[0]


def _comparable(
    then: dict[str, Any], now: dict[str, Any], *, strict: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``then`` and ``now`` (:meth:`Experiment._built` of a run built from Python objects) in
    the form in which :func:`config_changes` compares them.

    Both are taken in their JSON form, as ``record.h5`` stores them (:func:`_json_form`: a
    tuple and a list, a NumPy scalar and a Python number compare equal). A generator or
    optimiser named by its name alone on one side (its parameters were no dataclass of JSON
    values, or an earlier xdream recorded the name only) is named so on the other too.
    ``now``'s seed is taken as ``then``'s where it is unknown (``None``) or fresh entropy
    (:func:`drawn_seed`: an optimiser made without a seed continues with the run's), and
    ``then``'s as ``now``'s where it was never recorded (``None``); the same for the target's
    ``noise_seed`` (a :class:`~xdream.scorers.NoisyScorer` made without a seed continues with
    the noise of the run's, from its checkpoint). A :class:`~xdream.scorers.FunctionScorer`'s
    ``function`` is compared without its module where either side's is ``__main__`` (a run
    started as a script and continued from an import of it).

    ``target.noise`` is always compared (a ``NoisyScorer`` left out or added: ``None`` on one
    side). ``strict`` (``then`` is the checkpoint's record of the objects, which this version
    wrote): a key of the generator, the optimiser or the target that ``then`` has and ``now``
    lacks is compared as ``None`` (taken away); one that only ``now`` has is not compared (a
    later xdream, or the user's own ``describe()``, describes more). Otherwise (``then`` is an
    earlier xdream's ``record.h5`` copy) a key only one side has came or went with the version
    and is not compared."""
    then, now = _json_form(then), _json_form(now)
    then.pop(ACCEPTED, None)  # the run's history, not what it was built with
    now.pop(ACCEPTED, None)
    for role in ("generator", "optimizer"):
        a, b = then.get(role), now.get(role)
        if isinstance(a, str) and isinstance(b, dict):
            now[role] = b.get("name")
        elif isinstance(a, dict) and isinstance(b, str):
            then[role] = a.get("name")
    a, b = then.get("experiment"), now.get("experiment")
    if isinstance(a, dict) and isinstance(b, dict):
        before, given = a.get("seed"), b.get("seed")
        if before is None or given is None or drawn_seed(given):
            seed = given if before is None else before
            then["experiment"], now["experiment"] = {**a, "seed": seed}, {**b, "seed": seed}
    a, b = then.get("target"), now.get("target")
    if isinstance(a, dict) and isinstance(b, dict):
        if "noise_seed" in a or "noise_seed" in b:
            before, given = a.get("noise_seed"), b.get("noise_seed")
            if before is None or given is None or drawn_seed(given):
                seed = given if before is None else before
                a, b = {**a, "noise_seed": seed}, {**b, "noise_seed": seed}
        if _same_function(a.get("function"), b.get("function")):
            a = {**a, "function": b["function"]}
        if "noise" in a or "noise" in b:
            a, b = {**a, "noise": a.get("noise")}, {**b, "noise": b.get("noise")}
        then["target"], now["target"] = a, b
    if strict:
        for role in ("generator", "optimizer", "target"):
            now[role] = _filled(then.get(role), now.get(role))
    return then, now


def _json_form(value: Any) -> Any:
    """``value`` as it reads back from JSON (:func:`~xdream.records.files.json_safe`): lists for
    tuples, Python numbers for NumPy scalars, ``None`` for NaN; what JSON cannot hold as its
    ``repr``."""
    return json.loads(json.dumps(json_safe(value), default=repr))


def _filled(a: Any, b: Any) -> Any:
    """``b``, where ``a`` and ``b`` are dicts, with each key that ``a`` has and ``b`` lacks, at
    any depth, added as ``None``."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return b
    return {**{k: None for k in a}, **{k: _filled(a.get(k), v) for k, v in b.items()}}


def _same_function(then: Any, now: Any) -> bool:
    """Whether two :class:`~xdream.scorers.FunctionScorer` ``function`` names (``module.qualname``)
    name the same function where one of them was run as a script (``__main__``), whose module
    has another name when imported."""
    if not isinstance(then, str) or not isinstance(now, str) or then == now:
        return False
    main = "__main__."
    for a, b in ((then, now), (now, then)):
        if a.startswith(main) and not b.startswith(main) and b.endswith("." + a[len(main) :]):
            return True
    return False


def _accepted(
    defining: list[str], accept: tuple[str, ...], then: dict[str, Any], now: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """``defining`` (differences from :func:`config_changes`) split into those that no key of
    ``accept`` names (still refused) and those it does (taken: a key names itself and what is
    within it, ``target.noise`` also ``target.noise.scale``). A key of ``accept`` that is in
    neither ``then`` nor ``now`` is refused as a mistake."""
    for key in accept:
        if "." not in key:
            raise XDreamError(
                f"restore(accept=...) takes keys as the refusal names them, 'section.key' such "
                f"as 'target.started'; got {key!r}"
            )
        if not _acceptable(key):
            raise XDreamError(
                f"restore(accept=...) cannot take {key!r}: the noise goes on as the run's "
                "checkpoint holds it, or not at all, and the record could not say which "
                "generations were scored with which; restore with the scorer the run was built "
                "with, or start a new run in another folder"
            )
        if not any(_holds(side, key.split(".")) for side in (then, now)):
            section = key.split(".")[0]
            keys = sorted(then[section]) if isinstance(then.get(section), dict) else []
            known = f"; {section} has {', '.join(keys)}" if keys else ""
            raise XDreamError(
                f"restore(accept=...): {key!r} is no key of what the run was built with "
                f"(write 'section.key', one of generator, optimizer, target, experiment{known})"
            )
    taken = [
        c
        for c in defining
        if any(_changed_key(c) == k or _changed_key(c).startswith(k + ".") for k in accept)
    ]
    return [c for c in defining if c not in taken], taken


def _acceptable(key: str) -> bool:
    """Whether ``restore(accept=...)`` may take differences of ``key``: not of the noise, which
    the record could then not say for which generations it held."""
    return not (key == "target.noise" or key.startswith(("target.noise.", "target.noise_seed")))


def _holds(tree: Any, path: list[str]) -> bool:
    """Whether the nested dict ``tree`` has the key ``path`` (its parts, outermost first)."""
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def drawn_seed(seed: Any) -> bool:
    """Whether ``seed`` (an optimiser's, :func:`optimizer_seed`) looks like the fresh entropy
    NumPy draws for a generator made without a seed (128 random bits): 2**64 or more. A seed
    someone chose is smaller; a draw is smaller with a chance of 2**-64."""
    return isinstance(seed, int) and seed >= 2**64


APPEND_SHARE = 0.1
"""The share of a run's time that appends to ``record.h5`` may take: a unit appends at most
every :attr:`Experiment.record_interval` seconds, and no more often than every
``lockstep_units`` x (the median of its last :data:`APPEND_TIMES` appends' seconds) /
``APPEND_SHARE``, up to
:data:`APPEND_LAG_MAX` (what ``record_interval = 0`` does not limit)."""

APPEND_TIMES = 5
"""How many recent appends the spacing takes the median duration of."""

APPEND_LAG_MAX = 300.0
"""The longest that appends are put off for their share (seconds): ``record.h5`` lags the
journal by at most this much, or by ``record_interval`` where that is longer."""


@functools.cache
def _record_writer() -> ThreadPoolExecutor:
    """One thread that writes every experiment's records, in the order they are handed over."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="xdream-records")


def recorded_optimizer_spec(optimizer: Optimizer) -> dict[str, Any] | str:
    """How the record of an experiment built in Python names its optimiser: its name and
    hyperparameters, as a config's ``[optimizer]`` does; its name alone when its parameters are
    no dataclass of JSON values (an optimiser registered by the user may keep others)."""
    params = getattr(optimizer, "params", None)
    try:
        if not dataclasses.is_dataclass(params) or isinstance(params, type):
            raise TypeError("no dataclass")
        spec = {"name": optimizer.name, **config_mod._plain(dataclasses.asdict(params))}
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError):
        return optimizer.name
    return spec


def optimizer_seed(optimizer: Optimizer) -> int | None:
    """:attr:`Optimizer.seed <xdream.optimizers.base.Optimizer.seed>`, or ``None`` where a
    subclass replaced it with something that is not a seed."""
    seed = getattr(optimizer, "seed", None)
    return (
        int(seed)
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0
        else None
    )


def derived_seed(seed: int, stream: int) -> int:
    """An independent seed for a named random stream (1 = references, 2 = noise, 3 = initial
    codes from the generator)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def build_scorer(
    config: Config, noise_seed: int, unit: Scorer | None = None, folder: str | Path | None = None
) -> Scorer:
    """The ``[rig]``; or the ``[target]`` unit (or ``unit``), wrapped in the ``[noise]`` model
    when there is one. A run in ``folder`` that placed its images in a receptive field's square
    (``placement = "rf"``) goes on placing them there (:func:`~xdream.multi.started_square`)."""
    if config.rig is not None:
        from xdream.rig import RigScorer

        return RigScorer(config.rig, seed=noise_seed)
    t = config.target
    if unit is None:
        square = None if folder is None else started_square(config, [folder])
        unit = shared_scorer(config, [Unit(t.layer, t.channel, t.x, t.y)], square=square).view(0)
    scorer: Scorer = unit
    if config.noise is not None:
        params = {k: v for k, v in config.noise.items() if k != "name"}
        noise = scorers.make_noise(config.noise["name"], **params)
        scorer = scorers.NoisyScorer(scorer, noise, seed=noise_seed)
    return scorer


def on_target_device(generator: Generator, config: Config) -> Generator:
    """``generator`` moved to the ``[target]``'s device (``device``, resolved as the scorer
    resolves it) where that is not the CPU and the generator holds tensors (``fourier``'s and
    ``cppn``'s buffers, DeePSiM's weights), so that it renders where the network scores; as it
    is otherwise (a rig run, a CPU target, ``pixels`` or a generator of the user's that holds no
    parameters or buffers)."""
    if config.rig is None and any(True for _ in generator.state_dict()):
        from xdream.scorers.cnn import resolve_device

        device = resolve_device(config.target.device)
        if device.type != "cpu" and generator.device != device:
            generator = generator.to(device)
    return generator


@dataclasses.dataclass
class Proposal:
    """One generation's images before scoring (:meth:`Experiment.propose`)."""

    codes: np.ndarray
    ids: list[str]
    genealogy: list[str]
    images: torch.Tensor
    refs: torch.Tensor
    ref_ids: list[str]
    times: list[float]

    @property
    def all_images(self) -> torch.Tensor:
        """Evolved images, then references: what the scorer sees (joined anew on each call and
        not kept: a many-unit run holds every unit's proposal at once)."""
        return torch.cat([self.images, self.refs]) if len(self.refs) else self.images

    @property
    def all_ids(self) -> list[str]:
        return self.ids + self.ref_ids


@dataclasses.dataclass
class _Told:
    """A generation the optimiser has been told about, before it is written."""

    record: GenerationRecord
    i_best: int | None  # index of its best evolved image (None: no finite score)
    new_best: bool  # whether that image beats every earlier one


@dataclasses.dataclass
class Progress:
    """What a progress callback receives after each generation."""

    generation: int
    generations_total: int | None
    presentations: int
    best_score: float
    generation_best: float
    generation_mean: float
    best_reference: float
    optimizer_status: dict[str, Any] = dataclasses.field(default_factory=dict)
    """:meth:`xdream.optimizers.base.Optimizer.status` after this generation."""


SAVE_IMAGES = ("best", "none")
"""``save_images`` values: the best image of every generation as a PNG, or none."""


def _check_arguments(optimizer: Optimizer, **given: Any) -> None:
    """Raise :class:`XDreamError` for an :class:`Experiment` argument of the wrong kind or out
    of range (a config's values were checked already; these come from Python callers too)."""

    def integer(
        name: str, minimum: int, optional: bool = False, maximum: int | None = None
    ) -> None:
        value = given[name]
        if value is None and optional:
            return
        if (
            not isinstance(value, (int, np.integer))
            or isinstance(value, bool)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            limits = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise XDreamError(
                f"{name} must be an integer {limits}{' or None' if optional else ''}, got {value!r}"
            )

    integer("generations", 1, optional=True)
    integer("presentations", 1, optional=True)
    integer("n_references", 0, maximum=config_mod.MAX_REFERENCES)
    integer("batch_size", 1)
    check_seed(given["reference_seed"], "reference_seed", python=True)
    check_seed(given["seed"], "seed", allow_none=True, python=True)
    if given["save_images"] not in SAVE_IMAGES:
        raise XDreamError(
            f"save_images must be {' or '.join(map(repr, SAVE_IMAGES))}, "
            f"got {given['save_images']!r}"
        )
    interval = given["record_interval"]
    if (
        not isinstance(interval, (int, float, np.integer, np.floating))
        or isinstance(interval, bool)
        or not interval >= 0
    ):
        raise XDreamError(f"record_interval must be a number of seconds >= 0, got {interval!r}")
    if not isinstance(given["tf32"], (bool, np.bool_)):
        raise XDreamError(f"tf32 must be True or False, got {given['tf32']!r}")
    presentations = given["presentations"]
    if presentations is not None:
        # ask() is idempotent until tell(): the first generation's codes, proposed already
        per_generation = len(optimizer.ask())
        if presentations < per_generation:
            raise XDreamError(
                f"a budget of {presentations} presentations is less than one generation of "
                f"optimizer {optimizer.name!r} ({per_generation} codes), so nothing would run: "
                f"give presentations >= {per_generation}, or a smaller population"
            )


def _check_schedule(
    optimizer: Optimizer, generations: int | None, presentations: int | None
) -> None:
    """Warn when the optimiser's step-size schedule (a ``generations`` hyperparameter, as
    ``annealed-es`` and ``sphere-cma`` have) is not as long as the run: it then ends before the
    run does, or the run ends before the step size has shrunk. A config sets it to the budget
    by itself (:func:`xdream.config.schedule_generations`); a Python caller makes the
    optimiser."""
    length = getattr(getattr(optimizer, "params", None), "generations", None)
    if not isinstance(length, (int, np.integer)) or isinstance(length, bool):
        return
    if presentations is not None:
        per_generation = len(optimizer.ask())  # idempotent until tell()
        run = presentations // per_generation
        budget = f"{run} generations ({presentations} presentations of {per_generation} codes)"
    else:
        run = 40 if generations is None else generations
        budget = f"{run} generations"
    if length != run:
        warnings.warn(
            f"optimizer {optimizer.name!r} anneals its step size over generations={length}, "
            f"but this run has {budget}: make it with xdream.optimizers.make("
            f"{optimizer.name!r}, ..., generations={run}) to anneal over the run",
            UserWarning,
            stacklevel=3,
        )


class Experiment:
    """One experiment: a generator, a scorer, an optimiser, a budget and an output folder.

    Example::

        gen = xdream.generators.make("fourier")
        unit = xdream.scorers.make_unit("efficientnet-lite0", layer="blocks.10", channel=5)
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0)
        summary = Experiment(gen, unit, opt, "runs/unit5", generations=30).run()

    Parameters:
        generator: renders codes into images (:func:`xdream.generators.make`).
        scorer: a :class:`~xdream.scorers.base.Scorer`, or a function ``score(images, ids)``
            returning one number per image.
        optimizer: proposes the codes (:func:`xdream.optimizers.make`, with
            ``dim=generator.code_dim``). Its seed is the run's: it draws every code. An
            optimiser with a step-size schedule (``annealed-es``, ``sphere-cma``) should be made
            with ``generations=`` the run's number of generations (a warning says so otherwise).
        out: the run's folder (created; an earlier run's folder is refused: continue one with
            :meth:`restore`).
        generations: the budget in generations. Give this or ``presentations``; neither
            means 40 generations.
        presentations: the budget in presentations of evolved images (reference images are not
            counted); the run stops before a generation that would exceed it.
        n_references: natural reference images (random crops of bundled photos) scored in every
            generation and recorded, never shown to the optimiser (default 10; 0: none).
        reference_seed: seed of the reference crops (default 0, whatever the optimiser's seed:
            a config derives it from ``[experiment] seed`` instead).
        seed: the run's seed, as ``summary.json`` records it. It seeds nothing itself: the
            optimiser's seed is the run's, and a ``seed`` other than the optimiser's is refused
            (make the optimiser with ``seed=``). ``None`` (default): the optimiser's
            (:func:`optimizer_seed`).
        save_images: ``"best"`` (a PNG of each generation's best image, default) or
            ``"none"``.
        batch_size: images per forward pass through the generator (64).
        record_interval: seconds between appends to ``record.h5`` and rewrites of
            ``summary.json`` (2; 0: every generation). The journal and checkpoint are written
            every generation regardless.
        tf32: allow TensorFloat-32 on CUDA (:mod:`xdream.precision`; default False).
        config: the :class:`~xdream.config.Config` it was built from (:meth:`from_config`
            sets it); ``None`` for an experiment built from Python objects.
    """

    def __init__(
        self,
        generator: Generator,
        scorer: Scorer | Callable[[Images, list[str]], Any],
        optimizer: Optimizer,
        out: str | Path,
        *,
        generations: int | None = None,
        presentations: int | None = None,
        n_references: int = 10,
        reference_seed: int = 0,
        seed: int | None = None,
        save_images: str = "best",
        batch_size: int = 64,
        record_interval: float = 2.0,
        tf32: bool = False,
        config: Config | None = None,
    ) -> None:
        if callable(scorer) and not isinstance(scorer, Scorer):
            scorer = FunctionScorer(scorer)  # score(images, ids) -> scores
        for role, value, kind, make in (
            ("generator", generator, Generator, "xdream.generators.make(NAME)"),
            ("scorer", scorer, Scorer, "a function score(images, ids) or a Scorer"),
            ("optimizer", optimizer, Optimizer, "xdream.optimizers.make(NAME, dim=...)"),
        ):
            if not isinstance(value, kind):
                raise XDreamError(
                    f"the {role} must be an xdream {kind.__name__} ({make}), got "
                    f"{type(value).__name__} {brief(value)}"
                )
        if generator.code_dim != optimizer.dim:
            raise XDreamError(
                f"optimizer dimension {optimizer.dim} does not match the generator's code "
                f"dimension {generator.code_dim}; build the optimiser with dim=generator.code_dim"
            )
        if generations is not None and presentations is not None:
            raise XDreamError("give either generations or presentations, not both")
        _check_arguments(
            optimizer,
            generations=generations,
            presentations=presentations,
            n_references=n_references,
            reference_seed=reference_seed,
            seed=seed,
            save_images=save_images,
            batch_size=batch_size,
            record_interval=record_interval,
            tf32=tf32,
        )
        own_seed = optimizer_seed(optimizer)
        if seed is not None and own_seed is not None and int(seed) != own_seed:
            raise XDreamError(
                f"seed={seed} is not the seed of the optimiser ({own_seed}): the run's seed is "
                "its optimiser's, which draws every code (seed= only records it, and the "
                "reference crops take reference_seed). Make the optimiser with seed="
                f"{seed} (xdream.optimizers.make({optimizer.name!r}, dim=..., seed={seed})), or "
                "leave seed out"
            )
        # checked above; NumPy numbers become Python's (torch and the records want those)
        generations = None if generations is None else int(generations)
        presentations = None if presentations is None else int(presentations)
        # a config's optimiser follows its budget, or says otherwise itself; a run continued
        # (restore) keeps the schedule it was built with, whatever its budget now
        if config is None and not os.path.exists(RunFolder(out).checkpoint):
            _check_schedule(optimizer, generations, presentations)
        self.generator = generator
        self.scorer = scorer
        self.optimizer = optimizer
        self.folder = RunFolder(out)
        self.generations_budget = generations if presentations is None else None
        if self.generations_budget is None and presentations is None:
            self.generations_budget = 40
        self.presentations_budget = presentations
        self.n_references = int(n_references)
        self.reference_seed = int(reference_seed)
        """Seed of the reference crops (``record.h5``'s config records it)."""
        self.references = ReferenceImages(generator.output_size[0], self.reference_seed)
        self.seed = optimizer_seed(optimizer) if seed is None else int(seed)
        """The run's seed (``summary.json``): the optimiser's (:func:`optimizer_seed`), which
        ``seed`` must equal when both are known; ``seed`` where the optimiser's is not known;
        ``None`` when unknown (a run of an earlier xdream built without ``seed=``, continued).
        A continued run keeps the seed its checkpoint records."""
        self._seed_given = seed is not None
        self.save_images = save_images
        self.batch_size = int(batch_size)
        self.record_interval = float(record_interval)
        """Seconds between appends to ``record.h5`` (0: every generation); the journal and the
        checkpoint are written every generation regardless."""
        self.tf32 = bool(tf32)
        """Whether TensorFloat-32 is allowed on CUDA (:mod:`xdream.precision`): the generator
        and the scorer compute under :func:`~xdream.precision.tf32_mode` with this setting."""
        self.config = config
        self.init_codes: Codes | None = None
        """Initial codes given to the optimiser, copied into the folder (``init_codes.npy``)."""
        # progress, restored from the checkpoint on resume
        self.generation = 0
        self.presentations = 0
        self.seconds = 0.0
        """Wall-clock seconds the run has taken, summed over its sessions; in a many-unit run
        the whole lockstep run's (:attr:`lockstep_units`)."""
        self.first_generation_best = float("nan")
        self.best_reference = float("-inf")
        self.best_clean = float("-inf")
        self.best_clean_reference = float("-inf")
        """The best noise-free score of a reference image (``best_reference`` is the best score
        the scorer gave one, noise included)."""
        self.best_generation = -1
        self.best_id = ""
        self._started = False
        self._stopped = False  # stopped by an error or a break: continue from the records
        self._finished = False  # finish() has closed the run
        # why the scorer is not bound to a resumed run whose budget is spent (None: it is)
        self._unbound: str | None = None
        self._extra_layout: ExtraLayout = {}  # the scorer's extra rows recorded so far
        self._objects: dict[str, Any] | None = None  # see _built()
        self._accept: tuple[str, ...] = ()  # keys whose differences restore() takes
        self._accepted: list[dict[str, Any]] = []  # what earlier restores took (_built)
        self._taking: list[str] = []  # what this restore(accept=) takes, from _taking_at on
        self._taking_at: Any = None
        self._taken_keys: set[str] = set()  # the keys whose differences this restore took
        self._initial: bytes = b""  # state_dict() when the run started, pickled
        self._tick = time.perf_counter()  # wall clock of the last time accounted in ``seconds``
        self._lock: FolderLock | None = None  # held from the first write to finish()
        self._unflushed: list[GenerationRecord] = []  # durable in the journal, not yet in HDF5
        self._written_summary: Summary | None = None  # as of the last generation on disk
        self._deferred: list[Callable[[], None]] = []  # run when the scorer is idle
        self._writing: Future[None] | None = None  # records in the background thread
        self._flushed_at = float("-inf")
        self._flush_seconds = 0.0  # how long an append to record.h5 takes (recent median)
        self._flush_times: collections.deque[float] = collections.deque(maxlen=APPEND_TIMES)
        self.lockstep_units: int | None = None
        """In a many-unit run (:class:`~xdream.multi.MultiExperiment`), the number of units it
        steps together, this one included: ``seconds`` and the timings are then the lockstep
        run's, not this unit's own (``summary.json`` says so)."""
        self.config_changes: list[str] = []
        """Changes of :data:`CHANGEABLE` config keys since the checkpoint's session (set by
        :meth:`restore`), ``"section.key: old -> new"``, and those its ``accept`` took."""
        self.files_read: dict[str, dict[str, Any]] = {}
        """The :data:`READ_AGAIN` files the config named, as this session read them
        (:func:`files_read`); the checkpoint keeps them, and resume refuses another file."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        config: Config,
        out: str | Path,
        *,
        unit: Scorer | None = None,
        generator: Generator | None = None,
    ) -> Experiment:
        """Build every component from a validated :class:`~xdream.config.Config`.

        ``unit`` replaces the ``[target]`` unit (the ``[noise]`` model still wraps it) and
        ``generator`` the ``[generator]`` one, for drivers that share them between experiments.
        A config with ``[[targets]]`` (many units) is :class:`xdream.multi.MultiExperiment`'s.
        ``config`` is a :class:`~xdream.config.Config`, not a file or a dict: build it with
        :func:`xdream.config.load` from a TOML, YAML or JSON file, or
        :func:`xdream.config.from_dict` from a dict.
        """
        config = config_mod.require_config(config, "Experiment.from_config")
        config = config_mod.as_started_schedule(config, out)  # a resume keeps its schedule
        if config.targets:
            raise XDreamError(
                f"this config names {len(config.targets)} units ([[targets]]): many units run "
                "together with xdream.multi.MultiExperiment (`xdream run` and `xdream resume` "
                "choose it by themselves); give Experiment a config with one [target]"
            )
        exp = config.experiment
        gen_params = {k: v for k, v in config.generator.items() if k != "name"}
        if generator is None:
            generator = generators.make(config.generator["name"], **gen_params)
        noise_seed = exp.noise_seed if exp.noise_seed is not None else derived_seed(exp.seed, 2)
        scorer = build_scorer(config, noise_seed=noise_seed, unit=unit, folder=out)
        generator = on_target_device(generator, config)
        opt_params = {k: v for k, v in config.optimizer.items() if k != "name"}
        init_codes = None
        if exp.init_codes is not None:  # the run folder's copy first: resume needs no source
            saved = Path(out) / INIT_CODES_FILE
            init_codes = np.load(saved) if saved.exists() else load_codes(exp.init_codes, generator)
        elif generator.custom_initial_codes:  # e.g. DeePSiM codes from activation statistics
            n = int(opt_params.get("population_size") or 1)
            rng = np.random.default_rng(derived_seed(exp.seed, 3))
            init_codes = generator.initial_codes(n, rng)
        optimizer = optimizers.make(
            config.optimizer["name"],
            dim=generator.code_dim,
            seed=exp.seed,
            init_codes=init_codes,
            spectrum=generator.code_spectrum(),
            **opt_params,
        )
        kind, budget = config.budget()
        ref_seed = (
            exp.reference_seed if exp.reference_seed is not None else derived_seed(exp.seed, 1)
        )
        experiment = cls(
            generator,
            scorer,
            optimizer,
            out,
            generations=budget if kind == "generations" else None,
            presentations=budget if kind == "presentations" else None,
            n_references=exp.n_references,
            reference_seed=ref_seed,
            seed=exp.seed,
            save_images=exp.save_images,
            batch_size=exp.batch_size,
            record_interval=exp.record_interval,
            tf32=exp.tf32,
            config=config,
        )
        experiment.init_codes = init_codes
        experiment.files_read = files_read(config)
        return experiment

    @classmethod
    def resume(cls, out: str | Path) -> Experiment:
        """Rebuild a config-defined experiment from its folder and restore its checkpoint."""
        folder = RunFolder(out)
        run = many_unit_run_of(folder.path)
        if run is not None:
            raise XDreamError(
                f"{str(folder.path)!r} is a unit of the many-unit run {str(run)!r}, whose units "
                f"go on together (over shared forward passes, with its config.yaml): continue "
                f"it with `xdream resume {run}`"
            )
        if folder.holds_many_units():
            raise XDreamError(
                f"{str(folder.path)!r} is a many-unit run ([[targets]]), whose units go on "
                "together: continue it with "
                f"xdream.multi.MultiExperiment.resume({str(folder.path)!r}).run(), or "
                f"`xdream resume {folder.path}`"
            )
        if not folder.config.exists():
            folder.refuse_unstarted()
            if config_yaml_lost(folder.path):
                raise XDreamError(
                    f"cannot resume {str(folder.path)!r}: {put_config_back(folder.path)}"
                )
            if folder.record.exists() or folder.checkpoint.exists():
                raise XDreamError(
                    f"{str(folder.path)!r} holds an experiment built in Python (it has no "
                    "config.yaml to rebuild it from): continue it in Python with "
                    f"`e = Experiment(generator, scorer, optimizer, {str(folder.path)!r}, "
                    "...); e.restore(); e.run()`, with the objects it was built with."
                )
            raise XDreamError(
                f"{str(folder.path)!r} is not an experiment folder (no config.yaml). "
                "Experiments built in Python resume with Experiment(...).restore()."
            )
        try:
            experiment = cls.from_config(folder.load_config(), out)
        except MissingFileError as err:  # a weights file: say where the run found it
            raise MissingFileError(missing_file_message(err, folder.checkpoint)) from None
        experiment.restore()
        return experiment

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the current generation."""
        return {
            "version": CHECKPOINT_VERSION,
            "generation": self.generation,
            "presentations": self.presentations,
            "seconds": self.seconds,
            "first_generation_best": self.first_generation_best,
            "best_reference": self.best_reference,
            "best_clean": self.best_clean,
            "best_clean_reference": self.best_clean_reference,
            "best_generation": self.best_generation,
            "best_id": self.best_id,
            "seed": self.seed,
            "optimizer": self.optimizer.state_dict(),
            "scorer": self.scorer.state_dict(),
            "references": self.references.state_dict(),
            "config": None if self.config is None else self.config.to_dict(),
            # a run built from Python objects: what they were, which restore() compares
            "built": self._built() if self.config is None else None,
            "files": self.files_read,
        }

    def restore(self, accept: Iterable[str] = ()) -> str:
        """Continue from the folder's checkpoint; returns a note on what was repaired.

        Refused, with nothing written, where the run cannot continue as it was: a config's
        key that defines the experiment changed (:func:`config_changes`), or for a run built
        from Python objects, objects that differ from those it was built with (the unit, the
        generator's parameters, the optimiser's hyperparameters and seed, ``n_references``,
        ``reference_seed``: the scorer's :meth:`~xdream.scorers.base.Scorer.describe`, the
        generator's and optimiser's parameters, compared key by key); the budget may change.

        ``accept`` (a run built from Python objects only) names keys, as the refusal names
        them (``"target.started"``), whose differences are taken: for a description that holds
        something that does not change the experiment. The run goes on with the new values,
        which the record then holds, and :attr:`config_changes` lists them; the record's config
        lists what was taken and from which generation on (:data:`ACCEPTED`). A
        key that the run's description does not have is refused as a mistake; one that did not
        change is no error."""
        return self.check_restore(accept)()

    def check_restore(self, accept: Iterable[str] = ()) -> Callable[[], str]:
        """The first half of :meth:`restore`: hold the folder and check everything that can
        refuse to continue it (the checkpoint, the config's changes, the files it read, what
        ``record.h5`` needs), writing nothing in the folder. Returns the second half, which
        writes (``config.yaml``, ``record.h5``) and returns :meth:`restore`'s note. A
        many-unit resume checks every unit before it writes in any. The folder stays held
        from the check until the second half ends, and is let go if either fails. ``accept``:
        as :meth:`restore`'s."""
        given: Any = accept
        try:
            keys = (given,) if isinstance(given, str) else tuple(given)
        except TypeError:  # None, a number: not a list of keys (audit Q4)
            keys = (given,)
        if not all(isinstance(key, str) for key in keys):
            raise XDreamError(
                f"restore(accept=...) takes keys as the refusal names them, strings such as "
                f"'target.started'; got {given!r}"
            )
        accept = keys
        if accept and self.config is not None:
            raise XDreamError(
                "restore(accept=...) is for a run built from Python objects; a run built from a "
                "config continues with the config's values: edit them back in its config.yaml"
            )
        self._accept = accept
        self._hold_folder()  # before anything is read: the run may still be going
        try:
            state, plan = self._checked_state()
        except BaseException:
            self.release_folder()
            raise

        done = False

        def finish() -> str:
            nonlocal done
            if done:  # a second call would apply the plan to the folder again
                raise XDreamError("this restore has been carried out already: call it once")
            done = True
            try:
                return self._restore_from(state, plan)
            except BaseException as err:
                self._tell_scorer_stopped(err)  # a rig bound again said "ready"
                self.release_folder()
                raise

        return finish

    def _restore(self) -> str:
        return self._restore_from(*self._checked_state())

    def _checked_state(self) -> tuple[dict[str, Any] | None, RecordPlan | None]:
        """The checkpoint, loaded into this object and checked, and how ``record.h5`` is
        brought in line with it (:func:`~xdream.records.check_reconcile`); None and None for a
        folder killed before its first generation was checkpointed. Raises, having written
        nothing, where the run cannot continue."""
        if not self.folder.checkpoint.exists():
            self._refuse_lost_checkpoint()
            self.config_changes = self._changes_since_start()
            self.scorer.check_folder(self.folder.path)
            return None, None
        state = load_checkpoint(self.folder.checkpoint)
        if self.config is not None and "config" in state and state["config"] is None:
            path = str(self.folder.path)
            raise XDreamError(
                f"cannot continue {path!r} from a config: it holds an experiment built in "
                "Python (its checkpoint records no config), which only the objects it was "
                f"built with continue: `e = Experiment(generator, scorer, optimizer, {path!r}, "
                "...); e.restore(); e.run()`"
            )
        self.config_changes = (
            self._check_config(state.get("config"), state.get("files"))
            if self.config is not None
            else self._check_objects(state)
        )
        self._check_files(state.get("files"))
        self._check_budget(state)
        if self.config is not None:
            self._check_unit_read()
        try:
            self.scorer.check_folder(self.folder.path)  # a rig's share not mounted: nothing written
            refused = None
        except XDreamError as err:
            refused = err
        self._load_state(state)
        self._unbound = None
        if refused is not None:
            if not self.done():
                raise refused
            # nothing is left to score (audit V-8: a finished rig run with its share unmounted)
            self._unbound = str(refused)
        try:
            plan = check_reconcile(self.folder, self.generation)
        except BaseException as err:  # a folder that cannot be read says so
            raise_for_folder(err, self.folder.path)
            raise
        return state, plan

    def _restore_from(self, state: dict[str, Any] | None, plan: RecordPlan | None) -> str:
        """The second half of :meth:`restore`, once :meth:`_checked_state` gave ``state`` and
        ``plan``: bring the folder in line with the checkpoint (or start it again, where
        ``state`` is None) and continue."""
        self.folder.remove_temporaries()  # half-written files of an interrupted atomic write
        if state is None:
            # killed before the first generation was checkpointed: start it again from scratch
            self.folder.create(images=self.save_images == "best")
            self._initialise_record()
            self.scorer.bind(self.folder.path)
            self._started = True
            self._extra_layout = {}
            self._initial = self._initial or pickle.dumps(self.state_dict())
            self._tick = time.perf_counter()
            return "no generation had finished; starting from the first"
        if self.config is not None:
            # the config it goes on with, changes taken: a later `xdream resume` reads this
            config_mod.dump_yaml(self.config, self.folder.config)
        self.folder.create(images=self.save_images == "best")
        if self._unbound is None:
            self.scorer.bind(self.folder.path)
        try:
            note = reconcile(
                self.folder,
                self.generation,
                self.generator.code_dim,
                self._built(),
                xdream.__version__,
                continues=not self.done(),
                plan=plan,
            )
        except BaseException as err:  # rebuilding record.h5 needs space too
            raise_for_folder(err, self.folder.path)
            raise
        self._unflushed = []  # the rebuilt record.h5 holds every checkpointed generation
        try:  # the scorer's extra rows go on as the record holds them
            self._extra_layout = H5Record(self.folder.record).extra_layout()
        except UNREADABLE:  # reconciled just now: a record that cannot say checks nothing
            self._extra_layout = {}
        self._written_summary = None  # the state is the checkpoint's: its summary is as of now
        if np.isnan(self.best_clean_reference):
            self.best_clean_reference = self._recorded_best_clean_reference()
        self._started = True
        self._tick = time.perf_counter()
        return note

    def _check_unit_read(self) -> None:
        """Refuse to continue a config's run whose ``[target]`` this xdream resolves to another
        unit than the one the run read (``summary.json``'s ``target``: its position and its
        layer's shape), or places its images in another square (an ``"rf"`` run goes on in the
        square it recorded, :func:`~xdream.multi.started_square`, so this is a square recorded
        for another network, or none): the record would hold two units' responses, or two
        placements', as one. An xdream before this check took a layer's shape from a dry run
        at ``[target] image_size`` rather than at the network's input, so with ``image_size``
        its centre (and the range of ``x`` and ``y``) was another unit's. A summary that cannot
        be read, or that names no unit, checks nothing."""
        try:
            then = read_summary(self.folder.path).get("target")
        except XDreamError:
            return
        now = self.scorer.describe()
        keys: tuple[str, ...] = ("layer", "channel", "x", "y", "layer_shape")
        if not isinstance(then, dict) or then.get("kind") != "cnn-unit":
            return
        if now.get("kind") != "cnn-unit" or any(k not in then for k in keys):
            return
        if "placement" in then:  # the square its images went to
            keys += ("placement",)
        changed = [
            f"{k} {json.dumps(then[k])} -> {json.dumps(_json_form(now.get(k)))}"
            for k in keys
            if _json_form(then[k]) != _json_form(now.get(k))
        ]
        if changed:
            size = then.get("image_size")
            why = (
                f" (an earlier xdream took the layer's shape from a dry run at [target] "
                f"image_size, {size} px, not at the network's input, so the centre it read "
                "was another unit)"
                if size is not None and any(c.startswith("layer_shape ") for c in changed)
                else ""
            )
            raise XDreamError(
                f"cannot continue {str(self.folder.path)!r}: its [target] is read here at "
                f"another unit than the one its records hold ({', '.join(changed)}){why}; "
                "going on would put two units' (or placements') responses in one record. Start "
                "the experiment "
                "again in a new folder (this one stays as it is)"
            )

    def _recorded_best_clean_reference(self) -> float:
        """The best noise-free reference score in ``record.h5`` (-inf if none)."""
        import h5py

        with h5py.File(self.folder.record, "r", locking=False) as f:
            scores = f["references/clean_scores"][:] if "references" in f else np.zeros(0)
        finite = scores[np.isfinite(scores)]
        return float(finite.max()) if finite.size else float("-inf")

    def _check_config(self, saved: Any, files: Any = None) -> list[str]:
        """Refuse to continue a checkpoint written under a config that differs in a key that
        defines the experiment; returns the changes of :data:`CHANGEABLE` keys. Checkpoints
        written before the config was stored pass (one of an experiment built from Python
        objects: :meth:`_check_objects`). A :data:`READ_AGAIN` path written anew into
        ``config.yaml`` is no change where it names the file the checkpoint's ``files``
        record (same size and fingerprint): the run's folder or its weights moved to another
        machine or place (:meth:`_moved_files`)."""
        if not isinstance(saved, dict) or self.config is None:
            return []
        now = self.config.to_dict()
        moved = self._moved_files(saved, now, files)
        defining, allowed = config_changes(moved, now)
        if defining:
            notes = other_files(files, self.files_read)
            message = config_changed_message(self.folder.path, with_notes(defining, notes))
            raise ConfigChangedError(message, moved, now, notes)
        return allowed + moved_said(saved, moved, now)

    def _check_objects(self, state: dict[str, Any]) -> list[str]:
        """Refuse to continue a run built from Python objects with objects that differ from
        those it was built with in what defines the experiment (the unit, the generator's
        parameters, the optimiser's hyperparameters and seed, ``n_references``,
        ``reference_seed``: :meth:`_built` compared with the checkpoint's, or where an
        earlier xdream's checkpoint has none, with ``record.h5``'s copy), or a run built from
        a config; returns the changes of :data:`CHANGEABLE` keys (the budget). Called before
        the checkpoint is loaded: :attr:`seed` is still this session's."""
        path = str(self.folder.path)
        if isinstance(state.get("config"), dict):
            raise XDreamError(
                f"cannot restore {path!r} from Python objects: it holds an experiment built "
                "from a config (its config.yaml), which continues from that config: `xdream "
                f"resume {path}`, or in Python xdream.experiment.Experiment.resume({path!r})"
            )
        then = state.get("built")
        strict = isinstance(then, dict)  # written by this version: a key taken away counts
        if not strict:
            then = self._recorded_config()
        if not isinstance(then, dict):
            return []
        earlier = then.get(ACCEPTED)
        self._accepted = list(earlier) if isinstance(earlier, list) else []
        self._taking, self._taken_keys = [], set()  # (a restore refused before took nothing)
        now = self._built()
        recorded, then = then, self._moved_files(then, now, state.get("files"))
        old, new = _comparable(then, now, strict=strict)
        defining, allowed = config_changes(old, new)
        defining, taken = _accepted(defining, self._accept, old, new)
        if defining:
            notes = other_files(state.get("files"), self.files_read)
            message = objects_changed_message(self.folder.path, with_notes(defining, notes))
            raise ConfigChangedError(message, then, now, notes)
        self._taken_keys = {_changed_key(c) for c in taken}
        self._taking, self._taking_at = list(taken), state.get("generation")
        target = now.get("target")
        if self._objects is not None and isinstance(target, dict) and "noise_seed" in target:
            # the run's noise goes on from its checkpoint, drawn from the seed the run recorded:
            # an unseeded NoisyScorer made again takes it, and an earlier xdream's run recorded
            # none (null)
            before = then.get("target")
            seed = before.get("noise_seed") if isinstance(before, dict) else None
            self._objects["target"] = {**target, "noise_seed": seed}
        return allowed + taken + moved_said(recorded, then, now)

    def _moved_files(self, then: dict[str, Any], now: dict[str, Any], files: Any) -> dict[str, Any]:
        """:func:`moved_files` with the files this session reads (:attr:`files_read`)."""
        return moved_files(then, now, files, self.files_read)

    def _changes_since_start(self) -> list[str]:
        """For a run stopped before its first checkpoint, which starts again from the first
        generation: every difference between the config it started with (``record.h5``'s copy)
        and this one, which all take effect (:attr:`config_changes`; ``xdream resume`` prints
        them). None (``[]``) for a run built from Python objects, or a record that cannot be
        read."""
        then = self._recorded_config()
        if self.config is None or not isinstance(then, dict):
            return []
        defining, allowed = config_changes(then, self.config.to_dict())
        return defining + allowed

    def _recorded_config(self) -> Any:
        """The config ``record.h5`` records (None where it cannot be read: resume rebuilds
        it)."""
        import h5py

        try:
            with h5py.File(self.folder.record, "r", locking=False) as f:
                return json.loads(f.attrs["config"])
        except (*UNREADABLE, TypeError):
            return None

    def _check_budget(self, state: dict[str, Any]) -> None:
        """Refuse a budget below what the checkpoint says has run: more generations than a
        ``generations`` budget, or more presentations than a ``presentations`` one. The run
        cannot take them back, and its ``config.yaml`` and ``record.h5`` would say a smaller
        budget than their records hold. A budget equal to what has run finishes the run."""
        ran, shown = state.get("generation"), state.get("presentations")
        if not isinstance(ran, (int, np.integer)) or not isinstance(shown, (int, np.integer)):
            return  # a damaged checkpoint: loading it says so
        ran, shown = int(ran), int(shown)
        if self.presentations_budget is not None:
            kind, budget, over = "presentations", self.presentations_budget, shown
        else:
            assert self.generations_budget is not None
            kind, budget, over = "generations", self.generations_budget, ran
        if over <= budget:
            return
        if self.config is not None:  # config.yaml's [experiment], as YAML writes it
            given = f"{kind}: {budget} in config.yaml"
            least = f"generations: {ran} or presentations: {shown} in its [experiment]"
            new_run = "(`xdream run CONFIG --out` another folder)"
        else:
            given = f"{kind}={budget}"
            least = f"generations={ran} or presentations={shown}"
            new_run = "in another folder"
        run, what = str(self.folder.path), "it"
        many = many_unit_run_of(self.folder.path)  # a unit: the run's config.yaml was edited
        if many is not None:
            run, what = str(many), f"its unit {self.folder.path.name}"
        raise XDreamError(
            f"cannot resume {run!r} with {given}: {what} has already run "
            f"{ran} generations ({shown} presentations), and a run cannot be shortened, so "
            f"nothing was changed. Give it a budget of at least what has run, {least} (that "
            "much finishes the run where it is; more continues it), or start a new run with "
            f"the smaller budget {new_run}."
        )

    def _check_files(self, saved: Any) -> None:
        """Refuse to continue with a :data:`READ_AGAIN` file other than the one the checkpoint
        says the run read (another size or fingerprint): a relative path resolved in another
        directory, a file replaced since. Checkpoints written before files were recorded
        pass. A run built in Python (whose objects name the files, :func:`files_named`) is
        refused another file under the name its objects give (changed at its path, or a
        relative name found in another directory), unless ``restore(accept=[key])`` takes it
        (then recorded as taken); the same file under another name passed
        :meth:`_check_objects` (:meth:`_moved_files`)."""
        if not isinstance(saved, dict):
            return
        for key, now in self.files_read.items():
            then = saved.get(key)
            if not isinstance(then, dict):
                continue
            if _same_file(then, now):
                continue
            section, name = key.split(".")
            if self.config is None:  # built in Python: the objects name the file
                if key not in self._accept and key not in self._taken_keys:
                    self._refuse_other_file(key, then, now)
                if key not in self._taken_keys:  # the same name, another file: say so too
                    change = f"{key}: {_described(then)} -> {_described(now)}"
                    self._taking.append(change)
                    self.config_changes.append(change)
                continue
            given = self.config.to_dict()[section][name]
            now_is = f"{now['size']} bytes, fingerprint {now['sha256_ends'][:12]}"
            then_was = f"{then.get('size')} bytes, fingerprint {str(then.get('sha256_ends'))[:12]}"
            if then.get("path") == now["path"]:
                which = f"is {now['path']}, which changed since the run read it ({then_was}; "
                which += f"now {now_is})"
                fix = "Put back the file the run read"
            else:
                which = f"is now {now['path']} ({now_is}), not the file the run read, "
                which += f"{then.get('path')} ({then_was})"
                fix = (
                    "A relative path is taken from the current directory: resume from the "
                    f"directory the run was started from (where {given!r} is {then.get('path')}), "
                    "or put back the file the run read"
                )
            raise XDreamError(
                f"cannot resume {str(self.folder.path)!r}: config.yaml's [{section}] {name} "
                f"{given!r} {which}. Continuing would mix two sets of weights in one record, so "
                f"nothing was changed. {fix}."
            )

    def _refuse_other_file(self, key: str, then: dict[str, Any], now: dict[str, Any]) -> None:
        """Refuse to continue a run built in Python whose ``key`` file (``target.weights``:
        the scorer's weights) is another file than the one the run read: changed at its path,
        or another file that the objects name the same way (a relative path taken from another
        directory)."""
        section, name = key.split(".")
        role = {"target": "scorer", "generator": "generator"}.get(section, section)
        then_was = f"{then.get('size')} bytes, fingerprint {str(then.get('sha256_ends'))[:12]}"
        now_is = f"{now['size']} bytes, fingerprint {now['sha256_ends'][:12]}"
        which = (
            f"{now['path']} changed since the run read it ({then_was}; now {now_is})"
            if then.get("path") == now["path"]
            else f"is now {now['path']} ({now_is}), not the file the run read, "
            f"{then.get('path')} ({then_was}); a relative path is taken from the current "
            "directory"
        )
        raise XDreamError(
            f"cannot restore {str(self.folder.path)!r}: the {role}'s {name} file {which}. "
            "Continuing would mix two sets of weights in one record, so nothing was changed. "
            "Put back the file the run read, or start a new run in another folder; a file you "
            f"know holds the same weights is taken with restore(accept=[{key!r}])."
        )

    def _refuse_lost_checkpoint(self) -> None:
        """Raise unless a folder without ``checkpoint.pkl`` is one killed in its first
        generation (at most that generation's journal file, no generation in ``record.h5``, no
        finished summary): starting again from the first generation would drop the rest."""
        found = self.folder.progress_without_checkpoint()
        if found:
            raise XDreamError(
                f"cannot resume {str(self.folder.path)!r}: checkpoint.pkl is missing, but the "
                f"folder holds {', '.join(found)}. Without the checkpoint (the optimiser's and "
                "the random streams' state) the run cannot continue where it stopped, and "
                "starting again from the first generation would overwrite these records, so "
                "nothing was changed. The records so far stay readable (xdream.records.read("
                f"{str(self.folder.path)!r}), `xdream report {self.folder.path}`); to go on, "
                "start a new run with another --out."
            )

    def _load_state(self, state: dict[str, Any]) -> None:
        """Set the progress, the optimiser, the scorer and the references from
        :meth:`state_dict`."""
        if state.get("version") != CHECKPOINT_VERSION:
            raise XDreamError(f"checkpoint version {state.get('version')} is not supported")
        try:
            self.generation = int(state["generation"])
            self.presentations = int(state["presentations"])
            self.seconds = float(state["seconds"])
            self.first_generation_best = float(state["first_generation_best"])
            self.best_reference = float(state["best_reference"])
            self.best_clean = float(state["best_clean"])
            # None: a checkpoint of an earlier xdream; read from record.h5 once it is rebuilt
            clean_ref = state.get("best_clean_reference")
            self.best_clean_reference = float("nan" if clean_ref is None else clean_ref)
            self.best_generation = int(state["best_generation"])
            self.best_id = str(state["best_id"])
            if state.get("seed") is not None:  # the first session's (checkpoints since it)
                self.seed = int(state["seed"])
            elif not self._seed_given:  # unknown since the first session, or never recorded
                self.seed = None  # (an earlier xdream's checkpoint): not this session's draw
        except (KeyError, TypeError, ValueError) as err:
            problem = f"damaged: {type(err).__name__}: {err}"
            raise XDreamError(checkpoint_unusable(self.folder.checkpoint, problem)) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scorer.load_state_dict(state["scorer"])
        self.references.load_state_dict(state["references"])

    def _take_up(self) -> None:
        """Before a generation: start the run, or hold its folder again when it continues;
        after a stop (:meth:`_rewind`) from the last generation on disk."""
        if not self._started:
            self._start()
        self._hold_folder()
        if self._stopped:
            self._rewind()

    def _rewind(self) -> None:
        """Continue a run stopped by an error (a rig fault, Ctrl-C) or left in the middle of
        :meth:`generations` as ``xdream resume`` would: from the last generation on disk.

        The generation that was in flight had drawn its references and noise, and a rig may
        have shown some of its blocks; going back to the checkpoint proposes it again exactly
        (a rig continues it at the block where it stopped), so the records equal an
        uninterrupted run's.
        """
        self._deferred.clear()  # records that could not be written: the journal says what was
        self._writing = None
        if not self.folder.checkpoint.exists():  # back to the start of the run
            self._load_state(pickle.loads(self._initial))
        self._restore()
        self._stopped = False

    # ------------------------------------------------------------------ the loop
    def done(self) -> bool:
        """Whether the budget is spent (a presentation budget is never exceeded)."""
        if self.presentations_budget is not None:
            # ask() is idempotent until tell(), so peeking at the next batch size is free
            return self.presentations + len(self.optimizer.ask()) > self.presentations_budget
        assert self.generations_budget is not None
        return self.generation >= self.generations_budget

    def run(self, progress: Callable[[Progress], None] | None = None) -> Summary:
        """Run generations until the budget is spent; returns the summary."""
        for rec in self.generations():
            if progress is not None:  # when the scorer is idle: a rig's next block goes first
                self._defer(functools.partial(progress, self._progress(rec)))
        return self.finish()

    def generations(self) -> collections.abc.Generator[GenerationRecord, None, None]:
        """Run generations until the budget is spent, yielding each one's record.

        Consecutive generations overlap: the next one is proposed (rendered, and handed to the
        scorer's :meth:`~xdream.scorers.base.Scorer.prepare`) right after the tell, and the
        finished one is written from a snapshot taken before that proposal: in the background
        while a network unit scores the next generation (one generation in flight at most),
        after the next block is out for a rig. The records are exactly those of :meth:`step`
        after step; they are all on disk when the iterator is closed or exhausted.
        """
        try:
            self._take_up()
            proposal = None if self.done() else self.propose()
            while proposal is not None:
                scores, clean = self._score(proposal.all_images, proposal.all_ids)
                told = self._tell(proposal, scores, clean)
                write = self._records_of(told, proposal.images)  # before the next proposal
                following = None if self.done() else self.propose()
                self._write_later(write)
                yield told.record
                proposal = following
            self.flush()
        except FolderInUseError:  # refused: another process has the folder, nothing is ours
            raise
        except BaseException as err:  # a pause, an error, Ctrl-C, a break: write what is pending
            self._stopped = self._started
            try:
                stop_run([self], err, self.folder.path)
            finally:
                self._tell_scorer_stopped(err)
                self.release_folder()
            raise

    def finish(self) -> Summary:
        """Close a run whose budget is spent: complete ``record.h5``, write the final summary,
        drop the journal; returns the summary. :meth:`run` calls it; after :meth:`step` or a
        :meth:`generations` loop, call it once the budget is spent.

        A run whose budget is not spent, or an experiment that has not started its run, is
        refused (:class:`XDreamError`, nothing written): the summary would call it finished.
        After a stop (an error, a ``break``), it goes back to the last generation on disk first,
        as :meth:`run` does."""
        if not self._started:
            raise XDreamError(
                f"finish() closes a run whose budget is spent, and this Experiment has not "
                f"started one in {str(self.folder.path)!r}, so nothing was written: run() runs "
                "it (step() or generations() one generation at a time); for a run the folder "
                "holds already, restore() first, then run() continues or finishes it"
            )
        stopped = self._stopped
        self._hold_folder()  # a run stopped and continued by another process is not ours to end
        try:
            if stopped:  # a stop may leave told generations unwritten: go on as on disk
                self._rewind()
        except BaseException as err:
            self._tell_scorer_stopped(err)
            self.release_folder()
            raise_for_folder(err, self.folder.path)
            raise
        if not self.done():
            if stopped:  # as it was: let go, for a restore() or `xdream resume`
                self.release_folder()
            raise XDreamError(self._unspent_message())
        try:
            self.flush()
            self._check_record()
            summary = self.summary(finished=True)
            write_json(self.folder.summary, summary)
        except BaseException as err:
            self._tell_scorer_stopped(err)
            self.release_folder()  # `xdream resume` (or run() again) finishes it
            raise_for_folder(err, self.folder.path)
            raise
        self.folder.drop_journal()
        self.scorer.close()
        self.release_folder()
        self._finished = True
        return summary

    def _budget(self) -> tuple[str, int]:
        """The budget's kind (``"generations"``, ``"presentations"``) and size."""
        if self.presentations_budget is not None:
            return "presentations", self.presentations_budget
        assert self.generations_budget is not None
        return "generations", self.generations_budget

    def _continue_with(self, budget: str) -> str:
        """How to continue this run with the budget ``budget`` (``"generations=N"``)."""
        path = str(self.folder.path)
        if self.config is not None:
            return (
                f"set {budget.replace('=', ': ')} in its config.yaml's [experiment], then "
                f"`xdream resume {path}`"
            )
        return (
            f"`e = Experiment(generator, scorer, optimizer, {path!r}, {budget}); e.restore(); "
            "e.run()` with the objects it was built with"
        )

    def _spent_message(self) -> str:
        """Why :meth:`step` runs no more generations: the budget is spent."""
        kind, size = self._budget()
        closed = "it has finished" if self._finished else "finish() closes it, as run() does"
        return (
            f"the run in {str(self.folder.path)!r} has spent its budget of {size} {kind} "
            f"({self.generation} generations, {self.presentations} presentations ran), so step() "
            f"ran none and wrote nothing: {closed}. To go on once it is closed, give it a larger "
            f"budget: {self._continue_with(f'{kind}=N')}, with N above {size}."
        )

    def _unspent_message(self) -> str:
        """Why :meth:`finish` refuses a run whose budget is not spent."""
        kind, size = self._budget()
        if kind == "generations":
            ran, other = self.generation, f"{self.presentations} presentations"
        else:
            ran, other = self.presentations, f"{self.generation} generations"
        return (
            f"the run in {str(self.folder.path)!r} has run {ran} of its {size} {kind} ({other}), "
            "so finish(), which closes a run whose budget is spent, changed nothing (the "
            "summary would call the run finished). run() continues it to the end of its budget "
            "(so do step() and generations(), from where it is), and its records so far stay "
            "readable. To end it where it is, let this Experiment go (release_folder()) and give "
            f"the run the budget it has run: {self._continue_with(f'{kind}={ran}')}."
        )

    def _check_record(self) -> None:
        """Raise unless ``record.h5`` reads back whole with every generation: the journal,
        which is dropped when the run finishes, is then the only complete copy (a record moved,
        deleted, damaged or replaced by an older copy while the run went on)."""
        if not self._started:
            return
        try:
            have: int | str = H5Record(self.folder.record).verify()
        except UNREADABLE as err:
            have = f"cannot be read ({type(err).__name__}: {err})"
        if have == self.generation:
            return
        held = have if isinstance(have, str) else f"holds {have} generations"
        raise XDreamError(
            f"record.h5 in {str(self.folder.path)!r} {held} where the run has "
            f"{self.generation}: it was changed while the run went on (moved, deleted, "
            "damaged or replaced by an older copy). The run is not marked finished and its "
            "journal is kept: continuing the run rebuilds record.h5 from it "
            f"({continue_how(self.folder.path)})."
        )

    def step(self) -> GenerationRecord:
        """Run one generation and record it durably (starting the run if it has not started).

        After an error the next step continues from the last generation on disk, as
        :meth:`generations` does. A run whose budget is spent (:meth:`done`) runs no more:
        :class:`XDreamError`, with nothing written (:meth:`finish` closes it; a larger budget
        continues it, given to a new :class:`Experiment` on the folder with :meth:`restore`)."""
        if self._started and not self._stopped and self.done():
            raise XDreamError(self._spent_message())
        try:
            self._take_up()  # going back to the last generation may fail with the rig bound
            if self.done():  # a run stopped once its budget was spent, gone back to the disk
                raise XDreamError(self._spent_message())
            proposal = self.propose()
            return self.complete(proposal, *self._score(proposal.all_images, proposal.all_ids))
        except FolderInUseError:  # refused: another process has the folder, nothing is ours
            raise
        except BaseException as err:
            self._stopped = self._started
            self._tell_scorer_stopped(err)
            raise

    def _tell_scorer_stopped(self, err: BaseException) -> None:
        """Tell the scorer that ``err`` stopped the run, before the folder is let go (a rig
        says so in its status file: :meth:`~xdream.scorers.base.Scorer.stopped`); an error
        from it is noted on ``err``, which goes on."""
        try:
            self.scorer.stopped(err)
        except Exception as late:
            add_note(
                err,
                "the scorer could not be told that the run stopped "
                f"({type(late).__name__}: {late})",
            )

    def flush(self) -> None:
        """Write every pending record, then append the generations recorded since the last
        flush to ``record.h5`` and rewrite ``summary.json`` (both follow the journal by at
        most ``record_interval`` seconds while a run goes on), as of the last generation on
        disk: a run stopped after a generation was told but before its records were handed
        over has one generation more in memory than in its records."""
        self._settle()
        self._flush(self._written_summary)

    def _flush(self, summary: Summary | None = None) -> None:
        """:meth:`flush` without waiting for pending records (the record thread calls it);
        ``summary``: the running summary to write (default: as of now)."""
        if not self._started:
            return
        start = time.monotonic()
        appended = len(self._unflushed)
        if self._unflushed:
            H5Record(self.folder.record).append(*self._unflushed)
            self._unflushed = []
        if summary is None:
            summary = self.summary(finished=False)
        write_json(self.folder.summary, summary, durable=False)
        self._flushed_at = time.monotonic()
        if appended:  # appends only: summary.json alone costs next to nothing
            self._flush_times.append(self._flushed_at - start)
            # the median of the last few: one stalled append does not set the lag
            self._flush_seconds = float(np.median(self._flush_times))

    def _defer(self, task: Callable[[], None]) -> None:
        """Run ``task`` when the scorer is next idle (in order with earlier deferred tasks)."""
        self._deferred.append(task)
        self.scorer.run_when_idle(self._run_deferred)

    def _write_later(self, task: Callable[[], None]) -> None:
        """Write a generation's records while the next one is scored: in the record thread
        (after the previous generation's, whose errors surface here), or when a scorer that
        keeps its own journal (a rig) is idle."""
        if not self.scorer.records_in_background:
            self._defer(task)
            return
        self._wait_written()
        self._writing = _record_writer().submit(task)

    def _wait_written(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _run_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)()

    def _settle(self) -> None:
        """Run every deferred task and wait for the record thread: everything is on disk."""
        self._run_deferred()
        self._wait_written()

    def _flush_if_due(self, summary: Summary | None = None) -> None:
        if self._unflushed and time.monotonic() - self._flushed_at >= self._flush_interval():
            self._flush(summary)

    def _flush_interval(self) -> float:
        """Seconds between appends to ``record.h5``: :attr:`record_interval`, or longer where
        appending would take more than :data:`APPEND_SHARE` of the run's time. The units of a
        many-unit run each append their own record in one writer thread, and a lockstep
        generation of hundreds of units outlasts any interval: each unit then appended every
        generation, and the appends set the run's pace."""
        if self.record_interval <= 0:
            return self.record_interval
        appends = (self.lockstep_units or 1) * self._flush_seconds
        return max(self.record_interval, min(appends / APPEND_SHARE, APPEND_LAG_MAX))

    def propose(self) -> Proposal:
        """First half of a generation: ask for codes, render them, draw the references.

        Drivers that score many experiments in one forward pass (:mod:`xdream.multi`) call this,
        score ``all_images`` themselves and hand the scores to :meth:`complete`.
        """
        t = [time.perf_counter()]
        codes = self.optimizer.ask()
        ids, genealogy = self.optimizer.image_ids, self.optimizer.genealogy
        t.append(time.perf_counter())
        with tf32_mode(self.tf32):
            images = self.generator.generate(codes, batch_size=self.batch_size)
        refs, ref_ids = self.references.sample(self.n_references)
        t.append(time.perf_counter())
        proposal = Proposal(codes, ids, genealogy, images, refs.to(images.dtype), ref_ids, t)
        self.scorer.start_generation(self.generation)
        self.scorer.prepare(proposal.all_images, proposal.all_ids)
        return proposal

    def complete(
        self, p: Proposal, scores: np.ndarray, clean: np.ndarray, *, later: bool = False
    ) -> GenerationRecord:
        """Second half: tell the optimiser the scores of ``p.all_images`` and record them.

        ``later``: write the records as :meth:`generations` does (in the background while the
        next generation is scored); they are all on disk after :meth:`flush` or :meth:`finish`.
        Otherwise they are on disk when this returns.
        """
        if not later:
            self._settle()  # records of an earlier generation go first
        told = self._tell(p, scores, clean)
        write = self._records_of(told, p.images)
        if later:
            self._write_later(write)
        else:
            write()
        return told.record

    # ------------------------------------------------------------------ helpers
    def _hold_folder(self) -> None:
        """Lock the folder for this process (:meth:`RunFolder.lock`) until the run finishes or
        stops with an error."""
        if self._lock is None or not self._lock.held:
            self._lock = self.folder.lock()

    def release_folder(self) -> None:
        """Let another process take the folder (``xdream resume``). :meth:`run` does this when
        it finishes or stops with an error, and continuing takes the folder again.

        A generation's records still being written in the background (after :meth:`step`)
        are finished first, so the process that takes the folder finds them whole; an error
        of that write is raised where this run next waits for its records (continuing it, or
        :meth:`flush`)."""
        if self._writing is not None:
            wait([self._writing])
        if self._lock is not None:
            self._lock.release()

    def _start(self) -> None:
        if not self.folder.outputs_present():  # one that holds a run is refused below, held
            # before the folder is made (held): a scorer's refusal (a rig's share not mounted)
            # leaves nothing, and the same run starts once its cause is fixed
            self.scorer.check_folder(self.folder.path)
            self._check_generator()
        self._hold_folder()
        try:
            self.folder.refuse_outputs()  # nothing of an earlier run's, or the user's, is lost
            self.folder.create(images=self.save_images == "best")
            self._initialise_record()
            self.scorer.bind(self.folder.path)
        except BaseException:
            self.release_folder()
            raise
        self._initial = pickle.dumps(self.state_dict())
        self._started = True

    def _check_generator(self) -> None:
        """Render the first code the run will show before its folder is made, so that a
        generator whose images have the wrong shape, type or range (:meth:`Generator.generate`
        checks them) is refused with nothing written, and the same run starts once it is fixed.
        :meth:`Optimizer.ask` gives the same pending codes until :meth:`Optimizer.tell`, so the
        run shows exactly what it would have shown."""
        with tf32_mode(self.tf32):
            self.generator.generate(self.optimizer.ask()[:1], batch_size=1)

    def _initialise_record(self) -> None:
        if self.config is not None:
            config_mod.dump_yaml(self.config, self.folder.config)
        if self.init_codes is not None:
            with atomic_write(self.folder.path / INIT_CODES_FILE) as fh:
                np.save(fh, self.init_codes)
        H5Record(self.folder.record).initialise(
            self.generator.code_dim, self._built(), xdream.__version__
        )

    def _built(self) -> dict[str, Any]:
        """What a run built from Python objects was built with, as :meth:`_config_dict` names
        it (the checkpoint keeps it, and :meth:`restore` compares it), with the generator, the
        optimiser and the scorer as this session first described them, before the scorer was
        bound (a rig's folders are named otherwise after
        :meth:`~xdream.scorers.base.Scorer.bind`); ``record.h5`` records it. A config's run:
        its config (:meth:`_config_dict`)."""
        now = self._config_dict()
        if self.config is not None:
            return now
        if self._objects is None:
            self._objects = {role: now[role] for role in ("generator", "optimizer", "target")}
            # the files they read, as a config's run records them: restore refuses another
            self.files_read = files_named(self._objects)
        built = {**now, **self._objects}
        history = [dict(entry) for entry in self._accepted]
        if self._taking:  # this restore's, from the generation it continues at
            history.append({"generation": self._taking_at, "changes": list(self._taking)})
        if history:  # the record says what the earlier generations ran with
            built[ACCEPTED] = history
        return built

    def _config_dict(self) -> dict[str, Any]:
        if self.config is not None:
            return self.config.to_dict()
        return {
            "generator": recorded_generator_spec(self.generator),
            "optimizer": recorded_optimizer_spec(self.optimizer),
            "target": self.scorer.describe(),
            "experiment": {
                "seed": self.seed,
                "generations": self.generations_budget,
                "presentations": self.presentations_budget,
                "n_references": self.n_references,
                "reference_seed": self.reference_seed,
            },
        }

    def _score(self, images: torch.Tensor, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        with tf32_mode(self.tf32):
            scores = as_scores(self.scorer.score(images, ids))
        if scores.shape != (len(ids),):
            raise XDreamError(
                f"scorer returned {scores.shape} scores for {len(ids)} images; expected one each"
            )
        clean = getattr(self.scorer, "last_clean", None)
        clean = scores if clean is None else np.asarray(clean, dtype=np.float64)
        return scores, clean

    def _tell(self, p: Proposal, scores: np.ndarray, clean: np.ndarray) -> _Told:
        """Give the optimiser the evolved images' scores; update the run's bookkeeping."""
        t = [*p.times, time.perf_counter()]
        extra = self._extra_rows()
        n = len(p.codes)
        best_before = self.optimizer.best.score
        self.optimizer.tell(p.codes, scores[:n])
        t.append(time.perf_counter())
        self.presentations += n
        rec = GenerationRecord(
            generation=self.generation,
            codes=p.codes,
            scores=scores[:n],
            clean_scores=clean[:n],
            image_ids=p.ids,
            genealogy=p.genealogy,
            ref_ids=p.ref_ids,
            ref_scores=scores[n:],
            ref_clean_scores=clean[n:],
            presentations=self.presentations,
            seconds=np.diff(np.array(t)),
            extra=extra,
        )
        g = rec.generation
        if g == 0:
            self.first_generation_best = rec.best_score
        if np.isfinite(rec.best_reference):
            self.best_reference = max(self.best_reference, rec.best_reference)
        if np.isfinite(rec.clean_scores).any():
            self.best_clean = max(self.best_clean, float(np.nanmax(rec.clean_scores)))
        if np.isfinite(rec.ref_clean_scores).any():
            best_clean_reference = float(np.nanmax(rec.ref_clean_scores))
            self.best_clean_reference = max(self.best_clean_reference, best_clean_reference)
        i_best = int(np.nanargmax(rec.scores)) if np.isfinite(rec.scores).any() else None
        new_best = i_best is not None and rec.scores[i_best] > best_before
        if new_best and i_best is not None:
            self.best_generation = g
            self.best_id = rec.image_ids[i_best]
        self.generation = g + 1
        now = time.perf_counter()
        self.seconds += now - self._tick
        self._tick = now
        return _Told(rec, i_best, new_best)

    def _extra_rows(self) -> dict[str, np.ndarray]:
        """The scorer's ``last_extra`` rows of this generation, checked (:func:`checked_extra`)
        against the rows recorded before, each group with its ``generation`` dataset."""
        extra = getattr(self.scorer, "last_extra", None)
        try:
            return checked_extra(extra, self.generation, self._extra_layout)
        except ExtraRowsError as err:
            scorer = type(getattr(self.scorer, "base", self.scorer)).__name__  # a NoisyScorer's
            raise XDreamError(
                f"the scorer ({scorer}) set last_extra rows that the record cannot hold, in "
                f"generation {self.generation}: {err}. last_extra is {{'group/dataset': rows}}: "
                f"keys outside xdream's own names ({', '.join(OWN_NAMES)}), each value an array "
                "(or list) of rows of numbers or strings, as many rows in each dataset of a group, "
                "and the same datasets, row shapes and types every generation "
                "(xdream.scorers.base.Scorer says more)"
            ) from None

    def _records_of(self, told: _Told, images: torch.Tensor) -> Callable[[], None]:
        """The writing of a told generation's records, with the checkpoint and the running
        summary as of now (before anything of the next generation draws from an RNG)."""
        state = pickle.dumps(self.state_dict(), protocol=pickle.HIGHEST_PROTOCOL)
        # only the best image waits for the writer (a copy: a view would keep them all)
        best = None if told.i_best is None else images[told.i_best].clone()
        return functools.partial(self._write, told, best, state, self.summary(finished=False))

    def _write(
        self, told: _Told, best: torch.Tensor | None, state: bytes, summary: Summary
    ) -> None:
        """Record a told generation: 1) journal, 2) PNGs, 3) checkpoint (``state``, pickled
        right after the tell); then ``record.h5`` and ``summary`` (also as of the tell) when
        :meth:`flush` is due. Runs in the record thread: reads nothing the loop changes."""
        rec, g = told.record, told.record.generation
        self.folder.write_journal(rec)
        if best is not None:
            png = png_bytes(best)
            if self.save_images == "best":
                save_png(png, self.folder.images / f"gen{g:03d}_best.png")
            if told.new_best:
                save_png(png, self.folder.best_png)
        with atomic_write(self.folder.checkpoint) as fh:
            fh.write(state)
        self._unflushed.append(rec)
        self._written_summary = summary
        self._flush_if_due(summary)

    def _progress(self, rec: GenerationRecord) -> Progress:
        return Progress(
            generation=rec.generation,
            generations_total=self.generations_budget,
            presentations=self.presentations,
            best_score=self.optimizer.best.score,
            generation_best=rec.best_score,
            generation_mean=rec.mean_score,
            best_reference=self.best_reference,
            optimizer_status=self.optimizer.status(),
        )

    def summary(self, finished: bool) -> Summary:
        """The headline numbers written to ``summary.json``."""
        best = self.optimizer.best.score
        summary: Summary = {
            "status": "finished" if finished else "running",
            "best_score": best if np.isfinite(best) else None,
            "best_clean_score": self.best_clean if np.isfinite(self.best_clean) else None,
            "best_image": self.folder.best_png.name if self.best_generation >= 0 else None,
            "best_image_id": self.best_id or None,
            "best_generation": self.best_generation if self.best_generation >= 0 else None,
            "first_generation_best_score": (
                self.first_generation_best if np.isfinite(self.first_generation_best) else None
            ),
            "best_reference_score": (
                self.best_reference if np.isfinite(self.best_reference) else None
            ),
            "best_clean_reference_score": (
                self.best_clean_reference if np.isfinite(self.best_clean_reference) else None
            ),
            "generations": self.generation,
            "presentations": self.presentations,
            "seconds": round(self.seconds, 3),
            "target": self.scorer.describe(),
            "generator": self.generator.name,
            "optimizer": self.optimizer.name,
            "optimizer_status": self.optimizer.status(),
            "seed": self.seed,
            "code_dim": self.generator.code_dim,
            "xdream_version": xdream.__version__,
        }
        if self.lockstep_units is not None:
            summary["lockstep_units"] = self.lockstep_units
        if not finished:
            summary["process"] = {"pid": os.getpid(), "host": _HOST}
        return summary
