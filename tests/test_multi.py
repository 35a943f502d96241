"""Many units at once: [[targets]] configs, the shared scorer and the lockstep driver."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from tests.helpers import SharedReLU
from xdream import config, networks, records
from xdream.errors import ConfigError, XDreamError
from xdream.experiment import Experiment
from xdream.multi import (
    MultiExperiment,
    MultiUnitScorer,
    Unit,
    UnitView,
    fold_batchnorm,
    summary_row,
    unit_config,
    unit_noise_seed,
    units_of,
)
from xdream.precision import tf32_allowed, tf32_mode
from xdream.scorers import CNNUnitScorer


def small_config(generations: int = 2, **targets: Any) -> dict[str, Any]:
    return {
        "experiment": {"generations": generations, "n_references": 3, "seed": 1},
        "generator": {"name": "pixels", "size": 32, "code_size": 8},
        "optimizer": {"name": "genetic", "population_size": 6},
        "target": {"layer": "blocks.0", "device": "cpu"},
        "targets": [{"channels": [0, 5]}, {"layer": "blocks.1", "channel": 2, "x": 3, "y": 4}],
    }


def stopped_after_one_generation(cfg: Any, out: Path) -> MultiExperiment:
    """A many-unit run of ``cfg`` in ``out`` that did one generation and was then "killed"
    (its records on disk, its folders let go)."""
    stopped = MultiExperiment.from_config(cfg, out)
    for e in stopped.experiments:
        e._start()
    stopped.step()
    for e in stopped.experiments:
        e.flush()
    stopped.release_folders()
    return stopped


def test_targets_expand_and_round_trip() -> None:
    cfg = config.from_dict(
        {"target": {"layer": "blocks.3"}, "targets": [{"channels": "2:5"}, {"channel": 9}]}
    )
    assert [t["channel"] for t in cfg.targets] == [2, 3, 4, 9]
    assert {t["layer"] for t in cfg.targets} == {"blocks.3"}
    assert config.from_dict(cfg.to_dict()) == cfg


def test_a_position_in_target_beside_targets_is_refused_not_ignored() -> None:
    """[target] x and y were silently not read by [[targets]] entries, whose units then read
    the centre of their layer: the wrong position for every unit, without a word."""
    many = {"target": {"layer": "blocks.3", "x": 1, "y": 2}, "targets": [{"channels": [0, 1]}]}
    refused = r"^\[target\] x = 1 and y = 2 are not read when \[\[targets\]\] names the units"
    with pytest.raises(ConfigError, match=refused + ": each entry's units read the centre"):
        config.from_dict(many)
    with pytest.raises(ConfigError, match=r"^\[target\] y = 2 is not read .* Move y = 2 into"):
        config.from_dict({**many, "target": {"layer": "blocks.3", "y": 2}})
    placed = config.from_dict({**many, "target": {"layer": "blocks.3"},
                               "targets": [{"channels": [0, 1], "x": 1, "y": 2}]})  # fmt: skip
    assert [(t["x"], t["y"]) for t in placed.targets] == [(1, 2), (1, 2)]
    assert config.from_dict({"target": {"x": 1, "y": 2}}).target.x == 1  # one unit: read


def test_a_many_unit_run_recorded_with_a_position_in_target_resumes(tmp_path: Path) -> None:
    """An earlier xdream recorded [target] x and y beside [[targets]] unread (its units read
    the centre): its config.yaml, refused since, stopped `xdream resume` with advice to move
    them into the entries, which would change what the units read. A recorded config keeps
    them as they were, unread; a config given to run is refused as before (mutation audit M)."""
    import yaml

    from xdream.cli import main

    out = tmp_path / "run"
    stopped_after_one_generation(config.from_dict(small_config(generations=2)), out)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    saved["target"].update(x=3, y=4)  # as an earlier xdream recorded them
    (out / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    recorded = config.from_dict(saved, recorded=True)
    assert (recorded.target.x, recorded.target.y) == (3, 4)
    assert {(t["x"], t["y"]) for t in recorded.targets} == {(None, None), (3, 4)}  # their own
    with pytest.raises(ConfigError, match=r"^\[target\] x = 3 and y = 4 are not read"):
        config.from_dict(saved)
    assert main(["resume", str(out)]) == 0
    units = sorted((out / "units").iterdir())
    assert [len(records.read(u).best_per_generation) for u in units] == [2, 2, 2]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([{"chanel": 1}], "Did you mean 'channel'"),
        ([{"channel": 1, "channels": [2]}], "exactly one of"),
        ([{"channel": 1}, {"channel": 1}], "repeats unit"),
        ([{"channels": "a:b"}], r"start:stop"),
        ([], "non-empty"),
    ],
)
def test_bad_targets_are_rejected(targets: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.from_dict({"targets": targets})


def test_a_run_refused_for_a_bad_unit_leaves_no_folder_or_lock_behind(tmp_path: Path) -> None:
    """A channel out of range is refused before anything is written: the folder the run made
    goes again, and a folder of the user's keeps its files and gets no lock file (it held
    ``.xdream.lock``, and ``xdream-runs/<time>-NAME`` stayed behind: audit X10)."""
    cfg = config.from_dict({**small_config(), "targets": [{"channels": [0, 99]}]})
    with pytest.raises(XDreamError, match=r"channel must be in 0\.\.15"):
        MultiExperiment.from_config(cfg, tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(XDreamError, match=r"channel must be in 0\.\.15"):
        MultiExperiment.from_config(cfg, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_shared_pass_reads_the_same_units_as_single_scorers() -> None:
    net = networks.make()
    # a convolution whose batch norm would be folded stays unfolded when it is a target
    units = [Unit("blocks.1", 3), Unit("blocks.4.project.conv", 7, x=2, y=5), Unit("pool", 11)]
    multi = MultiUnitScorer(net, units, device="cpu", batch_size=3)
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    acts = multi.activations(images)
    assert acts.shape == (4, 3)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.module.modules())
    assert fold_batchnorm(net.module)[1] == n_bn
    assert fold_batchnorm(net.module, keep=["blocks.4.project.conv"])[1] == n_bn - 1
    ids = [str(i) for i in range(4)]
    for k, u in enumerate(units):
        single = CNNUnitScorer(net, u.layer, u.channel, u.x, u.y, device="cpu")
        np.testing.assert_allclose(acts[:, k], single.score(images, ids), rtol=1e-4, atol=1e-4)
    assert multi.units[0] == Unit("blocks.1", 3, x=28, y=28)  # centre filled in
    # a unit's description names the Preprocess, as a single unit's does (it had none)
    described = UnitView(multi, 0).describe()
    assert described["preprocess"] == single.describe()["preprocess"]
    assert described["preprocess"]["mean"] == list(net.preprocess.mean)


def test_with_image_size_the_shared_pass_reads_the_unit_a_single_scorer_reads() -> None:
    """XDream's intermediate downsampling (``image_size``) shrinks the images, not the network's
    input: the layers' shapes, the centre and the range of x and y are those at the input size.
    The shared scorer (every config run's) took them from a dry run at ``image_size`` (64 px:
    blocks.10 4 x 4 instead of 14 x 14), so it read the unit at (2, 2) of the 14 x 14 map for
    the centre and refused x = 10."""
    net = networks.make()
    multi = MultiUnitScorer(
        net, [Unit("blocks.10", 5), Unit("blocks.10", 2, x=10, y=3)], image_size=64, device="cpu"
    )
    assert multi.shapes["blocks.10"] == (112, 14, 14)
    assert multi.units[0] == Unit("blocks.10", 5, x=7, y=7)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    acts = multi.activations(images)
    ids = ["a", "b", "c"]
    for k, (x, y, channel) in enumerate([(None, None, 5), (10, 3, 2)]):
        single = CNNUnitScorer(net, "blocks.10", channel, x, y, image_size=64, device="cpu")
        np.testing.assert_allclose(acts[:, k], single.score(images, ids), rtol=1e-4, atol=1e-4)
    assert UnitView(multi, 0).describe()["layer_shape"] == [112, 14, 14]


def test_a_run_that_read_another_unit_than_its_target_now_resolves_to_is_not_continued(
    tmp_path: Path,
) -> None:
    """A config run with image_size resumes as usual; one whose summary.json says it read
    another unit (an earlier xdream read the centre of a dry run at image_size: x 2, y 2 of
    a 4 x 4 map at 64 px) is refused, saying so, with nothing written: going on would put two
    units' responses in one record."""
    cfg = {
        "experiment": {"generations": 1, "n_references": 2, "seed": 1},
        "generator": {"name": "pixels", "size": 32, "code_size": 8},
        "optimizer": {"name": "genetic", "population_size": 4},
        "target": {"layer": "blocks.10", "channel": 5, "image_size": 64, "device": "cpu"},
    }
    out = tmp_path / "run"
    Experiment.from_config(config.from_dict(cfg), out).run()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["target"]["x"], summary["target"]["y"]) == (7, 7)
    assert summary["target"]["layer_shape"] == [112, 14, 14]
    (out / "config.yaml").write_text(
        (out / "config.yaml").read_text().replace("generations: 1", "generations: 2")
    )
    resumed = Experiment.resume(out)  # the same unit: no refusal
    resumed.run()
    assert resumed.generation == 2
    summary["target"].update(x=2, y=2, layer_shape=[112, 4, 4])  # as the earlier xdream wrote
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "config.yaml").write_text(
        (out / "config.yaml").read_text().replace("generations: 2", "generations: 3")
    )
    files = lambda: {  # noqa: E731 (the lock, taken and let go, says when)
        p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".xdream.lock"
    }
    before = files()
    with pytest.raises(XDreamError) as err:
        Experiment.resume(out)
    assert (
        "its [target] is read here at another unit than the one its records hold (x 2 -> 7, "
        "y 2 -> 7, layer_shape [112, 4, 4] -> [112, 14, 14]) (an earlier xdream took the "
        "layer's shape from a dry run at [target] image_size, 64 px, not at the network's "
        "input, so the centre it read was another unit)"
    ) in str(err.value)
    assert "Start the experiment again in a new folder" in str(err.value)
    assert files() == before
    # (audit J) the channel is compared too; a summary of an xdream that recorded no layer's
    # shape, or one that cannot be read (it is written again), checks nothing
    summary["target"].update(channel=6, x=7, y=7, layer_shape=[112, 14, 14])
    (out / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(XDreamError) as err:
        Experiment.resume(out)
    assert "records hold (channel 6 -> 5); going on would put" in str(err.value)
    summary["target"].update(channel=5)
    del summary["target"]["layer_shape"]
    (out / "summary.json").write_text(json.dumps(summary))
    Experiment.resume(out).run()
    (out / "summary.json").write_text('{"target": {')
    (out / "config.yaml").write_text(
        (out / "config.yaml").read_text().replace("generations: 3", "generations: 4")
    )
    resumed = Experiment.resume(out)
    resumed.run()
    assert resumed.generation == 4


def test_bad_units_are_rejected() -> None:
    net = networks.make()
    with pytest.raises(XDreamError, match=r"no layer 'blocks\.99'"):
        MultiUnitScorer(net, [Unit("blocks.99", 0)], device="cpu")
    with pytest.raises(XDreamError, match=r"channel must be in 0\.\.15 .*, got 16$"):
        MultiUnitScorer(net, [Unit("blocks.0", 16)], device="cpu")
    with pytest.raises(XDreamError, match=r"x must be in 0\.\.111 .*got x 200, y 56 \(the centre"):
        MultiUnitScorer(net, [Unit("blocks.0", 1, x=200)], device="cpu")
    with pytest.raises(XDreamError, match="precision"):
        MultiUnitScorer(net, [Unit("blocks.0", 1)], precision="half")


def test_misuse_of_the_shared_scorer_is_named_and_a_plain_module_or_tuples_serve() -> None:
    """A network's name, a plain module and tuples as units gave raw AttributeErrors."""
    from tests.test_scorers import IDENTITY, ids, images, toy
    from xdream.networks.base import Network

    net = toy()
    x = images(3)
    by_network = MultiUnitScorer(
        Network(net, IDENTITY, "toy"), [Unit("2", 1), Unit("6", 2)], device="cpu"
    ).activations(x)
    # a plain module with its preprocessing, units as (layer, channel[, x, y]) tuples
    plain = MultiUnitScorer(net, [("2", 1), ["6", 2]], preprocess=IDENTITY, device="cpu")
    np.testing.assert_array_equal(plain.activations(x), by_network)
    assert plain.network.name == "Sequential" and plain.units[0] == Unit("2", 1, 4, 4)
    placed = MultiUnitScorer(
        net, [("2", 1, 3, 5), ("2", 1, 6)], preprocess=IDENTITY, name="m", device="cpu"
    )
    assert placed.units == [Unit("2", 1, 3, 5), Unit("2", 1, 6, 4)] and placed.network.name == "m"
    alone = CNNUnitScorer(net, "2", 1, 3, 5, preprocess=IDENTITY, device="cpu").score(x, ids(3))
    np.testing.assert_allclose(placed.activations(x)[:, 0], alone, rtol=1e-6)

    pre = {"preprocess": IDENTITY}
    refused: list[tuple[Any, Any, dict[str, Any], str]] = [
        (
            "efficientnet-lite0",
            [Unit("blocks.10", 5)],
            {},
            r"network must be an xdream\.networks\.Network or an nn\.Module with "
            r"preprocess=\.\.\., got str 'efficientnet-lite0'; "
            r"xdream\.networks\.make\('efficientnet-lite0'\) builds",
        ),
        (
            net,
            [Unit("2", 1)],
            {},
            r"a plain nn\.Module \(Sequential\) needs its preprocessing: pass "
            r"preprocess=xdream\.networks\.Preprocess\(mean, std, input_size\) \(or give a "
            r"Network: xdream\.networks\.Network\(module, preprocess, name\)\)",
        ),
        (net, [Unit("2", 1)], {"preprocess": (0.5, 0.5)}, "preprocess must be an xdream"),
        (net, ("2", 1), pre, r"got tuple \('2', 1\); for one unit write \[\('2', 1\)\]"),
        (net, Unit("2", 1), pre, r"for one unit write \[Unit\(layer='2'"),
        (net, [], pre, "needs at least one unit: give a list of"),
        (net, [("2",)], pre, r"units\[0\] must be an xdream\.multi\.Unit or a tuple"),
        (net, [("2", 1), (2, 1)], pre, r"units\[1\] = \(2, 1\): the layer must be a string"),
        (net, [("2", -1)], pre, r"channel must be an integer >= 0, got -1"),
        (net, [("2", 1, 2.5)], pre, r"x must be an integer >= 0 or None, got 2\.5"),
    ]
    for network, units, options, message in refused:
        with pytest.raises(XDreamError, match=message):
            MultiUnitScorer(network, units, device="cpu", **options)
    with pytest.raises(XDreamError, match=r"List the layers with `xdream\.networks\.layer_table"):
        MultiUnitScorer(net, [("9", 1)], preprocess=IDENTITY, device="cpu")


def test_a_layer_whose_module_runs_twice_is_refused_as_for_one_unit() -> None:
    """The shared pass read the first call of a module called at several places."""
    from tests.test_scorers import IDENTITY

    with pytest.raises(XDreamError, match=r"^layer 'relu' of 'SharedReLU' runs 2 times in each "):
        MultiUnitScorer(SharedReLU(), [("conv2", 1), ("relu", 0)], preprocess=IDENTITY)
    with pytest.raises(XDreamError, match=r"with inputs \(4, 4, 4\), \(6, 2, 2\)"):
        MultiUnitScorer(SharedReLU(), [("relu", 0)], preprocess=IDENTITY, pre_activation=True)
    assert MultiUnitScorer(SharedReLU(), [("conv2", 1)], preprocess=IDENTITY).shapes == {
        "conv2": (6, 2, 2)
    }


def test_an_overflowing_unit_of_a_config_run_is_named_with_its_dtype(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A config's units (one or many) are read by the shared pass, which passed infinity on:
    the run stopped in the optimiser with "scores must be finite numbers or NaN ... Map failed
    measurements to NaN", naming no unit, layer or dtype (a CNNUnitScorer names them)."""
    from torch import nn

    from tests.test_scorers import IDENTITY

    for attr in ("_entries", "_summaries", "_definitions"):  # registered for this test only
        monkeypatch.setattr(networks.REGISTRY, attr, dict(getattr(networks.REGISTRY, attr)))

    def half_net(weights: Any = None) -> networks.Network:
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))
        with torch.no_grad():
            net[0].weight.fill_(1e5)
            net[0].weight[1].zero_()  # channel 1 stays finite
        return networks.Network(net.half().eval(), IDENTITY, "test-multi-half")

    networks.REGISTRY.add("test-multi-half", half_net)
    cfg = {
        "experiment": {"generations": 1, "n_references": 3},
        "generator": {"name": "pixels", "size": 8, "code_size": 4},
        "optimizer": {"name": "genetic", "population_size": 6},
        "target": {"network": "test-multi-half", "layer": "1", "channel": 0, "device": "cpu"},
    }
    overflow = (
        r"^activations of 'test-multi-half' overflowed to infinity in float16 \(channel 0 of "
        r"layer '1' \(x 4, y 4\) for {0} of {0} images\): run the model in float32"
    )
    with pytest.raises(XDreamError, match=overflow.format(9)):  # 6 codes, 3 references
        Experiment.from_config(config.from_dict(cfg), tmp_path / "one").run()
    many = {**cfg, "targets": [{"channels": [1, 0]}]}
    with pytest.raises(XDreamError, match=overflow.format(15)):  # both units' codes, references
        MultiExperiment.from_config(config.from_dict(many), tmp_path / "many").run()
    shared = MultiUnitScorer(half_net(), [("1", 1), ("1", 0), ("1", 2)], device="cpu")
    both = r"\(channel 0 of layer '1' \(x 4, y 4\) for 2 of 2 images, channel 2 of layer '1' \("
    with pytest.raises(XDreamError, match=both):  # channel 1 is finite, and not named
        shared.activations(torch.rand(2, 3, 8, 8))


