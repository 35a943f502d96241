"""The weight catalogue, `xdream list`, and a config-driven DeePSiM-fc6 + CaffeNet experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.test_classic_networks import caffenet_file  # noqa: F401  (shared fixture)
from tests.test_deepsim import fc6_files  # noqa: F401  (shared fixture)
from xdream import cli, config, generators, networks, records, weights
from xdream.errors import ConfigError, MissingFileError
from xdream.experiment import Experiment


@pytest.fixture
def catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "weights.toml"
    monkeypatch.setenv(weights.ENV_VAR, str(path))
    return path


def test_catalogue_lives_in_the_user_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/somewhere/config")
    if weights.sys.platform.startswith("linux"):
        assert weights.catalogue_path() == Path("/somewhere/config/xdream/weights.toml")
    monkeypatch.setenv(weights.ENV_VAR, "/elsewhere/w.toml")
    assert weights.catalogue_path() == Path("/elsewhere/w.toml")


def test_catalogue_resolves_names_relative_paths_and_explicit_files(
    catalogue: Path, tmp_path: Path
) -> None:
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "fc6.caffemodel").write_bytes(b"x")
    (tmp_path / "fc7.pt").write_bytes(b"x")
    catalogue.write_text(
        'deepsim-fc6 = { weights = "gen/fc6.caffemodel", prototxt = "gen/g.prototxt" }\n'
        f'deepsim-fc7 = "{tmp_path / "fc7.pt"}"\n'
        'caffenet = "missing.caffemodel"\n'
    )
    fc6 = weights.resolve("deepsim-fc6")
    assert (fc6.path, fc6.prototxt, fc6.origin) == (
        tmp_path / "gen" / "fc6.caffemodel",
        tmp_path / "gen" / "g.prototxt",
        "catalogue",
    )
    assert weights.resolve("deepsim-fc7").path == tmp_path / "fc7.pt"
    # an explicit file (Python argument or experiment config) beats the catalogue
    assert weights.resolve("deepsim-fc6", tmp_path / "fc7.pt").origin == "argument"
    with pytest.raises(MissingFileError, match=r"missing\.caffemodel.*does not exist.*Model Zoo"):
        weights.resolve("caffenet")
    with pytest.raises(MissingFileError, match=r"no weight file for 'deepsim-fc8'.*weights\.toml"):
        generators.make("deepsim-fc8")
    with pytest.raises(MissingFileError, match=r"alexnet-owt-7be5be79\.pth.*download\.pytorch"):
        networks.make("alexnet")


def test_bad_catalogue_is_a_config_error(catalogue: Path) -> None:
    catalogue.write_text("deepsim-fc6 = 3\n")
    with pytest.raises(ConfigError, match="entry 'deepsim-fc6' must be a path or a table"):
        weights.resolve("deepsim-fc6")
    catalogue.write_text("deepsim-fc6 = [\n")
    with pytest.raises(ConfigError, match="cannot parse the weight catalogue"):
        weights.resolve("deepsim-fc6")
    catalogue.unlink()
    with pytest.raises(MissingFileError, match="XDREAM_WEIGHTS names the weight catalogue"):
        weights.resolve("deepsim-fc6")


def test_list_shows_found_and_missing_files(
    catalogue: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "n1.pt").write_bytes(b"x")
    catalogue.write_text(f'deepsim-norm1 = "{tmp_path / "n1.pt"}"\n')
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│ ")}
    assert f"found (catalogue): {tmp_path / 'n1.pt'}" in lines["deepsim-norm1"]
    assert (
        'missing: expected `deepsim-fc6 = "/path/to/generator.caffemodel"`' in lines["deepsim-fc6"]
    )
    assert str(tmp_path / "torch/hub/checkpoints/resnet50-0676ba61.pth") in lines["resnet50"]
    # "~" in TORCH_HOME (as a .env or systemd unit may write it) is expanded, as torch does
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", "~/th")
    (tmp_path / "th/hub/checkpoints").mkdir(parents=True)
    (tmp_path / "th/hub/checkpoints/resnet50-0676ba61.pth").write_bytes(b"x")
    status = weights.resolve("resnet50")
    assert status.path == tmp_path / "th/hub/checkpoints/resnet50-0676ba61.pth"
    assert "no weight file needed" in lines["fourier"]
    assert f"weight catalogue: {catalogue}" in out


@pytest.mark.slow
def test_config_fc6_with_ga_preset_and_caffenet_target(
    fc6_files: dict[str, Path],  # noqa: F811
    caffenet_file: tuple,  # noqa: F811
    tmp_path: Path,
    catalogue: Path,
) -> None:
    catalogue.write_text(f'caffenet = "{caffenet_file[0]}"\n')  # the target via the catalogue
    cfg_path = tmp_path / "fc6.toml"
    cfg_path.write_text(
        f"""
