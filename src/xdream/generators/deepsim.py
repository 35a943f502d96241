"""DeePSiM generators (Dosovitskiy & Brox 2016): images from AlexNet activations (spec §7).

Eight variants, named by the AlexNet layer whose activations are their code: ``deepsim-norm1``
(96x27x27 -> 240 px), ``-norm2`` (256x13x13 -> 240 px), ``-conv3``, ``-conv4`` (384x13x13 ->
256 px), ``-pool5`` (256x6x6 -> 256 px), ``-fc6``, ``-fc7`` (4096 -> 256 px) and ``-fc8``
(1000 -> 256 px). Every hidden layer is followed by LeakyReLU(0.3).

Weights are read, without caffe, from any of three formats, detected from the file:

* XDream's torch state_dicts (keys ``fc7.weight``, ``tconv5_0.weight``, ...);
* the Ponce lab's upconvGAN state_dicts (caffe layer names ``defc7.weight``, ``deconv5.bias``,
  ...; the ``.1.`` that some of those files carry in their keys is dropped);
* the original ``generator.caffemodel`` (optionally with ``generator_no_batch.prototxt``, which
  is then checked against the architecture).

The network's output is a caffe image: BGR, mean-subtracted, on a 0-255 scale. The generator
returns RGB in [0, 1]: add the mean (104, 117, 123) per BGR channel, divide by 255, clip to
[0, 1], flip BGR to RGB.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xdream import caffe, weights
from xdream.errors import XDreamError
from xdream.generators import register
from xdream.generators.base import Generator
from xdream.generators.codespace import (
    bound_array,
    clip_codes,
    code_stats,
    load_code_stats,
    normal_codes,
    stats_codes,
)
from xdream.types import Codes, Images

CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
"""ImageNet mean pixel of caffe's AlexNet/CaffeNet, in BGR order, on the 0-255 scale."""

LEAK = 0.3
"""Negative slope of the LeakyReLU after every hidden layer."""


@dataclasses.dataclass(frozen=True)
class Layer:
    """One parametrised layer: XDream's torch key, the caffe name, kind and geometry.

    ``kind`` is ``"fc"`` (Linear), ``"conv"`` (Conv2d) or ``"tconv"`` (ConvTranspose2d);
    ``xdream_bias`` says whether XDream's state_dicts store a bias (caffe's are zero there);
    ``act`` whether a LeakyReLU follows.
    """

    key: str
    caffe: str
    kind: str
    cin: int
    cout: int
    k: int = 1
    s: int = 1
    p: int = 0
    xdream_bias: bool = True
    act: bool = True

    @property
    def caffe_type(self) -> str:
        return {"fc": "InnerProduct", "conv": "Convolution", "tconv": "Deconvolution"}[self.kind]

    def weight_shape(self) -> tuple[int, ...]:
        if self.kind == "fc":
            return (self.cout, self.cin)
        if self.kind == "conv":
            return (self.cout, self.cin, self.k, self.k)
        return (self.cin, self.cout, self.k, self.k)  # ConvTranspose: (in, out, k, k)

    def module(self) -> nn.Module:
        if self.kind == "fc":
            return nn.Linear(self.cin, self.cout)
        if self.kind == "conv":
            return nn.Conv2d(self.cin, self.cout, self.k, self.s, self.p)
        return nn.ConvTranspose2d(self.cin, self.cout, self.k, self.s, self.p)


def _up(key: str, caffe_name: str, cin: int, cout: int, act: bool = True) -> Layer:
    """A 2x upsampling transposed convolution, k4 s2 p1, bias-free in XDream's files."""
    return Layer(key, caffe_name, "tconv", cin, cout, 4, 2, 1, xdream_bias=False, act=act)


def _t3(key: str, caffe_name: str, cin: int, cout: int) -> Layer:
    """A transposed convolution k3 s1 p1, bias-free in XDream's files."""
    return Layer(key, caffe_name, "tconv", cin, cout, 3, 1, 1, xdream_bias=False)


