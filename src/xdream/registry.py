"""Registries that map the public names used by configs and the CLI to components.

Each role (optimizer, generator, scorer noise, network) owns one :class:`Registry`. A name is
registered once; a second registration under the same name is a programming error and raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from xdream.errors import ConfigError, UnknownNameError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory mapping with a collision check and helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (lower-case, dash-separated)."""

        def decorate(obj: T) -> T:
            self.add(name, obj, summary)
            return obj

        return decorate

    def add(self, name: str, obj: T, summary: str = "") -> None:
        """Register ``obj`` under ``name``; raises ``ValueError`` if the name is taken."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        doc = summary or (getattr(obj, "__doc__", None) or "").strip().splitlines()[0:1]
        self._summaries[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")

    def get(self, name: str) -> T:
        """Look ``name`` up; an unknown name raises :class:`ConfigError` naming the choices."""
        if not isinstance(name, str):
            raise ConfigError(
                f"{self.kind} name must be a string, got {name!r} ({type(name).__name__}). "
                f"Registered {self.kind}s: {', '.join(sorted(self._entries))}."
            )
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{did_you_mean(name, self._entries)} "
                f"Registered {self.kind}s: {', '.join(sorted(self._entries))}.",
                self.kind,
                name,
            ) from None

    def summary(self, name: str) -> str:
        """One-line description of ``name``."""
        return self._summaries.get(name, "")

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
