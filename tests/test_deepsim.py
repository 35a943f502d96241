"""DeePSiM generators: three weight formats, the same images; code-space helpers; presets."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.caffe_writer import write_caffemodel
from xdream import generators, optimizers
from xdream.errors import ConfigError, MissingFileError, XDreamError
from xdream.generators.codespace import stats_codes
from xdream.generators.deepsim import VARIANTS, caffe_to_rgb

# Layers of every variant, straight from spec §7 (independent of the implementation's tables):
# (XDream key, caffe name, caffe type, weight shape, does XDream's file store a bias).
IP, CONV, DECONV = "InnerProduct", "Convolution", "Deconvolution"


def _up(key: str, name: str, cin: int, cout: int) -> tuple:
    return (key, name, DECONV, (cin, cout, 4, 4), False)


def _t3(key: str, name: str, cin: int, cout: int) -> tuple:
    return (key, name, DECONV, (cin, cout, 3, 3), False)


def _c3(key: str, name: str, cin: int, cout: int) -> tuple:
    return (key, name, CONV, (cout, cin, 3, 3), False)


TAIL = lambda cin: [  # noqa: E731
    _up("tconv5_0", "deconv5", cin, 256),
    _t3("tconv5_1", "conv5_1", 256, 512),
    _up("tconv4_0", "deconv4", 512, 256),
    _t3("tconv4_1", "conv4_1", 256, 256),
    _up("tconv3_0", "deconv3", 256, 128),
    _t3("tconv3_1", "conv3_1", 128, 128),
    _up("tconv2", "deconv2", 128, 64),
    _up("tconv1", "deconv1", 64, 32),
    _up("tconv0", "deconv0", 32, 3),
]
FC = lambda n_in: [  # noqa: E731
    ("fc7", "defc7", IP, (4096, n_in), True),
    ("fc6", "defc6", IP, (4096, 4096), True),
    ("fc5", "defc5", IP, (4096, 4096), True),
    *TAIL(256),
]
NORM = lambda cin, cmid: [  # noqa: E731
    ("conv6", "Rconv6", CONV, (cmid, cin, 3, 3), True),
    ("conv7", "Rconv7", CONV, (128, cmid, 3, 3), True),
    ("conv8", "Rconv8", CONV, (128, 128, 3, 3), True),
    _up("tconv4_0", "deconv4", 128, 128),
    _c3("conv4_1", "conv4_1", 128, 128),
    _up("tconv3_0", "deconv3", 128, 64),
    _c3("conv3_1", "conv3_1", 64, 64),
    _up("tconv2_0", "deconv2", 64, 32),
    _c3("conv2_1", "conv2_1", 32, 32),
    _up("tconv1_0", "deconv1", 32, 16),
    _c3("conv1_1", "conv1_1", 16, 3),
]
CONV34 = [
    ("conv6", "Rconv6", CONV, (384, 384, 3, 3), True),
    ("conv7", "Rconv7", CONV, (512, 384, 3, 3), True),
    ("conv8", "Rconv8", CONV, (512, 512, 2, 2), True),
    _up("tconv5_0", "deconv5", 512, 256),
    _t3("tconv5_1", "conv5_1", 256, 256),
    _up("tconv4_0", "deconv4", 256, 128),
    _t3("tconv4_1", "conv4_1", 128, 128),
    _up("tconv3_0", "deconv3", 128, 128),
    _t3("tconv3_1", "conv3_1", 128, 128),
    _up("tconv2_0", "deconv2", 128, 64),
    _c3("conv2_1", "conv2_1", 64, 32),
    _up("tconv1_0", "deconv1", 32, 16),
    _c3("conv1_1", "conv1_1", 16, 3),
]
POOL5 = [
    ("conv6", "Rconv6", CONV, (512, 256, 3, 3), True),
    ("conv7", "Rconv7", CONV, (512, 512, 3, 3), True),
    ("conv8", "Rconv8", CONV, (512, 512, 3, 3), True),
    *TAIL(512),
]
# name: (layers, code dimension, documented output size in pixels)
SPEC: dict[str, tuple[list[tuple], int, int]] = {
    "deepsim-norm1": (NORM(96, 128), 96 * 27 * 27, 240),
    "deepsim-norm2": (NORM(256, 256), 256 * 13 * 13, 240),
    "deepsim-conv3": (CONV34, 384 * 13 * 13, 256),
    "deepsim-conv4": (CONV34, 384 * 13 * 13, 256),
    "deepsim-pool5": (POOL5, 256 * 6 * 6, 256),
    "deepsim-fc6": (FC(4096), 4096, 256),
    "deepsim-fc7": (FC(4096), 4096, 256),
    "deepsim-fc8": (FC(1000), 1000, 256),
}


def random_weights(name: str, seed: int) -> list[tuple[tuple, np.ndarray, np.ndarray]]:
    """(layer, weight, bias) with variance-preserving scales, so images are not saturated."""
    rng = np.random.default_rng(seed)
    layers = SPEC[name][0]
    out = []
    for i, layer in enumerate(layers):
        _key, _caffe, kind, shape, has_bias = layer
        k2 = math.prod(shape[2:])
        fan_in = {IP: shape[1], CONV: shape[1] * k2}.get(
            kind, shape[0] * k2 / (4 if k2 == 16 else 1)
        )
        last = i == len(layers) - 1
        gain = (0.6 if name in ("deepsim-norm1", "deepsim-norm2") else 0.8) if last else 1.35
        if last and kind == DECONV:
            gain = 60.0  # raw BGR output on the 0-255 scale
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(gain / math.sqrt(fan_in))
        b = (rng.standard_normal(shape[0] if kind != DECONV else shape[1]) * 0.1).astype(np.float32)
        out.append((layer, w, b if has_bias else np.zeros_like(b)))
    return out


def write_formats(name: str, folder: Path, seed: int = 0) -> dict[str, Path]:
    """The same random weights as XDream .pt, upconvGAN .pt and caffemodel files."""
    layers = random_weights(name, seed)
    xdream, upconv = {}, {}
    quirk = name == "deepsim-pool5"  # some upconvGAN files carry ".1." in their keys
    for (key, caffe_name, _kind, _shape, has_bias), w, b in layers:
        xdream[f"{key}.weight"] = torch.from_numpy(w)
        if has_bias:
            xdream[f"{key}.bias"] = torch.from_numpy(b)
        prefix = f"{caffe_name}.1" if quirk else caffe_name
        upconv[f"{prefix}.weight"] = torch.from_numpy(w)
        upconv[f"{prefix}.bias"] = torch.from_numpy(b)  # zeros where XDream has none
    paths = {"xdream": folder / f"{name}.pt", "upconvgan": folder / f"upconvGAN_{name}.pt"}
    torch.save(xdream, paths["xdream"])
    torch.save(upconv, paths["upconvgan"])
    v1 = name in ("deepsim-norm1", "deepsim-conv3", "deepsim-fc7")  # legacy format for some
    paths["caffe"] = write_caffemodel(
        folder / f"{name}.caffemodel",
        [(c, kind, [w, b]) for (_k, c, kind, _s, _b), w, b in layers],
        v1=v1,
    )
    return paths


@pytest.fixture(scope="session")
def fc6_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """fc6 weights in all three formats, shared with the experiment test."""
    folder = tmp_path_factory.mktemp("fc6")
    paths = write_formats("deepsim-fc6", folder)
    yield paths
    for p in paths.values():
        p.unlink(missing_ok=True)


def test_every_variant_is_registered() -> None:
    assert set(SPEC) == set(VARIANTS) <= set(generators.names())


BIG_DUPLICATES = ("deepsim-fc7", "deepsim-fc8")  # fc6's architecture at full size: slow


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in BIG_DUPLICATES else n for n in SPEC],
)
def test_three_formats_give_identical_images(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    paths = request.getfixturevalue("fc6_files") if name == "deepsim-fc6" else None
    paths = paths or write_formats(name, tmp_path)
    _layers, dim, size = SPEC[name]
    try:
        codes = np.random.default_rng(1).standard_normal((2, dim)).astype(np.float32)
        images = {}
        for fmt, path in paths.items():
            gen = generators.make(name, weights=str(path))
            assert gen.weights_format == fmt  # type: ignore[attr-defined]
            assert gen.code_dim == dim and gen.output_size == (size, size)
            images[fmt] = gen.generate(codes)
            del gen
    finally:
        if name != "deepsim-fc6":
            for p in paths.values():
                p.unlink()
    ref = images["xdream"]
    assert ref.shape == (2, 3, size, size)
    assert float(ref.min()) >= 0.0 and float(ref.max()) <= 1.0
    assert float(ref.std()) > 0.05, "test weights saturate the images; the comparison is void"
    assert float((ref[0] - ref[1]).abs().max()) > 0.05  # different codes, different images
    for fmt in ("upconvgan", "caffe"):
        assert float((images[fmt] - ref).abs().max()) < 1e-5, fmt


def test_caffe_to_rgb_adds_mean_and_flips() -> None:
    # a mean-subtracted BGR image of zeros is the mean pixel (B 104, G 117, R 123)
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0, 0, 0] = 151.0  # blue channel: 104 + 151 = 255 -> 1.0
    x[0, 2, 1, 1] = -200.0  # red channel clips at 0
    rgb = caffe_to_rgb(x)
    assert torch.allclose(rgb[0, :, 0, 1], torch.tensor([123.0, 117.0, 104.0]) / 255)
    assert rgb[0, 2, 0, 0] == 1.0 and rgb[0, 0, 1, 1] == 0.0


def test_generator_matches_spec_arithmetic(fc6_files: dict[str, Path]) -> None:
    """fc6 by hand (torch.nn.functional with spec §7's geometry) equals the generator."""
    import torch.nn.functional as F

    state = torch.load(fc6_files["xdream"], weights_only=True)
    gen = generators.make("deepsim-fc6", weights=str(fc6_files["xdream"]))
    z = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 4096)).astype(np.float32))
    x = z
    for key in ("fc7", "fc6", "fc5"):
        x = F.leaky_relu(F.linear(x, state[f"{key}.weight"], state[f"{key}.bias"]), 0.3)
    x = x.view(1, 256, 4, 4)
    for key, stride, pad in [
        ("tconv5_0", 2, 1), ("tconv5_1", 1, 1), ("tconv4_0", 2, 1), ("tconv4_1", 1, 1),
        ("tconv3_0", 2, 1), ("tconv3_1", 1, 1), ("tconv2", 2, 1), ("tconv1", 2, 1),
        ("tconv0", 2, 1),
    ]:  # fmt: skip
        x = F.conv_transpose2d(x, state[f"{key}.weight"], stride=stride, padding=pad)
        x = x if key == "tconv0" else F.leaky_relu(x, 0.3)
    bgr = x + torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)
    expected = (bgr / 255).clamp(0, 1)[:, [2, 1, 0]]
    assert float((gen.generate(z) - expected).abs().max()) < 1e-5


