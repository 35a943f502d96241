"""The tables of a folder's page, one unit at a time: statistics per optimiser (and trial),
and every run with its status and best image."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from xdream import records
from xdream.report.experiment import best_image_file
from xdream.report.images import _thumb
from xdream.report.page import REPORT_FILE, _fmt, _num
from xdream.report.state import _row_status, resume_folder
from xdream.report.studies import _float, _int


def _best_or_none(value: Any) -> float:
    """A summary's best score for ranking runs: -inf where it has none (0 is a score)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else -np.inf


def _optimizer_spec(run: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The optimiser of ``run`` with every hyperparameter, as its record's configuration
    holds it, else (an unreadable record) as its ``config.yaml`` does; its name alone where
    neither says more."""
    import yaml

    spec: Any = None
    try:
        with h5py.File(run / "record.h5", "r", locking=False) as f:
            config = json.loads(f.attrs.get("config", "{}"))
        spec = config.get("optimizer") if isinstance(config, dict) else None
    except (*records.UNREADABLE, TypeError):
        pass
    if not (isinstance(spec, dict) and "name" in spec):
        try:
            config = yaml.safe_load((resume_folder(run) / "config.yaml").read_text())
            spec = config.get("optimizer") if isinstance(config, dict) else spec
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            pass
    if isinstance(spec, dict) and "name" in spec:
        return spec
    return {"name": spec if isinstance(spec, str) else summary.get("optimizer")}


def optimizer_labels(specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A label per optimiser (keyed by its JSON): its name, followed, where other optimisers
    of the same name differ from it, by the values that tell them apart ("no preset" for a
    value left out)."""
    named = {key: {"name": None, **spec} for key, spec in specs.items()}
    by_name: dict[str, list[str]] = {}
    for key, spec in named.items():
        by_name.setdefault(str(spec["name"]), []).append(key)
    labels = {}
    for name, keys in by_name.items():
        fields = sorted({k for key in keys for k in named[key] if k != "name"})
        differ = [
            k
            for k in fields
            if len({json.dumps(named[key].get(k), sort_keys=True) for key in keys}) > 1
        ]
        for key in keys:
            extra = ", ".join(
                f"no {k}" if named[key].get(k) is None else f"{k} {_fmt(named[key].get(k))}"
                for k in differ
            )
            labels[key] = f"{name} ({extra})" if extra else name
    return labels


def _state_counts(states: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    order = ["finished", "running", "stopped", "failed", "record missing", "started", "not started"]
    ranked = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    return ", ".join(f"{counts[s]} {_STATE_TEXT.get(s, s)}" for s in ranked)


_STATE_TEXT = {
    "started": "started (nothing recorded yet)",
    "record missing": "finished with their record.h5 missing",
}


def _trial_text(trial: tuple[str, int] | None) -> str:
    if trial is None:
        return ""
    label, number = trial
    return f"{label[len('study-') :]} {number}" if label else str(number)


def _group_table(mine: list[dict[str, Any]], absent: list[dict[str, Any]], tune: bool) -> str:
    """One unit's table per optimiser (and generator, and trial): statistics over the finished
    runs, with how many of the row's runs finished."""
    full: dict[str, set[str]] = {}  # optimiser name: the configurations known in full
    for e in mine:
        spec = json.loads(e["optimizer"])
        if len(spec) > 1:
            full.setdefault(str(spec["name"]), set()).add(e["optimizer"])
    for e in mine:  # a run known by name alone: with its one namesake known in full
        name = str(json.loads(e["optimizer"])["name"])
        if e["optimizer"] == json.dumps({"name": name}) and len(full.get(name, ())) == 1:
            e["optimizer"] = next(iter(full[name]))
    labels = optimizer_labels({e["optimizer"]: json.loads(e["optimizer"]) for e in mine})
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for e in mine:
        key = (
            (e["trial"] or ("", -1)) if tune else ("", -1),
            labels[e["optimizer"]],
            str(e["summary"].get("generator")),
        )
        groups.setdefault(key, []).append(e)
    unrecorded: dict[tuple[Any, ...], int] = {}
    for m in absent:  # a sweep task: its optimiser's row, by name (a sweep names each once)
        name = m["row"].get("optimizer", "")
        key = next(  # a group made for an earlier absent task has no run to name it
            (
                k
                for k in sorted(groups)
                if groups[k] and json.loads(groups[k][0]["optimizer"])["name"] == name
            ),
            (("", -1), name, ""),
        )
        groups.setdefault(key, [])
        unrecorded[key] = unrecorded.get(key, 0) + 1
    rows = []
    for key, members in sorted(groups.items()):
        trial = _trial_text(None if key[0][1] < 0 else key[0])
        opt, gen = key[1], key[2]
        done = [m for m in members if m["state"] == "finished"]
        total = len(members) + unrecorded.get(key, 0)
        bests = np.array(
            [
                m["summary"].get("best_score")
                for m in done
                if _float(m["summary"].get("best_score")) is not None
            ],
            dtype=float,
        )
        ratios = np.array([m["ratio"] for m in done if m["ratio"] is not None], dtype=float)
        top = max(done, key=lambda m: _best_or_none(m["summary"].get("best_score")), default=None)
        thumb = _thumb(best_image_file(top["run"], top["summary"])) if top else ""
        rows.append(
            "<tr>"
            + (f'<td data-value="{html.escape(trial)}">{html.escape(trial)}</td>' if tune else "")
            + f"<td>{html.escape(opt)}</td><td>{html.escape(gen)}</td>"
            f'<td class="num" data-value="{len(done)}">{len(done)} / {total}</td>'
            + _num(float(np.median(bests)) if bests.size else None)
            + _num(float(bests.mean()) if bests.size else None)
            + _num(float(bests.std(ddof=1)) if bests.size > 1 else None)
            + _num(float(np.median(ratios)) if ratios.size else None, 3)
            + f"<td>{thumb}</td></tr>"
        )
    return (
        '<table class="sortable per-optimizer"><thead><tr>'
        + ("<th>trial</th>" if tune else "")
        + "<th>optimiser</th><th>generator</th><th>finished / all</th><th>median best</th>"
        "<th>mean best</th><th>sd best</th><th>median noise-free best / ref</th>"
        "<th>best finished run's image</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _run_table(
    mine: list[dict[str, Any]],
    absent: list[dict[str, Any]],
    tune: bool,
    run_reports: bool,
    dest: Path,
) -> str:
    """One unit's table of every run, and of the sweep's tasks without a record."""
    rows = []
    for e in mine:
        s = e["summary"]
        link = (
            f'<a href="{html.escape(e["rel"])}/{REPORT_FILE}">{html.escape(e["rel"])}</a>'
            if run_reports or (dest / e["rel"] / REPORT_FILE).exists()
            else html.escape(e["rel"])
        )
        trial = _trial_text(e["trial"])
        rows.append(
            f"<tr><td>{link}</td>"
            + (f'<td data-value="{html.escape(trial)}">{html.escape(trial)}</td>' if tune else "")
            + f"<td>{html.escape(str(s.get('optimizer')))}</td>"
            f"<td>{html.escape(str(s.get('generator')))}</td>"
            + _num(s.get("seed"))
            + _num(s.get("best_score"))
            + _num(s.get("first_generation_best_score"))
            + _num(s.get("best_reference_score"))
            + _num(e["ratio"], 3)
            + _num(s.get("generations"))
            + _num(s.get("presentations"))
            + _num(s.get("seconds"))
            + f"<td>{html.escape(e['problem'] or _row_status(e['run'], s))}</td>"
            + f"<td>{_thumb(best_image_file(e['run'], s))}</td></tr>"
        )
    for m in absent:
        row = m["row"]
        error = row.get("error", "")
        status = (
            f"failed before recording: {error}"
            if error
            else "started, nothing recorded yet"
            if m["state"] == "started"
            else "finished, but its record.h5 is missing (moved or deleted)"
            if m["state"] == "record missing"
            else m["state"]
        )
        rows.append(
            f"<tr><td>{html.escape(m['rel'])}</td>"
            + ("<td></td>" if tune else "")
            + f"<td>{html.escape(row.get('optimizer', ''))}</td><td></td>"
            + _num(_int(row.get("seed")))
            + _num(None) * 7
            + f"<td>{html.escape(status)}</td><td></td></tr>"
        )
    return (
        '<table class="sortable runs"><thead><tr><th>run</th>'
        + ("<th>trial</th>" if tune else "")
        + "<th>optimiser</th><th>generator</th><th>seed</th><th>best</th>"
        "<th>first generation</th><th>best reference</th><th>noise-free best / ref</th>"
        "<th>generations</th><th>presentations</th><th>seconds</th><th>status</th>"
        f"<th>best image</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