def _c3(key: str, caffe_name: str, cin: int, cout: int, act: bool = True) -> Layer:
    """A convolution k3 s1 p1, bias-free in XDream's files."""
    return Layer(key, caffe_name, "conv", cin, cout, 3, 1, 1, xdream_bias=False, act=act)


def _upconv_tail(first_in: int) -> tuple[Layer, ...]:
    """The chain shared by pool5, fc6, fc7 and fc8: 4x4 (or 8x8) -> 3x256x256."""
    return (
        _up("tconv5_0", "deconv5", first_in, 256),
        _t3("tconv5_1", "conv5_1", 256, 512),
        _up("tconv4_0", "deconv4", 512, 256),
        _t3("tconv4_1", "conv4_1", 256, 256),
        _up("tconv3_0", "deconv3", 256, 128),
        _t3("tconv3_1", "conv3_1", 128, 128),
        _up("tconv2", "deconv2", 128, 64),
        _up("tconv1", "deconv1", 64, 32),
        _up("tconv0", "deconv0", 32, 3, act=False),
    )


def _fc_layers(n_in: int) -> tuple[Layer, ...]:
    return (
        Layer("fc7", "defc7", "fc", n_in, 4096),
        Layer("fc6", "defc6", "fc", 4096, 4096),
        Layer("fc5", "defc5", "fc", 4096, 4096),
        *_upconv_tail(256),
    )


def _norm_layers(cin: int, cmid: int, stride: int) -> tuple[Layer, ...]:
    return (
        Layer("conv6", "Rconv6", "conv", cin, cmid, 3, stride, 2),
        Layer("conv7", "Rconv7", "conv", cmid, 128, 3, 1, 1),
        Layer("conv8", "Rconv8", "conv", 128, 128, 3, 1, 1),
        _up("tconv4_0", "deconv4", 128, 128),
        _c3("conv4_1", "conv4_1", 128, 128),
        _up("tconv3_0", "deconv3", 128, 64),
        _c3("conv3_1", "conv3_1", 64, 64),
        _up("tconv2_0", "deconv2", 64, 32),
        _c3("conv2_1", "conv2_1", 32, 32),
        _up("tconv1_0", "deconv1", 32, 16, act=False),
        _c3("conv1_1", "conv1_1", 16, 3, act=False),
    )


_CONV34 = (
    Layer("conv6", "Rconv6", "conv", 384, 384, 3, 1, 0),
    Layer("conv7", "Rconv7", "conv", 384, 512, 3, 1, 0),
    Layer("conv8", "Rconv8", "conv", 512, 512, 2, 1, 0),
    _up("tconv5_0", "deconv5", 512, 256),
    _t3("tconv5_1", "conv5_1", 256, 256),
    _up("tconv4_0", "deconv4", 256, 128),
    _t3("tconv4_1", "conv4_1", 128, 128),
    _up("tconv3_0", "deconv3", 128, 128),
    _t3("tconv3_1", "conv3_1", 128, 128),
    _up("tconv2_0", "deconv2", 128, 64),
    _c3("conv2_1", "conv2_1", 64, 32),
    _up("tconv1_0", "deconv1", 32, 16),
    _c3("conv1_1", "conv1_1", 16, 3, act=False),
)

