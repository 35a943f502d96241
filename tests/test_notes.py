"""Notes on an error that stopped a run (what else went wrong while it stopped): added without
``BaseException.add_note``, which Python 3.10 lacks, and printed by the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import xdream.cli
import xdream.generators
import xdream.optimizers
from tests.helpers import RedScorer
from xdream.errors import XDreamError, add_note, notes_of
from xdream.experiment import Experiment
from xdream.types import Images, Scores


class OldError(XDreamError):
    """An error as Python 3.10 makes it: no ``add_note`` method."""

    def __getattribute__(self, name: str) -> Any:
        if name == "add_note":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'add_note'")
        return super().__getattribute__(name)


class FailingScorer(RedScorer):
    """Stops the run in its second generation with ``OldError``; cannot be told it stopped."""

    def score(self, images: Images, ids: list[str]) -> Scores:
        if self.calls >= 2:
            raise OldError("the rig stopped answering")
        return super().score(images, ids)

    def stopped(self, error: BaseException) -> None:
        raise RuntimeError("status file unwritable")


def test_an_error_that_stopped_a_run_keeps_its_message_and_gets_the_note(tmp_path: Path) -> None:
    """The scorer's failure to be told is noted on the error that stopped the run, which goes
    on: with Python 3.10's exceptions the note itself raised an AttributeError that replaced
    the run's own error."""
    gen = xdream.generators.make("pixels", size=16, code_size=4)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
    experiment = Experiment(gen, FailingScorer(), opt, tmp_path / "run", generations=4)
    with pytest.raises(OldError, match="the rig stopped answering") as stop:
        experiment.run()
    assert notes_of(stop.value) == [
        "the scorer could not be told that the run stopped (RuntimeError: status file unwritable)"
    ]


def test_the_command_line_prints_the_notes_of_an_error_and_its_causes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdream: error:` is followed by one `xdream: note:` line per note, also those on the
    error it was raised from (a folder fault: the OSError noted that record.h5 was not
    brought up to date); they were not printed at all."""

    def failing(args: Any, console: Any) -> int:
        cause = OSError("disk gone")
        add_note(cause, "record.h5 was not brought up to date")
        try:
            raise cause
        except OSError as err:
            stop = XDreamError("cannot write the journal")
            add_note(stop, "the scorer could not be told that the run stopped")
            raise stop from err

    parser = xdream.cli.build_parser
    monkeypatch.setattr(xdream.cli, "build_parser", lambda: _with_func(parser(), failing))
    assert xdream.cli.main(["list"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "xdream: error: cannot write the journal",
        "xdream: note: the scorer could not be told that the run stopped",
        "xdream: note: record.h5 was not brought up to date",
    ]


def _with_func(parser: Any, func: Any) -> Any:
    """``parser`` whose parsed arguments run ``func``."""
    parse = parser.parse_args

    def parse_args(argv: Any = None) -> Any:
        args = parse(argv)
        args.func = func
        return args

    parser.parse_args = parse_args
    return parser


def test_the_notes_of_a_ctrl_c_are_printed_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped by Ctrl-C (or SIGTERM, SIGHUP: the same path) whose scorer could not be
    told says so after the interrupted line; only an XDreamError's notes were printed (audit
    V2-4)."""

    def interrupted(args: Any, console: Any) -> int:
        stop = KeyboardInterrupt()
        add_note(stop, "the scorer could not be told that the run stopped")
        raise stop

    parser = xdream.cli.build_parser
    monkeypatch.setattr(xdream.cli, "build_parser", lambda: _with_func(parser(), interrupted))
    assert xdream.cli.main(["list"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "xdream: note: the scorer could not be told that the run stopped"
    )
