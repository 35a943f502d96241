"""Receptive-field-aware placement (spec §8): an image resized into a box of a grey canvas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from xdream import config
from xdream.errors import ConfigError, XDreamError
from xdream.experiment import Experiment
from xdream.multi import MultiUnitScorer, Unit, started_square
from xdream.networks import Preprocess
from xdream.networks.base import resize
from xdream.scorers import CNNUnitScorer
from xdream.scorers.placement import GREY, Box, check_placement, place, receptive_field_box

PLAIN32 = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=32)


def two_convs(stride: int = 1) -> nn.Sequential:
    """A 3 x 3 convolution (``stride``) and a 5 x 5 one, with tanh between (a gradient that is
    nowhere zero): a unit of layer "2" sees 3 + 4 * stride pixels each way, centred on its
    position times ``stride``."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=stride, padding=1), nn.Tanh(), nn.Conv2d(4, 5, 5, padding=2)
    )


@pytest.mark.parametrize(
    ("stride", "x", "y", "box"),
    [
        (1, 10, 20, Box(7, 17, 7)),  # columns 7..13, rows 17..23
        (1, 0, 20, Box(0, 17, 7)),  # columns 0..3 at the edge: the square stays in the input
        (1, 31, 31, Box(28, 28, 4)),  # columns and rows 28..31: the field's part in the input
        (2, 5, 6, Box(5, 7, 11)),  # centre (10, 12), 3 + 4 * 2 = 11 pixels each way
    ],
)
def test_rf_is_the_square_over_the_units_receptive_field(
    stride: int, x: int, y: int, box: Box
) -> None:
    """The box of "rf" is worked out by hand from the kernels, strides and paddings."""
    scorer = CNNUnitScorer(
        two_convs(stride), "2", 1, x=x, y=y, preprocess=PLAIN32, placement="rf", device="cpu"
    )
    assert scorer.box == box
    assert scorer.describe()["placement"] == [box.left, box.top, box.size]
    multi = MultiUnitScorer(
        two_convs(stride),
        [Unit("2", 1, x, y), Unit("2", 4, x, y)],
        preprocess=PLAIN32,
        placement="rf",
        device="cpu",
    )
    assert multi.box == box


def rf_boxes(module: nn.Module, unit: Unit, **options: Any) -> tuple[Box | None, Box | None]:
    """The "rf" box of ``unit`` as the single scorer and the shared scorer find it (both
    given ``channels_last``, if in ``options``; the other options go to the shared one)."""
    channels_last = options.pop("channels_last", None)
    single = CNNUnitScorer(
        module,
        unit.layer,
        unit.channel,
        unit.x,
        unit.y,
        preprocess=PLAIN32,
        placement="rf",
        channels_last=channels_last,
        device="cpu",
    )
    multi = MultiUnitScorer(
        module,
        [unit],
        preprocess=PLAIN32,
        placement="rf",
        channels_last=channels_last,
        device="cpu",
        **options,
    )
    return single.box, multi.box


def test_rf_is_found_for_a_scorer_made_without_gradients() -> None:
    for context in (torch.inference_mode, torch.no_grad):
        for channels_last in (True, False):  # the scorer's own conversion of the weights too
            module = two_convs()
            with context():
                boxes = rf_boxes(module, Unit("2", 0, 10, 20), channels_last=channels_last)
            assert boxes == (Box(7, 17, 7), Box(7, 17, 7))
    for channels_last in (True, False):  # weights made there are copied into plain ones
        with torch.inference_mode():
            module = two_convs()
        boxes = rf_boxes(module, Unit("2", 0, 10, 20), channels_last=channels_last)
        assert boxes == (Box(7, 17, 7), Box(7, 17, 7))


def test_rf_search_over_inference_weights_says_how_to_go_on() -> None:
    """receptive_field_box called on its own over weights made within inference_mode (no
    scorer made them plain) cannot differentiate them, and says so."""
    with torch.inference_mode():
        module = two_convs()
    with pytest.raises(XDreamError, match=r"made within torch\.inference_mode\(\), .* build"):
        receptive_field_box(
            module, (10, 20), 32, device=torch.device("cpu"), dtype=torch.float32, what="unit 'x'"
        )