_POOL5 = (
    Layer("conv6", "Rconv6", "conv", 256, 512, 3, 1, 1),
    Layer("conv7", "Rconv7", "conv", 512, 512, 3, 1, 1),
    Layer("conv8", "Rconv8", "conv", 512, 512, 3, 1, 0),
    *_upconv_tail(512),
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """Architecture of one DeePSiM generator."""

    layer: str  # the AlexNet layer it inverts
    code_shape: tuple[int, ...]
    output_size: int
    layers: tuple[Layer, ...]
    tanh: bool = False  # output = 255 * tanh(last layer) (norm1, norm2, conv3, conv4)
    post_relu: bool = True  # codes are post-ReLU activations (all but fc8)

    @property
    def code_dim(self) -> int:
        return math.prod(self.code_shape)


VARIANTS: dict[str, Variant] = {
    "deepsim-norm1": Variant("norm1", (96, 27, 27), 240, _norm_layers(96, 128, 2), tanh=True),
    "deepsim-norm2": Variant("norm2", (256, 13, 13), 240, _norm_layers(256, 256, 1), tanh=True),
    "deepsim-conv3": Variant("conv3", (384, 13, 13), 256, _CONV34, tanh=True),
    "deepsim-conv4": Variant("conv4", (384, 13, 13), 256, _CONV34, tanh=True),
    "deepsim-pool5": Variant("pool5", (256, 6, 6), 256, _POOL5),
    "deepsim-fc6": Variant("fc6", (4096,), 256, _fc_layers(4096)),
    "deepsim-fc7": Variant("fc7", (4096,), 256, _fc_layers(4096)),
    "deepsim-fc8": Variant("fc8", (1000,), 256, _fc_layers(1000), post_relu=False),
}
"""Every DeePSiM variant by generator name (spec §7)."""

FC6_STATS = (-15.0, 15.0)
"""Per-unit mean and sd of fc6 activations of real images before the ReLU (spec §7)."""


def formats(variant: Variant) -> str:
    """The three weight formats, with the variant's own first keys."""
    first, second = variant.layers[:2]
    return (
        f"XDream's torch state_dict (keys {first.key}.weight, {second.key}.weight, ...), a "
        f"state_dict with caffe's layer names (keys {first.caffe}.weight, {second.caffe}.weight, "
        "..., as the Ponce lab's upconvGAN files), or the original caffe generator.caffemodel "
        "(+ generator_no_batch.prototxt)"
    )


class DeePSiMNet(nn.Module):
    """The raw network of one variant: code -> caffe image (BGR, mean-subtracted, 0-255).

    Submodules are named by XDream's torch keys; every layer has a bias (zero where XDream's
    files store none), so all three formats load into the same module.
    """

    def __init__(self, variant: Variant) -> None:
        super().__init__()
        self.variant = variant
        for layer in variant.layers:
            self.add_module(layer.key, layer.module())

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        v = self.variant
        x = codes.reshape(codes.shape[0], *v.code_shape)
        for layer in v.layers:
            x = getattr(self, layer.key)(x)
            if layer.key == "fc5":
                x = x.reshape(x.shape[0], 256, 4, 4)
            if layer.act:
                x = F.leaky_relu(x, LEAK)
        return torch.tanh(x) * 255.0 if v.tanh else x


def caffe_to_rgb(x: torch.Tensor) -> Images:
    """Caffe image (BGR, mean-subtracted, 0-255) -> RGB in [0, 1] (spec §7)."""
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x + mean) / 255.0).clamp(0.0, 1.0).flip(1)


# ----------------------------------------------------------------------------- weight formats
def _expected(name: str) -> str:
    return f"the {name} generator's weights: {formats(VARIANTS[name])}"


def _owners(state: dict[str, torch.Tensor]) -> list[str]:
    """The variants whose every layer has its weight, of its shape, in ``state`` (under
    XDream's or caffe's names)."""
    found = {**{_upconv_key(k): v for k, v in state.items()}, **state}

    def fits(v: Variant, caffe_names: bool) -> bool:
        for layer in v.layers:
            weight = found.get(f"{layer.caffe if caffe_names else layer.key}.weight")
            if weight is None or tuple(weight.shape) != layer.weight_shape():
                return False
        return True

    return [name for name, v in VARIANTS.items() if fits(v, False) or fits(v, True)]


