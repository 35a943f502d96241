"""Benchmark (not a test): the rig hand-off latency of ``xdream run`` with a ``[rig]`` target.

Measured from the moment a response file appears in ``score_dir`` (renamed into place by this
script, which plays the rig) to the moment the next block's images are all on disk (its
``block{NNN}.txt`` manifest, written after the last image, is seen). Blocks hold 40 images of
128 px (PNG). The stand-in rig "shows" each block for ``--show-time`` seconds (default 0.5)
before it answers; a real rig needs at least 40 x 0.2 s = 8 s for 40 images. ``--show-time 0``
answers the moment the manifest appears, the worst case, where xdream's own bookkeeping of the
previous block competes with the hand-off. Two cases:

- ``same generation``: the next block belongs to the same generation (80 images per
  generation in blocks of 40): read + journal the response, write 40 PNGs;
- ``new generation``: the block was a generation's last, so the hand-off also includes the
  optimiser's tell/ask, the generator, the HDF5 record, the checkpoint and the journal.

    python benchmarks/rig_handoff.py [--blocks 40] [--show-time 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xdream.rig import WRITERS

CONFIG = """
[experiment]
generations = {generations}
n_references = 0

[generator]
name = "pixels"
size = 128
code_size = 16

[optimizer]
name = "genetic"
population_size = 80

[rig]
block_size = 40
score_dir = "responses"
timeout = 60
"""


def wait(path: Path, deadline: float) -> float:
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.0005)
    return time.perf_counter()


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=40, help="blocks to time (even)")
    parser.add_argument(
        "--show-time", type=float, default=0.5, help="seconds the rig shows a block (0.5)"
    )
    args = parser.parse_args(argv)
    if args.blocks < 2 or args.blocks % 2:
        parser.error(f"--blocks must be an even number >= 2, got {args.blocks}")
    # blocks 0 and 1 (the first generation) warm up; blocks 2 .. blocks + 1 are timed, half
    # of them within a generation and half the first of the next; one more generation ends
    generations = args.blocks // 2 + 2
    rng = np.random.default_rng(0)
    result: dict[str, list[float]] = {"same generation": [], "new generation": []}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cfg = Path(tmp) / "bench.toml"
        cfg.write_text(CONFIG.format(generations=generations))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "xdream",
                "run",
                str(cfg),
                "--out",
                str(run),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            stim, resp = run / "stimuli", run / "responses"
            deadline = time.monotonic() + 120
            wait(stim / "block000.txt", deadline)
            for b in range(2 * generations - 1):
                names = (stim / f"block{b:03d}.txt").read_text().split()
                assert len(names) == 40, len(names)
                time.sleep(args.show_time)
                tmp_file = resp / f".block{b:03d}.tmp"
                WRITERS.get("mat73").write(tmp_file, names, rng.random((40, 1)))
                os.replace(tmp_file, resp / f"block{b:03d}.mat")
                t0 = time.perf_counter()
                t1 = wait(stim / f"block{b + 1:03d}.txt", time.monotonic() + 60)
                key = "new generation" if b % 2 else "same generation"
                if 2 <= b <= args.blocks + 1:  # the first generation warms up caches
                    result[key].append(t1 - t0)
            names = (stim / f"block{2 * generations - 1:03d}.txt").read_text().split()
            WRITERS.get("mat73").write(
                resp / f"block{2 * generations - 1:03d}.mat", names, rng.random((40, 1))
            )
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
    for key, values in result.items():
        ms = np.array(values) * 1000
        print(
            f"{key:16s} n={len(ms):3d}  median {statistics.median(ms):6.1f} ms  "
            f"p90 {np.percentile(ms, 90):6.1f} ms  max {ms.max():6.1f} ms"
        )
    return result


if __name__ == "__main__":
    main()
