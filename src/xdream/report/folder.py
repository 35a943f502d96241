"""A folder of experiments' page (any depth, a sweep's or a tuning study's included), and
:func:`write_report`, which writes the page of an experiment or of a folder."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xdream import records
from xdream.errors import RecordUnreadableError, SummaryUnreadableError, XDreamError
from xdream.report.describe import target_headings
from xdream.report.experiment import experiment_report
from xdream.report.figures import figure_formats as _figure_formats
from xdream.report.page import REPORT_FILE, _page, _write, check_out, make_out
from xdream.report.state import _rebuild_hint, continue_with, find_runs, run_state
from xdream.report.studies import SWEEP_TABLE, _trials_table, find_studies, sweep_plan
from xdream.report.tables import _group_table, _optimizer_spec, _run_table, _state_counts


def folder_report(
    root: str | Path,
    *,
    max_tiles: int = 40,
    refresh: int = 10,
    run_reports: bool = True,
    out: str | Path | None = None,
    figure_formats: str | Sequence[str] = (),
) -> Path:
    """Write ``root/report.html`` (or ``out/report.html``, each run's own report then in
    ``out/<run's folder>/``) comparing every experiment under ``root``: for a sweep folder also
    the tasks of its ``sweep.csv`` without a record, for a tune folder the trials of its
    ``tune.csv``. ``figure_formats``: each run's own report writes its score figure also in
    those formats (the folder's page has tables, no plot), so ``run_reports=False`` refuses
    any."""
    root = Path(root)
    formats = _figure_formats(figure_formats)
    if formats and not run_reports:
        raise XDreamError(
            f"figures as {', '.join(formats)} are the score figures of each experiment's own "
            "report, which --no-run-reports leaves unwritten (the folder's page has no plot); "
            "drop one of the two options"
        )
    dest = Path(out) if out is not None else root
    runs = find_runs(root)
    plan = sweep_plan(root)
    studies = find_studies(root)
    if not runs and not plan:
        raise XDreamError(
            f"{str(root)!r} holds no experiment (no record.h5 in it or below); give an "
            "experiment folder or a folder of them"
        )
    if out is not None:
        check_out(root, dest)
    make_out(dest, out is not None)
    entries: list[dict[str, Any]] = []
    for run in runs:
        problem = None
        rel = run.relative_to(root).as_posix()
        try:
            summary = records.read_summary(run)
        except SummaryUnreadableError:  # one damaged summary does not hide the others
            summary = {"status": "summary unreadable"}
            problem = f"summary.json unreadable: {continue_with(run)} writes it again"
        if run_reports and problem is None:
            try:
                experiment_report(
                    run,
                    max_tiles=max_tiles,
                    refresh=refresh,
                    out=None if out is None else dest / rel,
                    figure_formats=formats,
                )
            except RecordUnreadableError as err:  # one damaged run does not hide the others
                problem = f"record unreadable ({err.__cause__.__class__.__name__}): " + (
                    "being written, try again"
                    if run_state(summary, run) == "running"
                    else _rebuild_hint(run)
                )
        trial = None
        for study in studies:
            number = study.trial_of(run.resolve())
            if number is not None:
                trial = (study.label, number)
        spec = _optimizer_spec(run, summary)
        entries.append(
            {
                "run": run,
                "rel": rel,
                "target": json.dumps(_grouped(summary.get("target")), sort_keys=True),
                "summary": summary,
                "problem": problem,
                "state": run_state(summary, run),
                "ratio": records.relative_to_references(summary),
                "optimizer": json.dumps(spec, sort_keys=True),
                "trial": trial,
            }
        )
    # a sweep's tasks without a record: failed before recording anything, started (a worker
    # made its folder) but nothing recorded yet, or not started
    recorded = {e["rel"] for e in entries}
    unit_target: dict[str, str] = {}  # a sweep unit's target, as its recorded tasks give it
    missing: list[dict[str, Any]] = []
    for row in plan:
        folder = row.get("folder", "").strip("/")
        mine = [r for r in recorded if r == folder or r.startswith(folder + "/")]
        if folder and mine:
            target = next(e["target"] for e in entries if e["rel"] == mine[0])
            unit_target.setdefault(row.get("unit", ""), target)
        else:
            missing.append({"row": row, "rel": folder or "?", "state": _unrecorded(root, row)})
    for m in missing:
        m["target"] = unit_target.get(m["row"].get("unit", ""))

    running = any(e["state"] == "running" for e in entries)
    planned = len(entries) + len(missing)
    counted = f"{len(entries)} of {planned}" if missing else f"{len(entries)}"
    states = [e["state"] for e in entries] + [m["state"] for m in missing]
    parts = [
        f"<h1>xdream: {counted} experiments</h1>",
        f"<p>Folder <code>{html.escape(str(root.resolve()))}</code>: {_state_counts(states)}"
        + (
            f" ({len(missing)} planned in {SWEEP_TABLE} have no record; they are listed "
            "in the run tables with their error, as started with nothing recorded yet, as "
            "finished with their record.h5 missing, or as not started)"
            if missing
            else ""
        )
        + ".</p>",
        "<p>Click a column to sort. The statistics per optimiser (median, mean and sd of the "
        "best score, median noise-free best / ref) are over the <em>finished</em> runs only: "
        "<em>finished / all</em> counts them against every run of the row, and the runs left "
        "out (running, stopped, failed) are in the run table. <em>sd best</em> is the sample "
        "standard deviation (n - 1 in the denominator), n/a for fewer than two finished "
        "runs. Runs are grouped by their optimiser with every hyperparameter (a name is "
        "followed by the values where runs of that optimiser differ)"
        + (", and in a tuning study by trial" if studies else "")
        + ". <em>noise-free best / ref</em> is the best noise-free score of an evolved image "
        "over the best noise-free score of a reference image (empty where that is not "
        "positive); <em>best</em> and <em>best reference</em> are the scores as the optimiser "
        "received them, noise included, so with a noise model their ratio differs.</p>",
    ]
    for study in studies:
        name = f"study {study.label[len('study-') :]!r}" if study.label else "the default study"
        parts.append(
            f"<h2>Trials of {html.escape(name)} "
            f"(<code>{html.escape(study.table.relative_to(root).as_posix())}</code>)</h2>"
        )
        parts.append(_trials_table(study, root, dest))
    tune = bool(studies)
    headings = target_headings({e["target"]: json.loads(e["target"]) for e in entries})
    sections: list[tuple[str | None, str]] = sorted(headings.items(), key=lambda i: i[1])
    if any(m["target"] is None for m in missing):
        sections.append((None, "Planned experiments of units with none recorded"))
    for target, heading in sections:
        mine = [e for e in entries if e["target"] == target]  # one target, every field alike
        absent = [m for m in missing if m["target"] == target]
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if mine:
            parts.append(_group_table(mine, absent, tune))
        parts.append(_run_table(mine, absent, tune, run_reports, dest))
    page = dest / REPORT_FILE
    _write(
        page,
        _page(f"xdream: {root.name}", "\n".join(parts), running, refresh, root),
        out is not None,
    )
    return page


GROUPED_WITHOUT = ("noise_seed", "preprocess")
"""Keys of a summary's target that the folder table does not group runs by: the noise seed
differs between the seeds of one unit as the optimiser's seed does, and a unit's
preprocessing, which follows from its network, was not recorded by runs of an earlier xdream."""


def _grouped(target: Any) -> Any:
    """A summary's target as the runs are grouped by: without :data:`GROUPED_WITHOUT` and keys
    whose value is ``None`` (``module_sha256`` of a network read from its weight file), which
    runs of an earlier xdream did not record."""
    if isinstance(target, dict):
        return {k: v for k, v in target.items() if k not in GROUPED_WITHOUT and v is not None}
    return target


def _unrecorded(root: Path, row: dict[str, str]) -> str:
    """The state of a sweep task without a record: ``failed`` (an error in ``sweep.csv``),
    ``record missing`` (``sweep.csv`` says it finished: its ``record.h5`` was moved or
    deleted since), ``started`` (not ended, as its ``state`` says where ``sweep.csv`` has one,
    and a worker made its folder: ``worker.json`` or ``config.yaml``), else ``not started``."""
    if row.get("error") or row.get("state") == "failed":
        return "failed"
    if row.get("state") == "finished":
        return "record missing"
    folder = root / row.get("folder", "").strip("/")
    made = row.get("folder", "").strip("/") and any(
        (folder / name).is_file() for name in ("worker.json", "config.yaml")
    )
    return "started" if made and row.get("state", "pending") == "pending" else "not started"


def write_report(path: str | Path, **options: Any) -> Path:
    """The report of an experiment folder, or of a folder of experiments; returns the page
    (``out=DIR``: written into DIR, not into ``path``)."""
    path = Path(path)
    if not path.is_dir():
        raise XDreamError(f"{str(path)!r} is not a folder; give an experiment's output folder")
    if (path / "record.h5").exists():
        options.pop("run_reports", None)
        return experiment_report(path, **options)
    return folder_report(path, **options)
