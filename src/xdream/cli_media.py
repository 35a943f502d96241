"""Sub-commands ``xdream encode``, ``xdream report`` and ``xdream render``.

Registered through :data:`xdream.cli.COMMAND_MODULES`; heavy imports happen in the handlers.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from xdream.cli import at_least
from xdream.errors import ConfigError, RecordUnreadableError, XDreamError


def _key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``, the value read as a YAML config's is (``size=012`` and ``x=no`` are
    strings, which the parameter refuses, not 10 and false)."""
    import yaml

    from xdream.config import _UniqueKeyLoader

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. size=256), got {text!r}")
    return key.strip(), yaml.load(value, Loader=_UniqueKeyLoader)


def cmd_encode(args: argparse.Namespace, console: Any) -> int:
    """Fit codes of ``--generator`` to the images and save codes, reconstructions, errors."""
    import torch

    from xdream import encode, generators
    from xdream.cli import _default_out, _made
    from xdream.precision import tf32_mode
    from xdream.scorers.cnn import resolve_device

    feature_weight = 1.0 if args.feature_weight is None else args.feature_weight
    encode.check_options(steps=args.steps, lr=args.lr, feature_weight=feature_weight)
    if args.feature_weight is not None and args.feature_layer is None:
        raise XDreamError("--feature-weight needs --feature-layer (the layer of the feature loss)")
    if args.out:  # created and written into now, not after the fit
        _made.extend(encode.make_out(args.out))  # removed again if the command fails
    device = resolve_device(args.device)
    try:
        generator = generators.build(args.generator, dict(args.param or []), python=False)
        generator = generator.to(device)
    except ConfigError as err:  # a config file's syntax, said as on the command line
        key = re.search(r"'(\w+)' must be ", str(err))  # the fix said as on the command line
        raise ConfigError(
            re.sub(
                r', as (\S+)(?: rather than "\S+")?',
                lambda m: f", as in --param {key[1] if key else 'KEY'}={m[1]}",
                str(err),
                count=1,
            )
        ) from None
    out = Path(args.out) if args.out else _default_out(generator.name, root="xdream-codes")
    names = [encode.image_name(s) for s in args.images]
    if len(set(names)) != len(names):
        raise XDreamError(f"images must have distinct file names, got {names}")
    notes: list[str] = []
    images = torch.cat([encode.load_image(s, generator.output_size, notes) for s in args.images])
    for note in notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    features = None
    if args.feature_layer is not None:
        features = encode.LayerFeatures(args.feature_network, args.feature_layer)
    console.print(
        f"encoding {len(names)} image(s) into {generator.name} codes ({generator.code_dim} "
        f"entries, {args.steps} steps, on {device})"
        + (
            f" with a feature loss on {args.feature_network} {args.feature_layer}"
            if features
            else ""
        ),
        highlight=False,
    )
    with tf32_mode(False):  # IEEE float32 on CUDA, as experiments compute
        result = encode.encode(
            generator,
            images,
            steps=args.steps,
            lr=args.lr,
            features=features,
            feature_weight=feature_weight,
        )
    encode.save(out, result, names, generator)
    for name, rmse, psnr in zip(names, result.rmse, result.psnr):
        console.print(f"{name}: pixel RMSE {rmse:.4f} (PSNR {psnr:.1f} dB)", highlight=False)
    console.print(
        f"codes: {out / encode.CODES_FILE}; start an experiment from them with "
        f'init_codes = "{out}" in [experiment]',
        highlight=False,
        markup=False,
    )
    return 0


