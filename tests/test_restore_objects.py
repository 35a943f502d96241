"""Experiment.restore() of a run built from Python objects: how the objects given are compared
with those the run was built with (audit Z)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import xdream.generators
import xdream.optimizers
from tests.helpers import RedScorer
from xdream import records
from xdream.errors import ConfigChangedError, XDreamError
from xdream.experiment import Experiment
from xdream.scorers import FunctionScorer, NoisyScorer, Scorer, make_noise


def contents(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder under ``folder``, but the lock file."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
        if p.name != records.LOCK_FILE
    }


def build(scorer: Scorer, out: Path, generator: str = "pixels", **kw: Any) -> Experiment:
    params: dict[str, Any] = {"size": 16} if generator == "cppn" else {"size": 16, "code_size": 4}
    gen = xdream.generators.make(generator, **params)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)
    return Experiment(gen, scorer, opt, out, **{"generations": 3, "n_references": 0, **kw})


def stopped_after_one(scorer: Scorer, out: Path, **kw: Any) -> None:
    """A run of ``scorer`` stopped after its first generation."""
    first = build(scorer, out, **kw)
    first.step()
    first.flush()
    first.release_folder()


def as_an_earlier_xdream_left_it(out: Path, **target: Any) -> None:
    """Make ``out``'s checkpoint one of an xdream before it recorded the objects (no
    ``"built"``: restore compares with record.h5's copy), that copy's target updated by
    ``target`` (a key given None is removed; without ``noise_seed``, the noise's state holds
    no seed either)."""
    state = pickle.loads((out / "checkpoint.pkl").read_bytes())
    del state["built"]
    if "noise_seed" in target:
        del state["scorer"]["seed"]
    (out / "checkpoint.pkl").write_bytes(pickle.dumps(state))
    with h5py.File(out / "record.h5", "r+") as f:
        config = json.loads(f.attrs["config"])
        config["target"].update(target)
        config["target"] = {k: v for k, v in config["target"].items() if v is not None}
        f.attrs["config"] = json.dumps(config)


def noisy(seed: int | None = 3) -> NoisyScorer:
    return NoisyScorer(RedScorer(), make_noise("poisson", scale=2.0), seed=seed)


@pytest.mark.parametrize("earlier", [False, True])
def test_a_noisy_scorer_left_out_or_added_on_restore_is_refused(
    tmp_path: Path, earlier: bool
) -> None:
    """A NoisyScorer left out on restore was taken (target.noise was only compared where both
    sides had it), and the record then said the whole run was noise-free; one added ended in a
    raw KeyError 'rng'. Both are refused, naming target.noise, with nothing written; also for
    a checkpoint of an earlier xdream, whose record.h5 already held noise."""
    left_out, added = tmp_path / "left-out", tmp_path / "added"
    stopped_after_one(noisy(), left_out)
    stopped_after_one(RedScorer(), added)
    if earlier:
        as_an_earlier_xdream_left_it(left_out, noise_seed=None)
        as_an_earlier_xdream_left_it(added)
    model = "{'name': 'poisson', 'scale': 2.0, 'reps': 1}"
    for out, scorer, named in (
        (left_out, RedScorer(), f"(target.noise: {model} -> None)"),
        (added, noisy(), f"(target.noise: None -> {model})"),
    ):
        before = contents(out)
        with pytest.raises(ConfigChangedError) as refused:
            build(scorer, out).restore()
        assert named in str(refused.value)
        assert "accept" not in str(refused.value)  # the noise cannot be accepted
        assert contents(out) == before
    again = build(noisy(), left_out)  # the objects it was built with still continue it
    again.restore()
    assert again.run()["generations"] == 3
    assert records.read(left_out).config["target"]["noise"]["name"] == "poisson"


def test_a_noisy_scorer_refuses_a_state_without_noise_in_one_line() -> None:
    """NoisyScorer.load_state_dict of a plain scorer's state raised KeyError: 'rng'."""
    with pytest.raises(XDreamError, match=r"checkpoint holds no noise state .* without the "):
        noisy().load_state_dict({})


