"""``xdream encode``: images become codes, and experiments start from them."""

from __future__ import annotations

import json
import shutil
import warnings
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


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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


def test_the_feature_layer_sees_what_the_network_scores() -> None:
    """LayerFeatures runs the network on images in [0, 1] as a scorer does, its preprocessing
    included (mutation audit F: the raw images passed the tests above)."""
    from xdream.scorers import make_unit

    photo = encode.load_image(PHOTO, (224, 224))
    features = encode.LayerFeatures(CAT_UNIT["network"], CAT_UNIT["layer"])
    with torch.no_grad():
        cat = float(features(photo)[0, CAT_UNIT["channel"]])
    # on the CPU, as LayerFeatures runs (CUDA's TF32 convolutions differ by ~5e-4)
    score = make_unit(**CAT_UNIT, device="cpu").score(photo, ["chelsea"])[0]  # type: ignore[arg-type]
    assert cat == pytest.approx(float(score), rel=1e-4) and cat > 5


def test_encode_names_what_it_was_given_instead_of_images() -> None:
    """A NumPy array got "must be a (n, 3, H, W) tensor, got (1, 3, 16, 16)", the right shape;
    uint8 images (0..255) were fitted without a word."""
    gen = generators.make("pixels", size=16, code_size=4)
    with pytest.raises(XDreamError, match=r"got a numpy.ndarray of shape \(1, 3, 16, 16\)"):
        encode.encode(gen, np.zeros((1, 3, 16, 16), np.float32))  # type: ignore[arg-type]
    with pytest.raises(XDreamError, match=r"float RGB in \[0, 1\], got uint8 .*divide by 255"):
        encode.encode(gen, torch.full((1, 3, 16, 16), 200, dtype=torch.uint8))


def test_fitted_codes_stay_within_the_generators_bounds() -> None:
    """DeePSiM clamps codes to lower/upper before rendering; the fit keeps them inside (a code
    past a bound would be stuck there, and the saved codes would not be what it draws)."""
    from xdream.generators.deepsim import DeePSiMNorm1, DeePSiMParams

    torch.manual_seed(0)
    gen = DeePSiMNorm1(DeePSiMParams(lower=0.1, upper=0.25), pretrained=False)
    out = encode.encode(gen, torch.rand(1, 3, 240, 240), steps=3, lr=0.1)
    assert out.codes.min() >= 0.1 and out.codes.max() <= 0.25
    assert 0.1 < out.codes.mean() < 0.25  # moved inside the bounds, not only onto them
    # the zero code is put onto the bounds before the first step, which then moves it
    # (mutation audit F: from outside, the clamped forward gave no gradient to that step)
    first = encode.encode(gen, torch.rand(1, 3, 240, 240), steps=1, lr=0.1).codes
    assert (first > 0.1).mean() > 0.2


def test_one_step_of_the_fit_follows_its_definition() -> None:
    """From the zero code (mid-grey for pixels), the first loss is the pixel MSE plus
    ``feature_weight`` times the feature MSE over the target's mean squared feature; Adam's
    first step moves every entry by the learning rate downhill; RMSE and PSNR are those of the
    reconstruction, image by image. Mutation audit F: an L1 pixel loss, the feature loss not
    normalised or not weighted, a random start, the learning rate ignored and PSNR at 10 log10
    all passed the tests."""
    gen = generators.make("pixels", size=4, code_size=4)  # the code is the image's logits
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    x[x.sub(0.5).abs() < 0.02] = 0.7  # a clear downhill direction for every entry
    lr, weight = 0.05, 3.0
    pool = torch.nn.AvgPool2d(2)  # any differentiable module serves as features
    out = encode.encode(gen, x, steps=1, lr=lr, features=pool, feature_weight=weight)
    feature_loss = (pool(torch.full_like(x, 0.5)) - pool(x)).pow(2).mean() / pool(x).pow(2).mean()
    expected = (x - 0.5).pow(2).mean() + weight * feature_loss
    assert out.losses.tolist() == pytest.approx([float(expected)], rel=1e-5)
    out = encode.encode(gen, x, steps=1, lr=lr)  # pixels only
    assert out.losses[0] == pytest.approx(float((x - 0.5).pow(2).mean()), rel=1e-5)
    unweighted = encode.encode(gen, x, steps=1, lr=lr, features=pool, feature_weight=0)
    assert unweighted.losses.tolist() == out.losses.tolist()  # 0 fits pixels only
    step = lr * torch.sign(x - 0.5).reshape(2, -1)
    np.testing.assert_allclose(out.codes, step.numpy(), rtol=1e-3)
    recon = torch.sigmoid(torch.from_numpy(out.codes)).reshape(2, 3, 4, 4).double()
    rmse = (recon - x).pow(2).mean(dim=(1, 2, 3)).sqrt()
    np.testing.assert_allclose(out.rmse, rmse.numpy(), rtol=1e-5)
    np.testing.assert_allclose(out.psnr, (20 * torch.log10(1 / rmse)).numpy(), rtol=1e-5)


