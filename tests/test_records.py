"""Reading a record back: comparing two records, and what reading a folder that is no
experiment's says."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.helpers import many_unit_folder, tiny_experiment
from xdream import records
from xdream.errors import DiskFullError, XDreamError


def test_records_compare_by_value_with_nan_equal(tmp_path: Path) -> None:
    """``read(a) == read(a)`` raised "The truth value of an array ... is ambiguous"."""
    tiny_experiment(tmp_path / "a", generations=2, drop=0.3).run()
    first, again = records.read(tmp_path / "a"), records.read(tmp_path / "a")
    assert np.isnan(first.scores).any()  # NaN (no response) compares equal to NaN
    assert first == again
    changed = dataclasses.replace(again, codes=again.codes.copy())
    changed.codes[0, 0] += 1.0
    assert first != changed
    assert first != dataclasses.replace(again, image_ids=[*again.image_ids[:-1], "other"])
    assert first != dataclasses.replace(again, scores=again.scores.astype(np.float32)[:-1])
    assert first != dataclasses.replace(again, summary={**again.summary, "best_score": 0.0})
    assert first != "a record"


def test_reading_a_many_unit_runs_folder_names_its_unit_folders(tmp_path: Path) -> None:
    """It said only "holds no record.h5: is it an experiment folder?", where `xdream render`
    of the same folder names the unit folders to read."""
    many, names = many_unit_folder(tmp_path)
    with pytest.raises(XDreamError) as err:
        records.read(many)
    message = str(err.value)
    assert "is a many-unit run: each unit's record is in its own folder" in message
    assert f"xdream.records.read({str(many / 'units' / names[0])!r})" in message
    assert f"Its units (7): {', '.join(names[:5])} and 2 more" in message
    with pytest.raises(XDreamError, match=r"holds no record\.h5 of its own: the run folders"):
        records.read(tmp_path)  # the folder above: the runs below it (units/ of many/)
    (tmp_path / "empty").mkdir()
    with pytest.raises(XDreamError, match=r"holds no record\.h5: is it an experiment folder"):
        records.read(tmp_path / "empty")  # no runs: as before


def test_a_folder_names_the_runs_one_to_three_levels_below_it(tmp_path: Path) -> None:
    """Runs right below a folder and three levels down are named; one four levels down is
    not looked for (a mistaken folder high in a file system is not walked deeper). Mutation
    audit W: a walk from the second level, and one to the fourth, survived."""
    for run in ("runs/a", "runs/b", "deep/x/y/z", "deeper/w/x/y/z"):
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "record.h5").write_bytes(b"")
    with pytest.raises(XDreamError, match=r"runs with a record \(2\): a, b$"):
        records.read(tmp_path / "runs")
    with pytest.raises(XDreamError, match=r"runs with a record \(1\): x/y/z$"):
        records.read(tmp_path / "deep")
    with pytest.raises(XDreamError, match=r"holds no record\.h5: is it an experiment folder"):
        records.read(tmp_path / "deeper")


def test_checking_the_journal_refuses_what_reading_it_would(tmp_path: Path) -> None:
    """A many-unit resume checks each unit's journal before it writes in any unit's folder:
    the check refuses a missing, junk, cut or incomplete file as reading it would (the same
    line, naming the file and the problem), and passes a whole journal."""
    exp = tiny_experiment(tmp_path / "run", generations=4)
    exp._start()
    exp.step()
    exp.step()
    exp.flush()
    exp.release_folder()
    folder = records.RunFolder(tmp_path / "run")
    folder.check_journal(0, 2)
    path = folder.journal_path(1)
    whole = path.read_bytes()
    with np.load(path) as a:
        arrays = {k: a[k] for k in a.files}
    damages: list[tuple[str, Callable[[], object]]] = [
        ("missing", lambda: path.unlink()),
        ("not an .npz archive", lambda: path.write_bytes(b"junk")),
        ("BadZipFile", lambda: path.write_bytes(whole[: len(whole) // 2])),
    ]
    for name in arrays:  # each array a generation holds, left out in turn
        rest = {k: v for k, v in arrays.items() if k != name}
        damages.append(("KeyError", lambda rest=rest: np.savez(path, **rest)))  # type: ignore[misc]
    assert len(damages) == 3 + 11
    for problem, damage in damages:
        path.write_bytes(whole)
        damage()
        with pytest.raises(XDreamError) as checked:
            folder.check_journal(0, 2)
        with pytest.raises(XDreamError) as read:
            folder.read_journal(1)
        said = f"journal file {str(path)!r} is damaged ({problem}"
        assert str(checked.value).startswith(said), str(checked.value)
        assert str(read.value).startswith(said), str(read.value)
        assert str(checked.value).split("), ")[1] == str(read.value).split("), ")[1]
    path.write_bytes(whole)
    folder.check_journal(0, 2)


FORK_WHILE_THE_GUARD_IS_HELD = """
import os, sys, threading, time
from xdream import records

