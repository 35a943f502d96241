"""Benchmark (not a test): nevergrad's ``NGOpt`` beside the full profile's baselines.

Runs the full profile of ``xdream bench optimizers`` (both code spaces, 20 units, 3 seeds, the
three noise conditions) for XDream's GA, pycma and nevergrad's ``NGOpt`` through the
``nevergrad`` adapter (population 40, ``sigma0`` 1, budget 3000: what NGOpt is told to choose
its method from). Writes the usual ``results.csv``, ``summary.json`` and plot into OUT; a killed
run resumes, and pointing OUT at a copy of a full-profile folder reuses its GA and pycma runs.
The rows in ``docs/benchmarks.md`` ("nevergrad's NGOpt") came from

    nice -n 5 env OMP_NUM_THREADS=1 python benchmarks/optimizers_nevergrad.py bench-ng --workers 2

on the 2-core VM, in a copy of the version-7 CPU folder (90 NGOpt tasks, 45 min).
Needs ``pip install 'xdream[nevergrad]'``.
"""

from __future__ import annotations

from extra_contenders import main

from xdream.bench.optimizers import Contender, contenders

LABELS = ("genetic", "pycma", "ngopt")
NGOPT = {"optimizer": "NGOpt", "population_size": 40, "sigma0": 1.0, "budget": 3000}


def table(generator: str) -> list[Contender]:
    """The two baselines of the full profile plus nevergrad's NGOpt."""
    shipped = [c for c in contenders(generator) if c.label in LABELS]
    return [*shipped, Contender("ngopt", "nevergrad", NGOPT)]


if __name__ == "__main__":
    main(__doc__.splitlines()[0], LABELS, table)