# Spec §7's forward pass of the conv-coded variants, written from the spec's text alone:
# (key, transposed?, stride, pad, LeakyReLU after it); kernel sizes come from the weights.
def _spec_up(key: str, act: bool = True) -> tuple:
    return (key, True, 2, 1, act)  # "k4 s2 p1 for every tconvX_0"


SPEC_TAIL = [
    _spec_up("tconv5_0"), ("tconv5_1", True, 1, 1, True), _spec_up("tconv4_0"),
    ("tconv4_1", True, 1, 1, True), _spec_up("tconv3_0"), ("tconv3_1", True, 1, 1, True),
    _spec_up("tconv2"), _spec_up("tconv1"), _spec_up("tconv0", act=False),
]  # fmt: skip
SPEC_NORM = lambda stride: [  # noqa: E731
    ("conv6", False, stride, 2, True), ("conv7", False, 1, 1, True),
    ("conv8", False, 1, 1, True), _spec_up("tconv4_0"), ("conv4_1", False, 1, 1, True),
    _spec_up("tconv3_0"), ("conv3_1", False, 1, 1, True), _spec_up("tconv2_0"),
    ("conv2_1", False, 1, 1, True), _spec_up("tconv1_0", act=False),  # "(no activation)"
    ("conv1_1", False, 1, 1, False),
]  # fmt: skip
SPEC_CONV34 = [
    ("conv6", False, 1, 0, True), ("conv7", False, 1, 0, True), ("conv8", False, 1, 0, True),
    _spec_up("tconv5_0"), ("tconv5_1", True, 1, 1, True), _spec_up("tconv4_0"),
    ("tconv4_1", True, 1, 1, True), _spec_up("tconv3_0"), ("tconv3_1", True, 1, 1, True),
    _spec_up("tconv2_0"), ("conv2_1", False, 1, 1, True),
    _spec_up("tconv1_0"),  # "(+LReLU)"
    ("conv1_1", False, 1, 1, False),
]  # fmt: skip
SPEC_POOL5 = [
    ("conv6", False, 1, 1, True), ("conv7", False, 1, 1, True), ("conv8", False, 1, 0, True),
    *SPEC_TAIL,
]  # fmt: skip
SPEC_FORWARD: dict[str, tuple[list[tuple], bool]] = {  # name: (layers, tanh x 255 at the end)
    "deepsim-norm1": (SPEC_NORM(2), True),
    "deepsim-norm2": (SPEC_NORM(1), True),
    "deepsim-conv4": (SPEC_CONV34, True),
    "deepsim-pool5": (SPEC_POOL5, False),
}


