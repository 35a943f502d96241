"""``xdream tune CONFIG``: search an optimiser's hyperparameters with Optuna.

The objective of a trial is the **median normalised score** over a set of units. A unit's
normalised score is ``(best - mean) / (top - mean)``: ``best`` its best noise-free score in the
trial, ``mean`` and ``top`` its mean and its best response to a fixed set of natural reference
crops (the same crops on every machine, so trials are comparable). 0 is an average natural
crop and 1 the best one, whatever the sign of the unit's responses, so a higher score is always
better; a unit that gives every reference crop the same response (a unit that never fires) has
no scale and is refused before any trial. Scores are averaged over seeds, then the median is
taken over units. All units of a trial run in lockstep over shared forward passes
(:mod:`xdream.multi`). The config is an experiment config (``[[targets]]`` name the units,
``[optimizer]`` the optimiser and its fixed parameters) plus a ``[tune]`` section:

.. code-block:: toml

    [tune]
    trials = 20                      # finished trials the study should hold
    seeds = [0]
    references = 100                 # crops behind each unit's normaliser
    [tune.params]                    # the search space: keys of the optimiser's Params
    mutation_rate = { low = 0.05, high = 0.9 }
    mutation_size = { low = 0.1, high = 2.0, log = true }
    population_size = { low = 10, high = 40 }        # integers give an integer range
    selectivity = { choices = [1.0, 2.0, 4.0] }

Trials are stored in SQLite (``OUT/tune.db``) unless ``--storage`` names any SQLAlchemy
database URL (``postgresql://user:pass@host/db``): machines sharing a URL and a ``--study`` name
tune together. Each trial's sampler is seeded from ``sampler_seed`` and the trial's number in
the study, so a fresh study is reproducible and a continued one (or another machine) proposes
new values. Optuna is an optional extra: ``pip install "xdream[tune]"``.

A trial whose process was interrupted (Ctrl-C, SIGTERM, SIGHUP, or killed: its ``host`` and
``pid`` user attributes name a process of this machine that is gone) is marked ``FAIL`` with an
``interrupted`` user attribute and runs again as a new trial (``retry_of``) with the same
values, resuming its folder from the experiments' checkpoints (:func:`recover_interrupted`), so
the study ends as an uninterrupted one. A retry takes the sampler seed of the trial it retries
and leaves the following trials theirs.

A study records the config its trials run under (:func:`fingerprint`, the study's ``config`` user
attribute) and refuses to go on under another, naming each changed key (:func:`check_config`).
The default study (``--study xdream``) keeps its trial folders ``OUT/trialNNNN`` and its table
``OUT/tune.csv``; any other study ``NAME`` keeps them in ``OUT/study-NAME/``
(:func:`study_folder`). The table is rewritten as each trial starts and ends.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import socket
import statistics
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from xdream.errors import ConfigError, MissingFileError, XDreamError, did_you_mean
from xdream.params import check_seed

TUNE_KEYS = ("trials", "seeds", "references", "params", "sampler_seed")
RANGE_KEYS = ("low", "high", "log", "choices")

DEFAULT_STUDY = "xdream"
"""The study of ``xdream tune`` without ``--study``: its trials and table are in ``OUT`` itself."""

STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A study name: it names the folder ``OUT/study-NAME`` of a study other than the default."""

LOCK_FILE = ".xdream-tune.lock"
"""The file in ``OUT`` locked while a study is opened or created (:func:`_creation_lock`)."""

RACE_SIGNS = ("already exists", "UNIQUE constraint failed", "duplicate key value")
"""What the database says to a process that creates a storage's tables or a study that another
one created meanwhile (SQLite, PostgreSQL): :func:`_open_study` tries again."""
RACE_TRIES = 3

SESSION_KEYS = (
    "experiment.seed",  # each trial runs [tune] seeds
    "experiment.record_interval",
    "experiment.batch_size",
    "experiment.tf32",
    "target.batch_size",
    "target.device",
    "rig.timeout",
    "rig.on_timeout",
    "rig.poll_interval",
    "rig.settle",
    "rig.settle_always",
)
"""Config keys left out of a study's :func:`fingerprint`: they may change between the sessions
of a study, as between those of a run (the budget may not: it changes what a value means)."""


@dataclasses.dataclass(frozen=True)
class TuneSection:
    """``[tune]``: the search space and the trial budget."""

    params: dict[str, dict[str, Any]]
    trials: int = 20
    seeds: tuple[int, ...] = (0,)
    references: int = 100
    sampler_seed: int = 0


