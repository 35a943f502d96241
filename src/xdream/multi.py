"""Many units at once: independent experiments whose images share batched forward passes.

A config that names several units with ``[[targets]]`` runs one experiment per unit (its own
optimiser, references, noise and record folder), stepped in lockstep by
:class:`MultiExperiment`: every generation, each experiment proposes its images, one
:class:`MultiUnitScorer` pass reads all units from all images (a forward pass through the
network that stops after the deepest target layer), and each experiment receives its own unit's
scores. Reference crops shown to several experiments (same reference seed) are scored once.

.. code-block:: toml

    [target]                      # shared: network, weights, image_size, device, ...
    network = "efficientnet-lite0"
    layer = "blocks.10"

    [[targets]]
    channels = "0:64"             # 64 channels of [target].layer (a list works too)

    [[targets]]
    layer = "blocks.4"            # and units of other layers
    channel = 7
    x = 3
    y = 3

Each unit's experiment is exactly what ``xdream run`` writes for a config whose ``[target]``
names that unit (its folder holds that config, so ``xdream resume UNIT_FOLDER`` works on it);
``units.csv`` in the run folder is the aggregate table.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import functools
import itertools
import os
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch
from torch import nn

from xdream.errors import (
    ConfigChangedError,
    ConfigError,
    FolderInUseError,
    XDreamError,
    did_you_mean,
)
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
from xdream.precision import tf32_mode
from xdream.records import relative_to_references
from xdream.scorers.base import Scorer, brief
from xdream.scorers.cnn import (
    UNSUPPORTED_SHAPE_HINT,
    check_pre_activation,
    described_preprocess,
    list_layers_hint,
    nan_warning,
    refuse_layers_run_twice,
    resolve_device,
)
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

if TYPE_CHECKING:
    from xdream.experiment import Experiment, Summary
    from xdream.records import FolderLock

TARGET_KEYS = ("layer", "channel", "channels", "x", "y")
"""Keys of a ``[[targets]]`` entry (everything else comes from ``[target]``)."""

PRECISIONS = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""``precision`` values: float32, or mixed precision (autocast) in half or bfloat16."""


@dataclasses.dataclass(frozen=True)
class Unit:
    """A target unit: channel ``channel`` of ``layer``, at column ``x``, row ``y`` if spatial."""

    layer: str
    channel: int
    x: int | None = None
    y: int | None = None

    @property
    def label(self) -> str:
        """Folder-safe name, e.g. ``blocks.10_c005``, or ``blocks.4_c007_x3_y3`` given x and
        y (``_x3`` or ``_y3`` given one of them)."""
        xy = "".join(f"_{k}{v}" for k, v in (("x", self.x), ("y", self.y)) if v is not None)
        return f"{self.layer}_c{self.channel:03d}{xy}"

    @property
    def earlier_label(self) -> str:
        """The name xdream gave the unit's folder before 27 November 2026: ``..._x3_yNone``
        given x alone, and no position at all given y alone (the name of the centre's unit),
        which folders made then still go by."""
        xy = "" if self.x is None else f"_x{self.x}_y{self.y}"
        return f"{self.layer}_c{self.channel:03d}{xy}"


def _channels(value: Any, where: str) -> list[int]:
    if isinstance(value, str):
        try:
            start, stop = (int(v) for v in value.split(":"))
        except ValueError:
            raise ConfigError(
                f"{where} 'channels' must be a list of integers or 'start:stop', got {value!r}"
            ) from None
        if stop <= start:
            raise ConfigError(
                f"{where} 'channels' = {value!r} names no channel: 'start:stop' runs from start "
                f"up to but not including stop, so stop must be greater than start (as in "
                f'"{start}:{start + 1}" for channel {start})'
            )
        return list(range(start, stop))
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        if not value:
            raise ConfigError(
                f"{where} 'channels' = [] names no channel: list at least one, or remove the entry"
            )
        return list(value)
    raise ConfigError(
        f"{where} 'channels' must be a list of integers >= 0 or 'start:stop', got {value!r}"
    )


def parse_targets(value: Any, target: Any, *, recorded: bool = False) -> tuple[dict[str, Any], ...]:
    """Validate ``[[targets]]`` and expand it to one ``{layer, channel, x, y}`` per unit.

    Each entry takes ``layer`` (default: ``[target].layer``), ``channel`` or ``channels`` (a
    list, or ``"start:stop"``), and optionally ``x``/``y``. Units are checked against the network
    when the experiment is built. ``[target] x``/``y`` beside it are refused (no unit reads
    them), unless ``recorded``: a run folder's own ``config.yaml``, which an earlier xdream
    wrote with them unread (every unit without its own ``x``/``y`` read the centre, as it does
    on resume).
    """
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ConfigError("[[targets]] must be a non-empty list of tables (TOML: [[targets]])")
    given = {k: getattr(target, k) for k in ("x", "y") if getattr(target, k) is not None}
    if given and not recorded:  # they were silently not read: every unit read the centre
        keys = " and ".join(f"{k} = {v}" for k, v in given.items())
        verb = "are" if len(given) > 1 else "is"
        raise ConfigError(
            f"[target] {keys} {verb} not read when [[targets]] names the units: each entry's "
            "units read the centre of their layer unless the entry gives x and y itself. Move "
            f"{keys} into the [[targets]] entries that should read that position, and out of "
            "[target]"
        )
    units: list[dict[str, Any]] = []
    for i, entry in enumerate(value):
        where = f"[[targets]] entry {i + 1}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a table, got {entry!r}")
        for key in entry:
            if key not in TARGET_KEYS:
                raise ConfigError(
                    f"unknown key {key!r} in {where}.{did_you_mean(str(key), TARGET_KEYS)} "
                    f"Valid keys: {', '.join(TARGET_KEYS)}; the rest is shared from [target]."
                )
        if ("channel" in entry) == ("channels" in entry):
            raise ConfigError(f"{where} needs exactly one of 'channel' or 'channels'")
        layer = entry.get("layer", target.layer)
        if not isinstance(layer, str):
            raise ConfigError(f"{where} 'layer' must be a string, got {layer!r}")
        channels = (
            _channels(entry["channels"], where) if "channels" in entry else [entry["channel"]]
        )
        for key in ("x", "y"):
            v = entry.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                raise ConfigError(f"{where} {key!r} must be an integer, got {v!r}")
        for c in channels:
            if not isinstance(c, int) or isinstance(c, bool) or c < 0:
                raise ConfigError(f"{where} channel must be an integer >= 0, got {c!r}")
            unit = {"layer": layer, "channel": c, "x": entry.get("x"), "y": entry.get("y")}
            if unit in units:
                raise ConfigError(f"{where} repeats unit {unit}; each unit may appear once")
            units.append(unit)
    return tuple(units)


def fold_batchnorm(
    module: nn.Module, keep: Sequence[str] = (), *, in_place: bool = False
) -> tuple[nn.Module, int]:
    """A copy of ``module``, in evaluation mode, with each ``BatchNorm2d`` folded into the
    convolution before it (in an ``nn.Sequential``) by its running statistics, as evaluation
    mode uses them; returns the copy and the number of folds.

    BN(conv(x)) = conv'(x) with weights scaled by ``gamma / sqrt(var + eps)`` and bias
    ``beta - mean * gamma / sqrt(var + eps)`` (plus the scaled conv bias). The BN module becomes
    ``nn.Identity`` under the same name, so a hook on it still reads the normalised output; a
    convolution named in ``keep`` (a target layer) is left alone, as its output would change.

    ``module`` is left as it was, unless ``in_place=True``: then ``module`` itself is folded
    and returned, without a copy of the network (its structure changes, and it is put in
    evaluation mode, but no tensor is written into: a folded convolution gets new ones, so
    tensors that ``module`` shares with other modules stay as they were). For a module that
    nothing else uses, such as one from :func:`xdream.networks.shared`.
    """
    module = (module if in_place else copy.deepcopy(module)).eval()
    folds = 0
    for name, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.named_children())
        for (cname, conv), (bname, bn) in itertools.pairwise(children):
            full = f"{name}.{cname}" if name else cname
            if (
                not isinstance(conv, nn.Conv2d)
                or not isinstance(bn, nn.BatchNorm2d)
                or full in keep
                or bn.running_mean is None
                or bn.running_var is None
            ):
                continue
            with torch.no_grad():
                scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
                shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
                bias = shift if conv.bias is None else conv.bias * scale + shift
                weight = conv.weight * scale.reshape(-1, 1, 1, 1)  # new memory: shared stays
                conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
                conv.bias = nn.Parameter(bias.detach().clone())
            setattr(seq, bname, nn.Identity())
            folds += 1
    return module, folds


