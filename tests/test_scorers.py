"""The CNN-unit scorer (hooks, early stop, validation) and the noise wrappers (spec §6, §8)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import SharedReLU
from xdream import networks
from xdream.errors import ConfigError, XDreamError
from xdream.networks import Network, Preprocess
from xdream.scorers import (
    NOISE_REGISTRY,
    CNNUnitScorer,
    NoisyScorer,
    Scorer,
    make_noise,
    make_unit,
)
from xdream.scorers.base import FunctionScorer, as_scores
from xdream.types import Images, Scores

IDENTITY = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=8)


class Boom(nn.Module):
    """A layer that must never run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the forward pass went past the target layer")


def toy(boom: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 4, 3, padding=1),  # 0
        nn.ReLU(inplace=True),  # 1
        nn.Conv2d(4, 5, 1),  # 2
        nn.ReLU(inplace=True),  # 3
        nn.AdaptiveAvgPool2d(1),  # 4
        nn.Flatten(),  # 5
        nn.Linear(5, 3),  # 6
    ]
    if boom:
        layers.append(Boom())
    return nn.Sequential(*layers).eval()


def images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def ids(n: int) -> list[str]:
    return [f"im{i}" for i in range(n)]


@pytest.fixture(scope="module")
def lite0() -> Network:
    return networks.make("efficientnet-lite0")


# -- reading the right activation ---------------------------------------------------------------


def test_hooks_read_pre_and_post_activation_of_in_place_relu() -> None:
    net = toy()
    x = images(6)
    with torch.no_grad():
        conv0 = net[0](x)
        conv2 = net[2](torch.relu(conv0))
    assert (conv0[:, 1, 3, 2] < 0).any()  # pre and post differ for these images
    pre = CNNUnitScorer(net, "1", 1, x=2, y=3, preprocess=IDENTITY, pre_activation=True)
    post = CNNUnitScorer(net, "1", 1, x=2, y=3, preprocess=IDENTITY)
    np.testing.assert_allclose(pre.score(x, ids(6)), conv0[:, 1, 3, 2].numpy(), rtol=1e-5)
    np.testing.assert_allclose(post.score(x, ids(6)), conv0[:, 1, 3, 2].clamp(min=0), rtol=1e-5)
    pre3 = CNNUnitScorer(net, "3", 4, x=0, y=7, preprocess=IDENTITY, pre_activation=True)
    np.testing.assert_allclose(pre3.score(x, ids(6)), conv2[:, 4, 7, 0].numpy(), rtol=1e-5)


@pytest.mark.parametrize("pre_activation", [False, True])
def test_a_layer_whose_module_runs_twice_in_a_pass_is_refused(pre_activation: bool) -> None:
    """The hook read the first call (conv1's ReLU) whatever the user meant: a whole run's scores
    of another unit than the one named, with no word said."""
    what = "inputs" if pre_activation else "outputs"
    with pytest.raises(
        XDreamError,
        match=rf"^layer 'relu' of 'SharedReLU' runs 2 times in each forward pass \(one module "
        rf"called at 2 places, with {what} \(4, 4, 4\), \(6, 2, 2\)\), so its name does not say",
    ):
        CNNUnitScorer(SharedReLU(), "relu", 1, preprocess=IDENTITY, pre_activation=pre_activation)
    # each module that runs once is read as before
    unit = CNNUnitScorer(SharedReLU(), "conv2", 5, preprocess=IDENTITY)
    x = images(3)
    with torch.no_grad():
        net = SharedReLU()
        expected = net.conv2(torch.relu(net.conv1(x)))[:, 5, 1, 1]
    np.testing.assert_allclose(unit.score(x, ids(3)), expected.numpy(), rtol=1e-5)