class Described(Scorer):
    """Scores like RedScorer; describes itself as ``description`` says."""

    def __init__(self, **description: Any) -> None:
        self.description = description
        self.red = RedScorer()

    def score(self, images: Any, ids: list[str]) -> Any:
        return self.red.score(images, ids)

    def describe(self) -> dict[str, Any]:
        return {"kind": "described", **self.description}


def test_an_earlier_checkpoint_with_tuples_is_restored_with_the_same_objects(
    tmp_path: Path,
) -> None:
    """A run that an earlier xdream started (its record.h5 holds the objects as JSON, lists for
    tuples) was refused with the same objects: generator.hidden: [16, 16, 16] -> (16, 16, 16).
    Both sides are compared in their JSON form, NumPy numbers as Python ones too; a real
    difference is still refused."""
    out = tmp_path / "run"
    scorer = Described(size=(2, 2), gain=0.5)
    stopped_after_one(scorer, out, generator="cppn")
    as_an_earlier_xdream_left_it(out)
    with pytest.raises(ConfigChangedError, match=r"\(target\.gain: 0\.5 -> 0\.25\)"):
        build(Described(size=(2, 2), gain=0.25), out, generator="cppn").restore()
    again = build(Described(size=(2, 2), gain=np.float64(0.5)), out, generator="cppn")
    again.restore()
    assert again.run()["generations"] == 3


@pytest.mark.parametrize("seed", [4, None])
def test_an_earlier_noisy_run_continued_records_no_noise_seed(
    tmp_path: Path, seed: int | None
) -> None:
    """An earlier xdream recorded no noise_seed. Continued, record.h5 said the restore
    session's seed (given, or fresh entropy), which did not draw the run's noise, and
    summary.json said null. Both say null, as docs/records.md promises."""
    out = tmp_path / "run"
    stopped_after_one(noisy(3), out)
    as_an_earlier_xdream_left_it(out, noise_seed=None)
    again = build(noisy(seed), out)
    again.restore()
    again.run()
    run = records.read(out)
    assert "noise_seed" in run.config["target"]
    assert run.config["target"]["noise_seed"] is None
    assert run.summary["target"]["noise_seed"] is None


def named(function: Callable[..., Any], module: str) -> FunctionScorer:
    """A FunctionScorer of ``function`` as if it were defined in ``module``."""

    def score(images: Any, ids: list[str]) -> Any:
        return function(images, ids)

    score.__module__ = module
    score.__qualname__ = "make.<locals>.score"
    return FunctionScorer(score)


def test_a_function_run_as_a_script_is_restored_from_an_import_of_it(tmp_path: Path) -> None:
    """A run started as a script (FunctionScorer of __main__.f) and continued from an import
    (exp.f) was refused over target.function; the function is compared without its module
    where either side's is __main__. Another function is still refused."""
    red = RedScorer()
    out = tmp_path / "run"
    stopped_after_one(named(red.score, "__main__"), out)
    other = named(red.score, "exp")
    other.function.__qualname__ = "make.<locals>.other"
    with pytest.raises(ConfigChangedError, match=r"target\.function: '__main__\.make"):
        build(other, out).restore()
    again = build(named(red.score, "lab.exp"), out)
    again.restore()
    assert again.run()["generations"] == 3
    stopped_after_one(named(red.score, "exp"), tmp_path / "other-module")
    with pytest.raises(ConfigChangedError, match=r"target\.function: 'exp\.make"):
        build(named(red.score, "lab.exp"), tmp_path / "other-module").restore()


