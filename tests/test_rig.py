"""The rig protocol (spec §9): formats, every XDream option, hardening and crash safety."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

from tests.rig_helpers import (
    PAUSING_RIG,
    image_id,
    rig_config,
    run_with_rig,
    score_one_generation,
    thread_rig,
    write_response,
    written_responses,
)
from xdream import config as config_mod
from xdream import records
from xdream.cli import Terminated
from xdream.errors import ConfigError, XDreamError
from xdream.experiment import Experiment
from xdream.rig import (
    READERS,
    WRITERS,
    MalformedResponse,
    RigPaused,
    RigScorer,
    RigSection,
    protocol,
    read_status,
)
from xdream.rig import scorer as scorer_mod
from xdream.rig.formats import read_mat, write_h5_indexed
from xdream.rig.sim import SimSettings, read_log

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["block000_000_gen000_000000.png", "block000_001_ref_moon_1_2_3.png", "block000_002_x.png"]
VALUES = np.array([[1.5, -2.0], [0.25, 4.0], [np.nan, 7.0]])


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("fmt", ["mat73", "mat7", "h5", "json", "csv"])
def test_every_format_round_trips(tmp_path: Path, fmt: str) -> None:
    writer = WRITERS.get(fmt)
    path = tmp_path / f"block000{writer.extension}"
    order = [2, 0, 1]  # the rig may answer in any order
    names = [NAMES[i] for i in order]
    if fmt == "h5":
        write_h5_indexed(path, names, VALUES[order], NAMES)
    else:
        writer.write(path, names, VALUES[order])
    reader = next(
        READERS.get(n) for n in READERS.names() if path.suffix in READERS.get(n).extensions
    )
    response = reader.read(path)
    got = response.names or [sorted(NAMES)[i] for i in response.indices]  # type: ignore[union-attr]
    assert got == names
    np.testing.assert_array_equal(response.values, VALUES[order])


@pytest.mark.parametrize("shape", [(128, 128, 3), (1, 1, 3), (7, 13, 3)])
def test_png_stimuli_decode_exactly(shape: tuple[int, int, int]) -> None:
    from PIL import Image

    from xdream.rig.formats import IMAGE_WRITERS

    encode = IMAGE_WRITERS.get("png").encode
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode(image)))
    assert decoded.format == "PNG" and decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), image)
    with pytest.raises(XDreamError, match="uint8"):
        encode(image.astype(np.float32))


def test_mat_files_use_matlab_orientation(tmp_path: Path) -> None:
    """tEvokedResp is channels x images on the MATLAB side, in v7.3 and in v5/v7 files."""
    WRITERS.get("mat73").write(tmp_path / "a.mat", NAMES, VALUES)
    with h5py.File(tmp_path / "a.mat", "r") as f:
        assert f.userblock_size == 512
        assert f["tEvokedResp"].attrs["MATLAB_class"] == b"double"
        # h5py shows MATLAB's (C, n) array reversed: (n, C)
        assert f["tEvokedResp"].shape == (3, 2)
    assert (tmp_path / "a.mat").read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    cell = np.empty((1, 3), dtype=object)
    cell[0, :] = NAMES
    scipy.io.savemat(tmp_path / "b.mat", {"stimulusID": cell, "tEvokedResp": VALUES.T})
    np.testing.assert_array_equal(read_mat(tmp_path / "b.mat").values, VALUES)
    assert read_mat(tmp_path / "b.mat").warnings == []
    # images x channels is accepted when unambiguous, with a warning (the same rig's files
    # would be read the other way in a block with as many stimuli as channels)
    scipy.io.savemat(tmp_path / "c.mat", {"stimulusID": cell, "tEvokedResp": VALUES})
    np.testing.assert_array_equal(read_mat(tmp_path / "c.mat").values, VALUES)
    assert "save tEvokedResp' (its transpose)" in read_mat(tmp_path / "c.mat").warnings[0]
    # ... but not silently for a square matrix: the documented orientation wins, no warning
    square = np.array([[1.0, 2.0], [3.0, 4.0]])
    scipy.io.savemat(tmp_path / "s.mat", {"stimulusID": cell[:, :2], "tEvokedResp": square})
    np.testing.assert_array_equal(read_mat(tmp_path / "s.mat").values, square.T)
    assert read_mat(tmp_path / "s.mat").warnings == []
    # one channel as a column (images x 1) cannot be mistaken: no warning
    scipy.io.savemat(tmp_path / "col.mat", {"stimulusID": cell, "tEvokedResp": VALUES[:, :1]})
    assert read_mat(tmp_path / "col.mat").warnings == []
    # a shape that fits nothing is malformed
    scipy.io.savemat(tmp_path / "d.mat", {"stimulusID": cell, "tEvokedResp": np.ones((2, 5))})
    with pytest.raises(MalformedResponse, match="channels x 3"):
        read_mat(tmp_path / "d.mat")
    scipy.io.savemat(tmp_path / "e.mat", {"other": 1})
    with pytest.raises(MalformedResponse, match="stimulusID"):
        read_mat(tmp_path / "e.mat")


def test_a_v73_char_matrix_of_names_padded_with_spaces_is_read(tmp_path: Path) -> None:
    """MATLAB's char(names), saved with -v7.3, is an (n, L) char matrix (h5py: (L, n) uint16)
    whose shorter names are padded with spaces."""
    path = tmp_path / "a.mat"
    WRITERS.get("mat73").write(path, NAMES, VALUES)
    width = max(map(len, NAMES))
    chars = np.array([[ord(c) for c in n.ljust(width)] for n in NAMES], dtype=np.uint16).T
    with h5py.File(path, "a") as f:
        del f["stimulusID"]
        f["stimulusID"] = chars
        f["stimulusID"].attrs["MATLAB_class"] = np.bytes_("char")
        f["stimulusID"].attrs["MATLAB_int_decode"] = np.int32(2)
    response = read_mat(path)
    assert response.names == NAMES
    np.testing.assert_array_equal(response.values, VALUES)


def test_json_needs_one_response_per_name(tmp_path: Path) -> None:
    """No reshaping to fit: a count that does not match the names is refused, saying so;
    ``null`` for a whole row is no response on every channel."""
    from xdream.rig.formats import read_json

    def read(names: list[str], responses: Any) -> Any:
        path = tmp_path / "block000.json"
        path.write_text(json.dumps({"stimulusID": names, "responses": responses}))
        return read_json(path)

    four = [f"n{k}" for k in range(4)]
    with pytest.raises(MalformedResponse, match="2 names in 'stimulusID' but 4 responses"):
        read(four[:2], [1, 2, 3, 4])
    with pytest.raises(MalformedResponse, match="4 names in 'stimulusID' but 2 responses"):
        read(four, [[1, 2], [3, 4]])
    with pytest.raises(MalformedResponse, match="4 names in 'stimulusID' but 3 responses"):
        read(four, [1, 2, 3])
    with pytest.raises(MalformedResponse, match="mixes numbers and rows"):
        read(four, [1, [2, 3], 4, 5])
    with pytest.raises(MalformedResponse, match="hold 2 and 3 values"):
        read(four, [[1, 2], [3, 4, 5], [6, 7], [8, 9]])
    with pytest.raises(MalformedResponse, match="must be numbers"):
        read(four, [1, "2", 3, 4])
    got = read(four, [[1, 2], None, [5, None], [7, 8]]).values
    np.testing.assert_array_equal(got, [[1, 2], [np.nan, np.nan], [5, np.nan], [7, 8]])
    np.testing.assert_array_equal(read(four, [1, None, 3, 4]).values[:, 0], [1, np.nan, 3, 4])


def test_csv_from_excel_and_missing_cells(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts with a byte-order mark; an empty cell is no response."""
    from xdream.rig.formats import read_csv

    path = tmp_path / "block000.csv"
    path.write_text("\ufeffstimulusID,ch0,ch1\na.png,1,2\nb.png,,4\nc.png,NaN,6\n", "utf-8")
    response = read_csv(path)
    assert response.names == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(response.values, [[1, 2], [np.nan, 4], [np.nan, 6]])
    path.write_text("a.png,1\nb.png,x\n")
    with pytest.raises(MalformedResponse, match="leave a cell empty or write NaN"):
        read_csv(path)
    # another header, another separator: said as such (audit X9)
    path.write_text("name,ch0\na.png,1\n")
    with pytest.raises(
        MalformedResponse, match="header line must start with stimulusID, got 'name'"
    ):
        read_csv(path)
    path.write_text("stimulusID;ch0\na.png;1,5\nb.png;2,0\n")
    with pytest.raises(
        MalformedResponse, match="separated by commas: this file separates them by ';'"
    ):
        read_csv(path)


def test_names_and_path_escapes() -> None:
    assert protocol.stimulus_name(3, 7, "gen001_000004", ".png") == "block003_007_gen001_000004.png"
    assert protocol.loose_key(r"C:\rig\stim\block003_007_gen001_000004.bmp") == "gen001_000004"
    assert protocol.loose_key("gen001_000004") == "gen001_000004"
    for bad in ("../x.png", "/etc/passwd", r"..\x.png", "a/b.png", r"C:\x.png", "", "a\x00b"):
        assert protocol.escapes(bad), bad
    assert not protocol.escapes("block000_001_gen000_000001.png")
    for bad_id in ("../evil", "a/b", "..", "x\\y", ""):
        with pytest.raises(XDreamError, match="cannot be used in a stimulus file name"):
            protocol.check_image_id(bad_id)


# --------------------------------------------------------------------------- config
def test_rig_section_is_validated_and_documented() -> None:
    cfg = rig_config(channels=[[0, 1], 2], block_size=4)
    assert cfg.rig is not None and cfg.rig.channels == [[0, 1], 2]
    assert config_mod.from_dict(cfg.to_dict()) == cfg  # the resolved config round-trips
    with pytest.raises(ConfigError, match="Did you mean 'block_size'"):
        config_mod.from_dict({"rig": {"blok_size": 4}})
    with pytest.raises(ConfigError, match="remove \\[noise\\]"):
        config_mod.from_dict({"rig": {}, "noise": {"name": "poisson"}})
    with pytest.raises(ConfigError, match="noise_seed seeds the \\[noise\\] model"):
        config_mod.from_dict({"rig": {}, "experiment": {"noise_seed": 3}})
    for bad, message in (
        ({"channels": [[]]}, "'channels' must be left out .* got \\[\\[\\]\\]"),
        ({"channels": -1}, "'channels' must be left out .* got -1"),
        ({"on_timeout": "retry"}, "'on_timeout' must be one of wait, skip, pause, got 'retry'"),
        ({"timeout": 0}, "'timeout' must be a positive finite number of seconds, got 0"),
        # nan never timed out (nor settled); inf is what on_timeout = "wait" does
        ({"timeout": float("nan")}, "'timeout' must be a positive finite number .* got nan$"),
        ({"timeout": float("inf")}, "got inf; to wait for a response for ever, set on_timeout"),
        ({"settle": float("nan")}, "'settle' must be a positive finite number .* got nan"),
        ({"poll_interval": float("-inf")}, "'poll_interval' must be .* got -inf$"),
        ({"subtract_blank": True}, "'subtract_blank' needs blank trials: set 'blanks'"),
        ({"match": "fuzzy"}, "'match' must be 'strict' or 'loose', got 'fuzzy'"),
        ({"seed": -3}, "'seed' must be an integer >= 0 \\(or none\\), got -3"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_mod.from_dict({"rig": bad})
    text = (ROOT / "docs" / "config.md").read_text()
    for field in dataclasses.fields(RigSection):
        assert f"`{field.name}`" in text, f"docs/config.md lacks [rig] key {field.name}"


# --------------------------------------------------------------------------- the loop
@pytest.mark.parametrize("fmt", ["mat73", "mat7", "h5", "json", "csv"])
def test_closed_loop_records_every_response(tmp_path: Path, fmt: str) -> None:
    cfg = rig_config(block_size=6, score_dir="responses")
    summary, sim = run_with_rig(tmp_path / "run", cfg, response_format=fmt)
    rec = records.read(tmp_path / "run")
    written = written_responses(read_log(sim.log_path))
    # 10 images per generation in blocks of 6: 2 blocks per generation
    assert sorted({b for b, _, _ in written}) == [0, 1, 2, 3]
    stimuli = list(rec.extra["rig/presentations/stimulus"])
    assert sorted(stimuli) == sorted(n for _, n, _ in written)
    for _, name, v in written:
        i = stimuli.index(name)
        np.testing.assert_array_equal(rec.extra["rig/presentations/response"][i], v)
    # with one channel and one showing, the optimiser's score is the rig's response
    by_id = {image_id(n): float(v[0]) for _, n, v in written}
    for g in range(2):
        ids = [i for i, gg in zip(rec.image_ids, rec.generation) if gg == g]
        got = rec.scores[rec.generation == g]
        np.testing.assert_allclose(got, [by_id[f"{i}"] for i in ids])
    assert summary["best_score"] == pytest.approx(np.nanmax(rec.scores))
    assert summary["target"]["kind"] == "rig"
    assert not list((tmp_path / "run" / "stimuli").glob("block*"))  # cleaned up
    assert len(list((tmp_path / "run" / "rig" / "responses").glob("block*"))) == 4  # backed up
    assert read_status(tmp_path / "run")["state"] == "finished"


def test_xdream_options_reps_blanks_channels(tmp_path: Path) -> None:
    """reps, block size, blanks with baseline subtraction and grouped channel selection."""
    cfg = rig_config(
        generations=2, block_size=4, reps=2, blanks=1, subtract_blank=True, channels=[[0, 1], 2]
    )
    _, sim = run_with_rig(tmp_path / "run", cfg, gains=(1.0, 2.0, 5.0))
    rec = records.read(tmp_path / "run")
    written = written_responses(read_log(sim.log_path))

    def select(v: np.ndarray) -> float:  # mean over groups of each group's mean
        return float(np.mean([np.mean(v[[0, 1]]), v[2]]))

    blank = {b: select(v) for b, n, v in written if image_id(n).startswith("blank")}
    per_image: dict[str, list[float]] = {}
    for b, n, v in written:
        if not image_id(n).startswith("blank"):
            per_image.setdefault(image_id(n), []).append(select(v) - blank[b])
    assert all(len(v) == 2 for v in per_image.values())  # every image shown twice
    blocks = rec.extra["rig/blocks/n_stimuli"]
    assert set(blocks[:-1]) <= {5} and len(blocks) == 2 * 5  # 20 showings / 4, plus a blank
    expected = [np.mean(per_image[i]) for i in rec.image_ids]
    np.testing.assert_allclose(rec.scores, expected, rtol=1e-12)
    np.testing.assert_allclose(
        rec.extra["rig/presentations/channel_scores"][0],
        [
            np.mean(rec.extra["rig/presentations/response"][0][:2]),
            rec.extra["rig/presentations/response"][0][2],
        ],
    )


def test_loose_matching_and_require_response(tmp_path: Path) -> None:
    """The rig reports bare image ids (loose); dropped blocks are shown again."""
    out = tmp_path / "run"
    cfg = rig_config(
        generations=1,
        population=6,
        refs=0,
        block_size=3,
        match="loose",
        require_response=True,
        timeout=0.3,
    )
    exp = Experiment.from_config(cfg, out)
    exp._start()
    stim = out / "stimuli"

    def rig() -> None:  # answer block 0, drop block 1, answer the re-show (block 2)
        for b in (0, 2):
            while not (stim / f"block{b:03d}.txt").exists():
                time.sleep(0.005)
            names = (stim / f"block{b:03d}.txt").read_text().split()
            ids = [f"C:\\stimuli\\{image_id(n)}" for n in names]  # folders, no prefix
            WRITERS.get("json").write(
                out / "stimuli" / f"block{b:03d}.json",
                ids,
                np.arange(len(ids), dtype=float)[:, None] + 10 * b,
            )

    t = threading.Thread(target=rig)
    t.start()
    exp.run()
    t.join()
    rec = records.read(out)
    assert np.isfinite(rec.scores).all()  # every image got a response in the end
    assert list(rec.extra["rig/blocks/status"]) == ["answered", "no response", "answered"]
    assert sorted(rec.scores) == [0.0, 1.0, 2.0, 20.0, 21.0, 22.0]


def test_a_block_answered_only_with_nan_is_warned_about_and_counted(tmp_path: Path) -> None:
    """A complete response whose every value is NaN (a lost electrode) gets a warning in the
    terminal and rig.log, and is counted in status.json (nan_blocks); it was logged like a
    good block. Only the selected channels count: NaN elsewhere is no warning."""

    def nan_block_1(b: int, names: list[str], folder: Path) -> None:
        values = [[np.nan if b == 1 else 5.0, 1.0] for _ in names]
        write_response(folder, b, "json", names, values)

    folder = tmp_path / "nan"
    _, scores, err = score_one_generation(folder, nan_block_1, block_size=2)
    assert np.isfinite(scores[:2]).all() and np.isnan(scores[2:]).all()
    warning = "block001.json: all 2 responses hold NaN (or infinite) values, so no stimulus of"
    assert f"rig: warning: {warning}" in err and "block000.json: all" not in err
    assert f"WARNING {warning}" in (folder / "rig" / "rig.log").read_text()
    assert read_status(folder)["nan_blocks"] == 1
    _, _, err = score_one_generation(tmp_path / "other", nan_block_1, block_size=2, channels=1)
    assert "NaN (or infinite)" not in err  # channel 1 holds values
    _, _, err = score_one_generation(tmp_path / "zero", nan_block_1, block_size=2, channels=0)
    assert "all 2 responses hold NaN (or infinite) values in the channels that [rig]" in err


def test_nan_responses_are_no_response(tmp_path: Path) -> None:
    """A NaN (MATLAB NaN, JSON null) is no response: averaged over the finite showings,
    shown again with require_response, and a NaN blank leaves the baseline to the others."""

    def nan_first_showing(b: int, names: list[str], folder: Path) -> None:
        values = [[np.nan if b == 0 and "000000" in n else 5.0] for n in names]
        write_response(folder, b, "mat73", names, values)

    _, scores, _ = score_one_generation(tmp_path / "reps", nan_first_showing, reps=2)
    np.testing.assert_array_equal(scores, [5.0] * 4)
    scorer, scores, _ = score_one_generation(
        tmp_path / "require", nan_first_showing, require_response=True
    )
    np.testing.assert_array_equal(scores, [5.0] * 4)
    assert sorted(scorer.state["blocks"]) == ["0", "1"]  # the NaN image was shown again

    def blanks(b: int, names: list[str], folder: Path) -> None:  # blank00 NaN, blank01 1
        values = [[np.nan if "blank00" in n else 1.0 if "blank" in n else 5.0] for n in names]
        write_response(folder, b, "json", names, values)

    _, scores, _ = score_one_generation(
        tmp_path / "one_nan_blank", blanks, blanks=2, subtract_blank=True
    )
    np.testing.assert_array_equal(scores, [4.0] * 4)  # 5 - 1: the NaN blank is left out

    def second_block_blank_nan(b: int, names: list[str], folder: Path) -> None:
        values = [[(np.nan if b == 1 else 2.0) if "blank" in n else 5.0] for n in names]
        write_response(folder, b, "json", names, values)

    _, scores, _ = score_one_generation(
        tmp_path / "all_nan", second_block_blank_nan, blanks=1, subtract_blank=True, block_size=2
    )
    np.testing.assert_array_equal(scores, [3.0] * 4)  # block 1 takes the generation's mean 2


def test_require_response_shows_a_missing_image_once_per_round_up_to_max_reshows(
    tmp_path: Path,
) -> None:
    """An image that never gets an answer costs max_reshows re-show blocks of one showing each
    (not reps showings, not a round more), and keeps no score."""

    def never_image_0(b: int, names: list[str], folder: Path) -> None:
        values = [[np.nan if "gen000_000000" in n else 5.0] for n in names]
        write_response(folder, b, "json", names, values)

    scorer, scores, _ = score_one_generation(
        tmp_path / "rig", never_image_0, reps=2, block_size=8, require_response=True,
        max_reshows=2,
    )  # fmt: skip
    assert np.isnan(scores[0]) and (scores[1:] == 5.0).all()
    blocks = scorer.state["blocks"]
    shown = [blocks[b]["n_stimuli"] for b in sorted(blocks, key=int)]
    assert shown == [4 * 2, 1, 1]  # 4 images shown twice, then image 0 once in each round


def test_a_generation_without_a_blank_response_subtracts_the_last_baseline(
    tmp_path: Path,
) -> None:
    def blanks(value: float) -> Callable[[int, list[str], Path], None]:
        def respond(b: int, names: list[str], folder: Path) -> None:
            values = [[value if "blank" in n else 5.0] for n in names]
            write_response(folder, b, "json", names, values)

        return respond

    folder = tmp_path / "rig"
    _, first, _ = score_one_generation(folder, blanks(2.0), blanks=1, subtract_blank=True)
    np.testing.assert_array_equal(first, [3.0] * 4)
    _, second, _ = score_one_generation(
        folder, blanks(np.nan), blanks=1, subtract_blank=True, generation=1
    )
    np.testing.assert_array_equal(second, [3.0] * 4)  # 5 - generation 0's baseline, 2


def test_late_blank_responses_of_an_earlier_generation_stay_out_of_the_baseline(
    tmp_path: Path,
) -> None:
    """Generation 0's blocks time out and are answered late (blank 100) while generation 1
    is shown: generation 1's block without a blank response of its own takes the mean of
    generation 1's blanks (2), not of every blank read meanwhile."""
    folder = tmp_path / "rig"
    shown: dict[int, list[str]] = {}

    def silent(b: int, names: list[str], _: Path) -> None:
        shown[b] = names  # answered later

    rig: dict[str, Any] = dict(blanks=1, subtract_blank=True, block_size=2, on_timeout="skip")
    _, first, _ = score_one_generation(folder, silent, timeout=0.2, **rig)
    assert np.isnan(first).all() and sorted(shown) == [0, 1]

    def late_then_own(b: int, names: list[str], score_dir: Path) -> None:
        if b == 2:
            for old, old_names in shown.items():
                values = [[100.0 if "blank" in n else 7.0] for n in old_names]
                write_response(score_dir, old, "json", old_names, values)
        values = [[(2.0 if b == 2 else np.nan) if "blank" in n else 5.0] for n in names]
        write_response(score_dir, b, "json", names, values)

    scorer, second, _ = score_one_generation(folder, late_then_own, generation=1, **rig)
    late = [r for r in scorer.state["rows"] if r["late"]]
    assert {r["block"] for r in late} == {0, 1} and not any(r["used"] for r in late)
    np.testing.assert_array_equal(second, [3.0] * 4)


def test_h5_rows_are_checked_against_the_block(tmp_path: Path) -> None:
    """MATLAB's h5write of an N x 1 column arrives as (1, N) in h5py: read as N stimuli, not
    one stimulus with N channels; a row count that fits neither orientation is refused, and a
    refused file does not fix the channel count (which made every later file malformed)."""

    def h5(folder: Path, b: int, scores: Any, indices: Any = None) -> None:
        with h5py.File(folder / f".block{b:03d}.tmp", "w") as f:
            f["scores"] = scores
            if indices is not None:
                f["indices"] = indices
        (folder / f".block{b:03d}.tmp").rename(folder / f"block{b:03d}.h5")

    def respond(b: int, names: list[str], folder: Path) -> None:
        column = np.arange(1.0, len(names) + 1)
        if b == 0:
            h5(folder, b, np.ones((5, 1)))  # 5 rows for 3 stimuli: refused
            time.sleep(0.5)
            h5(folder, b, column[None, :])  # MATLAB's N x 1 column
        elif b == 1:
            h5(folder, b, column[:, None])  # the documented orientation
        else:
            h5(folder, b, column[:, None], indices=np.arange(1, 4))  # 1-based: refused
            time.sleep(0.5)
            h5(folder, b, column[None, ::-1], indices=np.arange(3)[::-1])

    scorer, scores, _ = score_one_generation(
        tmp_path / "run", respond, n=9, block_size=3, settle=0.3, channels=0
    )
    np.testing.assert_array_equal(scores, [1, 2, 3] * 3)
    assert scorer.state["n_channels"] == 1
    log = (tmp_path / "run" / "rig" / "rig.log").read_text()
    assert "'scores' is 5 x 1 (h5py order), but block 0 has 3 stimuli" in log
    assert "index 3 is out of range for block 2's 3 files" in log and "subtract 1" in log
    assert "earlier responses had" not in log
    assert "write the transpose" not in log  # one channel: no orientation to mistake
    # several channels as channels x images: read, with a warning
    h5(tmp_path, 7, np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]), indices=[2, 0, 1])
    response = READERS.get("h5").read(tmp_path / "block007.h5")
    np.testing.assert_array_equal(response.values, [[1, 10], [2, 20], [3, 30]])
    assert "write the transpose instead" in response.warnings[0]
    # 1-D scores have no orientation to mistake: one stimulus's three channels, no warning
    h5(tmp_path, 8, np.array([1.0, 2.0, 3.0]), indices=[0])
    response = READERS.get("h5").read(tmp_path / "block008.h5")
    np.testing.assert_array_equal(response.values, [[1, 2, 3]])
    assert response.warnings == []