def test_the_pass_that_counts_calls_leaves_the_network_as_it_was() -> None:
    """The construction's whole-network pass (refuse_layers_run_twice) runs in evaluation mode
    and takes its hooks off: a network in training mode keeps its batch-norm statistics (also
    those of a layer after the target), and no hook is left to grow with every pass (mutation
    audit M)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2)
    ).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    for pre in (False, True):
        scorer = CNNUnitScorer(net, "2", 1, preprocess=IDENTITY, pre_activation=pre, device="cpu")
        assert scorer.module is net
        assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
        assert net.training
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


@pytest.mark.parametrize("channels_last", [True, False])
def test_a_network_made_within_inference_mode_is_scored(channels_last: bool) -> None:
    """Weights made within torch.inference_mode() (a network loaded there) are copied into
    plain tensors before the scorer moves or converts them: moved (to CUDA) or converted
    (channels-last, the CPU's default for EfficientNet-Lite0) as inference tensors, they failed
    the construction's dry pass ("Inference tensors do not track version counter"). Tied
    weights stay tied, the single scorer keeps the caller's module, scores are unchanged."""
    from xdream.multi import MultiUnitScorer, Unit

    def build() -> nn.Sequential:
        torch.manual_seed(0)
        conv = nn.Conv2d(3, 3, 3, padding=1)
        return nn.Sequential(conv, nn.ReLU(), conv, nn.BatchNorm2d(3).eval())

    with torch.inference_mode():
        made_there = build()
    x = images(3)
    options: dict[str, Any] = {"preprocess": IDENTITY, "device": "cpu"}
    plain = CNNUnitScorer(build(), "3", 1, channels_last=channels_last, **options).score(x, ids(3))
    single = CNNUnitScorer(made_there, "3", 1, channels_last=channels_last, **options)
    assert single.module is made_there and made_there[0].weight is made_there[2].weight
    assert not any(t.is_inference() for t in made_there.state_dict().values())
    np.testing.assert_array_equal(single.score(x, ids(3)), plain)
    with torch.inference_mode():
        made_there = build()
    multi = MultiUnitScorer(made_there, [Unit("3", 1)], channels_last=channels_last, **options)
    np.testing.assert_allclose(multi.activations(x)[:, 0], plain, rtol=1e-5, atol=1e-6)


def test_a_network_whose_head_fails_after_the_target_is_scored() -> None:
    """The call-counting pass runs the whole network, but an error after the target ran (a
    head made for another input size) only ends the count: the scorer reads its layer as
    before (mutation audit M: nothing checked that the error is not raised)."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(7, 2))
    unit = CNNUnitScorer(net, "1", 2, preprocess=IDENTITY, device="cpu")  # x is on the CPU
    x = images(2)
    with torch.no_grad():
        expected = torch.relu(net[0](x))[:, 2, unit.y, unit.x]
    np.testing.assert_allclose(unit.score(x, ids(2)), expected.numpy(), rtol=1e-5)


def test_a_resnet_block_relu_is_refused_and_the_block_named() -> None:
    """xdream's ResNets call each block's `relu` two or three times, as torchvision's do."""
    from xdream.networks.torchvision_nets import ARCHITECTURES, PREPROCESS

    net = Network(ARCHITECTURES["resnet18"][0]().eval(), PREPROCESS, "resnet18")
    twice = r"'layer4\.1\.relu' of 'resnet18' runs 2 times.*\(512, 7, 7\), \(512, 7, 7\)\)"
    with pytest.raises(XDreamError, match=twice + r".*the block that holds it \('layer4\.1'\)"):
        CNNUnitScorer(net, "layer4.1.relu", 3, device="cpu")
    assert CNNUnitScorer(net, "layer4.1", 3, device="cpu").shape == (512, 7, 7)


def test_two_dimensional_layer_has_no_position() -> None:
    net = toy()
    x = images(4)
    with torch.no_grad():
        expected = net(x)[:, 2].numpy()
    scorer = CNNUnitScorer(net, "6", 2, preprocess=IDENTITY)
    assert scorer.x is None and scorer.y is None
    np.testing.assert_allclose(scorer.score(x, ids(4)), expected, rtol=1e-5)


def test_default_position_is_the_centre(lite0: Network) -> None:
    scorer = CNNUnitScorer(lite0, "blocks.10", 0, device="cpu")
    assert scorer.shape == (112, 14, 14)
    assert (scorer.x, scorer.y) == (7, 7)


def test_forward_stops_at_the_target_layer() -> None:
    net = toy(boom=True)
    scorer = CNNUnitScorer(net, "3", 0, preprocess=IDENTITY, pre_activation=True)
    assert scorer.score(images(2), ids(2)).shape == (2,)
    assert CNNUnitScorer(net, "6", 0, preprocess=IDENTITY).score(images(2), ids(2)).shape == (2,)
    assert not net[0]._forward_hooks and not net[3]._forward_pre_hooks  # hooks removed


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_scores_do_not_depend_on_batch_size(batch_size: int) -> None:
    x = images(10)
    ref = CNNUnitScorer(toy(), "2", 3, preprocess=IDENTITY, batch_size=10).score(x, ids(10))
    got = CNNUnitScorer(toy(), "2", 3, preprocess=IDENTITY, batch_size=batch_size)
    np.testing.assert_allclose(got.score(x, ids(10)), ref, rtol=1e-5, atol=1e-6)


def test_scores_are_float64_and_empty_input_works() -> None:
    scorer = CNNUnitScorer(toy(), "2", 0, preprocess=IDENTITY)
    assert scorer.score(images(3), ids(3)).dtype == np.float64
    assert scorer.score(torch.zeros(0, 3, 8, 8), []).shape == (0,)


def test_lite0_unit_batch_and_memory_format_invariance(lite0: Network) -> None:
    x = images(5, size=64)
    a = CNNUnitScorer(lite0, "blocks.3", 7, batch_size=2, channels_last=True, device="cpu")
    plain = networks.make()  # its own weights: `a` converted lite0's to channels-last in place
    b = CNNUnitScorer(plain, "blocks.3", 7, batch_size=5, channels_last=False, device="cpu")
    assert plain.module.stem[0].weight.is_contiguous()  # really the default layout
    assert not lite0.module.stem[0].weight.is_contiguous()
    np.testing.assert_allclose(a.score(x, ids(5)), b.score(x, ids(5)), rtol=1e-4, atol=1e-5)


def test_make_unit_and_image_size(lite0: Network) -> None:
    scorer = make_unit(layer="classifier", channel=285, device="cpu")
    d = scorer.describe()
    assert d["network"] == "efficientnet-lite0" and d["layer"] == "classifier"
    assert d["channel"] == 285
    assert {"x", "y", "pre_activation", "image_size"} <= set(d)
    small = CNNUnitScorer(lite0, "classifier", 285, image_size=32, device="cpu")
    x = images(2, size=128)
    a, b = scorer.score(x, ids(2)), small.score(x, ids(2))
    assert np.isfinite(a).all() and np.isfinite(b).all() and not np.allclose(a, b)


def test_image_size_resizes_to_it_first_and_then_to_the_networks_input() -> None:
    """Spec 8: XDream resized generator output to a small image_size first, then to the
    network's input size, and normalised last."""
    import torch.nn.functional as F

    def resized(x: torch.Tensor, size: int) -> torch.Tensor:
        return F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)

    prep = Preprocess(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.5), input_size=16)
    x = images(3, size=32)
    with torch.no_grad():
        centred = resized(resized(x, 6), 16) - torch.tensor([0.1, 0.2, 0.3]).view(3, 1, 1)
        expected = toy()(centred / torch.tensor([0.5, 0.25, 0.5]).view(3, 1, 1))[:, 1]
    scorer = CNNUnitScorer(toy(), "6", 1, preprocess=prep, image_size=6, device="cpu")
    np.testing.assert_allclose(scorer.score(x, ids(3)), expected.numpy(), rtol=1e-5, atol=1e-6)
    plain = CNNUnitScorer(toy(), "6", 1, preprocess=prep, device="cpu").score(x, ids(3))
    assert not np.allclose(plain, expected.numpy(), atol=1e-4)  # the detour changes the scores


