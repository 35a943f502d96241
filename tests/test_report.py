"""``xdream report`` and ``xdream render``: pages that render in a browser, images from codes."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import (
    codes_rows_read,
    folder_held_by_another_process,
    tiny_experiment,
    torn_record,
)
from xdream import config as config_mod
from xdream import records, report
from xdream.cli import main
from xdream.errors import RecordUnreadableError, XDreamError
from xdream.experiment import Experiment
from xdream.render import render

GENERATIONS = 3
POPULATION = 12


def _config(seed: int, channel: int = 3) -> config_mod.Config:
    return config_mod.from_dict(
        {
            "experiment": {"seed": seed, "generations": GENERATIONS, "n_references": 3},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "optimizer": {"name": "genetic", "population_size": POPULATION},
            "target": {"network": "efficientnet-lite0", "layer": "stem", "channel": channel},
        }
    )


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of three small finished experiments: two seeds on one unit, one on another."""
    root = tmp_path_factory.mktemp("sweep")
    for name, seed, channel in (("a-seed0", 0, 3), ("a-seed1", 1, 3), ("b", 0, 7)):
        Experiment.from_config(_config(seed, channel), root / name).run()
    return root


@pytest.fixture
def run(runs: Path, tmp_path: Path) -> Path:
    """A private copy of one experiment (tests write into it)."""
    return Path(shutil.copytree(runs / "a-seed0", tmp_path / "run"))


# --------------------------------------------------------------------------- headless Chromium
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  var out = {
    images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.alt + " " + i.src.slice(0, 40); }),
    widths: images.map(function (i) { return i.naturalWidth; }),
    tables: document.querySelectorAll("table.sortable").length,
    sorted: []
  };
  var table = document.querySelector("table.runs");
  if (table) {
    var col = Array.from(table.tHead.rows[0].cells).findIndex(function (c) {
      return c.textContent.trim() === "best"; });
    var values = function () { return Array.from(table.tBodies[0].rows).map(function (r) {
      return parseFloat(r.cells[col].dataset.value); }); };
    table.tHead.rows[0].cells[col].click(); out.sorted.push(values());
    table.tHead.rows[0].cells[col].click(); out.sorted.push(values());
  }
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("XDREAM_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def browse(page: Path, tmp: Path, *extra: str) -> str:
    """Load ``page`` in headless Chromium (fresh profile); returns stdout."""
    profile = tmp / f"profile-{time.monotonic_ns()}"
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def probe(page: Path, tmp: Path) -> dict[str, object]:
    """What the page looks like to a browser once loaded (see PROBE)."""
    probed = page.with_name("probed-" + page.name)  # same folder: relative links still resolve
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = browse(probed, tmp, "--virtual-time-budget=10000", "--dump-dom")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run; DOM starts {dom[:500]!r}"
    result: dict[str, object] = json.loads(html.unescape(found.group(1)))
    return result


# --------------------------------------------------------------------------- tests
def test_experiment_report_renders_in_chromium(run: Path, tmp_path: Path) -> None:
    page = report.write_report(run)
    seen = probe(page, tmp_path)
    # best image + scores, best per generation, last population, references
    assert seen["images"] == 5 and seen["broken"] == [], seen
    shot = tmp_path / "shot.png"
    browse(page, tmp_path, "--window-size=1000,1400", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (1400, 1000)
    # not a blank page: colourful figure content (saturated pixels), not only text on white
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 60).mean() > 0.01


def test_folder_report_renders_and_sorts_in_chromium(runs: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(runs, tmp_path / "sweep"))
    for name, best in (("a-seed0", 10.0), ("a-seed1", 9.0)):  # 9 < 10, though "10" < "9"
        _edit_summary(root / name, best_score=best)
    page = report.write_report(root)
    text = page.read_text()
    assert text.count("<h2>") == 2  # two units
    seen = probe(page, tmp_path)
    assert seen["broken"] == [] and seen["tables"] == 4, seen
    # one thumbnail per run (3) plus one per unit-and-optimiser row (2)
    assert seen["images"] == 5
    ascending, descending = seen["sorted"]  # type: ignore[misc]
    assert ascending == [9.0, 10.0] and descending == [10.0, 9.0]  # numbers sort as numbers
    # each run got its own report, linked from the table
    for name in ("a-seed0", "a-seed1", "b"):
        assert (root / name / report.REPORT_FILE).exists()
        assert f'href="{name}/{report.REPORT_FILE}"' in text


def test_report_contents_and_figures(run: Path) -> None:
    page = report.write_report(run, max_tiles=2)
    text = page.read_text()
    assert 'http-equiv="refresh"' not in text  # finished: no reloading
    sections = ["Score per generation", "Best image of each generation", "Last population"]
    sections += ["Top reference images", "Timings", "Configuration", "population_size: 12"]
    for needed in sections:
        assert needed in text
    # a network run's [target] is shown as config.yaml holds it (only a rig run's is left out)
    configuration = text.split("<h2>Configuration</h2>")[1].split("</pre>")[0]
    assert "target:" in configuration and "efficientnet-lite0" in configuration
    assert "[target] that an earlier xdream recorded" not in text
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['best_score']:.4g}" in text
    figures = {p.name: Image.open(p) for p in (run / report.FIGURES_DIR).iterdir()}
    assert set(figures) == {"scores.png", "best_per_generation.png", "last_population.png",
                            "references.png"}  # fmt: skip
    # montage width grows with the number of tiles: 2 generations shown, 12 in the population
    tile = report.TILE
    assert tile * 2 < figures["best_per_generation.png"].width < tile * 3
    assert figures["last_population.png"].width > tile * 10
    assert figures["last_population.png"].height > 2 * tile  # two rows of ten


def test_report_refreshes_while_running(run: Path) -> None:
    import socket

    summary_file = run / "summary.json"
    summary = json.loads(summary_file.read_text())
    live = {"status": "running", "process": {"host": socket.gethostname(), "pid": os.getpid()}}
    summary_file.write_text(json.dumps({**summary, **live}))
    text = report.write_report(run, refresh=7).read_text()
    assert '<meta http-equiv="refresh" content="7">' in text and "Run in progress" in text
    assert report.is_running(run) and report.is_running(run.parent)

    # --watch rewrites the page until the run has finished, then returns
    def finish() -> None:
        time.sleep(1.0)
        summary_file.write_text(json.dumps(summary))

    finisher = threading.Thread(target=finish)
    finisher.start()
    assert main(["report", str(run), "--watch", "0.2"]) == 0
    finisher.join()
    assert 'http-equiv="refresh"' not in (run / report.REPORT_FILE).read_text()
    # before the first generation has finished there is no summary.json: starting, reloads
    # (while the run's process holds the folder)
    (run / "summary.json").unlink()
    with folder_held_by_another_process(run):
        assert report.is_running(run) and "refresh" in report.write_report(run).read_text()


def test_a_torn_record_is_reported_as_unreadable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record left half-written by a kill fails in h5py with a RuntimeError; ``xdream
    report`` says it cannot read the records (and ``--watch`` tries again) instead of a
    traceback."""
    torn = tmp_path / "torn"
    torn_record(torn)
    assert main(["report", str(torn)]) == 2
    assert "cannot read the records" in capsys.readouterr().err
    # --watch tries again only while the run is writing: a finished run's record stays torn
    summary = json.loads((torn / "summary.json").read_text())
    (torn / "summary.json").write_text(json.dumps({**summary, "status": "finished"}))
    assert not report.is_running(torn)
    assert main(["report", str(torn), "--watch", "0.1"]) == 2
    assert "xdream resume" in capsys.readouterr().err


TEARS = {
    # what a reader can see while HDF5 writes back an append's metadata (datasets, new length)
    "a row dataset ahead": [("scores", 1)],
    "the codes ahead": [("codes", 1)],
    "the row ids ahead": [("image_ids", 1), ("genealogy", 1), ("generation", 1)],
    "one reference dataset ahead": [("references/generation", 1)],
    "one per-generation dataset ahead": [("generations/seconds", 1)],
    "generations ahead of the rows": [(f"generations/{k}", 1) for k in records.GEN_FIELDS],
    "rows ahead of the generations": [(k, 1) for k in records.ROW_FIELDS],
    "rows behind the presentations": [(k, -1) for k in records.ROW_FIELDS],
    "references ahead": [(f"references/{k}", 1) for k in records.REF_FIELDS],
    "references behind": [(f"references/{k}", -3) for k in records.REF_FIELDS],
}


@pytest.mark.parametrize("tear", TEARS)
def test_a_record_read_in_the_middle_of_an_append_is_unreadable_not_inconsistent(
    run: Path, tear: str
) -> None:
    """HDF5 may write back part of an append's metadata before the rest, so a reader can open
    record.h5 with some datasets grown and others not: records.read refuses it as unreadable
    (the report, render and --watch read it again) instead of returning arrays that disagree
    (the report's own code then failed with an IndexError); read without the codes too, whose
    rows it counts all the same."""
    whole = records.read(run)
    assert len(whole.codes) == len(whole.generation) == GENERATIONS * POPULATION
    with h5py.File(run / "record.h5", "a") as f:
        for name, step in TEARS[tear]:
            ds = f[name]
            ds.resize(ds.shape[0] + step, axis=0)  # grown: the new entries are still zeros
            if step > 0 and name.endswith("generation"):
                ds[-1] = ds[-2] + 1  # the first row of the generation being appended
    with pytest.raises(RecordUnreadableError, match="TornRead"):
        records.read(run)
    with pytest.raises(RecordUnreadableError, match="TornRead"):
        records.read(run, codes=False)
    with pytest.raises(RecordUnreadableError):
        report.write_report(run)


def test_a_record_reads_without_its_codes_and_codes_row_by_row(run: Path) -> None:
    """read(codes=False) reads every field but the codes (the bulk of a record, which the
    report and render read whole although they need a few rows); read_codes reads the rows
    asked for, in their order, and refuses a row the record does not hold (cut short or
    replaced since it was read)."""
    whole = records.read(run)
    lean = records.read(run, codes=False)
    assert lean.codes.shape == (0, whole.codes.shape[1]) and lean.codes.dtype == np.float32
    for name in records.Record.__dataclass_fields__:
        if name not in ("codes", "extra", "config", "summary", "timing_columns"):
            assert np.array_equal(getattr(lean, name), getattr(whole, name)), name
    assert (lean.config, lean.summary) == (whole.config, whole.summary)
    assert lean.timing_columns == whole.timing_columns and lean.extra.keys() == whole.extra.keys()
    n = len(whole.codes)
    rows = [n - 1, 0, 5, 5, 6, 7, 1]
    assert np.array_equal(records.read_codes(run, rows), whole.codes[rows])
    assert np.array_equal(records.read_codes(run, np.arange(n)), whole.codes)
    assert records.read_codes(run, []).shape == (0, whole.codes.shape[1])
    # a row beyond an intact record is the caller's mistake, not a damaged record
    with pytest.raises(IndexError, match=f"row {n} asked for, but record.h5 .* holds {n} rows"):
        records.read_codes(run, [0, n])
    # fewer rows than the caller's read saw: cut short or replaced since, a torn read
    with pytest.raises(RecordUnreadableError, match=f"TornRead.*{n} rows of codes where {n + 1}"):
        records.read_codes(run, [0], seen=n + 1)
    assert np.array_equal(records.read_codes(run, [0], seen=n), whole.codes[[0]])
    with pytest.raises(ValueError, match="numbered from 0"):
        records.read_codes(run, [-1])


def test_records_of_every_stage_read_whole(tmp_path: Path) -> None:
    """Before the first append (no dataset yet), and after each, the record reads."""
    exp = tiny_experiment(tmp_path / "t", generations=2)
    exp._start()
    assert len(records.read(tmp_path / "t").codes) == 0
    for g in (1, 2):
        exp.step()
        exp.flush()
        assert len(records.read(tmp_path / "t").best_per_generation) == g


def test_read_returns_every_documented_dataset(tmp_path: Path) -> None:
    """Record had no field for references/clean_scores (the denominator of
    relative_to_references), generations/presentations or the timing_columns attribute."""
    from xdream.scorers.noise import NoisyScorer, make_noise

    exp = tiny_experiment(tmp_path / "n", generations=3)
    exp.scorer = NoisyScorer(exp.scorer, make_noise("gain", ns=0.5), seed=3)
    exp.run()
    rec = records.read(tmp_path / "n")
    with h5py.File(tmp_path / "n" / "record.h5", "r") as f:
        clean = f["references/clean_scores"][:]
        assert np.array_equal(rec.ref_clean_scores, clean)
        assert not np.array_equal(rec.ref_clean_scores, rec.ref_scores)  # noise changed them
        assert np.array_equal(rec.presentations_per_generation, f["generations/presentations"])
    rows = np.cumsum(np.bincount(rec.generation))
    assert rec.presentations_per_generation.tolist() == rows.tolist() and len(rows) == 3
    assert rec.timing_columns == records.TIMING_COLUMNS == ("ask", "generate", "score", "tell")


def test_the_reports_complete_keeps_the_fields_of_a_record_in_step(run: Path) -> None:
    """report._complete cuts every row, reference and per-generation field alike."""
    rec = records.read(run)
    rec.best_per_generation = rec.best_per_generation[:-1]  # a generation not yet complete
    rec.ref_scores = np.append(rec.ref_scores, 1.0)  # one more than the ids
    done = report._complete(rec)
    rows = [len(getattr(done, k)) for k in records.ROW_FIELDS]
    assert rows == [(GENERATIONS - 1) * POPULATION] * len(rows)
    assert len(done.ref_ids) == len(done.ref_scores) == len(done.ref_generation) == 3 * 2
    assert len(done.ref_clean_scores) == 3 * 2
    assert len(done.mean_per_generation) == len(done.best_reference_per_generation) == 2
    assert len(done.presentations_per_generation) == 2
    assert len(done.seconds) == 2
    # read without its codes: the rest is cut alike, the (empty) codes are left alone
    lean = records.read(run, codes=False)
    lean.best_per_generation = lean.best_per_generation[:-1]
    done = report._complete(lean, codes=False)
    rows = [len(getattr(done, k)) for k in records.ROW_FIELDS if k != "codes"]
    assert rows == [(GENERATIONS - 1) * POPULATION] * len(rows) and len(done.codes) == 0
    # nothing to drop: nothing copied (the codes were copied whole, the report's largest array)
    whole = records.read(run)
    fields = {k: getattr(whole, k) for k in records.Record.__dataclass_fields__}
    done = report._complete(whole)
    assert all(getattr(done, k) is v for k, v in fields.items())


def test_watch_retries_only_unreadable_records_not_bugs_in_the_report(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a run is live, ``--watch`` tries again after an unreadable record (caught
    mid-write) but not after any other error: a bug in the report code surfaces at once."""
    import socket

    summary_file = run / "summary.json"
    summary = json.loads(summary_file.read_text())
    live = {"status": "running", "process": {"host": socket.gethostname(), "pid": os.getpid()}}
    summary_file.write_text(json.dumps({**summary, **live}))
    assert report.is_running(run)

    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("a bug in the plotting code")

    monkeypatch.setattr(report.figures, "score_figure", broken)
    outcome: list[BaseException] = []

    def watch() -> None:
        try:
            main(["report", str(run), "--watch", "0.05"])
        except BaseException as err:  # handed to the test's thread
            outcome.append(err)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watcher.join(timeout=20)
    assert not watcher.is_alive(), "--watch kept retrying a bug in the report code"
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError)


