"""``xdream tune``: the search space, the objective, and Optuna storage in SQLite and PostgreSQL."""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xdream import config
from xdream.errors import ConfigError, MissingFileError, XDreamError
from xdream.tune import normalised_scores, parse_section

POSTGRES_ENV = "XDREAM_TEST_POSTGRES_URL"

TUNE_TOML = """
[experiment]
generations = 2
n_references = 2
[generator]
name = "pixels"
size = 32
code_size = 8
[optimizer]
name = "genetic"
[target]
layer = "blocks.0"
device = "cpu"
[[targets]]
channels = [1, 2, 3]
[tune]
trials = 2
references = 8
[tune.params]
population_size = { low = 4, high = 8 }
mutation_rate = { low = 0.1, high = 0.9 }
selectivity = { choices = [1.0, 4.0] }
"""


def _optuna() -> Any:
    if os.environ.get("CI") != "true":
        return pytest.importorskip("optuna")
    import optuna

    return optuna


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({}, r"needs \[tune.params\]"),
        ({"params": {"mutation_rat": {"low": 0, "high": 1}}}, "Did you mean 'mutation_rate'"),
        ({"params": {"mutation_rate": {"low": 1, "high": 0}}}, "low < high"),
        ({"params": {"mutation_rate": {"lo": 0}}}, "choices"),
        ({"params": {"selectivity": {"choices": []}}}, "non-empty"),
        ({"params": {"selectivity": {"choices": [1]}}, "trial": 3}, "Did you mean 'trials'"),
        ({"params": {"selectivity": {"choices": [1]}}, "seeds": [-2]}, r"integer >= 0, got -2"),
        ({"params": {"selectivity": {"choices": [1]}}, "trials": True}, r"trials must be an"),
        (
            {"params": {"selectivity": {"choices": [1]}}, "seeds": [0, 0]},
            r"repeat a seed \(\[0, 0\]\)",
        ),
        ({"params": {"selectivity": {"choices": [1]}}, "references": 1}, r"integer >= 2, got 1"),
        (
            {"params": {"mutation_size": {"low": 0, "high": 1, "log": True}}},
            "log scale needs low > 0",
        ),
        ({"params": {"mutation_size": {"low": 0.1, "high": 1, "log": 1}}}, "log must be true or"),
        (
            {"params": {"population_size": {"low": 10.0, "high": 40.0}}},
            "must be an integer, got 10",
        ),
        ({"params": {"population_size": {"low": 1, "high": 40}}}, "1 is not a value the optimiser"),
        ({"params": {"selectivity": {"choices": ["a", "b"]}}}, "'a' is not a value"),
        ({"params": {"selectivity": {"choices": [[1, 2]]}}}, "numbers, strings or booleans"),
        ({"params": {"mutation_rate": {"low": 0.1, "high": 2.0}}}, "probability in"),
        ({"params": {"mutation_rate": {"low": 0.1, "high": 0.5, "choices": [0.2]}}}, "not both"),
        ({"params": {"population_size": {"low": True, "high": 5}}}, "not true or false"),
        ({"params": {"mutation_rate": {"low": 0.1, "high": float("inf")}}}, "finite numbers"),
    ],
)
def test_bad_tune_sections_are_rejected(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_section(section, config.from_dict({}))


def test_missing_optuna_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from xdream import tune

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(XDreamError, match=r"xdream\[tune\]"):
        tune._require_optuna()


def test_a_study_builds_its_network_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The normalisers and every trial's scorer built the network again (and folded it on a
    copy): now the study reads one network, and keeps none after it ends."""
    _optuna()
    from xdream import networks, tune

    built: list[str] = []
    make = networks.make

    def counting(name: str = networks.DEFAULT_NETWORK, **kw: Any) -> Any:
        built.append(name)
        return make(name, **kw)

    monkeypatch.setattr(networks, "make", counting)
    path = tmp_path / "tune.toml"
    path.write_text(TUNE_TOML)
    cfg, section = tune.load(path)
    study = tune.run_tune(cfg, section, tmp_path / "out", trials=2)
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 2
    assert built == [networks.DEFAULT_NETWORK]
    assert networks.cache.kept() == 0


def _tune_twice(tmp_path: Path, storage: str | None, study: str) -> None:
    """Two trials, then one more from "another machine" into the same study; checks values."""
    optuna = _optuna()
    from xdream import tune

    path = tmp_path / "tune.toml"
    path.write_text(TUNE_TOML)
    cfg, section = tune.load(path)
    first = tune.run_tune(cfg, section, tmp_path / "a", storage=storage, study_name=study)
    tune.run_tune(cfg, section, tmp_path / "b", storage=storage, study_name=study, trials=1)
    url = storage or f"sqlite:///{(tmp_path / 'a' / 'tune.db').resolve()}"
    if storage is None:  # the second run used its own default file
        url = f"sqlite:///{(tmp_path / 'a' / 'tune.db').resolve()}"
    loaded = optuna.load_study(study_name=study, storage=url)
    expected = 3 if storage is not None else 2
    trials = [t for t in loaded.trials if t.state.name == "COMPLETE"]
    assert len(trials) == expected
    norm = tune.normalisers(cfg, section.references)
    assert set(norm) == {"blocks.0_c001", "blocks.0_c002", "blocks.0_c003"}
    for t in trials:
        assert 4 <= t.params["population_size"] <= 8 and t.params["selectivity"] in (1.0, 4.0)
        out = tmp_path / ("a" if t.number < 2 else "b")  # trial 2 is "the other machine's"
        here = tune.study_folder(out.resolve(), study)  # folders are recorded relative to it
        assert t.user_attrs["folder"] == f"trial{t.number:04d}"
        scores = normalised_scores(tune.trial_folder(here, t.user_attrs["folder"]) / "seed0", norm)
        assert t.value == pytest.approx(statistics.median(scores.values()))
        assert scores == pytest.approx(t.user_attrs["normalised_scores"])
    assert first.best_value == max(t.value for t in first.trials)
    table = tune.study_folder(tmp_path / "a", study) / "tune.csv"  # a/study-NAME/tune.csv
    assert table.read_text().count("\n") == 3  # header + 2 trials
    assert not (tmp_path / "a" / "tune.csv").exists()  # the default study's place


@pytest.mark.slow
def test_tune_with_sqlite(tmp_path: Path) -> None:
    _tune_twice(tmp_path, None, "sqlite-study")


@pytest.mark.slow
def test_tune_with_postgresql(tmp_path: Path) -> None:
    url = os.environ.get(POSTGRES_ENV)
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{POSTGRES_ENV} is not set in CI: .ci/run should start PostgreSQL")
        pytest.skip(f"{POSTGRES_ENV} not set (.ci/run starts a PostgreSQL server and sets it)")
    _tune_twice(tmp_path, url, f"pg-{os.getpid()}-{tmp_path.name}")


def _units_config(layer: str, channels: list[int]) -> Any:
    return config.from_dict(
        {
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "target": {"layer": layer, "device": "cpu"},
            "targets": [{"channels": channels}],
        }
    )


def test_a_unit_with_negative_responses_is_normalised_in_order() -> None:
    """blocks.1 channel 0 responds below 0 to every reference crop: a higher score must still
    give a higher normalised score (dividing by its negative best response reversed them)."""
    from xdream.tune import normalisers

    norm = normalisers(_units_config("blocks.1", [0, 1]), 8)
    n = norm["blocks.1_c000"]
    assert n.top < 0 and n.mean < n.top
    assert n(n.mean) == pytest.approx(0) and n(n.top) == pytest.approx(1)
    assert n(n.top - 1.0) < n(n.top) < n(n.top + 1.0)
    assert norm["blocks.1_c001"].top > 0


def test_a_unit_that_never_responds_is_refused_before_any_trial() -> None:
    """blocks.3.expand.act channel 61 gives every crop 0: no scale (it divided by zero after
    the first trial)."""
    from xdream.tune import normalisers

    with pytest.raises(ConfigError, match=r"blocks\.3\.expand\.act_c061 \(0\)\. Remove them"):
        normalisers(_units_config("blocks.3.expand.act", [61, 62]), 8)


def test_a_study_scored_another_way_is_refused() -> None:
    optuna = _optuna()
    from xdream.tune import OBJECTIVE, _check_objective

    study = optuna.create_study(direction="maximize")
    _check_objective(study, OBJECTIVE.format(references=8), "s")
    _check_objective(study, OBJECTIVE.format(references=8), "s")  # the same: fine
    study.add_trial(optuna.trial.create_trial(value=1.0))
    with pytest.raises(XDreamError, match=r"8 reference crops.*cannot be compared"):
        _check_objective(study, OBJECTIVE.format(references=100), "s")
    old = optuna.create_study(direction="maximize")  # trials from before the objective was kept
    old.add_trial(optuna.trial.create_trial(value=1.0))
    with pytest.raises(XDreamError, match="an earlier xdream"):
        _check_objective(old, OBJECTIVE.format(references=8), "s")


@pytest.mark.parametrize("value", ["0", "-2", "1.5"])
def test_trials_on_the_command_line_must_be_at_least_one(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from xdream.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["tune", "c.toml", "--trials", value])
    assert exit_info.value.code == 2
    assert "--trials: expected an integer >= 1, got" in capsys.readouterr().err


def test_a_continued_study_runs_what_it_lacks_and_proposes_new_trials(tmp_path: Path) -> None:
    """[tune] trials is the number of finished trials the study should hold: running the same
    config again runs none; --trials N runs N more, which the sampler proposes anew (one seed
    for every run proposed the study's first trials again); a fresh study is reproducible."""
    _optuna()
    from xdream import tune

    path = tmp_path / "tune.toml"
    path.write_text(
        TUNE_TOML.replace("channels = [1, 2, 3]", "channels = [1]").replace(
            "generations = 2", "generations = 1"
        )
    )
    cfg, section = tune.load(path)
    first = tune.run_tune(cfg, section, tmp_path / "a")
    assert len(first.trials) == 2
    assert len(tune.run_tune(cfg, section, tmp_path / "a").trials) == 2  # nothing lacking
    more = tune.run_tune(cfg, section, tmp_path / "a", trials=1).trials
    assert len(more) == 3 and more[2].params not in [t.params for t in more[:2]]
    again = tune.run_tune(cfg, section, tmp_path / "b").trials  # a fresh study
    assert [t.params for t in again] == [t.params for t in more[:2]]


def test_a_study_whose_weight_file_moved_goes_on_with_the_same_file_at_its_new_path(
    tmp_path: Path,
) -> None:
    """A study moved to another machine, or whose weight file moved, was refused as a changed
    `target.weights` when tuned on with the file's new path; the same file (size and
    fingerprint its trials' checkpoints record) is taken and stored, another is refused.
    Tuned on as it was, the file missing, the study said only that it is missing: it now names
    the file its trials read and says that its new path goes into the tune config file."""
    _optuna()
    from tests.helpers import moved_weight_files
    from xdream import tune

    moved_weight_files(tmp_path)

    def small(weights: Path, references: int = 2) -> tuple[Any, Any]:
        return _small(
            tmp_path,
            **{
                'device = "cpu"': f'device = "cpu"\nweights = "{weights}"',
                "n_references = 2": f"n_references = {references}",
            },
        )

    out = tmp_path / "o"
    assert len(tune.run_tune(*small(tmp_path / "a" / "w.pt"), out).trials) == 1
    (tmp_path / "a" / "w.pt").rename(tmp_path / "b" / "w.pt")
    with pytest.raises(MissingFileError) as e:  # tuned on as it was: the file is gone
        tune.run_tune(*small(tmp_path / "a" / "w.pt"), out, trials=1)
    assert f"weight file '{tmp_path / 'a' / 'w.pt'}' does not exist;" in str(e.value)
    said = (
        f"The study's trials read these files: [target] weights was {tmp_path}/a/w.pt (a "
        "relative path is taken from the current directory: tune from the directory the study "
        "was started in, or put the file back there; where the same file is now elsewhere, "
        "write its path into the tune config file: the study takes it (and keeps the new "
        "path) when its size and fingerprint are the ones its trials recorded)."
    )
    assert said in str(e.value), e.value
    with pytest.raises(XDreamError, match=r"target.weights: '.*/a/w.pt' -> '.*/other.pt'") as e:
        tune.run_tune(*small(tmp_path / "other.pt"), out, trials=1)
    assert f"(another file: '{tmp_path / 'other.pt'}' (" in str(e.value)
    assert f"not the one its trials read, '{tmp_path / 'a' / 'w.pt'}' (" in str(e.value)
    with pytest.raises(XDreamError, match=r"experiment.n_references: 2 -> 3"):
        tune.run_tune(*small(tmp_path / "b" / "w.pt", 3), out, trials=1)  # the same file, too
    study = tune.run_tune(*small(tmp_path / "b" / "w.pt"), out, trials=1)  # stored as it was
    assert len(study.trials) == 2
    assert study.user_attrs["config"]["target"]["weights"] == str(tmp_path / "b" / "w.pt")


def test_the_weight_files_a_studys_trials_read_are_found_in_any_of_its_trial_folders(
    tmp_path: Path,
) -> None:
    """_trial_files looks past a trial without a folder, a damaged checkpoint and one that
    records no file, in the folders of a seed's run of one unit as of many (mutation audit N)."""
    from types import SimpleNamespace

    from xdream import tune
    from xdream.records import save_checkpoint

    read = {"target.weights": {"path": "/a/w.pt", "size": 10, "sha256_ends": "f0"}}
    trials = [SimpleNamespace(user_attrs={}), SimpleNamespace(user_attrs={"folder": "t1"})]
    study = SimpleNamespace(get_trials=lambda deepcopy: trials)
    (tmp_path / "t1" / "seed0").mkdir(parents=True)
    (tmp_path / "t1" / "seed0" / "checkpoint.pkl").write_bytes(b"damaged")
    for folder in ("seed1", "seed2", "seed2/units/u"):
        (tmp_path / "t1" / folder).mkdir(parents=True)
    save_checkpoint(tmp_path / "t1" / "seed1" / "checkpoint.pkl", {"files": {}})
    assert tune._trial_files(study, tmp_path) is None
    save_checkpoint(tmp_path / "t1" / "seed2" / "checkpoint.pkl", {"files": read})
    assert tune._trial_files(study, tmp_path) == read
    (tmp_path / "t1" / "seed2" / "checkpoint.pkl").rename(tmp_path / "t1" / "seed2" / "c")
    save_checkpoint(tmp_path / "t1" / "seed2" / "units" / "u" / "checkpoint.pkl", {"files": read})
    assert tune._trial_files(study, tmp_path) == read


def test_a_unit_given_x_only_is_scored(tmp_path: Path) -> None:
    """A unit given x alone is named in units.csv by the position it reads (the centre row
    filled in); the normalisers were keyed by the config's unresolved name: KeyError."""
    _optuna()
    from xdream import tune

    path = tmp_path / "tune.toml"
    path.write_text(
        TUNE_TOML.replace("channels = [1, 2, 3]", "channel = 5\nx = 4")
        .replace("generations = 2", "generations = 1")
        .replace("trials = 2", "trials = 1")
    )
    cfg, section = tune.load(path)
    (trial,) = tune.run_tune(cfg, section, tmp_path / "a").trials
    (label,) = trial.user_attrs["normalised_scores"]
    assert label.startswith("blocks.0_c005_x4_y") and not label.endswith("None")
    assert np.isfinite(trial.value)


def test_a_tuned_population_size_sets_the_schedule_of_a_budget_in_presentations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a budget in presentations, an annealed-es schedule left out of [optimizer] spans
    the generations of each trial's own population size (it kept the length of the config's)."""
    import xdream.multi
    from xdream import tune

    data = config.tomllib.loads(TUNE_TOML)
    data.pop("tune")
    data["experiment"] = {"presentations": 120, "n_references": 2}
    data["optimizer"] = {"name": "annealed-es", "population_size": 10}
    cfg = config.from_dict(data)
    assert cfg.optimizer["generations"] == 12
    built: list[config.Config] = []

    def capture(trial_cfg: config.Config, out: Path) -> Any:
        built.append(trial_cfg)
        raise KeyboardInterrupt  # the trial's config is all this test needs

    monkeypatch.setattr(xdream.multi.MultiExperiment, "from_config", staticmethod(capture))
    section = parse_section({"params": {"population_size": {"low": 4, "high": 40}}}, cfg)
    with pytest.raises(KeyboardInterrupt):
        tune.objective(cfg, section, {"population_size": 20}, tmp_path, {})
    assert built[0].optimizer["generations"] == 6  # 120 presentations of 20
    with pytest.raises(KeyboardInterrupt):
        tune.objective(cfg, section, {"population_size": 20, "generations": 9}, tmp_path, {})
    assert built[1].optimizer["generations"] == 9  # tuned itself


class _Killed(BaseException):
    """What a SIGKILL leaves: the trial's process ends without Optuna hearing of it."""