def _as_network(network: Any, preprocess: Preprocess | None, name: str | None) -> Network:
    """``network`` as a :class:`Network`: a plain ``nn.Module`` with ``preprocess``; ``preprocess``
    and ``name``, when given, replace a Network's own."""
    if isinstance(network, Network):
        changes: dict[str, Any] = {}
        if preprocess is not None:
            changes["preprocess"] = preprocess
        if name is not None:
            changes["name"] = name
        return dataclasses.replace(network, **changes) if changes else network
    if isinstance(network, nn.Module):
        if preprocess is None:
            raise XDreamError(
                f"MultiUnitScorer: a plain nn.Module ({type(network).__name__}) needs its "
                "preprocessing: pass preprocess=xdream.networks.Preprocess(mean, std, input_size) "
                "(or give a Network: xdream.networks.Network(module, preprocess, name))"
            )
        if not isinstance(preprocess, Preprocess):
            raise XDreamError(
                "MultiUnitScorer: preprocess must be an xdream.networks.Preprocess(mean, std, "
                f"input_size), got {type(preprocess).__name__}"
            )
        return Network(network, preprocess, name or type(network).__name__)
    hint = (
        f"xdream.networks.make({network!r}) builds that registered network"
        if isinstance(network, str)
        else "xdream.networks.make(NAME) builds a registered one"
    )
    raise XDreamError(
        "MultiUnitScorer: network must be an xdream.networks.Network or an nn.Module with "
        f"preprocess=..., got {type(network).__name__} {brief(network)}; {hint}"
    )


def _as_units(units: Any) -> list[Unit]:
    """``units`` as a list of :class:`Unit`: each a Unit or ``(layer, channel[, x[, y]])``."""
    expected = (
        "a list of xdream.multi.Unit(layer, channel, x, y) or of tuples (layer, channel[, x, y])"
    )
    single = isinstance(units, Unit) or (
        isinstance(units, tuple) and bool(units) and isinstance(units[0], str)
    )
    if single or isinstance(units, (str, bytes, Mapping)) or not isinstance(units, Iterable):
        hint = f"; for one unit write [{brief(units)}]" if single else ""
        raise XDreamError(
            f"MultiUnitScorer: units must be {expected}, got {type(units).__name__} "
            f"{brief(units)}{hint}"
        )
    units = list(units)
    if not units:
        raise XDreamError(f"MultiUnitScorer needs at least one unit: give {expected}")
    out: list[Unit] = []
    for i, unit in enumerate(units):
        if isinstance(unit, Unit):
            fields: tuple[Any, ...] = dataclasses.astuple(unit)
        elif isinstance(unit, (tuple, list)) and 2 <= len(unit) <= 4:
            fields = (*unit, *(None,) * (4 - len(unit)))
        else:
            raise XDreamError(
                f"MultiUnitScorer: units[{i}] must be an xdream.multi.Unit or a tuple (layer, "
                f"channel[, x, y]), got {type(unit).__name__} {brief(unit)}"
            )
        layer, channel, x, y = fields
        if not isinstance(layer, str):
            raise XDreamError(
                f"MultiUnitScorer: units[{i}] = {brief(unit)}: the layer must be a string (a "
                f"module name such as 'blocks.10'), got {type(layer).__name__} {layer!r}"
            )
        numbers: dict[str, Any] = {"channel": channel, "x": x, "y": y}
        for key, v in numbers.items():
            if v is None and key != "channel":
                continue
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                what = "an integer >= 0" if key == "channel" else "an integer >= 0 or None"
                raise XDreamError(
                    f"MultiUnitScorer: units[{i}] = {brief(unit)}: {key} must be {what}, got {v!r}"
                )
            numbers[key] = int(v)
        out.append(Unit(layer, numbers["channel"], numbers["x"], numbers["y"]))
    return out


class _Stop(BaseException):
    """Ends the forward pass once every target layer has been read."""


