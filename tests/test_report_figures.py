"""Figures for a paper: ``xdream report --figures svg,pdf`` and the drawing functions of
``xdream.report`` (README "Figures for a paper")."""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from PIL import Image

from tests.helpers import many_unit_folder, tiny_experiment
from xdream import records, report
from xdream.cli import main
from xdream.errors import XDreamError

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GENERATIONS = 3
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two tiny finished experiments (red scorer, 32 px pixels generator)."""
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        tiny_experiment(root / f"seed{seed}", generations=GENERATIONS, seed=seed).run()
    return root


@pytest.fixture
def run(runs: Path, tmp_path: Path) -> Path:
    """A private copy of one experiment (tests write into it)."""
    return Path(shutil.copytree(runs / "seed0", tmp_path / "run"))


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _check_svg(path: Path) -> ET.Element:
    """A well-formed SVG whose text is text (``svg.fonttype = "none"``), not glyph outlines."""
    root = ET.fromstring(path.read_bytes())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = "".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "generation" in texts and "score" in texts, texts
    return root


def _check_pdf(path: Path, truetype: bool = True) -> bytes:
    """A PDF (matplotlib cannot read one back: its header, its end and its size); the
    report's embeds its fonts as TrueType (``pdf.fonttype = 42``), not Type 3."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    assert len(data) > 5000
    if truetype:
        assert b"/FontFile2" in data and b"/Type3" not in data
    return data


