"""The ``xdream`` command line.

``xdream demo``          run the embedded-defaults demo (no weight files needed)
``xdream run CONFIG``    run an experiment from a TOML, YAML or JSON config
``xdream resume DIR``    continue an experiment that was stopped or killed
``xdream list``          registered optimisers, generators, networks and noise models
``xdream layers NET``    a network's layer names and output shapes

The modules in :data:`COMMAND_MODULES` add ``encode``, ``report``, ``render``, ``rig-sim``,
``bench throughput``, ``bench optimizers``, ``sweep`` and ``tune`` (see the README).

User errors print one line to stderr and exit with status 2 (no traceback); a rig run paused
by ``on_timeout = "pause"`` prints its line and exits with status 3 (its ``exit_status``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import errno
import math
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xdream.errors import ConfigError, UnknownNameError, XDreamError, did_you_mean, notes_of

DEMO_CONFIG: dict[str, Any] = {
    "experiment": {"seed": 0, "generations": 40, "n_references": 10},
    "generator": {"name": "fourier"},
    # the winner of `xdream bench optimizers` on the Fourier code space (docs/benchmarks.md),
    # at XDream's 20 codes per generation; its step size anneals over `generations`
    "optimizer": {"name": "annealed-es", "population_size": 20, "generations": 40},
    "target": {"network": "efficientnet-lite0", "layer": "blocks.10", "channel": 5},
}
"""The demo: a unit of the embedded EfficientNet-Lite0, the Fourier generator, annealed-es."""


def at_least(
    minimum: float, kind: type[int] | type[float] = int, *, strict: bool = False
) -> Callable[[str], Any]:
    """An argparse ``type`` that takes an ``int`` (or ``float``) >= ``minimum`` (> with
    ``strict``) and refuses anything else with argparse's usage line (a negative count, a
    negative interval, ``nan``, ``inf``)."""
    noun = "an integer" if kind is int else "a number"
    bound = f"{'>' if strict else '>='} {minimum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {text!r}") from None
        low_ok = value > minimum if strict else value >= minimum
        if not (low_ok and value < math.inf):  # nan compares false
            raise argparse.ArgumentTypeError(f"expected {noun} {bound}, got {text}")
        return value

    return parse


_made: list[Path] = []
"""Output folders made for a command in this process, by :func:`_default_out` or for
``xdream encode --out`` (removed again if still empty when the command ends)."""


def _default_out(name: str, root: str = "xdream-runs") -> Path:
    """A new folder ``root/<time>-name`` for a command's output, made here (with ``-2``,
    ``-3``, ... appended when another command took that name in the same second), so that two
    commands started together never share one. A file is written into it before the command
    goes on (:func:`xdream.records.make_folder`). It is registered in :data:`_made` with
    every folder above it that it made (``root`` itself, the first time), so that a command
    that then fails leaves none of them behind."""
    from xdream.records import make_folder

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{name}"
    above = [p for p in base.parents if not p.exists()]  # made here, if another command did not
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            created = make_folder(path)
        except FileExistsError:
            continue
        except OSError as err:
            raise XDreamError(
                f"cannot create or write into output folder {str(path)!r}: {err.strerror}; "
                "give --out"
            ) from None
        _made.extend(dict.fromkeys([*created, *above]))  # deepest first
        return path
    raise XDreamError(f"too many output folders named {str(base)!r}-N; give --out")


def _where(args: argparse.Namespace, out: Path, start: str) -> None:
    """Note how to continue a run that writes to ``out`` when it is interrupted: ``xdream
    resume``, or ``start`` (the command that starts it) while it has recorded nothing. Set
    before the network loads, which takes a while: a stop then says to start again."""
    args.continue_with = f"`xdream resume {out}`"
    args.start_with = f"`{start}`"
    args.out_folder = out


def _output(args: argparse.Namespace, out: Path, console: Any, start: str) -> None:
    """Say where a run writes (:func:`_where`: and how to continue it)."""
    _where(args, out, start)
    console.print(f"output folder: {out}", highlight=False, markup=False)


def _recorded(out: Path) -> bool:
    """:meth:`xdream.records.RunFolder.recorded`, without importing :mod:`xdream.records`:
    the signal that stopped a command may have broken off torch's first import, and
    importing torch again then fails (a traceback, or a segmentation fault)."""
    return (out / "config.yaml").exists() or (out / "checkpoint.pkl").exists()


def _interrupted(args: argparse.Namespace, how: str = "") -> str:
    """The line for a command stopped by Ctrl-C (or the signal ``how``): how to continue its
    run, if it has one. It imports nothing: the stop may come during the command's imports."""
    advice = getattr(args, "continue_with", None)
    out = getattr(args, "out_folder", None)
    stopped = f"xdream: interrupted{f' ({how})' if how else ''}"
    if advice is None:
        return stopped
    if out is not None and not _recorded(out):
        start = getattr(args, "start_with", None)
        if start is None:  # `xdream resume` of a folder that holds no run: nothing to go on
            return stopped
        return f"{stopped} before anything was recorded; start it again with {start}"
    return f"{stopped}; continue with {advice}"


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (``signum``) in a command that runs an experiment: it stops as Ctrl-C
    stops it, its records brought up to date, with the status ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""Signals that stop a run like Ctrl-C (a ``kill``, systemd, SLURM at its time limit, ``docker
stop``; a closed terminal or a dropped ssh connection). A SIGKILL cannot be caught: the journal
covers it."""

RUN_COMMANDS = ("run", "resume", "demo", "tune", "sweep")
"""Commands that run an experiment, and stop on :data:`STOP_SIGNALS` as on Ctrl-C."""


def _stop_on_signals() -> dict[int, Any]:
    """Raise :class:`Terminated` in the main thread at the first of :data:`STOP_SIGNALS` (a
    second one, while the records are written, is ignored); returns the handlers replaced. A
    signal already ignored (``nohup`` ignores SIGHUP) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    replaced: dict[int, Any] = {}
    raised: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        if not raised:
            raised.append(signum)
            raise Terminated(signum)

    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            replaced[signum] = signal.signal(signum, stop)
    return replaced