def test_a_square_block_is_read_the_way_round_the_rig_writes(tmp_path: Path) -> None:
    """A rig writing tEvokedResp images x channels: a block with as many stimuli as channels
    cannot show it, and is read the way round the run's earlier files were (remembered in the
    journal, so also after a restart); with no earlier file it is guessed, with a warning."""

    def images_by_channels(b: int, names: list[str], folder: Path) -> None:
        image = [int(n.split("_")[-1].split(".")[0]) + 1 for n in names]
        cell = np.empty((1, len(names)), dtype=object)
        cell[0, :] = names
        resp = np.array([[v, -100.0 * v] for v in image])  # images x channels
        with open(folder / f".block{b:03d}.tmp", "wb") as fh:
            scipy.io.savemat(fh, {"stimulusID": cell, "tEvokedResp": resp})
        (folder / f".block{b:03d}.tmp").rename(folder / f"block{b:03d}.mat")

    folder = tmp_path / "run"
    scorer, scores, err = score_one_generation(
        folder, images_by_channels, n=5, block_size=3, channels=0
    )
    np.testing.assert_array_equal(scores, [1, 2, 3, 4, 5])  # block 1: 2 images, 2 channels
    assert "save tEvokedResp' (its transpose)" in err and "cannot show which way" not in err
    assert scorer.state["orientation"] == "transposed"
    # a restarted xdream (a new scorer on the same journal): a square block first
    _, scores, err = score_one_generation(
        folder, images_by_channels, n=2, generation=1, block_size=3, channels=0
    )
    assert "resumed from the journal" in (folder / "rig" / "rig.log").read_text()
    np.testing.assert_array_equal(scores, [1, 2])
    assert "cannot show which way" not in err
    assert "read transposed (images x channels in .mat tEvokedResp" in err  # never silently
    # a square block with nothing to go by: the documented orientation, with a warning
    _, scores, err = score_one_generation(tmp_path / "fresh", images_by_channels, n=2, channels=0)
    np.testing.assert_array_equal(scores, [1, -100])
    assert "cannot show which way round its matrix is" in err


def test_names_with_folders_say_how_to_fix_them(tmp_path: Path) -> None:
    """MATLAB's fullfile(writeDir, name) in stimulusID: refused, saying what would work."""

    def full_paths(b: int, names: list[str], folder: Path) -> None:
        full = [f"C:\\rig\\stimuli\\{n}" for n in names]
        write_response(folder, b, "mat73", full, np.ones((len(names), 1)))

    _, scores, err = score_one_generation(
        tmp_path / "strict", full_paths, n=3, timeout=0.6, settle=0.2
    )
    assert np.isnan(scores).all()
    assert "its stimulus names hold folders (first: 'C:\\\\rig\\\\stimuli\\\\block000_" in err
    assert "write the bare file names as listed in block000.txt" in err
    assert 'match = "loose"' in err
    _, scores, _ = score_one_generation(tmp_path / "loose", full_paths, n=3, match="loose")
    np.testing.assert_array_equal(scores, [1.0, 1.0, 1.0])  # what the message promises


def test_match_loose_set_on_resume_reads_the_skipped_response_again(tmp_path: Path) -> None:
    """The advice for full paths (set match = "loose") can be followed in the run that got
    it: match may change between sessions, and the resumed run reads the file it skipped
    again. Resume refused the change (rig.match: 'strict' -> 'loose')."""
    out = tmp_path / "run"
    cfg = rig_config(
        generations=2, population=4, refs=0, on_timeout="pause", timeout=0.4, settle=0.1
    )
    exp = Experiment.from_config(cfg, out)
    stim = out / "stimuli"

    def rig() -> None:
        for b in (0, 1):  # bare names for block 0, full paths from block 1 on
            while not (stim / f"block{b:03d}.txt").exists():
                time.sleep(0.005)
            names = (stim / f"block{b:03d}.txt").read_text().split()
            shown = [str(stim / n) for n in names] if b else names  # fullfile(writeDir, name)
            write_response(stim, b, "json", shown, np.arange(len(names))[:, None] + 1.0 + 10 * b)

    t = threading.Thread(target=rig)
    t.start()
    with pytest.raises(RigPaused):
        exp.run()
    t.join()
    assert "block001.json skipped as malformed" in (out / "rig" / "rig.log").read_text()
    exp.release_folder()
    config = out / "config.yaml"
    config.write_text(config.read_text().replace("match: strict", "match: loose"))
    resumed = Experiment.resume(out)
    assert resumed.config_changes == ["rig.match: 'strict' -> 'loose'"]
    resumed.run()  # nobody answers again: the file that was skipped answers block 1
    rec = records.read(out)
    assert sorted(rec.scores[rec.generation == 1].tolist()) == [11.0, 12.0, 13.0, 14.0]
    assert rec.extra["rig/blocks/response_file"].tolist() == ["block000.json", "block001.json"]
    assert read_status(out)["skipped_files"] == 1  # counted once, in the first session


# --------------------------------------------------------------------------- hardening
def test_foreign_malformed_partial_duplicate_and_escaping_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = rig_config(generations=1, population=4, refs=0, settle=0.2, timeout=5.0)
    exp = Experiment.from_config(cfg, out)
    exp._start()
    stim = out / "stimuli"
    stim.joinpath("notes.txt").write_text("operator notes")  # foreign
    stim.joinpath("block017.mat").write_bytes(b"not ours")  # a block xdream never wrote

    names: list[str] = []

    def rig() -> None:
        while not (stim / "block000.txt").exists():
            time.sleep(0.005)
        names.extend((stim / "block000.txt").read_text().split())
        (stim / "block000.mat").write_bytes(b"MATLAB 5.0 garbage" * 10)  # malformed
        time.sleep(0.5)
        good = tmp_path / "good.mat"
        bad_names = ["../../etc/passwd", *names]
        WRITERS.get("mat73").write(good, bad_names, np.arange(5.0)[:, None])
        data = good.read_bytes()
        with open(stim / "block000.mat", "wb") as fh:  # rewritten slowly, not atomically
            fh.write(data[:300])
            fh.flush()
            time.sleep(0.1)
            fh.write(data[300:])
        time.sleep(0.3)
        WRITERS.get("mat73").write(stim / "block000.mat", names, np.zeros((4, 1)))  # duplicate

    t = threading.Thread(target=rig)
    t.start()
    summary = exp.run()
    t.join()
    exp.scorer._scan()  # let the duplicate be seen
    log = (out / "rig" / "rig.log").read_text()
    assert "notes.txt" in log and "block017.mat" in log and "did not write" in log
    assert "skipped as malformed" in log
    assert "reaching outside the folders rejected" in log and "etc/passwd" in log
    assert "already answered" in log
    rec = records.read(out)
    value = {image_id(n): k + 1.0 for k, n in enumerate(names)}  # the complete file won
    np.testing.assert_array_equal(rec.scores, [value[i] for i in rec.image_ids])
    assert summary["generations"] == 1
    assert read_status(out)["skipped_files"] == 3  # foreign, not ours, malformed
    assert exp.scorer.state["counts"]["duplicates"] == 1  # type: ignore[attr-defined]
    backups = {
        p.name.split(".")[0] + "." + p.name.split(".")[1]
        for p in (out / "rig" / "responses").iterdir()
    }
    assert backups == {"block000.mat"}


def test_odd_files_are_counted_and_backed_up_once_across_resumes(tmp_path: Path) -> None:
    """A foreign file, a malformed response and a second response that stay in score_dir are
    counted (skipped_files, duplicates) and backed up once: a resumed run (a new scorer, from
    the journal) counted and copied them again. A response to a block xdream never wrote is
    counted by the session that sees it; a resume goes on while it stays as it was (the
    journal knows it is no answer: audit V-10), and is refused once it is rewritten while
    xdream is down (audit V-4: another session's, which the run cannot tell from its rig's
    answers), and goes on once it is moved away."""
    folder = tmp_path / "run"
    rig = {"timeout": 0.5, "settle": 0.1, "on_timeout": "skip", "response_format": "auto"}
    shown: dict[int, list[str]] = {}

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b in shown:  # a timed-out block's manifest stays: the rig has shown it
            return
        shown[b] = names
        if b == 1:  # the rig writes a malformed file, and the block times out
            (score_dir / "block001.json").write_text("{not json")
            (score_dir / "block017.json").write_text("{}")  # a block xdream never wrote
            return
        time.sleep(0.3)  # past settle: the malformed file is read again meanwhile
        write_response(score_dir, b, "json", names, np.full((len(names), 1), float(b)))

    score_one_generation(folder, answer, generation=0, **rig)
    stim = folder / "stimuli"
    (stim / "notes.txt").write_text("operator notes")  # foreign
    write_response(stim, 0, "csv", shown[0], np.zeros((len(shown[0]), 1)))  # a second one
    _, scores, _ = score_one_generation(folder, answer, generation=1, **rig)
    assert np.isnan(scores).all()  # block 1 timed out
    counts = {"skipped_files": 3, "duplicates": 1}  # foreign, not ours, malformed; block000.csv
    assert {k: read_status(folder)[k] for k in counts} == counts
    backups = {p.name: p.stat().st_mtime_ns for p in (folder / "rig" / "responses").iterdir()}
    assert sorted(n.split("-")[0] for n in backups if "-" in n) == [
        "block000.csv.duplicate",
        "block001.json.malformed",
    ]
    journal = json.loads((folder / "rig" / "state.json").read_text())
    assert "block017.json" in journal["early"]
    RigScorer(RigSection(**rig)).check_folder(folder)  # known: not refused
    (stim / "block017.json").write_text('{"stimulusID": []}')  # rewritten while xdream is down
    with pytest.raises(XDreamError, match=r"holds files of a block this run has not written ") as e:
        score_one_generation(folder, answer, generation=2, **rig)
    # a run without config.yaml goes on in Python: that advice quoted once, not in ``...``
    assert "then continue with `e = Experiment(...); e.restore(); e.run()` in Python" in str(
        e.value
    )
    assert "``" not in str(e.value)
    (stim / "block017.json").rename(tmp_path / "block017.json")  # moved away
    for generation in (2, 3):  # resumed twice, each time scanning the same files
        resumed = {**rig, "timeout": 5.0}
        _, scores, _ = score_one_generation(folder, answer, generation=generation, **resumed)
        assert np.isfinite(scores).all()
        assert {k: read_status(folder)[k] for k in counts} == counts
        journal = json.loads((folder / "rig" / "state.json").read_text())
        assert {k: journal["counts"][k] for k in counts} == counts
        again = {p.name: p.stat().st_mtime_ns for p in (folder / "rig" / "responses").iterdir()}
        assert {n: again[n] for n in backups} == backups  # not copied again
    log = (folder / "rig" / "rig.log").read_text()
    assert log.count("block001.json skipped as malformed") == 3  # once per session


def test_a_malformed_file_then_a_good_one_for_the_block_count_once(tmp_path: Path) -> None:
    """A malformed response file skipped (once settled), then another file that answers the
    block: the malformed one, still in score_dir, is one skipped file with one backup. It was
    counted and backed up again as a second response to the answered block (duplicates)."""
    folder = tmp_path / "run"

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        (score_dir / "block000.json").write_text("{not json")
        time.sleep(0.4)  # past settle: skipped as malformed
        write_response(score_dir, b, "csv", names, np.ones((len(names), 1)))

    scorer, scores, err = score_one_generation(folder, answer, settle=0.1, timeout=5.0)
    assert np.isfinite(scores).all()
    scorer._scan()  # the next block's wait looks at score_dir again
    assert {k: scorer.state["counts"][k] for k in ("skipped_files", "duplicates")} == {
        "skipped_files": 1,
        "duplicates": 0,
    }
    backups = sorted(p.name for p in (folder / "rig" / "responses").glob("block000.json*"))
    assert len(backups) == 1 and ".malformed-" in backups[0]
    assert "block000.json skipped as malformed" in err and "already answered" not in err


def test_a_malformed_file_that_came_in_time_is_named_when_the_block_times_out(
    tmp_path: Path,
) -> None:
    """A malformed response file that comes before the deadline but has not yet settled when
    it passes: the block waits for it to settle (as for a file that may still be written), so
    the timeout names it as skipped. It timed out first and said only "no response"."""

    def malformed(b: int, names: list[str], score_dir: Path) -> None:
        (score_dir / f"block{b:03d}.json").write_text("{not json")

    start = time.monotonic()
    for on_timeout in ("skip", "pause"):
        folder = tmp_path / on_timeout
        if on_timeout == "skip":
            _, scores, err = score_one_generation(
                folder, malformed, settle=0.6, timeout=0.2, on_timeout=on_timeout
            )
            assert np.isnan(scores).all()
            assert "block000.json (malformed:" in err, err
            assert time.monotonic() - start > 0.6  # waited for the file to settle
        else:
            with pytest.raises(RigPaused) as paused:
                score_one_generation(
                    folder, malformed, settle=0.6, timeout=0.2, on_timeout=on_timeout
                )
            err = str(paused.value)
        assert "block000.json (malformed:" in err, err


def test_a_file_whose_content_is_refused_that_came_in_time_is_named_when_the_block_times_out(
    tmp_path: Path,
) -> None:
    """As a file that does not parse, one that parses but whose content is refused (an index
    out of range) and that came before the deadline holds the timeout until it settles, so
    the timeout names it as skipped rather than saying there was no response."""

    def out_of_range(b: int, names: list[str], score_dir: Path) -> None:
        tmp = score_dir / f".block{b:03d}.tmp"
        with h5py.File(tmp, "w") as f:
            f["scores"] = np.ones((len(names), 1))
            f["indices"] = np.arange(len(names)) + 99
        tmp.rename(score_dir / f"block{b:03d}.h5")

    start = time.monotonic()
    _, scores, err = score_one_generation(
        tmp_path / "run", out_of_range, settle=0.6, timeout=0.2, on_timeout="skip"
    )
    assert np.isnan(scores).all()
    assert "block000.h5 (malformed: index 99 is out of range" in err, err
    assert time.monotonic() - start > 0.6  # waited for the file to settle