def _require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise XDreamError(
            'xdream tune needs Optuna: pip install "xdream[tune]" (or pip install optuna)'
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def load(path: str | Path) -> tuple[Any, TuneSection]:
    """Read a tuning config: the experiment config and its ``[tune]`` section."""
    from xdream import config as config_mod

    raw = config_mod.read(path)
    config_mod.refuse_other_command(raw, "tune")
    section = raw.pop("tune", None)
    cfg = config_mod.from_dict(raw)
    return cfg, parse_section(section, cfg)


def parse_section(section: Any, cfg: Any) -> TuneSection:
    """Validate ``[tune]`` against the optimiser's parameters."""
    from xdream import optimizers

    if not isinstance(section, Mapping) or not section.get("params"):
        raise ConfigError("a tuning config needs [tune.params]: the hyperparameters to search")
    for key in section:
        if key not in TUNE_KEYS:
            raise ConfigError(
                f"unknown key {key!r} in [tune].{did_you_mean(str(key), TUNE_KEYS)} "
                f"Valid keys: {', '.join(TUNE_KEYS)}."
            )
    name = cfg.optimizer["name"]
    fields = [f.name for f in dataclasses.fields(optimizers.REGISTRY.get(name).Params)]
    params: dict[str, dict[str, Any]] = {}
    for key, spec in section["params"].items():
        if key not in fields:
            raise ConfigError(
                f"optimizer {name!r} has no parameter {key!r}.{did_you_mean(key, fields)} "
                f"Its parameters: {', '.join(fields)}."
            )
        if not isinstance(spec, Mapping) or any(k not in RANGE_KEYS for k in spec):
            raise ConfigError(
                f"[tune.params] {key} must be {{ low = .., high = .. [, log = true] }} or "
                f"{{ choices = [..] }}, got {spec!r}"
            )
        _check_spec(key, spec, cfg)
        params[key] = dict(spec)
    seeds = section.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"[tune] seeds must be a non-empty list of integers, got {seeds!r}")
    for seed in seeds:
        check_seed(seed, "[tune] seeds: each")
    if len(set(seeds)) != len(seeds):  # each trial would run a seed's folder twice
        raise ConfigError(f"[tune] seeds repeat a seed ({seeds}); give each once")
    for key in ("trials", "references", "sampler_seed"):
        v = section.get(key, 2)
        low = {"sampler_seed": 0, "references": 2}.get(key, 1)
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ConfigError(f"[tune] {key} must be an integer >= {low}, got {v!r}")
    return TuneSection(
        params,
        section.get("trials", 20),
        tuple(seeds),
        section.get("references", 100),
        section.get("sampler_seed", 0),
    )


def _check_spec(key: str, spec: Mapping[str, Any], cfg: Any) -> None:
    """Refuse a search-space entry that Optuna cannot search or whose values the optimiser
    refuses: each bound and each choice is checked as ``xdream run`` checks ``[optimizer]``."""
    from xdream import config as config_mod

    where = f"[tune.params] {key}"
    if "choices" in spec:
        if any(k in spec for k in ("low", "high", "log")):
            raise ConfigError(f"{where}: give either choices or low/high (and log), not both")
        values = spec["choices"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where} choices must be a non-empty list, got {values!r}")
        for v in values:
            if not isinstance(v, (bool, int, float, str)):
                raise ConfigError(
                    f"{where} choices must be numbers, strings or booleans, got {v!r}"
                )
    else:
        bounds: list[Any] = [spec.get(k) for k in ("low", "high")]
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds) or not (
            math.isfinite(bounds[0]) and math.isfinite(bounds[1]) and bounds[0] < bounds[1]
        ):
            raise ConfigError(
                f"{where} needs finite numbers (not true or false) low < high, got {dict(spec)!r}"
            )
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where} log must be true or false, got {log!r}")
        if log and bounds[0] <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0, got low = {bounds[0]!r}")
        values = bounds
    for v in values:
        data = cfg.to_dict()
        data["optimizer"] = {**cfg.given_optimizer(), key: v}
        try:
            config_mod.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{where}: {v!r} is not a value the optimiser takes: {err}") from None