def test_restore_accepts_the_differences_of_the_keys_it_is_told(tmp_path: Path) -> None:
    """A scorer whose describe() holds something of the session could never be continued.
    restore(accept=[keys]) takes those keys' differences (the record then holds the new
    values, and config_changes lists them); other differences are still refused, and a key
    the description does not have, or the noise, is refused as a mistake."""
    out = tmp_path / "run"
    stopped_after_one(Described(started=1.0, channel=1), out)
    before = contents(out)
    with pytest.raises(ConfigChangedError) as refused:
        build(Described(started=2.0, channel=1), out).restore()
    assert "restore(accept=['target.KEY'])" in str(refused.value)  # no key filled in (Q2)
    for bad in (None, 5):  # a raw TypeError (audit Q4)
        with pytest.raises(XDreamError, match=r"takes keys as the refusal names them"):
            build(Described(started=2.0, channel=1), out).restore(accept=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigChangedError, match=r"\(target\.channel: 1 -> 2\)"):
        build(Described(started=2.0, channel=2), out).restore(accept=["target.started"])
    with pytest.raises(XDreamError, match=r"'target\.strated' is no key .*target has channel, "):
        build(Described(started=2.0, channel=1), out).restore(accept=["target.strated"])
    with pytest.raises(XDreamError, match=r"cannot take 'target\.noise'"):
        build(Described(started=2.0, channel=1), out).restore(accept=["target.noise"])
    with pytest.raises(XDreamError, match=r"'section\.key' such as"):
        build(Described(started=2.0, channel=1), out).restore(accept=["target"])
    assert contents(out) == before
    again = build(Described(started=2.0, channel=1), out, generations=4)
    again.restore(accept="target.started")
    assert again.config_changes == [
        "experiment.generations: 3 -> 4",
        "target.started: 1.0 -> 2.0",
    ]
    assert again.run()["generations"] == 4
    assert records.read(out).config["target"]["started"] == 2.0


class DescribedScorer(RedScorer):
    """A RedScorer whose description has the keys ``extra`` besides its own."""

    def __init__(self, **extra: Any) -> None:
        super().__init__()
        self.extra = extra

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.extra}


def test_a_key_the_description_gained_is_taken_and_one_it_lost_is_refused(tmp_path: Path) -> None:
    """A key that only the new description has (a later xdream or the user's describe()
    describes more) is not compared, so such a run goes on; a key it lost is compared as
    None and refused."""
    gained, lost = tmp_path / "gained", tmp_path / "lost"
    stopped_after_one(DescribedScorer(), gained)
    build(DescribedScorer(electrode="A1"), gained).restore()
    stopped_after_one(DescribedScorer(electrode="A1"), lost)
    with pytest.raises(ConfigChangedError, match=r"target\.electrode: 'A1' -> None"):
        build(DescribedScorer(), lost).restore()


def test_a_description_holding_numpy_arrays_is_recorded_and_restored(tmp_path: Path) -> None:
    """A scorer's describe() with a NumPy array (a receptive field's centre) is recorded as a
    list; the run stopped on its first record.h5 with a raw "ndarray is not JSON
    serializable"."""
    import torch

    out = tmp_path / "run"
    stopped_after_one(DescribedScorer(centre=np.array([1.5, 2.0]), rf=torch.tensor([3, 4])), out)
    again = build(DescribedScorer(centre=np.array([1.5, 2.0]), rf=torch.tensor([3, 4])), out)
    again.restore()
    again.run()
    assert records.read(out).config["target"]["centre"] == [1.5, 2.0]
    assert records.read(out).config["target"]["rf"] == [3, 4]  # a tensor too (audit Q7)
    assert json.loads((out / "summary.json").read_text())["target"]["centre"] == [1.5, 2.0]