def test_the_waiting_line_fits_the_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line rewritten in place while a block is awaited was padded to 100 columns and
    some 106 long: on an 80-column terminal it wraps, and each rewrite starts a new line. It
    fits the terminal's width now, shorter where it must be."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        write_response(score_dir, b, "csv", names, np.ones((len(names), 1)))

    scorer, _, _ = score_one_generation(tmp_path / "run", answer)
    blk = {**scorer.state["blocks"]["0"], "generation": 1234, "block": 98765}
    for columns, full in ((80, False), (40, False), (200, True)):
        monkeypatch.setenv("COLUMNS", str(columns))
        scorer.stderr = screen = Terminal()
        scorer._last_line = 0.0
        scorer._terminal(blk, 1234.5)
        line = screen.getvalue()
        assert line.startswith("\rrig: gen") and "\n" not in line
        assert len(line) - 1 <= columns - 1, (columns, line)
        assert ("last latency" in line) == full, line
        if columns >= 80:  # everything but the file's name: the block says which it is
            assert "waiting 1234.5 s" in line and "best 1 " in line and "timeouts 0" in line


def test_the_waiting_line_fits_the_terminal_stderr_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line is written to stderr, so it fits stderr's terminal: with stdout sent to a file
    (`xdream run ... > log`) and no COLUMNS, the width was a 100-column guess, and on an
    80-column terminal the line wrapped, each rewrite on a new line. Mutation audit W: a
    guess of 80 columns survived."""
    import fcntl
    import struct
    import termios

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        write_response(score_dir, b, "csv", names, np.ones((len(names), 1)))

    scorer, _, _ = score_one_generation(tmp_path / "run", answer)
    blk = {**scorer.state["blocks"]["0"], "generation": 1234, "block": 98765}
    monkeypatch.delenv("COLUMNS", raising=False)
    main, side = os.openpty()
    log = open(tmp_path / "log", "w")  # noqa: SIM115  (closed below)
    monkeypatch.setattr(sys, "__stdout__", log)  # stdout sent to a file
    try:
        fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        with open(side, "w", closefd=False) as terminal:
            scorer.stderr = terminal
            scorer._last_line = 0.0
            scorer._terminal(blk, 12.3)
        line = os.read(main, 4096).decode()
    finally:
        os.close(main)
        os.close(side)
        log.close()
    assert line.startswith("\rrig: gen 1234 block 98765 waiting 12.3 s") and len(line) == 80


def test_the_waiting_line_says_each_field_and_overwrites_all_of_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting line of a block is written over the one before (the block before's, or
    this one's a moment ago), padded so that nothing of a longer one is left on the screen,
    on a terminal wider than 100 columns too (it was padded to 100 only). A line exactly as
    wide as the terminal allows keeps its full form; the short form says every field."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def on_screen(written: str) -> str:  # each carriage return writes over the row
        row = ""
        for part in written.split("\r"):
            row = part + row[len(part) :]
        return row

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        write_response(score_dir, b, "csv", names, np.ones((len(names), 1)))

    scorer, _, _ = score_one_generation(tmp_path / "run", answer)
    blk = {**scorer.state["blocks"]["0"], "generation": 1234, "block": 98765}

    def show(columns: int, latency: float, best: float, screen: io.StringIO) -> str:
        monkeypatch.setenv("COLUMNS", str(columns))
        scorer.state["last_latency"], scorer.state["best"] = latency, best
        scorer.stderr = screen
        scorer._last_line = 0.0
        scorer._terminal(blk, 12.3)
        return screen.getvalue().rsplit("\r", 1)[1].rstrip()

    for columns in (90, 130, 250):
        screen = Terminal()
        longer = show(columns, 12.345, 0.9999, screen)
        shorter = show(columns, 1.234, 1.5, screen)
        assert len(shorter) < len(longer) <= columns - 1 and "best 0.9999 " in longer
        assert on_screen(screen.getvalue()).rstrip() == shorter, (columns, screen.getvalue())
        scorer._log("block 98765 answered", warn=True)  # a warning over it: nothing left
        assert on_screen(screen.getvalue().split("\n")[0]).rstrip() == (
            "rig: warning: block 98765 answered"
        )
    full = show(250, 1.234, 1.5, Terminal())
    assert "last latency 1.234 s  best 1.5  timeouts" in full
    assert show(len(full) + 1, 1.234, 1.5, Terminal()) == full  # it fits: said in full
    short = show(len(full), 1.234, 1.5, Terminal())
    assert short.startswith("rig: gen 1234 block 98765 waiting 12.3 s latency 1.234 s best 1.5 ")


def test_a_file_that_changes_while_it_is_read_is_read_again(tmp_path: Path) -> None:
    """Completeness: readable and unchanged over ``poll_interval``. A CSV cut at a line end
    parses, so a rig still appending to it while xdream reads must not get the cut version."""
    from xdream.rig import register_reader
    from xdream.rig.formats import read_csv

    reads: list[int] = []

    def read_while_appending(path: Path) -> Any:
        response = read_csv(path)
        reads.append(len(response.values))
        if len(reads) == 1:  # the rig appends its last line while the first read runs
            with open(path, "a") as fh:
                fh.write(tail)
        return response

    if "csv-appending" not in READERS.names():
        register_reader("csv-appending", [".csv"])(read_while_appending)
    out = tmp_path / "run"
    cfg = rig_config(generations=1, population=4, refs=0, response_format="csv-appending")
    exp = Experiment.from_config(cfg, out)
    exp._start()
    stim = out / "stimuli"
    tail = ""

    def rig() -> None:
        nonlocal tail
        while not (stim / "block000.txt").exists():
            time.sleep(0.002)
        names = (stim / "block000.txt").read_text().split()
        lines = [f"{n},{k + 1}\n" for k, n in enumerate(names)]
        tail = lines[-1]
        (stim / ".block000.csv.part").write_text("".join(lines[:-1]))
        (stim / ".block000.csv.part").rename(stim / "block000.csv")

    t = threading.Thread(target=rig)
    t.start()
    exp.run()
    t.join()
    assert reads[0] == 3 and reads[-1] == 4  # the cut file was read, but not accepted
    rec = records.read(out)
    assert np.isfinite(rec.scores).all()


def test_a_file_written_without_rename_is_taken_only_when_complete(tmp_path: Path) -> None:
    """A text file that parses half-written (cut at a line end, or in a number) is not taken:
    a file answering only part of the block, or a CSV without a final line end, is accepted
    only once unchanged for ``settle`` seconds, and then says what got no response."""

    def slowly(cut: Callable[[bytes], int]) -> Callable[[int, list[str], Path], None]:
        def respond(b: int, names: list[str], folder: Path) -> None:
            text = "stimulusID,ch0\n" + "".join(
                f"{n},{100.0 * (k + 1) + 0.25}\n" for k, n in enumerate(names)
            )
            data = text.encode()
            with open(folder / f"block{b:03d}.csv", "wb") as fh:
                fh.write(data[: cut(data)])
                fh.flush()
                time.sleep(0.1)
                fh.write(data[cut(data) :])

        return respond

    for label, cut in (
        ("line", lambda d: d.index(b"\n", len(d) // 2) + 1),
        ("number", lambda d: d.rindex(b".25")),
    ):
        scorer, scores, err = score_one_generation(tmp_path / label, slowly(cut), n=6)
        np.testing.assert_array_equal(scores, 100.0 * np.arange(1, 7) + 0.25)
        assert "got no response" not in err and "already answered" not in err
        backup = tmp_path / label / "rig" / "responses" / "block000.csv"
        assert backup.read_bytes() == (scorer.score_dir / "block000.csv").read_bytes()

    def three_of_four(b: int, names: list[str], folder: Path) -> None:
        write_response(folder, b, "csv", names[:3], [[1.0], [2.0], [3.0]])

    start = time.monotonic()
    scorer, scores, err = score_one_generation(tmp_path / "part", three_of_four, settle=0.3)
    assert time.monotonic() - start > 0.3  # waited for the file to settle
    np.testing.assert_array_equal(scores, [1, 2, 3, np.nan])
    assert "block000.csv: 1 of the block's 4 stimuli got no response (NaN)" in err
    # a partial answer that comes in time is not timed out while it settles
    scorer, scores, err = score_one_generation(
        tmp_path / "part_timeout", three_of_four, settle=0.5, timeout=0.3
    )
    np.testing.assert_array_equal(scores, [1, 2, 3, np.nan])
    assert "no response to block 0" not in err


def test_a_settling_answer_that_came_in_time_survives_a_delayed_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Work between two looks at score_dir (here the next block's images, encoded while the rig
    works) outlasting the timeout does not time out an answer that came in time: it is taken at
    the next look, which comes before any timeout. (A partial answer xdream saw before the
    deadline waits to settle: test_a_file_written_without_rename_is_taken_only_when_complete.)"""
    from xdream.rig import scorer as scorer_mod

    encode = scorer_mod.RigScorer._encode

    def slow_encode(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.8)
        return encode(self, *args, **kwargs)

    monkeypatch.setattr(scorer_mod.RigScorer, "_encode", slow_encode)

    def complete(b: int, names: list[str], folder: Path) -> None:
        write_response(folder, b, "csv", names, [[1.0 + i] for i in range(len(names))])

    _, scores, err = score_one_generation(
        tmp_path / "complete", complete, n=4, block_size=2, timeout=0.2
    )
    np.testing.assert_array_equal(scores, [1, 2, 1, 2])
    assert "no response to block" not in err and "late" not in err


def test_settle_always_waits_for_a_file_written_in_complete_passes(tmp_path: Path) -> None:
    """A rig that cannot rename and writes a CSV in passes that each answer every stimulus
    (repeated names, averaged) may pause between passes: the cut file looks complete. With
    ``settle_always`` every file waits ``settle`` seconds unchanged, so the second pass counts."""

    def two_passes(b: int, names: list[str], folder: Path) -> None:
        with open(folder / f"block{b:03d}.csv", "w") as fh:
            fh.writelines(f"{n},{k + 1}\n" for k, n in enumerate(names))
            fh.flush()
            time.sleep(0.3)
            fh.writelines(f"{n},{k + 101}\n" for k, n in enumerate(names))

    start = time.monotonic()
    _, scores, err = score_one_generation(
        tmp_path / "always", two_passes, settle=0.8, settle_always=True
    )
    assert time.monotonic() - start > 0.8
    np.testing.assert_array_equal(scores, [51, 52, 53, 54])
    assert "already answered" not in err and "got no response" not in err


def test_timeout_skip_records_late_response(tmp_path: Path) -> None:
    """A block that times out counts as no response; its late file is still recorded."""
    out = tmp_path / "run"
    cfg = rig_config(generations=2, population=4, refs=0, timeout=0.3)
    _, sim = run_with_rig(out, cfg, late=1.0, late_delay=0.5, latency=(0.0, 0.0))
    rec = records.read(out)
    assert np.isnan(rec.scores[:4]).all()  # generation 0: only late responses
    late = rec.extra["rig/presentations/late"].astype(bool)
    assert late.all()
    shown = rec.extra["rig/presentations/shown_generation"]
    recorded_in = rec.extra["rig/presentations/generation"]
    assert (shown == 0).sum() == 4 and (recorded_in[shown == 0] == 1).all()
    assert rec.extra["rig/blocks/status"][0] == "no response"
    # the late response to generation 0's block is recorded with the rig's values
    early = {n: v for b, n, v in written_responses(read_log(sim.log_path)) if b == 0}
    for name, response in zip(
        rec.extra["rig/presentations/stimulus"][shown == 0],
        rec.extra["rig/presentations/response"][shown == 0],
    ):
        np.testing.assert_array_equal(response, early[name])
    assert read_status(out)["timeouts"] == 2


def test_pause_then_resume_continues_at_the_right_block(tmp_path: Path) -> None:
    """Stopped mid-generation; the response that came meanwhile is picked up, no block re-shown."""
    out = tmp_path / "run"
    cfg = rig_config(
        generations=2, population=6, refs=0, block_size=3, on_timeout="pause", timeout=0.4
    )
    exp = Experiment.from_config(cfg, out)
    stim = out / "stimuli"
    answers = {}

    def answer(b: int) -> None:
        names = (stim / f"block{b:03d}.txt").read_text().split()
        answers.update({n: float(b * 10 + i) for i, n in enumerate(names)})
        WRITERS.get("mat7").write(
            stim / f"block{b:03d}.mat", names, np.array([[answers[n]] for n in names])
        )

    def rig_until(b: int) -> None:
        for k in range(b):
            while not (stim / f"block{k:03d}.txt").exists():
                time.sleep(0.005)
            answer(k)

    t = threading.Thread(target=rig_until, args=(1,))
    t.start()
    with pytest.raises(RigPaused, match="xdream resume"):
        exp.run()
    t.join()
    assert read_status(out)["state"] == "paused"
    answer(1)  # the rig answers while xdream is down
    resumed = Experiment.resume(out)
    with thread_rig(stim) as sim:
        resumed.run()
    rec = records.read(out)
    assert list(rec.extra["rig/blocks/block"]) == [0, 1, 2, 3]  # numbering continued
    assert "block 1 re-written" not in (out / "rig" / "rig.log").read_text()
    assert {e["block"] for e in read_log(sim.log_path) if e["event"] == "shown"} == {2, 3}
    by_id = {image_id(n): v for n, v in answers.items()}
    first = rec.generation == 0
    ids = [i for i, f in zip(rec.image_ids, first) if f]
    np.testing.assert_array_equal(rec.scores[first], [by_id[i] for i in ids])
    assert np.isfinite(rec.scores).all()


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        (KeyboardInterrupt(), "interrupted (Ctrl-C)"),
        (Terminated(signal.SIGTERM), "interrupted (SIGTERM)"),
        (Terminated(signal.SIGHUP), "interrupted (SIGHUP)"),
        (OSError(5, "Input/output error"), "OSError: [Errno 5] Input/output error"),
    ],
)
def test_a_stop_while_waiting_says_stopped_in_the_status_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop: BaseException, reason: str
) -> None:
    """Stopped while it waits for a block (Ctrl-C; SIGTERM, SIGHUP, which the command takes as
    Ctrl-C; an error), xdream says so in rig/status.json, with why and how to continue: it said
    "waiting", and a rig or an operator watching it saw a live wait. Resumed, it waits again."""
    out = tmp_path / "run"
    exp = Experiment.from_config(rig_config(generations=2, population=6, refs=0), out)

    def stopped_while_waiting(self: RigScorer, blk: dict[str, Any], waited: float) -> None:
        raise stop

    with monkeypatch.context() as m:
        m.setattr(RigScorer, "_terminal", stopped_while_waiting)  # called at each look
        with pytest.raises(type(stop)):
            exp.run()
    status = read_status(out)
    assert status["state"] == "stopped", status
    assert status["block"] == 0 and status["waiting_for"] is None
    assert status["reason"] == reason
    assert status["continue_with"] == f"xdream resume {out}"
    assert (
        f"xdream stopped: {reason}; continue with xdream resume {out}"
        in (out / "rig" / "rig.log").read_text()
    )
    states: list[tuple[str, str | None]] = []
    write_status = RigScorer._status

    def seen(self: RigScorer, state: str, *args: Any, **kwargs: Any) -> None:
        write_status(self, state, *args, **kwargs)
        states.append((state, read_status(out)["reason"]))

    monkeypatch.setattr(RigScorer, "_status", seen)
    with thread_rig(out / "stimuli"):
        Experiment.resume(out).run()
    assert states[:2] == [("ready", None), ("waiting", None)] and states[-1] == ("finished", None)
    assert read_status(out)["blocks_answered"] == 2


def test_a_break_out_of_generations_and_a_pause_say_so_in_the_status_file(
    tmp_path: Path,
) -> None:
    """A program that leaves Experiment.generations() early stops the run ("stopped"); a
    pause stays "paused", with the pause's message and how to continue."""
    out = tmp_path / "run"
    exp = Experiment.from_config(rig_config(generations=3, population=6, refs=0), out)
    with thread_rig(out / "stimuli"):
        for _ in exp.generations():
            break
    status = read_status(out)
    assert status["state"] == "stopped" and status["block"] is None
    assert "left its generations" in status["reason"]
    assert status["continue_with"] == f"xdream resume {out}"
    cfg = rig_config(generations=2, population=6, refs=0, on_timeout="pause", timeout=0.1)
    with pytest.raises(RigPaused) as paused:
        Experiment.from_config(cfg, tmp_path / "paused").run()
    status = read_status(tmp_path / "paused")
    assert status["state"] == "paused" and status["block"] == 0
    assert status["reason"] == str(paused.value)
    assert status["continue_with"] == f"xdream resume {tmp_path / 'paused'}"


def test_a_resume_that_fails_once_the_rig_is_bound_says_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Binding the rig again writes "ready"; a resume that fails after it (record.h5 cannot be
    brought in line: a journal file damaged inside, s13_resume_fails_after_bind.py; a full
    disk) left "ready" behind, outside the run loop that says "stopped". It says "stopped" now,
    with the reason and how to continue."""
    out = tmp_path / "run"
    cfg = rig_config(generations=2, population=6, refs=0)
    with thread_rig(out / "stimuli"):
        Experiment.from_config(cfg, out).run()  # finished: resumed, it rewrites its records
    damaged = XDreamError("journal file 'gen000000.npz' is damaged")

    def cannot_reconcile(*args: Any, **kwargs: Any) -> str:
        assert read_status(out)["state"] == "ready"  # the rig is bound again
        raise damaged

    monkeypatch.setattr("xdream.experiment.reconcile", cannot_reconcile)
    with pytest.raises(XDreamError, match="damaged"):
        Experiment.resume(out)
    status = read_status(out)
    assert status["state"] == "stopped", status
    assert status["reason"] == f"error: {damaged}"
    assert status["continue_with"] == f"xdream resume {out}"


def test_a_step_that_fails_going_back_once_the_rig_is_bound_says_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In Python, step() after a pause goes back to the last generation on disk, binding the
    rig again ("ready"); when that fails (record.h5 cannot be brought in line), the status file
    said "ready" for good. It says "stopped" now, with the reason, as run() does."""
    out = tmp_path / "run"
    cfg = rig_config(generations=3, population=6, refs=0, on_timeout="pause", timeout=0.2)
    exp = Experiment.from_config(cfg, out)
    with thread_rig(out / "stimuli"):
        exp.step()
    with pytest.raises(RigPaused):
        exp.step()  # no rig answers
    assert read_status(out)["state"] == "paused"
    damaged = XDreamError("journal file 'gen000000.npz' is damaged")

    def cannot_reconcile(*args: Any, **kwargs: Any) -> str:
        assert read_status(out)["state"] == "ready"  # the rig is bound again
        raise damaged

    with monkeypatch.context() as m:
        m.setattr("xdream.experiment.reconcile", cannot_reconcile)
        with pytest.raises(XDreamError, match="damaged"):
            exp.step()
    status = read_status(out)
    assert status["state"] == "stopped", status
    assert status["reason"] == f"error: {damaged}"
    with thread_rig(out / "stimuli"):  # the same object goes on once the folder can be read
        exp.step()
        exp.step()
    exp.finish()
    assert read_status(out)["state"] == "finished"
    assert len(records.read(out).best_per_generation) == 3