@pytest.mark.parametrize("name", list(SPEC_FORWARD))
def test_conv_coded_variants_match_spec_arithmetic(name: str) -> None:
    """norm1, norm2, conv3/conv4 and pool5 by hand (spec §7: strides, pads, where the LeakyReLU
    is and is not, tanh x 255) equal the generator's raw BGR output and its RGB image."""
    import torch.nn.functional as F

    layers = random_weights(name, seed=5)
    state = {}
    for (key, *_), w, b in layers:
        state[f"{key}.weight"], state[f"{key}.bias"] = torch.from_numpy(w), torch.from_numpy(b)
    gen = generators.REGISTRY.get(name)(generators.REGISTRY.get(name).Params(), pretrained=False)
    gen.load_weights(state)
    shape, size = VARIANTS[name].code_shape, SPEC[name][2]
    z = torch.from_numpy(np.random.default_rng(3).standard_normal((1, math.prod(shape))))
    x = z.float().view(1, *shape)
    steps, tanh = SPEC_FORWARD[name]
    for key, transposed, stride, pad, act in steps:
        op = F.conv_transpose2d if transposed else F.conv2d
        x = op(x, state[f"{key}.weight"], state[f"{key}.bias"], stride=stride, padding=pad)
        x = F.leaky_relu(x, 0.3) if act else x
    x = 255 * torch.tanh(x) if tanh else x
    assert x.shape == (1, 3, size, size)
    assert float(x.std()) > 20, "test weights give a flat image; the comparison is void"
    torch.testing.assert_close(gen.net(z.float()), x, atol=1e-3, rtol=1e-4)
    rgb = ((x + torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)) / 255).clamp(0, 1)
    torch.testing.assert_close(gen.generate(z.float()), rgb[:, [2, 1, 0]], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- bad files
@pytest.fixture(scope="module")
def norm1_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_formats("deepsim-norm1", tmp_path_factory.mktemp("norm1"), seed=3)


def test_truncated_caffemodel_fails_clearly(norm1_files: dict[str, Path], tmp_path: Path) -> None:
    data = norm1_files["caffe"].read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(XDreamError, match=r"cut\.caffemodel.*truncated.*caffemodel"):
        generators.make("deepsim-norm1", weights=str(cut))


def test_truncated_torch_file_fails_clearly(norm1_files: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.pt"
    cut.write_bytes(norm1_files["xdream"].read_bytes()[:5000])
    with pytest.raises(XDreamError, match=r"cut\.pt.*cannot be read as a torch state_dict"):
        generators.make("deepsim-norm1", weights=str(cut))


@pytest.mark.parametrize(
    "content", [b"\xff" * 64, b'layer { name: "deconv4" type: "Deconvolution" }\n', b""]
)
def test_foreign_file_fails_clearly(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(content)
    with pytest.raises(XDreamError, match=r"weights\.bin.*caffemodel"):
        generators.make("deepsim-norm2", weights=str(path))


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 4, "a JPEG image"),
        (b"\x89HDF\r\n\x1a\n" + bytes(64), "an HDF5 file"),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'" + bytes(64), "a NumPy .npy array"),
    ],
)
def test_other_file_formats_given_as_caffemodel_are_named(
    content: bytes, kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "weights.caffemodel"
    path.write_bytes(content)
    with pytest.raises(XDreamError, match=rf"weights\.caffemodel.*it is {kind}") as err:
        generators.make("deepsim-norm2", weights=str(path))
    assert "prototxt" not in str(err.value) and "field" not in str(err.value)


def test_file_of_another_variant_is_named(norm1_files: dict[str, Path]) -> None:
    """In every format, the caffemodel too, the variant the file belongs to is named (a
    caffemodel only got "holds N weights ...; another variant?" or "has no layer ...")."""
    for target in ("deepsim-norm2", "deepsim-pool5", "deepsim-fc8"):
        for fmt in ("xdream", "upconvgan", "caffe"):
            with pytest.raises(XDreamError, match=r"looks like the weights of deepsim-norm1\b"):
                generators.make(target, weights=str(norm1_files[fmt]))


@pytest.mark.parametrize("v1", [False, True])
def test_caffe_layer_type_and_blob_shape_are_checked(v1: bool, tmp_path: Path) -> None:
    """Same names and value counts are not enough: a layer of another type, or weights laid
    out otherwise (a Deconvolution's (in, out, k, k) stored as (out, in, k, k)), are refused."""
    layers = [
        (c, kind, [w, b]) for (_k, c, kind, _s, _b), w, b in random_weights("deepsim-norm1", 3)
    ]
    index = [name for name, *_ in layers].index("deconv3")  # (128, 64, 4, 4)
    name, kind, (w, b) = layers[index]
    for changed, message in (
        ((name, CONV, [w, b]), r"'deconv3' is a Convolution layer.*Deconvolution"),
        (
            (name, kind, [w.transpose(1, 0, 2, 3).copy(), b]),
            r"\(64, 128, 4, 4\).*\(128, 64, 4, 4\)",
        ),
    ):
        path = write_caffemodel(
            tmp_path / "g.caffemodel", [*layers[:index], changed, *layers[index + 1 :]], v1=v1
        )
        with pytest.raises(XDreamError, match=message):
            generators.make("deepsim-norm1", weights=str(path))


def test_torch_file_messages_name_the_variant_and_its_keys(
    norm1_files: dict[str, Path], tmp_path: Path
) -> None:
    # a file of another variant in XDream's or caffe's names: that variant is named
    for fmt in ("xdream", "upconvgan"):
        with pytest.raises(XDreamError, match=r"looks like the weights of deepsim-norm1\b"):
            generators.make("deepsim-pool5", weights=str(norm1_files[fmt]))
    # an XDream file saved from DataParallel ("module." keys) loads as the plain one
    state = torch.load(norm1_files["xdream"], weights_only=True)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "parallel.pt")
    codes = np.random.default_rng(0).standard_normal((1, 96 * 27 * 27)).astype(np.float32)
    # an upconvGAN file saved from its wrapper ("G." keys) loads as the plain one (audit F)
    upconv = torch.load(norm1_files["upconvgan"], weights_only=True)
    torch.save({f"G.{k}": v for k, v in upconv.items()}, tmp_path / "wrapped.pt")
    # and one without the biases that are zero (those XDream's files lack): zero, not missing
    kept = {k: v for k, v in upconv.items() if k.endswith(".weight") or v.any()}
    assert len(kept) < len(upconv)
    torch.save(kept, tmp_path / "no_zero_biases.pt")
    files = ("parallel.pt", "wrapped.pt", "no_zero_biases.pt")
    paths = [norm1_files["xdream"], *(tmp_path / f for f in files)]
    images = [generators.make("deepsim-norm1", weights=str(path)).generate(codes) for path in paths]
    assert torch.equal(images[0], images[1])
    for other in images[2:]:
        assert float((other - images[0]).abs().max()) < 1e-5
    # an upconvGAN file lacking a layer is named as such, with what it lacks (audit F)
    torch.save({k: v for k, v in upconv.items() if "Rconv6" not in k}, tmp_path / "cut.pt")
    with pytest.raises(XDreamError, match=r"cut\.pt' does not fit .*missing \['conv6.weight'"):
        generators.make("deepsim-norm1", weights=str(tmp_path / "cut.pt"))
    # a file saved in half precision loads as float32, the generator's dtype (audit F)
    torch.save({k: v.half() for k, v in state.items()}, tmp_path / "half.pt")
    half = generators.make("deepsim-norm1", weights=str(tmp_path / "half.pt"))
    assert {p.dtype for p in half.parameters()} == {torch.float32}
    # the generator names the file it read (encode records it in codes.h5)
    assert half.weights_format == "xdream"  # type: ignore[attr-defined]
    assert Path(half.weights_file).samefile(tmp_path / "half.pt")  # type: ignore[attr-defined]
    # keys the variant does not have are refused, not ignored (audit F)
    torch.save({**state, "extra.weight": torch.zeros(2)}, tmp_path / "extra.pt")
    with pytest.raises(XDreamError, match=r"extra\.pt' does not fit .*unexpected \['extra"):
        generators.make("deepsim-norm1", weights=str(tmp_path / "extra.pt"))
    # the expected formats name the variant's own keys
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "foo.pt")
    with pytest.raises(XDreamError) as err:
        generators.make("deepsim-norm1", weights=str(tmp_path / "foo.pt"))
    assert "conv6.weight, conv7.weight" in str(err.value) and "Rconv6.weight" in str(err.value)
    assert "fc7" not in str(err.value)


