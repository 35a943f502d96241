"""``xdream bench throughput``: how fast the loop runs, against what the network allows.

Three pipelines on the same network, generator and images, measured side by side (alternating,
so machine load hits them alike):

* **raw**: the batched forward pass alone: render the generation's codes, then one pass of the
  network truncated at the target layer over the codes' images and the reference crops;
* **loop**: a whole :class:`~xdream.experiment.Experiment` generation as ``xdream run`` runs
  it (:meth:`~xdream.experiment.Experiment.generations`: ask, render, references, score, tell,
  and every record: journal, HDF5, PNG, checkpoint, summary, written in the background while
  the next generation is scored);
* **xdream-style**: XDream's pipeline: one code rendered at a time, the double resize (to
  ``image_size``, then to the network's input), the whole network, default memory layout.

``overhead`` is the median over repetitions of ``loop / raw`` measured back to back (a paired
ratio, robust to the machine's speed drifting between repetitions) and ``speedup =
xdream-style / loop`` (medians of seconds per generation), for units across the network's
depth. A units-at-once sweep times :class:`~xdream.multi.MultiExperiment`
generations for 1, 2, 4, ... units and reports presentations per second summed over units.
Peak memory: the process's maximum resident set size (and CUDA's peak allocation on a GPU).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xdream.errors import XDreamError

if TYPE_CHECKING:  # torch is imported where it runs, so `xdream --help` does not import it
    import torch

DEFAULT_LAYERS = ("blocks.1", "blocks.5", "blocks.10", "blocks.14")
"""Units across EfficientNet-Lite0's depth (early, middle, late-middle, late)."""


def _config(args: argparse.Namespace, layer: str, channel: int = 0) -> Any:
    from xdream import config

    return config.from_dict(
        {
            "experiment": {
                "generations": 10_000,
                "n_references": args.references,
                "batch_size": max(args.population, 1),
                "tf32": args.tf32,
            },
            "generator": {"name": args.generator},
            "optimizer": {"name": "genetic", "population_size": args.population},
            "target": {
                "network": args.network,
                "layer": layer,
                "channel": channel,
                "device": args.device,
                "batch_size": args.batch_size,
            },
        }
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "precision": args.precision,
        "compile": args.compile,
        "channels_last": args.cl,
        "fold_bn": args.fold_bn,
        "cpu_batch_size": args.cpu_batch_size,
    }


def _compare(args: argparse.Namespace, layer: str, folder: Path) -> dict[str, float]:
    """Median seconds per generation of the loop, the raw forward and XDream's pipeline, and
    the median of the per-repetition ratio loop / raw (``overhead``).

    The three alternate within each repetition, so changing machine load hits them alike. The
    loop runs ``--chain`` consecutive generations per repetition, as ``xdream run`` does, and
    its time includes waiting for the work it left in the background (the last generation's
    records, the next reference crops), so none of it lands on the next pipeline's clock.
    """
    import torch

    from xdream import generators
    from xdream.experiment import Experiment
    from xdream.multi import Unit, shared_scorer

    cfg = _config(args, layer)
    multi = shared_scorer(cfg, [Unit(layer, 0)], **_options(args))
    generator = generators.make(args.generator).to(multi.device)
    exp = Experiment.from_config(cfg, folder, unit=multi.view(0), generator=generator)
    exp._start()
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((args.population, generator.code_dim)).astype(np.float32)
    refs, _ = exp.references.sample(args.references)
    k = args.chain

    def raw() -> None:
        for _ in range(k):
            images = generator.generate(codes, batch_size=args.population)
            multi.activations(torch.cat([images, refs]))

    generations = exp.generations()

    def loop() -> None:
        for _ in range(k):
            next(generations)
        exp._settle()  # the records handed to the background thread are on disk
        exp.references.wait()

    pipelines = {"raw_s": raw, "loop_s": loop, "xdream_style_s": _xdream_style(args, layer)}
    times: dict[str, list[float]] = {key: [] for key in pipelines}
    for rep in range(args.repeats + 1):  # the first round is a warm-up
        for key, run_one in pipelines.items():
            t = time.perf_counter()
            run_one()
            _sync(multi.device)
            if rep:
                per = 1 if key == "xdream_style_s" else k
                times[key].append((time.perf_counter() - t) / per)
    generations.close()
    out = {key: statistics.median(v) for key, v in times.items()}
    out["overhead"] = statistics.median(
        loop / raw for loop, raw in zip(times["loop_s"], times["raw_s"])
    )
    return out


