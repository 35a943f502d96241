"""The ``xdream`` command: user errors, listings, and resume after ``kill -9``."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    default_signals,
    folder_held_by_another_process,
    killed_inside_an_append,
)
from tests.test_experiment import assert_same_records
from xdream.cli import main

FAST_RUN = """
[experiment]
seed = 3
generations = {generations}
n_references = 3

[generator]
name = "pixels"
size = 32
code_size = 8

[optimizer]
name = "genetic"
population_size = 12

[target]
network = "efficientnet-lite0"
layer = "stem"
channel = 3
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xdream", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[experiment]\ngenerashuns = 3\n", "Did you mean 'generations'"),
        ("[optimiser]\nname = 'genetic'\n", "Did you mean 'optimizer'"),
        ("[optimizer]\nname = 'genetic'\npopulation = 5\n", "Did you mean 'population_size'"),
        ("[optimizer]\nname = 'genetik'\n", "Did you mean 'genetic'"),
        ("[generator]\nname = 'fourier'\nsize = -3\n", "generator 'fourier'"),
        ("[target]\nlayer = 'blocks.99'\n", "xdream layers"),
        ("[target]\nchannel = 5000\n", "channel"),
        ("[target]\nweights = '/nonexistent/lite0.pth'\n", "/nonexistent/lite0.pth"),
        ("[experiment]\ngenerations = 3\npresentations = 60\n", "not both"),
        ("[experiment]\ntf32 = 'yes'\n", "'tf32' must be true or false"),
        ("[experiment\n", "cannot parse"),
        ("[sweep]\nseeds = [0, 1]\n", r"read by `xdream sweep CONFIG`, not by `xdream run`"),
    ],
)
def test_bad_config_is_one_clear_line(
    tmp_path: Path, config: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "bad.toml", config)
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("xdream: error:") and "Traceback" not in err


def test_missing_config_and_unwritable_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "adir.toml").mkdir()
    assert main(["run", str(tmp_path / "adir.toml")]) == 2
    err = capsys.readouterr().err
    assert "adir.toml' is a directory" in err and "not found" not in err
    blocker = write(tmp_path / "file", "x")
    cfg = write(tmp_path / "ok.toml", FAST_RUN.format(generations=1))
    assert main(["run", str(cfg), "--out", str(blocker / "sub")]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err


def test_resume_of_a_non_experiment_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["resume", str(tmp_path)]) == 2
    assert "not an experiment folder" in capsys.readouterr().err
    # a mistyped name: said as such, not sent to Python's restore() or asked for a record.h5
    (tmp_path / "afile").write_text("")
    for command, name, what in (
        ("resume", "nope", "does not exist"),
        ("render", "nope", "does not exist"),
        ("resume", "afile", "is a file"),
    ):
        extra = ["--ids", "best"] if command == "render" else []
        assert main([command, str(tmp_path / name), *extra]) == 2
        err = capsys.readouterr().err
        assert f"{name}' {what}: `xdream {command}` takes an experiment's output folder" in err


def test_list_and_layers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from xdream import weights

    monkeypatch.setenv("COLUMNS", "80")  # piped output: the weight paths wrap, never cut
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    assert "``" not in out and "CMA_diagonal=True" in out  # docstrings without reST markup (X8)
    path = str(weights.locate("efficientnet-lite0").path)
    assert path in "".join(line.split("│")[-2].strip() for line in out.splitlines() if "│" in line)
    for name in (
        "genetic",
        "fdgd",
        "nes",
        "fourier",
        "pixels",
        "cppn",
        "efficientnet-lite0",
        "poisson",
        "gain",
    ):
        assert name in out
    assert main(["layers", "efficientnet-lite0"]) == 0
    out = capsys.readouterr().out
    assert "blocks.10" in out and "112 x 14 x 14" in out and "classifier" in out
    assert main(["layers", "alexnett"]) == 2
    assert "unknown network" in capsys.readouterr().err


