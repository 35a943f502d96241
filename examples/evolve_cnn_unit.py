"""Evolve images for one unit of a network, the way XDream's ``experiment_CNN.py`` did.

Define the three roles (generator, scorer, optimiser), run the loop, and read the records back.

    python examples/evolve_cnn_unit.py --out runs/example --generations 10
"""

from __future__ import annotations

import argparse

import numpy as np

import xdream.generators
import xdream.optimizers
import xdream.records
import xdream.scorers
from xdream.experiment import Experiment


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/example")
    parser.add_argument("--generations", type=int, default=10)
    args = parser.parse_args(argv)

    # 1. The generator: codes -> images (the embedded Fourier generator needs no weights).
    generator = xdream.generators.make("fourier")
    # 2. The scorer: one unit of the embedded ImageNet network, read at the centre of its map.
    unit = xdream.scorers.make_unit("efficientnet-lite0", layer="blocks.10", channel=5)
    # 3. The optimiser: XDream's genetic algorithm with its fc6 settings.
    optimizer = xdream.optimizers.make("genetic", dim=generator.code_dim, seed=0)

    summary = Experiment(generator, unit, optimizer, args.out, generations=args.generations).run()

    # Read the record back: every code, its score, and the natural reference images' scores.
    record = xdream.records.read(args.out)
    best = int(np.nanargmax(record.scores))
    print(
        f"best image {record.image_ids[best]} (generation {record.generation[best]}) "
        f"scored {record.scores[best]:.3f}; best reference {np.nanmax(record.ref_scores):.3f}"
    )
    print(f"mean score per generation: {np.round(record.mean_per_generation, 2).tolist()}")
    return summary


if __name__ == "__main__":
    main()
