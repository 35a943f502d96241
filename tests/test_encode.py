"""``xdream encode``: images become codes, and experiments start from them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import xdream.optimizers
from xdream import config as config_mod
from xdream import encode, generators
from xdream.cli import main
from xdream.errors import XDreamError
from xdream.experiment import INIT_CODES_FILE, Experiment

PHOTO = "skimage:chelsea"
# The photo is a cat: the embedded network's "Egyptian cat" output (ImageNet class 285) is a unit
# for which it is a good stimulus (random Fourier images score about 0 there, the photo about 9).
CAT_UNIT = {"network": "efficientnet-lite0", "layer": "classifier", "channel": 285}
# Errors stated in README.md ("Initial codes, reports and renders"), with some slack; a mid-grey
# image is at RMSE 0.175 from the photo.
MAX_RMSE = {"fourier": 0.05, "pixels": 0.075}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Small tensors: one thread is faster, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["fourier", "pixels"])
def test_encoding_a_photo_reconstructs_it(name: str) -> None:
    gen = generators.make(name)
    photo = encode.load_image(PHOTO, gen.output_size)
    grey = float((photo - 0.5).pow(2).mean().sqrt())
    out = encode.encode(gen, photo, steps=150)
    assert out.codes.shape == (1, gen.code_dim)
    assert out.rmse[0] < MAX_RMSE[name] < grey / 2
    # the error is that of the recorded code, rendered again
    again = gen.generate(out.codes)
    assert float((again - out.targets).pow(2).mean().sqrt()) == pytest.approx(out.rmse[0], rel=1e-4)
    assert out.losses[-1] < out.losses[0] / 5


def test_feature_loss_brings_features_closer() -> None:
    gen = generators.make("pixels", size=64, code_size=16)
    photo = encode.load_image(PHOTO, gen.output_size)
    features = encode.LayerFeatures("efficientnet-lite0", "blocks.1")
    pixel_only = encode.encode(gen, photo, steps=15, lr=0.3)
    with_features = encode.encode(gen, photo, steps=15, lr=0.3, features=features, feature_weight=5)
    with torch.no_grad():
        target = features(pixel_only.targets)

        def distance(images: torch.Tensor) -> float:
            return float((features(images) - target).pow(2).mean())

    assert distance(with_features.reconstructions) < distance(pixel_only.reconstructions)


def test_encode_command_writes_codes_reconstructions_and_errors(tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "flat.png"
    Image.new("RGB", (40, 30), (200, 50, 50)).save(image)
    out = tmp_path / "codes"
    args = ["encode", str(image), PHOTO, "--generator", "pixels", "--param", "size=32"]
    args += ["--param", "code_size=8", "--steps", "100", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 0
    with h5py.File(out / "codes.h5") as f:
        codes = f["codes"][:]
        names = [n.decode() for n in f["names"][:]]
        rmse = f["rmse"][:]
        spec = json.loads(f.attrs["generator"])
    assert codes.shape == (2, 192) and names == ["flat", "chelsea"]
    assert spec == {"name": "pixels", "size": 32, "code_size": 8}
    assert rmse[0] < 0.01  # a flat colour is exactly representable
    report = json.loads((out / "encode.json").read_text())
    assert [i["rmse"] for i in report["images"]] == pytest.approx(rmse.tolist())
    for name in names:
        assert (out / f"{name}_reconstruction.png").exists() and (
            out / f"{name}_target.png"
        ).exists()
    gen = generators.make("pixels", size=32, code_size=8)
    np.testing.assert_array_equal(encode.load_codes(out, gen), codes)


def test_encode_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["encode", "skimage:nocat", "--out", str(tmp_path / "o")]) == 2
    assert "skimage:chelsea" in capsys.readouterr().err
    assert main(["encode", PHOTO, "--device", "gpu0", "--out", str(tmp_path / "o")]) == 2
    assert "use 'cpu', 'cuda' or 'auto'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["encode", PHOTO, "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_encode_on_cuda_matches_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same fit on the GPU: the same reconstruction error (codes may drift apart a little
    over Adam's steps, the fit's quality does not)."""
    rmse = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        args = ["encode", PHOTO, "--generator", "fourier", "--steps", "50", "--out", str(out)]
        assert main([*args, "--device", device]) == 0
        assert f"on {device}" in capsys.readouterr().out
        rmse[device] = json.loads((out / "encode.json").read_text())["images"][0]["rmse"]
    assert rmse["cuda"] == pytest.approx(rmse["cpu"], rel=1e-3)


