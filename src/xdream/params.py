"""Helpers for hyperparameter dataclasses: build from a mapping, reject unknown keys by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from xdream.errors import ConfigError, did_you_mean

P = TypeVar("P")


def build_params(cls: type[P], values: Mapping[str, Any], where: str) -> P:
    """Instantiate the dataclass ``cls`` from ``values``.

    An unknown key raises :class:`ConfigError` naming the nearest valid key; ``where`` says which
    component the keys belong to (for example ``"optimizer 'genetic'"``).
    """
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in fields:
            raise ConfigError(
                f"unknown hyperparameter {key!r} for {where}.{did_you_mean(key, fields)} "
                f"Valid keys: {', '.join(sorted(fields))}."
            )
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING
    }
    # Config files have lists where the dataclass has tuples: convert, keep everything else.
    values = {
        k: tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple) else v
        for k, v in values.items()
    }
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid hyperparameters for {where}: {err}") from None


def params_dict(params: Any) -> dict[str, Any]:
    """Plain-dict view of a hyperparameter dataclass (for the resolved config)."""
    return dataclasses.asdict(params)
