"""A unit of a CNN as the target: (network, layer, channel[, x, y]) (spec §8).

The activation is read with a hook that clones it, and the forward pass stops at the target
layer (nothing after it runs; only the scorer's construction runs the whole network once, on a
zero image, to refuse a layer whose module runs more than once per pass:
:func:`refuse_layers_run_twice`). With ``pre_activation=True`` the named layer must be an
activation module and its *input* is read by a pre-hook, before an in-place activation (such as
torchvision AlexNet's ``ReLU(inplace=True)``) could overwrite it.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn

from xdream import networks
from xdream.errors import XDreamError, did_you_mean
from xdream.generators.base import check_ids, check_images
from xdream.networks.base import (
    Network,
    Preprocess,
    evaluation_mode,
    input_dtype,
    plain_tensors,
    refuse_torchscript,
    use_channels_last,
)
from xdream.scorers.base import Scorer
from xdream.scorers.placement import (
    Box,
    as_seen,
    check_placement,
    fit,
    receptive_field,
    receptive_field_box,
    warn_if_blind,
)
from xdream.types import Images, Scores

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)
"""Module types whose input ``pre_activation=True`` may read."""


class _StopForward(BaseException):
    """Raised by the hook to end the forward pass at the target layer.

    A ``BaseException`` so that a network's own ``except Exception`` cannot swallow it.
    """

    def __init__(self, activation: object) -> None:
        super().__init__()
        self.activation = activation


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:  # torch's message lists its twenty device types: not what helps
        raise XDreamError(
            f"invalid device {device!r}: use 'cpu', 'cuda' (or 'cuda:N', the Nth GPU) or 'auto'"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XDreamError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return dev


def check_pre_activation(modules: Mapping[str, nn.Module], layer: str) -> None:
    """Refuse ``pre_activation=True`` on ``layer`` unless it is an activation module; the
    message names the nearest activation layers. ``modules`` maps names to modules."""
    target = modules[layer]
    if isinstance(target, ACTIVATIONS):
        return
    acts = [n for n, m in modules.items() if n and isinstance(m, ACTIVATIONS)]
    more = ", ..." if len(acts) > 5 else "."
    near = did_you_mean(layer, acts) or f" Activation layers: {', '.join(acts[:5])}{more}"
    raise XDreamError(
        f"pre_activation=True reads the input of an activation layer, but {layer!r} is "
        f"{type(target).__name__}.{near if acts else ' The network has none.'} "
        "Or use pre_activation=False to read this layer's output."
    )


def refuse_layers_run_twice(
    module: nn.Module,
    targets: Mapping[str, nn.Module],
    inputs: torch.Tensor,
    network_name: str,
    pre_activation: bool = False,
) -> None:
    """Refuse a target layer whose module runs more than once in a forward pass of ``inputs``.

    One module object can be called at several places (``self.relu = nn.ReLU()`` used after
    each convolution; torchvision's ResNet blocks call their ``relu`` two or three times), so its
    name does not say which of its outputs is meant, and a hook reads the first. The whole
    network runs once here, without stopping at the targets, with a hook that counts each
    target's calls; an error raised after the targets ran (a head that takes only another input
    size, say) ends the count, since nothing after the targets is needed to read them.
    """
    seen: dict[str, list[str]] = {layer: [] for layer in targets}

    def counter(layer: str) -> Any:
        def note(value: Any) -> None:
            shape = tuple(value.shape[1:]) if isinstance(value, torch.Tensor) else None
            seen[layer].append(str(shape) if shape is not None else type(value).__name__)

        if pre_activation:
            return lambda _m, inp: note(inp[0] if inp else None)
        return lambda _m, _inp, out: note(out)

    handles = [
        mod.register_forward_pre_hook(counter(layer))
        if pre_activation
        else mod.register_forward_hook(counter(layer))
        for layer, mod in targets.items()
    ]
    try:
        with torch.inference_mode(), evaluation_mode(module):
            module(inputs)
    except Exception:  # past the targets: what ran is counted
        pass
    finally:
        for handle in handles:
            handle.remove()
    for layer, calls in seen.items():
        if len(calls) > 1:
            what = "input" if pre_activation else "output"
            parent = layer.rpartition(".")[0]
            block = f", or the block that holds it ({parent!r}) for its output" if parent else ""
            raise XDreamError(
                f"layer {layer!r} of {network_name!r} runs {len(calls)} times in each forward "
                f"pass (one module called at {len(calls)} places, with {what}s "
                f"{', '.join(calls)}), so its name does not say which {what} to read: read a "
                f"layer that runs once, such as the layer before the call you mean{block}; in "
                "a model of your own, give each call its own module (self.relu1 = nn.ReLU(), "
                "self.relu2 = nn.ReLU(), ...)"
            )


UNSUPPORTED_SHAPE_HINT = (
    "read another layer (layer_table lists each one's output shape), or, for tokens (n, T, D), "
    "wrap the model so that a module of its own puts the channels second, (n, D, T, 1)"
)
"""How to go on from a target layer of another rank, such as a transformer's tokens."""


