"""The loop and its records: what is written, and resume equal to an uninterrupted run."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import xdream.optimizers
from tests.helpers import RedScorer, killed_inside_an_append, tiny_experiment, torn_record
from xdream import config as config_mod
from xdream import records
from xdream.errors import XDreamError
from xdream.experiment import Experiment

TIMING = {"generations/seconds"}


def h5_contents(path: Path) -> dict[str, object]:
    """Every dataset and attribute of an HDF5 file, except the wall-clock timings."""
    out: dict[str, object] = {}
    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            out[f"@{key}"] = np.asarray(value).tolist()

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset) and name not in TIMING:
                out[name] = obj[()]

        f.visititems(visit)
    return out


def assert_same_records(a: Path, b: Path, ignore: Collection[str] = ()) -> None:
    """The records, summaries and saved images of two runs are equal, except for the
    wall-clock timings and the datasets named in ``ignore``."""
    ca, cb = h5_contents(a / "record.h5"), h5_contents(b / "record.h5")
    for key in ignore:
        ca.pop(key, None), cb.pop(key, None)
    assert ca.keys() == cb.keys()
    for key in ca:
        va, vb = ca[key], cb[key]
        if isinstance(va, np.ndarray):
            assert va.dtype == vb.dtype, key  # type: ignore[union-attr]
            np.testing.assert_array_equal(va, vb, err_msg=key)
        else:
            assert va == vb, key
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    sa.pop("seconds"), sb.pop("seconds")
    assert sa == sb
    pa = sorted(p.name for p in (a / "images").iterdir())
    assert pa == sorted(p.name for p in (b / "images").iterdir())
    for name in pa:
        assert (a / "images" / name).read_bytes() == (b / "images" / name).read_bytes(), name
    assert (a / "best.png").read_bytes() == (b / "best.png").read_bytes()


def test_run_writes_every_record(tmp_path: Path) -> None:
    summary = tiny_experiment(tmp_path / "run", generations=5).run()
    run = tmp_path / "run"
    rec = records.read(run)
    assert rec.codes.shape == (5 * 20, 3 * 8 * 8)
    assert rec.scores.shape == rec.clean_scores.shape == (100,)
    assert rec.generation.tolist() == sorted(rec.generation.tolist())
    assert set(rec.generation.tolist()) == set(range(5))
    assert rec.image_ids[0] == "gen000_000000" and len(set(rec.image_ids)) == len(rec.image_ids)
    assert len(rec.ref_ids) == 5 * 4 and all(r.startswith("ref_") for r in rec.ref_ids)
    assert rec.best_per_generation.shape == (5,) and rec.seconds.shape == (5, 4)
    np.testing.assert_allclose(
        rec.best_per_generation[0], np.nanmax(rec.scores[rec.generation == 0])
    )
    for key in (
        "best_score",
        "first_generation_best_score",
        "best_reference_score",
        "best_image",
        "generations",
        "presentations",
        "seconds",
        "target",
        "generator",
        "optimizer",
        "seed",
    ):
        assert key in summary
    assert summary["generations"] == 5 and summary["presentations"] == 100
    assert summary["best_score"] == pytest.approx(np.nanmax(rec.scores))
    assert summary["best_reference_score"] == pytest.approx(np.nanmax(rec.ref_scores))
    assert summary["first_generation_best_score"] == pytest.approx(rec.best_per_generation[0])
    assert summary["status"] == "finished"
    assert (run / "best.png").exists() and len(list((run / "images").glob("*.png"))) == 5
    assert not (run / "journal").exists()  # removed once the record is complete
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_references_never_reach_the_optimizer(tmp_path: Path) -> None:
    exp = tiny_experiment(tmp_path / "run", generations=2)
    told: list[int] = []
    original = exp.optimizer.tell

    def spy(codes: np.ndarray, scores: np.ndarray) -> None:
        told.append(len(scores))
        original(codes, scores)

    exp.optimizer.tell = spy  # type: ignore[method-assign]
    exp.run()
    assert told == [20, 20]
    assert exp.scorer.calls == 2  # type: ignore[attr-defined]  # images and refs in one call


def test_seeded_runs_are_identical_and_seeds_differ(tmp_path: Path) -> None:
    tiny_experiment(tmp_path / "a", generations=3, seed=1).run()
    tiny_experiment(tmp_path / "b", generations=3, seed=1).run()
    tiny_experiment(tmp_path / "c", generations=3, seed=2).run()
    assert_same_records(tmp_path / "a", tmp_path / "b")
    assert not np.array_equal(
        records.read(tmp_path / "a").codes, records.read(tmp_path / "c").codes
    )


@pytest.mark.parametrize("optimizer", ["genetic", "fdgd", "nes", "annealed-es"])
@pytest.mark.parametrize("stop_after", [1, 3])
def test_resume_equals_uninterrupted(tmp_path: Path, optimizer: str, stop_after: int) -> None:
    tiny_experiment(tmp_path / "full", generations=6, drop=0.1, optimizer=optimizer).run()
    first = tiny_experiment(tmp_path / "cut", generations=6, drop=0.1, optimizer=optimizer)
    first._start()
    for _ in range(stop_after):
        first.step()
    del first  # "killed": fresh objects, state only from disk
    second = tiny_experiment(tmp_path / "cut", generations=6, drop=0.1, optimizer=optimizer)
    second.restore()
    assert second.generation == stop_after
    second.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")


def test_resume_cuts_a_generation_written_after_the_checkpoint(tmp_path: Path) -> None:
    tiny_experiment(tmp_path / "full", generations=4).run()
    exp = tiny_experiment(tmp_path / "cut", generations=4)
    exp._start()
    for _ in range(2):
        exp.step()
    checkpoint = (tmp_path / "cut" / "checkpoint.pkl").read_bytes()
    exp.step()  # generation 2 reaches the journal ...
    exp.flush()  # ... and record.h5 ...
    exp.release_folder()  # then "killed"
    (tmp_path / "cut" / "checkpoint.pkl").write_bytes(checkpoint)  # ... but not the checkpoint
    (tmp_path / "cut" / "images" / ".gen003_best.png.x1y2z3.xdream.tmp").write_bytes(b"torn")
    rigs = tmp_path / "cut" / "responses" / ".block004.mat.tmp"  # a rig's write in progress
    rigs.parent.mkdir()
    rigs.write_bytes(b"not ours")
    resumed = tiny_experiment(tmp_path / "cut", generations=4)
    note = resumed.restore()
    assert "cut 1" in note
    assert not list((tmp_path / "cut").rglob("*.xdream.tmp"))  # a kill's half-written files
    assert rigs.read_bytes() == b"not ours"  # are gone; other programs' are not touched
    resumed.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")


class _RowsOfItsOwn(RedScorer):
    """The red scorer, recording rows of its own (``last_extra``), two per generation, as a
    rig does (a group with a ``generation`` column)."""

    def score(self, images: Any, ids: list[str]) -> Any:
        g = int(next(i for i in ids if i.startswith("gen"))[3:6])
        self.last_extra = {"own/generation": np.array([g, g]), "own/value": np.array([g, -g])}
        return super().score(images, ids)


@pytest.mark.parametrize("behind", [1, 2])
def test_a_finished_run_resumed_from_an_older_checkpoint_cuts_its_record_back(
    tmp_path: Path, behind: int
) -> None:
    """A finished run (no journal) whose checkpoint is older than its record, a backup's put
    back say: the record is cut to the checkpoint's generations (rows, references and a
    scorer's own rows), marked as it then stands, and the run goes on as if never cut."""
    kept = 4 - behind
    for name in ("full", "cut"):
        exp = tiny_experiment(tmp_path / name, generations=4)
        exp.scorer = _RowsOfItsOwn()
        exp._start()
        for _ in range(kept):
            exp.step()
        checkpoint = (tmp_path / name / "checkpoint.pkl").read_bytes()
        exp.run()
    cut = tmp_path / "cut"
    (cut / "checkpoint.pkl").write_bytes(checkpoint)  # the one saved after generation kept - 1
    resumed = tiny_experiment(cut, generations=4)
    resumed.scorer = _RowsOfItsOwn()
    assert f"cut {behind} unfinished generation(s)" in resumed.restore()
    assert records.H5Record(cut / "record.h5").trusted_generations() == kept
    rec = records.read(cut)
    assert len(rec.best_per_generation) == kept and set(rec.generation) == set(range(kept))
    assert set(rec.ref_generation) == set(range(kept))
    assert list(rec.extra["own/generation"]) == [g for g in range(kept) for _ in range(2)]
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


def test_a_continued_finished_run_resumed_from_a_checkpoint_older_than_its_base_is_cut_back(
    tmp_path: Path,
) -> None:
    """journal/base.h5 holds more generations than a checkpoint put back from before the run
    finished: the rebuild cannot start from it, and the record is cut to the checkpoint."""
    tiny_experiment(tmp_path / "full", generations=5).run()
    cut = tmp_path / "cut"
    exp = tiny_experiment(cut, generations=3)
    exp._start()
    for _ in range(2):
        exp.step()
    older = (cut / "checkpoint.pkl").read_bytes()  # after generation 1
    exp.run()
    more = tiny_experiment(cut, generations=5, record_interval=0)
    more.restore()  # journal/base.h5: 3 generations
    more.step()
    more._settle()
    more.release_folder()
    (cut / "checkpoint.pkl").write_bytes(older)
    resumed = tiny_experiment(cut, generations=5)
    assert "cut 2 unfinished generation(s)" in resumed.restore()
    assert records.H5Record(cut / "record.h5").generations() == 2
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


def test_a_finished_run_whose_record_lacks_a_generation_is_refused(tmp_path: Path) -> None:
    """Without a journal, a record one generation behind the checkpoint (an older copy put
    back) cannot be completed: resume refuses, naming both, and the run does not go on with a
    generation missing from its record."""
    run = tmp_path / "run"
    tiny_experiment(run, generations=3).run()
    records.H5Record(run / "record.h5").truncate(2)
    with pytest.raises(XDreamError, match="holds 2 generations, the checkpoint 3, and the journal"):
        tiny_experiment(run, generations=5).restore()


def test_noise_is_drawn_from_a_stream_of_its_own_not_the_optimizers(tmp_path: Path) -> None:
    """Spec 6 keeps the noise RNG apart from the optimiser's: derived from ``seed`` (each seed
    its own), or ``noise_seed``, which pins it. A unit answering 1 makes the scores the gains."""
    from xdream.scorers.base import FunctionScorer

    def gains(name: str, **experiment: int) -> np.ndarray:
        cfg = config_mod.from_dict(
            {
                "experiment": {"generations": 1, "n_references": 0, **experiment},
                "generator": {"name": "pixels", "size": 32, "code_size": 8},
                "optimizer": {"name": "genetic", "population_size": 20},
                "noise": {"name": "gain", "ns": 0.5},
            }
        )
        ones = FunctionScorer(lambda images, ids: np.ones(len(ids)))
        Experiment.from_config(cfg, tmp_path / name, unit=ones).run()
        return records.read(tmp_path / name).scores

    def drawn(seed: int) -> np.ndarray:  # the gains of the first 20 draws of a seed's stream
        return np.maximum(0.0, 1.0 + 0.5 * np.random.default_rng(seed).standard_normal(20))

    seeded = gains("seed5", seed=5)
    assert not np.allclose(seeded, drawn(5))  # the optimiser's stream: its first population
    assert not np.allclose(gains("seed6", seed=6), seeded)
    np.testing.assert_allclose(gains("pinned", seed=6, noise_seed=7), drawn(7), rtol=1e-6)


def test_unreadable_record_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    tiny_experiment(tmp_path / "full", generations=4).run()
    exp = tiny_experiment(tmp_path / "cut", generations=4)
    exp._start()
    for _ in range(3):
        exp.step()
    exp.release_folder()  # then "killed"
    (tmp_path / "cut" / "record.h5").write_bytes(b"\x89HDF garbage from a torn write")
    resumed = tiny_experiment(tmp_path / "cut", generations=4)
    assert "rebuilt from the journal" in resumed.restore()
    resumed.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")
    assert list((tmp_path / "cut").glob("record.h5.unreadable-*"))  # nothing thrown away


def test_records_kept_aside_in_the_same_second_are_all_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second unreadable record kept aside in one second (or after the clock was set back)
    replaced the first, which the docs say is kept, not deleted."""
    exp = tiny_experiment(tmp_path / "cut", generations=4)
    exp._start()
    exp.step()
    exp.release_folder()
    monkeypatch.setattr(records.resume.time, "time", lambda: 1_800_000_000.0)
    for garbage in (b"garbage A", b"garbage B", b"garbage C"):
        (tmp_path / "cut" / "record.h5").write_bytes(garbage)
        tiny_experiment(tmp_path / "cut", generations=4).restore()
    kept = sorted((tmp_path / "cut").glob("record.h5.unreadable-*"))
    assert sorted(p.read_bytes() for p in kept) == [b"garbage A", b"garbage B", b"garbage C"]
    assert kept[0].name == "record.h5.unreadable-1800000000"


@pytest.mark.parametrize("chunk", [1, 2])
def test_a_record_rebuilt_in_chunks_equals_the_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The rebuild appends several generations per HDF5 write; 3 generations in chunks of 2
    (and 1) must give the same record as a run never stopped."""
    monkeypatch.setattr(records.resume, "REBUILD_CHUNK", chunk)
    tiny_experiment(tmp_path / "full", generations=5, drop=0.1).run()
    exp = tiny_experiment(tmp_path / "cut", generations=5, drop=0.1)
    exp._start()
    for _ in range(3):
        exp.step()
    del exp
    killed_inside_an_append(tmp_path / "cut")
    resumed = tiny_experiment(tmp_path / "cut", generations=5, drop=0.1)
    assert "rebuilt from the journal (3 generations)" in resumed.restore()
    resumed.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")