def test_pre_activation_on_another_layer_is_refused_as_for_one_unit() -> None:
    """The many-unit message ended at "but '2' is Conv2d"; the single-unit one names the
    activation layers and the way back."""
    from tests.test_scorers import IDENTITY, toy

    with pytest.raises(XDreamError) as single:
        CNNUnitScorer(toy(), "2", 0, preprocess=IDENTITY, pre_activation=True, device="cpu")
    with pytest.raises(XDreamError) as many:
        MultiUnitScorer(toy(), [("2", 0)], preprocess=IDENTITY, pre_activation=True, device="cpu")
    assert str(many.value) == str(single.value)
    assert "Activation layers: 1, 3. Or use pre_activation=False" in str(many.value)


@pytest.mark.slow
def test_lockstep_run_equals_separate_runs(tmp_path: Path, monkeypatch: Any) -> None:
    """Each unit's record is what its own config.yaml writes alone, noise included; the units'
    noise draws are independent (every unit drew the same ones, from the run's seed)."""
    cfg = config.from_dict({**small_config(), "noise": {"name": "gain", "ns": 0.5}})
    seen: list[int] = []
    tf32: list[bool] = []
    original = MultiUnitScorer.activations

    def counting(self: MultiUnitScorer, images: torch.Tensor) -> np.ndarray:
        seen.append(images.shape[0])
        tf32.append(tf32_allowed())
        return original(self, images)

    monkeypatch.setattr(MultiUnitScorer, "activations", counting)
    with tf32_mode(True):  # the caller's setting
        multi = MultiExperiment.from_config(cfg, tmp_path / "many")
        summaries = multi.run()
        caller = tf32_allowed()
    # 3 units x 6 evolved images, plus 3 reference crops shared by all (same reference seed)
    assert seen == [3 * 6 + 3, 3 * 6 + 3]
    # the shared pass computes in IEEE float32 (tf32 = false), the caller's setting survives
    assert tf32 == [False, False] and caller
    assert [s["generations"] for s in summaries] == [2, 2, 2]

    with open(tmp_path / "many" / "units.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["unit"] for r in table] == ["blocks.0_c000", "blocks.0_c005", "blocks.1_c002_x3_y4"]
    assert [r["x"] for r in table] == ["56", "56", "3"]  # the centre, filled in
    assert float(table[2]["best_score"]) == pytest.approx(summaries[2]["best_score"])

    # unit 3 alone, as `xdream run` would run it, gives the same record
    alone = unit_config(cfg, Unit("blocks.1", 2, x=3, y=4))
    Experiment.from_config(alone, tmp_path / "alone").run()
    a = records.read(tmp_path / "alone")
    b = records.read(tmp_path / "many" / "units" / "blocks.1_c002_x3_y4")
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    np.testing.assert_allclose(a.ref_scores, b.ref_scores, rtol=1e-5)
    assert config.load(tmp_path / "many" / "units" / table[2]["unit"] / "config.yaml") == alone
    assert alone.experiment.noise_seed is not None

    # each unit its own noise: the gains of the (shared) reference crops differ between units
    gains = []
    for label in (r["unit"] for r in table):
        with h5py.File(tmp_path / "many" / "units" / label / "record.h5", "r") as f:
            gains.append(f["references/scores"][:] / f["references/clean_scores"][:])
    assert not np.allclose(gains[0], gains[1]) and not np.allclose(gains[0], gains[2])
    # stable: the same unit, the same seed in every process; another seed, other draws
    assert unit_config(cfg, Unit("blocks.1", 2, x=3, y=4)) == alone
    other = config.from_dict({**cfg.to_dict(), "experiment": {"seed": 2, "generations": 2}})
    assert unit_config(other, Unit("blocks.1", 2, 3, 4)).experiment.noise_seed != (
        alone.experiment.noise_seed
    )
    assert unit_noise_seed(cfg, Unit("blocks.1", 2, x=3, y=4)) == 2659694318


@pytest.mark.slow
def test_interrupted_lockstep_run_resumes(tmp_path: Path) -> None:
    cfg = config.from_dict(small_config(generations=2))
    MultiExperiment.from_config(cfg, tmp_path / "whole").run()
    stopped = MultiExperiment.from_config(cfg, tmp_path / "part")
    for e in stopped.experiments:
        e._start()
    stopped.step()
    stopped.release_folders()  # then "killed"
    resumed = MultiExperiment.resume(tmp_path / "part")
    assert [e.generation for e in resumed.experiments] == [1, 1, 1]
    resumed.run()
    assert_same_units(resumed.labels, tmp_path / "whole", tmp_path / "part")


def test_a_lockstep_run_stopped_by_ctrl_c_brings_every_units_record_up_to_date(
    tmp_path: Path,
) -> None:
    """However a run stops, each unit's record.h5 is brought up to the generations on disk
    (here the records lag by the interval: an hour)."""
    data = small_config(generations=4)
    data["experiment"]["record_interval"] = 3600
    run = MultiExperiment.from_config(config.from_dict(data), tmp_path / "part")

    def stop(generation: int, units: int) -> None:
        if generation == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.run(progress=stop)
    have = [records.H5Record(e.folder.record).generations() for e in run.experiments]
    assert have == [3] * len(run.experiments)


def test_a_folder_is_let_go_only_once_its_records_written_in_the_background_are_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lockstep step's records are written in the background; release_folders() let the
    folders go while they were still being written, so a resume found 0-1 of 3 units'
    checkpoints (the test above passed only while building the network took long enough)."""
    import concurrent.futures
    import time

    from xdream import experiment

    real = experiment._record_writer()

    class Slow:
        def submit(self, task: Any) -> concurrent.futures.Future[None]:
            return real.submit(lambda: (time.sleep(0.4), task())[1])

    cfg = config.from_dict(small_config(generations=2))
    stopped = MultiExperiment.from_config(cfg, tmp_path / "part")
    monkeypatch.setattr(experiment, "_record_writer", Slow)
    for e in stopped.experiments:
        e._start()
    stopped.step()
    stopped.release_folders()
    monkeypatch.undo()
    resumed = MultiExperiment.resume(tmp_path / "part")
    assert [e.generation for e in resumed.experiments] == [1, 1, 1]


def test_a_folder_lock_is_let_go_after_its_background_records_not_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """release_folder() waits for the records, then lets the lock go: a process that takes the
    lock the moment it is free finds the records whole (mutation audit M: the other order
    passed the test above, which resumes only once release_folders() has returned)."""
    import concurrent.futures

    from xdream import experiment

    real = experiment._record_writer()

    class Slow:
        def submit(self, task: Any) -> concurrent.futures.Future[None]:
            return real.submit(lambda: (time.sleep(0.2), task())[1])

    cfg = config.from_dict({**small_config(generations=2), "targets": [{"channels": [0]}]})
    stopped = MultiExperiment.from_config(cfg, tmp_path / "part")
    monkeypatch.setattr(experiment, "_record_writer", Slow)
    (e,) = stopped.experiments
    e._start()
    stopped.step()
    writing, lock = e._writing, e._lock
    assert writing is not None and lock is not None and not writing.done()
    done_at_release: list[bool] = []
    release = lock.release

    def noted() -> None:
        done_at_release.append(writing.done())
        release()

    monkeypatch.setattr(lock, "release", noted)
    stopped.release_folders()
    assert done_at_release == [True]


def test_a_many_unit_run_of_an_earlier_xdream_resumes_with_its_shared_noise_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units of a run started before units had their own noise seeds (one stream, from the
    run's seed, for every unit; no noise_seed in the configs) resume unrefused and go on with
    that stream, as the whole run would have; their config.yaml names no seed they never used."""
    import pickle

    import yaml

    from xdream import experiment, multi

    data = {**small_config(generations=2), "noise": {"name": "gain", "ns": 0.5}}
    cfg = config.from_dict(data)
    with monkeypatch.context() as m:  # how an earlier xdream drew the units' noise
        m.setattr(
            multi, "unit_noise_seed", lambda c, u: experiment.derived_seed(c.experiment.seed, 2)
        )
        MultiExperiment.from_config(cfg, tmp_path / "whole").run()
        stopped = stopped_after_one_generation(cfg, tmp_path / "part")
    for e in stopped.experiments:  # as an earlier xdream wrote them: without the key
        state = pickle.loads(e.folder.checkpoint.read_bytes())
        del state["config"]["experiment"]["noise_seed"]
        e.folder.checkpoint.write_bytes(pickle.dumps(state))
        saved = yaml.safe_load(e.folder.config.read_text())
        del saved["experiment"]["noise_seed"]
        e.folder.config.write_text(yaml.safe_dump(saved, sort_keys=False))
    del stopped
    resumed = MultiExperiment.resume(tmp_path / "part")
    assert [e.generation for e in resumed.experiments] == [1, 1, 1]
    resumed.run()
    assert_same_units(resumed.labels, tmp_path / "whole", tmp_path / "part")
    for label in resumed.labels:
        unit = config.load(tmp_path / "part" / "units" / label / "config.yaml")
        assert unit.experiment.noise_seed is None  # derived from seed, as it was
    MultiExperiment.resume(tmp_path / "part").release_folders()  # and again
    # a noise_seed set now names a stream the units never drew: refused, as for a new run
    top = yaml.safe_load((tmp_path / "part" / "config.yaml").read_text())
    top["experiment"] = {**top["experiment"], "noise_seed": 5}
    (tmp_path / "part" / "config.yaml").write_text(yaml.safe_dump(top, sort_keys=False))
    with pytest.raises(XDreamError, match=re.escape("experiment.noise_seed: None -> ")):
        MultiExperiment.resume(tmp_path / "part")


def test_a_noise_seed_set_on_resume_of_a_run_started_without_one_is_refused(
    tmp_path: Path,
) -> None:
    """A run started before noise_seed existed (no key in its checkpoint's config) accepted a
    noise_seed added on resume; its config.yaml then named a seed that does not draw its
    noise. It is compared as None, the derived stream, and refused like any such change."""
    import pickle

    import yaml

    data = {k: v for k, v in small_config(generations=1).items() if k != "targets"}
    data["noise"] = {"name": "gain", "ns": 0.5}
    Experiment.from_config(config.from_dict(data), tmp_path / "run").run()
    folder = records.RunFolder(tmp_path / "run")
    state = pickle.loads(folder.checkpoint.read_bytes())
    del state["config"]["experiment"]["noise_seed"]  # as an earlier xdream wrote it
    folder.checkpoint.write_bytes(pickle.dumps(state))
    saved = yaml.safe_load(folder.config.read_text())
    saved["experiment"] = {**saved["experiment"], "noise_seed": 5, "generations": 2}
    folder.config.write_text(yaml.safe_dump(saved, sort_keys=False))
    with pytest.raises(XDreamError, match=re.escape("experiment.noise_seed: None -> 5")):
        Experiment.resume(tmp_path / "run")
    del saved["experiment"]["noise_seed"]  # without it, it goes on
    folder.config.write_text(yaml.safe_dump(saved, sort_keys=False))
    Experiment.resume(tmp_path / "run").run()
    assert len(records.read(tmp_path / "run").best_per_generation) == 2


def fail_the_second_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second shared scoring pass fails, as a GPU fault would (every unit has drawn its
    generation's references by then)."""
    original, calls = MultiUnitScorer.activations, []

    def faulty(self: MultiUnitScorer, images: torch.Tensor) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return original(self, images)

    monkeypatch.setattr(MultiUnitScorer, "activations", faulty)


def test_a_lockstep_run_continues_after_an_error_as_if_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared pass fails after every unit drew its generation's references; the same
    MultiExperiment's run() continues each unit from its last generation on disk."""
    cfg = config.from_dict(small_config(generations=3))
    MultiExperiment.from_config(cfg, tmp_path / "whole").run()
    fail_the_second_pass(monkeypatch)
    told: list[tuple[int, BaseException]] = []  # each unit's scorer hears of the stop
    monkeypatch.setattr(UnitView, "stopped", lambda self, err: told.append((self.index, err)))
    multi = MultiExperiment.from_config(cfg, tmp_path / "part")
    with pytest.raises(RuntimeError, match="illegal memory access") as stop:
        multi.run()
    assert told == [(i, stop.value) for i in range(3)]
    assert [s["generations"] for s in multi.run()] == [3, 3, 3]
    assert_same_units(multi.labels, tmp_path / "whole", tmp_path / "part")


def test_a_stopped_lockstep_run_continued_while_another_process_has_it_writes_nothing_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refused run() wrote its units' pending records and summaries into the folder that
    the other process was running."""
    from tests.helpers import folder_held_by_another_process
    from xdream.errors import FolderInUseError

    cfg = config.from_dict(small_config(generations=3))
    fail_the_second_pass(monkeypatch)
    multi = MultiExperiment.from_config(cfg, tmp_path / "part")
    with pytest.raises(RuntimeError, match="illegal memory access"):
        multi.run()
    found = [p for p in (tmp_path / "part").rglob("*") if p.name != records.LOCK_FILE]
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in found}
    told: list[int] = []
    monkeypatch.setattr(UnitView, "stopped", lambda self, err: told.append(self.index))
    with folder_held_by_another_process(tmp_path / "part"), pytest.raises(FolderInUseError):
        multi.run()
    found = [p for p in (tmp_path / "part").rglob("*") if p.name != records.LOCK_FILE]
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in found} == before
    assert told == []
    assert [s["generations"] for s in multi.run()] == [3, 3, 3]


def assert_same_units(labels: list[str], a: Path, b: Path) -> None:
    """Every unit's codes, scores, image ids and reference crops are the same in two
    many-unit folders."""
    for label in labels:
        ra = records.read(a / "units" / label)
        rb = records.read(b / "units" / label)
        np.testing.assert_array_equal(ra.codes, rb.codes)
        np.testing.assert_array_equal(ra.scores, rb.scores)
        assert ra.image_ids == rb.image_ids
        assert ra.ref_ids == rb.ref_ids  # the reference crops drawn in each generation
        np.testing.assert_array_equal(ra.ref_scores, rb.ref_scores)


def test_resumed_cli_run_counts_generations_from_the_start_and_reports_standing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdream resume` of a many-unit run says where it resumes and counts generations from the
    run's start (not from the resume), with the units' median best score and how many units
    beat their best reference image, as the finished table has them."""
    from xdream.cli import main

    cfg = config.from_dict(small_config(generations=3))
    stopped = MultiExperiment.from_config(cfg, tmp_path / "part")
    for e in stopped.experiments:
        e._start()
    stopped.step()
    stopped.release_folders()  # then "killed"
    assert main(["resume", str(tmp_path / "part")]) == 0
    text = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert f"resuming 3 units in {tmp_path / 'part'} at generation 1" in text
    progress = re.findall(
        r"generation (\d+) \((\d+)/3 done\): 3 units, median best (\S+), (\d+) above their "
        "best reference",
        text,
    )
    # numbered from 0, as the records and a single unit's lines are (it said 2/3 for the second)
    assert [(g, done) for g, done, _, _ in progress] == [("1", "2"), ("2", "3")]
    progress = [(g, best, above) for g, _, best, above in progress]
    with open(tmp_path / "part" / "units.csv") as fh:
        table = list(csv.DictReader(fh))
    best = [float(r["best_score"]) for r in table]
    above = sum(b > float(r["best_reference_score"]) for b, r in zip(best, table))
    assert progress[-1][1:] == (f"{np.median(best):.4g}", str(above))
    # the run's presentations with the run's time (both sessions, as summary.json), not with
    # this session's alone
    summaries = [json.loads((tmp_path / "part" / r["folder"] / "summary.json").read_text())
                 for r in table]  # fmt: skip
    total = sum(int(r["presentations"]) for r in table)
    seconds = max(s["seconds"] for s in summaries)
    assert re.search(
        rf"3 units, {total} presentations in {seconds:.1f} s \(this session \d+\.\d s\); table",
        text,
    )


def test_a_full_disk_stops_a_lockstep_run_naming_its_folder_and_resume_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error names the many-unit folder (what `xdream resume` takes), not a unit's."""
    from tests.test_experiment import _FullDisk
    from xdream.errors import DiskFullError

    cfg = config.from_dict(small_config(generations=4))
    MultiExperiment.from_config(cfg, tmp_path / "whole").run()
    disk = _FullDisk(monkeypatch, at=2, where="journal")
    with pytest.raises(
        DiskFullError, match=f"continue the run: `xdream resume {tmp_path / 'part'}`"
    ):
        MultiExperiment.from_config(cfg, tmp_path / "part").run()
    disk.full = False
    resumed = MultiExperiment.resume(tmp_path / "part")
    assert {e.generation for e in resumed.experiments} <= {1, 2}
    resumed.run()
    assert_same_units(resumed.labels, tmp_path / "whole", tmp_path / "part")


def test_a_full_disk_at_the_units_table_is_one_clear_error_and_resume_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """units.csv, written after every unit finished, was outside the run's error handling: a
    full disk there gave three chained tracebacks and kept the folders locked."""
    from tests.helpers import folder_held_by_another_process
    from xdream import multi
    from xdream.errors import DiskFullError

    cfg = config.from_dict(small_config(generations=2))
    MultiExperiment.from_config(cfg, tmp_path / "whole").run()
    write_table = multi.write_table

    def full(path: Path, *args: Any) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(multi, "write_table", full)
    part = tmp_path / "part"
    with pytest.raises(DiskFullError, match=f"continue the run: `xdream resume {part}`"):
        MultiExperiment.from_config(cfg, part).run()
    with folder_held_by_another_process(part):
        pass  # let go: another process may take it
    for unit in (part / "units").iterdir():  # finished units stay finished
        assert json.loads((unit / "summary.json").read_text())["status"] == "finished"
    monkeypatch.setattr(multi, "write_table", write_table)
    resumed = MultiExperiment.resume(part)
    resumed.run()
    assert_same_units(resumed.labels, tmp_path / "whole", part)
    whole, cut = ((f / "units.csv").read_text().splitlines() for f in (tmp_path / "whole", part))
    assert [r.split(",")[:-1] for r in whole] == [r.split(",")[:-1] for r in cut]


def test_a_lockstep_folder_in_use_by_another_process_is_refused(tmp_path: Path) -> None:
    """A second process resuming a many-unit run that is still going is refused at the folder
    it was given (not at a unit's), and resumes once the first is gone."""
    from tests.helpers import folder_held_by_another_process
    from xdream.errors import FolderInUseError

    cfg = config.from_dict(small_config(generations=2))
    MultiExperiment.from_config(cfg, tmp_path / "many").run()
    with folder_held_by_another_process(tmp_path / "many") as pid:
        refused = f"'{tmp_path / 'many'}' is in use .*pid {pid} "
        with pytest.raises(FolderInUseError, match=refused):
            MultiExperiment.resume(tmp_path / "many")
    MultiExperiment.resume(tmp_path / "many").run()


def test_a_many_unit_run_into_a_folder_a_live_run_holds_names_the_holder(tmp_path: Path) -> None:
    """It said "already holds an experiment. Continue it with `xdream resume DIR`", which the
    live run refuses."""
    from rich.console import Console

    from tests.helpers import folder_held_by_another_process
    from xdream.errors import FolderInUseError
    from xdream.multi import run_many

    cfg = config.from_dict(small_config(generations=1))
    out = tmp_path / "many"
    MultiExperiment.from_config(cfg, out).run()
    with folder_held_by_another_process(out) as pid, pytest.raises(FolderInUseError) as held:
        run_many(cfg, out, Console(quiet=True))
    assert f"pid {pid} " in str(held.value)
    with pytest.raises(XDreamError, match="already holds a many-unit run"):
        run_many(cfg, out, Console(quiet=True))


def test_a_many_unit_run_killed_before_its_units_folders_resumes_as_many_units(
    tmp_path: Path,
) -> None:
    """Killed after writing its config but before any unit's folder (or, with `units/` made
    and no config yet): `xdream resume` continues it as the many-unit run it is, never as one
    experiment of its [target] (which replaced the run's config and records), and `xdream run`
    into a folder with a bare `units/` starts it."""
    from xdream.cli import main

    cfg = config.from_dict(small_config(generations=2))
    MultiExperiment.from_config(cfg, tmp_path / "whole").run()
    killed = tmp_path / "killed"
    killed.mkdir()
    config.dump_yaml(cfg, killed / "config.yaml")
    assert main(["resume", str(killed)]) == 0
    assert not (killed / "record.h5").exists()
    assert config.load(killed / "config.yaml").targets  # still the many-unit config
    labels = [u.label for u in units_of(cfg)]
    assert_same_units(labels, tmp_path / "whole", killed)

    early = tmp_path / "early"
    (early / "units").mkdir(parents=True)
    config.dump_yaml(cfg, tmp_path / "many.yaml")
    assert main(["run", str(tmp_path / "many.yaml"), "--out", str(early)]) == 0
    assert_same_units(labels, tmp_path / "whole", early)


def test_one_experiment_refuses_a_many_unit_config_and_a_folder_holds_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xdream.cli import main

    cfg = config.from_dict(small_config(generations=1))
    with pytest.raises(XDreamError, match=r"names 3 units \(\[\[targets\]\]\): .*MultiExperiment"):
        Experiment.from_config(cfg, tmp_path / "one")
    single = unit_config(cfg, Unit("blocks.0", 0))
    Experiment.from_config(single, tmp_path / "one").run()
    config.dump_yaml(cfg, tmp_path / "many.yaml")
    assert main(["run", str(tmp_path / "many.yaml"), "--out", str(tmp_path / "one")]) == 2
    assert "already holds an experiment" in capsys.readouterr().err
    assert not config.load(tmp_path / "one" / "config.yaml").targets  # left as it was
    MultiExperiment.from_config(cfg, tmp_path / "many").run()
    with pytest.raises(XDreamError, match="already holds an experiment"):
        Experiment.from_config(single, tmp_path / "many").run()  # one unit into a many-unit run
    assert config.load(tmp_path / "many" / "config.yaml").targets  # left as it was


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"targets": [{"channels": [0, 4]}]}, "no longer names blocks.0_c005"),
        ({"generator": {"name": "pixels", "size": 32, "code_size": 4}}, "generator.code_size"),
    ],
)
def test_a_many_unit_resume_refuses_a_config_that_changed_its_units(
    tmp_path: Path, edit: dict[str, Any], message: str
) -> None:
    """Each unit's checkpoint holds its config; the run's config.yaml must name the same
    units (a unit dropped would stay unfinished, one added would start late)."""
    cfg = config.from_dict({**small_config(generations=3), "targets": [{"channels": [0, 5]}]})
    stopped = MultiExperiment.from_config(cfg, tmp_path / "part")
    for e in stopped.experiments:
        e._start()
    stopped.step()
    stopped.release_folders()
    edited = config.from_dict({**cfg.to_dict(), **edit})
    config.dump_yaml(edited, tmp_path / "part" / "config.yaml")
    with pytest.raises(XDreamError, match=re.escape(message)):
        MultiExperiment.resume(tmp_path / "part")
    config.dump_yaml(cfg, tmp_path / "part" / "config.yaml")
    resumed = MultiExperiment.resume(tmp_path / "part")
    assert [e.generation for e in resumed.experiments] == [1, 1]
    resumed.release_folders()