held, done = threading.Event(), threading.Event()

def hold():
    with records.locks._HELD_GUARD:
        held.set()
        done.wait()

threading.Thread(target=hold, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:  # the child: lock the folder, let go, and leave at once
    try:
        records.RunFolder(sys.argv[1]).lock().release()
    finally:
        os._exit(0)
deadline = time.monotonic() + 30
while not os.waitpid(pid, os.WNOHANG)[0]:
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        sys.exit("the forked child waited for its parent's guard")
    time.sleep(0.01)
done.set()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_locks_a_folder_while_a_thread_of_its_parent_holds_the_guard(
    tmp_path: Path,
) -> None:
    """A forked child gets a fresh guard of the table of held folders (the parent's may be held
    by a thread the child does not have): RunFolder.lock must take the child's, which a name
    imported into records/folder.py before the fork would not be. In a fresh interpreter: in
    this one, the collector could free an earlier test's FolderLock while the guard is held."""
    script = [sys.executable, "-c", FORK_WHILE_THE_GUARD_IS_HELD, str(tmp_path)]
    out = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_json_files_take_numpy_values_and_write_non_finite_numbers_as_null(tmp_path: Path) -> None:
    data = {
        "flag": np.bool_(True),
        "count": np.int64(3),
        "score": np.float32(0.5),
        "missing": np.float64("nan"),
        "inf": float("inf"),
        "pair": (1, np.float32("-inf")),
        7: "key made a string",
    }
    path = tmp_path / "out.json"
    records.write_json(path, data)
    assert json.loads(path.read_text()) == {
        "flag": True,
        "count": 3,
        "score": 0.5,
        "missing": None,
        "inf": None,
        "pair": [1, None],
        "7": "key made a string",
    }


def test_reading_a_sweep_folder_says_what_it_is_and_where_its_runs_are(tmp_path: Path) -> None:
    """records.read of an `xdream sweep` folder said only "holds no record.h5: is it an
    experiment folder?"."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.csv").write_text("unit,optimizer,seed,state\n")
    with pytest.raises(XDreamError, match=r"is an `xdream sweep` folder: .*none holds a record"):
        records.read(out)
    run = out / "stem_3" / "genetic" / "seed0"
    run.mkdir(parents=True)
    (run / "record.h5").write_bytes(b"")
    with pytest.raises(XDreamError) as err:
        records.read(out)
    said = f"read one of those (e.g. xdream.records.read({str(run)!r})); runs with a record (1): "
    assert said + "stem_3/genetic/seed0" in str(err.value)
    assert "UNIT/OPTIMIZER/seedS" in str(err.value)


def test_the_octave_recipe_of_the_docs_converts_a_record_octave_loads(tmp_path: Path) -> None:
    """Octave has no h5read and its load stops at record.h5's first string dataset, which the
    docs did not say; docs/records.md's recipe writes a .mat file, checked here as written
    there (and loaded by octave-cli where it is installed)."""
    import re
    import shutil

    import scipy.io

    section = (
        (Path(__file__).parents[1] / "docs" / "records.md").read_text().split("### GNU Octave")[1]
    )
    python, matlab = re.findall(r"```(?:python|matlab)\n(.*?)```", section, re.S)[:2]
    run = tmp_path / "run"
    tiny_experiment(run, generations=4, drop=0.2).run()
    demo = "xdream-runs/20261125-120000-demo"
    exec(python.replace(demo, str(run)), {})  # the docs' own code
    rec, mat = records.read(run), scipy.io.loadmat(run / "record.mat")
    np.testing.assert_array_equal(mat["codes"], rec.codes)
    np.testing.assert_array_equal(mat["scores"][:, 0], rec.scores)  # NaN where no response
    assert [str(c[0]) for c in mat["image_ids"][:, 0]] == rec.image_ids
    assert [str(c[0]) for c in mat["ref_ids"][:, 0]] == rec.ref_ids
    assert mat["best_score"][3, 0] == np.nanmax(rec.scores[rec.generation == 3])
    octave = shutil.which("octave-cli")
    if octave is not None:
        script = (
            matlab.replace(demo, str(run)) + "printf('%d %d %.17g %s', size(codes), best, photo);"
        )
        out = subprocess.run([octave, "--no-gui", "--eval", script], capture_output=True, text=True)
        n, d, best, photo = out.stdout.split()[-4:]
        assert (int(n), int(d)) == rec.codes.shape
        assert float(best) == rec.best_per_generation[3]
        assert rec.ref_ids[0] == f"ref_{photo}_" + "_".join(rec.ref_ids[0].split("_")[-3:])


def test_the_octave_recipe_of_the_docs_converts_the_codes_of_encode(tmp_path: Path) -> None:
    """codes.h5 of `xdream encode` has a string dataset (the names) too, so Octave's load
    stopped at it as at record.h5's; docs/records.md's recipe for it writes a .mat file, checked
    here as written there (and loaded by octave-cli where it is installed)."""
    import re
    import shutil

    import h5py
    import scipy.io
    import torch

    from xdream import encode, generators

    section = (
        (Path(__file__).parents[1] / "docs" / "records.md").read_text().split("### GNU Octave")[1]
    )
    blocks = re.findall(r"```(python|matlab)\n(.*?)```", section, re.S)
    python = next(code for kind, code in blocks if kind == "python" and "codes.h5" in code)
    matlab = next(code for kind, code in blocks if kind == "matlab" and "codes.mat" in code)
    gen = generators.make("pixels", size=8, code_size=4)
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    result = encode.encode(gen, images, steps=3)
    names = ["chelsea", "a photo", "coffee"]
    demo = "xdream-codes/20261125-120000-fourier"
    for folder, weights in ((tmp_path / "plain", None), (tmp_path / "deepsim", "/w/fc6.pt")):
        encode.save(folder, result, names, gen)
        if weights is not None:  # as a DeePSiM generator's codes record the file it read
            with h5py.File(folder / "codes.h5", "a") as f:
                f.attrs["weights_file"] = weights
        exec(python.replace(demo, str(folder)), {})  # the docs' own code
        mat = scipy.io.loadmat(folder / "codes.mat")
        assert mat["codes"].dtype == np.float32
        np.testing.assert_array_equal(mat["codes"], encode.load_codes(folder, gen))
        assert [str(c[0]) for c in mat["names"][:, 0]] == names
        np.testing.assert_array_equal(mat["rmse"][:, 0], result.rmse)
        np.testing.assert_array_equal(mat["psnr"][:, 0], result.psnr)
        assert json.loads(str(mat["generator"][0])) == encode.generator_spec(gen)
        assert list(mat["weights_file"]) == ([weights] if weights else [])
    octave = shutil.which("octave-cli")
    if octave is not None:
        script = (
            matlab.replace(demo, str(tmp_path / "deepsim"))
            + "printf('%d %d|%s|%s|%s|%d', size(codes), spec.name, closest, names{2}, spec.size);"
        )
        out = subprocess.run([octave, "--no-gui", "--eval", script], capture_output=True, text=True)
        shape, name, closest, second, size = out.stdout.splitlines()[-1].split("|")
        assert tuple(int(n) for n in shape.split()) == result.codes.shape
        assert (name, second, int(size)) == ("pixels", "a photo", 8)
        assert closest == names[int(np.argmin(result.rmse))]


def _generation(g: int, n: int = 3, shown_before: int | None = None) -> records.GenerationRecord:
    """Generation ``g`` of a run that shows ``n`` codes (of 2 numbers) and one reference each
    generation; ``shown_before``: the presentations before it (``g * n`` by default)."""
    shown = (g * n if shown_before is None else shown_before) + n
    scores = np.arange(n, dtype=np.float64) + g
    return records.GenerationRecord(
        generation=g,
        codes=np.full((n, 2), g, np.float32),
        scores=scores,
        clean_scores=scores.copy(),
        image_ids=[f"gen{g:03d}_{i:06d}" for i in range(n)],
        genealogy=["init"] * n,
        ref_ids=[f"ref_{g}"],
        ref_scores=np.array([0.5]),
        ref_clean_scores=np.array([0.5]),
        presentations=shown,
        seconds=np.zeros(4),
    )


def _marked_record(path: Path, generations: int) -> records.H5Record:
    record = records.H5Record(path)
    record.initialise(2, {}, "test")
    record.append(*(_generation(g) for g in range(generations)))
    assert record.trusted_generations() == generations
    return record


@pytest.mark.parametrize("damage", ["a row dataset longer", "an older copy put back", "no mark"])
def test_an_append_marks_a_record_again_only_where_its_datasets_then_agree(
    tmp_path: Path, damage: str
) -> None:
    """The mark says a record is whole. A record changed since its last mark (a dataset one row
    longer, or an older copy put back in place while the run goes on, which the next append
    then extends with a later generation: rows that no longer add up to the presentations)
    stays unmarked after the next append, and resume rebuilds it from the journal; so does one
    left without its mark (a kill inside an append, or an earlier xdream, which may have torn
    it in a way its datasets' lengths do not show)."""
    record = _marked_record(tmp_path / "record.h5", 2)
    if damage == "a row dataset longer":
        with h5py.File(record.path, "r+") as f:
            f["codes"].resize(f["codes"].shape[0] + 1, axis=0)
        record.append(_generation(2))
    elif damage == "no mark":
        record.mark_path.unlink()
        record.append(_generation(2))
    else:
        older = _marked_record(tmp_path / "older.h5", 1)
        os.replace(older.path, record.path)  # record.h5's own mark is still there
        record.append(_generation(2))  # 1 generation of rows, then the third one
    assert not record.mark_path.exists()
    assert record.trusted_generations() is None


def test_a_mark_is_trusted_only_for_the_generations_it_names_and_a_record_that_reads_back(
    tmp_path: Path,
) -> None:
    """A mark that matches the file's size, times and inode is still not enough: the record
    must hold the generations the mark names, and read back whole (a disk error after the
    mark changes neither the times nor the size)."""
    record = _marked_record(tmp_path / "record.h5", 2)
    record.mark(1)  # the file holds 2
    assert record.trusted_generations() is None
    record.mark(2)
    assert record.trusted_generations() == 2
    with h5py.File(record.path, "r+") as f:  # scores one row short, then "marked" again
        f["scores"].resize(f["scores"].shape[0] - 1, axis=0)
    record.mark(2)
    assert record.trusted_generations() is None


@pytest.mark.parametrize("text", ["null", "[2]", '"2"', "{", ""])
def test_a_mark_that_is_not_one_xdream_wrote_is_no_mark(tmp_path: Path, text: str) -> None:
    """A mark edited by hand or torn by a power cut (it is not fsynced) is no mark: the record
    is rebuilt, and nothing raises."""
    record = _marked_record(tmp_path / "record.h5", 1)
    record.mark_path.write_text(text)
    assert record.trusted_generations() is None


def test_a_marked_record_whose_last_codes_no_longer_read_is_not_trusted(tmp_path: Path) -> None:
    """Resume reads a marked record back before it keeps it: every dataset but the codes, and
    the codes' last row. Here a disk error after the mark sent the address of the codes'
    chunk in their index (a B-tree node) past the end of the file."""
    record = _marked_record(tmp_path / "record.h5", 2)
    with h5py.File(record.path, "r") as f:
        address = struct.pack("<Q", f["codes"].id.get_chunk_info(0).byte_offset)
    data = bytearray(record.path.read_bytes())
    at = data.index(address, data.index(b"TREE\x01"))  # in the first chunk index: the codes'
    data[at : at + 8] = struct.pack("<Q", 2**40)
    record.path.write_bytes(bytes(data))
    with h5py.File(record.path, "r") as f:
        records.reading._record_from(f, {}, codes=False)  # the rest reads back
        with pytest.raises(OSError, match="addr overflow"):
            f["codes"][-1]
    record.mark(2)  # its size, times and inode as the mark has them
    assert record.trusted_generations() is None


def test_every_change_in_place_of_a_record_is_made_while_it_is_unmarked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill inside an HDF5 write can leave a torn file: the mark goes (on disk) before the
    file is opened to change it, by an append, a new config or a cut back, and comes back
    only after; an append of nothing changes nothing."""
    record = _marked_record(tmp_path / "record.h5", 3)
    opened: list[bool] = []  # whether the mark was there when the record was opened to change
    real = records.H5Record._open_existing

    def spy(self: records.H5Record) -> Any:
        opened.append(self.mark_path.exists())
        return real(self)

    monkeypatch.setattr(records.H5Record, "_open_existing", spy)
    record.append(_generation(3))
    record.mark(4)
    record.set_config({"changed": True}, marked=4)
    record.truncate(2)
    assert opened == [False, False, False]
    record.mark(2)
    st = record.path.stat()
    record.append()
    assert opened == [False, False, False] and record.trusted_generations() == 2
    assert record.path.stat().st_mtime_ns == st.st_mtime_ns


def test_an_append_without_the_space_for_twice_its_data_is_refused_before_it_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HDF5 must not meet a full disk: an append needs 4 MiB plus twice its data free, and is
    refused (DiskFullError) without touching the record, which stays marked."""
    record = _marked_record(tmp_path / "record.h5", 1)
    rec = _generation(1, n=2000)
    usage = shutil.disk_usage(tmp_path)
    free = records.SPACE_MARGIN + rec.nbytes()  # room for the data once, not twice
    monkeypatch.setattr(records.faults.shutil, "disk_usage", lambda _: usage._replace(free=free))
    with pytest.raises(DiskFullError, match="the next write to the records needs"):
        record.append(rec)
    assert record.trusted_generations() == 1


FORKED_CHILD_MEETS_ITS_PARENTS_LOCK = """
import os, sys
from xdream import records
from xdream.errors import FolderInUseError

lock = records.RunFolder(sys.argv[1]).lock()
pid = os.fork()
if pid == 0:  # the child: the parent's table says the parent holds it, not this process
    code = 3
    try:
        records.RunFolder(sys.argv[1]).lock()
    except FolderInUseError as err:
        print(err, flush=True)
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_is_told_that_its_parent_process_holds_the_folder(tmp_path: Path) -> None:
    """A forked child does not hold its parent's locks: it is refused the parent's folder as
    another process's (named by its pid), not as its own experiment's."""
    script = [sys.executable, "-c", FORKED_CHILD_MEETS_ITS_PARENTS_LOCK, str(tmp_path)]
    out = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "is in use by another xdream process (pid " in out.stdout, out.stdout
    assert "another experiment of this process" not in out.stdout


def test_the_lock_file_names_only_its_current_holder(tmp_path: Path) -> None:
    """The lock file is rewritten whole by the process that takes it: a longer text left by an
    earlier holder does not trail after it (FolderInUseError quotes the file)."""
    lock_file = tmp_path / records.LOCK_FILE
    lock_file.write_text("pid 4194304 on a-host-with-a-long-name, since 2026-01-01 00:00:00\n" * 4)
    lock = records.RunFolder(tmp_path).lock()
    try:
        text = lock_file.read_text()
        assert text.startswith(f"pid {os.getpid()} on ") and text.count("\n") == 1, text
    finally:
        lock.release()


def test_a_folder_holds_no_run_yet_only_with_its_lock_and_empty_folders(tmp_path: Path) -> None:
    """A run stopped while it loaded its network left its lock and empty folders: nothing
    recorded, so the advice is to start it again; a journal file, or no lock (a folder no run
    took), is something else."""
    folder = records.RunFolder(tmp_path / "run")
    folder.create()
    assert not folder.stopped_before_writing()  # no lock: not a run's
    (folder.path / records.LOCK_FILE).write_text("pid 1 on host, since then\n")
    assert folder.stopped_before_writing()
    folder.journal_path(0).write_bytes(b"")
    assert not folder.stopped_before_writing()


def test_a_full_disk_is_told_by_its_errno_alone_and_through_an_error_raised_while_handling_it() -> (
    None
):
    """ENOSPC and EDQUOT say a full disk whatever their text (another language, none), and an
    error raised while handling one (h5py failing to close the file) is one too."""
    assert records.is_disk_full(OSError(errno.ENOSPC, ""))
    assert records.is_disk_full(OSError(errno.EDQUOT, "Kontingent überschritten"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("Can't decrement id ref count")  # noqa: B904 (as h5py does)
    except RuntimeError as raised:
        assert records.is_disk_full(raised)


def test_only_a_write_in_the_run_folder_that_it_refuses_is_taken_for_the_folders_fault(
    tmp_path: Path,
) -> None:
    """A folder that can no longer be written (read-only, or a part of it deleted) is one
    error that says how to continue; an I/O error, or a refusal in another folder (a rig's
    write_dir elsewhere), is left to say what it is."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("recorded")
    inside = str(run / "journal" / ".gen000003.npz.abcd.xdream.tmp")
    records.raise_if_folder_fault(OSError(errno.EIO, "Input/output error", inside), run)
    elsewhere = str(tmp_path / "rig" / "block.png")
    records.raise_if_folder_fault(OSError(errno.EACCES, "Permission denied", elsewhere), run)
    with pytest.raises(XDreamError) as read_only:
        records.raise_if_folder_fault(OSError(errno.EROFS, "Read-only file system", inside), run)
    assert "gen000003.npz (Read-only file system)" in str(read_only.value)
    assert "can no longer be written" in str(read_only.value)
    with pytest.raises(XDreamError) as deleted:
        records.raise_if_folder_fault(OSError(errno.ENOENT, "No such file", inside), run)
    assert f"a part of {run} was moved or deleted" in str(deleted.value)
    try:  # xdream's own error, raised while handling the system's, says it already
        try:
            raise OSError(errno.ENOENT, "No such file", str(run / "record.h5"))
        except OSError:
            raise XDreamError("'record.h5' is gone: it was moved or deleted") from None
    except XDreamError as own:
        records.raise_if_folder_fault(own, run)


def test_a_generations_mean_and_best_leave_out_scores_without_an_answer() -> None:
    """NaN is a presentation without a response (a rig's timeout): the generation's mean and
    best are those of the answered ones."""
    rec = _generation(0, n=4)
    rec.scores = np.array([1.0, np.nan, 3.0, 2.0])
    rec.ref_scores = np.array([np.nan, 0.25])
    assert (rec.mean_score, rec.best_score, rec.best_reference) == (2.0, 3.0, 0.25)