def _run_experiment(experiment: Any, console: Any) -> dict[str, Any]:
    from xdream.progress import generation_bar

    total = experiment.generations_budget
    # short enough for an 80-column terminal with the count, a bar and the time: the labels of
    # the line per generation ("best reference so far") cut the count and the numbers there
    fields = (
        "best so far {task.fields[best]:>7} (ref {task.fields[ref]:>7})  "
        "mean {task.fields[mean]:>7}"
    )
    with generation_bar(console, total, fields) as bar:
        task = bar.add_task(
            "run", total=total, completed=experiment.generation, best="-", mean="-", ref="-"
        )

        last_note: list[str | None] = [None]
        no_refs = "none shown" if not experiment.n_references else "none scored"

        def update(p: Any) -> None:
            note = p.optimizer_status.get("note")
            if note and note != last_note[0]:  # what the optimiser found out, once
                console.print(note, highlight=False, markup=False)
            last_note[0] = note
            bar.update(
                task,
                completed=p.generation + 1,
                best=f"{p.best_score:.4g}",
                mean=f"{p.generation_mean:.4g}",
                ref=f"{p.best_reference:.4g}" if math.isfinite(p.best_reference) else "-",
            )
            if not console.is_terminal:
                ref = f"{p.best_reference:.4g}" if math.isfinite(p.best_reference) else no_refs
                console.print(
                    f"generation {p.generation}: best so far {p.best_score:.4g}, "
                    f"mean {p.generation_mean:.4g}, best reference so far {ref}",
                    highlight=False,
                )

        summary: dict[str, Any] = experiment.run(progress=update)
    return summary