class _Gain(generators.Generator):  # type: ignore[misc]
    """A user's differentiable generator with a trainable parameter of its own."""

    name = "gain"

    def __init__(self) -> None:
        super().__init__(None)
        self.code_dim, self.output_size = 3, (2, 2)
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(codes * self.gain)[:, :, None, None].expand(-1, 3, 2, 2)


def test_a_generator_that_is_not_differentiable_is_refused() -> None:
    class Fixed(_Gain):
        name, differentiable = "fixed", False

    with pytest.raises(XDreamError, match="'fixed' is not differentiable"):
        encode.encode(Fixed(), torch.full((1, 3, 2, 2), 0.7), steps=1)


def test_encode_fits_codes_only_and_gives_the_generator_back_as_it_was() -> None:
    """The generator's own parameters get no gradient during the fit and are trainable again
    afterwards (mutation audit F: left frozen)."""
    gen = _Gain()
    encode.encode(gen, torch.full((1, 3, 2, 2), 0.7), steps=2)
    assert gen.gain.requires_grad and gen.gain.grad is None and float(gen.gain.detach()) == 1.0


def test_images_are_centre_cropped_to_the_aspect_ratio_and_resized_smoothly(
    tmp_path: Path,
) -> None:
    """load_image crops the middle of the image to the aspect ratio of ``size`` (rows for a tall
    one, columns for a wide one) and encode resizes targets without aliasing (mutation audit F:
    a crop from the corner, the ratio inverted and a nearest-neighbour resize all passed)."""
    from PIL import Image

    bands = np.zeros((12, 12, 3), np.uint8)
    bands[:4, :, 0] = bands[4:8, :, 1] = bands[8:, :, 2] = 255  # red, green, blue rows
    Image.fromarray(bands).save(tmp_path / "rows.png")
    Image.fromarray(bands.transpose(1, 0, 2).copy()).save(tmp_path / "columns.png")
    Image.fromarray(bands.transpose(1, 0, 2)[4:8].copy()).save(tmp_path / "wide.png")  # 4 x 12
    green = torch.tensor([0.0, 1.0, 0.0])[:, None, None]
    for file, size in (("rows.png", (4, 12)), ("columns.png", (12, 4)), ("wide.png", (4, 4))):
        image = encode.load_image(str(tmp_path / file), size)[0]
        torch.testing.assert_close(image, green.expand(3, *size), atol=1e-6, rtol=0)
    # a one-pixel checkerboard at twice the generator's size is mid-grey at its size
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float()
    gen = generators.make("pixels", size=8, code_size=8)
    targets = encode.encode(gen, checker.expand(1, 3, 16, 16), steps=1).targets
    torch.testing.assert_close(targets[..., 1:-1, 1:-1], torch.full((1, 3, 6, 6), 0.5))


