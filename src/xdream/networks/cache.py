"""Built-in networks built once and shared by xdream's own scorers: :func:`reuse`, :func:`shared`.

``xdream tune`` builds a scorer of the same network for the study's normalisers and again for
every seed of every trial. Inside a ``with reuse():`` block, :func:`shared` builds each
built-in network once (per weight file) and hands out modules that share its weight tensors:
each a module object of its own (its own hooks, its own ``Parameter`` objects, its own
structure, so folding its batch norms or moving it to another device or memory format leaves
the others as they were), whose tensors are the ones read from the file once.

Nothing is written into those tensors: xdream's scorers only read them (under
``torch.inference_mode``). Code that writes into a tensor of a module from :func:`shared` in
place (``param.data.mul_(2)``, an optimiser step) changes the network for every other module
from the same block, so build a network to change with :func:`xdream.networks.make`, which always
builds a new one.

An entry is used again only while its weight files (the file, and for ``caffenet`` the
``deploy.prototxt`` beside it or in the catalogue) have the path, size, modification time and
SHA-256 digest they had when it was built: a file rewritten at the same path, even within one
tick of the file system's clock, is read again (each use reads the file for its digest, which
costs less than reading it to build the network). Outside every ``reuse()`` block nothing is kept
(:func:`shared` is :func:`~xdream.networks.make`), and inside one at most
:data:`MAX_NETWORKS` networks are kept (the least recently used goes first); all are dropped
when the outermost block ends.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from xdream.networks.base import Network

MAX_NETWORKS = 2
"""How many networks a :func:`reuse` block keeps at most (least recently used dropped first)."""

FileState = tuple[str, int, int, str] | tuple[str, None, None, None]
"""A weight file's (path, size, modification time in ns, SHA-256), or (path, None, None, None)
when there is no file at that path."""

_Key = tuple[str, str | None]

_lock = threading.RLock()
_depth = 0
_kept: collections.OrderedDict[_Key, tuple[tuple[FileState, ...], Network]] = (
    collections.OrderedDict()
)


@contextmanager
def reuse() -> Iterator[None]:
    """Inside the block, :func:`shared` builds each built-in network once per weight file.

    Blocks nest (an inner block uses the outer one's networks); the networks kept are dropped
    when the outermost block ends, even after an error."""
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _kept.clear()


def file_state(path: Path) -> FileState:
    """``path``'s :data:`FileState`."""
    try:
        before = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):  # hashlib.file_digest is Python 3.11+
                digest.update(block)
    except OSError:  # no file there (or a folder): building the network reports it
        return (str(path), None, None, None)
    return (str(path), before.st_size, before.st_mtime_ns, digest.hexdigest())


def share_tensors(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (every submodule a new object) whose parameters and buffers are new
    tensor objects on the same memory as ``module``'s: nothing is copied but the structure.
    Parameters come out with ``requires_grad=False``."""
    memo: dict[int, object] = {}
    for param in module.parameters():
        memo[id(param)] = nn.Parameter(param.detach(), requires_grad=False)
    for buffer in module.buffers():
        memo[id(buffer)] = buffer.detach()
    return copy.deepcopy(module, memo)


def shared(
    name: str,
    weights: str | Path | None,
    make: Callable[..., Network],
    files: Callable[[str | Path | None], tuple[Path, ...] | None],
) -> Network:
    """``make(name, weights=weights)``; inside a :func:`reuse` block, for a network whose
    weight files ``files(weights)`` names (``None`` for a network registered by the user's code,
    which is built every time), a :func:`share_tensors` copy of the one built from the same
    files in this block.

    Called as :func:`xdream.networks.shared`, which passes the registry's ``make`` and
    :func:`xdream.networks.weight_files`."""
    if not _depth:  # outside every block (read without the lock: builds run side by side)
        return make(name, weights=weights)
    with _lock:
        paths = files(weights)
        if paths is None:
            return make(name, weights=weights)
        key = (name, None if weights is None else str(weights))
        states = tuple(file_state(p) for p in paths)  # read before the build: a file changed
        kept = _kept.get(key)  # while the network is built is read again the next time
        if kept is not None and kept[0] == states:
            _kept.move_to_end(key)
            network = kept[1]
        else:
            _kept.pop(key, None)
            network = make(name, weights=weights)
            network = dataclasses.replace(network, module=share_tensors(network.module).eval())
            _kept[key] = (states, network)
            while len(_kept) > MAX_NETWORKS:
                _kept.popitem(last=False)
        return dataclasses.replace(network, module=share_tensors(network.module))


def kept() -> int:
    """How many networks the open :func:`reuse` blocks keep now (0 outside every block)."""
    with _lock:
        return len(_kept)


__all__ = ["MAX_NETWORKS", "file_state", "kept", "reuse", "share_tensors", "shared"]
