"""Benchmarks: ``xdream bench optimizers`` (:mod:`xdream.bench.optimizers`)."""
