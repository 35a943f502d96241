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
``sweep.csv`` adds its tasks without a record (failed, finished with the record missing,
started with nothing recorded yet, or not started) to the run tables; a tune folder's
``tune.csv`` (``study-NAME/tune.csv`` for study NAME) gives a table of trials, and its unit
tables a row per trial. ``out=`` writes the pages into another folder (a read-only one's), not
one holding other experiments or their pages.

``figure_formats="svg,pdf"`` (``xdream report --figures svg,pdf``) writes the score figure also
as ``scores.svg`` and ``scores.pdf`` (:data:`VECTOR_TEXT`: text that stays editable); the
montages stay PNG.

For a figure of one's own, :func:`draw_scores` draws the score figure on one's own matplotlib
axes, from a run's folder or its record; :func:`best_images` and :func:`best_image` give the
best image of each generation, and of the run, at full resolution (:class:`BestImage`).

While ``summary.json`` says ``"running"`` (and its process, or before the first summary the
process holding the folder's lock, is alive) the page reloads itself every ``refresh`` seconds;
``xdream report DIR --watch`` rewrites it until the run ends or stops.

The package's modules, each imported here (``xdream.report.NAME`` names everything public):
:mod:`.images` (PNG, data URIs, montages), :mod:`.generator` (:func:`load_generator`),
:mod:`.page` (the HTML page, numbers as text, writing it), :mod:`.describe` (a run's target and
parts in words), :mod:`.figures` (:func:`experiment_figures`, the score figure, best images),
:mod:`.experiment` (:func:`experiment_report`), :mod:`.state` (:func:`run_state`,
:func:`folder_held`, :func:`is_running`, how to continue a run), :mod:`.studies` (``sweep.csv``
and ``tune.csv``), :mod:`.tables` (a folder's tables per optimiser and per run) and
:mod:`.folder` (:func:`folder_report`, :func:`write_report`). A test that patches a name patches
the module that looks it up (``report.figures.montage``, ``report.state.PROC_LOCKS``).
"""

from __future__ import annotations

from xdream.report.describe import describe_target, target_headings
from xdream.report.experiment import _complete as _complete
from xdream.report.experiment import best_image_file, experiment_report, summary_best_image
from xdream.report.figures import (
    FIGURE_FORMATS,
    SHORT_RUN,
    VECTOR_TEXT,
    BestImage,
    Figure,
    best_image,
    best_images,
    draw_scores,
    experiment_figures,
    figure_formats,
    score_figure,
)
from xdream.report.figures import _shown_generations as _shown_generations
from xdream.report.folder import folder_report, write_report
from xdream.report.generator import load_generator
from xdream.report.images import TILE, PILImage, data_uri, montage, png_bytes, to_pil
from xdream.report.images import _thumb as _thumb
from xdream.report.page import FIGURES_DIR, REPORT_FILE, make_out
from xdream.report.page import _fmt as _fmt
from xdream.report.state import (
    PROC_LOCKS,
    continue_with,
    find_runs,
    folder_held,
    is_running,
    resume_folder,
    run_state,
)
from xdream.report.studies import SWEEP_TABLE, TUNE_TABLE, Study, find_studies, sweep_plan
from xdream.report.tables import optimizer_labels

# also imported above for the tests that reach them here: _complete, _fmt, _shown_generations and
# _thumb (report.py's private names)
__all__ = [
    "FIGURES_DIR",
    "FIGURE_FORMATS",
    "PROC_LOCKS",
    "REPORT_FILE",
    "SHORT_RUN",
    "SWEEP_TABLE",
    "TILE",
    "TUNE_TABLE",
    "VECTOR_TEXT",
    "BestImage",
    "Figure",
    "PILImage",
    "Study",
    "best_image",
    "best_image_file",
    "best_images",
    "continue_with",
    "data_uri",
    "describe_target",
    "draw_scores",
    "experiment_figures",
    "experiment_report",
    "figure_formats",
    "find_runs",
    "find_studies",
    "folder_held",
    "folder_report",
    "is_running",
    "load_generator",
    "make_out",
    "montage",
    "optimizer_labels",
    "png_bytes",
    "resume_folder",
    "run_state",
    "score_figure",
    "summary_best_image",
    "sweep_plan",
    "target_headings",
    "to_pil",
    "write_report",
]
