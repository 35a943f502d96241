"""Classic targets: CaffeNet from a caffemodel, torchvision-format AlexNet/VGG/ResNet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from tests.caffe_writer import write_caffemodel
from xdream import networks
from xdream.errors import XDreamError
from xdream.networks import Preprocess
from xdream.scorers import CNNUnitScorer, make_unit

# CaffeNet's parametrised layers from bvlc_reference_caffenet's deploy.prototxt:
# name: (weight shape, stride, pad, groups)
CAFFENET = {
    "conv1": ((96, 3, 11, 11), 4, 0, 1),
    "conv2": ((256, 48, 5, 5), 1, 2, 2),
    "conv3": ((384, 256, 3, 3), 1, 1, 1),
    "conv4": ((384, 192, 3, 3), 1, 1, 2),
    "conv5": ((256, 192, 3, 3), 1, 1, 2),
    "fc6": ((4096, 9216), 1, 0, 1),
    "fc7": ((4096, 4096), 1, 0, 1),
    "fc8": ((1000, 4096), 1, 0, 1),
}

DEPLOY = """name: "CaffeNet"
input: "data"
input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  convolution_param { num_output: 96 kernel_size: 11 stride: 4 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "norm1" type: LRN bottom: "pool1" top: "norm1"
  lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }
layers { name: "conv2" type: CONVOLUTION bottom: "norm1" top: "conv2"
  convolution_param { num_output: 256 pad: 2 kernel_size: 5 group: 2 } }
layers { name: "pool2" type: POOLING bottom: "conv2" top: "pool2" }
layers { name: "norm2" type: LRN bottom: "pool2" top: "norm2" }
layers { name: "conv3" type: CONVOLUTION
  convolution_param { num_output: 384 pad: 1 kernel_size: 3 } }
layers { name: "conv4" type: CONVOLUTION
  convolution_param { num_output: 384 pad: 1 kernel_size: 3 group: 2 } }
layers { name: "conv5" type: CONVOLUTION
  convolution_param { num_output: 256 pad: 1 kernel_size: 3 group: 2 } }
layers { name: "fc6" type: INNER_PRODUCT inner_product_param { num_output: 4096 } }
layers { name: "fc7" type: INNER_PRODUCT inner_product_param { num_output: 4096 } }
layers { name: "fc8" type: INNER_PRODUCT inner_product_param { num_output: 1000 } }
"""


def caffenet_weights(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, _s, _p, _g) in CAFFENET.items():
        fan_in = int(np.prod(shape[1:]))
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(1.5 / np.sqrt(fan_in))
        out[name] = (w, (rng.standard_normal(shape[0]) * 0.1).astype(np.float32))
    return out


@pytest.fixture(scope="session")
def caffenet_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """A CaffeNet caffemodel in the legacy V1 format (as the model-zoo file is) + deploy."""
    folder = tmp_path_factory.mktemp("caffenet")
    weights = caffenet_weights()
    layers = [("data", "Data", [])] + [
        (name, "InnerProduct" if name.startswith("fc") else "Convolution", list(wb))
        for name, wb in weights.items()
    ]
    path = write_caffemodel(folder / "bvlc_reference_caffenet.caffemodel", layers, v1=True)
    (folder / "deploy.prototxt").write_text(DEPLOY)
    yield path, weights
    path.unlink()


# --------------------------------------------------------------- an independent numpy CaffeNet
def np_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, groups: int):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    k = w.shape[-1]
    outs = []
    for g, (xg, wg) in enumerate(zip(np.split(x, groups), np.split(w, groups))):
        del g
        win = sliding_window_view(xg, (k, k), axis=(1, 2))[:, ::stride, ::stride]
        outs.append(np.einsum("chwij,ocij->ohw", win, wg, optimize=True))
    return np.concatenate(outs) + b[:, None, None]


def np_maxpool(x: np.ndarray, k: int = 3, s: int = 2) -> np.ndarray:
    n = -(-(x.shape[1] - k) // s) + 1  # caffe rounds up
    extra = (n - 1) * s + k - x.shape[1]
    x = np.pad(x, ((0, 0), (0, extra), (0, extra)), constant_values=-np.inf)
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s].max(axis=(3, 4))


def np_lrn(x: np.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75) -> np.ndarray:
    sq = np.pad(x**2, ((size // 2, size // 2), (0, 0), (0, 0)))
    window = sum(sq[i : i + x.shape[0]] for i in range(size))
    return x / (1.0 + alpha / size * window) ** beta


def np_caffenet(img_bgr: np.ndarray, w: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    p = {k: (a.astype(np.float64), b.astype(np.float64)) for k, (a, b) in w.items()}
    x = img_bgr.astype(np.float64)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        _shape, stride, pad, groups = CAFFENET[name]
        x = relu(np_conv(x, *p[name], stride, pad, groups))
        if name in ("conv1", "conv2"):
            x = np_lrn(np_maxpool(x))  # CaffeNet: pool, then normalise
        elif name == "conv5":
            x = np_maxpool(x)
    x = x.reshape(-1)
    x = relu(p["fc6"][0] @ x + p["fc6"][1])
    x = relu(p["fc7"][0] @ x + p["fc7"][1])
    return p["fc8"][0] @ x + p["fc8"][1]


def test_torchvision_input_is_imagenet_mean_and_std_at_224() -> None:
    """Spec 8: torchvision nets take RGB (x - mean) / std with ImageNet's mean and std, 224 px."""
    from xdream.networks.torchvision_nets import PREPROCESS

    rgb = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    mean = np.array([0.485, 0.456, 0.406])[:, None, None]
    std = np.array([0.229, 0.224, 0.225])[:, None, None]
    np.testing.assert_allclose(PREPROCESS(rgb)[0].numpy(), (rgb[0].numpy() - mean) / std, atol=1e-5)
    assert PREPROCESS(torch.rand(1, 3, 100, 60)).shape == (1, 3, 224, 224)


