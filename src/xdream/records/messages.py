"""The advice that xdream's messages give: how to continue a run (:func:`continue_how`:
``xdream resume``, or what to do for a run built in Python or one whose ``config.yaml`` is
gone), and what can be done about an unreadable ``record.h5`` (:func:`rebuild_advice`)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

from xdream.errors import RecordUnreadableError, SummaryUnreadableError
from xdream.records.folder import RunFolder
from xdream.records.layout import UNREADABLE


def unreadable(run: Path, err: BaseException) -> RecordUnreadableError:
    """The error for a ``record.h5`` that h5py failed to read with ``err``: what failed and
    how to recover."""
    return RecordUnreadableError(
        f"cannot read the records in {str(run)!r} ({type(err).__name__}: {err}). "
        f"{rebuild_advice(run)}."
    )


PYTHON_CONTINUE = (
    "`e = Experiment(...); e.restore(); e.run()` in Python with the objects it was built with "
    "(it was built in Python: it has no config.yaml for xdream resume)"
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
        f"xdream.config.dump_yaml(xdream.records.read({str(run)!r}).config, "
        f"{str(Path(run) / 'config.yaml')!r}) writes it back), then xdream resume {run}"
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
                "`e = Experiment(...); e.restore(); e.run()` in Python with the objects it was "
                "built with for a run built in Python; for one made from a config whose "
                "config.yaml is gone, put back the resolved config.yaml it was started with "
                f"(a backup's), then `xdream resume {run}`"
            )
        return f"If the run was killed, `xdream resume {run}` rebuilds record.h5 from its journal"
    from xdream.records.reading import read_summary  # which imports this module

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
