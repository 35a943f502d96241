"""``xdream bench optimizers``: which optimiser finds the strongest images, with and without noise.

The protocol (issue 5; Wang & Ponce 2022 for the design):

* target units: ``channels_per_layer`` channels, drawn with a fixed seed, of each of several
  layers spanning the depth of the default network, read at the centre of the layer's map;
* one generator per table, rendering ``image_size`` px images that go to the network at that
  size (small, so the benchmark runs on a laptop CPU);
* every contender gets ``budget`` presentations per run (3000 = 75 generations of 40), for
  every unit, seed, and noise condition: none, gain noise ``ns = 0.5`` and Poisson noise of
  scale 20 (``xdream-spec.md`` section 6). Scores reach the optimiser divided by the unit's best
  natural-crop response, so Poisson's scale is the expected spike count at that response;
* a run's result is its best *clean* (noise-free) activation over all presented images;
* per unit, the normalised score is ``best / (best over every run on that unit)`` and the
  relative activation ``best / (best over n_references seeded natural crops)``
  (:mod:`xdream.references`); per unit seeds are averaged, then the median over units is taken.

Runs of one (contender, noise, seed, layer) share forward passes (all channels of the layer in
one batch); each such task writes its own result file, so a killed benchmark resumes by skipping
finished tasks. Tasks run in worker processes.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import platform
import statistics
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xdream import generators, optimizers
from xdream.bench.network import LayerReader
from xdream.errors import XDreamError, did_you_mean
from xdream.generators.spectrum import CodeSpectrum
from xdream.optimizers import (  # noqa: F401  (registration, whatever the package imports)
    annealed_es,
    cholesky_cma,
    pycma,
    sep_cma,
    sphere_cma,
)
from xdream.params import build_params
from xdream.precision import set_tf32
from xdream.records.files import atomic_write, json_safe, write_json
from xdream.references import ReferenceImages
from xdream.scorers import make_noise
from xdream.scorers.cnn import resolve_device
from xdream.scorers.noise import NoiseModel

Log = Callable[[str], None]

NOISES: dict[str, tuple[str, dict[str, float]] | None] = {
    "none": None,
    "gain": ("gain", {"ns": 0.5}),
    "poisson": ("poisson", {"scale": 20.0}),
}
"""Noise conditions: name -> (noise model, hyperparameters) (spec section 6)."""

GENERATOR_PARAMS: dict[str, dict[str, Any]] = {
    "fourier": {"size": 64, "max_freq": 12},
    "pixels": {"size": 64, "code_size": 16},
    "cppn": {"size": 64},
}
"""Generators at benchmark size: the built-in code spaces, rendered at 64 px (fourier with
``max_freq`` 12, 1323 dimensions, so that pycma's full covariance stays affordable)."""

BASELINES = ("genetic", "pycma")
"""The per-unit reference: the better of XDream's GA and pycma's full CMA-ES."""


@dataclasses.dataclass(frozen=True)
class Contender:
    """One optimiser configuration in the benchmark: ``label`` names it in the results."""

    label: str
    optimizer: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def make(
        self, dim: int, seed: int, spectrum: CodeSpectrum | None = None
    ) -> optimizers.Optimizer:
        return optimizers.make(self.optimizer, dim=dim, seed=seed, spectrum=spectrum, **self.params)

    def spec(self, generator: str | None = None) -> dict[str, Any]:
        """What the contender's runs depend on: the optimiser, its *resolved* hyperparameters
        (defaults included, so a changed default counts), its class's ``version`` and, for an
        optimiser that uses the code spectrum, the ``generator``'s spectrum defaults."""
        cls = optimizers.REGISTRY.get(self.optimizer)
        params = build_params(cls.Params, self.params, f"optimizer {self.optimizer!r}")
        out = {
            "label": self.label,
            "optimizer": self.optimizer,
            "params": json.loads(json.dumps(dataclasses.asdict(params), default=str)),
            "version": cls.version,
        }
        if cls.uses_spectrum and generator is not None:
            gen = generators.make(generator, **GENERATOR_PARAMS.get(generator, {}))
            spectrum = gen.code_spectrum()
            out["spectrum_default_power"] = None if spectrum is None else spectrum.default_power
            if spectrum is not None and spectrum.colour is not None:
                out["spectrum_default_chroma"] = spectrum.default_chroma
            if spectrum is not None and spectrum.default_power_end is not None:
                out["spectrum_default_power_end"] = spectrum.default_power_end
        return out

    def fingerprint(self, generator: str | None = None) -> str:
        """A short hash of :meth:`spec`; every result row carries it."""
        text = json.dumps(self.spec(generator), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def contenders(generator: str) -> list[Contender]:
    """The benchmark's contenders for a code space, with their hyperparameters.

    XDream's GA keeps its published values; ``annealed-es`` its defaults. The CMA-type step size
    (1) and SphereCMA's radius (2 sqrt(N)) were chosen on tuning units outside the benchmark set
    and are shared by every CMA-type contender (``docs/optimizers.md``).
    """
    dim = generators.make(generator, **GENERATOR_PARAMS.get(generator, {})).code_dim
    sigma = 1.0
    return [
        Contender("genetic", "genetic"),
        Contender("pycma", "pycma", {"sigma0": sigma}),
        Contender("pycma-diag", "pycma-diag", {"sigma0": sigma}),
        Contender("cholesky-cma", "cholesky-cma", {"sigma0": sigma, "population_size": 40}),
        Contender("sep-cma", "sep-cma", {"sigma0": sigma, "population_size": 40}),
        Contender("sphere-cma", "sphere-cma", {"radius": 2.0 * math.sqrt(dim)}),
        Contender("annealed-es", "annealed-es"),
    ]


@dataclasses.dataclass(frozen=True)
class Profile:
    """What a benchmark run covers (see the module docstring)."""

    name: str
    generators: tuple[str, ...] = ("fourier", "pixels")
    layers: tuple[str, ...] = ("blocks.2", "blocks.4", "blocks.7", "blocks.10", "blocks.15")
    channels_per_layer: int = 4
    seeds: int = 3
    noises: tuple[str, ...] = ("none", "gain", "poisson")
    optimizers: tuple[str, ...] | None = None  # contender labels; None = all
    budget: int = 3000
    image_size: int = 64
    n_references: int = 10_000
    unit_seed: int = 2020

    def __post_init__(self) -> None:
        for noise in self.noises:
            if noise not in NOISES:
                raise XDreamError(f"unknown noise condition {noise!r}; choose from {list(NOISES)}")
        for gen in self.generators:
            generators.REGISTRY.get(gen)  # raises with the registered names
        if self.seeds < 1 or self.channels_per_layer < 1 or self.budget < 1:
            raise XDreamError("seeds, channels_per_layer and budget must be positive")
        if not (self.generators and self.layers and self.noises):
            raise XDreamError("generators, layers and noises must each name at least one")


FULL_CONTENDERS = ("genetic", "pycma", "annealed-es")
"""The full profile's contenders: the two baselines of issue 5's bars and the winner. With all
seven contenders the full profile would take an estimated 3-4.5 hours on a 2-core machine; with
these three 89 minutes there with 2 workers, measured (``docs/benchmarks.md``, "Run time").
Others run on request (``--optimizers genetic pycma sphere-cma ...``)."""

PROFILES: dict[str, Profile] = {
    "full": Profile("full", optimizers=FULL_CONTENDERS),
    "quick": Profile(
        "quick",
        generators=("fourier",),
        channels_per_layer=1,
        seeds=1,
        optimizers=("genetic", "pycma", "sphere-cma", "annealed-es"),
        n_references=2000,
    ),
}
"""``full``: 5 layers x 4 channels x 3 seeds x 3 noise conditions for :data:`FULL_CONTENDERS`
on both ``fourier`` and ``pixels``; ``quick``: one channel per layer, one seed, the default
generator, the two baselines, SphereCMA and the winner."""


# ------------------------------------------------------------------------------------ tasks
@dataclasses.dataclass(frozen=True)
class Task:
    """The runs of one contender on all benchmark channels of one layer (shared forwards)."""

    generator: str
    contender: Contender
    noise: str
    seed: int
    layer: str
    channels: tuple[int, ...]
    ref_max: tuple[float, ...]
    budget: int
    image_size: int
    device: str
    fingerprint: str = ""

    @property
    def key(self) -> str:
        layer = self.layer.replace(".", "")
        return f"{self.generator}__{self.contender.label}__{self.noise}__s{self.seed}__{layer}"


def stream_seed(*parts: object) -> int:
    """A seed from named parts, stable across processes and Python versions."""
    words = [zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


_WORKER: dict[Any, Any] = {}

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init_worker(threads: int) -> None:
    torch.set_num_threads(max(1, threads))


def _reader(layers: tuple[str, ...], image_size: int, device: str) -> LayerReader:
    set_tf32(False)  # IEEE float32 on CUDA, as experiments: scores independent of the batch
    key = ("reader", layers, image_size, device)
    if key not in _WORKER:
        _WORKER[key] = LayerReader(layers, image_size, device=device)
    reader: LayerReader = _WORKER[key]
    return reader


def _generator(name: str, device: str) -> generators.Generator:
    key = ("generator", name, device)
    if key not in _WORKER:
        gen = generators.make(name, **GENERATOR_PARAMS.get(name, {}))
        _WORKER[key] = gen.to(torch.device(device))
    generator: generators.Generator = _WORKER[key]
    return generator


def run_task(task: Task) -> list[dict[str, Any]]:
    """Run every channel of ``task`` for ``task.budget`` presentations; one row per run."""
    start, cpu_start = time.perf_counter(), time.process_time()
    reader = _reader((task.layer,), task.image_size, task.device)
    gen = _generator(task.generator, task.device)
    spec = NOISES[task.noise]
    noise: NoiseModel | None = make_noise(spec[0], **spec[1]) if spec else None
    k = len(task.channels)
    seeds = [stream_seed(task.generator, task.layer, ch, task.seed) for ch in task.channels]
    spectrum = gen.code_spectrum()
    opts = [task.contender.make(gen.code_dim, s, spectrum) for s in seeds]
    noise_rngs = [np.random.default_rng(stream_seed("noise", task.noise, s)) for s in seeds]
    best = np.full(k, -np.inf)
    curves: list[list[float]] = [[] for _ in range(k)]
    opt_time = np.zeros(k)
    shown = 0
    while shown < task.budget:
        batches = []
        for i, opt in enumerate(opts):
            t0 = time.perf_counter()
            batches.append(opt.ask())
            opt_time[i] += time.perf_counter() - t0
        n = min(len(batches[0]), task.budget - shown)
        codes = torch.as_tensor(np.concatenate([b[:n] for b in batches]), device=gen.device)
        with torch.inference_mode():
            acts = reader(gen(codes))[task.layer]
        for i, ch in enumerate(task.channels):
            clean = reader.read(acts[i * n : (i + 1) * n], task.layer, ch).double().numpy()
            best[i] = max(best[i], float(clean.max()))
            curves[i].append(best[i])
            if n < len(batches[i]):
                continue  # the budget ends inside this generation: nothing to tell
            scores = clean / task.ref_max[i] if task.ref_max[i] > 0 else clean
            if noise is not None:
                scores = noise(scores, noise_rngs[i])
            t0 = time.perf_counter()
            opts[i].tell(batches[i], scores)
            opt_time[i] += time.perf_counter() - t0
        shown += n
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    rows = []
    for i, ch in enumerate(task.channels):
        ref = task.ref_max[i]
        rows.append(
            {
                "generator": task.generator,
                "optimizer": task.contender.label,
                "contender_id": task.fingerprint,
                "noise": task.noise,
                "seed": task.seed,
                "layer": task.layer,
                "channel": ch,
                "unit": f"{task.layer}:{ch}",
                "best": float(best[i]),
                "reference_best": ref,
                "relative": float(best[i] / ref) if ref > 0 else math.nan,
                "optimizer_s": float(opt_time[i]),
                "task_wall_s": wall,
                "task_cpu_s": cpu,
                "optimizer_status": json.dumps(
                    json_safe({k: v for k, v in opts[i].status().items() if k != "note"})
                ),
                "curve": [float(c) for c in curves[i]],
            }
        )
    return rows


# ------------------------------------------------------------------------------- references
def choose_units(profile: Profile) -> dict[str, tuple[int, ...]]:
    """The benchmark channels per layer, drawn with ``profile.unit_seed``."""
    reader = _reader(profile.layers, profile.image_size, "cpu")
    rng = np.random.default_rng(profile.unit_seed)
    units = {}
    for layer in profile.layers:
        n_channels = reader.shapes[layer][0]
        picked = rng.choice(
            n_channels, size=min(profile.channels_per_layer, n_channels), replace=False
        )
        units[layer] = tuple(sorted(int(c) for c in picked))
    return units


REFERENCE_CHUNK = 500


def _reference_chunk(
    layers: tuple[str, ...],
    units: dict[str, tuple[int, ...]],
    image_size: int,
    seed: int,
    chunk: int,
    n: int,
    device: str,
) -> dict[str, list[float]]:
    """Per unit, the best response over ``n`` crops of reference chunk ``chunk``."""
    refs = ReferenceImages(image_size, seed=stream_seed("references", seed, chunk))
    images, _ = refs.sample(n)
    acts = _reader(layers, image_size, device)(images)
    reader = _reader(layers, image_size, device)
    return {
        layer: [float(reader.read(acts[layer], layer, ch).max()) for ch in chans]
        for layer, chans in units.items()
    }


def reference_best(
    profile: Profile, units: dict[str, tuple[int, ...]], pool: cf.Executor | None, device: str
) -> dict[str, float]:
    """``{"layer:channel": best response}`` over ``profile.n_references`` natural crops."""
    sizes = [REFERENCE_CHUNK] * (profile.n_references // REFERENCE_CHUNK)
    if profile.n_references % REFERENCE_CHUNK:
        sizes.append(profile.n_references % REFERENCE_CHUNK)
    args = [
        (profile.layers, units, profile.image_size, profile.unit_seed, i, n, device)
        for i, n in enumerate(sizes)
    ]
    if pool is None:
        parts = [_reference_chunk(*a) for a in args]
    else:
        parts = list(pool.map(_reference_chunk, *zip(*args)))
    return {
        f"{layer}:{ch}": max(part[layer][j] for part in parts)
        for layer, chans in units.items()
        for j, ch in enumerate(chans)
    }


# ---------------------------------------------------------------------------------- runner
def select_contenders(
    profile: Profile, contender_table: Callable[[str], list[Contender]] = contenders
) -> dict[str, list[Contender]]:
    """Per code space, the contenders named by ``profile.optimizers`` (all when None).

    A label that is not a contender of every code space is refused (before anything is
    written), as is an empty selection: a typo must not leave a folder with empty tables.
    """
    table = {}
    for gen in profile.generators:
        available = contender_table(gen)
        labels = [c.label for c in available]
        wanted = profile.optimizers
        for label in wanted or ():
            if label not in labels:
                raise XDreamError(
                    f"unknown contender {label!r} for code space {gen!r}."
                    f"{did_you_mean(label, labels)} Contenders of {gen}: {', '.join(labels)}"
                )
        table[gen] = [c for c in available if wanted is None or c.label in wanted]
        if not table[gen]:
            raise XDreamError(f"no contenders for code space {gen!r}: nothing to run")
    return table


def run_benchmark(
    profile: Profile,
    out: str | Path,
    workers: int | None = None,
    device: str = "cpu",
    contender_table: Callable[[str], list[Contender]] = contenders,
    with_overhead: bool = True,
    log: Log = print,
    run: bool = True,
) -> dict[str, Any]:
    """Run (or resume) ``profile`` into ``out``; write results.csv, summary.json and the plot.

    ``with_overhead`` adds the optimiser-overhead table (:func:`overhead`, N = 4096).
    ``run=False`` runs nothing: the outputs summarise the tasks already finished in ``out``.
    Outputs from a subset of the tasks (``run=False``, or a run stopped by an exception or
    Ctrl-C, which still writes them) say so: ``summary["complete"]`` is False and
    ``summary["tasks"]`` counts the finished ones.

    Everything is checked before ``out`` is touched (contenders, ``device``, that ``out`` is a
    folder, that ``run=False`` has runs to summarise): a refused invocation leaves no
    config.json that would tie the folder to its protocol. ``run=False`` uses no device, so
    ``device`` is not checked then (a GPU benchmark's folder is summarised on a laptop with the
    same command).
    """
    out = Path(out)
    table = select_contenders(profile, contender_table)
    if run:
        device = str(resolve_device(device))
    if out.exists() and not out.is_dir():
        raise XDreamError(f"the output folder {out} is a file")
    if not run and not (out / "references.json").exists():
        raise XDreamError(f"{out} holds no benchmark runs yet: nothing to summarise")
    workers = (workers or os.cpu_count() or 1) if run else 1
    fingerprints = {(g, c.label): c.fingerprint(g) for g, cs in table.items() for c in cs}
    config = {
        "profile": dataclasses.asdict(profile),
        "generator_params": {g: GENERATOR_PARAMS.get(g, {}) for g in profile.generators},
        "contenders": {
            g: [{**c.spec(g), "fingerprint": fingerprints[(g, c.label)]} for c in cs]
            for g, cs in table.items()
        },
        "noises": {k: NOISES[k] for k in profile.noises},
    }
    _check_config(out / "config.json", config)
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise XDreamError(f"cannot create the output folder {out}: {err}") from None
    _write_config(out / "config.json", config)
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool: cf.Executor | None = None
    saved_env = {k: os.environ.get(k) for k in THREAD_ENV}
    if workers > 1:
        # Workers read these when they import numpy: one BLAS thread each, no oversubscription
        # (pycma's eigendecompositions run ~10x slower with competing BLAS threads).
        os.environ.update({k: str(threads) for k in THREAD_ENV})
        ctx = multiprocessing.get_context("spawn")
        pool = cf.ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)
        )
    tasks: list[Task] = []
    todo: list[Task] = []
    refs: dict[str, float] = {}
    finished = False
    ran = False  # whether this invocation finished any task (then the machine is this one)
    try:
        t0 = time.perf_counter()
        units = choose_units(profile)
        refs = _load_or_compute_references(out, profile, units, pool, device, log)
        tasks = [
            Task(
                gen,
                c,
                noise,
                seed,
                layer,
                chans,
                tuple(refs[f"{layer}:{ch}"] for ch in chans),
                profile.budget,
                profile.image_size,
                device,
                fingerprints[(gen, c.label)],
            )
            for gen in profile.generators
            for c in table[gen]
            for noise in profile.noises
            for seed in range(profile.seeds)
            for layer, chans in units.items()
        ]
        todo = [t for t in tasks if not _is_done(out, t)]
        stale = sum((out / "runs" / f"{t.key}.json").exists() for t in todo)
        if stale:
            log(f"{stale} finished tasks are of a changed contender (other fingerprint): rerun")
        # code space by code space, noise condition by noise condition, seed by seed (a
        # stopped run leaves complete comparisons behind); within those the slowest first
        todo.sort(
            key=lambda t: (
                profile.generators.index(t.generator),
                profile.noises.index(t.noise),
                t.seed,
                t.contender.optimizer != "pycma",
            )
        )
        if run:
            log(f"{len(tasks)} tasks ({len(tasks) - len(todo)} done before), {workers} workers")
            _execute(todo, out, pool, log, t0)
            finished = True
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if run and tasks:
            try:
                ran = any(_is_done(out, t) for t in todo)
                if not finished:  # stopped part-way (Ctrl-C, a failed task): tables of the rest
                    write_outputs(
                        out, tasks, profile, config, refs, workers, device, ran=ran, log=log
                    )
            except Exception as err:
                if finished:
                    raise
                log(f"could not summarise the finished tasks: {err}")  # the original error wins
    overhead_path = out / "overhead.json" if with_overhead else None
    if overhead_path is not None and not overhead_path.exists() and run:
        log("overhead: ask + tell per generation at N = 4096, 40 codes")
        write_json(overhead_path, overhead())
    return write_outputs(
        out,
        tasks,
        profile,
        config,
        refs,
        workers,
        device,
        overhead_path=overhead_path,
        ran=ran,
        log=log,
    )


def write_outputs(
    out: Path,
    tasks: Sequence[Task],
    profile: Profile,
    config: dict[str, Any],
    refs: dict[str, float],
    workers: int,
    device: str,
    overhead_path: Path | None = None,
    ran: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Write results.csv, summary.json and the plot from the finished ones of ``tasks``.

    ``summary["machine"]`` is where the last invocation that ran tasks ran: this one's
    (``workers``, ``device``) when it ran any (``ran``), else the previous summary's (None if
    there is none or it is unreadable), so that ``--summary-only`` does not pass itself off as
    the machine.
    """
    if not tasks:  # nothing to summarise: keep what the folder holds
        raise XDreamError(f"no benchmark tasks for {out}: nothing to run or summarise")
    done = [t for t in tasks if _is_done(out, t)]
    rows = [row for t in done for row in _read_rows(out / "runs" / f"{t.key}.json")]
    complete = len(done) == len(tasks)
    if not complete:
        log(f"summarising {len(done)} of {len(tasks)} tasks (the others have not finished)")
    write_results_csv(out / "results.csv", rows)
    summary = summarise(rows, profile)
    summary["complete"] = complete
    summary["tasks"] = {"finished": len(done), "total": len(tasks)}
    summary["config"] = config
    if ran:
        summary["machine"] = machine(workers, device)
    else:
        summary["machine"] = _previous_machine(out / "summary.json", log)
    summary["references"] = refs
    if overhead_path is not None and overhead_path.exists():
        summary["overhead"] = json.loads(overhead_path.read_text())
    write_json(out / "summary.json", summary)
    try:
        plot(summary, rows, out / "optimizers.png")
    except ImportError:
        log("matplotlib is not installed: no plot")
    return summary


def _previous_machine(path: Path, log: Log) -> Any:
    """The ``machine`` of the summary.json at ``path``: None when there is none, or when the
    file is cut short, damaged or not a JSON object (then said in one line; the file is about
    to be rewritten, and which machine ran the tasks is unknown)."""
    if not path.exists():
        return None
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
        log(f"the previous {path} is unreadable ({err}): the machine is unknown")
        return None
    if not isinstance(previous, dict):
        log(f"the previous {path} is not a JSON object: the machine is unknown")
        return None
    return previous.get("machine")


def _execute(todo: list[Task], out: Path, pool: cf.Executor | None, log: Log, t0: float) -> None:
    def save(task: Task, rows: list[dict[str, Any]], done: int) -> None:
        with atomic_write(out / "runs" / f"{task.key}.json", "w") as fh:
            json.dump(rows, fh)
        rel = statistics.median(r["relative"] for r in rows)
        elapsed = time.perf_counter() - t0
        eta = elapsed / done * (len(todo) - done)
        log(
            f"[{done}/{len(todo)}] {task.key}: median relative {rel:.3f} "
            f"({rows[0]['task_wall_s']:.0f} s; elapsed {elapsed / 60:.1f} min, "
            f"ETA {eta / 60:.1f} min)"
        )

    if pool is None:
        for i, task in enumerate(todo, 1):
            save(task, run_task(task), i)
        return
    futures = {pool.submit(run_task, t): t for t in todo}
    for i, fut in enumerate(cf.as_completed(futures), 1):
        save(futures[fut], fut.result(), i)


def _is_done(out: Path, task: Task) -> bool:
    """Whether ``task``'s result file exists and was made by the same contender (fingerprint):
    rows of a changed optimiser (other hyperparameters, defaults or ``version``) are never
    mixed with new ones, the task runs again and its file is replaced."""
    path = out / "runs" / f"{task.key}.json"
    if not path.exists():
        return False
    rows = _read_rows(path)
    return bool(rows) and all(r.get("contender_id") == task.fingerprint for r in rows)


def _shared_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of the configuration that every run in a folder must share: all but the
    contenders (each result row names its own by fingerprint) and the code spaces (each task
    names its own; the parameters of a code space both configurations have must agree)."""
    shared = {k: v for k, v in config.items() if k not in ("contenders", "generator_params")}
    shared["profile"] = {
        k: v for k, v in config["profile"].items() if k not in ("optimizers", "generators")
    }
    return shared


def _same_protocol(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if _shared_config(old) != _shared_config(new):
        return False
    old_gens, new_gens = old.get("generator_params", {}), new.get("generator_params", {})
    return all(old_gens[g] == new_gens[g] for g in set(old_gens) & set(new_gens))


def _check_config(path: Path, config: dict[str, Any]) -> None:
    """Refuse a folder made with another protocol (units, budget, noises, generators...).

    Contenders and code spaces may differ between invocations (``--optimizers`` and
    ``--generators`` add some to a folder); :func:`_write_config` records those of the latest
    invocation.
    """
    if path.exists():
        old = json.loads(path.read_text())
        new = json.loads(json.dumps(config, default=str))
        if not _same_protocol(old, new):
            raise XDreamError(
                f"{path.parent} holds a benchmark with a different configuration; "
                "choose another --out (or delete the folder) to start a new one"
            )


def _write_config(path: Path, config: dict[str, Any]) -> None:
    text = json.dumps(config, indent=2, sort_keys=True, default=str)
    with atomic_write(path, "w") as fh:
        fh.write(text)


def _load_or_compute_references(
    out: Path,
    profile: Profile,
    units: dict[str, tuple[int, ...]],
    pool: cf.Executor | None,
    device: str,
    log: Log,
) -> dict[str, float]:
    path = out / "references.json"
    if path.exists():
        refs: dict[str, float] = json.loads(path.read_text())
        return refs
    t0 = time.perf_counter()
    refs = reference_best(profile, units, pool, device)
    write_json(path, refs)
    log(
        f"references: best of {profile.n_references} natural crops per unit "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return refs


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    return rows


CSV_FIELDS = (
    "generator",
    "optimizer",
    "contender_id",
    "noise",
    "seed",
    "layer",
    "channel",
    "unit",
    "best",
    "reference_best",
    "relative",
    "normalised",
    "optimizer_s",
    "task_wall_s",
    "task_cpu_s",
    "optimizer_status",
)


def _unit_best(rows: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    top: dict[tuple[str, str], float] = defaultdict(lambda: -math.inf)
    for r in rows:
        key = (r["generator"], r["unit"])
        top[key] = max(top[key], r["best"])
    return top


def ratio(value: float, best: float) -> float:
    """``value / best`` where ``best > 0``, else NaN: a ratio to a negative (or zero) maximum
    would rank a worse value higher, so such a unit is not comparable."""
    return value / best if best > 0 else math.nan


def write_results_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """One row per run, with the normalised score added (NaN on a unit whose best is <= 0)."""
    top = _unit_best(rows)
    with atomic_write(path, "w") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "normalised": ratio(r["best"], top[(r["generator"], r["unit"])])})


def summarise(rows: list[dict[str, Any]], profile: Profile) -> dict[str, Any]:
    """Per generator, noise and contender: medians over units of seed-averaged scores."""
    top = _unit_best(rows)
    per_unit: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        per_unit[(r["generator"], r["noise"], r["optimizer"], r["unit"])].append(r)

    def mean_of(key: tuple[str, str, str, str], field: str) -> float:
        return float(np.mean([r[field] for r in per_unit[key]]))

    out: dict[str, Any] = {"generators": {}}
    for gen in profile.generators:
        labels = sorted({r["optimizer"] for r in rows if r["generator"] == gen})
        units = sorted({r["unit"] for r in rows if r["generator"] == gen})
        tables: dict[str, Any] = {}
        used: dict[str, list[str]] = {}
        for noise in profile.noises:
            entry: dict[str, Any] = {}
            base = [b for b in BASELINES if any((gen, noise, b, u) in per_unit for u in units)]
            used[noise] = base
            for label in labels:
                keys = [(gen, noise, label, u) for u in units if (gen, noise, label, u) in per_unit]
                if not keys:
                    continue
                norm = [ratio(mean_of(k, "best"), top[(gen, k[3])]) for k in keys]
                rel = [mean_of(k, "relative") for k in keys]
                stats: dict[str, Any] = {
                    "median_normalised": _median(norm),
                    "median_relative": statistics.median(rel),
                    "units": len(keys),
                    "runs": sum(len(per_unit[k]) for k in keys),
                    "optimizer_s_per_run": statistics.mean(
                        r["optimizer_s"] for k in keys for r in per_unit[k]
                    ),
                }
                if any(math.isnan(x) for x in norm):
                    stats["units_not_comparable"] = sum(math.isnan(x) for x in norm)
                if base:
                    ratios = [
                        ratio(
                            mean_of(k, "best"),
                            max(mean_of((gen, noise, b, k[3]), "best") for b in base),
                        )
                        for k in keys
                        if all((gen, noise, b, k[3]) in per_unit for b in base)
                    ]
                    comparable = [x for x in ratios if not math.isnan(x)]
                    if comparable:
                        stats["median_vs_baseline"] = statistics.median(comparable)
                        stats["units_ahead_of_baseline"] = sum(x > 1 for x in comparable)
                    if len(comparable) < len(ratios):
                        stats["units_not_comparable_to_baseline"] = len(ratios) - len(comparable)
                entry[label] = stats
            tables[noise] = entry
        out["generators"][gen] = {
            "table": tables,
            "baselines": used,
            "acceptance": _acceptance(tables, used),
        }
    return out


def _median(values: list[float]) -> float:
    """The median of the values that are not NaN (NaN when none is)."""
    kept = [x for x in values if not math.isnan(x)]
    return statistics.median(kept) if kept else math.nan


BARS = {"none": 1.15, "gain": 1.1, "poisson": 1.1}
"""Acceptance bars of issue 5: median over units against the better of GA and pycma."""


def _acceptance(tables: dict[str, Any], baselines: dict[str, list[str]]) -> dict[str, Any]:
    """The contender with the largest worst-case margin over the bars, and its ratios.

    ``baselines``: per noise condition, the baselines its ratios are against. Without both of
    them under every condition there is no pass/fail verdict (``passes`` None, ``reason``).
    """
    labels = {label for entry in tables.values() for label in entry} - set(BASELINES)
    if not any(baselines.get(n) for n in tables):
        return {
            "winner": None,
            "passes": None,
            "reason": "no baseline (genetic, pycma) in the results",
        }
    margins = {}
    for label in labels:
        ratios = [tables[n].get(label, {}).get("median_vs_baseline") for n in tables]
        if all(r is not None for r in ratios):
            margins[label] = min(r / BARS.get(n, 1.1) for r, n in zip(ratios, tables))
    if not margins:
        reason = (
            "no contender besides the baselines"
            if not labels
            else "no contender has a baseline ratio under every noise condition"
        )
        return {"winner": None, "passes": None, "reason": reason}
    winner = max(margins, key=lambda k: margins[k])
    missing = {n: [b for b in BASELINES if b not in baselines.get(n, [])] for n in tables}
    per_noise = {
        n: {
            "ratio": tables[n][winner]["median_vs_baseline"],
            "bar": BARS.get(n, 1.1),
            "pass": None
            if missing[n]
            else tables[n][winner]["median_vs_baseline"] >= BARS.get(n, 1.1),
            "best_here": max(
                (lab for lab in tables[n] if "median_vs_baseline" in tables[n][lab]),
                key=lambda lab: tables[n][lab]["median_vs_baseline"],
            ),
        }
        for n in tables
    }
    verdict: dict[str, Any] = {
        "winner": winner,
        "passes": all(v["pass"] for v in per_noise.values()),
        "noise": per_noise,
    }
    if any(missing.values()):
        verdict["passes"] = None
        verdict["reason"] = "no verdict without both baselines: " + "; ".join(
            f"no {' or '.join(m)} under {n}" for n, m in missing.items() if m
        )
    return verdict


def machine(workers: int, device: str) -> dict[str, Any]:
    """Where the benchmark ran."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "workers": workers,
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


# ------------------------------------------------------------------------------------ plot
def plot(summary: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> None:
    """Median normalised score per contender and noise (top) and, noise-free, the median best
    clean response relative to natural crops against presentations (bottom), per generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = list(summary["generators"])
    fig, axes = plt.subplots(2, len(gens), figsize=(6.5 * len(gens), 8), squeeze=False)
    for j, gen in enumerate(gens):
        tables = summary["generators"][gen]["table"]
        noises = list(tables)
        labels = sorted({lab for t in tables.values() for lab in t})
        ax = axes[0, j]
        width = 0.8 / max(len(noises), 1)
        for i, noise in enumerate(noises):
            vals = [tables[noise].get(lab, {}).get("median_normalised", np.nan) for lab in labels]
            ax.bar(
                np.arange(len(labels)) + (i - (len(noises) - 1) / 2) * width,
                vals,
                width,
                label=noise,
            )
        ax.set_xticks(np.arange(len(labels)), labels, rotation=30, ha="right")
        ax.set_ylabel("median normalised score")
        ax.set_ylim(0, 1.2)
        partial = "" if summary.get("complete", True) else " (partial)"
        ax.set_title(f"{gen}: best clean score / best on the unit{partial}")
        if labels:
            ax.legend(title="noise", fontsize=8, ncol=len(noises), loc="upper center")
        ax = axes[1, j]
        for lab in labels:
            curves = [
                np.asarray(r["curve"]) / r["reference_best"]
                for r in rows
                if r["generator"] == gen
                and r["optimizer"] == lab
                and r["noise"] == "none"
                and r["reference_best"] > 0
            ]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            med = np.median(np.stack([c[:length] for c in curves]), axis=0)
            budget = summary["config"]["profile"]["budget"]
            ax.plot(np.linspace(budget / length, budget, length), med, label=lab)
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("presentations")
        ax.set_ylabel("median best / best natural crop")
        ax.set_title(f"{gen}: noise-free progress{partial}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------- overhead
def overhead(
    labels: Sequence[str] | None = None,
    dim: int = 4096,
    population: int = 40,
    generations: int = 30,
    slow_generations: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Milliseconds of ``ask`` + ``tell`` per generation at ``dim`` with ``population`` codes.

    pycma's full CMA runs ``slow_generations`` only (about a second each at 4096). Reports
    median and maximum over generations; random scores, so only the optimiser is timed.
    ``annealed-es-dct`` is ``annealed-es`` drawing its directions through a 2-D DCT spectrum
    (as on the ``pixels`` code space), over ``dim / 1024`` channels of 32 x 32 when ``dim`` is
    a multiple of 1024.
    """
    table: dict[str, tuple[str, dict[str, Any]]] = {
        "genetic": ("genetic", {"population_size": population}),
        "cholesky-cma": ("cholesky-cma", {"population_size": population, "sigma0": 1.0}),
        "sep-cma": ("sep-cma", {"population_size": population}),
        "sphere-cma": ("sphere-cma", {"population_size": population}),
        "annealed-es": ("annealed-es", {"population_size": population}),
        "annealed-es-dct": ("annealed-es", {"population_size": population}),
        "pycma-diag": ("pycma-diag", {"population_size": population}),
        "pycma": ("pycma", {"population_size": population}),
    }
    rng = np.random.default_rng(seed)
    out = {}
    if labels is None:
        labels = [k for k in table if k != "annealed-es-dct" or dim % 1024 == 0]
    for label in labels:
        name, params = table[label]
        spectrum = CodeSpectrum.dct(dim // 1024, 32, 32) if label == "annealed-es-dct" else None
        opt = optimizers.make(name, dim=dim, seed=seed, spectrum=spectrum, **params)
        times = []
        n_gen = slow_generations if name == "pycma" else generations
        for _ in range(n_gen):
            t0 = time.perf_counter()
            codes = opt.ask()
            opt.tell(codes, rng.standard_normal(len(codes)))
            times.append(time.perf_counter() - t0)
        out[label] = {
            "median_ms": 1000 * statistics.median(times),
            "max_ms": 1000 * max(times),
            "generations": n_gen,
            "dim": dim,
            "population": population,
        }
    return out