def test_a_flat_layers_receptive_field_is_the_whole_input() -> None:
    module = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 32 * 32, 4))
    scorer = CNNUnitScorer(module, "2", 3, preprocess=PLAIN32, placement="rf", device="cpu")
    assert scorer.box == Box(0, 0, 32)


@pytest.mark.filterwarnings("ignore:placement .* lies outside the receptive field")  # on purpose
def test_the_network_sees_the_image_resized_into_the_box_and_grey_around_it() -> None:
    """A network that returns its input: each pixel of the canvas is a unit."""
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    box = Box(4, 10, 8)
    inside = resize(image, 8)
    for x, y, expected in [(0, 0, torch.full((2,), GREY)), (31, 17, torch.full((2,), GREY))] + [
        (4 + i, 10 + j, inside[:, 2, j, i]) for i, j in [(0, 0), (7, 7), (3, 5)]
    ]:
        scorer = CNNUnitScorer(
            nn.Sequential(nn.Identity()), "0", 2, x, y, preprocess=PLAIN32, placement=(4, 10, 8)
        )
        np.testing.assert_allclose(scorer.score(image, ["a", "b"]), expected.numpy(), rtol=1e-6)
    canvas = place(image, box, 32)
    assert canvas.shape == (2, 3, 32, 32)
    assert torch.equal(canvas[:, :, 10:18, 4:12], inside)
    canvas[:, :, 10:18, 4:12] = GREY
    assert torch.all(canvas == GREY)


def test_image_size_comes_first_then_the_box() -> None:
    """XDream's intermediate downsampling (image_size) shrinks the image before it is placed."""
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    scorer = CNNUnitScorer(
        nn.Sequential(nn.Identity()),
        "0",
        0,
        5,
        6,
        preprocess=PLAIN32,
        image_size=4,
        placement=(5, 6, 8),
        device="cpu",
    )
    expected = resize(resize(image, 4), 8)[0, 0, 0, 0]
    np.testing.assert_allclose(scorer.score(image, ["a"]), [float(expected)], rtol=1e-6)


def test_the_shared_pass_places_as_a_single_scorer_does() -> None:
    images = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(5))
    single = CNNUnitScorer(two_convs(2), "2", 3, 4, 9, preprocess=PLAIN32, placement="rf")
    multi = MultiUnitScorer(
        two_convs(2), [Unit("2", 3, 4, 9)], preprocess=PLAIN32, placement="rf", device="cpu"
    )
    np.testing.assert_allclose(
        multi.activations(images)[:, 0], single.score(images, ["a", "b", "c"]), rtol=1e-5
    )


def test_units_with_other_receptive_fields_are_refused_with_a_box_that_holds_them() -> None:
    with pytest.raises(XDreamError) as err:
        MultiUnitScorer(
            two_convs(),
            [Unit("2", 0, 10, 20), Unit("0", 1, 2, 3)],
            preprocess=PLAIN32,
            placement="rf",
            device="cpu",
        )
    assert str(err.value) == (
        "placement 'rf': the units' receptive fields differ ([left, top, size] layer '2' (x 10, "
        "y 20): [7, 17, 7]; layer '0' (x 2, y 3): [1, 2, 3]), and one forward pass places every "
        "image in one box: give the units of one layer and position, or a box as placement "
        "[left, top, size] (one that holds them all: [1, 2, 22])"
    )