def suggest(trial: Any, params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The trial's values for the search space (integer bounds give an integer range)."""
    values = {}
    for key, spec in params.items():
        if "choices" in spec:
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            values[key] = trial.suggest_int(
                key, spec["low"], spec["high"], log=spec.get("log", False)
            )
        else:
            values[key] = trial.suggest_float(
                key, float(spec["low"]), float(spec["high"]), log=spec.get("log", False)
            )
    return values


@dataclasses.dataclass(frozen=True)
class Normaliser:
    """A unit's responses to the reference crops: their mean and their best."""

    mean: float
    top: float

    def __call__(self, score: float) -> float:
        """``(score - mean) / (top - mean)``: 0 for an average crop, 1 for the best one."""
        return (score - self.mean) / (self.top - self.mean)


OBJECTIVE = (
    "median over units of (best clean score - mean reference response) / "
    "(best reference response - mean reference response), {references} reference crops"
)
"""What a trial's value is; stored in the study, which refuses trials scored another way."""


def normalisers(cfg: Any, n_references: int) -> dict[str, Normaliser]:
    """Each unit's mean and best response to ``n_references`` fixed natural crops (seed 0).

    Raises :class:`ConfigError` naming the units that give every crop the same response (no
    scale to normalise by), before any trial runs."""
    from xdream import generators
    from xdream.multi import shared_scorer, unit_labels, units_of
    from xdream.references import ReferenceImages

    units = units_of(cfg)
    multi = shared_scorer(cfg, units)
    gen = generators.make(cfg.generator["name"], **_params(cfg.generator))
    refs, _ = ReferenceImages(gen.output_size[0], seed=0).sample(n_references)
    acts = np.asarray(multi.activations(refs), dtype=np.float64)
    labels = unit_labels(units, multi.units)  # as units.csv names them (the position read)
    out = {
        label: Normaliser(float(m), float(t))
        for label, m, t in zip(labels, acts.mean(axis=0), acts.max(axis=0))
    }
    flat = [
        label for label, n in out.items() if not (np.isfinite(n.top - n.mean) and n.top > n.mean)
    ]
    if flat:
        shown = ", ".join(f"{label} ({out[label].top:.4g})" for label in flat[:10])
        more = f" and {len(flat) - 10} more" if len(flat) > 10 else ""
        raise ConfigError(
            f"cannot tune on {len(flat)} unit(s) that give each of the {n_references} reference "
            f"crops the same response, so their scores have no scale to normalise by: "
            f"{shown}{more}. Remove them from [[targets]], or raise [tune] references."
        )
    return out


def _params(section: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k != "name"}


def normalised_scores(folder: Path, norm: Mapping[str, Normaliser]) -> dict[str, float]:
    """Each unit's normalised best clean score (:class:`Normaliser`), from a many-unit run
    folder's ``units.csv``."""
    import csv

    from xdream.records import read_summary

    with open(folder / "units.csv") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for row in rows:
        label = row["unit"]
        summary = read_summary(folder / row["folder"])
        best = summary.get("best_clean_score")
        out[label] = norm[label](float(best)) if best is not None else float("nan")
    return out


def objective(
    cfg: Any,
    section: TuneSection,
    values: Mapping[str, Any],
    out: Path,
    norm: Mapping[str, Normaliser],
    *,
    resume: bool = False,
) -> tuple[float, dict[str, float]]:
    """Median over units of the seed-averaged normalised score for optimiser ``values``.

    ``resume``: ``out`` holds an interrupted trial's seeds, which continue from their
    checkpoints (as ``xdream resume`` does; a seed not started yet starts)."""
    from xdream import config as config_mod
    from xdream.multi import MultiExperiment

    per_unit: dict[str, list[float]] = {}
    for seed in section.seeds:
        data = cfg.to_dict()
        # without the keys set from the budget: a tuned population size sets them anew
        data["optimizer"] = {**cfg.given_optimizer(), **values}
        data["experiment"]["seed"] = seed
        trial_cfg = config_mod.from_dict(data)
        folder = out / f"seed{seed}"
        if resume:
            MultiExperiment.from_config(trial_cfg, folder, resume=True).run()
        else:
            MultiExperiment.from_config(trial_cfg, folder).run()
        for label, v in normalised_scores(folder, norm).items():
            per_unit.setdefault(label, []).append(v)
    means = {label: float(np.mean(v)) for label, v in per_unit.items()}
    return float(statistics.median(means.values())), means


def trial_seed(sampler_seed: int, number: int) -> int:
    """The seed of the sampler that proposes trial ``number`` of a study."""
    return int(np.random.SeedSequence([sampler_seed, number]).generate_state(1)[0])


def proposal_index(trials: Any, number: int) -> int:
    """The number the sampler of trial ``number`` is seeded with: the trial's number less the
    retries of interrupted trials before it (a retry takes the index of the trial it retries),
    so an interrupted study proposes the trials an uninterrupted one does."""
    by_number = {t.number: t for t in trials}
    seen: set[int] = set()
    while number in by_number and number not in seen:
        seen.add(number)
        retried = by_number[number].user_attrs.get("retry_of")
        if not isinstance(retried, int) or isinstance(retried, bool):
            break
        number = retried
    retries = sum(1 for t in trials if t.number < number and "retry_of" in t.user_attrs)
    return number - retries


def make_sampler(optuna: Any, sampler_seed: int) -> Any:
    """A TPE sampler seeded anew for each trial from ``sampler_seed`` and the trial's number
    (:func:`proposal_index`).

    One seed for the whole run proposed the same start-up trials each time a study was
    continued, and on every machine tuning it together; trial numbers are unique in a study, so
    each trial gets its own proposals while a fresh study stays reproducible."""

    class PerTrialTPE(optuna.samplers.BaseSampler):  # type: ignore[misc]
        def __init__(self) -> None:
            self.inner = optuna.samplers.TPESampler(seed=trial_seed(sampler_seed, 0))

        def before_trial(self, study: Any, trial: Any) -> None:
            index = proposal_index(study.get_trials(deepcopy=False), trial.number)
            self.inner = optuna.samplers.TPESampler(seed=trial_seed(sampler_seed, index))
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(
            self, study: Any, trial: Any, param_name: str, param_distribution: Any
        ) -> Any:
            return self.inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return PerTrialTPE()


def check_study_name(name: str) -> None:
    """Refuse a study name that cannot name the folder ``OUT/study-NAME``."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise XDreamError(
            f"study name {name!r} cannot name its folder (OUT/study-NAME): give --study letters, "
            "digits, '.', '_' or '-', starting with a letter or digit, at most 100 characters"
        )


def study_folder(out: str | Path, name: str = DEFAULT_STUDY) -> Path:
    """Where study ``name`` keeps its trial folders ``trialNNNN`` and its ``tune.csv``:
    ``out`` itself for the default study (:data:`DEFAULT_STUDY`), ``out/study-NAME`` for
    another, so that the studies of one ``--out`` never share a trial folder or a table."""
    return Path(out) if name == DEFAULT_STUDY else Path(out) / f"study-{name}"


def _make_out(out: Path) -> list[Path]:
    """Create ``out`` (and check that it can be written, before any trial); one clear line if
    not. Returns the folders made (:func:`xdream.records.make_folder`)."""
    from xdream.records import make_folder

    try:
        return make_folder(out, exist_ok=True)
    except OSError as err:
        why = err.strerror or str(err)
        if isinstance(err, (FileExistsError, NotADirectoryError)):
            fix = "a file has that name: give --out a folder"
        elif (out / "tune.db").is_file():
            fix = (
                "make it writable, or copy it to a folder that can be written and give that as "
                "--out (its studies go on there)"
            )
        else:
            fix = "make it writable, or give --out a folder that can be written"
        raise XDreamError(
            f"cannot write into the output folder {str(out)!r} ({why}): {fix}"
        ) from None


@contextlib.contextmanager
def _creation_lock(out: Path) -> Iterator[None]:
    """Hold :data:`LOCK_FILE` in ``OUT`` while the study is opened or created and its config
    checked: two ``xdream tune`` started together on a fresh ``OUT`` created the SQLite tables
    at once, and one failed (``table study_directions already exists``)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock (the retry in run_tune remains)
        yield
        return
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        with contextlib.suppress(OSError):  # a file system without locks: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # frees the lock


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL (``None`` for another database, or SQLite
    in memory)."""
    if not url.startswith("sqlite:"):
        return None
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    except Exception:  # a malformed URL: create_study names it
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).resolve()


def _storage_fix(given: bool) -> str:
    """How to go on where a SQLite database cannot be written."""
    if not given:  # OUT/tune.db
        return (
            "make it writable, or copy the output folder to a folder that can be written and "
            "give that as --out (its studies go on there)"
        )
    return (
        "make it writable, or copy it to a folder that can be written and give --storage "
        "sqlite:///COPY (COPY: the copy's absolute path)"
    )


def _check_sqlite(url: str, given: bool = True) -> None:
    """Refuse a SQLite storage whose database file, or the folder SQLite writes its journal
    into (where the file is made, for a new one), cannot be written, with one line naming it
    and the fix (Optuna said "invalid data in the commit, e.g. exceeding max length", or
    "unable to open database file")."""
    path = sqlite_file(url)
    if path is None:
        return
    folder = path.parent
    if not folder.is_dir():
        why = f"its folder {str(folder)!r} does not exist"
        fix = "make that folder, or give --storage a database in a folder that exists"
    elif path.exists() and not os.access(path, os.W_OK):
        why = "the database file is read-only"
        fix = _storage_fix(given)
    elif not os.access(folder, os.W_OK):
        why = f"its folder {str(folder)!r} cannot be written (SQLite writes its journal there)"
        fix = (
            _storage_fix(given)
            if path.exists()
            else "make it writable, or give --storage a database in a folder that can be written"
        )
    else:
        return
    raise XDreamError(f"cannot write the Optuna storage database {str(path)!r}: {why}: {fix}")


def _sqlite_error(err: BaseException) -> BaseException | None:
    """The ``sqlite3.OperationalError`` behind ``err`` (its ``__cause__``, ``__context__`` or
    SQLAlchemy's ``orig``), if any."""
    import sqlite3

    seen: set[int] = set()
    todo: list[Any] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, sqlite3.OperationalError):
            return e
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]
    return None