def test_describe_names_the_preprocess_and_fingerprints_a_module_without_weights(
    lite0: Network,
) -> None:
    """describe() had neither the Preprocess nor anything of a plain module's weights, so a
    run restored with another normalisation or other weights was taken, and the record could
    not show the Preprocess."""
    d = CNNUnitScorer(toy(), "2", 0, preprocess=IDENTITY).describe()
    assert d["preprocess"] == {
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "input_size": 8,
        "bgr": False,
        "scale": 1.0,
    }
    same = CNNUnitScorer(toy(), "2", 0, preprocess=IDENTITY, channels_last=True).describe()
    assert d["module_sha256"] == same["module_sha256"]  # the values, whatever their layout
    assert len(d["module_sha256"]) == 64
    other = toy()
    with torch.no_grad():
        other[2].bias[0] += 1e-6
    changed = CNNUnitScorer(other, "2", 0, preprocess=IDENTITY).describe()
    assert changed["module_sha256"] != d["module_sha256"]

    # a module with non-tensor state (get_extra_state) is fingerprinted by its tensors
    # (the run stopped with a raw AttributeError: audit Q1)
    class WithExtra(nn.Sequential):
        def get_extra_state(self) -> dict[str, int]:
            return {"version": 2}

        def set_extra_state(self, state: dict[str, int]) -> None:
            pass

    extra = WithExtra(*toy())
    fingerprint = CNNUnitScorer(extra, "2", 0, preprocess=IDENTITY).describe()["module_sha256"]
    assert isinstance(fingerprint, str) and len(fingerprint) == 64
    # a network loaded from a weight file is named by the file
    described = CNNUnitScorer(lite0, "blocks.3", 7, device="cpu").describe()
    assert described["module_sha256"] is None and described["weights"] == lite0.weights
    assert described["preprocess"]["input_size"] == lite0.preprocess.input_size