def test_a_torn_record_that_still_opens_is_rebuilt(tmp_path: Path) -> None:
    """kill -9 inside an HDF5 write can leave a file that opens but cannot be written again."""
    tiny_experiment(tmp_path / "full", generations=4).run()
    exp = tiny_experiment(tmp_path / "cut", generations=4)
    exp._start()
    for _ in range(2):
        exp.step()
    exp.flush()
    exp.release_folder()  # then "killed"
    path = tmp_path / "cut" / "record.h5"
    data = bytearray(path.read_bytes())
    with h5py.File(path, "r") as f:  # wreck the codes' storage, keep the superblock
        offset = f["codes"].id.get_offset() or f["codes"].id.get_chunk_info(0).byte_offset
    data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    killed_inside_an_append(tmp_path / "cut")
    resumed = tiny_experiment(tmp_path / "cut", generations=4)
    assert "rebuilt from the journal" in resumed.restore()
    resumed.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")


def test_a_record_killed_before_its_superblock_was_written_is_rebuilt(tmp_path: Path) -> None:
    """Reading such a record fails with h5py's RuntimeError ("addr overflow"), not an OSError
    (a Ray worker killed in a sweep test, 26 November 2026)."""
    tiny_experiment(tmp_path / "full", generations=4).run()
    torn_record(tmp_path / "cut", generations=4, done=2)
    with pytest.raises(RuntimeError, match="addr overflow"):
        records.H5Record(tmp_path / "cut" / "record.h5").generations()
    resumed = tiny_experiment(tmp_path / "cut", generations=4)
    assert "rebuilt from the journal" in resumed.restore()
    resumed.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")
    assert list((tmp_path / "cut").glob("record.h5.unreadable-*"))


def _lagging_run(folder: Path, generations: int, appended: int, steps: int) -> None:
    """A run "killed" after ``steps`` generations whose ``record.h5`` was last appended after
    ``appended`` of them (and marked)."""
    exp = tiny_experiment(folder, generations=generations, record_interval=0)
    exp._start()
    for _ in range(appended):
        exp.step()
    exp._settle()
    exp.record_interval = 3600.0  # the record lags behind from here on
    for _ in range(steps - appended):
        exp.step()
    exp._settle()
    exp.release_folder()  # then "killed"


