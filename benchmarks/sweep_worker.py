"""Benchmark (not a test): a sweep worker's tasks, each building its target network (old) or
sharing the one the worker built for its first task (new).

A Ray worker runs the tasks Ray gives it one after another in one process. Old: each task is
``sweep.run_task`` alone, which builds EfficientNet-Lite0 from its weight file; new:
``sweep.worker_task``, which runs them inside the ``xdream.networks.reuse()`` block the worker
keeps open, so the network is built once (its weight file still read for its digest on every
use). Each repetition is one fresh worker's share of a tiny sweep: ``--tasks`` experiments
(units x seeds of the genetic algorithm, ``--generations`` generations of 6 codes of 32 px
pixel images at ``blocks.0``, 2 reference crops), each into a new folder; the new side's block
is closed after each repetition, as a fresh worker would start without one.

Old and new run side by side in one process, alternating (which goes first alternates too),
so the ratio old / new is measured under the same load; on a shared machine read the ratios,
not the times. Both the wall-clock time and this process's CPU time are taken (the CPU time
is less disturbed by other jobs on a shared machine; torch runs one thread). Prints one JSON
object: for each, the median old / new ratio over the repetitions, each repetition's ratio,
and the median seconds of each side.

    python benchmarks/sweep_worker.py [--repeats 7] [--tasks 4] [--generations 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from xdream import sweep

TOML = """
[experiment]
generations = {generations}
n_references = 2
[generator]
name = "pixels"
size = 32
code_size = 8
[optimizer]
name = "genetic"
population_size = 6
[target]
layer = "blocks.0"
device = "cpu"
[[targets]]
channels = {channels}
[sweep]
seeds = [0, 1]
"""


def tasks(work: Path, n: int, generations: int) -> list[sweep.Task]:
    path = work / "sweep.toml"
    path.write_text(TOML.format(generations=generations, channels=list(range(1, n // 2 + 2))))
    return sweep.plan(*sweep.load(path))[:n]


def one_worker(
    work: Path, planned: list[sweep.Task], run: Callable[..., dict]
) -> tuple[float, float]:
    """Seconds (wall clock, and CPU time of this process) that one worker takes to run
    ``planned`` with ``run``, into new folders."""
    out = Path(tempfile.mkdtemp(dir=work))
    start, cpu = time.perf_counter(), time.process_time()
    for task in planned:
        result = run(task.config, str(out / task.folder), 1)
        assert not result.get("error"), result
    seconds = time.perf_counter() - start, time.process_time() - cpu
    if sweep._worker_networks is not None:  # the next repetition is a fresh worker
        sweep._worker_networks.close()
        sweep._worker_networks = None
    shutil.rmtree(out)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=4, help="tasks one worker runs")
    parser.add_argument("--generations", type=int, default=2, help="generations of each task")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared: one core for both sides alike
    work = Path(tempfile.mkdtemp(prefix="xdream-sweep-worker-"))
    try:
        planned = tasks(work, args.tasks, args.generations)
        sides = {"old": sweep.run_task, "new": sweep.worker_task}
        for run in sides.values():  # warm-up: first-call costs, the page cache
            one_worker(work, planned[:1], run)
        samples: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
        for rep in range(args.repeats):
            order = list(sides.items())
            for side, run in order if rep % 2 == 0 else order[::-1]:
                samples[side].append(one_worker(work, planned, run))
        out: dict[str, Any] = {
            "tasks": len(planned),
            "generations": args.generations,
            "repeats": args.repeats,
        }
        for i, clock in enumerate(("wall", "cpu")):
            ratios = [o[i] / n[i] for o, n in zip(samples["old"], samples["new"])]
            out[clock] = {
                "ratio": round(statistics.median(ratios), 3),
                "ratios": [round(r, 3) for r in ratios],
                **{
                    f"{side}_median_s": round(statistics.median(s[i] for s in v), 3)
                    for side, v in samples.items()
                },
            }
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