def test_restore_refuses_another_preprocess_or_other_weights(tmp_path: Path) -> None:
    """Both were taken without a word, and the record said one unit throughout."""
    import xdream.generators
    import xdream.optimizers
    from xdream.errors import ConfigChangedError
    from xdream.experiment import Experiment

    run = tmp_path / "run"

    def build(module: nn.Module, preprocess: Preprocess = IDENTITY) -> Experiment:
        gen = xdream.generators.make("pixels", size=8, code_size=4)
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
        scorer = CNNUnitScorer(module, "2", 0, preprocess=preprocess, device="cpu")
        return Experiment(gen, scorer, opt, run, generations=2, n_references=0)

    first = build(toy())
    first.step()
    first.release_folder()
    brighter = Preprocess(mean=(0.2, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=8)
    with pytest.raises(ConfigChangedError, match=r"\(target\.preprocess\.mean: \[0\.0, 0\.0"):
        build(toy(), brighter).restore()
    retrained = toy()
    with torch.no_grad():
        retrained[0].weight.mul_(2)
    with pytest.raises(ConfigChangedError, match=r"\(target\.module_sha256: '[0-9a-f]{64}' ->"):
        build(retrained).restore()
    with pytest.raises(ConfigChangedError) as err:  # two hashes alone do not say what changed
        build(toy().half().float()).restore()
    assert "fingerprint of the module's parameters and buffers" in str(err.value)
    with pytest.raises(ConfigChangedError) as err:  # said only where the fingerprint differs
        build(toy(), brighter).restore()
    assert "fingerprint" not in str(err.value)
    again = build(toy())
    again.restore()
    assert again.run()["generations"] == 2


def dropout_net() -> nn.Sequential:
    """A model with dropout and BatchNorm, left in training mode as nn.Module makes it."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 5),
        nn.BatchNorm1d(5),  # fails on one image in training mode
    )


def test_scores_are_in_evaluation_mode_whatever_the_model_mode() -> None:
    net = dropout_net()
    net[2].eval()  # a mixed setting, to be put back exactly
    flags = [m.training for m in net.modules()]
    scorer = CNNUnitScorer(net, "5", 3, preprocess=IDENTITY, device="cpu")
    assert [m.training for m in net.modules()] == flags  # the constructor keeps the modes
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = images(4)
    a, b = scorer.score(x, ids(4)), scorer.score(x, ids(4))
    net.eval()
    ref = scorer.score(x, ids(4))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ref)
    net.train()
    np.testing.assert_array_equal(scorer.score(x, ids(4)), ref)
    assert all(m.training for m in net.modules())  # the mode is the user's
    for key, value in net.state_dict().items():  # BatchNorm's running statistics untouched
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_layer_table_leaves_the_model_as_it_was() -> None:
    net = dropout_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    table = dict(networks.layer_table(net, 8))
    assert table["5"] == (5,) and all(m.training for m in net.modules())
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_models_in_other_dtypes_get_their_dtype(dtype: torch.dtype) -> None:
    net = toy().to(dtype)
    x = images(3)
    got = CNNUnitScorer(net, "6", 1, preprocess=IDENTITY, device="cpu").score(x, ids(3))
    with torch.inference_mode():
        want = net(IDENTITY(x).to(dtype))[:, 1].double().numpy()
    assert got.dtype == np.float64
    rtol = 1e-12 if dtype == torch.float64 else 1e-2  # float64 is not rounded to float32
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)
    assert dict(networks.layer_table(net, 8))["6"] == (3,)


class WithConv3d(nn.Module):
    """A 2-D model holding an unused 5-D weight, which channels_last cannot convert."""

    def __init__(self) -> None:
        super().__init__()
        self.volume = nn.Conv3d(1, 2, 1)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_channels_last_is_skipped_for_a_model_with_5d_tensors() -> None:
    scorer = CNNUnitScorer(WithConv3d(), "conv", 1, preprocess=IDENTITY, device="cpu")
    assert not scorer.channels_last and scorer.score(images(2), ids(2)).shape == (2,)
    with pytest.raises(XDreamError, match=r"channels_last=True.*'volume.weight' is 5-D"):
        CNNUnitScorer(WithConv3d(), "conv", 1, preprocess=IDENTITY, channels_last=True)


class Fails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.view(-1, 7))


def test_a_failing_dry_run_names_the_network_and_input() -> None:
    with pytest.raises(XDreamError, match=r"dry forward pass of 'Fails'.*\(1, 3, 8, 8\).*float32"):
        CNNUnitScorer(Fails(), "conv", 0, preprocess=IDENTITY, device="cpu")


# -- validation at construction -----------------------------------------------------------------


def test_unknown_layer_suggests_a_name(lite0: Network) -> None:
    with pytest.raises(XDreamError, match=r"Did you mean 'blocks.10'.*xdream layers efficientnet"):
        CNNUnitScorer(lite0, "block.10", 0, device="cpu")
    with pytest.raises(XDreamError, match=r"'mine' has no layer.*xdream layers efficientnet-lite0"):
        CNNUnitScorer(lite0, "block.10", 0, device="cpu", name="mine")  # the registered name


def test_unknown_layer_of_a_user_model_points_to_layer_table() -> None:
    for net in (toy(), Network(toy(), IDENTITY, "mine")):
        with pytest.raises(XDreamError, match=r"xdream\.networks\.layer_table\(module, 8\)"):
            CNNUnitScorer(net, "conv", 0, preprocess=IDENTITY)


class PairOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.conv(x)
        return y, y.mean()


class DictOut(PairOut):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"a": self.conv(x)}


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pair, self.named = PairOut(), DictOut()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pair(x)[0] + self.named(x)["a"]


@pytest.mark.parametrize(("layer", "kind"), [("pair", "tuple"), ("named", "dict")])
def test_a_layer_without_tensor_output_names_its_submodules(layer: str, kind: str) -> None:
    match = rf"{layer}' of 'Outer' has a {kind} output.*'{layer}\.conv'.*layer_table"
    with pytest.raises(XDreamError, match=match):
        CNNUnitScorer(Outer(), layer, 0, preprocess=IDENTITY)
    assert CNNUnitScorer(Outer(), f"{layer}.conv", 0, preprocess=IDENTITY).shape == (4, 6, 6)


class Tokens(nn.Module):
    """A layer of tokens ``(n, T, D)``, as a transformer's; ``as_map`` gives the same values as
    ``(n, D, T, 1)``, the way the refusal of the tokens suggests."""

    def __init__(self, as_map: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 5, 4, stride=4)  # 8 px -> 2 x 2 = 4 tokens of 5
        self.mix = nn.Linear(5, 5)
        self.as_map = nn.Identity() if as_map else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.mix(self.patch(x).flatten(2).transpose(1, 2))
        if self.as_map is None:
            return tokens
        return self.as_map(tokens.transpose(1, 2).unsqueeze(-1))


def test_a_layer_of_tokens_is_refused_with_a_way_on() -> None:
    """The refusal of a 3-D layer said what is supported but not what to do."""
    from xdream.multi import MultiUnitScorer

    way_on = r"supported: read another layer .* for tokens \(n, T, D\), wrap the model so"
    with pytest.raises(XDreamError, match=r"^layer 'mix' outputs shape \(n, 4, 5\); .*" + way_on):
        CNNUnitScorer(Tokens(), "mix", 2, preprocess=IDENTITY)
    with pytest.raises(XDreamError, match=r"^layer 'mix' of 'Tokens' .*" + way_on):
        MultiUnitScorer(Tokens(), [("mix", 2)], preprocess=IDENTITY)
    x = images(3)
    with torch.no_grad():
        token1 = Tokens()(x)[:, 1, 2]  # token 1, channel 2
    unit = CNNUnitScorer(Tokens(as_map=True), "as_map", 2, x=0, y=1, preprocess=IDENTITY)
    np.testing.assert_allclose(unit.score(x, ids(3)), token1.numpy(), rtol=1e-6)


def test_channel_out_of_range_names_the_range() -> None:
    with pytest.raises(XDreamError, match=r"channel must be in 0\.\.4"):
        CNNUnitScorer(toy(), "2", 5, preprocess=IDENTITY)
    with pytest.raises(XDreamError, match="channel"):
        CNNUnitScorer(toy(), "2", -1, preprocess=IDENTITY)


def test_position_out_of_range_names_the_range() -> None:
    with pytest.raises(XDreamError, match=r"x must be in 0\.\.7"):
        CNNUnitScorer(toy(), "2", 0, x=8, preprocess=IDENTITY)
    with pytest.raises(XDreamError, match=r"y must be in 0\.\.3"):
        prep4 = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=4)
        CNNUnitScorer(toy(), "2", 0, y=4, preprocess=prep4, image_size=16)
    with pytest.raises(XDreamError, match="omit x and y"):
        CNNUnitScorer(toy(), "6", 0, x=0, preprocess=IDENTITY)


def test_pre_activation_needs_an_activation_layer() -> None:
    with pytest.raises(XDreamError, match=r"pre_activation=True.*Conv2d"):
        CNNUnitScorer(toy(), "2", 0, preprocess=IDENTITY, pre_activation=True)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (images(2).numpy(), r"tensor, got a numpy.ndarray of shape \(2, 3, 8, 8\) \(convert it "),
        (images(2).permute(0, 2, 3, 1), r"got \(2, 8, 8, 3\): channels last"),
        (images(1)[0], r"got \(3, 8, 8\): one image \(add the batch dimension"),
        ((images(2) * 255).byte(), r"got uint8 with values up to 2\d\d \(divide by 255"),
        (images(2) * 255, r"float RGB in \[0, 1\], got values from .* \(divide by 255\)$"),
        (images(2) * math.nan, r"float RGB in \[0, 1\], got NaN or inf values in 2 of 2 images"),
    ],
)
def test_images_that_are_not_float_rgb_in_0_1_are_refused(given: Any, message: str) -> None:
    """uint8, 0..255 and NaN images were scored silently, and a single (3, H, W) image was read
    by the many-unit scorer as three: CNNUnitScorer.score, MultiUnitScorer.activations and a
    UnitView say what they take, in one line."""
    from xdream.multi import MultiUnitScorer

    unit = CNNUnitScorer(toy(), "2", 1, preprocess=IDENTITY, device="cpu")
    multi = MultiUnitScorer(toy(), [("2", 1)], preprocess=IDENTITY, device="cpu")
    n = 1 if given.ndim == 3 else len(given)
    for score in (
        lambda: unit.score(given, ids(n)),
        lambda: multi.activations(given),
        lambda: multi.view(0).score(given, ids(n)),
    ):
        with pytest.raises(XDreamError, match=r"^images must be .*" + message):
            score()


def test_ids_are_one_per_image() -> None:
    """score(images, None) failed with a TypeError; a UnitView given fewer ids than images
    answered for every image."""
    from xdream.multi import MultiUnitScorer

    unit = CNNUnitScorer(toy(), "2", 1, preprocess=IDENTITY, device="cpu")
    view = MultiUnitScorer(toy(), [("2", 1)], preprocess=IDENTITY, device="cpu").view(0)
    for scorer in (unit, view):
        with pytest.raises(XDreamError, match=r"^ids must be a list of 2 strings.*got NoneType"):
            scorer.score(images(2), None)  # type: ignore[arg-type]
        with pytest.raises(XDreamError, match=r"^got 3 images but 1 ids$"):
            scorer.score(images(3), ids(1))
    assert view.score(images(3), ids(3)).shape == (3,)


def test_smaller_mistakes_in_building_a_unit_get_one_line() -> None:
    """A layer given as an int failed inside did_you_mean with a TypeError; channel=1.0 was
    said to be out of 0..4; a TorchScript model was refused as if its layer had not run."""
    net = toy()
    with pytest.raises(XDreamError, match=r"^layer must be a module's name, a string such as '0'"):
        CNNUnitScorer(net, 0, 1, preprocess=IDENTITY, device="cpu")  # type: ignore[arg-type]
    with pytest.raises(
        XDreamError, match=r"^channel must be an integer, got float 1\.0 \(write 1\)$"
    ):
        CNNUnitScorer(net, "2", 1.0, preprocess=IDENTITY, device="cpu")  # type: ignore[arg-type]
    with pytest.raises(XDreamError, match=r"^x must be an integer, got str '1'$"):
        CNNUnitScorer(net, "2", 1, "1", preprocess=IDENTITY, device="cpu")  # type: ignore[arg-type]
    traced = torch.jit.trace(net, images(1))
    with pytest.raises(XDreamError, match=r"TorchScript module .*load the eager nn\.Module"):
        CNNUnitScorer(traced, "2", 1, preprocess=IDENTITY, device="cpu")
    inner = nn.Sequential(torch.jit.script(toy()[:2]), toy()[2:])
    with pytest.raises(XDreamError, match=r"^layer '0' of 'Sequential' is a TorchScript module"):
        CNNUnitScorer(inner, "0.1", 1, preprocess=IDENTITY, device="cpu")


def test_a_unit_that_overflows_in_half_precision_says_so() -> None:
    """The run stopped with "scores must be finite numbers or NaN ... Map failed measurements to
    NaN", which says nothing to a CNN user; the scorer names the unit and the dtype."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(1e5)
    unit = CNNUnitScorer(net.half(), "1", 0, preprocess=IDENTITY, device="cpu")
    overflow = r"^channel 0 of layer '1' of 'Sequential' overflowed to infinity in float16 for "
    with pytest.raises(XDreamError, match=overflow + r"2 of 2 images: run the model in float32"):
        unit.score(images(2), ids(2))


class HalfNaN(nn.Module):
    """Channel 0 NaN for every other image: a network that computes NaN somewhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[::2, 0] = math.nan
        return x


def test_a_unit_that_computes_nan_is_warned_about_once() -> None:
    """A CNN unit that was NaN for every image ran its whole budget without a word (NaN is no
    response, as from a rig, but a network gives it only where something is wrong)."""
    from xdream.multi import MultiUnitScorer

    net = nn.Sequential(nn.Conv2d(3, 2, 1), HalfNaN()).eval()
    unit = CNNUnitScorer(net, "1", 0, preprocess=IDENTITY)
    said = r"^'Sequential' computes NaN \(channel 0 of layer '1' for 2 of 4 images\): such images"
    with pytest.warns(UserWarning, match=said + r" count as no response, and the run goes on;"):
        scores = unit.score(images(4), ids(4))
    assert np.isnan(scores[::2]).all() and np.isfinite(scores[1::2]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per scorer, not every generation
        unit.score(images(4), ids(4))
        CNNUnitScorer(net, "1", 1, preprocess=IDENTITY).score(images(4), ids(4))  # no NaN
    shared = MultiUnitScorer(net, [("1", 1), ("1", 0)], preprocess=IDENTITY)
    many = r"^'Sequential' computes NaN \(channel 0 of layer '1' \(x 4, y 4\) for 3 of 6 images\)"
    with pytest.warns(UserWarning, match=many):
        shared.activations(images(6))


def test_a_shared_pass_warns_about_nan_once_naming_five_units_and_counting_the_rest() -> None:
    """The shared pass's NaN warning, as a scorer's: said once, not every generation; five
    units named, the others counted (mutation audit M)."""
    from xdream.multi import MultiUnitScorer

    net = nn.Sequential(nn.Conv2d(3, 2, 1), HalfNaN()).eval()
    positions = [(x, y) for x in range(4) for y in range(2)][:7]
    shared = MultiUnitScorer(
        net, [("1", 0, x, y) for x, y in positions] + [("1", 1)], preprocess=IDENTITY
    )
    said = r"channel 0 of layer '1' \(x 0, y 1\) for 2 of 4 images, .* and 2 more units\)"
    with pytest.warns(UserWarning, match=said):
        shared.activations(images(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once
        shared.activations(images(4))


def test_a_network_registered_in_python_is_listed_with_layer_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The `xdream` command does not know a network registered in the user's process: its
    bad-layer message pointed at `xdream layers NAME` all the same."""
    for attr in ("_entries", "_summaries", "_definitions"):  # registered for this test only
        monkeypatch.setattr(networks.REGISTRY, attr, dict(getattr(networks.REGISTRY, attr)))
    name = "test-scorers-tiny"
    networks.REGISTRY.add(name, lambda weights=None: Network(toy(), IDENTITY, name))
    with pytest.raises(XDreamError, match=r"List the layers with `xdream\.networks\.layer_table\("
                       r"xdream\.networks\.make\('test-scorers-tiny'\)\.module, 8\)`"):  # fmt: skip
        make_unit(name, layer="9", channel=0, device="cpu")


def test_plain_module_needs_preprocess() -> None:
    with pytest.raises(XDreamError, match="preprocess"):
        CNNUnitScorer(toy(), "2", 0)


# -- noise -----------------------------------------------------------------------------------------


class FixedScorer(Scorer):
    def __init__(self, scores: Scores) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)

    def score(self, images: Images, ids: list[str]) -> Scores:
        return self.scores.copy()