@pytest.mark.filterwarnings("ignore:placement .* lies outside the receptive field")  # on purpose
@pytest.mark.parametrize(
    ("placement", "said"),
    [
        ("middle", r"placement must be 'full', 'rf' or \[left, top, size\] in the network's"),
        ((1, 2), r"'rf' or \[left, top, size\] \(3 whole numbers\) in the .*, got \(1, 2\)"),
        ((1, 2.5, 3), r"placement \[left, top, size\] takes whole numbers, got \[1, 2.5, 3\]"),
        ((0, -1, 3), r"needs left and top >= 0 and size >= 1, got \[0, -1, 3\]"),
        ((0, 0, 0), r"needs left and top >= 0 and size >= 1, got \[0, 0, 0\]"),
        ((20, 0, 13), r"placement \[20, 0, 13\] \(left, top, size\) goes past the 32 x 32 px"),
        ((-1, 0, 3), r"needs left and top >= 0 and size >= 1, got \[-1, 0, 3\]"),
        ((True, 0, 3), r"placement \[left, top, size\] takes whole numbers, got \[True, 0, 3\]"),
        ((0, 20, 13), r"placement \[0, 20, 13\] \(left, top, size\) goes past the 32 x 32 px"),
    ],
)
def test_a_bad_placement_says_what_it_takes(placement: object, said: str) -> None:
    with pytest.raises(XDreamError, match=said):
        CNNUnitScorer(two_convs(), "2", 0, preprocess=PLAIN32, placement=placement)  # type: ignore[arg-type]
    with pytest.raises(XDreamError, match=said):  # the shared scorer (every config run's) too
        MultiUnitScorer(
            two_convs(),
            [Unit("2", 0)],
            preprocess=PLAIN32,
            placement=placement,
            device="cpu",  # type: ignore[arg-type]
        )
    CNNUnitScorer(two_convs(), "2", 0, preprocess=PLAIN32, placement=(19, 0, 13))  # fits
    CNNUnitScorer(two_convs(), "2", 0, preprocess=PLAIN32, placement=(0, 19, 13))


def test_a_unit_blind_to_every_probe_is_refused_naming_what_to_give() -> None:
    dead = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    with torch.no_grad():
        dead[0].weight.zero_()
    with pytest.raises(
        XDreamError,
        match=r"cannot find the receptive field of channel 1 .*"
        r"give the placement as \[left, top, size\]",
    ):
        CNNUnitScorer(dead, "0", 1, preprocess=PLAIN32, placement="rf")
    assert check_placement(None) == "full"


def test_a_config_run_places_its_images_and_records_the_box(tmp_path: Path) -> None:
    """[target] placement from a config: "rf" is found for the unit (the centre of blocks.0
    of EfficientNet-Lite0, behind a 3 x 3 stride-2 stem and a 3 x 3 depthwise convolution: 7
    px), recorded; a box is read back from config.yaml on resume; a bad value is a config
    error."""
    cfg = {
        "experiment": {"generations": 1, "n_references": 2, "seed": 1},
        "generator": {"name": "pixels", "size": 32, "code_size": 8},
        "optimizer": {"name": "genetic", "population_size": 4},
        "target": {"layer": "blocks.0", "channel": 3, "placement": "rf", "device": "cpu"},
    }
    out = tmp_path / "run"
    Experiment.from_config(config.from_dict(cfg), out).run()
    target = json.loads((out / "summary.json").read_text())["target"]
    assert target["placement"] == [110, 110, 7]
    cfg["target"]["placement"] = [100, 100, 30]
    boxed = Experiment.from_config(config.from_dict(cfg), tmp_path / "boxed")
    boxed.run()
    (tmp_path / "boxed" / "config.yaml").write_text(
        (tmp_path / "boxed" / "config.yaml").read_text().replace("generations: 1", "generations: 2")
    )
    resumed = Experiment.resume(tmp_path / "boxed")
    assert resumed.config is not None and resumed.config.target.placement == (100, 100, 30)
    assert resumed.config_changes == ["experiment.generations: 1 -> 2"]
    cfg["target"]["placement"] = "middle"
    with pytest.raises(ConfigError, match="placement must be 'full', 'rf' or"):
        config.from_dict(cfg)
    # an "rf" run goes on in the square it recorded, not in the field found again (which on
    # another device could differ by a pixel, and was then refused as another placement)
    summary = json.loads((out / "summary.json").read_text())
    summary["target"]["placement"] = [109, 109, 9]
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "config.yaml").write_text(
        (out / "config.yaml").read_text().replace("generations: 1", "generations: 2")
    )
    resumed = Experiment.resume(out)
    assert resumed.scorer.describe()["placement"] == [109, 109, 9]
    resumed.run()
    assert json.loads((out / "summary.json").read_text())["target"]["placement"] == [109, 109, 9]
    rf = config.from_dict({**cfg, "target": {**cfg["target"], "placement": "rf"}})
    assert started_square(rf, [tmp_path / "none", out]) == Box(109, 109, 9)
    # none for another placement, a square recorded for another network, or no square
    boxed_cfg = config.from_dict({**cfg, "target": {**cfg["target"], "placement": [0, 0, 9]}})
    assert started_square(boxed_cfg, [out]) is None
    for network, square in (("another", [109, 109, 9]), ("efficientnet-lite0", None)):
        summary = json.loads((out / "summary.json").read_text())
        summary["target"].update(network=network, placement=square)
        (out / "summary.json").write_text(json.dumps(summary))
        assert started_square(rf, [out]) is None


