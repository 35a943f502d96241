"""One experiment's figures: the score figure, the best image of each generation, the last
population and the top reference images; and the pieces of them for a figure of one's own:
:func:`draw_scores` (the score figure on one's own matplotlib axes), :func:`best_images` and
:func:`best_image` (the best image of each generation, and of the run, at full resolution)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from xdream import records
from xdream.errors import XDreamError
from xdream.generators.base import Generator
from xdream.report.describe import describe_target
from xdream.report.generator import load_generator
from xdream.report.images import PILImage, montage, png_bytes, to_pil
from xdream.report.page import _fmt

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass
class Figure:
    """A figure of the report: its file name, title, PNG bytes and a caption; a plot (the
    score figure) also in the other formats asked for (:data:`FIGURE_FORMATS`), as ``{format:
    bytes}`` (written as the file name with that suffix). ``plot``: whether it is such a plot
    (an image montage is PNG only, so a file of another format beside it is none of the
    report's)."""

    name: str
    title: str
    png: bytes | None
    caption: str
    formats: dict[str, bytes] = field(default_factory=dict)
    plot: bool = False


FIGURE_FORMATS = ("png", "svg", "pdf")
"""The formats a report writes its plots in (``xdream report --figures svg,pdf``): PNG always
(the page embeds it), SVG and PDF on request. Image montages are PNG only."""

VECTOR_TEXT: dict[Any, Any] = {"svg.fonttype": "none", "pdf.fonttype": 42}  # Any: rcParams' keys
"""matplotlib settings for the plots a report writes, in force only while it writes them: text
in an SVG stays text (editable, in the font the reader has; not outlines), and a PDF embeds its
fonts as TrueType (editable, not Type 3)."""


def figure_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """The plot formats that ``formats`` asks for besides PNG, which is always written:
    ``"svg,pdf"`` (as ``--figures`` takes them) or a sequence of names, case and a leading dot
    ignored, ``()`` for none. Any other format, or a string naming none, is refused with the
    formats accepted."""
    accepted = ", ".join(FIGURE_FORMATS)
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted: list[str] = []
    for name in names:
        fmt = name.strip().lower().lstrip(".") if isinstance(name, str) else None
        if fmt not in FIGURE_FORMATS:
            raise XDreamError(
                f"cannot write figures as {name!r}: the formats accepted are {accepted} "
                "(comma-separated, e.g. --figures svg,pdf)"
            )
        if fmt != "png" and fmt not in wanted:
            wanted.append(fmt)
    return tuple(wanted)


def _codes(run: Path, rec: records.Record, rows: Sequence[int]) -> npt.NDArray[np.float32]:
    """The codes of rows ``rows``: from ``rec`` where it holds them, else read from ``run``'s
    record.h5 alone (the report reads the record without its codes, the bulk of it)."""
    if len(rec.codes) == len(rec.scores):
        return rec.codes[list(rows)]
    return records.read_codes(run, rows, seen=len(rec.scores))


SHORT_RUN = 40
"""Runs of at most this many generations get a marker on every point of the score figure."""


def score_figure(rec: records.Record, title: str, fmt: str = "png") -> bytes:
    """Best and mean score per generation with the reference scores and their range, as a
    file of format ``fmt`` (one of :data:`FIGURE_FORMATS`; text settings :data:`VECTOR_TEXT`,
    leaving the caller's matplotlib settings as they were)."""
    import matplotlib
    from matplotlib.figure import Figure

    if fmt not in FIGURE_FORMATS:
        raise XDreamError(f"cannot write figures as {fmt!r}: accepted are {FIGURE_FORMATS}")
    # the same record gives the same bytes: SVG ids from a fixed salt, no date in SVG or PDF
    # (a figure kept under version control changes only when the run does)
    with matplotlib.rc_context({**VECTOR_TEXT, "svg.hashsalt": "xdream"}):
        # a Figure of its own, not pyplot's: the caller's backend (a notebook's, a window's)
        # and open figures stay as they were
        fig = Figure(figsize=(7, 3.6), dpi=100)
        draw_scores(fig.subplots(), rec, title)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata=_NO_DATE.get(fmt))
    return buf.getvalue()


_NO_DATE: dict[str, dict[str, None]] = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}
"""``savefig`` metadata that leaves the date out of a vector figure (PNG has none)."""


