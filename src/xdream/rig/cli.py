"""``xdream rig-sim``: run the simulated recording system (see :mod:`xdream.rig.sim`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xdream.cli import at_least
from xdream.errors import XDreamError


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text}")
    return value


def add_parser(sub: Any) -> None:
    """Register ``rig-sim`` with the ``xdream`` command line."""
    p = sub.add_parser(
        "rig-sim",
        help="a simulated recording rig: scores shown images with a network unit",
        description=(
            "Watch WRITE_DIR for blocks of stimuli, score them with a network unit (plus noise) "
            "and write block{NNN} response files to SCORE_DIR, with latency, dropped, duplicate "
            "and late responses. Stop with Ctrl-C; a restarted simulator skips blocks it handled "
            "(but a block it dropped that xdream still waits for, as after a pause: it is shown "
            "again). "
            "A block it answered whose response file was moved aside (one xdream skipped) is "
            "answered again only while xdream may still be waiting for it: the newest block in "
            "WRITE_DIR, which xdream's rig/status.json (in --run, or in the folder above "
            "WRITE_DIR) says it waits for or paused at; a response archived or deleted "
            "otherwise is not answered again."
        ),
    )
    p.add_argument("write_dir", help="folder where xdream writes the stimuli ([rig] write_dir)")
    p.add_argument("--score-dir", help="folder for response files (default: WRITE_DIR)")
    p.add_argument(
        "--network", default="efficientnet-lite0", help="registered network (default: %(default)s)"
    )
    p.add_argument(
        "--layer", default="blocks.10", help="layer of the simulated neuron (default: %(default)s)"
    )
    p.add_argument(
        "--channel",
        type=int,
        default=5,
        help="channel of the simulated neuron, from 0 (default: %(default)s)",
    )
    p.add_argument("--weights", help="weight file for the network (default: its own)")
    p.add_argument("--noise", help="noise model: poisson or gain (default: none)")
    p.add_argument(
        "--noise-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a noise model parameter, e.g. scale=0.5 (repeatable)",
    )
    p.add_argument(
        "--format",
        default="mat73",
        help="response format: mat73, mat7, h5, json, csv or a plug-in's writer (default mat73)",
    )
    p.add_argument("--plugin", action="append", default=[], help="plug-in module or .py file")
    p.add_argument(
        "--latency",
        nargs=2,
        type=float,
        default=(0.05, 0.2),
        metavar=("MIN", "MAX"),
        help="response latency, uniform in [MIN, MAX] seconds (default 0.05 0.2)",
    )
    p.add_argument("--drop", type=_probability, default=0.0, help="P(block gets no response)")
    p.add_argument("--duplicate", type=_probability, default=0.0, help="P(response rewritten)")
    p.add_argument("--late", type=_probability, default=0.0, help="P(response comes late)")
    p.add_argument(
        "--late-delay",
        type=at_least(0, float),
        default=5.0,
        help="seconds before a late response is written, >= 0 (default 5)",
    )
    p.add_argument(
        "--gains",
        default="1",
        help="comma-separated channel gains: channel c records gain_c x the unit (default 1)",
    )
    p.add_argument("--slow-write", action="store_true", help="write files non-atomically")
    p.add_argument("--no-manifest", action="store_true", help="do not wait for block{NNN}.txt")
    p.add_argument(
        "--seed",
        type=at_least(0),
        default=0,
        help="seed of drops, latencies and noise, an integer >= 0 (default 0)",
    )
    p.add_argument(
        "--run",
        help=(
            "xdream's experiment folder, whose rig/status.json says which block xdream waits "
            "for (default: the folder above WRITE_DIR, where its status names WRITE_DIR)"
        ),
    )
    p.add_argument("--log", help="JSON-lines log (default SCORE_DIR/.rig-sim.jsonl)")
    p.add_argument(
        "--max-blocks", type=at_least(1), help="exit after handling this many blocks (>= 1)"
    )
    p.add_argument(
        "--idle-exit", type=at_least(0, float), help="exit after this many idle seconds (>= 0)"
    )
    p.set_defaults(func=cmd_rig_sim)


def cmd_rig_sim(args: argparse.Namespace, console: Any) -> int:
    from xdream import scorers
    from xdream.rig import formats
    from xdream.rig.sim import RigSim, SimSettings

    if args.noise_param and not args.noise:
        raise XDreamError(
            f"--noise-param {args.noise_param[0]!r} needs a noise model: give --noise "
            f"({' or '.join(scorers.NOISE_REGISTRY.names())}) too, or leave --noise-param out"
        )
    formats.load_plugins(args.plugin)
    params: dict[str, Any] = {}
    for item in args.noise_param:
        key, sep, value = item.partition("=")
        if not sep:
            raise XDreamError(f"--noise-param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = int(value) if value.isdigit() else float(value)
        except ValueError:
            raise XDreamError(
                f"--noise-param {item!r}: VALUE must be a number (as in scale=0.5)"
            ) from None
    unit: Any = scorers.make_unit(
        args.network, layer=args.layer, channel=args.channel, weights=args.weights
    )
    if args.noise:
        unit = scorers.NoisyScorer(
            unit, scorers.make_noise(args.noise, **params), seed=args.seed + 1
        )
    try:
        gains = tuple(float(g) for g in args.gains.split(","))
    except ValueError:
        raise XDreamError(
            f"--gains expects numbers separated by commas, got {args.gains!r}"
        ) from None
    settings = SimSettings(
        response_format=args.format,
        latency=(args.latency[0], args.latency[1]),
        drop=args.drop,
        duplicate=args.duplicate,
        late=args.late,
        late_delay=args.late_delay,
        gains=gains,
        slow_write=args.slow_write,
        manifest=not args.no_manifest,
        seed=args.seed,
    )
    if args.run is not None and not Path(args.run).is_dir():  # a typo waits in silence
        console.print(
            f"rig-sim: note: --run {args.run!r} is not a folder (yet): its rig/status.json is "
            "read once xdream has started a run there; check the path if it has started"
        )
    sim = RigSim(args.write_dir, args.score_dir, unit, settings, log=args.log, run=args.run)
    console.print(
        f"rig-sim: watching {sim.write_dir}, writing {args.format} responses to "
        f"{sim.score_dir} (drop {args.drop}, latency {args.latency[0]}-{args.latency[1]} s)",
        highlight=False,
    )
    return sim.run(max_blocks=args.max_blocks, idle_exit=args.idle_exit)
