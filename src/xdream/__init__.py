"""xdream: find the images a visual neuron prefers, without gradients.

Three roles with small interfaces: a :class:`~xdream.generators.Generator` turns codes into
images, a :class:`~xdream.scorers.Scorer` turns images into one score each, and an
:class:`~xdream.optimizers.Optimizer` proposes the next codes from the scores
(:func:`xdream.optimizers.make`, :func:`xdream.generators.make`, :func:`xdream.scorers.make_unit`).
:class:`~xdream.experiment.Experiment` runs the loop and writes records that survive a crash.

``import xdream`` alone imports nothing else: each submodule (``xdream.optimizers``,
``xdream.records``, ...) is imported on first use of its name (PEP 562), so that the command
line's parser needs no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = frozenset(
    {
        "bench",
        "caffe",
        "cli",
        "cli_media",
        "config",
        "docs",
        "encode",
        "errors",
        "experiment",
        "generators",
        "multi",
        "networks",
        "optimizers",
        "params",
        "precision",
        "progress",
        "records",
        "references",
        "registry",
        "render",
        "report",
        "rig",
        "scorers",
        "sweep",
        "throughput",
        "tune",
        "types",
        "weights",
    }
)
"""The submodules that ``xdream.NAME`` imports on first use."""


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES})
