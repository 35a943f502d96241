"""The catalogue of weight files: which file on this computer holds which generator or network.

XDream kept paths in ``local_settings.py`` and ``net_catalogue.py``; xdream reads a TOML file
instead, mapping registered names to files::

    # ~/.config/xdream/weights.toml
    deepsim-fc6 = "/data/deepsim/fc6/generator.caffemodel"
    caffenet = "/data/caffe/bvlc_reference_caffenet.caffemodel"
    alexnet = "~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth"

A value is a path (``~`` expanded; relative paths are relative to the catalogue file) or a table
``{ weights = "...", prototxt = "..." }``. Precedence: a ``weights`` value given explicitly
(Python argument, or ``weights`` in the experiment config) beats the catalogue, the catalogue
beats the component's default locations (for torchvision files, torch's download cache). The
catalogue file is ``$XDREAM_WEIGHTS`` when set, else ``weights.toml`` in the user's config
folder (:func:`user_config_dir`). Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xdream.errors import ConfigError, MissingFileError, XDreamError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_VAR = "XDREAM_WEIGHTS"
"""Environment variable naming the catalogue file (overrides the user config folder)."""


@dataclasses.dataclass(frozen=True)
class WeightInfo:
    """What a component's weight file is, and where users get it.

    Attributes:
        files: The usual file name(s), e.g. ``"generator.caffemodel"``.
        formats: The formats xdream reads for it.
        source: Where such files are obtained.
        defaults: Functions returning candidate paths tried after the catalogue.
        catalogued: Whether the catalogue can name the file (False for files that ship with a
            Python package).
    """

    files: str
    formats: str
    source: str
    defaults: tuple[Callable[[], Path | None], ...] = ()
    catalogued: bool = True


_KNOWN: dict[str, WeightInfo] = {}


def describe(name: str, info: WeightInfo) -> None:
    """Declare the weight file of the component registered as ``name``."""
    _KNOWN[name] = info


def info(name: str) -> WeightInfo | None:
    """The declared weight file of ``name``; ``None`` if it needs none."""
    return _KNOWN.get(name)


def user_config_dir() -> Path:
    """The user's config folder for xdream (XDG on Linux, Application Support, APPDATA)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "xdream"


