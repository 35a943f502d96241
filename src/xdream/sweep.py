"""``xdream sweep CONFIG``: units x optimisers x seeds as Ray tasks, on one machine or a cluster.

The config is an experiment config (``[target]``/``[[targets]]`` name the units) plus a
``[sweep]`` section:

.. code-block:: toml

    [sweep]
    optimizers = ["genetic", { name = "nes", learning_rate = 1.0 }]  # default: [optimizer]
    seeds = [0, 1, 2]                                                # default: [experiment].seed
    cpus_per_task = 1
    max_retries = 3

Each experiment is one Ray task writing its own folder ``OUT/<unit>/<optimizer>/seed<s>/``
(what ``xdream run`` writes, plus ``worker.json``: one line per attempt with host, pid and the
generation it started from). Ray re-runs the task of a worker that dies, and the task resumes
from the folder's checkpoint (:meth:`xdream.experiment.Experiment.restore`), so the experiment
continues rather than restarts; running the same sweep into the same ``OUT`` again skips finished
experiments and resumes the others. Each started experiment's config is compared with its
folder's ``config.yaml`` first, as ``xdream resume`` does: changes of
:data:`xdream.experiment.CHANGEABLE` keys (the budget, ...) take effect as it resumes (a finished
one is extended), and a change of any other key, or a budget below what an experiment has run,
is refused before any task runs; so are units the network lacks and a budget below one
generation (:func:`check_tasks`). A sweep holds ``OUT`` while it runs (:func:`hold_sweep`).
``OUT/sweep.csv`` is the aggregate table, rewritten as each task ends. A worker builds the
target network once for the tasks Ray gives it one after another (:func:`worker_task`). Ray is
an optional extra: ``pip install "xdream[cluster]"``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xdream.errors import (
    ConfigError,
    MissingFileError,
    SummaryUnreadableError,
    XDreamError,
    did_you_mean,
)
from xdream.params import check_seed

if TYPE_CHECKING:  # xdream.multi imports torch: imported where it runs, not by `xdream --help`
    from xdream.multi import Unit
    from xdream.records import FolderLock

SWEEP_KEYS = ("optimizers", "seeds", "cpus_per_task", "max_retries")

SWEEP_LOCK = ".xdream-sweep.lock"
"""The file in a sweep's output folder that a running ``xdream sweep`` holds a POSIX lock on
(:func:`hold_sweep`), naming its process."""


def columns() -> tuple[str, ...]:
    """Columns of ``sweep.csv``: ``units.csv``'s, plus optimiser, seed, attempts, error and
    state."""
    from xdream.multi import SUMMARY_COLUMNS

    return (
        *SUMMARY_COLUMNS[:5],
        "optimizer",
        "seed",
        *SUMMARY_COLUMNS[5:],
        "attempts",
        "error",
        "state",
    )


TASK_STATES = ("finished", "failed", "pending")
"""``sweep.csv``'s ``state`` of a task: it ended with its budget spent, it ended with an error
(``error``), or it has not ended yet (waiting for Ray, running, or cut off by a stop)."""


@dataclasses.dataclass(frozen=True)
class SweepSection:
    """``[sweep]``: which optimisers and seeds each unit is run with, and task resources."""

    optimizers: tuple[dict[str, Any], ...]
    seeds: tuple[int, ...]
    cpus_per_task: float = 1.0
    max_retries: int = 3
    derived: tuple[tuple[str, ...], ...] = ()
    """For each of :attr:`optimizers`, its keys set from the budget (:attr:`Config.derived
    <xdream.config.Config.derived>`): an experiment that started keeps the values it started
    with (:func:`xdream.config.as_started_schedule`)."""


@dataclasses.dataclass(frozen=True)
class Task:
    """One experiment of a sweep."""

    unit: Unit
    optimizer: str
    seed: int
    folder: str  # relative to the sweep's output folder
    config: dict[str, Any]


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise XDreamError(
            'xdream sweep needs Ray: pip install "xdream[cluster]" (or pip install ray)'
        ) from None
    return ray


def load(path: str | Path) -> tuple[Any, SweepSection]:
    """Read a sweep config: the experiment config and its ``[sweep]`` section."""
    from xdream import config as config_mod

    raw = config_mod.read(path)
    config_mod.refuse_other_command(raw, "sweep")
    section = raw.pop("sweep", {})
    cfg = config_mod.from_dict(raw)
    return cfg, parse_section(section, cfg)


def parse_section(section: Any, cfg: Any) -> SweepSection:
    """Validate ``[sweep]`` (optimisers resolved with every default, as in ``[optimizer]``)."""
    from xdream import config as config_mod

    if not isinstance(section, Mapping):
        raise ConfigError(f"[sweep] must be a table, got {section!r}")
    for key in section:
        if key not in SWEEP_KEYS:
            raise ConfigError(
                f"unknown key {key!r} in [sweep].{did_you_mean(str(key), SWEEP_KEYS)} "
                f"Valid keys: {', '.join(SWEEP_KEYS)}."
            )
    listed = section.get("optimizers", [cfg.given_optimizer()])
    if not isinstance(listed, list) or not listed:
        raise ConfigError(
            f"[sweep] optimizers must be a non-empty list of names or tables, got {listed!r}"
        )
    optimizers, derived = [], []
    for value in listed:
        data = {**cfg.to_dict(), "optimizer": value}
        data.pop("targets", None)
        resolved = config_mod.from_dict(data)
        optimizers.append(resolved.optimizer)
        derived.append(resolved.derived)
    names = [o["name"] for o in optimizers]
    if len(set(names)) != len(names):
        raise ConfigError(f"[sweep] optimizers repeat a name ({names}); give each once")
    seeds = section.get("seeds", [cfg.experiment.seed])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"[sweep] seeds must be a non-empty list of integers, got {seeds!r}")
    for seed in seeds:
        check_seed(seed, "[sweep] seeds: each")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"[sweep] seeds repeat a seed ({seeds}); give each once")
    cpus = section.get("cpus_per_task", 1.0)
    retries = section.get("max_retries", 3)
    if (
        not isinstance(cpus, (int, float))
        or isinstance(cpus, bool)
        or not math.isfinite(cpus)
        or cpus <= 0
    ):
        raise ConfigError(f"[sweep] cpus_per_task must be a number > 0, got {cpus!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigError(f"[sweep] max_retries must be an integer >= 0, got {retries!r}")
    return SweepSection(tuple(optimizers), tuple(seeds), float(cpus), retries, tuple(derived))


def plan(cfg: Any, sweep: SweepSection, out: Path | None = None) -> list[Task]:
    """Every (unit, optimiser, seed) experiment, with its own single-unit config (a unit of
    ``[[targets]]`` with its own noise seed). ``out``: the sweep's folder, where experiments
    started by an xdream before units had their own noise seeds keep the noise stream they
    started with (:func:`~xdream.multi.as_started`)."""
    from xdream import config as config_mod
    from xdream.multi import as_started, unit_config, units_of

    tasks = []
    units = units_of(cfg)
    labels = {unit.label for unit in units}
    for unit in units:
        for i, opt in enumerate(sweep.optimizers):
            derived = sweep.derived[i] if i < len(sweep.derived) else ()
            for seed in sweep.seeds:
                # the seed first: a unit's noise seed derives from it
                seeded = dataclasses.replace(
                    cfg, experiment=dataclasses.replace(cfg.experiment, seed=seed)
                )
                single = dataclasses.replace(unit_config(seeded, unit), optimizer=dict(opt))
                folder = f"{unit.label}/{opt['name']}/seed{seed}"
                if out is not None:
                    folder = _earlier_folder(out, unit, folder, labels)
                    single = as_started(single, cfg, out / folder)
                    single = config_mod.as_started_schedule(single, out / folder, derived)
                tasks.append(Task(unit, opt["name"], seed, folder, single.to_dict()))
    return tasks


def _earlier_folder(out: Path, unit: Any, folder: str, labels: set[str]) -> str:
    """``folder``, or the one an earlier xdream gave the task (:attr:`Unit.earlier_label
    <xdream.multi.Unit.earlier_label>`) where only that one exists and names no other unit of
    the sweep: the task goes on there."""
    earlier = unit.earlier_label + folder[len(unit.label) :]
    if (
        earlier != folder
        and unit.earlier_label not in labels
        and not (out / folder).exists()
        and (out / earlier).exists()
    ):
        return earlier
    return folder


_worker_networks: contextlib.ExitStack | None = None
"""The :func:`xdream.networks.reuse` block a Ray worker process opens at its first task
(:func:`worker_task`) and keeps open while the process lives."""


def worker_task(config: dict[str, Any], folder: str, threads: int) -> dict[str, Any]:
    """:func:`run_task` as a Ray worker runs it: inside a :func:`xdream.networks.reuse` block
    that stays open in the worker's process, so that the tasks Ray gives the same worker one
    after another build the target network once (:mod:`xdream.networks.cache`: used again only
    while its weight files are unchanged; at most :data:`~xdream.networks.cache.MAX_NETWORKS`
    kept). A task's results are the same as :func:`run_task`'s outside the block."""
    global _worker_networks
    from xdream import networks

    if _worker_networks is None:
        _worker_networks = contextlib.ExitStack()
        _worker_networks.enter_context(networks.reuse())
    return run_task(config, folder, threads)


def run_task(config: dict[str, Any], folder: str, threads: int) -> dict[str, Any]:
    """Run (or resume) one experiment in ``folder``; returns its summary and attempt count.

    A Ray worker runs it through :func:`worker_task`. Each attempt appends a line to
    ``worker.json``.
    """
    import torch

    from xdream import config as config_mod
    from xdream.experiment import Experiment

    torch.set_num_threads(max(1, threads))
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    log = path / "worker.json"
    try:
        cfg = config_mod.from_dict(config)
        try:
            experiment = Experiment.from_config(cfg, path)
        except MissingFileError as err:  # on a cluster (--address) the sweep checked no file
            raise MissingFileError(_missing_file_message(err, [path / "checkpoint.pkl"])) from None
        if (path / "config.yaml").exists():
            # as `xdream resume` after an edit of config.yaml: the checkpoint's config must
            # agree on every key that defines the experiment; the changeable ones (the budget,
            # ...) take effect, and config.yaml says so
            experiment.restore()
            config_mod.dump_yaml(cfg, path / "config.yaml")
        with open(log, "a") as fh:
            attempt = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "start_generation": experiment.generation,
                "time": time.time(),
            }
            fh.write(json.dumps(attempt) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        summary = experiment.run()
    except XDreamError as err:
        return {"error": str(err), "attempts": _attempts(log)}
    return {**summary, "attempts": _attempts(log)}


def describe_failure(err: BaseException) -> str:
    """One line for a task that failed: the error raised inside the task (Ray wraps it in a
    ``RayTaskError`` whose own text starts with the worker's process title), else Ray's."""
    cause = getattr(err, "cause", None)
    shown = cause if isinstance(cause, BaseException) else err
    lines = [line for line in f"{type(shown).__name__}: {shown}".splitlines() if line.strip()]
    return lines[0] if lines else type(shown).__name__


def _attempts(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _finished(folder: Path) -> dict[str, Any] | None:
    """A finished task's summary; ``None`` runs the task (again). A damaged summary counts as
    unfinished: resuming the task writes it again."""
    from xdream.records import read_summary

    try:
        data = read_summary(folder)
    except SummaryUnreadableError:
        return None
    if data.get("status") == "finished":
        return {**data, "attempts": _attempts(folder / "worker.json")}
    return None


def compare_configs(
    cfg: Any, tasks: list[Task], out: Path, moved: list[str] | None = None
) -> dict[int, list[str]]:
    """The changes of :data:`xdream.experiment.CHANGEABLE` keys between each started task's
    folder (its ``config.yaml``) and the sweep's config for it, by task index; raises
    :class:`XDreamError` before any task runs: naming every change of a key that defines an
    experiment (continuing would mix two experiments in one record), or every experiment that
    has already run more than a lowered budget (a run cannot be shortened). A weight file's
    new path that names the file a task read (:func:`~xdream.experiment.moved_files`) is no
    change: each such path change (``"target.weights: 'old' -> 'new'"``) is added to
    ``moved`` where given, once, for the sweep to say that it took it."""
    from xdream.experiment import (
        CHANGEABLE_KEYS,
        READ_AGAIN,
        config_changes,
        files_named,
        moved_files,
        other_files,
        with_notes,
    )
    from xdream.multi import changes_in_run_terms
    from xdream.records import RunFolder, load_checkpoint

    allowed: dict[int, list[str]] = {}
    refused: list[str] = []
    for i, task in enumerate(tasks):
        folder = RunFolder(out / task.folder)
        if not folder.config.exists():
            continue
        try:
            saved = folder.load_config().to_dict()
        except XDreamError:  # a damaged config.yaml: the task's resume checks the checkpoint
            continue
        defining, changes = config_changes(saved, task.config)
        notes: dict[str, str] = {}
        if defining and folder.checkpoint.exists():  # a weight file moved: the same file?
            try:
                files = load_checkpoint(folder.checkpoint).get("files")
            except XDreamError:  # a damaged checkpoint: the task's resume says so
                files = None
            read = files_named(task.config)
            before, saved = saved, moved_files(saved, task.config, files, read)
            defining, changes = config_changes(saved, task.config)
            notes = other_files(files, read, "the experiment")
            for section, key in READ_AGAIN:  # the sections moved_files gave the new path
                if moved is not None and saved.get(section) is not before.get(section):
                    said = f"{section}.{key}: {before[section][key]!r} -> {saved[section][key]!r}"
                    moved.extend([] if said in moved else [said])
        if defining:  # the noise seed as the sweep's config gives it, not the unit's number
            seeded = dataclasses.replace(
                cfg, experiment=dataclasses.replace(cfg.experiment, seed=task.seed)
            )
            defining = changes_in_run_terms(saved, task.config, seeded, task.unit) or defining
            defining = with_notes(defining, notes)
            refused.append(f"{task.folder}: {'; '.join(defining)}")
        if changes:
            allowed[i] = changes
    if refused:
        raise XDreamError(
            f"cannot continue the sweep in {str(out)!r}: the config changed since its "
            f"experiments started, in keys that define them ({_listed(refused)}); continuing "
            "would mix two experiments in one record. Put the old values back, or run the sweep "
            f"into another --out. Keys that may change between sessions: "
            f"{', '.join(CHANGEABLE_KEYS)}."
        )
    _refuse_shortened(cfg, [tasks[i] for i in allowed], out)
    return allowed


def _listed(items: list[str], most: int = 5) -> str:
    shown = " | ".join(items[:most])
    return shown + (f" | and {len(items) - most} more" if items[most:] else "")


def _refuse_shortened(cfg: Any, tasks: list[Task], out: Path) -> None:
    """Raise, naming each task, where the sweep's budget is below what a started task has run
    (its checkpoint or summary): its resume would refuse it inside the task, after Ray
    started, and a run cannot be shortened."""
    kind, budget = cfg.budget()
    ran = {task.folder: _has_run(out / task.folder) for task in tasks}
    over = [
        (folder, r)
        for folder, r in ran.items()
        if r is not None and (r[1] if kind == "presentations" else r[0]) > budget
    ]
    if not over:
        return
    shown = _listed([f"{f}: {g} generations ({p} presentations)" for f, (g, p) in over])
    least = max(r[1] if kind == "presentations" else r[0] for _, r in over)
    raise XDreamError(
        f"cannot continue the sweep in {str(out)!r} with [experiment] {kind} = {budget}: "
        f"{len(over)} of its experiments have already run more ({shown}), and a run cannot be "
        "shortened, so nothing was started or changed. Give the sweep's config a budget of at "
        f"least what has run, [experiment] {kind} = {least} (that much finishes the experiments "
        "that ran most where they are), or run the sweep with the smaller budget into another "
        "--out."
    )


def _has_run(folder: Path) -> tuple[int, int] | None:
    """The generations and presentations the experiment in ``folder`` has run: a finished
    one's summary, else its checkpoint's (the summary is rewritten only every
    ``record_interval``), else its summary's; ``None`` where neither says."""
    from xdream.records import load_checkpoint, read_summary

    try:
        summary = read_summary(folder)
    except SummaryUnreadableError:
        summary = {}
    counts = (summary.get("generations"), summary.get("presentations"))
    if summary.get("status") != "finished" and (folder / "checkpoint.pkl").exists():
        try:
            state = load_checkpoint(folder / "checkpoint.pkl")
            counts = (state.get("generation"), state.get("presentations"))
        except XDreamError:  # a damaged checkpoint: the task's resume says so
            pass
    generations, presentations = counts
    if isinstance(generations, int) and isinstance(presentations, int):
        return int(generations), int(presentations)
    return None


def hold_sweep(out: Path) -> FolderLock:
    """Hold ``out`` for this ``xdream sweep`` until :meth:`~xdream.records.FolderLock.release`:
    a second sweep into it is refused at once, naming this one's process, instead of running
    and reporting as failed the experiments this one runs. A POSIX lock on :data:`SWEEP_LOCK`,
    as :meth:`xdream.records.RunFolder.lock` holds an experiment's folder: the system frees
    it when the process ends, however it ends (a killed sweep leaves no stale lock); a forked
    or started child (a Ray worker) does not hold it."""
    from xdream.records import locks

    with locks._HELD_GUARD:  # not imported by name: a forked child makes its own
        return locks.take_lock(
            out / SWEEP_LOCK,
            held_here=f"{str(out)!r} is in use by another sweep of this process: let it end first",
            held_elsewhere=lambda holder: (
                f"{str(out)!r} is in use by another xdream sweep ({holder}), which runs the "
                "same experiments: wait for it to finish, or stop it first (a stopped or killed "
                "sweep frees the folder at once, and the sweep run again goes on where it "
                "stopped), or give this one another --out."
            ),
            unwritable=lambda err: XDreamError(_unwritable(out, err)),
        )


def _unwritable(out: Path, err: OSError) -> str:
    if isinstance(err, (FileExistsError, NotADirectoryError)) or (
        out.exists() and not out.is_dir()
    ):
        return f"--out {str(out)!r} is not a folder (a file is in the way): give a folder"
    return (
        f"cannot create or write into the sweep's folder {str(out)!r}: "
        f"{err.strerror or err}. Make it writable (a read-only mount, changed permissions), or "
        "give another --out."
    )


def check_tasks(cfg: Any, tasks: list[Task], out: Path, *, local: bool = True) -> None:
    """Refuse, before Ray starts, what every task would refuse at its start, each distinct
    problem once: a unit its network lacks (no such layer; a channel or position out of
    range), as ``xdream run`` checks them; a budget below one generation of an optimiser. The
    network is loaded on this machine once (on the CPU); where its weights (or the
    generator's) are not here and the sweep runs on a cluster (``local`` false), the nodes may
    have them, and the tasks check."""
    if not tasks or cfg.rig is not None:
        return
    from xdream import config as config_mod
    from xdream import generators, networks
    from xdream.experiment import Experiment
    from xdream.multi import MultiUnitScorer, UnitView, each_problem

    t = cfg.target
    units = list(dict.fromkeys(task.unit for task in tasks))
    problems: dict[str, None] = {}
    try:
        network = networks.make(t.network, weights=t.weights)

        def scorer(some: list[Unit]) -> MultiUnitScorer:
            return MultiUnitScorer(
                network,
                some,
                pre_activation=t.pre_activation,
                image_size=t.image_size,
                placement=t.placement,
                device="cpu",
                fold_bn=False,
            )

        def view(unit: Unit) -> UnitView:
            return multi.view(units.index(unit)) if multi is not None else scorer([unit]).view(0)

        multi: MultiUnitScorer | None = None
        try:
            multi = scorer(units)
        except XDreamError:
            problems.update(dict.fromkeys(each_problem(scorer, units)))
            if problems:
                raise XDreamError(_problems(problems)) from None
            # each unit alone is taken: the units were refused together only for what one
            # shared pass needs (placement "rf": one receptive field for all), and each task of
            # a sweep scores its own unit, so each is checked with its own scorer below
        gen_params = {k: v for k, v in cfg.generator.items() if k != "name"}
        generator = generators.make(cfg.generator["name"], **gen_params)
    except MissingFileError:
        if local:
            raise
        return
    checked: set[str] = set()
    for task in tasks:  # the budget against each optimiser's generation, ...
        if task.optimizer in checked:
            continue
        checked.add(task.optimizer)
        try:
            Experiment.from_config(
                config_mod.from_dict(task.config),
                out / task.folder,
                unit=view(task.unit),
                generator=generator,
            )
        except XDreamError as err:
            named = repr(task.optimizer) in str(err)
            problems.setdefault(str(err) if named else f"optimizer {task.optimizer!r}: {err}")
    if problems:
        raise XDreamError(_problems(problems))


def _missing_file_message(err: MissingFileError, checkpoints: list[Path]) -> str:
    """The missing-file error ``err`` of a sweep run again, followed by the weight files its
    experiments read (the first of ``checkpoints`` to record them) and how to give the new
    path of one."""
    from xdream.experiment import files_hint, files_recorded, with_hint

    hint = files_hint(
        files_recorded(checkpoints),
        read_by="The sweep's experiments",
        again="run the sweep from the directory it was started in",
        config="the sweep's config file: the sweep takes it",
        recorded_by="its experiments",
    )
    return with_hint(err, hint)


def _problems(problems: dict[str, None]) -> str:
    lines = list(problems)
    if len(lines) == 1:
        return f"cannot start the sweep: {lines[0]}"
    return f"cannot start the sweep, for {len(lines)} reasons:\n  " + "\n  ".join(lines)


def run_sweep(
    cfg: Any,
    sweep: SweepSection,
    out: str | Path,
    *,
    address: str | None = None,
    console: Any = None,
) -> list[dict[str, Any]]:
    """Run every task of the sweep on Ray and write ``OUT/sweep.csv``; returns its rows.

    The sweep holds ``out`` while it runs (:func:`hold_sweep`). Everything that would refuse
    the sweep or its tasks is checked before Ray starts (:func:`compare_configs`,
    :func:`check_tasks`); a refusal then leaves no folder that this call made. ``sweep.csv``
    lists every task (``state`` :data:`TASK_STATES`) from the moment Ray has started and is
    rewritten after each task ends, so a stopped sweep leaves the table of what it finished
    and of what it had still to do."""
    from xdream.records import make_folder, remove_empty

    ray = _require_ray()
    out = Path(out).resolve()
    try:
        made = make_folder(out, exist_ok=True)
    except OSError as err:
        raise XDreamError(_unwritable(out, err)) from None
    lock = hold_sweep(out)
    try:
        tasks = plan(cfg, sweep, out)
        moved: list[str] = []
        changed = compare_configs(cfg, tasks, out, moved)
        results: dict[int, dict[str, Any]] = {}
        for i, task in enumerate(tasks):
            done = None if i in changed else _finished(out / task.folder)
            if done is not None:
                results[i] = done
        try:
            check_tasks(
                cfg, [t for i, t in enumerate(tasks) if i not in results], out, local=not address
            )
        except MissingFileError as err:  # a weight file: say where the experiments found it
            checkpoints = [out / task.folder / "checkpoint.pkl" for task in tasks]
            raise MissingFileError(_missing_file_message(err, checkpoints)) from None
        if moved and console is not None:
            console.print(
                f"weight files at a new path, the same files (same size and fingerprint) as "
                f"the experiments read, taken: {'; '.join(moved)}",
                highlight=False,
                markup=False,
            )
        if changed and console is not None:
            changes = list(dict.fromkeys(c for cs in changed.values() for c in cs))
            console.print(
                f"the config changed since {len(changed)} experiment(s) started, taking effect "
                f"as they resume: {'; '.join(changes)}",
                highlight=False,
                markup=False,
            )
        started_here = not ray.is_initialized()
        relays = _init_ray(ray, address) if started_here else []
        try:
            _run_tasks(ray, sweep, tasks, results, out, console)
        except KeyboardInterrupt as err:  # a SIGTERM's, which Ray made a bare one
            raised = next((r.raised for r in relays if r.raised is not None), err)
            if raised is err:
                raise
            raise raised from None
        finally:
            if started_here:
                ray.shutdown()
        try:
            return _write_table(out, tasks, results)
        except OSError as err:
            raise XDreamError(
                f"the sweep's experiments have ended, but {_table_error(out, err)}: their "
                "records are in their folders. Make the folder writable, then run the sweep "
                "again to write the table (finished experiments are not run again)."
            ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            if [p.name for p in out.iterdir()] == [SWEEP_LOCK]:
                # nothing written but the lock: no folder that this call made is left
                (out / SWEEP_LOCK).unlink()
                remove_empty(made)
        raise
    finally:
        lock.release()


class _Relay:
    """A signal handler put back after ``ray.init`` (``handler``, the one there was before),
    which keeps what it raised: Ray turns an exception raised by a handler inside its calls
    into a bare ``KeyboardInterrupt``, and :func:`run_sweep` raises this one instead."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.raised: BaseException | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        try:
            self.handler(signum, frame)
        except BaseException as err:
            self.raised = err
            raise


def _init_ray(ray: Any, address: str | None) -> list[_Relay]:
    """Start a local Ray (or connect to the cluster at ``address``). Ray's handlers of SIGTERM
    and SIGHUP are replaced by the ones there were before (``xdream sweep``'s stop the sweep as
    Ctrl-C does; Ray's abort the process with a stack dump), through a :class:`_Relay` each
    (returned) where they are functions."""
    import xdream

    # workers import the same xdream as this process (a source checkout included)
    src = str(Path(xdream.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": {"PYTHONPATH": path}}}
    kwargs["log_to_driver"] = False
    if address is None:
        kwargs["include_dashboard"] = False
    stops = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    before = {signum: signal.getsignal(signum) for signum in stops}
    relays: list[_Relay] = []
    try:
        _check_reachable(address)
        ray.init(address=address, **kwargs)
    except ConnectionError as err:
        first = next((line for line in str(err).splitlines() if line.strip()), "")
        raise XDreamError(_no_cluster(address, first)) from None
    except SystemExit as err:  # Ray's handler of a SIGTERM or SIGHUP that came during init
        if err.code not in stops:
            raise
        from xdream.cli import Terminated

        raise Terminated(int(err.code)) from None  # type: ignore[arg-type]
    finally:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in before.items():
                if callable(handler):
                    relays.append(_Relay(handler))
                    handler = relays[-1]
                if handler is not None:
                    signal.signal(signum, handler)
    return relays


def _check_reachable(address: str | None) -> None:
    """Raise :class:`ConnectionError` where ``address`` is ``HOST:PORT`` and nothing answers
    there within seconds: ``ray.init`` would try again for minutes, silently."""
    if not address or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or what Ray itself reads
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers there ({err.strerror or err}).") from None


def _no_cluster(address: str | None, problem: str) -> str:
    return (
        f"cannot connect to a Ray cluster at --address {address}: {problem} Start it first "
        "(`ray start --head` on its head node), give its address, or leave out --address to "
        "run the sweep on a local Ray."
    )


def _run_tasks(
    ray: Any,
    sweep: SweepSection,
    tasks: list[Task],
    results: dict[int, dict[str, Any]],
    out: Path,
    console: Any,
) -> None:
    """Run the tasks that have no result in ``results`` yet on Ray, filling it in as they end,
    and rewrite ``sweep.csv`` after each."""
    _check_capacity(ray, sweep.cpus_per_task)
    remote = ray.remote(worker_task).options(
        num_cpus=sweep.cpus_per_task, max_retries=sweep.max_retries, retry_exceptions=False
    )
    threads = max(1, int(sweep.cpus_per_task))
    pending = {
        remote.remote(task.config, str(out / task.folder), threads): i
        for i, task in enumerate(tasks)
        if i not in results
    }
    try:
        _write_table(out, tasks, results)  # every task, those still to run as pending
    except OSError as err:
        raise XDreamError(
            f"{_table_error(out, err)}, so no experiment was started: make the folder "
            "writable, then run the sweep again"
        ) from None
    unwritten = False  # sweep.csv could not be rewritten (said once)
    if console is not None:
        console.print(
            f"{len(tasks)} experiment{'' if len(tasks) == 1 else 's'} "
            f"({len(results)} already finished) on Ray "
            f"{ray.get_runtime_context().gcs_address}",
            highlight=False,
        )
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as err:  # an error in the task, or it died more than max_retries
            result = {"error": describe_failure(err)}
        results[i] = _with_record(out / tasks[i].folder, result)
        try:
            _write_table(out, tasks, results)
        except OSError as err:  # the tasks go on: their records are in their own folders
            if console is not None and not unwritten:
                console.print(
                    f"warning: {_table_error(out, err)}; the experiments go on, and the table "
                    "is written when they have ended",
                    highlight=False,
                    markup=False,
                )
            unwritten = True
        if console is not None:
            t = tasks[i]
            state = result.get("error") or f"best {result.get('best_score'):.4g}"
            console.print(
                f"[{len(results)}/{len(tasks)}] {t.folder}: {state}", highlight=False, markup=False
            )


def _with_record(folder: Path, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` of the task in ``folder``; for one that failed, with the numbers its folder's
    summary holds (a finished experiment's, or those of the generations run), the error
    beside them: a failure never empties the row of what the experiment recorded."""
    from xdream.records import read_summary

    if not result.get("error"):
        return result
    try:
        recorded = read_summary(folder)
    except SummaryUnreadableError:
        recorded = {}
    return {**recorded, "attempts": _attempts(folder / "worker.json"), **result}


def _table_error(out: Path, err: OSError) -> str:
    return f"sweep.csv cannot be written in {str(out)!r} ({err.strerror or err})"


def _write_table(
    out: Path, tasks: list[Task], results: Mapping[int, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Rewrite ``OUT/sweep.csv`` (atomically) with a row for each task, ``pending`` where it
    has no result yet; returns the rows."""
    from xdream.multi import write_table

    rows = [sweep_row(task, results.get(i)) for i, task in enumerate(tasks)]
    write_table(out / "sweep.csv", rows, columns())
    return rows


def sweep_row(task: Task, result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``sweep.csv`` row of ``task`` from its ``result`` (its summary, or its error; None
    for a task that has not ended: its numbers are empty, its state ``pending``).

    ``x`` and ``y`` are the position read, from the summary's ``target`` (the centre where the
    config leaves them out), as in ``units.csv``; the config's own where the task failed.
    """
    from xdream.multi import summary_row

    if result is None:
        result = {}
        state = "pending"
    else:
        state = "failed" if result.get("error") else "finished"
    row = summary_row(task.unit, result, task.folder)
    target = result.get("target")
    if isinstance(target, Mapping):
        row.update({k: target[k] for k in ("x", "y") if target.get(k) is not None})
    row.update(
        optimizer=task.optimizer,
        seed=task.seed,
        attempts=result.get("attempts"),
        error=result.get("error"),
        state=state,
    )
    return row


def _check_capacity(ray: Any, cpus: float) -> None:
    """Refuse ``cpus_per_task`` that no node of the cluster has: Ray would wait for one
    forever, silently."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    most = max((float(n.get("Resources", {}).get("CPU", 0)) for n in nodes), default=0.0)
    if cpus > most:
        raise XDreamError(
            f"[sweep] cpus_per_task = {cpus:g}, but the largest node of the Ray cluster has "
            f"{most:g} CPUs, so no task could ever start: lower cpus_per_task to {most:g} or less "
            "(or add larger nodes)"
        )


def cmd_sweep(args: argparse.Namespace, console: Any) -> int:
    """Handler of ``xdream sweep``."""
    from xdream.cli import _default_out

    cfg, sweep = load(args.config)
    _require_ray()
    out = Path(args.out) if args.out else _default_out(Path(args.config).stem + "-sweep")
    args.continue_with = f"`xdream sweep {args.config} --out {out}` (finished runs are kept)"
    rows = run_sweep(cfg, sweep, out, address=args.address, console=console)
    failed = [r for r in rows if r["error"]]
    console.print(
        f"{len(rows) - len(failed)} of {len(rows)} experiments finished; table: "
        f"{out / 'sweep.csv'}",
        highlight=False,
    )
    for r in failed:
        console.print(f"failed: {r['folder']}: {r['error']}", highlight=False, markup=False)
    return 1 if failed else 0


def add_parser(subparsers: Any) -> None:
    """Register ``xdream sweep``."""
    p = subparsers.add_parser("sweep", help="units x optimisers x seeds as Ray tasks")
    p.add_argument("config", help="experiment config with a [sweep] section")
    p.add_argument("--out", help="output folder (default: xdream-runs/<time>-<name>-sweep)")
    p.add_argument(
        "--address",
        help="address of an existing Ray cluster (host:port or 'auto'); default: a local Ray",
    )
    p.set_defaults(func=cmd_sweep)