def test_images_whose_backup_a_stop_cut_short_are_backed_up_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill in the milliseconds between writing a block and the background copy of its
    images lost that backup for good (s14): the block is not written again on resume (the
    rig has its files) and is cleaned up once answered. A resumed run now copies them from
    write_dir; a copy cut short (written in place by older xdream) is made again."""
    out = tmp_path / "run"
    cfg = rig_config(
        generations=2, population=6, refs=0, block_size=3, on_timeout="pause", timeout=0.4
    )
    stim = out / "stimuli"
    copy_images = scorer_mod._backup_images

    def killed_before_block_1s_copy(dest: Path, *args: Any) -> None:
        if dest.name != "block001":
            copy_images(dest, *args)

    def answer_block_0() -> None:
        while not (stim / "block000.txt").exists():
            time.sleep(0.005)
        names = (stim / "block000.txt").read_text().split()
        WRITERS.get("mat7").write(stim / "block000.mat", names, np.ones((len(names), 1)))

    monkeypatch.setattr(scorer_mod, "_backup_images", killed_before_block_1s_copy)
    t = threading.Thread(target=answer_block_0)
    t.start()
    with pytest.raises(RigPaused):  # waiting for block 1
        Experiment.from_config(cfg, out).run()
    t.join()
    backup = out / "rig" / "stimuli" / "block001"
    shown = sorted(n for n in os.listdir(stim) if n.startswith("block001_"))
    assert len(shown) == 3 and not any(backup.glob("block001_*"))
    (backup / shown[0]).write_bytes((stim / shown[0]).read_bytes()[:10])  # cut short
    originals = {n: (stim / n).read_bytes() for n in shown}
    monkeypatch.setattr(scorer_mod, "_backup_images", copy_images)
    with thread_rig(stim):
        Experiment.resume(out).run()
    assert not any(stim.glob("block001_*"))  # answered and cleaned up
    assert {n: (backup / n).read_bytes() for n in shown} == originals
    assert not [p for p in backup.iterdir() if p.name.startswith(".")]


def test_pause_then_continuing_the_same_object_abandons_nothing(tmp_path: Path) -> None:
    """In Python (a notebook), after ``RigPaused`` the same Experiment's run() goes on where
    ``xdream resume`` would: the paused block is awaited again and the generation, reference
    crops included, goes on; none of its blocks is abandoned or shown again."""
    out = tmp_path / "run"
    cfg = rig_config(
        generations=2, population=6, refs=2, block_size=3, on_timeout="pause", timeout=0.4
    )
    exp = Experiment.from_config(cfg, out)
    stim = out / "stimuli"
    answers: dict[str, float] = {}

    def answer(b: int) -> None:
        names = (stim / f"block{b:03d}.txt").read_text().split()
        answers.update({n: float(b * 10 + i) for i, n in enumerate(names)})
        WRITERS.get("mat7").write(
            stim / f"block{b:03d}.mat", names, np.array([[answers[n]] for n in names])
        )

    def first_block() -> None:
        while not (stim / "block000.txt").exists():
            time.sleep(0.005)
        answer(0)

    t = threading.Thread(target=first_block)
    t.start()
    with pytest.raises(RigPaused):
        exp.run()
    t.join()
    answer(1)  # the rig comes back
    with thread_rig(stim) as sim:
        exp.run()
    rec = records.read(out)
    assert list(rec.extra["rig/blocks/block"]) == [0, 1, 2, 3, 4, 5]
    assert "abandoned" not in (out / "rig" / "rig.log").read_text()
    assert {e["block"] for e in read_log(sim.log_path) if e["event"] == "shown"} == {2, 3, 4, 5}
    by_id = {image_id(n): v for n, v in answers.items()}
    first = rec.ref_generation == 0
    ref_ids = [i for i, f in zip(rec.ref_ids, first) if f]
    shown_first = [i for i in [*rec.image_ids, *ref_ids] if i in by_id]
    assert len(shown_first) == 6  # blocks 0 and 1: evolved images and reference crops
    scores = dict(zip(rec.image_ids, rec.scores))
    scores.update(zip(ref_ids, rec.ref_scores[first]))
    assert [scores[i] for i in shown_first] == [by_id[i] for i in shown_first]


class Killed(BaseException):
    """Stands in for a kill at a chosen moment."""


def test_kill_after_the_next_block_is_out_but_before_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run`` writes a generation's journal and checkpoint while the rig already shows the
    next generation's first block; a kill in between loses nothing and re-shows nothing."""
    cfg = rig_config(generations=4, block_size=6, score_dir="responses")
    run_with_rig(tmp_path / "full", cfg)
    out = tmp_path / "cut"
    write = Experiment._write

    def killed_writing_generation_1(self: Experiment, told: Any, *args: Any) -> None:
        if told.record.generation == 1:
            assert (out / "stimuli" / "block004.txt").exists()  # generation 2 is out
            raise Killed
        write(self, told, *args)

    with thread_rig(out / "stimuli", out / "responses") as sim:
        monkeypatch.setattr(Experiment, "_write", killed_writing_generation_1)
        with pytest.raises(Killed):
            Experiment.from_config(cfg, out).run()
        monkeypatch.setattr(Experiment, "_write", write)
        assert not (out / "journal" / "gen000001.npz").exists()
        resumed = Experiment.resume(out)
        assert resumed.generation == 1  # generation 1 is asked again: the rig answers it
        summary = resumed.run()
    log = read_log(sim.log_path)
    shown = [e["block"] for e in log if e["event"] == "shown"]
    assert sorted(shown) == list(range(8)) and not [e for e in log if e["event"] == "reshown"]
    full, cut = records.read(tmp_path / "full"), records.read(out)
    np.testing.assert_array_equal(full.codes, cut.codes)
    np.testing.assert_array_equal(full.scores, cut.scores)
    assert sorted(cut.extra["rig/presentations/stimulus"]) == sorted(
        n for _, n, _ in written_responses(log)
    )
    assert summary["generations"] == 4 and summary["presentations"] == 4 * 8
    # rig/ as an uninterrupted run's, n_stimuli of generation 1 included (its blocks were
    # answered before the kill, and generation 2 had begun); timings and arrival aside
    timings = ("written", "answered", "latency", "received")
    assert set(cut.extra) == set(full.extra)
    for key, value in full.extra.items():
        if key.rsplit("/", 1)[1] not in timings:
            np.testing.assert_array_equal(cut.extra[key], value, err_msg=key)


@pytest.mark.parametrize("earlier_xdream", [False, True])
def test_a_kill_after_a_block_is_written_before_its_journal_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier_xdream: bool
) -> None:
    """Killed after the next generation's first block is on disk (and the rig answers it
    while xdream is down) but before the journal records it: the resume takes those files as
    its own (not another session's, audit V-4), shows nothing twice and ends as an
    uninterrupted run. The journal recorded that the block was being written, and when: the
    block's record says it was written then. A journal of an earlier xdream, which had no
    such entry, resumes so too (its block's time written is the resume's)."""
    cfg = rig_config(generations=3, population=4, refs=0, block_size=2)
    run_with_rig(tmp_path / "full", cfg)
    out = tmp_path / "cut"
    save = RigScorer._save

    def killed_before_journaling_block_2(self: RigScorer, durable: bool = True) -> None:
        if not durable and self.state["blocks"].get("2", {}).get("written") is not None:
            assert (out / "stimuli" / "block002.txt").exists()
            raise Killed
        save(self, durable)

    with thread_rig(out / "stimuli") as sim:
        monkeypatch.setattr(RigScorer, "_save", killed_before_journaling_block_2)
        with pytest.raises(Killed):
            Experiment.from_config(cfg, out).run()
        monkeypatch.setattr(RigScorer, "_save", save)
        journal = json.loads((out / "rig" / "state.json").read_text())
        assert journal["blocks"].get("2", {}).get("written") is None
        assert journal["writing"]["block"] == 2
        if earlier_xdream:
            del journal["writing"]
            (out / "rig" / "state.json").write_text(json.dumps(journal))
        deadline = time.monotonic() + 10
        while not (out / "stimuli" / "block002.mat").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # answered while xdream is down
        resumed_at = time.time()
        assert Experiment.resume(out).run()["generations"] == 3
    shown = [e["block"] for e in read_log(sim.log_path) if e["event"] == "shown"]
    assert sorted(shown) == list(range(6))
    cut = records.read(out)
    np.testing.assert_array_equal(cut.scores, records.read(tmp_path / "full").scores)
    written = dict(zip(cut.extra["rig/blocks/block"], cut.extra["rig/blocks/written"]))
    if earlier_xdream:
        assert written[2] >= resumed_at
    else:
        assert written[2] == journal["writing"]["time"] < resumed_at


def test_a_stop_right_after_a_response_is_accepted_leaves_nothing_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped (Ctrl-C, or a kill: s12_stop_after_accept.py) after block 0's response was
    accepted and journaled but before block 1 was out, xdream had not yet backed the response
    up nor removed block 0's stimuli (tasks left for when the next block is out), and a resumed
    run never did: it does now, once. Nothing else was lost: the values were journaled."""
    out = tmp_path / "run"
    cfg = rig_config(generations=2, population=6, refs=0, block_size=4)
    ensure_written = RigScorer._ensure_written

    def stopped_before_block_1(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] == 1 and blk["written"] is None:
            raise KeyboardInterrupt
        ensure_written(self, blk, images)

    stim = out / "stimuli"
    with thread_rig(stim):
        monkeypatch.setattr(RigScorer, "_ensure_written", stopped_before_block_1)
        with pytest.raises(KeyboardInterrupt):
            Experiment.from_config(cfg, out).run()
    monkeypatch.setattr(RigScorer, "_ensure_written", ensure_written)
    journal = json.loads((out / "rig" / "state.json").read_text())
    answer = journal["blocks"]["0"]["file"]
    assert answer == "block000.mat" and not (out / "rig" / "responses" / answer).exists()
    assert (stim / "block000.txt").exists()
    backup_response = RigScorer._backup_response
    copies: list[str] = []

    def counted(self: RigScorer, path: Path, name: str) -> None:
        copies.append(name)
        backup_response(self, path, name)

    monkeypatch.setattr(RigScorer, "_backup_response", counted)
    with thread_rig(stim):
        Experiment.resume(out).run()
    assert (out / "rig" / "responses" / answer).read_bytes() == (stim / answer).read_bytes()
    assert not list(stim.glob("block000_*")) and not (stim / "block000.txt").exists()
    assert records.read(out).extra["rig/presentations/block"].tolist().count(0) == 4
    RigScorer(RigSection()).bind(out)  # bound again (a larger budget): nothing to do
    assert copies.count(answer) == 1


def test_leftover_block_files_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "stimuli").mkdir(parents=True)
    (out / "stimuli" / "block000.mat").write_bytes(b"")
    with pytest.raises(XDreamError, match="another session"):
        Experiment.from_config(rig_config(), out).run()


def test_xdream_run_refuses_leftover_block_files_before_it_writes_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused for an earlier session's block files, `xdream run` leaves no run folder (with
    --out or in xdream-runs/), so the same command works once the files are moved away. It
    had written config.yaml, record.h5, rig/, ... first, and the same command was then
    refused as a run into a folder that holds an experiment."""
    from xdream.cli import main

    monkeypatch.chdir(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "block000.json").write_text("{}")
    cfg = tmp_path / "l.toml"
    cfg.write_text(
        "[experiment]\ngenerations = 1\nn_references = 0\n"
        '[generator]\nname = "pixels"\nsize = 8\ncode_size = 4\n'
        '[optimizer]\nname = "genetic"\npopulation_size = 4\n'
        f'[rig]\nwrite_dir = "{shared}"\ntimeout = 0.05\npoll_interval = 0.002\n'
    )
    for out in (["--out", "run"], []):
        assert main(["run", str(cfg), *out]) == 2
        assert "already holds block files from another session" in capsys.readouterr().err
        assert not (tmp_path / "run").exists() and not (tmp_path / "xdream-runs").exists()
    (shared / "block000.json").unlink()  # moved away: the same command runs
    assert main(["run", str(cfg), "--out", "run"]) == 0
    assert records.read(tmp_path / "run").summary["generations"] == 1
    # a folder that holds an experiment is refused as such, its files left as they were
    (shared / "block000.json").write_text("{}")
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert main(["run", str(cfg), "--out", "run"]) == 2
    assert "'run' already holds an experiment" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


def test_a_paused_rig_run_exits_with_status_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A paused run (on_timeout = "pause") exits with 3, bad input with 2: a wrapper script
    tells them apart. Both exited with 2."""
    from xdream.cli import main

    cfg = tmp_path / "p.toml"
    cfg.write_text(PAUSING_RIG)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 3
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("xdream: error: no response to block 0 in ")
    assert err[-1].endswith(
        f"paused. Check the rig, then continue with `xdream resume {out}` "
        "(block 0 is awaited again)"
    )
    assert main(["resume", str(out)]) == 3  # still nobody answers
    assert main(["resume", str(tmp_path / "nope")]) == 2


def test_status_file_while_waiting(tmp_path: Path) -> None:
    out = tmp_path / "run"
    exp = Experiment.from_config(rig_config(generations=1, timeout=0.3), out)
    exp.run()  # nobody answers: every block times out
    status = json.loads((out / "rig" / "status.json").read_text())
    for key in (
        "state",
        "generation",
        "block",
        "waiting_since",
        "last_latency_s",
        "best_score",
        "timeouts",
        "blocks_written",
        "blocks_answered",
    ):
        assert key in status
    assert status["timeouts"] == 1 and status["blocks_answered"] == 0
    assert "no response to block 0 within 0.3 s" in (out / "rig" / "rig.log").read_text()


def test_the_status_file_is_rewritten_while_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While xdream waits for a response, rig/status.json is rewritten every STATUS_INTERVAL
    seconds (its "updated" advances, with the counts so far), and names the process that
    writes it: a rig or an operator watching it tells a live wait from a killed xdream. It was
    written only when the wait began."""
    monkeypatch.setattr(scorer_mod, "STATUS_INTERVAL", 0.05, raising=False)
    folder = tmp_path / "run"
    seen: list[dict[str, Any]] = []

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        (score_dir / "notes.txt").write_text("the operator's notes")  # a foreign file
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            seen.append(read_status(folder))
            time.sleep(0.01)
        write_response(score_dir, b, "json", names, np.ones((len(names), 1)))

    _, scores, _ = score_one_generation(folder, answer)
    assert np.isfinite(scores).all()
    while seen[0]["state"] == "ready":  # the manifest is out just before the wait begins
        seen.pop(0)
    assert {(s["state"], s["block"]) for s in seen} == {("waiting", 0)}
    assert len({s["updated"] for s in seen}) >= 4  # about 12 rewrites in 0.6 s
    assert seen[-1]["skipped_files"] == 1  # counted while it waits, not only at the end
    assert seen[-1]["process"] == {"pid": os.getpid(), "host": socket.gethostname()}