def test_missing_file_names_format_and_source(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nothing\.caffemodel.*does not exist.*caffemodel"):
        generators.make("deepsim-fc6", weights=str(tmp_path / "nothing.caffemodel"))


def test_prototxt_is_checked(norm1_files: dict[str, Path], tmp_path: Path) -> None:
    from xdream.generators.deepsim import VARIANTS, check_prototxt

    text = prototxt_for("deepsim-norm1")
    good = tmp_path / "generator_no_batch.prototxt"
    good.write_text(text)
    check_prototxt(good, VARIANTS["deepsim-norm1"], "deepsim-norm1")
    gen = generators.make("deepsim-norm1", weights=str(norm1_files["caffe"]), prototxt=str(good))
    assert gen.weights_format == "caffe"  # type: ignore[attr-defined]
    bad = tmp_path / "bad.prototxt"
    bad.write_text(text.replace("kernel_size: 4", "kernel_size: 5", 1))
    with pytest.raises(XDreamError, match=r"bad\.prototxt.*'deconv4'.*\(128, 5, 2, 1\)"):
        generators.make("deepsim-norm1", weights=str(norm1_files["caffe"]), prototxt=str(bad))
    with pytest.raises(XDreamError, match="input shape"):
        check_prototxt(good, VARIANTS["deepsim-norm2"], "deepsim-norm2")
    # caffe's defaults (pad 0, stride 1) stand for what a layer leaves out (audit F)
    geometry = "pad: 1 kernel_size: 4 stride: 2"  # deconv4, the first such layer
    for left_out, got in (("pad: 1 ", "(128, 4, 2, 0)"), (" stride: 2", "(128, 4, 1, 1)")):
        unsaid = text.replace(geometry, geometry.replace(left_out, ""), 1)
        bad.write_text(unsaid)
        with pytest.raises(
            XDreamError, match=rf"'deconv4'.*{re.escape(got)}, expected \(128, 4, 2, 1\)"
        ):
            check_prototxt(bad, VARIANTS["deepsim-norm1"], "deepsim-norm1")
    # a generator_no_batch.prototxt next to the caffemodel is checked without being named
    (tmp_path / "next").mkdir()
    (tmp_path / "next" / "g.caffemodel").symlink_to(norm1_files["caffe"])
    (tmp_path / "next" / "generator_no_batch.prototxt").write_text(
        text.replace("kernel_size: 4", "kernel_size: 5", 1)
    )
    with pytest.raises(XDreamError, match=r"next/generator_no_batch\.prototxt.*'deconv4'"):
        generators.make("deepsim-norm1", weights=str(tmp_path / "next" / "g.caffemodel"))
    bad.write_text(text.replace('"deconv4" type: "Deconvolution"', '"deconv4" type: "Convolution"'))
    with pytest.raises(XDreamError, match=r"'deconv4' is 'Convolution', not Deconvolution"):
        check_prototxt(bad, VARIANTS["deepsim-norm1"], "deepsim-norm1")


def prototxt_for(name: str) -> str:
    """A generator_no_batch.prototxt in caffe's style for a variant (from the spec table)."""
    v = VARIANTS[name]
    lines = ['input: "feat"', "input_shape {", "  dim: 1"]
    lines += [f"  dim: {d}" for d in v.code_shape] + ["}"]
    for layer in v.layers:
        param = "inner_product_param" if layer.kind == "fc" else "convolution_param"
        geometry = (
            ""
            if layer.kind == "fc"
            else (f" pad: {layer.p} kernel_size: {layer.k} stride: {layer.s}")
        )
        lines.append(
            f'layer {{ name: "{layer.caffe}" type: "{layer.caffe_type}" bottom: "x" top: "x"\n'
            f"  {param} {{ num_output: {layer.cout}{geometry} }}  # comment\n}}"
        )
        if layer.act:
            lines.append(
                f'layer {{ name: "relu_{layer.caffe}" type: "ReLU" bottom: "x" top: "x" '
                "relu_param { negative_slope: 0.3 } }"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- code space
def test_initial_codes_from_post_relu_statistics(tmp_path: Path) -> None:
    from xdream.generators.deepsim import DeePSiMFc6, DeePSiMFc8, DeePSiMParams

    rng = np.random.default_rng(0)
    gen = DeePSiMFc6(DeePSiMParams(init="stats"), pretrained=False)
    codes = gen.initial_codes(500, rng)
    assert gen.custom_initial_codes and codes.shape == (500, 4096) and codes.min() == 0.0
    # N(-15, 15) clipped at 0: P(code > 0) = P(z > 1) = 0.159; mean = 15 * E[max(z - 1, 0)]
    assert abs((codes > 0).mean() - 0.1587) < 0.01
    assert abs(codes.mean() - 15 * 0.0833) < 0.05
    plain = DeePSiMFc6(DeePSiMParams(), pretrained=False)
    assert not plain.custom_initial_codes
    assert abs(plain.initial_codes(200, rng).std() - 1.0) < 0.02
    # fc8 codes are not post-ReLU: no clipping; per-unit statistics from an .npz file
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.linspace(-1, 1, 1000), sig=np.full(1000, 0.01))
    fc8 = DeePSiMFc8(DeePSiMParams(init="stats", init_stats=str(stats)), pretrained=False)
    c8 = fc8.initial_codes(50, rng)
    assert c8.min() < -0.9 and np.allclose(c8.mean(0), np.linspace(-1, 1, 1000), atol=0.01)
    with pytest.raises(XDreamError, match="init_mean and init_std"):
        DeePSiMFc8(DeePSiMParams(init="stats"), pretrained=False)
    # statistics that cannot be drawn from are refused when the generator is made, not at its
    # first initial_codes (audit F)
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.zeros(1000), sig=np.full(1000, np.nan))
    said = r"the code statistics \(init_mean and init_std, or the init_stats file's\) must be"
    for params in (
        DeePSiMParams(init="stats", init_mean=float("nan"), init_std=1.0),
        DeePSiMParams(init="stats", init_stats=str(bad)),
    ):
        with pytest.raises(XDreamError, match=said):
            DeePSiMFc8(params, pretrained=False)