CLEAN = np.array([0.0, 0.1, 0.5, 1.0, 2.0, -0.3])
NOISES = {"poisson": {"scale": 20.0}, "gain": {"ns": 0.5}}


def noisy(name: str, seed: int = 0, **params: float) -> NoisyScorer:
    return NoisyScorer(FixedScorer(CLEAN), make_noise(name, **(params or NOISES[name])), seed=seed)


def test_a_noisy_scorer_passes_the_folder_check_to_its_base(tmp_path: Path) -> None:
    """The noise changes only the scores: a base scorer's refusal of the experiment folder
    (a rig's share not mounted) comes before the folder is made, noise or not (mutation
    audit M)."""
    checked: list[Path] = []

    class Refusing(FixedScorer):
        def check_folder(self, folder: Path) -> None:
            checked.append(folder)
            raise XDreamError("the share is not mounted")

    scorer = NoisyScorer(Refusing(CLEAN), make_noise("gain", ns=0.5), seed=0)
    with pytest.raises(XDreamError, match="the share is not mounted"):
        scorer.check_folder(tmp_path / "run")
    assert checked == [tmp_path / "run"]


def test_every_registered_noise_is_tested() -> None:
    assert set(NOISE_REGISTRY.names()) == set(NOISES)


@pytest.mark.parametrize("name", sorted(NOISES))
def test_noise_is_reproducible_and_resumable(name: str) -> None:
    x = images(len(CLEAN))
    a, b = noisy(name, seed=1), noisy(name, seed=1)
    first = [a.score(x, ids(6)) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(first), np.stack([b.score(x, ids(6)) for _ in range(3)]))
    assert not np.array_equal(first[0], first[1])
    state = a.state_dict()
    expected = [a.score(x, ids(6)) for _ in range(2)]
    c = noisy(name, seed=99)
    c.load_state_dict(state)
    np.testing.assert_array_equal(np.stack([c.score(x, ids(6)) for _ in range(2)]), expected)