def test_plugin_example_reads_and_writes_its_own_formats(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "rig_plugin_npz", ROOT / "examples" / "rig_plugin_npz.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(["--out", str(tmp_path / "run"), "--generations", "4"])
    assert summary["generations"] == 4
    backups = tmp_path / "run" / "rig"
    assert sorted(p.name for p in (backups / "responses").iterdir())[0] == "block000.npz"
    assert all(p.suffix == ".jpg" for p in (backups / "stimuli").glob("block*/*"))
    rec = records.read(tmp_path / "run")
    assert np.isfinite(rec.scores).all()
    assert rec.best_per_generation[-1] > rec.best_per_generation[0]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_sim_slow_writes_duplicates_and_no_manifest(tmp_path: Path, fmt: str) -> None:
    """rig-sim's nastier behaviours: non-atomic writes, a second file per block, no manifest.
    (A CSV file's first half parses: it must not be taken for the response.)"""
    cfg = rig_config(generations=3, population=6, refs=0, manifest=False, response_format=fmt)
    _, sim = run_with_rig(
        tmp_path / "run",
        cfg,
        response_format=fmt,
        slow_write=True,
        duplicate=1.0,
        manifest=False,
        latency=(0.15, 0.2),  # so a duplicate (0.2 s after its original) comes during the run
    )
    rec = records.read(tmp_path / "run")
    assert np.isfinite(rec.scores).all()
    assert not list((tmp_path / "run" / "stimuli").glob("block*.txt"))  # no manifest written
    log = read_log(sim.log_path)
    assert any(e["event"] == "duplicate" for e in log)  # the last may come after the run
    assert "already answered" in (tmp_path / "run" / "rig" / "rig.log").read_text()
    by_name = {n: v for _, n, v in written_responses(log)}
    for name, response in zip(
        rec.extra["rig/presentations/stimulus"], rec.extra["rig/presentations/response"]
    ):
        np.testing.assert_array_equal(response, by_name[name])


def test_rig_sim_refuses_a_noise_param_that_is_no_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--noise-param scale=twenty ended in float()'s traceback."""
    from xdream.cli import main

    argv = ["rig-sim", str(tmp_path / "stimuli"), "--layer", "blocks.10", "--channel", "5"]
    assert main([*argv, "--noise", "poisson", "--noise-param", "scale=twenty"]) == 2
    err = capsys.readouterr().err
    assert "--noise-param 'scale=twenty': VALUE must be a number" in err
    assert "Traceback" not in err


def test_rig_sim_refuses_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--seed -1 ended in NumPy's traceback (exit 1); --late-delay -5 and --max-blocks -1 were
    accepted; --noise-param without --noise was ignored, recording without noise."""
    from xdream.cli import main

    argv = ["rig-sim", str(tmp_path / "stimuli"), "--idle-exit", "0.1"]
    for option, value, expected in (
        ("--seed", "-1", "argument --seed: expected an integer >= 0, got -1"),
        ("--late-delay", "-5", "argument --late-delay: expected a number >= 0, got -5"),
        ("--late-delay", "nan", "argument --late-delay: expected a number >= 0, got nan"),
        ("--max-blocks", "-1", "argument --max-blocks: expected an integer >= 1, got -1"),
        ("--idle-exit", "-1", "argument --idle-exit: expected a number >= 0, got -1"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([*argv, option, value])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    assert main([*argv, "--noise-param", "scale=0.5"]) == 2
    assert capsys.readouterr().err == (
        "xdream: error: --noise-param 'scale=0.5' needs a noise model: give --noise (gain or "
        "poisson) too, or leave --noise-param out\n"
    )
    with pytest.raises(XDreamError, match="--late-delay must be a number of seconds >= 0"):
        SimSettings(late_delay=-5.0)


def test_a_rig_that_answers_at_once_never_drops_a_generation_the_checkpoint_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rig journal keeps the generation done before the current one ("previous") and drops
    the one before that. The experiment writes a generation's records while the rig shows the
    next (its bookkeeping runs between looks at score_dir), so a rig that answered every block
    before the first look left them unwritten, and the journal dropped generations the
    checkpoint did not hold yet: a kill then lost their responses and showed them again
    (audit R). At every write of the rig journal, the generation it drops is checkpointed."""
    out = tmp_path / "run"
    config = rig_config(
        generations=6, population=4, refs=0, block_size=4, shuffle=False, response_format="json"
    )
    written = RigScorer._ensure_written

    def answered_at_once(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        written(self, blk, images)
        names = [s["name"] for s in blk["stimuli"]]
        if not (self.score_dir / f"block{blk['block']:03d}.json").exists():
            write_response(self.score_dir, blk["block"], "json", names, [[1.0]] * len(names))

    save = RigScorer._save
    dropped_after: list[tuple[int, int]] = []

    def checked(self: RigScorer, *args: Any, **kwargs: Any) -> None:
        previous = self.state.get("previous")
        if previous is not None:  # generation g kept: g - 1 is dropped, and must be on disk
            kept = previous["cur"]["generation"]
            ck = out / "checkpoint.pkl"
            held = records.load_checkpoint(ck)["generation"] if ck.exists() else 0
            dropped_after.append((kept, held))
        save(self, *args, **kwargs)

    monkeypatch.setattr(RigScorer, "_ensure_written", answered_at_once)
    monkeypatch.setattr(RigScorer, "_save", checked)
    Experiment.from_config(config, out).run()
    assert max(kept for kept, _ in dropped_after) == 4  # the run reached the late generations
    assert all(held >= kept for kept, held in dropped_after), dropped_after


def test_the_rig_object_a_run_was_built_with_restores_it(tmp_path: Path) -> None:
    """describe() named the folders resolved in the run folder once bound, so the same object,
    given again after a stop (as in a notebook), was refused as a changed target
    (write_dir: 'stimuli' -> '.../run/stimuli')."""
    import xdream.generators
    import xdream.optimizers

    run = tmp_path / "run"
    rig = RigScorer(RigSection(write_dir="stimuli", timeout=3.0, poll_interval=0.002))

    def build() -> Experiment:
        gen = xdream.generators.make("pixels", size=16, code_size=4)
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
        return Experiment(gen, rig, opt, run, generations=2, n_references=0)

    with thread_rig(run / "stimuli"):
        first = build()
        first.step()
        first.release_folder()
        again = build()
        again.restore()
        assert again.run()["generations"] == 2
    described = {"write_dir": "stimuli", "score_dir": "stimuli"}
    assert described.items() <= records.read(run).summary["target"].items()
    status = json.loads((run / "rig" / "status.json").read_text())
    assert status["write_dir"] == status["score_dir"] == str(run / "stimuli")


# --------------------------------------------------------------------------- audit M: mutants
def test_a_journal_of_an_earlier_xdream_goes_on_counting_nan_blocks(tmp_path: Path) -> None:
    """A rig journal written before nan_blocks was counted holds no such count: continued,
    a block answered only with NaN is warned about and counted from 0 (mutant M-R7: a
    KeyError 'nan_blocks' stopped the run). Nor does it hold the response files seen before
    their block was written (``early``, audit V-10): it starts with none."""
    folder = tmp_path / "earlier"

    def answer(b: int, names: list[str], where: Path) -> None:
        write_response(where, b, "json", names, [[np.nan if b else 5.0] for _ in names])

    score_one_generation(folder, answer, n=2, block_size=2)
    journal = folder / "rig" / "state.json"
    state = json.loads(journal.read_text())
    del state["counts"]["nan_blocks"]
    del state["early"]
    journal.write_text(json.dumps(state))
    _, scores, err = score_one_generation(folder, answer, n=2, generation=1, block_size=2)
    assert np.isnan(scores).all()
    assert "block001.json: all 2 responses hold NaN (or infinite) values" in err
    assert read_status(folder)["nan_blocks"] == 1


def test_leftovers_in_a_score_dir_of_its_own_are_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An earlier session's response in a score_dir apart from write_dir is refused by `xdream
    run` before it makes the run folder; a rig's half-written file (a temporary name) is no
    block file and refuses nothing (mutants M-R13, M-R14)."""
    from xdream.cli import main
    from xdream.rig.scorer import refuse_leftovers

    scores, stimuli = tmp_path / "scores", tmp_path / "stimuli"
    scores.mkdir()
    stimuli.mkdir()
    (scores / "block000.json").write_text("{}")
    cfg = tmp_path / "l.toml"
    cfg.write_text(
        "[experiment]\ngenerations = 1\nn_references = 0\n"
        '[generator]\nname = "pixels"\nsize = 8\ncode_size = 4\n'
        '[optimizer]\nname = "genetic"\npopulation_size = 4\n'
        f'[rig]\nwrite_dir = "{stimuli}"\nscore_dir = "{scores}"\n'
    )
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert f"{str(scores)!r} already holds block files" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    (scores / "block000.json").unlink()
    (stimuli / "block000_000_gen000_000001.png.part").write_bytes(b"")
    rig = rig_config(write_dir=str(stimuli), score_dir=str(scores)).rig
    refuse_leftovers(rig, tmp_path / "run")  # a temporary file: no refusal
    (stimuli / "block000_000_gen000_000001.png").write_bytes(b"")
    with pytest.raises(XDreamError, match="already holds block files from another session"):
        refuse_leftovers(rig, tmp_path / "run")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("stimulusID\tch0\na.png\t1\nb.png\t2\n", r"separated by commas: this file .* by '\\t'"),
        ("stimulusID,ch0\na.png;1\nb.png\nc.png,3\n", r"same number of channel values$"),
        ("stimulusID,ch0,ch1\na.png,1\nb.png,2,3\n", r"same number of channel values$"),
        ("a.png,x\n", r"channel values must be numbers \("),
        ("name,ch0\na.png,\nb.png,2\n", r"header line must start with stimulusID, got 'name'$"),
    ],
)
def test_a_malformed_csv_response_is_said_as_what_it_is(
    tmp_path: Path, text: str, said: str
) -> None:
    """Tabs are named as the separator, but only where every line without a comma has them;
    lines that differ in width with commas only get no separator advice; a single line with a
    word for a value is no header; an empty cell under another header is no error of its own
    (mutants M-F1, M-F2, M-F3, M-F5, M-F6)."""
    from xdream.rig.formats import read_csv

    path = tmp_path / "block000.csv"
    path.write_text(text)
    with pytest.raises(MalformedResponse, match=said):
        read_csv(path)


def test_an_absolute_rig_folder_that_is_not_there_is_refused_not_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An absolute write_dir / score_dir that does not exist (a rig share not mounted, a
    typo) is refused in one line by `xdream run` before the run folder is made, by a run
    started from Python and by `xdream resume` (a share unmounted between sessions); a
    relative one is still made inside the run folder (audit U2-3). Both were made, parents
    and all, and every block then timed out."""
    from xdream.cli import main

    share = tmp_path / "mnt" / "rig"
    cfg = tmp_path / "r.toml"
    base = PAUSING_RIG
    for key in ("write_dir", "score_dir"):
        cfg.write_text(base + f'{key} = "{share / key}"\n')
        assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (
            f"xdream: error: [rig] {key} {str(share / key)!r} does not exist: is the rig's "
            "share mounted? Create it first (xdream makes only a folder given relative to the "
            "experiment folder)"
        )
        assert not (tmp_path / "run").exists() and not (tmp_path / "mnt").exists()
    section = {"write_dir": str(share / "stimuli"), "score_dir": "responses", "timeout": 0.05}
    with pytest.raises(XDreamError, match="does not exist: is the rig's share mounted"):
        Experiment.from_config(rig_config(**section), tmp_path / "py").run()
    assert not (tmp_path / "mnt").exists()
    (share / "stimuli").mkdir(parents=True)  # mounted: runs, the relative score_dir made
    with pytest.raises(RigPaused):
        Experiment.from_config(rig_config(**section, on_timeout="pause"), tmp_path / "p").run()
    assert (tmp_path / "p" / "responses").is_dir()
    (share / "stimuli").rename(share / "off")  # unmounted between sessions: resume refuses it
    with pytest.raises(XDreamError, match="does not exist: is the rig's share mounted"):
        Experiment.resume(tmp_path / "p")
    assert not (share / "stimuli").exists()
    (share / "off").rename(share / "stimuli")
    with pytest.raises(RigPaused):  # mounted again: the paused block is awaited again
        Experiment.resume(tmp_path / "p").run()


def test_a_pause_after_a_skipped_response_names_it_and_the_rig_sim_answers_again(
    tmp_path: Path,
) -> None:
    """A pause whose block got a response that was skipped as malformed names that file and
    why, in the error and in the status file's reason, and says how to go on; a restarted
    rig-sim answers the block again once that file is moved aside, and the resumed run
    finishes (audit U2-2). The pause said only "no response", and the simulator, its log
    saying it had answered the block, never answered it again: rig and xdream waited on each
    other."""
    out = tmp_path / "run"
    cfg = rig_config(
        generations=1, population=4, refs=0, channels=3, settle=0.05, timeout=1.0,
        on_timeout="pause", response_format="csv",
    )  # fmt: skip
    exp = Experiment.from_config(cfg, out)
    stim = out / "stimuli"
    with thread_rig(stim, response_format="csv"), pytest.raises(RigPaused) as paused:
        exp.run()  # the simulator records one channel: [rig] channels = 3 skips its file
    why = "[rig] channels asks for channel 3 (0-based) but the file has 1 channel"
    said = str(paused.value)
    assert said.startswith(f"no response to block 0 in {str(stim)!r} within 1 s; paused: ")
    assert (
        f"the rig answered, but xdream skipped block000.csv (malformed: {why})" in said
    )  # not "1 channels"
    assert "move the file aside" in said and "have the rig write block 0's response again" in said
    assert f"if [rig] is wrong, fix it in {str(out / 'config.yaml')!r}" in said
    assert said.endswith(f"continue with `xdream resume {out}` (block 0 is awaited again)")
    # after the first generation resume refuses a [rig] edit: the pause does not advise one
    # (it did, and the advised edit was refused; audit V2-5)
    later = exp.scorer._pause_message({"block": 5, "generation": 1}, "block005.csv (why)")
    assert "fix it in" not in later
    assert "[rig] keeps its values once a generation is recorded" in later
    assert read_status(out)["state"] == "paused" and read_status(out)["reason"] == said
    (stim / "block000.csv").rename(tmp_path / "block000.csv")  # moved aside
    with thread_rig(stim, response_format="csv", gains=(0.5, 1.0, 1.0, 2.0)) as sim:
        summary = Experiment.resume(out).run()  # the fixed rig answers block 0 again
    assert summary["generations"] == 1
    assert np.isfinite(records.read(out).scores).all()
    events = [(e["event"], e.get("block")) for e in read_log(sim.log_path)]
    assert ("response gone", 0) in events and events.count(("written", 0)) == 2


def test_a_response_in_another_format_than_response_format_is_said_so(tmp_path: Path) -> None:
    """A block{NNN} response in another format than [rig] response_format is said to be one,
    with the setting that reads it, and a block it leaves without a response names it on
    timing out (audit U2-7): it was "not a block{NNN} response file", then "no response"."""
    folder = tmp_path / "run"

    def csv_rig(b: int, names: list[str], score_dir: Path) -> None:
        write_response(score_dir, b, "csv", names, np.ones((len(names), 1)))

    _, scores, err = score_one_generation(
        folder, csv_rig, response_format="mat", timeout=0.3, on_timeout="skip"
    )
    assert np.isnan(scores).all()
    why = (
        "it is a response in the 'csv' format (.csv), but [rig] response_format = 'mat': set "
        "response_format to 'auto' or 'csv'"
    )
    assert f"rig: warning: block000.csv in {str(folder / 'stimuli')!r} ignored: {why}\n" in err
    assert f"(a late file is still recorded); skipped block000.csv ({why})\n" in err
    assert "not a block{NNN} response file" not in err


def test_rig_sim_help_shows_its_unit_and_a_rig_report_claims_no_noise_free_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdream rig-sim --help` shows the default unit (network, layer, channel), and the
    report of a rig run does not call its best / best reference ratio noise-free, which a
    neuron's responses have no version of (audit U2-12). Neither was so."""
    from xdream.cli import main

    with pytest.raises(SystemExit):
        main(["rig-sim", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for default in ("efficientnet-lite0", "blocks.10", "5"):
        assert f"(default: {default})" in shown
    out = tmp_path / "run"
    run_with_rig(out, rig_config(generations=1, population=4, refs=2))
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "best / best reference<" in page and "(noise-free)" not in page


# --------------------------------------------------------------------------- audit V2-8
def _python_rig_run(run: Path, section: RigSection) -> Experiment:
    """A run built from Python objects (as in a script or notebook) whose target is a rig."""
    import xdream.generators
    import xdream.optimizers

    gen = xdream.generators.make("pixels", size=16, code_size=4)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=4)
    return Experiment(gen, RigScorer(section), opt, run, generations=1, n_references=0)


def test_a_python_run_refused_for_a_missing_share_leaves_no_folder_and_runs_once_mounted(
    tmp_path: Path,
) -> None:
    """A run started from Python (Experiment(...) with a RigScorer, or from a config) whose
    absolute write_dir / score_dir is not there (a share not mounted) is refused before it
    makes the run folder, so the same script, run again once the share is mounted, runs
    (audit V2-8). The refusal came from RigScorer.bind, after config.yaml, record.h5, ... were
    written, and the second try was refused as a folder that already holds an experiment."""
    share = tmp_path / "mnt" / "rig"
    for key in ("write_dir", "score_dir"):
        section = RigSection(
            **{key: str(share / key)}, timeout=3.0, poll_interval=0.002, shuffle=False
        )
        run = tmp_path / f"py-{key}"
        with pytest.raises(XDreamError, match="does not exist: is the rig's share mounted"):
            _python_rig_run(run, section).run()
        assert not run.exists() and not (tmp_path / "mnt").exists()
    run = tmp_path / "py-write_dir"
    section = RigSection(write_dir=str(share), timeout=3.0, poll_interval=0.002)
    share.mkdir(parents=True)  # mounted: the same run starts
    with thread_rig(share):
        assert _python_rig_run(run, section).run()["generations"] == 1
    cfg = rig_config(generations=1, population=4, refs=0, write_dir=str(tmp_path / "off"))
    with pytest.raises(XDreamError, match="does not exist: is the rig's share mounted"):
        Experiment.from_config(cfg, tmp_path / "cfg").run()
    assert not (tmp_path / "cfg").exists()


def test_a_python_run_refused_for_leftover_block_files_leaves_no_folder(tmp_path: Path) -> None:
    """An earlier session's block files in a rig folder refuse a run started from Python
    before it makes the run folder; once they are moved away the same run starts (audit V2-8:
    it had written config.yaml, record.h5, rig/ first, and was then refused as a folder that
    holds an experiment)."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "block000.json").write_text("{}")
    run = tmp_path / "run"
    section = RigSection(write_dir=str(share), timeout=3.0, poll_interval=0.002)
    with pytest.raises(XDreamError, match="already holds block files from another session"):
        _python_rig_run(run, section).run()
    assert not run.exists()
    cfg = rig_config(generations=1, population=4, refs=0, write_dir=str(share))
    with pytest.raises(XDreamError, match="already holds block files from another session"):
        Experiment.from_config(cfg, run).run()
    assert not run.exists()
    (share / "block000.json").unlink()  # moved away: the same run starts
    with thread_rig(share):
        assert _python_rig_run(run, section).run()["generations"] == 1
    # the run's own journal: its blocks are no other session's (a larger budget continues)
    (share / "block000.json").write_text("{}")
    again = _python_rig_run(run, section)
    with pytest.raises(XDreamError, match="already holds an experiment"):
        again.run()


def test_a_resume_refused_for_a_missing_share_writes_nothing(tmp_path: Path) -> None:
    """`xdream resume` of a rig run whose share is not mounted is refused before it writes
    anything in the run folder (its config.yaml was rewritten, its folders made again)."""
    share = tmp_path / "share"
    share.mkdir()
    run = tmp_path / "run"
    section = {"write_dir": str(share), "timeout": 0.05, "on_timeout": "pause"}
    with pytest.raises(RigPaused):
        Experiment.from_config(rig_config(1, 4, 0, **section), run).run()
    share.rename(tmp_path / "off")

    def written() -> dict[Path, int]:  # but the lock, which each session takes
        return {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != ".xdream.lock"}

    before = written()
    with pytest.raises(XDreamError, match="does not exist: is the rig's share mounted"):
        Experiment.resume(run)
    assert written() == before


@pytest.mark.parametrize("on_timeout", ["skip", "pause"])
def test_a_share_gone_while_a_block_is_awaited_stops_the_run_to_resume(
    tmp_path: Path, on_timeout: str
) -> None:
    """A share unmounted while xdream waits for a block stops the run with one line saying so
    (the status file says it too), rather than skipping the block as unanswered (the rig may
    have answered it) and then failing with a FileNotFoundError traceback as it wrote the next
    block (on_timeout = "skip"), or pausing as if nobody had answered (audit V-1). Once the
    share is mounted again, the run resumes at the same block, and nothing is made on the
    local disk meanwhile."""
    share = tmp_path / "share"
    (share / "stim").mkdir(parents=True)
    section = {"write_dir": str(share / "stim"), "timeout": 0.3, "on_timeout": on_timeout}
    run = tmp_path / "run"
    experiment = Experiment.from_config(rig_config(2, 4, 0, **section), run)

    def unmount() -> None:
        deadline = time.monotonic() + 20
        while not (share / "stim" / "block000.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        share.rename(tmp_path / "off")

    thread = threading.Thread(target=unmount)
    thread.start()
    try:
        with pytest.raises(XDreamError, match="is gone while block 0 was awaited") as err:
            experiment.run()
    finally:
        thread.join()
    assert "is the rig's share still mounted? Mount it again, then continue with" in str(err.value)
    assert not share.exists()  # not made on the local disk
    status = read_status(run)
    assert status["state"] == "stopped" and status["block"] == 0
    assert "is gone while block 0 was awaited" in status["reason"]
    journal = json.loads((run / "rig" / "state.json").read_text())
    assert not journal["blocks"]["0"]["timed_out"] and journal["counts"]["timeouts"] == 0
    experiment.release_folder()
    (tmp_path / "off").rename(share)  # mounted again: the same block is awaited
    with thread_rig(share / "stim"):
        assert Experiment.resume(run).run()["generations"] == 2
    status = read_status(run)
    assert status["state"] == "finished" and status["timeouts"] == 0


def test_a_resume_is_refused_while_another_session_s_block_files_are_in_the_share(
    tmp_path: Path,
) -> None:
    """Session A pauses at block 0; the lab moves A's files aside (as the refusal of a new run
    says) and runs session B on the same share, whose responses stay there. Resuming A is
    refused while B's files are there, naming them, before it writes anything: B's response to
    block 1 (a block A has not written) shows that another session used the share, and A
    took B's responses as its own, to its awaited block and to the blocks it wrote next
    (audit V-4). With B's files moved away and A's put back, A goes on."""
    import shutil

    share = tmp_path / "share"
    share.mkdir()
    section = {"write_dir": str(share), "timeout": 0.3, "on_timeout": "pause"}
    run_a = tmp_path / "A"
    with pytest.raises(RigPaused):
        Experiment.from_config(rig_config(2, 4, 0, **section), run_a).run()
    aside_a = tmp_path / "aside-A"
    shutil.move(share, aside_a)
    share.mkdir()
    b_config = dataclasses.replace(
        rig_config(2, 4, 0, **section),
        experiment=dataclasses.replace(rig_config(2, 4, 0).experiment, seed=7),
    )
    with thread_rig(share):
        Experiment.from_config(b_config, tmp_path / "B").run()
    assert (share / "block001.mat").exists()

    def written() -> dict[Path, int]:  # but the lock, which each session takes
        return {p: p.stat().st_mtime_ns for p in run_a.rglob("*") if p.name != ".xdream.lock"}

    before = written()
    with pytest.raises(
        XDreamError,
        match=r"holds files of a block this run has not written "
        r"\(block001\.mat, \.\.\.\): another session's on the same share, or a leftover, "
        "which this run cannot tell from its rig's answers",
    ):
        Experiment.resume(run_a)
    assert written() == before
    shutil.move(share, tmp_path / "aside-B")
    shutil.move(aside_a, share)
    with thread_rig(share):
        assert Experiment.resume(run_a).run()["generations"] == 2
    assert records.read(run_a).summary["generations"] == 2


def test_rig_sim_reads_the_status_of_the_run_that_run_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdream rig-sim WRITE_DIR --run RUN` reads RUN's rig/status.json: one that names
    another write folder is refused when the simulator starts (mutation audit M)."""
    from xdream.cli import main

    other = tmp_path / "other"
    (other / "rig").mkdir(parents=True)
    (other / "rig" / "status.json").write_text(json.dumps({"write_dir": str(tmp_path / "x")}))
    stim = tmp_path / "stimuli"
    stim.mkdir()
    assert main(["rig-sim", str(stim), "--run", str(other), "--idle-exit", "0.1"]) != 0
    assert "is the status of a run whose write_dir is" in capsys.readouterr().err


def test_a_resume_of_a_checkpointed_rig_run_refused_for_a_missing_share_writes_nothing(
    tmp_path: Path,
) -> None:
    """As above, for a run with a checkpoint: the share is checked before config.yaml is
    rewritten and record.h5 reconciled (mutation audit M: the test above covers only a run
    stopped before its first checkpoint). The run finished, so it is resumed with a larger
    budget: it has blocks to show (a finished one needs no share: the test below)."""
    share = tmp_path / "share"
    share.mkdir()
    run = tmp_path / "run"
    run_with_rig(run, rig_config(1, 4, 0, write_dir=str(share)))
    assert (run / "checkpoint.pkl").exists()
    share.rename(tmp_path / "off")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("generations: 1\n", "generations: 2\n"))
    assert "generations: 2\n" in config.read_text()
    written = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != ".xdream.lock"}
    with pytest.raises(XDreamError, match="does not exist: is the rig's share mounted"):
        Experiment.resume(run)
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.name != ".xdream.lock"} == written


