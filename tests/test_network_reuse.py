"""Building target networks without waste: EfficientNet-Lite0 without a random initialisation
the file overwrites, batch norms folded without copying the whole network, and one network
per weight file shared by the scorers of a :func:`xdream.networks.reuse` block (xdream tune)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from xdream import config, networks
from xdream.multi import MultiUnitScorer, Unit, fold_batchnorm, shared_scorer
from xdream.networks import cache, efficientnet_lite

pytestmark = pytest.mark.usefixtures("one_thread")

UNITS = [Unit("blocks.10", 3), Unit("blocks.4.project.conv", 1), Unit("head.act", 7)]
KEEP = [u.layer for u in UNITS]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(5, 3, 96, 96, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """The networks ``networks.make`` builds during the test, as (name, weights)."""
    made: list[tuple[str, Any]] = []
    make = networks.make

    def counting(name: str = networks.DEFAULT_NETWORK, weights: Any = None, **kw: Any) -> Any:
        made.append((name, weights))
        return make(name, weights=weights, **kw)

    monkeypatch.setattr(networks, "make", counting)
    yield made


def _old_lite0() -> nn.Module:
    """EfficientNet-Lite0 as it was built before: initialised at random, then loaded."""
    module = efficientnet_lite.EfficientNetLite0()
    efficientnet_lite.load_weights(module, efficientnet_lite.default_weights())
    return module.eval()


def _pointers(module: nn.Module) -> dict[str, int]:
    return {k: t.data_ptr() for k, t in module.state_dict().items()}


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


def _scores(cfg: Any, images: torch.Tensor) -> np.ndarray:
    return shared_scorer(cfg, UNITS).activations(images)


def test_scores_are_the_same_with_and_without_a_shared_network(
    builds: list[tuple[str, Any]], images: torch.Tensor
) -> None:
    """Scores before (a network built for the scorer and folded on a deep copy), without a
    reuse() block, and from the network a block built once: equal to the last bit."""
    cfg = config.from_dict({"target": {"layer": "blocks.10", "device": "cpu"}})
    before = MultiUnitScorer(networks.make(), UNITS, device="cpu").activations(images)
    alone = _scores(cfg, images)
    assert len(builds) == 2
    with networks.reuse():
        first = shared_scorer(cfg, UNITS)
        second = shared_scorer(cfg, UNITS)
        third = _scores(cfg, images)
        assert len(builds) == 3  # one network for the block
        assert cache.kept() == 1
    assert cache.kept() == 0  # dropped with the block
    assert first.module is not second.module  # each scorer its own module and hooks
    shared = "classifier.weight"  # not folded, not 4-D (channels-last copies those): shared
    assert _pointers(first.module)[shared] == _pointers(second.module)[shared]
    for got in (alone, first.activations(images), second.activations(images), third):
        assert np.array_equal(got, before)


def test_a_shared_module_changed_leaves_the_others_as_they_were(
    builds: list[tuple[str, Any]],
) -> None:
    """A scorer moves its module to channels-last and folds it: the next one gets the network
    as built (its own structure, its own Parameter objects)."""
    with networks.reuse():
        first = networks.shared()
        first.module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        first.module.stem.bn = nn.Identity()
        second = networks.shared()
    stem = second.module.get_submodule("stem.conv").weight
    assert stem.is_contiguous() and not first.module.stem.conv.weight.is_contiguous()
    assert isinstance(second.module.get_submodule("stem.bn"), nn.BatchNorm2d)
    assert len(builds) == 1


def _weights_file(path: Path, bias: float) -> None:
    state = efficientnet_lite.efficientnet_lite0().module.state_dict()  # not counted in builds
    state["classifier.bias"] = torch.full_like(state["classifier.bias"], bias)
    torch.save(state, path)


def test_a_weight_file_rewritten_at_the_same_path_is_read_again(
    tmp_path: Path, builds: list[tuple[str, Any]]
) -> None:
    """Same path, same size, and the modification time set back to the old one (a file system
    whose clock ticks coarsely): the digest tells the files apart."""
    path = tmp_path / "lite0.pth"
    _weights_file(path, 1.0)
    builds.clear()
    with networks.reuse():
        first = networks.shared(weights=path)
        assert float(first.module.classifier.bias[0]) == 1.0
        assert networks.shared(weights=path) is not first
        assert len(builds) == 1  # the same file: the same network
        stat = path.stat()
        _weights_file(path, 2.0)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert path.stat().st_size == stat.st_size
        assert path.stat().st_mtime_ns == stat.st_mtime_ns
        second = networks.shared(weights=path)
        assert float(second.module.classifier.bias[0]) == 2.0
        assert len(builds) == 2
        path.unlink()  # gone: building it again says so
        with pytest.raises(Exception, match=r"lite0\.pth"):
            networks.shared(weights=path)
        assert len(builds) == 3


def test_a_reuse_block_keeps_a_few_networks_at_most(
    tmp_path: Path, builds: list[tuple[str, Any]]
) -> None:
    paths = [tmp_path / f"w{i}.pth" for i in range(cache.MAX_NETWORKS + 1)]
    for i, path in enumerate(paths):
        _weights_file(path, float(i))
    builds.clear()
    with networks.reuse():
        with networks.reuse():  # nested: the outer block's networks
            for path in paths:
                networks.shared(weights=path)
        assert cache.kept() == cache.MAX_NETWORKS
        networks.shared(weights=paths[-1])  # kept
        assert len(builds) == len(paths)
        networks.shared(weights=paths[0])  # the least recently used went first
        assert len(builds) == len(paths) + 1
    assert cache.kept() == 0


def test_without_a_reuse_block_every_network_is_built(builds: list[tuple[str, Any]]) -> None:
    first, second = networks.shared(), networks.shared()
    assert len(builds) == 2 and cache.kept() == 0
    assert not set(_pointers(first.module).values()) & set(_pointers(second.module).values())


# ----------------------------------------------------- mutation audit M: the cache's own rules
def _fake_builds(tmp_path: Path) -> tuple[list[tuple[str, Any]], Any, Any]:
    """A tiny network per (name, weights), built by a counting ``make``; ``files`` names one
    file per name (``None``, a network of the user's code, for names starting with "user")."""
    made: list[tuple[str, Any]] = []
    plain = networks.Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=4)

    def make(name: str, weights: Any = None) -> networks.Network:
        made.append((name, weights))
        module = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))
        return networks.Network(module.eval(), plain, name)

    def files(name: str) -> Any:
        def of(weights: Any) -> tuple[Path, ...] | None:
            if name.startswith("user"):
                return None
            path = tmp_path / f"{name}.pth"
            if not path.exists():
                path.write_bytes(b"weights of " + name.encode())
            return (path,)

        return of

    return made, make, files