def test_a_marked_record_is_brought_up_to_date_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record whose last append completed (its mark matches it) is kept: resume appends the
    generations it lacks and reads no journal file before them."""
    tiny_experiment(tmp_path / "full", generations=6).run()
    cut = tmp_path / "cut"
    _lagging_run(cut, generations=6, appended=2, steps=5)
    assert records.H5Record(cut / "record.h5").trusted_generations() == 2
    read: list[int] = []
    real = records.RunFolder.read_journal

    def spy(self: records.RunFolder, generation: int) -> records.GenerationRecord:
        read.append(generation)
        return real(self, generation)

    monkeypatch.setattr(records.RunFolder, "read_journal", spy)
    resumed = tiny_experiment(cut, generations=6)
    note = resumed.restore()
    assert note == "record.h5 brought up to date from the journal (3 generation(s) appended)"
    assert read == [2, 3, 4]
    assert records.H5Record(cut / "record.h5").trusted_generations() == 5
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


def test_a_marked_record_that_holds_every_generation_is_kept_as_it_is(tmp_path: Path) -> None:
    """Killed right after an append that reached the checkpoint: resume keeps record.h5 (the
    same file, not rebuilt) and copies nothing to journal/base.h5 (the journal holds every
    generation)."""
    tiny_experiment(tmp_path / "full", generations=5).run()
    cut = tmp_path / "cut"
    _lagging_run(cut, generations=5, appended=3, steps=3)
    record = records.H5Record(cut / "record.h5")
    assert record.trusted_generations() == 3
    inode = record.path.stat().st_ino
    resumed = tiny_experiment(cut, generations=5)
    assert resumed.restore() == ""
    assert record.path.stat().st_ino == inode and record.trusted_generations() == 3
    assert not (cut / "journal" / records.BASE_FILE).exists()
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


@pytest.mark.parametrize("change", ["touched", "copied", "mark damaged", "written, time put back"])
def test_a_record_changed_after_its_mark_is_rebuilt(tmp_path: Path, change: str) -> None:
    """The mark holds the record's size, times and inode: a record written to (even with the
    same size, and its modification time put back, as a copy in place that keeps times does:
    only the change time, which no program can set, tells), replaced by a copy, or a mark that
    is not one, sends resume back to the journal."""
    tiny_experiment(tmp_path / "full", generations=6).run()
    cut = tmp_path / "cut"
    _lagging_run(cut, generations=6, appended=2, steps=4)
    record = cut / "record.h5"
    if change == "touched":  # two seconds: a change on file systems with coarse times too
        st = record.stat()
        os.utime(record, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    elif change == "copied":
        shutil.copy2(record, cut / "copy.h5")
        os.replace(cut / "copy.h5", record)
    elif change == "written, time put back":  # a code of the first row changed in place
        with h5py.File(record, "r") as f:
            offset = f["codes"].id.get_chunk_info(0).byte_offset  # its first chunk, raw
        st = record.stat()
        with open(record, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([byte[0] ^ 0x40]))
        os.utime(record, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert record.stat().st_size == st.st_size and record.stat().st_ino == st.st_ino
        assert record.stat().st_mtime_ns == st.st_mtime_ns
    else:
        records.H5Record(record).mark_path.write_text('{"generations": 2}')
    assert records.H5Record(record).trusted_generations() is None
    resumed = tiny_experiment(cut, generations=6)
    assert resumed.restore() == "record.h5 rebuilt from the journal (4 generations)"
    assert records.H5Record(record).trusted_generations() == 4  # marked: kept next time
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


def test_an_append_that_fails_leaves_the_record_unmarked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark is removed before the record changes: an append stopped half-way (here by an
    error after the codes were written) leaves no mark, so resume rebuilds the record."""
    tiny_experiment(tmp_path / "full", generations=4).run()
    cut = tmp_path / "cut"
    exp = tiny_experiment(cut, generations=4, record_interval=0)
    exp._start()
    exp.step()
    exp._settle()
    assert records.H5Record(cut / "record.h5").trusted_generations() == 1
    real = records.h5._append

    def fail_after_codes(group: Any, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "scores":
            raise OSError("killed")
        real(group, name, *args, **kwargs)

    monkeypatch.setattr(records.h5, "_append", fail_after_codes)
    with pytest.raises(OSError, match="killed"):
        exp.step()
    monkeypatch.undo()
    exp.release_folder()
    assert not records.H5Record(cut / "record.h5").mark_path.exists()
    resumed = tiny_experiment(cut, generations=4)
    assert "rebuilt from the journal" in resumed.restore()
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


@pytest.mark.parametrize("torn", [False, True])
def test_a_finished_run_continued_and_killed_resumes(tmp_path: Path, torn: bool) -> None:
    """A finished run's journal is removed; continued with a larger budget and killed, it
    resumed only while its record held every generation the new journal lacked, and refused
    ("cannot rebuild") where the record lagged behind. The record as continued is kept as
    ``journal/base.h5``: a marked record is brought up to date, a torn one rebuilt from it."""
    tiny_experiment(tmp_path / "full", generations=7).run()
    cut = tmp_path / "cut"
    tiny_experiment(cut, generations=3).run()
    assert not (cut / "journal").exists()
    more = tiny_experiment(cut, generations=7, record_interval=0 if torn else 3600.0)
    assert more.restore() == ""
    assert (cut / "journal" / "base.h5").is_file()
    for _ in range(2):
        more.step()
    more._settle()
    more.release_folder()  # then "killed"
    lagged = records.H5Record(cut / "record.h5").generations()
    if torn:
        killed_inside_an_append(cut)
        (cut / "record.h5").write_bytes(b"\x89HDF garbage from a torn write")
        assert records.journal_rebuilds(cut)  # what `xdream report` advises on
        assert "rebuilds record.h5 from its journal" in records.rebuild_advice(cut)
    resumed = tiny_experiment(cut, generations=7)
    note = resumed.restore()
    if torn:
        assert "record.h5 rebuilt from the record of its first 3 generations and the journal" in (
            note
        )
    else:  # the record lagged behind the checkpoint (5): the case that was refused
        assert lagged < 5
        assert note.startswith("record.h5 brought up to date from the journal")
    resumed.run()
    assert_same_records(tmp_path / "full", cut)
    assert not (cut / "journal").exists()


def test_a_finished_unmarked_run_of_one_generation_goes_on(tmp_path: Path) -> None:
    """A finished run's journal is gone: resume keeps its record (and copies it to
    journal/base.h5) whatever its length, one generation included (the journal lacks the
    first file as it lacks the last), even without a mark (an earlier xdream's record)."""
    tiny_experiment(tmp_path / "full", generations=3).run()
    cut = tmp_path / "cut"
    tiny_experiment(cut, generations=1).run()
    records.H5Record(cut / "record.h5").mark_path.unlink()
    more = tiny_experiment(cut, generations=3)
    assert more.restore() == ""
    assert (cut / "journal" / "base.h5").is_file()
    more.run()
    assert_same_records(tmp_path / "full", cut)


def _continued_then_torn(cut: Path) -> None:
    """A finished one-generation run in ``cut`` continued to 3 generations (its record kept as
    journal/base.h5), "killed" inside its next append after one more, its record.h5 torn."""
    tiny_experiment(cut, generations=1).run()
    more = tiny_experiment(cut, generations=3, record_interval=0)
    more.restore()
    more.step()
    more._settle()
    more.release_folder()  # then "killed" inside its next append
    killed_inside_an_append(cut)
    (cut / "record.h5").write_bytes(b"\x89HDF garbage from a torn write")


def test_a_finished_run_of_one_generation_continued_and_torn_is_rebuilt_from_its_base(
    tmp_path: Path,
) -> None:
    """journal/base.h5 of one generation is where the rebuild starts: the journal holds only
    the generations after it."""
    tiny_experiment(tmp_path / "full", generations=3).run()
    cut = tmp_path / "cut"
    _continued_then_torn(cut)
    resumed = tiny_experiment(cut, generations=3)
    assert "rebuilt from the record of its first 1 generations and the journal" in (
        resumed.restore()
    )
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


def test_a_record_rebuilt_from_its_base_takes_the_budget_of_the_session_that_rebuilds_it(
    tmp_path: Path,
) -> None:
    """journal/base.h5 holds the config of the session that continued the finished run; a
    later session with another budget rebuilds from it and writes its own config."""
    cut = tmp_path / "cut"
    _continued_then_torn(cut)
    with h5py.File(cut / "journal" / records.BASE_FILE, "r") as f:
        assert json.loads(f.attrs["config"])["experiment"]["generations"] == 3
    resumed = tiny_experiment(cut, generations=4)
    assert "rebuilt from the record of its first 1 generations" in resumed.restore()
    with h5py.File(cut / "record.h5", "r") as f:
        assert json.loads(f.attrs["config"])["experiment"]["generations"] == 4


def test_a_rebuild_that_fails_leaves_record_h5_as_it_was_and_nothing_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is rebuilt beside record.h5 and swapped in once complete: a rebuild stopped
    by an error (a journal file damaged inside its archive, found only when read) changes
    nothing, and leaves no half-rebuilt file."""
    cut = tmp_path / "cut"
    _lagging_run(cut, generations=5, appended=2, steps=4)
    killed_inside_an_append(cut)
    before = folder_contents(cut)
    real = records.RunFolder.read_journal

    def damaged(folder: records.RunFolder, generation: int) -> records.GenerationRecord:
        if generation == 3:
            raise XDreamError("journal file gen000003.npz is damaged")
        return real(folder, generation)

    monkeypatch.setattr(records.RunFolder, "read_journal", damaged)
    with pytest.raises(XDreamError, match="is damaged"):
        tiny_experiment(cut, generations=5).restore()
    assert folder_contents(cut) == before


def test_a_finished_run_restored_with_the_same_budget_keeps_no_copy_of_its_record(
    tmp_path: Path,
) -> None:
    """``journal/base.h5`` is kept only for a finished run that goes on (it rebuilds the
    record should the continued run be killed); one that does not go on needs no copy."""
    run = tmp_path / "run"
    tiny_experiment(run, generations=2).run()
    again = tiny_experiment(run, generations=2)
    again.restore()
    assert not (run / "journal" / "base.h5").exists()
    assert again.run()["status"] == "finished"


@pytest.mark.parametrize("n_conserve", [0, 1])
def test_a_score_equal_to_the_best_is_not_a_new_best(tmp_path: Path, n_conserve: int) -> None:
    """A unit that answers every image alike (or a conserved elite shown again to a
    deterministic unit): the best stays the first image to reach it, with its generation and
    its best.png."""
    exp = tiny_experiment(tmp_path / "t", generations=3)
    opt = xdream.optimizers.make(
        "genetic", dim=exp.generator.code_dim, seed=0, population_size=6, n_conserve=n_conserve
    )
    run = tmp_path / "run"
    same = Experiment(
        exp.generator, lambda images, ids: np.ones(len(ids)), opt, run, generations=3,
        n_references=0, seed=0,
    )  # fmt: skip
    summary = same.run()
    assert (summary["best_generation"], summary["best_image_id"]) == (0, "gen000_000000")
    assert (run / "best.png").read_bytes() == (run / "images" / "gen000_best.png").read_bytes()


def test_a_finished_run_continued_and_killed_before_a_new_generation_rebuilds_from_its_base(
    tmp_path: Path,
) -> None:
    """Killed while the continued run rewrote record.h5's config (before any new generation):
    the checkpoint holds as many generations as ``journal/base.h5``, which alone rebuilds it
    (the journal holds none of them)."""
    tiny_experiment(tmp_path / "full", generations=5).run()
    cut = tmp_path / "cut"
    tiny_experiment(cut, generations=3).run()
    more = tiny_experiment(cut, generations=5)
    more.restore()
    more.release_folder()  # then "killed" inside the record's rewrite
    _torn_then_rebuilt_from_base(cut, tmp_path / "full", generations=5, base=3)


def _torn_then_rebuilt_from_base(cut: Path, full: Path, generations: int, base: int) -> None:
    """A kill inside an append leaves ``cut``'s record.h5 torn; resume rebuilds it from
    journal/base.h5 (the first ``base`` generations) and the journal, and the run ends equal
    to the uninterrupted run in ``full``."""
    killed_inside_an_append(cut)
    (cut / "record.h5").write_bytes(b"\x89HDF garbage from a torn write")
    resumed = tiny_experiment(cut, generations=generations)
    assert f"record.h5 rebuilt from the record of its first {base} generations" in (
        resumed.restore()
    )
    resumed.run()
    assert_same_records(full, cut)


def test_a_torn_record_without_a_journal_to_rebuild_it_is_refused(tmp_path: Path) -> None:
    """A finished run continued by an earlier xdream has no journal/base.h5: its record can
    only be kept, and one torn by a kill still gave its generation count, so resume appended
    to it, the run "finished" and dropped the journal over a record that no longer reads. It
    is refused instead, with the record left as it is."""
    cut = tmp_path / "cut"
    tiny_experiment(cut, generations=3).run()
    more = tiny_experiment(cut, generations=7, record_interval=0)
    more.restore()
    more.step()
    (cut / "journal" / "base.h5").unlink()  # as an earlier xdream left it
    before = (cut / "record.h5").read_bytes()[40:48]
    more.step()
    more._settle()
    data = bytearray((cut / "record.h5").read_bytes())
    data[40:48] = before  # the end-of-file address before that append: torn by a kill
    (cut / "record.h5").write_bytes(bytes(data))
    killed_inside_an_append(cut)
    more.release_folder()
    assert records.H5Record(cut / "record.h5").generations() == 5  # it still counts
    torn = (cut / "record.h5").read_bytes()
    with pytest.raises(records.RecordUnreadableError, match=r"record\.h5 was unreadable"):
        tiny_experiment(cut, generations=7).restore()
    assert (cut / "record.h5").read_bytes() == torn
    assert sorted(p.name for p in (cut / "journal").iterdir()) == ["gen000003.npz", "gen000004.npz"]


def test_a_damaged_journal_file_that_a_marked_record_holds_is_not_read(tmp_path: Path) -> None:
    """A marked record already holds the generations of the journal's earlier files, so resume
    does not read them (docs/records.md): a damaged one is found only when a rebuild needs it,
    and the run goes on to records equal to an uninterrupted run's."""
    tiny_experiment(tmp_path / "full", generations=6).run()
    cut = tmp_path / "cut"
    _lagging_run(cut, generations=6, appended=3, steps=4)
    (cut / "journal" / "gen000001.npz").write_bytes(b"junk")
    resumed = tiny_experiment(cut, generations=6)
    assert resumed.restore() == (
        "record.h5 brought up to date from the journal (1 generation(s) appended)"
    )
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


def test_an_append_made_again_after_it_stopped_half_way_is_not_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append stopped between two datasets (Ctrl-C, an I/O error) is made again when the
    run stops (its records are flushed): the rows written the first time are then there twice.
    That second append marked the record, resume kept it, and it never read back again; it is
    left unmarked, and resume rebuilds it."""
    tiny_experiment(tmp_path / "full", generations=4).run()
    cut = tmp_path / "cut"
    record = records.H5Record(cut / "record.h5")
    real = records.h5._append

    def stop_after_codes(group: Any, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "scores" and record.generations() == 2:  # generation 2's codes are in
            monkeypatch.setattr(records.h5, "_append", real)
            raise KeyboardInterrupt
        real(group, name, *args, **kwargs)

    monkeypatch.setattr(records.h5, "_append", stop_after_codes)
    with pytest.raises(KeyboardInterrupt):
        tiny_experiment(cut, generations=4, record_interval=0).run()
    with h5py.File(cut / "record.h5", "r") as f:
        assert f["codes"].shape[0] > f["scores"].shape[0]  # made again: codes twice
    assert not record.mark_path.exists()
    assert record.trusted_generations() is None
    resumed = tiny_experiment(cut, generations=4)
    assert "record.h5 rebuilt from the journal" in resumed.restore()
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


def test_a_kill_while_a_finished_run_drops_its_journal_leaves_no_part_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal was deleted file by file under its own name: a kill part-way left its first
    files, so the run continued later looked as if its journal were whole, made no
    journal/base.h5, and a torn record could then not be rebuilt. It is renamed aside first."""
    tiny_experiment(tmp_path / "full", generations=6).run()
    cut = tmp_path / "cut"
    real = records.folder.shutil.rmtree

    def killed_part_way(path: Any, *args: Any, **kwargs: Any) -> None:
        files = sorted(Path(path).glob("*.npz")) if Path(path).is_dir() else []
        if len(files) > 1:  # every file but the first deleted, then the kill
            for f in files[1:]:
                f.unlink()
            raise KeyboardInterrupt
        real(path, *args, **kwargs)

    monkeypatch.setattr(records.folder.shutil, "rmtree", killed_part_way)
    with pytest.raises(KeyboardInterrupt):
        tiny_experiment(cut, generations=3).run()
    monkeypatch.undo()
    assert not (cut / "journal").exists()
    more = tiny_experiment(cut, generations=6, record_interval=0)
    more.restore()
    assert (cut / "journal" / "base.h5").is_file()
    assert not (cut / records.DROPPED_JOURNAL).exists()
    more.step()
    more._settle()
    more.release_folder()  # then killed inside an append: the record cannot be kept
    _torn_then_rebuilt_from_base(cut, tmp_path / "full", generations=6, base=3)


def test_the_writing_half_of_a_restore_runs_once(tmp_path: Path) -> None:
    """check_restore() returns the half of restore() that writes; called again, it applied its
    plan to the folder a second time (the journal's generations appended twice)."""
    tiny_experiment(tmp_path / "full", generations=6).run()
    cut = tmp_path / "cut"
    _lagging_run(cut, generations=6, appended=2, steps=4)
    resumed = tiny_experiment(cut, generations=6)
    go_on = resumed.check_restore()
    assert go_on().startswith("record.h5 brought up to date")
    with pytest.raises(XDreamError, match="call it once"):
        go_on()
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


@pytest.mark.parametrize(("budget", "generations"), [(70, 3), (60, 3), (59, 2)])
def test_presentation_budget_is_never_exceeded(
    tmp_path: Path, budget: int, generations: int
) -> None:
    """Generations of 20 codes: a budget that fits a whole generation exactly runs it."""
    exp = tiny_experiment(tmp_path / "a", generations=1)
    exp2 = Experiment(
        exp.generator, exp.scorer, exp.optimizer, tmp_path / "b", presentations=budget,
        n_references=0,
    )  # fmt: skip
    summary = exp2.run()
    assert summary["presentations"] == 20 * generations and summary["generations"] == generations


def test_restore_refuses_a_budget_below_what_has_run(tmp_path: Path) -> None:
    """Restored with a budget below the generations (or presentations) already made, a run
    went on as if the budget were spent and wrote the smaller budget into record.h5's config
    over records that hold more. It is refused, from Python objects and from a config, before
    anything is written; a budget equal to what has run finishes the run where it is."""
    from tests.test_cli import FAST_RUN, killed_run

    run = tmp_path / "run"
    exp = tiny_experiment(run, generations=6)
    exp._start()
    for _ in range(4):  # 20 codes a generation: 80 presentations
        exp.step()
    exp.flush()
    exp.release_folder()
    contents = folder_contents(run)

    def again(**budget: int) -> Experiment:
        parts = tiny_experiment(tmp_path / "parts", generations=1)
        return Experiment(
            parts.generator,
            parts.scorer,
            parts.optimizer,
            run,
            n_references=4,
            reference_seed=1,
            seed=0,
            **budget,
        )

    for key, value in (("generations", 3), ("presentations", 79)):
        with pytest.raises(XDreamError) as refused:
            again(**{key: value}).restore()
        message = str(refused.value)
        assert f"with {key}={value}: it has already run 4 generations (80 " in message
        assert "generations=4 or presentations=80" in message
        assert folder_contents(run) == contents
    resumed = again(presentations=80)
    resumed.restore()
    summary = resumed.run()
    assert (summary["generations"], summary["presentations"]) == (4, 80)
    assert records.read(run).config["experiment"]["presentations"] == 80

    # a config-defined run, restored in Python with a config that lowers its budget
    killed_run(tmp_path / "configured", generations=6, done=4)
    contents = folder_contents(tmp_path / "configured")
    lower = config_mod.from_dict(config_mod.tomllib.loads(FAST_RUN.format(generations=2)))
    with pytest.raises(XDreamError, match=r"generations: 2 in config\.yaml: it has already run"):
        Experiment.from_config(lower, tmp_path / "configured").restore()
    assert folder_contents(tmp_path / "configured") == contents


def test_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    """An experiment built from Python objects has no config.yaml, so the advice is
    restore(), not `xdream resume` (which cannot rebuild it)."""
    tiny_experiment(tmp_path / "run", generations=1).run()
    with pytest.raises(
        XDreamError, match=r"Continue it \(`e = Experiment\(\.\.\.\); e\.restore\(\); e\.run\(\)`"
    ):
        tiny_experiment(tmp_path / "run", generations=1).run()


def test_a_generator_whose_images_are_wrong_is_refused_before_the_folder_is_made(
    tmp_path: Path,
) -> None:
    """A user's generator drawing images of the wrong width was found in the first generation,
    after the run folder was made, so the same script run again once the generator was fixed
    was told the folder "already holds an experiment". It is refused with nothing written, and
    the fixed generator's run shows what a run without the early check shows."""

    ok = tiny_experiment(tmp_path / "ok", generations=2)
    ok.run()
    shown = records.read(tmp_path / "ok")
    width = [32]

    class Narrow(type(ok.generator)):  # type: ignore[misc]
        def forward(self, codes: torch.Tensor) -> torch.Tensor:
            return super().forward(codes)[..., : width[0]]

    def built(out: Path) -> Experiment:
        e = tiny_experiment(out, generations=2)
        e.generator = Narrow(e.generator.params)
        return e

    width[0] = 31
    with pytest.raises(XDreamError, match=r"returned images of shape \(1, 3, 32, 31\)"):
        built(tmp_path / "run").run()
    assert not (tmp_path / "run").exists()
    width[0] = 32  # fixed
    built(tmp_path / "run").run()
    again = records.read(tmp_path / "run")
    np.testing.assert_array_equal(again.codes, shown.codes)
    np.testing.assert_array_equal(again.scores, shown.scores)


def test_unwritable_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(XDreamError, match="cannot write to output folder") as err:
        tiny_experiment(blocker / "run", generations=1).run()
    assert "the folder argument in Python" in str(err.value)  # not only --out (audit Y8)


def test_resuming_a_read_only_folder_says_to_make_it_writable_not_to_use_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`xdream resume` has no --out, which the message told it to use."""
    import os

    exp = tiny_experiment(tmp_path / "run", generations=3)
    exp._start()
    exp.step()
    exp.release_folder()
    os_open = os.open

    def read_only(path: Any, flags: int, *args: Any) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return os_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(XDreamError) as refused:
        tiny_experiment(tmp_path / "run", generations=3).restore()
    message = str(refused.value)
    assert "Read-only file system" in message and "--out" not in message
    assert "Make it writable again (a read-only mount, changed permissions)" in message
    assert "then continue the run: `e = Experiment(...); e.restore(); e.run()` in Python" in message
    assert "xdream resume" not in message.replace("for xdream resume", "")  # built in Python


def test_record_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (mode 0600); the results must be shareable as usual."""
    import os

    tiny_experiment(tmp_path / "run", generations=1).run()
    umask = os.umask(0)
    os.umask(umask)
    for name in ("summary.json", "checkpoint.pkl", "best.png", "record.h5"):
        mode = (tmp_path / "run" / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, (name, oct(mode))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_journal_checkpoint_and_record_are_fsynced_and_what_can_be_remade_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promise that a generation survives a power cut: the journal, the checkpoint and
    record.h5 (before its mark says it is whole) reach the disk; summary.json and the PNGs,
    remade from the records, skip the cost (the summary written at the end is fsynced)."""
    run = tmp_path / "run"
    exp = tiny_experiment(run, generations=3, record_interval=0)
    mark = records.H5Record(run / "record.h5").mark_path
    synced: list[tuple[str, bool]] = []  # (the name written, the mark there at that moment)
    fsync = os.fsync

    def spy(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.endswith(records.files.TMP_SUFFIX):  # an atomic write: ".{name}.XXXX.xdream.tmp"
            name = name[1:].rsplit(".", 3)[0]
        synced.append((name, mark.exists()))
        fsync(fd)

    exp._start()
    monkeypatch.setattr(os, "fsync", spy)
    exp.step()
    exp.flush()
    names = {name for name, _ in synced}
    assert {exp.folder.journal_path(0).name, "checkpoint.pkl", "record.h5"} <= names, synced
    # the journal file's new name is on disk (its folder fsynced) before the checkpoint that
    # counts on it: POSIX asks for that, and ext4's ordering is not every file system's
    order = [name for name, _ in synced]
    journal_file = order.index(exp.folder.journal_path(0).name)
    assert journal_file < order.index("journal") < order.index("checkpoint.pkl"), synced
    assert not names & {"summary.json", "best.png", "gen000_best.png"}, synced
    assert ("record.h5", True) not in synced  # fsynced while unmarked, then marked
    # the mark's removal is put on disk (the folder fsynced) before the record changes
    assert ("run", False) in synced, synced
    assert synced.index(("run", False)) < synced.index(("record.h5", False)), synced
    assert mark.exists()
    before_the_end = len(synced)
    exp.run()  # to the end: the summary that says "finished" is fsynced
    assert "summary.json" in {name for name, _ in synced[before_the_end:]}, synced


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_the_copy_of_a_finished_runs_record_is_fsynced_when_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """journal/base.h5 is where a rebuild of a continued finished run starts (its journal is
    gone): it reaches the disk before the run goes on."""
    run = tmp_path / "run"
    tiny_experiment(run, generations=2).run()
    synced: list[str] = []
    fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    tiny_experiment(run, generations=4).restore()
    assert (run / "journal" / records.BASE_FILE).is_file()
    assert any(name.startswith(f".{records.BASE_FILE}.") for name in synced), synced
    copied = next(i for i, n in enumerate(synced) if n.startswith(f".{records.BASE_FILE}."))
    assert "journal" in synced[copied:] and "run" in synced[copied:], synced  # names on disk


def test_record_h5_lags_by_the_interval_only_and_is_complete_at_the_end(tmp_path: Path) -> None:
    tiny_experiment(tmp_path / "every", generations=5, record_interval=0).run()
    exp = tiny_experiment(tmp_path / "lazy", generations=5, record_interval=3600)
    run = exp.generations()
    for _ in range(3):
        next(run)
    # journal and checkpoint every generation (the third may still be being written);
    # record.h5 only at the first flush
    assert len(list((tmp_path / "lazy" / "journal").glob("gen*.npz"))) in (2, 3)
    assert records.H5Record(tmp_path / "lazy" / "record.h5").generations() == 1
    assert json.loads((tmp_path / "lazy" / "summary.json").read_text())["generations"] == 1
    for _ in run:
        pass
    exp.finish()
    assert_same_records(tmp_path / "every", tmp_path / "lazy")


def test_appends_to_record_h5_are_spaced_to_a_tenth_of_a_many_unit_runs_time(
    tmp_path: Path,
) -> None:
    """Each unit of a many-unit run appends its own record.h5 in one writer thread; with
    hundreds of units a lockstep generation outlasts record_interval, so every unit appended
    every generation and the appends set the run's pace (2.2 s of a 3.8 s generation, 200
    units). Now a unit appends no more often than every units x append time / APPEND_SHARE."""
    from xdream.experiment import APPEND_LAG_MAX

    tiny_experiment(tmp_path / "every", generations=5, record_interval=0).run()
    exp = tiny_experiment(tmp_path / "many", generations=5, record_interval=1e-9)
    exp.lockstep_units = 10**9  # the appends of so many units would outlast any run
    run = exp.generations()
    for _ in range(4):
        next(run)
    exp._wait_written()
    assert records.H5Record(tmp_path / "many" / "record.h5").generations() == 1  # the first
    assert exp._flush_interval() == APPEND_LAG_MAX  # put off, but not beyond the cap
    for _ in run:
        pass
    exp.lockstep_units = None  # (summary.json would say so)
    exp.finish()
    assert_same_records(tmp_path / "every", tmp_path / "many")  # complete at the end
    exp.lockstep_units, exp._flush_seconds = 200, 0.011  # 11 ms an append, 200 units: 22 s
    assert exp._flush_interval() == pytest.approx(22.0)
    exp.lockstep_units = None  # one unit: the interval as set, when the appends are cheap
    exp.record_interval = 2.0
    assert exp._flush_interval() == 2.0
    exp.record_interval = 0.0  # every generation: as asked
    assert exp._flush_interval() == 0.0


def test_records_are_written_in_the_background_one_generation_at_a_time(
    tmp_path: Path,
) -> None:
    """A network unit scores the next generation while the last one's records are written;
    the loop waits for them before handing over another, and the records are unchanged."""
    tiny_experiment(tmp_path / "plain", generations=4).run()
    exp = tiny_experiment(tmp_path / "run", generations=4)
    gate = threading.Event()
    write = exp._write

    def held(*args: Any) -> None:
        assert threading.current_thread() is not threading.main_thread()
        gate.wait(30)
        write(*args)

    exp._write = held  # type: ignore[method-assign]
    run = exp.generations()
    next(run)  # generation 0 is scored and told; its records wait at the gate
    assert not list((tmp_path / "run" / "journal").glob("gen*.npz"))
    second = threading.Thread(target=next, args=(run,))
    second.start()
    second.join(1.0)
    assert second.is_alive()  # generation 1 cannot hand over its records before 0's are out
    gate.set()
    second.join(30)
    assert not second.is_alive()
    assert (tmp_path / "run" / "journal" / "gen000000.npz").exists()
    for _ in run:
        pass
    exp.finish()
    assert_same_records(tmp_path / "plain", tmp_path / "run")


def test_a_failed_background_write_stops_the_run(tmp_path: Path) -> None:
    exp = tiny_experiment(tmp_path / "run", generations=4)

    def broken(*args: Any) -> None:
        where = str(tmp_path / "run" / "checkpoint.pkl")
        raise PermissionError(errno.EACCES, "Permission denied", where)

    exp._write = broken  # type: ignore[method-assign]
    with pytest.raises(XDreamError, match="Permission denied") as stop:  # what to do, one line
        exp.run()
    assert isinstance(stop.value.__cause__, PermissionError)


def test_an_interrupted_run_brings_record_h5_up_to_the_journal(tmp_path: Path) -> None:
    exp = tiny_experiment(tmp_path / "run", generations=6, record_interval=3600)
    run = exp.generations()
    for _ in range(4):
        next(run)
    run.close()  # what an exception or Ctrl-C inside the loop does
    assert records.H5Record(tmp_path / "run" / "record.h5").generations() == 4
    resumed = tiny_experiment(tmp_path / "run", generations=6)
    resumed.restore()
    resumed.run()
    tiny_experiment(tmp_path / "full", generations=6).run()
    assert_same_records(tmp_path / "full", tmp_path / "run")


def looks_while_scoring(exp: Experiment, look: Callable[[], Any]) -> list[Any]:
    """What ``look()`` returns each time ``exp`` scores a batch (filled as it runs)."""
    seen: list[Any] = []
    score = exp.scorer.score

    def spy(images: Any, ids: list[str]) -> Any:
        seen.append(look())
        return score(images, ids)

    exp.scorer.score = spy  # type: ignore[method-assign]
    return seen


@pytest.fixture
def restore_tf32() -> Any:
    """Put PyTorch's TF32 flags back as they were (they are process-wide)."""
    from xdream.precision import tf32_allowed, tf32_mode

    with tf32_mode(tf32_allowed()):  # which puts them back when it ends
        yield


def test_an_experiment_under_pytorchs_fp32_precision_api_runs_and_puts_it_back(
    tmp_path: Path, restore_tf32: Any
) -> None:
    """A program that set TF32 through PyTorch's fp32_precision API (torch 2.9 and later)
    made every experiment crash: reading the legacy allow_tf32 flags then raises. The
    experiment computes in IEEE float32 and leaves every fp32_precision setting as it was
    (matmul's "none", inheriting, had become "ieee")."""
    import torch

    from xdream.precision import tf32_allowed

    b = torch.backends
    if not hasattr(b.cuda.matmul, "fp32_precision"):
        pytest.skip("this torch has no fp32_precision API")
    settings = [b, b.cudnn, b.cuda.matmul, b.cudnn.conv, b.cudnn.rnn, b.mkldnn, b.mkldnn.matmul]
    saved = [s.fp32_precision for s in settings]
    try:
        for s in settings[1:]:  # inherit, whatever earlier code in this process set
            s.fp32_precision = "none"
        b.fp32_precision = "tf32"
        b.cuda.matmul.fp32_precision = "none"  # inherits "tf32"
        before = [s.fp32_precision for s in settings]
        exp = tiny_experiment(tmp_path / "run", generations=2)
        seen = looks_while_scoring(exp, lambda: (tf32_allowed(), tf32_allowed("matmul")))
        exp.run()
        assert seen == [(False, False)] * 2
        assert [s.fp32_precision for s in settings] == before
        assert tf32_allowed() and tf32_allowed("matmul")
    finally:
        for s, value in zip(settings, saved):
            s.fp32_precision = value


def test_an_experiment_scores_in_ieee_float32_on_a_cpu_set_to_bfloat16(
    tmp_path: Path, restore_tf32: Any
) -> None:
    """torch.backends.fp32_precision = "bf16" (or set_float32_matmul_precision("medium")) lets
    oneDNN compute float32 in bfloat16 on the CPU: the scores moved by up to 18% where the CPU
    has bfloat16 units. The experiment scores in IEEE float32 and puts the setting back."""
    import torch

    b = torch.backends
    if not hasattr(getattr(b.mkldnn, "matmul", None), "fp32_precision"):
        pytest.skip("this torch has no fp32_precision API for oneDNN")
    plain = tiny_experiment(tmp_path / "plain", generations=2)
    plain.run()
    settings = [b, b.mkldnn, b.mkldnn.matmul, b.mkldnn.conv, b.mkldnn.rnn]
    saved = [s.fp32_precision for s in settings]
    try:
        b.fp32_precision = "bf16"
        before = [s.fp32_precision for s in settings]
        exp = tiny_experiment(tmp_path / "run", generations=2)
        seen = looks_while_scoring(exp, lambda: [s.fp32_precision for s in settings[2:]])
        exp.run()
        assert seen == [["ieee"] * 3] * 2
        assert [s.fp32_precision for s in settings] == before
    finally:
        for s, value in zip(settings, saved):
            s.fp32_precision = value
    np.testing.assert_array_equal(
        records.read(tmp_path / "run").scores, records.read(tmp_path / "plain").scores
    )


def test_experiments_compute_in_ieee_float32_unless_tf32_is_asked(
    tmp_path: Path, restore_tf32: Any
) -> None:

    from xdream.experiment import Experiment
    from xdream.precision import set_tf32, tf32_allowed

    def watched(exp: Experiment) -> list[tuple[bool, bool]]:
        """The TF32 flags (convolutions, matrix products) each time ``exp`` scores a batch."""
        return looks_while_scoring(exp, lambda: (tf32_allowed(), tf32_allowed("matmul")))

    set_tf32(True)  # as PyTorch starts for convolutions
    default = tiny_experiment(tmp_path / "default", generations=3)
    asked = tiny_experiment(tmp_path / "asked", generations=3, tf32=True)
    assert default.tf32 is False and asked.tf32 is True
    off, on = watched(default), watched(asked)
    default._start()
    asked._start()
    # two experiments in one process, generations interleaved: each scores as it asks ...
    for _ in range(3):
        default.step()
        asked.step()
    assert off == [(False, False)] * 3 and on == [(True, True)] * 3
    # ... and the caller's own setting is put back after every generation
    assert tf32_allowed() and tf32_allowed("matmul")
    set_tf32(False)
    asked.run()
    assert on[-1] == (True, True) and not tf32_allowed()
    # put back after an error in the scorer too
    failing = tiny_experiment(tmp_path / "failing", tf32=True)
    failing.scorer.score = lambda images, ids: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(ZeroDivisionError):
        failing.run()
    assert not tf32_allowed() and not tf32_allowed("matmul")
    # from a config: the key reaches the experiment and its resolved config
    cfg = config_mod.from_dict(
        {
            "experiment": {"generations": 2, "n_references": 0},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "target": {"layer": "stem", "channel": 0, "image_size": 32},
        }
    )
    exp = Experiment.from_config(cfg, tmp_path / "config")
    assert exp.tf32 is False
    assert cfg.to_dict()["experiment"]["tf32"] is False


def test_a_generator_with_tensors_renders_on_the_targets_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config's generator that holds tensors (``fourier``'s weights, DeePSiM's) is moved to
    the ``[target]``'s device, so that on a CUDA machine it renders on the GPU where the
    network scores; a rig run's stays on the CPU. Without CUDA here, the device the experiment
    resolves for the generator is made ``meta`` (the scorer resolves its own: the CPU)."""
    import xdream.scorers.cnn

    asked: list[str] = []

    def resolve(device: str) -> torch.device:
        asked.append(device)
        return torch.device("meta")

    monkeypatch.setattr(xdream.scorers.cnn, "resolve_device", resolve)
    base = {
        "experiment": {"generations": 2, "n_references": 0},
        "generator": {"name": "fourier", "size": 32, "max_freq": 4},
    }
    target = {"layer": "stem", "channel": 0, "image_size": 32, "device": "auto"}
    exp = Experiment.from_config(config_mod.from_dict({**base, "target": target}), tmp_path / "t")
    assert asked == ["auto"]
    assert exp.generator.device.type == "meta"
    # on the CPU, and for a rig run, the generator is left where it was built
    monkeypatch.undo()
    on_cpu = Experiment.from_config(  # "cpu": "auto" is CUDA on a machine with a GPU
        config_mod.from_dict({**base, "target": {**target, "device": "cpu"}}), tmp_path / "c"
    )
    assert on_cpu.generator.device.type == "cpu"
    monkeypatch.setattr(xdream.scorers.cnn, "resolve_device", resolve)
    rig = {**base, "rig": {"timeout": 3.0}}
    assert (
        Experiment.from_config(config_mod.from_dict(rig), tmp_path / "r").generator.device.type
        == "cpu"
    )
    assert asked == ["auto"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_cuda_renders_there_and_resumes_to_the_same_records(tmp_path: Path) -> None:
    cfg = {
        "experiment": {"generations": 3, "n_references": 2, "seed": 3},
        "generator": {"name": "fourier", "size": 32, "max_freq": 4},
        "target": {"layer": "stem", "channel": 0, "image_size": 32, "device": "cuda"},
    }
    whole = Experiment.from_config(config_mod.from_dict(cfg), tmp_path / "whole")
    assert whole.generator.device.type == "cuda"
    whole.run()
    cut = Experiment.from_config(config_mod.from_dict(cfg), tmp_path / "cut")
    cut._start()
    cut.step()
    del cut  # "killed": fresh objects, state only from disk
    again = Experiment.from_config(config_mod.from_dict(cfg), tmp_path / "cut")
    again.restore()
    assert again.generation == 1 and again.generator.device.type == "cuda"
    again.run()
    assert_same_records(tmp_path / "whole", tmp_path / "cut")


class _FullDisk:
    """A disk that fills up at a chosen generation: its journal write fails (``OSError``
    ENOSPC, as for a journal, PNG or checkpoint), or the free space falls below what the next
    ``record.h5`` append needs (the check that keeps HDF5 away from a full disk)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: int, where: str) -> None:
        self.full = True
        write_journal = records.RunFolder.write_journal
        disk_usage = records.faults.shutil.disk_usage

        def journal(folder: records.RunFolder, rec: records.GenerationRecord) -> None:
            if self.full and where == "journal" and rec.generation >= at:
                raise OSError(errno.ENOSPC, "No space left on device", str(folder.path))
            write_journal(folder, rec)

        def usage(path: Any) -> Any:
            real = disk_usage(path)
            if self.full and where == "record" and self.generations(path) >= at:
                return real._replace(free=records.SPACE_MARGIN // 2)
            return real

        monkeypatch.setattr(records.RunFolder, "write_journal", journal)
        monkeypatch.setattr(records.faults.shutil, "disk_usage", usage)

    @staticmethod
    def generations(folder: Any) -> int:
        journal = Path(folder) / "journal"
        return len(list(journal.glob("*.npz"))) if journal.exists() else 0


@pytest.mark.parametrize("where", ["journal", "record"])
def test_a_full_disk_stops_the_run_with_one_clear_error_and_resume_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The disk fills up mid-run: the run stops with a DiskFullError that says how to go on
    (not a chain of HDF5 tracebacks, nor h5py's crash on a file it failed to write), and once
    there is space again the resumed run ends with the records of an uninterrupted one."""
    from xdream.errors import DiskFullError

    tiny_experiment(tmp_path / "full", generations=8, record_interval=0).run()
    disk = _FullDisk(monkeypatch, at=4, where=where)
    cut = tmp_path / "cut"
    with pytest.raises(DiskFullError) as stop:
        tiny_experiment(cut, generations=8, record_interval=0).run()
    message = str(stop.value)
    assert message.startswith(f"the disk of {cut} is full (")
    assert "then continue the run: `e = Experiment(...); e.restore(); e.run()` in Python" in message
    assert ("No space left on device" if where == "journal" else "MiB free") in message
    assert records.H5Record(cut / "record.h5").generations() <= 4  # readable, nothing torn

    if where == "record":  # resumed before space was freed: rebuilding record.h5 stops too
        with pytest.raises(
            DiskFullError,
            match=r"then continue the run: `e = Experiment\(\.\.\.\); e\.restore\(\); e\.run\(\)`",
        ):
            tiny_experiment(cut, generations=8, record_interval=0).restore()
    disk.full = False  # space freed
    resumed = tiny_experiment(cut, generations=8, record_interval=0)
    resumed.restore()
    assert 3 <= resumed.generation <= 4
    resumed.run()
    assert_same_records(tmp_path / "full", cut)


@pytest.mark.parametrize("change", ["moved", "older copy", "torn"])
def test_a_record_changed_while_the_run_goes_on_stops_it_and_resume_rebuilds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """record.h5 moved away mid-run was made anew by the next append, without its attributes
    and earlier generations, and the run finished, dropping the journal (the only complete
    copy); one replaced by an older copy likewise, and one torn (that still counts its
    generations right). The run now stops saying so, keeps its journal, and resume rebuilds
    the record."""
    tiny_experiment(tmp_path / "full", generations=5, record_interval=0).run()
    cut = tmp_path / "cut"
    write_journal, flush = records.RunFolder.write_journal, Experiment.flush

    end_of_file = b""

    def journal(folder: records.RunFolder, rec: records.GenerationRecord) -> None:
        nonlocal end_of_file
        if rec.generation == 3:  # generations 0-2 are in record.h5
            if change == "moved":
                folder.record.rename(tmp_path / "moved.h5")
            elif change == "older copy":
                shutil.copyfile(folder.record, tmp_path / "older.h5")
        if rec.generation == 4:  # the superblock's end-of-file address before the last append
            end_of_file = folder.record.read_bytes()[40:48]
        write_journal(folder, rec)

    def last_flush(exp: Experiment) -> None:
        nonlocal end_of_file
        flush(exp)
        if change == "older copy" and exp.generation == 5:
            shutil.copyfile(tmp_path / "older.h5", exp.folder.record)
        if change == "torn" and exp.generation == 5 and end_of_file:  # as a kill inside
            data = bytearray(exp.folder.record.read_bytes())  # that append leaves it
            data[40:48] = end_of_file
            exp.folder.record.write_bytes(bytes(data))
            killed_inside_an_append(exp.folder.path)
            assert records.H5Record(exp.folder.record).generations() == 5  # it still counts
            end_of_file = b""  # once (finish() flushes again)

    monkeypatch.setattr(records.RunFolder, "write_journal", journal)
    monkeypatch.setattr(Experiment, "flush", last_flush)
    with pytest.raises(XDreamError) as stop:
        tiny_experiment(cut, generations=5, record_interval=0).run()
    message = str(stop.value)
    if change == "moved":
        assert "is gone: it was moved or deleted" in message
    elif change == "torn":
        assert "record.h5 in" in message and "cannot be read" in message
    else:
        assert "holds 3 generations where the run has 5" in message
    assert "continuing the run rebuilds record.h5 from " in message
    assert "(`e = Experiment(...); e.restore(); e.run()` in Python" in message  # built in Python
    assert (cut / "journal").is_dir()
    assert records.read_summary(cut)["status"] == "running"
    monkeypatch.undo()
    resumed = tiny_experiment(cut, generations=5, record_interval=0)
    resumed.restore()
    resumed.run()
    assert_same_records(tmp_path / "full", cut)
    assert not (cut / "journal").exists()


@pytest.mark.parametrize("fault", ["read-only", "moved"])
def test_a_folder_made_read_only_or_moved_mid_run_is_one_clear_error_and_resume_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A folder remounted read-only (or its permissions taken away), moved or deleted while the
    run goes on stopped it with the system's OSError (a 40-line traceback in the CLI) and a
    note naming the old path; it is one XDreamError naming the file and what to do, and the
    run resumes (under its new name) to an uninterrupted run's records."""
    tiny_experiment(tmp_path / "full", generations=5, record_interval=0).run()
    cut, moved = tmp_path / "cut", tmp_path / "moved"
    write_journal = records.RunFolder.write_journal

    def journal(folder: records.RunFolder, rec: records.GenerationRecord) -> None:
        if rec.generation == 3:
            if fault == "moved":
                folder.path.rename(moved)
            else:
                tmp = folder.journal / f".gen000003.npz.x1y2{records.TMP_SUFFIX}"
                raise OSError(errno.EROFS, "Read-only file system", str(tmp))
        write_journal(folder, rec)

    monkeypatch.setattr(records.RunFolder, "write_journal", journal)
    with pytest.raises(XDreamError) as stop:
        tiny_experiment(cut, generations=5, record_interval=0).run()
    message = str(stop.value)
    if fault == "moved":
        assert message.startswith(f"the folder {cut} was moved or deleted while the run went on")
        (note,) = stop.value.__cause__.__notes__  # for Python callers: its current path too
        assert note.endswith(
            "the folder was moved or deleted: continuing the run from its current path "
            "rebuilds them"
        )
        assert (
            "current path (`xdream resume` there, or e = Experiment(...); e.restore(); e.run()"
            in message
        )
    else:
        assert message.startswith(
            f"cannot write {cut / 'journal' / 'gen000003.npz'} (Read-only file system)"
        )
        assert (
            "make it writable again, then continue the run: `e = Experiment(...); e.restore()"
            in message
        )
    monkeypatch.undo()
    folder = moved if fault == "moved" else cut
    resumed = tiny_experiment(folder, generations=5, record_interval=0)
    resumed.restore()
    assert resumed.generation == 3
    resumed.run()
    assert_same_records(tmp_path / "full", folder)


def test_an_atomic_write_that_fails_to_flush_raises_one_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush that fails (a full disk) was raised again by the file's close, two chained
    OSErrors; the temporary file is removed and the old version stays."""
    import io
    import os

    class FullDisk(io.RawIOBase):
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            if not self.closed:
                os.close(self.fd)
            super().close()

    def fdopen(fd: int, mode: str) -> Any:
        raw = io.BufferedWriter(FullDisk(fd))
        return raw if "b" in mode else io.TextIOWrapper(raw)

    path = tmp_path / "summary.json"
    records.write_json(path, {"old": 1})
    monkeypatch.setattr(records.files.os, "fdopen", fdopen)
    with pytest.raises(OSError, match="No space left") as err:
        records.write_json(path, {"new": 2})
    assert err.value.__context__ is None and err.value.__cause__ is None
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_full_disk_is_recognised_in_what_h5py_and_the_system_raise() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:
            raise RuntimeError("Can't destroy cache") from err
    except RuntimeError as chained:
        assert records.is_disk_full(chained)
    h5py_text = "file write failed: errno = 28, error message = 'No space left on device'"
    assert records.is_disk_full(OSError(h5py_text))
    assert records.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not records.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not records.is_disk_full(ValueError("a bug"))


def test_a_second_experiment_in_the_same_process_is_refused_and_the_first_keeps_its_folder(
    tmp_path: Path,
) -> None:
    """POSIX locks belong to the process: a second Experiment on a folder the first still runs
    (a notebook cell run again) took it, and closing its lock file freed the first one's lock;
    both then wrote one record.h5. It is refused now, and the first goes on holding it."""
    from tests.helpers import folder_held_by_another_process
    from xdream.errors import FolderInUseError

    tiny_experiment(tmp_path / "full", generations=4).run()
    first = tiny_experiment(tmp_path / "run", generations=4)
    first._start()
    first.step()
    second = tiny_experiment(tmp_path / "run", generations=4)
    with pytest.raises(
        FolderInUseError,
        match=r"another experiment of this process.*then e = Experiment\(\.\.\.\); "
        r"e\.restore\(\); e\.run\(\)",
    ):
        second.restore()
    with pytest.raises(FolderInUseError, match="another experiment of this process"):
        second.run()
    from xdream.report import folder_held

    assert folder_held(tmp_path / "run") is True  # the system still has the first's lock
    with pytest.raises(AssertionError), folder_held_by_another_process(tmp_path / "run"):
        pass  # so another process cannot take it: the refusals freed nothing
    assert first.run()["status"] == "finished"
    assert_same_records(tmp_path / "full", tmp_path / "run")
    again = tiny_experiment(tmp_path / "run", generations=4)  # the first has let go
    again.restore()
    again.release_folder()


def test_a_run_stopped_by_an_error_lets_another_process_take_its_folder(tmp_path: Path) -> None:
    """The folder is held while the run goes and freed when it stops with an error (a rig
    fault, say) though the Experiment object lives on, so a new process can resume it; the
    same object continuing takes it again, and lets go when it has finished."""
    from tests.helpers import folder_held_by_another_process
    from xdream.errors import FolderInUseError

    exp = tiny_experiment(tmp_path / "run", generations=4)
    score, calls = exp.scorer.score, []

    def faulty(images: Any, ids: list[str]) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the rig stopped answering")
        return score(images, ids)

    exp.scorer.score = faulty  # type: ignore[method-assign]
    gen = exp.generations()
    next(gen)  # running: the folder is held
    with pytest.raises(AssertionError), folder_held_by_another_process(tmp_path / "run"):
        pass
    with pytest.raises(RuntimeError, match="stopped answering"):
        next(gen)
    with folder_held_by_another_process(tmp_path / "run"), pytest.raises(FolderInUseError):
        exp.run()  # continuing while another process holds it
    assert exp.run()["status"] == "finished"  # the other process is gone: taken again
    with folder_held_by_another_process(tmp_path / "run"):
        pass  # a finished run lets go of its folder


def _files(run: Path) -> dict[Path, tuple[int, int]]:
    """Every file of a run folder but its lock file: modification time and size."""
    found = (p for p in run.rglob("*") if p.is_file() and p.name != records.LOCK_FILE)
    return {p.relative_to(run): (p.stat().st_mtime_ns, p.stat().st_size) for p in found}


@pytest.mark.parametrize("how", ["run", "finish", "step"])
def test_a_stopped_run_continued_while_another_process_has_it_writes_nothing_there(
    tmp_path: Path, how: str
) -> None:
    """The refused run() rewrote the live run's summary.json on its way out, and finish()
    marked the other process's run finished and dropped its journal; step() is refused too."""
    from tests.helpers import folder_held_by_another_process
    from xdream.errors import FolderInUseError

    run = tmp_path / "run"
    exp = tiny_experiment(run, generations=6)
    for record in exp.generations():
        if record.generation == 2:
            break  # stopped: the folder is free for `xdream resume` in another process
    before = _files(run)
    assert (run / "summary.json") in {run / p for p in before}
    with folder_held_by_another_process(run), pytest.raises(FolderInUseError):
        getattr(exp, how)()
    assert _files(run) == before
    assert exp.run()["status"] == "finished"  # the other process is gone: taken again


def _noisy_tiny(out: Path, optimizer: str) -> Any:
    """A tiny experiment whose scores carry gain noise (its own RNG, saved in checkpoints)."""
    from xdream.scorers.noise import NoisyScorer, make_noise

    exp = tiny_experiment(out, generations=5, drop=0.1, optimizer=optimizer)
    exp.scorer = NoisyScorer(exp.scorer, make_noise("gain", ns=0.5), seed=3)
    return exp


@pytest.mark.parametrize("optimizer", ["genetic", "annealed-es"])
@pytest.mark.parametrize("fail_at", [1, 3])
def test_the_same_object_continues_after_an_error_as_if_uninterrupted(
    tmp_path: Path, optimizer: str, fail_at: int
) -> None:
    """A fault after a generation drew its references and its noise (a rig that stops
    answering, Ctrl-C): calling run() again on the same object, as a notebook would, gives the
    records of an uninterrupted run, also when the first generation is the one that failed."""
    _noisy_tiny(tmp_path / "full", optimizer).run()
    exp = _noisy_tiny(tmp_path / "cut", optimizer)
    score, calls = exp.scorer.score, []

    def faulty(images: Any, ids: list[str]) -> Any:
        scores = score(images, ids)  # the noise is drawn, then the fault
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("the rig stopped answering")
        return scores

    exp.scorer.score = faulty  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="stopped answering"):
        exp.run()
    assert exp.generation == fail_at - 1
    assert exp.run()["generations"] == 5
    assert_same_records(tmp_path / "full", tmp_path / "cut")


def test_a_loop_left_early_and_steps_after_an_error_continue_as_if_uninterrupted(
    tmp_path: Path,
) -> None:
    """Leaving the generations() loop early leaves the next generation proposed (references
    drawn); continuing with run() or step() gives an uninterrupted run's records, and a step
    that fails is taken again from the last generation on disk."""
    _noisy_tiny(tmp_path / "full", "genetic").run()
    exp = _noisy_tiny(tmp_path / "cut", "genetic")
    for rec in exp.generations():
        if rec.generation == 1:
            break
    exp.step()  # generation 2
    score = exp.scorer.score

    def fails_after_scoring(images: Any, ids: list[str]) -> Any:
        score(images, ids)
        raise KeyboardInterrupt

    exp.scorer.score = fails_after_scoring  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        exp.step()
    exp.scorer.score = score  # type: ignore[method-assign]
    assert exp.step().generation == 3
    exp.run()
    assert_same_records(tmp_path / "full", tmp_path / "cut")


def test_a_run_whose_finish_fails_lets_go_of_its_folder_and_finishes_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final summary cannot be written (a full disk): the folder is freed at once, not when
    the object is garbage-collected, and run() again or `xdream resume` finishes the run."""
    from tests.helpers import folder_held_by_another_process
    from xdream import experiment as experiment_mod
    from xdream.errors import DiskFullError

    tiny_experiment(tmp_path / "full", generations=3).run()
    write_json, full = experiment_mod.write_json, [True]

    def no_space_for_the_end(path: Path, data: dict[str, Any], **kw: Any) -> None:
        if full[0] and data.get("status") == "finished":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_json(path, data, **kw)

    monkeypatch.setattr(experiment_mod, "write_json", no_space_for_the_end)
    exp = tiny_experiment(tmp_path / "cut", generations=3)
    with pytest.raises(DiskFullError, match="is full"):
        exp.run()
    with folder_held_by_another_process(tmp_path / "cut"):
        pass  # another process could take it
    full[0] = False
    assert exp.run()["status"] == "finished"
    assert_same_records(tmp_path / "full", tmp_path / "cut")


def test_scores_come_as_lists_arrays_or_tensors_and_anything_else_is_one_clear_error(
    tmp_path: Path,
) -> None:
    """A PyTorch user's scorer may hand back the tensor it computed (with its graph, on any
    device); strings, dicts and complex numbers are refused with what was expected."""
    import torch

    exp = tiny_experiment(tmp_path / "tensor", generations=2)
    red = exp.scorer.score
    exp.scorer.score = lambda images, ids: torch.as_tensor(red(images, ids)).requires_grad_()  # type: ignore[method-assign]
    exp.run()
    tiny_experiment(tmp_path / "plain", generations=2).run()
    assert_same_records(tmp_path / "plain", tmp_path / "tensor")

    none = tiny_experiment(tmp_path / "none", generations=1)
    none.scorer.score = lambda images, ids: [None] * len(ids)  # type: ignore[method-assign]
    assert none.run()["best_image"] is None  # None: no response, as NaN

    for i, (bad, shown) in enumerate(
        [
            (lambda n: ["1.5"] * n, "list ['1.5'"),
            (lambda n: {"score": 1.0}, "dict {'score': 1.0}"),
            (lambda n: np.ones(n) * 1j, "ndarray array([0.+1.j"),
            (lambda n: torch.ones(n, dtype=torch.complex64), "Tensor tensor([1.+0.j"),
        ]
    ):
        exp = tiny_experiment(tmp_path / f"bad{i}", generations=1)
        exp.scorer.score = lambda images, ids, bad=bad: bad(len(ids))  # type: ignore[method-assign]
        with pytest.raises(XDreamError, match="expected one real number per image") as err:
            exp.run()
        assert f"the scorer returned {shown}" in str(err.value)


def folder_contents(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``, but the lock file, which the
    process that holds the folder rewrites with its own pid."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
        if p.name != records.LOCK_FILE
    }


@pytest.mark.parametrize("finished", [False, True])
def test_a_lost_checkpoint_is_refused_and_the_folder_left_alone(
    tmp_path: Path, finished: bool
) -> None:
    """Without checkpoint.pkl a run's progress cannot be continued; starting it again from the
    first generation would overwrite its records (it did: "resuming at generation 0")."""
    run = tmp_path / "run"
    exp = tiny_experiment(run, generations=3 if finished else 6)
    if finished:
        exp.run()  # the journal is gone, record.h5 and summary.json hold 3 generations
    else:
        exp._start()
        for _ in range(3):
            exp.step()
        exp.flush()
    exp.release_folder()
    (run / "checkpoint.pkl").unlink()
    (run / "images" / ".gen003_best.png.x1y2z3.xdream.tmp").write_bytes(b"torn")
    before = folder_contents(run)
    with pytest.raises(XDreamError) as caught:
        tiny_experiment(run, generations=6).restore()
    message = str(caught.value)
    assert "checkpoint.pkl is missing" in message and "nothing was changed" in message
    assert "3 generations in record.h5" in message
    assert ("the summary of a finished run" in message) == finished
    assert ("3 generations in journal/" in message) == (not finished)
    assert "xdream.records.read" in message and "another --out" in message
    assert folder_contents(run) == before  # not even the temporary file was removed
    assert len(records.read(run).best_per_generation) == 3


@pytest.mark.parametrize("sign", ["two journal files", "an unreadable record.h5"])
def test_a_lost_checkpoint_is_refused_on_a_single_sign_of_progress(
    tmp_path: Path, sign: str
) -> None:
    """Two journal files (beside a record.h5 that has no generation yet), or a record.h5 that
    cannot be read, show that generations finished: without the checkpoint
    the run is refused, not started again over them (one journal file is a run killed in
    its first generation, which starts again)."""
    run = tmp_path / "run"
    exp = tiny_experiment(run, generations=6, record_interval=3600)
    exp._start()
    for _ in range(2):
        exp.step()
    exp._settle()
    exp.release_folder()
    (run / "checkpoint.pkl").unlink()
    (run / "summary.json").unlink(missing_ok=True)
    records.H5Record(run / "record.h5").truncate(0)  # no generation there: only the journal
    if sign == "an unreadable record.h5":
        exp.folder.journal_path(1).unlink()
        (run / "record.h5").write_bytes(b"torn")
    before = folder_contents(run)
    with pytest.raises(XDreamError) as caught:
        tiny_experiment(run, generations=6).restore()
    message = str(caught.value)
    assert "checkpoint.pkl is missing" in message and "nothing was changed" in message
    expected = "2 generations in journal/" if sign == "two journal files" else "cannot be read"
    assert expected in message, message
    assert folder_contents(run) == before


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path: Path) -> None:
    """The first generation's journal file (and best image) is written before its checkpoint;
    a kill in between leaves no checkpoint and one journal file: the run starts again."""
    tiny_experiment(tmp_path / "full", generations=3).run()
    run = tmp_path / "cut"
    exp = tiny_experiment(run, generations=3)
    exp._start()
    empty = (run / "record.h5").read_bytes()
    exp.step()
    exp.release_folder()
    (run / "checkpoint.pkl").unlink()
    (run / "record.h5").write_bytes(empty)  # the kill came before record.h5 was appended
    (run / "summary.json").unlink()
    assert sorted(p.name for p in (run / "journal").iterdir()) == ["gen000000.npz"]
    resumed = tiny_experiment(run, generations=3)
    assert "starting from the first" in resumed.restore()
    assert resumed.generation == 0
    resumed.run()
    assert_same_records(tmp_path / "full", run)


# what docs/records.md says a new run refuses, listed here rather than taken from
# RunFolder.OUTPUTS: a name dropped from there would drop its case too
DOCUMENTED_OUTPUTS = (
    "config.yaml", "record.h5", "checkpoint.pkl", "summary.json", "best.png", "init_codes.npy",
    "units.csv", "report.html", ".record.h5.ok", "record.h5.unreadable-17",
    "images", "journal", "units", "rig", "report", "renders",
)  # fmt: skip


@pytest.mark.parametrize("name", DOCUMENTED_OUTPUTS)
def test_a_new_run_refuses_a_folder_holding_what_a_run_writes(tmp_path: Path, name: str) -> None:
    """Only checkpoint.pkl, record.h5, config.yaml and units/ protected a folder: a run into
    one holding the user's best.png or summary.json replaced them."""
    out = tmp_path / "out"
    out.mkdir()
    path = out / name
    if "." in name:
        path.write_text("mine")
    else:  # a folder: one file in it
        path.mkdir()
        (path / "mine.txt").write_text("mine")
    before = folder_contents(out)
    with pytest.raises(XDreamError, match=re.escape(name)) as caught:
        tiny_experiment(out, generations=1).run()
    assert "choose another output folder" in str(caught.value).lower()
    assert folder_contents(out) == before