def test_a_finished_rig_run_resumes_without_its_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdream resume` of a rig run that has finished has nothing to show the rig: with the
    share unmounted it was refused, asking to mount it (audit V-8). Now it does what it does
    with the share there (says the run's results, exit status 0), with its records and rig
    files as they were and no share folder made."""
    from xdream.cli import main

    share = tmp_path / "share"
    share.mkdir()
    run = tmp_path / "run"
    run_with_rig(run, rig_config(1, 4, 0, write_dir=str(share)))
    share.rename(tmp_path / "off")

    def contents() -> dict[Path, bytes]:  # but the lock, which each session takes
        return {
            p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".xdream.lock"
        }

    before = contents()
    capsys.readouterr()
    assert main(["resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert f"resuming {run} at generation 1" in out and f"results: {run}" in out
    assert contents() == before and not share.exists()
    assert read_status(run)["state"] == "finished"


def test_a_finished_rig_run_killed_before_it_said_so_resumed_without_its_share_says_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after its last checkpoint, before it finished, a rig run's rig/status.json says
    what it said while the last block was awaited. `xdream resume` without the share (which it
    does not need: nothing is left to show) finishes the run, and the status file now says so
    too (it was left as it was), from the journal; nothing is made on the share's path."""
    from xdream.cli import main

    share = tmp_path / "share"
    share.mkdir()
    run = tmp_path / "run"
    experiment = Experiment.from_config(rig_config(1, 4, 0, write_dir=str(share)), run)
    with thread_rig(share):
        for _ in experiment.generations():  # the budget spent and checkpointed, then killed
            pass
    experiment.release_folder()
    assert (run / "checkpoint.pkl").exists()
    before = read_status(run)
    assert before["state"] == "waiting"
    checked = RigScorer(RigSection(write_dir=str(share)), seed=0, stderr=io.StringIO())
    checked.check_folder(run)  # passes: the share is there
    checked.close()  # then refused otherwise, before bind: not said finished (audit N)
    assert read_status(run) == before
    share.rename(tmp_path / "off")
    assert main(["resume", str(run)]) == 0
    assert f"results: {run}" in capsys.readouterr().out
    status = read_status(run)
    assert status["state"] == "finished" and not share.exists()
    assert status["write_dir"] == str(share) and status["generation"] == before["generation"]
    assert status["blocks_answered"] == before["blocks_answered"] + 1 == 1
    assert status["process"]["pid"] == os.getpid() and status["updated"] > before["updated"]


# --------------------------------------------------------------------------- audit V2-6
def test_rig_sim_does_not_answer_again_responses_archived_after_the_run(tmp_path: Path) -> None:
    """With cleanup = false every block's stimuli stay; a user who archives (or deletes) the
    responses of a finished run gets no second, late response from a restarted rig-sim: its
    blocks are not the one xdream's rig/status.json waits for (audit V2-6). The simulator
    answered again every answered block whose response file was gone."""
    out = tmp_path / "run"
    cfg = rig_config(generations=2, population=4, refs=0, block_size=2, cleanup=False)
    run_with_rig(out, cfg)
    stim = out / "stimuli"
    answered = sorted(stim.glob("block*.mat"))
    assert len(answered) == 4 and read_status(out)["state"] == "finished"
    archive = tmp_path / "archive"
    archive.mkdir()
    for path in answered:
        path.rename(archive / path.name)
    with thread_rig(stim) as sim:
        time.sleep(0.5)
    assert not list(stim.glob("block*.mat"))
    events = [(e["event"], e.get("block")) for e in read_log(sim.log_path)]
    assert events.count(("written", 3)) == 1 and ("response gone", 3) not in events
    assert ("response gone, not awaited", 3) in events


def test_rig_sim_answers_again_only_the_newest_block(tmp_path: Path) -> None:
    """Without xdream's status file (an absolute write_dir, no --run), rig-sim answers again
    only the newest block whose response is gone: xdream writes a block only once the one
    before it was answered or timed out, so no older block is awaited; a --run whose status
    names another write folder is refused."""
    from PIL import Image

    from tests.helpers import RedScorer
    from xdream.rig.sim import RigSim

    stim = tmp_path / "share"
    stim.mkdir()
    for b in range(3):
        name = protocol.stimulus_name(b, 0, f"gen000_{b:06d}", ".png")
        Image.new("RGB", (8, 8), (200, 0, 0)).save(stim / name)
        (stim / f"block{b:03d}.txt").write_text(name + "\n")

    def serve() -> list[tuple[str, int]]:
        sim = RigSim(stim, None, RedScorer(), SimSettings(latency=(0.0, 0.0), poll_interval=0.002))
        sim.run(idle_exit=0.2)
        return [(e["event"], e.get("block")) for e in read_log(sim.log_path)]

    assert [b for e, b in serve() if e == "written"] == [0, 1, 2]
    for b in (0, 2):  # block 0 archived; block 2's moved aside (xdream skipped it)
        (stim / f"block{b:03d}.mat").unlink()
    events = serve()
    assert [b for e, b in events if e == "written"] == [0, 1, 2, 2]
    assert ("response gone", 2) in events and ("response gone, not awaited", 0) in events
    assert events.count(("response gone, not awaited", 0)) == 1  # said once, not every poll
    assert not (stim / "block000.mat").exists()
    other = tmp_path / "other"
    (other / "rig").mkdir(parents=True)
    (other / "rig" / "status.json").write_text(json.dumps({"write_dir": str(tmp_path / "x")}))
    with pytest.raises(XDreamError, match="is the status of a run whose write_dir is"):
        RigSim(stim, None, RedScorer(), run=other)


def test_a_restarted_rig_sim_answers_a_block_it_dropped_while_xdream_awaits_it(
    tmp_path: Path,
) -> None:
    """README Recovery step 3 rehearsed with `rig-sim --drop`: the simulator lost block 2,
    xdream paused at it; the operator restarts the simulator and resumes, and the paused block
    is answered (audit V-3). A restarted simulator skipped every block its log said it had
    dropped, so the resumed run paused again and again. Blocks xdream no longer awaits stay
    unanswered, and one simulator session does not answer a block it dropped itself."""
    from PIL import Image

    from tests.helpers import RedScorer
    from xdream.rig.sim import RigSim

    run = tmp_path / "run"
    stim = run / "stimuli"
    stim.mkdir(parents=True)
    for b in range(3):
        name = protocol.stimulus_name(b, 0, f"gen000_{b:06d}", ".png")
        Image.new("RGB", (8, 8), (200, 0, 0)).save(stim / name)
        (stim / f"block{b:03d}.txt").write_text(name + "\n")
    (run / "rig").mkdir()
    status = {"write_dir": str(stim), "state": "paused", "block": 2}
    (run / "rig" / "status.json").write_text(json.dumps(status))

    def serve(drop: float) -> list[tuple[str, int]]:
        settings = SimSettings(latency=(0.0, 0.0), poll_interval=0.002, drop=drop)
        sim = RigSim(stim, None, RedScorer(), settings, run=run)
        sim.run(idle_exit=0.2)
        return [(e["event"], e.get("block")) for e in read_log(sim.log_path)]

    events = serve(1.0)  # the rig loses every block, paused block 2 included
    assert [b for e, b in events if e == "dropped"] == [0, 1, 2]
    assert not [b for e, b in events if e == "written"]
    events = serve(0.0)  # restarted, fixed: only the awaited block is shown again
    assert [b for e, b in events if e == "written"] == [2]
    assert ("dropped before, awaited", 2) in events
    assert sorted(p.name for p in stim.glob("block*.mat")) == ["block002.mat"]


def test_rig_sim_run_finds_a_run_started_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """xdream started in one folder (`xdream run rig.toml --out runs/s1`, relative [rig]
    folders) and `xdream rig-sim s1/stimuli --run s1` started in runs/: the status file names
    its folders absolute, so the simulator takes the run (audit V-2). It named them relative
    to xdream's folder ('runs/s1/stimuli'), and rig-sim --run refused the right run as one
    "whose write_dir is 'runs/s1/stimuli'"; a status file of such an earlier xdream is taken
    where its relative folder ends the write folder's path."""
    from tests.helpers import RedScorer
    from xdream.rig.sim import RigSim

    monkeypatch.chdir(tmp_path)
    run_with_rig(Path("runs/s1"), rig_config(generations=1, population=4, refs=0))
    status_path = tmp_path / "runs" / "s1" / "rig" / "status.json"
    status = json.loads(status_path.read_text())
    assert status["write_dir"] == status["score_dir"] == str(tmp_path / "runs/s1/stimuli")
    monkeypatch.chdir(tmp_path / "runs")
    for write_dir, run in (("s1/stimuli", "s1"), (tmp_path / "runs/s1/stimuli", "s1")):
        sim = RigSim(write_dir, None, RedScorer(), run=run)
        assert sim.awaited(0, 0) is False  # the finished run's status is read: not awaited
    status["write_dir"] = "runs/s1/stimuli"  # as an earlier xdream, run in tmp_path, wrote it
    status_path.write_text(json.dumps(status))
    assert RigSim("s1/stimuli", None, RedScorer(), run="s1").awaited(0, 0) is False
    assert RigSim("s1/stimuli", None, RedScorer()).awaited(0, 0) is False  # the folder above
    status["write_dir"] = "runs/s2/stimuli"  # another run's
    status_path.write_text(json.dumps(status))
    with pytest.raises(XDreamError, match="is the status of a run whose write_dir is"):
        RigSim("s1/stimuli", None, RedScorer(), run="s1")


def test_rig_sim_awaits_the_block_that_xdreams_status_names(tmp_path: Path) -> None:
    """What rig-sim reads of xdream's rig/status.json (mutation audit M): the newest block is
    awaited while the status says xdream waits for it, paused or stopped at it; not once the
    run finished, nor while it waits for another block. The status in the folder above the
    write folder counts only where it names that folder (a path through '..' does); a --run
    whose status later names another folder is passed over, not raised, while serving."""
    from tests.helpers import RedScorer
    from xdream.rig.sim import RigSim

    run = tmp_path / "run"
    stim = run / "stimuli"
    stim.mkdir(parents=True)
    (run / "rig").mkdir()
    status = run / "rig" / "status.json"

    def say(block: int, state: str, write_dir: Path = stim) -> None:
        status.write_text(json.dumps({"write_dir": str(write_dir), "block": block, "state": state}))

    sim = RigSim(stim, None, RedScorer())
    with_run = RigSim(stim, None, RedScorer(), run=run)
    for state in ("waiting", "paused", "stopped"):
        say(3, state)
        assert sim.awaited(3, 3) and with_run.awaited(3, 3), state
        assert not sim.awaited(2, 3)  # only the newest block
    say(3, "finished")
    assert not sim.awaited(3, 3) and not with_run.awaited(3, 3)
    say(2, "waiting")
    assert not sim.awaited(3, 3)
    say(3, "finished", run / "rig" / ".." / "stimuli")  # the same folder
    assert not sim.awaited(3, 3)
    say(3, "finished", tmp_path / "elsewhere")  # another run's status: xdream says nothing
    assert sim.awaited(3, 3) and with_run.awaited(3, 3)


# --------------------------------------------------------------------------- audit U2-12
def test_a_target_next_to_rig_is_refused_and_a_rig_run_records_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A [target] written next to [rig] is refused in one line, by `xdream run` before it
    makes anything (it has no effect: the rig is the target); a rig run's config.yaml, record
    and report hold no [target] (audit U2-12). The section was taken silently, and every rig
    run recorded a filled-in [target] (channel 0) that it never used."""
    from xdream.cli import main

    said = "[target] has no effect next to [rig]: the recording rig is the target"
    for target in ({"channel": 3}, {}):
        data = {**rig_config().to_dict(), "target": target}
        with pytest.raises(ConfigError, match=re.escape(said)):
            config_mod.from_dict(data)
    cfg = tmp_path / "r.toml"
    cfg.write_text(
        "[experiment]\ngenerations = 1\nn_references = 0\n"
        '[generator]\nname = "pixels"\nsize = 8\ncode_size = 4\n'
        '[target]\nlayer = "blocks.4"\n[rig]\ntimeout = 0.05\n'
    )
    assert main(["run", str(cfg), "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert said in err and not (tmp_path / "no").exists()
    assert "an earlier xdream wrote holds one" in err  # a copied old config.yaml (audit V-6)
    out = tmp_path / "run"
    run_with_rig(out, rig_config(generations=1, population=4, refs=0))
    assert "target" not in config_mod.read(out / "config.yaml")
    assert "target" not in records.read(out).config
    assert main(["report", str(out)]) == 0
    assert "target:" not in (out / "report.html").read_text()
    assert config_mod.load(out / "config.yaml") == rig_config(generations=1, population=4, refs=0)


def test_a_rig_run_recorded_with_a_target_resumes_without_complaint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rig run started by an earlier xdream recorded the unused [target] in its config.yaml,
    checkpoint and record.h5 (here one the user had written next to [rig], channel 3):
    `xdream resume` takes it, names no change of config, and finishes the run, its rewritten
    config.yaml without [target] (audit U2-12: the section is no longer recorded for a rig)."""
    import pickle

    from xdream.cli import main

    out = tmp_path / "run"
    cfg = rig_config(generations=2, population=4, refs=0)
    stim = out / "stimuli"
    exp = Experiment.from_config(cfg, out)
    with thread_rig(stim):
        exp.step()
    exp.release_folder()
    old = {**config_mod.TargetSection().__dict__, "channel": 3}
    saved = config_mod.read(out / "config.yaml")
    recorded = {"experiment": saved["experiment"], "target": old, **saved}
    (out / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    state = pickle.loads((out / "checkpoint.pkl").read_bytes())
    state["config"] = {**state["config"], "target": old}
    (out / "checkpoint.pkl").write_bytes(pickle.dumps(state))
    with h5py.File(out / "record.h5", "r+") as f:
        f.attrs["config"] = json.dumps({**json.loads(f.attrs["config"]), "target": old})
    (out / ".record.h5.ok").unlink(missing_ok=True)  # record.h5 changed since its mark
    assert main(["report", str(out)]) == 0  # its report shows no unused [target] (audit V-5)
    page = (out / "report.html").read_text()
    configuration = page.split("<h2>Configuration</h2>")[1].split("</pre>")[0]
    assert "rig:" in configuration and "target:" not in configuration
    assert "holds a [target] that an earlier xdream recorded beside [rig]" in page
    capsys.readouterr()
    with thread_rig(stim):
        assert main(["resume", str(out)]) == 0
    said = capsys.readouterr().out
    assert "resuming" in said and "config.yaml changed" not in said
    assert records.read(out).summary["generations"] == 2
    assert "target" not in config_mod.read(out / "config.yaml")


def test_a_target_recorded_beside_rig_is_no_change_of_config() -> None:
    """config_changes passes over a [target] that one side holds beside [rig] on both (what an
    earlier xdream recorded for a rig run, which resume, a sweep and a tune study compare),
    and still names a [target] that comes or goes where [rig] does not stay."""
    from xdream.experiment import config_changes

    target = {"network": "efficientnet-lite0", "channel": 0}
    rig = {"write_dir": "stimuli", "timeout": 1.0}
    assert config_changes({"rig": rig, "target": target}, {"rig": rig}) == ([], [])
    assert config_changes({"rig": rig}, {"rig": rig, "target": target}) == ([], [])
    defining, _ = config_changes({"rig": rig, "target": target}, {"target": target})
    assert defining == [f"rig: {rig!r} -> None"]
    defining, _ = config_changes({"target": target}, {"rig": rig})
    assert f"target: {target!r} -> None" in defining


def test_rig_sim_notes_a_run_folder_that_is_not_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rig-sim --run` with a mistyped folder waited in silence for a status file that would
    never come (audit V-9); it says so, and an existing run folder gets no such note."""
    from xdream.cli import main

    argv = ["rig-sim", str(tmp_path / "stimuli"), "--idle-exit", "0.1", "--max-blocks", "1"]
    assert main([*argv, "--run", str(tmp_path / "sesion1")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"--run '{tmp_path / 'sesion1'}' is not a folder (yet)" in out
    (tmp_path / "session1").mkdir()
    assert main([*argv, "--run", str(tmp_path / "session1")]) == 0
    assert "is not a folder" not in capsys.readouterr().out


# --------------------------------------------------------------------------- early responses
def _block_1_names(n: int = 4, generation: int = 0) -> list[str]:
    """Block 1's stimulus names in score_one_generation with block_size = 2 (unshuffled)."""
    return [f"block001_{m:03d}_gen{generation:03d}_{2 + m:06d}.png" for m in range(n - 2)]


def test_a_response_there_before_its_block_was_written_is_never_its_answer(
    tmp_path: Path,
) -> None:
    """A response file to block 1 that is in score_dir while xdream awaits block 0 (a
    leftover, another session on the share) was skipped as 'xdream did not write that
    block', then taken as block 1's answer once xdream wrote block 1 (audit V-10), and block
    1's stimuli were not even written (a response was 'waiting'). Now block 1 is written and
    awaits a response written after it; the early file is counted, backed up and logged."""
    folder = tmp_path / "run"
    early_mtime: list[int] = []

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b == 0:  # another session's response to block 1, there before block 1 is written
            write_response(score_dir, 1, "json", _block_1_names(), [[99.0], [99.0]])
            early_mtime.append((score_dir / "block001.json").stat().st_mtime_ns)
            time.sleep(0.2)  # seen while block 0 is awaited
        if b == 1:
            time.sleep(0.2)  # and looked at again once block 1 is written
        write_response(score_dir, b, "json", names, np.full((len(names), 1), float(b)))

    _, scores, err = score_one_generation(folder, answer, block_size=2, response_format="json")
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0])
    assert (folder / "rig" / "stimuli" / "block001").is_dir()  # block 1 was shown
    assert re.search(
        r"block001\.json in .* skipped: there before block 1 was written \(not its answer\); "
        "waiting for the rig's response to it",
        err,
    )
    status = read_status(folder)
    assert status["skipped_files"] == 1 and status["duplicates"] == 0
    backups = sorted(p.name for p in (folder / "rig" / "responses").iterdir())
    assert backups == [
        "block000.json",
        "block001.json",
        f"block001.json.early-{early_mtime[0]}",
    ]