def catalogue_path() -> Path:
    """The catalogue file in use: ``$XDREAM_WEIGHTS`` or ``<user config dir>/weights.toml``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else user_config_dir() / "weights.toml"


@dataclasses.dataclass(frozen=True)
class Entry:
    """A catalogue entry: the weight file and, for caffe files, an optional prototxt."""

    weights: Path
    prototxt: Path | None = None


def read_catalogue(path: str | Path | None = None) -> dict[str, Entry]:
    """Entries of the catalogue file (``{}`` if it does not exist)."""
    path = Path(path) if path is not None else catalogue_path()
    if not path.is_file():
        if os.environ.get(ENV_VAR) and path == catalogue_path():
            raise MissingFileError(
                f"${ENV_VAR} names the weight catalogue {str(path)!r}, which does not exist; "
                f'create it (lines like deepsim-fc6 = "/path/generator.caffemodel") or unset '
                f"{ENV_VAR}"
            )
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot parse the weight catalogue {str(path)!r}: {err}") from None
    out = {}
    for name, value in data.items():
        out[name] = _entry(name, value, path)
    return out


def _entry(name: str, value: Any, catalogue: Path) -> Entry:
    def as_path(v: Any, key: str) -> Path:
        if not isinstance(v, str) or not v:
            raise ConfigError(
                f"weight catalogue {str(catalogue)!r}: {name}.{key} must be a file path "
                f"(a string), got {v!r}"
            )
        p = Path(v).expanduser()
        return p if p.is_absolute() else catalogue.parent / p

    if isinstance(value, str):
        return Entry(as_path(value, "weights"))
    if isinstance(value, dict):
        unknown = set(value) - {"weights", "prototxt"}
        if unknown or "weights" not in value:
            raise ConfigError(
                f"weight catalogue {str(catalogue)!r}: entry {name!r} must be a path or a table "
                f"with 'weights' (and optionally 'prototxt'), got keys {sorted(value)}"
            )
        proto = value.get("prototxt")
        return Entry(
            as_path(value["weights"], "weights"),
            as_path(proto, "prototxt") if proto is not None else None,
        )
    raise ConfigError(
        f"weight catalogue {str(catalogue)!r}: entry {name!r} must be a path or a table, "
        f"got {value!r}"
    )


@dataclasses.dataclass(frozen=True)
class Status:
    """Where the weight file of one component is, or would be expected."""

    name: str
    needed: bool
    found: bool
    path: Path | None
    origin: str  # "argument", "catalogue", "default" or "" (not found)
    prototxt: Path | None = None

    def describe(self) -> str:
        """One line for ``xdream list``."""
        if not self.needed:
            return "no weight file needed"
        if self.found:
            return f"found ({self.origin}): {self.path}"
        if self.path is not None:
            problem = "is a directory" if self.path.is_dir() else "does not exist"
            return f"MISSING: {self.path} ({self.origin}) {problem}"
        kind = _KNOWN[self.name]
        where = [f'`{self.name} = "/path/to/{kind.files.split()[0]}"` in the weight catalogue']
        where += [str(p) for p in (d() for d in kind.defaults) if p is not None]
        return "missing: expected " + " or ".join(where)


def locate(name: str, explicit: str | Path | None = None) -> Status:
    """Find the weight file of ``name`` without raising (see :func:`resolve`)."""
    kind = _KNOWN.get(name)
    if explicit is not None:
        p = Path(explicit).expanduser()
        return Status(name, True, p.is_file(), p, "argument")
    if kind is None:
        return Status(name, False, False, None, "")
    entry = read_catalogue().get(name) if kind.catalogued else None
    if entry is not None:
        return Status(
            name, True, entry.weights.is_file(), entry.weights, "catalogue", entry.prototxt
        )
    for default in kind.defaults:
        candidate = default()
        if candidate is not None and candidate.is_file():
            return Status(name, True, True, candidate, "default")
    return Status(name, True, False, None, "")


def resolve(name: str, explicit: str | Path | None = None) -> Status:
    """The weight file of ``name``: ``explicit``, else the catalogue, else a default location.

    Raises :class:`MissingFileError` naming the file, its formats, where to get it and how to
    register it when it cannot be found.
    """
    status = locate(name, explicit)
    if status.found:
        return status
    kind = _KNOWN.get(name)
    what = (
        f"{name} needs {kind.files} ({kind.formats}); get it from {kind.source}."
        if kind is not None
        else f"{name} needs a weight file."
    )
    register = (
        f'Register it with a line `{name} = "/path/to/file"` in {catalogue_path()} (or set '
        f'${ENV_VAR} to another catalogue), or pass weights=PATH (config: `weights = "..."`).'
    )
    if status.path is not None:
        where = "given" if status.origin == "argument" else f"listed in {catalogue_path()}"
        if status.path.is_dir():
            raise XDreamError(
                f"weight file {str(status.path)!r} ({where}) is a directory, not a file. {what} "
                "Give the path of the file itself."
            )
        raise MissingFileError(f"weight file {str(status.path)!r} ({where}) does not exist. {what}")
    raise MissingFileError(f"no weight file for {name!r}. {what} {register}")


def torch_hub_checkpoint(filename: str) -> Callable[[], Path | None]:
    """A default location: ``filename`` in torch's download cache (``$TORCH_HOME``)."""

    def candidate() -> Path | None:
        home = os.environ.get("TORCH_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or "~/.cache", "torch"
        )
        # expanded as torch.hub expands it: a "~" written into the variable too
        return Path(os.path.expanduser(home)) / "hub" / "checkpoints" / filename

    return candidate


