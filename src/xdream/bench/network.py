"""Fast multi-unit reads for benchmarks: batch norm folded, one forward for several layers."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from xdream import networks
from xdream.errors import XDreamError
from xdream.types import Images


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with each ``Conv2d`` directly followed by a ``BatchNorm2d`` (inside
    an ``nn.Sequential``) folded into one convolution, for inference only.

    ``y = gamma (W x + b - mean) / sqrt(var + eps) + beta`` is the convolution with weights
    ``W gamma / sqrt(var + eps)`` and bias ``beta + (b - mean) gamma / sqrt(var + eps)``.
    """
    module = copy.deepcopy(module).eval()
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = seq._modules[first], seq._modules[second]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            assert bn.running_var is not None and bn.running_mean is not None
            scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            with torch.no_grad():
                conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(shift + (bias - bn.running_mean) * scale)
            seq._modules[second] = nn.Identity()
    return module


class _Stop(BaseException):
    """Ends a forward pass once every requested layer has been read."""


class LayerReader:
    """Whole-layer activations of several layers of a network from one (truncated) forward.

    Images go to ``image_size`` px and through the network's preprocessing; the forward stops
    after the last requested layer. Batch norm is folded (:func:`fold_batchnorm`): activations
    agree with :class:`xdream.scorers.CNNUnitScorer` to float32 rounding.
    """

    def __init__(
        self,
        layers: Sequence[str],
        image_size: int,
        network: str = networks.DEFAULT_NETWORK,
        device: str = "cpu",
    ) -> None:
        net = networks.make(network)
        self.device = torch.device(device)
        self.channels_last = self.device.type == "cpu"
        self.module = fold_batchnorm(net.module).to(self.device)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.preprocess = dataclasses.replace(net.preprocess, input_size=image_size)
        self.image_size = image_size
        self.layers = list(dict.fromkeys(layers))
        modules = dict(self.module.named_modules())
        missing = [name for name in self.layers if name not in modules]
        if missing:
            raise XDreamError(f"network {network!r} has no layers {missing}")
        self._targets = {name: modules[name] for name in self.layers}
        probe = self(torch.zeros(1, 3, image_size, image_size))
        self.shapes = {name: tuple(act.shape[1:]) for name, act in probe.items()}

    @torch.inference_mode()
    def __call__(self, images: Images) -> dict[str, torch.Tensor]:
        """Activations ``(n, C[, H, W])`` (CPU, float32) of every layer for ``images``."""
        out: dict[str, torch.Tensor] = {}

        def hook(name: str) -> Any:
            def read(_mod: nn.Module, _inp: Any, act: torch.Tensor) -> None:
                out.setdefault(name, act.float().cpu().clone())
                if len(out) == len(self.layers):
                    raise _Stop

            return read

        handles = [m.register_forward_hook(hook(n)) for n, m in self._targets.items()]
        try:
            x = self.preprocess(images.to(self.device, torch.float32))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.module(x)
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return out

    def centre(self, layer: str) -> tuple[int, int] | None:
        """``(y, x)`` of the centre unit of a spatial layer (``None`` for a ``(n, C)`` layer)."""
        shape = self.shapes[layer]
        return (shape[1] // 2, shape[2] // 2) if len(shape) == 3 else None

    def read(self, acts: torch.Tensor, layer: str, channel: int) -> torch.Tensor:
        """The centre unit of ``channel`` from a layer's activations: ``(n,)``."""
        yx = self.centre(layer)
        return acts[:, channel] if yx is None else acts[:, channel, yx[0], yx[1]]
