"""Bad weight files: one XDreamError naming the file, what was expected and what was found."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from xdream import generators, networks
from xdream.cli import main
from xdream.errors import XDreamError
from xdream.networks.efficientnet_lite import default_weights

README = Path(__file__).resolve().parents[1] / "README.md"


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _text(path: Path) -> None:
    path.write_text("hello world\n")


def _readme(path: Path) -> None:
    path.write_bytes(README.read_bytes())


def _legacy_junk(path: Path) -> None:
    path.write_bytes(b"\x80\x02junk")


def _truncated(path: Path) -> None:
    data = default_weights().read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _tensor(path: Path) -> None:
    torch.save(torch.zeros(3), path)


def _pickled_model(path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), path)


def _not_tensors(path: Path) -> None:
    torch.save({"epoch": 3}, path)


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    # name: (writer, what the message says was found)
    "empty": (_empty, r"is empty \(0 bytes\)"),
    "text": (_text, r"text file beginning 'hello world'"),
    "readme": (_readme, r"text file beginning '# xdream'"),
    "legacy-junk": (_legacy_junk, r"cut short or damaged"),
    "truncated": (_truncated, r"cut short or damaged \(unexpected EOF"),
    "tensor": (_tensor, r"holds a Tensor, not a state_dict"),
    "pickled-model": (_pickled_model, r"Python objects other than tensors.*Linear"),
    "not-tensors": (_not_tensors, r"entry 'epoch' is of type int, not a tensor"),
}

EXPECTED = {
    "efficientnet-lite0": r"EfficientNet-Lite0 state_dict",
    "resnet18": r"torchvision resnet18 state_dict",
    "alexnet": r"torchvision alexnet state_dict",
    "caffenet": r"CaffeNet weights",
}


NOT_TORCH = ("empty", "text", "readme")
"""Files that are not torch files: CaffeNet reads them as caffemodels, whose own parser says
what is wrong (tests/test_classic_networks.py)."""


@pytest.mark.parametrize(
    ("network", "kind"),
    [
        (network, kind)
        for network in sorted(EXPECTED)
        for kind in sorted(BAD_FILES)
        if not (network == "caffenet" and kind in NOT_TORCH)
    ],
)
def test_bad_network_weight_file_is_one_clear_error(
    network: str, kind: str, tmp_path: Path
) -> None:
    writer, found = BAD_FILES[kind]
    path = tmp_path / f"{kind}.pth"
    writer(path)
    with pytest.raises(XDreamError) as info:
        networks.make(network, weights=str(path))
    message = str(info.value)
    assert f"{kind}.pth" in message
    assert re_search(found, message), message
    assert re_search(EXPECTED[network], message), message
    assert "weights_only" not in message  # torch's advice to load unsafely is never repeated


def test_bad_generator_weight_file_is_one_clear_error(tmp_path: Path) -> None:
    for kind in ("legacy-junk", "truncated", "tensor", "pickled-model", "not-tensors"):
        writer, found = BAD_FILES[kind]
        path = tmp_path / f"{kind}.pt"
        writer(path)
        with pytest.raises(XDreamError, match=found) as info:
            generators.make("deepsim-fc6", weights=str(path))
        assert "deepsim-fc6 generator's weights" in str(info.value)


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text, re.S) is not None


def test_wrong_shape_names_the_first_mismatch(tmp_path: Path) -> None:
    state = torch.load(default_weights(), map_location="cpu", weights_only=True)
    state["_conv_stem.weight"] = torch.zeros(2, 2)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(
        XDreamError,
        match=r"shape\.pth.*not an EfficientNet-Lite0 checkpoint.*stem\.conv\.weight has shape "
        r"\(2, 2\), expected \(32, 3, 3, 3\)",
    ):
        networks.make("efficientnet-lite0", weights=path)
    caffenet_state = {"conv1.weight": torch.zeros(2)}
    torch.save(caffenet_state, path)
    with pytest.raises(XDreamError, match=r"conv1\.weight has shape \(2,\), expected \(96, 3"):
        networks.make("caffenet", weights=path)


@pytest.mark.parametrize("network", ["efficientnet-lite0", "resnet18", "caffenet"])
def test_a_directory_is_not_reported_missing(network: str, tmp_path: Path) -> None:
    folder = tmp_path / "wdir"
    folder.mkdir()
    with pytest.raises(XDreamError, match=r"'.*wdir'.* is a directory") as info:
        networks.make(network, weights=str(folder))
    assert "does not exist" not in str(info.value)


def test_layers_command_reports_a_bad_file_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "text.pth"
    _text(path)
    for network in ("efficientnet-lite0", "resnet18"):
        assert main(["layers", network, "--weights", str(path)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "text.pth" in err and "torch.save" in err
