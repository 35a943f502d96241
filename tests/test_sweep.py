"""``xdream sweep``: the task plan, and a real two-node Ray cluster on 127.0.0.1 losing a worker."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from xdream import config, records, sweep
from xdream.errors import ConfigError, FolderInUseError, MissingFileError, XDreamError
from xdream.sweep import parse_section, plan

SRC = str(Path(__file__).resolve().parents[1] / "src")

SWEEP_TOML = """
[experiment]
generations = {generations}
n_references = 2
[generator]
name = "pixels"
size = 32
code_size = 8
[optimizer]
name = "genetic"
population_size = 6
[target]
layer = "blocks.0"
device = "cpu"
[[targets]]
channels = [1, 2]
[sweep]
optimizers = ["genetic", {{ name = "nes", n_samples = 6 }}]
seeds = [0, 1]
"""


def test_plan_is_units_x_optimizers_x_seeds(tmp_path: Path) -> None:
    from xdream import sweep

    path = tmp_path / "s.toml"
    path.write_text(SWEEP_TOML.format(generations=2))
    cfg, section = sweep.load(path)
    tasks = plan(cfg, section)
    assert len(tasks) == 2 * 2 * 2
    assert len({t.folder for t in tasks}) == 8
    nes = next(t for t in tasks if t.optimizer == "nes" and t.seed == 1)
    single = config.from_dict(nes.config)
    assert single.optimizer["n_samples"] == 6 and single.experiment.seed == 1
    assert single.targets == () and single.target.channel == nes.unit.channel


def test_each_unit_of_a_sweep_draws_its_own_noise(tmp_path: Path) -> None:
    """The units of [[targets]] drew the same noise for a seed (the seed's stream); each task's
    noise seed is now its unit's for its seed. A task started by an earlier xdream (no
    noise_seed in its config.yaml) goes on with the stream of its seed, unrefused."""
    import yaml

    from xdream.multi import unit_config

    path = tmp_path / "s.toml"
    path.write_text(SWEEP_TOML.format(generations=2) + '[noise]\nname = "gain"\n')
    cfg, section = sweep.load(path)
    tasks = plan(cfg, section)
    seeds = {
        (t.unit.channel, t.optimizer, t.seed): t.config["experiment"]["noise_seed"] for t in tasks
    }
    assert len({seeds[c, "genetic", s] for c in (1, 2) for s in (0, 1)}) == 4
    assert seeds[1, "genetic", 1] == seeds[1, "nes", 1]  # optimisers compared on the same noise
    task = next(t for t in tasks if t.unit.channel == 2 and t.seed == 1)
    seeded = config.from_dict(
        {**cfg.to_dict(), "experiment": {**cfg.to_dict()["experiment"], "seed": 1}}
    )
    assert config.from_dict(task.config) == config.from_dict(
        {**unit_config(seeded, task.unit).to_dict(), "optimizer": task.config["optimizer"]}
    )

    old = {**task.config, "experiment": dict(task.config["experiment"])}
    del old["experiment"]["noise_seed"]  # as an earlier xdream wrote it
    (tmp_path / "out" / task.folder).mkdir(parents=True)
    (tmp_path / "out" / task.folder / "config.yaml").write_text(yaml.safe_dump(old))
    again = plan(cfg, section, tmp_path / "out")
    assert [t.config["experiment"]["noise_seed"] is None for t in again] == [
        t is task for t in tasks
    ]
    assert sweep.compare_configs(cfg, again, tmp_path / "out") == {}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"seed": [1]}, "Did you mean 'seeds'"),
        ({"seeds": []}, "non-empty list"),
        ({"optimizers": ["genetic", "genetic"]}, "repeat a name"),
        ({"optimizers": ["nope"]}, "nope"),
        ({"cpus_per_task": 0}, "cpus_per_task"),
        ({"seeds": [0, -1]}, r"\[sweep\] seeds: each must be an integer >= 0, got -1"),
        ({"seeds": [True]}, r"got true \(a boolean\)"),
        ({"seeds": [0, 0]}, r"seeds repeat a seed \(\[0, 0\]\)"),
        ({"optimizers": []}, "optimizers must be a non-empty list"),
        ({"optimizers": "genetic"}, "optimizers must be a non-empty list"),
        ({"max_retries": True}, "max_retries must be an integer"),
        ({"cpus_per_task": True}, "cpus_per_task must be a number > 0, got True"),
        ({"cpus_per_task": float("nan")}, "cpus_per_task must be a number > 0, got nan"),
        ({"cpus_per_task": float("inf")}, "cpus_per_task must be a number > 0, got inf"),
    ],
)
def test_bad_sweep_sections_are_rejected(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_section(section, config.from_dict({}))


def test_a_failed_task_is_described_by_the_error_inside_it() -> None:
    """ray.get raises a RayTaskError whose text starts with the worker's process title; the
    sweep table and the console name the error the task raised."""
    exceptions = pytest.importorskip("ray.exceptions")
    from xdream.sweep import describe_failure

    inside = RuntimeError("Unable to synchronously check link existence (addr overflow)")
    wrapped = exceptions.RayTaskError(
        "run_task", "Traceback (most recent call last):\n  ...", inside, pid=7, ip="127.0.0.1"
    ).as_instanceof_cause()
    assert isinstance(wrapped, RuntimeError)
    assert describe_failure(wrapped) == (
        "RuntimeError: Unable to synchronously check link existence (addr overflow)"
    )
    assert describe_failure(exceptions.WorkerCrashedError()).startswith("WorkerCrashedError: ")


def test_sweep_csv_gives_the_position_read(tmp_path: Path) -> None:
    """x and y were left empty where the config leaves them out; units.csv and the unit's
    summary give the position read (the centre), and docs/records.md the same columns."""
    path = tmp_path / "s.toml"
    path.write_text(SWEEP_TOML.format(generations=1).replace("channels = [1, 2]", "channel = 1"))
    cfg, section = sweep.load(path)
    task = plan(cfg, section)[0]
    assert task.unit.x is None and task.unit.y is None
    result = sweep.run_task(task.config, str(tmp_path / task.folder), threads=1)
    assert "error" not in result
    row = sweep.sweep_row(task, result)
    assert (row["x"], row["y"]) == (56, 56)  # the centre of blocks.0's 112 x 112
    assert (row["x"], row["y"]) == (result["target"]["x"], result["target"]["y"])
    assert row["unit"] == "blocks.0_c001" and row["best_score"] == result["best_score"]
    failed = sweep.sweep_row(task, {"error": "XDreamError: it failed", "attempts": 1})
    assert failed["x"] is None and failed["error"] == "XDreamError: it failed"


def test_a_task_with_a_damaged_summary_runs_again(tmp_path: Path) -> None:
    """A finished task's summary is what the sweep reads to skip it; one cut short by a power
    loss makes the task run again (its resume writes the summary again) instead of stopping
    the sweep with a JSON error."""
    task = tmp_path / "task"
    task.mkdir()
    assert sweep._finished(task) is None  # not started
    (task / "summary.json").write_text(json.dumps({"status": "running"}))
    assert sweep._finished(task) is None
    (task / "summary.json").write_text(json.dumps({"status": "finished", "best_score": 2.5}))
    assert sweep._finished(task) == {"status": "finished", "best_score": 2.5, "attempts": 0}
    (task / "summary.json").write_text('{"status": "fini')
    assert sweep._finished(task) is None


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from xdream import sweep

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(XDreamError, match=r"xdream\[cluster\]"):
        sweep._require_ray()


def _require_ray() -> None:
    if os.environ.get("CI") != "true":
        pytest.importorskip("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# `ray start` rewrites 127.0.0.1 to the machine's routable address (and then listens on every
# interface); these launchers keep every Ray server of the test cluster on 127.0.0.1.
HEAD = "import ray.scripts.scripts as s; s.main()"
WORKER = (
    "import ray._private.services as sv, ray.scripts.scripts as s; "
    "sv.resolve_ip_for_localhost = lambda host: host; s.main()"
)


def _ours(marker: str) -> list[int]:
    """Processes whose environment carries this test cluster's marker, and their descendants."""
    marked, parent = set(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if f"XDREAM_TEST_RAY={marker}".encode() in env.split(b"\0"):
            marked.add(pid)
    ours = set(marked)
    for pid in parent:
        p = parent[pid]
        while p > 1 and p not in ours:
            p = parent.get(p, 0)
        if p in ours:
            ours.add(pid)
    return sorted(ours)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A head and a worker node (separate `ray start` processes), torn down by process id."""
    _require_ray()
    marker = secrets.token_hex(8)
    port = _free_port()
    env = {
        **os.environ,
        "XDREAM_TEST_RAY": marker,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
    }
    head_env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # bind to 127.0.0.1
    temp = tmp_path_factory.mktemp("ray")
    common = ["--num-cpus=1", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    try:
        subprocess.run(
            [sys.executable, "-c", HEAD, "start", "--head", f"--port={port}",
             "--include-dashboard=false", f"--temp-dir={temp}", *common],
            env=head_env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        subprocess.run(
            [sys.executable, "-c", WORKER, "start", f"--address=127.0.0.1:{port}", *common],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        yield f"127.0.0.1:{port}", head_env
    finally:
        for pid in _ours(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_sweep_on_a_cluster_resumes_a_killed_worker(
    ray_cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    address, env = ray_cluster
    generations = 12
    cfg_path = tmp_path / "sweep.toml"
    cfg_path.write_text(
        SWEEP_TOML.format(generations=generations)
        .replace(
            '"genetic", { name = "nes", n_samples = 6 }',
            '{ name = "genetic", population_size = 6 }',
        )
        .replace("seeds = [0, 1]", "seeds = [0]")
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xdream", "sweep", str(cfg_path), "--out", str(out),
         "--address", address],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    victim = out / "blocks.0_c001" / "genetic" / "seed0"
    try:
        # Ray's start-up takes most of this; a loaded machine has needed more than 120 s
        deadline = time.monotonic() + 300
        # wait until the experiment has checkpointed a generation, then kill its worker
        while not (victim / "checkpoint.pkl").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the sweep never checkpointed a generation"
            time.sleep(0.05)
        pid = json.loads((victim / "worker.json").read_text().splitlines()[0])["pid"]
        os.kill(pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output

    attempts = [json.loads(line) for line in (victim / "worker.json").read_text().splitlines()]
    assert len(attempts) == 2 and attempts[0]["pid"] == pid
    assert 1 <= attempts[1]["start_generation"] < generations  # resumed, not restarted
    rec = records.read(victim)
    np.testing.assert_array_equal(rec.generation, np.repeat(np.arange(generations), 6))

    import csv

    with open(out / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["unit"] for r in rows) == ["blocks.0_c001", "blocks.0_c002"]
    assert {r["generations"] for r in rows} == {str(generations)}
    assert {r["attempts"] for r in rows} == {"1", "2"}
    assert all(not r["error"] for r in rows)


def test_cpus_per_task_that_no_node_has_is_refused() -> None:
    """Ray waits forever, silently, for a node with the CPUs a task asks for."""
    from types import SimpleNamespace

    nodes = [
        {"Alive": True, "Resources": {"CPU": 2.0}},
        {"Alive": False, "Resources": {"CPU": 64.0}},  # a node that is gone
    ]
    ray = SimpleNamespace(nodes=lambda: nodes)
    sweep._check_capacity(ray, 2.0)
    with pytest.raises(XDreamError, match="largest node of the Ray cluster has 2 CPUs"):
        sweep._check_capacity(ray, 4.0)


def test_a_changed_config_is_applied_to_started_tasks_or_refused(tmp_path: Path) -> None:
    """Running a sweep again after an edit of its config: a changed budget takes effect (a
    finished experiment is extended, as `xdream resume` does), a changed key that defines the
    experiments is refused naming it; both kept the old results before."""
    import torch

    out = tmp_path / "out"
    path = tmp_path / "s.toml"

    def tasks(toml: str) -> list[sweep.Task]:
        path.write_text(toml)
        return plan(*sweep.load(path))

    def compare(toml: str) -> dict[int, list[str]]:
        path.write_text(toml)
        return sweep.compare_configs(sweep.load(path)[0], tasks(toml), out)

    def run(task: sweep.Task) -> dict[str, object]:
        return sweep.run_task(task.config, str(out / task.folder), torch.get_num_threads())

    first = tasks(SWEEP_TOML.format(generations=1))
    assert run(first[0])["generations"] == 1
    assert compare(SWEEP_TOML.format(generations=1)) == {}  # the same config: nothing to do
    longer = SWEEP_TOML.format(generations=2)
    assert compare(longer) == {0: ["experiment.generations: 1 -> 2"]}
    summary = run(tasks(longer)[0])
    assert summary["generations"] == 2 and not summary.get("error")
    assert config.load(out / first[0].folder / "config.yaml").experiment.generations == 2
    assert compare(longer) == {}
    other = longer.replace("n_references = 2", "n_references = 3")
    with pytest.raises(XDreamError, match=r"genetic/seed0: experiment.n_references: 2 -> 3"):
        compare(other)
    # a noise_seed added: named as the sweep's config gives it, not the unit's derived number
    seeded = longer.replace("n_references = 2", "n_references = 2\nnoise_seed = 5")
    with pytest.raises(XDreamError, match=r"genetic/seed0: experiment.noise_seed: None -> 5\)"):
        compare(seeded)


def test_a_sweep_whose_weight_file_moved_goes_on_once_its_config_names_the_same_file(
    tmp_path: Path,
) -> None:
    """A sweep moved to another machine, or whose weight file moved, was refused as a
    changed `target.weights` when run again with the file's new path; the same file (size and
    fingerprint its tasks' checkpoints record) is taken, another file is still refused. Run
    again as it was, the file missing, the sweep said only that it is missing: it now names the
    file its experiments read and says that its new path goes into the sweep's config file."""
    from tests.helpers import moved_weight_files

    pytest.importorskip("ray")  # run_sweep below
    moved_weight_files(tmp_path)
    out, path = tmp_path / "out", tmp_path / "s.toml"

    def toml(weights: Path, generations: int) -> str:
        text = SWEEP_TOML.format(generations=generations)
        return text.replace('device = "cpu"', f'device = "cpu"\nweights = "{weights}"')

    def load(text: str) -> tuple[object, list[sweep.Task]]:
        path.write_text(text)
        cfg, section = sweep.load(path)
        return cfg, plan(cfg, section)

    cfg, tasks = load(toml(tmp_path / "a" / "w.pt", 1))
    assert sweep.run_task(tasks[0].config, str(out / tasks[0].folder), 1)["generations"] == 1
    (tmp_path / "a" / "w.pt").rename(tmp_path / "b" / "w.pt")
    path.write_text(toml(tmp_path / "a" / "w.pt", 1))  # run again as it was: the file is gone
    with pytest.raises(MissingFileError) as e:
        sweep.run_sweep(*sweep.load(path), out)
    assert f"weight file '{tmp_path / 'a' / 'w.pt'}' does not exist;" in str(e.value)
    said = (
        f"The sweep's experiments read these files: [target] weights was {tmp_path}/a/w.pt (a "
        "relative path is taken from the current directory: run the sweep from the directory "
        "it was started in, or put the file back there; where the same file is now elsewhere, "
        "write its path into the sweep's config file: the sweep takes it when its size and "
        "fingerprint are the ones its experiments recorded)."
    )
    assert said in str(e.value), e.value
    # said from any task's checkpoint: the first tasks may not have run (mutation audit W)
    first, last = (out / task.folder / "checkpoint.pkl" for task in (tasks[0], tasks[-1]))
    last.parent.mkdir(parents=True)
    first.rename(last)
    with pytest.raises(MissingFileError) as e:
        sweep.run_sweep(*sweep.load(path), out)
    assert said in str(e.value), e.value
    last.rename(first)
    last.parent.rmdir()
    # on a cluster (--address) the sweep checks no file: the task's own error says the same
    cfg, tasks = load(toml(tmp_path / "a" / "w.pt", 1))
    failed = sweep.run_task(tasks[0].config, str(out / tasks[0].folder), 1)
    assert failed["error"].startswith(f"weight file '{tmp_path / 'a' / 'w.pt'}' does not exist;")
    assert said in failed["error"], failed
    cfg, tasks = load(toml(tmp_path / "other.pt", 2))
    with pytest.raises(XDreamError, match=r"genetic/seed0: target.weights: '.*/a/w.pt' -> ") as e:
        sweep.compare_configs(cfg, tasks, out)
    assert f"(another file: '{tmp_path / 'other.pt'}' (" in str(e.value)
    assert f"not the one the experiment read, '{tmp_path / 'a' / 'w.pt'}' (" in str(e.value)
    cfg, tasks = load(toml(tmp_path / "b" / "w.pt", 2))
    checkpoint = out / tasks[0].folder / "checkpoint.pkl"
    kept = checkpoint.read_bytes()
    checkpoint.write_bytes(b"damaged")  # what the file was cannot be read: a change, as before
    with pytest.raises(XDreamError, match=r"genetic/seed0: target.weights: '.*/a/w.pt' -> '.*/b/"):
        sweep.compare_configs(cfg, tasks, out)
    checkpoint.write_bytes(kept)
    moved: list[str] = []  # what the sweep says it took (it said nothing)
    assert sweep.compare_configs(cfg, tasks, out, moved) == {0: ["experiment.generations: 1 -> 2"]}
    assert moved == [f"target.weights: '{tmp_path / 'a' / 'w.pt'}' -> '{tmp_path / 'b' / 'w.pt'}'"]
    summary = sweep.run_task(tasks[0].config, str(out / tasks[0].folder), 1)
    assert summary["generations"] == 2 and not summary.get("error"), summary


def test_a_unit_given_y_alone_has_its_own_folder_and_earlier_folders_go_on(
    tmp_path: Path,
) -> None:
    """A unit given y alone was named as the centre's unit (the two tasks shared one folder),
    and one given x alone ``..._x3_yNone``. Each now has its own name; a sweep started by an
    earlier xdream goes on in the folders it made."""
    path = tmp_path / "s.toml"
    toml = SWEEP_TOML.format(generations=1).replace(
        "channels = [1, 2]",
        "channels = [1]\n[[targets]]\nchannel = 1\ny = 3\n[[targets]]\nchannel = 2\nx = 3",
    )
    path.write_text(toml)
    cfg, section = sweep.load(path)
    folders = [t.folder for t in plan(cfg, section) if t.optimizer == "genetic" and t.seed == 0]
    assert folders == [
        "blocks.0_c001/genetic/seed0",
        "blocks.0_c001_y3/genetic/seed0",
        "blocks.0_c002_x3/genetic/seed0",
    ]
    out = tmp_path / "out"
    (out / "blocks.0_c002_x3_yNone/genetic/seed0").mkdir(parents=True)  # as it was named
    (out / "blocks.0_c001/genetic/seed0").mkdir(parents=True)  # the centre's, not y = 3's
    folders = [
        t.folder for t in plan(cfg, section, out) if t.optimizer == "genetic" and t.seed == 0
    ]
    assert folders == [
        "blocks.0_c001/genetic/seed0",
        "blocks.0_c001_y3/genetic/seed0",
        "blocks.0_c002_x3_yNone/genetic/seed0",
    ]


@pytest.fixture
def worker_block() -> Iterator[None]:
    """Closes the networks.reuse() block that sweep.worker_task leaves open (as a Ray worker
    process does until it exits), so that it does not reach other tests."""
    yield
    if sweep._worker_networks is not None:
        sweep._worker_networks.close()
        sweep._worker_networks = None


def _same_run(a: Path, b: Path) -> None:
    """The experiments in ``a`` and ``b`` recorded the same codes, scores, images and summary
    (their timings aside)."""
    first, second = records.read(a), records.read(b)
    assert {**first.summary, "seconds": None} == {**second.summary, "seconds": None}
    assert first.scores.size and first.codes.size
    first = dataclasses.replace(first, seconds=second.seconds, summary=second.summary)
    assert first == second


def test_a_workers_tasks_build_the_network_once_with_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker_block: None
) -> None:
    """Each task built its target network, though Ray runs a worker's tasks one after another
    in one process: worker_task builds it once for them all (the weights checked on each use),
    and each task records what run_task records alone, seed for seed."""
    import torch

    from xdream import networks

    made: list[object] = []
    make = networks.make

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return make(*args, **kwargs)

    monkeypatch.setattr(networks, "make", counting)
    path = tmp_path / "s.toml"
    path.write_text(SWEEP_TOML.format(generations=2))
    every = plan(*sweep.load(path))
    tasks = [every[0], every[3], every[4]]  # another optimiser and seed, then another unit
    assert len({t.unit for t in tasks}) == 2 and len({(t.optimizer, t.seed) for t in tasks}) == 2
    threads = torch.get_num_threads()
    for task in tasks:
        alone = sweep.run_task(task.config, str(tmp_path / "alone" / task.folder), threads)
        assert not alone.get("error")
    assert len(made) == 3
    made.clear()
    for task in tasks:
        summary = sweep.worker_task(task.config, str(tmp_path / "worker" / task.folder), threads)
        assert not summary.get("error")
    assert len(made) == 1 and networks.cache.kept() == 1  # kept for the worker's next task
    for task in tasks:
        _same_run(tmp_path / "alone" / task.folder, tmp_path / "worker" / task.folder)