class MultiUnitScorer:
    """Reads many units of one network from a single forward pass per batch.

    Hooks on every target layer keep only the target units (``(b, k)`` floats), and the pass
    stops once all target layers ran, so nothing after the deepest one is computed. Runs under
    ``torch.inference_mode``, ``channels_last`` on the CPU (faster for EfficientNet-Lite0), on
    ``device`` (``"auto"``: CUDA when available) with optional mixed precision (``precision``
    ``"float16"`` or ``"bfloat16"``: autocast) and optional ``torch.compile`` (``compile``).
    Batch norms are folded into their convolutions (``fold_bn``, on a copy of the network;
    responses equal up to float rounding), and on the CPU batches hold at most
    ``cpu_batch_size`` images: small batches stay in cache and ran 2-3x faster per image than
    batches of 30 on a 2-core CPU (docs/benchmarks.md).

    ``network`` is a :class:`~xdream.networks.Network` (``xdream.networks.make(NAME)``) or any
    ``nn.Module``, which then needs ``preprocess`` (a :class:`~xdream.networks.Preprocess`), as
    for :class:`~xdream.scorers.CNNUnitScorer`; ``name`` names it in messages and records (the
    class name by default). ``units`` are :class:`Unit` s or tuples ``(layer, channel)``,
    ``(layer, channel, x)`` or ``(layer, channel, x, y)``. ``image_size`` and ``placement``
    are as for :class:`~xdream.scorers.CNNUnitScorer`; with ``placement="rf"`` every unit must
    have the same receptive field, since the shared pass places every image alike.

    >>> from xdream import networks
    >>> units = [Unit("blocks.10", c) for c in range(4)]
    >>> multi = MultiUnitScorer(networks.make(), units)  # doctest: +SKIP
    >>> multi.activations(torch.rand(8, 3, 128, 128)).shape  # doctest: +SKIP
    (8, 4)
    """

    def __init__(
        self,
        network: Network | nn.Module,
        units: Sequence[Unit | tuple[Any, ...]],
        *,
        preprocess: Preprocess | None = None,
        name: str | None = None,
        pre_activation: bool = False,
        image_size: int | None = None,
        placement: str | Box | Sequence[int] = "full",
        batch_size: int = 64,
        device: str = "auto",
        channels_last: bool | None = None,
        precision: str = "float32",
        compile: bool = False,
        fold_bn: bool = True,
        cpu_batch_size: int | None = 4,
    ) -> None:
        network = _as_network(network, preprocess, name)
        units = _as_units(units)
        if precision not in PRECISIONS:
            raise XDreamError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise XDreamError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.network: Network = network
        self.units: list[Unit] = units
        self.pre_activation = pre_activation
        self.image_size = image_size
        given = check_placement(placement)
        self.box: Box | None = None  # the dry runs below see the images fill the input
        self.device = resolve_device(device)
        if self.device.type == "cpu" and cpu_batch_size:
            batch_size = min(batch_size, cpu_batch_size)
        self.batch_size = batch_size
        self.channels_last = use_channels_last(
            network.module, self.device, channels_last, network.name
        )
        self.precision = precision
        for layer in dict.fromkeys(u.layer for u in self.units):  # hooks do not run in it
            refuse_torchscript(network.module, network.name, layer)
        module = network.module
        # weights folded, moved or converted as plain tensors, within a caller's inference_mode
        # too, and weights made in it copied first (as for CNNUnitScorer)
        with torch.inference_mode(False):
            if fold_bn:
                keep = [u.layer for u in self.units]
                module = fold_batchnorm(module, keep)[0]
            module = plain_tensors(module).to(self.device)
            if self.channels_last:
                module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.module: nn.Module = module
        self._dtype = input_dtype(module)  # a .double() or .half() model gets inputs it takes
        self._forward: Callable[[torch.Tensor], Any] = (
            torch.compile(module) if compile else module  # type: ignore[assignment]
        )
        modules = dict(module.named_modules())
        self.layers: list[str] = list(dict.fromkeys(u.layer for u in self.units))
        for layer in self.layers:
            if layer not in modules or not layer:
                raise XDreamError(
                    f"network {network.name!r} has no layer {layer!r}."
                    f"{did_you_mean(layer, [n for n in modules if n])} List the layers with "
                    f"{list_layers_hint(network.name, network.preprocess.input_size)}."
                )
            if pre_activation:
                check_pre_activation(modules, layer)
        self._warned_nan = False  # said once (every generation of a run would repeat it)
        self._modules = {layer: modules[layer] for layer in self.layers}
        self.shapes = self._layer_shapes()
        refuse_layers_run_twice(
            self.module,
            self._modules,
            self._dry_input(),
            network.name,
            pre_activation,
        )
        self.units = [self._check(u) for u in self.units]
        self.box = self._box(given)
        # per layer: positions of its units in the output columns, and the index tuples
        self._plan: dict[str, tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for layer in self.layers:
            cols = [i for i, u in enumerate(self.units) if u.layer == layer]
            chans = torch.tensor([self.units[i].channel for i in cols], device=self.device)
            ys = torch.tensor([self.units[i].y or 0 for i in cols], device=self.device)
            xs = torch.tensor([self.units[i].x or 0 for i in cols], device=self.device)
            self._plan[layer] = (cols, chans, ys, xs)

    def _layer_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        sink = lambda layer, t: shapes.setdefault(layer, tuple(t.shape[1:]))  # noqa: E731
        with self._hooks(sink), torch.inference_mode(), evaluation_mode(self.module):
            self._run(self._dry_input())
        return shapes

    def _box(self, given: str | Box) -> Box | None:
        """The box every image goes to (None: the whole input), for a placement ``given`` as
        :func:`~xdream.scorers.placement.check_placement` returns it. ``"rf"`` finds each
        unit's receptive field (once per layer and position) and is refused where they differ:
        the shared pass places every image alike."""
        size = self.network.preprocess.input_size
        if given == "full":
            return None

        def search(find: Callable[..., Any]) -> dict[tuple[str, int | None, int | None], Any]:
            """``find`` (a field or its square) once per layer and position of the units."""
            found: dict[tuple[str, int | None, int | None], Any] = {}
            for u in self.units:
                if (u.layer, u.x, u.y) not in found:
                    found[u.layer, u.x, u.y] = find(
                        functools.partial(self._layer_output, u.layer),
                        None if u.x is None or u.y is None else (u.x, u.y),
                        size,
                        device=self.device,
                        dtype=self._dtype,
                        what=self._words(u),
                    )
            return found

        with evaluation_mode(self.module):
            if isinstance(given, Box):
                box = fit(given, size, self.network.name)
                warn_if_blind(
                    box,
                    lambda: [
                        (f"layer {layer!r}" + ("" if x is None else f" (x {x}, y {y})"), field)
                        for (layer, x, y), field in search(receptive_field).items()
                    ],
                )
                return box
            boxes: dict[tuple[str, int | None, int | None], Box] = search(receptive_field_box)
        if len(set(boxes.values())) > 1:
            shown = "; ".join(
                f"layer {layer!r}"
                + ("" if x is None else f" (x {x}, y {y})")
                + f": {box.as_list()}"
                for (layer, x, y), box in list(boxes.items())[:6]
            )
            more = f"; and {len(boxes) - 6} more" if len(boxes) > 6 else ""
            left = min(b.left for b in boxes.values())
            top = min(b.top for b in boxes.values())
            side = max(
                max(b.left + b.size for b in boxes.values()) - left,
                max(b.top + b.size for b in boxes.values()) - top,
            )
            union = [min(left, size - side), min(top, size - side), side]
            raise XDreamError(
                f"placement 'rf': the units' receptive fields differ ([left, top, size] {shown}"
                f"{more}), and one forward pass places every image in one box: give the units "
                f"of one layer and position, or a box as placement [left, top, size] (one that "
                f"holds them all: {union})"
            )
        return next(iter(boxes.values()))

    def _layer_output(self, layer: str, inputs: torch.Tensor) -> torch.Tensor:
        """The tensor ``layer`` gives (or takes, with ``pre_activation``) for network
        ``inputs``; the forward pass stops once every target layer has been reached. A copy:
        the pass goes on to the other target layers, and an in-place activation on its way
        would overwrite a pre-activation in the tensor itself (and its gradient with it).
        In the module's own dtype, with no autocast (``precision``) and uncompiled: the field
        is the network's wiring, and float16's gradients underflow to 0 where it is faint."""
        got: dict[str, torch.Tensor] = {}
        with self._hooks(lambda name, t: got.setdefault(name, t.clone())):
            self.module(inputs)
        return got[layer]

    def _dry_input(self) -> torch.Tensor:
        """The network input for one zero image, as the construction's dry runs take it: made
        as every scored image's is (:meth:`_inputs`), so at the network's input size whatever
        ``image_size`` (a dry run at ``image_size`` gave the layers' shapes at that size, and
        the centre and the range of ``x`` and ``y`` with them)."""
        size = self.image_size or self.network.preprocess.input_size
        return self._inputs(torch.zeros(1, 3, size, size))

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """The network's input for a batch of images: resized to ``image_size`` where given,
        preprocessed, in the module's dtype and memory format, on its device."""
        batch = images.to(self.device, torch.float32)
        batch = as_seen(batch, self.image_size, self.box, self.network.preprocess.input_size)
        inputs = self.network.preprocess(batch).to(self._dtype)
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def _check(self, unit: Unit) -> Unit:
        shape = self.shapes[unit.layer]
        where = f"layer {unit.layer!r} of {self.network.name!r} (output {shape})"
        if len(shape) not in (1, 3):
            raise XDreamError(
                f"{where}: only (n, C) and (n, C, H, W) layers are supported: "
                f"{UNSUPPORTED_SHAPE_HINT}"
            )
        if not 0 <= unit.channel < shape[0]:
            raise XDreamError(
                f"channel must be in 0..{shape[0] - 1} for {where}, got {unit.channel!r}"
            )
        if len(shape) == 1:
            if unit.x is not None or unit.y is not None:
                raise XDreamError(f"{where} has no spatial position: omit x and y")
            return unit
        x = shape[2] // 2 if unit.x is None else unit.x
        y = shape[1] // 2 if unit.y is None else unit.y
        if not (0 <= x < shape[2] and 0 <= y < shape[1]):
            centre = " (the centre for the one not given)" if None in (unit.x, unit.y) else ""
            raise XDreamError(
                f"x must be in 0..{shape[2] - 1} and y in 0..{shape[1] - 1} for {where}, got "
                f"x {x}, y {y}{centre}"
            )
        return Unit(unit.layer, unit.channel, x, y)

    def _hooks(self, sink: Callable[[str, torch.Tensor], Any]) -> Any:
        """Context manager: hooks that pass each target layer's tensor to ``sink``, then stop."""
        scorer = self

        class _Ctx:
            def __enter__(self) -> None:
                seen: set[str] = set()

                def make(layer: str) -> Callable[..., None]:
                    def take(t: Any) -> None:
                        if not isinstance(t, torch.Tensor):
                            raise XDreamError(f"layer {layer!r} returns {type(t).__name__}")
                        if layer not in seen:
                            seen.add(layer)
                            sink(layer, t)
                        if len(seen) == len(scorer._modules):
                            raise _Stop

                    if scorer.pre_activation:
                        return lambda _m, inp: take(inp[0])
                    return lambda _m, _inp, out: take(out)

                self.seen = seen
                self.handles = [
                    mod.register_forward_pre_hook(make(layer))  # type: ignore[arg-type]
                    if scorer.pre_activation
                    else mod.register_forward_hook(make(layer))  # type: ignore[arg-type]
                    for layer, mod in scorer._modules.items()
                ]

            def __exit__(self, *exc: Any) -> bool:
                for h in self.handles:
                    h.remove()
                if exc[0] is _Stop:
                    return True
                if exc[0] is None and len(self.seen) < len(scorer._modules):
                    missing = sorted(set(scorer._modules) - self.seen)
                    raise XDreamError(f"layers {missing} were not called in the forward pass")
                return False

        return _Ctx()

    def _run(self, inputs: torch.Tensor) -> None:
        dtype = PRECISIONS[self.precision]
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        with ctx:
            self._forward(inputs)

    def _batches(self, images: Images) -> Iterator[torch.Tensor]:
        # responses in float32, a float64 model's in float64 (scores are float64 either way)
        dtype = torch.float64 if self._dtype == torch.float64 else torch.float32
        for start in range(0, images.shape[0], self.batch_size):
            inputs = self._inputs(images[start : start + self.batch_size])
            out = torch.empty(inputs.shape[0], len(self.units), device=self.device, dtype=dtype)

            def sink(layer: str, t: torch.Tensor, out: torch.Tensor = out) -> None:
                cols, chans, ys, xs = self._plan[layer]
                t = t.to(out.dtype)
                out[:, cols] = t[:, chans] if t.ndim == 2 else t[:, chans, ys, xs]

            with self._hooks(sink):
                self._run(inputs)
            yield out

    def activations(self, images: Images) -> np.ndarray:
        """Responses ``(n, k)`` float64 of the ``k`` units to ``images`` ``(n, 3, H, W)``, float
        RGB in [0, 1] (anything else is refused with one line, as by
        :meth:`CNNUnitScorer.score <xdream.scorers.CNNUnitScorer.score>`)."""
        check_images(images)
        if images.shape[0] == 0:
            return np.zeros((0, len(self.units)))
        with torch.inference_mode(), evaluation_mode(self.module):
            parts = [b.cpu() for b in self._batches(images)]
        acts = torch.cat(parts).numpy().astype(np.float64)
        if np.isinf(acts).any():
            self._overflowed(np.isinf(acts))
        if not self._warned_nan and np.isnan(acts).any():
            self._warned_nan = True
            nan = np.isnan(acts).sum(axis=0)
            named = [(self._words(u), int(k)) for u, k in zip(self.units, nan) if k]
            warnings.warn(
                nan_warning(
                    self.network.name, [u for u, _ in named], [k for _, k in named], len(acts)
                ),
                stacklevel=2,
            )
        return acts

    @staticmethod
    def _words(unit: Unit) -> str:
        """A unit in a message: ``channel 3 of layer 'blocks.4' (x 14, y 14)``."""
        where = f" (x {unit.x}, y {unit.y})" if unit.x is not None else ""
        return f"channel {unit.channel} of layer {unit.layer!r}{where}"

    def _overflowed(self, infinite: np.ndarray) -> NoReturn:
        """Raise: some units' activations are infinite (``infinite``, ``(n, k)`` booleans), as
        :class:`~xdream.scorers.CNNUnitScorer` does for its unit. A run would otherwise stop in
        the optimiser's check, with advice meant for a scorer of one's own."""
        autocast = PRECISIONS[self.precision]
        if self._dtype in (torch.float16, torch.bfloat16):
            dtype, fix = str(self._dtype), "run the model in float32 (module.float())"
        elif autocast is not None:
            dtype, fix = f"{self.precision} (autocast)", "score in float32 (precision='float32')"
        else:
            dtype = str(self._dtype)
            fix = "its activations grow past the largest number: check its weights and inputs"
        bad = [(u, int(col.sum())) for u, col in zip(self.units, infinite.T) if col.any()]
        shown = ", ".join(
            f"{self._words(u)} for {n} of {len(infinite)} images" for u, n in bad[:5]
        ) + (f" and {len(bad) - 5} more units" if len(bad) > 5 else "")
        raise XDreamError(
            f"activations of {self.network.name!r} overflowed to infinity in "
            f"{dtype.removeprefix('torch.')} ({shown}): {fix}"
        )

    def view(self, index: int) -> UnitView:
        """A :class:`~xdream.scorers.base.Scorer` for unit ``index`` alone."""
        return UnitView(self, index)


class UnitView(Scorer):
    """One unit of a :class:`MultiUnitScorer`, as a scorer.

    Standing alone it runs its own forward pass; inside :class:`MultiExperiment` the driver hands
    it the scores of the shared pass (:meth:`supply`) before the experiment asks for them.
    """

    def __init__(self, multi: MultiUnitScorer, index: int) -> None:
        self.multi = multi
        self.index = index
        self._supplied: Scores | None = None

    @property
    def unit(self) -> Unit:
        return self.multi.units[self.index]

    def supply(self, scores: Scores) -> None:
        """Scores for the next :meth:`score` call, computed by a shared forward pass."""
        self._supplied = np.asarray(scores, dtype=np.float64)

    def score(self, images: Images, ids: list[str]) -> Scores:
        if self._supplied is not None:
            scores, self._supplied = self._supplied, None
            if scores.shape != (len(ids),):
                raise XDreamError(f"supplied {scores.shape} scores for {len(ids)} images")
            return scores
        check_ids(ids, len(check_images(images)))
        return self.multi.activations(images)[:, self.index]

    def describe(self) -> dict[str, Any]:
        u, m = self.unit, self.multi
        return {
            "kind": "cnn-unit",
            "network": m.network.name,
            "weights": m.network.weights,
            "layer": u.layer,
            "channel": u.channel,
            "x": u.x,
            "y": u.y,
            "pre_activation": m.pre_activation,
            "image_size": m.image_size,
            "placement": None if m.box is None else m.box.as_list(),
            "preprocess": described_preprocess(m.network.preprocess),
            "layer_shape": list(m.shapes[u.layer]),
        }


SUMMARY_COLUMNS = (
    "unit",
    "layer",
    "channel",
    "x",
    "y",
    "best_score",
    "best_clean_score",
    "first_generation_best_score",
    "best_reference_score",
    "best_clean_reference_score",
    "relative_to_references",
    "generations",
    "presentations",
    "folder",
)
"""Columns of ``units.csv``; ``relative_to_references`` = ``best_clean_score`` /
``best_clean_reference_score`` (:func:`relative_to_references`)."""


def summary_row(
    unit: Unit, summary: Mapping[str, Any], folder: str, label: str | None = None
) -> dict[str, Any]:
    """One row of an aggregate table from an experiment's ``summary.json``."""
    return {
        "unit": label or unit.label,
        "layer": unit.layer,
        "channel": unit.channel,
        "x": unit.x,
        "y": unit.y,
        **{k: summary.get(k) for k in SUMMARY_COLUMNS[5:10]},
        "relative_to_references": relative_to_references(summary),
        "generations": summary.get("generations"),
        "presentations": summary.get("presentations"),
        "folder": folder,
    }


def write_table(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Atomically write ``rows`` as CSV."""
    from xdream.records import atomic_write

    with atomic_write(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def units_of(config: Any) -> list[Unit]:
    """The units a config names: its ``[[targets]]``, or its single ``[target]``."""
    if config.targets:
        return [Unit(**t) for t in config.targets]
    t = config.target
    return [Unit(t.layer, t.channel, t.x, t.y)]


def unit_config(config: Any, unit: Unit) -> Any:
    """The single-unit config of one of ``config``'s units (no ``[[targets]]``). A unit of a
    many-unit config gets its own ``[experiment] noise_seed`` (:func:`unit_noise_seed`), so
    the units' noise draws are independent, and its config alone draws them again."""
    target = dataclasses.replace(
        config.target, layer=unit.layer, channel=unit.channel, x=unit.x, y=unit.y
    )
    experiment = config.experiment
    if config.targets:
        experiment = dataclasses.replace(experiment, noise_seed=unit_noise_seed(config, unit))
    return dataclasses.replace(config, experiment=experiment, target=target, targets=())


def unit_noise_seed(config: Any, unit: Unit) -> int:
    """The noise seed of ``unit`` in a many-unit run of ``config``: from ``[experiment]
    noise_seed`` (or the noise stream of ``seed``) and the unit's layer, channel, x and y, so
    the same in every session and process (the layer by its CRC-32, not Python's salted
    ``hash``)."""
    from xdream.experiment import derived_seed

    exp = config.experiment
    base = exp.noise_seed if exp.noise_seed is not None else derived_seed(exp.seed, 2)
    key = [zlib.crc32(unit.layer.encode("utf-8")), unit.channel]
    key += [0 if v is None else v + 1 for v in (unit.x, unit.y)]
    return int(np.random.SeedSequence([base, *key]).generate_state(1)[0])


def as_started(single: Any, config: Any, folder: Path) -> Any:
    """``single`` (a unit's config from :func:`unit_config`) as the experiment in ``folder``
    started: one started by an xdream before units had their own noise seeds (no
    ``noise_seed`` in its ``config.yaml``) drew the noise stream of ``seed`` (its checkpoint
    holds it), so it keeps ``noise_seed`` unset: it is not refused, and its rewritten
    ``config.yaml`` names no seed it never used. Unless ``config`` (the run's) sets a
    ``noise_seed`` now: that is a change, which resume refuses."""
    if config.experiment.noise_seed is not None or not _started_without_noise_seed(folder):
        return single
    earlier = dataclasses.replace(single.experiment, noise_seed=None)
    return dataclasses.replace(single, experiment=earlier)


class _EarlierValue:
    """Stands for a value that the run's own ``config.yaml`` held before it was edited."""

    def __repr__(self) -> str:
        return "(the value the run started with)"


def run_config_changed(err: ConfigChangedError, config: Any, unit: Unit, out: Path) -> XDreamError:
    """The refusal of a unit's resume (``err``) in terms of the run's own ``config.yaml``,
    which is what was edited: the run's folder, and its keys (:func:`changes_in_run_terms`)."""
    from xdream.experiment import config_changed_message, with_notes

    defining = changes_in_run_terms(err.saved, err.now, config, unit)
    if not defining:  # nothing left in the run's terms: say it in the unit's
        return err
    message = config_changed_message(out, with_notes(defining, err.notes))
    return ConfigChangedError(message, err.saved, err.now, err.notes)


def changes_in_run_terms(
    saved: dict[str, Any], now: dict[str, Any], config: Any, unit: Unit
) -> list[str]:
    """The changes of keys that define the experiment between a unit's config as it started
    (``saved``) and as ``config`` makes it now (``now``, :func:`unit_config`), with
    ``noise_seed`` as ``config``'s own key: in a many-unit config it is the number derived for
    the unit (:func:`unit_noise_seed`), which the user never wrote."""
    from xdream.experiment import config_changes

    saved = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
    now = {k: dict(v) if isinstance(v, dict) else v for k, v in now.items()}
    saved_exp, now_exp = saved.get("experiment"), now.get("experiment")
    if config.targets and isinstance(saved_exp, dict) and isinstance(now_exp, dict):
        now_exp["noise_seed"] = config.experiment.noise_seed
        started, seed = saved_exp.get("noise_seed"), saved_exp.get("seed")
        if started is not None and isinstance(seed, int):
            without = dataclasses.replace(config.experiment, seed=seed, noise_seed=None)
            if started == unit_noise_seed(dataclasses.replace(config, experiment=without), unit):
                saved_exp["noise_seed"] = None  # the run set no noise_seed of its own
            elif started == unit_noise_seed(config, unit):
                saved_exp["noise_seed"] = config.experiment.noise_seed  # unchanged
            else:
                saved_exp["noise_seed"] = _EarlierValue()
    return config_changes(saved, now)[0]


def _started_without_noise_seed(folder: Path) -> bool:
    """Whether ``folder`` holds an experiment whose ``config.yaml`` has no ``noise_seed``."""
    from xdream import config as config_mod

    path = folder / "config.yaml"
    if not path.exists():
        return False
    try:
        section = config_mod.read(path).get("experiment")
    except XDreamError:  # unreadable: restoring the checkpoint says what is wrong
        return False
    return isinstance(section, Mapping) and section.get("noise_seed") is None


def _update_config(config: Any, path: Path) -> None:
    """Rewrite a unit's ``config.yaml`` (atomically) when it differs from ``config``: a resumed
    run's allowed edits (a larger budget, ...) hold for each unit, whose folder repeats it."""
    from xdream import config as config_mod

    try:
        same = path.read_text(encoding="utf-8") == config_mod.to_yaml(config)
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:
        config_mod.dump_yaml(config, path)


def _drop_table(out: Path) -> None:
    """Remove ``units.csv`` (durably) from a finished run that goes on with a larger budget: its
    numbers are the earlier finish's, and :meth:`MultiExperiment.run` writes it again once
    every unit has finished."""
    from xdream.records import fsync_folder

    table = out / "units.csv"
    if table.exists():
        table.unlink()
        fsync_folder(out)


def started_square(config: Any, folders: Iterable[str | Path]) -> Box | None:
    """The square a run of ``config`` with ``[target] placement = "rf"`` placed its images in,
    as the first of ``folders`` (its experiment folders) that recorded one says (the target's
    ``placement`` in ``summary.json``, for the same network); ``None`` for another placement,
    or where none of them recorded a square (a run that has not scored yet).

    A resume places images in that square rather than finding the field again: the field is
    found from gradients, and on another device or torch a ReLU at its edge could flip and move
    it a pixel, which the resume would then refuse as another placement."""
    from xdream.records import read_summary

    if config.target.placement != "rf":
        return None
    for folder in folders:
        try:
            then = read_summary(folder).get("target")
        except XDreamError:  # unreadable: the resume says so, or writes it again
            continue
        if not isinstance(then, dict) or then.get("network") != config.target.network:
            continue
        square = then.get("placement")
        if (
            isinstance(square, list)
            and len(square) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in square)
        ):
            return Box(*square)
    return None


def shared_scorer(
    config: Any, units: Sequence[Unit], *, square: Box | None = None, **options: Any
) -> MultiUnitScorer:
    """A :class:`MultiUnitScorer` for ``units`` of ``config``'s ``[target]`` network; with
    ``square``, its images go there instead of where ``[target] placement`` says (a resumed run's
    own square: :func:`started_square`).

    The network comes from :func:`xdream.networks.shared`: inside a
    :func:`xdream.networks.reuse` block (``xdream tune`` runs its study in one) it is built once
    per weight file for every scorer made here. Either way its module is this scorer's alone, so
    a network xdream registers has its batch norms folded (``fold_bn``, the default) in place
    (:func:`fold_batchnorm` with ``in_place=True``) instead of on a copy of the whole network."""
    from xdream import networks

    t = config.target
    network = networks.shared(t.network, weights=t.weights)
    if options.get("fold_bn", True) and t.network in networks.BUILT_IN:
        keep = [u.layer for u in _as_units(units)]
        fold_batchnorm(network.module, keep, in_place=True)
        options = {**options, "fold_bn": False}  # folded here

    def scorer(some: Sequence[Unit]) -> MultiUnitScorer:
        return MultiUnitScorer(
            network,
            some,
            pre_activation=t.pre_activation,
            image_size=t.image_size,
            placement=t.placement if square is None else square,
            batch_size=t.batch_size,
            device=t.device,
            **options,
        )

    try:
        return scorer(units)
    except XDreamError:
        problems = each_problem(scorer, _as_units(units))
        if len(problems) < 2:
            raise
        raise XDreamError(
            f"{len(problems)} of the targets cannot be read:\n  " + "\n  ".join(problems)
        ) from None


def each_problem(build: Callable[[list[Unit]], Any], units: Sequence[Unit]) -> list[str]:
    """What ``build`` refuses for each of ``units`` alone, each refusal once, in the units'
    order: every problem of a set of targets that ``build`` refused at its first (a many-unit
    run or a sweep is told them all at once, not one per try)."""
    problems: dict[str, None] = {}
    for unit in units:
        try:
            build([unit])
        except XDreamError as err:
            problems.setdefault(str(err))
    return list(problems)


class MultiExperiment:
    """Independent experiments, one per unit, stepped in lockstep over shared forward passes."""

    def __init__(
        self,
        experiments: Sequence[Any],
        multi: MultiUnitScorer,
        out: Path,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.experiments = list(experiments)
        self.labels = list(labels) if labels else [u.label for u in multi.units]
        """Unit names as the config gives them (folders under ``units/``)."""
        self.multi = multi
        self.out = Path(out)
        self._lock: FolderLock | None = None

    @classmethod
    def from_config(
        cls, config: Any, out: str | Path, *, resume: bool = False, **options: Any
    ) -> MultiExperiment:
        """One experiment per unit of ``config`` under ``out/units/<unit>/``.

        With ``resume=True`` unit folders that hold a checkpoint continue from it: every unit is
        checked (:meth:`Experiment.check_restore`) before any unit's folder is written, so a
        refusal leaves the run's files as they were. ``options``
        go to :class:`MultiUnitScorer` (``precision``, ``compile``, ...). ``config`` is an
        :class:`xdream.config.Config`: ``xdream.config.load("units.toml")``, or
        :func:`xdream.config.from_dict` of a dict.
        """
        from xdream import config as config_mod
        from xdream import generators
        from xdream.experiment import Experiment
        from xdream.records import LOCK_FILE, RunFolder, remove_empty

        config = config_mod.require_config(config, "MultiExperiment.from_config")
        out = Path(out)
        existed, locked_before = out.exists(), (out / LOCK_FILE).exists()
        lock = RunFolder(out).lock()  # a second process stops here, naming this folder
        experiments: list[Experiment] = []
        restorations: list[Callable[[], str]] = []  # a unit's restore, once all are checked
        try:
            if not resume:  # a bare units/ is a run killed before its units' folders: it starts
                _refuse_outputs(out)
            units = units_of(config)
            ensure_open_files(len(units))
            square = started_square(config, sorted((out / "units").glob("*"))) if resume else None
            multi = shared_scorer(config, units, square=square, **options)  # fills in x, y
            labels = unit_labels(units, multi.units, out if resume else None)
            if resume:
                _check_units(out, labels)
            gen_params = {k: v for k, v in config.generator.items() if k != "name"}
            generator = generators.make(config.generator["name"], **gen_params)
            for i, (unit, label) in enumerate(zip(units, labels)):
                folder = out / "units" / label
                single = unit_config(config, unit)
                if resume:
                    single = as_started(single, config, folder)
                    single = config_mod.as_started_schedule(single, folder)
                exp = Experiment.from_config(
                    single, folder, unit=multi.view(i), generator=generator
                )
                experiments.append(exp)
                if resume and (folder / "config.yaml").exists():
                    try:
                        restorations.append(exp.check_restore())
                    except ConfigChangedError as err:
                        raise run_config_changed(err, config, unit, out) from None
            for restore in restorations:  # every unit checked: now each is written
                restore()
            for exp in experiments:  # every unit restored: the budget may have changed
                if exp.config is not None and exp.folder.config.exists():
                    _update_config(exp.config, exp.folder.config)
            if resume and not all(e.done() for e in experiments):
                _drop_table(out)  # a finished run going on: its table is the old finish's
            (out / "units").mkdir(parents=True, exist_ok=True)  # before the config: a folder
            if not resume or not (out / "config.yaml").exists():  # with one is a many-unit run
                config_mod.dump_yaml(config, out / "config.yaml")
        except BaseException as err:
            for e in experiments:
                e.release_folder()
            refused = isinstance(err, XDreamError) and not resume and not locked_before
            if refused:  # before anything was written (a bad unit; not a stop while loading):
                with contextlib.suppress(OSError):  # no lock file left, nor the folder if
                    (out / LOCK_FILE).unlink()  # the lock made it
                    if not existed:
                        remove_empty([out / "units", out])
            lock.release()
            raise
        for e in experiments:
            e.lockstep_units = len(experiments)
        made = cls(experiments, multi, out, labels)
        made._lock = lock  # freed with the object, or when run() has finished
        return made

    @classmethod
    def resume(cls, out: str | Path) -> MultiExperiment:
        """Continue a many-unit run from its folder (each unit from its own checkpoint)."""
        from xdream.errors import MissingFileError
        from xdream.experiment import missing_file_message
        from xdream.records import RunFolder, raise_for_folder

        try:
            return cls.from_config(RunFolder(out).load_config(), out, resume=True)
        except MissingFileError as err:  # a weights file: say where the run found it
            units = sorted(Path(out).glob("units/*/checkpoint.pkl"))
            message = missing_file_message(err, units[0]) if units else str(err)
            raise MissingFileError(message) from None
        except BaseException as err:  # a unit's error names its own folder; resume takes this
            raise_for_folder(err, Path(out))
            raise

    def step(self) -> None:
        """One generation of every unfinished experiment, over one shared scoring pass; each
        experiment's records are written in the background while the next pass runs (all on
        disk after :meth:`Experiment.flush`, which :meth:`run` calls however it ends)."""
        active = [e for e in self.experiments if not e.done()]
        proposals = [e.propose() for e in active]
        images: list[torch.Tensor] = []
        rows: list[list[int]] = []
        ref_rows: dict[str, int] = {}
        count = 0
        for p in proposals:
            own = list(range(count, count + len(p.ids)))
            images.append(p.images)
            count += len(p.ids)
            for ref_id, ref in zip(p.ref_ids, p.refs):
                if ref_id not in ref_rows:  # a crop shown to several experiments is scored once
                    ref_rows[ref_id] = count
                    images.append(ref[None])
                    count += 1
                own.append(ref_rows[ref_id])
            rows.append(own)
        with tf32_mode(self.experiments[0].tf32):  # one config: every unit asks the same
            batch = torch.cat(images)
            acts = self.multi.activations(batch)
            del batch, images  # the joined copy goes before the units' records are written
        for e, p, own in zip(active, proposals, rows):
            view = _unit_view(e.scorer)
            view.supply(acts[own, view.index])
            e.complete(p, *e._score(p.all_images, p.all_ids), later=True)

    def done(self) -> bool:
        return all(e.done() for e in self.experiments)

    @property
    def generation(self) -> int:
        """Generations done (the units step in lockstep; after a resume, counted from the
        run's start)."""
        return max(e.generation for e in self.experiments)

    def run(self, progress: Callable[[int, int], None] | None = None) -> list[Summary]:
        """Step until every budget is spent; writes ``units.csv``; returns the summaries.

        ``progress(generation, units)`` is called after each generation with
        :attr:`generation` and the number of units."""
        from xdream.records import RunFolder, stop_run

        summaries: list[Summary] = []
        if self._lock is None or not self._lock.held:  # a run that stopped, continued; refused
            self._lock = RunFolder(self.out).lock()  # where another process holds it
        try:
            for e in self.experiments:  # after a stop, each from its last generation on disk
                e._take_up()
            while not self.done():
                self.step()
                if progress is not None:
                    progress(self.generation, len(self.experiments))
            for e in self.experiments:  # every record on disk, record.h5 up to date
                e.flush()
            for e in self.experiments:  # spent budgets: just finalise
                summaries.append(e.run())
            rows = [
                summary_row(u, s, os.path.relpath(e.folder.path, self.out), label)
                for u, s, e, label in zip(
                    self.multi.units, summaries, self.experiments, self.labels
                )
            ]
            write_table(self.out / "units.csv", rows, SUMMARY_COLUMNS)
        except FolderInUseError:  # a unit's folder: another process has it, nothing is ours
            self.release_folders()
            raise
        except BaseException as err:  # an error or Ctrl-C: write what is pending
            pending = self.experiments[len(summaries) :]  # finished units' summaries stand
            for e in pending:
                e._stopped = e._started
            try:
                stop_run(pending, err, self.out)
            finally:
                for e in pending:
                    e._tell_scorer_stopped(err)
                self.release_folders()
            raise
        self.release_folders()
        return summaries

    def release_folders(self) -> None:
        """Let another process take this run's folder and its units' (``xdream resume``)."""
        for e in self.experiments:
            e.release_folder()
        if self._lock is not None:
            self._lock.release()


FILES_BESIDE_UNITS = 64
"""Open files a many-unit run may need besides one per unit and those the process already
has open: ``record.h5`` and journal files being written, a rig's, the network's."""


def _open_files() -> int:
    """How many files this process has open (32 where the system does not say)."""
    for listing in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(listing))
        except OSError:
            continue
    return 32


def ensure_open_files(n_units: int) -> None:
    """Make room for a many-unit run's open files: each unit holds its folder's lock file
    (:meth:`~xdream.records.RunFolder.lock`) for the whole run. The soft limit on open files is
    raised as far as the hard limit allows; a run that still does not fit is refused before it
    starts, saying how to raise the limit (a stock Linux allows 1024, macOS 256)."""
    try:
        import resource
    except ImportError:  # Windows: no such limit on locks, which are not taken there
        return
    needed = n_units + _open_files() + FILES_BESIDE_UNITS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    allowed = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (allowed, hard))
    except (ValueError, OSError):  # macOS refuses more than its own OPEN_MAX
        allowed = soft
    if allowed < needed:
        raise XDreamError(
            f"a run of {n_units} units keeps one file open per unit and needs about "
            f"{needed} open files, but this system allows {allowed} (`ulimit -n`; the hard "
            f"limit is {hard}). Raise the limit in the shell that starts xdream "
            f"(`ulimit -n {needed}`; above the hard limit an administrator has to raise it), "
            f"or split the units into runs of at most {max(allowed - needed + n_units, 1)}"
        )