@pytest.mark.parametrize(
    ("kernel", "padding", "box"),
    [
        # 2 columns (10, 11) by 7 rows (9..15): 2 columns of the square before them, 3 after
        ((7, 2), (3, 0), Box(8, 9, 7)),
        # 7 columns (7..13) by 2 rows (12, 13): 2 rows before them, 3 after
        ((2, 7), (0, 3), Box(7, 10, 7)),
    ],
)
def test_a_field_longer_one_way_is_centred_in_its_square(
    kernel: tuple[int, int], padding: tuple[int, int], box: Box
) -> None:
    """(audit J: a centring off by one, or a square as tall as the field whatever its width,
    passed the square fields above.) The unit at x 10, y 12 of one convolution."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 2, kernel, padding=padding))
    scorer = CNNUnitScorer(module, "0", 1, 10, 12, preprocess=PLAIN32, placement="rf")
    assert scorer.box == box


@pytest.mark.filterwarnings("ignore:placement .* lies outside the receptive field")  # on purpose
def test_the_canvas_is_mid_grey_before_the_networks_normalisation() -> None:
    """Grey 0.5 in every channel: a preprocess of mean 0.5 makes it 0 (audit J: the canvas's
    value was only compared with the GREY constant)."""
    grey_is_zero = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32)
    image = torch.ones(1, 3, 8, 8)
    for channel in range(3):
        scorer = CNNUnitScorer(
            nn.Sequential(nn.Identity()),
            "0",
            channel,
            3,
            20,
            preprocess=grey_is_zero,
            placement=(4, 10, 8),
        )
        assert scorer.score(image, ["a"])[0] == 0.0  # outside the box
        inside = CNNUnitScorer(
            nn.Sequential(nn.Identity()),
            "0",
            channel,
            4,
            10,
            preprocess=grey_is_zero,
            placement=(4, 10, 8),
        )
        assert inside.score(image, ["a"])[0] == 2.0  # (1 - 0.5) / 0.25


def test_the_shared_pass_resizes_to_image_size_then_places() -> None:
    """As a single scorer does (audit J: the shared scorer placing first, or fitting the box
    to image_size, passed)."""
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    multi = MultiUnitScorer(
        nn.Sequential(nn.Identity()),
        [Unit("0", 0, 5, 6), Unit("0", 1, 12, 13)],
        preprocess=PLAIN32,
        image_size=4,
        placement=(5, 6, 8),
        device="cpu",
    )
    placed = resize(resize(image, 4), 8)
    expected = [float(placed[0, 0, 0, 0]), float(placed[0, 1, 7, 7])]
    np.testing.assert_allclose(multi.activations(image)[0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("units", "union"),
    [
        # one layer, two positions: [2, 2, 7] and [7, 17, 7]
        ([Unit("2", 0, 10, 20), Unit("2", 1, 5, 5)], [2, 2, 22]),
        # [25, 0, 7] and [29, 27, 3]: 7 columns but 30 rows, so the square starts at column
        # 32 - 30 = 2 to stay in the input
        ([Unit("2", 0, 29, 3), Unit("0", 1, 30, 28)], [2, 0, 30]),
        # [0, 25, 7] and [27, 29, 3]: 30 columns but 7 rows, so it starts at row 2
        ([Unit("2", 0, 3, 29), Unit("0", 1, 28, 30)], [0, 2, 30]),
    ],
)
def test_the_box_suggested_for_units_with_other_fields_holds_them_within_the_input(
    units: list[Unit], union: list[int]
) -> None:
    with pytest.raises(XDreamError) as err:
        MultiUnitScorer(two_convs(), units, preprocess=PLAIN32, placement="rf", device="cpu")
    assert str(err.value).endswith(f"(one that holds them all: {union})")


def test_rf_is_found_in_evaluation_mode_for_a_model_in_training_mode() -> None:
    """BatchNorm on batch statistics ties every pixel to every unit: in training mode the
    field would be the whole input (audit J: the evaluation mode dropped passed)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh())
    module.train()
    assert rf_boxes(module, Unit("2", 0, 10, 20), fold_bn=False) == (Box(9, 19, 3),) * 2
    assert module.training