def _open_study(optuna: Any, url: str, study_name: str, sampler: Any, *, given: bool = True) -> Any:
    """``optuna.create_study`` (or load), tried again after losing a creation race
    (:data:`RACE_SIGNS`): another process creating the storage's tables or the study at the same
    moment (a shared ``--storage`` that :func:`_creation_lock` does not cover). A SQLite
    database that cannot be written is refused first (:func:`_check_sqlite`); ``given``: the
    URL is ``--storage``'s (else ``OUT/tune.db``)."""
    _check_sqlite(url, given)
    for attempt in range(1, RACE_TRIES + 1):
        try:
            return optuna.create_study(
                storage=url,
                study_name=study_name,
                direction="maximize",
                load_if_exists=True,
                sampler=sampler,
            )
        except Exception as err:  # bad URL, missing driver, unreachable server, a race
            text = str(err)
            if attempt < RACE_TRIES and any(sign in text for sign in RACE_SIGNS):
                time.sleep(0.5 * attempt)  # the other process finishes creating them
                continue
            cause = _sqlite_error(err)
            if "readonly database" in text or (
                cause is not None
                and any(s in str(cause) for s in ("readonly database", "unable to open"))
            ):
                how = f" ({cause})" if cause is not None else ""
                text = f"the database file or its folder is read-only{how}: {_storage_fix(given)}"
            raise XDreamError(f"cannot open the Optuna storage {url!r}: {text}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def run_tune(
    cfg: Any,
    section: TuneSection,
    out: str | Path,
    *,
    storage: str | None = None,
    study_name: str = DEFAULT_STUDY,
    trials: int | None = None,
    console: Any = None,
) -> Any:
    """Run trials into the study and return it: ``trials`` more, or (``None``) as many as the
    study lacks of ``[tune] trials`` finished ones (counting those other machines finish
    meanwhile). Trial folders and ``tune.csv`` go to :func:`study_folder`; the table is
    rewritten after each finished trial.

    The study's normalisers and every trial's scorers read one network, built once
    (:func:`xdream.networks.reuse`; a weight file changed on disk meanwhile is read again)."""
    from xdream import networks

    with networks.reuse():
        return _run_tune(cfg, section, out, storage, study_name, trials, console)


