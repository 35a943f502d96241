"""``xdream bench optimizers``: the optimiser benchmark on the command line.

Wired into ``xdream`` through ``xdream.cli.COMMAND_MODULES``; also runnable on its own as
``python -m xdream.bench.cli bench optimizers --quick``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xdream.errors import XDreamError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench optimizers`` under a ``bench`` command, creating ``bench`` if needed.

    Works whichever benchmark module registers first (``xdream.throughput`` adds ``bench
    throughput`` the same way): the ``bench`` parser and its sub-command action are looked up
    before they are created.
    """
    bench = subparsers.choices.get("bench")
    if bench is None:
        bench = subparsers.add_parser("bench", help="benchmarks (xdream bench optimizers, ...)")
    sub = next((a for a in bench._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    return add_optimizers_parser(sub)


def add_optimizers_parser(bench_subparsers: Any) -> argparse.ArgumentParser:
    """Register ``optimizers`` on the sub-command parser of ``xdream bench``."""
    p = bench_subparsers.add_parser(
        "optimizers",
        help="compare the optimisers on units of the default network (docs/benchmarks.md)",
        description="Run or resume the optimiser benchmark; writes results.csv, summary.json, "
        "optimizers.png and overhead.json to --out. Re-running the same command after a kill "
        "skips finished runs; a stopped run (Ctrl-C) and --summary-only write the tables of "
        "the runs finished so far, marked partial.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the ~10-minute profile (one channel per layer, one seed, fourier)",
    )
    p.add_argument("--out", help="output folder (default: xdream-runs/bench-optimizers[-quick])")
    p.add_argument("--workers", type=int, help="worker processes (default: all CPUs)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device for generator and network: cpu (default), cuda, auto",
    )
    p.add_argument(
        "--generators",
        nargs="+",
        metavar="NAME",
        help="code spaces (default: fourier pixels; quick: fourier)",
    )
    p.add_argument(
        "--optimizers",
        nargs="+",
        metavar="LABEL",
        help="contender labels (default: the profile's; full: genetic pycma annealed-es)",
    )
    p.add_argument("--seeds", type=int, help="seeds per unit (default: 3; quick: 1)")
    p.add_argument(
        "--summary-only",
        action="store_true",
        help="run nothing: write results.csv, summary.json and the plot from the runs already "
        "finished in --out (while a long benchmark runs, or after one was stopped)",
    )
    p.add_argument(
        "--no-overhead",
        action="store_true",
        help="skip the optimiser-overhead measurement at N = 4096",
    )
    p.set_defaults(func=cmd_bench_optimizers)
    return p


def cmd_bench_optimizers(args: argparse.Namespace, console: Any = None) -> int:
    """Handler of ``xdream bench optimizers``."""
    from xdream.bench.optimizers import PROFILES, run_benchmark

    profile = PROFILES["quick" if args.quick else "full"]
    changes: dict[str, Any] = {}
    if args.generators:
        changes["generators"] = tuple(args.generators)
    if args.optimizers:
        changes["optimizers"] = tuple(args.optimizers)
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    if changes:
        profile = dataclasses.replace(profile, **changes)
    if args.workers is not None and args.workers < 1:
        raise XDreamError(f"--workers must be at least 1, got {args.workers}")
    out = Path(args.out or f"xdream-runs/bench-optimizers{'-quick' if args.quick else ''}")
    args.continue_with = "the same command (finished tasks are kept)"
    summary = run_benchmark(
        profile,
        out,
        workers=args.workers,
        device=args.device,
        with_overhead=not args.no_overhead,
        log=_log,
        run=not args.summary_only,
    )
    if not summary["complete"]:
        done, total = summary["tasks"]["finished"], summary["tasks"]["total"]
        print(f"partial results: {done} of {total} tasks finished")
    for gen, entry in summary["generators"].items():
        verdict = entry.get("acceptance", {})
        if verdict.get("winner") is None:
            print(f"{gen}: no verdict: {verdict.get('reason', 'no results')}")
            continue
        print(f"{gen}: winner {verdict.get('winner')}, passes the bars: {verdict.get('passes')}")
        if "reason" in verdict:
            print(f"  {verdict['reason']}")
        for noise, v in verdict.get("noise", {}).items():
            against = _against(entry.get("baselines", {}).get(noise, ["genetic", "pycma"]))
            print(f"  {noise:8s} {v['ratio']:.3f} x {against} (bar {v['bar']})")
    print(f"results in {out}/ (results.csv, summary.json, optimizers.png)")
    if "overhead" in summary:
        print(json.dumps({k: round(v["median_ms"], 2) for k, v in summary["overhead"].items()}))
    return 0


def _against(baselines: Sequence[str]) -> str:
    """What a ratio was measured against, in words."""
    if set(baselines) == {"genetic", "pycma"}:
        return "the better of GA and pycma"
    return " and ".join({"genetic": "GA"}.get(b, b) for b in baselines) + " alone"


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xdream.bench.cli bench optimizers [...]``."""
    parser = argparse.ArgumentParser(prog="xdream")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args, None))
    except XDreamError as err:
        print(f"xdream: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