def _caffe_owners(by_name: dict[str, caffe.CaffeLayer]) -> list[str]:
    """The variants whose every layer is in a caffemodel's ``by_name``
    (:func:`caffe.blobs_by_layer`) with its type and its weights' shape (legacy blobs' leading
    1s allowed, as loading does)."""

    def fits(v: Variant) -> bool:
        for layer in v.layers:
            found = by_name.get(layer.caffe)
            if (
                found is None
                or found.type != layer.caffe_type
                or caffe.blob_as(found.blobs[0], layer.weight_shape()) is None
            ):
                return False
        return True

    return [name for name, v in VARIANTS.items() if fits(v)]


def _refuse_other_variant(
    path: Path, owners: list[str], names: list[str], name: str, what: str = "keys"
) -> None:
    """Refuse a weight file whose layers are those of ``owners`` and not of ``name``, naming
    the variant(s) it belongs to (and its first ``names``, its keys or caffe layers)."""
    if owners and name not in owners:
        raise XDreamError(
            f"{str(path)!r} looks like the weights of {' or '.join(owners)} ({what} "
            f"{', '.join(names[:3])}, ...), not of {name}; give it to that generator, or give "
            f"{_expected(name)}"
        )


def _from_xdream(state: dict[str, torch.Tensor], variant: Variant) -> dict[str, torch.Tensor]:
    out = dict(state)
    for layer in variant.layers:
        if not layer.xdream_bias and f"{layer.key}.bias" not in out:
            out[f"{layer.key}.bias"] = torch.zeros(layer.cout)
    return out


def _from_upconv(state: dict[str, torch.Tensor], variant: Variant) -> dict[str, torch.Tensor]:
    keys = {_upconv_key(k): v for k, v in state.items()}
    out = {}
    for layer in variant.layers:
        for part in ("weight", "bias"):
            src = f"{layer.caffe}.{part}"
            if src in keys:
                out[f"{layer.key}.{part}"] = keys.pop(src)
        if f"{layer.key}.bias" not in out:
            out[f"{layer.key}.bias"] = torch.zeros(layer.cout)
    out.update(keys)  # leftovers are reported as unexpected keys
    return out


def _upconv_key(key: str) -> str:
    key = key.removeprefix("G.").removeprefix("module.")
    return key.replace(".1.", ".")


def _is_upconv(state: dict[str, torch.Tensor], variant: Variant) -> bool:
    names = {_upconv_key(k).rsplit(".", 1)[0] for k in state}
    return variant.layers[0].caffe in names or "deconv5" in names or "deconv1" in names


def _from_caffe(
    layers: list[caffe.CaffeLayer], variant: Variant, source: str, name: str
) -> dict[str, torch.Tensor]:
    by_name = caffe.blobs_by_layer(layers)
    out = {}
    for layer in variant.layers:
        found = by_name.get(layer.caffe)
        with_bias = found is not None and len(found.blobs) > 1  # a bias of 0 if none
        arrays = caffe.layer_arrays(
            by_name,
            layer.caffe,
            layer.caffe_type,
            [layer.weight_shape(), (layer.cout,)][: 1 + with_bias],
            source=source,
            owner=name,
            expected=_expected(name),
            another="variant",
            layout=" (in, out, k, k)" if layer.kind == "tconv" else " (out, in, ...)",
        )
        bias = arrays[1] if with_bias else np.zeros(layer.cout, np.float32)
        out[f"{layer.key}.weight"] = torch.from_numpy(arrays[0].copy())
        out[f"{layer.key}.bias"] = torch.from_numpy(bias.copy())
    return out