def _refuse_outputs(out: Path) -> None:
    """Refuse a new many-unit run into a folder holding what a run writes, but a ``units/``
    whose unit folders hold no experiment yet (killed before the first generation)."""
    from xdream.records import RunFolder

    folder = RunFolder(out)
    units = out / "units"
    if units.is_dir() and not any((p / "config.yaml").exists() for p in units.iterdir()):
        if [f for f in folder.outputs_present() if f != "units/"]:
            folder.refuse_outputs()
        return
    folder.refuse_outputs()


def unit_labels(
    given: Sequence[Unit], read: Sequence[Unit], resumed: Path | None = None
) -> list[str]:
    """The folder names of units as the config gives them (``given``) and as they are read
    (``read``: x and y filled in, :class:`MultiUnitScorer`): ``<layer>_c<channel>`` for a unit
    without x and y, ``<layer>_c<channel>_x<x>_y<y>`` with the position read when x or y is
    given. Raises :class:`ConfigError` when two entries name the same unit once the centre is
    filled in (``channel = 3`` and ``channel = 3, x = 14, y = 14`` on a 28 x 28 layer).

    ``resumed``: the folder of a run that is resumed, whose units keep the folders an earlier
    xdream made (``..._x4_yNone`` for a unit given x only) and whose repeated units go on.
    """
    labels = [
        r.label if (g.x is not None or g.y is not None) else g.label for g, r in zip(given, read)
    ]
    if resumed is not None:
        labels = [
            g.earlier_label
            if not (resumed / "units" / label).exists()
            and (resumed / "units" / g.earlier_label).exists()
            else label
            for g, label in zip(given, labels)
        ]
    seen: dict[Unit, int] = {}
    for i, unit in enumerate(read):
        j = seen.setdefault(unit, i)
        if j == i:
            continue
        if resumed is not None and all((resumed / "units" / labels[k]).exists() for k in (i, j)):
            continue  # an earlier xdream ran both: they go on as they started
        a, b = (
            ", ".join(f"{k} {v}" for k, v in dataclasses.asdict(given[k]).items() if v is not None)
            for k in (j, i)
        )
        raise ConfigError(
            f"[[targets]] names unit {unit.layer!r} channel {unit.channel} at x {unit.x}, "
            f"y {unit.y} twice ({a}; and {b}: x or y left out is the centre of the feature "
            "map); each unit may appear once"
        )
    return labels