def test_a_folder_report_lists_a_run_with_an_unreadable_record(run: Path, tmp_path: Path) -> None:
    """One torn record among many experiments: the folder page is still written, and the
    torn run's row says how to recover it."""
    folder = run.parent
    torn_record(folder / "torn")

    def torn_row() -> str:
        page = report.write_report(folder).read_text()
        row = re.search(r"<tr><td><a href=\"torn/.*?</tr>", page)
        assert row is not None
        return row.group(0)

    # its summary names this (live) process: a record caught mid-write, tried again next time
    assert "record unreadable (RuntimeError): being written, try again" in torn_row()
    summary = json.loads((folder / "torn" / "summary.json").read_text())
    (folder / "torn" / "summary.json").write_text(json.dumps({**summary, "status": "stopped"}))
    row = html.unescape(torn_row())
    # a run built in Python (no config.yaml): continued from Python, not by `xdream resume`
    python = "continuing it in Python (e = Experiment(...); e.restore(); e.run()) rebuilds it"
    assert f"record unreadable (RuntimeError): {python}" in row
    shutil.copy(run / "config.yaml", folder / "torn" / "config.yaml")  # as one from a config
    row = html.unescape(torn_row())
    assert f"record unreadable (RuntimeError): xdream resume {folder / 'torn'} rebuilds it" in row
    assert (run / report.REPORT_FILE).exists()  # the readable run got its page


def test_the_best_runs_image_is_that_of_a_best_score_of_zero(runs: Path, tmp_path: Path) -> None:
    """A best score of exactly 0 (a unit that never fired) ranked below a negative one."""
    folder = tmp_path / "zero"
    for name, best in (("a-seed0", 0.0), ("a-seed1", -5.0)):
        shutil.copytree(runs / name, folder / name)
        summary = json.loads((folder / name / "summary.json").read_text())
        (folder / name / "summary.json").write_text(json.dumps({**summary, "best_score": best}))
    page = report.write_report(folder, run_reports=False).read_text()
    table = page.split('<table class="sortable per-optimizer">', 1)[1].split("</table>", 1)[0]
    thumb = {}
    for name in ("a-seed0", "a-seed1"):
        summary = json.loads((folder / name / "summary.json").read_text())
        thumb[name] = report._thumb(report.best_image_file(folder / name, summary))
    assert thumb["a-seed0"] != thumb["a-seed1"]
    assert thumb["a-seed0"] in table


def test_different_targets_with_one_heading_stay_apart(runs: Path, tmp_path: Path) -> None:
    """Two rigs on the same channel (other response folders) are different neurons; grouped by
    their readable heading, the folder table pooled their best scores as one unit's."""
    folder = tmp_path / "rigs"
    rig = {"kind": "rig", "write_dir": "/rig/stimuli", "response_format": "auto"}
    rig.update(channels=3, block_size=4, reps=1, blanks=0)
    for name, responses in (("a-seed0", "/monkeyA"), ("a-seed1", "/monkeyB")):
        shutil.copytree(runs / name, folder / name)
        summary = json.loads((folder / name / "summary.json").read_text())
        summary["target"] = {**rig, "score_dir": responses}
        (folder / name / "summary.json").write_text(json.dumps(summary))
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings == [
        'rig (channel 3, blocks of 4) (score_dir "/monkeyA")',
        'rig (channel 3, blocks of 4) (score_dir "/monkeyB")',
    ]
    assert page.count('<td class="num" data-value="1">1 / 1</td>') == 2  # one run in each


