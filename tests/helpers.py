"""Shared test helpers: a cheap deterministic scorer and tiny experiment builders."""

from __future__ import annotations

import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import xdream.generators
import xdream.optimizers
from xdream import records
from xdream.experiment import Experiment
from xdream.scorers.base import Scorer
from xdream.types import Images, Scores


class RedScorer(Scorer):
    """Scores an image by how much redder than blue its centre is; optional missing responses.

    ``drop`` is the fraction of ids (chosen by a hash of the id, so reproducibly) that get NaN.
    """

    def __init__(self, drop: float = 0.0) -> None:
        self.drop = drop
        self.calls = 0

    def score(self, images: Images, ids: list[str]) -> Scores:
        self.calls += 1
        h, w = images.shape[-2:]
        centre = images[:, :, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
        s = (centre[:, 0] - centre[:, 2]).mean(dim=(1, 2)).double().numpy()
        for i, image_id in enumerate(ids):
            if self.drop and (zlib.crc32(image_id.encode()) % 1000) / 1000 < self.drop:
                s[i] = np.nan
        return s

    def describe(self) -> dict[str, object]:
        return {"kind": "red", "drop": self.drop}


def tiny_experiment(
    out: Path,
    generations: int = 6,
    seed: int = 0,
    drop: float = 0.0,
    optimizer: str = "genetic",
    **kw: object,
) -> Experiment:
    """A fast experiment: 8x8-code pixel generator at 32 px and the red scorer."""
    gen = xdream.generators.make("pixels", size=32, code_size=8)
    params = xdream.optimizers.REGISTRY.get(optimizer).Params
    schedule = {"generations": generations} if "generations" in params.__dataclass_fields__ else {}
    opt = xdream.optimizers.make(
        optimizer, dim=gen.code_dim, seed=seed, spectrum=gen.code_spectrum(), **schedule
    )
    return Experiment(
        gen,
        RedScorer(drop),
        opt,
        out,
        generations=generations,
        n_references=4,
        reference_seed=seed + 1,
        seed=seed,
        **kw,
    )  # type: ignore[arg-type]


def torn_record(folder: Path, generations: int = 4, done: int = 2) -> Experiment:
    """A tiny experiment of ``generations`` in ``folder`` stopped after ``done`` of them, whose
    ``record.h5`` is left as a kill between HDF5's writes and its closing flush leaves it: the
    superblock's end-of-file address still that of the file as first made (version 0
    superblock, bytes 40-48), so the file opens and h5py fails at the first link it follows."""
    exp = tiny_experiment(folder, generations=generations)
    exp._start()
    path = folder / "record.h5"
    empty = path.read_bytes()
    assert empty[:8] == b"\x89HDF\r\n\x1a\n" and empty[8] == 0, "expected superblock version 0"
    for _ in range(done):
        exp.step()
    exp.flush()
    data = bytearray(path.read_bytes())
    data[40:48] = empty[40:48]
    path.write_bytes(bytes(data))
    killed_inside_an_append(folder)
    return exp


def killed_inside_an_append(folder: Path) -> None:
    """Leave ``folder``'s ``record.h5`` without its mark, as a kill inside an append does (the
    mark is removed before the file changes): resume must not trust the record."""
    mark = records.H5Record(folder / "record.h5").mark_path
    assert mark.exists(), "expected a record marked by its last append"
    mark.unlink()


@contextmanager
def folder_held_by_another_process(
    folder: Path, take: str = "RunFolder(path).lock()"
) -> Iterator[int]:
    """Another process holds ``folder`` inside the block, as a run that is still going does
    (``take``: the expression that takes the lock, on ``path``; by default
    :meth:`xdream.records.RunFolder.lock`, ``sweep.hold_sweep(path)`` for a sweep's); yields
    its pid, and kills it (SIGKILL: it frees nothing itself) at the end."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from xdream import sweep; "
         "from xdream.records import RunFolder; path = Path(sys.argv[1]); "
         f"lock = {take}; print('held', flush=True); time.sleep(120)",
         str(folder)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def codes_rows_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of a record.h5's ``codes`` that each later read through h5py returns (every
    read of a dataset, ``ds[:]`` and ``ds[a:b]`` alike, goes through Dataset.__getitem__)."""
    rows: list[int] = []
    getitem = h5py.Dataset.__getitem__

    def spy(self: h5py.Dataset, *args: Any, **kwargs: Any) -> Any:
        out = getitem(self, *args, **kwargs)
        if self.name == "/codes":
            rows.append(len(out))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    return rows


def many_unit_folder(tmp_path: Path) -> tuple[Path, list[str]]:
    """The shape of a many-unit run's folder (``config.yaml`` and 7 unit folders, each with a
    ``record.h5``; all empty): its path and the units' names."""
    many = tmp_path / "many"
    names = [f"blocks.4_c{c:03d}" for c in range(7)]
    for name in names:
        (many / "units" / name).mkdir(parents=True)
        (many / "units" / name / "record.h5").write_bytes(b"")
    (many / "config.yaml").write_text("")
    return many, names


def default_signals() -> None:
    """``preexec_fn`` of a child that is sent SIGINT, SIGTERM or SIGHUP: it takes them as a
    shell's foreground job does, whatever this process ignores (a test run started in the
    background ignores SIGINT; under ``nohup``, SIGHUP; a child inherits what is ignored)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class SharedReLU(nn.Module):
    """One ReLU module called after two convolutions, as ``self.relu`` often is."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))))


def moved_weight_files(tmp_path: Path) -> None:
    """The files of a weight file that moves: EfficientNet-Lite0's weights in
    ``tmp_path/a/w.pt`` (a run reads them there, then they are moved to the empty folder
    ``tmp_path/b``), and another file of the same size, ``tmp_path/other.pt`` (the weights x1.5)."""
    from xdream import networks

    state = networks.make("efficientnet-lite0").module.state_dict()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    torch.save(state, tmp_path / "a" / "w.pt")
    scaled = {k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(scaled, tmp_path / "other.pt")