def test_a_hit_makes_a_network_the_most_recently_used(tmp_path: Path) -> None:
    """The least recently *used* network goes first, not the first built: a, b, a, c drops b."""
    made, make, files = _fake_builds(tmp_path)
    assert cache.MAX_NETWORKS == 2
    with cache.reuse():
        for name in ("a", "b", "a", "c", "a"):
            cache.shared(name, None, make, files(name))
        assert [n for n, _ in made] == ["a", "b", "c"]  # a, used again, was kept
        cache.shared("b", None, make, files("b"))
        assert [n for n, _ in made] == ["a", "b", "c", "b"]
        (tmp_path / "a.pth").write_bytes(b"a rewritten")  # kept: a, b; a built again is newest
        for name in ("a", "c", "a"):
            cache.shared(name, None, make, files(name))
        assert [n for n, _ in made[4:]] == ["a", "c"]  # b went, not the rebuilt a


def test_a_network_of_the_users_code_is_built_every_time_and_names_do_not_mix(
    tmp_path: Path,
) -> None:
    """xdream cannot know what a user's network reads, so it is never kept; two networks
    read from one weight file (same path, same digest) are two networks."""
    made, make, files = _fake_builds(tmp_path)
    with cache.reuse():
        first = cache.shared("user-net", None, make, files("user-net"))
        second = cache.shared("user-net", None, make, files("user-net"))
        assert len(made) == 2 and cache.kept() == 0
        assert first.module is not second.module
        one = tmp_path / "one.pth"
        one.write_bytes(b"shared file")
        a = cache.shared("a", one, make, lambda w: (Path(w),))
        b = cache.shared("b", one, make, lambda w: (Path(w),))
        assert (a.name, b.name) == ("a", "b") and [n for n, _ in made[2:]] == ["a", "b"]