def _title(rec: records.Record) -> str:
    """The score figure's title: the run's target in words."""
    return describe_target(rec.summary.get("target", rec.config.get("target")))


def _read(run: str | Path) -> records.Record:
    """A run folder's record as the report reads it: without its codes (read row by row where
    needed), whole generations only."""
    from xdream.report.experiment import _complete

    return _complete(records.read(run, codes=False), codes=False)


def _read_drawn(run: str | Path) -> records.Record:
    """:func:`_read` for :func:`draw_scores`: a folder without a record (a many-unit run, a
    sweep's or a tuning study's folder) is refused naming its run folders to draw instead."""
    if not records.RunFolder(run).record.exists():
        raise records.no_record_error(run, "xdream.report.draw_scores(ax, {})", "draw")
    return _read(run)


def draw_scores(
    ax: Axes,
    run: records.Record | str | Path,
    title: str | None = None,
    *,
    legend: bool = True,
) -> Axes:
    """Draw a run's score figure, as the report shows it, on the matplotlib axes ``ax`` (of a
    figure of one's own) and return them.

    ``run`` is a run's folder or its :class:`~xdream.records.Record`
    (:func:`xdream.records.read`); a many-unit run's, an ``xdream sweep`` or an ``xdream
    tune`` folder is refused with an error that names its run folders to draw instead
    (:func:`xdream.records.no_record_error`). Drawn are every generation's best (red line, label
    ``"best"``) and mean (blue, ``"mean"``) score of the evolved images, with markers where a
    line cannot show a point (a single generation, or one between generations without a
    score; every point of a short run, :data:`SHORT_RUN`); each generation's reference scores
    as points (``"reference images"``), their range as a green band (one generation wide in a
    short run; a lone reference score, which spans no range, is still a point) and the best
    reference score as a dashed line (``"best reference"``); whole generations on the x axis,
    which spans exactly the recorded generations. ``title``: the axes' title (default the run's
    target in words; ``""`` for none). ``legend=False`` leaves the legend out (the labels
    above are still the artists', for a legend of one's own via
    ``ax.get_legend_handles_labels()``). The figure's size, fonts and layout stay the caller's.
    """
    from matplotlib.ticker import MaxNLocator

    rec = run if isinstance(run, records.Record) else _read_drawn(run)
    if title is None:
        title = _title(rec)
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
        band: dict[str, Any] = {"color": "tab:green", "alpha": 0.2, "lw": 0}
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
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return ax


def _shown_generations(n: int, max_tiles: int) -> list[int]:
    """At most ``max_tiles`` of ``n`` generations, evenly spaced, the first and the last
    included; ``max_tiles=1`` shows the last (where the run got to matters most)."""
    if n <= max_tiles:
        return list(range(n))
    if max_tiles <= 1:
        return [n - 1]
    return sorted({int(np.rint(x)) for x in np.linspace(0, n - 1, max_tiles)})


@dataclass(frozen=True)
class BestImage:
    """The best image of a generation: the generation, the image's score and record id
    (``gen003_000005``), and the image at full resolution (the generator's output size) as
    a PIL image; :attr:`array` gives it as a NumPy array. ``ax.imshow(best.image)`` shows it."""

    generation: int
    score: float
    image_id: str
    image: PILImage

    @property
    def array(self) -> npt.NDArray[np.uint8]:
        """The image as an (H, W, 3) array of 8-bit RGB values."""
        return np.asarray(self.image.convert("RGB"), dtype=np.uint8)


def _best_rows(
    run: Path, rec: records.Record, generations: Sequence[int]
) -> list[tuple[int, int, Path | None]]:
    """Of each generation in ``generations`` with a scored image: the generation, the row of
    its best image and that image's saved PNG (``images/genNNN_best.png``), None if missing."""
    shown: list[tuple[int, int, Path | None]] = []
    for g in generations:
        rows = np.flatnonzero(rec.generation == g)
        valid = rows[np.isfinite(rec.scores[rows])]
        if valid.size == 0:
            continue
        best = int(valid[np.argmax(rec.scores[valid])])
        saved = run / "images" / f"gen{g:03d}_best.png"
        shown.append((g, best, saved if saved.exists() else None))
    return shown