def _check_units(out: Path, labels: Sequence[str]) -> None:
    """Refuse to resume a many-unit run whose units' folders do not match the units its config
    names: a unit dropped from ``[[targets]]`` would stop unfinished, one added would start
    late, and a unit whose ``config.yaml`` or folder is gone cannot continue. Once any unit
    has a checkpoint, every unit's folder and ``config.yaml`` were made (before the first
    generation), so a named unit without them lost them, or was added since."""
    folders = out / "units"
    present = {p.name for p in folders.iterdir() if p.is_dir()} if folders.is_dir() else set()
    ran = {name for name in present if (folders / name / "config.yaml").exists()}
    started = any((folders / name / "checkpoint.pkl").exists() for name in present)
    missing = [name for name in labels if name not in ran] if started else []
    lost_config = [name for name in missing if name in present]
    if lost_config:
        raise XDreamError(_lost_unit_config(out, lost_config))
    gone = [name for name in missing if name not in present]
    removed = sorted(ran - set(labels))
    if gone and not removed:  # no [[targets]] edit shows: lost folders, or units added
        _refuse_lost_unit_folders(out, gone, _lockstep_units(folders, ran), len(present))
    if removed or gone:
        changes = [f"no longer names {', '.join(removed)}"] if removed else []
        changes += [f"adds {', '.join(gone)}"] if gone else []
        raise XDreamError(
            f"cannot resume {str(out)!r}: its config.yaml's [[targets]] {' and '.join(changes)} "
            "since the run started, and resuming would leave units unfinished or start new ones "
            "late. Put back the units the run started with, or run the new units as a new run "
            "with another --out."
        )