def test_the_noise_seed_is_described_and_draws_the_same_noise_again() -> None:
    """NoisyScorer's seed was recorded nowhere: runs that differed only in it had equal
    records. describe() gives it (the entropy drawn for seed=None, which draws the same noise
    again), and a restored scorer gives the seed whose noise it goes on drawing."""
    x = images(len(CLEAN))
    assert noisy("poisson", seed=np.int64(3)).describe()["noise_seed"] == 3  # type: ignore[arg-type]
    unseeded = noisy("poisson", seed=None)  # type: ignore[arg-type]
    drawn = unseeded.describe()["noise_seed"]
    assert type(drawn) is int
    again = noisy("poisson", seed=drawn)
    np.testing.assert_array_equal(unseeded.score(x, ids(6)), again.score(x, ids(6)))
    restored = noisy("poisson", seed=99)
    restored.load_state_dict(unseeded.state_dict())
    assert restored.describe()["noise_seed"] == drawn
    np.testing.assert_array_equal(restored.score(x, ids(6)), again.score(x, ids(6)))
    earlier = {k: v for k, v in again.state_dict().items() if k != "seed"}  # an earlier xdream's
    restored.load_state_dict(earlier)
    assert restored.describe()["noise_seed"] is None  # not this object's seed: unknown


@pytest.mark.parametrize("name", sorted(NOISES))
def test_noise_keeps_nan_and_records_clean_scores(name: str) -> None:
    base = FixedScorer(np.array([1.0, np.nan, 0.5]))
    scorer = NoisyScorer(base, make_noise(name, **NOISES[name]), seed=0)
    out = scorer.score(images(3), ids(3))
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()
    np.testing.assert_array_equal(scorer.last_clean, base.scores)
    assert scorer.describe()["noise"]["name"] == name


