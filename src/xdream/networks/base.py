"""Target networks: a module, its input preprocessing, and a table of its layers (spec §8)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from xdream.errors import ConfigError
from xdream.types import Images

LayerTable = list[tuple[str, tuple[int, ...]]]
"""(layer name, output shape without the batch dimension), in module-definition order."""


def resize(images: Images, size: int) -> Images:
    """Resize ``(n, 3, H, W)`` images to ``size`` x ``size`` (bilinear, antialiased)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a network wants its input (spec §8).

    ``__call__`` maps RGB images in [0, 1] to the network input: resize to ``input_size``
    (bilinear, antialiased), reverse the channels if ``bgr``, multiply by ``scale`` (255 for
    caffe-style nets), then ``(x - mean) / std``. ``mean`` and ``std`` are in the network's
    channel order and in the units after ``scale``.

    >>> p = Preprocess(mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), input_size=227,
    ...                bgr=True, scale=255.0)  # caffenet
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    bgr: bool = False
    scale: float = 1.0

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ConfigError(f"mean and std need 3 values, got {self.mean!r} and {self.std!r}")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {self.std!r}")
        if self.input_size < 1:
            raise ConfigError(f"input_size must be a positive integer, got {self.input_size!r}")

    def __call__(self, images: Images) -> torch.Tensor:
        """Network input ``(n, 3, input_size, input_size)`` for RGB ``images`` in [0, 1]."""
        x = resize(images, self.input_size)
        if self.bgr:
            x = x.flip(1)
        if self.scale != 1.0:
            x = x * self.scale
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclasses.dataclass
class Network:
    """A target network: ``module`` (in evaluation mode), its ``preprocess`` and its public name.

    ``weights`` is the weight file it was loaded from (for records), ``None`` if none was.
    """

    module: nn.Module
    preprocess: Preprocess
    name: str
    weights: str | None = None


def layer_table(module: nn.Module, input_size: int) -> LayerTable:
    """Names and output shapes (batch dimension dropped) of every submodule that runs.

    One dry forward of a zero image ``(1, 3, input_size, input_size)`` with a hook on every named
    module; modules that are not called, or return something other than a tensor, are left out.
    A module called several times is listed with the shape of its first call (the call a
    :class:`~xdream.scorers.CNNUnitScorer` reads). This is what ``xdream layers NET`` prints.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str) -> object:
        def hook(_mod: nn.Module, _inp: object, out: object) -> None:
            if name not in shapes and isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape[1:])

        return hook

    named = [(name, mod) for name, mod in module.named_modules() if name]
    for name, mod in named:
        handles.append(mod.register_forward_hook(make_hook(name)))  # type: ignore[arg-type]
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.inference_mode():
            module(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return [(name, shapes[name]) for name, _ in named if name in shapes]