def test_caffenet_from_caffemodel_matches_independent_forward(caffenet_file: tuple) -> None:
    path, weights = caffenet_file
    net = networks.make("caffenet", weights=str(path))
    assert net.preprocess.input_size == 227 and net.preprocess.bgr and net.preprocess.scale == 255
    rgb = torch.rand(1, 3, 227, 227, generator=torch.Generator().manual_seed(0))
    x = net.preprocess(rgb)
    # the preprocessing by hand: RGB -> BGR, x255, minus caffe's mean pixel
    bgr = rgb[0].flip(0).numpy() * 255 - np.array([104.0, 117.0, 123.0])[:, None, None]
    assert np.allclose(x[0].numpy(), bgr, atol=1e-3)
    with torch.inference_mode():
        ours = net.module(x)[0].double().numpy()
    ref = np_caffenet(bgr, weights)
    assert ours.std() > 0.1  # a non-degenerate test
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()


def test_caffenet_units_and_bad_files(caffenet_file: tuple, tmp_path: Path) -> None:
    path, _ = caffenet_file
    unit = make_unit("caffenet", layer="conv2", channel=3, weights=str(path))
    assert unit.shape == (256, 27, 27)
    bad = tmp_path / "deploy.prototxt"
    bad.write_text(DEPLOY.replace("group: 2", "group: 1", 1))
    copy = tmp_path / "bvlc_reference_caffenet.caffemodel"
    copy.write_bytes(path.read_bytes()[:2000])  # truncated, next to a wrong deploy.prototxt
    with pytest.raises(XDreamError, match=r"deploy\.prototxt.*conv2"):
        networks.make("caffenet", weights=str(copy))
    bad.unlink()
    with pytest.raises(XDreamError, match=r"truncated"):
        networks.make("caffenet", weights=str(copy))
    # same names and value counts, but another layer type or a transposed blob: refused
    weights = caffenet_weights()
    for name, kind, w, message in (
        ("fc6", "Convolution", weights["fc6"][0], r"'fc6' is a Convolution layer.*InnerProduct"),
        ("conv1", "Convolution", weights["conv1"][0].transpose(1, 0, 2, 3), r"\(3, 96, 11, 11\)"),
    ):
        layers = [
            (n, "InnerProduct" if n.startswith("fc") else "Convolution", list(wb))
            for n, wb in weights.items()
        ]
        layers[list(weights).index(name)] = (name, kind, [w.copy(), weights[name][1]])
        write_caffemodel(copy, layers)
        with pytest.raises(XDreamError, match=message):
            networks.make("caffenet", weights=str(copy))