def test_layers_marks_a_module_that_runs_more_than_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`xdream layers` listed a module called twice (one `self.relu` after each convolution)
    with its first call's shape, a layer that every scorer now refuses as a target."""
    from tests.helpers import SharedReLU
    from xdream import networks
    from xdream.networks import Network, Preprocess

    for attr in ("_entries", "_summaries", "_definitions"):  # registered for this test only
        monkeypatch.setattr(networks.REGISTRY, attr, dict(getattr(networks.REGISTRY, attr)))
    plain = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=16)
    networks.REGISTRY.add("test-cli-shared", lambda weights=None: Network(SharedReLU(), plain, "x"))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["layers", "test-cli-shared"]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.count("│") > 2}  # fmt: skip
    assert "runs 2 times (not a target" in rows["relu"] and "4 x 8 x 8" in rows["relu"]
    assert "runs" not in rows["conv1"] and "runs" not in rows["conv2"]
    calls: dict[str, int] = {}
    networks.layer_table(SharedReLU(), 16, calls)
    assert calls == {"conv1": 1, "conv2": 1, "relu": 2}


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tmp_path: Path) -> None:
    """SIGKILL twice at random moments; `xdream resume` ends with the uninterrupted records."""
    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=10))
    # the uninterrupted run, for comparison, in this process (the killed ones are processes)
    assert main(["run", str(cfg), "--out", str(tmp_path / "full")]) == 0
    rng = random.Random(0)
    out = tmp_path / "killed"
    kills = 0
    for attempt in range(2):
        args = ["run", str(cfg)] if attempt == 0 else ["resume"]
        args = [*args, "--out", str(out)] if attempt == 0 else [*args, str(out)]
        log = open(tmp_path / f"stderr-{attempt}.txt", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "xdream", *args], stdout=subprocess.DEVNULL, stderr=log
        )
        # wait until at least one more generation is on disk, then kill at a random moment
        start = time.monotonic()
        target = 2 + 3 * attempt
        while time.monotonic() - start < 120:
            summary = out / "summary.json"
            if summary.exists() and json.loads(summary.read_text())["generations"] >= target:
                break
            assert proc.poll() is None, (tmp_path / f"stderr-{attempt}.txt").read_text()
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        log.close()
    assert kills >= 1
    resumed = run_cli("resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_records(tmp_path / "full", out)


SIGNALLED_RUN = """
import os, signal, sys
from xdream.experiment import Experiment
from xdream.cli import main

sig, calls = getattr(signal, sys.argv[1]), []
propose = Experiment.propose

def signalled(self):
    calls.append(1)
    if len(calls) == 4:
        os.kill(os.getpid(), sig)
    return propose(self)

Experiment.propose = signalled
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def six_generations(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config of 6 generations and its uninterrupted run's folder, made once for the tests
    that compare a stopped and resumed run with it (they only read it)."""
    folder = tmp_path_factory.mktemp("six")
    cfg = write(folder / "run.toml", FAST_RUN.format(generations=6))
    assert main(["run", str(cfg), "--out", str(folder / "full")]) == 0
    return cfg, folder / "full"


@pytest.mark.parametrize(("name", "status"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_stop_a_run_as_ctrl_c_does(
    tmp_path: Path, name: str, status: int, six_generations: tuple[Path, Path]
) -> None:
    """SIGTERM (kill, systemd, SLURM, docker stop) and SIGHUP (a closed terminal) killed the
    run: no advice, record.h5 and summary.json left behind the journal. They stop it as Ctrl-C
    does, with the conventional status, and the resumed run ends as an uninterrupted one."""
    from xdream import records

    cfg, full = six_generations
    out = tmp_path / "run"
    stopped = subprocess.run(
        [sys.executable, "-c", SIGNALLED_RUN, name, "run", str(cfg), "--out", str(out)],
        capture_output=True, text=True, timeout=300, preexec_fn=default_signals,
    )  # fmt: skip
    assert stopped.returncode == status, stopped.stderr
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"xdream: interrupted ({name}); continue with `xdream resume {out}`"
    )
    done = len(list((out / "journal").iterdir()))
    assert done >= 2 and records.read(out).best_per_generation.shape == (done,)  # up to date
    assert json.loads((out / "summary.json").read_text())["status"] == "running"
    assert main(["resume", str(out)]) == 0
    assert_same_records(full, out)


STALLED_IMPORT = """
import sys, time
from xdream.cli import main

class Stall:  # holds the first import of STALLED_MODULE up for a signal
    def find_spec(self, name, path=None, target=None):
        if name == "STALLED_MODULE":
            sys.meta_path.remove(self)
            print("importing", file=sys.stderr, flush=True)
            time.sleep(60)
        return None

sys.meta_path.insert(0, Stall())
sys.exit(main(sys.argv[1:]))
"""


def signalled_while_importing(module: str, args: list[str], signum: int) -> tuple[int, str]:
    """``xdream ARGS`` in a subprocess whose first import of ``module`` is held up, sent
    ``signum`` there; returns its exit status and standard error."""
    import select

    stalled = STALLED_IMPORT.replace("STALLED_MODULE", module)
    proc = subprocess.Popen(
        [sys.executable, "-c", stalled, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_signals,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert select.select([proc.stderr], [], [], 60)[0], f"{module} was never imported"
        assert proc.stderr.readline() == "importing\n"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize(
    ("command", "name", "status"),
    [("resume", "SIGTERM", 143), ("resume", "SIGHUP", 129), ("run", "SIGINT", 130)],
)
def test_a_signal_while_torch_is_first_imported_stops_with_the_interrupted_line(
    tmp_path: Path, command: str, name: str, status: int
) -> None:
    """A signal that broke off torch's first import (`xdream run` or `resume` starting up)
    ended with a traceback, status 1, or a segmentation fault: the line that says how to go
    on imported torch again. It stops as a signal later does; `xdream resume` of a run's folder
    says to continue it even before its modules are imported."""
    from xdream import config as config_mod

    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=1))
    run = tmp_path / "run"
    if command == "resume":  # a run's folder (the resume stops before it reads anything)
        run.mkdir()
        config_mod.dump_yaml(config_mod.load(cfg), run / "config.yaml")
        args = ["resume", str(run)]
    else:
        args = ["run", str(cfg), "--out", str(run)]
    returncode, err = signalled_while_importing("torch.autograd", args, getattr(signal, name))
    assert returncode == status, err
    how = "" if name == "SIGINT" else f" ({name})"
    advice = f"; continue with `xdream resume {run}`" if command == "resume" else ""
    assert err.strip().splitlines() == [f"xdream: interrupted{how}{advice}"]


def test_a_signal_before_the_arguments_are_read_stops_with_the_interrupted_line(
    tmp_path: Path,
) -> None:
    """The handlers went in after the command line was read (rich imported, the parser
    built): a SIGTERM in that first fraction of a second ended the process without a line
    (status -15). They now go in first for a command that runs an experiment."""
    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=1))
    args = ["run", str(cfg), "--out", str(tmp_path / "run")]
    returncode, err = signalled_while_importing("rich.console", args, signal.SIGTERM)
    assert returncode == 143, err
    assert err.strip().splitlines() == ["xdream: interrupted (SIGTERM)"]
    assert not (tmp_path / "run").exists()