@pytest.mark.parametrize(
    ("how", "name"),
    [
        ("ctrl-c", "xdream"),
        ("kill", "xdream"),
        pytest.param("kill", "second", marks=pytest.mark.slow),
    ],
)
def test_an_interrupted_trial_resumes_its_folder_when_tune_runs_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, name: str
) -> None:
    """Interrupted 2 generations into trial 1 (Ctrl-C; or killed, its process gone), the same
    command again runs trial 1's values again, resuming trial0001 from its checkpoints: the
    study ends with the finished trials and best value of an uninterrupted one (the interrupted
    trial was left RUNNING or FAIL and never retried), and a trial of a live process is left
    alone. A second study (``--study second``) in the --out of a finished default study does
    the same in OUT/study-second, and leaves the default study's folders and table alone (its
    trial 0 ran into OUT/trial0000, which held the first study's: every trial failed)."""
    optuna = _optuna()
    import subprocess

    import xdream.multi
    from xdream import records, tune

    path = tmp_path / "tune.toml"
    path.write_text(
        TUNE_TOML.replace("channels = [1, 2, 3]", "channels = [1, 2]")
        .replace("generations = 2", "generations = 4")
        .replace("trials = 2", "trials = 3")
    )
    cfg, section = tune.load(path)
    out = tmp_path / ("b" if name == "second" else "ref")  # the default study's
    ref = tune.run_tune(cfg, section, out)
    ref_table = (out / "tune.csv").read_text()
    here = tune.study_folder(tmp_path / "b", name)

    step = xdream.multi.MultiExperiment.step
    calls: list[int] = []

    tables: list[str] = []

    def interrupted_step(self: Any) -> None:
        calls.append(1)
        if len(calls) == 4 + 3:  # trial 0 took 4 generations, trial 1 has taken 2
            tables.append((here / "tune.csv").read_text())  # what a kill leaves
            raise KeyboardInterrupt if how == "ctrl-c" else _Killed
        step(self)

    monkeypatch.setattr(xdream.multi.MultiExperiment, "step", interrupted_step)
    with pytest.raises(KeyboardInterrupt if how == "ctrl-c" else _Killed):
        tune.run_tune(cfg, section, tmp_path / "b", study_name=name)
    monkeypatch.setattr(xdream.multi.MultiExperiment, "step", step)
    running = tables[0].splitlines()[2].split(",")  # the trial that ran, with its values
    assert running[:2] == ["1", "RUNNING"] and running[3] != ""
    url = f"sqlite:///{(tmp_path / 'b' / 'tune.db').resolve()}"
    study = optuna.load_study(study_name=name, storage=url)
    stopped = study.trials[1]
    assert stopped.state.name == ("FAIL" if how == "ctrl-c" else "RUNNING")
    storage = study._storage
    if how == "kill":  # its process gone: a pid no process has
        dead = subprocess.Popen(["true"])
        dead.wait()
        storage.set_trial_user_attr(stopped._trial_id, "pid", dead.pid)

    tune.run_tune(cfg, section, tmp_path / "b", study_name=name)
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert trials[1].state.name == "FAIL" and trials[1].user_attrs["interrupted"]
    assert all(t.state.name in ("COMPLETE", "FAIL") for t in trials)
    (retry,) = [t for t in trials if "retry_of" in t.user_attrs]
    assert retry.user_attrs["retry_of"] == 1 and retry.params == stopped.params
    assert retry.user_attrs["folder"] == "trial0001"  # in the study folder it goes on in
    assert not (here / f"trial{retry.number:04d}").exists()
    done = [(t.params, t.value) for t in trials if t.state.name == "COMPLETE"]
    assert done == [(t.params, t.value) for t in ref.trials]
    assert max(v for _, v in done) == ref.best_value
    for unit in ("blocks.0_c001", "blocks.0_c002"):
        got = records.read(here / "trial0001" / "seed0" / "units" / unit)
        want = records.read(out / "trial0001" / "seed0" / "units" / unit)
        for field in ("codes", "scores", "clean_scores", "generation", "image_ids", "genealogy"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        for field in ("ref_ids", "ref_scores", "best_per_generation", "mean_per_generation"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        assert got.summary["best_clean_score"] == want.summary["best_clean_score"]
    table = (here / "tune.csv").read_text().splitlines()
    assert (out / "tune.csv").read_text() == ref_table  # another study's table is left alone
    assert len(table) == 1 + len(trials)
    assert table[0].endswith(",retry_of,retried_as")
    durations = [row.split(",")[table[0].split(",").index("duration_s")] for row in table[1:]]
    assert (durations[1] == "") == (how == "kill")  # killed: it ended when it was found
    assert all(float(d) >= 0 for i, d in enumerate(durations) if i != 1)
    assert table[2].startswith("1,FAIL,") and table[2].endswith(f",,{retry.number}")
    assert table[1 + retry.number].startswith(f"{retry.number},COMPLETE,")
    assert table[1 + retry.number].endswith(",1,")

    live = storage.create_new_trial(study._study_id)  # another `xdream tune`'s, running
    for key, value in {**tune.this_process(), "pid": os.getppid()}.items():
        storage.set_trial_user_attr(live, key, value)
    storage.set_trial_user_attr(live, "process_start", tune._started(os.getppid()))
    assert tune.recover_interrupted(study) == []  # not taken from its process
    assert storage.get_trial(live).state.name == "RUNNING"


@pytest.mark.parametrize("recorded", ["relative", "absolute"])
def test_a_copied_interrupted_study_resumes_its_trial_in_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: str
) -> None:
    """A study killed 2 generations into trial 1, copied to another --out (as xdream advises for
    a read-only folder) and continued there resumes trial 1 in the copy's trial0001, leaves the
    original folder untouched, and ends with an uninterrupted study's values. It resumed the
    original's trial0001 (the folder recorded absolute): it wrote outside --out, or where the
    original was read-only the trial failed and the study lost it (audit V NEW-1). An earlier
    xdream's absolute record of the original folder is taken by its name in the copy."""
    optuna = _optuna()
    import shutil
    import subprocess

    import xdream.multi
    from xdream import records, tune

    path = tmp_path / "tune.toml"
    path.write_text(
        TUNE_TOML.replace("channels = [1, 2, 3]", "channels = [1]").replace(
            "generations = 2", "generations = 4"
        )
    )
    cfg, section = tune.load(path)
    ref = tune.run_tune(cfg, section, tmp_path / "ref")
    step = xdream.multi.MultiExperiment.step
    calls: list[int] = []

    def killed_step(self: Any) -> None:
        calls.append(1)
        if len(calls) == 4 + 3:  # trial 0 took 4 generations, trial 1 has taken 2
            raise _Killed
        step(self)

    monkeypatch.setattr(xdream.multi.MultiExperiment, "step", killed_step)
    with pytest.raises(_Killed):
        tune.run_tune(cfg, section, tmp_path / "orig")
    monkeypatch.setattr(xdream.multi.MultiExperiment, "step", step)
    shutil.copytree(tmp_path / "orig", tmp_path / "copy")
    url = f"sqlite:///{(tmp_path / 'copy' / 'tune.db').resolve()}"
    study = optuna.load_study(study_name="xdream", storage=url)
    stopped = study.trials[1]
    assert stopped.state.name == "RUNNING"
    dead = subprocess.Popen(["true"])  # its process gone: a pid no process has
    dead.wait()
    study._storage.set_trial_user_attr(stopped._trial_id, "pid", dead.pid)
    if recorded == "absolute":  # as an xdream before this fix recorded it
        original = str((tmp_path / "orig" / "trial0001").resolve())
        study._storage.set_trial_user_attr(stopped._trial_id, "folder", original)

    def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
        return {
            str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))
        }

    before = snapshot(tmp_path / "orig")
    resumed = tune.run_tune(cfg, section, tmp_path / "copy")
    assert snapshot(tmp_path / "orig") == before
    trials = resumed.trials
    (retry,) = [t for t in trials if "retry_of" in t.user_attrs]
    assert retry.user_attrs["folder"] == "trial0001"
    assert not (tmp_path / "copy" / f"trial{retry.number:04d}").exists()
    done = [(t.params, t.value) for t in trials if t.state.name == "COMPLETE"]
    assert done == [(t.params, t.value) for t in ref.trials]
    assert resumed.best_value == ref.best_value
    unit = Path("trial0001", "seed0", "units", "blocks.0_c001")
    got, want = records.read(tmp_path / "copy" / unit), records.read(tmp_path / "ref" / unit)
    for field in ("codes", "scores", "generation", "best_per_generation"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    rows = (tmp_path / "copy" / "tune.csv").read_text().splitlines()
    folder_at = rows[0].split(",").index("folder")
    assert [r.split(",")[folder_at] for r in rows[1:]] == ["trial0000", "trial0001", "trial0001"]


def test_the_report_takes_a_copied_studys_trial_folders_beside_its_table(tmp_path: Path) -> None:
    """A tune.csv naming its trial folders absolute (an earlier xdream's) in a copied study
    folder: the report takes the copy's trialNNNN, not the original's (it linked the original
    and attributed none of the copy's runs: audit V NEW-1)."""
    from xdream.report.studies import _trial_folders

    for where in ("orig", "copy"):
        (tmp_path / where / "trial0001").mkdir(parents=True)
    rows = [{"number": "1", "folder": str(tmp_path / "orig" / "trial0001")}]
    folders = _trial_folders(tmp_path / "copy" / "tune.csv", rows)
    assert folders == {1: (tmp_path / "copy" / "trial0001").resolve()}


@pytest.mark.parametrize(("command", "other"), [("tune", "sweep"), ("sweep", "tune")])
def test_the_other_commands_section_names_the_command_in_use(
    tmp_path: Path, command: str, other: str
) -> None:
    """`xdream tune` on a config with [sweep] (and `sweep` with [tune]) blamed `xdream run`."""
    from xdream import sweep, tune

    path = tmp_path / "c.toml"
    path.write_text(TUNE_TOML + ("[sweep]\nseeds = [0]\n" if other == "sweep" else ""))
    load = tune.load if command == "tune" else sweep.load
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert f"`xdream {command}` does not read the [{other}] section" in message
    assert f"run `xdream {other} CONFIG`" in message and "xdream run" not in message


def _small(tmp_path: Path, **edits: str) -> tuple[Any, Any]:
    """TUNE_TOML with one unit, one generation and one trial, and ``edits`` (old = new)."""
    from xdream import tune

    text = (
        TUNE_TOML.replace("channels = [1, 2, 3]", "channels = [1]")
        .replace("generations = 2", "generations = 1")
        .replace("trials = 2", "trials = 1")
    )
    for old, new in edits.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"tune{len(list(tmp_path.glob('tune*.toml')))}.toml"
    path.write_text(text)
    return tune.load(path)


def _fast(monkeypatch: pytest.MonkeyPatch, each: Any = None) -> list[Path]:
    """Trials without experiments: every unit's normalised score is 0.5 (``each(folder)`` runs
    in each trial first); returns the trials' folders."""
    from xdream import tune

    folders: list[Path] = []

    def objective(cfg: Any, section: Any, values: Any, out: Path, norm: Any, **_: Any) -> Any:
        folders.append(out)
        if each is not None:
            each(out)
        return 0.5, {"blocks.0_c001": 0.5, "blocks.0_c002": 0.25}

    monkeypatch.setattr(tune, "normalisers", lambda cfg, n: {})
    monkeypatch.setattr(tune, "objective", objective)
    return folders


def test_a_study_refuses_to_go_on_under_another_config_naming_each_change(
    tmp_path: Path,
) -> None:
    """The units, the budget, the generator, the noise, a fixed optimiser key or [tune] seeds
    changed: refused, naming each key old -> new (only [tune] references was checked, and the
    study reported the best of trials run under different configs: audit W2). The device,
    batch sizes, [tune] trials and sampler_seed, and the search space may change."""
    optuna = _optuna()
    from xdream import tune

    cfg, section = _small(tmp_path)
    study = optuna.create_study(direction="maximize")
    tune.check_config(study, tune.fingerprint(cfg, section), "s")
    study.add_trial(optuna.trial.create_trial(value=1.0))
    same = [
        {'device = "cpu"': 'device = "cuda"\nbatch_size = 8', "trials = 1": "trials = 9"},
        {"trials = 1": "trials = 1\nsampler_seed = 4", "high = 8": "high = 9"},
        {"selectivity = { choices = [1.0, 4.0] }": ""},  # searched no more (nor fixed)
    ]
    for edits in same:
        tune.check_config(study, tune.fingerprint(*_small(tmp_path, **edits)), "s")
    changed = {
        "channels = [1]": (
            "channels = [4, 5]",
            r"targets: \['blocks.0_c001'\] -> \['blocks.0_c004'",
        ),
        "generations = 1": ("generations = 40", r"experiment.generations: 1 -> 40"),
        "size = 32": ("size = 48", r"generator.size: 32 -> 48"),
        'name = "genetic"': ('name = "genetic"\nmutation_size = 0.9', r"mutation_size: 0.5 -> 0.9"),
        "trials = 1": ("trials = 1\nseeds = [0, 1]", r"tune.seeds: \[0\] -> \[0, 1\]"),
        "[target]": ('[noise]\nname = "poisson"\n[target]', r"noise: None -> \{"),
    }
    for old, (new, message) in changed.items():
        with pytest.raises(
            XDreamError, match=rf"study 's' holds trials run under another .*{message}"
        ):
            tune.check_config(study, tune.fingerprint(*_small(tmp_path, **{old: new})), "s")
    both = _small(tmp_path, **{"generations = 1": "generations = 3", "size = 32": "size = 16"})
    with pytest.raises(XDreamError) as info:
        tune.check_config(study, tune.fingerprint(*both), "s")
    assert "experiment.generations: 1 -> 3" in str(info.value)
    assert "generator.size: 32 -> 16" in str(info.value)
    assert "use another --study NAME" in str(info.value)


def test_a_study_of_an_earlier_xdream_is_checked_against_its_trials_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study that an xdream before the config check made (no ``config`` user attribute) is
    checked against its first finished trial's config.yaml; where no trial folder is here, it
    takes the config with a warning, and later runs are checked against it."""
    optuna = _optuna()
    from rich.console import Console

    from xdream import tune

    cfg, section = _small(tmp_path)
    tune.run_tune(cfg, section, tmp_path / "a")  # one real trial: its folder's config.yaml
    url = f"sqlite:///{(tmp_path / 'a' / 'tune.db').resolve()}"
    study = optuna.load_study(study_name="xdream", storage=url)
    assert study.user_attrs["config"] == tune.fingerprint(cfg, section)
    import sqlite3

    with sqlite3.connect(tmp_path / "a" / "tune.db") as db:  # as an earlier xdream left it
        db.execute("DELETE FROM study_user_attributes WHERE key = 'config'")
    gen3 = _small(tmp_path, **{"generations = 1": "generations = 3"})
    _fast(monkeypatch)
    with pytest.raises(XDreamError, match=r"trial 0's config.yaml says.*generations: 1 -> 3"):
        tune.run_tune(*gen3, tmp_path / "a", trials=1)
    two_seeds = _small(tmp_path, **{"trials = 1": "trials = 1\nseeds = [0, 1]"})
    with pytest.raises(XDreamError, match=r"tune.seeds: \[0\] -> \[0, 1\]"):
        tune.run_tune(*two_seeds, tmp_path / "a", trials=1)
    import shutil

    shutil.rmtree(tmp_path / "a" / "trial0000")  # nothing left to tell
    lines = Console(record=True, width=400)
    tune.run_tune(*gen3, tmp_path / "a", trials=1, console=lines)
    assert "warning: study 'xdream' was made by an earlier xdream" in lines.export_text()
    with pytest.raises(XDreamError, match=r"generations: 3 -> 1"):
        tune.run_tune(cfg, section, tmp_path / "a", trials=1)


def test_each_study_of_an_out_keeps_its_own_folders_and_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default study keeps OUT/trialNNNN and OUT/tune.csv, another in OUT/study-NAME (a
    second --study ran into the first one's trial folders and overwrote its tune.csv: audit
    W3); a name that cannot name a folder is refused before anything is made."""
    _optuna()
    from xdream import tune

    cfg, section = _small(tmp_path)
    folders = _fast(monkeypatch)
    tune.run_tune(cfg, section, tmp_path / "o")
    first = (tmp_path / "o" / "tune.csv").read_text()
    tune.run_tune(cfg, section, tmp_path / "o", study_name="other", trials=2)
    assert folders == [
        (tmp_path / "o" / "trial0000").resolve(),
        (tmp_path / "o" / "study-other" / "trial0000").resolve(),
        (tmp_path / "o" / "study-other" / "trial0001").resolve(),
    ]
    assert (tmp_path / "o" / "tune.csv").read_text() == first
    assert (tmp_path / "o" / "study-other" / "tune.csv").read_text().count("\n") == 3
    for bad in ("a/b", "", ".hidden", "x" * 101, "with space", "../up"):
        with pytest.raises(XDreamError, match="cannot name its folder"):
            tune.run_tune(cfg, section, tmp_path / "bad", study_name=bad)
    assert not (tmp_path / "bad").exists()


def test_tune_csv_is_written_after_each_trial_with_its_documented_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tune.csv lists each trial's folder, start, duration and normalised score per unit, and
    is rewritten as each trial starts and ends (it was written only at the end: audit W10,
    W17); every
    column is documented in docs/records.md."""
    _optuna()
    import csv
    import datetime

    from xdream import tune

    seen: list[list[dict[str, str]]] = []

    def read_table(folder: Path) -> None:
        table = tmp_path / "o" / "tune.csv"
        seen.append(list(csv.DictReader(table.open())) if table.exists() else [])

    cfg, section = _small(tmp_path)
    _fast(monkeypatch, read_table)
    tune.run_tune(cfg, section, tmp_path / "o", trials=3)
    # each trial sees the ones before it, and its own row as it runs
    assert [len(rows) for rows in seen] == [1, 2, 3]
    assert [row["state"] for row in seen[2]] == ["COMPLETE", "COMPLETE", "RUNNING"]
    with open(tmp_path / "o" / "tune.csv") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = list(reader.fieldnames or [])
    assert columns == [
        "number", "state", "value", "population_size", "mutation_rate", "selectivity",
        "datetime_start", "duration_s", "folder", "norm_blocks.0_c001", "norm_blocks.0_c002",
        "retry_of", "retried_as",
    ]  # fmt: skip
    assert [r["folder"] for r in rows] == ["trial0000", "trial0001", "trial0002"]
    assert rows[0]["norm_blocks.0_c002"] == "0.25" and float(rows[0]["duration_s"]) >= 0
    datetime.datetime.fromisoformat(rows[0]["datetime_start"])
    docs = (Path(__file__).parents[1] / "docs" / "records.md").read_text()
    section_text = docs[docs.index("## `tune.csv`") :]
    for column in [*columns[:3], *columns[6:9], "norm_<unit>", "retry_of", "retried_as"]:
        assert f"`{column}`" in section_text, column


def test_a_key_moved_between_the_search_space_and_the_optimizer_keeps_its_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key searched in one session and fixed in [optimizer] in another: each trial's
    tune.csv row and the closing line give the value it ran with (the column was empty for
    the trials that had it fixed, and the best trial's values left it out: audit V, NEW-5)."""
    _optuna()
    import csv

    from xdream import cli, tune

    _fast(monkeypatch)
    searched = _small(tmp_path)
    tune.run_tune(*searched, tmp_path / "o", trials=1)
    moved = {"selectivity = { choices = [1.0, 4.0] }": "", 'name = "genetic"': (
        'name = "genetic"\nselectivity = 2.5')}  # fmt: skip
    tune.run_tune(*_small(tmp_path, **moved), tmp_path / "o", trials=2)
    rows = list(csv.DictReader((tmp_path / "o" / "tune.csv").open()))
    assert rows[0]["selectivity"] in {"1.0", "4.0"}
    assert [r["selectivity"] for r in rows[1:]] == ["2.5", "2.5"]
    # and back: the trials that had it fixed keep their value beside the searched ones
    config_path = sorted(tmp_path.glob("tune*.toml"))[0]
    monkeypatch.setattr(
        tune, "objective", lambda *a, **k: (0.9, {"blocks.0_c001": 0.9, "blocks.0_c002": 0.9})
    )
    assert cli.main(["tune", str(config_path), "--out", str(tmp_path / "o"), "--trials", "4"]) == 0
    rows = list(csv.DictReader((tmp_path / "o" / "tune.csv").open()))
    assert [r["selectivity"] for r in rows[1:3]] == ["2.5", "2.5"]
    assert rows[3]["selectivity"] in {"1.0", "4.0"}
    best = " ".join(capsys.readouterr().out.split()).split("best median")[-1]
    assert "'selectivity'" in best
    # the best trial's values name it where it was fixed
    monkeypatch.setattr(
        tune, "objective", lambda *a, **k: (2.0, {"blocks.0_c001": 2.0, "blocks.0_c002": 2.0})
    )
    moved_path = sorted(tmp_path.glob("tune*.toml"))[1]
    assert cli.main(["tune", str(moved_path), "--out", str(tmp_path / "o"), "--trials", "5"]) == 0
    best = " ".join(capsys.readouterr().out.split()).split("best median")[-1]
    assert best.startswith(" normalised score 2 with {") and "'selectivity': 2.5" in best


@pytest.mark.parametrize(
    ("kind", "lost"),
    [
        ("OperationalError", "table study_directions already exists"),
        ("IntegrityError", "UNIQUE constraint failed: alembic_version.version_num"),
    ],
)
def test_two_tunes_creating_one_storage_at_once_both_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, lost: str
) -> None:
    """The study is created while holding a lock in OUT, and a creation that loses a race
    (another process made the tables meanwhile, on a shared --storage) is tried again: one of
    two `xdream tune` started together failed with `table study_directions already exists`
    (audit W16)."""
    optuna = _optuna()
    import fcntl

    import sqlalchemy.exc

    from xdream import tune

    create = optuna.create_study
    calls: list[bool] = []

    def racing(**kwargs: Any) -> Any:
        probe = os.open(tmp_path / "o" / tune.LOCK_FILE, os.O_RDWR)
        try:  # another process's attempt to take the lock now fails
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
        calls.append(True)
        if len(calls) == 1:  # the other process made the tables after this one looked
            create(**kwargs)
            raise getattr(sqlalchemy.exc, kind)("CREATE TABLE", {}, Exception(lost))
        return create(**kwargs)

    monkeypatch.setattr(optuna, "create_study", racing)
    cfg, section = _small(tmp_path)
    _fast(monkeypatch)
    study = tune.run_tune(cfg, section, tmp_path / "o")
    assert len(calls) == 2 and [t.state.name for t in study.trials] == ["COMPLETE"]