def test_what_accept_took_is_recorded_with_the_generation_it_took_effect(tmp_path: Path) -> None:
    """The record says which generations ran with the values restore(accept=) replaced: the
    config attribute's ``accepted`` lists each taking, with the generations run before it,
    kept through later sessions (their checkpoints) and not compared on restore."""
    out = tmp_path / "run"
    stopped_after_one(Described(started=1.0, channel=1), out)
    second = build(Described(started=2.0, channel=1), out)
    second.restore(accept=["target.started"])
    second.step()
    second.flush()
    second.release_folder()
    first_taking = {"generation": 1, "changes": ["target.started: 1.0 -> 2.0"]}
    assert records.read(out).config["accepted"] == [first_taking]
    same = build(Described(started=2.0, channel=1), out)  # no difference: nothing taken
    same.restore()
    assert same.config_changes == []
    same.release_folder()
    third = build(Described(started=3.0, channel=1), out, generations=4)
    third.restore(accept=["target.started"])
    assert third.run()["generations"] == 4
    config = records.read(out).config
    assert config["target"]["started"] == 3.0
    assert config["accepted"] == [
        first_taking,
        {"generation": 2, "changes": ["target.started: 2.0 -> 3.0"]},
    ]
    from xdream import report

    page = report.write_report(out).read_text()
    assert "taken on restore" in page
    assert "target.started: 2.0 -&gt; 3.0 (from generation 2)" in page
    plain = tmp_path / "plain"  # a run that took nothing records no history
    stopped_after_one(Described(started=1.0, channel=1), plain)
    again = build(Described(started=1.0, channel=1), plain)
    again.restore()
    again.run()
    assert "accepted" not in records.read(plain).config


def test_a_weights_file_is_compared_by_its_contents_not_its_path(tmp_path: Path) -> None:
    """A run built in Python records which file its scorer's ``weights`` named (size and
    fingerprint, as a config's run does): the same path holding another file is refused
    (it went on, mixing two sets of weights in one record), and the same file at another
    path (a virtual environment made again elsewhere) goes on (it was refused as a change)."""
    weights, moved = tmp_path / "w.pth", tmp_path / "venv2" / "w.pth"
    weights.write_bytes(b"a" * 1000)
    out = tmp_path / "run"
    stopped_after_one(DescribedScorer(weights=str(weights)), out)
    before = contents(out)
    weights.write_bytes(b"b" * 1000)
    with pytest.raises(XDreamError, match=r"the scorer's weights file .*w\.pth changed since"):
        build(DescribedScorer(weights=str(weights)), out).restore()
    assert contents(out) == before
    moved.parent.mkdir()
    moved.write_bytes(b"b" * 1000)  # another file at another path: a change
    with pytest.raises(ConfigChangedError, match=r"target\.weights: '.*w\.pth' -> '.*venv2") as e:
        build(DescribedScorer(weights=str(moved)), out).restore()
    assert f"(another file: '{moved}' (1000 bytes" in str(e.value)  # not only a change
    assert f"not the one the run read, '{weights}' (1000 bytes" in str(e.value)
    moved.write_bytes(b"a" * 1000)  # the run's file, moved
    again = build(DescribedScorer(weights=str(moved)), out)
    again.restore()  # said as a resume from a config says it (it was taken silently)
    assert again.config_changes == [
        f"target.weights: {str(weights)!r} -> {str(moved)!r} (the same file: same size and "
        "fingerprint)"
    ]
    assert again.run()["generations"] == 3
    assert records.read(out).config["target"]["weights"] == str(moved)
    other = tmp_path / "other"  # another file taken on purpose
    stopped_after_one(DescribedScorer(weights=str(moved)), other)
    weights.write_bytes(b"c" * 1000)
    taken = build(DescribedScorer(weights=str(weights)), other)
    taken.restore(accept=["target.weights"])
    assert taken.run()["generations"] == 3


# --------------------------------------------------------------------------- audit M: mutants
# Behaviour of the comparison that no test above pinned down (audit M, mutation testing).


def as_recorded(out: Path, **built: Any) -> None:
    """Set keys of ``out``'s checkpoint's record of the objects (``"built"``)."""
    state = pickle.loads((out / "checkpoint.pkl").read_bytes())
    state["built"].update(built)
    (out / "checkpoint.pkl").write_bytes(pickle.dumps(state))


class Plain(xdream.generators.Generator):
    """A user's generator without a Params dataclass: the record names it by its name only."""

    name = "plain"

    def __init__(self) -> None:
        super().__init__(params=None)
        self.code_dim, self.output_size = 4, (16, 16)

    def forward(self, codes: Any) -> Any:
        return codes.mean(1).sigmoid()[:, None, None, None].expand(-1, 3, 16, 16)