def _refuse_lost_unit_folders(
    out: Path, gone: Sequence[str], lockstep: int | None, present: int
) -> None:
    """Refuse units named in ``[[targets]]`` that have no folder under ``units/`` (``present``
    folders are there), where the run's units' summaries say it stepped more units together
    (``lockstep``) than have folders, or do not say: their folders were lost, or may have been.
    Where every unit the run stepped has its folder, the named ones are new (the caller says
    so)."""
    if lockstep is not None and lockstep - present >= len(gone):
        raise XDreamError(_lost_unit_folders(out, gone, lockstep, present))
    if lockstep is None or lockstep > present:
        raise XDreamError(
            f"cannot resume {str(out)!r}: its config.yaml's [[targets]] names "
            f"{', '.join(gone)}, which has no folder under units/: either that folder was "
            "moved or deleted (put it back, from a backup, then resume), or [[targets]] adds "
            "the unit since the run started (put back the units the run started with, or run "
            "the new units as a new run with another --out)."
        )


def _lockstep_units(folders: Path, ran: Iterable[str]) -> int | None:
    """How many units the run stepped together, as its units' summaries say
    (``lockstep_units``), or None where none says (no summary written yet, an earlier
    xdream's)."""
    from xdream.errors import SummaryUnreadableError
    from xdream.records import read_summary

    said = []
    for name in ran:
        try:
            count = read_summary(folders / name).get("lockstep_units")
        except SummaryUnreadableError:
            continue
        if isinstance(count, int):
            said.append(count)
    return max(said, default=None)


