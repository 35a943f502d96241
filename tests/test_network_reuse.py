"""Building target networks without waste: EfficientNet-Lite0 without a random initialisation
the file overwrites."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from xdream import networks
from xdream.networks import efficientnet_lite

pytestmark = pytest.mark.usefixtures("one_thread")


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