def sniff(path: str | Path) -> str:
    """``"torch"`` for a file written by ``torch.save`` (zip or legacy pickle), else ``"caffe"``."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    return "caffe"


TORCH_FORMAT = "a file written by torch.save (a zip archive, or a pickle in the legacy format)"


def check_file(path: str | Path, what: str) -> Path:
    """``path`` as a :class:`Path` if it is a non-empty file; else an error naming ``what``."""
    path = Path(path)
    if path.is_dir():
        raise XDreamError(
            f"weight file {str(path)!r} is a directory, not a file; expected {what}. Give the "
            "path of the file itself."
        )
    if not path.is_file():
        raise MissingFileError(f"weight file {str(path)!r} does not exist; expected {what}")
    if path.stat().st_size == 0:
        raise XDreamError(
            f"weight file {str(path)!r} is empty (0 bytes); expected {what}. Copy the file again."
        )
    return path


MAGIC: dict[bytes, str] = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x89HDF": "an HDF5 file (such as xdream's codes.h5 or record.h5)",
    b"\x93NUMPY": "a NumPy .npy array",
    b"PK\x03\x04": "a zip archive (such as a torch.save file or a NumPy .npz)",
}
"""The first bytes of file formats that are given as weights by mistake."""


def head_description(head: bytes) -> str:
    """What the first bytes of a file look like, for an error message."""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        first = text.strip().splitlines()[0] if text.strip() else ""
        return f"a text file beginning {first[:40]!r}"
    return f"a file beginning with the bytes {head[:8].hex(' ')}"


def _torch_load_problem(err: BaseException) -> str:
    """What ``torch.load(weights_only=True)`` found wrong, without torch's advice to load unsafely.

    torch suggests ``weights_only=False`` for anything its safe unpickler refuses: that runs
    arbitrary code from the file, so xdream never repeats it.
    """
    text = str(err)
    unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsupported:
        return (
            f"it holds Python objects other than tensors ({unsupported.group(1)}): a whole "
            "pickled model or a training checkpoint, not a state_dict"
        )
    if "weights_only" in text or isinstance(err, (KeyError, struct.error, EOFError)):
        return "it is cut short or damaged"
    first_line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"it is cut short or damaged ({first_line[:160]})"


def load_state_dict_file(path: str | Path, what: str) -> dict[str, Any]:
    """A state_dict saved with ``torch.save``, read with ``weights_only=True`` (no code runs).

    A checkpoint that wraps the state_dict under ``"state_dict"`` or ``"model"`` is unwrapped.
    ``what`` names the expected content in error messages. Every unreadable file (a directory,
    an empty, text, truncated or damaged file, a pickled model) raises one :class:`XDreamError`
    naming the file, what was expected and what was found.
    """
    import torch

    path = check_file(path, what)
    with open(path, "rb") as fh:
        head = fh.read(64)
    fix = "Save the weights with torch.save(model.state_dict(), path); copy a truncated file again."
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise XDreamError(
            f"{str(path)!r} is not {TORCH_FORMAT}: it is {head_description(head)}. Expected "
            f"{what}. {fix}"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (KeyError, struct.error...) for one
        raise XDreamError(
            f"{str(path)!r} cannot be read as a torch state_dict: {_torch_load_problem(err)}. "
            f"Expected {what}. {fix}"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        found = "an empty dict" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise XDreamError(
            f"{str(path)!r} holds {found}, not a state_dict (a dict of tensors); expected {what}"
        )
    not_tensor = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensor:
        key = not_tensor[0]
        raise XDreamError(
            f"{str(path)!r} holds a dict whose entry {str(key)!r} is of type "
            f"{type(obj[key]).__name__}, not a tensor, so it is not a state_dict; expected {what}"
        )
    return dict(obj)


def match_state_dict(
    expected: dict[str, Any], state: dict[str, Any], path: str | Path, what: str
) -> None:
    """Raise an :class:`XDreamError` unless ``state`` has exactly the keys and shapes of
    ``expected`` (a module's ``state_dict()``); names the first mismatching keys and shapes."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong):
        return
    found = []
    if wrong:
        found.append(f"wrong shapes: {'; '.join(wrong[:3])}" + ("; ..." if len(wrong) > 3 else ""))
    if missing:
        found.append(f"{len(missing)} missing keys, first {missing[:4]}")
    if unexpected:
        found.append(f"{len(unexpected)} unexpected keys, first {unexpected[:4]}")
    raise XDreamError(
        f"{str(path)!r} is not {what}: {', '.join(found)}. Check that the file is the weights "
        "of this architecture."
    )