def check_prototxt(path: str | Path, variant: Variant, name: str) -> None:
    """Check that a generator prototxt describes ``variant`` (layers, geometry, input shape)."""
    net = caffe.read_prototxt(path)
    layers = caffe.prototxt_layers(net)
    where = f"{str(path)!r} (expected {name}'s generator_no_batch.prototxt)"
    shape = caffe.first(net, "input_shape")
    dims = shape.get("dim", []) if isinstance(shape, dict) else net.get("input_dim", [])
    if dims and tuple(dims[1:]) != variant.code_shape:
        raise XDreamError(
            f"{where}: input shape {tuple(dims[1:])} is not the code shape {variant.code_shape}"
        )
    for layer in variant.layers:
        entry = layers.get(layer.caffe)
        if entry is None:
            raise XDreamError(f"{where}: no layer {layer.caffe!r}")
        kind = caffe.first(entry, "type")
        if kind != layer.caffe_type:
            raise XDreamError(f"{where}: layer {layer.caffe!r} is {kind!r}, not {layer.caffe_type}")
        param = caffe.first(entry, "convolution_param") or caffe.first(
            entry, "inner_product_param", {}
        )
        got = (
            caffe.first(param, "num_output"),
            caffe.first(param, "kernel_size", 1 if layer.kind == "fc" else None),
            caffe.first(param, "stride", 1),
            caffe.first(param, "pad", 0),
        )
        want = (layer.cout, layer.k, layer.s, layer.p)
        if got != want:
            raise XDreamError(
                f"{where}: layer {layer.caffe!r} has (num_output, kernel_size, stride, pad) = "
                f"{got}, expected {want}"
            )


