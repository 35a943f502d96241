"""The lock a running experiment holds on its folder (:class:`FolderLock`, taken by
:meth:`~xdream.records.RunFolder.lock`), and the table of the folders this process holds.

:data:`_HELD_GUARD` is made anew in a forked child: read it as ``locks._HELD_GUARD`` where it
is used, not imported by name (a name imported before the fork keeps the parent's guard)."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from xdream.errors import FolderInUseError
from xdream.records.files import _UMASK

try:
    import fcntl
except ImportError:  # Windows: no POSIX locks; folders are not locked there
    fcntl = None  # type: ignore[assignment]

_HELD: dict[tuple[int, int], int] = {}
"""The lock files (device, inode) that this process holds, each with the holder's pid (a
forked child does not hold its parent's locks)."""
_HELD_GUARD = threading.RLock()  # re-entrant: the collector may free a FolderLock inside it


def _after_fork() -> None:
    """A forked child gets a fresh guard: the parent's may be held by a thread the child does
    not have (its table entries name the parent's pid, which the child ignores)."""
    global _HELD_GUARD
    _HELD_GUARD = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _lock_key(stat: os.stat_result) -> tuple[int, int]:
    return (stat.st_dev, stat.st_ino)


def _held_here(lock_file: Path) -> bool:
    """Whether this process holds ``lock_file`` (:meth:`RunFolder.lock`)."""
    try:
        key = _lock_key(os.stat(lock_file))
    except OSError:
        return False
    return _HELD.get(key) == os.getpid()


class FolderLock:
    """A held :meth:`RunFolder.lock`; :meth:`release` (or the process's end, a kill included)
    frees the folder."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._key = _lock_key(os.fstat(fd)) if fd is not None else None
        if self._key is not None:
            _HELD[self._key] = os.getpid()

    @property
    def held(self) -> bool:
        """False where the file system has no locks (or on Windows): nothing was held."""
        return self._fd is not None

    def release(self) -> None:
        with _HELD_GUARD:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            if self._key is not None and _HELD.get(self._key) == os.getpid():
                del _HELD[self._key]
            os.close(fd)

    def __del__(self) -> None:
        self.release()


def take_lock(
    lock_file: Path,
    *,
    held_here: str,
    held_elsewhere: Callable[[str], str],
    unwritable: Callable[[OSError], Exception],
) -> FolderLock:
    """Hold ``lock_file`` (a POSIX lock, which the system frees when the process ends, however
    it ends) and write this process into it (pid, host, since when). Raises
    :class:`~xdream.errors.FolderInUseError` with ``held_here`` where this process holds it
    already, or with ``held_elsewhere(holder)`` (the holder's line) where another does; an
    error opening the file raises ``unwritable(err)``. Without POSIX locks (Windows, a file
    system without them) nothing is held. The caller holds :data:`_HELD_GUARD`."""
    if _held_here(lock_file):
        raise FolderInUseError(held_here)
    if fcntl is None:
        return FolderLock(None)
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    except OSError as err:
        raise unwritable(err) from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.read(fd, 300).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno not in (errno.EACCES, errno.EAGAIN):
            return FolderLock(None)  # a file system without locks: go on unlocked
        raise FolderInUseError(held_elsewhere(holder)) from None
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode())
    return FolderLock(fd)