def test_a_schedule_set_from_the_budget_is_kept_when_the_sweep_goes_on(tmp_path: Path) -> None:
    """annealed-es without `generations` in [sweep] optimizers anneals over the sweep's
    budget; the sweep run again with a raised budget extends its experiments with the schedule
    they started with (a changed schedule would be refused as a change of the experiment), and
    one whose config.yaml holds another length (an earlier xdream's default) goes on with it."""
    import torch

    out = tmp_path / "out"
    path = tmp_path / "s.toml"
    toml = SWEEP_TOML.replace('"genetic", {{ name = "nes", n_samples = 6 }}', '"annealed-es"')
    toml = toml.replace("seeds = [0, 1]", "seeds = [0]")

    def tasks(generations: int) -> list[sweep.Task]:
        path.write_text(toml.format(generations=generations))
        return plan(*sweep.load(path), out)

    first = tasks(2)
    assert [config.from_dict(t.config).optimizer["generations"] for t in first] == [2, 2]
    for task in first:
        sweep.run_task(task.config, str(out / task.folder), torch.get_num_threads())
    # the second as an earlier xdream started it: its default schedule, whatever the budget
    earlier = out / first[1].folder
    text = (earlier / "config.yaml").read_text()
    (earlier / "config.yaml").write_text(
        text.replace("generations: 2\n  learn", "generations: 75\n  learn")
    )
    state = pickle.loads((earlier / "checkpoint.pkl").read_bytes())
    state["config"]["optimizer"]["generations"] = 75
    (earlier / "checkpoint.pkl").write_bytes(pickle.dumps(state))
    longer = tasks(4)
    assert [config.from_dict(t.config).optimizer["generations"] for t in longer] == [2, 75]
    path.write_text(toml.format(generations=4))
    assert sweep.compare_configs(sweep.load(path)[0], longer, out) == {
        0: ["experiment.generations: 2 -> 4"],
        1: ["experiment.generations: 2 -> 4"],
    }
    for task in longer:
        summary = sweep.run_task(task.config, str(out / task.folder), torch.get_num_threads())
        assert summary["generations"] == 4 and not summary.get("error")
    fresh = plan(*sweep.load(path))  # a new sweep of this config
    assert [config.from_dict(t.config).optimizer["generations"] for t in fresh] == [4, 4]


