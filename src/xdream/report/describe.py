"""A run's parts in words: its target (unit, rig, function), components and optimiser status."""

from __future__ import annotations

import json
from typing import Any

from xdream.report.page import _fmt


def _name(component: Any) -> Any:
    """A component as a record's config names it: a name (earlier records, and components whose
    parameters are not recorded), or its ``{"name": ..., parameters}``: the name."""
    return component.get("name", component) if isinstance(component, dict) else component


def _status_text(status: Any) -> str:
    """The optimiser's status in ``summary.json`` as text: its note, when it has one, and its
    plain facts (``step_size 0.3, responses repeatable``); ``n/a`` when it reported none."""
    if not isinstance(status, dict) or not status:
        return "n/a"
    scalars = {k: v for k, v in status.items() if k != "note" and not isinstance(v, (dict, list))}
    facts = ", ".join(f"{k} {_fmt(v)}" for k, v in scalars.items())
    return f"{status['note']} ({facts})" if status.get("note") else facts


def describe_target(target: Any) -> str:
    """``efficientnet-lite0 blocks.10 channel 5`` for a CNN unit (with its position, and the
    square of the input its images were placed in, if any: ``placed in [106, 106, 19]``),
    ``rig (channel 3, blocks of 4)`` for a rig, ``function mymodule.score`` for a function;
    JSON for other scorers."""
    if isinstance(target, dict) and "network" in target and "layer" in target:
        text = f"{target['network']} {target['layer']} channel {target.get('channel')}"
        if target.get("x") is not None:
            text += f" (x {target['x']}, y {target.get('y')})"
        if target.get("placement") is not None:
            text += f", placed in {json.dumps(target['placement'])}"
        return text
    if isinstance(target, dict) and target.get("kind") == "rig":
        channels = target.get("channels")
        parts = [
            "mean of every channel"
            if channels is None
            else f"channel {channels}"
            if isinstance(channels, int)
            else f"channels {json.dumps(channels)}"
        ]
        size = target.get("block_size")
        parts.append(f"blocks of {size}" if size else "one block per generation")
        if isinstance(target.get("reps"), int) and target["reps"] > 1:
            parts.append(f"{target['reps']} reps")
        if target.get("blanks"):
            blanks = target["blanks"]
            parts.append(f"{blanks} blank{'s' if blanks != 1 else ''} per block")
        return f"rig ({', '.join(parts)})"
    if isinstance(target, dict) and target.get("kind") == "function" and "function" in target:
        return f"function {target['function']}"
    return json.dumps(target, sort_keys=True)


def target_headings(targets: dict[str, Any]) -> dict[str, str]:
    """A heading per target (keyed by its JSON): :func:`describe_target`, followed, where two
    different targets share it (two rigs with the same channel, a function with and without
    noise), by the fields that tell them apart."""
    shared: dict[str, list[str]] = {}
    for key, target in targets.items():
        shared.setdefault(describe_target(target), []).append(key)
    headings = {}
    for heading, keys in shared.items():
        fields = [t if isinstance(t, dict) else {} for t in (targets[k] for k in keys)]
        names = sorted({name for f in fields for name in f})
        differ = [
            n for n in names if len({json.dumps(f.get(n), sort_keys=True) for f in fields}) > 1
        ]
        for key, f in zip(keys, fields):
            extra = ", ".join(f"{n} {json.dumps(f.get(n), sort_keys=True)}" for n in differ)
            headings[key] = f"{heading} ({extra})" if len(keys) > 1 and extra else heading
    return headings