class TwoBranches(nn.Module):
    """Two 3 x 3 convolutions of the input, each through its own ReLU, the first in place and
    never above 0 (a bias of -100), the second always above 0 (+100)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv_a = nn.Conv2d(3, 2, 3, padding=1)
        self.conv_b = nn.Conv2d(3, 2, 3, padding=1)
        with torch.no_grad():
            self.conv_a.bias.fill_(-100.0)
            self.conv_b.bias.fill_(100.0)
        self.relu_a = nn.ReLU(inplace=True)
        self.relu_b = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_a(self.conv_a(x)) + self.relu_b(self.conv_b(x))


def test_rf_of_a_pre_activation_is_that_of_the_value_before_an_in_place_activation() -> None:
    """The shared scorer's forward pass goes on to its last layer: relu_a, in place, had
    overwritten the pre-activation it read for the field (0 everywhere here: "does not
    change with its input"), though it scores the value before it."""
    units = [Unit("relu_a", 0, 10, 20), Unit("relu_b", 0, 10, 20)]
    multi = MultiUnitScorer(
        TwoBranches(),
        units,
        preprocess=PLAIN32,
        placement="rf",
        pre_activation=True,
        device="cpu",
    )
    assert multi.box == Box(9, 19, 3)


def test_rf_is_found_in_float32_for_a_shared_scorer_in_mixed_precision() -> None:
    """A faint field (each convolution's weights scaled by 1e-5: gradients near 1e-10, below
    float16's smallest number) was lost under precision "float16" (autocast): "does not
    change with its input"."""
    module = two_convs()
    with torch.no_grad():
        module[0].weight.mul_(1e-5)
        module[2].weight.mul_(1e-5)
    for precision in ("float32", "float16", "bfloat16"):
        multi = MultiUnitScorer(
            module,
            [Unit("2", 1, 10, 20)],
            preprocess=PLAIN32,
            placement="rf",
            precision=precision,
            device="cpu",
        )
        assert multi.box == Box(7, 17, 7), precision


def test_rf_of_a_unit_blind_to_red_is_found_from_the_other_channels() -> None:
    """The field is where any input channel's gradient is not zero (audit J: red alone, zero
    for a network that reads green and blue, passed)."""
    module = two_convs()
    with torch.no_grad():
        module[0].weight[:, 0] = 0.0
    scorer = CNNUnitScorer(module, "2", 1, 10, 20, preprocess=PLAIN32, placement="rf")
    assert scorer.box == Box(7, 17, 7)


class _Sqrt(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x)


def test_a_unit_whose_gradient_is_nan_is_refused_as_such() -> None:
    """A unit that computes NaN on the probes (the square root of a convolution that is -1
    everywhere) has NaN gradients everywhere (0 * NaN): it is refused saying so, not as a unit
    that does not change with its input, nor placed over the whole input (audit J)."""
    conv = nn.Conv2d(3, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-1.0)
    with pytest.raises(XDreamError, match=r"gradient is not a finite number for 4 random inputs"):
        CNNUnitScorer(
            nn.Sequential(conv, _Sqrt()), "1", 0, 10, 20, preprocess=PLAIN32, placement="rf"
        )


def test_a_many_unit_rf_run_goes_on_in_the_square_its_units_recorded(tmp_path: Path) -> None:
    """A resumed many-unit "rf" run places every unit's images in the square its units'
    summaries recorded, as a single-unit run does (the field found again could differ)."""
    from xdream.multi import MultiExperiment

    cfg = {
        "experiment": {"generations": 1, "n_references": 0, "seed": 1},
        "generator": {"name": "pixels", "size": 32, "code_size": 8},
        "optimizer": {"name": "genetic", "population_size": 4},
        "target": {"layer": "blocks.0", "placement": "rf", "device": "cpu"},
        "targets": [{"channels": [0, 3]}],
    }
    out = tmp_path / "many"
    MultiExperiment.from_config(config.from_dict(cfg), out).run()
    units = sorted((out / "units").iterdir())
    assert len(units) == 2
    for unit in units:
        summary = json.loads((unit / "summary.json").read_text())
        assert summary["target"]["placement"] == [110, 110, 7]
        summary["target"]["placement"] = [109, 109, 9]
        (unit / "summary.json").write_text(json.dumps(summary))
    (out / "config.yaml").write_text(
        (out / "config.yaml").read_text().replace("generations: 1", "generations: 2")
    )
    resumed = MultiExperiment.resume(out)
    assert resumed.multi.box == Box(109, 109, 9)
    resumed.run()
    for unit in units:
        target = json.loads((unit / "summary.json").read_text())["target"]
        assert target["placement"] == [109, 109, 9]


def test_a_box_outside_the_units_field_is_warned_about_naming_the_field() -> None:
    """A box the unit cannot see (every image would score the same: grey is all it sees) is
    warned about when the scorer is made, with where the field lies; a box that overlaps the
    field, even by one pixel, is not; a network whose field cannot be found (NaN gradients)
    keeps the box it was given, unchecked."""
    import warnings

    unit = Unit("2", 0, 10, 20)  # its field: columns 7-13, rows 17-23
    said = r"placement \[14, 0, 10\] .* outside the receptive field of .*columns 7-13, rows 17-23"
    with pytest.warns(UserWarning, match=said + r"\): it sees only the grey canvas"):
        CNNUnitScorer(two_convs(), "2", 0, 10, 20, preprocess=PLAIN32, placement=[14, 0, 10])
    with pytest.warns(UserWarning, match=said):
        MultiUnitScorer(
            two_convs(), [unit], preprocess=PLAIN32, placement=[14, 0, 10], device="cpu"
        )
    with pytest.warns(UserWarning, match=r"\(x 10, y 20\).*\(x 0, y 0\).*: they see only"):
        units = [unit, Unit("2", 1, 10, 20), Unit("2", 0, 0, 0), Unit("2", 0, 15, 15)]
        MultiUnitScorer(two_convs(), units, preprocess=PLAIN32, placement=[14, 5, 5], device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for box in ([13, 23, 5], [7, 17, 1], [0, 0, 32]):  # a corner pixel of the field, ...
            CNNUnitScorer(two_convs(), "2", 0, 10, 20, preprocess=PLAIN32, placement=box)
            MultiUnitScorer(two_convs(), [unit], preprocess=PLAIN32, placement=box, device="cpu")
        conv = nn.Conv2d(3, 2, 3, padding=1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.fill_(-1.0)
        nan = CNNUnitScorer(
            nn.Sequential(conv, _Sqrt()), "1", 0, 10, 20, preprocess=PLAIN32, placement=[0, 0, 4]
        )
        assert nan.box == Box(0, 0, 4)
