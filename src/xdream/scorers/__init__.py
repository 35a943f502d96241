"""Scorers turn images into one score each: a CNN unit (spec §8), with optional noise (spec §6).

``make_unit(layer="blocks.10", channel=3)`` scores a unit of the default network;
``NoisyScorer(scorer, make_noise("poisson", scale=20), seed=0)`` adds XDream's response noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xdream import networks
from xdream.scorers.base import FunctionScorer, Scorer
from xdream.scorers.cnn import CNNUnitScorer
from xdream.scorers.noise import REGISTRY as NOISE_REGISTRY
from xdream.scorers.noise import GainNoise, NoiseModel, NoisyScorer, PoissonNoise, make_noise

__all__ = [
    "NOISE_REGISTRY",
    "CNNUnitScorer",
    "FunctionScorer",
    "GainNoise",
    "NoiseModel",
    "NoisyScorer",
    "PoissonNoise",
    "Scorer",
    "make_noise",
    "make_unit",
]


def make_unit(
    network: str = networks.DEFAULT_NETWORK,
    *,
    layer: str,
    channel: int,
    x: int | None = None,
    y: int | None = None,
    weights: str | Path | None = None,
    **options: Any,
) -> CNNUnitScorer:
    """A :class:`CNNUnitScorer` for unit (``network``, ``layer``, ``channel``[, ``x``, ``y``]).

    ``network`` is a registered name (:func:`xdream.networks.make` builds it from ``weights``);
    ``options`` go to :class:`CNNUnitScorer` (``pre_activation``, ``image_size``,
    ``batch_size``, ``device``, ``channels_last``).

    >>> scorer = make_unit(layer="blocks.10", channel=3)  # doctest: +SKIP
    """
    return CNNUnitScorer(networks.make(network, weights=weights), layer, channel, x, y, **options)