[experiment]
seed = 1
generations = 2
n_references = 2

[generator]
name = "deepsim-fc6"
weights = "{fc6_files["caffe"]}"
init = "stats"

[optimizer]
preset = "deepsim-fc6"
population_size = 8

[target]
network = "caffenet"
layer = "fc8"
channel = 1
"""
    )
    cfg = config.load(cfg_path)
    assert cfg.optimizer["name"] == "genetic" and cfg.optimizer["preset"] == "deepsim-fc6"
    assert (cfg.optimizer["mutation_rate"], cfg.optimizer["selectivity"]) == (0.5, 2.0)
    summary = Experiment.from_config(cfg, tmp_path / "run").run()
    assert summary["generations"] == 2 and summary["presentations"] == 16
    assert summary["generator"] == "deepsim-fc6" and summary["code_dim"] == 4096
    rec = records.read(tmp_path / "run")
    first = rec.codes[rec.generation == 0]
    assert first.shape == (8, 4096) and rec.genealogy[0] == "loaded"
    assert first.min() == 0.0 and (first > 0).mean() < 0.3  # post-ReLU statistics, not N(0, 1)
    assert np.isfinite(rec.scores).all()
    assert (tmp_path / "run" / "best.png").exists()
    # the resolved config round-trips (resume rebuilds the same experiment)
    again = config.load(tmp_path / "run" / "config.yaml")
    assert again.optimizer == cfg.optimizer and again.generator == cfg.generator


def test_the_catalogue_names_efficientnet_weights_and_list_warns_about_typos(
    catalogue: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A catalogue entry for the default network is used (it was ignored without a word), a
    missing one stops with the catalogue's message, and `xdream list` points out names that
    nothing reads."""
    import torch

    from xdream.networks.efficientnet_lite import default_weights

    state = torch.load(default_weights(), weights_only=True)
    state = {k: v * 0.5 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, tmp_path / "lite0-halved.pth")
    catalogue.write_text(
        'efficientnet-lite0 = "lite0-halved.pth"\ndeepsim-fc9 = "/data/fc9.caffemodel"\n'
    )
    net = networks.make("efficientnet-lite0")
    assert net.weights == str(tmp_path / "lite0-halved.pth")
    first = net.module.state_dict()["stem.conv.weight"]
    packaged = networks.make("efficientnet-lite0", weights=default_weights())
    torch.testing.assert_close(first, packaged.module.state_dict()["stem.conv.weight"] * 0.5)

    assert cli.main(["list"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "found (catalogue)" in out
    assert "the weight catalogue names 'deepsim-fc9', which is no generator or network" in out
    assert "Did you mean 'deepsim-fc8'" in out or "Did you mean 'deepsim-fc6'" in out

    catalogue.write_text('efficientnet-lite0 = "/no/such/lite0.pth"\n')
    with pytest.raises(MissingFileError, match=r"/no/such/lite0\.pth"):
        networks.make("efficientnet-lite0")