def load_state(
    path: str | Path, variant: Variant, name: str, prototxt: str | Path | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """Read a weight file in any of the three formats; returns (state_dict, format name)."""
    path = Path(path)
    if weights.sniff(path) == "torch":
        state = weights.load_state_dict_file(path, _expected(name))
        state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel's
        _refuse_other_variant(path, _owners(state), list(state), name)
        if any(k.startswith(f"{variant.layers[0].key}.") for k in state):
            return _from_xdream(state, variant), "xdream"
        if _is_upconv(state, variant):
            return _from_upconv(state, variant), "upconvgan"
        raise XDreamError(
            f"{str(path)!r} is a torch state_dict, but its keys ({', '.join(list(state)[:4])}, "
            f"...) are neither XDream's nor upconvGAN's; expected {_expected(name)}"
        )
    layers = caffe.read_caffemodel(path)
    by_name = caffe.blobs_by_layer(layers)
    _refuse_other_variant(path, _caffe_owners(by_name), list(by_name), name, "layers")
    if prototxt is None:
        candidate = path.with_name("generator_no_batch.prototxt")
        prototxt = candidate if candidate.is_file() else None
    if prototxt is not None:
        check_prototxt(prototxt, variant, name)
    return _from_caffe(layers, variant, str(path), name), "caffe"


# ----------------------------------------------------------------------------- generators
@dataclasses.dataclass(frozen=True)
class DeePSiMParams:
    """Hyperparameters of the DeePSiM generators.

    Attributes:
        weights: Weight file in any of the three formats (detected automatically). ``None``
            looks the generator's name up in the weight catalogue (`xdream list` shows it).
        prototxt: For a caffemodel: the generator_no_batch.prototxt to check it against.
            ``None`` uses the catalogue's, or one next to the caffemodel, or none.
        init: Initial codes: ``"normal"`` (N(0, 1), XDream's default) or ``"stats"``: per-unit
            N(init_mean, init_std) of the layer's activations, clipped at 0 for post-ReLU
            layers (all but fc8), as in XDream's tests.
        init_mean: Mean for ``init = "stats"``; ``None`` = built-in (fc6: -15) or init_stats.
        init_std: Standard deviation for ``init = "stats"``; ``None`` = built-in (fc6: 15).
        init_stats: HDF5 (``<layer>/mu``, ``<layer>/sig``, XDream's stats_caffenet.h5 layout)
            or .npz (``mu``, ``sig``) file with per-unit statistics for ``init = "stats"``.
        lower: Lower bound on codes, applied before rendering (one number or one per unit);
            ``None`` = unbounded. 0 keeps post-ReLU codes in their natural range. Codes fitted
            by ``xdream encode`` stay within the bounds.
        upper: Upper bound on codes (one number or one per unit); ``None`` = unbounded.
    """

    weights: str | None = None
    prototxt: str | None = None
    init: str = "normal"
    init_mean: float | None = None
    init_std: float | None = None
    init_stats: str | None = None
    lower: float | tuple[float, ...] | None = None
    upper: float | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for key in ("lower", "upper"):
            value = getattr(self, key)
            if isinstance(value, list):
                object.__setattr__(self, key, tuple(value))
        if self.init not in ("normal", "stats"):
            raise ValueError(f"init must be 'normal' or 'stats', got {self.init!r}")
        if self.init_std is not None and not self.init_std >= 0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std!r}")
        for key in ("weights", "prototxt", "init_stats"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{key} must be a file path (string) or None, got {value!r}")


class DeePSiMGenerator(Generator[DeePSiMParams]):
    """Base of the eight DeePSiM generators; subclasses only set ``name``.

    >>> gen = make("deepsim-fc6", weights="fc6.pt")  # doctest: +SKIP
    >>> gen.generate(gen.initial_codes(4, np.random.default_rng(0))).shape  # doctest: +SKIP
    torch.Size([4, 3, 256, 256])
    """

    Params = DeePSiMParams
    # the same network may come in another file or format; the others only start a search
    same_image_params: ClassVar[frozenset[str]] = frozenset(
        {"weights", "prototxt", "init", "init_mean", "init_std", "init_stats"}
    )

    def __init__(self, params: DeePSiMParams, pretrained: bool = True) -> None:
        super().__init__(params)
        self.variant = VARIANTS[self.name]
        self.code_dim = self.variant.code_dim
        self.code_shape = self.variant.code_shape
        self.output_size = (self.variant.output_size, self.variant.output_size)
        self.custom_initial_codes = params.init != "normal"
        self.lower = bound_array(params.lower, self.code_dim, "lower")
        self.upper = bound_array(params.upper, self.code_dim, "upper")
        if self.lower is not None and self.upper is not None and (self.lower > self.upper).any():
            raise XDreamError("code bounds: lower must not exceed upper")
        self.weights_file: str | None = None
        self.weights_format: str | None = None
        if pretrained:
            status = weights.resolve(self.name, params.weights)
            assert status.path is not None
            prototxt = params.prototxt or status.prototxt
            state, fmt = load_state(status.path, self.variant, self.name, prototxt)
            with torch.device("meta"):  # no random initialisation: every tensor is loaded
                self.net = DeePSiMNet(self.variant)
            self.load_weights(state, str(status.path))
            self.weights_file, self.weights_format = str(status.path), fmt
        else:
            self.net = DeePSiMNet(self.variant)
        self.net.eval().requires_grad_(False)  # fixed weights; gradients still reach codes
        self._stats: tuple[Any, Any] | None = None
        if self.custom_initial_codes:
            self._stats = self._init_stats()  # fail early on a bad statistics setting

    def load_weights(self, state: dict[str, torch.Tensor], source: str = "state_dict") -> None:
        """Load a state_dict in our layout (XDream's keys, every bias present)."""
        expected = self.net.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        if missing or unexpected:
            raise XDreamError(
                f"{source!r} does not fit {self.name}: missing {missing[:4]}, unexpected "
                f"{unexpected[:4]}; expected {_expected(self.name)}"
            )
        for key, value in state.items():
            if tuple(value.shape) != tuple(expected[key].shape):
                raise XDreamError(
                    f"{source!r}: {key} has shape {tuple(value.shape)}, {self.name} needs "
                    f"{tuple(expected[key].shape)}; is this the file of another variant?"
                )
        self.net.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)

    def _init_stats(self) -> tuple[Any, Any]:
        p, v = self.params, self.variant
        mu: Any = p.init_mean
        sd: Any = p.init_std
        if p.init_stats is not None:
            file_mu, file_sd = load_code_stats(p.init_stats, v.layer, self.code_dim)
            mu = file_mu if mu is None else mu
            sd = file_sd if sd is None else sd
        if v.layer == "fc6":
            mu = FC6_STATS[0] if mu is None else mu
            sd = FC6_STATS[1] if sd is None else sd
        if mu is None or sd is None:
            raise XDreamError(
                f"init = 'stats' for {self.name} needs init_mean and init_std, or an init_stats "
                "file (only deepsim-fc6 has built-in statistics)"
            )
        try:  # refused here, not at the first initial_codes
            code_stats(mu, sd, self.code_dim)
        except XDreamError:
            raise XDreamError(
                f"init = 'stats' for {self.name}: the code statistics (init_mean and init_std, "
                "or the init_stats file's) must be finite numbers, one or one per code unit, "
                "with the std >= 0"
            ) from None
        return mu, sd

    def code_bounds(self) -> tuple[Codes | None, Codes | None]:
        """``lower`` and ``upper`` as ``(code_dim,)`` arrays (``None`` where not set)."""
        return self.lower, self.upper

    def initial_codes(self, n: int, rng: np.random.Generator) -> Codes:
        """N(0, 1) codes, or per-unit N(mean, sd) clipped at 0 (``init = "stats"``); bounded."""
        if self._stats is None:
            codes = normal_codes(n, self.code_dim, rng)
        else:
            mu, sd = self._stats
            codes = stats_codes(n, mu, sd, rng, self.code_dim, relu=self.variant.post_relu)
        return clip_codes(codes, self.lower, self.upper)

    def forward(self, codes: torch.Tensor) -> Images:
        """Codes ``(n, code_dim)`` -> RGB images ``(n, 3, S, S)`` in [0, 1], in the network's
        dtype."""
        if self.lower is not None or self.upper is not None:
            lo = None if self.lower is None else torch.as_tensor(self.lower, device=codes.device)
            hi = None if self.upper is None else torch.as_tensor(self.upper, device=codes.device)
            codes = torch.clamp(codes, lo, hi)
        dtype = next(self.net.parameters()).dtype  # float32, or after .double() / .half()
        return caffe_to_rgb(self.net(codes.to(dtype)))


