"""One experiment's page: ``report.html`` with its facts, figures, timings and configuration,
and the figures as PNG files in ``report/``."""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xdream import records
from xdream.errors import XDreamError
from xdream.report.describe import _name, _status_text, describe_target
from xdream.report.figures import FIGURE_FORMATS, Figure, _codes, experiment_figures
from xdream.report.figures import figure_formats as _figure_formats
from xdream.report.generator import load_generator
from xdream.report.images import data_uri
from xdream.report.page import (
    FIGURES_DIR,
    REPORT_FILE,
    _fmt,
    _page,
    _table,
    _write,
    check_out,
    make_out,
)
from xdream.report.state import continue_with, run_state


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


def seen_best_image(run: Path, png: bytes | None, target: Any) -> bytes | None:
    """The best image ``png`` as the target network took it (:func:`xdream.render.seen_by`),
    for a run that placed its images in a square or resized them to ``image_size`` first (it
    is then not what the image shows); ``None`` otherwise, or where the summary cannot say."""
    if png is None or not isinstance(target, dict) or target.get("kind") != "cnn-unit":
        return None
    if target.get("placement") is None and target.get("image_size") is None:
        return None
    import io

    import torch
    from PIL import Image

    from xdream.render import target_view

    try:
        view = target_view(target, run)
    except XDreamError:
        return None
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255
    image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    return records.png_bytes(view(image)[0].clamp(0, 1))


def _input_size(target: Any) -> Any:
    """The input size that a ``cnn-unit`` target's description records."""
    return target["preprocess"]["input_size"]


