"""A sweep's ``sweep.csv`` and a tuning study's ``tune.csv``, read for a folder's page, and the
table of a study's trials."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdream.report.page import _num

SWEEP_TABLE = "sweep.csv"
"""A sweep folder's table of its planned tasks (:func:`xdream.sweep.run_sweep`)."""
TUNE_TABLE = "tune.csv"
"""A tuning study's table of its trials (:func:`xdream.tune.run_tune`): in the tune folder for
the default study, in ``study-NAME/`` for study NAME."""
_TRIAL_COLUMNS = ("number", "state", "value")
_TRIAL_EXTRAS = ("folder", "retry_of", "retried_as")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows of a CSV table; none where it cannot be read (a table being
    rewritten is replaced whole, so a failed read is a missing or damaged file)."""
    import csv

    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = [{k: v or "" for k, v in row.items() if k is not None} for row in reader]
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error):
        return [], []


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _int(text: Any) -> int | None:
    value = _float(text)
    return int(value) if value is not None and value == int(value) else None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


@dataclass
class Study:
    """A tuning study found in a report's folder: its ``tune.csv``, read."""

    label: str  # "" for the default study, else its folder (study-NAME)
    table: Path
    columns: list[str]
    rows: list[dict[str, str]]
    folders: dict[int, Path]  # trial number: its folder (resolved)

    def trial_of(self, run: Path) -> int | None:
        """The trial whose folder holds ``run`` (the last one, for a retry that resumed the
        folder of the trial it retried)."""
        found = [n for n, f in self.folders.items() if _inside(run, f)]
        return max(found) if found else None


def _trial_folders(table: Path, rows: Sequence[dict[str, str]]) -> dict[int, Path]:
    """Each trial's folder: its ``folder`` column where the table has one (relative to the
    table's folder, or absolute; an absolute one by its name under the table's folder where
    that exists: the study's folder was moved or copied, and its runs are those beside the
    table), else ``trialNNNN`` beside the table, or for a retry without its own folder the
    folder of the trial it retried."""
    here = table.parent.resolve()
    folders: dict[int, Path] = {}
    for row in sorted(rows, key=lambda r: _int(r.get("number")) or 0):
        number = _int(row.get("number"))
        if number is None:
            continue
        named = row.get("folder", "")
        folder = here / f"trial{number:04d}"
        if named:
            path = Path(named)
            folder = path.resolve() if path.is_absolute() else (here / path).resolve()
            if path.is_absolute() and (here / path.name).exists():
                folder = here / path.name  # the study's folder was moved or copied
        else:
            retried = _int(row.get("retry_of"))
            if not folder.exists() and retried is not None and retried in folders:
                folder = folders[retried]
        folders[number] = folder
    return folders


def find_studies(root: Path) -> list[Study]:
    """The tuning studies whose ``tune.csv`` is in ``root`` or in ``root/study-*/``. The one in
    ``root`` is the default study, or where ``root`` is itself a study's folder (``study-NAME``,
    without the ``tune.db`` that a tune folder holds) study NAME."""
    tables = [root / TUNE_TABLE, *sorted(root.glob(f"study-*/{TUNE_TABLE}"))]
    own = root.resolve().name
    if not own.startswith("study-") or (root / "tune.db").exists():
        own = ""
    studies = []
    for table in tables:
        if not table.is_file():
            continue
        columns, rows = _read_csv(table)
        label = own if table.parent == root else table.parent.name
        studies.append(Study(label, table, columns, rows, _trial_folders(table, rows)))
    return studies


def _trials_table(study: Study, root: Path, dest: Path) -> str:
    """The trials of ``study``: number (linking to its folder), state, value, the tuned
    parameters, then the table's other columns (whatever ``tune.csv`` holds)."""
    columns = [c for c in study.columns if c not in (*_TRIAL_COLUMNS, "folder")]
    known = {"datetime_start", "datetime_complete", "duration", *_TRIAL_EXTRAS}
    params = [c for c in columns if c not in known and not c.startswith(("norm_", "duration"))]
    rest = [c for c in columns if c not in params]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ("trial", "state", "value", *params))
    head += "".join(f"<th>{html.escape(c)}</th>" for c in rest)
    rows = []
    for row in study.rows:
        number = _int(row.get("number"))
        folder = study.folders.get(number) if number is not None else None
        text = html.escape(row.get("number", ""))
        if folder is not None and folder.is_dir() and _inside(folder, root.resolve()):
            rel = folder.relative_to(root.resolve()).as_posix()
            text = f'<a href="{html.escape(_link(rel, dest, root))}">{text}</a>'
        cells = [f'<td data-value="{"" if number is None else number}">{text}</td>']
        cells.append(f"<td>{html.escape(row.get('state', ''))}</td>")
        for name in ("value", *params, *rest):
            value = row.get(name, "")
            number_value = _float(value)
            cells.append(
                _num(number_value)
                if number_value is not None and name not in ("datetime_start", "datetime_complete")
                else f"<td>{html.escape(value)}</td>"
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="sortable trials"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _link(rel: str, dest: Path, root: Path) -> str:
    """A folder of ``root`` as the page in ``dest`` links to it (relative where the page is in
    ``root``; a page written elsewhere links to the folder's absolute path)."""
    if dest.resolve() == root.resolve():
        return rel + "/"
    return (root.resolve() / rel).as_uri() + "/"


def sweep_plan(root: Path) -> list[dict[str, str]]:
    """The rows of ``root/sweep.csv`` (a sweep's planned tasks), or none."""
    return _read_csv(root / SWEEP_TABLE)[1] if (root / SWEEP_TABLE).is_file() else []
