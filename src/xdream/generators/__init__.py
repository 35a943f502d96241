"""Image generators, addressed by name: ``make("fourier")``, ``make("pixels", size=64)``."""

from __future__ import annotations

from typing import Any

from xdream.generators.base import Generator
from xdream.params import build_params
from xdream.registry import Registry

REGISTRY: Registry[type[Generator]] = Registry("generator")

DEFAULT = "fourier"
"""The embedded default generator: needs no weight file."""


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator: add a generator to the registry under ``cls.name``."""
    REGISTRY.add(cls.name, cls)
    return cls


def make(name: str, **params: Any) -> Generator:
    """Build the generator registered as ``name`` with parameters ``params`` (evaluation mode)."""
    cls = REGISTRY.get(name)
    gen = cls(build_params(cls.Params, params, f"generator {name!r}"))
    return gen.eval()


def names() -> list[str]:
    """Registered generator names."""
    return REGISTRY.names()


from xdream.generators import cppn, deepsim, fourier, pixels  # noqa: E402,F401

__all__ = ["DEFAULT", "REGISTRY", "Generator", "make", "names", "register"]
