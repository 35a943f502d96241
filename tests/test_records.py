"""Reading a record back: comparing two records, and what reading a folder that is no
experiment's says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tests.helpers import tiny_experiment
from xdream import records


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
