"""Bad input is refused with one message that says what was expected and how to fix it: never
a traceback from inside a library, never a run of nonsense."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import xdream.generators
import xdream.optimizers
import xdream.scorers
from tests.helpers import RedScorer, tiny_experiment
from xdream import config
from xdream.cli import main
from xdream.errors import ConfigError, XDreamError
from xdream.experiment import Experiment
from xdream.params import build_params

BASE: dict[str, Any] = {
    "experiment": {"generations": 2, "n_references": 2},
    "generator": {"name": "pixels", "size": 32, "code_size": 8},
    "optimizer": {"name": "genetic", "population_size": 4},
    "target": {"layer": "blocks.2", "channel": 3},
}
"""The audit's base config: runs in about a second."""


def edited(section: str, key: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.setdefault(section, {})[key] = value
    return data


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("experiment", "generations", True, "[experiment]: 'generations' must be an integer"),
        ("experiment", "n_references", True, "[experiment]: 'n_references' must be an int"),
        ("experiment", "seed", True, "[experiment]: 'seed' must be an integer, got true"),
        ("experiment", "batch_size", True, "[experiment]: 'batch_size' must be an integer"),
        ("experiment", "record_interval", True, "[experiment]: 'record_interval' must be a nu"),
        ("experiment", "tf32", 1, "[experiment]: 'tf32' must be true or false, got 1"),
        ("experiment", "save_images", 1, "[experiment]: 'save_images' must be a string"),
        ("generator", "code_size", True, "generator 'pixels': 'code_size' must be an integer"),
        ("optimizer", "mutation_rate", True, "optimizer 'genetic': 'mutation_rate' must be a "),
        ("target", "batch_size", True, "[target]: 'batch_size' must be an integer"),
        ("target", "pre_activation", "no", "[target]: 'pre_activation' must be true or false"),
        ("target", "channel", "3", "[target]: 'channel' must be an integer, got '3' (a str"),
        ("target", "channel", 3.0, "[target]: 'channel' must be an integer, got 3.0 (a dec"),
        ("target", "channel", True, "[target]: 'channel' must be an integer, got true (a b"),
        ("target", "x", True, "[target]: 'x' must be an integer"),
        ("target", "layer", 3, "[target]: 'layer' must be a string, got 3"),
        ("target", "image_size", True, "[target]: 'image_size' must be an integer"),
        ("noise", "reps", True, "noise 'poisson': 'reps' must be an integer, got true"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_by_name(
    section: str, key: str, value: Any, message: str
) -> None:
    data = edited(section, key, value)
    if section == "noise":
        data["noise"]["name"] = "poisson"
    with pytest.raises(ConfigError) as err:
        config.from_dict(data)
    assert message in str(err.value)
    assert ": write " in str(err.value)  # how to fix


def test_right_kinds_still_load() -> None:
    cfg = config.from_dict(
        {
            **BASE,
            "optimizer": {"name": "genetic", "population_size": 4, "mutation_size": 1},
            "target": {"layer": "blocks.2", "channel": 3, "pre_activation": False, "x": 0},
            "noise": {"name": "poisson", "scale": 5, "reps": 2},
        }
    )
    assert cfg.optimizer["mutation_size"] == 1  # an integer is a number
    assert config.from_dict(cfg.to_dict()) == cfg
    # numpy scalars from Python callers are numbers too
    opt = xdream.optimizers.make("genetic", dim=8, seed=np.int64(0), population_size=np.int64(6))
    assert len(opt.ask()) == 6


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("experiment", "seed", -5, "'seed' must be an integer >= 0, got -5"),
        ("experiment", "reference_seed", -3, "'reference_seed' must be an integer >= 0, got -3"),
        ("experiment", "noise_seed", -3, "'noise_seed' must be an integer >= 0, got -3"),
        (
            "experiment",
            "reference_seed",
            1.5,
            "\\[experiment\\]: 'reference_seed' must be an int",
        ),
        ("target", "image_size", 0, "'image_size' must be between 1 and 1024 pixels, got 0"),
        ("target", "image_size", 100000, "between 1 and 1024 pixels, got 100000"),
        ("target", "batch_size", 0, "'batch_size' must be an integer >= 1, got 0"),
        ("target", "channel", -1, "'channel' must be an integer >= 0, got -1"),
        ("experiment", "n_references", 5000, "'n_references' must be an integer from 0 to 1000"),
        ("experiment", "n_references", 1001, "'n_references' must be an integer from 0 to 1000"),
        ("experiment", "record_interval", -1, "'record_interval' must be a number of seconds >="),
        # NaN compares false with everything: record.h5 would not be appended until the end
        ("experiment", "record_interval", float("nan"), "'record_interval' must be a number of"),
        ("experiment", "generations", 0, "'generations' must be a positive integer, got 0"),
    ],
)
def test_out_of_range_values_are_refused(section: str, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.from_dict(edited(section, key, value))


def test_a_presentation_budget_of_zero_is_refused() -> None:
    data = {**BASE, "experiment": {"presentations": 0}}
    with pytest.raises(ConfigError, match="'presentations' must be a positive integer, got 0"):
        config.from_dict(data)


def test_the_documented_bounds_themselves_are_accepted() -> None:
    cfg = config.from_dict({**BASE, "experiment": {"n_references": 1000, "record_interval": 0}})
    assert (cfg.experiment.n_references, cfg.experiment.record_interval) == (1000, 0)
    assert config.from_dict({**BASE, "experiment": {"generations": 1}}).experiment.generations == 1
    cfg = config.from_dict({**BASE, "experiment": {"presentations": 1}})
    assert cfg.experiment.presentations == 1


@pytest.mark.parametrize(
    ("seed", "shown"),
    [(-1, "-1"), ("a", "'a' (a str)"), (1.5, "1.5 (a float)"), (True, "True (a bool)")],
)
def test_optimizer_seeds_must_be_integers_at_least_0(seed: Any, shown: str) -> None:
    """A seed passed in Python is shown as Python shows it ('a' (a str), not a config file's
    'a' (a string)); a config's seed keeps a config file's words."""
    with pytest.raises(ConfigError, match=f"seed must be an integer >= 0.*got {re.escape(shown)}:"):
        xdream.optimizers.make("genetic", dim=8, seed=seed)
    with pytest.raises(ConfigError, match=f"seed must be an integer >= 0.*got {re.escape(shown)}:"):
        Experiment(
            xdream.generators.make("pixels", size=32, code_size=8),
            RedScorer(),
            xdream.optimizers.make("genetic", dim=192, seed=0),
            Path("never-made"),
            seed=seed,
        )
    assert not Path("never-made").exists()


@pytest.mark.parametrize("name", [None, 3])
def test_a_component_name_must_be_a_string(name: Any) -> None:
    with pytest.raises(ConfigError, match=r"optimizer name must be a string.*genetic"):
        xdream.optimizers.make(name, dim=8)


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        ([], "'channels' = \\[\\] names no channel"),
        ("0:0", "'channels' = '0:0' names no channel.*stop must be greater than start"),
        ("5:2", "'channels' = '5:2' names no channel.*\"5:6\" for channel 5"),
        ([True], "list of integers >= 0"),
    ],
)
def test_an_empty_channel_set_is_refused(channels: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.from_dict({**BASE, "targets": [{"channels": channels}]})


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("[experiment]\n# café\ngenerations = 2\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text.*0xe9.*save it as UTF-8"):
        config.load(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("experiment:\n  generations: 2\n  generations: 3\n", "'generations' appears twice"),
        ("experiment:\n  seed: 1\ntarget:\n  channel: 2\nexperiment:\n  seed: 2\n", "'experi"),
    ],
)
def test_yaml_refuses_a_repeated_key_as_toml_does(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        config.load(path)
    assert "\n" not in str(err.value) and "give each key or section once" in str(err.value)
    toml = tmp_path / "twice.toml"
    toml.write_text("[experiment]\ngenerations = 2\ngenerations = 3\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        config.load(toml)


def test_a_json_config_is_read_and_refuses_a_repeated_key(tmp_path: Path) -> None:
    """A JSON config loads like the TOML one, and a key given twice is refused (JSON keeps the
    last silently: audit X4); another suffix names the four that are read."""
    path = tmp_path / "c.json"
    path.write_text('{"experiment": {"generations": 3}, "target": {"channel": 2}}')
    loaded = config.load(path)
    assert (loaded.experiment.generations, loaded.target.channel) == (3, 2)
    path.write_text('{"experiment": {"generations": 3, "generations": 2}}')
    with pytest.raises(ConfigError, match=r"c\.json'.*'generations' appears twice") as err:
        config.load(path)
    assert "\n" not in str(err.value) and "give each key or section once" in str(err.value)
    other = tmp_path / "c.txt"
    other.write_text("[experiment]\n")
    with pytest.raises(ConfigError, match=r"must end in .toml, .yaml, .yml or .json, got '.txt'"):
        config.load(other)


def test_yaml_merge_keys_and_repeated_keys_in_separate_mappings_still_load(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "experiment: &e\n  generations: 2\n  seed: 1\n"
        "target:\n  layer: blocks.2\n  channel: 2\n"
        "targets:\n  - channel: 1\n  - channel: 2\n    x: 1\n    y: 1\n"
    )
    assert config.load(path).experiment.generations == 2
    merged = tmp_path / "merged.yaml"
    merged.write_text("a: &a\n  seed: 1\n  generations: 2\nb:\n  <<: *a\n  generations: 3\n")
    assert config.read(merged)["b"] == {"seed": 1, "generations": 3}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"generations": -1}, "generations must be an integer >= 1 or None, got -1"),
        ({"generations": 0}, "generations must be an integer >= 1 or None, got 0"),
        ({"generations": 2.5}, "generations must be an integer >= 1 or None, got 2.5"),
        ({"generations": "2"}, "generations must be an integer >= 1 or None, got '2'"),
        ({"generations": True}, "generations must be an integer >= 1 or None, got True"),
        ({"generations": None, "presentations": 0}, "presentations must be an integer >= 1"),
        ({"save_images": "all"}, "save_images must be 'best' or 'none', got 'all'"),
        ({"n_references": -3}, "n_references must be an integer from 0 to 1000, got -3"),
        ({"n_references": 100000}, "n_references must be an integer from 0 to 1000, got 100000"),
        ({"record_interval": -5}, "record_interval must be a number of seconds >= 0, got -5"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"tf32": "yes"}, "tf32 must be True or False, got 'yes'"),
        ({"reference_seed": -1}, "reference_seed must be an integer >= 0, got -1"),
        ({"reference_seed": "a"}, r"reference_seed must be an integer >= 0, got 'a' \(a str\):"),
        ({"seed": 1.5}, "seed must be an integer >= 0"),
    ],
)
def test_experiment_arguments_are_checked_when_it_is_built(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    gen = xdream.generators.make("pixels", size=32, code_size=8)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0)
    args: dict[str, Any] = {"generations": 2, "n_references": 2, **kwargs}
    with pytest.raises(XDreamError, match=message):
        Experiment(gen, RedScorer(), opt, tmp_path / "run", **args)
    assert not (tmp_path / "run").exists()