def test_save_records_the_last_loss(tmp_path: Path) -> None:
    gen = generators.make("pixels", size=4, code_size=2)
    result = encode.encode(gen, torch.rand(1, 3, 4, 4), steps=3)
    encode.save(tmp_path / "enc", result, ["a"], gen)
    report = json.loads((tmp_path / "enc" / "encode.json").read_text())
    assert report["final_loss"] == pytest.approx(result.losses[-1]) != result.losses[0]


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
    assert main(["encode", PHOTO, "--feature-layer", "", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has no layer ''" in err and "Did you mean" not in err and "xdream layers" in err
    assert main(["encode", PHOTO, "--device", "gpu0", "--out", str(tmp_path / "o")]) == 2
    assert "use 'cpu', 'cuda' (or 'cuda:N', the Nth GPU) or 'auto'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["encode", PHOTO, "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "name",
    [
        "nocat",
        "data_dir",
        "stereo_motorcycle",
        "cells3d",
        "lfw_subset",
        "download_all",
        "horse",  # bundled, but a boolean mask
        "shepp_logan_phantom",  # bundled, but float64
    ],
)
def test_skimage_names_other_than_bundled_photos_are_refused(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """skimage.data also holds strings, tuples, 3-D stacks, downloads and a downloader: only
    the bundled 8-bit grey and colour photos are read, and nothing else is called."""
    import skimage.data

    from xdream.references import BUNDLED, PHOTOS

    monkeypatch.setattr(skimage.data, "download_all", lambda *a, **k: pytest.fail("download"))
    with pytest.raises(
        XDreamError,
        match=rf"only the 8-bit grey and colour pictures .*'{name}' is not one of them.*"
        r"one of astronaut, .*skimage:chelsea",
    ):
        encode.load_image(f"skimage:{name}", (16, 16))
    assert set(PHOTOS) <= set(BUNDLED)
    for photo in BUNDLED:
        image = encode.load_image(f"skimage:{photo}", (8, 8))
        assert image.shape == (1, 3, 8, 8) and 0 <= float(image.min()) <= float(image.max()) <= 1


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


def test_codes_of_max_freq_15_are_refused_by_name_at_128_px(tmp_path: Path) -> None:
    """Codes encoded at 32 px have fourier's max_freq 15, and at 128 px it is 16: the refusal
    names max_freq, as docs/config.md says (mutation audit F: only the dimension was named);
    no codes at all are refused too."""
    small = generators.make("fourier", size=32)
    encode.save(
        tmp_path / "enc", encode.encode(small, torch.rand(1, 3, 32, 32), steps=1), ["x"], small
    )
    with pytest.raises(XDreamError, match=r"max_freq=15.*max_freq=16.*max_freq = 15"):
        encode.load_codes(tmp_path / "enc", generators.make("fourier"))
    np.save(tmp_path / "none.npy", np.zeros((0, 3)))
    with pytest.raises(XDreamError, match=r"must be \(n, d\) with n >= 1, got \(0, 3\)"):
        encode.load_codes(tmp_path / "none.npy")


def test_npy_codes_of_any_numeric_dtype_load_as_float32(tmp_path: Path) -> None:
    """Codes are float32 (n, d) whatever the .npy held (mutation audit F: float64 came through)."""
    np.save(tmp_path / "a.npy", np.array([0.1, 2.0, -3.0]))  # float64, one code
    np.save(tmp_path / "b.npy", np.array([[1, 2, 3]]))  # integers
    codes = encode.load_codes(tmp_path)
    assert codes.dtype == np.float32 and codes.shape == (2, 3)
    np.testing.assert_array_equal(codes, np.float32([[0.1, 2.0, -3.0], [1, 2, 3]]))


def test_unreadable_codes_are_one_error_naming_the_file(tmp_path: Path) -> None:
    def folder(name: str, files: dict[str, bytes | np.ndarray]) -> Path:
        (tmp_path / name).mkdir()
        for file, content in files.items():
            if isinstance(content, bytes):
                (tmp_path / name / file).write_bytes(content)
            else:
                np.save(tmp_path / name / file, content, allow_pickle=True)
        return tmp_path / name

    codes = np.zeros(48, np.float32)
    np.save(tmp_path / "ok.npy", codes)
    cases = [
        (folder("lengths", {"a.npy": np.zeros(4), "b.npy": np.zeros(5)}), r"a\.npy.*4.*b\.npy.*5"),
        (folder("garbage", {"a.npy": codes, "b.npy": b"garbage"}), r"b\.npy.*cannot be read"),
        (folder("pickled", {"a.npy": np.array([{"a": 1}])}), r"a\.npy.*cannot be read"),
        (folder("cut", {"a.npy": (tmp_path / "ok.npy").read_bytes()[:100]}), r"a\.npy"),
        (folder("text", {"a.npy": np.array(["x", "y"])}), r"a\.npy.*holds a <U1 array"),
        (folder("cube", {"a.npy": np.zeros((2, 2, 2))}), r"a\.npy.*shape \(2, 2, 2\)"),
    ]
    gen = generators.make("pixels", size=16, code_size=4)
    encode.save(tmp_path / "enc", encode.encode(gen, torch.rand(1, 3, 16, 16), steps=1), ["x"], gen)
    good = (tmp_path / "enc" / "codes.h5").read_bytes()
    cases.append((folder("h5cut", {"codes.h5": good[:3000]}), r"codes\.h5.*cannot be read"))
    bad_json = folder("h5json", {"codes.h5": good})
    with h5py.File(bad_json / "codes.h5", "a") as f:
        f.attrs["generator"] = "{bad json"
    cases.append((bad_json, r"codes\.h5.*attribute 'generator' is not the JSON object"))
    for path, message in cases:
        with pytest.raises(XDreamError, match=message) as err:
            encode.load_codes(path, gen)
        assert "allow_pickle" not in str(err.value), path


def test_load_codes_refuses_other_image_parameters(tmp_path: Path) -> None:
    """Codes draw other images under other generator parameters: codes.h5 records them, and
    a difference is refused by name (the resolution and the weight file's path are not)."""
    gen = generators.make("fourier", size=32, decay_power=0.5, contrast=6)
    encode.save(tmp_path / "enc", encode.encode(gen, torch.rand(1, 3, 32, 32), steps=1), ["x"], gen)
    with pytest.raises(XDreamError) as err:
        encode.load_codes(tmp_path / "enc", generators.make("fourier", size=32))
    message = str(err.value)
    assert "decay_power=0.5, contrast=6" in message and "decay_power=1.5, contrast=2.5" in message
    assert "decay_power = 0.5; contrast = 6" in message and "encode the images again" in message
    assert "saturation" not in message
    larger = generators.make("fourier", size=64, max_freq=15, decay_power=0.5, contrast=6)
    assert encode.load_codes(tmp_path / "enc", larger).shape == (1, gen.code_dim)

    from xdream.generators.deepsim import DeePSiMFc8, DeePSiMParams

    def codes_h5(name: str, spec: dict[str, object]) -> Path:
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["codes"] = np.zeros((1, 1000), np.float32)
            f.attrs["generator"] = json.dumps(spec)
        return tmp_path / f"{name}.h5"

    stored = {
        "name": "deepsim-fc8",
        "weights": "old/fc8.caffemodel",
        "lower": None,
        "init": "normal",
    }
    fc8 = DeePSiMFc8(
        DeePSiMParams(weights="fc8.pt", lower=0.0, init="stats", init_mean=0, init_std=1),
        pretrained=False,
    )
    with pytest.raises(XDreamError, match=r"lower=none.*lower=0\.0.*\(\[generator\]: no lower\)"):
        encode.load_codes(codes_h5("bounds", stored), fc8)
    fc8 = DeePSiMFc8(DeePSiMParams(weights="fc8.pt"), pretrained=False)
    with pytest.warns(UserWarning, match=r"weights \"old/fc8.caffemodel\".*\"fc8.pt\""):
        encode.load_codes(codes_h5("weights", stored), fc8)
    # codes.h5 of other xdream versions: parameters only one side knows are not compared
    old = codes_h5("old", {"name": "deepsim-fc8", "removed_key": 1})
    assert encode.load_codes(old, fc8).shape == (1, 1000)
    # weights are compared as files, not spellings: the catalogue's file (weights unset) is
    # named as such ("reads none" before), and one file spelt two ways is the same network
    file = tmp_path / "w" / "fc8.caffemodel"
    file.parent.mkdir()
    file.write_bytes(b"")
    named = {**stored, "weights": str(file)}
    from_catalogue = DeePSiMFc8(DeePSiMParams(), pretrained=False)
    from_catalogue.weights_file = str(tmp_path / "w" / ".." / "w" / "fc8.caffemodel")
    respelt = DeePSiMFc8(DeePSiMParams(weights=f"{tmp_path}/w/./fc8.caffemodel"), pretrained=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for same in (from_catalogue, respelt):
            assert encode.load_codes(codes_h5("named", named), same).shape == (1, 1000)
    from_catalogue.weights_file = str(tmp_path / "other.caffemodel")
    with pytest.warns(UserWarning, match=r"reads \".*other.caffemodel\" \(the catalogue's\)"):
        encode.load_codes(codes_h5("named", named), from_catalogue)
    # codes.h5 records the file the encoding generator read: the same relative spelling in
    # another folder is another file, and another spelling of that file is the same
    read = codes_h5("read", {**stored, "weights": "w/fc8.caffemodel"})
    with h5py.File(read, "a") as f:
        f.attrs["weights_file"] = str(file)
    elsewhere = DeePSiMFc8(DeePSiMParams(weights="w/fc8.caffemodel"), pretrained=False)
    elsewhere.weights_file = str(tmp_path / "x" / "w" / "fc8.caffemodel")
    with pytest.warns(UserWarning, match=f'the weights "{file}", and .* reads'):
        encode.load_codes(read, elsewhere)
    elsewhere.weights_file = f"{tmp_path}/w/../w/fc8.caffemodel"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode.load_codes(read, elsewhere)
    pixels = generators.make("pixels", size=16, code_size=4)
    pixels.weights_file = f"{tmp_path}/w/../w/fc8.caffemodel"  # as a DeePSiM generator has
    encode.save(
        tmp_path / "enc2", encode.encode(pixels, torch.zeros(1, 3, 16, 16), steps=1), ["a"], pixels
    )
    with h5py.File(tmp_path / "enc2" / "codes.h5") as f:
        assert f.attrs["weights_file"] == str(file)
    # a generator built in Python from its Params with NumPy values (generators.make converts
    # them): its parameters are not compared, and a warning says so (a TypeError before)
    for lower in (np.float32(0.0), np.zeros(1000)):
        numpy_fc8 = DeePSiMFc8(DeePSiMParams(lower=lower), pretrained=False)
        with pytest.warns(UserWarning, match="without comparing the parameters"):
            assert encode.load_codes(codes_h5("bounds", stored), numpy_fc8).shape == (1, 1000)


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


# --------------------------------------------------------------------------- input images
def _ramp() -> np.ndarray:
    """A 16-bit greyscale ramp, mean about half of full scale."""
    return (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)


def _save_mode(path: Path, mode: str) -> float:
    """Save the ramp as a greyscale image of PIL ``mode``; returns its true mean in [0, 1]."""
    from PIL import Image

    ramp = _ramp()
    if mode == "I;16":
        image = Image.fromarray(ramp)
    elif mode == "I;16B":
        image = Image.frombytes("I;16B", (64, 64), ramp.astype(">u2").tobytes())
    elif mode == "I":
        image = Image.fromarray(ramp.astype(np.int32))
    else:
        image = Image.fromarray(ramp.astype(np.float32) / 65535)
    image.save(path)
    assert Image.open(path).mode == mode
    return float(ramp.mean() / 65535)


@pytest.mark.parametrize(
    ("mode", "suffix"), [("I;16", ".png"), ("I;16B", ".tif"), ("I", ".tif"), ("F", ".tif")]
)
def test_16_bit_and_float_greyscale_are_scaled_not_clipped(
    mode: str, suffix: str, tmp_path: Path
) -> None:
    path = tmp_path / f"grey{suffix}"
    true_mean = _save_mode(path, mode)
    image = encode.load_image(str(path), (64, 64))
    assert image.shape == (1, 3, 64, 64)
    assert float(image.mean()) == pytest.approx(true_mean, abs=0.002)  # was 0.998: clipped
    torch.testing.assert_close(image[0, 0], image[0, 2])  # grey stays grey


def test_16_bit_extremes_are_black_and_white(tmp_path: Path) -> None:
    """16-bit greyscale is divided by 65535: its full range is [0, 1], white included (mutation
    audit F: 65536, and 65535 refused as out of range, passed the tests above)."""
    from PIL import Image

    values = np.array([[0, 65535], [32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "extremes.png")
    image = encode.load_image(str(tmp_path / "extremes.png"), (2, 2))[0, 0]
    torch.testing.assert_close(image, torch.from_numpy(values / 65535).float(), atol=1e-7, rtol=0)
    assert float(image.max()) == 1.0


def test_16_bit_png_target_keeps_its_brightness(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "g16.png"
    true_mean = _save_mode(path, "I;16")
    out = tmp_path / "o"
    args = ["encode", str(path), "--generator", "pixels", "--param", "size=32"]
    assert main([*args, "--param", "code_size=8", "--steps", "2", "--out", str(out)]) == 0
    target = np.asarray(Image.open(out / "g16_target.png"), dtype=np.float64) / 255
    assert target.mean() == pytest.approx(true_mean, abs=0.01)


def test_greyscale_out_of_range_is_refused(tmp_path: Path) -> None:
    from PIL import Image

    floats = tmp_path / "f.tif"
    Image.fromarray(_ramp().astype(np.float32)).save(floats)  # 0 ... 65520, not [0, 1]
    with pytest.raises(XDreamError, match=r"f\.tif.*float.*from 0 to 65520.*\[0, 1\]"):
        encode.load_image(str(floats), (8, 8))
    ints = tmp_path / "i.tif"
    Image.fromarray(np.full((4, 4), 100_000, np.int32)).save(ints)
    with pytest.raises(
        XDreamError, match=r"i\.tif.*integer greyscale image \(mode I\).*0 to 65535"
    ):
        encode.load_image(str(ints), (8, 8))


def test_transparency_is_composited_onto_mid_grey_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :4, 3] = 255  # left half opaque red, right half transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    notes: list[str] = []
    image = encode.load_image(str(path), (8, 8), notes)[0]
    torch.testing.assert_close(image[:, 4, 1], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(image[:, 4, 6], torch.full((3,), encode.BACKGROUND))
    assert len(notes) == 1 and "mid-grey" in notes[0] and "50%" in notes[0]
    # grey with alpha, and a palette with a transparent entry
    la = tmp_path / "la.png"
    Image.fromarray(np.stack([np.full((8, 8), 255, np.uint8), rgba[..., 3]], -1)).save(la)
    palette = tmp_path / "p.png"
    Image.fromarray(rgba[..., 3]).convert("P").save(palette, transparency=0)
    for source in (la, palette):
        image = encode.load_image(str(source), (8, 8))[0]
        torch.testing.assert_close(image[:, 4, 6], torch.full((3,), encode.BACKGROUND))
        torch.testing.assert_close(image[:, 4, 1], torch.ones(3))
    # partly transparent red (alpha 0.8) is mixed with mid-grey, and noted (audit F)
    rgba[..., 3] = 204
    Image.fromarray(rgba).save(tmp_path / "faint.png")
    notes = []
    image = encode.load_image(str(tmp_path / "faint.png"), (8, 8), notes)[0]
    alpha = 204 / 255
    mixed = torch.tensor([alpha + 0.5 * (1 - alpha), 0.5 * (1 - alpha), 0.5 * (1 - alpha)])
    torch.testing.assert_close(image[:, 4, 4], mixed)
    assert len(notes) == 1 and "100%" in notes[0]
    # an opaque image with an alpha channel gets no note
    opaque = tmp_path / "opaque.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 255)).save(opaque)
    notes = []
    encode.load_image(str(opaque), (8, 8), notes)
    assert notes == []
    # the command prints the note
    args = ["encode", str(path), "--generator", "pixels", "--param", "size=16"]
    assert (
        main([*args, "--param", "code_size=4", "--steps", "1", "--out", str(tmp_path / "o")]) == 0
    )
    assert "composited onto" in capsys.readouterr().out


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo is stored sideways with EXIF Orientation 6 (rotate 90 degrees clockwise
    to show): it is fitted upright, as every viewer shows it."""
    from PIL import Image

    stored = Image.new("RGB", (64, 32), (255, 0, 0))
    stored.paste((0, 0, 255), (32, 0, 64, 32))  # stored: red left half, blue right half
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "portrait.jpg", quality=95, exif=exif)
    image = encode.load_image(str(tmp_path / "portrait.jpg"), (64, 32))  # (H, W): portrait
    assert image.shape == (1, 3, 64, 32)
    top, bottom = image[0, :, 8, 16], image[0, :, 56, 16]  # shown: red on top, blue below
    assert top[0] > 0.9 and top[2] < 0.1 and bottom[2] > 0.9 and bottom[0] < 0.1


def _png_claiming_size(path: Path, width: int, height: int) -> None:
    """A 1x1 PNG whose header says ``width`` x ``height`` (Pillow checks the size on open)."""
    import struct
    import zlib

    from PIL import Image

    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_a_huge_image_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    huge = tmp_path / "huge.png"
    _png_claiming_size(huge, 13500, 13500)
    assert main(["encode", str(huge), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "DecompressionBomb" not in err
    assert "'" + str(huge) + "' is too large (182,250,000 pixels)" in err
    assert f"up to {Image.MAX_IMAGE_PIXELS:,} pixels" in err
    # between Pillow's limit and twice it Pillow only warns: refused all the same
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("L", (12, 12)).save(tmp_path / "mid.png")
    with pytest.raises(XDreamError, match=r"too large \(144 pixels\).*up to 100 pixels"):
        encode.load_image(str(tmp_path / "mid.png"), (8, 8))


# --------------------------------------------------------------------------- options, --out
@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--feature-weight", "nan", "--feature-layer", "blocks.2"], "feature weight must be"),
        (["--feature-weight", "-1", "--feature-layer", "blocks.2"], "feature weight must be"),
        (["--feature-weight", "inf", "--feature-layer", "blocks.2"], "feature weight must be"),
        (["--lr", "nan"], "learning rate must be a finite positive"),
        (["--lr", "inf"], "learning rate must be a finite positive"),
        (["--lr", "0"], "learning rate must be a finite positive"),
        (["--lr", "1e38"], "learning rate must be a finite positive number up to 1e"),
        (["--steps", "0"], "steps must be a positive integer"),
        (["--steps", "-3"], "steps must be a positive integer"),
    ],
)
def test_numeric_options_must_be_finite_and_in_range(
    option: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert main(["encode", PHOTO, "--generator", "pixels", *option, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
    with pytest.raises(XDreamError, match=message):
        kwargs = {"steps": 300, "lr": 0.1, "feature_weight": 1.0}
        name = option[0].removeprefix("--").replace("-", "_")
        kwargs[name] = float(option[1]) if name != "steps" else int(option[1])
        encode.check_options(**kwargs)  # type: ignore[arg-type]


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a folder")
    args = ["encode", PHOTO, "--generator", "pixels", "--steps", "1"]
    assert main([*args, "--out", str(tmp_path / "file" / "sub")]) == 2
    captured = capsys.readouterr()
    assert "cannot write into output folder" in captured.err and "encoding" not in captured.out
    # folders made for a command that then fails are removed again, parents included
    assert main(["encode", str(tmp_path / "nope.png"), "--out", str(tmp_path / "a" / "b")]) == 2
    assert "not found" in capsys.readouterr().err and not (tmp_path / "a").exists()
    # and so are the folders make_out made itself before it failed: parents made before a
    # name too long for the file system, or a folder made but not writable
    for too_long in (tmp_path / "a" / "b" / ("x" * 300), tmp_path / ("x" * 300)):
        assert main([*args, "--out", str(too_long)]) == 2
        err = capsys.readouterr().err
        assert "cannot write into output folder" in err and "Traceback" not in err
        assert not (tmp_path / "a").exists()


def test_a_failed_encode_without_out_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default folder xdream-codes/<time>-<generator> is made (and written into) before
    the images are read; when the command then fails, it goes again, and so does the
    xdream-codes/ it made for it."""
    import tempfile

    monkeypatch.chdir(tmp_path)
    assert main(["encode", "nope.png", "--generator", "pixels", "--steps", "1"]) == 2
    assert "not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)  # a folder made but not writable
    assert main(["encode", PHOTO, "--generator", "pixels", "--steps", "1"]) == 2
    captured = capsys.readouterr()
    assert "write into output folder 'xdream-codes" in captured.err
    assert "Permission denied; give --out" in captured.err and "encoding" not in captured.out
    assert list(tmp_path.iterdir()) == []


def test_make_out_removes_what_it_made_when_the_folder_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    (tmp_path / "mine").mkdir()
    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(XDreamError, match="Permission denied; give another --out"):
        encode.make_out(tmp_path / "mine" / "a" / "b")
    assert list(tmp_path.iterdir()) == [tmp_path / "mine"]  # the user's own folder stays
    assert not any((tmp_path / "mine").iterdir())


def test_encoding_into_a_folder_that_holds_codes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        Image.new("RGB", (16, 16), colour).save(tmp_path / f"{name}.png")
    out = tmp_path / "o"
    args = ["--generator", "pixels", "--param", "size=16", "--param", "code_size=4"]
    args += ["--steps", "2", "--out", str(out)]
    assert main(["encode", str(tmp_path / "red.png"), *args[:3], "size=abc"]) == 2
    said = capsys.readouterr().err
    assert "as in --param size=3" in said  # the command line's syntax, in a config file's words
    assert "got 'abc' (a string)" in said and "(a str)" not in said
    assert main(["encode", str(tmp_path / "red.png"), *args]) == 0
    before = (out / "codes.h5").read_bytes()
    capsys.readouterr()
    assert main(["encode", str(tmp_path / "blue.png"), *args]) == 2
    err = capsys.readouterr().err
    assert f"'{out}' already holds the output of an earlier encode" in err
    assert "another --out" in err
    assert (out / "codes.h5").read_bytes() == before  # the first image's codes are kept
    assert not (out / "blue_target.png").exists()
    gen = generators.make("pixels", size=16, code_size=4)
    result = encode.encode(gen, torch.zeros(1, 3, 16, 16), steps=1)
    with pytest.raises(XDreamError, match="already holds"):  # the Python API too
        encode.save(out, result, ["blue"], gen)
    # encode.json alone (codes.h5 deleted, or an encode cut short) is refused too (audit F)
    (out / "codes.h5").unlink()
    with pytest.raises(XDreamError, match=r"already holds .*\(encode\.json\)"):
        encode.check_out(out)


def test_a_param_value_is_read_as_a_yaml_config_reads_it() -> None:
    """`--param size=012` was read by YAML 1.1 as 10 (octal), `--param x=no` as false; a
    config's YAML reading refuses both, and so does --param now."""
    from xdream.cli_media import _key_value

    assert _key_value("size=012") == ("size", "012")
    assert _key_value("flag=no") == ("flag", "no")
    assert _key_value("size=128") == ("size", 128)
    assert _key_value("decay_power=1e-3") == ("decay_power", 0.001)
    assert _key_value("flag=true") == ("flag", True)