def test_initial_codes_use_the_given_rng_and_a_zero_sd_is_the_mean(tmp_path: Path) -> None:
    """Both kinds of initial codes are drawn from the rng passed in (an experiment's seeded
    stream), not NumPy's global one; init_std = 0 is allowed (>= 0) and gives the mean, clipped
    at 0 after a ReLU layer (mutation audit F: the global stream, and std > 0 required)."""
    from xdream.generators.deepsim import DeePSiMFc6, DeePSiMFc8, DeePSiMParams

    for params in (DeePSiMParams(), DeePSiMParams(init="stats")):
        gen = DeePSiMFc6(params, pretrained=False)
        np.random.seed(0)
        first = gen.initial_codes(3, np.random.default_rng(9))
        np.random.seed(1)
        np.testing.assert_array_equal(gen.initial_codes(3, np.random.default_rng(9)), first)
    rng = np.random.default_rng(0)
    for mean, expected in ((0.5, 0.5), (-2.0, 0.0)):
        fc6 = DeePSiMFc6(DeePSiMParams(init="stats", init_mean=mean, init_std=0), False)
        assert (fc6.initial_codes(2, rng) == expected).all()
    fc8 = DeePSiMFc8(DeePSiMParams(init="stats", init_mean=-2.0, init_std=0.0), False)
    assert (fc8.initial_codes(2, rng) == -2.0).all()  # fc8 is not post-ReLU: not clipped
    assert DeePSiMFc8(DeePSiMParams(), False).initial_codes(2, rng).dtype == np.float32
    with pytest.raises(ValueError, match="init must be 'normal' or 'stats', got 'uniform'"):
        DeePSiMParams(init="uniform")
    with pytest.raises(ValueError, match="weights must be a file path"):
        DeePSiMParams(weights=3)  # type: ignore[arg-type]
    # a config's lists are stored as tuples: the parameters stay immutable and hashable
    listed = DeePSiMParams(lower=[0.0, 1.0], upper=[2.0, 3.0])  # type: ignore[arg-type]
    assert listed.lower == (0.0, 1.0) and listed.upper == (2.0, 3.0) and hash(listed)
    # init_mean and init_std, when given, override an init_stats file's (audit F)
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.linspace(-1, 1, 1000), sig=np.full(1000, 0.5))
    both = DeePSiMParams(init="stats", init_stats=str(stats), init_mean=5.0, init_std=0.0)
    assert (DeePSiMFc8(both, False).initial_codes(2, rng) == 5.0).all()
    for mean, std in ((math.nan, 1.0), (0.0, math.inf)):
        with pytest.raises(XDreamError, match="finite"):  # when made, not when drawn from
            DeePSiMFc8(DeePSiMParams(init="stats", init_mean=mean, init_std=std), False)
        with pytest.raises(XDreamError, match="code statistics must be finite with std >= 0"):
            stats_codes(2, mean, std, rng, 4)


