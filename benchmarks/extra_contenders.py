"""Shared command line of the benchmark scripts that add contenders to the full profile."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from xdream.bench.optimizers import PROFILES, Contender, run_benchmark


def main(
    description: str, labels: tuple[str, ...], table: Callable[[str], list[Contender]]
) -> None:
    """Run the full profile with the contenders ``labels`` of ``table`` into the folder given on
    the command line (``--workers``, ``--device``); a killed run resumes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", help="output folder (resumed if it exists)")
    parser.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    profile = dataclasses.replace(PROFILES["full"], optimizers=labels)
    run_benchmark(
        profile,
        args.out,
        workers=args.workers,
        device=args.device,
        contender_table=table,
        with_overhead=False,
    )
