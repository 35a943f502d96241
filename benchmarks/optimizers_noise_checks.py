"""Benchmark (not a test): ``annealed-es`` with and without its noise checks, side by side.

Runs the full profile of ``xdream bench optimizers`` (both code spaces, 20 units, 3 seeds, the
three noise conditions) for XDream's GA, pycma, ``annealed-es`` as shipped and
``annealed-es-v5``: the same optimiser with ``noise_checks=0``, which behaves exactly as
version 5 did (the mean shown once, the step size always decaying to ``sigma_end``). Writes the
usual ``results.csv``, ``summary.json`` and plot into OUT; a killed run resumes. The table in
``docs/benchmarks.md`` ("Noise checks") came from

    python benchmarks/optimizers_noise_checks.py bench-noise-checks --workers 16 --device cuda

on a GPU machine (3 min 12 s); on a 2-core CPU expect about 2.5 hours.
"""

from __future__ import annotations

from extra_contenders import main

from xdream.bench.optimizers import Contender, contenders

LABELS = ("genetic", "pycma", "annealed-es", "annealed-es-v5")


def table(generator: str) -> list[Contender]:
    """The full profile's contenders plus ``annealed-es`` without noise checks."""
    shipped = [c for c in contenders(generator) if c.label in LABELS]
    return [*shipped, Contender("annealed-es-v5", "annealed-es", {"noise_checks": 0})]


if __name__ == "__main__":
    main(__doc__.splitlines()[0], LABELS, table)