def test_buffers_are_shared_too(tmp_path: Path) -> None:
    """A module handed out shares the kept network's buffers (batch-norm statistics) as well
    as its parameters: nothing of the network is copied but its structure."""
    made, make, files = _fake_builds(tmp_path)
    with cache.reuse():
        first = cache.shared("a", None, make, files("a"))
        second = cache.shared("a", None, make, files("a"))
    assert len(made) == 1 and first.module is not second.module
    assert _pointers(first.module) == _pointers(second.module)
    assert "1.running_mean" in _pointers(first.module)
    # no gradient into the shared tensors (mutation audit M: requires_grad was not checked)
    assert not any(p.requires_grad for p in first.module.parameters())


def test_the_networks_kept_are_dropped_when_a_block_ends_with_an_error(tmp_path: Path) -> None:
    """A reuse block left by an exception drops its networks as a normal end does (mutation
    audit M: a clear after the block's finally kept them until the next block ended)."""
    _, make, files = _fake_builds(tmp_path)
    with pytest.raises(KeyError), cache.reuse():
        cache.shared("a", None, make, files("a"))
        assert cache.kept() == 1
        raise KeyError("a trial failed")
    assert cache.kept() == 0


def test_every_file_a_network_reads_is_checked_for_a_change(tmp_path: Path) -> None:
    """caffenet's deploy.prototxt is one of its files: rewritten, the network is built again."""
    made, make, _ = _fake_builds(tmp_path)
    model, deploy = tmp_path / "net.caffemodel", tmp_path / "deploy.prototxt"
    model.write_bytes(b"model")
    deploy.write_text("layer one")
    with cache.reuse():
        cache.shared("a", model, make, lambda w: (model, deploy))
        cache.shared("a", model, make, lambda w: (model, deploy))
        assert len(made) == 1
        deploy.write_text("layer two")
        cache.shared("a", model, make, lambda w: (model, deploy))
        assert len(made) == 2
    caffemodel = tmp_path / "bvlc.caffemodel"
    caffemodel.write_bytes(b"")
    assert networks.weight_files("caffenet", caffemodel) == (caffemodel, deploy)
    assert networks.weight_files("alexnet", caffemodel) == (caffemodel,)  # torchvision's
    assert networks.weight_files("efficientnet-lite0", caffemodel) == (caffemodel,)
    home = networks.weight_files("efficientnet-lite0", "~/lite0.pth")
    assert home == (Path.home() / "lite0.pth",)  # as make() reads it
    assert networks.weight_files("no-such-built-in", caffemodel) is None
    # a folder given as weights: building the network says what is wrong, not the file check
    assert cache.file_state(tmp_path) == (str(tmp_path), None, None, None)


def test_a_network_of_the_users_code_is_not_folded_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A network registered by the user's code may hand out one module object every time:
    a config's scorer folds its batch norms on a copy, leaving the user's module as it was."""
    for attr in ("_entries", "_summaries", "_definitions"):  # registered for this test only
        monkeypatch.setattr(networks.REGISTRY, attr, dict(getattr(networks.REGISTRY, attr)))
    plain = networks.Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=8)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    module.eval()
    networks.REGISTRY.add(
        "test-reuse-own", lambda weights=None: networks.Network(module, plain, "own")
    )
    cfg = config.from_dict({"target": {"network": "test-reuse-own", "layer": "3", "device": "cpu"}})
    with networks.reuse():
        scorer = shared_scorer(cfg, [Unit("3", 1)])
    assert isinstance(module[1], nn.BatchNorm2d)  # the user's module: not folded
    assert scorer.module is not module