def test_code_statistics_are_read_from_the_layers_group(tmp_path: Path) -> None:
    """XDream's stats_caffenet.h5 keeps ``<layer>/mu`` and ``<layer>/sig`` for every layer: the
    generator's layer is read (mutation audit F: the file's first group was read instead), and
    top-level ``mu``/``sig`` or one number for every unit serve too."""
    import h5py

    from xdream.generators.codespace import load_code_stats

    path = tmp_path / "stats.h5"
    with h5py.File(path, "w") as f:
        for layer, level in (("fc6", 1.0), ("fc7", 2.0), ("fc8", 3.0)):
            f[f"{layer}/mu"] = np.full(1000, level)
            f[f"{layer}/sig"] = np.full(1000, level / 10)
    mu, sig = load_code_stats(path, "fc8", 1000)
    assert (mu == 3.0).all() and (sig == 0.3).all()
    top = tmp_path / "top.h5"
    with h5py.File(top, "w") as f:
        f["mu"], f["sig"] = np.float64(-1.0), np.float64(0.5)
    mu, sig = load_code_stats(top, "fc8", 1000)
    assert mu.size == 1 and float(mu) == -1.0 and float(sig) == 0.5


def test_bounds_clip_codes_before_rendering() -> None:
    from xdream.generators.deepsim import DeePSiMParams, DeePSiMPool5

    torch.manual_seed(0)
    gen = DeePSiMPool5(DeePSiMParams(lower=0.0, upper=(2.0,) * 9216), pretrained=False)
    z = torch.randn(2, 9216) * 3
    assert torch.equal(gen.generate(z), gen.generate(z.clamp(0, 2)))
    assert gen.initial_codes(4, np.random.default_rng(0)).min() >= 0.0
    with pytest.raises(XDreamError, match="one per code unit"):
        DeePSiMPool5(DeePSiMParams(lower=(0.0, 1.0)), pretrained=False)
    # lower may equal upper: "must not exceed" (audit F)
    pinned = DeePSiMPool5(DeePSiMParams(lower=0.5, upper=0.5), pretrained=False)
    assert (pinned.initial_codes(2, np.random.default_rng(0)) == 0.5).all()
    # one number bounds every unit (mutation audit F: it became 0 for all)
    both = DeePSiMPool5(DeePSiMParams(lower=-0.5, upper=0.25), pretrained=False)
    lower, upper = both.code_bounds()
    assert lower is not None and upper is not None
    assert (lower == -0.5).all() and (upper == 0.25).all() and lower.shape == (9216,)
    assert torch.equal(both.generate(z), both.generate(z.clamp(-0.5, 0.25)))
    one_sided = DeePSiMPool5(DeePSiMParams(upper=0.25), pretrained=False)
    assert one_sided.initial_codes(4, np.random.default_rng(0)).max() == np.float32(0.25)
    # NaN is refused as such ("one number or 9216 numbers ..., got 9216" before)
    with pytest.raises(XDreamError, match=r"lower must be numbers, got NaN for 9216 of 9216"):
        DeePSiMPool5(DeePSiMParams(lower=math.nan), pretrained=False)
    with pytest.raises(XDreamError, match=r"upper must be numbers, got NaN for 1 of 9216"):
        DeePSiMPool5(DeePSiMParams(upper=(math.nan,) + (1.0,) * 9215), pretrained=False)


