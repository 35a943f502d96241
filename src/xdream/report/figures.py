"""Reports people look at: one HTML page per experiment, one per folder of experiments.

``write_report(DIR)`` writes ``DIR/report.html``, a single self-contained file (figures embedded
as PNG data), and the same figures as PNG files in ``DIR/report/`` for slides:

* ``scores.png``: best and mean score per generation, the reference images' scores per
  generation as points and their range as a band;
* ``best_per_generation.png``: the best image of each generation (at most ``max_tiles``,
  evenly spaced, first and last included; the last alone for ``max_tiles=1``);
* ``last_population.png``: the last generation rendered from its recorded codes, best first;
* ``references.png``: the best-scoring reference crops, regenerated from their ids;

plus the configuration and the timings. For a folder holding many experiments (any depth) the
page has, per unit, a table per optimiser (with all its hyperparameters, and generator) whose
statistics are over the finished runs of its seeds, and a table of every run with its best
image, both sortable by clicking a column; each run also gets its own report. A sweep folder's
``sweep.csv`` adds its tasks without a record (failed, or not started) to the run tables; a tune
folder's ``tune.csv`` (``study-NAME/tune.csv`` for study NAME) gives a table of trials, and its
unit tables a row per trial. ``out=`` writes the pages into another folder (a read-only one's).

While ``summary.json`` says ``"running"`` (and its process, or before the first summary the
process holding the folder's lock, is alive) the page reloads itself every ``refresh`` seconds;
``xdream report DIR --watch`` rewrites it until the run ends or stops.
"""

from __future__ import annotations

import base64
import datetime as _dt
import errno
import html
import io
import json
import math
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageDraw

from xdream import records
from xdream.errors import RecordUnreadableError, SummaryUnreadableError, XDreamError
from xdream.generators.base import Generator

REPORT_FILE = "report.html"
FIGURES_DIR = "report"
TILE = 96

PILImage = Image.Image


# --------------------------------------------------------------------------- generator
def load_generator(run: str | Path, record: records.Record | None = None) -> Generator:
    """The generator that rendered a run's codes, rebuilt from its ``config.yaml``.

    Runs built in Python (no ``config.yaml``) are rebuilt from the generator's name and
    parameters in the record. An earlier xdream recorded the generator's name only: such a run's
    generator is rebuilt with default parameters, with a :class:`UserWarning` saying so, and
    refused if its code dimension differs from the recorded codes.
    """
    import dataclasses
    import warnings

    from xdream import generators

    folder = records.RunFolder(run)
    named_only = False
    if folder.config.exists():
        spec = dict(folder.load_config().generator)
    else:
        record = record or records.read(run, codes=False)
        name = record.config.get("generator")
        if isinstance(name, dict):
            spec = dict(name)
        else:
            spec, named_only = {"name": name}, True
        if not isinstance(spec.get("name"), str):
            raise XDreamError(f"{str(folder.path)!r} records no generator name")
    name = spec.pop("name")
    gen = generators.make(name, **spec)
    if folder.record.exists():
        try:
            with h5py.File(folder.record, "r", locking=False) as f:
                code_dim = int(f.attrs["code_dim"])
        except records.UNREADABLE as err:
            raise records.unreadable(folder.path, err) from err
        if code_dim != gen.code_dim:
            raise XDreamError(
                f"{str(folder.path)!r} holds codes of dimension {code_dim}, but generator "
                f"{name!r} with {'default' if named_only else 'the recorded'} parameters takes "
                f"{gen.code_dim}; the run was built in Python with other generator parameters, "
                "which its record does not hold (no config.yaml to rebuild it)"
            )
    if named_only:
        defaults = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(gen.params).items())
        warnings.warn(
            f"{str(folder.path)!r} was built in Python by an earlier xdream, whose record names "
            f"the generator ({name!r}) but not its parameters: its images are drawn with the "
            f"default parameters ({defaults}), which may differ from what the run showed "
            "(best.png and images/ hold what it showed)",
            UserWarning,
            stacklevel=2,
        )
    return gen


# --------------------------------------------------------------------------- images
def to_pil(image: torch.Tensor) -> PILImage:
    """A (3, H, W) image in [0, 1] as an 8-bit PIL image."""
    arr = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5
    return Image.fromarray(arr.astype(np.uint8))


