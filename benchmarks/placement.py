"""Benchmark (not a test): ``[target] placement`` ``"full"`` against ``"rf"``.

For units of the embedded network (EfficientNet-Lite0) whose receptive field is smaller than
its 224 px input, each unit is evolved twice per seed, with the images filling the input and
with them placed over the unit's receptive field, on the default generator and optimiser, and
the best noise-free score after the budget is printed side by side (a table per unit, and the
ratio rf / full per seed and its median over the runs). Runs that finished are read back, so a
killed benchmark goes on where it stopped.

    python benchmarks/placement.py OUT [--presentations 3000] [--seeds 0 1 2]
        [--units blocks.2:0 blocks.2:1 ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from xdream import config, records
from xdream.experiment import Experiment

UNITS = [f"blocks.2:{c}" for c in (0, 1, 2)] + [f"blocks.4:{c}" for c in (0, 1, 2)]
UNITS += [f"blocks.7:{c}" for c in (0, 1)]


def best(folder: Path, layer: str, channel: int, seed: int, placement: str, budget: int) -> float:
    """The run's best clean score: read back if it finished, else run (or resumed) now."""
    summary = records.read_summary(folder) if folder.exists() else {}
    if summary.get("status") != "finished":
        cfg = {
            "experiment": {"presentations": budget, "n_references": 0, "seed": seed},
            "target": {"layer": layer, "channel": channel, "placement": placement, "device": "cpu"},
        }
        if (folder / "checkpoint.pkl").exists():
            Experiment.resume(folder).run()
        else:
            Experiment.from_config(config.from_dict(cfg), folder).run()
        summary = records.read_summary(folder)
    return float(summary["best_clean_score"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the runs (read back when run again)")
    parser.add_argument("--presentations", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--units", nargs="+", default=UNITS, help="LAYER:CHANNEL each")
    args = parser.parse_args()
    ratios = []
    start = time.perf_counter()
    print("unit            seed      full        rf   rf/full")
    for unit in args.units:
        layer, channel = unit.rsplit(":", 1)
        for seed in args.seeds:
            scores = {
                placement: best(
                    args.out / f"{layer}_{channel}_{seed}_{placement}",
                    layer,
                    int(channel),
                    seed,
                    placement,
                    args.presentations,
                )
                for placement in ("full", "rf")
            }
            ratio = scores["rf"] / scores["full"]
            ratios.append(ratio)
            print(f"{unit:15s} {seed:4d} {scores['full']:9.2f} {scores['rf']:9.2f} {ratio:9.3f}")
    print(
        f"median rf/full over {len(ratios)} runs: {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f}); {time.perf_counter() - start:.0f} s"
    )
    print(json.dumps({"median_ratio": statistics.median(ratios), "runs": len(ratios)}))


if __name__ == "__main__":
    main()