def test_a_presentation_budget_below_one_generation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(XDreamError, match=r"give presentations >= 20\b"):
        tiny_experiment(tmp_path / "a", generations=None, presentations=19)  # type: ignore[arg-type]
    exp = tiny_experiment(tmp_path / "b", generations=None, presentations=20)  # type: ignore[arg-type]
    assert exp.run()["generations"] == 1  # exactly one generation fits


def test_cli_refuses_a_budget_below_one_generation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy.deepcopy(BASE)
    data["experiment"] = {"presentations": 3, "n_references": 2}
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdream: error:") and "Traceback" not in err
    assert "3 presentations is less than one generation" in err
    assert "give presentations >= 4" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "DIR", "--max-tiles", "-5"], "--max-tiles: expected an integer >= 1, got -5"),
        (["report", "DIR", "--max-tiles", "x"], "--max-tiles: expected an integer >= 1, got 'x'"),
        (["report", "DIR", "--watch", "-1"], "--watch: expected a number > 0, got -1"),
        (["report", "DIR", "--watch", "nan"], "--watch: expected a number > 0, got nan"),
        (["report", "DIR", "--refresh", "0"], "--refresh: expected an integer >= 1, got 0"),
        (["demo", "--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
        (["demo", "--generations", "0"], "--generations: expected an integer >= 1, got 0"),
    ],
)
def test_command_line_numbers_out_of_range_are_usage_errors(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path) if a == "DIR" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_default_budget_is_written_out_in_the_resolved_config(tmp_path: Path) -> None:
    """config.yaml holds every default filled in: no budget means 40 generations, written
    as such (it said `generations: null`); a presentation budget stays as it was given."""
    from xdream import config as config_mod

    resolved = config_mod.from_dict({}).to_dict()["experiment"]
    assert (resolved["generations"], resolved["presentations"]) == (40, None)
    given = config_mod.from_dict({"experiment": {"presentations": 300}}).to_dict()["experiment"]
    assert (given["generations"], given["presentations"]) == (None, 300)
    config_mod.dump_yaml(config_mod.from_dict({}), tmp_path / "config.yaml")
    assert config_mod.load(tmp_path / "config.yaml").experiment.generations == 40