def test_a_generator_or_optimizer_named_by_its_name_on_one_side_only_is_restored(
    tmp_path: Path,
) -> None:
    """A generator or optimiser that one side names by its name alone (an earlier xdream's
    record, or parameters that are no dataclass of JSON values) and the other by its
    parameters is compared by name (mutants M-O1, M-O2)."""
    by_name = tmp_path / "by-name"  # the checkpoint names them; this session has parameters
    stopped_after_one(RedScorer(), by_name)
    as_recorded(by_name, generator="pixels", optimizer="genetic")
    again = build(RedScorer(), by_name)
    again.restore()
    assert again.run()["generations"] == 3
    with_params = tmp_path / "with-params"  # the checkpoint has parameters; this one a name
    opt = xdream.optimizers.make("genetic", dim=4, seed=0, population_size=6)
    Experiment(Plain(), RedScorer(), opt, with_params, generations=3, n_references=0).step()
    as_recorded(with_params, generator={"name": "plain", "size": 16})
    opt = xdream.optimizers.make("genetic", dim=4, seed=0, population_size=6)
    plain = Experiment(Plain(), RedScorer(), opt, with_params, generations=3, n_references=0)
    plain.restore()
    assert plain.run()["generations"] == 3


def test_an_optimizer_whose_seed_cannot_be_told_continues_with_the_runs(tmp_path: Path) -> None:
    """An optimiser that cannot say its seed (``seed`` None: a subclass's, or a spawned
    generator) continues the run with the run's seed; it is no change (mutant M-O5)."""
    out = tmp_path / "run"
    stopped_after_one(RedScorer(), out)
    gen = xdream.generators.make("pixels", size=16, code_size=4)
    opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=0, population_size=6)

    class Unseeded(type(opt)):  # type: ignore[misc]
        seed = None

    opt.__class__ = Unseeded
    again = Experiment(gen, RedScorer(), opt, out, generations=3, n_references=0)
    again.restore()
    assert again.run()["generations"] == 3
    assert records.read(out).summary["seed"] == 0


def test_a_large_seed_chosen_by_the_user_is_still_compared(tmp_path: Path) -> None:
    """Only seeds of 2**64 or more are taken for fresh entropy (an optimiser made without a
    seed, which continues with the run's); a chosen seed below that, however large, that
    differs is refused (mutant M-O27)."""
    out = tmp_path / "run"
    big = 2**63 + 5
    gen = xdream.generators.make("pixels", size=16, code_size=4)

    def experiment(seed: int) -> Experiment:
        opt = xdream.optimizers.make("genetic", dim=gen.code_dim, seed=seed, population_size=6)
        return Experiment(gen, RedScorer(), opt, out, generations=3, n_references=0)

    first = experiment(big)
    first.step()
    first.release_folder()
    with pytest.raises(ConfigChangedError, match=rf"experiment\.seed: {big} -> {big + 1}"):
        experiment(big + 1).restore()


def test_a_key_lost_deep_in_a_description_is_refused(tmp_path: Path) -> None:
    """A key that the description lost inside a nested dict is compared as None, as one lost
    at the top is (mutant M-O14)."""
    out = tmp_path / "run"
    stopped_after_one(DescribedScorer(field={"x": 1, "y": 2}), out)
    with pytest.raises(ConfigChangedError, match=r"target\.field\.y: 2 -> None"):
        build(DescribedScorer(field={"x": 1}), out).restore()


def test_only_the_same_function_of_a_script_and_its_import_is_taken(tmp_path: Path) -> None:
    """A run started from an import (exp.f) continues as a script (__main__.f); a function
    whose name only ends like the script's (exp.remake...score for __main__.make...score), or
    another function of the script itself, is another function (mutants M-O16, M-O17,
    M-O18)."""
    red = RedScorer()
    imported = tmp_path / "imported"
    stopped_after_one(named(red.score, "exp"), imported)
    again = build(named(red.score, "__main__"), imported)
    again.restore()
    assert again.run()["generations"] == 3
    script = tmp_path / "script"
    stopped_after_one(named(red.score, "__main__"), script)
    for module, qualname in (("exp", "remake.<locals>.score"), ("__main__.other", None)):
        other = named(red.score, module)
        if qualname is not None:
            other.function.__qualname__ = qualname
        with pytest.raises(ConfigChangedError, match=r"target\.function: '__main__\.make"):
            build(other, script).restore()


