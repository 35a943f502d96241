"""Target networks: a module, its input preprocessing, and a table of its layers (spec §8)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xdream.errors import ConfigError, XDreamError
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


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _three_numbers(name: str, value: object) -> tuple[float, float, float]:
    """``value`` as 3 finite floats (one per channel), or a ConfigError naming ``name``."""
    if _is_real(value):
        raise ConfigError(
            f"{name} needs 3 numbers, one per channel, got the single number {value!r}: "
            f"write ({value!r},) * 3 for the same value in every channel"
        )
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist()
    try:
        items = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise ConfigError(
            f"{name} needs 3 numbers, one per channel, got {type(value).__name__} {value!r}"
        ) from None
    if isinstance(value, (str, bytes)) or len(items) != 3 or not all(map(_is_real, items)):
        raise ConfigError(f"{name} needs 3 numbers, one per channel, got {value!r}")
    if not all(math.isfinite(v) for v in items):
        raise ConfigError(f"{name} values must be finite, got {value!r}")
    return (float(items[0]), float(items[1]), float(items[2]))


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How a network wants its input (spec §8).

    ``__call__`` maps RGB images in [0, 1] to the network input: resize to ``input_size``
    (bilinear, antialiased), reverse the channels if ``bgr``, multiply by ``scale`` (255 for
    caffe-style nets), then ``(x - mean) / std``. ``mean`` and ``std`` are in the network's
    channel order and in the units after ``scale``.

    The arguments are checked here, one clear line each: ``mean`` and ``std`` are 3 finite
    numbers each, one per channel (a tuple or list; a single number is refused, write
    ``(0.5,) * 3``), ``std`` all positive; ``input_size`` a positive integer; ``bgr`` a bool;
    ``scale`` a positive number. ``mean`` and ``std`` are stored as tuples of floats.

    >>> p = Preprocess(mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), input_size=227,
    ...                bgr=True, scale=255.0)  # caffenet
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    bgr: bool = False
    scale: float = 1.0

    def __post_init__(self) -> None:
        mean = _three_numbers("mean", self.mean)
        std = _three_numbers("std", self.std)
        if any(s <= 0 for s in std):
            raise ConfigError(f"std values must be positive, got {self.std!r}")
        size = self.input_size
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ConfigError(
                f"input_size must be a positive integer (pixels), got {self.input_size!r}"
            )
        if not isinstance(self.bgr, (bool, np.bool_)):
            raise ConfigError(f"bgr must be True or False, got {self.bgr!r}")
        if not _is_real(self.scale) or not 0 < self.scale < math.inf:
            raise ConfigError(f"scale must be a positive number, got {self.scale!r}")
        if self.scale == 1 and max(mean) > 1:
            warnings.warn(
                f"Preprocess mean {mean} lies above 1 while scale is 1: images in [0, 1] then "
                "land far below the mean. For statistics in 0..255 (caffe-style, such as "
                "(123.7, 116.3, 103.5)) give scale=255.0; for images in [0, 1] use the mean "
                "in [0, 1] (such as (0.485, 0.456, 0.406))",
                UserWarning,
                stacklevel=3,
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "input_size", int(size))
        object.__setattr__(self, "bgr", bool(self.bgr))
        object.__setattr__(self, "scale", float(self.scale))

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
    """A target network: ``module``, its ``preprocess`` and its public name. The scorers run every
    forward pass in evaluation mode (:func:`evaluation_mode`), whatever mode ``module`` is in.

    ``weights`` is the weight file it was loaded from (for records), ``None`` if none was.
    """

    module: nn.Module
    preprocess: Preprocess
    name: str
    weights: str | None = None


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """``module`` and all its submodules in evaluation mode inside the ``with`` block; after it,
    even after an error, each submodule's own ``training`` flag is put back.

    A user's model in training mode would otherwise draw dropout masks and normalise by batch
    statistics (scores that change from call to call), and BatchNorm would update its running
    statistics, changing the model's buffers. A model already in evaluation mode (every
    registered network) is only looked at: about 0.3 ms for EfficientNet-Lite0's 200 modules,
    against 2 ms for switching them and back; callers enter this once per scoring call.
    """
    mods = list(module.modules())  # now: a submodule swapped in since is included
    if not any(mod.training for mod in mods):
        yield
        return
    saved = [(mod, mod.training) for mod in mods]
    module.eval()
    try:
        yield
    finally:
        for mod, training in saved:
            mod.training = training


def input_dtype(module: nn.Module) -> torch.dtype:
    """The floating-point dtype ``module`` computes in: that of its first floating-point
    parameter (else buffer); ``torch.float32`` for a module with neither.

    Network inputs are computed in float32 and cast to this dtype, so a model converted with
    ``.double()``, ``.half()`` or ``.to(torch.bfloat16)`` gets inputs it can take. (Mixed
    precision, a float32 model run under ``torch.autocast``, is a separate thing: see the
    ``precision`` of :class:`~xdream.multi.MultiUnitScorer`.)
    """
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def plain_tensors(module: nn.Module) -> nn.Module:
    """``module`` itself, each of its parameters and buffers that is an inference tensor (made
    within ``torch.inference_mode()``) replaced by a plain copy (tied ones stay tied); the rest
    untouched. Inference tensors cannot be moved to another device or memory format outside
    inference mode and then scored within it, nor differentiated (placement ``"rf"``), so a
    scorer makes them plain before it converts the weights."""
    copies: dict[int, torch.Tensor] = {}
    with torch.inference_mode(False):
        for mod in module.modules():
            for table in (mod._parameters, mod._buffers):
                for key, tensor in list(table.items()):
                    if tensor is None or not tensor.is_inference():
                        continue
                    if id(tensor) not in copies:
                        plain = tensor.clone()
                        if isinstance(tensor, nn.Parameter):
                            plain = nn.Parameter(plain, requires_grad=tensor.requires_grad)
                        copies[id(tensor)] = plain
                    table[key] = copies[id(tensor)]  # type: ignore[assignment]
    return module


def use_channels_last(
    module: nn.Module, device: torch.device, asked: bool | None, name: str
) -> bool:
    """Whether to run ``module`` (called ``name`` in messages) in the channels-last memory
    format: ``asked``, or by default on the CPU (faster for EfficientNet-Lite0), but never for a
    module holding a 5-D parameter or buffer (a ``Conv3d``, say), which that format cannot take
    (``asked=True`` for such a module is an :class:`~xdream.errors.XDreamError`)."""
    named = itertools.chain(module.named_parameters(), module.named_buffers())
    five_d = next((key for key, t in named if t.dim() == 5), None)
    if asked is None:
        return device.type == "cpu" and five_d is None
    if asked and five_d is not None:
        raise XDreamError(
            f"channels_last=True cannot convert {name!r}: its tensor {five_d!r} is 5-D (the "
            "format takes 4-D ones); pass channels_last=False or leave it None"
        )
    return bool(asked)


def torchscript_part(module: nn.Module, layer: str | None = None) -> str | None:
    """The name of the TorchScript module (``torch.jit.script`` or ``torch.jit.trace``) that
    ``module`` is, or that holds ``layer``: ``""`` for ``module`` itself; ``None`` when there is
    none. Forward hooks, which read a layer, do not run inside TorchScript code."""
    if isinstance(module, torch.jit.ScriptModule):
        return ""
    if layer:
        parts = layer.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            try:
                part = module.get_submodule(name)
            except AttributeError:
                return None
            if isinstance(part, torch.jit.ScriptModule):
                return name
    return None


def refuse_torchscript(module: nn.Module, network: str, layer: str | None = None) -> None:
    """Raise :class:`XDreamError` when :func:`torchscript_part` finds TorchScript."""
    part = torchscript_part(module, layer)
    if part is None:
        return
    what = f"network {network!r}" if part == "" else f"layer {part!r} of {network!r}"
    raise XDreamError(
        f"{what} is a TorchScript module (from torch.jit.script or torch.jit.trace), whose "
        "layers cannot be read with hooks: load the eager nn.Module (the model's class with "
        "its state_dict) instead"
    )


def layer_table(
    module: nn.Module, input_size: int, calls: dict[str, int] | None = None
) -> LayerTable:
    """Names and output shapes (batch dimension dropped) of every submodule that runs.

    One dry forward of a zero image ``(1, 3, input_size, input_size)`` (in the module's
    :func:`input_dtype`), in evaluation mode
    (:func:`evaluation_mode`: the module's buffers and training flags are left as they were),
    with a hook on every named module; modules that are not called, or return something other
    than a tensor, are left out, and so are TorchScript submodules (whose hooks do not run; a
    TorchScript ``module`` is refused). A module called several times (one ``self.relu`` used
    after each convolution) is listed with the shape of its first call; a scorer refuses it as
    a target, since no one call is the layer's output. ``calls``, where given, is filled with
    how many times each listed module ran. This is what ``xdream layers NET`` prints (marking
    the modules that ran more than once).
    """
    refuse_torchscript(module, type(module).__name__)
    shapes: dict[str, tuple[int, ...]] = {}
    counted: dict[str, int] = {}
    handles = []

    def make_hook(name: str) -> object:
        def hook(_mod: nn.Module, _inp: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                shapes.setdefault(name, tuple(out.shape[1:]))
                counted[name] = counted.get(name, 0) + 1

        return hook

    scripted = [n + "." for n, m in module.named_modules() if isinstance(m, torch.jit.ScriptModule)]
    named = [
        (name, mod)
        for name, mod in module.named_modules()
        if name and not (name + ".").startswith(tuple(scripted))  # hooks do not run there
    ]
    for name, mod in named:
        handles.append(mod.register_forward_hook(make_hook(name)))  # type: ignore[arg-type]
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.inference_mode(), evaluation_mode(module):
            dtype = input_dtype(module)
            module(torch.zeros(1, 3, input_size, input_size, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
    if calls is not None:
        calls.update(counted)
    return [(name, shapes[name]) for name, _ in named if name in shapes]
