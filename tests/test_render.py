"""``xdream render`` of runs in progress and of many-unit runs."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.helpers import codes_rows_read, many_unit_folder
from xdream import config as config_mod
from xdream import records
from xdream import render as render_mod
from xdream.cli import main
from xdream.errors import RecordUnreadableError, XDreamError
from xdream.experiment import Experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = config_mod.from_dict(
        {
            "experiment": {"generations": 2, "n_references": 2},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "optimizer": {"name": "genetic", "population_size": 6},
            "target": {"network": "efficientnet-lite0", "layer": "stem", "channel": 3},
        }
    )
    out = tmp_path_factory.mktemp("render") / "run"
    Experiment.from_config(config, out).run()
    return out


@pytest.fixture
def live(finished: Path, tmp_path: Path) -> Path:
    """A copy of the run whose summary says this (live) process is running it."""
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    summary = json.loads((run / "summary.json").read_text())
    process = {"host": socket.gethostname(), "pid": os.getpid()}
    (run / "summary.json").write_text(
        json.dumps({**summary, "status": "running", "process": process})
    )
    return run


def _flaky(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """records.read fails ``failures`` times as h5py does on a record caught mid-write."""
    calls: list[int] = []
    read = records.read

    def flaky(path: str | Path, **options: bool) -> records.Record:
        calls.append(1)
        if len(calls) <= failures:
            err = OSError("Can't synchronously read data (wrong B-tree signature)")
            raise records.unreadable(Path(path), err) from err
        return read(path, **options)

    monkeypatch.setattr(records, "read", flaky)
    monkeypatch.setattr(render_mod, "RETRY_SECONDS", 0.0)
    return calls


def test_render_reads_a_running_record_again(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live run's record.h5 caught mid-write failed the render at once."""
    calls = _flaky(monkeypatch, failures=2)
    (path,) = render_mod.render(live, ["best"], out=tmp_path / "out")
    assert path.is_file() and len(calls) == 3


