"""Bring your own target: any ``torch.nn.Module`` as the scorer, with XDream's Poisson noise.

Here the "neuron" is a small hand-made network that prefers red-green vertical edges in the
image centre; swap in your own model and preprocessing. The record keeps both the noisy scores
the optimiser saw and the noise-free ones.

    python examples/custom_scorer_noise.py --out runs/custom --generations 15
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import xdream.generators
import xdream.optimizers
import xdream.records
from xdream.experiment import Experiment
from xdream.networks import Preprocess
from xdream.scorers import CNNUnitScorer, NoisyScorer, make_noise


def edge_network() -> torch.nn.Module:
    """A fixed 2-layer network: a red-minus-green vertical-edge filter, then a ReLU."""
    conv = torch.nn.Conv2d(3, 1, kernel_size=5, padding=2, bias=False)
    with torch.no_grad():
        kernel = torch.zeros(3, 5, 5)
        kernel[0, :, :2], kernel[0, :, 3:] = 1.0, -1.0
        kernel[1, :, :2], kernel[1, :, 3:] = -1.0, 1.0
        conv.weight.copy_(kernel[None] / 20)
    return torch.nn.Sequential(conv, torch.nn.ReLU())


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/custom")
    parser.add_argument("--generations", type=int, default=15)
    args = parser.parse_args(argv)

    generator = xdream.generators.make("pixels", size=64, code_size=16)
    preprocess = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=64)
    # layer "1" is the ReLU of the Sequential; channel 0 at the centre of the map
    unit = CNNUnitScorer(edge_network(), "1", 0, preprocess=preprocess, name="edge-net")
    noisy = NoisyScorer(unit, make_noise("poisson", scale=20), seed=1)
    optimizer = xdream.optimizers.make("genetic", dim=generator.code_dim, seed=0)

    summary = Experiment(
        generator, noisy, optimizer, args.out, generations=args.generations, n_references=4
    ).run()
    record = xdream.records.read(args.out)
    print(
        f"best noisy score {np.nanmax(record.scores):.3f}, "
        f"best clean score {np.nanmax(record.clean_scores):.3f}"
    )
    return summary


if __name__ == "__main__":
    main()