def _lost_unit_config(out: Path, names: Sequence[str]) -> str:
    """The refusal for units whose folder is there without its ``config.yaml``."""
    from xdream.records import config_yaml_lost

    folder = out / "units" / names[0]
    if config_yaml_lost(folder):  # its record.h5 keeps the config it ran with
        how = (
            f"its record.h5 keeps the config it ran with: write it back with "
            f"xdream.config.dump_yaml(xdream.records.read({str(folder)!r}).config, "
            f"{str(folder / 'config.yaml')!r})"
            + (", and each other unit's from its own record.h5" if len(names) > 1 else "")
            + "; or copy a backup's"
        )
    else:
        how = "copy it from a backup"
    which = ", ".join(f"units/{name}/config.yaml" for name in names)
    if len(names) == 1:
        lost = f"{which} is missing, while the unit's folder is there ([[targets]] names a unit"
    else:
        lost = f"{which} are missing, while their folders are there ([[targets]] names units"
    return (
        f"cannot resume {str(out)!r}: {lost} the run ran), and a unit cannot go on without its "
        f"config.yaml. Put it back ({how}), then `xdream resume {out}`."
    )


def _lost_unit_folders(out: Path, names: Sequence[str], lockstep: int, present: int) -> str:
    """The refusal for units whose folder is gone from ``units/``."""
    which = ", ".join(f"units/{name}" for name in names)
    return (
        f"cannot resume {str(out)!r}: the folder {which} is gone (the run stepped {lockstep} "
        f"units together, and units/ holds {present} folders), and the unit cannot go on "
        f"without its records and checkpoint. Put the folder back (where it was moved to, or "
        f"from a backup), then `xdream resume {out}`; or start a new run with another --out."
    )