def test_runs_that_differ_in_their_noise_seed_alone_are_one_unit(
    runs: Path, tmp_path: Path
) -> None:
    """The target a run records names its noise seed, which differs between the seeds of one
    unit as the optimiser's does: the folder table keeps those runs in one group."""
    folder = tmp_path / "noisy"
    for noise_seed, name in enumerate(("a-seed0", "a-seed1")):
        shutil.copytree(runs / name, folder / name)
        summary = json.loads((folder / name / "summary.json").read_text())
        noise = {"noise": {"name": "poisson", "scale": 2.0, "reps": 1}, "noise_seed": noise_seed}
        if noise_seed:  # a run of this xdream beside an earlier one's: the keys it added
            noise |= {"preprocess": {"mean": [0.5] * 3}, "module_sha256": None}  # (audit Q3)
        summary["target"] = {**summary["target"], **noise}
        (folder / name / "summary.json").write_text(json.dumps(summary))
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["efficientnet-lite0 stem channel 3 (x 56, y 56)"]
    assert '<td class="num" data-value="2">2 / 2</td>' in page


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(b"", "(empty)"), (b'{"status": "runn', "(not JSON"), (b"[1, 2]", "a JSON list")],
)
def test_a_damaged_summary_is_one_clear_error_and_resume_writes_it_again(
    run: Path, capsys: pytest.CaptureFixture[str], damage: bytes, reason: str
) -> None:
    """A summary.json cut short (power loss, full disk): the run's own report says so and how
    to recover instead of a traceback, --watch does not wait for it, a folder of runs still
    gets its page with the damaged run's row saying what to do, and resume writes it again."""
    folder = run.parent
    shutil.copytree(run, folder / "other")
    good = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_bytes(damage)

    assert main(["report", str(run), "--watch", "0.05"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdream: error: cannot read") and reason in err
    assert f"xdream resume {run}" in err and "Traceback" not in err
    assert not report.is_running(run)

    page = html.unescape(report.write_report(folder).read_text())
    row = re.search(r'<tr><td><a href="run/.*?</tr>', page)
    assert row is not None
    assert f"summary.json unreadable: xdream resume {run} writes it again" in row.group(0)
    assert (folder / "other" / report.REPORT_FILE).exists()  # the readable run got its page

    assert main(["resume", str(run)]) == 0
    again = json.loads((run / "summary.json").read_text())
    keep = ("status", "best_score", "best_image_id", "generations", "presentations")
    assert {k: again[k] for k in keep} == {k: good[k] for k in keep}
    assert main(["report", str(run)]) == 0


def test_a_killed_run_is_reported_stopped_not_running(run: Path) -> None:
    """A running summary names its process; once that process is gone (kill -9, a crash) the
    page stops reloading, says how to continue, and --watch returns."""
    import socket
    import sys

    summary_file = run / "summary.json"
    summary = json.loads(summary_file.read_text())
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    here = {"host": socket.gethostname()}
    try:
        summary_file.write_text(
            json.dumps(
                {**summary, "status": "running", "process": {**here, "pid": int(gone.stdout)}}
            )
        )
        assert report.run_state(json.loads(summary_file.read_text())) == "stopped"
        assert not report.is_running(run)
        text = report.write_report(run).read_text()
        assert 'http-equiv="refresh"' not in text and "xdream resume" in text
        folder_page = report.write_report(run.parent).read_text()  # its row says the same
        assert f"<td>stopped: xdream resume {run}</td>" in html.unescape(folder_page)
        assert main(["report", str(run), "--watch", "0.2"]) == 0  # returns at once
        alive = {"status": "running", "process": {**here, "pid": os.getpid()}}
        assert report.run_state(alive) == "running"
        elsewhere = {"status": "running", "process": {"host": "rig-pc", "pid": int(gone.stdout)}}
        assert report.run_state(elsewhere) == "running"  # cannot tell: assume alive
    finally:
        summary_file.write_text(json.dumps(summary))


def test_running_summary_names_its_process(tmp_path: Path) -> None:
    import socket

    exp = tiny_experiment(tmp_path / "run", generations=3, record_interval=0)
    run = exp.generations()
    next(run)
    next(run)  # the first generation's records are written before the second's are handed over
    running = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert running["status"] == "running"
    assert running["process"] == {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in run:
        pass
    assert "process" not in exp.finish()


def test_report_of_a_run_built_in_python(tmp_path: Path) -> None:
    """No config.yaml: the record's generator parameters draw the images; a record of an
    earlier xdream names the generator only: saved PNGs still fill the montage; missing
    renders are explained."""
    tiny_experiment(tmp_path / "py", generations=3).run()  # pixels at code_size 8, not default
    report.write_report(tmp_path / "py")
    assert (tmp_path / "py" / report.FIGURES_DIR / "last_population.png").exists()
    shutil.rmtree(tmp_path / "py" / report.FIGURES_DIR)
    with h5py.File(tmp_path / "py" / "record.h5", "a") as f:  # as an earlier xdream wrote it
        f.attrs["config"] = json.dumps({**json.loads(f.attrs["config"]), "generator": "pixels"})
    text = report.write_report(tmp_path / "py").read_text()
    assert "images not rendered from codes" in text and "Python" in text
    assert (tmp_path / "py" / report.FIGURES_DIR / "best_per_generation.png").exists()
    assert not (tmp_path / "py" / report.FIGURES_DIR / "last_population.png").exists()


def test_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(XDreamError, match="holds no experiment"):
        report.write_report(tmp_path)
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_a_units_heading_says_where_its_images_were_placed() -> None:
    unit = {"network": "efficientnet-lite0", "layer": "blocks.2", "channel": 0, "x": 28, "y": 28}
    assert report.describe_target({**unit, "placement": None}) == (
        "efficientnet-lite0 blocks.2 channel 0 (x 28, y 28)"
    )
    assert report.describe_target({**unit, "placement": [106, 106, 19]}) == (
        "efficientnet-lite0 blocks.2 channel 0 (x 28, y 28), placed in [106, 106, 19]"
    )


def test_rig_and_function_targets_get_a_readable_heading(tmp_path: Path) -> None:
    """A rig's and a function's report heading (and folder table unit) were raw JSON."""
    rig = {"kind": "rig", "write_dir": "/rig/stimuli", "score_dir": "/rig/responses"}
    rig.update(response_format="auto", channels=3, block_size=4, reps=1, blanks=1)
    assert report.describe_target(rig) == "rig (channel 3, blocks of 4, 1 blank per block)"
    groups = {**rig, "channels": [[0, 1], 4], "block_size": None, "reps": 2, "blanks": 0}
    assert report.describe_target(groups) == (
        "rig (channels [[0, 1], 4], one block per generation, 2 reps)"
    )
    assert report.describe_target({**rig, "channels": None}).startswith(
        "rig (mean of every channel, "
    )
    exp = tiny_experiment(tmp_path / "scorer", generations=1)
    red = exp.scorer

    def my_unit(images: object, ids: list[str]) -> object:
        return red.score(images, ids)  # type: ignore[arg-type]

    Experiment(
        exp.generator, my_unit, exp.optimizer, tmp_path / "function", generations=1,
        n_references=2, seed=0,
    ).run()  # fmt: skip
    page = html.unescape(report.write_report(tmp_path / "function").read_text())
    heading = "xdream experiment: function tests.test_report."
    assert re.search(rf"<h1>{re.escape(heading)}\S*my_unit</h1>", page)


def test_render_regenerates_recorded_images(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "renders"
    written = render(run, ["best", "gen001_000004"], out=out)
    summary = json.loads((run / "summary.json").read_text())
    assert [p.name for p in written] == [f"{summary['best_image_id']}.png", "gen001_000004.png"]
    # the best code rendered again is the saved best image, pixel for pixel
    again = np.asarray(Image.open(written[0]))
    np.testing.assert_array_equal(again, np.asarray(Image.open(run / "best.png")))
    # full resolution: the generator's size parameter, same code
    assert main(["render", str(run), "--ids", "gen002_000000", "--size", "96",
                 "--out", str(out)]) == 0  # fmt: skip
    big = Image.open(out / "gen002_000000.png")
    assert big.size == (96, 96)
    # a reference crop, from its id
    ref_id = next(i for i in _record_ref_ids(run))
    (ref,) = render(run, [ref_id], out=out)
    assert Image.open(ref).size == (32, 32)


def test_the_report_reads_only_the_codes_it_draws(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report read every code in the record (N x d float32, and copied them again: 2.4
    times their size in memory) to draw the last generation and at most max_tiles others: it
    reads those rows alone, and draws the same figures as from a record with every code."""
    rows = codes_rows_read(monkeypatch)
    report.write_report(run)
    assert rows == [POPULATION]  # the last generation; the others' best are in images/
    shutil.rmtree(run / "images")
    (run / "best.png").unlink()
    rows.clear()
    report.write_report(run)  # each generation's best and the run's best drawn from codes
    assert sum(rows) == GENERATIONS + POPULATION + 1 and max(rows) == POPULATION
    for max_tiles in (40, 2):
        lean = report._complete(records.read(run, codes=False), codes=False)
        figures, notes = report.experiment_figures(run, lean, max_tiles)
        expected = report.experiment_figures(run, records.read(run), max_tiles)
        assert [(f.name, f.png) for f in figures] == [(f.name, f.png) for f in expected[0]]
        assert notes == expected[1] and all(f.png for f in figures)
    lean = report._complete(records.read(run, codes=False), codes=False)
    summary = lean.summary
    drawn = report.summary_best_image(run, lean, summary)
    assert drawn == report.summary_best_image(run, records.read(run), summary)
    assert drawn[0] is not None


def _record_ref_ids(run: Path) -> list[str]:
    from xdream import records

    return records.read(run).ref_ids


def test_render_errors(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(run), "--ids", "gen001_00004"]) == 2
    err = capsys.readouterr().err
    assert "no image 'gen001_00004'" in err and "Did you mean" in err
    with pytest.raises(
        XDreamError, match="is not a reference id: reference ids look like ref_PHOTO_TOP_LEFT_SIDE"
    ):
        render(run, ["ref_nonsense"])
    for size in ("100000", "0", "-5"):
        assert main(["render", str(run), "--ids", "best", "--size", size]) == 2
        err = capsys.readouterr().err
        assert "--size must be a whole number of pixels from 1 to 4096" in err, err
        assert "Traceback" not in err


def test_a_finished_runs_unreadable_record_gets_true_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """report and render advised `xdream resume`, which cannot rebuild a finished run's
    record.h5 (its journal was removed at the end) and failed."""
    from xdream.errors import RecordUnreadableError

    run = tmp_path / "runs" / "done"
    tiny_experiment(run, generations=2).run()
    assert not (run / "journal").exists()
    (run / "record.h5").write_bytes(b"\x89HDF garbage from a bad disk")
    for command in (["report", str(run)], ["render", str(run), "--ids", "best"]):
        capsys.readouterr()
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "cannot read the records" in err and "a finished run's journal is removed" in err
        assert "rebuilds record.h5" not in err and "backup" in err
    with pytest.raises(RecordUnreadableError, match="a finished run's journal is removed"):
        tiny_experiment(run, generations=2).restore()
    torn_record(tmp_path / "runs" / "killed")  # journal complete: resume does rebuild it
    summary = json.loads((tmp_path / "runs" / "killed" / "summary.json").read_text())
    (tmp_path / "runs" / "killed" / "summary.json").write_text(
        json.dumps({**summary, "status": "stopped"})
    )
    page = html.unescape(report.write_report(tmp_path / "runs").read_text())
    assert "cannot be rebuilt (its journal is gone): restore a backup" in page
    # built in Python: continued from Python, which rebuilds it (xdream resume cannot)
    assert "continuing it in Python (e = Experiment(...); e.restore(); e.run()) rebuilds it" in page


def test_the_report_of_a_run_without_any_response_has_no_warnings(tmp_path: Path) -> None:
    """Every response missing (a rig that never answered): the page is written, without
    NumPy's All-NaN warnings leaking to the terminal."""
    import warnings

    tiny_experiment(tmp_path / "silent", generations=2, drop=1.0).run()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = report.write_report(tmp_path / "silent")
    assert page.is_file()


def test_the_montage_always_shows_the_last_generation() -> None:
    """``--max-tiles 1`` showed generation 0 only; the last generation matters most."""
    assert report._shown_generations(10, 1) == [9]
    assert report._shown_generations(10, 2) == [0, 9]
    assert report._shown_generations(10, 4) == [0, 3, 6, 9]
    assert report._shown_generations(3, 5) == [0, 1, 2]
    for n in range(1, 30):
        for tiles in range(1, 12):
            shown = report._shown_generations(n, tiles)
            assert shown[-1] == n - 1 and len(shown) == min(n, tiles)


def test_the_montages_show_each_generations_best_and_the_last_population_best_first(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawn from the codes (no images/, as with save_images = "none"): each generation's tile
    is its best code's image with its score, the last population is in descending score."""
    shutil.rmtree(run / "images")
    montages: list[list[tuple[Image.Image, str]]] = []
    montage = report.montage

    def spy(tiles: Any, *args: Any, **kwargs: Any) -> Any:
        montages.append(list(tiles))
        return montage(tiles, *args, **kwargs)

    monkeypatch.setattr(report.figures, "montage", spy)
    rec = records.read(run)
    report.experiment_figures(run, rec, max_tiles=40)
    generator = report.load_generator(run, rec)

    def image(row: int) -> np.ndarray:
        return np.asarray(report.to_pil(generator.generate(torch.from_numpy(rec.codes[[row]]))[0]))

    best_tiles, last_tiles = montages[0], montages[1]
    assert len(best_tiles) == GENERATIONS
    for g, (tile, caption) in enumerate(best_tiles):
        rows = np.flatnonzero(rec.generation == g)
        best = int(rows[np.nanargmax(rec.scores[rows])])
        assert caption == f"{g}: {report._fmt(float(rec.scores[best]), 3)}"
        assert np.array_equal(np.asarray(tile), image(best))
    rows = np.flatnonzero(rec.generation == GENERATIONS - 1)
    order = rows[np.argsort(-rec.scores[rows], kind="stable")]
    assert [caption for _, caption in last_tiles] == [
        report._fmt(float(rec.scores[i]), 3) for i in order
    ]
    assert np.array_equal(np.asarray(last_tiles[0][0]), image(int(order[0])))
    assert np.array_equal(np.asarray(last_tiles[-1][0]), image(int(order[-1])))


def _drawn(rec: object) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    report.draw_scores(ax, rec, "t")  # type: ignore[arg-type]
    fig.canvas.draw()
    plt.close(fig)
    return ax


def _check_axes(ax: object, generations: int) -> None:
    lo, hi = ax.get_xlim()  # type: ignore[attr-defined]
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]  # type: ignore[attr-defined]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert lo < 0 <= generations - 1 < hi and hi - lo == max(generations, 1)


def test_the_score_figure_shows_every_scored_generation(tmp_path: Path) -> None:
    """One generation: the mean was a line without a marker (invisible), the reference band had
    no width and the x axis ran -0.045..0.045. A generation between unscored ones was invisible
    too. Every score missing: empty axes on a fractional x axis."""
    from xdream import records

    tiny_experiment(tmp_path / "one", generations=1).run()
    rec = records.read(tmp_path / "one")
    ax = _drawn(rec)
    _check_axes(ax, 1)
    for label in ("best", "mean"):
        (line,) = [x for x in ax.get_lines() if x.get_label() == label]  # type: ignore[attr-defined]
        assert line.get_marker() not in ("None", "", None, " ")
    (band,) = [c for c in ax.collections if c.get_label() != "reference images"]  # type: ignore[attr-defined]
    extent = band.get_paths()[0].get_extents()
    assert extent.width >= 1 and extent.height > 0

    tiny_experiment(tmp_path / "three", generations=3).run()
    rec = records.read(tmp_path / "three")
    rec.best_per_generation[1] = rec.mean_per_generation[1] = np.nan  # generation 1 unscored
    ax = _drawn(rec)
    _check_axes(ax, 3)
    assert all(x.get_marker() not in ("None", "") for x in ax.get_lines()[1:])  # type: ignore[attr-defined]

    long = np.linspace(0.0, 1.0, 60)  # a long run: markers only where no line reaches
    rec.best_per_generation, rec.mean_per_generation = long.copy(), long.copy()
    rec.mean_per_generation[[29, 31]] = np.nan
    ax = _drawn(rec)
    _check_axes(ax, 60)
    mean = next(x for x in ax.get_lines() if x.get_label() == "mean")  # type: ignore[attr-defined]
    assert np.flatnonzero(mean.get_markevery()).tolist() == [30]

    tiny_experiment(tmp_path / "silent", generations=2, drop=1.0).run()
    rec = records.read(tmp_path / "silent")
    ax = _drawn(rec)
    _check_axes(ax, 2)
    assert "no image scored in 2 generations" in [t.get_text() for t in ax.texts]  # type: ignore[attr-defined]


def test_a_generations_lone_reference_score_is_drawn(tmp_path: Path) -> None:
    """A generation with one scored reference (n_references = 1, or the others unanswered)
    has a range of no height: the band drew nothing there, and nothing marked its score."""
    from xdream import records

    tiny_experiment(tmp_path / "r", generations=3).run()
    rec = records.read(tmp_path / "r")
    first = np.concatenate([[True], rec.ref_generation[1:] != rec.ref_generation[:-1]])
    rec.ref_scores[~first] = np.nan  # one finite reference score per generation
    rec.ref_scores[first & (rec.ref_generation == 1)] = -5.0  # far below the evolved images
    ax = _drawn(rec)
    (points,) = [c for c in ax.collections if c.get_label() == "reference images"]  # type: ignore[attr-defined]
    drawn = sorted(map(tuple, np.asarray(points.get_offsets()).tolist()))
    assert drawn == sorted(zip(rec.ref_generation[first].tolist(), rec.ref_scores[first].tolist()))
    assert ax.get_ylim()[0] < -5.0  # type: ignore[attr-defined]


def test_a_page_without_figures_says_why(tmp_path: Path) -> None:
    """Every score missing: the page promised notes below that it did not have, and its facts
    said "image None"."""
    run = tmp_path / "silent"
    tiny_experiment(run, generations=2, drop=1.0).run()
    text = html.unescape(report.write_report(run).read_text())
    notes = text.split("<h2>Notes</h2>", 1)[1]
    missing = ["Best image of each generation: no image has a score yet",
               "Top reference images: no reference image has a score yet"]  # fmt: skip
    assert all(note in notes for note in missing)
    assert "Last population (generation 1)" not in notes  # drawn without scores
    assert text.count("not available (see the notes below)") == len(missing)
    assert "None" not in text.split("<h2>Configuration</h2>")[0]
    assert "n/a (no image has a score yet)" in text


def _page_best_image(page: Path) -> bytes:
    import base64

    found = re.search(r'alt="best image" src="data:image/png;base64,([^"]+)"', page.read_text())
    assert found is not None
    return base64.b64decode(found.group(1))


def test_the_best_image_is_the_one_the_numbers_beside_it_describe(tmp_path: Path) -> None:
    """best.png is rewritten every generation, summary.json and record.h5 only every
    record_interval (or never again after a kill): the page showed best.png beside the
    summary's older best score. It shows the image the summary names."""
    config = config_mod.from_dict(
        {
            "experiment": {"generations": 12, "n_references": 3, "record_interval": 1000},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "optimizer": {"name": "genetic", "population_size": POPULATION},
            "target": {"network": "efficientnet-lite0", "layer": "stem", "channel": 3},
        }
    )
    run = tmp_path / "run"
    exp = Experiment.from_config(config, run)
    for _ in range(8):
        exp.step()
    exp._settle()  # every PNG written; the summary is the first generation's
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_generation"] == 0
    assert exp.summary(finished=False)["best_generation"] > 0, "no improvement: nothing to test"
    saved = (run / "images" / "gen000_best.png").read_bytes()
    assert saved != (run / "best.png").read_bytes()
    text = html.unescape(report.write_report(run).read_text())
    assert f"best image so far: {summary['best_image_id']}" in text
    assert _page_best_image(run / report.REPORT_FILE) == saved
    # without images/ (save_images = "none"), the summary's best is rendered from its code
    shutil.rmtree(run / "images")
    report.write_report(run)
    assert _page_best_image(run / report.REPORT_FILE) == saved
    folder_page = report.write_report(tmp_path).read_text()  # no thumbnail rather than best.png
    assert 'alt="best image"' not in folder_page
    exp.release_folder()  # 8 of its 12 generations: not finished


@pytest.mark.parametrize("proc_locks", [True, False], ids=["proc-locks", "lock-probe"])
def test_a_run_killed_before_its_first_summary_is_stopped(
    run: Path, monkeypatch: pytest.MonkeyPatch, proc_locks: bool
) -> None:
    """No summary.json yet (killed during its first generation) counted as "running" for
    ever: --watch never returned. The run's lock file tells whether its process is alive."""
    if not proc_locks:
        monkeypatch.setattr(report.state, "PROC_LOCKS", str(run / "no-such-file"))
    elif not Path(report.PROC_LOCKS).exists():
        pytest.skip("no /proc/locks here")
    (run / "summary.json").unlink()
    with folder_held_by_another_process(run):
        assert report.folder_held(run) is True
        assert report.run_state({}, run) == "running" and report.is_running(run)
        assert "<td>starting</td>" in report.write_report(run.parent).read_text()
    assert report.folder_held(run) is False
    assert report.run_state({}, run) == "stopped" and not report.is_running(run)
    done = threading.Event()
    threading.Thread(target=lambda: (main(["report", str(run), "--watch", "0.1"]), done.set()),
                     daemon=True).start()  # fmt: skip
    assert done.wait(20), "--watch kept waiting for a dead run"
    text = html.unescape((run / report.REPORT_FILE).read_text())
    assert 'http-equiv="refresh"' not in text and f"xdream resume {run}" in text
    folder_page = html.unescape(report.write_report(run.parent).read_text())
    assert f"<td>stopped: xdream resume {run}</td>" in folder_page
    # a lock file naming another machine (a shared folder): cannot tell, assumed running
    (run / ".xdream.lock").write_text("pid 1 on rig-pc, since 2025-01-01 00:00:00\n")
    assert report.folder_held(run) is None and report.run_state({}, run) == "running"
    (run / ".xdream.lock").unlink()  # no lock file: cannot tell either
    assert report.folder_held(run) is None and report.run_state({}, run) == "running"


@pytest.mark.parametrize("proc_locks", [True, False], ids=["proc-locks", "lock-probe"])
def test_asking_in_the_runs_own_process_keeps_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc_locks: bool
) -> None:
    """Closing any descriptor of a file releases the process's POSIX locks on it: asking
    about a run from its own process (before its first summary) must not free its folder."""
    if not proc_locks:
        monkeypatch.setattr(report.state, "PROC_LOCKS", str(tmp_path / "no-such-file"))
    run = tmp_path / "run"
    exp = tiny_experiment(run, generations=2)
    exp._start()
    (run / "summary.json").unlink(missing_ok=True)
    assert report.run_state({}, run) == "running"
    with pytest.raises(AssertionError), folder_held_by_another_process(run):
        pass  # the other process could not take the folder: still held here
    exp.release_folder()


def test_a_stopped_unit_of_a_many_unit_run_names_the_run_to_resume(
    run: Path, tmp_path: Path
) -> None:
    """Each unit of a many-unit run said "xdream resume RUN/units/UNIT"; `xdream resume RUN`
    continues every unit together."""
    import socket
    import sys

    many = tmp_path / "many"
    unit = Path(shutil.copytree(run, many / "units" / "blocks.4_c003"))
    shutil.copy(unit / "config.yaml", many / "config.yaml")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    summary = json.loads((unit / "summary.json").read_text())
    process = {"host": socket.gethostname(), "pid": int(gone.stdout)}
    (unit / "summary.json").write_text(
        json.dumps({**summary, "status": "running", "process": process})
    )
    for page in (report.write_report(unit), report.write_report(many)):
        text = html.unescape(page.read_text())
        assert f"xdream resume {many}" in text and f"xdream resume {unit}" not in text
    assert report.resume_folder(run) == run  # a single experiment resumes itself


def stem_config(path: Path, generations: int, n_references: int) -> Path:
    """A config file for a small run on a unit of the embedded network's stem."""
    path.write_text(
        f"[experiment]\ngenerations = {generations}\nn_references = {n_references}\n"
        '[generator]\nname = "pixels"\nsize = 32\ncode_size = 8\n'
        '[optimizer]\nname = "genetic"\npopulation_size = 6\n'
        '[target]\nnetwork = "efficientnet-lite0"\nlayer = "stem"\nchannel = 3\n'
    )
    return path


def test_progress_lines_of_a_run_without_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """n_references = 0: each generation's line said "best reference -inf"."""
    config = stem_config(tmp_path / "c.toml", generations=2, n_references=0)
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "inf" not in out
    assert out.count("best reference so far none shown") == 2


def test_progress_lines_say_which_numbers_are_the_runs_so_far(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The line said "best" and "best reference" for the run's best so far, next to the
    generation's mean, while record.h5 names each generation's own best the same way."""
    config = stem_config(tmp_path / "c.toml", generations=4, n_references=2)
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 0
    lines = re.findall(
        r"generation (\d+): best so far (\S+), mean (\S+), best reference so far (\S+)",
        capsys.readouterr().out,
    )
    rec = records.read(tmp_path / "run")
    assert [int(g) for g, *_ in lines] == [0, 1, 2, 3]
    for g, best, mean, ref in lines:
        n = int(g) + 1
        assert best == f"{np.max(rec.best_per_generation[:n]):.4g}"
        assert mean == f"{rec.mean_per_generation[n - 1]:.4g}"
        assert ref == f"{np.max(rec.best_reference_per_generation[:n]):.4g}"


def test_a_lock_on_another_file_systems_file_of_the_same_inode_is_not_the_runs(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc/locks names files by device and inode: a lock held on another file system's file
    with the same inode number made a dead run look alive for ever (--watch never returned)."""
    (run / "summary.json").unlink()
    inode = os.stat(run / ".xdream.lock").st_ino
    table = tmp_path / "locks"
    table.write_text(f"1: POSIX  ADVISORY  WRITE 999 00:99:{inode} 0 EOF\n")
    monkeypatch.setattr(report.state, "PROC_LOCKS", str(table))
    with folder_held_by_another_process(run):
        assert report.folder_held(run) is True  # told by trying the lock itself
    assert report.folder_held(run) is False and report.run_state({}, run) == "stopped"


def test_best_over_reference_is_noise_free_as_in_units_csv(run: Path) -> None:
    """Under a noise model the report divided the noisy best by the noisy best reference while
    units.csv gives noise-free over noise-free: one ratio, the noise-free one, in both pages."""
    summary = json.loads((run / "summary.json").read_text())
    summary.update(
        best_score=11.0, best_reference_score=10.0,  # noisy: 1.1
        best_clean_score=4.0, best_clean_reference_score=8.0,  # noise-free: 0.5
    )  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    page = html.unescape(report.write_report(run).read_text())
    assert re.search(r"best / best reference \(noise-free\)</t[hd]>\s*<td>0\.5", page)
    folder = html.unescape(report.write_report(run.parent).read_text())
    assert ">0.5<" in folder and ">1.1<" not in folder
    # beside the noisy best and best reference, the ratio's columns say it is noise-free
    assert "<th>best</th>" in folder and "<th>best reference</th>" in folder
    assert "<th>noise-free best / ref</th>" in folder
    assert "<th>median noise-free best / ref</th>" in folder


def test_a_stopped_run_built_in_python_is_continued_from_python_not_by_xdream_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report advised `xdream resume DIR` for a stopped run built in Python, which that
    command refuses (it has no config.yaml), and the refusal called the folder "not an
    experiment folder". Both now say to continue it from Python."""
    import socket
    import sys

    run = tmp_path / "runs" / "python"
    exp = tiny_experiment(run, generations=3)
    exp.step()
    exp.flush()
    exp.release_folder()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads((run / "summary.json").read_text())
    process = {"host": socket.gethostname(), "pid": int(gone.stdout)}
    (run / "summary.json").write_text(json.dumps({**summary, "process": process}))
    assert report.run_state(json.loads((run / "summary.json").read_text()), run) == "stopped"
    page = html.unescape(report.write_report(run).read_text())
    assert "continue it with `e = Experiment(...); e.restore(); e.run()` in Python" in page
    assert "xdream resume" not in page.replace("no config.yaml for xdream resume", "")
    row = html.unescape(report.write_report(run.parent).read_text())
    assert "<td>stopped: `e = Experiment(...); e.restore(); e.run()` in Python" in row
    assert main(["resume", str(run)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds an experiment built in Python" in err and "not an experiment folder" not in err
    assert f"e = Experiment(generator, scorer, optimizer, {str(run)!r}, ...); e.restore()" in err
    (run / "summary.json").write_text("{")  # damaged: continuing writes it again
    row = html.unescape(report.write_report(run.parent).read_text())
    assert "summary.json unreadable: `e = Experiment(...); e.restore(); e.run()`" in row
    again = tiny_experiment(run, generations=3)
    again.restore()
    assert again.run()["generations"] == 3


def test_a_run_made_from_a_config_that_lost_its_config_yaml_is_told_to_put_it_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without config.yaml a run was taken for one built in Python, and `xdream resume` and
    the report told the user to rebuild it from Python objects. Its record.h5 says it was made
    from a config, and keeps that config: put it back, then `xdream resume` goes on."""
    import yaml

    from tests.test_cli import FAST_RUN, write

    run = tmp_path / "run"
    assert (
        main(
            [
                "run",
                str(write(tmp_path / "c.toml", FAST_RUN.format(generations=2))),
                "--out",
                str(run),
            ]
        )
        == 0
    )
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").unlink()
    assert records.config_yaml_lost(run)
    assert not records.config_yaml_lost(tmp_path)  # no record: it cannot tell
    assert main(["resume", str(run)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "its config.yaml is missing: put it back (record.h5 keeps a copy" in err
    assert "built in Python" not in err
    assert report.continue_with(run).startswith("its config.yaml is missing")
    assert f"xdream.config.dump_yaml(xdream.records.read({str(run)!r}).config, " in err
    recorded = records.read(run).config
    config_mod.dump_yaml(recorded, run / "config.yaml")  # the recipe the message gives
    assert config_mod.load(run / "config.yaml") == config_mod.from_dict(yaml.safe_load(saved))
    assert main(["resume", str(run)]) == 0
    # a run into it says the same, not "built from Python objects"
    (run / "config.yaml").unlink()
    assert main(["run", str(tmp_path / "c.toml"), "--out", str(run)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Continue it (its config.yaml is missing: put it back" in err
    # one built in Python stays one, even with a scorer describing a network without a kind
    python = tmp_path / "python"
    exp = tiny_experiment(python, generations=2)
    exp.scorer.describe = lambda: {"network": "mine", "layer": "x"}  # type: ignore[method-assign]
    exp.step()
    exp.flush()
    exp.release_folder()
    assert not records.config_yaml_lost(python)
    assert records.continue_command(python) == records.PYTHON_CONTINUE
    # and a config put there cannot continue it: the checkpoint says no config made it
    (python / "config.yaml").write_text(yaml.safe_dump(recorded))
    assert main(["resume", str(python)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "it holds an experiment built in Python (its checkpoint records no config)" in err
    assert records.read(python).config["target"]["network"] == "mine"  # nothing touched


# --------------------------------------------------------------------------- folder statistics
def _gone_pid() -> int:
    """The pid of a process that has ended."""
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _edit_summary(run: Path, **changes: Any) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    summary.update(changes)
    (run / "summary.json").write_text(json.dumps(summary))
    return summary


def _table(page: str, kind: str) -> list[str]:
    """The body rows of every ``table.<kind>`` of a page, as text."""
    tables = re.findall(rf'<table class="sortable {kind}">.*?<tbody>(.*?)</tbody>', page, re.S)
    return [row for t in tables for row in re.findall(r"<tr>(.*?)</tr>", t, re.S)]


def test_folder_statistics_are_over_finished_runs_with_the_sample_sd(
    runs: Path, tmp_path: Path
) -> None:
    """A stopped run is listed but left out of its optimiser's statistics, which say how many
    runs they are over; sd is the sample SD, empty for one run (it was a population SD over
    every run, stopped ones included, and 0 for a single run)."""
    import socket

    folder = tmp_path / "sweep"
    for name in ("a-seed0", "a-seed1", "b"):
        shutil.copytree(runs / name, folder / name)
    shutil.copytree(runs / "a-seed0", folder / "a-seed2")
    stopped = {"host": socket.gethostname(), "pid": _gone_pid()}
    _edit_summary(folder / "a-seed2", status="running", process=stopped, best_score=100.0)
    bests = [json.loads((folder / n / "summary.json").read_text())["best_score"]
             for n in ("a-seed0", "a-seed1")]  # fmt: skip
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    rows = _table(page, "per-optimizer")
    assert len(rows) == 2  # channel 3, channel 7
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[0])
    assert cells[2] == "2 / 3"  # finished / all
    assert cells[3] == f"{np.median(bests):.4g}" and cells[4] == f"{np.mean(bests):.4g}"
    assert cells[5] == f"{np.std(bests, ddof=1):.4g}"
    lone = re.findall(r"<td[^>]*>(.*?)</td>", rows[1])
    assert lone[2] == "1 / 1" and lone[5] == "n/a"  # no SD of one run
    assert "100" not in rows[0]  # the stopped run's best is not in the statistics...
    assert any("a-seed2" in r and "stopped: xdream resume" in r for r in _table(page, "runs"))
    assert "over the <em>finished</em> runs only" in page  # ...and the page says so
    assert 'http-equiv="refresh"' not in page  # a stopped run is not reloaded for


def test_a_run_whose_record_cannot_be_read_stays_in_its_optimisers_row(
    runs: Path, tmp_path: Path
) -> None:
    """Its optimiser's hyperparameters come from config.yaml, or for a run without one from
    its only namesake in the unit: the run is counted in that row, not in one of its own."""
    folder = tmp_path / "sweep"
    for name in ("a-seed0", "a-seed1", "torn", "torn-python"):
        shutil.copytree(runs / ("a-seed0" if name.startswith("torn") else name), folder / name)
    for name in ("torn", "torn-python"):
        (folder / name / "record.h5").write_bytes(b"\0" * 4096)
        _edit_summary(folder / name, status="stopped")
    (folder / "torn-python" / "config.yaml").unlink()
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in _table(page, "per-optimizer")]
    assert [r[:3] for r in rows] == [["genetic", "pixels", "2 / 4"]]


def test_a_sweep_folder_lists_its_tasks_without_a_record(runs: Path, tmp_path: Path) -> None:
    """Tasks of sweep.csv that failed before recording, or never started, are in the run
    tables and the headline count (the page showed the recorded runs alone, as if complete)."""
    from xdream.multi import write_table
    from xdream.sweep import columns

    folder = tmp_path / "sweep"
    tasks = [
        ("stem_c003/genetic/seed0", "a-seed0", "stem_c003", 0, ""),
        ("stem_c003/genetic/seed1", "a-seed1", "stem_c003", 1, ""),
        ("stem_c007/genetic/seed0", "b", "stem_c007", 0, ""),
        ("stem_c003/genetic/seed2", None, "stem_c003", 2, "a budget of 3 presentations is less"),
        ("stem_c009/genetic/seed0", None, "stem_c009", 0, ""),
    ]
    rows = []
    for path, source, unit, seed, error in tasks:
        if source is not None:
            shutil.copytree(runs / source, folder / path)
        rows.append(
            {"unit": unit, "optimizer": "genetic", "seed": seed, "folder": path, "error": error}
        )
    write_table(folder / "sweep.csv", rows, columns())
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    assert "<h1>xdream: 3 of 5 experiments</h1>" in page
    assert "3 finished, 1 failed, 1 not started" in page
    groups = _table(page, "per-optimizer")
    assert '<td class="num" data-value="2">2 / 3</td>' in groups[0]  # channel 3: one failed
    tables = re.findall(r'<table class="sortable runs">(.*?)</table>', page, re.S)
    assert len(tables) == 3  # channel 3, channel 7, and the unit with no record
    failed = "failed before recording: a budget of 3 presentations is less"
    assert "stem_c003/genetic/seed2" in tables[0] and failed in tables[0]
    (task,) = [r for r in re.findall(r"<tr>(.*?)</tr>", tables[0]) if "seed2" in r]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", task)
    assert cells[1:4] == ["genetic", "", "2"] and cells[4:11] == ["n/a"] * 7  # its seed kept
    assert "<h2>Planned experiments of units with none recorded</h2>" in page
    assert "stem_c009/genetic/seed0" in tables[2] and "not started" in tables[2]


def test_pending_tasks_of_an_optimiser_without_a_record_are_not_started_in_its_row(
    runs: Path, tmp_path: Path
) -> None:
    """A unit with a recorded run and two pending tasks of another optimiser (a stopped or
    running sweep of two optimisers): those tasks are its row's, 0 / 2, not started (the
    report raised IndexError on the group made for the first of them)."""
    from xdream.multi import write_table
    from xdream.sweep import columns

    folder = tmp_path / "sweep"
    shutil.copytree(runs / "a-seed0", folder / "stem_c003/genetic/seed0")
    rows = [{"unit": "stem_c003", "optimizer": "genetic", "seed": 0,
             "folder": "stem_c003/genetic/seed0", "error": ""}]  # fmt: skip
    for seed in (0, 1):
        rows.append({"unit": "stem_c003", "optimizer": "nes", "seed": seed,
                     "folder": f"stem_c003/nes/seed{seed}", "error": ""})  # fmt: skip
    write_table(folder / "sweep.csv", rows, columns())
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    groups = [re.findall(r"<td[^>]*>(.*?)</td>", r)[:3] for r in _table(page, "per-optimizer")]
    assert groups == [["genetic", "pixels", "1 / 1"], ["nes", "", "0 / 2"]]
    pending = [r for r in _table(page, "runs") if "stem_c003/nes/seed" in r]
    assert len(pending) == 2 and all("<td>not started</td>" in r for r in pending)


def test_a_sweep_task_started_without_a_record_is_not_called_not_started(
    runs: Path, tmp_path: Path
) -> None:
    """A pending task whose folder a worker made (config.yaml, worker.json) but with no record
    yet is "started, nothing recorded yet" (it was "not started", as a task with no folder
    still is)."""
    from xdream.multi import write_table
    from xdream.sweep import columns

    folder = tmp_path / "sweep"
    shutil.copytree(runs / "a-seed0", folder / "u/genetic/seed0")
    started = folder / "u/genetic/seed1"
    started.mkdir(parents=True)
    shutil.copy(folder / "u/genetic/seed0/config.yaml", started)
    (started / "worker.json").write_text('{"host": "h", "pid": 1}\n')
    alone = folder / "u/genetic/seed4"  # a worker's config.yaml alone also says it started
    alone.mkdir(parents=True)
    shutil.copy(started / "config.yaml", alone)
    lost = folder / "u/genetic/seed5"  # finished, says sweep.csv, but its record.h5 is gone
    lost.mkdir(parents=True)
    shutil.copy(started / "config.yaml", lost)
    states = ("finished", "pending", "pending", "failed", "pending", "finished")
    rows = [{"unit": "u", "optimizer": "genetic", "seed": seed, "folder": f"u/genetic/seed{seed}",
             "error": "", "state": state}
            for seed, state in enumerate(states)
            ]  # fmt: skip
    write_table(folder / "sweep.csv", rows, columns())
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    assert (
        "1 finished, 1 failed, 1 finished with their record.h5 missing, "
        "2 started (nothing recorded yet), 1 not started" in page
    )
    status = {r.split("</td>")[0][4:]: r for r in _table(page, "runs")}
    assert "finished, but its record.h5 is missing (moved or deleted)" in status["u/genetic/seed5"]
    status = {r.split("</td>")[0][4:]: r for r in _table(page, "runs")}
    assert "<td>started, nothing recorded yet</td>" in status["u/genetic/seed1"]
    assert "<td>not started</td>" in status["u/genetic/seed2"]
    assert "<td>failed</td>" in status["u/genetic/seed3"]  # failed as sweep.csv's state says
    assert "<td>started, nothing recorded yet</td>" in status["u/genetic/seed4"]


def test_out_refuses_a_folder_of_other_experiments_or_another_folders_report(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out that is or holds another experiment, or holds the report of another folder, is
    one clear error, exit 2, and its pages are left as they were (they were silently replaced
    by the reported folder's); a later report of the same folder into the same --out works."""
    one = Path(shutil.copytree(runs / "a-seed0", tmp_path / "one"))
    other = Path(shutil.copytree(runs, tmp_path / "other"))
    assert main(["report", str(other)]) == 0
    before = {p: p.read_bytes() for p in other.rglob(report.REPORT_FILE)}
    for source, out in ((one, other), (one, other / "b"), (other / "b", one)):
        assert main(["report", str(source), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        what = "holds an experiment (" if out == other else "is an experiment's folder:"
        assert err.startswith(f"xdream: error: --out {str(out)!r} {what}")
        assert "give --out a new or empty folder" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in other.rglob(report.REPORT_FILE)} == before
    pages = tmp_path / "pages"
    assert main(["report", str(other), "--out", str(pages)]) == 0
    assert main(["report", str(other), "--out", str(pages)]) == 0  # the same folder's again
    page = (pages / report.REPORT_FILE).read_bytes()
    assert main(["report", str(one), "--out", str(pages)]) == 2
    err = capsys.readouterr().err
    assert f"holds the report of another folder ({str(other)!r})" in err
    assert (pages / report.REPORT_FILE).read_bytes() == page
    (pages / report.REPORT_FILE).write_text("<html>someone's page</html>")
    assert main(["report", str(other), "--out", str(pages)]) == 2
    assert "holds a report.html that does not say which folder" in capsys.readouterr().err


def test_a_tune_folder_reports_each_trial_with_its_parameters(runs: Path, tmp_path: Path) -> None:
    """A tune folder's page has each study's trials (state, value, parameters) and per unit a
    row per trial (it pooled every trial, whatever its hyperparameters, in one row per
    optimiser name); runs of one optimiser name with other hyperparameters are told apart."""
    from xdream.multi import write_table

    folder = tmp_path / "tune"
    shutil.copytree(runs / "a-seed0", folder / "trial0000" / "seed0")
    shutil.copytree(runs / "a-seed1", folder / "trial0001" / "seed0")
    with h5py.File(folder / "trial0001" / "seed0" / "record.h5", "r+") as f:
        config = json.loads(f.attrs["config"])
        config["optimizer"]["population_size"] = 8  # as its trial proposed
        f.attrs["config"] = json.dumps(config)
    shutil.copytree(runs / "a-seed0", folder / "study-wide" / "trial0000" / "seed0")
    header = ["number", "state", "value", "population_size", "mutation_rate"]
    proposed = [(0, "COMPLETE", 1.25, 12, 0.5), (1, "COMPLETE", 1.75, 8, 0.3897)]
    proposed += [(2, "FAIL", None, 6, 0.125), (3, "COMPLETE", 1.5, 6, 0.125)]
    rows = [dict(zip(header, values)) for values in proposed]
    rows[2]["retried_as"], rows[3]["retry_of"] = 3, 2  # 3 ran 2 again, resuming its folder
    shutil.copytree(runs / "a-seed1", folder / "trial0002" / "seed0")
    with h5py.File(folder / "trial0002" / "seed0" / "record.h5", "r+") as f:
        config = json.loads(f.attrs["config"])
        config["optimizer"]["population_size"] = 6
        f.attrs["config"] = json.dumps(config)
    write_table(folder / "tune.csv", rows, [*header, "retry_of", "retried_as"])
    trial = folder / "study-wide" / "trial0000"
    other = {**rows[0], "value": 0.5, "folder": str(trial.resolve()), "duration": 3.5}
    other["norm_stem_c003"] = 0.5
    extra = ["folder", "duration", "norm_stem_c003", "extra"]
    write_table(folder / "study-wide" / "tune.csv", [other], [*header, *extra])
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    assert "<h2>Trials of the default study (<code>tune.csv</code>)</h2>" in page
    assert "<h2>Trials of study 'wide' (<code>study-wide/tune.csv</code>)</h2>" in page
    trials = _table(page, "trials")
    assert len(trials) == 5
    head = re.search(r'<table class="sortable trials"><thead>(.*?)</thead>', page)
    assert head is not None
    assert re.findall(r"<th>(.*?)</th>", head.group(1)) == [
        "trial", "state", "value", "population_size", "mutation_rate", "retry_of", "retried_as",
    ]  # fmt: skip
    assert ">0.3897<" in trials[1] and ">FAIL<" in trials[2] and ">1.75<" in trials[1]
    assert '<a href="trial0001/">1</a>' in trials[1]
    assert '<a href="trial0002/">3</a>' in trials[3]  # the retry: the folder it resumed
    assert '<a href="study-wide/trial0000/">0</a>' in trials[4] and ">3.5<" in trials[4]
    groups = [re.findall(r"<td[^>]*>(.*?)</td>", r)[:4] for r in _table(page, "per-optimizer")]
    assert groups == [
        ["0", "genetic (population_size 12)", "pixels", "1 / 1"],
        ["1", "genetic (population_size 8)", "pixels", "1 / 1"],
        ["3", "genetic (population_size 6)", "pixels", "1 / 1"],
        ["wide 0", "genetic (population_size 12)", "pixels", "1 / 1"],
    ]


def test_a_study_folder_reported_alone_is_named_by_its_folder(runs: Path, tmp_path: Path) -> None:
    """The page of OUT/study-NAME heads its trials study NAME and names them NAME N (it called
    them the default study's); a tune folder named study-X (it holds tune.db) stays the
    default study."""
    from xdream.multi import write_table

    header = ["number", "state", "value"]
    for name in ("tune/study-wide", "study-x"):
        folder = tmp_path / name
        shutil.copytree(runs / "a-seed0", folder / "trial0000" / "seed0")
        write_table(folder / "tune.csv", [dict(zip(header, (0, "COMPLETE", 1.25)))], header)
    (tmp_path / "study-x" / "tune.db").touch()
    page = html.unescape(
        report.write_report(tmp_path / "tune/study-wide", run_reports=False).read_text()
    )
    assert "<h2>Trials of study 'wide' (<code>tune.csv</code>)</h2>" in page
    assert re.findall(r"<td[^>]*>(.*?)</td>", _table(page, "per-optimizer")[0])[0] == "wide 0"
    page = report.write_report(tmp_path / "study-x", run_reports=False).read_text()
    assert "<h2>Trials of the default study (<code>tune.csv</code>)</h2>" in page


def test_a_read_only_folder_is_one_clear_error_and_out_writes_the_page_elsewhere(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report of a folder that cannot be written (a read-only mount) says so in one line,
    exit 2 (it was a traceback), and --out writes the page (and the runs' pages) elsewhere; an
    --out that cannot be written, or that is a file, is told apart."""
    import errno

    folder = Path(shutil.copytree(runs, tmp_path / "sweep"))
    inside = str(folder) + os.sep
    os_open, os_mkdir = os.open, os.mkdir

    def read_only(path: Any, flags: int, *args: Any) -> int:
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if (str(path) + os.sep).startswith(inside) and writes:  # O_TMPFILE names the folder
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return os_open(path, flags, *args)

    def no_mkdir(path: Any, *args: Any, **kw: Any) -> None:
        if str(path).startswith(inside) and not os.path.isdir(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        os_mkdir(path, *args, **kw)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(os, "mkdir", no_mkdir)
    for path in (folder / "a-seed0", folder):
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"xdream: error: cannot write the report into {str(path)!r}: ")
        assert "Read-only file system" in err and "give --out DIR" in err
        assert "Traceback" not in err and err.count("\n") == 1
    # --out itself the problem: the advice is about it (it was "give --out DIR" here too)
    afile = tmp_path / "afile"
    afile.touch()
    for out, says in (
        (folder / "pages", "Read-only file system; give --out a folder that can be written"),
        (afile, "a file has that name; give --out a folder"),
        (afile / "sub", f"{str(afile)!r} is a file; give --out a folder"),
    ):
        assert main(["report", str(folder / "a-seed0"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"xdream: error: cannot write the report into {str(out)!r}: {says}")
        assert "--out DIR" not in err and err.count("\n") == 1

    one = tmp_path / "pages" / "one"
    assert main(["report", str(folder / "a-seed0"), "--out", str(one)]) == 0
    assert "population_size: 12" in (one / report.REPORT_FILE).read_text()
    assert (one / report.FIGURES_DIR / "scores.png").is_file()
    many = tmp_path / "pages" / "many"
    assert main(["report", str(folder), "--out", str(many)]) == 0
    page = (many / report.REPORT_FILE).read_text()
    for name in ("a-seed0", "a-seed1", "b"):
        assert f'href="{name}/{report.REPORT_FILE}"' in page
        assert (many / name / report.REPORT_FILE).is_file()
    assert not list(folder.rglob(report.REPORT_FILE))  # nothing written into the folder

    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()  # a folder made for a failed report is removed


def test_a_stopped_trial_of_a_tune_study_is_continued_by_the_studys_command(
    tmp_path: Path,
) -> None:
    """A stopped run inside a tune study's trial folder was told to go on with `xdream resume`,
    which continues the run but not the study: the study's `xdream tune` command resumes the
    trial and counts it (audit V, NEW-8). Default study, study NAME, and runs of no study."""
    from xdream.report.state import continue_with

    def run_in(folder: Path) -> Path:
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("{}\n")
        return folder

    out = tmp_path / "out"
    default = run_in(out / "trial0001" / "seed0")
    (out / "tune.db").write_bytes(b"")
    named = run_in(out / "study-wide" / "trial0000" / "seed1" / "units" / "blocks.0_c001")
    (out / "study-wide" / "tune.csv").write_text("number,state,value\n")
    assert continue_with(default).startswith(f"xdream tune CONFIG --out {out.resolve()} (")
    assert continue_with(named).startswith(
        f"xdream tune CONFIG --out {out.resolve()} --study wide ("
    )
    alone = run_in(tmp_path / "runs" / "trial0003" / "seed0")  # named like one, no study
    assert continue_with(alone) == f"xdream resume {alone}"
    sweep_task = run_in(tmp_path / "sweep" / "blocks.0_c001" / "genetic" / "seed0")
    assert continue_with(sweep_task) == f"xdream resume {sweep_task}"


def test_a_run_stopped_in_its_first_generation_says_so_not_that_it_had_no_references(
    tmp_path: Path,
) -> None:
    """A run whose first generation never finished (its scorer failed) was reported as having
    shown no reference images "(n_references = 0)" although it was set to show 10; and a rig
    run paused by its rig loop shows the loop's reason and how to continue, not only that its
    process is gone (audit U2-6)."""
    import xdream.generators
    import xdream.optimizers
    from xdream.scorers import FunctionScorer

    gen = xdream.generators.make("pixels", size=16, code_size=4)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
    run = tmp_path / "run"
    scorer = FunctionScorer(lambda images, ids: images.mean(dim=(1, 2, 3))[:3])  # too few
    with pytest.raises(XDreamError, match="scores for"):
        Experiment(gen, scorer, opt, run, generations=2, n_references=10).run()
    summary = json.loads((run / "summary.json").read_text())
    gone = subprocess.Popen(["true"])  # the run's process, gone (this one is alive)
    gone.wait()
    summary["process"]["pid"] = gone.pid
    (run / "summary.json").write_text(json.dumps(summary))
    text = html.unescape(report.write_report(run).read_text())
    assert "Top reference images" in text and "no generation recorded yet" in text
    assert "n_references = 0" not in text
    assert "stopped before finishing (its process is gone)" in text
    (run / "rig").mkdir()
    status = {
        "state": "paused",
        "reason": "no response to block 0 in 'responses' within 6 s",
        "continue_with": "xdream resume run",
    }
    (run / "rig" / "status.json").write_text(json.dumps(status))
    text = html.unescape(report.write_report(run).read_text())
    assert (
        "paused: no response to block 0 in 'responses' within 6 s (rig/status.json); "
        "continue it with xdream resume run"
    ) in text


def test_the_shown_config_leaves_out_only_a_target_recorded_beside_rig() -> None:
    """What the report shows of config.yaml (audit V-5, mutation audit M): a [target] beside
    [rig] is left out with a note, the other keys in their order; any other file as it is,
    with no note (a rig run without [target], a network run, an empty or unreadable file)."""
    from xdream.report.experiment import _shown_config

    old = "rig:\n  block_size: 4\ntarget:\n  layer: stem\nexperiment:\n  generations: 2\n"
    notes: list[str] = []
    assert _shown_config(old, notes) == "rig:\n  block_size: 4\nexperiment:\n  generations: 2\n"
    assert len(notes) == 1 and "beside [rig]" in notes[0]
    rig = "rig:\n  block_size: 4\n# a comment\nexperiment:\n  generations: 2\n"
    network = "target:\n  layer: stem\nexperiment:\n  generations: 2\n"
    for text in (rig, network, "", "rig: [unclosed\n", "- rig\n- target\n"):
        assert _shown_config(text, notes) == text and len(notes) == 1, text


def test_folder_statistics_are_medians_and_means_of_the_finished_runs_numbers(
    runs: Path, tmp_path: Path
) -> None:
    """Three finished runs with skewed bests and noise-free ratios (median and mean differ),
    and a stopped and a running run with larger ones: the row's median and mean best are of the
    finished runs' noisy bests, its median noise-free best / ref is of their clean ratios, and
    its thumbnail is the best finished run's image, not the stopped run's higher best so far
    (found by mutation audit Y: with two runs median and mean were alike, and the unfinished
    runs' ratios and images were not checked)."""
    import socket

    folder = tmp_path / "sweep"
    for name in ("s0", "s1", "s2", "stopped", "running"):
        shutil.copytree(runs / "a-seed0", folder / name)
    finished = {"s0": (1.0, 1.0, 2.0), "s1": (2.0, 2.0, 2.0), "s2": (9.0, 30.0, 2.0)}
    for name, (best, clean, ref) in finished.items():
        _edit_summary(folder / name, best_score=best, best_clean_score=clean,
                      best_clean_reference_score=ref)  # fmt: skip
    gone = {"host": socket.gethostname(), "pid": _gone_pid()}
    _edit_summary(folder / "stopped", status="running", process=gone, best_score=50.0,
                  best_clean_score=1000.0, best_clean_reference_score=1.0)  # fmt: skip
    alive = {"host": socket.gethostname(), "pid": os.getpid()}
    _edit_summary(folder / "running", status="running", process=alive, best_score=40.0,
                  best_clean_score=500.0, best_clean_reference_score=1.0)  # fmt: skip
    for name, channel in (("s2", 0), ("stopped", 2)):  # s2 red, the stopped run blue
        marked = np.zeros((8, 8, 3), np.uint8)
        marked[..., channel] = 255
        summary = json.loads((folder / name / "summary.json").read_text())
        shown = folder / name / "images" / f"gen{summary['best_generation']:03d}_best.png"
        Image.fromarray(marked).save(shown)
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    assert "3 finished, 1 running, 1 stopped" in page
    (row,) = _table(page, "per-optimizer")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    assert cells[2] == "3 / 5"
    assert cells[3] == "2" and cells[4] == "4"  # median and mean of 1, 2, 9
    assert cells[5] == f"{np.std([1.0, 2.0, 9.0], ddof=1):.4g}"
    assert cells[6] == "1"  # median of 0.5, 1, 15 (clean scores); the stopped run's 1000 is out
    src = re.search(r'src="(data:image/png;base64,[^"]+)"', cells[7])
    assert src is not None
    thumb = Image.open(io.BytesIO(base64.b64decode(src.group(1).split(",", 1)[1])))
    assert np.asarray(thumb.convert("RGB"))[..., 0].mean() > 250  # s2's image, not the stopped
    # run's, whose best so far (50) is higher


def test_the_run_tables_columns_hold_the_runs_own_numbers(runs: Path, tmp_path: Path) -> None:
    """Each number of a run's row is under its own heading: best, first generation's best and
    best reference are the noisy scores, noise-free best / ref the clean ratio (found by
    mutation audit Y: swapping two of them, or leaving the ratio out, passed every test)."""
    folder = tmp_path / "sweep"
    shutil.copytree(runs / "a-seed0", folder / "one")
    s = _edit_summary(folder / "one", best_score=7.0, first_generation_best_score=3.0,
                      best_reference_score=5.0, best_clean_score=6.0,
                      best_clean_reference_score=4.0, seconds=12.5,
                      presentations=None)  # fmt: skip
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    # a missing number sorts as one (an empty data-value), not as the text "None"
    assert '<td class="num" data-value="">n/a</td>' in page and 'data-value="None"' not in page
    head = re.search(r'<table class="sortable runs"><thead><tr>(.*?)</tr>', page, re.S)
    assert head is not None
    names = re.findall(r"<th>(.*?)</th>", head.group(1))
    (row,) = _table(page, "runs")
    cells = dict(zip(names, re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)))
    assert cells["best"] == "7" and cells["first generation"] == "3"
    assert cells["best reference"] == "5" and cells["noise-free best / ref"] == "1.5"
    assert cells["generations"] == str(s["generations"]) and cells["seconds"] == "12.5"
    assert cells["presentations"] == "n/a" and cells["status"] == "finished"


def test_a_run_known_by_name_alone_is_not_pooled_with_one_of_two_namesakes(
    runs: Path, tmp_path: Path
) -> None:
    """Two configurations of one optimiser known in full, and a run whose record and
    config.yaml are gone (its optimiser known by name alone): the name-only run cannot be told
    to be either, so it gets a row of its own; a torn run whose config.yaml names one of the
    two is in that one's row (found by mutation audit Y: joining the name-only run to one of
    the two, or not reading config.yaml, passed every test)."""
    folder = tmp_path / "sweep"
    for name in ("pop12", "pop8", "lost", "torn8"):
        shutil.copytree(runs / "a-seed0", folder / name)
    with h5py.File(folder / "pop8" / "record.h5", "r+") as f:
        config = json.loads(f.attrs["config"])
        config["optimizer"]["population_size"] = 8
        f.attrs["config"] = json.dumps(config)
    for name in ("lost", "torn8"):
        (folder / name / "record.h5").write_bytes(b"\0" * 4096)
        _edit_summary(folder / name, status="stopped")
    (folder / "lost" / "config.yaml").unlink()
    # torn8's optimiser is known in full from its config.yaml: pop8's row
    yaml_text = (folder / "torn8" / "config.yaml").read_text()
    assert "population_size: 12" in yaml_text
    (folder / "torn8" / "config.yaml").write_text(
        yaml_text.replace("population_size: 12", "population_size: 8")
    )
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r)[:3] for r in _table(page, "per-optimizer")]
    assert len(rows) == 3, rows
    by_count = sorted(rows, key=lambda r: (r[2], "population_size 8" in r[0]))
    assert by_count[0][0].startswith("genetic (no ") and by_count[0][2] == "0 / 1"
    assert "population_size 12" in by_count[1][0] and by_count[1][2] == "1 / 1"
    assert "population_size 8" in by_count[2][0] and by_count[2][2] == "1 / 2"


def test_a_sweep_tasks_folder_is_not_taken_for_a_longer_named_ones(
    runs: Path, tmp_path: Path
) -> None:
    """Task seed1 without a record beside task seed10 with one: seed1 is listed as not
    started, not taken to be recorded in seed10 (found by mutation audit Y)."""
    from xdream.multi import write_table
    from xdream.sweep import columns

    folder = tmp_path / "sweep"
    shutil.copytree(runs / "a-seed0", folder / "u/genetic/seed10")
    rows = [{"unit": "u", "optimizer": "genetic", "seed": seed, "folder": f"u/genetic/seed{seed}",
             "error": "", "state": state}
            for seed, state in ((10, "finished"), (1, "pending"))]  # fmt: skip
    write_table(folder / "sweep.csv", rows, columns())
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    assert "<h1>xdream: 1 of 2 experiments</h1>" in page
    status = {r.split("</td>")[0][4:]: r for r in _table(page, "runs")}
    assert "<td>not started</td>" in status["u/genetic/seed1"]


def test_a_sweep_folder_with_no_record_yet_lists_its_planned_tasks(tmp_path: Path) -> None:
    """A sweep whose tasks have recorded nothing yet gets a page of its planned tasks, not
    the error for a folder without experiments (found by mutation audit Y)."""
    from xdream.multi import write_table
    from xdream.sweep import columns

    folder = tmp_path / "sweep"
    folder.mkdir()
    rows = [{"unit": "u", "optimizer": "genetic", "seed": seed, "folder": f"u/genetic/seed{seed}",
             "error": "", "state": "pending"} for seed in (0, 1)]  # fmt: skip
    write_table(folder / "sweep.csv", rows, columns())
    page = html.unescape(report.write_report(folder, run_reports=False).read_text())
    assert "<h1>xdream: 0 of 2 experiments</h1>" in page and "2 not started" in page
    assert "<h2>Planned experiments of units with none recorded</h2>" in page


def test_an_experiments_facts_are_the_summarys_numbers_each_under_its_name(run: Path) -> None:
    """The facts beside the best image: best score, first generation's best, best reference
    (noisy, as the optimiser received them) and the noise-free ratio, each under its own
    name; config.yaml's text and the target (a function named <lambda>) are shown escaped
    (found by mutation audit Y: swapping them, or showing them unescaped, passed every
    test)."""
    _edit_summary(run, best_score=7.0, first_generation_best_score=3.0,
                  best_reference_score=5.0, best_clean_score=6.0,
                  best_clean_reference_score=4.0,
                  target={"kind": "function", "function": "mine.<lambda>"},
                  best_image_id="gen<1>")  # fmt: skip
    with (run / "config.yaml").open("a") as fh:
        fh.write("# a <b>note</b> & more\n")
    text = report.write_report(run).read_text()
    assert "# a &lt;b&gt;note&lt;/b&gt; &amp; more" in text and "<b>note</b>" not in text
    assert "<lambda>" not in text and "<td>function mine.&lt;lambda&gt;</td>" in text
    assert "<1>" not in text and "image gen&lt;1&gt;)" in text
    facts = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", html.unescape(text)))
    assert facts["best score"].startswith("7 (generation ")
    assert facts["first generation's best"] == "3"
    assert facts["best reference image"] == "5"
    assert facts["best / best reference (noise-free)"] == "1.5"
    assert facts["status"] == "finished"


def test_out_may_be_the_reported_folder_but_not_a_tuning_studys(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out naming the reported folder itself writes its page there as without --out; an
    --out holding a tune.csv (a tuning study's folder) is refused as a sweep's is (found by
    mutation audit Y: neither was tested)."""
    one = Path(shutil.copytree(runs / "a-seed0", tmp_path / "one"))
    assert main(["report", str(one), "--out", str(one)]) == 0
    assert report.page.page_source(one / report.REPORT_FILE) == str(one.resolve())
    study = tmp_path / "study"
    study.mkdir()
    (study / "tune.csv").write_text("number,state,value\n0,COMPLETE,1.0\n")
    assert main(["report", str(one), "--out", str(study)]) == 2
    err = capsys.readouterr().err
    assert "is a sweep's or tuning study's folder (it holds tune.csv)" in err
    assert not (study / report.REPORT_FILE).exists()


def test_a_number_that_is_not_finite_is_shown_as_n_a() -> None:
    """NaN and infinities (a summary's JSON may hold them) read n/a, as a missing number
    does, and sort as empty (found by mutation audit Y)."""
    for value in (float("nan"), float("inf"), -float("inf"), None):
        assert report._fmt(value) == "n/a"
        assert report.page._num(value) == '<td class="num" data-value="">n/a</td>'
    assert report._fmt(0.123456) == "0.1235" and report._fmt(1234.5678) == "1235"
    assert report._fmt(3) == "3"


def test_no_run_reports_links_the_runs_pages_that_exist(runs: Path, tmp_path: Path) -> None:
    """With --no-run-reports a run's name links to its page where an earlier report wrote
    one, and is plain text where none exists (found by mutation audit Y)."""
    folder = tmp_path / "sweep"
    for name in ("a-seed0", "a-seed1"):
        shutil.copytree(runs / name, folder / name)
    report.write_report(folder / "a-seed0")
    text = report.write_report(folder, run_reports=False).read_text()
    assert f'<a href="a-seed0/{report.REPORT_FILE}">a-seed0</a>' in text
    assert "<tr><td>a-seed1</td>" in text and 'href="a-seed1/' not in text


def test_a_stopped_rig_run_shows_the_reason_and_way_on_from_its_status_file(run: Path) -> None:
    """A rig run stopped (not only paused) whose process is gone: its page says the state,
    the reason and the command that rig/status.json gives (found by mutation audit Y: only a
    pause was tested)."""
    import socket

    gone = {"host": socket.gethostname(), "pid": _gone_pid()}
    _edit_summary(run, status="running", process=gone)
    (run / "rig").mkdir()
    (run / "rig" / "status.json").write_text(json.dumps(
        {"state": "stopped", "reason": "Ctrl-C at the rig", "continue_with": "xdream resume R"}
    ))  # fmt: skip
    text = html.unescape(report.write_report(run).read_text())
    assert "stopped: Ctrl-C at the rig (rig/status.json); continue it with xdream resume R" in text
    assert 'http-equiv="refresh"' not in text


def test_a_retry_with_a_folder_of_its_own_keeps_it(tmp_path: Path) -> None:
    """A tune.csv without a folder column: a retry whose trialNNNN folder exists is that
    folder's trial; one without its own folder is in the folder of the trial it retried
    (found by mutation audit Y: the first was not tested)."""
    for n in (0, 1):
        (tmp_path / f"trial{n:04d}").mkdir()
    (tmp_path / "tune.csv").write_text(
        "number,state,value,retry_of\n0,FAIL,,\n1,COMPLETE,1.5,0\n2,COMPLETE,1.7,0\n"
    )
    (study,) = report.find_studies(tmp_path)
    here = tmp_path.resolve()
    assert study.folders == {0: here / "trial0000", 1: here / "trial0001", 2: here / "trial0000"}


def test_the_timings_table_is_the_records_seconds(run: Path) -> None:
    """Each step's total, mean per generation and share of the record's seconds, and the
    wall-clock time per generation (found by mutation audit Y: these numbers were not
    checked)."""
    rec = records.read(run, codes=False)
    summary = _edit_summary(run, seconds=12.0)
    text = report.write_report(run).read_text()
    sec, n = rec.seconds, len(rec.seconds)
    assert n > 1 and sec.sum() > 0
    assert f"Wall-clock time 12 s over {n} generations ({12.0 / n:.3f} s per generation)" in text
    for i, step in enumerate(records.TIMING_COLUMNS):
        row = (
            f"<tr><td>{step}</td><td class='num'>{sec[:, i].sum():.2f}</td>"
            f"<td class='num'>{sec[:, i].mean() * 1000:.1f}</td>"
            f"<td class='num'>{100 * sec[:, i].sum() / sec.sum():.0f}%</td></tr>"
        )
        assert row in text, (step, summary["seconds"])


def test_an_optimisers_label_is_escaped_and_no_run_reports_suits_an_experiment(
    runs: Path, tmp_path: Path
) -> None:
    """A hyperparameter value that reads as HTML is shown as text in the row's label; and
    run_reports=False (--no-run-reports) given for one experiment's folder writes its page
    (found by mutation audit Y)."""
    folder = tmp_path / "sweep"
    for name in ("plain", "tagged"):
        shutil.copytree(runs / "a-seed0", folder / name)
    with h5py.File(folder / "tagged" / "record.h5", "r+") as f:
        config = json.loads(f.attrs["config"])
        config["optimizer"]["note"] = "<i>x</i>"
        f.attrs["config"] = json.dumps(config)
    text = report.write_report(folder, run_reports=False).read_text()
    assert "genetic (note &lt;i&gt;x&lt;/i&gt;)" in text and "<i>x</i>" not in text
    page = report.write_report(folder / "plain", run_reports=False)
    assert page == folder / "plain" / report.REPORT_FILE and page.is_file()


def test_a_process_of_another_user_or_an_odd_entry_is_taken_to_be_alive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A summary naming a process this user may not signal (another user's run, os.kill
    raising PermissionError) or an odd pid is running, not stopped; a folder named units
    without a many-unit run's config.yaml beside it resumes itself (found by mutation audit
    Y)."""
    import socket

    def not_yours(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(report.state.os, "kill", not_yours)
    here = socket.gethostname()
    for pid in (12345, "not a pid"):
        process = {"host": here, "pid": pid}
        assert report.run_state({"status": "running", "process": process}) == "running"
    unit = tmp_path / "units" / "blocks.4_c003"
    unit.mkdir(parents=True)
    assert report.resume_folder(unit) == unit
    (tmp_path / "config.yaml").write_text("")
    assert report.resume_folder(unit) == tmp_path


def test_a_page_written_elsewhere_links_each_trial_by_its_absolute_path(
    runs: Path, tmp_path: Path
) -> None:
    """With --out elsewhere a trial's number links to its folder's absolute file URI (a
    relative link would point inside OUT); in the folder itself, relatively (found by
    mutation audit Y)."""
    folder = tmp_path / "tune"
    shutil.copytree(runs / "a-seed0", folder / "trial0000" / "seed0")
    (folder / "tune.csv").write_text("number,state,value\n0,COMPLETE,1.0\n")
    absolute = (folder.resolve() / "trial0000").as_uri() + "/"
    text = report.write_report(folder, run_reports=False, out=tmp_path / "pages").read_text()
    assert f'<a href="{html.escape(absolute)}">0</a>' in text
    text = report.write_report(folder, run_reports=False).read_text()
    assert '<a href="trial0000/">0</a>' in text
