"""Helpers for hyperparameter dataclasses: build from a mapping, reject unknown keys by name,
and refuse values of the wrong kind (``true`` for a number, ``"no"`` for a boolean) by the
fields' type hints before the dataclass's own checks run."""

from __future__ import annotations

import dataclasses
import numbers
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from xdream.errors import ConfigError, did_you_mean

P = TypeVar("P")

_KINDS = {"an integer": ("a whole number", "3"), "a number": ("a number", "0.5")}
_KINDS["true or false"] = ("true or false", "true")
"""How to write a value of each kind (in words and as an example), which holds for TOML, YAML
and JSON alike."""


def _fix(expected: str, value: Any) -> str:
    """How to write a value that ``expected`` (:func:`mismatch`'s words) takes instead of
    ``value``: without quotes where ``value`` is a quoted number or boolean."""
    if expected == "a string":
        return 'write it in quotes, as "..."'
    kind = expected if expected in _KINDS else expected.split(" or ")[0]
    if kind not in _KINDS:
        return ""
    what, example = _KINDS[kind]
    if isinstance(value, str) and mismatch(_PARSED[kind], _parsed(value)) is None:
        return f'write {what} without quotes, as {example} rather than "{example}"'
    return f"write {what}, as {example}"


_PARSED = {"an integer": int, "a number": float, "true or false": bool}


def _parsed(text: str) -> Any:
    """What a config file reads ``text`` as without its quotes: an integer, a number (decimal or
    with an exponent), true or false; otherwise ``text`` itself."""
    text = text.strip()
    if re.fullmatch(r"[-+]?(?:0|[1-9][0-9_]*)", text):
        return int(text)
    if re.fullmatch(r"[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]+)?(?:[eE][-+]?[0-9]+)?", text):
        try:
            return float(text)
        except ValueError:
            return text
    return {"true": True, "false": False}.get(text, text)


def build_params(cls: type[P], values: Mapping[str, Any], where: str, *, python: bool = False) -> P:
    """Instantiate the dataclass ``cls`` from ``values``.

    An unknown key raises :class:`ConfigError` naming the nearest valid key; ``where`` says which
    component the keys belong to (for example ``"optimizer 'genetic'"``). A value that does not
    fit the field's type hint (a boolean where an ``int`` or ``float`` is expected, anything but
    a boolean where a ``bool`` is, a number where a ``str`` is) raises :class:`ConfigError`
    saying what the key takes: in a config file's words (``got true (a boolean)``), or with
    ``python=True``, for values a Python caller passed, in Python's (``got True (a bool)``).
    """
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in fields:
            raise ConfigError(
                f"unknown hyperparameter {key!r} for {where}.{did_you_mean(key, fields)} "
                f"Valid keys: {', '.join(sorted(fields))}."
            )
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.default is not dataclasses.MISSING
    }
    # Config files have lists where the dataclass has tuples: convert, keep everything else.
    passed = dict(values)
    given = from_numpy(passed)
    values = {
        k: tuple(v) if isinstance(v, list) and isinstance(defaults.get(k), tuple) else v
        for k, v in given.items()
    }
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        expected = mismatch(hints[key], value)
        if expected is not None and python:  # the value as the caller gave it (a list, say)
            fix = _python_fix(expected, given[key])
            raise ConfigError(
                f"{where}: {key!r} must be {python_words(expected)}, got "
                f"{describe_python(passed[key])}" + (f": {fix}" if fix else "")
            )
        if expected is not None:
            fix = _fix(expected, value)
            fix += _yaml_1_1(value)
            raise ConfigError(
                f"{where}: {key!r} must be {expected}, got {describe(value)}"
                + (f": {fix}" if fix else "")
            )
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid hyperparameters for {where}: {err}") from None