def test_a_new_run_takes_a_folder_with_unrelated_files_or_empty_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)  # empty: nothing to overwrite
    (out / "journal").mkdir()
    (out / "notes.txt").write_text("mine")
    tiny_experiment(out, generations=1).run()
    assert (out / "notes.txt").read_text() == "mine"
    assert len(records.read(out).best_per_generation) == 1


def test_config_changes_compare_sections_whole_and_keys_both_versions_know() -> None:
    """A section added or removed (`[noise]`) is a change; a key that only one xdream version
    resolves (added or retired between sessions) is not, so an upgrade does not block resume."""
    from xdream import config
    from xdream.experiment import config_changes

    old = config.from_dict({}).to_dict()
    noisy = config.from_dict({"noise": {"name": "gain"}}).to_dict()
    assert config_changes(old, noisy) == (["noise: None -> {'name': 'gain', 'ns': 0.2}"], [])
    newer = {section: {**keys, "added_later": 1} for section, keys in old.items()}
    assert config_changes(old, newer) == ([], [])
    moved = {**old, "target": {**old["target"], "channel": 9, "device": "cpu"}}
    assert config_changes(old, moved) == (
        ["target.channel: 0 -> 9"],
        [f"target.device: {old['target']['device']!r} -> 'cpu'"],
    )