def experiment_report(
    run: str | Path,
    *,
    max_tiles: int = 40,
    refresh: int = 10,
    write_figures: bool = True,
    out: str | Path | None = None,
    figure_formats: str | Sequence[str] = (),
) -> Path:
    """Write ``run/report.html`` (and ``run/report/*.png``) for one experiment folder; with
    ``out``, into that folder instead (for an experiment folder that cannot be written).
    ``figure_formats`` (``"svg,pdf"``, ``("svg",)``): the score figure also in those formats,
    ``run/report/scores.svg`` ... (:func:`~xdream.report.figures.figure_formats`)."""
    run = Path(run)
    dest = Path(out) if out is not None else run
    formats = _figure_formats(figure_formats)  # refused before anything is read or written
    if out is not None:
        check_out(run, dest)
    rec = _complete(records.read(run, codes=False), codes=False)  # rows read as needed
    summary = rec.summary
    state = run_state(summary, run)  # no summary yet: starting, "running" while locked
    running = state == "running"
    figures, notes = experiment_figures(run, rec, max_tiles, formats if write_figures else ())
    make_out(dest, out is not None)
    if write_figures:
        make_out(dest / FIGURES_DIR, out is not None)
        for fig in figures:
            if fig.png is not None:
                _write(dest / FIGURES_DIR / fig.name, fig.png, out is not None)
            stem = dest / FIGURES_DIR / Path(fig.name).stem
            for fmt, data in fig.formats.items():
                _write(stem.with_suffix(f".{fmt}"), data, out is not None)
            if fig.plot and fig.png is not None:  # a montage is PNG only
                _earlier_formats(stem, fig, notes)

    best, ref = summary.get("best_score"), summary.get("best_reference_score")
    ratio = records.relative_to_references(summary)  # noise-free over noise-free, as units.csv
    best_png, best_caption = summary_best_image(run, rec, summary)
    best_img = (
        f'<img class="fig" alt="best image" src="{data_uri(best_png)}" style="width:192px">'
        if best_png is not None
        else "<p>no best image yet</p>"
    )
    scored_by = summary.get("target", rec.config.get("target"))
    target = describe_target(scored_by)
    seen_png = seen_best_image(run, best_png, scored_by)
    seen_fig = (
        f'<figure><img class="fig" alt="best image as the network took it" '
        f'src="{data_uri(seen_png)}" style="width:192px"><figcaption>as the network took it '
        f"({_input_size(scored_by)} px input, before its normalisation)"
        "</figcaption></figure>"
        if seen_png is not None
        else ""
    )
    rig = "rig" in rec.config or (isinstance(scored_by, dict) and scored_by.get("kind") == "rig")
    facts = [
        (
            "status",
            html.escape(
                _stopped_text(run) if state == "stopped" else str(summary.get("status", "starting"))
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
        # a neuron's responses have no noise-free version
        (f"best / best reference{'' if rig else ' (noise-free)'}", _fmt(ratio, 3)),
    ]
    taken = rec.config.get("accepted")  # restore(accept=...) of a run built in Python
    if isinstance(taken, list) and taken:
        facts.append(("taken on restore", html.escape(_taken_text(taken))))
    parts = [
        f"<h1>xdream experiment: {html.escape(target)}</h1>",
        f"<p>Folder <code>{html.escape(str(run.resolve()))}</code></p>",
        '<div style="display:flex;gap:2em;align-items:flex-start">',
        _table(facts),
        f"<figure>{best_img}<figcaption>{html.escape(best_caption)}</figcaption></figure>"
        f"{seen_fig}</div>",
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
        _shown_config(config_file.read_text(), notes)
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
    _write(
        page, _page(f"xdream: {target}", "\n".join(parts), running, refresh, run), out is not None
    )
    return page


def _taken_text(taken: list[Any]) -> str:
    """What ``restore(accept=...)`` took (the config's ``accepted``) as text: ``target.started:
    1.0 -> 2.0 (from generation 1); ...``."""
    parts = []
    for entry in taken:
        if not isinstance(entry, dict):
            continue
        changes = entry.get("changes")
        text = "; ".join(map(str, changes)) if isinstance(changes, list) else str(changes)
        parts.append(f"{text} (from generation {_fmt(entry.get('generation'))})")
    return "; ".join(parts)


def _stopped_text(run: Path) -> str:
    """The status of a run that stopped before finishing: a rig run's state (paused, stopped)
    with the reason and how to go on that ``rig/status.json`` gives (a pause, Ctrl-C, an
    error), or else stopped with its process gone."""
    try:
        rig = json.loads((run / "rig" / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no rig, or a status file torn or unreadable
        rig = None
    if isinstance(rig, dict) and rig.get("state") in ("paused", "stopped") and rig.get("reason"):
        how = rig.get("continue_with") or continue_with(run)
        return f"{rig['state']}: {rig['reason']} (rig/status.json); continue it with {how}"
    return f"stopped before finishing (its process is gone): continue it with {continue_with(run)}"


def _earlier_formats(stem: Path, fig: Figure, notes: list[str]) -> None:
    """Say (in ``notes`` and as a warning) which of the plot ``fig``'s files in other
    formats (``scores.svg``, written by an earlier ``--figures svg``) this report left as
    they were: they show the run as it was then, not as the page does."""
    stale = [
        stem.with_suffix(f".{fmt}")
        for fmt in FIGURE_FORMATS
        if fmt != "png" and fmt not in fig.formats and stem.with_suffix(f".{fmt}").is_file()
    ]
    if not stale:
        return
    names = ", ".join(str(path) for path in stale)
    again = ",".join(path.suffix[1:] for path in stale)
    note = (
        f"{names}: from an earlier report, not rewritten by this one, so it may show the run "
        f"as it was then (add --figures {again} to bring it up to date)"
    )
    notes.append(note)
    warnings.warn(note, UserWarning, stacklevel=3)


def _shown_config(text: str, notes: list[str]) -> str:
    """``config.yaml``'s text as the report shows it: as it is, but for the ``[target]`` that
    an earlier xdream recorded beside ``[rig]`` (the defaults of a network unit the rig never
    used), which is left out with a note, as a resume of the run leaves it out of the file."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if not isinstance(data, dict) or "rig" not in data or "target" not in data:
        return text
    notes.append(
        "config.yaml holds a [target] that an earlier xdream recorded beside [rig]; the rig was "
        "the target, so it was never used and is not shown (a resume of the run removes it)"
    )
    return yaml.safe_dump({k: v for k, v in data.items() if k != "target"}, sort_keys=False)