class FakeRay:
    """What ``run_sweep`` asks of Ray, in this process: each task's result comes from
    ``outcome(index, folder)`` when it is fetched (a dict, or an exception to raise)."""

    def __init__(self, outcome: object = None) -> None:
        self.outcome = outcome or (lambda i, folder: {"best_score": 1.0, "generations": 1})
        self.inits: list[object] = []
        self.submitted: list[str] = []
        self.functions: list[object] = []  # what ray.remote was given

    def is_initialized(self) -> bool:
        return False

    def init(self, address: object = None, **kwargs: object) -> None:
        self.inits.append(address)
        # as ray.init does: its own handler of SIGTERM
        signal.signal(signal.SIGTERM, lambda signum, frame: None)

    def shutdown(self) -> None:
        pass

    def nodes(self) -> list[dict[str, object]]:
        return [{"Alive": True, "Resources": {"CPU": 4.0}}]

    def get_runtime_context(self) -> object:
        from types import SimpleNamespace

        return SimpleNamespace(gcs_address="fake")

    def remote(self, fn: object) -> FakeRemote:
        self.functions.append(fn)
        return FakeRemote(self)

    def wait(self, refs: list[int], num_returns: int) -> tuple[list[int], list[int]]:
        return refs[:1], refs[1:]

    def get(self, ref: int) -> dict[str, object]:
        result = self.outcome(ref, self.submitted[ref])  # type: ignore[operator]
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]


