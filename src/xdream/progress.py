"""The command line's progress bar of a running experiment (one unit or many)."""

from __future__ import annotations

import os
from typing import Any


def generation_bar(console: Any, total: int | None, fields: str) -> Any:
    """A rich progress bar counting generations out of ``total`` (``None``: no total), with
    ``fields`` (a format string over ``task.fields``) after the bar, and the elapsed time.

    Shown on a terminal, or anywhere when ``XDREAM_PROGRESS=1``; elsewhere (a log file, a rig's
    console capture) the callers print a line per generation instead."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("generation"),
        MofNCompleteColumn() if total else TextColumn("{task.completed}"),
        BarColumn(),
        TextColumn(fields),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal and os.environ.get("XDREAM_PROGRESS") != "1",
    )
