"""``xdream rig-sim``: a stand-in recording system that speaks the rig protocol (spec §9).

It watches the write folder for complete blocks (the ``block{NNN}.txt`` manifest, or a set of
stimulus files that stopped changing), scores the images with a network unit (plus a noise
model), and writes ``block{NNN}`` response files in any supported format, with configurable
latency, dropped responses, duplicate files and late files. Every block it sees, answers or
drops goes to a JSON-lines log (flushed and fsynced), which is also how a restarted simulator
knows which blocks it has already handled. A block it answered whose response file is gone
(moved aside: a response xdream skipped) is answered again only while xdream may still be
waiting for it (:meth:`RigSim.awaited`): it is the newest block in the write folder, and
xdream's ``rig/status.json``, where the simulator finds it, says xdream waits (or paused, or
stopped) at that block. A response archived or deleted otherwise gets no late second answer.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from xdream.errors import XDreamError
from xdream.rig import formats, protocol
from xdream.scorers.base import Scorer, as_scores

_RESPONSE_PREFIX = re.compile(r"^block(\d+)\.")


@dataclass
class SimSettings:
    """How the simulated rig behaves (probabilities per block; times in seconds)."""

    response_format: str = "mat73"
    latency: tuple[float, float] = (0.05, 0.2)
    drop: float = 0.0
    duplicate: float = 0.0
    late: float = 0.0
    late_delay: float = 5.0
    gains: tuple[float, ...] = (1.0,)
    slow_write: bool = False
    manifest: bool = True
    poll_interval: float = 0.005
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("drop", "duplicate", "late"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise XDreamError(f"rig-sim --{key} must be a probability in [0, 1]")
        if not 0.0 <= self.late_delay < float("inf"):  # nan compares false
            raise XDreamError(
                f"rig-sim --late-delay must be a number of seconds >= 0, got {self.late_delay}"
            )
        lo, hi = self.latency
        if not 0.0 <= lo <= hi:
            raise XDreamError(f"rig-sim --latency needs 0 <= MIN <= MAX, got {lo} {hi}")
        if not self.gains:
            raise XDreamError("rig-sim needs at least one channel gain")


class RigSim:
    """The simulated recording system; :meth:`run` until ``max_blocks`` are handled."""

    def __init__(
        self,
        write_dir: str | Path,
        score_dir: str | Path | None,
        unit: Scorer,
        settings: SimSettings | None = None,
        log: str | Path | None = None,
        run: str | Path | None = None,
    ) -> None:
        self.write_dir = Path(write_dir)
        self.score_dir = Path(score_dir) if score_dir is not None else self.write_dir
        self.run_dir = None if run is None else Path(run)
        """xdream's run folder (``--run``), whose ``rig/status.json`` says which block it
        waits for (:meth:`awaited`); None: the folder above ``write_dir``, where its status
        file names ``write_dir``."""
        _status_path(self.write_dir, self.run_dir, strict=True)  # another run's: refused
        self.unit = unit
        self.s = settings or SimSettings()
        self.writer = formats.WRITERS.get(self.s.response_format)
        self.log_path = Path(log) if log is not None else self.score_dir / ".rig-sim.jsonl"
        for d in (self.write_dir, self.score_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.handled: set[int] = set()
        self.answered: dict[int, float] = {}  # block -> time its response was written
        self._kept: set[int] = set()  # answered blocks whose response is gone, not answered again
        self._dropped: set[int] = set()
        """Blocks an earlier simulator dropped (its log): answered once xdream awaits one."""
        self._read_log()
        # a restarted simulator continues its random stream where the log says it stopped
        self.rng = np.random.default_rng([self.s.seed, len(self.handled)])
        self.queue: list[tuple[float, int, int, str, list[str], list[list[float]]]] = []
        self._seq = 0
        self._stable: dict[int, tuple[tuple[tuple[str, int], ...], float]] = {}
        self.stop_requested = False
        """Set from another thread to make :meth:`run` return."""

    # ------------------------------------------------------------------ log
    def _read_log(self) -> None:
        if not self.log_path.exists():
            return
        for line in self.log_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn last line of a killed simulator
            if entry.get("event") in ("written", "dropped"):
                self.handled.add(int(entry["block"]))
            if entry.get("event") == "written":
                self.answered[int(entry["block"])] = float(entry["time"])
                self._dropped.discard(int(entry["block"]))
            if entry.get("event") == "dropped":
                self._dropped.add(int(entry["block"]))

    def _log(self, **entry: Any) -> None:
        entry["time"] = time.time()
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ blocks
    def _complete_blocks(self) -> dict[int, list[str]]:
        """Blocks whose stimuli are all on disk: by manifest, or by a stable set of files."""
        names = os.listdir(self.write_dir)
        found: dict[int, list[str]] = {}
        if self.s.manifest:
            for n in names:
                m = protocol.RESPONSE_NAME.match(n)
                if m and m.group(2) == "txt":
                    b = int(m.group(1))
                    try:
                        listed = (self.write_dir / n).read_text().split()
                    except OSError:
                        continue
                    found[b] = listed
            return found
        groups: dict[int, list[str]] = {}
        for n in names:
            m = protocol.STIMULUS_NAME.match(n)
            if m and not protocol.is_temporary(n):
                groups.setdefault(int(m.group(1)), []).append(n)
        now = time.monotonic()
        for b, files in groups.items():
            try:
                sig = tuple(sorted((f, (self.write_dir / f).stat().st_size) for f in files))
            except OSError:
                continue
            prev = self._stable.get(b)
            if prev is None or prev[0] != sig:
                self._stable[b] = (sig, now)
            elif now - prev[1] >= 0.1:
                found[b] = sorted(files)
        return found

    def _with_response(self) -> set[int]:
        """The blocks that have a response file in the score folder (as _response_exists)."""
        out = set()
        for n in os.listdir(self.score_dir):
            m = _RESPONSE_PREFIX.match(n)
            if m and not n.endswith(".txt"):
                out.add(int(m.group(1)))
        return out

    def awaited(self, block: int, newest: int) -> bool:
        """Whether xdream may still be waiting for ``block`` (``newest``: the newest block in
        the write folder). xdream writes a block only once the one before it was answered or
        timed out, so only the newest block can be awaited; where the simulator finds the
        run's ``rig/status.json`` (:attr:`run_dir`), it must also say that xdream waits for
        that block, or paused or stopped while waiting for it (``xdream resume`` awaits it
        again): not a finished run's last block."""
        if block != newest:
            return False
        path = _status_path(self.write_dir, self.run_dir)
        try:
            status = json.loads(path.read_text()) if path is not None else None
        except (OSError, ValueError):  # not written yet (a run starting): xdream says nothing
            status = None
        if not isinstance(status, dict):
            return True
        return bool(
            status.get("block") == block and status.get("state") in ("waiting", "paused", "stopped")
        )

    def _response_gone(self, block: int, with_response: set[int], newest: int) -> bool:
        """Whether ``block`` was answered but its response file is no longer in the score
        folder (moved aside: xdream skipped it) while xdream may still be waiting for it
        (:meth:`awaited`): then it is answered again (logged). One gone otherwise (archived,
        deleted) is logged once and left."""
        if block not in self.answered or block in with_response:
            return False
        if any(q[2] == block for q in self.queue):
            return False
        if not self.awaited(block, newest):
            if block not in self._kept:
                self._kept.add(block)
                self._log(event="response gone, not awaited", block=block)
            return False
        self._kept.discard(block)
        del self.answered[block]
        self.handled.discard(block)
        self._log(event="response gone", block=block)
        return True

    def _response_exists(self, block: int) -> bool:
        stem = protocol.response_stem(block) + "."
        return any(
            n.startswith(stem) and not n.endswith(".txt") for n in os.listdir(self.score_dir)
        )

    def _load(self, names: Sequence[str]) -> torch.Tensor:
        arrays = []
        for n in names:
            with Image.open(protocol.inside(self.write_dir, n)) as im:
                arrays.append(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def _respond(self, block: int, names: list[str]) -> None:
        self._log(event="shown", block=block, names=names)
        try:
            images = self._load(names)
        except (OSError, XDreamError) as err:
            self._log(event="unreadable", block=block, error=str(err))
            self.handled.add(block)
            return
        scores = as_scores(self.unit.score(images, list(names)))
        values = scores[:, None] * np.asarray(self.s.gains, dtype=np.float64)[None, :]
        now = time.monotonic()
        r = self.rng.random(4)
        if r[0] < self.s.drop:
            self._log(event="dropped", block=block)
            self.handled.add(block)
            return
        delay = (
            self.s.late_delay if r[1] < self.s.late else float(self.rng.uniform(*self.s.latency))
        )
        self._push(now + delay, block, "written", names, values.tolist())
        if r[2] < self.s.duplicate:
            self._push(now + delay + 0.2, block, "duplicate", names, values.tolist())
        self.handled.add(block)  # in memory only: a restart before the write answers again

    def _push(
        self, due: float, block: int, event: str, names: list[str], values: list[list[float]]
    ) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (due, self._seq, block, event, names, values))

    def _write(self, block: int, event: str, names: list[str], values: list[list[float]]) -> None:
        final = self.score_dir / f"{protocol.response_stem(block)}{self.writer.extension}"
        arr = np.asarray(values, dtype=np.float64)
        tmp = self.score_dir / f".{final.name}.sim.tmp"
        if self.s.response_format == "h5":
            formats.write_h5_indexed(tmp, names, arr, names)
        else:
            self.writer.write(tmp, names, arr)
        if self.s.slow_write:  # non-atomic, in two halves: the reader must wait for the end
            data = tmp.read_bytes()
            tmp.unlink()
            with open(final, "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(0.05)
                fh.write(data[len(data) // 2 :])
        else:
            os.replace(tmp, final)
        self._log(event=event, block=block, file=final.name, names=names, values=values)
        if event == "written":
            self.answered[block] = time.time()

    # ------------------------------------------------------------------ loop
    def run(self, max_blocks: int | None = None, idle_exit: float | None = None) -> int:
        """Serve blocks; stop after ``max_blocks`` answered or dropped (or ``idle_exit`` s idle)."""
        self._log(event="started", pid=os.getpid())
        last_activity = time.monotonic()
        reshown: set[int] = set()
        while not self.stop_requested:
            with_response = self._with_response() if self.answered else set()
            complete = self._complete_blocks()
            newest = max(complete, default=-1)
            for block, names in sorted(complete.items()):
                if block in self.answered and block not in reshown and self.s.manifest:
                    # an answered block whose manifest is newer than the answer: shown again
                    try:
                        stamp = (self.write_dir / f"{protocol.response_stem(block)}.txt").stat()
                    except OSError:
                        continue
                    if stamp.st_mtime > self.answered[block]:
                        reshown.add(block)
                        self._log(event="reshown", block=block)
                if block in self._dropped and self.awaited(block, newest):
                    # the rig lost it in an earlier session, and xdream (resumed after a pause,
                    # say) waits for it again: a restarted rig shows it again
                    self._dropped.discard(block)
                    self.handled.discard(block)
                    self._log(event="dropped before, awaited", block=block)
                if block in self.handled and not self._response_gone(block, with_response, newest):
                    continue
                if self._response_exists(block):
                    self.handled.add(block)
                    continue
                self._respond(block, names)
                last_activity = time.monotonic()
            now = time.monotonic()
            while self.queue and self.queue[0][0] <= now:
                _, _, block, event, names, values = heapq.heappop(self.queue)
                self._write(block, event, names, values)
                last_activity = time.monotonic()
            if max_blocks is not None and len(self.handled) >= max_blocks and not self.queue:
                return 0
            if idle_exit is not None and not self.queue and now - last_activity > idle_exit:
                return 0
            time.sleep(self.s.poll_interval)
        return 0


def _status_path(write_dir: Path, run: Path | None, strict: bool = False) -> Path | None:
    """The ``rig/status.json`` of xdream's run folder ``run``; without one, that of the folder
    above ``write_dir`` where it names ``write_dir`` (a relative ``[rig] write_dir``, as in
    ``xdream rig-sim RUN/stimuli``); else None. A ``run`` whose status file names another
    write folder is refused where ``strict`` (the simulator starting), else passed over."""
    path = (Path(run) if run is not None else write_dir.parent) / "rig" / "status.json"
    try:
        named = json.loads(path.read_text()).get("write_dir")
    except (OSError, ValueError, AttributeError):
        return path if run is not None else None  # a run not started yet: read once it is
    if isinstance(named, str) and _same_folder(Path(named), write_dir):
        return path
    if run is None or not strict:
        return None
    raise XDreamError(
        f"{str(path)!r} is the status of a run whose write_dir is {named!r}, not "
        f"{str(write_dir)!r}: give rig-sim that run's write folder, or --run the run folder "
        "whose [rig] write_dir it is"
    )


def _same_folder(named: Path, b: Path) -> bool:
    """Whether the status file's ``named`` folder is ``b``. An earlier xdream named a relative
    ``[rig]`` folder relative to the folder it ran in, which the simulator cannot know: such a
    name is taken as ``b`` where it ends ``b``'s absolute path."""
    try:
        if named.is_absolute():
            return named.resolve() == b.resolve()
        tail = b.resolve().parts[-len(named.parts) :] if named.parts else ()
        return tail == named.parts
    except OSError:
        return False


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The simulator's JSON-lines log (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def values_of(entries: list[dict[str, Any]]) -> dict[str, npt.NDArray[np.float64]]:
    """``{stimulus name: values}`` of every response the simulator wrote (not duplicates)."""
    out: dict[str, npt.NDArray[np.float64]] = {}
    for e in entries:
        if e["event"] == "written":
            for name, v in zip(e["names"], e["values"]):
                out[name] = np.asarray(v, dtype=np.float64)
    return out