def cmd_report(args: argparse.Namespace, console: Any) -> int:
    """Write the HTML report; with ``--watch``, rewrite it until the run has finished."""
    from xdream import report

    options: dict[str, Any] = {"max_tiles": args.max_tiles, "refresh": args.refresh}
    if args.no_run_reports:
        options["run_reports"] = False
    if args.figures is not None:  # a format refused before anything is made or written
        options["figure_formats"] = report.figure_formats(args.figures)
    if args.out:
        from xdream.cli import _made

        _made.extend(report.make_out(args.out))  # removed again if the command fails
        options["out"] = args.out
    while True:
        running = args.watch and report.is_running(args.dir)  # before writing: no stale page
        try:
            page = report.write_report(args.dir, **options)
        except RecordUnreadableError:
            if not running:  # not watching, or no run is writing it: not a read mid-write
                raise
            # caught the record mid-write: try again next time
        else:
            console.print(f"report: {page}", highlight=False)
        if not running:
            return 0
        time.sleep(args.watch)


def cmd_render(args: argparse.Namespace, console: Any) -> int:
    """Regenerate recorded images from their codes."""
    from xdream.cli import existing_folder
    from xdream.render import render

    existing_folder(Path(args.dir), "render")
    for path in render(args.dir, args.ids, out=args.out, size=args.size, seen=args.as_seen):
        console.print(str(path), highlight=False)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``encode``, ``report`` and ``render`` with the ``xdream`` parser."""
    p = sub.add_parser(
        "encode", help="fit generator codes to images (initial codes for an experiment)"
    )
    p.add_argument("images", nargs="+", help="image files, or skimage:NAME for a bundled photo")
    p.add_argument("--generator", default="fourier", help="registered generator (default fourier)")
    p.add_argument(
        "--param",
        action="append",
        type=_key_value,
        metavar="KEY=VALUE",
        help="a generator parameter, as in the experiment's [generator] (repeatable)",
    )
    p.add_argument("--out", help="output folder (default: xdream-codes/<time>-<generator>)")
    p.add_argument("--steps", type=int, default=300, help="gradient steps (default 300)")
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda or auto (default: CUDA when available), as the target's device",
    )
    p.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (default 0.1)")
    p.add_argument(
        "--feature-network",
        default="efficientnet-lite0",
        help="network of the feature loss (default efficientnet-lite0)",
    )
    p.add_argument(
        "--feature-layer", help="add a feature loss on this layer (default: pixels only)"
    )
    p.add_argument("--feature-weight", type=float, help="weight of the feature loss (default 1)")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("report", help="write an HTML report of an experiment or a folder of them")
    p.add_argument("dir", help="an experiment folder, or a folder holding experiment folders")
    p.add_argument(
        "--watch",
        type=at_least(0, float, strict=True),
        nargs="?",
        const=10.0,
        metavar="SECONDS",
        help="rewrite the report every SECONDS (default 10) until the run has finished",
    )
    p.add_argument(
        "--refresh",
        type=at_least(1),
        default=10,
        help="page reload interval while running, in whole seconds >= 1 (default 10)",
    )
    p.add_argument(
        "--max-tiles",
        type=at_least(1),
        default=40,
        help="generations in the montage, at least 1 (default 40)",
    )
    p.add_argument(
        "--figures",
        metavar="FORMATS",
        help="also write the plots (the score figure) in these formats into report/, "
        "comma-separated: svg, pdf (PNG is always written; image montages are PNG only)",
    )
    p.add_argument(
        "--no-run-reports",
        action="store_true",
        help="for a folder of experiments: do not (re)write each experiment's own report",
    )
    p.add_argument(
        "--out",
        help="write the report into this folder instead of DIR (for a folder that cannot be "
        "written, e.g. read-only); a folder's runs get their pages in OUT/<run's folder>/",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("render", help="regenerate recorded images from their codes")
    p.add_argument("dir", help="the experiment folder")
    p.add_argument(
        "--ids", nargs="+", required=True, help="image ids (gen003_000005), 'best', or ref_... ids"
    )
    p.add_argument("--size", type=int, help="output size in pixels (generators with a size)")
    p.add_argument(
        "--as-seen",
        action="store_true",
        help="draw each image as the network took it: at its input size, in the run's "
        "placement square on grey (after [target] image_size), into ID_seen.png",
    )
    p.add_argument("--out", help="output folder (default: DIR/renders)")
    p.set_defaults(func=cmd_render)
