"""Kill stress: ``kill -9`` an ``xdream run`` at random moments, resume it each time, and check
that it ends with the records of an uninterrupted run with the same seed.

Not collected by pytest (it takes minutes); the suite's kill tests each hit one chosen moment.
Run it from the repository root after changing how records are written::

    python -m tests.stress_kill --kills 25 --seed 0
    python -m tests.stress_kill --kills 25 --units 3   # a many-unit run
    python -m tests.stress_kill --kills 25 --rig       # a rig run, with xdream rig-sim
    python -m tests.stress_kill --kills 25 --placement rf  # images placed over the field

Each round waits until the run has checkpointed one more generation since the last kill (so
every kill lands in a run that makes progress, not in Python's start-up), then waits a random
0 to ``--spread`` seconds and kills the process group. Exit status 0 when every record,
summary and image equals the uninterrupted run's (timings aside), 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
[experiment]
seed = {seed}
generations = {generations}
n_references = 4
record_interval = {interval}

[generator]
name = "pixels"
size = 32
code_size = 8

[optimizer]
name = "genetic"
population_size = 12

{target}
"""

TARGET = """
[target]
layer = "blocks.2"
channel = 5
device = "cpu"
"""

RIG = """
[rig]
write_dir = "stim"
block_size = 6
blanks = 1
timeout = 120
poll_interval = 0.005
"""

RIG_TIMES = (
    "rig/presentations/received",
    "rig/blocks/written",
    "rig/blocks/answered",
    "rig/blocks/latency",
)
"""A rig run's datasets of wall-clock times, which differ between any two runs."""


def xdream(*args: str, errors: bool = True) -> subprocess.Popen[bytes]:
    """``xdream ARGS`` in its own process group, quiet (but for its errors, read at its end)."""
    return subprocess.Popen(
        [sys.executable, "-m", "xdream", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if errors else subprocess.DEVNULL,
        start_new_session=True,
    )


def progress(run: Path) -> int:
    """The newest checkpoint's modification time (0 before the first; a many-unit run's
    units have one each): it changes every generation."""
    times = [0]
    for checkpoint in [run / "checkpoint.pkl", *run.glob("units/*/checkpoint.pkl")]:
        with contextlib.suppress(FileNotFoundError):
            times.append(checkpoint.stat().st_mtime_ns)
    return max(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="kills before the run may finish")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments and the run")
    p.add_argument("--generations", type=int, default=60)
    p.add_argument("--interval", type=float, default=0.5, help="[experiment] record_interval")
    p.add_argument("--spread", type=float, default=0.6, help="longest wait after progress, s")
    p.add_argument("--units", type=int, default=1, help="units run at once ([[targets]])")
    p.add_argument(
        "--rig", action="store_true", help="a [rig] run, answered by `xdream rig-sim` meanwhile"
    )
    p.add_argument(
        "--placement",
        choices=["full", "rf"],
        default="full",
        help="[target] placement (rf: each resume goes on in the square the run recorded)",
    )
    p.add_argument(
        "--keep",
        type=Path,
        help="work in this folder and keep it (else a temporary one, removed "
        "when the records are equal)",
    )
    args = p.parse_args(argv)
    from tests.test_experiment import assert_same_records

    rng = random.Random(args.seed)
    work = args.keep or Path(tempfile.mkdtemp(prefix="xdream-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    config = work / "run.toml"
    text = CONFIG.format(
        seed=args.seed,
        generations=args.generations,
        interval=args.interval,
        target=RIG if args.rig else TARGET + f'placement = "{args.placement}"\n',
    )
    if args.units > 1:  # a many-unit run: each unit's folder is compared
        text += f"\n[[targets]]\nchannels = {list(range(args.units))}\n"
    config.write_text(text)
    whole, killed = work / "whole", work / "killed"
    sims: list[subprocess.Popen[bytes]] = []
    try:
        if run(xdream("run", str(config), "--out", str(whole)), whole, args.rig, sims) != 0:
            print("the uninterrupted run failed", file=sys.stderr)
            return 1
        proc = xdream("run", str(config), "--out", str(killed))
        kills = kill_and_resume(proc, killed, args, rng, sims)
    finally:
        for sim in sims:
            os.killpg(sim.pid, signal.SIGKILL)
            sim.wait()
    if kills < 0:
        return 1
    units = sorted(p.name for p in (whole / "units").iterdir()) if args.units > 1 else []
    ignore = RIG_TIMES if args.rig else ()
    for a, b in [(whole / "units" / u, killed / "units" / u) for u in units] or [(whole, killed)]:
        assert_same_records(a, b, ignore)
    print(f"{kills} kills; the records equal the uninterrupted run's")
    if args.keep is None:
        shutil.rmtree(work)  # kept where they differ, to look at
    return 0


def rig_sim(run: Path, proc: subprocess.Popen[bytes], sims: list[subprocess.Popen[bytes]]) -> None:
    """Start ``xdream rig-sim`` on ``run``'s stimulus folder once the run has made it (the
    rig's unit is the default target's: ``blocks.10`` channel 5)."""
    while proc.poll() is None and not (run / "stim").is_dir():
        time.sleep(0.01)
    sims.append(xdream("rig-sim", str(run / "stim"), "--latency", "0.01", "0.05", errors=False))


def run(
    proc: subprocess.Popen[bytes], folder: Path, rig: bool, sims: list[subprocess.Popen[bytes]]
) -> int:
    """Wait for ``proc`` (with a rig simulator beside it for a rig run); its exit status."""
    if rig:
        rig_sim(folder, proc, sims)
    return proc.wait()


def kill_and_resume(
    proc: subprocess.Popen[bytes],
    killed: Path,
    args: argparse.Namespace,
    rng: random.Random,
    sims: list[subprocess.Popen[bytes]],
) -> int:
    """Kill ``proc`` and resume its run ``args.kills`` times, then let it finish; the number of
    kills, or -1 where the run ended with an error."""
    if args.rig:
        rig_sim(killed, proc, sims)  # one simulator throughout, as a rig goes on
    kills, finished = 0, False
    while not finished:
        seen = progress(killed)
        while proc.poll() is None and progress(killed) == seen:
            time.sleep(0.01)
        if proc.poll() is None and kills < args.kills:
            time.sleep(rng.uniform(0, args.spread))
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                proc = xdream("resume", str(killed))
                continue
        code = proc.wait()
        if code != 0:
            assert proc.stderr is not None
            print(f"exit status {code}: {proc.stderr.read().decode()}", file=sys.stderr)
            return -1
        finished = True
    return kills


if __name__ == "__main__":
    sys.exit(main())