# ------------------------------------------------------------------ torchvision architectures
# Parameter counts and a few state_dict entries of torchvision's models (public facts).
TORCHVISION: dict[str, tuple[int, dict[str, tuple[int, ...]]]] = {
    "alexnet": (61_100_840, {"features.3.weight": (192, 64, 5, 5), "classifier.6.bias": (1000,)}),
    "vgg16": (
        138_357_544,
        {"features.28.weight": (512, 512, 3, 3), "classifier.0.weight": (4096, 25088)},
    ),
    "vgg19": (
        143_667_240,
        {"features.34.weight": (512, 512, 3, 3), "classifier.6.weight": (1000, 4096)},
    ),
    "resnet18": (
        11_689_512,
        {"layer2.0.downsample.0.weight": (128, 64, 1, 1), "fc.weight": (1000, 512)},
    ),
    "resnet50": (
        25_557_032,
        {"layer4.2.bn3.running_var": (2048,), "layer1.0.downsample.1.weight": (256,)},
    ),
}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision_architectures_have_torchvision_keys(name: str) -> None:
    from xdream.networks.torchvision_nets import ARCHITECTURES

    count, entries = TORCHVISION[name]
    with torch.device("meta"):
        module = ARCHITECTURES[name][0]()
    assert sum(p.numel() for p in module.parameters()) == count
    state = module.state_dict()
    for key, shape in entries.items():
        assert tuple(state[key].shape) == shape
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in module.modules())


def test_torchvision_file_loads(tmp_path: Path) -> None:
    from xdream.networks.torchvision_nets import ARCHITECTURES

    torch.manual_seed(0)
    source = ARCHITECTURES["resnet18"][0]().eval()
    for m in source.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)  # DataParallel
    net = networks.make("resnet18", weights=str(path))
    assert net.preprocess.input_size == 224 and net.preprocess.mean == (0.485, 0.456, 0.406)
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(net.module(net.preprocess(x)), source(net.preprocess(x)))
    # a unit of the first convolution (its output, before batch norm and ReLU)
    unit = make_unit("resnet18", layer="conv1", channel=0, weights=str(path), device="cpu")
    with torch.inference_mode():
        conv = source.conv1(net.preprocess(x))[:, 0, 56, 56]
    assert np.allclose(unit.score(x, ["a", "b"]), conv.numpy(), atol=1e-5)
    # saved before PyTorch 0.4.1 (resnet18-5c106cde.pth): no BatchNorm num_batches_tracked
    old = tmp_path / "resnet18-5c106cde.pth"
    state = source.state_dict()
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    net = networks.make("resnet18", weights=str(old))
    assert all(b.device.type == "cpu" for b in net.module.buffers())
    with torch.inference_mode():
        assert torch.equal(net.module(net.preprocess(x)), source(net.preprocess(x)))
    wrong = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, wrong)
    with pytest.raises(XDreamError, match=r"other\.pth.*not a torchvision resnet18 state_dict"):
        networks.make("resnet18", weights=str(wrong))


def test_any_module_through_the_python_api() -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    module(torch.zeros(1, 3, 32, 32))
    scorer = CNNUnitScorer(
        module, "3", channel=2, preprocess=Preprocess((0.5,) * 3, (0.5,) * 3, 32), device="cpu"
    )
    images = torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        expected = module(
            (nn.functional.interpolate(images, 32, mode="bilinear", antialias=True) - 0.5) / 0.5
        )[:, 2]
    assert np.allclose(scorer.score(images, ["a", "b", "c"]), expected.numpy(), atol=1e-5)
