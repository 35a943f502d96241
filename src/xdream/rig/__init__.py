"""Closed loop with a recording rig: XDream's file protocol (spec §9), hardened.

``RigScorer`` writes stimuli and reads the rig's responses; ``[rig]`` in a config selects it
(:class:`RigSection`). ``register_reader`` / ``register_writer`` / ``register_image_writer``
add file formats by name; ``xdream rig-sim`` (:mod:`xdream.rig.sim`) stands in for a rig.
"""

from __future__ import annotations

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