def test_forward_follows_the_network_dtype() -> None:
    """After .double() or .half() (to save GPU memory) the codes are cast to the network's
    dtype, as the other generators and the scorers do (it was always float32: an error)."""
    from xdream.generators.deepsim import DeePSiMNorm1, DeePSiMParams

    torch.manual_seed(0)
    gen = DeePSiMNorm1(DeePSiMParams(lower=0.0), pretrained=False)
    z = torch.randn(2, gen.code_dim)
    ref = gen.generate(z)
    for dtype, tolerance in ((torch.float64, 1e-5), (torch.float16, 0.02)):
        gen.to(dtype)
        assert gen(z).dtype == dtype
        assert float((gen.generate(z) - ref).abs().max()) < tolerance


def test_ga_presets_are_xdreams_tuned_settings() -> None:
    opt = optimizers.make("genetic", dim=8, seed=0, preset="deepsim-fc7")
    p = opt.params
    assert (p.population_size, p.mutation_rate, p.mutation_size, p.selectivity) == (
        45,
        0.6,
        0.3,
        1.25,
    )
    assert optimizers.make("genetic", dim=8, preset="deepsim-pool5").params.heritability == 0.75
    # fc6's preset is the GA's default; explicit values override a preset
    assert optimizers.make("genetic", dim=8, preset="deepsim-fc6").params == (
        optimizers.make("genetic", dim=8).params
    )
    assert optimizers.make("genetic", dim=8, preset="deepsim-fc7", n_conserve=1).params.n_conserve
    with pytest.raises(ConfigError, match="Did you mean 'deepsim-fc6'"):
        optimizers.make("genetic", dim=8, preset="deepsim-fc66")
    with pytest.raises(ConfigError, match="for optimizer 'genetic'"):
        optimizers.make("nes", dim=8, preset="deepsim-fc6")