def _unit_view(scorer: Scorer) -> UnitView:
    """The :class:`UnitView` inside a (possibly noise-wrapped) scorer."""
    while not isinstance(scorer, UnitView):
        scorer = getattr(scorer, "base", None)  # type: ignore[assignment]
        if scorer is None:
            raise XDreamError("experiment's scorer is not a unit of the shared network")
    return scorer


def is_multi_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a many-unit run: ``units/`` beside ``config.yaml``, or a
    ``config.yaml`` with ``[[targets]]`` (a run killed before its units' folders were made)."""
    from xdream import config as config_mod

    saved = Path(path) / "config.yaml"
    if not saved.exists():
        return False
    if (Path(path) / "units").is_dir():
        return True
    try:
        return bool(config_mod.load(saved, recorded=True).targets)
    except XDreamError:  # unreadable: resuming it as one experiment says what is wrong
        return False


def many_unit_run_of(path: str | Path) -> Path | None:
    """The many-unit run whose unit folder ``path`` is (``RUN/units/UNIT``, however the path
    is written), or None: a folder under ``units/`` counts only when the folder above holds a
    config with ``[[targets]]``, so a single-unit run kept in a folder named ``units`` is not
    mistaken for one."""
    from xdream import config as config_mod

    folder = Path(path).resolve()
    if folder.parent.name != "units":
        return None
    run = folder.parent.parent
    try:
        return run if config_mod.load(run / "config.yaml", recorded=True).targets else None
    except (XDreamError, OSError):  # none, or unreadable: not a many-unit run we can name
        return None


def timed_generation(multi: MultiExperiment) -> float:
    """Seconds for one lockstep generation (used by the throughput benchmark)."""
    t = time.perf_counter()
    multi.step()
    return time.perf_counter() - t


def standing(experiments: Sequence[Experiment]) -> tuple[float, int | None]:
    """The median over units of their best scores so far (NaN before any response), and how
    many units have a best score above their best reference image's (None while no unit has
    a reference score: a run without references, or none answered yet)."""
    best = [e.optimizer.best.score for e in experiments]
    finite = [b for b in best if np.isfinite(b)]
    median = float(np.median(finite)) if finite else float("nan")
    if not any(np.isfinite(e.best_reference) for e in experiments):
        return median, None
    above = sum(
        b > e.best_reference
        for b, e in zip(best, experiments)
        if np.isfinite(b) and np.isfinite(e.best_reference)
    )
    return median, above


def _run_with_progress(multi: MultiExperiment, console: Any) -> list[Summary]:
    """:meth:`MultiExperiment.run` with a progress bar on a terminal (a line per generation
    otherwise): the generation, the units' median best score and how many units beat their
    best reference image."""
    from xdream.progress import generation_bar

    n = len(multi.experiments)
    total = multi.experiments[0].generations_budget
    width = len(str(n))
    fields = (
        "median best {task.fields[best]:>9}  units above refs "
        f"{{task.fields[above]:>{width}}}/{n}"
    )
    with generation_bar(console, total, fields) as bar:
        task = bar.add_task("run", total=total, completed=multi.generation, best="-", above="-")

        no_refs = "no reference shown" if not multi.experiments[0].n_references else None

        def update(generation: int, units: int) -> None:
            median, above = standing(multi.experiments)
            shown = "-" if above is None else str(above)
            bar.update(task, completed=generation, best=f"{median:.4g}", above=shown)
            if not console.is_terminal:  # numbered from 0, as the records and one unit's line
                done = f" ({generation}/{total} done)" if total else ""
                refs = (
                    f"{above} above their best reference"
                    if above is not None
                    else no_refs or "no reference scored yet"
                )
                console.print(
                    f"generation {generation - 1}{done}: {units} unit{'' if units == 1 else 's'}, "
                    f"median best {median:.4g}, {refs}",
                    highlight=False,
                )

        return multi.run(update)


NOTES_SHOWN = 5
"""Units whose optimiser's note ``xdream run`` prints at the end of a many-unit run (the rest
are counted; every unit's is in its ``summary.json``)."""


def run_many(config: Any, out: Path, console: Any) -> int:
    """``xdream run`` for a ``[[targets]]`` config (``config=None``: ``xdream resume``)."""
    if config is None:
        multi = MultiExperiment.resume(out)
        console.print(
            f"resuming {len(multi.experiments)} units in {out} at generation {multi.generation}",
            highlight=False,
        )
        from xdream.cli import print_config_changes

        changes = list(dict.fromkeys(c for e in multi.experiments for c in e.config_changes))
        derived = [c for c in changes if c.startswith("experiment.noise_seed: ")]
        if derived:  # each unit's own, drawn from the run's noise_seed or seed: said once
            changes = [c for c in changes if c not in derived]
            changes.append("experiment.noise_seed of each unit (drawn from noise_seed or seed)")
        print_config_changes(changes, console)
    else:
        if (out / "config.yaml").exists():  # units/ alone: killed before anything was written
            from xdream.records import RunFolder

            RunFolder(out).lock().release()  # a run still going: FolderInUseError names it
            kind = "a many-unit run" if is_multi_folder(out) else "an experiment"
            raise XDreamError(
                f"{str(out)!r} already holds {kind}. Continue it with "
                f"`xdream resume {out}` or choose another output folder."
            )
        multi = MultiExperiment.from_config(config, out)
        n = len(multi.experiments)
        console.print(f"running {n} unit{'' if n == 1 else 's'} in lockstep", highlight=False)

    t = time.perf_counter()
    summaries = _run_with_progress(multi, console)
    seconds = time.perf_counter() - t
    noted = [  # what each unit's optimiser found out
        (label, note)
        for label, s in zip(multi.labels, summaries)
        if (note := (s.get("optimizer_status") or {}).get("note"))
    ]
    for label, note in noted[:NOTES_SHOWN]:
        console.print(f"{label}: {note}", highlight=False, markup=False)
    if len(noted) > NOTES_SHOWN:
        console.print(
            f"... and {len(noted) - NOTES_SHOWN} more units with a note (optimizer_status in "
            f"{out / 'units'}/<unit>/summary.json)",
            highlight=False,
            markup=False,
        )
    presentations = sum(int(s["presentations"]) for s in summaries)
    # the whole run's time, as the units' summary.json hold it (every session, the same for all
    # units), beside its whole count of presentations; a resumed run adds this session's time
    total = max((float(s["seconds"]) for s in summaries), default=seconds)
    session = f" (this session {seconds:.1f} s)" if config is None else ""
    console.print(
        f"{len(summaries)} unit{'' if len(summaries) == 1 else 's'}, {presentations} "
        f"presentations in {total:.1f} s{session}; "
        f"table: {out / 'units.csv'}, records: {out / 'units'}/<unit>/",
        highlight=False,
    )
    return 0