def test_render_says_a_running_record_is_being_written(
    live: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every read failed while the run is alive: not "xdream resume rebuilds it" (the run is
    going) but that the record is being written, and to try again."""
    calls = _flaky(monkeypatch, failures=100)
    assert main(["render", str(live), "--ids", "best"]) == 2
    err = capsys.readouterr().err
    assert "the running experiment is writing record.h5" in err and "Try again" in err
    assert "xdream resume" not in err and len(calls) == render_mod.RETRIES


def test_render_reads_the_codes_of_a_running_record_again(
    live: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The codes are read on their own, after the rest of the record: a read of them caught
    mid-write is tried again too."""
    calls: list[int] = []
    read_codes = records.read_codes

    def flaky(path: str | Path, rows: list[int], seen: int | None = None) -> object:
        calls.append(1)
        if len(calls) <= 2:
            err = OSError("Can't synchronously read data (wrong B-tree signature)")
            raise records.unreadable(Path(path), err) from err
        return read_codes(path, rows, seen=seen)

    monkeypatch.setattr(records, "read_codes", flaky)
    monkeypatch.setattr(render_mod, "RETRY_SECONDS", 0.0)
    (path,) = render_mod.render(live, ["best"], out=tmp_path / "out")
    assert path.is_file() and len(calls) == 3


def test_render_reads_only_the_codes_of_the_images_asked_for(
    finished: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """render read every code in the record (N x d float32, gigabytes for a long run) to draw
    one image; it reads the rows of the images asked for, each once."""
    rec = records.read(finished)
    best = rec.image_ids[int(np.nanargmax(rec.scores))]
    rows = codes_rows_read(monkeypatch)
    render_mod.render(finished, ["gen001_000002"], out=tmp_path / "one")
    assert rows == [1]
    rows.clear()
    ids = ["gen000_000005", "best", rec.ref_ids[0], "gen000_000005"]
    written = render_mod.render(finished, ids, out=tmp_path / "some")
    assert sum(rows) == len({"gen000_000005", best}) and len(written) == len(ids)


def test_render_does_not_wait_for_a_record_no_run_writes(
    finished: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _flaky(monkeypatch, failures=100)
    with pytest.raises(RecordUnreadableError, match="cannot read the records"):
        render_mod.render(finished, ["best"])
    assert len(calls) == 1


def test_render_of_a_many_unit_run_names_its_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A many-unit run's folder said "holds no record.h5: is it an experiment folder?"."""
    many, names = many_unit_folder(tmp_path)
    assert main(["render", str(many), "--ids", "best"]) == 2
    err = capsys.readouterr().err
    assert "is a many-unit run" in err and f"xdream render {many / 'units' / names[0]}" in err
    assert f"units (7): {', '.join(names[:5])} and 2 more" in err
    with pytest.raises(XDreamError, match=r"holds no record\.h5"):
        render_mod.render(tmp_path, ["best"])  # no units: as before


def test_the_command_shows_the_default_parameters_warning_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Python-built run of an earlier xdream (its record names the generator only) renders with
    the defaults; `xdream render` says so in one `xdream: warning:` line, not Python's format
    with a source line."""
    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer

    gen = xdream.generators.make("pixels", size=16)  # code size as the default, smaller image
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=4)
    run = tmp_path / "py"
    Experiment(gen, RedScorer(), opt, run, generations=1, n_references=0).run()
    with h5py.File(run / "record.h5", "a") as f:  # as an earlier xdream wrote it
        f.attrs["config"] = json.dumps({**json.loads(f.attrs["config"]), "generator": "pixels"})
    assert main(["render", str(run), "--ids", "best", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("xdream: warning: ") and "default parameters" in err
    assert "UserWarning" not in err and "warnings.warn" not in err


@pytest.mark.parametrize(
    ("ref_id", "message"),
    [
        ("ref_chelsea_5000_0_50", r"not a crop of 'chelsea' \(300 x 451 px\)"),  # crashed
        ("ref_chelsea_0_0_0", "the square of side 0 at row 0"),  # crashed
        ("ref_chelsea_-1_0_50", "at row -1, column 0 must lie inside the photo"),
        ("ref_chelsea_0_0_9999", "top \\+ side <= 300"),  # wrote the whole photo, squashed
        ("ref_chelsea_251_0_50", "top \\+ side <= 300"),  # one row past the photo
        ("ref_chelsea_0_402_50", "left \\+ side <= 451"),  # one column past
        ("ref_chelsa_0_0_50", "'chelsa' is not a photo references are drawn from. Did you"),
        ("ref_horse_0_0_50", "'horse' is not a photo references are drawn from"),  # a mask
        ("ref_chelsea_a_0_50", "reference ids look like ref_PHOTO_TOP_LEFT_SIDE"),
    ],
)
def test_render_refuses_an_id_that_names_no_reference_crop(
    finished: Path, tmp_path: Path, ref_id: str, message: str
) -> None:
    with pytest.raises(XDreamError, match=message):
        render_mod.render(finished, [ref_id], out=tmp_path / "out")
    assert not (tmp_path / "out" / f"{ref_id}.png").exists()
    # one that is: the crop, written
    written = render_mod.render(finished, ["ref_hubble_deep_field_0_0_50"], out=tmp_path / "out")
    assert [p.name for p in written] == ["ref_hubble_deep_field_0_0_50.png"]


def test_a_crop_reaching_the_last_row_and_column_of_its_photo_regenerates() -> None:
    from xdream.references import crop, from_id

    torch.testing.assert_close(
        from_id("ref_chelsea_250_401_50", 32), crop("chelsea", 250, 401, 50, 32)
    )


def test_a_crop_of_any_bundled_photo_regenerates(tmp_path: Path) -> None:
    """ReferenceImages(photos=...) draws from any bundled photo; from_id refused every photo
    outside the default reference set, so render and the report lost those crops."""
    from xdream.references import ReferenceImages, from_id

    images, ids = ReferenceImages(32, seed=0, photos=("cat", "clock")).sample(4)
    for image, ref_id in zip(images, ids):
        torch.testing.assert_close(from_id(ref_id, 32)[0], image)


def test_render_draws_the_best_and_the_named_images_from_their_own_codes(
    finished: Path, tmp_path: Path
) -> None:
    from xdream import generators

    rec = records.read(finished)
    best = int(np.nanargmax(rec.scores))
    other = int(np.nanargmin(rec.scores))
    paths = render_mod.render(finished, ["best", rec.image_ids[other]], out=tmp_path / "out")
    assert [p.name for p in paths] == [f"{rec.image_ids[best]}.png", f"{rec.image_ids[other]}.png"]
    generator = generators.make("pixels", size=32, code_size=8)
    for path, row in zip(paths, (best, other)):
        image = generator.generate(torch.from_numpy(rec.codes[[row]]))[0]
        assert path.read_bytes() == records.png_bytes(image)


def test_render_of_a_run_on_a_network_this_process_does_not_know_draws_its_images(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run on a network registered from the user's code was refused by `xdream render`,
    which needs only the generator; the advice named xdream.Experiment, which does not exist.
    An unknown generator is still refused, with advice that works."""
    import yaml

    run = Path(shutil.copytree(finished, tmp_path / "run"))
    data = yaml.safe_load((run / "config.yaml").read_text())
    data["target"]["network"] = "my-net"
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    assert main(["render", str(run), "--ids", "best", "--out", str(tmp_path / "out")]) == 0
    best = records.read(finished).image_ids[int(np.nanargmax(records.read(finished).scores))]
    drawn = (tmp_path / "out" / f"{best}.png").read_bytes()
    assert drawn == (render_mod.render(finished, ["best"], out=tmp_path / "o2")[0]).read_bytes()
    data["generator"]["name"] = "my-flat"
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["render", str(run), "--ids", "best"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "names the generator 'my-flat', which is not registered in this process" in err
    assert f"xdream.render.render({str(run)!r}, ['best'])" in err
    assert "xdream.Experiment." not in err


def test_render_as_seen_draws_what_the_network_scored(finished: Path, tmp_path: Path) -> None:
    """`xdream render --as-seen` draws an image as the network took it: after [target]
    image_size, in the run's placement square on mid-grey, at the network's input size. The
    unit's response to that drawing is the recorded score (up to the PNG's 8 bits), which the
    plain rendering, filling the input, is not."""
    from PIL import Image

    from xdream.scorers import make_unit

    config = config_mod.from_dict(
        {
            "experiment": {"generations": 2, "n_references": 0, "seed": 2},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "optimizer": {"name": "genetic", "population_size": 6},
            "target": {
                "layer": "blocks.0",
                "channel": 3,
                "image_size": 16,
                "placement": "rf",
                "device": "cpu",
            },
        }
    )
    run = tmp_path / "run"
    Experiment.from_config(config, run).run()
    assert json.loads((run / "summary.json").read_text())["target"]["placement"] == [110, 110, 7]
    assert main(["render", str(run), "--ids", "best", "--as-seen"]) == 0
    plain, seen = render_mod.render(run, ["best"]), run / "renders"
    best = records.read(run, codes=False)
    wanted = float(np.nanmax(best.scores))
    drawn = np.asarray(Image.open(next(seen.glob("*_seen.png"))))
    assert drawn.shape == (224, 224, 3)
    outside = np.ones((224, 224), bool)
    outside[110:117, 110:117] = False
    assert (drawn[outside] == 128).all() and (drawn[~outside] != 128).any()
    unit = make_unit(layer="blocks.0", channel=3, device="cpu")  # the whole input, no resize

    def score(path: Path) -> float:
        image = torch.from_numpy(np.asarray(Image.open(path), np.float32) / 255)
        return float(unit.score(image.permute(2, 0, 1)[None], ["x"])[0])

    assert score(next(seen.glob("*_seen.png"))) == pytest.approx(wanted, rel=0.005)
    assert score(plain[0]) != pytest.approx(wanted, rel=0.1)
    # the run's report shows the best image beside it as the network took it; a run that
    # filled the input unresized (the module's finished run) shows none
    from xdream.report import experiment_report

    page = experiment_report(run).read_text()
    uri = re.search(
        r'alt="best image as the network took it" src="data:image/png;base64,([^"]+)"', page
    )
    assert uri is not None and "(224 px input, before its normalisation)" in page
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.group(1)))))
    assert shown.shape == (224, 224, 3) and (shown[outside] == 128).all()
    assert np.abs(shown.astype(int) - drawn.astype(int)).max() <= 2  # from best.png's 8 bits
    plain_page = experiment_report(finished, out=tmp_path / "plain").read_text()
    assert "as the network took it" not in plain_page and "best image" in plain_page
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target"].pop("image_size") == 16  # placed alone, not resized: shown too
    (run / "summary.json").write_text(json.dumps(summary))
    assert "as the network took it" in experiment_report(run).read_text()
    with pytest.raises(XDreamError, match="--size or --as-seen, not both"):
        render_mod.render(run, ["best"], size=64, seen=True)
    (run / "summary.json").write_text(json.dumps({"target": {"kind": "rig"}}))
    with pytest.raises(XDreamError, match=r"target is 'rig'.*render without --as-seen"):
        render_mod.render(run, ["best"], seen=True)