@pytest.mark.parametrize("name", ["deepsim-norm1", "deepsim-pool5"])
def test_generator_contract(name: str) -> None:
    """Batched, deterministic, differentiable in the codes, validated input (random weights)."""
    from xdream.generators.deepsim import DeePSiMParams

    torch.manual_seed(0)
    gen = generators.REGISTRY.get(name)(DeePSiMParams(), pretrained=False).eval()
    codes = gen.initial_codes(3, np.random.default_rng(0))
    batched = gen.generate(codes)
    torch.testing.assert_close(gen.generate(codes, batch_size=1), batched, atol=1e-5, rtol=0)
    assert torch.equal(gen.generate(codes), batched)
    z = torch.tensor(codes[:1], requires_grad=True)
    gen(z).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and (z.grad != 0).any()
    assert not any(p.requires_grad for p in gen.parameters())
    with pytest.raises(XDreamError, match=rf"\(n, {gen.code_dim}\)"):
        gen.generate(np.zeros((1, gen.code_dim + 1)))
    with pytest.raises(ConfigError, match="Did you mean 'weights'"):
        generators.make(name, weigths="x.pt")


def test_wire_format_variants_and_prototxt_text() -> None:
    """double_data blobs, unpacked floats, legacy shapes; text format with comments and enums."""
    from tests.caffe_writer import length_delimited, tag, varint
    from xdream import caffe

    doubles = np.arange(6, dtype="<f8")
    blob_double = length_delimited(
        7, length_delimited(1, varint(2) + varint(3))
    ) + length_delimited(8, doubles.tobytes())
    unpacked = b"".join(tag(5, 5) + np.float32(v).tobytes() for v in (1.5, -2.0))
    blob_legacy = tag(3, 0) + varint(1) + tag(4, 0) + varint(2) + unpacked
    layer = length_delimited(1, b"ip") + length_delimited(2, b"InnerProduct")
    layer += length_delimited(7, blob_double) + length_delimited(7, blob_legacy)
    (parsed,) = caffe.parse_caffemodel(length_delimited(100, layer))
    assert (parsed.name, parsed.type) == ("ip", "InnerProduct")
    assert parsed.blobs[0].shape == (2, 3) and parsed.blobs[0].dtype == np.float32
    assert np.array_equal(parsed.blobs[0].ravel(), doubles)
    assert np.array_equal(parsed.blobs[1], np.array([[1.5, -2.0]], dtype=np.float32))
    net = caffe.parse_prototxt(
        'name: "n"  # comment\ninput_dim: 1 input_dim: 3\n'
        "layers { name: 'p' type: POOLING pooling_param { pool: MAX kernel_size: 3 } }\n"
        'layer: { name: "r" relu_param { negative_slope: 0.3 } }\n'
    )
    assert net["input_dim"] == [1, 3] and caffe.first(net, "name") == "n"
    layers = caffe.prototxt_layers(net)
    assert caffe.first(caffe.first(layers["p"], "pooling_param"), "pool") == "MAX"
    assert caffe.first(caffe.first(layers["r"], "relu_param"), "negative_slope") == 0.3
    with pytest.raises(XDreamError, match=r"line 2.*missing '\}'"):
        caffe.parse_prototxt('name: "n"\nlayer {\n', "x.prototxt")
