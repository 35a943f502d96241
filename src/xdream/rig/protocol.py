"""File names of the rig protocol (spec §9) and the checks that keep them inside their folders."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from xdream.errors import XDreamError
from xdream.records import TMP_SUFFIX

RESPONSE_NAME = re.compile(r"^block(\d+)\.([A-Za-z0-9]+)$")
"""``block{NNN}.{ext}``: a response file (or, with extension ``txt``, xdream's manifest)."""

STIMULUS_NAME = re.compile(r"^block(\d+)_(\d+)_(.+)$")
"""``block{NNN}_{MMM}_{id}.{ext}``: a stimulus file."""

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
"""Image ids that are safe as part of a file name on every operating system."""

TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", "~")
"""Files ending so (and files starting with a dot) are in-progress writes, never read."""


def stimulus_name(block: int, index: int, image_id: str, extension: str) -> str:
    """``block{NNN}_{MMM}_{id}{extension}`` (at least 3 digits each, as XDream)."""
    return f"block{block:03d}_{index:03d}_{image_id}{extension}"


def response_stem(block: int) -> str:
    """``block{NNN}``: the response file's name without its extension."""
    return f"block{block:03d}"


def check_image_id(image_id: str) -> None:
    """Refuse an image id that could not be a plain file name (``/``, ``..``, ``:`` ...)."""
    if not SAFE_ID.match(image_id) or ".." in image_id:
        raise XDreamError(
            f"image id {image_id!r} cannot be used in a stimulus file name: ids must be letters, "
            "digits and '_.+-', start with a letter or digit and contain no '..' (a name with "
            "a folder separator could write outside write_dir)"
        )


def escapes(name: str) -> bool:
    """Whether a stimulus name from a response file points into another folder."""
    if not name or "\x00" in name:
        return True
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.drive or ".." in pure.parts or len(pure.parts) > 1:
            return True
    return False


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing any name that would reach outside ``folder``.

    A plain name (no separator, no ``..``, no drive) cannot leave the folder; renaming onto an
    existing symbolic link replaces the link, not its target.
    """
    if escapes(name):
        raise XDreamError(f"file name {name!r} would reach outside {str(folder)!r}; refused")
    return folder / name


def is_temporary(name: str) -> bool:
    """In-progress or hidden files that a reader must never open."""
    return name.startswith(".") or name.endswith(TEMPORARY_SUFFIXES)


def loose_key(name: str) -> str:
    """XDream's loose matching key: no folders, no extension, no ``block{NNN}_{MMM}_`` prefix."""
    base = PureWindowsPath(name).name  # splits on both / and \
    stem = os.path.splitext(base)[0]
    m = STIMULUS_NAME.match(stem)
    return m.group(3) if m else stem


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` under a hidden temporary name in the same folder, then rename into place.

    The rename is atomic, so a reader sees no file or the whole file. (No fsync: stimuli are
    re-created from the journal after a crash.)
    """
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