def folder_state(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every file (its bytes) and folder (its listing) under ``out`` with its modification
    time, but the folder locks, which a resume takes before it checks anything."""
    state = {}
    for path in sorted(out.rglob("*")):
        if path.name == ".xdream.lock":
            continue
        content = path.read_bytes() if path.is_file() else "\n".join(sorted(os.listdir(path)))
        state[str(path.relative_to(out))] = (
            content if isinstance(content, bytes) else content.encode(),
            path.stat().st_mtime_ns,
        )
    return state


@pytest.mark.parametrize("damage", ["checkpoint", "record", "journal"])
def test_a_refused_many_unit_resume_changes_no_file_of_any_unit(
    tmp_path: Path, damage: str
) -> None:
    """A unit that cannot continue refused the resume only once the units before it were
    restored: their config.yaml and record.h5 already held the raised budget (and a
    journal/base.h5 had been made), while the message said nothing was changed. Every unit
    is checked first (its checkpoint, its config's changes, what its record.h5 needs), so the
    refusal leaves the whole folder as it was."""
    out = tmp_path / "run"
    if damage == "journal":  # killed after one generation, its last unit's journal damaged
        cfg = config.from_dict(small_config(generations=3))
        stopped = stopped_after_one_generation(cfg, out)
        last = out / "units" / stopped.labels[-1]
        (last / ".record.h5.ok").unlink()  # not marked: resume rebuilds it from the journal
        (last / "journal" / "gen000000.npz").write_bytes(b"junk")
        expected = "gen000000.npz' is damaged (not an .npz archive)"
    else:  # finished, then given a larger budget, its last unit lacking a part
        cfg = config.from_dict(small_config(generations=2))
        finished = MultiExperiment.from_config(cfg, out)
        finished.run()
        last = out / "units" / finished.labels[-1]
        if damage == "checkpoint":
            (last / "checkpoint.pkl").unlink()
            expected = "checkpoint.pkl is missing"
        else:
            (last / "record.h5").write_bytes(b"not HDF5")
            expected = "record.h5 was unreadable"
        config.dump_yaml(config.from_dict(small_config(generations=4)), out / "config.yaml")
    before = folder_state(out)
    time.sleep(0.01)  # a rewrite of the same bytes would show in the modification times
    with pytest.raises(XDreamError, match=re.escape(expected)) as err:
        MultiExperiment.resume(out)
    assert str(last) in str(err.value)
    assert folder_state(out) == before


def test_a_unit_that_lost_its_config_yaml_is_told_to_put_it_back(tmp_path: Path) -> None:
    """A unit folder without its config.yaml was said to be a unit that [[targets]] "adds"
    since the run started, which it does not. The refusal names the file and how to put it
    back from the unit's record.h5; done that way, the run goes on to the records of an
    uninterrupted one."""
    cfg = config.from_dict(small_config(generations=2))
    MultiExperiment.from_config(cfg, tmp_path / "whole").run()
    out = tmp_path / "part"
    stopped = stopped_after_one_generation(cfg, out)
    unit = out / "units" / stopped.labels[1]
    (unit / "config.yaml").unlink()
    before = folder_state(out)
    with pytest.raises(XDreamError) as err:
        MultiExperiment.resume(out)
    message = str(err.value)
    assert f"units/{stopped.labels[1]}/config.yaml is missing, while the unit's folder" in message
    said = f"xdream.config.dump_yaml(xdream.records.read({str(unit)!r}).config, "
    assert said + f"{str(unit / 'config.yaml')!r})" in message
    assert "adds" not in message
    assert folder_state(out) == before
    config.dump_yaml(records.read(unit).config, unit / "config.yaml")  # as the message says
    resumed = MultiExperiment.resume(out)
    resumed.run()
    assert_same_units(resumed.labels, tmp_path / "whole", out)


def test_a_unit_whose_folder_is_gone_is_told_so_and_an_added_one_as_added(
    tmp_path: Path,
) -> None:
    """A unit folder that is gone was said to be a unit that [[targets]] "adds". The units'
    summaries say how many units the run stepped together: fewer folders than that is a lost
    folder; where no summary says, both causes are named; with every folder there, a unit
    named now is one added."""
    cfg = config.from_dict(small_config(generations=3))
    out = tmp_path / "run"
    stopped = stopped_after_one_generation(cfg, out)
    more = small_config(generations=3)
    more["targets"] = [{"channels": [0, 5, 7]}, *more["targets"][1:]]
    added = config.from_dict(more)
    config.dump_yaml(added, out / "config.yaml")
    with pytest.raises(XDreamError, match=r"\[\[targets\]\] adds blocks\.0_c007 since the run"):
        MultiExperiment.resume(out)
    config.dump_yaml(cfg, out / "config.yaml")
    gone = stopped.labels[1]
    shutil.move(out / "units" / gone, tmp_path / "moved")
    with pytest.raises(XDreamError) as err:
        MultiExperiment.resume(out)
    assert f"the folder units/{gone} is gone (the run stepped 3 units together, and units/ " in (
        str(err.value)
    )
    assert "Put the folder back" in str(err.value) and "adds" not in str(err.value)
    for label in stopped.labels:  # summaries of an xdream that did not say
        (out / "units" / label / "summary.json").unlink(missing_ok=True)
    with pytest.raises(
        XDreamError, match=f"names {gone}, which has no folder under units/: either"
    ):
        MultiExperiment.resume(out)


@pytest.mark.parametrize("started_with", [None, 7])
def test_a_many_unit_resume_refused_for_an_edited_seed_says_it_in_the_runs_terms(
    tmp_path: Path, started_with: int | None
) -> None:
    """What the user edits is the run's config.yaml: the refusal names the run's folder and
    the run's own seed and noise_seed, not the numbers derived from them for one unit."""
    data = {**small_config(generations=2), "noise": {"name": "gain", "ns": 0.5}}
    data["experiment"] = {**data["experiment"], "noise_seed": started_with}
    cfg = config.from_dict(data)
    stopped_after_one_generation(cfg, tmp_path / "part")
    run = str(tmp_path / "part")

    def refusal(**experiment: Any) -> str:
        edited = {**cfg.to_dict(), "experiment": {**data["experiment"], **experiment}}
        config.dump_yaml(config.from_dict(edited), tmp_path / "part" / "config.yaml")
        with pytest.raises(XDreamError) as err:
            MultiExperiment.resume(tmp_path / "part")
        message = str(err.value)
        assert message.startswith(f"cannot resume {run!r}: its configuration changed")
        return message.split("(", 1)[1].split("), and continuing")[0]

    assert refusal(seed=2) == "experiment.seed: 1 -> 2"
    if started_with is None:
        assert refusal(noise_seed=5) == "experiment.noise_seed: None -> 5"
        assert refusal(seed=2, noise_seed=5) == (
            "experiment.seed: 1 -> 2; experiment.noise_seed: None -> 5"
        )
    else:
        earlier = "(the value the run started with)"
        assert refusal(noise_seed=5) == f"experiment.noise_seed: {earlier} -> 5"
        assert refusal(noise_seed=None) == f"experiment.noise_seed: {earlier} -> None"
    config.dump_yaml(cfg, tmp_path / "part" / "config.yaml")  # put back: it goes on
    resumed = MultiExperiment.resume(tmp_path / "part")
    assert [e.generation for e in resumed.experiments] == [1, 1, 1]
    resumed.release_folders()


def test_a_many_unit_run_resumed_with_a_larger_budget_updates_each_units_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each unit's config.yaml kept the old budget after the run went on with a larger one, and
    `xdream resume RUN/units/UNIT` continued the unit alone: it wrote the old budget into the
    unit's record and dropped lockstep_units. Units resume with the run, and only with it."""
    from xdream.cli import main

    cfg = config.from_dict({**small_config(generations=1), "targets": [{"channels": [0, 5]}]})
    MultiExperiment.from_config(cfg, tmp_path / "run").run()
    longer = config.from_dict({**cfg.to_dict(), "experiment": {**small_config()["experiment"]}})
    config.dump_yaml(longer, tmp_path / "run" / "config.yaml")
    resumed = MultiExperiment.resume(tmp_path / "run")
    resumed.run()
    for label, unit in zip(resumed.labels, units_of(longer)):
        unit_folder = tmp_path / "run" / "units" / label
        assert config.load(unit_folder / "config.yaml") == unit_config(longer, unit)
        assert config.load(unit_folder / "config.yaml").experiment.generations == 2
        assert len(records.read(unit_folder).best_per_generation) == 2
    unit_folder = tmp_path / "run" / "units" / resumed.labels[0]
    before = (unit_folder / "summary.json").read_text()
    assert main(["resume", str(unit_folder)]) == 2
    assert f"continue it with `xdream resume {tmp_path / 'run'}`" in capsys.readouterr().err
    assert (unit_folder / "summary.json").read_text() == before  # nothing touched
    with pytest.raises(XDreamError, match="is a unit of the many-unit run"):
        Experiment.resume(unit_folder)
    # however the path is written: from inside units/, the folder's parent is '.'
    with monkeypatch.context() as m:
        m.chdir(tmp_path / "run" / "units")
        with pytest.raises(XDreamError, match="is a unit of the many-unit run"):
            Experiment.resume(resumed.labels[0])


def test_a_finished_run_going_on_drops_its_units_table_until_it_finishes_again(
    tmp_path: Path,
) -> None:
    """units.csv kept the numbers of the first finish while a finished run went on with a
    larger budget, and after that continuation was killed. It is removed when the run goes
    on and written again once every unit has finished; a resume with nothing to do keeps it."""
    cfg = config.from_dict({**small_config(generations=1), "targets": [{"channels": [0, 5]}]})
    out = tmp_path / "run"
    MultiExperiment.from_config(cfg, out).run()
    table = out / "units.csv"
    kept = (table.read_bytes(), table.stat().st_mtime_ns)
    MultiExperiment.resume(out).release_folders()  # the same budget: nothing goes on
    assert (table.read_bytes(), table.stat().st_mtime_ns) == kept
    longer = {**cfg.to_dict(), "experiment": {**cfg.to_dict()["experiment"], "generations": 3}}
    config.dump_yaml(config.from_dict(longer), out / "config.yaml")
    going_on = MultiExperiment.resume(out)
    assert not table.exists()
    for e in going_on.experiments:
        e._take_up()
    going_on.step()
    for e in going_on.experiments:
        e._settle()  # its records handed over, no final flush: then "killed"
    going_on.release_folders()
    del going_on
    assert not table.exists()
    MultiExperiment.resume(out).run()
    with open(table) as fh:
        assert [row["generations"] for row in csv.DictReader(fh)] == ["3", "3"]


def test_a_many_unit_run_resumed_with_a_budget_below_what_has_run_is_refused(
    tmp_path: Path,
) -> None:
    """Each unit goes through the same check as a single run: a finished 2-generation run
    resumed with 1 generation is refused for its first unit, before any file of any unit is
    written (it said the change was taking effect, and wrote the smaller budget over records
    of 2 generations). The refusal names the run's folder, whose config.yaml was edited."""
    from tests.test_experiment import folder_contents

    cfg = config.from_dict({**small_config(generations=2), "targets": [{"channels": [0, 5]}]})
    MultiExperiment.from_config(cfg, tmp_path / "run").run()
    lower = config.from_dict({**cfg.to_dict(), "experiment": small_config(1)["experiment"]})
    config.dump_yaml(lower, tmp_path / "run" / "config.yaml")
    contents = folder_contents(tmp_path / "run")
    with pytest.raises(XDreamError, match=r"config\.yaml: its unit \S+ has already run 2 ") as no:
        MultiExperiment.resume(tmp_path / "run")
    assert f"cannot resume {str(tmp_path / 'run')!r} with" in str(no.value)  # the run, edited
    assert folder_contents(tmp_path / "run") == contents


def test_a_single_unit_run_in_a_folder_named_units_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single-unit run kept in units/ beside the user's own (single-target) config.yaml is
    not a unit of a many-unit run: it resumed with a refusal that named the wrong run."""
    single = {k: v for k, v in small_config(generations=1).items() if k != "targets"}
    cfg = config.from_dict(single)
    config.dump_yaml(cfg, tmp_path / "config.yaml")
    Experiment.from_config(cfg, tmp_path / "units" / "run1").run()
    longer = config.from_dict({**single, "experiment": {**single["experiment"], "generations": 2}})
    config.dump_yaml(longer, tmp_path / "units" / "run1" / "config.yaml")
    monkeypatch.chdir(tmp_path)
    resumed = Experiment.resume("units/run1")
    resumed.run()
    assert len(records.read(tmp_path / "units" / "run1").best_per_generation) == 2


def test_units_table_relates_clean_scores_to_clean_reference_scores(tmp_path: Path) -> None:
    """With a noise model, relative_to_references is the best clean evolved score over the
    best clean reference score (it divided by the noisy one); a run resumed from a checkpoint
    of an earlier xdream, which lacks the clean reference score, takes it from record.h5."""
    import pickle

    data = small_config(generations=3)
    data["noise"] = {"name": "gain", "ns": 0.5}
    cfg = config.from_dict(data)
    stopped = stopped_after_one_generation(cfg, tmp_path / "many")
    for e in stopped.experiments:
        state = pickle.loads(e.folder.checkpoint.read_bytes())
        del state["best_clean_reference"]  # as an earlier xdream wrote it
        e.folder.checkpoint.write_bytes(pickle.dumps(state))
    del stopped
    MultiExperiment.resume(tmp_path / "many").run()
    with open(tmp_path / "many" / "units.csv") as fh:
        table = list(csv.DictReader(fh))
    for row in table:
        rec = records.read(tmp_path / "many" / row["folder"])
        with h5py.File(tmp_path / "many" / row["folder"] / "record.h5", "r") as f:
            ref_clean_scores = f["references/clean_scores"][:]
        assert not np.array_equal(rec.ref_scores, ref_clean_scores)  # noisy
        clean_ref = float(np.nanmax(ref_clean_scores))
        assert float(row["best_clean_reference_score"]) == pytest.approx(clean_ref)
        assert float(row["best_reference_score"]) == pytest.approx(np.nanmax(rec.ref_scores))
        best_clean = float(np.nanmax(rec.clean_scores))
        if clean_ref > 0:
            assert float(row["relative_to_references"]) == pytest.approx(best_clean / clean_ref)
        else:  # no ratio to a negative reference (its sign would flip the comparison)
            assert row["relative_to_references"] == ""
    assert sum(row["relative_to_references"] != "" for row in table) == 2


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({"best_clean_score": 3.0, "best_clean_reference_score": 2.0}, 1.5),
        ({"best_clean_score": 3.0, "best_clean_reference_score": -2.0}, None),
        ({"best_clean_score": 3.0, "best_clean_reference_score": 0.0}, None),
        ({"best_clean_score": 3.0, "best_clean_reference_score": None}, None),
        ({"best_clean_score": None, "best_clean_reference_score": 2.0}, None),
        # summaries of an earlier xdream: the reference's clean score only without noise
        ({"best_clean_score": 3.0, "best_score": 3.0, "best_reference_score": 2.0}, 1.5),
        ({"best_clean_score": 3.0, "best_score": 3.5, "best_reference_score": 2.0}, None),
    ],
)
def test_units_table_leaves_a_ratio_to_no_positive_clean_reference_empty(
    scores: dict[str, Any], expected: float | None
) -> None:
    row = summary_row(Unit("blocks.0", 1), {"best_score": 3.0, **scores}, "units/x")
    assert row["relative_to_references"] == expected
    assert row["best_clean_reference_score"] == scores.get("best_clean_reference_score")


def test_a_unit_given_x_alone_is_named_by_the_position_it_reads(tmp_path: Path) -> None:
    """x without y reads the centre row; the folder says that row (it said yNone). A run whose
    unit folder an earlier xdream named ..._yNone resumes in that folder."""
    data = small_config(generations=2)
    data["targets"] = [{"channel": 0}, {"layer": "blocks.1", "channel": 2, "x": 3}]
    cfg = config.from_dict(data)
    multi = MultiExperiment.from_config(cfg, tmp_path / "new")
    centre = multi.multi.units[1].y
    assert centre is not None and centre > 3
    assert multi.labels == ["blocks.0_c000", f"blocks.1_c002_x3_y{centre}"]
    multi.run()
    assert sorted(p.name for p in (tmp_path / "new" / "units").iterdir()) == multi.labels
    with open(tmp_path / "new" / "units.csv") as fh:
        row = list(csv.DictReader(fh))[1]
    assert (row["unit"], row["x"], row["y"]) == (multi.labels[1], "3", str(centre))

    stopped = MultiExperiment.from_config(cfg, tmp_path / "old")
    for e in stopped.experiments:
        e._start()
    stopped.step()  # then "killed"
    stopped.release_folders()
    units = tmp_path / "old" / "units"
    (units / multi.labels[1]).rename(units / "blocks.1_c002_x3_yNone")  # as it was named
    resumed = MultiExperiment.resume(tmp_path / "old")
    assert resumed.labels == ["blocks.0_c000", "blocks.1_c002_x3_yNone"]
    assert [s["generations"] for s in resumed.run()] == [2, 2]
    assert sorted(p.name for p in units.iterdir()) == resumed.labels
    assert_same_units(["blocks.0_c000"], tmp_path / "new", tmp_path / "old")


def test_a_unit_named_twice_once_the_centre_is_filled_in_is_refused(tmp_path: Path) -> None:
    """channel = 0 (x, y left out: the centre) and the same channel at the centre ran twice."""
    data = small_config()
    data["targets"] = [{"channels": [0, 1]}, {"channel": 0, "x": 56, "y": 56}]
    with pytest.raises(ConfigError, match=r"channel 0 at x 56, y 56 twice .*centre"):
        MultiExperiment.from_config(config.from_dict(data), tmp_path / "many")
    data["targets"][1] = {"channel": 0, "x": 55}  # another unit: runs
    multi = MultiExperiment.from_config(config.from_dict(data), tmp_path / "other")
    assert multi.labels == ["blocks.0_c000", "blocks.0_c001", "blocks.0_c000_x55_y56"]


def test_a_units_seconds_are_said_to_be_the_lockstep_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each unit's summary counts the whole lockstep run's seconds, and says how many units
    ran together (the units' seconds do not add up to the run's).

    A unit's seconds run from its start, before the first shared scoring pass, to its last
    generation, told after the last pass: so each is at least the span from the first pass's
    start to the last pass's end, timed here on the same clock, however loaded the machine
    (a unit's share of the run, a third, would be less). It was checked against half of
    run()'s wall time, which a loaded machine broke: the set-up and the writes around the
    passes, not counted in the units' seconds, took more than half of it."""
    multi = MultiExperiment.from_config(config.from_dict(small_config()), tmp_path / "many")
    passes: list[tuple[float, float]] = []  # each shared scoring pass: its start and end
    activations = multi.multi.activations

    def timed(batch: torch.Tensor) -> Any:
        start = time.perf_counter()
        acts = activations(batch)
        passes.append((start, time.perf_counter()))
        return acts

    monkeypatch.setattr(multi.multi, "activations", timed)
    t = time.perf_counter()
    summaries = multi.run()
    wall = time.perf_counter() - t
    assert [s["lockstep_units"] for s in summaries] == [3, 3, 3]
    assert len(passes) == 2  # one pass a generation, shared by the 3 units
    span = passes[-1][1] - passes[0][0]
    assert all(span - 0.001 <= s["seconds"] <= wall + 60 for s in summaries), (span, summaries)
    alone = json.loads((tmp_path / "many" / "units" / "blocks.0_c000" / "summary.json").read_text())
    assert alone["lockstep_units"] == 3


def test_a_users_model_in_training_mode_or_float64_scores_as_the_single_scorer() -> None:
    """Many units of a user's own model: every pass in evaluation mode (same scores each call,
    BatchNorm's statistics untouched, the model's modes left as they were), inputs in the
    model's dtype, and channels_last skipped for a model it cannot convert."""
    from tests.test_scorers import IDENTITY, WithConv3d, dropout_net, ids, images
    from xdream.networks.base import Network

    net = dropout_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    multi = MultiUnitScorer(
        Network(net, IDENTITY, "mine"), [Unit("5", 1), Unit("5", 3)], device="cpu", fold_bn=False
    )
    x = images(4)
    first, second = multi.activations(x), multi.activations(x)
    np.testing.assert_array_equal(first, second)
    assert all(m.training for m in net.modules())
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)
    single = CNNUnitScorer(net, "5", 3, preprocess=IDENTITY, device="cpu")
    np.testing.assert_allclose(first[:, 1], single.score(x, ids(4)), rtol=1e-5, atol=1e-6)

    wide = Network(dropout_net().double(), IDENTITY, "mine64")
    got = MultiUnitScorer(wide, [Unit("4", 2)], device="cpu", fold_bn=False).activations(x)
    assert np.isfinite(got).all()
    # a float64 model's responses keep their precision (they were rounded to float32)
    big = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).double()
    with torch.no_grad():
        big[0].bias.fill_(1e3)
    multi64 = MultiUnitScorer(Network(big, IDENTITY, "big64"), [Unit("0", 1)], device="cpu")
    alone = CNNUnitScorer(big, "0", 1, preprocess=IDENTITY, device="cpu").score(x, ids(4))
    np.testing.assert_allclose(multi64.activations(x)[:, 0], alone, rtol=1e-12, atol=0)

    vol = Network(WithConv3d(), IDENTITY, "vol")
    conv3d = MultiUnitScorer(vol, [Unit("conv", 1, 2, 2)], device="cpu")
    assert not conv3d.channels_last and conv3d.activations(images(2)).shape == (2, 1)