def _yaml_1_1(value: Any) -> str:
    """What to add for a string that YAML 1.1 read as a number or boolean (which xdream's YAML
    reading, like YAML 1.2 and TOML, does not)."""
    if not isinstance(value, str):
        return ""
    if re.fullmatch(r"[-+]?0[0-9_]+", value):
        return f" (no leading zero: {value} is not read as a number, decimal or octal)"
    if re.fullmatch(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?", value):
        return f" (no base-60 numbers: {value} is not read as a number)"
    if value.lower() in ("yes", "no", "on", "off", "y", "n"):
        return " (yes, no, on and off are not booleans here)"
    return ""


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def mismatch(hint: Any, value: Any) -> str | None:
    """What ``hint`` expects (``"an integer"``, ``"true or false"``, ...) when ``value`` does not
    fit it; ``None`` when it fits, and when the hint is beyond these checks (``Any``, a dict).

    Only the kind is checked: ``int`` takes integers but not booleans (``True`` is an ``int``
    in Python), ``float`` takes any real number but not a boolean, ``bool`` takes only booleans,
    ``str`` only strings, ``tuple[X, ...]`` a list or tuple of ``X``; ranges are the dataclass's.
    """
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        members = typing.get_args(hint)
        if value is None and type(None) in members:
            return None
        wanted = [mismatch(m, value) for m in members if m is not type(None)]
        if any(w is None for w in wanted):
            return None
        return " or ".join(dict.fromkeys(w for w in wanted if w))
    if hint is int:
        ok = isinstance(value, numbers.Integral) and not _is_bool(value)
        return None if ok else "an integer"
    if hint is float:
        ok = isinstance(value, numbers.Real) and not _is_bool(value)
        return None if ok else "a number"
    if hint is bool:
        return None if _is_bool(value) else "true or false"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            return None
        each = f"a list of {_plural(mismatch(args[0], object()) or 'values')}"
        if isinstance(value, (list, tuple)):
            return None if all(mismatch(args[0], v) is None for v in value) else each
        if value is None or isinstance(value, (str, numbers.Number, np.bool_)):
            return each
        return None  # an array or another sequence: the dataclass judges it
    return None


def _plural(kind: str) -> str:
    return {
        "an integer": "integers",
        "a number": "numbers",
        "true or false": "booleans",
        "a string": "strings",
    }.get(kind, kind)


def describe(value: Any) -> str:
    """``value`` as a config file shows it, with its kind: ``true (a boolean)``,
    ``"3" (a string)``, ``3.0 (a decimal number)``."""
    if _is_bool(value):
        return f"{str(bool(value)).lower()} (a boolean)"
    if value is None:
        return "null (no value)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, numbers.Integral):
        return repr(value)
    if isinstance(value, numbers.Real):
        return f"{value!r} (a decimal number)"
    if isinstance(value, (list, tuple)):
        return f"{list(value)!r} (a list)"
    if isinstance(value, Mapping):
        return f"{dict(value)!r} (a table)"
    return f"{value!r} (a {type(value).__name__})"


_PYTHON_WORDS = (
    ("true or false", "True or False"),
    ("a list of", "a list or tuple of"),
    ("an integer", "an int"),
    ("integers", "ints"),
    ("a string", "a str"),
    ("strings", "strs"),
    ("booleans", "bools"),
)
""":func:`mismatch`'s words for a kind, and Python's, in the order they are replaced."""

_PYTHON_KINDS = {"an integer": ("an int", "3"), "a number": ("a number", "0.5")}
_PYTHON_KINDS["true or false"] = ("True or False", "True")


def python_words(expected: str) -> str:
    """:func:`mismatch`'s words (``"an integer"``, ``"true or false"``, ``"a list of
    strings"``) as a Python caller reads them (``"an int"``, ``"True or False"``, ``"a list or
    tuple of strs"``)."""
    for config_words, python in _PYTHON_WORDS:
        expected = expected.replace(config_words, python)
    return expected


def _python_fix(expected: str, value: Any) -> str:
    """:func:`_fix` for a Python caller: what to pass instead of ``value``."""
    if expected == "a string":
        return "pass a str, as 'name'"
    kind = expected if expected in _PYTHON_KINDS else expected.split(" or ")[0]
    if kind not in _PYTHON_KINDS:
        return ""
    what, example = _PYTHON_KINDS[kind]
    if isinstance(value, str) and mismatch(_PARSED[kind], _parsed(value)) is None:
        return f"pass {what}, not a str: {_parsed(value)!r} rather than {value!r}"
    return f"pass {what}, as {example}"


def describe_python(value: Any) -> str:
    """``value`` as Python shows it, with its type: ``True (a bool)``, ``'3' (a str)``,
    ``3.0 (a float)``, ``None``, ``array([4, 5]) (a NumPy array)``."""
    if value is None:
        return "None"
    if _is_bool(value):
        return f"{bool(value)!r} (a bool)"
    if isinstance(value, numbers.Integral):
        return repr(value)
    if isinstance(value, np.ndarray):
        return f"{value!r} (a NumPy array)"
    kind = type(value).__name__
    if isinstance(value, np.generic):
        return f"{value!r} (a NumPy {kind})"
    return f"{value!r} ({'an' if kind[0] in 'aeiou' else 'a'} {kind})"


def check_seed(
    seed: Any, name: str = "seed", allow_none: bool = False, *, python: bool = False
) -> None:
    """Raise :class:`ConfigError` unless ``seed`` is an integer >= 0 (or ``None`` when
    ``allow_none``): what numpy's seeding accepts, said before numpy says it in a traceback.
    ``python=True`` (a seed passed in Python) shows it as Python does (``'a' (a str)``)."""
    if seed is None and allow_none:
        return
    if not isinstance(seed, numbers.Integral) or _is_bool(seed) or seed < 0:
        fix = " (or None for fresh entropy)" if allow_none else ""
        got = describe_python(seed) if python else describe(seed)
        raise ConfigError(
            f"{name} must be an integer >= 0{fix}, got {got}: give a whole number such as 0 or "
            "12345"
        )


def params_dict(params: Any) -> dict[str, Any]:
    """Plain-dict view of a hyperparameter dataclass (for the resolved config)."""
    return dataclasses.asdict(params)


def from_numpy(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays (a config built in Python) as the plain numbers
    and lists a config file gives, so that they are checked, and written to config.yaml, as
    such."""
    if isinstance(value, Mapping):
        return {k: from_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_numpy(v) for v in value)
    if isinstance(value, np.ndarray):
        return [from_numpy(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
