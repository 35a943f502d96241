"""Registries that map the public names used by configs and the CLI to components.

Each role (optimizer, generator, scorer noise, network, rig file format) owns one
:class:`Registry`. A name is registered once. Registering it again with the same definition (a
class or function with the same ``__module__`` and ``__qualname__``, as when a notebook cell is
re-run or a module reloaded) replaces the old entry; registering a different definition under a
taken name raises :class:`~xdream.errors.ConfigError`, and so does a lambda or a definition
inside a function, whose names do not tell one from another.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from xdream.errors import ConfigError, UnknownNameError, did_you_mean

T = TypeVar("T")

NAME = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
"""A registered name: lower-case letters and digits, in words joined by ``-`` (or ``_``,
``.``), as configs, the command line and output folders use it."""


def check_name(kind: str, name: Any, owner: Any = None) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a registrable :data:`NAME`; ``owner`` (the
    class whose ``name`` it is) is named in the message."""
    if isinstance(name, str) and NAME.fullmatch(name):
        return
    example = f"'my-{kind.split()[-1]}'"
    if owner is not None and not name:
        raise ConfigError(
            f"{kind} {_label(owner)} has no name: set name = {example} on the class (lower-case "
            "letters and digits joined by dashes)"
        )
    raise ConfigError(
        f"{kind} name must be lower-case letters and digits joined by dashes, such as "
        f"{example}, got {name!r}"
    )


def check_component(kind: str, cls: Any, base: type, params: str | None = "Params") -> None:
    """Raise :class:`ConfigError` unless ``cls`` is a subclass of ``base`` (the role's base
    class) with a name (:func:`check_name`) and a dataclass of its parameters: its attribute
    ``params``, or the class itself when ``params`` is ``None``."""
    role = f"{base.__module__}.{base.__qualname__}"
    if not isinstance(cls, type) or not issubclass(cls, base):
        got = _label(cls) if isinstance(cls, type) else f"{type(cls).__name__} {cls!r}"[:80]
        raise ConfigError(f"{kind}s are registered as subclasses of {role}, got {got}")
    check_name(kind, getattr(cls, "name", None), cls)
    held = cls if params is None else getattr(cls, params, None)
    if not (isinstance(held, type) and dataclasses.is_dataclass(held)):
        what = "be a dataclass" if params is None else f"set {params} to a frozen dataclass"
        raise ConfigError(
            f"{kind} {_label(cls)} must {what} of its parameters (an empty one when it has "
            "none), which configs and make() fill in"
        )


def _label(obj: Any) -> str:
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and name:
        return name if module == "builtins" else f"{module}.{name}"
    return repr(obj)


class Registry(Generic[T]):
    """A name -> factory mapping with a collision check and helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}
        self._definitions: dict[str, tuple[str, str] | None] = {}

    def register(self, name: str, summary: str = "") -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (lower-case, dash-separated)."""

        def decorate(obj: T) -> T:
            self.add(name, obj, summary)
            return obj

        return decorate

    def add(self, name: str, obj: T, summary: str = "", *, defined_by: Any = None) -> None:
        """Register ``obj`` under ``name`` (a :data:`NAME`, else :class:`ConfigError`).

        ``defined_by`` is the class or function that ``obj`` comes from (``obj`` itself when
        ``None``). If ``name`` is taken by an entry from the same definition (same ``__module__``
        and ``__qualname__``: a re-run notebook cell or a reloaded module), the new ``obj``
        replaces it; if it is taken by another definition, :class:`ConfigError` is raised.
        """
        check_name(self.kind, name)
        definition = _definition(obj if defined_by is None else defined_by)
        if name in self._entries:
            old = self._definitions.get(name)
            if definition is None or old != definition:
                where = f" (by {'.'.join(old)})" if old is not None else ""
                raise ConfigError(
                    f"{self.kind} {name!r} is already registered{where}; register yours under "
                    "another name. (Re-running the same class or function definition, with the "
                    "same module and qualified name, replaces the entry.)"
                )
        self._entries[name] = obj
        self._definitions[name] = definition
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


def _definition(obj: Any) -> tuple[str, str] | None:
    """``(__module__, __qualname__)`` of a class or function; ``None`` for anything else."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
        return module, qualname
    return None  # a lambda or a definition inside a function: its name does not identify it
