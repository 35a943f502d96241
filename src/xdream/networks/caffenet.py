"""CaffeNet (``bvlc_reference_caffenet``), loaded from its caffemodel without caffe (spec §8).

CaffeNet is AlexNet as trained in caffe's model zoo, with one difference in order: it pools and
then normalises (``pool1`` before ``norm1``), where AlexNet normalises and then pools. Layers,
named as in caffe's ``deploy.prototxt``::

    conv1 (96, k11, s4) relu1 pool1 (max 3, s2) norm1 (LRN 5, alpha 1e-4, beta 0.75)
    conv2 (256, k5, p2, group 2) relu2 pool2 norm2
    conv3 (384, k3, p1) relu3 conv4 (384, k3, p1, group 2) relu4
    conv5 (256, k3, p1, group 2) relu5 pool5
    fc6 (4096) relu6 fc7 (4096) relu7 fc8 (1000)

Dropout is the identity at test time and is left out. Caffe's pooling rounds its output size up
(``ceil_mode``); its LRN divides by ``(1 + alpha / 5 * sum of squares) ** beta`` over a window of
5 channels, which is :class:`torch.nn.LocalResponseNorm`. Input: BGR, 0-255, minus the mean
pixel (104, 117, 123), 227 px.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from xdream import caffe, weights
from xdream.errors import XDreamError
from xdream.networks.base import Network, Preprocess

NAME = "caffenet"

PREPROCESS = Preprocess(
    mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0), input_size=227, bgr=True, scale=255.0
)
"""CaffeNet's input: BGR on the 0-255 scale minus caffe's mean pixel, 227 px."""

FORMATS = (
    "bvlc_reference_caffenet.caffemodel (caffe's binary protobuf; deploy.prototxt optional), "
    "or a torch state_dict with our layer names (conv1.weight, ..., fc8.bias)"
)

# name: (kind, in, out, kernel, stride, pad, groups); fc layers have kernel 0
LAYERS: dict[str, tuple[str, int, int, int, int, int, int]] = {
    "conv1": ("conv", 3, 96, 11, 4, 0, 1),
    "conv2": ("conv", 96, 256, 5, 1, 2, 2),
    "conv3": ("conv", 256, 384, 3, 1, 1, 1),
    "conv4": ("conv", 384, 384, 3, 1, 1, 2),
    "conv5": ("conv", 384, 256, 3, 1, 1, 2),
    "fc6": ("fc", 256 * 6 * 6, 4096, 0, 1, 0, 1),
    "fc7": ("fc", 4096, 4096, 0, 1, 0, 1),
    "fc8": ("fc", 4096, 1000, 0, 1, 0, 1),
}
"""The parametrised layers of CaffeNet (caffe names)."""


def _conv(name: str) -> nn.Module:
    kind, cin, cout, k, s, p, g = LAYERS[name]
    if kind == "fc":
        return nn.Linear(cin, cout)
    return nn.Conv2d(cin, cout, k, s, p, groups=g)


class CaffeNet(nn.Module):
    """CaffeNet for inference, with caffe's layer names (see the module docstring).

    >>> net = CaffeNet().eval()
    >>> net(torch.zeros(1, 3, 227, 227)).shape
    torch.Size([1, 1000])
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _conv("conv1")
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.norm1 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = _conv("conv2")
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.norm2 = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv3 = _conv("conv3")
        self.relu3 = nn.ReLU()
        self.conv4 = _conv("conv4")
        self.relu4 = nn.ReLU()
        self.conv5 = _conv("conv5")
        self.relu5 = nn.ReLU()
        self.pool5 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fc6 = _conv("fc6")
        self.relu6 = nn.ReLU()
        self.fc7 = _conv("fc7")
        self.relu7 = nn.ReLU()
        self.fc8 = _conv("fc8")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(self.pool1(self.relu1(self.conv1(x))))
        x = self.norm2(self.pool2(self.relu2(self.conv2(x))))
        x = self.relu3(self.conv3(x))
        x = self.relu4(self.conv4(x))
        x = self.pool5(self.relu5(self.conv5(x)))
        x = self.relu6(self.fc6(torch.flatten(x, 1)))
        x = self.relu7(self.fc7(x))
        return self.fc8(x)


