"""Helpers for the rig tests: a config builder and a simulated rig running in a thread."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.helpers import RedScorer
from xdream import config as config_mod
from xdream.experiment import Experiment
from xdream.rig import RigScorer, RigSection
from xdream.rig.protocol import STIMULUS_NAME
from xdream.rig.sim import RigSim, SimSettings


def rig_config(generations: int = 2, population: int = 8, refs: int = 2, **rig: Any) -> Any:
    """A cheap config (32 px pixel images) whose target is a rig."""
    return config_mod.from_dict(
        {
            "experiment": {"generations": generations, "n_references": refs, "seed": 1},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "optimizer": {"name": "genetic", "population_size": population},
            "rig": {"timeout": 3.0, "poll_interval": 0.002, **rig},
        }
    )


@contextmanager
def thread_rig(write_dir: Path, score_dir: Path | None = None, **settings: Any) -> Iterator[RigSim]:
    """A :class:`RigSim` scoring with the red-minus-blue test scorer, in a background thread."""
    settings.setdefault("latency", (0.0, 0.01))
    settings.setdefault("poll_interval", 0.002)
    sim = RigSim(write_dir, score_dir, RedScorer(), SimSettings(**settings))
    thread = threading.Thread(target=sim.run, daemon=True)
    thread.start()
    try:
        yield sim
    finally:
        sim.stop_requested = True
        thread.join(timeout=10)


def run_with_rig(out: Path, config: Any, **settings: Any) -> tuple[dict[str, Any], RigSim]:
    """Run ``config`` in ``out`` against a thread rig; returns the summary and the rig."""
    experiment = Experiment.from_config(config, out)
    score_dir = config.rig.score_dir
    with thread_rig(
        out / config.rig.write_dir, None if score_dir is None else out / score_dir, **settings
    ) as sim:
        summary = experiment.run()
    return summary, sim


def image_id(stimulus: str) -> str:
    """The image id inside ``block{NNN}_{MMM}_{id}.png``."""
    m = STIMULUS_NAME.match(stimulus.rsplit(".", 1)[0])
    assert m is not None, stimulus
    return m.group(3)


def written_responses(log: list[dict[str, Any]]) -> list[tuple[int, str, np.ndarray]]:
    """(block, stimulus, values) of every response the simulator wrote (no duplicates)."""
    return [
        (e["block"], n, np.asarray(v, dtype=np.float64))
        for e in log
        if e["event"] == "written"
        for n, v in zip(e["names"], e["values"])
    ]


def write_response(folder: Path, block: int, fmt: str, names: list[str], values: Any) -> None:
    """A response file in ``fmt`` (a writer's name), written aside and renamed into place."""
    from xdream.rig.formats import WRITERS

    writer = WRITERS.get(fmt)
    tmp = folder / f".block{block:03d}.tmp"
    writer.write(tmp, names, np.asarray(values, dtype=np.float64))
    tmp.rename(folder / f"block{block:03d}{writer.extension}")


def score_one_generation(
    folder: Path,
    respond: Callable[[int, list[str], Path], None],
    n: int = 4,
    generation: int = 0,
    **rig: Any,
) -> tuple[RigScorer, np.ndarray, str]:
    """A bare :class:`RigScorer` scoring ``n`` images; ``respond(block, names, score_dir)``
    answers every block (from its manifest). Returns the scorer, the scores and its stderr.
    A folder scored before is resumed from its journal (as ``xdream resume`` does): give a
    later ``generation``."""
    err = io.StringIO()
    rig.setdefault("poll_interval", 0.002)
    rig.setdefault("timeout", 3.0)
    scorer = RigScorer(RigSection(shuffle=False, **rig), seed=0, stderr=err)
    scorer.bind(folder)
    ids = [f"gen{generation:03d}_{i:06d}" for i in range(n)]
    images = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    stop = threading.Event()

    def rig_loop() -> None:
        done: set[int] = set()
        while not stop.is_set():
            for manifest in sorted(scorer.write_dir.glob("block*.txt")):
                b = int(manifest.stem[5:])
                if b not in done:
                    done.add(b)
                    respond(b, manifest.read_text().split(), scorer.score_dir)
            time.sleep(0.002)

    thread = threading.Thread(target=rig_loop, daemon=True)
    thread.start()
    try:
        scorer.start_generation(generation)
        scores = scorer.score(images, ids)
    finally:
        stop.set()
        thread.join(timeout=10)
    scorer.close()
    return scorer, np.asarray(scores), err.getvalue()


PAUSING_RIG = (
    "[experiment]\ngenerations = 1\nn_references = 0\n"
    '[generator]\nname = "pixels"\nsize = 8\ncode_size = 4\n'
    '[optimizer]\nname = "genetic"\npopulation_size = 4\n'
    '[rig]\ntimeout = 0.05\npoll_interval = 0.002\non_timeout = "pause"\n'
)
"""A config (TOML) of one tiny generation on a rig that pauses after 50 ms without a response:
`xdream run` of it exits with 3 where nobody answers."""