class FakeRemote:
    """``ray.remote(worker_task)``: submitting a task records its folder."""

    def __init__(self, ray: FakeRay) -> None:
        self.ray = ray

    def options(self, **kwargs: object) -> FakeRemote:
        return self

    def remote(self, config: object, folder: str, threads: int) -> int:
        self.ray.submitted.append(folder)
        return len(self.ray.submitted) - 1


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    ray = FakeRay()
    monkeypatch.setattr(sweep, "_require_ray", lambda: ray)
    return ray


def _small_sweep(tmp_path: Path, toml: str | None = None) -> tuple[object, sweep.SweepSection]:
    path = tmp_path / "s.toml"
    path.write_text(toml or SWEEP_TOML.format(generations=2))
    return sweep.load(path)


def _started_task(out: Path, task: sweep.Task, generations: int, presentations: int) -> None:
    """``task``'s folder as a run of ``generations`` left it: its config.yaml and summary."""
    folder = out / task.folder
    folder.mkdir(parents=True)
    data = {**task.config, "experiment": {**task.config["experiment"]}}
    data["experiment"]["generations"] = generations
    config.dump_yaml(config.from_dict(data), folder / "config.yaml")
    summary = {"status": "finished", "generations": generations, "presentations": presentations}
    (folder / "summary.json").write_text(json.dumps({**summary, "best_score": 3.5}))


