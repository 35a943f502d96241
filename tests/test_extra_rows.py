"""A scorer's own rows (``last_extra``): checked where the experiment takes them, recorded with
their generation, and read back by ``xdream.records.read``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import xdream.generators
import xdream.optimizers
from tests.helpers import RedScorer, killed_inside_an_append
from xdream import records
from xdream.errors import XDreamError
from xdream.experiment import Experiment

Extra = Callable[[int, int], Any]  # (generation, images) -> last_extra


class ExtraScorer(RedScorer):
    """RedScorer that sets ``last_extra`` to ``extra(generation, len(ids))`` on each call."""

    def __init__(self, extra: Extra) -> None:
        super().__init__()
        self.extra = extra
        self.generation = 0
        self.last_extra: Any = None

    def start_generation(self, generation: int) -> None:
        self.generation = generation

    def score(self, images: Any, ids: list[str]) -> Any:
        self.last_extra = self.extra(self.generation, len(ids))
        return super().score(images, ids)


def experiment(out: Path, extra: Extra, generations: int = 3) -> Experiment:
    gen = xdream.generators.make("pixels", size=16, code_size=4)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
    return Experiment(gen, ExtraScorer(extra), opt, out, generations=generations, n_references=1)


def rows(generation: int, n: int) -> dict[str, Any]:
    return {
        "mine/latency": np.full(n, 0.5 + generation),
        "mine/trace": np.zeros((n, 3)),
        "mine/label": [f"g{generation}"] * n,
        "mine/sub/count": [n],
    }


def test_the_rows_come_back_from_read_with_their_generation(tmp_path: Path) -> None:
    """The documented {"group/dataset": rows} were written to record.h5 without a generation
    column, and read() lists only groups that hold one: extra was {}."""
    experiment(tmp_path / "run", rows).run()
    extra = records.read(tmp_path / "run").extra
    assert sorted(extra) == [
        "mine/generation",
        "mine/label",
        "mine/latency",
        "mine/sub/count",
        "mine/sub/generation",
        "mine/trace",
    ]
    assert extra["mine/generation"].tolist() == [0] * 7 + [1] * 7 + [2] * 7
    assert extra["mine/latency"].tolist() == [0.5] * 7 + [1.5] * 7 + [2.5] * 7
    assert extra["mine/label"].tolist() == ["g0"] * 7 + ["g1"] * 7 + ["g2"] * 7
    assert extra["mine/trace"].shape == (21, 3)
    assert extra["mine/sub/count"].tolist() == [7, 7, 7]
    assert extra["mine/sub/generation"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("torn", [False, True])
def test_a_resumed_run_records_the_rows_of_an_uninterrupted_one(tmp_path: Path, torn: bool) -> None:
    """Brought up to date, or rebuilt from the journal (killed inside an append: the journal
    files hold the rows too)."""
    experiment(tmp_path / "full", rows, generations=4).run()
    first = experiment(tmp_path / "cut", rows, generations=4)
    for _ in range(2):
        first.step()
    first.flush()
    first.release_folder()
    if torn:
        killed_inside_an_append(tmp_path / "cut")
    resumed = experiment(tmp_path / "cut", rows, generations=4)
    assert ("rebuilt from the journal" in resumed.restore()) == torn
    resumed.run()
    full, cut = records.read(tmp_path / "full").extra, records.read(tmp_path / "cut").extra
    assert full.keys() == cut.keys()
    for key in full:
        np.testing.assert_array_equal(full[key], cut[key], err_msg=key)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (lambda g, n: {"latency": np.ones(n)}, "key 'latency' is not 'group/dataset'"),
        (lambda g, n: {"mine/": np.ones(n)}, "key 'mine/' is not 'group/dataset'"),
        (lambda g, n: {3: np.ones(n)}, "key 3 is not 'group/dataset'"),
        (
            lambda g, n: {"generations/best_score": np.zeros(1)},
            "key 'generations/best_score' is in xdream's own 'generations'",
        ),
        (lambda g, n: {"codes/mine": np.ones(n)}, "key 'codes/mine' is in xdream's own 'codes'"),
        (
            lambda g, n: {"mine/temp": 21.5},
            "'mine/temp' is a single value (float), not an array of rows",
        ),
        (
            lambda g, n: {"mine/what": [{"a": 1}] * n},
            "'mine/what' is an array of object (list), not an array of rows",
        ),
        (
            lambda g, n: {"mine/a": np.ones(n), "mine/b": np.ones(n - 1)},
            "'mine/b' has 6 rows and 'mine/a' 7, where the datasets of a group",
        ),
        (
            lambda g, n: {"mine/a": np.ones(n), "mine/generation": np.zeros(n, int)},
            "'mine/generation' holds [0, 0, 0, 0, 0, 0, 0], not this generation's number (1)",
        ),
        (lambda g, n: [np.ones(n)], "it is a list, not a dict"),
        (
            lambda g, n: {"mine/a": np.ones((n, 2 + g))},
            "'mine/a' holds rows of float64 and shape (3,), where earlier generations recorded "
            "float64 of shape (2,)",
        ),
        (
            lambda g, n: {"mine/a": np.full(n, g + 0.5) if g else np.zeros(n, int)},
            "'mine/a' holds rows of float64 and shape (), where earlier generations recorded int64",
        ),
        (
            lambda g, n: {"mine/a": np.ones(n), **({"mine/b": np.ones(n)} if g else {})},
            "group 'mine' has the datasets a, b, generation, where earlier generations recorded "
            "a, generation",
        ),
    ],
)
def test_rows_the_record_cannot_hold_are_one_clear_error(
    tmp_path: Path, extra: Extra, problem: str
) -> None:
    """A key without a group stopped the run with a ValueError from the record writer, a scalar
    with an AttributeError, a key in xdream's own datasets with a torn record blamed on the
    disk; rows that change shape or type with an error from h5py."""
    with pytest.raises(XDreamError) as refused:
        experiment(tmp_path / "run", extra).run()
    message = str(refused.value)
    assert message.startswith("the scorer (ExtraScorer) set last_extra rows that the record ")
    assert f": {problem}" in message
    assert "last_extra is {'group/dataset': rows}: keys outside xdream's own names" in message
    assert "\n" not in message


def test_a_continued_run_checks_its_rows_against_the_record(tmp_path: Path) -> None:
    """A new session knows the rows recorded before it from record.h5."""
    run = tmp_path / "run"
    first = experiment(run, lambda g, n: {"mine/a": np.ones((n, 2))})
    first.step()
    first.release_folder()
    wider = experiment(run, lambda g, n: {"mine/a": np.ones((n, 3))})
    wider.restore()
    with pytest.raises(XDreamError, match=r"earlier generations recorded float64 of shape \(2,\)"):
        wider.step()


def latency(generation: int, n: int) -> dict[str, Any]:
    return {"mine/latency": np.full(n, 0.5 + generation)}


def as_earlier_xdream_wrote_it(run: Path, group: str) -> None:
    """Remove ``group``'s ``generation`` dataset from ``run``'s record.h5 and journal, as
    versions before the column was added wrote them for a scorer that gave none; then mark the
    record complete again, as those versions left it."""
    import h5py

    from xdream.records import H5Record

    with h5py.File(run / "record.h5", "r+") as f:
        del f[f"{group}/generation"]
        generations = int(f["generations/best_score"].shape[0])
    for path in (run / "journal").glob("*.npz"):
        with np.load(path) as arrays:
            kept = {k: arrays[k] for k in arrays.files if k != f"extra/{group}/generation"}
        np.savez(path, **kept)
    H5Record(run / "record.h5").mark(generations)


def test_a_group_recorded_without_generation_is_continued_without_one(tmp_path: Path) -> None:
    """A run that an earlier xdream began, continued now, got a generation column for the
    generations run since only: 14 entries beside 21 latencies, which do not pair up."""
    import h5py

    run = tmp_path / "run"
    first = experiment(run, latency)
    first.step()
    first.flush()
    first.release_folder()
    as_earlier_xdream_wrote_it(run, "mine")
    later = experiment(run, latency)
    later.restore()
    later.run()
    with h5py.File(run / "record.h5", "r") as f:
        assert sorted(f["mine"]) == ["latency"]
        assert f["mine/latency"][:].tolist() == [0.5] * 7 + [1.5] * 7 + [2.5] * 7
    assert records.read(run).extra == {}  # as before: such a group is not in Record.extra


def test_read_warns_of_a_group_whose_datasets_differ_in_length(tmp_path: Path) -> None:
    """Such a group was returned as it was, without a word."""
    import h5py

    run = tmp_path / "run"
    experiment(run, latency).run()
    with h5py.File(run / "record.h5", "r+") as f:
        generation = f["mine/generation"]
        generation.resize(14, axis=0)
    with pytest.warns(UserWarning) as warned:
        extra = records.read(run).extra
    assert len(extra["mine/latency"]) == 21  # nothing is hidden
    (message,) = [str(w.message) for w in warned]
    assert "the datasets of group 'mine' differ in length (generation 14, latency 21)" in message
    assert "\n" not in message


# --------------------------------------------------------------------------- audit M: mutants
@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            lambda g, n: {"mine/when": np.full(n, np.datetime64("2026-01-01"))},
            "'mine/when' is an array of datetime64[D] (ndarray), not an array of rows",
        ),
        (
            lambda g, n: {"mine/a": np.ones(n), "mine/generation": np.full(n, float(g))},
            f"'mine/generation' holds {[0.0] * 7}, not this generation's number (0)",
        ),
        (
            lambda g, n: {"mine/a": np.ones(n), "mine/generation": np.full((n, 1), g)},
            f"'mine/generation' holds {[[0]] * 7}, not this generation's number (0)",
        ),
        (
            lambda g, n: {"mine/a": np.ones(n, np.float64 if g else np.float32)},
            "'mine/a' holds rows of float64 and shape (), where earlier generations recorded "
            "float32 of shape ()",
        ),
    ],
)
def test_rows_of_other_kinds_and_generation_columns_are_refused(
    tmp_path: Path, extra: Extra, problem: str
) -> None:
    """Dates are no numbers or strings; a generation column must hold the generation as
    integers, one per row; float64 rows cannot go on float32 ones without losing precision
    (mutants M-E5, M-E8, M-E9, M-E16)."""
    with pytest.raises(XDreamError) as refused:
        experiment(tmp_path / "run", extra).run()
    assert f": {problem}" in str(refused.value)