def png_bytes(image: PILImage) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def montage(tiles: Sequence[tuple[PILImage, str]], tile: int = TILE, cols: int = 10) -> PILImage:
    """A grid of square thumbnails, each with a one-line caption under it."""
    cols = max(1, min(cols, len(tiles)))
    rows = max(1, math.ceil(len(tiles) / cols))
    caption_h, pad = 14, 4
    grid = Image.new(
        "RGB", (cols * (tile + pad) + pad, rows * (tile + caption_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(grid)
    for i, (img, caption) in enumerate(tiles):
        r, c = divmod(i, cols)
        x, y = pad + c * (tile + pad), pad + r * (tile + caption_h + pad)
        grid.paste(img.convert("RGB").resize((tile, tile), Image.Resampling.LANCZOS), (x, y))
        draw.text((x + 1, y + tile + 1), caption[: tile // 6], fill=(30, 30, 30))
    return grid


# --------------------------------------------------------------------------- one experiment
@dataclass
class Figure:
    """A figure of the report: its file name, title, PNG bytes and a caption."""

    name: str
    title: str
    png: bytes | None
    caption: str


def _cannot_write(folder: Path, err: OSError) -> XDreamError:
    return XDreamError(
        f"cannot write the report into {str(folder)!r}: {err.strerror or err}; give "
        "--out DIR to write it into another folder"
    )


def make_out(folder: str | Path) -> list[Path]:
    """Create the folder a report is written into, with its missing parents, and check that a
    file can be written there (:func:`xdream.records.make_folder`, as ``xdream encode --out``
    does); returns the folders created, deepest first. A folder that cannot be written (a
    read-only file system, no permission) is one clear error, not a traceback."""
    folder = Path(folder)
    try:
        return records.make_folder(folder, exist_ok=True)
    except OSError as err:
        raise _cannot_write(folder, err) from None


def _write(path: Path, data: bytes | str) -> None:
    """Atomically write a report file (readable by others, as every atomic write is)."""
    mode = "w" if isinstance(data, str) else "wb"
    try:
        with records.atomic_write(path, mode) as fh:
            fh.write(data)
    except OSError as err:  # a full disk, a folder made read-only meanwhile
        raise _cannot_write(path.parent, err) from None


def _complete(rec: records.Record, codes: bool = True) -> records.Record:
    """Keep whole generations only: rows and references of a generation that the
    per-generation datasets do not hold yet, and anything beyond the shortest of a kind, are
    dropped (:func:`xdream.records.read` refuses a record read mid-append; this is a second
    guard for a record put together otherwise). Nothing is copied where nothing is dropped.
    ``codes=False``: ``rec`` was read without its codes, which are left as they are (rows are
    in generation order, so the rows kept are the first ones, and keep their numbers for
    :func:`xdream.records.read_codes`)."""
    gen_fields = (
        "best_per_generation",
        "mean_per_generation",
        "best_reference_per_generation",
        "presentations_per_generation",
    )
    g = min(len(rec.seconds), *(len(getattr(rec, k)) for k in gen_fields))
    for name in (*gen_fields, "seconds"):
        if len(getattr(rec, name)) > g:
            setattr(rec, name, getattr(rec, name)[:g])
    rows = ("scores", "clean_scores", "generation", "image_ids", "genealogy")
    for fields, generation in (
        (("codes", *rows) if codes else rows, "generation"),
        (("ref_ids", "ref_scores", "ref_clean_scores", "ref_generation"), "ref_generation"),
    ):
        n = min(len(getattr(rec, k)) for k in fields)
        keep = np.asarray(getattr(rec, generation))[:n] < g
        whole = bool(keep.all())
        for name in fields:
            value = getattr(rec, name)
            if whole:
                if len(value) > n:
                    setattr(rec, name, value[:n])
            elif isinstance(value, list):
                setattr(rec, name, [v for v, k in zip(value[:n], keep) if k])
            else:
                setattr(rec, name, value[:n][keep])
    return rec


def _codes(run: Path, rec: records.Record, rows: Sequence[int]) -> npt.NDArray[np.float32]:
    """The codes of rows ``rows``: from ``rec`` where it holds them, else read from ``run``'s
    record.h5 alone (the report reads the record without its codes, the bulk of it)."""
    if len(rec.codes) == len(rec.scores):
        return rec.codes[list(rows)]
    return records.read_codes(run, rows, seen=len(rec.scores))


SHORT_RUN = 40
"""Runs of at most this many generations get a marker on every point of the score figure."""


def score_figure(rec: records.Record, title: str) -> bytes:
    """Best and mean score per generation with the reference scores and their range (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    draw_scores(ax, rec, title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def draw_scores(ax: Any, rec: records.Record, title: str) -> None:
    """The score figure on matplotlib axes ``ax``: every generation's best and mean, joined by
    lines, with markers where a line cannot show a point (a single generation, or one between
    generations without a score; every point of a short run); each generation's reference
    scores as points, their range as a band (one generation wide in a short run; a lone
    reference score, which spans no range, is still a point); whole generations on the x axis,
    which spans exactly the recorded generations."""
    from matplotlib.ticker import MaxNLocator

    n = len(rec.best_per_generation)
    gens = np.arange(n)
    short = n <= SHORT_RUN
    if np.isfinite(rec.ref_scores).any():  # a run without a scored reference has no range
        lo = np.full(n, np.nan)
        hi = np.full(n, np.nan)
        for g in gens:
            s = rec.ref_scores[(rec.ref_generation == g) & np.isfinite(rec.ref_scores)]
            if s.size:
                lo[g], hi[g] = s.min(), s.max()
        band = {"color": "tab:green", "alpha": 0.2, "lw": 0}
        if short:  # generation g's range spans g - 0.5 .. g + 0.5 (the last value repeated)
            edges = np.arange(n + 1) - 0.5
            last = lo[-1:], hi[-1:]
            ax.fill_between(
                edges, np.append(lo, last[0]), np.append(hi, last[1]), step="post", **band
            )
        else:
            ax.fill_between(gens, lo, hi, **band)
        ok = np.isfinite(rec.ref_scores) & (rec.ref_generation < n)
        ax.scatter(
            rec.ref_generation[ok],
            rec.ref_scores[ok],
            s=14,
            color="tab:green",
            alpha=0.8,
            lw=0,
            label="reference images",
        )
        ax.axhline(
            np.nanmax(rec.ref_scores), color="tab:green", ls="--", lw=1, label="best reference"
        )
    for values, color, marker, label in (
        (rec.best_per_generation, "tab:red", "o", "best"),
        (rec.mean_per_generation, "tab:blue", "s", "mean"),
    ):
        ok = np.isfinite(values)
        if not ok.any():
            continue
        before = np.concatenate([[False], ok[:-1]])
        after = np.concatenate([ok[1:], [False]])
        shown = ok if short else ok & ~before & ~after  # a point no line reaches
        ax.plot(gens, values, color=color, marker=marker, ms=3, markevery=list(shown), label=label)
    if not np.isfinite(rec.best_per_generation).any():
        ax.text(
            0.5,
            0.5,
            f"no image scored in {n} generation{'s' if n != 1 else ''}"
            if n
            else "no generation recorded yet",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )
    ax.set_xlim(-0.5, max(n, 1) - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("generation")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)


def _shown_generations(n: int, max_tiles: int) -> list[int]:
    """At most ``max_tiles`` of ``n`` generations, evenly spaced, the first and the last
    included; ``max_tiles=1`` shows the last (where the run got to matters most)."""
    if n <= max_tiles:
        return list(range(n))
    if max_tiles <= 1:
        return [n - 1]
    return sorted({int(np.rint(x)) for x in np.linspace(0, n - 1, max_tiles)})


def _name(component: Any) -> Any:
    """A component as a record's config names it: a name (earlier records, and components whose
    parameters are not recorded), or its ``{"name": ..., parameters}``: the name."""
    return component.get("name", component) if isinstance(component, dict) else component


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}g}"
    return str(value)


def _status_text(status: Any) -> str:
    """The optimiser's status in ``summary.json`` as text: its note, when it has one, and its
    plain facts (``step_size 0.3, responses repeatable``); ``n/a`` when it reported none."""
    if not isinstance(status, dict) or not status:
        return "n/a"
    scalars = {k: v for k, v in status.items() if k != "note" and not isinstance(v, (dict, list))}
    facts = ", ".join(f"{k} {_fmt(v)}" for k, v in scalars.items())
    return f"{status['note']} ({facts})" if status.get("note") else facts


def describe_target(target: Any) -> str:
    """``efficientnet-lite0 blocks.10 channel 5`` for a CNN unit, ``rig (channel 3, blocks
    of 4)`` for a rig, ``function mymodule.score`` for a function; JSON for other scorers."""
    if isinstance(target, dict) and "network" in target and "layer" in target:
        text = f"{target['network']} {target['layer']} channel {target.get('channel')}"
        if target.get("x") is not None:
            text += f" (x {target['x']}, y {target.get('y')})"
        return text
    if isinstance(target, dict) and target.get("kind") == "rig":
        channels = target.get("channels")
        parts = [
            "mean of every channel"
            if channels is None
            else f"channel {channels}"
            if isinstance(channels, int)
            else f"channels {json.dumps(channels)}"
        ]
        size = target.get("block_size")
        parts.append(f"blocks of {size}" if size else "one block per generation")
        if isinstance(target.get("reps"), int) and target["reps"] > 1:
            parts.append(f"{target['reps']} reps")
        if target.get("blanks"):
            blanks = target["blanks"]
            parts.append(f"{blanks} blank{'s' if blanks != 1 else ''} per block")
        return f"rig ({', '.join(parts)})"
    if isinstance(target, dict) and target.get("kind") == "function" and "function" in target:
        return f"function {target['function']}"
    return json.dumps(target, sort_keys=True)


def target_headings(targets: dict[str, Any]) -> dict[str, str]:
    """A heading per target (keyed by its JSON): :func:`describe_target`, followed, where two
    different targets share it (two rigs with the same channel, a function with and without
    noise), by the fields that tell them apart."""
    shared: dict[str, list[str]] = {}
    for key, target in targets.items():
        shared.setdefault(describe_target(target), []).append(key)
    headings = {}
    for heading, keys in shared.items():
        fields = [t if isinstance(t, dict) else {} for t in (targets[k] for k in keys)]
        names = sorted({name for f in fields for name in f})
        differ = [
            n for n in names if len({json.dumps(f.get(n), sort_keys=True) for f in fields}) > 1
        ]
        for key, f in zip(keys, fields):
            extra = ", ".join(f"{n} {json.dumps(f.get(n), sort_keys=True)}" for n in differ)
            headings[key] = f"{heading} ({extra})" if len(keys) > 1 and extra else heading
    return headings


def experiment_figures(
    run: Path, rec: records.Record, max_tiles: int
) -> tuple[list[Figure], list[str]]:
    """The figures of one experiment's report and notes on anything left out."""
    notes: list[str] = []
    try:
        generator: Generator | None = load_generator(run, rec)
    except XDreamError as err:
        generator = None
        notes.append(f"images not rendered from codes: {err}")
    n_gen = len(rec.best_per_generation)
    title = describe_target(rec.summary.get("target", rec.config.get("target")))
    figures = [
        Figure(
            "scores.png",
            "Score per generation",
            score_figure(rec, title),
            "Best (red) and mean (blue) score of the evolved images per generation; the green "
            "points are the scores of that generation's natural reference images, the band "
            "their range.",
        )
    ]

    # best image of each generation: the saved PNG, else rendered from the best code
    shown: list[tuple[int, int, Path | None]] = []  # generation, best row, its saved PNG
    for g in _shown_generations(n_gen, max_tiles):
        rows = np.flatnonzero(rec.generation == g)
        valid = rows[np.isfinite(rec.scores[rows])]
        if valid.size == 0:
            continue
        best = int(valid[np.argmax(rec.scores[valid])])
        saved = run / "images" / f"gen{g:03d}_best.png"
        if saved.exists():
            shown.append((g, best, saved))
        elif generator is not None:
            shown.append((g, best, None))
    drawn: dict[int, PILImage] = {}  # best row: its image, rendered from its code
    rows_to_draw = [best for _, best, png in shown if png is None]
    if rows_to_draw and generator is not None:  # one read for every tile drawn
        for best, code in zip(rows_to_draw, _codes(run, rec, rows_to_draw)):
            drawn[best] = to_pil(generator.generate(code[None])[0])
    tiles: list[tuple[PILImage, str]] = []
    for g, best, png in shown:
        if png is None:
            img = drawn[best]
        else:
            with Image.open(png) as im:
                img = im.convert("RGB")
        tiles.append((img, f"{g}: {_fmt(float(rec.scores[best]), 3)}"))
    figures.append(
        Figure(
            "best_per_generation.png",
            "Best image of each generation",
            png_bytes(montage(tiles)) if tiles else None,
            "Generation: score."
            + (
                ""
                if n_gen <= max_tiles
                else f" The last of {n_gen} generations."
                if max_tiles == 1
                else f" {len(tiles)} of {n_gen} generations, evenly spaced, first and last "
                "included."
            ),
        )
    )

    # the last population, rendered from the recorded codes
    last_png = None
    if n_gen and generator is not None:
        rows = np.flatnonzero(rec.generation == n_gen - 1)
        order = rows[np.argsort(-np.nan_to_num(rec.scores[rows], nan=-np.inf), kind="stable")]
        images = generator.generate(_codes(run, rec, order.tolist()))
        last_png = png_bytes(
            montage([(to_pil(im), _fmt(float(rec.scores[i]), 3)) for im, i in zip(images, order)])
        )
    figures.append(
        Figure(
            "last_population.png",
            f"Last population (generation {max(n_gen - 1, 0)})",
            last_png,
            "Every image of the last generation, rendered from its code, best first, with its "
            "score.",
        )
    )

    # the best reference crops, regenerated from their ids
    from xdream.references import from_id

    best_ref: dict[str, float] = {}
    for rid, s in zip(rec.ref_ids, rec.ref_scores):
        if np.isfinite(s) and s > best_ref.get(rid, -np.inf):
            best_ref[rid] = float(s)
    top = sorted(best_ref.items(), key=lambda kv: -kv[1])[:10]
    size = generator.output_size[0] if generator is not None else 128
    ref_tiles = []
    for rid, s in top:
        try:
            ref_tiles.append((to_pil(from_id(rid, size)[0]), _fmt(s, 3)))
        except XDreamError as err:
            notes.append(f"reference {rid!r} not regenerated: {err}")
    figures.append(
        Figure(
            "references.png",
            "Top reference images",
            png_bytes(montage(ref_tiles)) if ref_tiles else None,
            "The natural reference crops with the highest scores, regenerated from their ids.",
        )
    )
    scored = np.isfinite(rec.scores).any()
    why = {  # the page says "not available (see the notes below)": the notes say why
        "best_per_generation.png": "no generation recorded yet"
        if not n_gen
        else "no image has a score yet (every response missing)"
        if not scored
        else "no saved images/genNNN_best.png, and the codes could not be rendered",
        "last_population.png": "no generation recorded yet"
        if not n_gen
        else "the codes could not be rendered",
        "references.png": "the run showed no reference images (n_references = 0)"
        if not rec.ref_ids
        else "no reference image has a score yet"
        if not best_ref
        else "no reference image could be regenerated",
    }
    notes += [f"{fig.title}: {why[fig.name]}" for fig in figures if fig.png is None]
    return figures, notes


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


def _page(title: str, body: str, running: bool, refresh: int) -> str:
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
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


def _timings(rec: records.Record, summary: dict[str, Any]) -> str:
    cols = list(records.TIMING_COLUMNS)
    sec = rec.seconds if len(rec.seconds) else np.zeros((0, len(cols)))
    total = float(sec.sum())
    rows = "".join(
        f"<tr><td>{c}</td><td class='num'>{sec[:, i].sum():.2f}</td>"
        f"<td class='num'>{(sec[:, i].mean() if len(sec) else 0) * 1000:.1f}</td>"
        f"<td class='num'>{100 * sec[:, i].sum() / total if total else 0:.0f}%</td></tr>"
        for i, c in enumerate(cols)
    )
    wall = summary.get("seconds")
    n = len(sec)
    per = f" ({wall / n:.3f} s per generation)" if isinstance(wall, (int, float)) and n else ""
    return (
        f"<p>Wall-clock time {_fmt(wall)} s over {n} generations{per}, of which:</p>"
        "<table><thead><tr><th>step</th><th>total s</th><th>ms per generation</th>"
        f"<th>share</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def best_image_file(run: Path, summary: dict[str, Any]) -> Path | None:
    """The saved PNG of the best image that ``summary.json`` names, or None.

    ``best.png`` is rewritten with every new best, but ``summary.json`` (and ``record.h5``)
    follow up to ``record_interval`` later, or stop short when the run is killed: beside the
    summary's numbers ``best.png`` may show a later image. ``images/genNNN_best.png`` of the
    summary's best generation is that generation's best, the image the summary names;
    ``best.png`` is used only when the summary is final (a finished run).
    """
    g = summary.get("best_generation")
    if isinstance(g, int) and not isinstance(g, bool):
        saved = run / "images" / f"gen{g:03d}_best.png"
        if saved.is_file():
            return saved
    if summary.get("status") == "finished" and summary.get("best_image"):
        best = run / "best.png"
        if best.is_file():
            return best
    return None


def summary_best_image(
    run: Path, rec: records.Record, summary: dict[str, Any]
) -> tuple[bytes | None, str]:
    """PNG bytes of the best image that ``summary.json`` names (:func:`best_image_file`, else
    rendered from its recorded code) and a caption naming it, so that the image and the
    numbers beside it are of the same image."""
    image_id = summary.get("best_image_id")
    if not image_id:
        return None, "best image so far"
    caption = f"best image so far: {image_id} (score {_fmt(summary.get('best_score'))})"
    path = best_image_file(run, summary)
    if path is not None:
        return path.read_bytes(), caption
    if image_id in rec.image_ids:
        try:
            generator = load_generator(run, rec)
        except XDreamError:
            generator = None
        if generator is not None:
            i = rec.image_ids.index(image_id)
            return records.png_bytes(generator.generate(_codes(run, rec, [i]))[0]), caption
    return None, caption


def experiment_report(
    run: str | Path,
    *,
    max_tiles: int = 40,
    refresh: int = 10,
    write_figures: bool = True,
    out: str | Path | None = None,
) -> Path:
    """Write ``run/report.html`` (and ``run/report/*.png``) for one experiment folder; with
    ``out``, into that folder instead (for an experiment folder that cannot be written)."""
    run = Path(run)
    dest = Path(out) if out is not None else run
    rec = _complete(records.read(run, codes=False), codes=False)  # rows read as needed
    summary = rec.summary
    state = run_state(summary, run)  # no summary yet: starting, "running" while locked
    running = state == "running"
    figures, notes = experiment_figures(run, rec, max_tiles)
    make_out(dest)
    if write_figures:
        make_out(dest / FIGURES_DIR)
        for fig in figures:
            if fig.png is not None:
                _write(dest / FIGURES_DIR / fig.name, fig.png)

    best, ref = summary.get("best_score"), summary.get("best_reference_score")
    ratio = records.relative_to_references(summary)  # noise-free over noise-free, as units.csv
    best_png, best_caption = summary_best_image(run, rec, summary)
    best_img = (
        f'<img class="fig" alt="best image" src="{data_uri(best_png)}" style="width:192px">'
        if best_png is not None
        else "<p>no best image yet</p>"
    )
    target = describe_target(summary.get("target", rec.config.get("target")))
    facts = [
        (
            "status",
            html.escape(
                "stopped before finishing (its process is gone): continue it with "
                f"{continue_with(run)}"
                if state == "stopped"
                else str(summary.get("status", "starting"))
            ),
        ),
        ("target", html.escape(target)),
        (
            "generator",
            html.escape(str(summary.get("generator", _name(rec.config.get("generator"))))),
        ),
        (
            "optimiser",
            html.escape(str(summary.get("optimizer", _name(rec.config.get("optimizer"))))),
        ),
        ("optimiser status", html.escape(_status_text(summary.get("optimizer_status")))),
        ("seed", html.escape(_fmt(summary.get("seed")))),
        ("generations", _fmt(len(rec.best_per_generation))),
        ("presentations", _fmt(summary.get("presentations"))),
        (
            "best score",
            f"{_fmt(best)} (generation {_fmt(summary.get('best_generation'))}, "
            f"image {html.escape(_fmt(summary.get('best_image_id')))})"
            if summary.get("best_image_id")
            else "n/a (no image has a score yet)"
            if summary
            else "n/a (the first generation is not recorded yet)",
        ),
        ("first generation's best", _fmt(summary.get("first_generation_best_score"))),
        ("best reference image", _fmt(ref)),
        ("best / best reference (noise-free)", _fmt(ratio, 3)),
    ]
    parts = [
        f"<h1>xdream experiment: {html.escape(target)}</h1>",
        f"<p>Folder <code>{html.escape(str(run.resolve()))}</code></p>",
        '<div style="display:flex;gap:2em;align-items:flex-start">',
        _table(facts),
        f"<figure>{best_img}<figcaption>{html.escape(best_caption)}</figcaption></figure></div>",
    ]
    for fig in figures:
        parts.append(f"<h2>{html.escape(fig.title)}</h2>")
        if fig.png is None:
            parts.append("<p>not available (see the notes below)</p>")
            continue
        parts.append(
            f'<figure><img class="fig" alt="{html.escape(fig.title)}" src="{data_uri(fig.png)}">'
            f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
        )
    config_file = run / "config.yaml"
    config_text = (
        config_file.read_text()
        if config_file.exists()
        else json.dumps(rec.config, indent=2, sort_keys=True)
    )
    parts += [
        "<h2>Timings</h2>",
        _timings(rec, summary),
        "<h2>Configuration</h2>",
        f"<pre>{html.escape(config_text)}</pre>",
    ]
    if notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f'<li class="note">{html.escape(n)}</li>' for n in notes]
        parts.append("</ul>")
    page = dest / REPORT_FILE
    _write(page, _page(f"xdream: {target}", "\n".join(parts), running, refresh))
    return page


# --------------------------------------------------------------------------- many experiments
def find_runs(root: str | Path) -> list[Path]:
    """Experiment folders (holding ``record.h5``) under ``root``, in name order."""
    return sorted(p.parent for p in Path(root).rglob("record.h5"))


def _thumb(path: Path | None, size: int = 64) -> str:
    if path is None or not path.exists():
        return ""
    with Image.open(path) as im:
        img = im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    return f'<img class="thumb" alt="best image" src="{data_uri(png_bytes(img))}">'


def _num(value: Any, digits: int = 4) -> str:
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    return f'<td class="num" data-value="{value if ok else ""}">{_fmt(value, digits)}</td>'


def _best_or_none(value: Any) -> float:
    """A summary's best score for ranking runs: -inf where it has none (0 is a score)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else -np.inf


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
    """Each trial's folder: its ``folder`` column where the table has one (absolute, or
    relative to the table's folder; a moved study's by name under the table's folder), else
    ``trialNNNN`` beside the table, or for a retry without its own folder the folder of the
    trial it retried."""
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
            if not folder.exists() and (here / path.name).exists():
                folder = here / path.name  # the study's folder was moved
        else:
            retried = _int(row.get("retry_of"))
            if not folder.exists() and retried is not None and retried in folders:
                folder = folders[retried]
        folders[number] = folder
    return folders


def find_studies(root: Path) -> list[Study]:
    """The tuning studies whose ``tune.csv`` is in ``root`` or in ``root/study-*/``."""
    tables = [root / TUNE_TABLE, *sorted(root.glob(f"study-*/{TUNE_TABLE}"))]
    studies = []
    for table in tables:
        if not table.is_file():
            continue
        columns, rows = _read_csv(table)
        label = "" if table.parent == root else table.parent.name
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
    of the same name differ from it, by the values that tell them apart."""
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
            extra = ", ".join(f"{k} {_fmt(named[key].get(k))}" for k in differ)
            labels[key] = f"{name} ({extra})" if extra else name
    return labels


def _state_counts(states: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    order = ["finished", "running", "stopped", "failed", "not started"]
    ranked = sorted(counts, key=lambda s: (order.index(s) if s in order else len(order), s))
    return ", ".join(f"{counts[s]} {s}" for s in ranked)


def folder_report(
    root: str | Path,
    *,
    max_tiles: int = 40,
    refresh: int = 10,
    run_reports: bool = True,
    out: str | Path | None = None,
) -> Path:
    """Write ``root/report.html`` (or ``out/report.html``, each run's own report then in
    ``out/<run's folder>/``) comparing every experiment under ``root``: for a sweep folder also
    the tasks of its ``sweep.csv`` without a record, for a tune folder the trials of its
    ``tune.csv``."""
    root = Path(root)
    dest = Path(out) if out is not None else root
    runs = find_runs(root)
    plan = sweep_plan(root)
    studies = find_studies(root)
    if not runs and not plan:
        raise XDreamError(
            f"{str(root)!r} holds no experiment (no record.h5 in it or below); give an "
            "experiment folder or a folder of them"
        )
    make_out(dest)
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
                "target": json.dumps(summary.get("target"), sort_keys=True),
                "summary": summary,
                "problem": problem,
                "state": run_state(summary, run),
                "ratio": records.relative_to_references(summary),
                "optimizer": json.dumps(spec, sort_keys=True),
                "trial": trial,
            }
        )
    # a sweep's tasks without a record: failed before recording anything, or not started
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
            missing.append(
                {
                    "row": row,
                    "rel": folder or "?",
                    "state": "failed" if row.get("error") else "not started",
                }
            )
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
            "in the run tables with their error, or as not started)"
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
    headings = target_headings({e["target"]: e["summary"].get("target") for e in entries})
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
    _write(page, _page(f"xdream: {root.name}", "\n".join(parts), running, refresh))
    return page


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
        key = next(
            (k for k in sorted(groups) if json.loads(groups[k][0]["optimizer"])["name"] == name),
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
        status = f"failed before recording: {error}" if error else "not started"
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


def resume_folder(run: Path) -> Path:
    """The folder ``xdream resume`` continues ``run`` from: ``run`` itself, or for a unit of a
    many-unit run (``RUN/units/<unit>`` beside ``RUN/config.yaml``) the many-unit run, which
    continues every unit together."""
    units = run.parent
    if units.name == "units" and (units.parent / "config.yaml").is_file():
        return units.parent
    return run


def continue_with(run: Path) -> str:
    """How to continue ``run``: ``xdream resume`` of its folder (:func:`resume_folder`), or
    for a run built in Python, which has no ``config.yaml``, from Python
    (:data:`xdream.records.PYTHON_CONTINUE`)."""
    return records.continue_command(resume_folder(run))


def _rebuild_hint(run: Path) -> str:
    """How to recover an unreadable record, short, for a row of the folder report."""
    if not records.journal_rebuilds(run):
        return "cannot be rebuilt (its journal is gone): restore a backup"
    if (resume_folder(run) / "config.yaml").exists():
        return f"xdream resume {resume_folder(run)} rebuilds it"
    return "continuing it in Python (Experiment(...).restore(), then run()) rebuilds it"


def _row_status(run: Path, summary: dict[str, Any]) -> str:
    """A run's status in a folder's table: as its own page says it (a run whose process is
    gone is "stopped", with the command that continues it)."""
    if run_state(summary, run) == "stopped":
        return f"stopped: {continue_with(run)}"
    if not summary:
        return "starting"
    return str(summary.get("status", "starting"))


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


def run_state(summary: dict[str, Any], run: str | Path | None = None) -> str:
    """``"running"``, ``"stopped"`` or the summary's own final status (``"finished"``).

    A run is running while its ``summary.json`` says so (or before it has written one), unless
    the summary names a process on this machine that no longer exists: then the run was killed
    or crashed and ``xdream resume`` continues it. A process on another machine is taken to be
    alive. Without a process in the summary (a run killed before its first generation was
    recorded) the experiment folder ``run``, when given, tells: a run holds its
    :data:`~xdream.records.LOCK_FILE` locked while it runs (:func:`folder_held`).
    """
    status = str(summary.get("status", "running"))
    if status != "running":
        return status
    process = summary.get("process")
    if not isinstance(process, dict):
        return "stopped" if run is not None and folder_held(Path(run)) is False else "running"
    if process.get("host") != socket.gethostname():
        return "running"
    try:
        os.kill(int(process["pid"]), 0)
    except ProcessLookupError:
        return "stopped"
    except (OSError, KeyError, TypeError, ValueError):  # another user's process, odd entry
        return "running"
    return "running"


PROC_LOCKS = "/proc/locks"
"""Linux's table of the file locks held on this machine (read by :func:`folder_held`)."""

_kept_open: list[int] = []
"""Lock files this process holds, opened by :func:`folder_held`: never closed, since closing
any descriptor of a file releases the process's POSIX locks on it."""


def folder_held(run: Path) -> bool | None:
    """Whether a process holds ``run``'s lock file (:meth:`xdream.records.RunFolder.lock`), as
    a running experiment does: ``None`` where it cannot be told (no lock file, no POSIX locks,
    or the file names a process on another machine).

    On Linux the answer comes from ``/proc/locks``, which takes no lock: the lock file is only
    read when no process of this machine holds it. Elsewhere a non-blocking shared lock is
    tried on the file (released at once; nothing is written to it).
    """
    lock = run / records.LOCK_FILE
    try:
        stat = os.stat(lock)
    except OSError:
        return None
    try:
        table = Path(PROC_LOCKS).read_text()
    except OSError:
        return _probe_lock(lock)
    device = (os.major(stat.st_dev), os.minor(stat.st_dev))
    same_inode = False
    for line in table.splitlines():  # "1: POSIX  ADVISORY  WRITE 4312 fe:00:2146337 0 EOF"
        for field in line.split():
            parts = field.split(":")
            if len(parts) != 3 or not parts[2].isdigit() or int(parts[2]) != stat.st_ino:
                continue
            try:
                if (int(parts[0], 16), int(parts[1], 16)) == device:
                    return True
            except ValueError:
                pass
            same_inode = True  # another file system's file, or one seen through an overlay
    if same_inode:
        return _probe_lock(lock)
    try:  # no process here holds it: a run on another machine (a shared folder) may
        holder = lock.read_text(errors="replace")
    except OSError:
        return None
    return False if f" on {socket.gethostname()}," in holder else None


def _probe_lock(lock: Path) -> bool | None:
    """:func:`folder_held` without ``/proc/locks``: try a shared lock on the file."""
    try:
        import fcntl
    except ImportError:  # Windows: runs do not lock their folders there
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        holder = os.read(fd, 300).decode(errors="replace")
        if f"pid {os.getpid()} on {socket.gethostname()}," in holder:
            _kept_open.append(fd)  # this process runs it: closing fd would release its lock
            fd = -1
            return True
        if holder.strip() and f" on {socket.gethostname()}," not in holder:
            return None  # a process on another machine: its lock may not show here
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as err:
            return True if err.errno in (errno.EACCES, errno.EAGAIN) else None
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        if fd >= 0:
            os.close(fd)


def is_running(path: str | Path) -> bool:
    """Whether the experiment (or any experiment under the folder) is still running
    (:func:`run_state`; a folder without ``summary.json`` yet counts as starting while a
    process holds its lock)."""
    path = Path(path)
    runs = [path] if (path / "record.h5").exists() else find_runs(path)
    for run in runs:
        try:
            summary = records.read_summary(run)
        except SummaryUnreadableError:  # damaged for good (runs replace it whole): no wait
            continue
        if run_state(summary, run) == "running":
            return True
    return False