def test_load_codes_checks_dimension_and_generator(tmp_path: Path) -> None:
    pixels = generators.make("pixels", size=16, code_size=4)  # 48 entries
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "b.npy", np.ones((2, 48), np.float32))
    np.save(folder / "a.npy", np.zeros(48, np.float32))  # one code; read first (name order)
    codes = encode.load_codes(folder, pixels)
    assert codes.shape == (3, 48) and codes[0].sum() == 0 and codes[1:].min() == 1
    with pytest.raises(XDreamError, match="takes 591"):
        encode.load_codes(folder, generators.make("fourier", size=64, max_freq=8))
    # codes.h5 remembers its generator: same dimension, other generator, refused
    result = encode.encode(pixels, torch.rand(1, 3, 16, 16), steps=2)
    encode.save(tmp_path / "enc", result, ["x"], pixels)
    with h5py.File(tmp_path / "enc" / "codes.h5", "a") as f:
        f.attrs["generator"] = json.dumps({"name": "cppn"})
    with pytest.raises(XDreamError, match="encoded for generator 'cppn'"):
        encode.load_codes(tmp_path / "enc", pixels)
    with pytest.raises(XDreamError, match="not found"):
        encode.load_codes(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(XDreamError, match="holds no codes"):
        encode.load_codes(tmp_path / "empty")


@pytest.mark.parametrize("name", xdream.optimizers.names())
def test_every_optimizer_starts_from_init_codes(name: str) -> None:
    if name == "nevergrad":
        pytest.importorskip("nevergrad", reason="optional extra xdream[nevergrad]")
    dim = 16
    rng = np.random.default_rng(1)
    loaded = (5.0 + 0.1 * rng.standard_normal((3, dim))).astype(np.float32)
    centre = loaded.mean(axis=0)
    opt = xdream.optimizers.make(name, dim=dim, seed=0, init_codes=loaded)
    first = opt.ask()
    # the first generation sits around the loaded codes, not around the default start (0);
    # sphere-cma's samples lie on a sphere, 50 degrees from its mean, so their average is
    # shorter than the mean: compare directions there
    average = first.mean(axis=0)
    if name == "sphere-cma":
        cosine = average @ centre / (np.linalg.norm(average) * np.linalg.norm(centre))
        assert cosine > 0.95
    else:
        assert np.linalg.norm(average - centre) < 0.25 * np.linalg.norm(centre)
    if name == "genetic":
        np.testing.assert_array_equal(first[:3], loaded)  # seeded with the codes themselves
    if hasattr(opt, "mean"):  # mean-based optimisers start from the codes' mean
        np.testing.assert_allclose(opt.mean, centre, rtol=1e-6)


def _cat_config(generator: dict[str, object], init_codes: str | None) -> config_mod.Config:
    experiment: dict[str, object] = {"seed": 0, "generations": 1, "n_references": 0}
    if init_codes is not None:
        experiment["init_codes"] = init_codes
    return config_mod.from_dict(
        {
            "experiment": experiment,
            "generator": generator,
            "optimizer": {"name": "genetic", "population_size": 10},
            "target": CAT_UNIT,
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "generator", [{"name": "fourier"}, {"name": "pixels"}], ids=["fourier", "pixels"]
)
def test_experiment_from_encoded_photo_begins_above_random(
    tmp_path: Path, generator: dict[str, str]
) -> None:
    codes = tmp_path / "codes"
    assert main(["encode", PHOTO, "--generator", generator["name"], "--steps", "150",
                 "--out", str(codes)]) == 0  # fmt: skip
    seeded = Experiment.from_config(_cat_config(generator, str(codes)), tmp_path / "seeded")
    plain = Experiment.from_config(_cat_config(generator, None), tmp_path / "random")
    from_photo, from_random = seeded.run(), plain.run()
    assert (
        from_photo["first_generation_best_score"] > from_random["first_generation_best_score"] + 2
    )
    # the codes travel with the run, so it is rebuilt (resumed) without the codes folder
    saved = np.load(tmp_path / "seeded" / INIT_CODES_FILE)
    np.testing.assert_array_equal(saved, encode.load_codes(codes))
    shutil.rmtree(codes)
    rebuilt = Experiment.from_config(_cat_config(generator, str(codes)), tmp_path / "seeded")
    assert rebuilt.init_codes is not None and np.array_equal(rebuilt.init_codes, saved)