def test_a_lowered_budget_is_refused_before_any_task_naming_what_each_has_run(
    tmp_path: Path,
) -> None:
    """A finished sweep run again with fewer generations: announced as taking effect, every
    task then failed in Ray (its resume refuses to shorten a run, in terms of config.yaml and
    `xdream run`) and sweep.csv lost its results. It is refused before Ray starts, naming each
    task with what it has run and the budget to give, in the sweep config's terms."""
    out = tmp_path / "out"
    cfg, section = _small_sweep(tmp_path, SWEEP_TOML.format(generations=3))
    tasks = plan(cfg, section, out)
    _started_task(out, tasks[0], 3, 60)
    _started_task(out, tasks[2], 3, 18)  # nes, 6 codes a generation
    assert sweep.compare_configs(cfg, plan(cfg, section, out), out) == {}
    lower, _ = _small_sweep(tmp_path, SWEEP_TOML.format(generations=2))
    with pytest.raises(XDreamError) as caught:
        sweep.compare_configs(lower, plan(lower, section, out), out)
    message = str(caught.value)
    assert "with [experiment] generations = 2: 2 of its experiments have already run more" in (
        message
    )
    assert f"{tasks[0].folder}: 3 generations (60 presentations)" in message
    assert f"{tasks[2].folder}: 3 generations (18 presentations)" in message
    assert "[experiment] generations = 3" in message
    assert "config.yaml" not in message and "xdream run" not in message
    more, _ = _small_sweep(tmp_path, SWEEP_TOML.format(generations=4))
    assert set(sweep.compare_configs(more, plan(more, section, out), out)) == {0, 2}


