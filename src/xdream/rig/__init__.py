"""Closed loop with a recording rig: XDream's file protocol (spec §9), hardened.

``RigScorer`` writes stimuli and reads the rig's responses; ``[rig]`` in a config selects it
(:class:`RigSection`). ``register_reader`` / ``register_writer`` / ``register_image_writer``
add file formats by name; ``xdream rig-sim`` (:mod:`xdream.rig.sim`) stands in for a rig.

The names below are imported from their modules on first use (PEP 562): the scorer needs
torch, and ``xdream --help`` (which imports :mod:`xdream.rig.cli`) should not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xdream.rig.formats import (
        IMAGE_WRITERS,
        READERS,
        WRITERS,
        MalformedResponse,
        Response,
        load_plugins,
        register_image_writer,
        register_reader,
        register_writer,
    )
    from xdream.rig.scorer import RigPaused, RigScorer, read_status
    from xdream.rig.section import RigSection

_MODULES = {
    "IMAGE_WRITERS": "formats",
    "READERS": "formats",
    "WRITERS": "formats",
    "MalformedResponse": "formats",
    "Response": "formats",
    "load_plugins": "formats",
    "register_image_writer": "formats",
    "register_reader": "formats",
    "register_writer": "formats",
    "RigPaused": "scorer",
    "RigScorer": "scorer",
    "read_status": "scorer",
    "RigSection": "section",
}
"""Where each public name lives (in :mod:`xdream.rig.formats`, ``.scorer`` or ``.section``)."""


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES})


__all__ = [
    "IMAGE_WRITERS",
    "READERS",
    "WRITERS",
    "MalformedResponse",
    "Response",
    "RigPaused",
    "RigScorer",
    "RigSection",
    "load_plugins",
    "read_status",
    "register_image_writer",
    "register_reader",
    "register_writer",
]