def test_a_plain_function_scores_and_other_roles_of_the_wrong_kind_are_named(
    tmp_path: Path,
) -> None:
    """`Experiment(generator, my_function, optimizer, out)` runs as with a Scorer; a string
    where a generator or an optimiser belongs is one clear error, not an AttributeError."""
    from tests.helpers import RedScorer
    from xdream.experiment import Experiment

    tiny_experiment(tmp_path / "scorer", generations=2).run()
    exp = tiny_experiment(tmp_path / "function", generations=2)
    red = RedScorer()
    built = Experiment(
        exp.generator, lambda images, ids: red.score(images, ids), exp.optimizer,
        tmp_path / "function", generations=2, n_references=4, reference_seed=1, seed=0,
    )  # fmt: skip
    summary = built.run()
    assert summary["target"]["kind"] == "function"
    a, b = records.read(tmp_path / "scorer"), records.read(tmp_path / "function")
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.scores, b.scores)
    with pytest.raises(XDreamError, match="the generator must be an xdream Generator"):
        Experiment("pixels", red, exp.optimizer, tmp_path / "x")  # type: ignore[arg-type]
    with pytest.raises(XDreamError, match=r"the optimizer must be .* got str 'genetic'"):
        Experiment(exp.generator, red, "genetic", tmp_path / "x")  # type: ignore[arg-type]