def nan_warning(network: str, units: list[str], counts: list[int], n: int) -> str:
    """The warning for network units whose activation is NaN for some images (``counts`` of
    ``n``, per unit): a network computes NaN only where something in it is wrong, while the
    run counts such images as no response and goes on."""
    shown = ", ".join(f"{u} for {k} of {n} images" for u, k in zip(units[:5], counts[:5]))
    more = f" and {len(units) - 5} more units" if len(units) > 5 else ""
    return (
        f"{network!r} computes NaN ({shown}{more}): such images count as no response, and the "
        "run goes on; a network gives NaN only where something in it is wrong (check its "
        "weights, a division or a log in its forward pass); said once"
    )


def list_layers_hint(name: str | None, input_size: int) -> str:
    """How to list a network's layers: ``xdream layers NAME`` for a network ``name`` that
    xdream registers (:data:`~xdream.networks.BUILT_IN`), :func:`~xdream.networks.layer_table`
    for any other: one registered by the user's code, which the command does not know, or a
    plain module."""
    if name is not None and name in networks.BUILT_IN:
        return f"`xdream layers {name}`"
    if name is not None and name in networks.names():
        return f"`xdream.networks.layer_table(xdream.networks.make({name!r}).module, {input_size})`"
    return f"`xdream.networks.layer_table(module, {input_size})`"


