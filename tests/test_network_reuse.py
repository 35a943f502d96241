"""Building target networks without waste: EfficientNet-Lite0 without a random initialisation
the file overwrites, and batch norms folded without copying the whole network."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from xdream import config, networks
from xdream.multi import MultiUnitScorer, Unit, fold_batchnorm, shared_scorer
from xdream.networks import efficientnet_lite

pytestmark = pytest.mark.usefixtures("one_thread")

UNITS = [Unit("blocks.10", 3), Unit("blocks.4.project.conv", 1), Unit("head.act", 7)]
KEEP = [u.layer for u in UNITS]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(5, 3, 96, 96, generator=torch.Generator().manual_seed(3))


def _old_lite0() -> nn.Module:
    """EfficientNet-Lite0 as it was built before: initialised at random, then loaded."""
    module = efficientnet_lite.EfficientNetLite0()
    efficientnet_lite.load_weights(module, efficientnet_lite.default_weights())
    return module.eval()


def test_lite0_is_not_initialised_at_random_before_its_weights_are_loaded(
    monkeypatch: pytest.MonkeyPatch, images: torch.Tensor
) -> None:
    """The random initialisation of every layer, which the weight file then overwrote, now runs
    on the meta device (no memory, no arithmetic), and the network built is the one built
    before, tensor for tensor."""
    initialised: list[str] = []
    kaiming = nn.init.kaiming_uniform_

    def record(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        initialised.append(tensor.device.type)
        return kaiming(tensor, *args, **kwargs)

    monkeypatch.setattr(nn.init, "kaiming_uniform_", record)
    new = networks.make().module
    assert initialised and set(initialised) == {"meta"}  # the conv layers, not a real tensor
    assert networks.make(pretrained=False).module is not None
    assert set(initialised) == {"meta", "cpu"}  # without a file they are initialised
    monkeypatch.undo()

    old = _old_lite0()
    new_state, old_state = new.state_dict(), old.state_dict()
    assert list(new_state) == list(old_state)
    for key, value in old_state.items():
        got = new_state[key]
        assert got.device.type == "cpu" and got.dtype == value.dtype, key
        assert got.stride() == value.stride() and torch.equal(got, value), key
    batches = [v for k, v in new_state.items() if k.endswith("num_batches_tracked")]
    assert batches and all(int(v) == 0 for v in batches)  # not left uninitialised
    with torch.inference_mode():
        assert torch.equal(new(images), old(images))


def _pointers(module: nn.Module) -> dict[str, int]:
    return {k: t.data_ptr() for k, t in module.state_dict().items()}


def test_fold_in_place_copies_no_tensor_and_writes_into_none(images: torch.Tensor) -> None:
    """A scorer's own module is folded in place: no copy of the network, and the tensors it
    shares with another module (a reuse() block's network) are not written into."""
    copied, folds = fold_batchnorm(networks.make().module, KEEP)
    module = networks.make().module
    before = {k: v.clone() for k, v in module.state_dict().items()}
    tensors = module.state_dict()  # the tensor objects, which may be shared elsewhere
    pointers = _pointers(module)
    folded, in_place_folds = fold_batchnorm(module, KEEP, in_place=True)
    assert folded is module and in_place_folds == folds > 0
    assert isinstance(module.get_submodule("blocks.3.project.bn"), nn.Identity)
    now = _pointers(module)
    # a folded convolution has new weights; a unit's layer and the classifier keep theirs
    assert now["blocks.3.project.conv.weight"] != pointers["blocks.3.project.conv.weight"]
    for key in ("blocks.4.project.conv.weight", "classifier.weight", "classifier.bias"):
        assert now[key] == pointers[key], key
    assert all(torch.equal(tensors[k], v) for k, v in before.items())  # none written into
    with torch.inference_mode():
        assert torch.equal(copied(images), folded(images))


def test_fold_scales_the_weights_as_the_in_place_multiplication_did() -> None:
    """The fold multiplies into new memory instead of in place: the same products."""
    net = networks.make()
    conv = net.module.get_submodule("stem.conv")
    bn = net.module.get_submodule("stem.bn")
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        expected = conv.weight.clone().mul_(scale.reshape(-1, 1, 1, 1))
    for in_place in (False, True):
        folded = fold_batchnorm(net.module, in_place=in_place)[0]
        assert torch.equal(folded.get_submodule("stem.conv").weight, expected)


def test_scores_are_the_same_as_from_a_scorer_folded_on_a_copy(images: torch.Tensor) -> None:
    cfg = config.from_dict({"target": {"layer": "blocks.10", "device": "cpu"}})
    before = MultiUnitScorer(networks.make(), UNITS, device="cpu").activations(images)
    assert np.array_equal(shared_scorer(cfg, UNITS).activations(images), before)