def _draw_bests(
    run: Path,
    rec: records.Record,
    shown: Sequence[tuple[int, int, Path | None]],
    generator: Generator | None,
) -> list[BestImage]:
    """The images of :func:`_best_rows`: the saved PNG, else drawn from the recorded code by
    ``generator`` (its codes read at once); one without a PNG is left out where ``generator``
    is None."""
    drawn: dict[int, PILImage] = {}  # best row: its image, rendered from its code
    rows_to_draw = [best for _, best, png in shown if png is None]
    if rows_to_draw and generator is not None:  # one read for every image drawn
        for best, code in zip(rows_to_draw, _codes(run, rec, rows_to_draw)):
            drawn[best] = to_pil(generator.generate(code[None])[0])
    images = []
    for g, best, png in shown:
        if png is None:
            if best not in drawn:
                continue
            img = drawn[best]
        else:
            with Image.open(png) as im:
                img = im.convert("RGB")
        images.append(BestImage(g, float(rec.scores[best]), rec.image_ids[best], img))
    return images


def best_images(run: str | Path, generations: int | Sequence[int] | None = None) -> list[BestImage]:
    """The best image of each generation of the run in folder ``run`` (or of those in
    ``generations``, a list or one generation), in order, as the report's montage shows them
    but at full resolution:
    the image the run saved (``images/genNNN_best.png``), else drawn from its recorded code by
    the run's generator. A generation without a scored image (every response to it missing)
    has none and is left out: :attr:`BestImage.generation` says which each is. A
    generation may be counted from the end (``-1``, the last recorded); one the record does
    not hold is refused."""
    import operator

    folder = Path(run)
    rec = _read(folder)
    n = len(rec.best_per_generation)
    wanted = list(range(n))
    if generations is not None:
        picked = []
        asked = [generations] if isinstance(generations, (int, np.integer)) else generations
        for g in asked:
            try:
                i = operator.index(g)
            except TypeError:
                raise XDreamError(
                    f"generations must be whole numbers (a list of them, or one), got {g!r}"
                ) from None
            if not -n <= i < n:
                held = f"generations 0 to {n - 1}" if n else "no generation yet"
                raise XDreamError(
                    f"generation {i} is not in the record of {str(folder)!r}, which holds "
                    f"{held}; ask for one of those"
                )
            picked.append(i % n)
        wanted = picked
    shown = _best_rows(folder, rec, wanted)
    generator = load_generator(folder, rec) if any(png is None for *_, png in shown) else None
    return _draw_bests(folder, rec, shown, generator)


def best_image(run: str | Path) -> BestImage:
    """The best-scoring image of the run in folder ``run`` (its best score over the recorded
    generations, the top of the score figure's best line), as :func:`best_images` gives it."""
    folder = Path(run)
    rec = _read(folder)
    if not np.isfinite(rec.scores).any():
        raise XDreamError(f"{str(folder)!r} has no scored image yet, so no best image")
    (best,) = best_images(folder, [int(rec.generation[np.nanargmax(rec.scores)])])
    return best


def experiment_figures(
    run: Path, rec: records.Record, max_tiles: int, formats: Sequence[str] = ()
) -> tuple[list[Figure], list[str]]:
    """The figures of one experiment's report and notes on anything left out; its plot (the
    score figure) also in ``formats`` (:func:`figure_formats`) besides PNG."""
    notes: list[str] = []
    try:
        generator: Generator | None = load_generator(run, rec)
    except XDreamError as err:
        generator = None
        notes.append(f"images not rendered from codes: {err}")
    n_gen = len(rec.best_per_generation)
    title = _title(rec)
    figures = [
        Figure(
            "scores.png",
            "Score per generation",
            score_figure(rec, title),
            "Best (red) and mean (blue) score of the evolved images per generation; the green "
            "points are the scores of that generation's natural reference images, the band "
            "their range.",
            {fmt: score_figure(rec, title, fmt) for fmt in figure_formats(formats)},
            plot=True,
        )
    ]

    # best image of each generation: the saved PNG, else rendered from the best code
    bests = _draw_bests(
        run, rec, _best_rows(run, rec, _shown_generations(n_gen, max_tiles)), generator
    )
    tiles = [(b.image, f"{b.generation}: {_fmt(b.score, 3)}") for b in bests]
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
        "references.png": "no generation recorded yet"
        if not n_gen and not rec.ref_ids
        else "the run showed no reference images (n_references = 0)"
        if not rec.ref_ids
        else "no reference image has a score yet"
        if not best_ref
        else "no reference image could be regenerated",
    }
    notes += [f"{fig.title}: {why[fig.name]}" for fig in figures if fig.png is None]
    return figures, notes
