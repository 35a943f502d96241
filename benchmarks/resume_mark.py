"""What the mark of a complete append (``.record.h5.ok``) saves on resume, and what it costs.

1. Resume after ``kill -9`` of a long single-unit run: the same killed folder copied twice,
   one copy resumed with its record kept (marked) and one with the mark removed (rebuilt from
   the journal, as every resume did before the mark), alternating, ``--repeats`` times.
2. One append of a generation to ``record.h5`` (40 codes of the default ``fourier`` code
   space), with the mark (fsyncs included) and without (``H5Record.append(mark=False)``),
   alternating between two growing records.
3. A whole run that appends every generation (``record_interval = 0``, the worst case) with
   marks and with ``H5Record.mark`` a no-op, alternating.

Prints one JSON object (medians and every sample). Ratios measured side by side are what to
compare; this machine's absolute speeds vary with its load.

    python benchmarks/resume_mark.py WORKDIR [--generations 1500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import xdream.generators
import xdream.optimizers
from xdream import records
from xdream.experiment import Experiment


def experiment(out: Path, generations: int, record_interval: float) -> Experiment:
    """A cheap run: the genetic algorithm on 16 px ``fourier`` images scored by their mean."""
    gen = xdream.generators.make("fourier", size=16)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0)
    return Experiment(
        gen,
        lambda images, ids: images.mean(dim=(1, 2, 3)).double().numpy(),
        opt,
        out,
        generations=generations,
        record_interval=record_interval,
        n_references=10,
    )


def killed_run(work: Path, generations: int) -> Path:
    """A run killed (SIGKILL) once its journal holds ``generations`` generations."""
    out = work / "killed"
    child = subprocess.Popen([sys.executable, __file__, str(work), "--child"])
    journal = out / "journal"
    while not journal.is_dir() or len(list(journal.glob("*.npz"))) < generations:
        if child.poll() is not None:
            raise SystemExit("the run to kill stopped by itself")
        time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return out


def resume_times(killed: Path, work: Path, repeats: int) -> dict[str, Any]:
    marked = records.H5Record(killed / "record.h5").trusted_generations()
    if marked is None:
        raise SystemExit("the killed run's record is not marked: kill it again")
    samples: dict[str, list[float]] = {"kept": [], "rebuilt": []}
    notes = {}
    for _ in range(repeats):
        for kind in samples:
            folder = work / f"resume-{kind}"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(killed, folder)
            record = records.H5Record(folder / "record.h5")
            if kind == "kept":
                record.mark(marked)  # the copy is a new file: mark it as the original was
            else:
                record.mark_path.unlink()
            exp = experiment(folder, 10**6, 2.0)
            start = time.perf_counter()
            notes[kind] = exp.restore()
            samples[kind].append(time.perf_counter() - start)
            exp.release_folder()
    return {
        "generations": exp.generation,
        "notes": notes,
        "seconds": samples,
        "median_s": {k: statistics.median(v) for k, v in samples.items()},
    }


def append_times(work: Path, repeats: int) -> dict[str, Any]:
    gen = xdream.generators.make("fourier")
    rng = np.random.default_rng(0)
    samples: dict[str, list[float]] = {"marked": [], "unmarked": []}
    kept = {kind: records.H5Record(work / f"append-{kind}.h5") for kind in samples}
    for kind, record in kept.items():
        record.initialise(gen.code_dim, {}, "bench", mark=kind == "marked")
    for g in range(max(repeats, 1) * 20):
        for kind, record in kept.items():
            rec = records.GenerationRecord(
                generation=g,
                codes=rng.standard_normal((40, gen.code_dim)).astype(np.float32),
                scores=rng.standard_normal(40),
                clean_scores=rng.standard_normal(40),
                image_ids=[f"gen{g:03d}_{i:06d}" for i in range(40)],
                genealogy=["+z"] * 40,
                ref_ids=[],
                ref_scores=np.zeros(0),
                ref_clean_scores=np.zeros(0),
                presentations=40 * (g + 1),
                seconds=np.zeros(4),
            )
            start = time.perf_counter()
            record.append(rec, mark=kind == "marked")
            samples[kind].append(time.perf_counter() - start)
    assert kept["marked"].trusted_generations() == max(repeats, 1) * 20
    return {
        "codes_per_append": 40,
        "code_dim": gen.code_dim,
        "median_ms": {k: 1000 * statistics.median(v) for k, v in samples.items()},
    }


def run_times(work: Path, repeats: int) -> dict[str, Any]:
    mark = records.H5Record.mark
    samples: dict[str, list[float]] = {"marked": [], "unmarked": []}
    for r in range(repeats):
        for kind in samples:
            records.H5Record.mark = mark if kind == "marked" else (lambda self, n: None)  # type: ignore[method-assign]
            folder = work / f"run-{kind}-{r}"
            start = time.perf_counter()
            experiment(folder, 300, 0.0).run()
            samples[kind].append(time.perf_counter() - start)
            shutil.rmtree(folder)
    records.H5Record.mark = mark  # type: ignore[method-assign]
    return {
        "generations": 300,
        "record_interval": 0,
        "seconds": samples,
        "median_s": {k: statistics.median(v) for k, v in samples.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="a scratch folder (emptied first)")
    parser.add_argument("--generations", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        experiment(args.work / "killed", 10**6, 2.0).run()
        return
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    killed = killed_run(args.work, args.generations)
    out = {
        "resume": resume_times(killed, args.work, args.repeats),
        "append": append_times(args.work, args.repeats),
        "run": run_times(args.work, args.repeats),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