def test_noise_around_a_scorer_with_hooks_passes_them_on(tmp_path: Path) -> None:
    """A NoisyScorer around a scorer that keeps state in the folder, prepares each generation,
    records rows of its own and writes records only when idle: each hook reaches the base
    scorer, and its rows reach record.h5 (NoisyScorer kept them to itself, so such a scorer
    wrapped in noise silently lost them; check_folder too, audit V2-8)."""
    from tests.helpers import RedScorer, tiny_experiment
    from xdream import records

    class Hooked(RedScorer):
        records_in_background = False

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[Any] = []
            self.last_extra: dict[str, Any] | None = None

        def check_folder(self, folder: Path) -> None:
            self.seen.append(("check", folder))

        def bind(self, folder: Path) -> None:
            self.seen.append(("bind", folder))

        def start_generation(self, generation: int) -> None:
            self.seen.append(("start", generation))

        def prepare(self, images: Any, ids: list[str]) -> None:
            self.seen.append(("prepare", len(ids)))

        def run_when_idle(self, task: Any) -> None:
            self.seen.append(("idle",))
            task()

        def score(self, images: Any, ids: list[str]) -> Any:
            scores = super().score(images, ids)
            generation = [e[1] for e in self.seen if e[0] == "start"][-1]
            self.last_extra = {
                "mine/count": np.array([len(ids)]),
                "mine/generation": np.array([generation]),
            }
            return scores

    exp = tiny_experiment(tmp_path / "run", generations=3)
    base = Hooked()
    exp.scorer = NoisyScorer(base, make_noise("gain", ns=0.5), seed=0)
    assert exp.scorer.records_in_background is False
    exp.run()
    kinds = [event[0] for event in base.seen]
    assert kinds[:2] == ["check", "bind"]  # checked before the folder is made, then bound
    assert base.seen[0][1] == base.seen[1][1] == tmp_path / "run"
    assert [e[1] for e in base.seen if e[0] == "start"] == [0, 1, 2]
    assert kinds.count("prepare") == 3 and kinds.count("idle") >= 3
    rec = records.read(tmp_path / "run")
    shown = [np.sum(rec.generation == g) + np.sum(rec.ref_generation == g) for g in range(3)]
    assert list(rec.extra["mine/count"]) == shown  # images and reference crops
    assert list(rec.extra["mine/generation"]) == [0, 1, 2]


def test_poisson_mean_approaches_clean_score() -> None:
    scorer = noisy("poisson", scale=20.0, reps=4000)
    out = scorer.score(images(6), ids(6))
    np.testing.assert_allclose(out, np.maximum(CLEAN, 0.0), atol=0.02)
    counts = out * 20.0 * 4000  # total spike counts over the repetitions
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)


def test_gain_noise_with_zero_ns_is_clean() -> None:
    np.testing.assert_array_equal(noisy("gain", ns=0.0).score(images(6), ids(6)), CLEAN)


def test_gain_noise_clips_the_gain_at_zero() -> None:
    """Spec 6: s * max(0, 1 + ns N(0, 1)). At ns 0.5 a gain is below 0 when N(0, 1) < -2."""
    out = make_noise("gain", ns=0.5)(np.ones(200_000), np.random.default_rng(0))
    assert (out >= 0).all()
    # P(N(0, 1) < -2) = 0.02275; over 200k draws its standard error is 0.00033
    assert np.mean(out == 0) == pytest.approx(0.02275, abs=0.0015)
    negative = make_noise("gain", ns=0.5)(np.full(1000, -2.0), np.random.default_rng(1))
    assert (negative <= 0).all() and (negative == 0).any()  # a score's sign never flips


def test_noise_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="scale"):
        make_noise("poisson", scale=0.0)
    with pytest.raises(ConfigError, match="Did you mean 'scale'"):
        make_noise("poisson", scael=5.0)
    with pytest.raises(ConfigError, match="noise model"):
        make_noise("gaussian")
    # infinity passed: Poisson crashed inside NumPy, gain made every score 0 or inf
    with pytest.raises(ConfigError, match="scale must be a positive finite number, got inf"):
        make_noise("poisson", scale=float("inf"))
    with pytest.raises(ConfigError, match="ns must be a finite number >= 0, got inf"):
        make_noise("gain", ns=float("inf"))
    with pytest.raises(ConfigError, match="ns must be a finite number >= 0, got nan"):
        make_noise("gain", ns=float("nan"))