def test_yaml_reads_exponent_numbers_as_numbers(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads `1e-3` as a string, which a number key refuses; configs read it
    as TOML and YAML 1.2 do. A quoted one stays a string."""
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  name: fdgd\n  learning_rate: 1e-3\n  search_radius: 2E+1\n")
    cfg = config.load(path)
    assert (cfg.optimizer["learning_rate"], cfg.optimizer["search_radius"]) == (0.001, 20.0)
    path.write_text("optimizer:\n  name: fdgd\n  learning_rate: '1e-3'\n")
    with pytest.raises(ConfigError, match=r"'learning_rate' must be a number, got '1e-3'"):
        config.load(path)


def test_numpy_numbers_serve_wherever_python_numbers_do(tmp_path: Path) -> None:
    """Configs and experiments built in Python from NumPy values (np.int64 seeds, an array of
    channels) are checked, run and written to config.yaml as plain numbers: they were refused
    by the sections' checks, or crashed the run when config.yaml was written."""
    from xdream.experiment import Experiment

    cfg = config.from_dict(
        {
            "experiment": {"generations": np.int64(1), "seed": np.int64(1), "n_references": 2,
                           "record_interval": np.float32(0.5), "tf32": np.bool_(False)},
            "generator": {"name": "pixels", "size": np.int64(32), "code_size": np.int32(8)},
            "optimizer": {"name": "genetic", "population_size": np.int64(4)},
            "target": {"layer": "blocks.0", "channel": np.int64(3), "device": "cpu"},
        }
    )  # fmt: skip
    Experiment.from_config(cfg, tmp_path / "np").run()
    assert config.load(tmp_path / "np" / "config.yaml") == cfg
    many = config.from_dict({"targets": [{"layer": "blocks.0", "channels": np.arange(2)}]})
    assert [t["channel"] for t in many.targets] == [0, 1]

    exp = tiny_experiment(tmp_path / "batch", generations=1, batch_size=np.int64(4))
    assert exp.run()["generations"] == 1


def test_a_weight_path_with_a_tilde_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`weights = "~/..."` works for the default network as for the others."""
    from xdream import networks
    from xdream.networks.efficientnet_lite import default_weights

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "lite0.pth").symlink_to(default_weights())
    net = networks.make("efficientnet-lite0", weights="~/lite0.pth")
    assert net.weights == str(tmp_path / "lite0.pth")


def test_a_component_registered_only_in_python_is_named_not_called_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run started from Python with a generator the user registered names it in config.yaml;
    `xdream resume` (another process) does not know it. That is said, with the way to go on,
    instead of calling the file damaged and advising to write it back."""
    folder = tmp_path / "run"
    folder.mkdir()
    data = config.from_dict(BASE).to_dict()
    data["generator"] = {"name": "my-flat", "size": 16}
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    assert main(["resume", str(folder)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "names the generator 'my-flat', which is not registered in this process" in err
    assert f"xdream.experiment.Experiment.resume({str(folder)!r})" in err
    assert "damaged" not in err and "Put back" not in err


def test_xdream_run_of_a_network_registered_only_in_python_says_how_to_run_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdream run` said only "unknown network 'mynet'. Did you mean 'alexnet'?" for a
    network the user's own code registers (README: run such configs from Python)."""
    cfg = tmp_path / "mine.toml"
    cfg.write_text('[target]\nnetwork = "my-net"\nlayer = "features.2"\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("xdream: error: unknown network 'my-net'.")
    assert "If 'my-net' is registered by your own Python code, the network exists only in" in err
    assert f"Experiment.from_config(xdream.config.load({str(cfg)!r}), OUT).run()" in err
    assert not (tmp_path / "run").exists()


def test_a_many_unit_run_on_a_network_registered_only_in_python_is_told_its_own_way_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For a many-unit run the advice named Experiment.resume(DIR), which refuses a many-unit
    folder, and render of DIR, which asks for a unit's folder: both calls failed."""
    from xdream.experiment import Experiment

    folder = tmp_path / "run"
    (folder / "units" / "features.2_c001").mkdir(parents=True)
    data = config.from_dict(BASE).to_dict()
    data["target"]["network"] = "my-net"
    data["targets"] = [{"layer": "features.2", "channel": 1, "x": None, "y": None}]
    (folder / "config.yaml").write_text(yaml.safe_dump(data))
    assert main(["resume", str(folder)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "names the network 'my-net', which is not registered in this process" in err
    assert f"xdream.multi.MultiExperiment.resume({str(folder)!r}).run() continues the run" in err
    unit = str(folder / "units" / "features.2_c001")
    assert f"xdream.render.render({unit!r}, ['best']) draws a unit's images" in err
    assert "Experiment.resume(" not in err.replace("MultiExperiment.resume(", "")
    together = r"many-unit run \(\[\[targets\]\]\), whose units go on together: continue it"
    with pytest.raises(XDreamError, match=together + r" with xdream\.multi\.MultiExperiment\."):
        Experiment.resume(folder)


@pytest.mark.parametrize(
    ("experiment", "optimizer", "length"),
    [
        ({"generations": 3}, {"name": "annealed-es", "population_size": 10}, 3),
        ({}, {"name": "sphere-cma"}, 40),  # no budget: 40 generations
        ({"presentations": 105}, {"name": "annealed-es", "population_size": 10}, 10),
        ({"presentations": 100}, {"name": "sphere-cma", "population_size": 10}, 10),
        ({"generations": 3}, {"name": "annealed-es", "generations": 9}, 9),  # given: kept
    ],
)
def test_a_step_size_schedule_left_out_spans_the_budget(
    experiment: dict[str, Any], optimizer: dict[str, Any], length: int
) -> None:
    """An optimiser's `generations` (its schedule) left out of [optimizer] is the number of
    generations the budget runs (whole generations of the population for presentations, as
    the run stops), not the optimiser's default of 75; a config read back keeps the value."""
    cfg = config.from_dict({"experiment": experiment, "optimizer": optimizer})
    assert cfg.optimizer["generations"] == length
    assert cfg.derived == (() if "generations" in optimizer else ("generations",))
    again = config.from_dict(cfg.to_dict())  # a run's config.yaml: the value is given there
    assert again.optimizer == cfg.optimizer and again.derived == ()
    if "generations" not in optimizer:
        assert "generations" not in cfg.given_optimizer()


def test_optimizers_without_a_schedule_and_presets_are_as_before() -> None:
    """Only an optimiser whose Params have `generations` gets the budget's; a preset still
    fills in its settings."""
    genetic = config.from_dict({"experiment": {"generations": 3}, "optimizer": "genetic"})
    assert "generations" not in genetic.optimizer and genetic.derived == ()
    preset = config.from_dict({"optimizer": {"preset": "deepsim-fc7"}})
    assert preset.optimizer["population_size"] == 45 and preset.optimizer["preset"] == "deepsim-fc7"
    many = config.from_dict(
        {
            "experiment": {"generations": 4},
            "optimizer": "annealed-es",
            "target": {"layer": "blocks.2"},
            "targets": [{"channels": [1, 2]}],
        }
    )
    assert many.optimizer["generations"] == 4 and len(many.targets) == 2


def test_an_optimizer_built_in_python_with_another_schedule_is_warned_about(
    tmp_path: Path,
) -> None:
    """Experiment() warns once when the optimiser's schedule is not the run's length, naming
    both numbers and how to fix it; a budget in presentations is counted in generations."""
    import warnings

    gen = xdream.generators.make("pixels", size=32, code_size=8)

    def build(budget: dict[str, int], **params: int) -> None:
        opt = xdream.optimizers.make("annealed-es", dim=gen.code_dim, seed=0, **params)
        Experiment(gen, RedScorer(), opt, tmp_path / "run", n_references=0, **budget)

    with pytest.warns(UserWarning) as caught:
        build({"generations": 3}, population_size=10)
    (warning,) = caught
    message = str(warning.message)
    assert "generations=75" in message and "this run has 3 generations" in message
    assert "make('annealed-es', ..., generations=3)" in message
    with pytest.warns(UserWarning, match=r"3 generations \(35 presentations of 10 codes\)"):
        build({"presentations": 35}, population_size=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build({"presentations": 35}, population_size=10, generations=3)
        build({"generations": 3}, population_size=10, generations=3)


@pytest.mark.parametrize("given", [{"experiment": {"generations": 2}}, "cfg.toml"])
def test_from_config_given_a_dict_or_a_path_says_how_to_make_a_config(
    tmp_path: Path, given: Any
) -> None:
    """Experiment.from_config and MultiExperiment.from_config of a dict or a path crashed with
    AttributeError ('dict' object has no attribute 'targets'); they now say how to build a
    Config, and create no folder."""
    from xdream.multi import MultiExperiment

    for build in (Experiment.from_config, MultiExperiment.from_config):
        with pytest.raises(XDreamError) as refused:
            build(given, tmp_path / "run")
        message = str(refused.value)
        assert f"from_config takes an xdream.config.Config, got {type(given).__name__}" in message
        assert "xdream.config.load(PATH)" in message
        assert "xdream.config.from_dict(MAPPING)" in message
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("experiment:\n  seed: 012\n", "'seed' must be an integer, got '012' (a string)"),
        ("experiment:\n  seed: -07\n", "no leading zero: -07 is not read as a number"),
        ("target:\n  pre_activation: no\n", "'pre_activation' must be true or false, got 'no'"),
        ("target:\n  pre_activation: on\n", "yes, no, on and off are not booleans here"),
        ("experiment:\n  tf32: Yes\n", "'tf32' must be true or false, got 'Yes'"),
        (
            "experiment:\n  record_interval: 1:30.0\n",
            "'record_interval' must be a number, got '1:30.0' (a string): write a number, as 0.5"
            " (no base-60 numbers: 1:30.0 is not read as a number)",
        ),
        ("experiment:\n  seed: 1:30\n", "(no base-60 numbers: 1:30 is not read as a number)"),
    ],
)
def test_yaml_reads_numbers_and_booleans_as_toml_does(
    tmp_path: Path, text: str, refusal: str
) -> None:
    """PyYAML's YAML 1.1 rules ran `seed: 012` as seed 10 (octal) and took `no`, `on` and `Yes`
    as booleans without a word, where TOML refuses them and docs/config.md asks for true/false;
    they read `record_interval: 1:30.0` as the base-60 number 90.0, which YAML 1.2 and TOML do
    not read as a number."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert refusal in str(err.value)


def test_yaml_reads_decimal_numbers_as_yaml_1_2_does(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    forms = ["1.5", "-2.", ".5", "+1_000.5", "1e3", "2.5e2", "-2E+4", ".5e-1", "012.5", ".inf"]
    path.write_text("".join(f"k{i}: {form}\n" for i, form in enumerate(forms)) + "n: .nan\n")
    read = config.read(path)
    assert [read[f"k{i}"] for i in range(len(forms))] == [
        1.5,
        -2.0,
        0.5,
        1000.5,
        1000.0,
        250.0,
        -20000.0,
        0.05,
        12.5,
        float("inf"),
    ]
    assert np.isnan(read["n"])
    path.write_text("a: 1:30.5\nb: 1.2.3\nc: 12\nd: -.inf\n")
    assert config.read(path) == {"a": "1:30.5", "b": "1.2.3", "c": 12, "d": float("-inf")}


def test_yaml_still_reads_plain_numbers_and_true_false(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "experiment:\n  seed: 12\n  generations: 1_000\n  tf32: true\n  noise_seed: 0\n"
        "target:\n  pre_activation: False\n  channel: 0x1F\n"
    )
    read = config.load(path)
    assert (read.experiment.seed, read.experiment.generations, read.experiment.tf32) == (
        12,
        1000,
        True,
    )
    assert (read.experiment.noise_seed, read.target.pre_activation, read.target.channel) == (
        0,
        False,
        31,
    )
    again = tmp_path / "again.yaml"
    config.dump_yaml(read, again)
    assert config.load(again) == read


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
@pytest.mark.parametrize(
    ("section", "key", "quoted"),
    [("experiment", "seed", "3"), ("noise", "ns", "0.5"), ("target", "pre_activation", "true")],
)
def test_the_fix_a_refusal_gives_works_in_every_config_format(
    tmp_path: Path, suffix: str, section: str, key: str, quoted: str
) -> None:
    """The fix for a value of the wrong kind is written as a value, not as TOML's `key = value`
    (a YAML file was told `as in seed = 3`), and writing that value into the same file loads."""

    def write(value: str) -> Path:
        table = {"name": '"gain"'} if section == "noise" else {}
        table[key] = value
        path = tmp_path / f"c{suffix}"
        if suffix == ".toml":
            lines = [f"[{section}]"] + [f"{k} = {v}" for k, v in table.items()]
        elif suffix == ".yaml":
            lines = [f"{section}:"] + [f"  {k}: {v}" for k, v in table.items()]
        else:
            pairs = ", ".join(f'"{k}": {v}' for k, v in table.items())
            lines = [f'{{"{section}": {{{pairs}}}}}']
        path.write_text("\n".join(lines) + "\n")
        return path

    with pytest.raises(ConfigError) as err:
        config.load(write(f'"{quoted}"'))
    message = str(err.value)
    assert " = " not in message and f"{key}:" not in message  # no one format's syntax
    fix = re.search(r"without quotes, as (\S+) rather than \"(\S+)\"", message)
    assert fix is not None, message
    assert fix.group(2) == quoted
    loaded = config.load(write(fix.group(1)))
    read = getattr(loaded, section)
    assert (read[key] if isinstance(read, dict) else getattr(read, key)) == json.loads(quoted)


@pytest.mark.parametrize(
    ("value", "fix"),
    [
        ("3", 'write a whole number without quotes, as 3 rather than "3"'),
        ("-1_000", "without quotes"),
        ("abc", "write a whole number, as 3"),  # not quoted by mistake: no word of quotes
        (True, "write a whole number, as 3"),
        (2.5, "write a whole number, as 3"),
    ],
)
def test_quotes_are_advised_only_against_a_quoted_value_of_the_right_kind(
    value: Any, fix: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(edited("experiment", "seed", value))
    message = str(err.value)
    assert message.endswith(fix) or fix in message
    assert ("quotes" in message) == ("quotes" in fix)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            lambda: xdream.optimizers.make("annealed-es", 16, population_size=True),
            "optimizer 'annealed-es': 'population_size' must be an int, got True (a bool): pass "
            "an int, as 3",
        ),
        (
            lambda: xdream.optimizers.make("annealed-es", 16, population_size="8"),
            "'population_size' must be an int, got '8' (a str): pass an int, not a str: 8 "
            "rather than '8'",
        ),
        (
            lambda: xdream.optimizers.make("annealed-es", 16, sigma0=None),
            "'sigma0' must be a number, got None: pass a number, as 0.5",
        ),
        (
            lambda: xdream.optimizers.make("genetic", 16, population_size=2.5),
            "'population_size' must be an int, got 2.5 (a float): pass an int, as 3",
        ),
        (
            lambda: xdream.scorers.make_noise("poisson", scale="20"),
            "noise model 'poisson': 'scale' must be a number, got '20' (a str): pass a number, "
            "not a str: 20 rather than '20'",
        ),
        (
            lambda: xdream.generators.make("cppn", hidden=[16, "x"]),
            "generator 'cppn': 'hidden' must be a list or tuple of ints, got [16, 'x'] (a list)",
        ),
        (
            lambda: xdream.generators.make("fourier", size=True),
            "generator 'fourier': 'size' must be an int, got True (a bool): pass an int, as 3",
        ),
        (
            lambda: xdream.scorers.make_noise("gain", ns=[0.1]),
            "noise model 'gain': 'ns' must be a number, got [0.1] (a list): pass a number, as 0.5",
        ),
    ],
)
def test_a_value_of_the_wrong_kind_passed_in_python_is_said_in_pythons_words(
    make: Any, said: str
) -> None:
    """xdream.optimizers.make("annealed-es", population_size=True) said "got true (a
    boolean): write a whole number", a config file's words, to a Python caller; it says True, a
    bool, and what to pass. A config file's value keeps a config file's words."""
    with pytest.raises(ConfigError) as err:
        make()
    assert str(err.value).endswith(said), err.value
    assert "write" not in str(err.value) and "(a boolean)" not in str(err.value)


def test_a_value_of_the_wrong_kind_in_a_config_is_still_said_in_its_words() -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(edited("optimizer", "population_size", True))
    assert str(err.value) == (
        "optimizer 'genetic': 'population_size' must be an integer, got true (a boolean): "
        "write a whole number, as 3"
    )


@dataclasses.dataclass
class _EveryKind:
    n: int = 1
    x: float = 0.5
    flag: bool = False
    label: str = "a"
    either: int | str = 1
    names: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    flags: tuple[bool, ...] = ()


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("names", (1,), "'names' must be a list or tuple of strs, got (1,) (a tuple)"),
        ("sizes", ("a",), "'sizes' must be a list or tuple of ints, got ('a',) (a tuple)"),
        ("flags", (1,), "'flags' must be a list or tuple of bools, got (1,) (a tuple)"),
        ("flag", 1, "'flag' must be True or False, got 1: pass True or False, as True"),
        ("label", 3, "'label' must be a str, got 3: pass a str, as 'name'"),
        ("either", 2.5, "'either' must be an int or a str, got 2.5 (a float): pass an int, as 3"),
        ("n", "abc", "'n' must be an int, got 'abc' (a str): pass an int, as 3"),
        ("n", np.True_, "'n' must be an int, got True (a bool): pass an int, as 3"),
        ("x", Ellipsis, "'x' must be a number, got Ellipsis (an ellipsis): pass a number, as 0.5"),
        # NumPy values as the caller passed them (they were quoted as the list made of them)
        (
            "n",
            np.array([4, 5]),
            "'n' must be an int, got array([4, 5]) (a NumPy array): pass an int, as 3",
        ),
        (
            "n",
            np.float64(2.5),  # shown as its repr: np.float64(2.5), or 2.5 under NumPy 1
            f"'n' must be an int, got {np.float64(2.5)!r} (a NumPy float64): pass an int, as 3",
        ),
        (
            "sizes",
            np.array([0.5]),
            "'sizes' must be a list or tuple of ints, got array([0.5]) (a NumPy array)",
        ),
    ],
)
def test_every_kind_is_said_in_pythons_words_with_what_to_pass(
    key: str, value: Any, said: str
) -> None:
    """Each kind a parameter takes is said in Python's words (a list or tuple of strs, True or
    False, a str), the value with its Python type (an int without one), and what to pass where
    there is one thing to pass (mutation audit U)."""
    with pytest.raises(ConfigError) as err:
        build_params(_EveryKind, {key: value}, "w", python=True)
    assert str(err.value) == f"w: {said}"


# Mutation audit X of config.py and params.py: each case below failed under a mutant that the
# tests before it let through (the table is in the audit's notes).


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {**BASE, "experiment": {"generations": 2, "presentations": 100}},
            "give either 'generations' or 'presentations', not both",
        ),
        (edited("experiment", "n_references", -1), "'n_references' must be an integer from 0 to"),
        (edited("experiment", "save_images", "all"), "'save_images' must be 'best' or 'none', got"),
        (edited("experiment", "batch_size", 0), "'batch_size' must be a positive integer, got 0"),
        (edited("target", "x", -1), "'x' must be an integer >= 0, got -1"),
        (edited("target", "y", -2), "'y' must be an integer >= 0, got -2"),
        (edited("target", "placement", "middle"), "placement must be 'full', 'rf' or [left, t"),
        (edited("target", "image_size", 1025), "'image_size' must be between 1 and 1024 pixels"),
        ([BASE], "a config must be a table of sections, got list"),
        ({**BASE, "noise": 3}, "[noise] must be a table with a 'name' key, got 3"),
        ({**BASE, "noise": {"scale": 2}}, "[noise] needs a 'name' key (see `xdream list`)"),
        ({**BASE, "experiment": 3}, "[experiment] must be a table of keys, got 3"),
        ({**BASE, "rig": [1]}, "[rig] must be a table of keys, got [1]"),
        ({**BASE, "generator": {"name": 3}}, "[generator] name must be a string, got 3"),
        (
            {**BASE, "tune": {"trials": 2}},
            "the [tune] section is read by `xdream tune CONFIG`, not by `xdream run`; to run",
        ),
        (
            {**BASE, "expriment": {}},
            "unknown config section 'expriment'. Did you mean 'experiment'? Valid sections: e",
        ),
        (
            edited("experiment", "generatons", 3),
            "unknown hyperparameter 'generatons' for [experiment]. Did you mean 'generations'? "
            "Valid keys: batch_size, generations, init_codes, n_references, noise_seed,",
        ),
        (
            {**BASE, "generator": {"name": "pixels", "preset": "deepsim-fc6"}},
            "unknown hyperparameter 'preset' for generator 'pixels'",
        ),
        ({**BASE, "rig": {}}, "[target] has no effect next to [rig]"),
        (
            {"rig": {}, "noise": {"name": "poisson"}},
            "[noise] applies to network units, but [rig] makes a recording rig the target",
        ),
        (
            {"rig": {}, "experiment": {"noise_seed": 3}},
            "[experiment] noise_seed seeds the [noise] model, which [rig] excludes",
        ),
        ({"rig": {}, "targets": [{"channel": 1}]}, "[[targets]] names many network units, but"),
        # the value as a config file shows it, with its kind
        (edited("experiment", "save_images", 1), "must be a string, got 1: write it in quotes"),
        (edited("experiment", "tf32", [1]), "'tf32' must be true or false, got [1] (a list)"),
        (edited("experiment", "tf32", {"a": 1}), "got {'a': 1} (a table)"),
        (
            edited("target", "placement", None),
            "[target]: 'placement' must be a string or a list of integers, got null (no value)",
        ),
        (
            {**BASE, "generator": {"name": "cppn", "hidden": None}},
            "generator 'cppn': 'hidden' must be a list of integers, got null (no value)",
        ),
        (
            {**BASE, "generator": {"name": "cppn", "activations": "sin"}},
            "'activations' must be a list of strings, got 'sin' (a string)",
        ),
        (
            {**BASE, "generator": {"name": "deepsim-fc6", "lower": "x"}},
            "'lower' must be a number or a list of numbers, got 'x' (a string): write a number",
        ),
        (
            {**BASE, "optimizer": {"name": "genetic", "mutation_rate": "1e-3"}},
            'write a number without quotes, as 0.5 rather than "0.5"',
        ),
    ],
)
def test_each_refusal_of_a_config_says_what_is_wrong_and_how_to_fix_it(
    data: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(data)
    assert message in str(err.value)


def test_the_bounds_and_defaults_of_the_docs_are_accepted_and_taken() -> None:
    cfg = config.from_dict(
        {**BASE, "experiment": {"n_references": 0}, "target": {"image_size": 1024}}
    )
    assert (cfg.experiment.n_references, cfg.target.image_size) == (0, 1024)
    assert config.from_dict(edited("target", "image_size", 1)).target.image_size == 1
    plain = config.from_dict({})  # the README: fourier is the default generator, genetic the GA
    assert (plain.generator["name"], plain.optimizer["name"]) == ("fourier", "genetic")
    assert config.from_dict({"noise": "poisson"}).noise["name"] == "poisson"  # a bare name


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tf32", 1, "'tf32' must be true or false"),
        ("record_interval", True, "'record_interval' must be a number of seconds"),
        ("init_codes", 3, "'init_codes' must be a folder name"),
        ("generations", 2.5, "'generations' must be a positive integer"),
    ],
)
def test_a_section_built_in_python_checks_its_values_too(
    key: str, value: Any, message: str
) -> None:
    """``dataclasses.replace`` (as sweeps and many-unit runs change a seed) runs the section's
    own checks, which do not lean on the config reader's checks of kinds."""
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(config.ExperimentSection(), **{key: value})


def test_a_placement_list_is_the_tuple_python_gives() -> None:
    listed = config.from_dict(edited("target", "placement", [1, 2, 30]))
    assert listed == config.from_dict(edited("target", "placement", (1, 2, 30)))
    assert listed.target.placement == (1, 2, 30)


def test_the_resolved_config_round_trips_through_yaml_with_lists_rigs_and_targets() -> None:
    cppn = config.from_dict({**BASE, "generator": {"name": "cppn", "hidden": [8, 8, 8]}})
    text = config.to_yaml(cppn)
    assert list(yaml.safe_load(text)) == ["experiment", "target", "generator", "optimizer"]
    assert config.from_dict(yaml.safe_load(text)) == cppn
    assert yaml.safe_load(text) == cppn.to_dict()  # lists, not tuples, as config.yaml reads
    rig = config.from_dict({"rig": {"channels": [3, 5], "plugins": []}})
    assert "target" not in rig.to_dict()
    assert config.from_dict(yaml.safe_load(config.to_yaml(rig))) == rig
    assert yaml.safe_load(config.to_yaml(rig)) == rig.to_dict()
    many = config.from_dict({**BASE, "targets": [{"channels": [1, 2]}]})
    assert len(many.to_dict()["targets"]) == 2
    assert config.from_dict(yaml.safe_load(config.to_yaml(many))) == many


def test_a_string_that_yaml_1_2_reads_as_a_number_reads_back_from_config_yaml(
    tmp_path: Path,
) -> None:
    """PyYAML's writer left "1e3" bare (YAML 1.1 reads it as a string), and the config reader,
    which reads 1e3 as a number, then refused the run's own config.yaml."""
    cfg = config.from_dict(
        {
            **BASE,
            "target": {**BASE["target"], "weights": "1e3"},
            "experiment": {"init_codes": "2E-4"},
        }
    )
    config.dump_yaml(cfg, tmp_path / "config.yaml")
    assert config.load(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load(config.to_yaml(cfg))["target"]["weights"] == "1e3"  # any YAML reader
    assert yaml.safe_dump({"a": "1e3"}) == "a: 1e3\n"  # PyYAML's own writer is left as it was
    # a config's table (record.h5's copy, put back as the refusals for a lost config.yaml say)
    config.dump_yaml(cfg.to_dict(), tmp_path / "table.yaml")
    assert config.load(tmp_path / "table.yaml") == cfg


def test_given_optimizer_keys_override_a_preset() -> None:
    cfg = config.from_dict({**BASE, "optimizer": {"preset": "deepsim-fc7", "population_size": 7}})
    assert cfg.optimizer["population_size"] == 7
    assert cfg.optimizer["preset"] == "deepsim-fc7"
    assert cfg.optimizer["mutation_rate"] == 0.6  # the preset's own


def test_schedule_generations_is_at_least_1_and_none_without_an_integer_population() -> None:
    by_presentations = config.ExperimentSection(presentations=5)
    assert config.schedule_generations(by_presentations, 10) == 1
    assert config.schedule_generations(by_presentations, True) is None
    assert config.schedule_generations(config.ExperimentSection(presentations=25), 10) == 2


def _annealed(generations: int) -> config.Config:
    return config.from_dict(
        {**BASE, "experiment": {"generations": generations}, "optimizer": {"name": "annealed-es"}}
    )


def test_as_started_schedule_reads_the_run_folders_config_yaml_then_its_record(
    tmp_path: Path,
) -> None:
    import h5py

    config.dump_yaml(_annealed(5), tmp_path / "config.yaml")
    raised = _annealed(9)
    assert config.as_started_schedule(raised, tmp_path).optimizer["generations"] == 5
    lost = dataclasses.replace(raised, derived=())  # the keys named by the caller instead
    assert config.as_started_schedule(lost, tmp_path).optimizer["generations"] == 9
    kept = config.as_started_schedule(lost, tmp_path, ("generations",))
    assert kept.optimizer["generations"] == 5
    other = config.from_dict({**BASE, "optimizer": {"name": "sphere-cma"}})
    assert config.as_started_schedule(other, tmp_path) == other  # another optimiser started
    (tmp_path / "config.yaml").write_text("optimizer:\n  name: annealed-es\n")  # an earlier xdream
    assert config.as_started_schedule(raised, tmp_path).optimizer["generations"] == 9
    (tmp_path / "config.yaml").write_text("optimizer: [unclosed\n")  # damaged: record.h5 says
    assert config.as_started_schedule(raised, tmp_path) == raised  # neither says: unchanged
    with h5py.File(tmp_path / "record.h5", "w") as f:
        f.attrs["other"] = 1
    assert config.as_started_schedule(raised, tmp_path) == raised
    with h5py.File(tmp_path / "record.h5", "w") as f:
        f.attrs["config"] = "[1, 2]"
    assert config.as_started_schedule(raised, tmp_path) == raised
    with h5py.File(tmp_path / "record.h5", "w") as f:
        f.attrs["config"] = json.dumps(_annealed(4).to_dict())
    assert config.as_started_schedule(raised, tmp_path).optimizer["generations"] == 4


@pytest.mark.parametrize(
    ("name", "text", "loaded"),
    [
        ("EMPTY.YAML", "", 40),
        ("cfg.yml", "experiment:\n  generations: 3\n", 3),
        ("CFG.TOML", "[experiment]\ngenerations = 4\n", 4),
    ],
)
def test_config_file_suffixes_are_read_in_any_case(
    tmp_path: Path, name: str, text: str, loaded: int
) -> None:
    (tmp_path / name).write_text(text)
    assert config.load(tmp_path / name).experiment.generations == loaded


def test_a_config_path_that_is_a_folder_missing_or_not_a_table_is_one_line(
    tmp_path: Path,
) -> None:
    from xdream.errors import MissingFileError

    with pytest.raises(
        ConfigError, match=r"is a directory; give the \.toml, \.yaml or \.json file"
    ):
        config.read(tmp_path)
    with pytest.raises(MissingFileError, match=r"config file .*gone\.toml' not found"):
        config.read(tmp_path / "gone.toml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a table of sections"):
        config.read(tmp_path / "list.yaml")


def test_a_repeated_yaml_key_names_both_lines(tmp_path: Path) -> None:
    (tmp_path / "twice.yaml").write_text("experiment:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ConfigError, match=r"\(lines 2 and 3\)"):
        config.load(tmp_path / "twice.yaml")


def test_yes_and_off_in_any_case_are_said_not_to_be_booleans(tmp_path: Path) -> None:
    (tmp_path / "yes.yaml").write_text("target:\n  pre_activation: Yes\n")
    with pytest.raises(ConfigError, match="yes, no, on and off are not booleans here"):
        config.load(tmp_path / "yes.yaml")


def test_the_other_commands_section_is_refused_and_its_own_taken() -> None:
    config.refuse_other_command({"sweep": {}}, "sweep")
    config.refuse_other_command({"tune": {}}, "tune")
    with pytest.raises(ConfigError, match=r"`xdream sweep` does not read the \[tune\] section"):
        config.refuse_other_command({"tune": {}}, "sweep")


def test_a_recorded_config_keeps_target_x_beside_targets_that_a_new_one_refuses() -> None:
    data = {**BASE, "target": {"layer": "blocks.2", "x": 1}, "targets": [{"channel": 1}]}
    with pytest.raises(ConfigError, match="x"):
        config.from_dict(data)
    assert config.from_dict(data, recorded=True).targets


def test_the_params_helpers_check_what_they_say() -> None:
    from xdream.params import check_seed, from_numpy

    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got null"):
        check_seed(None)
    check_seed(None, allow_none=True)
    with pytest.raises(ConfigError, match=r"an integer >= 0 \(or None for fresh entropy\)"):
        check_seed(-1, allow_none=True)
    nested = from_numpy({"a": {"b": np.int64(1)}, "c": (np.float32(0.5),)})
    assert nested == {"a": {"b": 1}, "c": (0.5,)}
    assert type(nested["a"]["b"]) is int and type(nested["c"]) is tuple

    @dataclasses.dataclass(frozen=True)
    class Needs:
        n: int
        sizes: tuple[int, ...] = (1,)

    with pytest.raises(ConfigError, match=r"invalid hyperparameters for w: .*'n'"):
        build_params(Needs, {}, "w")
    assert build_params(Needs, {"n": 1, "sizes": [2, 3]}, "w").sizes == (2, 3)


def test_sections_built_in_python_refuse_a_bool_or_a_string_for_a_whole_number() -> None:
    """A section made or replaced in Python skips build_params' kind checks: `generations=True`
    ran one generation and `TargetSection(channel="3")` raised a bare TypeError from `< 0`
    (audit X). Both are the sections' own one-line errors now; NumPy integers still pass."""
    import dataclasses

    import numpy as np

    from xdream import config as config_mod

    cfg = config_mod.from_dict({})
    with pytest.raises(ValueError, match=r"'generations' must be a positive integer, got True"):
        dataclasses.replace(cfg.experiment, generations=True)
    with pytest.raises(ValueError, match=r"'channel' must be an integer >= 0, got '3'"):
        config_mod.TargetSection(channel="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'x' must be an integer >= 0, got False"):
        config_mod.TargetSection(x=False)
    assert dataclasses.replace(cfg.experiment, generations=np.int32(5)).generations == 5
    assert config_mod.TargetSection(channel=np.int64(2)).channel == 2  # type: ignore[arg-type]
