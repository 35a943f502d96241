"""Gradient-free optimisers, addressed by name: ``make("genetic", dim=4096, seed=0)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xdream.optimizers.base import Best, Optimizer
from xdream.params import build_params
from xdream.registry import Registry, check_component
from xdream.types import Codes

if TYPE_CHECKING:  # for the annotation only: optimisers never build a spectrum themselves
    from xdream.generators.spectrum import CodeSpectrum

REGISTRY: Registry[type[Optimizer]] = Registry("optimizer")


def register(cls: type[Optimizer]) -> type[Optimizer]:
    """Class decorator: add an optimiser to the registry under ``cls.name``; a class that is
    not an :class:`Optimizer` with a ``name`` and a ``Params`` dataclass is refused."""
    check_component("optimizer", cls, Optimizer)
    REGISTRY.add(cls.name, cls)
    return cls


def make(
    name: str,
    dim: int,
    seed: int | None = None,
    init_codes: Codes | None = None,
    preset: str | None = None,
    spectrum: CodeSpectrum | None = None,
    **hyperparameters: Any,
) -> Optimizer:
    """Build the optimiser registered as ``name`` for a ``dim``-dimensional code space.

    ``preset`` names settings from :data:`xdream.optimizers.presets.PRESETS` (for example
    ``"deepsim-fc7"``); ``hyperparameters`` override them. Unknown hyperparameters raise
    :class:`xdream.errors.ConfigError` naming the nearest valid key. ``spectrum`` is the
    generator's :meth:`~xdream.generators.Generator.code_spectrum`, for optimisers that use
    it (``uses_spectrum``; others ignore it).
    """
    if preset is not None:
        from xdream.optimizers import presets

        hyperparameters = {**presets.expand(name, preset)[1], **hyperparameters}
    cls = REGISTRY.get(name)
    params = build_params(cls.Params, hyperparameters, f"optimizer {name!r}", python=True)
    if cls.uses_spectrum:
        return cls(dim, params, seed=seed, init_codes=init_codes, spectrum=spectrum)  # type: ignore[call-arg]
    return cls(dim, params, seed=seed, init_codes=init_codes)


def names() -> list[str]:
    """Registered optimiser names."""
    return REGISTRY.names()


# Registration happens on import of each algorithm module.
from xdream.optimizers import (  # noqa: E402,F401
    annealed_es,
    cholesky_cma,
    fdgd,
    genetic,
    nes,
    nevergrad_adapter,
    pycma,
    sep_cma,
    sphere_cma,
)

__all__ = ["REGISTRY", "Best", "Optimizer", "make", "names", "register"]