def _xdream_style(args: argparse.Namespace, layer: str) -> Callable[[], None]:
    """One generation of XDream's pipeline: one code at a time, double resize, whole network."""
    import torch

    from xdream import generators, networks
    from xdream.networks.base import resize
    from xdream.scorers.cnn import resolve_device

    device = resolve_device(args.device)
    net = networks.make(args.network)
    module = net.module.eval().to(device)
    generator = generators.make(args.generator).to(device)
    target = module.get_submodule(layer)
    got: list[torch.Tensor] = []
    target.register_forward_hook(lambda _m, _i, out: got.append(out[0, 0].clone()))
    rng = np.random.default_rng(0)
    n = args.population + args.references
    codes = torch.as_tensor(rng.standard_normal((n, generator.code_dim)).astype(np.float32))

    def generation() -> None:
        got.clear()
        with torch.no_grad():
            for code in codes:
                image = generator(code[None].to(device))
                image = resize(resize(image, args.image_size), net.preprocess.input_size)
                module(net.preprocess(image))
                float(got[-1].flatten()[0])  # read the unit (synchronises on a GPU)

    return generation


def _units_at_once(args: argparse.Namespace, folder: Path) -> list[dict[str, float]]:
    """Presentations per second summed over units, for each number of units."""
    from xdream import config
    from xdream.multi import MultiExperiment

    rows = []
    for n in args.units:
        data = _config(args, args.units_layer).to_dict()
        data["targets"] = [{"channels": f"0:{n}"}]
        multi = MultiExperiment.from_config(
            config.from_dict(data), folder / f"units{n}", **_options(args)
        )
        for e in multi.experiments:
            e._start()
        times = []
        for rep in range(args.repeats + 1):
            t = time.perf_counter()
            multi.step()
            _sync(multi.multi.device)
            if rep:
                times.append(time.perf_counter() - t)
        for e in multi.experiments:  # records on disk before the folder is removed
            e.flush()
            e.references.wait()
        s = statistics.median(times)
        rows.append(
            {
                "units": n,
                "seconds_per_generation": s,
                "presentations_per_s": n * args.population / s,
                "presentations_per_s_per_unit": args.population / s,
            }
        )
    return rows