def test_an_early_response_is_named_by_the_pause_and_skipped_again_on_resume(
    tmp_path: Path,
) -> None:
    """An early response that stays is what a pause names for the block, and a resumed run
    (the journal remembers it) skips it again: the rig's new file is what answers."""
    folder = tmp_path / "run"
    rig = {"block_size": 2, "response_format": "json", "timeout": 0.5, "on_timeout": "pause"}

    def early_then_silent(b: int, names: list[str], score_dir: Path) -> None:
        if b == 0:
            write_response(score_dir, 1, "json", _block_1_names(), [[99.0], [99.0]])
            time.sleep(0.2)
            write_response(score_dir, 0, "json", names, np.zeros((len(names), 1)))

    with pytest.raises(RigPaused) as paused:
        score_one_generation(folder, early_then_silent, **rig)
    assert (
        "xdream skipped block001.json (there before block 1 was written (not its answer))"
        in str(paused.value)
    )
    assert "another session's on the same share" in str(paused.value)
    assert "Move that file aside" in str(paused.value) and "rig answered" not in str(paused.value)
    journal = json.loads((folder / "rig" / "state.json").read_text())
    assert journal["blocks"]["1"]["written"] is not None
    assert len(journal["early"]["block001.json"]) == 1  # seen at every look, journaled once

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b == 1:
            time.sleep(0.3)  # the early file is looked at (and skipped) first
            write_response(score_dir, 1, "json", names, np.ones((len(names), 1)))

    _, scores, err = score_one_generation(folder, answer, **{**rig, "timeout": 5.0})
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0])
    assert re.search(r"block001\.json in .* skipped: there before block 1 was written", err)
    assert read_status(folder)["skipped_files"] == 1  # counted once, across the resume


def test_an_early_response_is_remembered_across_a_kill_before_its_block_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after block 0 is answered, before block 1 is written, with an early response
    to block 1 seen: the resumed run writes block 1 (the journal knows that file is not its
    answer, unlike a response written while xdream was down after block 1 went out, which is
    the block's answer: test_a_kill_after_a_block_is_written_before_its_journal_resumes)."""
    folder = tmp_path / "run"
    rig = {"block_size": 2, "response_format": "json"}
    ensure_written = RigScorer._ensure_written

    def killed_before_block_1(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] == 1 and blk["written"] is None:
            raise Killed
        ensure_written(self, blk, images)

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b == 0:
            write_response(score_dir, 1, "json", _block_1_names(), [[99.0], [99.0]])
            time.sleep(0.2)
        write_response(score_dir, b, "json", names, np.full((len(names), 1), float(b)))

    monkeypatch.setattr(RigScorer, "_ensure_written", killed_before_block_1)
    with pytest.raises(Killed):
        score_one_generation(folder, answer, **rig)
    monkeypatch.setattr(RigScorer, "_ensure_written", ensure_written)
    journal = json.loads((folder / "rig" / "state.json").read_text())
    assert journal["blocks"]["1"]["written"] is None and "block001.json" in journal["early"]
    _, scores, _ = score_one_generation(folder, answer, **rig)
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0])
    assert (folder / "rig" / "stimuli" / "block001").is_dir()


def test_a_response_that_comes_just_before_its_block_is_written_is_not_its_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response file that comes after xdream's last look at score_dir but before it writes
    the block is there before the block was written, too: xdream lists it as it writes."""
    folder = tmp_path / "run"
    ensure_written = RigScorer._ensure_written

    def early_file_first(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] == 1 and blk["written"] is None:
            write_response(self.score_dir, 1, "json", _block_1_names(), [[99.0], [99.0]])
        ensure_written(self, blk, images)

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b == 1:
            time.sleep(0.2)
        write_response(score_dir, b, "json", names, np.full((len(names), 1), float(b)))

    monkeypatch.setattr(RigScorer, "_ensure_written", early_file_first)
    _, scores, err = score_one_generation(folder, answer, block_size=2, response_format="json")
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0])
    assert re.search(r"block001\.json in .* skipped: there before block 1 was written", err)


# ------------------------------------------------------- a kill before a block is written
def _gen_1_names(n: int = 2) -> list[str]:
    """Block 1's stimulus names in score_one_generation(generation=1, n=2) after generation 0
    (n=2) in one block each (unshuffled)."""
    return [f"block001_{m:03d}_gen001_{m:06d}.png" for m in range(n)]


def _answer_with_block_number(b: int, names: list[str], score_dir: Path) -> None:
    write_response(score_dir, b, "json", names, np.full((len(names), 1), float(b)))


def test_a_response_that_comes_while_xdream_is_down_before_it_writes_a_block_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after generation 0's block 0 is answered and journaled, as xdream was about to
    write block 1: a response to block 1 that another session wrote while xdream was down was
    taken by the resumed run as block 1's answer (it might have written block 1 just before
    the kill), and block 1 was never shown. The journal now records a block as being written
    (fsynced) before its first file, so the resume knows block 1 was not and refuses that file
    as another session's; moved away, block 1 is shown and the rig's answer to it is taken."""
    folder = tmp_path / "run"
    rig = {"response_format": "json"}
    score_one_generation(folder, _answer_with_block_number, n=2, **rig)
    ensure_written = RigScorer._ensure_written

    def killed_before_block_1(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] == 1 and blk["written"] is None:
            raise Killed
        ensure_written(self, blk, images)

    monkeypatch.setattr(RigScorer, "_ensure_written", killed_before_block_1)
    with pytest.raises(Killed):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=1, **rig)
    monkeypatch.setattr(RigScorer, "_ensure_written", ensure_written)
    journal = json.loads((folder / "rig" / "state.json").read_text())
    assert journal["blocks"]["0"]["answered"] is not None
    assert journal["blocks"]["1"]["written"] is None and journal["writing"]["block"] == 0
    score_dir = folder / "stimuli"
    write_response(score_dir, 1, "json", _gen_1_names(), [[99.0], [99.0]])  # xdream is down
    with pytest.raises(
        XDreamError, match=r"holds files of a block this run has not written \(block001\.json"
    ):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=1, **rig)
    (score_dir / "block001.json").rename(tmp_path / "block001.json")
    _, scores, _ = score_one_generation(folder, _answer_with_block_number, n=2, generation=1, **rig)
    np.testing.assert_array_equal(scores, [1.0, 1.0])  # the rig's answer, after the resume
    assert (folder / "rig" / "stimuli" / "block001").is_dir()  # block 1 was shown


def test_a_response_there_before_a_kill_while_its_block_was_written_is_not_its_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while block 1's stimuli were being written (after the journal recorded that it
    was being written, before it recorded it written), with a response to block 1 there
    before (another session's): the resumed run took that file as block 1's answer, as one
    the rig wrote while xdream was down. The journal now records, with the block being
    written (fsynced before its first file), the response files to it already there, so the
    resume writes block 1 again and takes the rig's answer written after it."""
    folder = tmp_path / "run"
    rig = {"response_format": "json"}
    score_one_generation(folder, _answer_with_block_number, n=2, **rig)
    ensure_written, encode = RigScorer._ensure_written, RigScorer._encode

    def foreign_file_first(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] == 1 and blk["written"] is None:
            write_response(self.score_dir, 1, "json", _gen_1_names(), [[99.0], [99.0]])
        ensure_written(self, blk, images)

    def killed_writing_block_1(self: RigScorer, blk: dict[str, Any], images: Any) -> Any:
        if blk["block"] == 1:
            raise Killed  # before its first file: its encoding
        return encode(self, blk, images)

    monkeypatch.setattr(RigScorer, "_ensure_written", foreign_file_first)
    monkeypatch.setattr(RigScorer, "_encode", killed_writing_block_1)
    with pytest.raises(Killed):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=1, **rig)
    monkeypatch.setattr(RigScorer, "_ensure_written", ensure_written)
    monkeypatch.setattr(RigScorer, "_encode", encode)
    journal = json.loads((folder / "rig" / "state.json").read_text())
    assert journal["blocks"]["1"]["written"] is None and journal["writing"]["block"] == 1
    assert "block001.json" in journal["early"]

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        time.sleep(0.2)  # the file there before is looked at (and skipped) first
        _answer_with_block_number(b, names, score_dir)

    _, scores, err = score_one_generation(folder, answer, n=2, generation=1, **rig)
    np.testing.assert_array_equal(scores, [1.0, 1.0])
    assert re.search(r"block001\.json in .* skipped: there before block 1 was written", err)
    assert (folder / "rig" / "stimuli" / "block001").is_dir()


def test_an_early_response_seen_as_its_block_is_written_is_journaled_before_the_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response file that comes just before xdream writes its block is noted as there
    before the block; killed after the block's files are out but before the journal records
    the block written, the resumed run (which takes a response to that block as answered
    while it was down) must still know that file is not the block's answer (mutation audit
    M, a bug at 01b7abf: the note was journaled only with the block written, so the kill lost
    it and the resumed run took the file's 99s for block 1's scores; the journal write of the
    block being written, before its first file, now carries it)."""
    folder = tmp_path / "run"
    ensure_written = RigScorer._ensure_written
    save = RigScorer._save

    def early_file_first(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] == 1 and blk["written"] is None:
            write_response(self.score_dir, 1, "json", _block_1_names(), [[99.0], [99.0]])
        ensure_written(self, blk, images)

    def killed_before_journaling_block_1(self: RigScorer, durable: bool = True) -> None:
        if not durable and self.state["blocks"].get("1", {}).get("written") is not None:
            raise Killed
        save(self, durable)

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b == 0:
            write_response(score_dir, b, "json", names, np.zeros((len(names), 1)))

    monkeypatch.setattr(RigScorer, "_ensure_written", early_file_first)
    monkeypatch.setattr(RigScorer, "_save", killed_before_journaling_block_1)
    with pytest.raises(Killed):
        score_one_generation(folder, answer, block_size=2, response_format="json")
    monkeypatch.setattr(RigScorer, "_ensure_written", ensure_written)
    monkeypatch.setattr(RigScorer, "_save", save)
    journal = json.loads((folder / "rig" / "state.json").read_text())
    assert journal["blocks"]["1"]["written"] is None
    assert "block001.json" in journal["early"]

    def answer_block_1(b: int, names: list[str], score_dir: Path) -> None:
        if b == 1:
            time.sleep(0.2)
            write_response(score_dir, 1, "json", names, np.ones((len(names), 1)))

    _, scores, _ = score_one_generation(
        folder, answer_block_1, block_size=2, response_format="json"
    )
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0])
    # block 1 was written again, and backed up: its manifest is no response (mutation audit M)
    assert len(list((folder / "rig" / "stimuli" / "block001").iterdir())) == 2


def test_a_response_that_came_while_xdream_was_down_is_not_taken_for_an_early_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while block 1 is awaited; the rig answers it and removes its stimuli while
    xdream is down. The resumed run would write block 1 again (its files are gone), but the
    response there is the rig's answer, not a file there before the block was written."""
    folder = tmp_path / "run"
    rig = {"block_size": 2, "response_format": "json", "timeout": 1.0}
    wait = RigScorer._await

    def killed_awaiting_block_1(self: RigScorer, blk: dict[str, Any], *args: Any) -> None:
        if blk["block"] == 1:
            raise Killed
        wait(self, blk, *args)

    def answer_block_0(b: int, names: list[str], score_dir: Path) -> None:
        if b == 0:
            write_response(score_dir, b, "json", names, np.zeros((len(names), 1)))

    monkeypatch.setattr(RigScorer, "_await", killed_awaiting_block_1)
    with pytest.raises(Killed):
        score_one_generation(folder, answer_block_0, **rig)
    monkeypatch.setattr(RigScorer, "_await", wait)
    stimuli = folder / "stimuli"
    names = (stimuli / "block001.txt").read_text().split()
    write_response(stimuli, 1, "json", names, np.ones((len(names), 1)))  # while xdream is down
    for name in names:
        (stimuli / name).unlink()
    _, scores, err = score_one_generation(folder, lambda *_: None, **rig)
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0])
    assert "there before" not in err and not any(p.exists() for p in map(stimuli.joinpath, names))


def test_an_early_response_the_rig_overwrites_at_once_is_backed_up_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early file found as its block is written is backed up and counted then, not at
    xdream's next look: a rig that answers at once, into the same file name, would leave no
    copy of it (another session's response, say) nor a count of it."""
    folder = tmp_path / "run"
    ensure_written = RigScorer._ensure_written
    early: list[int] = []

    def early_file_then_answered_at_once(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        first = blk["block"] == 1 and blk["written"] is None
        if first:
            write_response(self.score_dir, 1, "json", _block_1_names(), [[99.0], [99.0]])
            early.append((self.score_dir / "block001.json").stat().st_mtime_ns)
        ensure_written(self, blk, images)
        if first:  # the rig's answer replaces it before xdream looks again
            names = [s["name"] for s in blk["stimuli"]]
            write_response(self.score_dir, 1, "json", names, np.ones((len(names), 1)))

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b == 0:
            write_response(score_dir, b, "json", names, np.zeros((len(names), 1)))

    monkeypatch.setattr(RigScorer, "_ensure_written", early_file_then_answered_at_once)
    _, scores, _ = score_one_generation(folder, answer, block_size=2, response_format="json")
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0])
    assert (folder / "rig" / "responses" / f"block001.json.early-{early[0]}").exists()
    assert read_status(folder)["skipped_files"] == 1


def test_a_response_to_block_1000_is_none_to_block_100(tmp_path: Path) -> None:
    """block1000.json starts with block100's stem but answers another block (mutation audit
    M: a look for block 100's response without the stem's dot took it for one)."""
    scorer = RigScorer(RigSection(), seed=0)
    scorer.bind(tmp_path)
    write_response(scorer.score_dir, 1000, "json", ["a.png"], [[1.0]])
    write_response(scorer.score_dir, 100, "json", ["a.png"], [[1.0]])
    assert [name for name, _ in scorer._responses_to(100)] == ["block100.json"]
    scorer.close()


@pytest.mark.parametrize("backup", [True, False])
def test_a_pause_says_the_rig_has_not_answered_only_when_every_skipped_file_was_early(
    tmp_path: Path, backup: bool
) -> None:
    """The pause's advice for files there before the block (move it aside, have the rig
    answer) only where each skipped file still there is such a file; with a response of the
    rig's skipped too, the rig did answer (mutation audit M: any, not all; files moved away
    counted). The copy is named only where there is one (backup)."""
    scorer = RigScorer(RigSection(backup=backup), seed=0)
    scorer.bind(tmp_path)
    blk = {"block": 1, "generation": 1}
    early, other = scorer.score_dir / "block001.json", scorer.score_dir / "block001.mat"
    scorer._rejected = {
        1: {early.name: "there before block 1 was written (not its answer)", other.name: "..."}
    }
    early.write_text("{}")

    def says() -> str:
        return scorer._pause_message(blk, scorer._skipped(blk))

    assert "the rig has not answered block 1 since" in says()  # block001.mat moved away
    assert ("(a copy is in" in says()) is backup
    other.write_text("")
    assert "the rig answered, but xdream skipped" in says()
    early.unlink()
    assert "the rig answered, but xdream skipped block001.mat (...)" in says()
    scorer.close()


def _as_earlier_journal(folder: Path, earlier: bool) -> None:
    """Where ``earlier``, drop ``writing`` from the run's rig journal, as an earlier xdream's
    journal lacks it: the resume then tells the block it may have written from the plan."""
    if earlier:
        journal = folder / "rig" / "state.json"
        state = json.loads(journal.read_text())
        del state["writing"]
        journal.write_text(json.dumps(state))


@pytest.mark.parametrize("earlier", [False, True])
def test_a_kill_after_a_timed_out_block_and_the_next_one_written_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier: bool
) -> None:
    """Block 0 timed out (skipped), block 1 written, xdream killed before the journal said
    so: block 0 is no longer awaited, so block 1's files are this run's (mutation audit M: a
    timed-out block taken for an awaited one refused the resume as another session's; for a
    journal of an earlier xdream, without ``writing``)."""
    folder = tmp_path / "run"
    rig = {"block_size": 2, "response_format": "json", "timeout": 0.3}
    save = RigScorer._save

    def killed_before_journaling_block_1(self: RigScorer, durable: bool = True) -> None:
        if not durable and self.state["blocks"].get("1", {}).get("written") is not None:
            raise Killed
        save(self, durable)

    monkeypatch.setattr(RigScorer, "_save", killed_before_journaling_block_1)
    with pytest.raises(Killed):
        score_one_generation(folder, lambda *_: None, **rig)  # block 0 is never answered
    monkeypatch.setattr(RigScorer, "_save", save)
    assert json.loads((folder / "rig" / "state.json").read_text())["blocks"]["0"]["timed_out"]
    _as_earlier_journal(folder, earlier)

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        if b == 1:
            write_response(score_dir, b, "json", names, np.ones((len(names), 1)))

    _, scores, _ = score_one_generation(folder, answer, **{**rig, "timeout": 3.0})
    np.testing.assert_array_equal(scores, [np.nan, np.nan, 1.0, 1.0])


@pytest.mark.parametrize("earlier", [False, True])
def test_a_kill_after_the_middle_block_of_a_plan_is_written_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier: bool
) -> None:
    """Blocks 0, 1 and 2 planned (journaled); killed once block 1 is out, before the journal
    says so: block 1, the first of the plan not written, is the one xdream may have written
    (mutation audit M, for a journal of an earlier xdream: the last one, block 2, was taken,
    and block 1's files refused)."""
    folder = tmp_path / "run"
    save = RigScorer._save

    def killed_before_journaling_block_1(self: RigScorer, durable: bool = True) -> None:
        if not durable and self.state["blocks"].get("1", {}).get("written") is not None:
            raise Killed
        save(self, durable)

    def answer(b: int, names: list[str], score_dir: Path) -> None:
        write_response(score_dir, b, "json", names, np.full((len(names), 1), float(b)))

    monkeypatch.setattr(RigScorer, "_save", killed_before_journaling_block_1)
    with pytest.raises(Killed):
        score_one_generation(folder, answer, n=6, block_size=2, response_format="json")
    monkeypatch.setattr(RigScorer, "_save", save)
    assert sorted(json.loads((folder / "rig" / "state.json").read_text())["blocks"]) == list("012")
    _as_earlier_journal(folder, earlier)
    _, scores, _ = score_one_generation(folder, answer, n=6, block_size=2, response_format="json")
    np.testing.assert_array_equal(scores, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0])


