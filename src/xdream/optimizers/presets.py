"""Named optimiser settings: ``preset = "deepsim-fc7"`` in ``[optimizer]``.

The genetic algorithm's settings that XDream tuned for each DeePSiM generator (its test of all
eight generators on a CaffeNet/AlexNet unit): population size, mutation rate, mutation size,
selectivity, heritability, n_conserve. ``deepsim-fc6`` equals the GA's defaults.
"""

from __future__ import annotations

from typing import Any

from xdream.errors import ConfigError, did_you_mean

_GA_FIELDS = (
    "population_size",
    "mutation_rate",
    "mutation_size",
    "selectivity",
    "heritability",
    "n_conserve",
)
_GA_TABLE: dict[str, tuple[int, float, float, float, float, int]] = {
    "deepsim-norm1": (15, 1.0, 1.5, 2.0, 0.5, 0),
    "deepsim-norm2": (10, 0.5, 0.7, 4.0, 0.5, 0),
    "deepsim-conv3": (12, 0.65, 0.75, 2.25, 0.5, 0),
    "deepsim-conv4": (10, 0.9, 0.75, 2.5, 0.5, 0),
    "deepsim-pool5": (10, 0.6, 1.0, 2.5, 0.75, 0),
    "deepsim-fc6": (20, 0.5, 0.5, 2.0, 0.5, 0),
    "deepsim-fc7": (45, 0.6, 0.3, 1.25, 0.5, 0),
    "deepsim-fc8": (20, 0.2, 0.6, 2.0, 0.5, 0),
}

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    name: ("genetic", dict(zip(_GA_FIELDS, values))) for name, values in _GA_TABLE.items()
}
"""Preset name -> (optimiser name, hyperparameters)."""


def expand(name: str | None, preset: str) -> tuple[str, dict[str, Any]]:
    """``(optimiser name, hyperparameters)`` of ``preset``; ``name`` must match if given."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown optimizer preset {preset!r}.{did_you_mean(preset, PRESETS)} "
            f"Presets: {', '.join(PRESETS)}."
        )
    opt, params = PRESETS[preset]
    if name is not None and name != opt:
        raise ConfigError(f"preset {preset!r} is for optimizer {opt!r}, not {name!r}")
    return opt, dict(params)