class CNNUnitScorer(Scorer):
    """Score = activation of one unit of a network: channel ``channel`` of layer ``layer``.

    For a ``(n, C, H, W)`` layer the unit sits at column ``x``, row ``y`` (default: the centre,
    ``W // 2``, ``H // 2``); for a ``(n, C)`` layer there is no position. Images go through
    an optional intermediate resize to ``image_size`` (XDream resized generator output to
    85-128 px before the network's own resize: it changes results, spec §8), then an optional
    ``placement`` (:mod:`xdream.scorers.placement`: ``"full"``, the default, fills the input;
    ``"rf"`` resizes each image into the smallest square over the unit's receptive field, in a
    grey canvas; ``(left, top, size)`` gives that square in input pixels), then
    ``preprocess``.

    ``network`` is a :class:`~xdream.networks.Network` or any ``nn.Module`` (then
    ``preprocess`` is required). ``channels_last=None`` picks it on the CPU, where it is faster
    for EfficientNet-Lite0, unless the module holds a 5-D parameter or buffer (a ``Conv3d``,
    say), which that format cannot take; ``channels_last=True`` on such a module is an error.
    Images are resized and preprocessed in float32 and then cast to the module's
    :func:`~xdream.networks.base.input_dtype` (a ``.double()``, ``.half()`` or bfloat16 model
    works); scores are float64.

    What the scorer does to the module: it moves it to ``device`` (``module.to``, in place) and,
    with ``channels_last``, converts its 4-D weights to the channels-last memory format (same
    values, another layout); both stay. Every forward pass (the dry run here and each
    :meth:`score`) runs under ``torch.inference_mode`` with every submodule in evaluation mode
    (:func:`~xdream.networks.base.evaluation_mode`), and each submodule's ``training`` flag is
    put back afterwards: scores do not depend on the module's mode, and dropout and BatchNorm
    never change its buffers.

    >>> from xdream import networks
    >>> scorer = CNNUnitScorer(networks.make(), "blocks.10", channel=3)  # doctest: +SKIP
    >>> scorer.score(torch.rand(2, 3, 128, 128), ["a", "b"]).shape  # doctest: +SKIP
    (2,)
    """

    def __init__(
        self,
        network: Network | nn.Module,
        layer: str,
        channel: int,
        x: int | None = None,
        y: int | None = None,
        *,
        preprocess: Preprocess | None = None,
        pre_activation: bool = False,
        image_size: int | None = None,
        placement: str | Box | Sequence[int] = "full",
        batch_size: int = 64,
        device: str = "auto",
        channels_last: bool | None = None,
        name: str | None = None,
    ) -> None:
        registered = network.name if isinstance(network, Network) else None
        if isinstance(network, Network):
            module, preprocess = network.module, preprocess or network.preprocess
            name = name or network.name
            self.weights = network.weights
        elif isinstance(network, nn.Module):
            module, self.weights = network, None
            name = name or type(network).__name__
            if preprocess is None:
                raise XDreamError(
                    "a plain nn.Module needs its preprocessing: pass preprocess=Preprocess(mean, "
                    "std, input_size) (or a Network from xdream.networks.make)"
                )
        else:
            raise XDreamError(f"network must be a Network or an nn.Module, got {type(network)!r}")
        if not isinstance(layer, str):
            raise XDreamError(
                f"layer must be a module's name, a string such as {str(layer)!r} or "
                f"'features.3', got {type(layer).__name__} {layer!r}"
            )
        refuse_torchscript(module, name, layer)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise XDreamError(f"batch_size must be a positive integer, got {batch_size!r}")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise XDreamError(f"image_size must be a positive integer or None, got {image_size!r}")
        given = check_placement(placement)
        self.box: Box | None = None  # the dry runs below see the images fill the input
        self.network_name = name
        self.preprocess = preprocess
        self._list_layers = list_layers_hint(registered, preprocess.input_size)
        self.layer = layer
        self.pre_activation = bool(pre_activation)
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.channels_last = use_channels_last(module, self.device, channels_last, name)
        # weights moved or converted as plain tensors, within a caller's inference_mode too,
        # and weights made in it copied first: inference tensors, once moved or converted,
        # cannot be scored within inference mode, and allow no gradient for placement "rf"
        with torch.inference_mode(False):
            self.module = plain_tensors(module).to(self.device)
            if self.channels_last:
                self.module = self.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.dtype = input_dtype(self.module)
        self._target = self._find_layer(layer)
        self.shape = self._dry_run_shape()
        refuse_layers_run_twice(
            self.module,
            {layer: self._target},
            self._inputs(torch.zeros(1, 3, *self._dry_size())),
            name,
            self.pre_activation,
        )
        self.channel, self.x, self.y = self._check_unit(channel, x, y)
        self.box = self._box(given)
        self._warned_nan = False  # said once per scorer (a run's every generation would repeat it)

    # -- construction-time validation ---------------------------------------------------------

    def _find_layer(self, layer: str) -> nn.Module:
        modules = dict(self.module.named_modules())
        modules.pop("", None)
        if layer not in modules:
            raise XDreamError(
                f"network {self.network_name!r} has no layer {layer!r}."
                f"{did_you_mean(layer, modules)} List the layers with {self._list_layers}."
            )
        if self.pre_activation:
            check_pre_activation(modules, layer)
        return modules[layer]

    def _box(self, given: str | Box) -> Box | None:
        """The box the images go to (None: the whole input), for a placement ``given`` as
        :func:`~xdream.scorers.placement.check_placement` returns it."""
        size = self.preprocess.input_size
        if given == "full":
            return None
        position = None if self.x is None or self.y is None else (self.x, self.y)
        what = f"channel {self.channel} of layer {self.layer!r} of {self.network_name!r}"
        options: dict[str, Any] = {"device": self.device, "dtype": self.dtype, "what": what}
        with evaluation_mode(self.module):
            if isinstance(given, Box):
                box = fit(given, size, self.network_name)
                warn_if_blind(
                    box, lambda: [(what, receptive_field(self._read, position, size, **options))]
                )
                return box
            return receptive_field_box(self._read, position, size, **options)

    def _dry_size(self) -> tuple[int, int]:
        size = self.image_size or self.preprocess.input_size
        return size, size

    def _dry_run_shape(self) -> tuple[int, ...]:
        try:
            shape = tuple(self._activations(torch.zeros(1, 3, *self._dry_size())).shape[1:])
        except XDreamError:
            raise
        except Exception as err:
            raise XDreamError(
                f"the dry forward pass of {self.network_name!r} failed on a zero input (1, 3, "
                f"{self.preprocess.input_size}, {self.preprocess.input_size}), {self.dtype}, "
                f"on {self.device}: {type(err).__name__}: {err}"
            ) from err
        if len(shape) not in (1, 3):
            raise XDreamError(
                f"layer {self.layer!r} outputs shape (n, {', '.join(map(str, shape))}); only "
                f"(n, C) and (n, C, H, W) layers are supported: {UNSUPPORTED_SHAPE_HINT}"
            )
        return shape

    def _check_unit(
        self, channel: int, x: int | None, y: int | None
    ) -> tuple[int, int | None, int | None]:
        where = f"layer {self.layer!r} of {self.network_name!r} (output {self.shape})"
        n_channels = self.shape[0]
        for what, value in (("channel", channel), ("x", x), ("y", y)):
            if value is not None and not _is_int(value):
                whole = isinstance(value, float) and float(value).is_integer()
                raise XDreamError(
                    f"{what} must be an integer, got {type(value).__name__} {value!r}"
                    + (f" (write {int(value)})" if whole else "")
                )
        if not 0 <= channel < n_channels:
            raise XDreamError(
                f"channel must be in 0..{n_channels - 1} for {where}, got {channel!r}"
            )
        if len(self.shape) == 1:
            if x is not None or y is not None:
                raise XDreamError(f"{where} has no spatial position: omit x and y")
            return int(channel), None, None
        height, width = self.shape[1], self.shape[2]
        x = width // 2 if x is None else x
        y = height // 2 if y is None else y
        if not _is_int(x) or not 0 <= x < width:
            raise XDreamError(f"x must be in 0..{width - 1} for {where}, got {x!r}")
        if not _is_int(y) or not 0 <= y < height:
            raise XDreamError(f"y must be in 0..{height - 1} for {where}, got {y!r}")
        return int(channel), int(x), int(y)

    # -- forward passes ------------------------------------------------------------------------

    def _read(self, inputs: torch.Tensor) -> torch.Tensor:
        """The target layer's activation for network inputs; the forward stops there."""

        def post_hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            raise _StopForward(out.clone() if isinstance(out, torch.Tensor) else out)

        def pre_hook(_mod: nn.Module, inp: Any) -> None:
            first = inp[0] if inp else None
            raise _StopForward(first.clone() if isinstance(first, torch.Tensor) else first)

        if self.pre_activation:
            handle = self._target.register_forward_pre_hook(pre_hook)
        else:
            handle = self._target.register_forward_hook(post_hook)
        try:
            self.module(inputs)
        except _StopForward as stop:
            if not isinstance(stop.activation, torch.Tensor):
                self._not_a_tensor(stop.activation)
            return stop.activation
        finally:
            handle.remove()
        raise XDreamError(
            f"layer {self.layer!r} of {self.network_name!r} was not called in the forward pass"
        )

    def _overflowed(self, bad: int, n: int) -> NoReturn:
        """Raise: the unit's activation is infinite for ``bad`` of ``n`` images."""
        dtype = str(self.dtype).removeprefix("torch.")
        fix = (
            "run the model in float32 (module.float())"
            if self.dtype in (torch.float16, torch.bfloat16)
            else "its activations grow past the largest number: check its weights and inputs"
        )
        raise XDreamError(
            f"channel {self.channel} of layer {self.layer!r} of {self.network_name!r} overflowed "
            f"to infinity in {dtype} for {bad} of {n} images: {fix}"
        )

    def _not_a_tensor(self, value: object) -> NoReturn:
        """Raise: the target layer's output (or input) is a tuple, dict, ..., not a tensor."""
        what = "input" if self.pre_activation else "output"
        children = [f"{self.layer}.{n}" for n, _ in self._target.named_children()]
        if children:
            shown = ", ".join(map(repr, children[:8])) + (", ..." if len(children) > 8 else "")
            hint = f"read one of its submodules ({shown}) or another layer"
        else:
            hint = "read another layer"
        raise XDreamError(
            f"layer {self.layer!r} of {self.network_name!r} has a {type(value).__name__} {what}, "
            f"not a tensor: {hint}; {self._list_layers} lists the layers whose output is one"
        )

    def _batches(self, images: Images) -> Iterator[torch.Tensor]:
        """Target-layer activations ``(b, C[, H, W])`` per batch of ``batch_size`` images."""
        with torch.inference_mode(), evaluation_mode(self.module):
            for start in range(0, images.shape[0], self.batch_size):
                yield self._read(self._inputs(images[start : start + self.batch_size]))

    def _inputs(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's input for a batch of images: resized, preprocessed, in its dtype."""
        batch = batch.to(self.device, torch.float32)
        batch = as_seen(batch, self.image_size, self.box, self.preprocess.input_size)
        inputs = self.preprocess(batch).to(self.dtype)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def _activations(self, images: Images) -> torch.Tensor:
        """The whole target layer ``(n, C[, H, W])``, for reading several units in one pass."""
        return torch.cat(list(self._batches(images)))

    def _index(self, acts: torch.Tensor) -> torch.Tensor:
        if self.x is None:
            return acts[:, self.channel]
        return acts[:, self.channel, self.y, self.x]

    # -- Scorer API ----------------------------------------------------------------------------

    def score(self, images: Images, ids: list[str]) -> Scores:
        """Activation of the unit for each of ``images`` ``(n, 3, H, W)`` in [0, 1] (float RGB;
        anything else is refused with one line, :func:`~xdream.generators.base.check_images`)."""
        check_images(images)
        check_ids(ids, images.shape[0])
        if images.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        parts = [self._index(acts).double().cpu() for acts in self._batches(images)]
        scores = torch.cat(parts).numpy().astype(np.float64)
        if np.isinf(scores).any():
            self._overflowed(int(np.isinf(scores).sum()), len(scores))
        if not self._warned_nan and np.isnan(scores).any():
            self._warned_nan = True
            warnings.warn(
                nan_warning(
                    self.network_name,
                    [f"channel {self.channel} of layer {self.layer!r}"],
                    [int(np.isnan(scores).sum())],
                    len(scores),
                ),
                stacklevel=2,
            )
        return scores

    def describe(self) -> dict[str, Any]:
        """Network, layer, unit, and the options that change the scores: the ``preprocess``
        (:func:`described_preprocess`) and, for a module without a weight file (``weights``
        None), ``module_sha256``, the fingerprint of its parameters and buffers
        (:func:`module_sha256`, taken at the first call), else None."""
        if not hasattr(self, "_module_sha256"):
            self._module_sha256 = None if self.weights is not None else module_sha256(self.module)
        return {
            "kind": "cnn-unit",
            "network": self.network_name,
            "weights": self.weights,
            "module_sha256": self._module_sha256,
            "layer": self.layer,
            "channel": self.channel,
            "x": self.x,
            "y": self.y,
            "pre_activation": self.pre_activation,
            "image_size": self.image_size,
            "placement": None if self.box is None else self.box.as_list(),
            "preprocess": described_preprocess(self.preprocess),
            "layer_shape": list(self.shape),
        }


def described_preprocess(preprocess: Preprocess) -> dict[str, Any]:
    """A :class:`~xdream.networks.Preprocess` as a scorer's description (JSON values):
    ``mean``, ``std``, ``input_size``, ``bgr`` and ``scale``."""
    return {
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "input_size": preprocess.input_size,
        "bgr": preprocess.bgr,
        "scale": preprocess.scale,
    }


def module_sha256(module: nn.Module) -> str | None:
    """The SHA-256 (hex) of ``module``'s state: each entry of its ``state_dict`` (parameters
    and buffers) by name, dtype, shape and value bytes, whatever its device or memory format;
    None for a tensor whose bytes cannot be read so (a quantized or sparse one, say). An entry
    that is no tensor (a module's ``get_extra_state()``) counts by its name only: its text
    form need not be the same in another session."""
    digest = hashlib.sha256()
    try:
        for name, tensor in module.state_dict().items():
            if not isinstance(tensor, torch.Tensor):
                digest.update(f"{name} (extra state)\n".encode())
                continue
            t = tensor.detach()
            digest.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
            digest.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return None
    return digest.hexdigest()


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
