"""AlexNet, VGG and ResNet with torchvision's layer names, for torchvision's weight files.

Our own definitions (torchvision is not needed), module for module the same as torchvision's, so
their ``state_dict`` keys match torchvision's checkpoints (``features.0.weight``,
``layer4.2.bn3.running_var``, ...) and the layer names match what users know from torchvision.
One deliberate difference: every ReLU is out of place, so a hook on a layer before a ReLU reads
the pre-ReLU value (torchvision's ``ReLU(inplace=True)`` silently overwrites it, spec §8).
Input: RGB, ImageNet mean and std, 224 px.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xdream import weights
from xdream.networks.base import Network, Preprocess

PREPROCESS = Preprocess(
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=224, bgr=False
)
"""torchvision's ImageNet input: RGB in [0, 1], ``(x - mean) / std``, 224 px."""


class AlexNet(nn.Module):
    """torchvision's AlexNet (the "one weird trick" variant: 64-192-384-256-256 channels)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    # output channels of each 3x3 convolution, "M" for a 2x2 max pool
    "vgg16": (64, 64, "M", 128, 128, "M", *(256,) * 3, "M", *(512,) * 3, "M", *(512,) * 3, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", *(256,) * 4, "M", *(512,) * 4, "M", *(512,) * 4, "M"),
}


class VGG(nn.Module):
    """torchvision's VGG without batch norm (``features``, ``avgpool``, ``classifier``)."""

    def __init__(self, config: tuple[int | str, ...], num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(item, int)
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """ResNet-18/34 block: two 3x3 convolutions plus the (projected) input."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _downsample(cin, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet-50+ block (torchvision's v1.5: the stride sits on the 3x3 convolution)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU()
        self.downsample = _downsample(cin, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """torchvision's ResNet: ``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], counts: tuple[int, ...], num_classes: int = 1000
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (count, width) in enumerate(zip(counts, (64, 128, 256, 512))):
            blocks = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(cin, width, stride))
                cin = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], str, str]] = {
    "alexnet": (AlexNet, "alexnet-owt-7be5be79.pth", "AlexNet (torchvision layout, 224 px)"),
    "vgg16": (lambda: VGG(VGG_CONFIGS["vgg16"]), "vgg16-397923af.pth", "VGG-16 (torchvision)"),
    "vgg19": (lambda: VGG(VGG_CONFIGS["vgg19"]), "vgg19-dcbb9e9d.pth", "VGG-19 (torchvision)"),
    "resnet18": (
        lambda: ResNet(BasicBlock, (2, 2, 2, 2)),
        "resnet18-f37072fd.pth",
        "ResNet-18 (torchvision)",
    ),
    "resnet50": (
        lambda: ResNet(Bottleneck, (3, 4, 6, 3)),
        "resnet50-0676ba61.pth",
        "ResNet-50 (torchvision, v1.5)",
    ),
}
"""Network name -> (constructor, torchvision's file name for its ImageNet weights, summary)."""


def load(module: nn.Module, path: str | Path, name: str) -> None:
    """Load a torchvision-format state_dict file into ``module`` (strict, with a clear error).

    BatchNorm's ``num_batches_tracked`` counters, which files saved before PyTorch 0.4.1 (such
    as torchvision's first ResNet files) lack, are filled in with 0, as torch itself does.
    """
    what = f"a torchvision {name} state_dict ({ARCHITECTURES[name][1]})"
    state = weights.load_state_dict_file(path, what)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = module.state_dict()
    # files saved before PyTorch 0.4.1 lack BatchNorm's counter (unused in evaluation): filled
    # in as BatchNorm itself does, so that none stays on the "meta" device
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.tensor(0)
    weights.match_state_dict(expected, state, path, what)
    module.load_state_dict(state, assign=True)


def factory(name: str) -> Callable[..., Network]:
    """``make(weights=None, pretrained=True) -> Network`` for the architecture ``name``."""

    def make(weights: str | Path | None = None, pretrained: bool = True) -> Network:
        from xdream import weights as catalogue

        path: Path | None = None
        if pretrained or weights is not None:
            status = catalogue.resolve(name, weights)
            assert status.path is not None
            path = status.path
            with torch.device("meta"):  # skip the random initialisation: every tensor is loaded
                module = ARCHITECTURES[name][0]()
            load(module, path, name)
        else:
            module = ARCHITECTURES[name][0]()
        return Network(module.eval(), PREPROCESS, name, str(path) if path is not None else None)

    make.__doc__ = f"{ARCHITECTURES[name][2]} in evaluation mode, from its state_dict file."
    return make


for _name, (_ctor, _file, _summary) in ARCHITECTURES.items():
    weights.describe(
        _name,
        weights.WeightInfo(
            files=_file,
            formats="a torchvision state_dict file (torch.save of model.state_dict())",
            source=(
                f"torchvision's model weights (download.pytorch.org/models/{_file}; torchvision "
                "keeps downloads in $TORCH_HOME/hub/checkpoints, by default "
                "~/.cache/torch/hub/checkpoints)"
            ),
            defaults=(weights.torch_hub_checkpoint(_file),),
        ),
    )