OPEN_FILES_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[3])))
from xdream import config
from xdream.multi import MultiExperiment
data = {
    "experiment": {"generations": 1, "n_references": 0},
    "generator": {"name": "pixels", "size": 32, "code_size": 4},
    "optimizer": {"name": "genetic", "population_size": 4},
    "target": {"layer": "stem.conv", "device": "cpu"},
    # 40 units from the first two layers: the forward pass stops there, the files are the same
    "targets": [{"channels": "0:32"}, {"layer": "stem.bn", "channels": "0:8"}],
}
try:
    summaries = MultiExperiment.from_config(config.from_dict(data), sys.argv[1]).run()
except Exception as err:
    print(f"{type(err).__name__}: {err}")
    sys.exit(3)
print(len(summaries), "units; open files allowed:", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


@pytest.mark.slow
def test_a_many_unit_run_makes_room_for_its_open_files_or_says_how(tmp_path: Path) -> None:
    """Each unit holds its folder's lock file: 1100 units under a stock `ulimit -n 1024` ended
    in a traceback ("Too many open files"). The soft limit is raised as far as the hard limit
    allows (to the units, the files open already and a margin of 64), and a run that still
    cannot fit is refused before it starts, saying how to fix it."""
    import subprocess
    import sys

    def run(out: str, soft: int, hard: int) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", OPEN_FILES_SCRIPT, str(tmp_path / out), str(soft), str(hard)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300)

    refused = run("small", 60, 60)
    assert refused.returncode == 3, refused.stderr
    message = refused.stdout
    assert "a run of 40 units keeps one file open per unit and needs about " in message
    needed = int(message.split("needs about ")[1].split()[0])
    assert 40 + 64 < needed < 40 + 64 + 64  # the units, the margin and what is open already
    assert "this system allows 60 (`ulimit -n`; the hard limit is 60)" in message
    assert f"`ulimit -n {needed}`" in message
    assert not (tmp_path / "small" / "units").exists()  # refused before it started
    raised = run("room", 60, 2000)
    assert raised.returncode == 0, raised.stdout + raised.stderr
    assert raised.stdout.startswith("40 units; open files allowed: ")
    assert 60 < int(raised.stdout.split()[-1]) <= 200  # raised, as far as the run needs


def test_a_units_fault_advice_and_a_lost_run_config_name_the_many_unit_run(tmp_path: Path) -> None:
    """Advice for a unit's folder said `xdream resume RUN/units/UNIT`, which is refused: a unit
    goes on with its run. A many-unit run whose config.yaml is gone was taken for one built in
    Python; its units' records say it was made from a config."""
    cfg = config.from_dict(small_config(generations=1))
    multi = MultiExperiment.from_config(cfg, tmp_path / "run")
    multi.run()
    unit = tmp_path / "run" / "units" / multi.labels[0]
    assert records.continue_command(unit) == f"xdream resume {tmp_path / 'run'}"
    assert records.continue_how(unit) == f"`xdream resume {tmp_path / 'run'}`"
    (tmp_path / "run" / "config.yaml").unlink()
    assert records.config_yaml_lost(tmp_path / "run")
    advice = records.continue_command(tmp_path / "run")
    assert advice.startswith("its config.yaml is missing: put back the config it was started")
    assert "[[targets]] included" in advice and "records.read" not in advice  # units lack them


def test_the_progress_line_of_a_run_without_references_counts_no_unit_above_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With n_references = 0 the line says no reference was shown; it said "3 above their best
    reference" (every unit above a reference score of -inf) (audit U2-5)."""
    from xdream.cli import main

    raw = small_config(generations=1)
    raw["experiment"]["n_references"] = 0
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert re.search(
        r"generation 0 \(1/1 done\): 3 units, median best \S+, no reference shown", text
    )
    assert "above their best reference" not in text


def test_a_run_of_one_unit_counts_it_in_the_singular(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A [[targets]] run of one unit said "running 1 units in lockstep", "1 units, median best"
    and "1 units, 6 presentations in"."""
    from xdream.cli import main

    raw = small_config(generations=1)
    raw["targets"] = [{"channel": 5}]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "running 1 unit in lockstep" in text
    assert "generation 0 (1/1 done): 1 unit, median best" in text
    assert "1 unit, 6 presentations in" in text
    assert not re.search(r"\b1 units\b", text), text


def test_a_seed_edited_before_the_first_checkpoint_is_listed_once_not_per_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A many-unit run stopped before its first checkpoint starts again with config.yaml's
    edits, which `xdream resume` lists; an edited seed also listed every unit's derived
    noise_seed, a key config.yaml does not hold, once per unit (audit V2-3)."""
    from xdream.cli import main

    raw = small_config(generations=1)
    raw["experiment"]["n_references"] = 0
    out = tmp_path / "run"
    first = MultiExperiment.from_config(config.from_dict(raw), out)
    for e in first.experiments:
        e._start()
    first.release_folders()
    text = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text(text.replace("seed: 1", "seed: 2"))
    assert main(["resume", str(out)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert (
        "config.yaml changed since the last session, taking effect now: experiment.seed: 1 -> 2; "
        "experiment.noise_seed of each unit (drawn from noise_seed or seed)"
    ) in said


def test_every_bad_target_of_a_many_unit_run_is_named_at_once(tmp_path: Path) -> None:
    """A many-unit run whose targets had a layer typo and a channel out of range named only
    the first: the channel's came on the next try (audit A-10). Both come at once, each once,
    and a run with one bad target is told that one alone, as before."""
    data = small_config()
    data["targets"] = [
        {"channels": [0, 999, 998]},  # blocks.0 has 16 channels
        {"layer": "blocks.44", "channel": 1},
        {"layer": "blocks.1", "channel": 2, "x": 3, "y": 4},  # fine
    ]
    with pytest.raises(XDreamError) as err:
        MultiExperiment.from_config(config.from_dict(data), tmp_path / "run")
    message = str(err.value)
    assert message.startswith("3 of the targets cannot be read:")
    assert "has no layer 'blocks.44'" in message
    assert "got 999" in message and "got 998" in message
    assert message.count("\n  ") == 3
    data["targets"] = data["targets"][1:]
    with pytest.raises(XDreamError) as err:
        MultiExperiment.from_config(config.from_dict(data), tmp_path / "run")
    assert str(err.value).startswith("network 'efficientnet-lite0' has no layer 'blocks.44'")
    data["targets"] = [{"channel": 999}, *data["targets"]]  # two bad: both named too
    with pytest.raises(XDreamError, match=r"^2 of the targets cannot be read:\n  "):
        MultiExperiment.from_config(config.from_dict(data), tmp_path / "run")


def test_experiment_resume_tells_a_many_unit_run_by_its_config_and_not_by_units_alone(
    tmp_path: Path,
) -> None:
    """Experiment.resume of a many-unit run's folder says to continue it as one, also before
    its units/ folder was made (its config.yaml has [[targets]]); a folder that holds only
    units/ holds no run, many-unit or other (mutation audit M)."""
    import yaml

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(small_config(), sort_keys=False))
    with pytest.raises(XDreamError, match=r"is a many-unit run \(\[\[targets\]\]\)"):
        Experiment.resume(run)
    unstarted = tmp_path / "unstarted"
    (unstarted / "units").mkdir(parents=True)
    with pytest.raises(
        XDreamError, match=r"is not an experiment folder \(no config\.yaml\)"
    ) as err:
        Experiment.resume(unstarted)
    assert "many-unit" not in str(err.value)