def _run_tune(
    cfg: Any,
    section: TuneSection,
    out: str | Path,
    storage: str | None,
    study_name: str,
    trials: int | None,
    console: Any,
) -> Any:
    optuna = _require_optuna()
    if trials is not None and (isinstance(trials, bool) or trials < 1):
        raise XDreamError(f"trials must be an integer >= 1, got {trials!r}")
    check_study_name(study_name)
    out = Path(out).resolve()
    here = study_folder(out, study_name)
    try:
        norm = normalisers(cfg, section.references)  # refuses units it cannot normalise
    except MissingFileError as err:  # a weight file: say where the study's trials found it
        raise MissingFileError(_missing_file_message(err, here)) from None
    made = _make_out(out)
    table = here / "tune.csv"
    url = storage or f"sqlite:///{out / 'tune.db'}"
    try:
        with _creation_lock(out):
            study = _open_study(
                optuna,
                url,
                study_name,
                make_sampler(optuna, section.sampler_seed),
                given=storage is not None,
            )
            _check_objective(study, OBJECTIVE.format(references=section.references), study_name)
            earlier = None if "config" in study.user_attrs else earlier_config(study, section, here)
            check_config(study, fingerprint(cfg, section), study_name, console, earlier, here)
        here.mkdir(exist_ok=True)
    except XDreamError:
        if made:  # a folder made for this call goes again, if nothing else was written into it
            from xdream.records import remove_empty

            with contextlib.suppress(OSError):
                (out / LOCK_FILE).unlink()
            remove_empty(made)
        raise
    except OSError as err:
        raise XDreamError(
            f"cannot write into {str(err.filename or here)!r} ({err.strerror or err}): make it "
            "writable, or give --out another folder"
        ) from None

    fixed = fingerprint(cfg, section)["optimizer"]  # the given keys not searched

    def run_trial(trial: Any) -> float:
        attrs = trial.user_attrs  # a retry's were given when it was enqueued
        resume = _resume_folder(attrs, here)
        folder = resume or here / f"trial{trial.number:04d}"
        for key, value in {
            "folder": folder.relative_to(here).as_posix(),
            "fixed_params": fixed,
            **this_process(),
        }.items():
            trial.set_user_attr(key, value)  # before any work: a kill leaves them to find
        if console is not None and "retry_of" in attrs:
            how = (
                "in a new folder (it ran on another host)"
                if resume is None
                else f"resuming {folder}"
                if resume.exists()
                else f"afresh in {folder} (its folder is not in this study's folder)"
            )
            console.print(
                f"trial {trial.number}: runs interrupted trial {attrs['retry_of']} again, {how}",
                highlight=False,
                markup=False,
            )
        try:
            values = suggest(trial, section.params)
            _write_trials(study, table)  # a kill leaves the trial it was running in the table
            value, per_unit = objective(
                cfg, section, values, folder, norm, resume=resume is not None
            )
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM / SIGHUP (cli.Terminated)
            with contextlib.suppress(Exception):
                trial.set_user_attr("interrupted", f"interrupted ({err or 'Ctrl-C'})")
                _enqueue_retry(
                    study, trial.number, dict(trial.params), folder.relative_to(here).as_posix()
                )
            optuna.logging.set_verbosity(optuna.logging.ERROR)  # not Optuna's traceback
            raise
        trial.set_user_attr("normalised_scores", per_unit)
        if console is not None:
            console.print(
                f"trial {trial.number}: median normalised score {value:.4g} with {values}",
                highlight=False,
                markup=False,
            )
        return value

    def write_table(study: Any, trial: Any) -> None:  # after each finished trial
        _write_trials(study, table)

    recover_interrupted(study, console, here)
    complete = (optuna.trial.TrialState.COMPLETE,)
    finished = len(study.get_trials(deepcopy=False, states=complete))
    callbacks: list[Any] = [write_table]
    if trials is None:  # up to [tune] trials finished ones, whichever machine finishes them
        trials = max(0, section.trials - finished)
        callbacks.append(optuna.study.MaxTrialsCallback(section.trials, states=complete))
    if trials == 0 and console is not None:
        console.print(
            f"study {study_name!r} holds {finished} finished trials ([tune] trials = "
            f"{section.trials}): none to run (--trials N runs N more)",
            highlight=False,
            markup=False,
        )
    verbosity = optuna.logging.get_verbosity()
    try:
        if trials > 0:
            study.optimize(run_trial, n_trials=trials, catch=(XDreamError,), callbacks=callbacks)
    except BaseException:
        with contextlib.suppress(Exception):  # the table of what the study holds now
            _write_trials(study, table)
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)
    _write_trials(study, table)
    return study


def this_process() -> dict[str, Any]:
    """The user attributes that name the process running a trial: ``host``, ``pid`` and
    ``process_start`` (boot and start time, where the system tells: a pid used again by another
    process, or after a reboot, is not taken for the trial's)."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": _started(os.getpid()),
    }


def _started(pid: int) -> str | None:
    """``<boot id>:<start time>`` of process ``pid`` (Linux), ``"gone"`` for a zombie, ``None``
    where the system does not say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie or dead: it runs no trial
        return "gone"
    return f"{boot}:{fields[19]}"


def process_gone(attrs: Mapping[str, Any]) -> bool:
    """Whether the process that ``attrs`` (a trial's user attributes, :func:`this_process`)
    name is gone for sure: it ran on this host, and no process has its pid, or the one that
    has it started at another time. A trial of another host, or of an unnamed process, is
    never taken for gone."""
    pid = attrs.get("pid")
    if attrs.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid() or os.name == "nt":  # os.kill on Windows would end the process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        pass
    now, then = _started(pid), attrs.get("process_start")
    return now == "gone" or (now is not None and then is not None and now != then)


def trial_folder(here: Path, recorded: str) -> Path:
    """Where a trial folder recorded as ``recorded`` is in the study folder ``here`` it is
    continued in: ``here / recorded`` for a relative one (as xdream records them), an absolute
    one inside ``here`` as it is, and one outside (recorded absolute by an earlier xdream, in a
    study folder since moved or copied) by its name in ``here``: a study's trial folders are
    the trial folders of the folder it goes on in, never another's."""
    path = Path(recorded)
    if not path.is_absolute():
        return here / path
    with contextlib.suppress(ValueError):
        path.relative_to(here)
        return path
    return here / path.name