def test_a_run_built_in_python_renders_as_the_unit_saw_it(tmp_path: Path) -> None:
    """The record holds the generator's parameters, so `xdream render` without --size draws
    what the unit saw; a record of an earlier xdream (the name only) draws with the defaults
    and says so."""
    from PIL import Image

    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream.experiment import Experiment
    from xdream.render import render

    gen = xdream.generators.make("fourier", size=64, contrast=1.0)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
    run = tmp_path / "py"
    Experiment(gen, RedScorer(), opt, run, generations=3, n_references=2, record_interval=0).run()
    assert records.read(run).config["generator"]["contrast"] == 1.0
    (drawn,) = render(run, ["best"], out=tmp_path / "renders")
    np.testing.assert_array_equal(
        np.asarray(Image.open(drawn)), np.asarray(Image.open(run / "best.png"))
    )
    with h5py.File(run / "record.h5", "a") as f:  # as an earlier xdream wrote it
        config = json.loads(f.attrs["config"])
        f.attrs["config"] = json.dumps({**config, "generator": "fourier"})
    with pytest.warns(UserWarning, match=r"default parameters \(size=128, .*contrast=2\.5"):
        (drawn,) = render(run, ["best"], out=tmp_path / "old")
    assert Image.open(drawn).size == (128, 128)