def test_a_signal_ignored_before_stays_ignored_and_handlers_are_put_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nohup xdream run ...` ignores SIGHUP: the run must not stop when the terminal closes.
    A run command's handlers are put back when main returns."""
    import xdream.cli as cli

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        replaced = cli._stop_on_signals()
        assert signal.SIGHUP not in replaced and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
        assert main(["list"]) == 0  # not a run: nothing installed
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        seen = []
        monkeypatch.setattr(
            cli, "cmd_run", lambda args, console: seen.append(signal.getsignal(signal.SIGTERM))
            or 0,
        )  # fmt: skip
        cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=1))
        assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 0
        assert seen and seen[0] is not signal.SIG_DFL  # installed while the run went on
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # and put back by main
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
        signal.signal(signal.SIGTERM, term)


def test_a_hang_up_whose_terminal_is_gone_still_stops_as_ctrl_c_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real hang-up closes the terminal: the progress bar's last write on the way out failed
    with EIO, which replaced the SIGHUP's stop, and the run ended with a traceback, status 1."""
    import errno

    import xdream.cli as cli

    def hung_up(args: Any, console: Any) -> int:
        try:
            raise cli.Terminated(signal.SIGHUP)
        finally:
            raise OSError(errno.EIO, "Input/output error")  # the bar's exit, to the dead tty

    monkeypatch.setattr(cli, "cmd_run", hung_up)
    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=1))
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 128 + signal.SIGHUP
    assert "xdream: interrupted (SIGHUP)" in capsys.readouterr().err

    def broken(args: Any, console: Any) -> int:  # an EIO of its own is no hang-up
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(cli, "cmd_run", broken)
    with pytest.raises(OSError):
        main(["run", str(cfg), "--out", str(tmp_path / "run2")])


@pytest.mark.slow
def test_demo_end_to_end_on_the_real_network(tmp_path: Path) -> None:
    """A short demo on the embedded network climbs above its first generation."""
    result = run_cli("demo", "--out", str(tmp_path / "demo"), "--generations", "6")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["generations"] == 6 and summary["presentations"] == 120
    assert summary["best_score"] > summary["first_generation_best_score"]
    assert (tmp_path / "demo" / "best.png").exists()
    assert str(tmp_path / "demo") in result.stdout


def _noisy_and_clean_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], generations: int, extra: str = ""
) -> dict[str, str]:
    """``xdream run`` of FAST_RUN with ``annealed-es``, with gain noise ("noisy") and without
    ("clean"); ``extra`` is added to both configs. Returns each run's printed output."""
    run = FAST_RUN.format(generations=generations).replace(
        'name = "genetic"\npopulation_size = 12',
        f'name = "annealed-es"\npopulation_size = 12\ngenerations = {generations}',
    )
    runs = {}
    for label, noise in (("noisy", '\n[noise]\nname = "gain"\nns = 0.5\n'), ("clean", "")):
        config = write(tmp_path / f"{label}.toml", run + extra + noise)
        assert main(["run", str(config), "--out", str(tmp_path / label)]) == 0
        runs[label] = capsys.readouterr().out
    return runs


def test_run_says_once_when_annealed_es_finds_the_responses_noisy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The optimiser's verdict on noise reaches the user: one line, summary.json, the report."""
    runs = _noisy_and_clean_runs(tmp_path, capsys, generations=4)
    assert runs["noisy"].count("annealed-es: responses are noisy") == 1
    assert "responses are noisy" not in runs["clean"]
    noisy = json.loads((tmp_path / "noisy" / "summary.json").read_text())["optimizer_status"]
    clean = json.loads((tmp_path / "clean" / "summary.json").read_text())["optimizer_status"]
    assert noisy["responses"] == "noisy" and noisy["noise_evidence"]["generation"] == 0
    assert clean["responses"] == "repeatable" and "note" not in clean
    assert clean["step_size"] == pytest.approx(0.3)  # the schedule's end after 4 generations
    assert noisy["step_size"] == pytest.approx(1.0)
    assert main(["report", str(tmp_path / "noisy")]) == 0
    page = (tmp_path / "noisy" / "report.html").read_text()
    assert "optimiser status" in page and "responses are noisy" in page


def test_many_unit_run_says_which_units_responses_are_noisy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A [[targets]] run prints each unit's optimiser note once, named by its unit: the first
    five, then how many more."""
    extra = "\n[[targets]]\nchannels = [3, 4, 5, 6, 7, 8, 9]\n"
    runs = _noisy_and_clean_runs(tmp_path, capsys, generations=3, extra=extra)
    lines = {
        label: [line for line in out.splitlines() if "responses are noisy" in line]
        for label, out in runs.items()
    }
    assert [line.split(":")[0] for line in lines["noisy"]] == [f"stem_c00{c}" for c in range(3, 8)]
    assert "... and 2 more units with a note" in runs["noisy"]
    assert lines["clean"] == [] and "more units with a note" not in runs["clean"]


def test_a_folder_in_use_by_another_process_is_refused_until_that_process_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`xdream resume` of a run that is still going, or a second run into its folder, stops
    with an error naming the process that holds it, before touching a file; once that process
    is gone (killed here, so it frees nothing itself) the folder resumes."""
    from xdream.errors import FolderInUseError
    from xdream.experiment import Experiment

    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=2))
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run)]) == 0
    with folder_held_by_another_process(run) as pid:
        capsys.readouterr()
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
        assert main(["resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"{str(run)!r} is in use by another xdream process (pid {pid} " in err
        assert main(["run", str(cfg), "--out", str(run)]) == 2
        assert "in use by another xdream process" in capsys.readouterr().err
        with pytest.raises(FolderInUseError, match=f"\\(pid {pid} "):
            Experiment.resume(run)
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before
    assert main(["resume", str(run)]) == 0


def test_a_run_without_a_scored_image_says_so_instead_of_naming_a_best_image(
    tmp_path: Path,
) -> None:
    import io

    from rich.console import Console

    from xdream.cli import _report

    summary = {
        "best_score": None, "first_generation_best_score": float("nan"),
        "best_reference_score": 1.0, "generations": 2, "presentations": 8, "seconds": 1.0,
        "best_image": None,
    }  # fmt: skip
    text = io.StringIO()
    _report(summary, tmp_path, Console(file=text, width=300))
    assert "best.png" not in text.getvalue()
    assert "warning: no image got a score" in text.getvalue()
    text = io.StringIO()
    _report({**summary, "best_image": "best.png"}, tmp_path, Console(file=text, width=300))
    assert f"best image: {tmp_path / 'best.png'}" in text.getvalue()
    assert "warning" not in text.getvalue()
    assert ") after 2 generations, 8 presentations, 1.0 s" in text.getvalue()
    text = io.StringIO()  # one is singular, none plural (mutation audit M)
    _report({**summary, "generations": 0, "presentations": 1}, tmp_path, Console(file=text))
    assert ") after 0 generations, 1 presentation, 1.0 s" in " ".join(text.getvalue().split())


def killed_run(folder: Path, generations: int = 6, done: int = 4) -> Path:
    """A config-defined run of FAST_RUN stopped as a kill stops it after ``done`` generations
    (journal, checkpoint, record.h5 and config.yaml on disk, nothing finished)."""
    from xdream import config as config_mod
    from xdream.experiment import Experiment

    config = config_mod.from_dict(
        config_mod.tomllib.loads(FAST_RUN.format(generations=generations))
    )
    exp = Experiment.from_config(config, folder)
    exp._start()
    for _ in range(done):
        exp.step()
    exp.flush()
    exp.release_folder()
    return folder


def test_the_progress_bar_fits_an_80_column_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an 80-column terminal the bar showed 'generati… best so far ... best reference so
    far 12.…': the generation count, the bar and the reference's score were cut off."""
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws the bar, as on a terminal
    monkeypatch.setenv("COLUMNS", "80")
    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=3))
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", capsys.readouterr().out)
    bar = [line for line in re.split(r"[\r\n]", screen) if line.startswith("generation ")][-1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert len(bar.rstrip()) <= 80 and "…" not in bar, bar
    assert bar.startswith("generation 3/3 ━"), bar
    assert f"best so far {summary['best_score']:>7.4g}" in bar, bar
    assert f"(ref {summary['best_reference_score']:>7.4g})" in bar, bar


@pytest.mark.parametrize(
    ("damage", "named", "message"),
    [
        ("checkpoint.pkl=garbage\n", "checkpoint.pkl", "put back a copy from a backup if"),
        ("checkpoint.pkl=", "checkpoint.pkl", "cannot continue without it"),
        ("checkpoint.pkl=(lp0\nI1\na.", "checkpoint.pkl", "holds a list, not a checkpoint"),
        ("journal/gen000003.npz=junk\n", "gen000003.npz", "not an .npz archive"),
        ("journal/gen000002.npz:2000", "gen000002.npz", "is damaged (BadZipFile"),
        ("config.yaml=", "config.yaml", "it is empty"),
        ("config.yaml=garbage: [\n", "config.yaml", "cannot parse"),
        ("config.yaml=just text\n", "config.yaml", "table of sections"),
        ("config.yaml=experimnt:\n  seed: 0\n", "config.yaml", "unknown config section"),
    ],
)
def test_a_damaged_file_in_a_run_folder_is_one_clear_line_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str, named: str, message: str
) -> None:
    """Garbage in the checkpoint gave int()'s ValueError, a cut journal file zipfile's
    BadZipFile, junk there numpy's advice to allow pickles, an empty config.yaml a checkpoint
    "for optimizer 'genetic' with dim 192, not ... 2391": now one line naming the file and
    what to do, and record.h5 is left as it was."""
    run = killed_run(tmp_path / "run")
    if damage.startswith("journal/"):  # read only by a rebuild: the record's last append
        killed_inside_an_append(run)  # was cut short (a marked record keeps the journal unread)
    if "=" in damage:
        name, text = damage.split("=", 1)
        (run / name).write_text(text)
    else:
        name, size = damage.split(":")
        with open(run / name, "r+b") as fh:
            fh.truncate(int(size))
    record = (run / "record.h5").read_bytes()
    capsys.readouterr()
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdream: error:") and err.count("\n") == 1, err
    assert named in err and message in err
    assert not re.search(r"[^.]\.\.[^.]", err), err  # "targets.. Put back": one full stop
    assert "pickle" not in err.lower()  # never an invitation to load pickles
    assert "backup" in err  # what can be done
    assert "xdream.records.read" in err
    assert (run / "record.h5").read_bytes() == record
    assert not list(run.glob("record.h5.unreadable-*"))
    assert not list(run.glob(".record.h5.rebuild*"))


def test_render_of_a_run_with_an_empty_config_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "no config.yaml to rebuild it" with the file there, empty."""
    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=1))
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run)]) == 0
    (run / "config.yaml").write_text("")
    capsys.readouterr()
    assert main(["render", str(run), "--ids", "best"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml" in err and "it is empty" in err and "no config.yaml" not in err
    assert "record.h5 keeps a copy" in err and "xdream.config.dump_yaml(xdream.records" in err


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        ("channel: 3", "channel: 7", "target.channel: 3 -> 7"),
        ("  size: 32", "  size: 64", "generator.size: 32 -> 64"),
        ("seed: 3", "seed: 4", "experiment.seed: 3 -> 4"),
        ("population_size: 12", "population_size: 10", "optimizer.population_size: 12 -> 10"),
        ("n_references: 3", "n_references: 2", "experiment.n_references: 3 -> 2"),
    ],
)
def test_resume_refuses_a_config_that_changed_what_defines_the_experiment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], before: str, after: str, change: str
) -> None:
    """Editing channel 3 to 7 in a killed run's config.yaml resumed (exit 0) into a record
    whose first generations scored channel 3 and whose summary said channel 7."""
    from tests.test_experiment import folder_contents

    run = killed_run(tmp_path / "run")
    saved = (run / "config.yaml").read_text()
    assert saved.count(before) == 1
    (run / "config.yaml").write_text(saved.replace(before, after))
    contents = folder_contents(run)
    capsys.readouterr()
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert change in err and "Put the old value back in config.yaml" in err
    assert "another folder" in err and "experiment.generations" in err  # what may change
    assert folder_contents(run) == contents
    (run / "config.yaml").write_text(saved)  # the old value back: it resumes
    assert main(["resume", str(run)]) == 0


def test_resume_takes_a_longer_budget_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The budget may change between sessions: a 6-generation run killed after 4 and resumed
    with 8 ends with the records of an 8-generation run."""
    full = write(tmp_path / "full.toml", FAST_RUN.format(generations=8))
    assert main(["run", str(full), "--out", str(tmp_path / "full")]) == 0
    run = killed_run(tmp_path / "run", generations=6, done=4)
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("generations: 6", "generations: 8"))
    capsys.readouterr()
    assert main(["resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "config.yaml changed since the last session" in out
    assert "experiment.generations: 6 -> 8" in out
    assert_same_records(tmp_path / "full", run)


def test_a_finished_run_extended_on_resume_records_its_new_budget(tmp_path: Path) -> None:
    """A finished run resumed with more generations goes on, and record.h5's config says so
    (the finished record is cut back, not rebuilt: it kept the old budget)."""
    from xdream import records

    full = write(tmp_path / "full.toml", FAST_RUN.format(generations=3))
    assert main(["run", str(full), "--out", str(tmp_path / "full")]) == 0
    short = write(tmp_path / "short.toml", FAST_RUN.format(generations=2))
    run = tmp_path / "run"
    assert main(["run", str(short), "--out", str(run)]) == 0
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("generations: 2", "generations: 3"))
    assert main(["resume", str(run)]) == 0
    assert records.read(run).config["experiment"]["generations"] == 3
    assert_same_records(tmp_path / "full", run)


@pytest.mark.parametrize("finished", [False, True])
def test_resume_refuses_a_budget_below_what_has_run_and_finishes_at_one_equal_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], finished: bool
) -> None:
    """A run that had made 4 generations (finished, or killed on its way to 6), resumed with
    `generations: 3`, said the change was "taking effect now" and left config.yaml and
    record.h5's config saying 3 generations over records of 4. A budget below what has run is
    refused, in generations or in presentations (4 of 12 codes: 48); one equal to it finishes
    the run where it is."""
    from tests.test_experiment import folder_contents
    from xdream import records

    run = tmp_path / "run"
    if finished:
        config = write(tmp_path / "four.toml", FAST_RUN.format(generations=4))
        assert main(["run", str(config), "--out", str(run)]) == 0
    else:
        killed_run(run, generations=6, done=4)
    saved = (run / "config.yaml").read_text()
    budget = f"  generations: {4 if finished else 6}\n  presentations: null\n"
    assert saved.count(budget) == 1

    def resume_with(generations: int | None, presentations: int | None) -> int:
        keys = (
            f"  generations: {generations or 'null'}\n  presentations: {presentations or 'null'}\n"
        )
        (run / "config.yaml").write_text(saved.replace(budget, keys))
        capsys.readouterr()
        return main(["resume", str(run)])

    contents = folder_contents(run)
    for generations, presentations in ((3, None), (None, 47)):
        assert resume_with(generations, presentations) == 2
        err = capsys.readouterr().err
        asked = f"generations: {generations}" if generations else f"presentations: {presentations}"
        assert f"with {asked} in config.yaml: it has already run 4 generations (48 " in err
        assert "generations: 4 or presentations: 48" in err and "taking effect" not in err
        assert {k: v for k, v in folder_contents(run).items() if k != "config.yaml"} == {
            k: v for k, v in contents.items() if k != "config.yaml"
        }
    # as much as has run: the run ends where it is, and its records say that budget
    equal = {"presentations": 48} if finished else {"generations": 4}
    assert resume_with(equal.get("generations"), equal.get("presentations")) == 0
    record = records.read(run)
    assert len(record.best_per_generation) == 4 and record.summary["status"] == "finished"
    ((key, value),) = equal.items()
    assert record.config["experiment"][key] == value
    assert f"  {key}: {value}\n" in (run / "config.yaml").read_text()


def test_a_budget_of_the_other_kind_added_on_resume_says_to_set_the_old_one_to_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`presentations: 60` added to a finished 3-generation run's config.yaml, with
    `generations: 3` left in, was refused with advice to put back the configuration the run
    started with from record.h5; the budget may change, and setting one key to null does it."""
    from tests.test_experiment import folder_contents
    from xdream import records

    config = write(tmp_path / "three.toml", FAST_RUN.format(generations=3))
    run = tmp_path / "run"
    assert main(["run", str(config), "--out", str(run)]) == 0
    saved = (run / "config.yaml").read_text()
    assert saved.count("  generations: 3\n  presentations: null\n") == 1
    both = saved.replace("presentations: null", "presentations: 60")
    (run / "config.yaml").write_text(both)
    contents = folder_contents(run)
    capsys.readouterr()
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "give either 'generations' or 'presentations', not both" in err
    assert "keep one and set the other to null in its [experiment] (generations: null to " in err
    assert "run to presentations: 60, or presentations: null to run to generations: 3)" in err
    assert "Put back" not in err and "record.h5 keeps a copy" not in err
    assert folder_contents(run) == contents
    (run / "config.yaml").write_text(both.replace("generations: 3", "generations: null"))
    assert main(["resume", str(run)]) == 0  # as the message says: 5 generations of 12
    assert records.read(run).summary["presentations"] == 60


def test_resume_from_another_directory_refuses_another_weight_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relative `weights` is taken from the current directory: `xdream resume` from another
    one that held another w.pt built the unit on that file, silently (records of two
    networks). The checkpoint records the file read; a checkpoint without it is not checked."""
    import pickle

    import torch

    from tests.test_experiment import folder_contents
    from xdream import config as config_mod
    from xdream import networks
    from xdream.experiment import Experiment

    state = networks.make("efficientnet-lite0").module.state_dict()
    for name, scale in (("a", 1.0), ("b", 1.5)):
        (tmp_path / name).mkdir()
        scaled = {k: v * scale if v.is_floating_point() else v for k, v in state.items()}
        torch.save(scaled, tmp_path / name / "w.pt")
    text = FAST_RUN.format(generations=3) + 'weights = "w.pt"\n'
    config = config_mod.from_dict(config_mod.tomllib.loads(text))
    run, old = tmp_path / "run", tmp_path / "old"
    monkeypatch.chdir(tmp_path / "a")
    for out in (run, old):  # killed after 2 generations
        exp = Experiment.from_config(config, out)
        exp._start()
        exp.step()
        exp.step()
        exp.release_folder()
    assert (run / "config.yaml").read_text().count("weights: w.pt") == 1  # as the user wrote it
    checkpoint = pickle.loads((old / "checkpoint.pkl").read_bytes())
    assert checkpoint.pop("files")["target.weights"]["path"] == str(tmp_path / "a" / "w.pt")
    (old / "checkpoint.pkl").write_bytes(pickle.dumps(checkpoint))  # an earlier version's

    monkeypatch.chdir(tmp_path / "b")
    contents = folder_contents(run)
    capsys.readouterr()
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xdream: error:") and err.count("\n") == 1, err
    assert str(tmp_path / "a" / "w.pt") in err and str(tmp_path / "b" / "w.pt") in err
    assert "[target] weights 'w.pt'" in err and "resume from the directory" in err
    assert folder_contents(run) == contents
    (tmp_path / "c").mkdir()  # a directory without the file: say where the run found it
    monkeypatch.chdir(tmp_path / "c")
    assert main(["resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"[target] weights was {tmp_path / 'a' / 'w.pt'}" in err and err.count("\n") == 1
    monkeypatch.chdir(tmp_path / "b")
    assert main(["resume", str(old)]) == 0  # nothing recorded, nothing compared
    monkeypatch.chdir(tmp_path / "a")
    first = (tmp_path / "a" / "w.pt").read_bytes()
    shutil.copyfile(tmp_path / "b" / "w.pt", tmp_path / "a" / "w.pt")  # replaced in place
    assert main(["resume", str(run)]) == 2
    assert "which changed since the run read it" in capsys.readouterr().err
    (tmp_path / "a" / "w.pt").write_bytes(first)
    assert main(["resume", str(run)]) == 0


def test_a_many_unit_resume_without_its_weight_file_says_where_the_run_found_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resumed from a directory without the relative weights file, the error said only that
    'w.pt' does not exist, although the units' checkpoints record which file the run read."""
    import torch

    from tests.test_multi import stopped_after_one_generation
    from xdream import config as config_mod
    from xdream import networks

    (tmp_path / "a").mkdir()
    torch.save(networks.make("efficientnet-lite0").module.state_dict(), tmp_path / "a" / "w.pt")
    text = FAST_RUN.format(generations=3) + 'weights = "w.pt"\n[[targets]]\nchannels = [1, 2]\n'
    monkeypatch.chdir(tmp_path / "a")
    config = config_mod.from_dict(config_mod.tomllib.loads(text))
    stopped_after_one_generation(config, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"[target] weights was {tmp_path / 'a' / 'w.pt'}" in err and err.count("\n") == 1


def test_a_run_whose_weight_file_moved_resumes_once_config_yaml_names_the_same_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run moved to another machine, or whose weight file moved, could not be resumed at
    all: the file was missing at the recorded path, and writing the new path into the run's
    config.yaml was refused as a changed `target.weights`. The same file (size and
    fingerprint the checkpoint records) under a new path is taken, and said; another file
    there is still refused, and so is a new path for a many-unit run's weights that holds
    another file."""
    from tests.helpers import moved_weight_files
    from tests.test_experiment import folder_contents
    from tests.test_multi import stopped_after_one_generation
    from xdream import config as config_mod
    from xdream import records
    from xdream.experiment import Experiment

    moved_weight_files(tmp_path)
    plain = FAST_RUN.format(generations=4) + f'weights = "{tmp_path / "a" / "w.pt"}"\n'
    many = plain + "[[targets]]\nchannels = [1, 2]\n"
    run, whole, units = tmp_path / "run", tmp_path / "whole", tmp_path / "units"
    config = config_mod.from_dict(config_mod.tomllib.loads(plain))
    assert main(["run", str(write(tmp_path / "c.toml", plain)), "--out", str(whole)]) == 0
    exp = Experiment.from_config(config, run)  # killed after 2 generations
    exp._start()
    exp.step()
    exp.step()
    exp.flush()
    exp.release_folder()
    stopped_after_one_generation(config_mod.from_dict(config_mod.tomllib.loads(many)), units)
    (tmp_path / "a" / "w.pt").rename(tmp_path / "b" / "w.pt")  # the file now lives elsewhere

    for folder in (run, units):
        capsys.readouterr()
        assert main(["resume", str(folder)]) == 2
        err = capsys.readouterr().err
        assert "where the same file is now elsewhere, write its path into the run's" in err
        assert "(stem.conv.weight). The run read these files:" in err, err  # two sentences
        assert err.count("\n") == 1, err
    # another file under the new path is refused, naming the one the run read
    for folder in (run, units):
        saved = (folder / "config.yaml").read_text()
        (folder / "config.yaml").write_text(saved.replace("/a/w.pt", "/other.pt"))
        contents = folder_contents(folder)
        capsys.readouterr()
        assert main(["resume", str(folder)]) == 2
        err = capsys.readouterr().err
        assert str(tmp_path / "other.pt") in err and str(tmp_path / "a" / "w.pt") in err, err
        # ... and says the file there is another one than the run read, not only a change
        assert f"(another file: '{tmp_path / 'other.pt'}' (" in err, err
        assert f"not the one the run read, '{tmp_path / 'a' / 'w.pt'}' (" in err, err
        assert folder_contents(folder) == contents
        (folder / "config.yaml").write_text(saved.replace("/a/w.pt", "/b/w.pt"))
        capsys.readouterr()
        assert main(["resume", str(folder)]) == 0
        out = capsys.readouterr().out
        assert "config.yaml changed since the last session, taking effect now:" in out
        assert "(the same file: same size and fingerprint)" in out
    # the moved run went on as if nothing had happened
    assert records.read(run).best_per_generation.tolist() == (
        records.read(whole).best_per_generation.tolist()
    )
    assert f"weights: {tmp_path / 'b' / 'w.pt'}" in (run / "config.yaml").read_text()
    for unit in (units / "units").iterdir():
        assert records.read(unit).summary["status"] == "finished"


def test_a_moved_weight_file_hides_no_other_change_and_an_unmoved_one_is_none(
    tmp_path: Path,
) -> None:
    """The same weight file at a new path in config.yaml is taken as no change, but only
    its path: another key of [target] changed with it is still refused, and a resume with
    the file where it was says no change at all (mutation audit N)."""
    import torch

    from xdream import config as config_mod
    from xdream import networks
    from xdream.errors import ConfigChangedError
    from xdream.experiment import Experiment

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    torch.save(networks.make("efficientnet-lite0").module.state_dict(), tmp_path / "a" / "w.pt")
    text = FAST_RUN.format(generations=3) + f'weights = "{tmp_path / "a" / "w.pt"}"\n'
    run = tmp_path / "run"
    exp = Experiment.from_config(config_mod.from_dict(config_mod.tomllib.loads(text)), run)
    exp._start()
    exp.step()
    exp.flush()
    exp.release_folder()
    again = Experiment.resume(run)  # nothing moved, nothing changed
    assert again.config_changes == []
    again.release_folder()
    (tmp_path / "a" / "w.pt").rename(tmp_path / "b" / "w.pt")
    saved = (run / "config.yaml").read_text()
    assert "channel: 3\n" in saved
    moved = saved.replace("/a/w.pt", "/b/w.pt")
    (run / "config.yaml").write_text(moved.replace("channel: 3\n", "channel: 4\n"))
    with pytest.raises(ConfigChangedError, match=r"target\.channel: 3 -> 4") as refused:
        Experiment.resume(run)
    assert refused.value.saved["target"]["weights"] == str(tmp_path / "b" / "w.pt")
    (run / "config.yaml").write_text(moved)
    again = Experiment.resume(run)
    assert again.config_changes == [
        f"target.weights: {str(tmp_path / 'a' / 'w.pt')!r} -> {str(tmp_path / 'b' / 'w.pt')!r} "
        "(the same file: same size and fingerprint)"
    ]
    again.release_folder()


def test_a_checkpoint_without_its_config_resumes_as_before(tmp_path: Path) -> None:
    """Checkpoints written before the config was stored in them carry nothing to compare."""
    import pickle

    run = killed_run(tmp_path / "run")
    state = pickle.loads((run / "checkpoint.pkl").read_bytes())
    assert state.pop("config")["target"]["channel"] == 3
    (run / "checkpoint.pkl").write_bytes(pickle.dumps(state))
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("record_interval: 2.0", "record_interval: 0"))
    assert main(["resume", str(run)]) == 0


def test_a_run_into_a_folder_with_the_users_images_refuses_and_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "best.png").write_text("mine")
    (out / "summary.json").write_text("mine")
    cfg = write(tmp_path / "run.toml", FAST_RUN.format(generations=1))
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "best.png" in err and "summary.json" in err and "another output folder" in err
    assert (out / "best.png").read_text() == "mine"
    assert (out / "summary.json").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [".xdream.lock", "best.png", "summary.json"]


def test_every_file_that_runs_reports_and_renders_write_is_protected(tmp_path: Path) -> None:
    """RunFolder.OUTPUTS, which a new run refuses to write over, names every file and folder
    that a run (one unit or many), `xdream report` and `xdream render` write."""
    from xdream.records import LOCK_FILE, RunFolder

    one = tmp_path / "one"
    cfg = write(tmp_path / "one.toml", FAST_RUN.format(generations=1))
    many = write(tmp_path / "many.toml", FAST_RUN.format(generations=1) + "\n[[targets]]\n")
    many.write_text(many.read_text() + "channels = [1, 2]\n")
    assert main(["run", str(cfg), "--out", str(one)]) == 0
    assert main(["run", str(many), "--out", str(tmp_path / "many")]) == 0
    assert main(["report", str(one)]) == 0
    assert main(["report", str(tmp_path / "many")]) == 0
    assert main(["render", str(one), "--ids", "best"]) == 0
    written = {p.name for run in (one, tmp_path / "many") for p in run.iterdir()}
    assert written - {LOCK_FILE} <= set(RunFolder.OUTPUTS), written
    assert {"config.yaml", "record.h5", "units", "units.csv", "renders"} <= written


def test_ctrl_c_names_the_folder_to_resume_and_runs_started_together_get_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run without --out says where it writes, and Ctrl-C says what to resume (it said
    `xdream resume DIR`); two commands started in the same second get two folders; a
    command that fails before writing leaves no empty folder behind."""
    import xdream.cli as cli

    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "fast.toml", FAST_RUN.format(generations=3))

    def interrupted(experiment: Any, console: Any) -> Any:
        experiment.step()
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_experiment", interrupted)
    assert main(["run", str(config)]) == 130
    out, err = capsys.readouterr()
    (folder,) = (tmp_path / "xdream-runs").iterdir()
    assert f"output folder: {Path('xdream-runs') / folder.name}" in out
    assert err.strip() == (
        f"xdream: interrupted; continue with `xdream resume {Path('xdream-runs') / folder.name}`"
    )
    assert main(["resume", str(folder)]) == 130
    assert f"continue with `xdream resume {folder}`" in capsys.readouterr().err

    first, second = cli._default_out("same"), cli._default_out("same")
    assert first != second and first.is_dir() and second.is_dir()
    # the same second gives the same name, then "-2"; or the clock turned a second in between
    assert second.name == f"{first.name}-2" or first.name[:15] != second.name[:15]
    cli._made.clear()

    before = set((tmp_path / "xdream-runs").iterdir())
    bad = write(tmp_path / "bad.toml", FAST_RUN.format(generations=3) + "weights = '/no/w.pth'\n")
    assert main(["run", str(bad)]) == 2
    assert set((tmp_path / "xdream-runs").iterdir()) == before
    # nor the xdream-runs/ folder it made for it (the first run in a folder)
    shutil.rmtree(tmp_path / "xdream-runs")
    assert main(["run", str(bad)]) == 2
    assert not (tmp_path / "xdream-runs").exists()


def test_a_run_stopped_before_it_wrote_its_config_says_to_start_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk at config.yaml said `xdream resume DIR`, which then refused the folder (no
    config.yaml); Ctrl-C while a many-unit run loads its network said the same, and resume
    answered that nothing was recorded. Both say how to start the run again; that works."""
    from xdream import config as config_mod
    from xdream import multi

    cfg = write(tmp_path / "fast.toml", FAST_RUN.format(generations=1))
    out = tmp_path / "full"
    dump_yaml = config_mod.dump_yaml

    def full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config_mod, "dump_yaml", full)
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "nothing was recorded" in err and "xdream resume" not in err
    assert f"start it again with `xdream run CONFIG --out {out}`" in err
    monkeypatch.setattr(config_mod, "dump_yaml", dump_yaml)
    assert main(["resume", str(out)]) == 2
    assert "holds no experiment yet" in capsys.readouterr().err
    assert main(["run", str(cfg), "--out", str(out)]) == 0

    many = write(tmp_path / "many.toml", FAST_RUN.format(generations=1) + "[[targets]]\n"
                 "channels = [0, 1]\n")  # fmt: skip

    def loading(*args: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(multi, "shared_scorer", loading)
    out = tmp_path / "many"
    capsys.readouterr()
    assert main(["run", str(many), "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        "xdream: interrupted before anything was recorded; start it again with "
        f"`xdream run {many} --out {out}`"
    )
    monkeypatch.undo()
    assert main(["run", str(many), "--out", str(out)]) == 0


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_single_unit_run_stopped_while_loading_its_network_says_to_start_it_again(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """The README promises the command that starts a run again for a Ctrl-C while it loads
    its network; a single-unit `xdream run` and `xdream demo` said a bare `xdream:
    interrupted` there (only a many-unit run said how to start again)."""
    from xdream.experiment import Experiment

    config = write(tmp_path / "fast.toml", FAST_RUN.format(generations=1))
    out = tmp_path / "run"
    start = (
        f"xdream run {config} --out {out}"
        if command == "run"
        else f"xdream demo --generations 1 --out {out}"
    )
    args = [str(config)] if command == "run" else ["--generations", "1"]

    def loading(*args: Any, **kw: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "from_config", loading)
    assert main([command, *args, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"xdream: interrupted before anything was recorded; start it again with `{start}`"
    )
    assert not out.exists()
    if command == "run":  # the command it names works
        monkeypatch.undo()
        assert main(start.split()[1:]) == 0
        assert json.loads((out / "summary.json").read_text())["status"] == "finished"
        said = " ".join(capsys.readouterr().out.split())
        assert ") after 1 generation, " in said  # not "1 generations"


@pytest.mark.parametrize("units", [False, True])
def test_a_run_killed_while_loading_its_network_says_how_to_start_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], units: bool
) -> None:
    """Killed after taking its folder but before writing its config (a many-unit run also
    after making units/): resume says nothing was recorded and how to start; that works."""
    out = tmp_path / "run"
    out.mkdir()
    (out / ".xdream.lock").write_text("pid 1 host h\n")
    if units:
        (out / "units").mkdir()
    assert main(["resume", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds no experiment yet" in err
    assert f"Start it again with `xdream run CONFIG --out {out}`" in err
    config = write(tmp_path / "fast.toml", FAST_RUN.format(generations=1))
    assert main(["run", str(config), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_a_schedule_set_from_the_budget_is_kept_when_resumed_from_python_with_the_config(
    tmp_path: Path,
) -> None:
    """Resuming from Python with the config the run was started from, its budget raised,
    derived the schedule anew from the new budget and was refused (optimizer.generations:
    3 -> 6); a run started by an earlier xdream (its config.yaml holding that xdream's default
    of 75) was refused too. Both keep the schedule they started with, as `xdream resume` does;
    so does a many-unit run."""
    import pickle

    import yaml

    from xdream import config
    from xdream.experiment import Experiment
    from xdream.multi import MultiExperiment

    run = FAST_RUN.format(generations=3).replace('name = "genetic"', 'name = "annealed-es"')
    cfg = config.load(write(tmp_path / "a.toml", run))
    Experiment.from_config(cfg, tmp_path / "a").run()
    longer = config.load(
        write(tmp_path / "b.toml", run.replace("generations = 3", "generations = 6"))
    )
    assert longer.optimizer["generations"] == 6  # what the budget alone gives
    resumed = Experiment.from_config(longer, tmp_path / "a")
    resumed.restore()
    assert resumed.optimizer.params.generations == 3  # type: ignore[attr-defined]
    assert resumed.run()["generations"] == 6
    # an earlier xdream's run: its schedule was the optimiser's default
    Experiment.from_config(cfg, tmp_path / "old").run()
    folder = tmp_path / "old"
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    saved["optimizer"]["generations"] = 75
    (folder / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    state = pickle.loads((folder / "checkpoint.pkl").read_bytes())
    state["config"]["optimizer"]["generations"] = 75
    (folder / "checkpoint.pkl").write_bytes(pickle.dumps(state))
    old = Experiment.from_config(longer, folder)
    old.restore()
    assert old.optimizer.params.generations == 75  # type: ignore[attr-defined]
    old.release_folder()
    # config.yaml gone: record.h5's copy of the config says how it started
    Experiment.from_config(cfg, tmp_path / "lost").run()
    (tmp_path / "lost" / "config.yaml").unlink()
    lost = Experiment.from_config(longer, tmp_path / "lost")
    lost.restore()
    assert lost.optimizer.params.generations == 3  # type: ignore[attr-defined]
    assert lost.run()["generations"] == 6
    assert config.load(tmp_path / "lost" / "config.yaml").optimizer["generations"] == 3
    # many units: each unit keeps its own
    many = run + "[[targets]]\nchannels = [0, 1]\n"
    MultiExperiment.from_config(config.load(write(tmp_path / "m.toml", many)), tmp_path / "m").run()
    more = config.load(
        write(tmp_path / "m2.toml", many.replace("generations = 3", "generations = 6"))
    )
    assert main(["resume", str(tmp_path / "a")]) == 0  # config.yaml says 6 generations now
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["generations"] == 6
    assert config.load(tmp_path / "a" / "config.yaml").experiment.generations == 6
    multi = MultiExperiment.from_config(more, tmp_path / "m", resume=True)
    assert [e.optimizer.params.generations for e in multi.experiments] == [3, 3]  # type: ignore[attr-defined]
    assert [s["generations"] for s in multi.run()] == [6, 6]


def test_a_schedule_left_out_of_the_config_anneals_over_the_budget_and_keeps_it_on_resume(
    tmp_path: Path,
) -> None:
    """`xdream run` with annealed-es and no [optimizer] generations: the step size ends at
    sigma_end after the run's 3 generations (it had barely started down a schedule of 75);
    config.yaml holds the length, so a budget raised on resume is taken and keeps it."""
    import yaml

    run = FAST_RUN.format(generations=3).replace('name = "genetic"', 'name = "annealed-es"')
    budgets = {"g": run, "p": run.replace("generations = 3", "presentations = 36")}  # 3 x 12
    for label, text in budgets.items():
        cfg = write(tmp_path / f"{label}.toml", text)
        assert main(["run", str(cfg), "--out", str(tmp_path / label)]) == 0
        saved = yaml.safe_load((tmp_path / label / "config.yaml").read_text())
        assert saved["optimizer"]["generations"] == 3
        summary = json.loads((tmp_path / label / "summary.json").read_text())
        assert summary["optimizer_status"]["step_size"] == pytest.approx(0.3)
    path = tmp_path / "p" / "config.yaml"
    path.write_text(path.read_text().replace("presentations: 36", "presentations: 72"))
    assert main(["resume", str(tmp_path / "p")]) == 0
    saved = yaml.safe_load(path.read_text())
    assert saved["experiment"]["presentations"] == 72 and saved["optimizer"]["generations"] == 3
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["generations"] == 6 and summary["status"] == "finished"


def test_console_lines_keep_square_brackets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rich read `[...]` in a message as markup and dropped it: a folder `runs[2]` was
    printed as `runs`, and `[experiment]` vanished from sweep and tune messages."""
    cfg = write(tmp_path / "c.toml", FAST_RUN.format(generations=2))
    out = tmp_path / "runs[2]" / "[experiment]"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.replace("\n", "")  # lines wrap at the console's width
    assert f"output folder: {out}" in printed
    assert str(out / "summary.json") in printed and "runs[2]//" not in printed


def test_a_run_restarted_from_its_first_generation_says_what_changed_in_its_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped before its first checkpoint starts again from the first generation with
    config.yaml as it is now; edits since its start (a rig lab fixing [rig] during a pause in
    the first generation) were taken without a word. `xdream resume` now lists them."""
    from xdream import config as config_mod
    from xdream.experiment import Experiment

    run = tmp_path / "run"
    config = config_mod.from_dict(config_mod.tomllib.loads(FAST_RUN.format(generations=2)))
    first = Experiment.from_config(config, run)
    first._start()  # record.h5 and config.yaml written; stopped before a generation finished
    first.release_folder()
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("population_size: 12", "population_size: 8"))
    assert main(["resume", str(run)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "config.yaml changed since the last session, taking effect now: "
        "optimizer.population_size: 12 -> 8"
    ) in out


def test_help_names_json_configs_and_shows_no_rest_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`xdream run --help` named .toml and .yaml but not .json, which run reads; `xdream bench
    throughput --help` opened with reST's double backquotes."""
    for argv in (["run", "--help"], ["bench", "throughput", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    out = capsys.readouterr().out
    assert "config file (.toml, .yaml or .json)" in out
    assert "xdream bench throughput: how fast the loop runs" in out
    assert "``" not in out


def test_a_folder_report_labels_an_optimizer_without_a_preset_so() -> None:
    """A genetic run next to one with a preset was labelled "genetic (preset n/a)"."""
    from xdream.report.tables import optimizer_labels

    labels = optimizer_labels(
        {"a": {"name": "genetic", "preset": "deepsim-fc6"}, "b": {"name": "genetic"}}
    )
    assert labels == {"a": "genetic (preset deepsim-fc6)", "b": "genetic (no preset)"}


def test_messages_into_a_file_or_pipe_are_not_broken_at_80_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not on a terminal, rich broke each line at 80 columns, mid-phrase ("37 above their best
    / reference", "record: / /tmp/..."): a log grepped for a line missed it."""
    config = write(tmp_path / "fast.toml", FAST_RUN.format(generations=2))
    out = tmp_path / ("a-long-folder-name-for-the-run-" * 3)
    assert main(["run", str(config), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("generation 1: best so far ") for line in lines)
    (results,) = [line for line in lines if line.startswith("results: ")]
    assert f"record: {out / 'record.h5'}, summary: {out / 'summary.json'})" in results