def test_an_unusable_out_or_storage_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--out a file, in a file, or read-only; a read-only database; a bad URL: one line naming
    the folder and the fix, and no folder left behind (a traceback, or "invalid data ...
    exceeding max length": audit W11)."""
    optuna = _optuna()
    import errno

    import xdream.records
    from xdream import tune

    cfg, section = _small(tmp_path)
    _fast(monkeypatch)
    (tmp_path / "file").write_text("")
    for out in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(XDreamError, match=r"output folder .*file.*a file has that name"):
            tune.run_tune(cfg, section, out)
    with pytest.raises(XDreamError, match=r"cannot open the Optuna storage 'foo://x'"):
        tune.run_tune(cfg, section, tmp_path / "new" / "o", storage="foo://x")
    assert not (tmp_path / "new").exists()
    tune.run_tune(cfg, section, tmp_path / "done")

    def read_only(folder: Any, exist_ok: bool = False) -> list[Path]:
        raise OSError(errno.EROFS, "Read-only file system", str(folder))

    with monkeypatch.context() as m:
        m.setattr(xdream.records, "make_folder", read_only)
        with pytest.raises(XDreamError) as info:
            tune.run_tune(cfg, section, tmp_path / "done")
    assert str(info.value) == (
        f"cannot write into the output folder {str((tmp_path / 'done').resolve())!r} (Read-only "
        "file system): make it writable, or copy it to a folder that can be written and give "
        "that as --out (its studies go on there)"
    )

    import sqlalchemy.exc

    def readonly_db(**kwargs: Any) -> Any:
        error = Exception("attempt to write a readonly database")
        raise sqlalchemy.exc.OperationalError("INSERT", {}, error)

    monkeypatch.setattr(optuna, "create_study", readonly_db)
    with pytest.raises(XDreamError, match=r"tune.db'.*read-only: make it writable"):
        tune.run_tune(cfg, section, tmp_path / "done")


def test_a_sqlite_storage_that_cannot_be_written_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --storage SQLite database that is read-only, or a new one in a folder that cannot be
    written, is refused before any trial with one line naming the file and the fix, and leaves
    no --out behind; so is a SQLite error found behind Optuna's (it said "invalid data in the
    commit, e.g. exceeding max length" or "unable to open database file": audit V NEW-9). The
    tests run as root, where chmod blocks nothing: os.access says what cannot be written."""
    optuna = _optuna()
    import sqlite3

    import sqlalchemy.exc

    from xdream import tune

    cfg, section = _small(tmp_path)
    _fast(monkeypatch)
    tune.run_tune(cfg, section, tmp_path / "done")
    db = (tmp_path / "done" / "tune.db").resolve()
    (tmp_path / "ro").mkdir()
    blocked = {db, (tmp_path / "ro").resolve()}
    access = os.access

    def read_only(path: Any, mode: int, **kwargs: Any) -> bool:
        if mode & os.W_OK and Path(path).resolve() in blocked:
            return False
        return access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", read_only)
    fix = (
        "make it writable, or copy it to a folder that can be written and give --storage "
        "sqlite:///COPY (COPY: the copy's absolute path)"
    )
    new = (tmp_path / "ro" / "new.db").resolve()
    for url, why in (
        (f"sqlite:///{db}", f"the database file is read-only: {fix}"),
        (
            f"sqlite:///{new}",
            f"its folder {str(new.parent)!r} cannot be written (SQLite writes its journal there): "
            "make it writable, or give --storage a database in a folder that can be written",
        ),
    ):
        with pytest.raises(XDreamError) as info:
            tune.run_tune(cfg, section, tmp_path / "o", storage=url, trials=1)
        path = db if url.endswith("tune.db") else new
        assert str(info.value) == (f"cannot write the Optuna storage database {str(path)!r}: {why}")
        assert not (tmp_path / "o").exists() and not new.exists()

    def unable(**kwargs: Any) -> Any:
        try:
            raise sqlalchemy.exc.OperationalError(
                "INSERT", {}, sqlite3.OperationalError("unable to open database file")
            )
        except sqlalchemy.exc.OperationalError as err:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit. This typically happens due to "
                "invalid data in the commit, e.g. exceeding max length."
            ) from err

    monkeypatch.setattr(optuna, "create_study", unable)
    url = f"sqlite:///{(tmp_path / 'x.db').resolve()}"
    with pytest.raises(XDreamError) as info:
        tune.run_tune(cfg, section, tmp_path / "o", storage=url)
    assert str(info.value) == (
        f"cannot open the Optuna storage {url!r}: the database file or its folder is read-only "
        f"(unable to open database file): {fix}"
    )


def test_an_interrupted_tune_of_another_study_says_to_continue_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The continue line names --study and --storage where given (it left them out, so the
    advice continued the default study)."""
    from xdream import cli, tune

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(tune, "run_tune", interrupted)
    path = tmp_path / "tune.toml"
    path.write_text(TUNE_TOML)
    _optuna()
    out = tmp_path / "o"
    status = cli.main(["tune", str(path), "--out", str(out), "--study", "s2"])
    assert status == 130
    assert f"continue with `xdream tune {path} --out {out} --study s2`" in capsys.readouterr().err


def test_the_closing_line_counts_one_trial_in_the_singular(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "(1 trials in study 'xdream')", as the end line of a run said "1 generations"
    before."""
    _optuna()
    from xdream import cli

    _fast(monkeypatch)
    _small(tmp_path)
    command = ["tune", str(tmp_path / "tune0.toml"), "--out", str(tmp_path / "o")]
    assert cli.main(command) == 0
    assert "(1 trial in study 'xdream')" in " ".join(capsys.readouterr().out.split())
    assert cli.main([*command, "--trials", "1"]) == 0
    assert "(2 trials in study 'xdream')" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------- audit M: mutants
def test_the_best_line_and_table_give_the_searched_keys_and_an_earlier_studys_fixed_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The closing line and tune.csv give the keys that trials searched, not every key fixed
    in [optimizer] (mutant M-N3). A trial of an earlier xdream (no fixed_params) gets the
    value of a key it had fixed from the study's config (mutant M-N5)."""
    optuna = _optuna()
    import ast
    import csv

    from xdream import cli, tune

    _fast(monkeypatch)
    _small(tmp_path, **{'name = "genetic"': 'name = "genetic"\nheritability = 0.75'})
    assert cli.main(["tune", str(tmp_path / "tune0.toml"), "--out", str(tmp_path / "o")]) == 0
    best = " ".join(capsys.readouterr().out.split()).split("best median")[-1]
    values = ast.literal_eval(best.split(" with ", 1)[1].split(" (", 1)[0])
    assert sorted(values) == ["mutation_rate", "population_size", "selectivity"]
    assert "heritability" not in (tmp_path / "o" / "tune.csv").read_text()
    # an earlier xdream's study, selectivity fixed at 2.5: its trial has no fixed_params
    fixed = {
        "selectivity = { choices = [1.0, 4.0] }": "",
        'name = "genetic"': 'name = "genetic"\nselectivity = 2.5',
    }
    tune.run_tune(*_small(tmp_path, **fixed), tmp_path / "e", trials=1)
    study = optuna.load_study(
        study_name=tune.DEFAULT_STUDY, storage=f"sqlite:///{tmp_path / 'e' / 'tune.db'}"
    )
    first = study.trials[0]
    assert first.user_attrs["fixed_params"]["selectivity"] == 2.5
    earlier = optuna.trial.create_trial(
        params=first.params, distributions=first.distributions, value=0.5
    )
    study.add_trial(earlier)
    tune.run_tune(*_small(tmp_path), tmp_path / "e", trials=1)  # selectivity searched again
    rows = list(csv.DictReader((tmp_path / "e" / "tune.csv").open()))
    assert [r["selectivity"] for r in rows[:2]] == ["2.5", "2.5"]
    assert rows[2]["selectivity"] in {"1.0", "4.0"}


def test_an_earlier_rig_trial_recorded_with_a_target_is_read_for_its_config(
    tmp_path: Path,
) -> None:
    """A study stored without its config is compared with its first finished trial's
    config.yaml; a rig trial's, which an earlier xdream wrote with the unused default
    [target], is read as a run folder's own config (mutation audit M: it was skipped as
    refused, and the study then compared nothing)."""
    import dataclasses
    from types import SimpleNamespace

    import yaml

    from tests.rig_helpers import rig_config
    from xdream import tune

    cfg = rig_config(generations=2, population=4, refs=0)
    data = cfg.to_dict()
    data["target"] = dataclasses.asdict(cfg.target)  # as an earlier xdream recorded it
    seed = tmp_path / "trial-0" / "seed0"
    seed.mkdir(parents=True)
    (seed / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    trial = SimpleNamespace(
        state=SimpleNamespace(name="COMPLETE"), user_attrs={"folder": "trial-0"}, number=0
    )
    study = SimpleNamespace(get_trials=lambda deepcopy: [trial])
    section = tune.TuneSection(params={"mutation_rate": {"low": 0.1, "high": 0.5}})
    found = tune.earlier_config(study, section, tmp_path)
    assert found == (tune.fingerprint(cfg, section), 0)


@pytest.mark.parametrize("study", ["", "study-b"])
@pytest.mark.parametrize("run", ["seed0", "seed0/units/blocks.0_c001"])
def test_a_studys_missing_weight_file_is_said_with_the_files_its_trials_recorded(
    tmp_path: Path, study: str, run: str
) -> None:
    """The files a study's trials read are taken from a trial's checkpoint in the study's own
    folder (out itself, or out/study-NAME for a named study), of a run of one unit or of
    many; a study without one says only that the file is missing (mutation audit U)."""
    from xdream import tune
    from xdream.records import save_checkpoint

    out = tmp_path / "out"
    here = out / study if study else out
    err = MissingFileError("weight file '/a/w.pt' does not exist")
    assert tune._missing_file_message(err, here) == str(err)
    checkpoint = here / "trial0000" / run / "checkpoint.pkl"
    checkpoint.parent.mkdir(parents=True)
    save_checkpoint(checkpoint, {"files": {"target.weights": {"path": "/a/w.pt", "size": 1}}})
    said = tune._missing_file_message(err, here)
    assert said.startswith(
        "weight file '/a/w.pt' does not exist. The study's trials read these files: "
        "[target] weights was /a/w.pt ("
    ), said


def test_a_named_studys_missing_weight_file_is_said_with_the_files_its_trials_read(
    tmp_path: Path,
) -> None:
    """A named study keeps its trials in out/study-NAME: tuned on with its weight file gone,
    the files its trials read are found there, not in out (mutation audit U)."""
    _optuna()
    from tests.helpers import moved_weight_files
    from xdream import tune

    moved_weight_files(tmp_path)
    weights = tmp_path / "a" / "w.pt"
    cfg, section = _small(tmp_path, **{'device = "cpu"': f'device = "cpu"\nweights = "{weights}"'})
    out = tmp_path / "o"
    assert len(tune.run_tune(cfg, section, out, study_name="b").trials) == 1
    weights.rename(tmp_path / "b" / "w.pt")
    with pytest.raises(MissingFileError) as e:
        tune.run_tune(cfg, section, out, study_name="b", trials=1)
    said = f"The study's trials read these files: [target] weights was {weights} ("
    assert said in str(e.value), e.value
