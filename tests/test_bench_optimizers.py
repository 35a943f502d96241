"""``xdream bench optimizers``: unit reads, aggregation, a tiny end-to-end run and its resume."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xdream import networks
from xdream.bench import cli as bench_cli
from xdream.bench.network import LayerReader
from xdream.bench.optimizers import (
    Contender,
    Profile,
    overhead,
    run_benchmark,
    stream_seed,
    summarise,
    write_outputs,
    write_results_csv,
)
from xdream.errors import XDreamError
from xdream.generators.spectrum import CodeSpectrum
from xdream.precision import tf32_mode
from xdream.records.files import write_json
from xdream.scorers import CNNUnitScorer

TINY = Profile(
    "tiny",
    generators=("pixels",),
    layers=("blocks.1",),
    channels_per_layer=2,
    seeds=1,
    noises=("none", "poisson"),
    budget=60,
    n_references=40,
)


def tiny_contenders(generator: str) -> list[Contender]:
    del generator
    return [
        Contender("genetic", "genetic", {"population_size": 10}),
        Contender("annealed-es", "annealed-es", {"population_size": 12, "generations": 5}),
    ]


@tf32_mode(False)  # on CUDA both in IEEE float32, as the benchmark's workers compute
def test_layer_reader_matches_unit_scorer() -> None:
    torch.manual_seed(0)
    images = torch.rand(3, 3, 64, 64)
    reader = LayerReader(["blocks.4", "blocks.1"], image_size=64)
    acts = reader(images)
    net = networks.make()
    preprocess = dataclasses.replace(net.preprocess, input_size=64)
    for layer, channel in (("blocks.4", 3), ("blocks.1", 7)):
        scorer = CNNUnitScorer(net, layer, channel, preprocess=preprocess, channels_last=False)
        expected = scorer.score(images, ["a", "b", "c"])
        got = reader.read(acts[layer], layer, channel).double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    assert reader.shapes["blocks.4"] == (40, 8, 8) and reader.centre("blocks.4") == (4, 4)


def test_stream_seed_is_stable() -> None:
    assert stream_seed("a", 1) == stream_seed("a", 1) != stream_seed("a", 2)


def _row(opt: str, unit: str, best: float, noise: str = "none", seed: int = 0) -> dict:
    return {
        "generator": "pixels",
        "optimizer": opt,
        "noise": noise,
        "seed": seed,
        "unit": unit,
        "best": best,
        "relative": best / 10.0,
        "optimizer_s": 0.0,
    }


def test_summary_medians_and_baseline_ratio() -> None:
    rows = [
        _row("genetic", "u1", 4.0),
        _row("pycma", "u1", 5.0),
        _row("new", "u1", 6.0),
        _row("genetic", "u2", 8.0),
        _row("pycma", "u2", 2.0),
        _row("new", "u2", 10.0),
        _row("new", "u2", 6.0, seed=1),  # seeds are averaged per unit: 8.0
    ]
    profile = dataclasses.replace(TINY, noises=("none",))
    table = summarise(rows, profile)["generators"]["pixels"]
    new = table["table"]["none"]["new"]
    assert new["median_vs_baseline"] == pytest.approx(np.median([6 / 5, 8 / 8]))
    # normalised: best / best of every run on the unit (u1: 6, u2: 10)
    assert new["median_normalised"] == pytest.approx(np.median([6 / 6, 8 / 10]))
    assert new["median_relative"] == pytest.approx(np.median([0.6, 0.8]))
    assert table["table"]["none"]["genetic"]["median_vs_baseline"] == pytest.approx(0.9)
    verdict = table["acceptance"]
    assert verdict["winner"] == "new" and verdict["passes"] is False  # 1.1 < 1.15
    assert verdict["noise"]["none"]["best_here"] == "new"


def test_verdict_needs_both_baselines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = dataclasses.replace(TINY, noises=("none", "poisson"))
    both = [_row(b, "u1", 4.0, noise=n) for b in ("genetic", "pycma") for n in profile.noises]
    new = [_row("new", "u1", 6.0, noise=n) for n in profile.noises]
    full = summarise(both + new, profile)["generators"]["pixels"]
    assert full["baselines"] == {"none": ["genetic", "pycma"], "poisson": ["genetic", "pycma"]}
    assert full["acceptance"]["passes"] is True and "reason" not in full["acceptance"]
    # pycma has not finished the Poisson runs: that ratio is against GA alone, no verdict
    partial = summarise(both[:3] + new, profile)["generators"]["pixels"]
    assert partial["baselines"] == {"none": ["genetic", "pycma"], "poisson": ["genetic"]}
    verdict = partial["acceptance"]
    assert verdict["winner"] == "new" and verdict["passes"] is None
    assert verdict["noise"]["none"]["pass"] is True and verdict["noise"]["poisson"]["pass"] is None
    assert "no pycma under poisson" in verdict["reason"]
    no_base = summarise(new, profile)["generators"]["pixels"]
    assert no_base["acceptance"] == {
        "winner": None,
        "passes": None,
        "reason": "no baseline (genetic, pycma) in the results",
    }
    only_base = summarise(both, profile)["generators"]["pixels"]["acceptance"]
    assert only_base["reason"] == "no contender besides the baselines"
    # the command line says what each ratio was against
    from xdream.bench import optimizers as bench

    summaries = iter([summarise(both[:3] + new, profile), summarise(new, profile)])
    monkeypatch.setattr(
        bench, "run_benchmark", lambda *a, **k: {**next(summaries), "complete": True}
    )
    parser = argparse.ArgumentParser(prog="xdream")
    bench_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "optimizers", "--out", "x", "--no-overhead"])
    for _ in range(2):
        bench_cli.cmd_bench_optimizers(args)
    out = capsys.readouterr().out
    assert "none     1.500 x the better of GA and pycma (bar 1.15)" in out
    assert "poisson  1.500 x GA alone (bar 1.1)" in out
    assert "no verdict without both baselines: no pycma under poisson" in out
    assert "pixels: no verdict: no baseline (genetic, pycma) in the results" in out


def test_units_with_a_best_at_or_below_zero_are_not_compared(tmp_path: Path) -> None:
    """A ratio to a negative maximum would rank the worst contender first: such units are
    left out of the medians (NaN per run) and counted."""
    rows = [
        _row("genetic", "u1", 4.0),
        _row("pycma", "u1", 5.0),
        _row("new", "u1", 6.0),
        _row("genetic", "u2", -0.30),  # every run below zero; "new" the worst
        _row("pycma", "u2", -0.29),
        _row("new", "u2", -0.44),
        _row("genetic", "u3", 0.0),  # the baselines at zero, "new" above
        _row("pycma", "u3", -1.0),
        _row("new", "u3", 2.0),
    ]
    profile = dataclasses.replace(TINY, noises=("none",))
    table = summarise(rows, profile)["generators"]["pixels"]
    new = table["table"]["none"]["new"]
    assert new["median_normalised"] == pytest.approx(np.median([6 / 6, 2 / 2]))
    assert new["units_not_comparable"] == 1  # u2
    assert new["median_vs_baseline"] == pytest.approx(6 / 5)  # u1 only
    assert new["units_ahead_of_baseline"] == 1
    assert new["units_not_comparable_to_baseline"] == 2  # u2, u3
    assert table["table"]["none"]["genetic"]["median_vs_baseline"] == pytest.approx(0.8)
    assert table["table"]["none"]["genetic"]["units_not_comparable"] == 1
    assert (
        "units_not_comparable"
        not in summarise(rows[:3], profile)["generators"]["pixels"]["table"]["none"]["new"]
    )  # only where some unit is not comparable (older summaries unchanged)
    only_negative = summarise(rows[3:6], profile)["generators"]["pixels"]
    assert math.isnan(only_negative["table"]["none"]["new"]["median_normalised"])
    assert "median_vs_baseline" not in only_negative["table"]["none"]["new"]
    assert only_negative["acceptance"].get("passes") is None
    # the csv leaves such runs' normalised score empty (NaN) instead of dividing by zero
    zero = [
        {**r, "layer": "l", "channel": 0, "contender_id": "x"}
        for r in (_row("genetic", "u1", 0.0), _row("new", "u1", -1.0))
    ]
    write_results_csv(tmp_path / "results.csv", zero)
    got = [r["normalised"] for r in csv.DictReader((tmp_path / "results.csv").open())]
    assert all(math.isnan(float(x)) for x in got)


def test_tiny_benchmark_runs_resumes_and_refuses_other_config(tmp_path: Path) -> None:
    logs: list[str] = []
    out = tmp_path / "bench"
    first = run_benchmark(
        TINY, out, workers=1, contender_table=tiny_contenders, with_overhead=False, log=logs.append
    )
    done = [line.split()[1].rstrip(":") for line in logs if line.startswith("[")]
    assert [key.split("__")[1:3] for key in done] == [  # noise by noise: whole comparisons
        ["genetic", "none"],
        ["annealed-es", "none"],
        ["genetic", "poisson"],
        ["annealed-es", "poisson"],
    ]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 2 * 2  # contenders x noises x channels
    assert {r["optimizer"] for r in rows} == {"genetic", "annealed-es"}
    assert all(float(r["normalised"]) <= 1.0 for r in rows)
    # CPU seconds of the task's process: the run time without other jobs' share of the machine
    assert all(float(r["task_cpu_s"]) > 0 for r in rows)
    # what each optimiser found out: annealed-es's verdict on the responses, its last step size
    for r in rows:
        status = json.loads(r["optimizer_status"])
        if r["optimizer"] == "annealed-es":
            assert status["step_size"] > 0
            assert status["responses"] == ("repeatable" if r["noise"] == "none" else "noisy")
    assert (out / "optimizers.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["generators"]["pixels"]["table"]) == {"none", "poisson"}
    # a kill mid-benchmark loses at most the unfinished tasks: remove one, run again
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 4
    removed = runs[0]
    before = json.loads(removed.read_text())
    removed.unlink()
    logs.clear()
    second = run_benchmark(
        TINY, out, workers=1, contender_table=tiny_contenders, with_overhead=False, log=logs.append
    )
    assert any("4 tasks (3 done before)" in line for line in logs)
    after = json.loads(removed.read_text())
    assert [r["best"] for r in after] == [r["best"] for r in before]  # deterministic
    for noise in ("none", "poisson"):
        for label in ("genetic", "annealed-es"):
            a, b = (s["generators"]["pixels"]["table"][noise][label] for s in (first, second))
            assert a["median_normalised"] == b["median_normalised"]
            assert a["median_relative"] == b["median_relative"]
    with pytest.raises(XDreamError, match="different configuration"):
        run_benchmark(
            dataclasses.replace(TINY, budget=80),
            out,
            workers=1,
            contender_table=tiny_contenders,
            with_overhead=False,
            log=logs.append,
        )


def test_overhead_table() -> None:
    table = overhead(["annealed-es", "sep-cma"], dim=64, population=8, generations=3)
    assert set(table) == {"annealed-es", "sep-cma"}
    assert all(v["median_ms"] > 0 and v["generations"] == 3 for v in table.values())


def test_cli_parser() -> None:
    parser = argparse.ArgumentParser(prog="xdream")
    sub = parser.add_subparsers(dest="command", required=True)
    other = sub.add_parser("bench").add_subparsers(dest="benchmark")  # another module's bench
    other.add_parser("throughput")
    bench_cli.add_parser(sub)
    assert parser.parse_args(["bench", "throughput"]).benchmark == "throughput"
    args = parser.parse_args(
        ["bench", "optimizers", "--quick", "--workers", "3", "--generators", "pixels", "--out", "x"]
    )
    assert args.func is bench_cli.cmd_bench_optimizers
    assert args.quick and args.workers == 3 and args.generators == ["pixels"]
    with pytest.raises(XDreamError, match="workers"):
        bench_cli.cmd_bench_optimizers(parser.parse_args(["bench", "optimizers", "--workers", "0"]))


def test_changed_contender_reruns_and_contenders_can_be_added(tmp_path: Path) -> None:
    logs: list[str] = []
    out = tmp_path / "bench"
    only_ga = dataclasses.replace(TINY, noises=("none",), optimizers=("genetic",))
    run_benchmark(
        only_ga,
        out,
        workers=1,
        contender_table=tiny_contenders,
        with_overhead=False,
        log=logs.append,
    )
    ga_file = out / "runs" / "pixels__genetic__none__s0__blocks1.json"
    ga_rows = json.loads(ga_file.read_text())
    assert {r["contender_id"] for r in ga_rows} == {tiny_contenders("pixels")[0].fingerprint()}
    # the same folder takes another contender (--optimizers), keeping the GA's runs
    both = dataclasses.replace(only_ga, optimizers=None)
    logs.clear()
    run_benchmark(
        both, out, workers=1, contender_table=tiny_contenders, with_overhead=False, log=logs.append
    )
    assert any("2 tasks (1 done before)" in line for line in logs)
    assert json.loads(ga_file.read_text()) == ga_rows
    # and another code space (--generators); the results cover the latest invocation's
    fourier = dataclasses.replace(both, generators=("fourier",), budget=60)
    logs.clear()
    run_benchmark(
        fourier,
        out,
        workers=1,
        contender_table=tiny_contenders,
        with_overhead=False,
        log=logs.append,
    )
    assert any("2 tasks (0 done before)" in line for line in logs)
    assert {r["generator"] for r in csv.DictReader((out / "results.csv").open())} == {"fourier"}

    # a changed default (here: through the hyperparameters) gives another fingerprint, so the
    # old rows are rerun, not mixed with new ones
    def changed(generator: str) -> list[Contender]:
        ga, es = tiny_contenders(generator)
        return [ga, dataclasses.replace(es, params={**es.params, "sigma_end": 0.5})]

    assert changed("pixels")[1].fingerprint() != tiny_contenders("pixels")[1].fingerprint()
    logs.clear()
    run_benchmark(
        both, out, workers=1, contender_table=changed, with_overhead=False, log=logs.append
    )
    assert any("1 finished tasks are of a changed contender" in line for line in logs)
    assert any("2 tasks (1 done before)" in line for line in logs)
    rows = list(csv.DictReader((out / "results.csv").open()))
    es_ids = {r["contender_id"] for r in rows if r["optimizer"] == "annealed-es"}
    assert es_ids == {changed("pixels")[1].fingerprint("pixels")}


def test_fingerprint_follows_resolved_params_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    from xdream.optimizers.annealed_es import AnnealedES, AnnealedESParams

    default = AnnealedESParams().sigma_end
    explicit = Contender("a", "annealed-es", {"sigma_end": default})  # the default, spelt out
    implicit = Contender("a", "annealed-es")
    assert explicit.fingerprint() == implicit.fingerprint()
    before = implicit.fingerprint()
    monkeypatch.setattr(AnnealedES, "version", AnnealedES.version + 1)
    assert implicit.fingerprint() != before
    # the code space's default spectrum power is part of what annealed-es's runs depend on
    assert implicit.fingerprint("pixels") != implicit.fingerprint("fourier")
    ga = Contender("ga", "genetic")
    assert ga.fingerprint("pixels") == ga.fingerprint("fourier") == ga.fingerprint()
    from xdream.generators.pixels import PixelsGenerator

    pixels_before = implicit.fingerprint("pixels")
    real = PixelsGenerator.code_spectrum

    def untilted(self: PixelsGenerator) -> CodeSpectrum:
        return dataclasses.replace(real(self), default_power=0.5)

    monkeypatch.setattr(PixelsGenerator, "code_spectrum", untilted)
    assert implicit.fingerprint("pixels") != pixels_before


def test_stopped_run_and_summary_only_write_partial_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench"
    kwargs: dict = dict(contender_table=tiny_contenders, with_overhead=False, log=lambda m: None)
    with pytest.raises(XDreamError, match="nothing to summarise"):
        run_benchmark(TINY, out, workers=1, run=False, **kwargs)
    assert not out.exists()  # no config.json that would pin the folder to this protocol
    from xdream.bench import optimizers as bench

    real = bench.run_task
    calls: list[str] = []

    def stop_at_third(task: bench.Task) -> list[dict]:
        calls.append(task.key)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third task
        return real(task)

    monkeypatch.setattr(bench, "run_task", stop_at_third)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(TINY, out, workers=1, **kwargs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["tasks"] == {"finished": 2, "total": 4}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 2  # the two finished tasks (noise-free), two channels each
    assert {r["noise"] for r in rows} == {"none"}
    table = summary["generators"]["pixels"]["table"]
    assert set(table["none"]) == {"genetic", "annealed-es"} and table["poisson"] == {}
    assert summary["machine"]["workers"] == 1
    # --summary-only runs nothing and says the same; the machine stays the one that ran tasks
    ran_there = {**summary["machine"], "workers": 16, "device": "cuda"}
    write_json(out / "summary.json", {**summary, "machine": ran_there})
    monkeypatch.setattr(bench, "run_task", real)
    again = run_benchmark(TINY, out, workers=1, run=False, **kwargs)
    assert again["tasks"] == {"finished": 2, "total": 4} and len(calls) == 3
    assert again["generators"] == summary["generators"]
    assert again["machine"] == ran_there
    assert json.loads((out / "summary.json").read_text())["machine"] == ran_there
    # --summary-only uses no device: the GPU benchmark's own command summarises it anywhere
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_laptop = run_benchmark(TINY, out, workers=1, device="cuda", run=False, **kwargs)
    assert on_laptop["generators"] == summary["generators"]
    assert on_laptop["machine"] == ran_there
    with pytest.raises(XDreamError, match="CUDA is not available"):
        run_benchmark(TINY, out, workers=1, device="cuda", **kwargs)  # running needs it
    monkeypatch.undo()
    monkeypatch.setattr(bench, "run_task", real)
    # resuming finishes the rest; the tables are then complete, the machine this one
    done = run_benchmark(TINY, out, workers=1, **kwargs)
    assert done["complete"] is True and done["tasks"] == {"finished": 4, "total": 4}
    assert done["machine"]["workers"] == 1
    write_json(out / "summary.json", {**done, "machine": ran_there})
    nothing_left = run_benchmark(TINY, out, workers=2, **kwargs)  # nothing to run: kept
    assert nothing_left["machine"] == ran_there
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 8
    # a misspelt --optimizers label is refused and leaves the finished tables alone
    before = {f: (out / f).read_bytes() for f in ("results.csv", "summary.json", "config.json")}
    with pytest.raises(XDreamError, match="Did you mean 'annealed-es'"):
        run_benchmark(
            dataclasses.replace(TINY, optimizers=("annealed_es",)), out, run=False, **kwargs
        )
    assert {f: (out / f).read_bytes() for f in before} == before
    with pytest.raises(XDreamError, match="nothing to run or summarise"):
        write_outputs(out, [], TINY, {}, {}, 1, "cpu")
    assert {f: (out / f).read_bytes() for f in before} == before
    # a damaged previous summary.json (cut short, or not an object) is rewritten, not a
    # traceback: the machine that ran the tasks is then unknown, and one line says so
    for damaged in (before["summary.json"][:100], b"[1, 2]"):
        (out / "summary.json").write_bytes(damaged)
        lines: list[str] = []
        again = run_benchmark(TINY, out, workers=1, run=False, **{**kwargs, "log": lines.append})
        assert again["machine"] is None and again["complete"] is True
        assert json.loads((out / "summary.json").read_text())["machine"] is None
        assert sum("machine is unknown" in line for line in lines) == 1


def test_unknown_contender_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    kwargs: dict = dict(contender_table=tiny_contenders, with_overhead=False, log=lambda m: None)
    # a registered optimiser that is not a contender, with a valid label beside it
    for labels in (("genetic", "nevergrad"), ("annealed_es",)):
        with pytest.raises(
            XDreamError, match=r"unknown contender .* Contenders of pixels: genetic, annealed-es"
        ):
            run_benchmark(dataclasses.replace(TINY, optimizers=labels), out, workers=1, **kwargs)
    with pytest.raises(XDreamError, match="no contenders"):
        run_benchmark(dataclasses.replace(TINY, optimizers=()), out, workers=1, **kwargs)
    assert not out.exists()
    with pytest.raises(XDreamError, match="at least one"):
        dataclasses.replace(TINY, layers=())


def test_bad_device_or_out_is_refused_before_the_folder_is_touched(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    kwargs: dict = dict(contender_table=tiny_contenders, with_overhead=False, log=lambda m: None)
    with pytest.raises(XDreamError, match="invalid device 'nosuch': use 'cpu', 'cuda'") as err:
        run_benchmark(TINY, out, workers=1, device="nosuch", **kwargs)
    assert "mkldnn" not in str(err.value)  # torch's list of its device types left out (X9)
    if not torch.cuda.is_available():
        with pytest.raises(XDreamError, match="CUDA is not available"):
            run_benchmark(TINY, out, workers=1, device="cuda", **kwargs)
    assert not out.exists()
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(XDreamError, match="is a file"):
        run_benchmark(TINY, afile, workers=1, **kwargs)
    with pytest.raises(XDreamError, match="cannot create the output folder"):
        run_benchmark(TINY, afile / "bench", workers=1, **kwargs)
