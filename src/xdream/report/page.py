"""What every report page shares: the HTML page and its tables, numbers as text, and writing
the page into its folder (atomically, one clear error where the folder cannot be written)."""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xdream import records
from xdream.errors import XDreamError

REPORT_FILE = "report.html"
FIGURES_DIR = "report"


def _cannot_write(folder: Path, err: OSError, out: bool) -> XDreamError:
    """The error for a report that cannot be written into ``folder``: ``out``, a folder given
    as ``--out`` (the advice is then about that folder, not to give ``--out``)."""
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:  # FileExistsError, NotADirectoryError: a file is in the way
        what = "a file has that name" if blocking == folder else f"{str(blocking)!r} is a file"
        fix = (
            "give --out a folder (a new one, or one of its own)"
            if out
            else "move that file away, or give --out DIR to write the report into another folder"
        )
        return XDreamError(f"cannot write the report into {str(folder)!r}: {what}; {fix}")
    fix = (
        "give --out a folder that can be written"
        if out
        else "give --out DIR to write it into another folder"
    )
    return XDreamError(
        f"cannot write the report into {str(folder)!r}: {err.strerror or err}; {fix}"
    )


SOURCE_META = "xdream-report-of"
"""The name of the ``<meta>`` tag of a report page that holds the folder it reports."""
_SOURCE_TAG = re.compile(rf'<meta name="{SOURCE_META}" content="([^"]*)">')


def page_source(page: Path) -> str | None:
    """The folder a report page reports, as its ``<meta>`` tag holds it; None where the page
    has none (not written by this xdream) or cannot be read."""
    try:
        with page.open(encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    found = _SOURCE_TAG.search(head)
    return html.unescape(found.group(1)) if found else None


def check_out(source: str | Path, out: str | Path) -> None:
    """Refuse to write the report of ``source`` into ``out`` where that would replace pages
    of something else: ``out`` is, or holds, an experiment folder (``record.h5``) or a
    sweep's or tuning study's folder, or holds a report page of another folder. ``out`` being
    ``source`` itself, or a folder already holding ``source``'s report, is fine."""
    source, out = Path(source).resolve(), Path(out).resolve()
    if out == source or not out.is_dir():
        return
    why = ""
    found = next(out.rglob("record.h5"), None)
    if found is not None:
        why = (
            "is an experiment's folder"
            if found.parent == out
            else f"holds an experiment ({str(found.parent)!r})"
        )
    for table in ("sweep.csv", "tune.csv"):
        if not why and (out / table).is_file():
            why = f"is a sweep's or tuning study's folder (it holds {table})"
    page = out / REPORT_FILE
    if not why and page.is_file():
        other = page_source(page)
        if other is None:
            why = f"holds a {REPORT_FILE} that does not say which folder it reports"
        elif other != str(source):
            why = f"holds the report of another folder ({other!r})"
    if why:
        raise XDreamError(
            f"--out {str(out)!r} {why}: the report of {str(source)!r} would replace its "
            "pages; give --out a new or empty folder, or one that holds only this folder's report"
        )


def make_out(folder: str | Path, out: bool = True) -> list[Path]:
    """Create the folder a report is written into, with its missing parents, and check that a
    file can be written there (:func:`xdream.records.make_folder`, as ``xdream encode --out``
    does); returns the folders created, deepest first. A folder that cannot be written (a
    read-only file system, no permission) is one clear error, not a traceback, whose advice is
    for a folder given as ``--out`` (``out``) or for the folder reported (not ``out``)."""
    folder = Path(folder)
    try:
        return records.make_folder(folder, exist_ok=True)
    except OSError as err:
        raise _cannot_write(folder, err, out) from None


def _write(path: Path, data: bytes | str, out: bool) -> None:
    """Atomically write a report file (readable by others, as every atomic write is) into the
    folder reported, or into one given as ``--out`` (``out``)."""
    mode = "w" if isinstance(data, str) else "wb"
    try:
        with records.atomic_write(path, mode) as fh:
            fh.write(data)
    except OSError as err:  # a full disk, a folder made read-only meanwhile
        raise _cannot_write(path.parent, err, out) from None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def _num(value: Any, digits: int = 4) -> str:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    return f'<td class="num" data-value="{value if ok else ""}">{_fmt(value, digits)}</td>'


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: middle; }
th { background: #f2f2f2; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #999; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.fig { max-width: 100%; border: 1px solid #ddd; }
img.thumb { width: 64px; height: 64px; image-rendering: auto; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.banner { background: #fff4d6; border: 1px solid #e0c060; padding: 0.5em 0.8em; }
.note { color: #a33; }
"""

_SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.from(body.rows);
      var asc = th.dataset.order !== "asc";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
        if (x === undefined) { x = a.cells[col].textContent; y = b.cells[col].textContent; }
        var nx = parseFloat(x), ny = parseFloat(y);
        var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? r : -r;
      });
      th.dataset.order = asc ? "asc" : "desc";
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _page(title: str, body: str, running: bool, refresh: int, source: Path) -> str:
    """A report page of the folder ``source`` (named in its head: :func:`page_source`)."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="{SOURCE_META}" content="{html.escape(str(source.resolve()))}">',
        f"<title>{html.escape(title)}</title>",
        f'<meta http-equiv="refresh" content="{refresh}">' if running else "",
        f"<style>{_STYLE}</style></head><body>",
    ]
    banner = (
        f'<p class="banner">Run in progress: this page reloads every {refresh} s. Keep '
        "<code>xdream report DIR --watch</code> running to rewrite it each generation.</p>"
        if running
        else ""
    )
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    foot = f"<p><small>Written by xdream report at {stamp}.</small></p>"
    return "\n".join(
        [*head, banner, body, foot, f"<script>{_SORT_SCRIPT}</script>", "</body></html>"]
    )


def _table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"
