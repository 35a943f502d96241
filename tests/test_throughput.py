"""``xdream bench throughput``: command wiring beside other benchmarks, and one tiny run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from xdream import cli, throughput


def _other_benchmark(subparsers: argparse._SubParsersAction) -> None:
    """Another module adding ``bench optimizers`` the same way (look up, then create)."""
    bench = subparsers.choices.get("bench") or subparsers.add_parser("bench")
    sub = next((a for a in bench._actions if isinstance(a, argparse._SubParsersAction)), None)
    sub = sub or bench.add_subparsers(dest="benchmark", required=True)
    sub.add_parser("optimizers").set_defaults(func="optimizers")


@pytest.mark.parametrize("throughput_first", [True, False])
def test_bench_throughput_coexists_with_other_benchmarks(throughput_first: bool) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    order = [throughput.add_parser, _other_benchmark]
    for add in order if throughput_first else order[::-1]:
        add(sub)
    assert parser.parse_args(["bench", "optimizers"]).func == "optimizers"
    args = parser.parse_args(["bench", "throughput", "--device", "cuda", "--units", "1,4"])
    assert args.func is throughput.cmd_throughput and args.units == [1, 4]


def test_the_xdream_command_has_bench_throughput() -> None:
    args = cli.build_parser().parse_args(["bench", "throughput", "--precision", "bfloat16"])
    assert args.func is throughput.cmd_throughput and args.precision == "bfloat16"
    assert not args.tf32  # IEEE float32 on CUDA unless asked, as experiments run
    assert throughput._config(args, "blocks.0").experiment.tf32 is False
    args = cli.build_parser().parse_args(["bench", "throughput", "--tf32"])
    assert throughput._config(args, "blocks.0").experiment.tf32 is True


@pytest.mark.parametrize("tf32", [False, True])
def test_every_pipeline_computes_as_asked(tf32: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw forward pass and the XDream-style pipeline run outside any experiment: they
    must compute in the same arithmetic as the loop (TF32 only with --tf32), and the caller's
    setting comes back afterwards."""

    from xdream.precision import tf32_allowed, tf32_mode

    seen: list[bool] = []

    def compare(args: argparse.Namespace, layer: str, folder: Path) -> dict[str, float]:
        seen.append(tf32_allowed())
        return {"raw_s": 1.0, "loop_s": 1.0, "xdream_style_s": 2.0, "overhead": 1.0}

    def units_at_once(args: argparse.Namespace, folder: Path) -> list[dict[str, float]]:
        seen.append(tf32_allowed())
        return []

    monkeypatch.setattr(throughput, "_compare", compare)
    monkeypatch.setattr(throughput, "_units_at_once", units_at_once)
    # the caller's own setting, the opposite of the one asked (put back for later tests when
    # the block ends: PyTorch's flags are process-wide)
    with tf32_mode(not tf32):
        argv = ["bench", "throughput", "--layers", "blocks.0", *(["--tf32"] if tf32 else [])]
        results = throughput.run(cli.build_parser().parse_args(argv), console=_Quiet())
        assert seen == [tf32, tf32] and results["tf32"] is tf32
        assert tf32_allowed() is (not tf32)


class _Quiet:
    def print(self, *args: object, **kwargs: object) -> None:
        pass


@pytest.mark.slow
def test_tiny_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    plot = tmp_path / "units.png"
    argv = ["bench", "throughput", "--layers", "blocks.0,blocks.2", "--generator", "pixels",
            "--population", "4", "--references", "2", "--repeats", "1", "--units", "1,2",
            "--units-layer", "blocks.0", "--json", str(out), "--plot", str(plot)]  # fmt: skip
    assert cli.main(argv) == 0
    figures = json.loads(out.read_text())
    assert [r["layer"] for r in figures["layers"]] == ["blocks.0", "blocks.2"]
    for row in figures["layers"]:
        loop, raw = row["loop_presentations_per_s"], row["raw_presentations_per_s"]
        assert row["overhead"] == pytest.approx(raw / loop)
        xs = row["xdream_style_presentations_per_s"]
        assert row["speedup_vs_xdream_style"] == pytest.approx(loop / xs)
    assert [r["units"] for r in figures["units_at_once"]] == [1, 2]
    assert figures["peak_rss_mb"] > 0 and figures["tf32"] is False
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_bad_benchmark_options_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "throughput", "--population", "1"]) == 2
    assert "--population must be at least 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image-size", "0"], "--image-size must be at least 1"),
        (["--threads", "-1"], "--threads must be at least 0"),
        (["--cpu-batch-size", "-1"], "--cpu-batch-size must be at least 0"),
        (["--units", "0"], "--units must be numbers of units >= 1"),
        (["--units", "4,-2"], "--units must be numbers of units >= 1"),
        (["--layers", "", "--units", ""], "nothing to measure"),
        (["--units", "", "--plot", "p.png"], "--plot draws the --units curve"),
        (["--json", "no-such-folder/x.json"], "--json no-such-folder/x.json: the folder"),
        (["--plot", "no-such-folder/p.png"], "--plot no-such-folder/p.png: the folder"),
        (["--units", "", "--json", "."], "--json . is a folder"),
        (["--plot", "."], "--plot . is a folder"),
        (["--units", "2", "--units-layer", "nosuch"], "--units-layer: network 'efficientnet"),
        (["--layers", "blocks.1,blokcs.2"], "no layer 'blokcs.2'. Did you mean 'blocks.2'?"),
        (["--units", "1,25", "--units-layer", "blocks.1"], "--units 25: layer 'blocks.1'"),
    ],
)
def test_arguments_are_checked_before_measuring(
    flags: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    measured: list[object] = []
    monkeypatch.setattr(throughput, "run", lambda *a: measured.append(a))
    assert cli.main(["bench", "throughput", *flags]) == 2
    assert message in capsys.readouterr().err and not measured


def test_the_files_written_are_named_for_what_they_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The JSON file was announced as "figures: tp.json", as if it held the figures drawn."""
    unit = {
        "units": 1,
        "seconds_per_generation": 1.0,
        "presentations_per_s": 30.0,
        "presentations_per_s_per_unit": 30.0,
    }
    results = {"layers": [], "units_at_once": [unit], "network": "n", "device": "cpu"}
    monkeypatch.setattr(throughput, "run", lambda args, console: dict(results))
    monkeypatch.setattr(throughput, "_check_layers", lambda args: None)
    monkeypatch.setattr(throughput, "plot_units", lambda results, path: path.write_bytes(b""))
    monkeypatch.chdir(tmp_path)  # short names: the console wraps long lines
    out, plot = Path("tp.json"), Path("units.png")
    argv = ["bench", "throughput", "--units", "1", "--json", str(out), "--plot", str(plot)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"every figure, as JSON: {out}" in printed and "figures:" not in printed
    assert f"units-at-once curve, as PNG: {plot}" in printed
    assert json.loads(out.read_text())["device"] == "cpu"