def test_poisson_noise_takes_any_finite_score() -> None:
    """Rates beyond NumPy's Poisson sampler (score x scale above ~9.2e18) crashed with its
    'lam value too large'; -inf stayed -inf where a negative score counts 0 spikes."""
    noise = make_noise("poisson", scale=20.0, reps=3)
    scores = np.array([1e20, 2.0, -np.inf, -3.0, np.nan, np.inf, 1e17])
    out = noise(scores, np.random.default_rng(0))
    np.testing.assert_allclose(out[[0, 6]], [1e20, 1e17], rtol=1e-6)  # N(rate, rate): sd 1e-9
    assert out[0] != 1e20 and out[2] == 0.0 and out[3] == 0.0
    assert np.isnan(out[4]) and out[5] == np.inf  # no response, and an infinite one, pass on
    # below the bound, the same draws as before
    plain = np.array([2.0, 0.5, -1.0])
    expected = np.random.default_rng(1).poisson(np.maximum(plain, 0) * 20.0, (3, 3)).mean(0) / 20
    np.testing.assert_array_equal(noise(plain, np.random.default_rng(1)), expected)
    with pytest.raises(ConfigError, match=r"score 1e\+308 times scale 20.0 is beyond"):
        noise(np.array([1e308]), np.random.default_rng(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_scores_do_not_depend_on_the_batch() -> None:
    """In IEEE float32 (xdream's default on CUDA) an image scores the same in any batch, and
    close to the CPU; with TensorFloat-32 it did not (docs/benchmarks.md, "Float32 on CUDA")."""
    from xdream import generators
    from xdream.precision import tf32_mode

    with tf32_mode(False):
        gen = generators.make("fourier", size=64)
        codes = np.random.default_rng(0).standard_normal((40, gen.code_dim)).astype(np.float32)
        images = gen.generate(codes)
        ids = [f"i{k}" for k in range(40)]
        cpu = make_unit(layer="blocks.15", channel=3, image_size=64, device="cpu")
        gpu = make_unit(layer="blocks.15", channel=3, image_size=64, device="cuda")
        batch = gpu.score(images, ids)
        np.testing.assert_array_equal(gpu.score(images[:7], ids[:7]), batch[:7])
        np.testing.assert_allclose(batch, cpu.score(images, ids), rtol=1e-3, atol=1e-3)


def test_a_submodule_swapped_in_after_the_scorer_was_built_is_in_evaluation_mode() -> None:
    """The scorers look at the model's modules at every call: a dropout swapped into a model in
    evaluation mode after the scorer was built ran in training mode (scores changed from call
    to call) while a cached module list said every module was in evaluation mode."""
    from xdream.multi import MultiUnitScorer, Unit
    from xdream.networks.base import Network

    net = dropout_net().eval()
    single = CNNUnitScorer(net, "4", 3, preprocess=IDENTITY, device="cpu")
    multi = MultiUnitScorer(
        Network(net, IDENTITY, "mine"), [Unit("4", 3)], device="cpu", fold_bn=False
    )
    net[2] = nn.Dropout(0.9)  # in training mode, as nn.Module makes it
    x = images(4)
    np.testing.assert_array_equal(single.score(x, ids(4)), single.score(x, ids(4)))
    np.testing.assert_array_equal(multi.activations(x), multi.activations(x))
    assert net[2].training  # and its mode is put back


def test_noise_wraps_a_plain_function() -> None:
    """A plain function, which Experiment takes as a scorer, failed in describe() inside run()."""

    def score(images: Images, ids: list[str]) -> Scores:
        return np.asarray(CLEAN)

    scorer = NoisyScorer(score, make_noise("gain", ns=0.0), seed=0)
    np.testing.assert_array_equal(scorer.score(images(6), ids(6)), CLEAN)
    np.testing.assert_array_equal(scorer.last_clean, CLEAN)
    assert scorer.describe()["kind"] == "function"
    assert scorer.describe()["noise"] == {"name": "gain", "ns": 0.0}
    assert scorer.state_dict()["base"] == {}
    with pytest.raises(XDreamError, match=r"base must be a Scorer or a function.*got str"):
        NoisyScorer("efficientnet-lite0", make_noise("gain"))  # type: ignore[arg-type]


def test_a_scorer_that_returns_none_is_told_so() -> None:
    """It was a 0-d NaN, refused as "scorer returned () scores for 22 images"."""
    with pytest.raises(XDreamError, match=r"the scorer returned None \(does it end with `return"):
        as_scores(None)
    assert np.isnan(as_scores([None, 1.0])[0])  # None for one image is no response


def test_a_scorer_function_that_cannot_take_images_and_ids_is_refused_when_wrapped() -> None:
    """A one-argument function failed with a bare TypeError in the first generation."""
    with pytest.raises(XDreamError, match=r"scorer function <lambda>\(im\) cannot be called as "):
        FunctionScorer(lambda im: im.mean((1, 2, 3)))
    with pytest.raises(XDreamError, match=r"\(images, ids, \*, scale\) cannot be called"):
        FunctionScorer(lambda images, ids, *, scale: images)
    with pytest.raises(XDreamError, match=r"class FixedScorer; give an instance of it"):
        FunctionScorer(FixedScorer)
    with pytest.raises(XDreamError, match=r"must be callable as score\(images, ids\), got int"):
        FunctionScorer(3)  # type: ignore[arg-type]
    # whatever can take two positional arguments is taken as it is
    for fine in (
        lambda images, ids: images,
        lambda images, ids=None, scale=1.0: images,
        lambda *args: args[0],
        FixedScorer(CLEAN).score,
        print,
    ):
        FunctionScorer(fine)


# --------------------------------------------------------------------------- audit M: mutants
def test_what_a_scorer_takes_is_checked_to_the_letter() -> None:
    """A 3-D tensor, ids given as one string, and more ids than images are refused in one line
    by CNNUnitScorer.score and a UnitView (mutants M-I1, M-I3, M-I4)."""
    from xdream.multi import MultiUnitScorer

    unit = CNNUnitScorer(toy(), "2", 1, preprocess=IDENTITY, device="cpu")
    view = MultiUnitScorer(toy(), [("2", 1)], preprocess=IDENTITY, device="cpu").view(0)
    for scorer in (unit, view):
        with pytest.raises(XDreamError, match=r"^images must be a \(n, 3, H, W\) tensor, got \("):
            scorer.score(torch.rand(2, 3, 8), ids(2))
        with pytest.raises(XDreamError, match=r"^ids must be a list of 2 strings.*got str$"):
            scorer.score(images(2), "ab")  # type: ignore[arg-type]
        with pytest.raises(XDreamError, match=r"^got 2 images but 3 ids$"):
            scorer.score(images(2), ids(3))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (torch.ones(2, 3, 8, 8, dtype=torch.bool), r"got bool with values up to 1 \(convert: "),
        (torch.ones(2, 3, 8, 8, dtype=torch.uint8), r"got uint8 with values up to 1 \(convert: "),
        (torch.rand(2, 1, 8, 8), r"got \(2, 1, 8, 8\): grey images \(repeat the channel"),
        (torch.rand(2, 3, 8, 8) * 1.5, r"got values from .* to 1\.\d+ \(clamp or rescale them"),
        (torch.linspace(-1, 255, 384).reshape(2, 3, 8, 8), r"\(clamp or rescale them into"),
        (torch.linspace(-5, 1, 384).reshape(2, 3, 8, 8), r"\(clamp or rescale them into"),
        (
            torch.cat([images(1), torch.full((1, 3, 8, 8), -math.inf)]),
            r"got NaN or inf values in 1 of 2 images",
        ),
    ],
)
def test_images_outside_0_1_get_the_fix_that_fits_them(given: Any, message: str) -> None:
    """0/1 integers are converted, not divided by 255; grey images are named as such; values
    that are neither 0..255 nor -1..1 are clamped or rescaled; -inf alone is named as a
    non-finite value (mutants M-I6, M-I9, M-I11, M-I12, M-I13, M-I14)."""
    unit = CNNUnitScorer(toy(), "2", 1, preprocess=IDENTITY, device="cpu")
    with pytest.raises(XDreamError, match=r"^images must be .*" + message):
        unit.score(given, ids(2))