def test_accept_takes_exactly_the_keys_it_names(tmp_path: Path) -> None:
    """accept=['target.start'] takes target.start and what is within it, not target.started;
    the noise's seed cannot be accepted; a key that only the new description has is no
    mistake (mutants M-O21, M-O22, M-O25)."""
    out = tmp_path / "run"
    stopped_after_one(Described(start=1, started=1.0), out)
    with pytest.raises(ConfigChangedError, match=r"\(target\.started: 1\.0 -> 2\.0\)"):
        build(Described(start=2, started=2.0), out).restore(accept=["target.start"])
    with pytest.raises(XDreamError, match=r"cannot take 'target\.noise_seed'"):
        build(Described(start=1, started=1.0), out).restore(accept=["target.noise_seed"])
    again = build(Described(start=2, started=1.0, electrode="A1"), out)
    again.restore(accept=["target.start", "target.electrode"])
    assert again.config_changes == ["target.start: 1 -> 2"]


def test_accept_is_refused_for_a_run_built_from_a_config(tmp_path: Path) -> None:
    """restore(accept=...) of a config's run says that it is for objects and what to do; a
    config's run goes on with its config (mutant M-O30)."""
    from xdream import config as config_mod

    cfg = config_mod.from_dict(
        {
            "experiment": {"generations": 2, "n_references": 0},
            "generator": {"name": "pixels", "size": 32, "code_size": 8},
            "optimizer": {"name": "genetic", "population_size": 6},
        }
    )
    ones = FunctionScorer(lambda images, ids: np.ones(len(ids)))
    first = Experiment.from_config(cfg, tmp_path / "run", unit=ones)
    first.step()
    first.release_folder()
    again = Experiment.from_config(cfg, tmp_path / "run", unit=ones)
    with pytest.raises(XDreamError, match=r"is for a run built from Python objects; .*config.yaml"):
        again.restore(accept=["target.function"])


def test_a_weights_file_named_by_a_relative_path_or_a_link_restores_with_the_same_objects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same objects restore a run whose weight file they name by a relative path or
    through a symbolic link (a virtual environment reached through a linked folder): the
    recorded path was replaced by the resolved one, and restore refused a change never made
    (audit V2-1). The same relative name in another directory, holding another file, is
    refused, naming both files; a file replaced at its path is taken with accept (and the
    record says so, audit V2-2)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "w.pth").write_bytes(b"a" * 1000)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    for name, weights in (("relative", "real/w.pth"), ("linked", str(tmp_path / "link/w.pth"))):
        out = tmp_path / name
        stopped_after_one(DescribedScorer(weights=weights), out)
        again = build(DescribedScorer(weights=weights), out)
        again.restore()
        assert again.config_changes == []
        again.release_folder()
    other = tmp_path / "elsewhere"
    (other / "real").mkdir(parents=True)
    (other / "real" / "w.pth").write_bytes(b"b" * 1000)
    monkeypatch.chdir(other)
    with pytest.raises(XDreamError, match=r"weights file is now .*elsewhere/real/w\.pth .*not the"):
        build(DescribedScorer(weights="real/w.pth"), tmp_path / "relative").restore()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real" / "w.pth").write_bytes(b"c" * 1000)
    with pytest.raises(XDreamError, match=r"changed since the run read it.*accept=\['target"):
        build(DescribedScorer(weights="real/w.pth"), tmp_path / "relative").restore()
    taken = build(DescribedScorer(weights="real/w.pth"), tmp_path / "relative")
    taken.restore(accept=["target.weights"])
    (listed,) = taken.config_changes
    assert taken.run()["generations"] == 3
    (entry,) = records.read(tmp_path / "relative").config["accepted"]
    assert entry["changes"] == [listed]
    assert entry["generation"] == 1
    (change,) = entry["changes"]
    assert change.startswith("target.weights: ") and "1000 bytes" in change