def test_figures_writes_the_score_figure_as_svg_and_pdf_and_montages_stay_png(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {k: matplotlib.rcParams[k] for k in ("svg.fonttype", "pdf.fonttype")}
    assert main(["report", str(run), "--figures", "SVG, .pdf"]) == 0
    assert {k: matplotlib.rcParams[k] for k in before} == before  # the caller's settings kept
    figures = run / report.FIGURES_DIR
    assert sorted(p.name for p in figures.iterdir()) == [
        "best_per_generation.png",
        "last_population.png",
        "references.png",
        "scores.pdf",
        "scores.png",
        "scores.svg",
    ]
    _check_svg(figures / "scores.svg")
    _check_pdf(figures / "scores.pdf")
    # the same plot: one title (the run's target), as in the PNG the page embeds
    title = report.describe_target(records.read_summary(run)["target"])
    assert title in (figures / "scores.svg").read_text()
    with Image.open(figures / "scores.png") as png:
        assert png.size == (700, 360)
    # written again from the same record: the same bytes (SVG ids and dates made each one new)
    written = {p.name: p.read_bytes() for p in figures.glob("scores.*")}
    # no date at all: two writes within a second had the same one (mutation audit W)
    assert b"CreationDate" not in written["scores.pdf"]
    assert main(["report", str(run), "--figures", "svg,pdf"]) == 0
    assert {p.name: p.read_bytes() for p in figures.glob("scores.*")} == written


def test_a_later_report_without_figures_says_the_earlier_vector_files_are_not_rewritten(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`scores.svg` and `scores.pdf` of an earlier `--figures svg,pdf` were left as they were by
    a later report without it, silently: a figure for a paper taken from there showed the run
    as it was then. The page's notes and a warning line say so, and how to rewrite them."""
    figures = run / report.FIGURES_DIR
    assert main(["report", str(run), "--figures", "svg,pdf"]) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--figures", "svg"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"xdream: warning: {figures / 'scores.pdf'}: from an earlier report")
    assert "add --figures pdf to bring it up to date" in err
    page = (run / "report.html").read_text()
    assert "from an earlier report, not rewritten by this one" in page
    assert main(["report", str(run)]) == 0
    assert "add --figures svg,pdf to bring it up to date" in capsys.readouterr().err
    (figures / "best_per_generation.svg").write_text("<svg/>")  # a montage is PNG only: not said
    assert main(["report", str(run), "--figures", "svg,pdf"]) == 0  # rewritten: nothing said
    assert capsys.readouterr().err == ""
    assert "from an earlier report" not in (run / "report.html").read_text()


def test_a_format_not_accepted_is_one_line_naming_those_accepted(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(run)
    for given in ("eps", "svg,jpg", "", "svg,"):
        assert main(["report", str(run), "--figures", given]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        assert "the formats accepted are png, svg, pdf" in err and "--figures svg,pdf" in err
    assert _files(run) == files  # refused before anything was written
    with pytest.raises(XDreamError, match="accepted are png, svg, pdf"):
        report.write_report(run, figure_formats=["svg", "tiff"])
    assert report.figure_formats("png") == () and report.figure_formats(()) == ()
    assert report.figure_formats(["PDF", "svg", "pdf"]) == ("pdf", "svg")


def test_a_folders_runs_write_their_score_figures_in_the_formats_asked_for(
    runs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    report.write_report(runs, out=out, figure_formats="pdf")
    for name in ("seed0", "seed1"):
        _check_pdf(out / name / report.FIGURES_DIR / "scores.pdf")
        assert not (out / name / report.FIGURES_DIR / "scores.svg").exists()
    assert not (out / report.FIGURES_DIR).exists()  # the folder's page has no plot
    with pytest.raises(XDreamError, match="--no-run-reports leaves unwritten"):
        report.write_report(runs, out=out, figure_formats="svg", run_reports=False)
    # an experiment folder has no run reports to leave out: the option is moot there
    report.write_report(
        runs / "seed1", out=tmp_path / "one", figure_formats="svg", run_reports=False
    )
    _check_svg(tmp_path / "one" / report.FIGURES_DIR / "scores.svg")


def test_a_report_leaves_the_callers_matplotlib_backend_and_figures(run: Path) -> None:
    """Writing a report (its score figure) switched the calling program's matplotlib backend
    to Agg for good (matplotlib.use): a notebook's inline figures or a script's windows
    showed nothing afterwards. The report draws on a Figure of its own."""
    plt.switch_backend("svg")  # stands for a notebook's or a window's backend: not Agg
    try:
        fig, ax = plt.subplots()
        report.draw_scores(ax, run)
        report.write_report(run, figure_formats="svg,pdf")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == [fig.number]  # the caller's figure is still open
        _check_svg(run / report.FIGURES_DIR / "scores.svg")
        _check_pdf(run / report.FIGURES_DIR / "scores.pdf")
    finally:
        plt.close("all")
        plt.switch_backend("Agg")


def _lines(ax: Any) -> dict[str, Any]:
    return {line.get_label(): line for line in ax.get_lines()}


def test_draw_scores_draws_the_records_values_on_the_callers_axes(run: Path) -> None:
    rec = records.read(run)
    fig, (left, right) = plt.subplots(1, 2, figsize=(6, 2))
    try:
        assert report.draw_scores(left, run) is left  # from the folder
        report.draw_scores(right, rec, title="", legend=False)  # from the record
        for ax in (left, right):
            lines = _lines(ax)
            assert np.array_equal(lines["best"].get_xdata(), np.arange(GENERATIONS))
            assert np.array_equal(lines["best"].get_ydata(), rec.best_per_generation)
            assert np.array_equal(lines["mean"].get_ydata(), rec.mean_per_generation)
            assert lines["best reference"].get_ydata()[0] == np.nanmax(rec.ref_scores)
            (points,) = [c for c in ax.collections if c.get_label() == "reference images"]
            assert sorted(map(tuple, np.asarray(points.get_offsets()).tolist())) == sorted(
                zip(rec.ref_generation.tolist(), rec.ref_scores.tolist())
            )
            # the band spans each generation's reference scores, from the lowest to the highest
            (band,) = [c for c in ax.collections if c.get_label() != "reference images"]
            box = band.get_paths()[0].get_extents()
            assert np.isclose(box.y0, np.nanmin(rec.ref_scores))
            assert np.isclose(box.y1, np.nanmax(rec.ref_scores))
            assert ax.get_xlim() == (-0.5, GENERATIONS - 0.5)
        assert left.get_title() == report.describe_target(rec.summary["target"])
        assert left.get_legend() is not None
        assert right.get_title() == "" and right.get_legend() is None
        assert fig.get_size_inches().tolist() == [6, 2]  # the caller's figure, untouched
    finally:
        plt.close(fig)


def test_best_images_are_each_generations_best_at_full_resolution(run: Path) -> None:
    rec = records.read(run)
    saved = report.best_images(run)
    assert [b.generation for b in saved] == list(range(GENERATIONS))
    for b in saved:
        rows = np.flatnonzero(rec.generation == b.generation)
        best = rows[np.argmax(rec.scores[rows])]
        assert b.score == rec.scores[best] == rec.best_per_generation[b.generation]
        assert b.image_id == rec.image_ids[best]
        with Image.open(run / "images" / f"gen{b.generation:03d}_best.png") as png:
            assert np.array_equal(b.array, np.asarray(png.convert("RGB")))
        assert b.array.shape == (32, 32, 3) and b.array.dtype == np.uint8
    last = report.best_image(run)
    assert last.generation == int(np.nanargmax(rec.best_per_generation))
    assert last.score == np.nanmax(rec.scores)
    assert [b.generation for b in report.best_images(run, [-1, 0])] == [GENERATIONS - 1, 0]
    # one generation given alone (a raw TypeError before), and a wrong kind in one line
    assert [b.generation for b in report.best_images(run, -1)] == [GENERATIONS - 1]
    assert [b.generation for b in report.best_images(run, np.int64(1))] == [1]
    with pytest.raises(XDreamError, match=r"generations must be whole numbers .*got 1.5"):
        report.best_images(run, [1.5])  # type: ignore[list-item]
    # without the saved PNGs, drawn from the recorded codes: the same images
    shutil.rmtree(run / "images")
    drawn = report.best_images(run)
    assert [(b.generation, b.image_id) for b in drawn] == [
        (b.generation, b.image_id) for b in saved
    ]
    for a, b in zip(saved, drawn):
        assert np.abs(a.array.astype(int) - b.array.astype(int)).max() <= 1
    with pytest.raises(XDreamError, match=r"generation 3 is not in the record .* 0 to 2"):
        report.best_images(run, [3])


def test_best_images_leave_out_a_generation_without_a_scored_image(tmp_path: Path) -> None:
    run = tmp_path / "silent"
    tiny_experiment(run, generations=2, drop=1.0).run()
    assert report.best_images(run) == []
    with pytest.raises(XDreamError, match="no scored image yet"):
        report.best_image(run)


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)
    (example,) = [b for b in blocks if "report.draw_scores(" in b]
    return example


def test_the_readmes_figure_example_runs(run: Path, tmp_path: Path) -> None:
    example = _readme_example()
    path = 'run = "xdream-runs/20250101-120000-demo"'
    assert path in example
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(example.replace(path, f"run = {str(run)!r}"), {})
    finally:
        os.chdir(cwd)
        plt.close("all")
    _check_pdf(tmp_path / "figure2.pdf", truetype=False)  # the caller's settings: Type 3


def test_the_best_image_is_the_runs_best_where_a_later_generation_scored_lower(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """best_image is the run's best-scoring image, not the last generation's best (a run
    whose scores fell: a noisy unit, a rig's; mutation audit N)."""
    import dataclasses

    from xdream.report import figures

    read = figures._read

    def fallen(folder: str | Path) -> records.Record:
        rec = read(folder)
        later = rec.generation > 0
        return dataclasses.replace(rec, scores=np.where(later, rec.scores - 100, rec.scores))

    monkeypatch.setattr(figures, "_read", fallen)
    rec = fallen(run)
    best = report.best_image(run)
    assert best.generation == 0 and best.score == np.nanmax(rec.scores)
    assert best.image_id == rec.image_ids[np.nanargmax(rec.scores)]


def test_a_best_images_array_is_rgb_whatever_its_images_mode() -> None:
    """BestImage.array is (H, W, 3) 8-bit RGB for an image of any mode (mutation audit N)."""
    gray = report.BestImage(0, 1.0, "gen000_000000", Image.new("L", (4, 3), 7))
    assert gray.array.shape == (3, 4, 3) and gray.array.dtype == np.uint8
    assert (gray.array == 7).all()


def _empty_record(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "record.h5").write_bytes(b"")
    return folder


def test_draw_scores_of_a_tune_or_sweep_folder_says_what_it_is_and_which_runs_to_draw(
    tmp_path: Path,
) -> None:
    """draw_scores (and records.read) of an `xdream tune` folder said only that it holds no
    record.h5; of a sweep folder it named records.read. Each now says what the folder is and
    names its run folders (as many as SHOWN_UNITS, and how many more), with the call that
    draws one."""
    tune = tmp_path / "tune"
    runs = [
        _empty_record(tune / f"trial{t:04d}" / "seed0" / "units" / f"blocks.0_c{c:03d}")
        for t in range(3)
        for c in (1, 2)
    ]
    runs.append(_empty_record(tune / "study-b" / "trial0000" / "seed1"))  # a run of one unit
    (tune / "tune.db").write_bytes(b"")
    (tune / "tune.csv").write_text("number,state\n")
    (tune / "study-b" / "tune.csv").write_text("number,state\n")
    sweep = tmp_path / "sweep"
    sweep_runs = [_empty_record(sweep / "blocks.0_c001" / "genetic" / f"seed{s}") for s in (0, 1)]
    (sweep / "sweep.csv").write_text("unit,optimizer,seed,state\n")
    fig, ax = plt.subplots()
    try:
        with pytest.raises(XDreamError) as err:
            report.draw_scores(ax, tune)
        message = str(err.value)
        assert message.startswith(
            f"{str(tune)!r} is an `xdream tune` folder: tune.csv, study-b/tune.csv tables a "
            "tuning study's trials, each trial's runs in its own folder trialNNNN/seedS (of "
            "many units, trialNNNN/seedS/units/UNIT); draw one of those (e.g. "
            f"xdream.report.draw_scores(ax, {str(runs[0])!r})); runs with a record (7): "
        )
        listed = ", ".join(r.relative_to(tune).as_posix() for r in runs[:5])
        assert message.endswith(f"): {listed} and 2 more"), message
        with pytest.raises(XDreamError, match=r"read one of those \(e\.g\. xdream\.records\.read"):
            records.read(tune)
        with pytest.raises(XDreamError) as err:
            report.draw_scores(ax, sweep)
        assert str(err.value) == (
            f"{str(sweep)!r} is an `xdream sweep` folder: its sweep.csv tables the runs, each in "
            "its own folder UNIT/OPTIMIZER/seedS; draw one of those (e.g. "
            f"xdream.report.draw_scores(ax, {str(sweep_runs[0])!r})); runs with a record (2): "
            "blocks.0_c001/genetic/seed0, blocks.0_c001/genetic/seed1"
        )
        (tune / "tune.csv").unlink()
        (tune / "study-b" / "tune.csv").unlink()  # a study whose first trial has not started
        with pytest.raises(XDreamError, match=r"is an `xdream tune` folder: its tune\.csv"):
            report.draw_scores(ax, tune)
        (tmp_path / "other").mkdir()
        with pytest.raises(XDreamError, match=r"holds no record\.h5: is it an experiment"):
            report.draw_scores(ax, tmp_path / "other")  # any other folder: as before
        # a folder inside one (a sweep's UNIT/, a study's trialNNNN/): the runs below it
        unit = sweep / "blocks.0_c001"
        with pytest.raises(XDreamError) as err:
            report.draw_scores(ax, unit)
        assert str(err.value) == (
            f"{str(unit)!r} holds no record.h5 of its own: the run folders below it hold "
            f"theirs; draw one of those (e.g. xdream.report.draw_scores(ax, "
            f"{str(sweep_runs[0])!r})); runs with a record (2): genetic/seed0, genetic/seed1"
        )
        with pytest.raises(XDreamError, match=r"below it hold theirs; read one of those .*: "):
            records.read(tune / "trial0001")
    finally:
        plt.close(fig)


def test_draw_scores_of_a_many_unit_run_names_the_call_that_draws_a_unit(tmp_path: Path) -> None:
    """A many-unit run's folder given to draw_scores is refused naming draw_scores on one of
    its unit folders, not records.read (mutation audit U)."""
    many, names = many_unit_folder(tmp_path)
    fig, ax = plt.subplots()
    try:
        with pytest.raises(XDreamError) as err:
            report.draw_scores(ax, many)
    finally:
        plt.close(fig)
    unit = str(many / "units" / names[0])
    assert f"so draw one, e.g. xdream.report.draw_scores(ax, {unit!r}). " in str(err.value)
    assert "records.read" not in str(err.value)


@pytest.mark.parametrize(("n", "more"), [(5, ""), (6, " and 1 more")])
def test_a_sweep_folders_runs_are_listed_to_five_then_counted(
    tmp_path: Path, n: int, more: str
) -> None:
    """A sweep folder with as many runs as are listed names them all, with no "and 0 more";
    one more is counted (mutation audit U)."""
    out = tmp_path / "sweep"
    runs = [_empty_record(out / "stem_3" / "genetic" / f"seed{s}") for s in range(n)]
    (out / "sweep.csv").write_text("unit,optimizer,seed,state\n")
    with pytest.raises(XDreamError) as err:
        records.read(out)
    listed = ", ".join(r.relative_to(out).as_posix() for r in runs[:5])
    assert str(err.value).endswith(f"runs with a record ({n}): {listed}{more}"), err.value