def _resume_folder(attrs: Mapping[str, Any], here: Path) -> Path | None:
    """The folder a retry resumes, in the study folder ``here`` (:func:`trial_folder`): its
    interrupted trial's, where that ran on this host."""
    folder = attrs.get("resume_folder")
    if not isinstance(folder, str) or attrs.get("resume_host") != socket.gethostname():
        return None
    return trial_folder(here, folder)


def _enqueue_retry(study: Any, number: int, params: dict[str, Any], folder: str | None) -> None:
    """Queue trial ``number`` again with its values: the next trial popped resumes ``folder``."""
    attrs: dict[str, Any] = {"retry_of": number, "resume_host": socket.gethostname()}
    if folder is not None:
        attrs["resume_folder"] = folder
    study.enqueue_trial(params, user_attrs=attrs)


def recover_interrupted(study: Any, console: Any = None, here: Path | None = None) -> list[int]:
    """Mark this study's trials whose process is gone ``FAIL`` (``interrupted``) and queue each
    interrupted trial not yet retried again (:func:`_enqueue_retry`); returns their numbers.
    ``here``: the study folder it goes on in, where a retry resumes its trial's folder
    (:func:`trial_folder`).

    A ``RUNNING`` trial of a live process (another ``xdream tune`` on this study) is left to
    it, as is one of another host (its liveness cannot be told from here). Only the process that
    moves a trial from ``RUNNING`` to ``FAIL`` queues it, so two processes starting together
    queue it once. A trial that failed with an error is not retried."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    states = optuna.trial.TrialState
    storage = study._storage
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    queued = []
    for t in trials:
        attrs = t.user_attrs
        if t.state == states.RUNNING and process_gone(attrs):
            how = f"process {attrs['pid']} on {attrs['host']} is gone"
            try:
                storage.set_trial_user_attr(t._trial_id, "interrupted", how)
                if not storage.set_trial_state_values(t._trial_id, states.FAIL):
                    continue
            except UpdateFinishedTrialError:  # another process took it first
                continue
        elif not (t.state == states.FAIL and attrs.get("interrupted")):
            continue
        if t.number in retried:
            continue
        folder = attrs.get("folder") if attrs.get("host") == socket.gethostname() else None
        if not isinstance(folder, str):
            folder = None
        _enqueue_retry(study, t.number, dict(t.params), folder)
        retried.add(t.number)
        queued.append(t.number)
        if console is not None:
            where = ""
            if folder is not None:
                path = trial_folder(here, folder) if here is not None else Path(folder)
                where = f", resuming {path}" if path.exists() else f", afresh in {path}"
            console.print(
                f"trial {t.number} was interrupted ({attrs.get('interrupted') or how}): it runs "
                f"again with the same values{where}",
                highlight=False,
                markup=False,
            )
    return queued


def _check_objective(study: Any, objective: str, name: str) -> None:
    """Store what a trial's value means in the study; refuse a study whose trials were scored
    otherwise (another ``references``, or an xdream that normalised differently)."""
    saved = study.user_attrs.get("objective")
    if saved is None and not study.trials:
        study.set_user_attr("objective", objective)
    elif saved != objective:
        how = saved or "an earlier xdream scored them (best score / best reference response)"
        fix = (
            "put back the [tune] references it was run with, or use another --study (or --out)"
            if saved is not None
            else "continue in another --study (or --out); its trials stay readable in its "
            "tune.csv and storage"
        )
        raise XDreamError(
            f"study {name!r} holds trials scored otherwise ({how}) than this config scores them "
            f"({objective}): their values cannot be compared. To tune on, {fix}."
        )


def fingerprint(cfg: Any, section: TuneSection) -> dict[str, Any]:
    """What a trial's value depends on, as a plain nested dict (JSON): the resolved config
    (:meth:`~xdream.config.Config.to_dict`: units, budget, generator, noise, the optimiser's
    fixed keys, ...) and ``[tune] seeds`` and ``references``. Left out: the keys that may change
    between sessions (:data:`SESSION_KEYS`), the optimiser keys being tuned, ``[optimizer]``
    keys xdream set from the budget, and ``[tune]`` ``trials``, ``sampler_seed`` and
    ``params`` (the search space may change; the values a trial ran are its params)."""
    from xdream.records.files import json_safe

    data = cfg.to_dict()
    data["optimizer"] = {k: v for k, v in cfg.given_optimizer().items() if k not in section.params}
    for key in SESSION_KEYS:
        part, name = key.split(".")
        if isinstance(data.get(part), dict):
            data[part].pop(name, None)
    if data.get("targets"):  # the units by name, for a readable list of changes
        from xdream.multi import Unit

        with contextlib.suppress(TypeError):
            data["targets"] = [Unit(**t).label for t in data["targets"]]
    data["tune"] = {"seeds": list(section.seeds), "references": section.references}
    return dict(json.loads(json.dumps(json_safe(data), sort_keys=True)))


def earlier_config(
    study: Any, section: TuneSection, here: Path
) -> tuple[dict[str, Any], int] | None:
    """The :func:`fingerprint` of the config the study's first finished trial ran under, read
    from its folder's ``config.yaml`` (where the folder is in the study folder ``here``,
    :func:`trial_folder`), with its trial's
    number; ``None`` where no such file can be read. For a study made by an xdream that did not
    store its config. ``[tune] seeds`` are those of the trial's ``seedN`` folders, ``[tune]
    references`` those of ``section`` (they are checked with the objective)."""
    from xdream import config as config_mod

    for t in study.get_trials(deepcopy=False):
        folder = t.user_attrs.get("folder")
        if t.state.name != "COMPLETE" or not isinstance(folder, str):
            continue
        with contextlib.suppress(OSError):
            found = {
                int(p.name[4:]): p
                for p in trial_folder(here, folder).glob("seed*")
                if p.name[4:].isdigit()
            }
            seeds = tuple(sorted(found))
            for seed in seeds:
                try:
                    cfg = config_mod.from_dict(
                        config_mod.read(found[seed] / "config.yaml"), recorded=True
                    )
                except (XDreamError, OSError):
                    continue
                return fingerprint(cfg, dataclasses.replace(section, seeds=seeds)), t.number
    return None


def check_config(
    study: Any,
    config: Mapping[str, Any],
    name: str,
    console: Any = None,
    earlier: tuple[Mapping[str, Any], int] | None = None,
    here: Path | None = None,
) -> None:
    """Store ``config`` (:func:`fingerprint`) in the study's ``config`` user attribute, or
    refuse one that differs from the stored one, naming each changed key (``old -> new``): the
    study's trials ran under another config and their values cannot be compared with this
    one's. A study made by an xdream that did not store it is compared with ``earlier``
    (:func:`earlier_config`, what its first finished trial ran under) where given, and takes
    this config; with a warning where it holds trials and ``earlier`` is unknown. A new path to
    a weight file is no change where it names the file the trials read (the same size and
    fingerprint, as a checkpoint of the study's trial folders in ``here`` records it): the
    study or its weights moved; the new path is stored."""
    from xdream.experiment import (
        READ_AGAIN,
        config_changes,
        files_named,
        moved_files,
        other_files,
        with_notes,
    )

    saved = study.user_attrs.get("config")
    where = ""
    if not isinstance(saved, dict) and earlier is not None:
        saved = dict(earlier[0])
        where = (
            f" (as trial {earlier[1]}'s config.yaml says: this study was made by an earlier "
            "xdream, which did not record its config)"
        )
    if not isinstance(saved, dict):
        if study.trials and console is not None:
            console.print(
                f"warning: study {name!r} was made by an earlier xdream that did not record the "
                f"config its {len(study.trials)} trials ran under, and no trial folder of it "
                "is here to tell: this config is recorded now, and later runs must match it "
                "(if its trials ran under another, tune in another --study)",
                highlight=False,
                markup=False,
            )
        study.set_user_attr("config", dict(config))
        return
    defining, budget = config_changes(saved, dict(config))
    changes = [*defining, *budget]
    weights = [f"{section}.{key}:" for section, key in READ_AGAIN]
    if here is not None and any(c.startswith(tuple(weights)) for c in changes):
        files = _trial_files(study, here)  # a weight file moved: the same file?
        read = files_named(dict(config))
        moved = moved_files(saved, dict(config), files, read)
        defining, budget = config_changes(moved, dict(config))
        defining = with_notes(defining, other_files(files, read, "its trials"))
        if moved != saved and not [*defining, *budget]:
            study.set_user_attr("config", dict(config))
            if console is not None:
                taken = [c for c in changes if c.startswith(tuple(weights))]
                console.print(
                    f"study {name!r}: {'; '.join(taken)} (the same file: same size and "
                    "fingerprint as its trials read)",
                    highlight=False,
                    markup=False,
                )
        changes = [*defining, *budget]
    if changes:
        raise XDreamError(
            f"study {name!r} holds trials run under another config{where}, whose values cannot "
            f"be compared with this one's: {'; '.join(changes)}. To tune on in this study, put "
            "back the old values; to tune this config, use another --study NAME (its trials and "
            "tune.csv go to OUT/study-NAME) or another --out. What may change between "
            "sessions of a study: the device, batch sizes, record_interval, tf32, the rig's "
            "waiting, [tune] trials and sampler_seed, and the [tune.params] searched."
        )
    if "config" not in study.user_attrs:
        study.set_user_attr("config", dict(config))


def _missing_file_message(err: MissingFileError, here: Path) -> str:
    """The missing-file error ``err`` of a study tuned on in the study folder ``here``,
    followed by the weight files its trials read (their checkpoints record them) and how to
    give the new path of one."""
    from xdream.experiment import files_hint, files_recorded, with_hint

    checkpoints = sorted(here.glob("trial*/seed*/checkpoint.pkl"))  # a seed's run of one unit
    checkpoints += sorted(here.glob("trial*/seed*/units/*/checkpoint.pkl"))  # or of many
    hint = files_hint(
        files_recorded(checkpoints),
        read_by="The study's trials",
        again="tune from the directory the study was started in",
        config="the tune config file: the study takes it (and keeps the new path)",
        recorded_by="its trials",
    )
    return with_hint(err, hint)


def _trial_files(study: Any, here: Path) -> dict[str, Any] | None:
    """The weight files (:func:`xdream.experiment.files_read`) that a checkpoint of one of
    ``study``'s trial folders in ``here`` records; None where none can be read."""
    from xdream.records import load_checkpoint

    for t in study.get_trials(deepcopy=False):
        folder = t.user_attrs.get("folder")
        if not isinstance(folder, str):
            continue
        trial = trial_folder(here, folder)
        with contextlib.suppress(OSError):  # a seed's run of one unit, or of many
            checkpoints = [*trial.glob("seed*/checkpoint.pkl")]
            checkpoints += trial.glob("seed*/units/*/checkpoint.pkl")
            for checkpoint in sorted(checkpoints):
                try:
                    files = load_checkpoint(checkpoint).get("files")
                except XDreamError:
                    continue
                if isinstance(files, dict) and files:
                    return files
    return None


def trial_values(study: Any, trial: Any, searched: Iterable[str] | None = None) -> dict[str, Any]:
    """The values ``trial`` ran with of every key any trial of ``study`` searched: its own
    params, and, for a key searched only in other sessions of the study (moved between
    ``[tune.params]`` and ``[optimizer]``), the value the trial had fixed (its
    ``fixed_params`` user attribute, else the study's recorded ``config``). ``searched``: those
    keys, where the caller has them."""
    if searched is None:
        searched = dict.fromkeys(k for t in study.get_trials(deepcopy=False) for k in t.params)
    given = trial.user_attrs.get("fixed_params")
    if not isinstance(given, dict):
        config = study.user_attrs.get("config")
        given = config.get("optimizer", {}) if isinstance(config, dict) else {}
    values = {k: given[k] for k in searched if k not in trial.params and k in given}
    return {**values, **trial.params}


def trial_table(study: Any, folder: Path | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and columns of ``tune.csv`` (documented in docs/records.md): one row per trial
    of the study. ``folder``: the table's folder, which trial folders inside it are named
    relative to."""
    trials = study.trials
    searched = list(dict.fromkeys(k for t in trials for k in t.params))
    retried_as = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    rows = []
    for t in trials:
        start, end = t.datetime_start, t.datetime_complete
        path = t.user_attrs.get("folder")
        if isinstance(path, str) and folder is not None and Path(path).is_absolute():
            if (folder / Path(path).name).exists():  # an earlier xdream's, of a moved folder
                path = trial_folder(folder, path).relative_to(folder).as_posix()
            else:  # elsewhere (another machine): as recorded
                with contextlib.suppress(ValueError):
                    path = Path(path).relative_to(folder).as_posix()
        scores = t.user_attrs.get("normalised_scores") or {}
        how = t.user_attrs.get("interrupted")
        if isinstance(how, str) and not how.startswith("interrupted ("):  # its process was gone
            end = None  # when it was found (recover_interrupted), not when it stopped
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                **trial_values(study, t, searched),
                "datetime_start": start.isoformat(timespec="seconds") if start else None,
                "duration_s": round((end - start).total_seconds(), 3) if start and end else None,
                "folder": path,
                **{f"norm_{unit}": v for unit, v in scores.items()},
                "retry_of": t.user_attrs.get("retry_of"),
                "retried_as": retried_as.get(t.number),
            }
        )
    fixed = ["number", "state", "value", "datetime_start", "duration_s", "folder"]
    params = [k for k in searched if k not in fixed]
    units = [k for k in dict.fromkeys(k for r in rows for k in r) if k.startswith("norm_")]
    columns = [*fixed[:3], *params, *fixed[3:], *units, "retry_of", "retried_as"]
    return rows, columns


def _write_trials(study: Any, path: Path) -> None:
    """Write ``tune.csv`` atomically (a reader never sees half a table)."""
    from xdream.multi import write_table

    rows, columns = trial_table(study, path.parent)
    write_table(path, rows, columns)


def cmd_tune(args: argparse.Namespace, console: Any) -> int:
    """Handler of ``xdream tune``."""
    from xdream.cli import _default_out

    cfg, section = load(args.config)
    _require_optuna()
    check_study_name(args.study)
    out = Path(args.out) if args.out else _default_out(Path(args.config).stem + "-tune")
    given = "".join(
        f" --{key} {value}"
        for key, value in (("storage", args.storage), ("study", args.study))
        if value is not None and not (key == "study" and value == DEFAULT_STUDY)
    )
    args.continue_with = (
        f"`xdream tune {args.config} --out {out}{given}` (its finished trials stay in the "
        "study; the trial that was running resumes)"
    )
    study = run_tune(
        cfg,
        section,
        out,
        storage=args.storage,
        study_name=args.study,
        trials=args.trials,
        console=console,
    )
    done = [t for t in study.trials if t.value is not None]
    if not done:
        console.print("no trial finished", highlight=False)
        return 1
    console.print(
        f"best median normalised score {study.best_value:.4g} with "
        f"{trial_values(study, study.best_trial)} "
        f"({len(done)} trial{'' if len(done) == 1 else 's'} in study {args.study!r}); table: "
        f"{study_folder(out.resolve(), args.study) / 'tune.csv'}",
        highlight=False,
        markup=False,
    )
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``xdream tune``."""
    from xdream.cli import at_least

    p = subparsers.add_parser("tune", help="tune an optimiser's hyperparameters with Optuna")
    p.add_argument(
        "config", help="experiment config ([target] or [[targets]]) with a [tune] section"
    )
    p.add_argument("--out", help="output folder (default: xdream-runs/<time>-<name>-tune)")
    p.add_argument(
        "--storage",
        help="database URL for the study (default: sqlite:///OUT/tune.db); any SQLAlchemy URL",
    )
    p.add_argument(
        "--study",
        default=DEFAULT_STUDY,
        help=f"study name (default {DEFAULT_STUDY!r}, whose trials go to OUT; another NAME's go "
        "to OUT/study-NAME): letters, digits, '.', '_', '-'",
    )
    p.add_argument(
        "--trials",
        type=at_least(1),
        help="run this many more trials now, however many the study holds (default: as many as "
        "the study lacks of [tune] trials finished ones)",
    )
    p.set_defaults(func=cmd_tune)