def _source(name: str) -> weights.WeightInfo:
    layer = name.split("-")[1]
    return weights.WeightInfo(
        files=f"generator.caffemodel (or a converted .pt) of DeePSiM {layer}",
        formats=formats(VARIANTS[name]),
        source=(
            "Dosovitskiy & Brox's release of 'Generating Images with Perceptual Similarity "
            "Metrics based on Deep Networks' (lmb.informatik.uni-freiburg.de, "
            f"{layer}/generator.caffemodel), XDream's converted files, or the Ponce lab's "
            f"upconvGAN_{layer}.pt"
        ),
    )


def _variant_doc(name: str) -> str:
    v = VARIANTS[name]
    shape = "x".join(map(str, v.code_shape))
    return (
        f"DeePSiM {v.layer} generator (Dosovitskiy & Brox 2016): code = AlexNet {v.layer} "
        f"({shape}), {v.output_size} px images; needs its weight file."
    )


@register
class DeePSiMNorm1(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-norm1")
    name: ClassVar[str] = "deepsim-norm1"


@register
class DeePSiMNorm2(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-norm2")
    name: ClassVar[str] = "deepsim-norm2"


@register
class DeePSiMConv3(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-conv3")
    name: ClassVar[str] = "deepsim-conv3"


@register
class DeePSiMConv4(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-conv4")
    name: ClassVar[str] = "deepsim-conv4"


@register
class DeePSiMPool5(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-pool5")
    name: ClassVar[str] = "deepsim-pool5"


@register
class DeePSiMFc6(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-fc6")
    name: ClassVar[str] = "deepsim-fc6"


@register
class DeePSiMFc7(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-fc7")
    name: ClassVar[str] = "deepsim-fc7"


@register
class DeePSiMFc8(DeePSiMGenerator):
    __doc__ = _variant_doc("deepsim-fc8")
    name: ClassVar[str] = "deepsim-fc8"


for _name in VARIANTS:
    weights.describe(_name, _source(_name))


def variant_names() -> Sequence[str]:
    """The eight generator names, from norm1 to fc8."""
    return tuple(VARIANTS)