def test_a_run_built_in_python_records_its_optimizers_seed(tmp_path: Path) -> None:
    """Experiment(seed=None): summary.json's seed is the optimiser's, the one it was made with
    or the entropy NumPy drew for it, which draws the same codes again; kept on resume."""
    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream.experiment import Experiment

    gen = xdream.generators.make("pixels", size=32, code_size=8)
    for seed in (0, None):

        def build(out: Path, seed: int | None = seed) -> Experiment:
            opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=seed)
            return Experiment(gen, RedScorer(), opt, out, generations=2, n_references=0)

        summary = build(tmp_path / f"s{seed}").run()
        if seed is not None:
            assert summary["seed"] == seed
            continue
        recorded = summary["seed"]
        assert isinstance(recorded, int)
        again = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=recorded).ask()
        first = records.read(tmp_path / "sNone")
        np.testing.assert_array_equal(again, first.codes[first.generation == 0])
        stopped = build(tmp_path / "resumed")
        stopped.step()
        stopped.release_folder()
        first_seed = stopped.seed
        resumed = build(tmp_path / "resumed")  # another optimiser, with fresh entropy
        assert resumed.seed != first_seed
        resumed.restore()
        assert resumed.run()["seed"] == first_seed


def test_an_earlier_checkpoint_without_a_seed_continues_with_the_seed_unknown(
    tmp_path: Path,
) -> None:
    """A run of an earlier xdream built without seed= has no seed in its checkpoint: the
    continued run's summary says null, not the fresh entropy of this session's optimiser."""
    import pickle

    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream.experiment import Experiment

    gen = xdream.generators.make("pixels", size=32, code_size=8)

    def build() -> Experiment:
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim)
        return Experiment(gen, RedScorer(), opt, tmp_path / "run", generations=3, n_references=0)

    stopped = build()
    stopped.step()
    stopped.release_folder()
    checkpoint = tmp_path / "run" / "checkpoint.pkl"
    state = pickle.loads(checkpoint.read_bytes())
    del state["seed"]  # as an earlier xdream wrote it
    checkpoint.write_bytes(pickle.dumps(state))
    resumed = build()
    resumed.restore()
    resumed.step()  # the next session's checkpoint says null: unknown in every later session
    resumed.release_folder()
    again = build()
    again.restore()
    assert again.run()["seed"] is None


def test_a_run_stopped_before_a_told_generation_is_written_summarises_what_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the next generation is proposed, after one was told but before its
    records were handed over: summary.json counted the told generation, one more than the
    journal, the checkpoint and record.h5 hold."""
    from xdream.experiment import Experiment

    exp = tiny_experiment(tmp_path / "run", generations=4)
    original, calls = Experiment.propose, []

    def propose(self: Experiment) -> Any:
        calls.append(1)
        if len(calls) == 3:  # generation 2's, after generation 1 was told
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Experiment, "propose", propose)
    with pytest.raises(KeyboardInterrupt):
        exp.run()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(records.read(tmp_path / "run").best_per_generation) == 1
    assert summary["generations"] == 1
    assert summary["presentations"] == len(records.read(tmp_path / "run").scores)


@pytest.mark.parametrize("error", [PermissionError(errno.EACCES, "Permission denied"),
                                   FileNotFoundError(errno.ENOENT, "No such device")])  # fmt: skip
def test_a_scorers_own_os_error_is_not_taken_for_the_folders(
    tmp_path: Path, error: OSError
) -> None:
    """A scorer (a rig's driver, a model loading a file) raising EACCES or ENOENT that names no
    file was reported as the run folder made read-only or deleted, hiding the real error."""
    exp = tiny_experiment(tmp_path / "run", generations=3)
    score = exp.scorer.score

    def failing(images: Any, ids: list[str]) -> Any:
        if exp.generation >= 1:
            raise error
        return score(images, ids)

    exp.scorer.score = failing  # type: ignore[method-assign]
    with pytest.raises(type(error)) as raised:
        exp.run()
    assert raised.value is error
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith("tmp")]


def test_a_seed_other_than_the_optimizers_is_refused(tmp_path: Path) -> None:
    """Experiment(seed=S) seeded nothing: runs given seeds 1 and 2 with one optimiser were the
    same run, each labelled with another seed. A seed other than the optimiser's is refused,
    saying how to seed the run; the optimiser's own seed, or none, is taken."""
    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream.experiment import Experiment

    gen = xdream.generators.make("pixels", size=32, code_size=8)

    def build(out: str, optimizer_seed: int, **seed: int) -> Experiment:
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=optimizer_seed)
        return Experiment(gen, RedScorer(), opt, tmp_path / out, generations=1, **seed)

    with pytest.raises(XDreamError) as refused:
        build("refused", 0, seed=1)
    message = str(refused.value)
    assert "seed=1 is not the seed of the optimiser (0)" in message
    assert "make('genetic', dim=..., seed=1)" in message and "leave seed out" in message
    assert not (tmp_path / "refused").exists()
    assert build("given", 1, seed=1).run()["seed"] == 1
    assert build("left-out", 2).run()["seed"] == 2


def test_a_numpy_integer_seed_is_the_runs_seed(tmp_path: Path) -> None:
    """An optimiser seeded with a NumPy integer: the run recorded its seed as null, and a
    seed= other than it was taken and recorded."""
    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream.experiment import Experiment

    gen = xdream.generators.make("pixels", size=32, code_size=8)

    def build(out: str, **options: Any) -> Experiment:
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=np.int64(5))
        return Experiment(gen, RedScorer(), opt, tmp_path / out, generations=1, **options)

    with pytest.raises(XDreamError, match=r"seed=7 is not the seed of the optimiser \(5\)"):
        build("refused", seed=7)
    summary = build("left-out", n_references=0).run()
    assert (
        summary["seed"] == 5
        and records.read(tmp_path / "left-out").config["experiment"]["seed"] == 5
    )
    assert build("given", seed=np.int64(5), n_references=0).run()["seed"] == 5


def test_a_run_built_in_python_records_its_optimizers_hyperparameters(tmp_path: Path) -> None:
    """record.h5's config of an Experiment built from Python objects named the optimiser only:
    its hyperparameters were saved nowhere. It now holds them, as a config's [optimizer], and
    the run's budget, references and seeds; the report of a record that names the optimiser
    alone (an earlier xdream's) still shows it."""
    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream import report

    gen = xdream.generators.make("pixels", size=32, code_size=8)
    opt = xdream.optimizers.make(
        "genetic", dim=gen.code_dim, seed=0, mutation_rate=0.123, population_size=12
    )
    run = tmp_path / "hp"
    Experiment(gen, RedScorer(), opt, run, generations=2, n_references=3, reference_seed=77).run()
    recorded = records.read(run).config
    assert recorded["optimizer"] == {"name": "genetic", **opt.params.__dict__}
    assert recorded["optimizer"]["mutation_rate"] == 0.123
    assert recorded["experiment"] == {
        "seed": 0,
        "generations": 2,
        "presentations": None,
        "n_references": 3,
        "reference_seed": 77,
    }
    (run / "summary.json").unlink()  # the report then names the optimiser from the record
    assert "<td>genetic</td>" in report.write_report(run).read_text()
    with h5py.File(run / "record.h5", "a") as f:  # as an earlier xdream wrote it
        config = json.loads(f.attrs["config"])
        f.attrs["config"] = json.dumps({**config, "optimizer": "genetic"})
    assert "<td>genetic</td>" in report.write_report(run).read_text()


@pytest.mark.parametrize("save_images", ["best", "none"])
def test_save_images_none_makes_no_images_folder(tmp_path: Path, save_images: str) -> None:
    run = tmp_path / "run"
    tiny_experiment(run, generations=2, save_images=save_images).run()
    assert (run / "best.png").is_file()
    if save_images == "best":
        assert sorted(p.name for p in (run / "images").iterdir()) == [
            "gen000_best.png",
            "gen001_best.png",
        ]
    else:
        assert not (run / "images").exists()
        assert records.read(run).best_per_generation.size == 2  # the run itself is whole


def test_restore_takes_an_unseeded_noisy_scorer_made_again_and_refuses_another_noise_seed(
    tmp_path: Path,
) -> None:
    """A NoisyScorer made without a seed draws a new noise_seed each session: restore() takes
    it (the checkpoint's noise goes on, and the record keeps the first session's seed), as it
    takes an unseeded optimiser; another seed given is refused, naming both."""
    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream.errors import ConfigChangedError
    from xdream.scorers import NoisyScorer, make_noise

    def build(noise_seed: int | None, out: Path) -> Experiment:
        gen = xdream.generators.make("pixels", size=16, code_size=4)
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
        noisy = NoisyScorer(RedScorer(), make_noise("poisson", scale=2.0), seed=noise_seed)
        return Experiment(gen, noisy, opt, out, generations=3, n_references=0)

    for first, again in ((None, None), (5, None), (5, 7)):
        out = tmp_path / f"{first}-{again}"
        stopped = build(first, out)
        stopped.step()
        stopped.flush()
        recorded = records.read(out).config["target"]["noise_seed"]
        assert recorded == first or (first is None and recorded >= 2**64)
        stopped.release_folder()
        resumed = build(again, out)
        if again is not None:
            with pytest.raises(
                ConfigChangedError, match=rf"target\.noise_seed: {first} -> {again}"
            ):
                resumed.restore()
            continue
        resumed.restore()
        resumed.run()
        assert records.read(out).config["target"]["noise_seed"] == recorded


def test_restore_refuses_objects_other_than_those_the_run_was_built_with(
    tmp_path: Path,
) -> None:
    """restore() of a run built from Python objects took any unit, generator parameters,
    hyperparameters, seed and reference settings, and rewrote record.h5's config and
    summary.json as if the whole run had used them. It refuses each change, naming it, before
    anything is written; a larger budget is still taken; an earlier checkpoint (no record of
    the objects) is compared with record.h5's copy; a config's run is not continued from
    objects."""
    import pickle

    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from tests.test_cli import killed_run
    from xdream.errors import ConfigChangedError

    run = tmp_path / "run"

    def build(
        size: int = 32, drop: float = 0.0, rate: float = 0.5, seed: int | None = 0, **kw: Any
    ) -> Experiment:
        gen = xdream.generators.make("pixels", size=size, code_size=8)
        opt = xdream.optimizers.make(
            "genetic", dim=gen.code_dim, seed=seed, population_size=6, mutation_rate=rate
        )
        given = {"generations": 3, "n_references": 2, "reference_seed": 1, **kw}
        return Experiment(gen, RedScorer(drop), opt, run, **given)

    stopped = build()
    stopped.step()
    stopped.release_folder()
    contents = folder_contents(run)
    for changed, named in (
        ({"drop": 0.5}, "target.drop: 0.0 -> 0.5"),
        ({"size": 16}, "generator.size: 32 -> 16"),
        ({"rate": 0.9}, "optimizer.mutation_rate: 0.5 -> 0.9"),
        ({"seed": 5}, "experiment.seed: 0 -> 5"),
        ({"n_references": 5}, "experiment.n_references: 2 -> 5"),
        ({"reference_seed": 9}, "experiment.reference_seed: 1 -> 9"),
    ):
        with pytest.raises(ConfigChangedError) as refused:
            build(**changed).restore()  # type: ignore[arg-type]
        message = str(refused.value)
        assert f"cannot restore {str(run)!r}: the objects given differ from those the run " in (
            message
        )
        assert f"({named}), and continuing would mix two experiments" in message
        assert "Build the generator, scorer and optimiser (and n_references, reference_seed)" in (
            message
        )
        assert "config.yaml" not in message
        assert folder_contents(run) == contents
    with pytest.raises(XDreamError, match=r"\(optimizer\.mutation_rate: 0\.5 -> 0\.9; target"):
        build(drop=0.5, rate=0.9).restore()
    # an earlier xdream's checkpoint: record.h5's copy of the config says what the run was
    state = pickle.loads((run / "checkpoint.pkl").read_bytes())
    del state["built"]
    (run / "checkpoint.pkl").write_bytes(pickle.dumps(state))
    with pytest.raises(ConfigChangedError, match=r"\(target\.drop: 0\.0 -> 0\.5\)"):
        build(drop=0.5).restore()
    # the budget may change; an optimiser made without a seed takes the run's
    longer = build(seed=None, generations=4)
    longer.restore()
    assert longer.config_changes == ["experiment.generations: 3 -> 4"]
    assert longer.run()["generations"] == 4
    assert records.read(run).config["experiment"]["seed"] == 0

    killed_run(tmp_path / "configured", generations=3, done=1)
    parts = build()
    with pytest.raises(XDreamError, match=r"holds an experiment built from a config .*resume"):
        Experiment(
            parts.generator, parts.scorer, parts.optimizer, tmp_path / "configured"
        ).restore()


