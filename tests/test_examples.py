"""The scripts in examples/ run and do what they say."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from xdream import records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_custom_scorer_with_noise(tmp_path: Path) -> None:
    summary = load("custom_scorer_noise").main(["--out", str(tmp_path / "r"), "--generations", "8"])
    rec = records.read(tmp_path / "r")
    assert summary["generations"] == 8
    assert not np.array_equal(rec.scores, rec.clean_scores)  # noise was applied ...
    assert np.nanmax(rec.clean_scores) > 0  # ... on top of a real response
    assert rec.best_per_generation[-1] > rec.best_per_generation[0]


@pytest.mark.slow
def test_evolve_cnn_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = load("evolve_cnn_unit").main(["--out", str(tmp_path / "r"), "--generations", "2"])
    assert summary["generations"] == 2
    assert "best image gen" in capsys.readouterr().out