def _report(summary: dict[str, Any], out: Path, console: Any) -> None:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    def counted(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    console.print(
        f"best score {fmt(summary['best_score'])} (first generation "
        f"{fmt(summary['first_generation_best_score'])}, best reference image "
        f"{fmt(summary['best_reference_score'])}) after "
        f"{counted(summary['generations'], 'generation')}, "
        f"{counted(summary['presentations'], 'presentation')}, {summary['seconds']:.1f} s",
        highlight=False,
    )
    best = f"best image: {out / 'best.png'}, " if summary.get("best_image") else ""
    console.print(
        f"results: {out}  ({best}record: {out / 'record.h5'}, summary: {out / 'summary.json'})",
        highlight=False,
    )
    if not summary.get("best_image"):
        console.print(
            "warning: no image got a score (every response was missing or not a number), so "
            "there is no best image; check the target (its weights, layer and unit) or the rig",
            style="yellow",
            highlight=False,
        )


def cmd_demo(args: argparse.Namespace, console: Any) -> int:
    from xdream import config as config_mod
    from xdream.experiment import Experiment

    data = {k: dict(v) for k, v in DEMO_CONFIG.items()}
    if args.generations is not None:
        data["experiment"]["generations"] = args.generations
        data["optimizer"]["generations"] = args.generations  # the step-size schedule's length
    if args.seed is not None:
        data["experiment"]["seed"] = args.seed
    cfg = config_mod.from_dict(data)
    out = Path(args.out) if args.out else _default_out("demo")
    t = cfg.target
    console.print(
        f"xdream demo: evolving images for {t.network} {t.layer} channel {t.channel} "
        f"with the {cfg.generator['name']} generator and the "
        f"{cfg.optimizer['name']} optimiser",
        highlight=False,
    )
    options = "".join(
        f" --{name} {value}"
        for name, value in (("generations", args.generations), ("seed", args.seed))
        if value is not None
    )
    start = f"xdream demo{options} --out {out}"
    _where(args, out, start)  # before the network loads: a stop then says to start again
    experiment = Experiment.from_config(cfg, out)
    _output(args, out, console, start)
    _report(_run_experiment(experiment, console), out, console)
    return 0


def cmd_run(args: argparse.Namespace, console: Any) -> int:
    from xdream import config as config_mod
    from xdream.experiment import Experiment

    try:
        cfg = config_mod.load(args.config)
    except UnknownNameError as err:  # perhaps one the user's own code registers
        runner = "Experiment.from_config"
        raise ConfigError(
            f"{err} If {err.name!r} is registered by your own Python code, the {err.kind} "
            "exists only in a process that imports that code, so `xdream run` cannot build it: in "
            f"Python, import it, then xdream.experiment.{runner}(xdream.config.load("
            f"{str(args.config)!r}), OUT).run() (xdream.multi.MultiExperiment.from_config for "
            "a config with [[targets]])"
        ) from None
    out = Path(args.out) if args.out else _default_out(Path(args.config).stem)
    start = f"xdream run {args.config} --out {out}"
    if cfg.targets:
        from xdream.multi import run_many

        # before the network is loaded: a Ctrl-C then says to start again (_interrupted)
        _output(args, out, console, start)
        return run_many(cfg, out, console)
    _where(args, out, start)  # before the network loads: a stop then says to start again
    experiment = Experiment.from_config(cfg, out)
    if cfg.rig is not None:
        from xdream.records import RunFolder
        from xdream.rig.scorer import refuse_leftovers, refuse_missing_folders

        # before the run folder is written: refused, it leaves nothing (a folder that holds
        # an experiment is refused as before, by run(), naming it)
        refuse_missing_folders(cfg.rig)  # an absolute one not there: a share not mounted
        if not RunFolder(out).outputs_present():
            refuse_leftovers(cfg.rig, out)
    _output(args, out, console, start)
    _report(_run_experiment(experiment, console), out, console)
    return 0


def existing_folder(path: Path, command: str) -> None:
    """Refuse a ``path`` that is not there or not a folder (a mistyped name), before a
    ``command`` looks inside it."""
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise XDreamError(
            f"{str(path)!r} {what}: `xdream {command}` takes an experiment's output folder "
            "(check the name)"
        )


def cmd_resume(args: argparse.Namespace, console: Any) -> int:
    out = Path(args.dir)
    existing_folder(out, "resume")
    # before the imports, which take seconds (torch): a stop during them says how to go on
    args.continue_with = f"`xdream resume {out}`"
    args.out_folder = out
    from xdream.experiment import Experiment
    from xdream.multi import is_multi_folder, run_many

    if is_multi_folder(out):
        return run_many(None, out, console)
    experiment = Experiment.resume(out)
    console.print(f"resuming {out} at generation {experiment.generation}", highlight=False)
    print_config_changes(experiment.config_changes, console)
    _report(_run_experiment(experiment, console), out, console)
    return 0


def print_config_changes(changes: Sequence[str], console: Any) -> None:
    """Say which changes of config.yaml since the last session take effect on resume."""
    if changes:
        console.print(
            f"config.yaml changed since the last session, taking effect now: {'; '.join(changes)}",
            highlight=False,
            markup=False,
        )


def plain(docstring: str) -> str:
    """A docstring's text for the terminal: reST's ``literal`` markup taken off."""
    return re.sub(r"``(.+?)``", r"\1", docstring, flags=re.S)


def cmd_list(args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table

    from xdream import generators, networks, optimizers, scorers, weights

    for title, registry in (
        ("optimizers", optimizers.REGISTRY),
        ("generators", generators.REGISTRY),
        ("networks", networks.REGISTRY),
        ("noise models", scorers.NOISE_REGISTRY),
    ):
        table = Table(title=title, show_header=False, title_justify="left")
        files = title in ("generators", "networks")
        table.add_column(no_wrap=True)
        for _ in range(2 if files else 1):  # wrapped, never cut: the weight paths are the point
            table.add_column(overflow="fold")
        for name in registry.names():
            row = [name, plain(registry.summary(name))]
            table.add_row(*row, *([weights.locate(name).describe()] if files else []))
        console.print(table)
    path = weights.catalogue_path()
    console.print(
        f"weight catalogue: {path}{'' if path.is_file() else ' (not created yet)'}",
        highlight=False,
    )
    known = [*generators.REGISTRY.names(), *networks.REGISTRY.names()]
    for name in weights.read_catalogue():
        if name not in known:
            console.print(
                f"warning: the weight catalogue names {name!r}, which is no generator or "
                f"network, so nothing reads it.{did_you_mean(name, known)}",
                style="yellow",
                highlight=False,
                markup=False,
            )
    return 0


def cmd_layers(args: argparse.Namespace, console: Any) -> int:
    from rich.table import Table

    from xdream import networks

    net = networks.make(args.network, weights=args.weights)
    table = Table(
        title=f"{args.network} (input {net.preprocess.input_size} px)", title_justify="left"
    )
    table.add_column("layer")
    table.add_column("output shape (C, H, W)")
    table.add_column("module")
    calls: dict[str, int] = {}
    for name, shape in networks.layer_table(net.module, net.preprocess.input_size, calls):
        kind = type(net.module.get_submodule(name)).__name__
        if calls[name] > 1:  # a scorer refuses it: no one call is the layer's output
            kind += f", runs {calls[name]} times (not a target; shape of its first run)"
        table.add_row(name, " x ".join(map(str, shape)), kind)
    console.print(table)
    return 0


COMMAND_MODULES: list[str] = [
    "xdream.cli_media",
    "xdream.rig.cli",
    "xdream.throughput",
    "xdream.bench.cli",
    "xdream.sweep",
    "xdream.tune",
]
"""Modules that add sub-commands: each defines ``add_parser(subparsers)``, which registers its
commands with ``set_defaults(func=handler)``; a handler takes ``(args, console)`` and returns
the exit status."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one sub-command per verb)."""
    parser = argparse.ArgumentParser(
        prog="xdream",
        description="Find the images a visual neuron prefers, without gradients.",
    )
    from xdream import __version__

    parser.add_argument("--version", action="version", version=f"xdream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="evolve images for a unit of the embedded network")
    p.add_argument("--out", help="output folder (default: xdream-runs/<time>-demo)")
    p.add_argument("--generations", type=at_least(1), help="number of generations (default 40)")
    p.add_argument("--seed", type=at_least(0), help="random seed, an integer >= 0 (default 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run an experiment from a TOML, YAML or JSON config")
    p.add_argument("config", help="config file (.toml, .yaml or .json); keys in docs/config.md")
    p.add_argument("--out", help="output folder (default: xdream-runs/<time>-<config name>)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="continue an experiment that was stopped or killed")
    p.add_argument("dir", help="the experiment's output folder")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("list", help="list registered optimisers, generators, networks, noise")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("layers", help="list a network's layers and output shapes")
    p.add_argument("network", help="registered network name (see `xdream list`)")
    p.add_argument("--weights", help="weight file (default: the network's own)")
    p.set_defaults(func=cmd_layers)

    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)
    return parser


_library_warning = warnings.showwarning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """xdream's own warnings as one ``xdream: warning:`` line (no source line); others as
    Python shows them."""
    if category is UserWarning and f"{os.sep}xdream{os.sep}" in filename:
        print(f"xdream: warning: {message}", file=sys.stderr)
    else:
        _library_warning(message, category, filename, lineno, file, line)


def _terminated_under(err: OSError) -> Terminated | None:
    """The :class:`Terminated` that ``err``, a failed write to a terminal that is gone (EIO,
    EPIPE), replaced on its way out: a hang-up's SIGHUP closes the terminal the progress bar
    and the messages are written to."""
    if err.errno not in (errno.EIO, errno.EPIPE):
        return None
    seen: BaseException | None = err.__context__
    while seen is not None:
        if isinstance(seen, Terminated):
            return seen
        seen = seen.__context__
    return None


def _say(line: str) -> None:
    """Print ``line`` to stderr, unless the terminal is gone (a hang-up)."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)


def _say_notes(err: BaseException) -> None:
    """Print the notes on the error that stopped a command (what else went wrong while it
    stopped: records not brought up to date, a rig that could not be told), one line each."""
    for note in notes_of(err):
        _say(f"xdream: note: {note}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xdream`` console command."""
    given = list(sys.argv[1:] if argv is None else argv)
    # a command that runs an experiment stops on a signal from its start, before its imports
    replaced = _stop_on_signals() if given[:1] and given[0] in RUN_COMMANDS else {}
    args = argparse.Namespace()  # what the interrupted line reads before the arguments are
    try:
        from rich.console import Console

        args = build_parser().parse_args(argv)
        console = Console(stderr=False, markup=False, highlight=False)  # messages are plain text
        # into a file or a pipe (a log, grep), one line per message: not broken at 80 columns
        console.soft_wrap = not console.is_terminal
        func: Callable[[argparse.Namespace, Any], int] = args.func
        if not replaced and args.command in RUN_COMMANDS:
            replaced = _stop_on_signals()
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status = func(args, console)
    except XDreamError as err:
        print(f"xdream: error: {err}", file=sys.stderr)
        _say_notes(err)
        status = getattr(err, "exit_status", 2)  # 3: a paused rig run (RigPaused)
    except Terminated as err:
        _say(_interrupted(args, str(err)))
        _say_notes(err)
        status = 128 + err.signum
    except OSError as err:  # the terminal that hung up, written to on the way out
        stop = _terminated_under(err)
        if stop is None:
            raise
        _say(_interrupted(args, str(stop)))
        status = 128 + stop.signum
    except KeyboardInterrupt as err:
        print(_interrupted(args), file=sys.stderr)
        _say_notes(err)
        status = 130
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
    if _made:  # folders made for this command: removed if it wrote nothing into them
        from xdream.records import remove_empty

        remove_empty(_made)
        _made.clear()
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
