"""Image generators, addressed by name: ``make("fourier")``, ``make("pixels", size=64)``.

The generators are torch modules; they are imported on first use of :data:`REGISTRY`,
:func:`make`, :func:`names`, :class:`Generator` or a generator module (PEP 562), so that
importing a torch-free submodule (:mod:`xdream.generators.spectrum`, which the optimisers use)
does not import torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from xdream.params import build_params
from xdream.registry import Registry, check_component

if TYPE_CHECKING:
    from xdream.generators.base import Generator

_REGISTRY: Registry[type[Generator]] = Registry("generator")
if TYPE_CHECKING:
    REGISTRY = _REGISTRY  # at run time `__getattr__` imports the built-in generators first

_BUILT_IN = ("cppn", "deepsim", "fourier", "pixels")
"""The modules whose generators register on import."""

DEFAULT = "fourier"
"""The embedded default generator: needs no weight file."""


def register(cls: type[Generator]) -> type[Generator]:
    """Class decorator: add a generator to the registry under ``cls.name``; a class that is
    not a :class:`Generator` with a ``name`` and a ``Params`` dataclass is refused."""
    from xdream.generators.base import Generator

    check_component("generator", cls, Generator)
    _REGISTRY.add(cls.name, cls)
    return cls


def _registry() -> Registry[type[Generator]]:
    """The registry, with the built-in generators imported (and so registered)."""
    for module in _BUILT_IN:
        importlib.import_module(f"{__name__}.{module}")
    return _REGISTRY


def make(name: str, **params: Any) -> Generator:
    """Build the generator registered as ``name`` with parameters ``params`` (evaluation mode).
    A parameter of the wrong kind is refused in Python's words (``got True (a bool)``)."""
    return build(name, params, python=True)


def build(name: str, params: Mapping[str, Any], *, python: bool) -> Generator:
    """:func:`make` with the parameters as a mapping, read from a config file or a command
    line (``python=False``: a wrong kind is said in a config file's words, ``got true (a
    boolean)``) or passed in Python (``python=True``)."""
    cls = _registry().get(name)
    gen = cls(build_params(cls.Params, params, f"generator {name!r}", python=python))
    return gen.eval()


def names() -> list[str]:
    """Registered generator names."""
    return _registry().names()


def __getattr__(name: str) -> Any:
    if name == "REGISTRY":
        return _registry()
    if name == "Generator":
        from xdream.generators.base import Generator

        return Generator
    if name in (*_BUILT_IN, "base", "codespace", "spectrum"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "REGISTRY", "Generator"})


__all__ = ["DEFAULT", "REGISTRY", "Generator", "make", "names", "register"]