def test_each_block_is_journaled_as_being_written_fsynced_before_its_first_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal write that records a block as being written (``writing``) is the fsynced
    one, made before any of the block's stimuli exist, once per block: a power cut after a
    file is out must not leave a journal that says nothing of the block (mutation audit N)."""
    save = RigScorer._save
    seen: list[tuple[int, bool, bool]] = []  # block being written, durable, a stimulus out

    def spy(self: RigScorer, durable: bool = True) -> None:
        writing = self.state.get("writing")
        if writing is not None and (not seen or seen[-1][0] != writing["block"]):
            blk = self.state["blocks"][str(writing["block"])]
            out = any((self.write_dir / s["name"]).exists() for s in blk["stimuli"])
            seen.append((writing["block"], durable, out))
        save(self, durable)

    monkeypatch.setattr(RigScorer, "_save", spy)
    scorer, _, _ = score_one_generation(
        tmp_path / "run", _answer_with_block_number, n=4, block_size=2
    )
    blocks = sorted(int(b) for b in scorer.state["blocks"])
    assert len(blocks) > 1 and seen == [(b, True, False) for b in blocks], seen


def test_a_response_that_comes_while_xdream_is_down_before_its_first_block_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before it wrote its first block (the journal records none being written): a
    response to block 0 that another session wrote while xdream was down is refused on
    resume as another session's, not taken as block 0's answer (mutation audit N: a new
    journal without its ``writing`` entry, or one read as if it had none, failed no test)."""
    folder = tmp_path / "run"
    rig = {"response_format": "json"}
    ensure_written = RigScorer._ensure_written

    def killed_before_block_0(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] == 0:
            raise Killed
        ensure_written(self, blk, images)

    monkeypatch.setattr(RigScorer, "_ensure_written", killed_before_block_0)
    with pytest.raises(Killed):
        score_one_generation(folder, _answer_with_block_number, n=2, **rig)
    monkeypatch.setattr(RigScorer, "_ensure_written", ensure_written)
    journal = json.loads((folder / "rig" / "state.json").read_text())
    assert journal["blocks"]["0"]["written"] is None and journal["writing"] is None
    names = [f"block000_{m:03d}_gen000_{m:06d}.png" for m in range(2)]
    write_response(folder / "stimuli", 0, "json", names, [[99.0], [99.0]])  # xdream is down
    with pytest.raises(
        XDreamError, match=r"holds files of a block this run has not written \(block000\.json"
    ):
        score_one_generation(folder, _answer_with_block_number, n=2, **rig)
    (folder / "stimuli" / "block000.json").rename(tmp_path / "block000.json")
    _, scores, _ = score_one_generation(folder, _answer_with_block_number, n=2, **rig)
    np.testing.assert_array_equal(scores, [0.0, 0.0])  # the rig's answer, after the resume


def test_a_known_early_file_gone_meanwhile_is_nothing_to_refuse(tmp_path: Path) -> None:
    """refuse_unwritten_blocks lists a folder, then looks at each early file: one removed
    in between (the rig's clean-up) is nothing to refuse; one changed since is (mutation
    audit N)."""
    path = tmp_path / "block001.json"
    assert scorer_mod._known_early(path, [[5, 1]])  # gone
    path.write_text("{}")
    st = path.stat()
    assert scorer_mod._known_early(path, [[1, 1], [st.st_size, st.st_mtime_ns]])
    assert not scorer_mod._known_early(path, [[st.st_size + 1, st.st_mtime_ns]])
    assert not scorer_mod._known_early(path, [])


def test_an_earlier_xdreams_journal_converted_on_resume_refuses_a_later_blocks_foreign_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal of an earlier xdream (no ``writing`` entry) is read as its rule says (the
    next block may have been written) and converted at once: after that block is answered and
    xdream is killed again before it writes the next one, a response to that next block
    written meanwhile is another session's, refused (mutation audit N: without the
    conversion the second resume read the journal by the earlier rule again and took it as
    the next block's answer)."""
    folder = tmp_path / "run"
    rig = {"response_format": "json"}
    score_one_generation(folder, _answer_with_block_number, n=2, **rig)  # block 0
    ensure_written = RigScorer._ensure_written
    killed_at: list[int] = []

    def killed_before(self: RigScorer, blk: dict[str, Any], images: Any) -> None:
        if blk["block"] in killed_at and blk["written"] is None:
            raise Killed
        ensure_written(self, blk, images)

    monkeypatch.setattr(RigScorer, "_ensure_written", killed_before)
    killed_at.append(1)
    with pytest.raises(Killed):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=1, **rig)
    killed_at.clear()
    journal_path = folder / "rig" / "state.json"
    journal = json.loads(journal_path.read_text())
    del journal["writing"]  # as an earlier xdream wrote it: block 1 may have been written
    journal_path.write_text(json.dumps(journal))
    write_response(folder / "stimuli", 1, "json", _gen_1_names(), [[7.0], [7.0]])  # its answer
    _, scores, _ = score_one_generation(folder, _answer_with_block_number, n=2, generation=1, **rig)
    np.testing.assert_array_equal(scores, [7.0, 7.0])
    killed_at.append(2)
    with pytest.raises(Killed):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=2, **rig)
    names = [f"block002_{m:03d}_gen002_{m:06d}.png" for m in range(2)]
    write_response(folder / "stimuli", 2, "json", names, [[99.0], [99.0]])  # xdream is down
    monkeypatch.setattr(RigScorer, "_ensure_written", ensure_written)
    with pytest.raises(
        XDreamError, match=r"holds files of a block this run has not written \(block002\.json"
    ):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=2, **rig)


def test_a_finished_runs_status_is_said_from_its_journal_as_it_can_be(tmp_path: Path) -> None:
    """A finished rig run resumed without its share (check_folder refused, no bind) has its
    rig/status.json say finished, with the folders its config names; a journal that is no
    journal, or a status file that cannot be written, leaves the status as it is, without an
    error: the results are said either way (mutation audit N: R26-R28)."""
    run = tmp_path / "run"
    (run / "rig").mkdir(parents=True)
    params = RigSection(write_dir=str(tmp_path / "share"), score_dir=str(tmp_path / "answers"))
    journal = json.dumps({"generation": 3, "blocks": {}, "counts": {}})
    waiting = json.dumps({"state": "waiting"})

    def closed() -> None:
        scorer = RigScorer(params, seed=0, stderr=io.StringIO())
        with pytest.raises(XDreamError, match="share"):
            scorer.check_folder(run)  # the share is not mounted
        scorer.close()

    (run / "rig" / "state.json").write_text(journal)
    (run / "rig" / "status.json").write_text(waiting)
    closed()
    status = read_status(run)
    assert status["state"] == "finished" and status["generation"] == 3
    assert status["score_dir"] == str(tmp_path / "answers")
    assert status["write_dir"] == str(tmp_path / "share")
    (run / "rig" / "status.json").write_text(waiting)
    (run / "rig" / "state.json").write_text("[]")
    closed()
    assert read_status(run) == {"state": "waiting"}
    (run / "rig" / "state.json").write_text(journal)
    (run / "rig" / "status.json").unlink()
    (run / "rig" / "status.json").mkdir()  # cannot be written
    closed()


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("blocks", [], '"blocks" is a list ([]), not a mapping of block numbers to blocks'),
        ("blocks", "0", '"blocks" is a string ("0"), not a mapping of block numbers to blocks'),
        ("blocks", {"0": [1]}, '"blocks"["0"] is a list ([1]), not a mapping'),
        ("current", [], '"current" is a list ([]), not null or a mapping'),
        ("counts", [0], '"counts" is a list ([0]), not a mapping'),
        ("next_block", "1", '"next_block" is a string ("1"), not a whole number'),
        ("writing", 0, '"writing" is a number (0), not null or a mapping'),
        ("early", [], '"early" is a list ([]), not a mapping'),
        ("rows", None, 'it has no "rows"'),
    ],
)
def test_a_hand_edited_rig_journal_of_the_wrong_kind_is_refused_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any, said: str
) -> None:
    """A rig journal (rig/state.json) edited by hand so that a field is not of the kind xdream
    writes (blocks a list or a string, ...) stopped `xdream resume` with a raw AttributeError
    or TypeError; it is refused with an error that names the file, the field and what it
    should be, and how to go on. The journal is left as it is."""
    from xdream.cli import main

    cfg = tmp_path / "p.toml"
    cfg.write_text(PAUSING_RIG)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 3  # paused: block 0 unanswered
    path = out / "rig" / "state.json"
    journal = json.loads(path.read_text())
    if value is None:
        del journal[field]
    else:
        journal[field] = value
    path.write_text(json.dumps(journal))
    capsys.readouterr()
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"the rig journal {str(path)!r} is not as xdream writes it: {said}." in err
    assert "Put it back as xdream wrote it" in err and "in a new folder" in err
    assert json.loads(path.read_text()) == journal


def test_a_rig_journal_that_is_no_mapping_is_refused_with_what_to_do(tmp_path: Path) -> None:
    """A journal holding a list stopped a resume with an AttributeError."""
    folder = tmp_path / "run"
    score_one_generation(folder, _answer_with_block_number, n=2, response_format="json")
    (folder / "rig" / "state.json").write_text("[]")
    with pytest.raises(XDreamError, match=r"state\.json' is not as xdream writes it: it holds a"):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=1)


def _journal_for_checks(tmp_path: Path) -> dict[str, Any]:
    """A rig journal as xdream writes it after a generation, with a previous round, an early
    response's signatures and a counted file added (each as xdream writes them)."""
    folder = tmp_path / "journal"
    score_one_generation(folder, _answer_with_block_number, n=2, response_format="json")
    state = json.loads((folder / "rig" / "state.json").read_text())
    state["previous"] = json.loads(json.dumps({"cur": state["current"], "rows": state["rows"]}))
    state["early"] = {"block001.json": [[113, 1795825252345946849]]}
    state["counted"] = ["block000.json"]
    return state


_DELETE = object()

# each: edits (a path of keys and the new value, or _DELETE), and what journal_problem says
_JOURNAL_EDITS: list[tuple[list[tuple[tuple[Any, ...], Any]], str]] = [
    ([(("counts",), _DELETE)], 'it has no "counts"'),
    ([(("rng",), _DELETE)], 'it has no "rng"'),
    ([(("best",), "x")], '"best" is a string ("x"), not null or a number'),
    ([(("n_channels",), 1.5)], '"n_channels" is a number (1.5), not null or a whole number'),
    ([(("last_latency",), "1")], '"last_latency" is a string ("1"), not null or a number'),
    ([(("generation",), True)], '"generation" is true, not a whole number'),
    ([(("last_baseline",), False)], '"last_baseline" is false, not null or a number'),
    ([(("counted",), "a")], '"counted" is a string ("a"), not a list'),
    ([(("orientation",), 3)], '"orientation" is a number (3), not null or a string'),
    ([(("previous",), [])], '"previous" is a list ([]), not null or a mapping'),
    ([(("blocks", "0", "stimuli"), _DELETE)], '"blocks"["0"] has no "stimuli"'),
    (
        [(("blocks", "0", "timed_out"), 0)],
        '"blocks"["0"]["timed_out"] is a number (0), not true or false',
    ),
    ([(("blocks", "0", "sig"), "x")], '"blocks"["0"]["sig"] is a string ("x"), not null or a list'),
    (
        [(("blocks", "0", "n_stimuli"), "2")],
        '"blocks"["0"]["n_stimuli"] is a string ("2"), not a whole number',
    ),
    ([(("blocks", "0", "block"), 1)], '"blocks"["0"]["block"] is 1, not 0'),
    (
        [(("blocks", "0", "stimuli", 1, "kind"), _DELETE)],
        '"blocks"["0"]["stimuli"][1] has no "kind"',
    ),
    ([(("current", "round"), "0")], '"current"["round"] is a string ("0"), not a whole number'),
    ([(("current", "key"), _DELETE)], '"current" has no "key"'),
    ([(("current", "ids", 1), 5)], '"current"["ids"][1] is a number (5), not a string'),
    (
        [(("current", "blocks"), [7])],
        '"current"["blocks"][0] is a number (7), not the number of a block in "blocks"',
    ),
    (
        [(("current", "blocks"), ["0"])],
        '"current"["blocks"][0] is a string ("0"), not the number of a block in "blocks"',
    ),
    ([(("rows", 1, "values"), _DELETE)], '"rows"[1] has no "values"'),
    ([(("rows", 0, "used"), 1)], '"rows"[0]["used"] is a number (1), not true or false'),
    ([(("rows", 0, "received"), "t")], '"rows"[0]["received"] is a string ("t"), not a number'),
    (
        [(("previous", "cur", "done"), "yes")],
        '"previous"["cur"]["done"] is a string ("yes"), not true or false',
    ),
    ([(("previous", "rows"), _DELETE)], '"previous" has no "rows"'),
    (
        [(("previous", "rows", 1, "late"), None)],
        '"previous"["rows"][1]["late"] is null, not true or false',
    ),
    ([(("counts", "late"), 1.5)], '"counts"["late"] is a number (1.5), not a whole number'),
    ([(("writing", "block"), "0")], '"writing"["block"] is a string ("0"), not a whole number'),
    (
        [(("writing", "time"), "t")],
        '"writing"["time"] is a string ("t"), not null or a number',
    ),
    ([(("counted",), ["a", 3])], '"counted"[1] is a number (3), not a string'),
    (
        [(("early",), {"f": [[1, 2, 3]]})],
        '"early"["f"] is a list ([[1, 2, 3]]), not a list of [size, mtime_ns]',
    ),
    (
        [(("early",), {"f": [[1, "2"]]})],
        '"early"["f"] is a list ([[1, "2"]]), not a list of [size, mtime_ns]',
    ),
    ([(("early",), {"f": "x"})], '"early"["f"] is a string ("x"), not a list of [size, mtime_ns]'),
    (  # the first problem is said
        [(("rows", 0, "used"), 1), (("early",), {"f": "x"})],
        '"rows"[0]["used"] is a number (1), not true or false',
    ),
    # numbers of the right kind out of range: the next block would overwrite block 0's record
    (
        [(("next_block",), 0)],
        '"next_block" is 0, not above the last block in "blocks" (0): the next block would '
        "take the number of one already written",
    ),
    (
        [(("blocks",), {}), (("current",), None), (("previous",), None), (("next_block",), -1)],
        '"next_block" is -1, not 0 or more',
    ),
    ([(("counts", "timeouts"), -2)], '"counts"["timeouts"] is -2, not 0 or more'),
    (  # a value's JSON is shown whole up to 40 characters, and cut after 37 beyond
        [(("next_block",), "x" * 38)],
        f'"next_block" is a string ("{"x" * 38}"), not a whole number',
    ),
    (
        [(("next_block",), "x" * 39)],
        f'"next_block" is a string ("{"x" * 36}...), not a whole number',
    ),
]


def test_the_rig_journal_checks_say_the_first_field_not_as_xdream_writes_it(
    tmp_path: Path,
) -> None:
    """journal_problem passes a journal as xdream writes it (and one of an earlier xdream,
    without the fields added since), and says, for each field the rig scorer reads, that it
    is missing or of the wrong kind, naming it with its place in the journal (mutation audit
    U: each of these edits was let through, or said otherwise, by a mutant of the checks)."""
    import copy

    state = _journal_for_checks(tmp_path)
    assert scorer_mod.journal_problem(state) is None
    earlier = copy.deepcopy(state)
    for key in ("orientation", "counted", "early", "writing", "previous"):
        del earlier[key]
    del earlier["blocks"]["0"]["n_stimuli"]
    assert scorer_mod.journal_problem(earlier) is None
    for edits, said in _JOURNAL_EDITS:
        edited = copy.deepcopy(state)
        for path, value in edits:
            parent = edited
            for key in path[:-1]:
                parent = parent[key]
            if value is _DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        assert scorer_mod.journal_problem(edited) == said, (edits, said)
    # a block numbered below 0 (with its number in "current" and "next_block" above it)
    edited = copy.deepcopy(state)
    block = edited["blocks"].pop("0")
    block["block"] = -1
    edited["blocks"]["-1"] = block
    edited["current"]["blocks"] = edited["previous"]["cur"]["blocks"] = [-1]
    edited["next_block"] = 0
    said = '"blocks"["-1"] is numbered -1, not 0 or more'
    assert scorer_mod.journal_problem(edited) == said
    # (audit J) the lowest and the highest number are found in any order of "blocks": a
    # block numbered -1 beside block 0, and a block 3 listed before block 0 with next_block 1
    edited = copy.deepcopy(state)
    edited["blocks"]["-1"] = {**copy.deepcopy(state["blocks"]["0"]), "block": -1}
    said = '"blocks"["-1"] is numbered -1, not 0 or more'
    assert scorer_mod.journal_problem(edited) == said
    edited = copy.deepcopy(state)
    edited["blocks"] = {"3": {**copy.deepcopy(state["blocks"]["0"]), "block": 3}, **state["blocks"]}
    edited["next_block"] = 1
    said = (
        '"next_block" is 1, not above the last block in "blocks" (3): the next block would '
        "take the number of one already written"
    )
    assert scorer_mod.journal_problem(edited) == said


@pytest.mark.parametrize(
    "rng",
    [
        {},  # ValueError: not a PCG64 state
        {"bit_generator": "PCG64"},  # KeyError
        {"bit_generator": "PCG64", "state": {"state": 1, "inc": 1}, "has_uint32": 0},  # KeyError
        {  # OverflowError: a number out of range
            "bit_generator": "PCG64",
            "state": {"state": -1, "inc": 1},
            "has_uint32": 0,
            "uinteger": 0,
        },
        {
            "bit_generator": "PCG64",
            "state": {"state": 1, "inc": 1},
            "has_uint32": 0,
            "uinteger": -1,
        },
    ],
)
def test_a_rig_journal_whose_rng_is_no_generator_state_is_refused_with_what_to_do(
    tmp_path: Path, rng: dict[str, Any]
) -> None:
    """A hand-edited "rng" that is a mapping but not the state of the rig's random generator is
    refused on resume as the other fields are; one whose numbers are out of range stopped the
    resume with a raw OverflowError (mutation audit U)."""
    folder = tmp_path / "run"
    score_one_generation(folder, _answer_with_block_number, n=2, response_format="json")
    path = folder / "rig" / "state.json"
    journal = json.loads(path.read_text())
    path.write_text(json.dumps({**journal, "rng": rng}))
    said = r"state\.json' is not as xdream writes it: \"rng\" is not the state of a PCG64 generator"
    with pytest.raises(XDreamError, match=said):
        score_one_generation(folder, _answer_with_block_number, n=2, generation=1)
    assert json.loads(path.read_text())["rng"] == rng


@pytest.mark.parametrize(
    "journal",
    [
        {"generation": 3, "blocks": {"0": {"block": 0}}, "counts": {}},  # no written, answered
        {"generation": 3, "blocks": {"0": {"written": 1.0}}, "counts": {}},  # no answered
        {"generation": 3, "blocks": {}, "counts": []},
        {"generation": 3, "blocks": {}, "counts": "0"},
        # blocks edited into a list: the resume stopped with an AttributeError
        {"generation": 3, "blocks": []},
    ],
)
def test_a_finished_runs_status_is_left_alone_for_a_journal_it_cannot_be_said_from(
    tmp_path: Path, journal: dict[str, Any]
) -> None:
    """A finished run resumed without its share, whose journal's blocks lack "written" or
    "answered", are a list, or whose counts are no mapping: its status is left as it is, as
    for a journal that cannot be read, without an error but the share's (mutation audit U:
    the status check without these parts)."""
    run = tmp_path / "run"
    (run / "rig").mkdir(parents=True)
    params = RigSection(write_dir=str(tmp_path / "share"))
    (run / "rig" / "state.json").write_text(json.dumps(journal))
    (run / "rig" / "status.json").write_text(json.dumps({"state": "waiting"}))
    scorer = RigScorer(params, seed=0, stderr=io.StringIO())
    with pytest.raises(XDreamError, match="share"):
        scorer.check_folder(run)
    scorer.close()
    assert read_status(run) == {"state": "waiting"}