def state_from_caffemodel(path: str | Path) -> dict[str, torch.Tensor]:
    """CaffeNet's weights from a caffemodel (new or legacy V1 format; legacy 4-d blobs)."""
    by_name = caffe.blobs_by_layer(caffe.read_caffemodel(path))
    module = CaffeNet()
    expected = module.state_dict()
    out = {}
    for name in LAYERS:
        parts = ("weight", "bias")
        arrays = caffe.layer_arrays(
            by_name,
            name,
            "InnerProduct" if LAYERS[name][0] == "fc" else "Convolution",
            [tuple(expected[f"{name}.{part}"].shape) for part in parts],
            source=str(path),
            owner="CaffeNet",
            expected=FORMATS,
            another="network",
            layout=" (out, in, ...)",
        )
        for part, array in zip(parts, arrays):
            out[f"{name}.{part}"] = torch.from_numpy(array.copy())
    return out


def check_deploy_prototxt(path: str | Path) -> None:
    """Check a deploy.prototxt against CaffeNet's layers (order of pool/norm included)."""
    layers = caffe.prototxt_layers(caffe.read_prototxt(path))
    where = f"{str(path)!r} (expected CaffeNet's deploy.prototxt)"
    for name, (kind, _cin, cout, k, s, p, g) in LAYERS.items():
        entry = layers.get(name)
        if entry is None:
            raise XDreamError(f"{where}: no layer {name!r}")
        param = caffe.first(entry, "convolution_param") or caffe.first(
            entry, "inner_product_param", {}
        )
        got: tuple[Any, ...] = (caffe.first(param, "num_output"), caffe.first(param, "group", 1))
        if kind == "conv":
            got += (
                caffe.first(param, "kernel_size"),
                caffe.first(param, "stride", 1),
                caffe.first(param, "pad", 0),
            )
        want = (cout, g) + ((k, s, p) if kind == "conv" else ())
        if got != want:
            raise XDreamError(f"{where}: layer {name!r} has {got}, CaffeNet has {want}")
    order = [n for n in layers if n in ("pool1", "norm1", "pool2", "norm2")]
    if order and order != ["pool1", "norm1", "pool2", "norm2"]:
        raise XDreamError(
            f"{where}: layers in the order {order}; CaffeNet pools before it normalises "
            "(AlexNet's order is not supported by this network)"
        )


def load(module: CaffeNet, path: str | Path, prototxt: str | Path | None = None) -> None:
    """Load CaffeNet weights from a caffemodel or a torch state_dict with our names."""
    path = Path(path)
    if weights.sniff(path) == "torch":
        state = weights.load_state_dict_file(path, f"CaffeNet weights: {FORMATS}")
    else:
        if prototxt is None:
            candidate = path.with_name("deploy.prototxt")
            prototxt = candidate if candidate.is_file() else None
        if prototxt is not None:
            check_deploy_prototxt(prototxt)
        state = state_from_caffemodel(path)
    weights.match_state_dict(module.state_dict(), state, path, f"CaffeNet weights: {FORMATS}")
    module.load_state_dict(state, assign=True)


def caffenet(
    weights: str | Path | None = None, prototxt: str | Path | None = None, pretrained: bool = True
) -> Network:
    """CaffeNet in evaluation mode; ``weights`` defaults to the catalogue entry ``caffenet``."""
    from xdream import weights as catalogue

    path: Path | None = None
    if pretrained or weights is not None:
        status = catalogue.resolve(NAME, weights)
        assert status.path is not None
        path = status.path
        with torch.device("meta"):  # skip the random initialisation: every tensor is loaded
            module = CaffeNet()
        load(module, path, prototxt or status.prototxt)
    else:
        module = CaffeNet()
    return Network(module.eval(), PREPROCESS, NAME, str(path) if path is not None else None)


weights.describe(
    NAME,
    weights.WeightInfo(
        files="bvlc_reference_caffenet.caffemodel (+ deploy.prototxt)",
        formats=FORMATS,
        source=(
            "the Caffe Model Zoo (BVLC reference CaffeNet: "
            "dl.caffe.berkeleyvision.org/bvlc_reference_caffenet.caffemodel; deploy.prototxt "
            "in caffe's models/bvlc_reference_caffenet)"
        ),
    ),
)