def peak_memory_mb() -> float:
    """This process's maximum resident set size in MiB (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / (1024 if sys.platform == "darwin" else 1)


def run(args: argparse.Namespace, console: Any) -> dict[str, Any]:
    """Run the benchmark; returns every figure (also written as JSON when asked)."""
    import torch

    from xdream.precision import tf32_mode

    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "network": args.network,
        "generator": args.generator,
        "device": args.device,
        "precision": args.precision,
        "tf32": args.tf32,
        "compile": args.compile,
        "threads": torch.get_num_threads(),
        "fold_bn": args.fold_bn,
        "cpu_batch_size": args.cpu_batch_size,
        "channels_last": args.cl,
        "population": args.population,
        "references": args.references,
        "torch": torch.__version__,
        "layers": [],
    }
    amp = args.precision != "float32"
    # every pipeline in the same arithmetic as the loop's experiments (IEEE float32 unless
    # --tf32); the caller's setting is put back afterwards
    with tf32_mode(args.tf32), tempfile.TemporaryDirectory() as tmp:
        for layer in args.layers:
            console.print(f"layer {layer}: loop, raw forward, XDream-style ...", highlight=False)
            lr = _compare(args, layer, Path(tmp) / layer)
            xs = lr["xdream_style_s"]
            p = args.population
            row = {
                "layer": layer,
                "raw_presentations_per_s": p / lr["raw_s"],
                "loop_presentations_per_s": p / lr["loop_s"],
                "xdream_style_presentations_per_s": p / xs,
                "overhead": lr["overhead"],
                "speedup_vs_xdream_style": xs / lr["loop_s"],
            }
            results["layers"].append(row)
            console.print(
                f"  raw {row['raw_presentations_per_s']:.1f}/s, loop "
                f"{row['loop_presentations_per_s']:.1f}/s, XDream-style "
                f"{row['xdream_style_presentations_per_s']:.1f}/s: overhead "
                f"{row['overhead']:.3f}, speed-up {row['speedup_vs_xdream_style']:.2f}x",
                highlight=False,
            )
        if args.units:
            console.print(f"units at once on {args.units_layer} ...", highlight=False)
            results["units_at_once"] = _units_at_once(args, Path(tmp))
    layers = results["layers"]
    if layers:
        results["mean_overhead"] = float(np.mean([r["overhead"] for r in layers]))
        results["mean_speedup_vs_xdream_style"] = float(
            np.mean([r["speedup_vs_xdream_style"] for r in layers])
        )
    results["peak_rss_mb"] = peak_memory_mb()
    if torch.cuda.is_available() and args.device != "cpu":
        results["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    results["mixed_precision"] = amp
    return results


def _print_table(results: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="presentations per second (higher is better)", title_justify="left")
    for col in ("layer", "raw forward", "whole loop", "XDream-style", "overhead", "speed-up"):
        table.add_column(col, justify="right")
    for r in results["layers"]:
        table.add_row(
            r["layer"],
            f"{r['raw_presentations_per_s']:.1f}",
            f"{r['loop_presentations_per_s']:.1f}",
            f"{r['xdream_style_presentations_per_s']:.1f}",
            f"{r['overhead']:.3f}",
            f"{r['speedup_vs_xdream_style']:.2f}x",
        )
    console.print(table)
    if "units_at_once" in results:
        t = Table(title="units at once (shared forward passes)", title_justify="left")
        for col in ("units", "s / generation", "presentations/s (all units)", "per unit"):
            t.add_column(col, justify="right")
        for r in results["units_at_once"]:
            t.add_row(
                str(r["units"]),
                f"{r['seconds_per_generation']:.2f}",
                f"{r['presentations_per_s']:.1f}",
                f"{r['presentations_per_s_per_unit']:.1f}",
            )
        console.print(t)
    if "mean_overhead" in results:
        console.print(
            f"mean overhead {results['mean_overhead']:.3f}, mean speed-up over XDream-style "
            f"{results['mean_speedup_vs_xdream_style']:.2f}x, peak RSS "
            f"{results['peak_rss_mb']:.0f} MiB",
            highlight=False,
        )


def plot_units(results: dict[str, Any], path: Path) -> None:
    """PNG of presentations per second (all units, and per unit) against the number of units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["units_at_once"]
    n = [r["units"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    ax.plot(n, [r["presentations_per_s"] for r in rows], "o-", label="all units")
    ax.plot(n, [r["presentations_per_s_per_unit"] for r in rows], "s--", label="per unit")
    ax.set_xscale("log", base=2)
    ax.set_xticks(n, [str(v) for v in n])
    ax.set_xlabel("units run at once")
    ax.set_ylabel("presentations / s")
    ax.set_title(f"{results['network']} {results.get('units_layer', '')} on {results['device']}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def cmd_throughput(args: argparse.Namespace, console: Any) -> int:
    """Handler of ``xdream bench throughput``."""
    if args.population < 2:
        raise XDreamError(f"--population must be at least 2, got {args.population}")
    if args.repeats < 1:
        raise XDreamError(f"--repeats must be at least 1, got {args.repeats}")
    if args.chain < 1:
        raise XDreamError(f"--chain must be at least 1, got {args.chain}")
    _check_arguments(args)
    _check_layers(args)
    results = run(args, console)
    results["units_layer"] = args.units_layer
    _print_table(results, console)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        console.print(f"every figure, as JSON: {args.json}", highlight=False)
    if args.plot and "units_at_once" in results:
        plot_units(results, Path(args.plot))
        console.print(f"units-at-once curve, as PNG: {args.plot}", highlight=False)
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse, naming the flag, what would fail only after minutes of measuring (or not at
    all): sizes and counts out of range, nothing to measure, a missing folder for the output
    or an output that is a folder."""
    for flag, value, least in (
        ("--image-size", args.image_size, 1),
        ("--threads", args.threads, 0),
        ("--cpu-batch-size", args.cpu_batch_size, 0),
    ):
        if value < least:
            raise XDreamError(f"{flag} must be at least {least}, got {value}")
    if any(n < 1 for n in args.units):
        raise XDreamError(f"--units must be numbers of units >= 1, got {args.units}")
    if not args.layers and not args.units:
        raise XDreamError("nothing to measure: --layers and --units are both empty")
    if args.plot and not args.units:
        raise XDreamError("--plot draws the --units curve, and --units is empty")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path and Path(path).is_dir():
            raise XDreamError(f"{flag} {path} is a folder: give a file name")
        if path and not Path(path).resolve().parent.is_dir():
            raise XDreamError(f"{flag} {path}: the folder {Path(path).parent} does not exist")


def _check_layers(args: argparse.Namespace) -> None:
    """Refuse, naming the flag, a layer of ``--layers`` or ``--units-layer`` that the network
    lacks and ``--units`` beyond the channels of ``--units-layer`` (the units of ``n`` units
    at once are its channels ``0..n-1``): one dry forward pass of the network, where these
    would otherwise fail after every layer before them was measured."""
    from xdream import networks
    from xdream.errors import did_you_mean

    net = networks.make(args.network)
    shapes = dict(networks.layer_table(net.module, net.preprocess.input_size))
    wanted = [("--layers", layer) for layer in args.layers]
    if args.units:
        wanted.append(("--units-layer", args.units_layer))
    for flag, layer in wanted:
        if layer not in shapes:
            raise XDreamError(
                f"{flag}: network {args.network!r} has no layer {layer!r}."
                f"{did_you_mean(layer, shapes)} List the layers with "
                f"`xdream layers {args.network}`."
            )
    if args.units:
        channels = shapes[args.units_layer][0]
        if max(args.units) > channels:
            raise XDreamError(
                f"--units {max(args.units)}: layer {args.units_layer!r} of {args.network!r} has "
                f"{channels} channels, and n units at once are its channels 0..n-1; give "
                f"--units up to {channels} (or another --units-layer)"
            )


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas: {text!r}"
        ) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``xdream bench throughput``."""
    p.add_argument(
        "--network",
        default="efficientnet-lite0",
        help="registered network (default efficientnet-lite0)",
    )
    p.add_argument("--generator", default="fourier", help="registered generator (default fourier)")
    p.add_argument(
        "--layers",
        type=lambda s: [v for v in s.split(",") if v],
        default=list(DEFAULT_LAYERS),
        help=f"target layers, comma-separated (default {','.join(DEFAULT_LAYERS)})",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="mixed precision for the network (autocast; default float32: none); float16 is for "
        "CUDA",
    )
    p.add_argument(
        "--tf32",
        action="store_true",
        help="allow TensorFloat-32 on CUDA, as [experiment] tf32 = true does "
        "(default: IEEE float32, as experiments run by default)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument(
        "--no-channels-last",
        dest="cl",
        action="store_false",
        help="keep the default memory layout (channels_last is used on the CPU by default)",
    )
    p.set_defaults(cl=None)
    p.add_argument(
        "--no-fold-bn",
        dest="fold_bn",
        action="store_false",
        help="keep batch norms separate (they are folded into the convolutions by default)",
    )
    p.add_argument(
        "--cpu-batch-size",
        type=int,
        default=4,
        help="largest batch on the CPU (default 4: small batches stay in cache); 0: no cap",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--population", type=int, default=20, help="images per generation (20)")
    p.add_argument("--references", type=int, default=10, help="reference crops per generation (10)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (64)")
    p.add_argument(
        "--image-size", type=int, default=100, help="XDream's intermediate resize (100 px)"
    )
    p.add_argument("--repeats", type=int, default=9, help="timed repetitions (9)")
    p.add_argument(
        "--chain",
        type=int,
        default=3,
        help="consecutive generations of the loop (and raw passes) per repetition (3)",
    )
    p.add_argument(
        "--units",
        type=_int_list,
        default=[1, 2, 4, 8, 16],
        help="numbers of units for the units-at-once curve (default 1,2,4,8,16; '' skips it)",
    )
    p.add_argument(
        "--units-layer",
        default="blocks.10",
        help="layer of the units-at-once units: n units are its channels 0..n-1, so no --units "
        "may exceed its channel count (default blocks.10)",
    )
    p.add_argument("--json", help="write every figure to this JSON file")
    p.add_argument("--plot", help="write the units-at-once curve to this PNG")


def add_parser(subparsers: Any) -> None:
    """Add ``bench throughput`` under a ``bench`` command, creating ``bench`` if needed.

    Works whichever of this module and another benchmark module registers first: the ``bench``
    parser and its sub-command action are looked up before they are created.
    """
    bench = subparsers.choices.get("bench")
    if bench is None:
        bench = subparsers.add_parser("bench", help="benchmarks (xdream bench throughput, ...)")
    sub = next((a for a in bench._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    p = sub.add_parser(
        "throughput",
        help="presentations/s of the loop vs the raw forward pass and XDream's pipeline",
        description=__doc__.split("\n\n")[0].replace("``", "") if __doc__ else None,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_throughput)
