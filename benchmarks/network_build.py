"""Benchmark (not a test): what building the target network costs, the old way and the new.

Old and new run side by side in one process, alternating within each repetition (which goes
first alternates too), so the ratio old / new is measured under the same load; on a shared
machine read the ratios, not the times. The "old" code is kept here, as it was before the change:

- ``build``: ``EfficientNet-Lite0`` with its weights; old: the module initialised at random,
  then every tensor overwritten from the file; new: ``xdream.networks.make()`` (the module made
  on the meta device, the file's tensors copied into uninitialised memory);
- ``fold``: batch norms folded into the convolutions of a built network (the units'
  layers kept); old: on a deep copy of the whole network; new: what a scorer in a
  ``reuse()`` block does, a copy of the module objects only (``cache.share_tensors``) folded in
  place (outside a block a scorer folds the network built for it: no copy at all);
- ``scorer``: the scorer of one ``xdream tune`` trial seed or of one many-unit run
  (``xdream.multi.shared_scorer``: build, fold, move, a dry forward pass for the layers'
  shapes); old: build and fold as above; new: inside ``xdream.networks.reuse()`` (as ``xdream
  tune`` runs), the network built once (the block opened before the timings) and shared;
- ``scorer-no-reuse``: the same, new outside any ``reuse()`` block (one single run);
- ``multi``: ``MultiExperiment.from_config`` of 3 units (a new run folder each time);
- ``tune``: ``xdream.tune.run_tune`` of a study of ``--trials`` tiny trials (2 generations of 4
  codes of 32 px images at ``blocks.0``), from an empty folder each time: the network build is a
  large share of such a trial, so this is the best case; a real trial runs far longer.

Prints one JSON object: per operation the median old / new time ratio over the repetitions
(each repetition one old and one new timing), and the medians and samples in seconds.

    python benchmarks/network_build.py [--repeats 7] [--trials 3] [--only build,fold,...]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import itertools
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xdream import config, multi, networks
from xdream.multi import MultiExperiment, MultiUnitScorer, Unit, fold_batchnorm
from xdream.networks import efficientnet_lite
from xdream.networks.cache import share_tensors

UNITS = [Unit("blocks.10", 3), Unit("blocks.4", 1), Unit("blocks.14", 7)]

CONFIG: dict[str, Any] = {
    "experiment": {"generations": 2, "n_references": 2},
    "generator": {"name": "pixels", "size": 32, "code_size": 8},
    "optimizer": {"name": "genetic", "population_size": 4},
    "target": {"layer": "blocks.0", "device": "cpu"},
    "targets": [{"channels": [1, 2, 3]}],
}
TUNE: dict[str, Any] = {
    "trials": 1,
    "references": 8,
    "params": {"mutation_rate": {"low": 0.1, "high": 0.9}},
}


# -- the old code, as it was before the change ---------------------------------------------------


def old_make() -> networks.Network:
    """``efficientnet_lite0()`` before: random initialisation, then the file's tensors."""
    module = efficientnet_lite.EfficientNetLite0()
    path = efficientnet_lite.weight_file()
    efficientnet_lite.load_weights(module, path)
    return networks.Network(module.eval(), efficientnet_lite.PREPROCESS, "efficientnet-lite0")


def old_fold(module: nn.Module, keep: Sequence[str] = ()) -> nn.Module:
    """``multi.fold_batchnorm`` before: a deep copy of the network, folded in place."""
    module = copy.deepcopy(module).eval()
    for name, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for (cname, conv), (bname, bn) in itertools.pairwise(list(seq.named_children())):
            full = f"{name}.{cname}" if name else cname
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
                continue
            if full in keep or bn.running_mean is None or bn.running_var is None:
                continue
            with torch.no_grad():
                scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
                shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
                bias = shift if conv.bias is None else conv.bias * scale + shift
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bias.detach().clone())
            setattr(seq, bname, nn.Identity())
    return module