def test_a_restored_run_keeps_the_schedule_it_was_built_with_unwarned(tmp_path: Path) -> None:
    """Continued with a larger budget, a run built in Python keeps its optimiser's step-size
    schedule (another one is refused): Experiment no longer warns, for a folder it continues,
    that the schedule should be the new budget's."""
    import warnings

    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer
    from xdream.errors import ConfigChangedError

    gen = xdream.generators.make("pixels", size=32, code_size=8)

    def build(schedule: int, budget: int) -> Experiment:
        opt = xdream.optimizers.make("annealed-es", dim=gen.code_dim, seed=0, generations=schedule)
        return Experiment(gen, RedScorer(), opt, tmp_path / "run", generations=budget)

    with pytest.warns(UserWarning, match="anneals its step size over generations=2"):
        build(2, 3)  # a new run: warned
    stopped = build(2, 2)
    stopped.step()
    stopped.release_folder()
    with pytest.raises(ConfigChangedError, match=r"\(optimizer\.generations: 2 -> 4\)"):
        build(4, 4).restore()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        longer = build(2, 4)
    longer.restore()
    assert longer.run()["generations"] == 4


def test_step_and_finish_keep_to_the_budget(tmp_path: Path) -> None:
    """step() after run() had finished raised a raw FileNotFoundError naming a temporary
    journal file, and step() ran past the budget; finish() before the budget was spent wrote a
    "finished" summary (and dropped the journal), and on an Experiment that had not started
    wrote one into a new folder that run() then refused. Each is one XDreamError, nothing
    written."""
    finished = tmp_path / "finished"
    done = tiny_experiment(finished, generations=2)
    done.run()
    contents = folder_contents(finished)
    with pytest.raises(XDreamError) as refused:
        done.step()
    message = str(refused.value)
    assert f"the run in {str(finished)!r} has spent its budget of 2 generations" in message
    assert "so step() ran none and wrote nothing: it has finished" in message
    assert f"Experiment(generator, scorer, optimizer, {str(finished)!r}, generations=N)" in message
    assert folder_contents(finished) == contents

    stepped = tiny_experiment(tmp_path / "stepped", generations=2)
    assert [stepped.step().generation for _ in range(2)] == [0, 1]
    with pytest.raises(XDreamError, match=r"spent its budget .* finish\(\) closes it, as run"):
        stepped.step()
    assert stepped.finish()["generations"] == 2
    assert len(records.read(tmp_path / "stepped").best_per_generation) == 2

    broken = tmp_path / "broken"
    early = tiny_experiment(broken, generations=3)
    for _ in early.generations():
        break
    with pytest.raises(XDreamError) as refused:
        early.finish()
    message = str(refused.value)
    assert f"the run in {str(broken)!r} has run 1 of its 3 generations (20 presentations)" in (
        message
    )
    assert "generations=1); e.restore(); e.run()` with the objects it was built with" in message
    assert json.loads((broken / "summary.json").read_text())["status"] == "running"
    assert (broken / "journal").is_dir()
    assert early.run()["generations"] == 3

    fresh = tmp_path / "fresh"
    unstarted = tiny_experiment(fresh, generations=2)
    with pytest.raises(XDreamError, match=r"has not started one in .*nothing was written"):
        unstarted.finish()
    assert not fresh.exists()
    assert unstarted.run()["status"] == "finished"


def test_restore_compares_the_scorer_as_described_before_it_was_bound(tmp_path: Path) -> None:
    """A scorer may describe itself otherwise once bound to the folder (a rig names its
    folders resolved in it): restore(), and a step after an error, compare it as described
    before the first bind, so the same objects are not refused."""
    import xdream.generators
    import xdream.optimizers
    from tests.helpers import RedScorer

    class Bound(RedScorer):
        def __init__(self) -> None:
            super().__init__()
            self.folder: Path | None = None
            self.fail = False

        def bind(self, folder: Path) -> None:
            self.folder = folder

        def describe(self) -> dict[str, object]:
            return {"kind": "bound", "write_dir": str(self.folder or "") + "stimuli"}

        def score(self, images: Any, ids: list[str]) -> Any:
            if self.fail:
                self.fail = False
                raise RuntimeError("no response")
            return super().score(images, ids)

    def build() -> Experiment:
        gen = xdream.generators.make("pixels", size=16, code_size=4)
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
        return Experiment(gen, Bound(), opt, tmp_path / "run", generations=4, n_references=0)

    first = build()
    first.step()
    first.scorer.fail = True  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        first.step()
    first.step()  # back to the last generation on disk, the same objects
    first.release_folder()
    again = build()
    again.restore()
    assert again.run()["generations"] == 4


def test_the_summary_type_names_every_key_of_summary_json(tmp_path: Path) -> None:
    """``xdream.experiment.Summary`` (the type run() returns) has exactly the keys a run's
    summary.json holds: required ones always, ``process`` while it runs, ``lockstep_units``
    in a many-unit run."""
    import types
    import typing

    from xdream.experiment import Summary

    required, optional = Summary.__required_keys__, Summary.__optional_keys__
    assert optional == {"process", "lockstep_units"}
    experiment = tiny_experiment(tmp_path / "run", generations=2)
    experiment.step()
    experiment.flush()
    running = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(running) == required | {"process"}
    summary = experiment.run()
    assert set(summary) == set(json.loads((tmp_path / "run" / "summary.json").read_text()))
    assert set(summary) == required
    hints = typing.get_type_hints(Summary)
    for key, value in summary.items():  # each value of the type it says (None where allowed)
        kind = hints[key]
        if typing.get_origin(kind) is typing.Literal:
            assert value in typing.get_args(kind)
            continue
        union = isinstance(kind, types.UnionType)
        options = typing.get_args(kind) if union else (kind,)
        if value is None:
            assert type(None) in options, (key, kind)
            continue
        classes = tuple(typing.get_origin(a) or a for a in options if a is not type(None))
        assert isinstance(value, classes), (key, value, kind)


def test_a_first_generation_without_an_answer_has_no_best_score(tmp_path: Path) -> None:
    """Like the other scores, the first generation's best is None (null in summary.json) when
    no image of it was answered; run() returned NaN for it, which its type did not allow."""
    summary = tiny_experiment(tmp_path / "run", generations=2, drop=1.0).run()
    assert summary["first_generation_best_score"] is None
    assert summary["best_score"] is None
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["first_generation_best_score"] is None


def test_moved_files_takes_a_new_path_only_for_a_file_of_the_same_size_and_fingerprint() -> None:
    """A weight file is the same file at a new path only where both its size and its
    fingerprint (SHA-256 of its first and last MiB, which a file differing in the middle
    shares) are the recorded ones; only that path is taken, nothing is changed in place, and
    a path that did not change is left as it was (mutation audit N)."""
    from xdream.experiment import moved_files

    then = {"target": {"weights": "/a/w.pt", "channel": 3}, "generator": {"name": "pixels"}}
    now = {"target": {"weights": "/b/w.pt", "channel": 4}, "generator": {"name": "pixels"}}
    files = {"target.weights": {"path": "/a/w.pt", "size": 10, "sha256_ends": "f0"}}

    def read(size: int, ends: str) -> dict[str, dict[str, object]]:
        return {"target.weights": {"path": "/b/w.pt", "size": size, "sha256_ends": ends}}

    moved = moved_files(then, now, files, read(10, "f0"))
    assert moved == {**then, "target": {"weights": "/b/w.pt", "channel": 3}}
    assert then["target"] == {"weights": "/a/w.pt", "channel": 3}  # not changed in place
    assert moved["generator"] is then["generator"]
    for other in (read(11, "f0"), read(10, "f1")):  # longer, or another fingerprint
        assert moved_files(then, now, files, other) == then
    assert moved_files(then, now, None, read(10, "f0")) is then  # nothing recorded
    same = {**now, "target": {**now["target"], "weights": "/a/w.pt"}}
    assert moved_files(then, same, files, read(10, "f0"))["target"] is then["target"]


def test_where_files_were_names_only_the_files_a_checkpoint_records_with_their_path(
    tmp_path: Path,
) -> None:
    """The hint of a resume that cannot find a weight file names each file the checkpoint
    records with its path, and is '' where it records none with a path (a record of another
    form is left out, not an error that hides the missing file's; mutation audit N)."""
    from xdream.experiment import where_files_were
    from xdream.records import save_checkpoint

    checkpoint = tmp_path / "checkpoint.pkl"
    save_checkpoint(checkpoint, {"files": {"target.weights": {"size": 10}}})
    assert where_files_were(checkpoint) == ""
    save_checkpoint(
        checkpoint,
        {"files": {"target.weights": {"size": 10}, "generator.weights": {"path": "/g.pt"}}},
    )
    hint = where_files_were(checkpoint)
    assert hint.startswith(" The run read these files: [generator] weights was /g.pt (")
    assert "[target]" not in hint


def test_with_hint_puts_one_full_stop_between_an_error_and_its_hint() -> None:
    """The error is followed by the hint as its own sentence: a full stop is added only where
    the error has none, and nothing at all is added without a hint (mutation audit U)."""
    from xdream.experiment import with_hint

    assert with_hint(ValueError("gone"), " The run read x.") == "gone. The run read x."
    assert with_hint(ValueError("gone."), " The run read x.") == "gone. The run read x."
    assert with_hint(ValueError("gone"), "") == "gone"


def test_files_recorded_takes_the_first_checkpoint_that_records_files(tmp_path: Path) -> None:
    """A sweep's or a study's first checkpoints may be missing (a task not run yet), unreadable
    (damaged, a path the system refuses) or record no files: the files of the first that
    records any are taken, and None where none does (mutation audit U)."""
    from xdream.experiment import files_recorded
    from xdream.records import save_checkpoint

    files = {"target.weights": {"path": "/a/w.pt", "size": 10}}
    missing = tmp_path / "missing" / "checkpoint.pkl"
    damaged = tmp_path / "damaged.pkl"
    damaged.write_bytes(b"not a pickle")
    too_long = tmp_path / ("x" * 300) / "checkpoint.pkl"  # stat() fails with an OSError
    empty = tmp_path / "empty.pkl"
    save_checkpoint(empty, {"files": {}})
    good = tmp_path / "good.pkl"
    save_checkpoint(good, {"files": files})
    assert files_recorded([missing, damaged, too_long, empty, good]) == files
    assert files_recorded([missing, damaged, empty]) is None


def test_on_target_device_asks_for_the_targets_device_and_leaves_a_generator_without_tensors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The device a generator is moved to is the one the [target] names (resolved as the
    scorer resolves it), and a user's generator that holds no parameters or buffers is not
    moved at all (its .to is not called), nor is any generator for a CPU target (mutation
    audit U)."""
    import xdream.scorers.cnn
    from xdream.experiment import on_target_device
    from xdream.generators import Generator, make

    asked: list[str] = []

    def resolve(device: str) -> torch.device:
        asked.append(device)
        return torch.device("meta")

    monkeypatch.setattr(xdream.scorers.cnn, "resolve_device", resolve)

    class Bare(Generator):
        name = "bare"

        def __init__(self) -> None:
            super().__init__(None)
            self.code_dim, self.output_size, self.moved = 2, (8, 8), 0

        def to(self, *args: Any, **kwargs: Any) -> Any:
            self.moved += 1
            return super().to(*args, **kwargs)

        def forward(self, codes: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(codes), 3, 8, 8)

    target = {"layer": "stem", "channel": 0, "image_size": 32, "device": "cuda:1"}
    cfg = config_mod.from_dict({"experiment": {"generations": 2}, "target": target})
    bare = Bare()
    assert on_target_device(bare, cfg) is bare and bare.moved == 0
    fourier = make("fourier", size=32, max_freq=4)
    assert on_target_device(fourier, cfg).device.type == "meta"
    assert asked == ["cuda:1"]
    monkeypatch.undo()  # a CPU target leaves a generator where it is (here on meta)
    on_cpu = config_mod.from_dict(
        {"experiment": {"generations": 2}, "target": {**target, "device": "cpu"}}
    )
    assert on_target_device(fourier, on_cpu).device.type == "meta"