def test_a_failed_task_keeps_the_numbers_its_folder_recorded(tmp_path: Path) -> None:
    """A task that failed (a refusal inside it, its worker lost) emptied its sweep.csv row of
    what its experiment had recorded; the row keeps the folder's numbers, the error beside."""
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "summary.json").write_text(
        json.dumps({"status": "finished", "best_score": 2.5, "generations": 7})
    )
    (folder / "worker.json").write_text("{}\n{}\n")
    kept = sweep._with_record(folder, {"error": "XDreamError: it failed"})
    assert kept["best_score"] == 2.5 and kept["generations"] == 7
    assert kept["error"] == "XDreamError: it failed" and kept["attempts"] == 2
    assert sweep._with_record(folder, {"best_score": 3.0}) == {"best_score": 3.0}
    assert sweep._with_record(tmp_path / "none", {"error": "e"}) == {"error": "e", "attempts": 0}


def test_a_second_sweep_into_one_out_is_refused_at_once_naming_the_first(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    """Two sweeps into one --out both ran, each reported the experiments the other ran as
    failed (in sweep.csv too), and both exited 1. The second is refused before Ray starts,
    naming the first's process; a killed sweep leaves no lock behind."""
    from tests.helpers import folder_held_by_another_process

    out = tmp_path / "out"
    out.mkdir()
    with folder_held_by_another_process(out, take="sweep.hold_sweep(path)") as pid:
        cfg, section = _small_sweep(tmp_path)
        with pytest.raises(FolderInUseError, match=rf"another xdream sweep \(pid {pid} on "):
            sweep.run_sweep(cfg, section, out)
        assert fake_ray.inits == [] and not (out / "sweep.csv").exists()
    sweep.hold_sweep(out).release()  # the killed holder's lock went with it


def test_sweep_csv_is_written_as_each_task_ends(tmp_path: Path, fake_ray: FakeRay) -> None:
    """sweep.csv was written once all tasks had ended: a sweep stopped (or killed) after some
    finished left no table. It lists every task once Ray has started, and is rewritten after
    each task ends: what a stopped sweep finished, and as pending what it had still to do."""
    import csv

    def outcome(i: int, folder: str) -> object:
        if i == 2:
            return KeyboardInterrupt()  # Ctrl-C while the third task runs
        return {"best_score": 1.0 + i, "generations": 2, "attempts": 1}

    fake_ray.outcome = outcome
    out = tmp_path / "out"
    cfg, section = _small_sweep(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(cfg, section, out)
    with open(out / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    folders = [Path(f).relative_to(out).as_posix() for f in fake_ray.submitted]
    assert len(folders) == len(sweep.plan(cfg, section, out)) > 3
    assert fake_ray.functions == [sweep.worker_task]  # a worker's tasks share its network
    assert [(r["folder"], r["best_score"], r["state"]) for r in rows] == [
        (folders[0], "1.0", "finished"),
        (folders[1], "2.0", "finished"),
        *[(f, "", "pending") for f in folders[2:]],
    ]
    fake_ray.submitted.clear()  # run again: every task ends, the first with an error
    fake_ray.outcome = lambda i, folder: (
        {"error": "XDreamError: it failed"} if i == 0 else {"best_score": 5.0, "generations": 2}
    )
    sweep.run_sweep(cfg, section, out)
    with open(out / "sweep.csv") as fh:
        states = [(r["folder"], r["state"], r["error"]) for r in csv.DictReader(fh)]
    done = [Path(f).relative_to(out).as_posix() for f in fake_ray.submitted]
    assert sorted(states) == sorted(
        [(done[0], "failed", "XDreamError: it failed"), *[(f, "finished", "") for f in done[1:]]]
    )


def test_a_sweep_runs_every_task_on_ray_through_worker_task(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    """Ray is given sweep.worker_task (which keeps a worker's network for its next tasks), not
    run_task, and every planned task is submitted through it once. This was asserted only in
    test_sweep_csv_is_written_as_each_task_ends, which no `-k worker` or `-k ray` reached."""
    out = tmp_path / "out"
    cfg, section = _small_sweep(tmp_path)
    rows = sweep.run_sweep(cfg, section, out)
    assert fake_ray.functions == [sweep.worker_task]
    planned = [str(out / task.folder) for task in sweep.plan(cfg, section, out)]
    assert sorted(fake_ray.submitted) == sorted(planned) and len(rows) == len(planned) > 3


def test_a_sweep_csv_that_cannot_be_rewritten_lets_the_tasks_end(
    tmp_path: Path, fake_ray: FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OUT made unwritable after the sweep started (a changed mount, an immutable flag): the
    first rewrite of sweep.csv ended the sweep in a traceback, stopping every running task.
    The tasks go on, with one warning; at the end one line says the table could not be
    written and how to get it (running the sweep again, which runs nothing again)."""
    from xdream import multi

    writes: list[int] = []
    write_table = multi.write_table

    def unwritable_after_the_first(path: Path, rows: Any, columns: Any) -> None:
        writes.append(len(rows))
        if len(writes) > 1:
            raise PermissionError(1, "Operation not permitted")
        write_table(path, rows, columns)

    monkeypatch.setattr(multi, "write_table", unwritable_after_the_first)
    said: list[str] = []
    console = SimpleNamespace(print=lambda text, **kw: said.append(str(text)))
    out = tmp_path / "out"
    cfg, section = _small_sweep(tmp_path)
    with pytest.raises(XDreamError, match=r"experiments have ended, but sweep\.csv cannot be") as e:
        sweep.run_sweep(cfg, section, out, console=console)
    assert "Operation not permitted" in str(e.value) and "run the sweep again" in str(e.value)
    n = len(sweep.plan(cfg, section, out))
    assert len(fake_ray.submitted) == n and len(writes) == n + 2  # every task ended
    warned = [line for line in said if line.startswith("warning: sweep.csv cannot be written")]
    assert len(warned) == 1, said


def test_a_sweep_of_one_experiment_counts_it_in_the_singular(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    """It said "1 experiments (0 already finished) on Ray"."""
    said: list[str] = []
    console = SimpleNamespace(print=lambda text, **kw: said.append(str(text)))
    one = (
        SWEEP_TOML.format(generations=1)
        .replace("channels = [1, 2]", "channels = [1]")
        .replace('optimizers = ["genetic", {{ name = "nes", n_samples = 6 }}]', "")
        .replace('optimizers = ["genetic", { name = "nes", n_samples = 6 }]', "")
        .replace("seeds = [0, 1]", "seeds = [0]")
    )
    cfg, section = _small_sweep(tmp_path, one)
    assert len(sweep.plan(cfg, section, tmp_path / "out")) == 1
    sweep.run_sweep(cfg, section, tmp_path / "out", console=console)
    assert any(line.startswith("1 experiment (0 already finished) on Ray") for line in said), said


def test_sweep_stops_on_sigterm_as_on_ctrl_c_after_ray_starts(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    """ray.init put its own SIGTERM handler in place of xdream's, which aborted the sweep with
    a stack dump; xdream's is put back once Ray has started, and what it raises comes out of
    the sweep (Ray's calls turn it into a bare KeyboardInterrupt)."""
    from xdream.cli import Terminated

    def outcome(i: int, folder: str) -> object:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            return KeyboardInterrupt()  # as Ray's check_status raises it
        return {}

    def ours(signum: int, frame: object) -> None:
        raise Terminated(signum)

    fake_ray.outcome = outcome
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with pytest.raises(Terminated):
            sweep.run_sweep(*_small_sweep(tmp_path), tmp_path / "out")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert fake_ray.inits == [None]


def test_a_sigterm_while_ray_starts_stops_the_sweep_as_ctrl_c_does(
    tmp_path: Path, fake_ray: FakeRay, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM in the second or two ray.init takes met Ray's own handler, which exits with
    status 15 and no line; it stops the sweep as a SIGTERM later does (Terminated: the
    "continue with" line, status 143), and the fresh --out is removed."""
    from xdream.cli import Terminated

    def killed_while_starting(address: object = None, **kwargs: object) -> None:
        raise SystemExit(signal.SIGTERM)  # what Ray's handler does

    monkeypatch.setattr(fake_ray, "init", killed_while_starting)
    out = tmp_path / "out"
    with pytest.raises(Terminated) as stopped:
        sweep.run_sweep(*_small_sweep(tmp_path), out)
    assert stopped.value.signum == signal.SIGTERM
    assert not out.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('layer = "blocks.0"', 'layer = "blocks.O"'), "has no layer 'blocks.O'"),
        (("channels = [1, 2]", "channels = [1, 2000]"), r"channel must be in 0..15 .* got 2000"),
        (("generations = 2", "presentations = 3"), "a budget of 3 presentations is less"),
    ],
)
def test_config_errors_are_refused_before_ray_starts(
    tmp_path: Path, fake_ray: FakeRay, edit: tuple[str, str], message: str
) -> None:
    """A unit the network lacks and a budget under one generation reached each task inside
    Ray (one message per task, exit 1); they are refused before Ray starts, and the folder the
    command made is removed."""
    cfg, section = _small_sweep(tmp_path, SWEEP_TOML.format(generations=2).replace(*edit))
    out = tmp_path / "new" / "out"
    with pytest.raises(XDreamError, match=message) as caught:
        sweep.run_sweep(cfg, section, out)
    assert str(caught.value).startswith("cannot start the sweep")
    assert fake_ray.inits == [] and not (tmp_path / "new").exists()


def test_an_out_that_cannot_be_a_folder_and_no_cluster_are_one_line(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    """--out naming a file, and --address with no cluster there, ended in a traceback (the
    latter leaving the empty --out behind)."""
    cfg, section = _small_sweep(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(XDreamError, match="is not a folder"):
        sweep.run_sweep(cfg, section, tmp_path / "file")

    def no_cluster(address: object = None, **kwargs: object) -> None:
        raise ConnectionError("Could not find any running Ray instance.\nPlease start one.")

    fake_ray.init = no_cluster  # type: ignore[method-assign]
    with pytest.raises(XDreamError, match=r"--address auto: Could not find any running Ray"):
        sweep.run_sweep(cfg, section, tmp_path / "out", address="auto")
    assert not (tmp_path / "out").exists()


def test_an_address_where_nothing_answers_is_refused_at_once(
    tmp_path: Path, fake_ray: FakeRay
) -> None:
    """ray.init tried an address where nothing listens again and again, for minutes, silently
    (still trying after 150 s)."""
    cfg, section = _small_sweep(tmp_path)
    port = _free_port()  # nothing listens on it
    start = time.monotonic()
    with pytest.raises(XDreamError, match=rf"at --address 127.0.0.1:{port}: nothing answers"):
        sweep.run_sweep(cfg, section, tmp_path / "out", address=f"127.0.0.1:{port}")
    assert time.monotonic() - start < 30 and fake_ray.inits == []
    assert not (tmp_path / "out").exists()


def test_a_sweeps_missing_weight_file_is_said_with_the_files_any_of_its_tasks_recorded(
    tmp_path: Path,
) -> None:
    """The files the sweep's experiments read are taken from the checkpoint of any task that
    has one (the first tasks may not have run yet), and a sweep none of whose tasks recorded
    any says only that the file is missing (mutation audit U)."""
    from xdream.records import save_checkpoint

    out = tmp_path / "out"
    tasks = [SimpleNamespace(folder=f"stem_3/genetic/seed{s}") for s in range(3)]
    err = MissingFileError("weight file '/a/w.pt' does not exist")
    checkpoints = [out / task.folder / "checkpoint.pkl" for task in tasks]
    assert sweep._missing_file_message(err, checkpoints) == str(err)
    (out / tasks[1].folder).mkdir(parents=True)
    files = {"target.weights": {"path": "/a/w.pt", "size": 10}}
    save_checkpoint(out / tasks[1].folder / "checkpoint.pkl", {"files": files})
    said = sweep._missing_file_message(err, checkpoints)
    assert said.startswith(
        "weight file '/a/w.pt' does not exist. The sweep's experiments read these files: "
        "[target] weights was /a/w.pt ("
    ), said


def test_a_sweep_places_each_units_images_over_its_own_receptive_field(tmp_path: Path) -> None:
    """Each task of a sweep scores its own unit: placement "rf" over units with other fields
    (blocks.0 and blocks.2) was refused before Ray started, as a shared pass must refuse them,
    with "cannot start the sweep, for 0 reasons" (audit J). A box past the input is still
    refused there."""
    text = SWEEP_TOML.format(generations=1).replace(
        "[[targets]]\nchannels = [1, 2]\n",
        '[[targets]]\nlayer = "blocks.0"\nchannels = [1]\n'
        '[[targets]]\nlayer = "blocks.2"\nchannels = [1]\n',
    )
    path = tmp_path / "s.toml"
    path.write_text(text.replace('device = "cpu"\n', 'device = "cpu"\nplacement = "rf"\n'))
    cfg, section = sweep.load(path)
    tasks = plan(cfg, section)
    assert {t.unit.layer for t in tasks} == {"blocks.0", "blocks.2"}
    sweep.check_tasks(cfg, tasks, tmp_path / "out")
    path.write_text(text.replace('device = "cpu"\n', 'device = "cpu"\nplacement = [200, 0, 30]\n'))
    cfg, section = sweep.load(path)
    with pytest.raises(XDreamError) as err:
        sweep.check_tasks(cfg, plan(cfg, section), tmp_path / "out")
    assert str(err.value).startswith(
        "cannot start the sweep: placement [200, 0, 30] (left, top, size) goes past the 224 x "
        "224 px input of 'efficientnet-lite0'"
    )