def old_shared_scorer(cfg: Any, units: Sequence[Unit], **options: Any) -> MultiUnitScorer:
    """``multi.shared_scorer`` before: a network built for each scorer, folded on a deep copy."""
    t = cfg.target
    network = old_make()
    folded = old_fold(network.module, [u.layer for u in units])
    network = dataclasses.replace(network, module=folded)
    return MultiUnitScorer(
        network,
        units,
        pre_activation=t.pre_activation,
        image_size=t.image_size,
        batch_size=t.batch_size,
        device=t.device,
        fold_bn=False,
        **options,
    )


@contextlib.contextmanager
def old_scorers() -> Iterator[None]:
    """Every scorer built as before (``multi.shared_scorer``, which tune and MultiExperiment
    look up when they build one)."""
    new = multi.shared_scorer
    multi.shared_scorer = old_shared_scorer  # type: ignore[assignment]
    try:
        yield
    finally:
        multi.shared_scorer = new


# -- the timings ---------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def operations(work: Path, trials: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    cfg = config.from_dict(CONFIG)
    single = {k: v for k, v in CONFIG.items() if k != "targets"}
    one = config.from_dict({**single, "target": {"layer": "blocks.10", "device": "cpu"}})
    built = networks.make()
    keep = [u.layer for u in UNITS]
    counter = itertools.count()

    def folder() -> Path:
        path = work / f"run{next(counter)}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def multi_run(old: bool) -> None:
        with old_scorers() if old else contextlib.nullcontext():
            MultiExperiment.from_config(cfg, folder()).release_folders()

    def tune(old: bool) -> None:
        from xdream import tune

        section = tune.parse_section({**TUNE, "trials": trials}, cfg)
        with old_scorers() if old else contextlib.nullcontext():
            tune.run_tune(cfg, section, folder(), trials=trials)

    return {
        "build": (old_make, networks.make),
        "fold": (
            lambda: old_fold(built.module, keep),
            lambda: fold_batchnorm(share_tensors(built.module), keep, in_place=True),
        ),
        "scorer": (
            lambda: old_shared_scorer(one, UNITS[:1]),
            lambda: multi.shared_scorer(one, UNITS[:1]),
        ),
        "scorer-no-reuse": (
            lambda: old_shared_scorer(one, UNITS[:1]),
            lambda: multi.shared_scorer(one, UNITS[:1]),
        ),
        "multi": (lambda: multi_run(True), lambda: multi_run(False)),
        "tune": (lambda: tune(True), lambda: tune(False)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--trials", type=int, default=3, help="trials of each tune study")
    parser.add_argument("--only", default="", help="comma-separated operations (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the machine is shared: one core for both sides alike
    work = Path(tempfile.mkdtemp(prefix="xdream-network-build-"))
    try:
        ops = operations(work, args.trials)
        chosen = [o for o in args.only.split(",") if o] or list(ops)
        out: dict[str, Any] = {"repeats": args.repeats, "ratios": {}, "seconds": {}}
        for name in chosen:
            old, new = ops[name]
            scope = networks.reuse() if name == "scorer" else contextlib.nullcontext()
            with scope:
                old(), new()  # warm-up: first-call costs, the page cache, the reuse() block
                samples: dict[str, list[float]] = {"old": [], "new": []}
                for rep in range(args.repeats):
                    order = [("old", old), ("new", new)]
                    for side, fn in order if rep % 2 == 0 else order[::-1]:
                        samples[side].append(timed(fn))
            ratios = [o / n for o, n in zip(samples["old"], samples["new"])]
            out["ratios"][name] = round(statistics.median(ratios), 2)
            out["seconds"][name] = {
                side: {"median": statistics.median(v), "samples": [round(x, 4) for x in v]}
                for side, v in samples.items()
            }
            print(name, out["ratios"][name], flush=True)
        print(json.dumps(out, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
