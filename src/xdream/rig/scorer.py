"""The rig as a scorer: XDream's file protocol (spec §9), hardened and crash-safe.

One generation, block by block::

    plan blocks (shuffled, reps, blanks)           # journaled before anything is written
    for each block:
        write block{NNN}_{MMM}_{id}.png atomically, then block{NNN}.txt (manifest)
        wait for block{NNN}.mat / .h5 / .json / .csv: accepted once readable and no longer
        growing (a file answering part of the block, a CSV without a final line end, or
        with settle_always any file, only once unchanged for settle seconds); foreign or
        malformed files, and a response file there before its block was written, are
        logged and skipped; timeout policy applies
        journal the response, back it up, clean the images up
    re-show unanswered images (require_response); average repeats; subtract blanks

The journal (``rig/state.json`` in the experiment folder, rewritten atomically before every
block is written (fsynced: ``writing``), after it is written and after every response
accepted) holds the blocks, their files and ids and every
response received, so ``xdream resume`` after a kill continues at the right block: answered
blocks are never shown again and responses that arrived meanwhile are picked up, an
accepted response whose backup and clean-up had not run yet gets them, and so do the images
of a block written just before a kill (their backup is copied from the rig's folder while
the rig has them). It also keeps which
skipped and duplicate files it has counted, so each is counted and backed up once, and which
response files were there before their block was written (``early``), never its answer: a
response to a block that the journal does not record as being written is never its answer
either, as its stimuli cannot exist (but for a journal of an earlier xdream).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PureWindowsPath
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from xdream.errors import XDreamError
from xdream.optimizers.base import make_rng
from xdream.records import atomic_write, continue_command, continue_how
from xdream.rig import formats, protocol
from xdream.rig.section import RigSection, channel_groups
from xdream.scorers.base import Scorer
from xdream.types import Images, Scores

STATE_VERSION = 1

STATUS_INTERVAL = 5.0
"""Seconds between rewrites of ``rig/status.json`` while xdream waits for a response: its
``updated`` advances while xdream is alive, and stands still once xdream is gone."""

_HOST = socket.gethostname()

COUNTS = ("timeouts", "late", "skipped_files", "duplicates", "nan_blocks")
"""What ``rig/status.json`` counts (the journal's ``counts``): blocks timed out, responses
accepted late, files skipped, second responses, and responses with no finite value at all
(NaN for every stimulus: a lost electrode, a crashed spike sorter)."""

_WAIT = "perhaps still being written"
"""What :meth:`RigScorer._accept` returns (this object) for a response not yet accepted."""


class RigPaused(XDreamError):
    """A block got no response within the timeout and ``on_timeout = "pause"``."""

    exit_status = 3
    """The ``xdream`` command's exit status for a paused run (bad input's is 2): a wrapper
    script (a SLURM job) tells "resume once the rig is back" from "fix the config"."""


@functools.cache
def _pool() -> ThreadPoolExecutor:
    """Worker threads for encoding and file I/O (both release the GIL)."""
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))


def _backup_images(dest: Path, paths: list[Path], encoded: list[bytes]) -> None:
    """Copies of a block's stimuli in ``dest``, each written whole or not at all (a copy cut
    short by a kill is made again on resume: :meth:`RigScorer._finish_written`)."""
    for path, data in zip(paths, encoded):
        copy = dest / path.name
        if not _same_size(copy, len(data)):
            protocol.write_atomically(copy, data)


def _same_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def _now() -> float:
    return time.time()


def _iso(t: float | None) -> str | None:
    return None if t is None else _dt.datetime.fromtimestamp(t).isoformat(timespec="milliseconds")


def _columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` writes to: ``COLUMNS`` where set, else that
    terminal's own (not stdout's, which may go to a file), else 100."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, OSError, ValueError):  # no file descriptor, or no terminal
            columns = 100
    return columns


class RigScorer(Scorer):
    """Scores images by handing them to a recording rig through files (spec §9).

    >>> from xdream.rig import RigScorer, RigSection
    >>> scorer = RigScorer(RigSection(write_dir="/rig/stimuli", block_size=20))  # doctest: +SKIP

    Used by :class:`~xdream.experiment.Experiment`, which calls :meth:`bind` with the run
    folder (where the journal, status file, log and backups live) before the first block.
    """

    records_in_background = False  # the journal remembers one answered generation: see _begin

    def __init__(
        self,
        params: RigSection | None = None,
        seed: int | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.params = params or RigSection()
        p = self.params
        formats.load_plugins(p.plugins)
        self.image_writer = formats.IMAGE_WRITERS.get(p.image_format)
        if p.response_format != "auto":
            formats.READERS.get(p.response_format)
        self.groups = channel_groups(p.channels)
        self.seed = p.seed if p.seed is not None else seed
        self.stderr = stderr if stderr is not None else sys.stderr
        self.run_dir: Path | None = None
        self.last_extra: dict[str, npt.NDArray[Any]] | None = None
        self.last_clean = None
        self.state: dict[str, Any] = {}
        self._rng = make_rng(self.seed)
        self._encoded: dict[int, list[Future[bytes]]] = {}
        self._pending: list[Future[None]] = []
        self._idle: list[Callable[[], None]] = []  # the experiment's bookkeeping (run_when_idle)
        self._prepared = False  # prepare() ran for the generation score() shows next
        self._dirty = False  # a response accepted since the journal was last written
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}  # name -> (sig, since)
        # blocks whose response file waits to settle: when xdream first saw it unchanged
        self._settling: dict[int, float] = {}
        self._logged: set[str] = set()  # what this session has logged (once each)
        # block -> {response file skipped this session: why}, for the timeout's message
        self._rejected: dict[int, dict[str, str]] = {}
        self._counted: set[str] = set()  # odd files counted and backed up (state["counted"])
        # the block a resumed run may have written before a kill, unjournaled: a response to
        # it that is there is its answer (see _ensure_written); None once it is written
        self._unjournaled: int | None = None
        self._awaited: dict[str, Any] | None = None  # the block being waited for
        self._last_line = 0.0
        self._line_shown = False
        self._line_width = 0  # the waiting line's, as last drawn
        # the experiment folder check_folder refused last (None: it did not, or bind came):
        # a finished run resumed without its share, whose close() says so (_say_finished)
        self._refused: Path | None = None

    # ------------------------------------------------------------------ set-up
    def check_folder(self, folder: Path) -> None:
        """Refuse, writing nothing, what :meth:`bind` would refuse for the experiment folder
        ``folder``: an absolute ``write_dir`` or ``score_dir`` that is not there (a share not
        mounted) and, for a run without a rig journal yet (a new one), block files of another
        session in them. :class:`~xdream.experiment.Experiment` calls it before it makes the
        run folder (or writes in a resumed one), so a refused run leaves nothing behind.

        The resume of a run whose budget is spent goes on without :meth:`bind` where this
        refuses (nothing is left to show): :meth:`close` then says in the run's
        ``rig/status.json`` that it finished, and writes nothing else."""
        self._refused = Path(folder)
        self._check_folder(Path(folder))
        self._refused = None

    def _check_folder(self, folder: Path) -> None:
        refuse_missing_folders(self.params)
        journal = Path(folder) / "rig" / "state.json"
        if not journal.exists():
            refuse_leftovers(self.params, folder)
            return
        try:
            state = json.loads(journal.read_text())
        except (OSError, ValueError):  # bind says what is wrong with it
            return
        if isinstance(state, dict):
            refuse_unwritten_blocks(self.params, folder, state)

    def bind(self, folder: Path) -> None:
        """Use ``folder`` (the experiment folder) for the journal, status, log and backups."""
        self._refused = None
        self.run_dir = Path(folder)
        self.rig_dir = self.run_dir / "rig"
        self.write_dir = self._folder(self.params.write_dir)
        self.score_dir = (
            self.write_dir if self.params.score_dir is None else self._folder(self.params.score_dir)
        )
        self.state_path = self.rig_dir / "state.json"
        self.status_path = self.rig_dir / "status.json"
        self.log_path = self.rig_dir / "rig.log"
        refuse_missing_folders(self.params)  # a share not mounted is not made on the local disk
        for d in (self.rig_dir, self.write_dir, self.score_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise XDreamError(f"cannot create rig folder {str(d)!r}: {err}") from None
        if self.state_path.exists():
            self._load_state()
            refuse_unwritten_blocks(self.params, self.run_dir, self.state)
            self._unjournaled = _unjournaled_block(self.state)
            self._log(f"resumed from the journal: next block {self.state['next_block']}")
            self._finish_written()
            self._finish_answered()
        else:
            self._refuse_leftovers()
            self.state = {
                "version": STATE_VERSION,
                "next_block": 0,
                "generation": -1,
                "n_channels": None,
                "orientation": None,
                "blocks": {},
                "current": None,
                "rows": [],
                "best": None,
                "last_baseline": None,
                "last_latency": None,
                "counts": dict.fromkeys(COUNTS, 0),
                "counted": [],
                "early": {},
                "writing": None,  # the block being written (see _ensure_written)
                "rng": self._rng.bit_generator.state,
            }
            self._counted = set()
            self._save()
        self._status("ready")

    def _folder(self, name: str) -> Path:
        assert self.run_dir is not None
        return _rig_folder(name, self.run_dir)

    def _refuse_leftovers(self) -> None:
        _refuse_block_files({self.write_dir, self.score_dir})

    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as err:
            raise XDreamError(
                f"cannot read the rig journal {str(self.state_path)!r}: {err}"
            ) from None
        if not isinstance(state, dict):
            raise _journal_error(self.state_path, f"it holds {_json_kind(state)}, not a mapping")
        if state.get("version") != STATE_VERSION:
            raise XDreamError(f"rig journal version {state.get('version')} is not supported")
        problem = journal_problem(state)
        if problem is None:
            try:
                self._rng.bit_generator.state = state["rng"]
            except (TypeError, ValueError, KeyError, OverflowError) as err:  # out of range
                problem = f'"rng" is not the state of a PCG64 generator ({err})'
        if problem is not None:
            raise _journal_error(self.state_path, problem)
        self.state = state
        # a journal of an earlier xdream has no "counted": its files may be counted once more
        self._counted = set(state.setdefault("counted", []))
        for counter in COUNTS:  # nor every count of this one (nan_blocks)
            state["counts"].setdefault(counter, 0)
        state.setdefault("early", {})  # nor the response files seen before their block
        if "writing" not in state:  # nor which block was being written: the one it may have
            block = _unjournaled_block(state)
            state["writing"] = None if block is None else {"block": block, "time": None}

    def _save(self, durable: bool = True) -> None:
        """Rewrite the journal atomically (and fsynced, unless ``durable`` is False)."""
        self.state["rng"] = self._rng.bit_generator.state
        self._dirty = False
        text = json.dumps(self.state, separators=(",", ":"))  # NaN as NaN: json.loads reads it
        if durable:
            with atomic_write(self.state_path, "w") as fh:
                fh.write(text)
        else:
            protocol.write_atomically(self.state_path, text.encode())

    # ------------------------------------------------------------------ the protocol
    def score(self, images: Images, ids: list[str]) -> Scores:
        """Show ``images`` block by block and return one score each (NaN = no response)."""
        self._check(images, ids)
        if not self._prepared:  # what prepare() does first, where it was not called
            self._run_idle()
        self._prepared = False
        cur = self._begin(ids)
        previous = self.state.get("previous")
        if previous is not None and cur is previous["cur"]:
            # answered before xdream stopped, the experiment's checkpoint of it not yet written
            scores = self._scores(cur, previous["rows"])
            self.last_extra = self._extra(cur, scores, previous["rows"])
            return scores
        # A plan made by prepare() is journaled with its first block's writing entry, just
        # before the files: if xdream dies before, the last journal (from before the plan)
        # plans the same blocks.
        p = self.params
        while not cur["done"]:
            for b in list(cur["blocks"]):
                blk = self.state["blocks"][str(b)]
                if blk["answered"] is None and not blk["timed_out"]:
                    if self._dirty:  # the previous block's response, journaled first
                        self._save()
                    self._ensure_written(blk, images)
                    self._await(blk, cur, images)
                    self._awaited = None
            missing = self._unanswered(cur)
            if p.require_response and missing and cur["round"] < p.max_reshows:
                cur["round"] += 1
                self._plan(cur, missing, reps=1)
                self._save()
                continue
            break
        cur["done"] = True
        scores = self._scores(cur, self.state["rows"])
        self.last_extra = self._extra(cur, scores, self.state["rows"])
        evolved = [s for s, i in zip(scores, cur["ids"]) if not i.startswith("ref_")]
        if np.isfinite(evolved).any():
            best = float(np.nanmax(evolved))
            self.state["best"] = (
                best if self.state["best"] is None else max(best, self.state["best"])
            )
        self._save()  # the last response, the generation done and its best: one durable write
        return scores

    def prepare(self, images: Images, ids: list[str]) -> None:
        """Plan the coming generation's blocks and start encoding the first block's files.

        In memory only (the experiment's checkpoint of the previous generation may not be
        written yet); :meth:`score` writes the first block and journals the plan with it. The
        plan follows from the last journal, so one made again after a crash is the same.
        """
        try:
            self._check(images, ids)
        except XDreamError:
            return  # score() raises it
        # The experiment's records of the generation before the one just scored, written
        # before this plan drops that generation from the rig journal (its "previous"): a rig
        # that answers every block at once leaves no wait to write them in, and a kill would
        # then lose that generation's responses and show it again.
        self._run_idle()
        self._prepared = True
        cur = self._begin(ids, save=False)
        for b in cur["blocks"]:
            blk = self.state["blocks"][str(b)]
            if blk["written"] is None and blk["answered"] is None and not blk["timed_out"]:
                if b not in self._encoded:
                    self._encoded = {b: self._encode(blk, images)}
                return

    def _check(self, images: Images, ids: list[str]) -> None:
        if self.run_dir is None:
            raise XDreamError(
                "RigScorer.bind(folder) must be called first (Experiment does it); it sets "
                "where the rig journal lives"
            )
        if len(images) != len(ids):
            raise XDreamError(f"{len(images)} images but {len(ids)} ids")
        for image_id in ids:
            protocol.check_image_id(image_id)

    def run_when_idle(self, task: Callable[[], None]) -> None:
        """Run ``task`` while waiting for the next response (after that block is out)."""
        self._idle.append(task)

    def _run_idle(self) -> None:
        while self._idle:
            self._idle.pop(0)()

    def start_generation(self, generation: int) -> None:
        """The experiment's generation number: it tells a new generation from a resumed one."""
        self._generation = generation

    def _begin(self, ids: list[str], save: bool = True) -> dict[str, Any]:
        generation = getattr(self, "_generation", None)
        key = hashlib.sha1(f"{generation}\n".encode() + "\n".join(ids).encode()).hexdigest()
        cur = self.state["current"]
        resumable = generation is not None or (cur is not None and not cur["done"])
        if cur is not None and cur["key"] == key and resumable:
            return cur  # the generation in flight when xdream stopped: continue it
        previous = self.state.get("previous")
        if previous is not None and previous["cur"]["key"] == key and generation is not None:
            return previous["cur"]  # answered; the experiment had not checkpointed it
        if cur is not None and not cur["done"]:
            self._log(
                f"generation {cur['generation']} was not finished and is abandoned; "
                "responses to its blocks are still recorded when they come",
                warn=True,
            )
        cur = {
            "key": key,
            "generation": self.state["generation"] + 1 if generation is None else generation,
            "ids": list(ids),
            "blocks": [],
            "round": 0,
            "done": False,
        }
        old = self.state["current"]
        # kept until the next generation is done: the experiment writes its checkpoint of a
        # generation while the rig already shows the next one (Experiment.generations)
        self.state["previous"] = (
            {"cur": old, "rows": self.state["rows"]} if old is not None and old["done"] else None
        )
        self.state["generation"] = cur["generation"]
        self.state["current"] = cur
        self.state["rows"] = []
        self._encoded = {}
        for blk in self.state["blocks"].values():
            if blk["answered"] is not None:
                blk["stimuli"] = []  # recorded; only unanswered blocks can still be matched
        self._plan(cur, list(range(len(ids))), reps=self.params.reps)
        if save:
            self._save()
        return cur

    def _plan(self, cur: dict[str, Any], indices: list[int], reps: int) -> None:
        """Split ``indices`` (shown ``reps`` times) into numbered blocks with blanks."""
        p = self.params
        order: list[int] = []
        for _ in range(reps):
            idx = np.array(indices)
            order += [int(i) for i in (self._rng.permutation(idx) if p.shuffle else idx)]
        size = p.block_size or len(indices)
        for start in range(0, len(order), size):
            chunk: list[int] = order[start : start + size] + [-1 - k for k in range(p.blanks)]
            if p.shuffle and p.blanks:
                chunk = [int(i) for i in self._rng.permutation(np.array(chunk))]
            b = self.state["next_block"]
            self.state["next_block"] = b + 1
            stimuli = []
            for m, i in enumerate(chunk):
                image_id = f"blank{-1 - i:02d}" if i < 0 else cur["ids"][i]
                kind = (
                    "blank"
                    if i < 0
                    else ("reference" if image_id.startswith("ref_") else "evolved")
                )
                name = protocol.stimulus_name(b, m, image_id, self.image_writer.extension)
                stimuli.append({"name": name, "id": image_id, "index": max(i, -1), "kind": kind})
            self.state["blocks"][str(b)] = {
                "block": b,
                "generation": cur["generation"],
                "stimuli": stimuli,
                "n_stimuli": len(stimuli),  # stimuli is emptied once answered and recorded
                "written": None,
                "answered": None,
                "timed_out": False,
                "file": None,
                "sig": None,
                "latency": None,
            }
            cur["blocks"].append(b)

    def _to_uint8(self, images: Images) -> npt.NDArray[np.uint8]:
        x = images.detach().float().cpu().clamp(0, 1)
        size = self.params.image_size
        if size is not None and x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)
        x = x.mul_(255).add_(0.5).to(torch.uint8)  # in [0.5, 255.5]: rounds, 255.5 -> 255
        return x.permute(0, 2, 3, 1).contiguous().numpy()  # (n, H, W, 3): what encoders take

    def _ensure_written(self, blk: dict[str, Any], images: Images) -> None:
        """Write a block's stimuli (again, after a crash, unless the rig has them all).

        A block written for the first time is journaled as being written (``writing``: the
        block and the time), with the response files to it already in ``score_dir``
        (``early``), in one fsynced write before its first file: a resume then knows whether
        its stimuli may exist (a kill between that write and the one that records the block
        written), and otherwise takes no response to it for its answer
        (:func:`_unjournaled_block`)."""
        first = blk["written"] is None
        self._refuse_gone_folders(blk)
        if not first and all((self.write_dir / s["name"]).exists() for s in blk["stimuli"]):
            return  # written before a crash: the rig has it
        b = blk["block"]
        if first and b != self._unjournaled:
            # written now for the first time: a response to it already there is not its answer
            # (kept: the rig's answer may replace it)
            for name, sig in self._responses_to(b):
                self._note_early(name, sig)
                self._keep_early(self.score_dir / name, name, sig)
        self._unjournaled = None
        if self._response_waiting(b):
            # answered while xdream was down (the rig may have removed the images), after the
            # journal recorded that the block was being written but before it was written
            blk["written"] = blk["written"] or self._writing_since(b) or _now()
            return
        if first:
            self.state["writing"] = {"block": b, "time": _now()}
            self._save()  # fsynced before the first file
        futures = self._encode(blk, images)
        paths = [protocol.inside(self.write_dir, s["name"]) for s in blk["stimuli"]]

        def write(path: Path, encoding: Future[bytes]) -> None:
            protocol.write_atomically(path, encoding.result())

        list(_pool().map(write, paths, futures))  # each file as soon as it is encoded
        encoded = [f.result() for f in futures]
        stem = protocol.response_stem(blk["block"])
        if self.params.manifest:
            names = "".join(s["name"] + "\n" for s in blk["stimuli"])
            protocol.write_atomically(self.write_dir / f"{stem}.txt", names.encode())
        first = blk["written"] is None
        blk["written"] = _now()
        self._save(durable=False)  # a crash before this line re-writes the same files
        self._log(
            f"block {blk['block']} {'written' if first else 're-written'}: "
            f"{len(blk['stimuli'])} stimuli (generation {blk['generation']})"
        )
        if self.params.backup:  # in the background: the rig already has its files
            dest = self.rig_dir / "stimuli" / stem
            dest.mkdir(parents=True, exist_ok=True)
            self._background(_backup_images, dest, paths, encoded)

    def _writing_since(self, block: int) -> float | None:
        """When the journal recorded that ``block`` was being written (None: it did not, or a
        journal of an earlier xdream, which had no such entry, converted by _load_state)."""
        writing = self.state.get("writing")
        if writing is None or writing["block"] != block:
            return None
        return None if writing["time"] is None else float(writing["time"])

    def _background(self, fn: Callable[..., None], *args: Any) -> None:
        """File I/O that nothing waits for (backups), in a worker thread; close() joins it."""
        self._pending = [j for j in self._pending if not j.done()]
        self._pending.append(_pool().submit(fn, *args))

    def _encode(self, blk: dict[str, Any], images: Images) -> list[Future[bytes]]:
        """The block's image files being encoded in worker threads (the encoders release the
        GIL); the next block is started while the rig works on the current one. Only the
        block's own images are converted to 8 bits."""
        cached = self._encoded.pop(blk["block"], None)
        if cached is not None:
            return cached
        index = sorted({s["index"] for s in blk["stimuli"] if s["index"] >= 0})
        pixels = dict(zip(index, self._to_uint8(images[index]))) if index else {}
        size = self.params.image_size
        shape = (size, size, 3) if size is not None else (*images.shape[-2:], 3)
        blank = np.full(shape, int(self.params.blank_value * 255 + 0.5), np.uint8)
        arrays = [blank if s["index"] < 0 else pixels[s["index"]] for s in blk["stimuli"]]
        return [_pool().submit(self.image_writer.encode, a) for a in arrays]

    def _refuse_gone_folders(self, blk: dict[str, Any]) -> None:
        """Stop the run (resumable) where ``write_dir`` or ``score_dir`` is gone since
        :meth:`bind` made or found it: the rig's share was unmounted, say. Stimuli written now
        would fail (or go where the rig never looks), and a block timed out for it would be
        skipped although the rig may have answered; ``xdream resume`` refuses a missing share
        until it is mounted again, then awaits the same block."""
        for key, path in (("write_dir", self.write_dir), ("score_dir", self.score_dir)):
            if path.is_dir():
                continue
            assert self.run_dir is not None
            given = Path(getattr(self.params, key) or self.params.write_dir).expanduser()
            fix = (
                "is the rig's share still mounted? Mount it again"
                if given.is_absolute()
                else "it was moved or deleted (a resume makes it again)"
            )
            raise XDreamError(
                f"[rig] {key} {str(path)!r} is gone while block {blk['block']} "
                f"{'was awaited' if blk['written'] is not None else 'was to be written'}: "
                f"{fix}, then continue with {continue_how(self.run_dir)} (block "
                f"{blk['block']} is awaited again)"
            )

    def _response_waiting(self, block: int) -> bool:
        return bool(self._responses_to(block))

    def _responses_to(self, block: int) -> list[tuple[str, tuple[int, int]]]:
        """The response files to ``block`` in ``score_dir`` with their (size, mtime)
        signature, but those there before the block was written (:meth:`_note_early`)."""
        stem = protocol.response_stem(block)
        found = []
        for name in os.listdir(self.score_dir):
            if name.startswith(stem + ".") and not name.endswith(".txt"):
                try:
                    st = os.stat(self.score_dir / name)
                except OSError:  # gone meanwhile
                    continue
                sig = (st.st_size, st.st_mtime_ns)
                if not self._early(name, sig):
                    found.append((name, sig))
        return found

    def _note_early(self, name: str, sig: tuple[int, int]) -> None:
        """Remember (journaled: ``early``) that the response file ``name`` was in
        ``score_dir``, as it is now (``sig``), before xdream wrote its block: a leftover, or
        another session's on the same share. It is never taken as that block's answer; a
        file the rig writes (or rewrites) after the block's stimuli has another signature."""
        sigs = self.state["early"].setdefault(name, [])
        if list(sig) not in sigs:
            sigs.append(list(sig))
            self._dirty = True  # journaled before the block is written (see score)

    def _early(self, name: str, sig: tuple[int, int]) -> bool:
        return list(sig) in self.state["early"].get(name, [])

    def _await(self, blk: dict[str, Any], cur: dict[str, Any], images: Images) -> None:
        p = self.params
        start = time.monotonic()
        warned_at = 0.0
        self._awaited = blk  # until it is answered or times out: a stop names it (stopped)
        self._status("waiting", blk)
        beat = time.monotonic()
        prepared = False
        while True:
            looked = time.monotonic() - start
            self._scan()
            if blk["answered"] is not None:
                return  # journaled by score(): before the next block, or with the generation
            if time.monotonic() - beat >= STATUS_INTERVAL:  # alive, and the counts so far
                beat = time.monotonic()
                with contextlib.suppress(OSError):  # a watcher's file: the run goes on without
                    self._status("waiting", blk)
            if self._dirty:  # a late response to an earlier block
                self._save()
            if not prepared:  # encode the next block of the generation while the rig works
                prepared = True
                nxt = [b for b in cur["blocks"] if self.state["blocks"][str(b)]["written"] is None]
                if nxt:
                    self._encoded = {
                        nxt[0]: self._encode(self.state["blocks"][str(nxt[0])], images)
                    }
            if self._idle:  # the experiment's bookkeeping, one task per look at score_dir
                self._idle.pop(0)()
                continue
            waited = time.monotonic() - start
            # a response that came in time but waits to settle is not timed out before then
            # (it is accepted at the first look once it has settled, however late that look)
            seen_at = self._settling.get(blk["block"])
            settling = seen_at is not None and seen_at - start <= p.timeout
            # timed out only by a look at score_dir after the deadline: work between looks
            # (encoding the next block, bookkeeping) does not time out a file already there
            if waited > p.timeout and not settling and looked > p.timeout:
                if p.on_timeout != "wait":  # not skipped, nor paused as unanswered: said so
                    self._refuse_gone_folders(blk)
                skipped = self._skipped(blk)
                if p.on_timeout == "skip":
                    blk["timed_out"] = True
                    self.state["counts"]["timeouts"] += 1
                    self._save()
                    self._log(
                        f"no response to block {blk['block']} within {p.timeout:g} s: its "
                        f"{len(blk['stimuli'])} stimuli count as no response (a late file is "
                        f"still recorded){f'; skipped {skipped}' if skipped else ''}",
                        warn=True,
                    )
                    self._status("timed out", blk)
                    return
                if p.on_timeout == "pause":
                    self._status("paused", blk)
                    self._log(f"no response to block {blk['block']}: paused", warn=True)
                    raise RigPaused(self._pause_message(blk, skipped))
                if waited - warned_at > p.timeout:
                    warned_at = waited
                    self.state["counts"]["timeouts"] += 1
                    self._log(
                        f"still waiting for the response to block {blk['block']} after "
                        f"{waited:.0f} s (on_timeout = 'wait')"
                        f"{f'; skipped {skipped}' if skipped else ''}",
                        warn=True,
                    )
            self._terminal(blk, waited)
            time.sleep(p.poll_interval)

    def _skipped(self, blk: dict[str, Any]) -> str:
        """The response files to ``blk`` that this session skipped and that are still in
        ``score_dir``, each with why (``""`` if none): the rig answered, but not readably."""
        rejected = self._rejected.get(blk["block"], {})
        return "; ".join(
            f"{name} ({why})" for name, why in rejected.items() if (self.score_dir / name).exists()
        )

    def _pause_message(self, blk: dict[str, Any], skipped: str) -> str:
        """What a pause says: which block, and how to go on (for a response that came and was
        skipped, which file and why, and what gets the block answered: a resume alone would
        skip the same file again)."""
        b = blk["block"]
        then = f"`xdream resume {self.run_dir}` (block {b} is awaited again)"
        head = f"no response to block {b} in {str(self.score_dir)!r} within "
        head += f"{self.params.timeout:g} s; paused"
        if not skipped:
            return f"{head}. Check the rig, then continue with {then}"
        assert self.run_dir is not None
        left = [w for n, w in self._rejected.get(b, {}).items() if (self.score_dir / n).exists()]
        if left and all(why.startswith("there before") for why in left):  # no answer of the rig's
            kept = (
                f" (a copy is in {str(self.rig_dir / 'responses')!r})" if self.params.backup else ""
            )
            return (
                f"{head}: xdream skipped {skipped}: a leftover, or another session's on the same "
                f"share, and the rig has not answered block {b} since. Move that file "
                f"aside{kept} and have the rig answer block {b} (restart a rig, `xdream "
                "rig-sim` say, that passed over the block because a response file was there), "
                f"then continue with {then}"
            )
        config = self.run_dir / "config.yaml"
        where = f" in {str(config)!r}" if config.exists() else ""
        copy = f" (a malformed one is copied to {str(self.rig_dir / 'responses')!r})"
        backed_up = self.params.backup and "(malformed: " in skipped
        if blk.get("generation") == 0:  # nothing recorded yet: the run starts again
            fix_rig = (
                f"if [rig] is wrong, fix it{where} (the run starts again from its first generation)"
            )
        else:  # resume refuses other [rig] keys once a generation is recorded
            fix_rig = (
                "[rig] keeps its values once a generation is recorded (but match and the "
                "waiting keys), so if the file's format or channels differ from what [rig] "
                "asks for, have the rig write (or convert the file to) what it asks for"
            )
        return (
            f"{head}: the rig answered, but xdream skipped {skipped}. If the rig wrote it wrong, "
            f"fix the rig, move the file aside{copy if backed_up else ''} and have the "
            f"rig write block {b}'s response again; {fix_rig}. Then continue with {then}"
        )

    # ------------------------------------------------------------------ reading responses
    def _scan(self) -> None:
        """Look at every file in ``score_dir`` once; accept complete responses."""
        try:
            entries = list(os.scandir(self.score_dir))
        except OSError as err:
            self._log_once(f"dir:{err}", f"cannot list {str(self.score_dir)!r}: {err}")
            return
        same_dir = self.score_dir == self.write_dir
        for entry in entries:
            name = entry.name
            if protocol.is_temporary(name):
                continue
            m = protocol.RESPONSE_NAME.match(name)
            if same_dir and (protocol.STIMULUS_NAME.match(name) or (m and m.group(2) == "txt")):
                continue  # our own stimuli and manifests
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:
                continue
            path = self.score_dir / name
            reader = formats.reader_for(path, self.params.response_format) if m else None
            if m is None or reader is None:
                why = self._other_format(path) if m else None
                if why is not None and m is not None:  # a response, in another format
                    self._rejected.setdefault(int(m.group(1)), {})[name] = why
                self._skip_file(name, "foreign", why or "it is not a block{NNN} response file")
                continue
            block = int(m.group(1))
            blk = self.state["blocks"].get(str(block))
            sig = (st.st_size, st.st_mtime_ns)
            if blk is None or blk["written"] is None:
                if block != self._unjournaled:  # written before a kill, perhaps: answered then
                    self._note_early(name, sig)
                self._skip_file(
                    name,
                    "foreign",
                    "xdream did not write that block (yet); it is not taken as its answer",
                )
                continue
            if self._early(name, sig):
                self._skip_early(blk, path, name, sig)
                continue
            if blk["answered"] is not None:
                if blk["file"] == name and tuple(blk["sig"]) == sig:
                    continue
                if f"bad:{name}:{sig}" in self._counted:
                    continue  # skipped as malformed before another file answered the block
                key = f"dup:{name}:{sig}"
                if self._count_once(key, "duplicates"):
                    self._backup_response(path, f"{name}.duplicate-{st.st_mtime_ns}")
                    self._save()
                self._log_once(
                    key,
                    f"{name}: block {blk['block']} was already answered by {blk['file']}; "
                    "this second response is ignored (backed up)",
                    warn=True,
                )
                continue
            seen = self._seen.get(name)
            bad = f"bad:{name}:{sig}"
            if seen is None or seen[0] != sig:
                first_look, since = True, time.monotonic()
                self._seen[name] = (sig, since)
            elif bad in self._logged:
                continue
            else:
                first_look, since = False, seen[1]
            try:  # complete only if unchanged over poll_interval: read while that passes
                response: formats.Response | None = reader.read(path)
                problem = None
            except Exception as err:  # a plug-in reader may raise anything: log, never crash
                response, problem = None, f"{type(err).__name__}: {err}"
            if first_look:
                time.sleep(max(0.0, since + self.params.poll_interval - time.monotonic()))
            try:  # unchanged since before the read, so what was read is what is there
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != sig:
                continue  # still being written: looked at again at the next scan
            settled = time.monotonic() - since >= self.params.settle
            if response is not None:
                try:
                    problem = self._accept(blk, response, name, sig, settled)
                except Exception as err:  # a plug-in's odd Response: log, never crash
                    problem = f"{type(err).__name__}: {err}"
            if problem is _WAIT or (problem is not None and not settled):
                # accepted once it settles, or then skipped as malformed: either way the block
                # is not timed out before, so a timeout or pause can name the skipped file
                self._settling[blk["block"]] = since
                continue
            self._settling.pop(blk["block"], None)
            if problem is None:
                continue
            if settled:  # read again by a resumed run (a plug-in or [rig] may have changed)
                if self._count_once(bad, "skipped_files"):
                    self._backup_response(path, f"{name}.malformed-{st.st_mtime_ns}")
                    self._save()
                self._log_once(bad, f"{name} skipped as malformed: {problem}", warn=True)
                why = f"malformed: {problem}"
                self._rejected.setdefault(blk["block"], {})[name] = why

    def _skip_early(self, blk: dict[str, Any], path: Path, name: str, sig: tuple[int, int]) -> None:
        """Skip ``name``, a response file to ``blk`` that was there before ``blk`` was written
        (:meth:`_note_early`): counted once (with the same count as when it was first seen),
        backed up once, and named by the block's timeout or pause while the block waits."""
        b = blk["block"]
        why = f"there before block {b} was written (not its answer)"
        if blk["answered"] is None:
            self._rejected.setdefault(b, {})[name] = why
        if self._keep_early(path, name, sig):
            self._save()
        wait = "" if blk["answered"] is not None else "; waiting for the rig's response to it"
        self._log_once(
            f"early:{name}:{sig}",
            f"{name} in {str(self.score_dir)!r} skipped: {why}{wait}",
            warn=True,
        )

    def _keep_early(self, path: Path, name: str, sig: tuple[int, int]) -> bool:
        """Count (once per name, as when it was first seen) and back up (once) ``name``, a
        response file there before its block was written; False if both were done before."""
        counted = self._count_once(f"foreign:{name}", "skipped_files")
        if self._mark_once(f"early:{name}:{sig[0]}:{sig[1]}"):
            self._backup_response(path, f"{name}.early-{sig[1]}")
            return True
        return counted

    def _other_format(self, path: Path) -> str | None:
        """Why ``path``, named as a response, is skipped when another reader than the one
        ``[rig] response_format`` names would read it (None if none would)."""
        fmt = self.params.response_format
        other = formats.reader_for(path, "auto") if fmt != "auto" else None
        if other is None:
            return None
        return (
            f"it is a response in the {other.name!r} format ({path.suffix}), but [rig] "
            f"response_format = {fmt!r}: set response_format to 'auto' or {other.name!r}"
        )

    def _skip_file(self, name: str, kind: str, why: str) -> None:
        self._count_once(f"{kind}:{name}", "skipped_files")  # journaled with the next save
        self._log_once(
            f"{kind}:{name}", f"{name} in {str(self.score_dir)!r} ignored: {why}", warn=True
        )

    def _count_once(self, key: str, counter: str) -> bool:
        """Count the skipped or duplicate file ``key`` in ``counts[counter]``; False if it was
        counted before. Once per run: the keys are journaled with the counts (``counted``), so a
        resumed run neither counts nor backs up a file still in ``score_dir`` again (each
        session logs it once)."""
        if not self._mark_once(key):
            return False
        self.state["counts"][counter] += 1
        return True

    def _mark_once(self, key: str) -> bool:
        """Journal ``key`` in ``counted``; False if it was there (done before, once per run)."""
        if key in self._counted:
            return False
        self._counted.add(key)
        self.state["counted"].append(key)
        return True

    def _accept(
        self,
        blk: dict[str, Any],
        response: formats.Response,
        fname: str,
        sig: tuple[int, int],
        settled: bool = True,
    ) -> str | None:
        """Match a response to the block's stimuli and journal it; a problem as text, or None.

        A response that may still be being written (one that answers only some of the block's
        stimuli, or that its reader marks incomplete; every one with ``settle_always``) is
        accepted only once ``settled`` (the file unchanged for ``settle`` seconds); before that
        :data:`_WAIT` is returned.
        """
        values = response.values
        n_files = len(blk["stimuli"])
        warnings = list(response.warnings)
        orientation = response.orientation
        if response.by_position:  # row k answers the k-th sorted file: one row per file
            try:
                values, orientation, more = formats.orient_scores(
                    values[:, 0] if orientation == "vector" else values,
                    n_files,
                    f"block {blk['block']} has {n_files} stimuli (without 'indices', row k "
                    "answers the k-th of the block's file names in sorted order; add 'indices' "
                    "for a partial answer)",
                )
            except formats.MalformedResponse as err:
                return str(err)
            warnings += more
        elif response.indices is not None:
            bad = [int(i) for i in response.indices if not 0 <= i < n_files]
            if bad:
                return (
                    f"index {bad[0]} is out of range for block {blk['block']}'s {n_files} files; "
                    f"'indices' are 0-based (0 to {n_files - 1}; from MATLAB, subtract 1)"
                )
        if orientation == "square":  # the file cannot show it: the rig's earlier files did
            known = self.state.get("orientation")
            if known == "transposed":
                values = np.ascontiguousarray(values.T)
                warnings.append(formats.SQUARE_AS_BEFORE)
            elif known is None:
                warnings.append(formats.SQUARE_WARNING)
        n_channels = self.state["n_channels"]
        if n_channels is not None and values.shape[1] != n_channels:
            return f"{values.shape[1]} channels, but earlier responses had {n_channels}"
        if self.groups is not None:
            top = max(max(g) for g in self.groups)
            if top >= values.shape[1]:
                return (
                    f"[rig] channels asks for channel {top} (0-based) but the file has "
                    f"{values.shape[1]} channel{'s' if values.shape[1] != 1 else ''}"
                )
        if response.names is not None:
            names: list[str] = list(response.names)
        else:
            files = sorted(s["name"] for s in blk["stimuli"])
            assert response.indices is not None
            rows = range(n_files) if response.by_position else response.indices
            names = [files[i] for i in rows]
        by_name = {s["name"]: s for s in blk["stimuli"]}
        by_id: dict[str, dict[str, Any]] = {}
        for s in blk["stimuli"]:
            by_id.setdefault(s["id"], s)
        matched: list[tuple[dict[str, Any], npt.NDArray[np.float64]]] = []
        unmatched: list[str] = []
        rejected: list[str] = []
        for name, row in zip(names, values):
            if protocol.escapes(name) and self.params.match == "strict":
                rejected.append(name)
                continue
            stim = by_name.get(name)
            if stim is None and self.params.match == "loose":
                if "\x00" in name:
                    rejected.append(name)
                    continue
                stim = by_id.get(protocol.loose_key(name))
            if stim is None:
                unmatched.append(name)
            else:
                matched.append((stim, row))
        in_folders = [n for n in rejected if PureWindowsPath(n).name in by_name]
        if not matched and in_folders:
            return (
                f"its stimulus names hold folders (first: {in_folders[0]!r}); write the bare "
                f"file names as listed in {protocol.response_stem(blk['block'])}.txt (in "
                "MATLAB stimulusID{k}, not fullfile(writeDir, stimulusID{k})), or set [rig] "
                'match = "loose", which ignores folders, extension and the block{NNN}_{MMM}_ '
                "prefix and matches by image id"
            )
        if not matched:
            return (
                f"none of its {len(names)} stimulus names matches block {blk['block']}'s files "
                f"(first: {names[0]!r}; match = {self.params.match!r})"
                if names
                else "it holds no responses"
            )
        got = {stim["name"] for stim, _ in matched}
        got_ids = {stim["id"] for stim, _ in matched} if self.params.match == "loose" else set()
        missing = [
            s["name"] for s in blk["stimuli"] if s["name"] not in got and s["id"] not in got_ids
        ]
        if (missing or not response.complete or self.params.settle_always) and not settled:
            return _WAIT  # perhaps a file still being written: accepted once it settles
        now = _now()
        cur = self.state["current"]
        in_current = cur is not None and blk["generation"] == cur["generation"] and not cur["done"]
        late = bool(blk["timed_out"]) or not in_current
        for stim, row in matched:
            self.state["rows"].append(
                {
                    "shown_generation": blk["generation"],
                    "block": blk["block"],
                    "stimulus": stim["name"],
                    "id": stim["id"],
                    "kind": stim["kind"],
                    "index": stim["index"] if in_current else -1,
                    "values": [float(v) for v in row],
                    "received": now,
                    "late": late,
                    "used": in_current and stim["index"] >= 0,
                }
            )
        self.state["n_channels"] = int(values.shape[1])
        if orientation in ("documented", "transposed"):
            self.state["orientation"] = orientation  # for a later square file (journaled)
        blk["answered"] = now
        blk["file"] = fname
        blk["sig"] = list(sig)
        blk["latency"] = now - blk["written"]
        self.state["last_latency"] = blk["latency"]
        if late:
            self.state["counts"]["late"] += 1
        self._dirty = True  # journaled before anything else is shown (see score)
        if self.params.backup:  # a copy for the lab, once the next block is out
            self._idle.append(
                functools.partial(self._backup_response, self.score_dir / fname, fname)
            )
        self._log(
            f"{fname}: {len(matched)} responses for block {blk['block']} in "
            f"{blk['latency']:.3f} s{' (late)' if late else ''}",
            line=True,
        )
        if missing:
            self._log(
                f"{fname}: {len(missing)} of the block's {len(blk['stimuli'])} stimuli got no "
                f"response (NaN), e.g. {missing[0]!r}",
                warn=True,
            )
        with np.errstate(invalid="ignore"):  # inf - inf in a mean: no response either
            answered = any(np.isfinite(self._select(row)) for _, row in matched)
        if not answered:
            self.state["counts"]["nan_blocks"] += 1
            which = "" if self.groups is None else " in the channels that [rig] channels selects"
            self._log(
                f"{fname}: all {len(matched)} responses hold NaN (or infinite) values{which}, so "
                f"no stimulus of block {blk['block']} got a response; check the rig (an "
                "electrode, the spike sorting)",
                warn=True,
            )
        for warning in warnings:
            self._log_once(f"note:{warning}", f"{fname}: {warning}", warn=True)
        if rejected:
            self._log(
                f"{fname}: {len(rejected)} stimulus name(s) reaching outside the folders "
                f"rejected, e.g. {rejected[0]!r}",
                warn=True,
            )
        if unmatched:
            self._log(
                f"{fname}: {len(unmatched)} stimulus name(s) match no file of block "
                f"{blk['block']}, e.g. {unmatched[0]!r}",
                warn=True,
            )
        if self.params.cleanup:  # once the next block is out
            self._idle.append(functools.partial(self._cleanup, self._shown(blk)))
        return None

    def _shown(self, blk: dict[str, Any]) -> list[str]:
        """The files xdream wrote in ``write_dir`` for ``blk`` (its stimuli and manifest)."""
        shown = [str(s["name"]) for s in blk["stimuli"]]
        if self.params.manifest:
            shown.append(protocol.response_stem(blk["block"]) + ".txt")
        return shown

    def _cleanup(self, names: list[str]) -> None:
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(self.write_dir / name)

    def _finish_written(self) -> None:
        """Back up the images of blocks written before xdream stopped or was killed, where the
        background copy had not finished (a kill in the milliseconds after a block went out):
        from ``write_dir``, as long as the block's stimuli are listed (until its response is
        recorded) and the rig has not removed them. A copy that is there, whole, is kept."""
        if not self.params.backup:
            return
        for blk in self.state["blocks"].values():
            if blk["written"] is None or not blk["stimuli"]:
                continue
            dest = self.rig_dir / "stimuli" / protocol.response_stem(blk["block"])
            for stimulus in blk["stimuli"]:
                path = protocol.inside(self.write_dir, stimulus["name"])
                with contextlib.suppress(FileNotFoundError):  # removed by the rig: not ours
                    if not _same_size(dest / path.name, path.stat().st_size):
                        dest.mkdir(parents=True, exist_ok=True)
                        try:
                            protocol.write_atomically(dest / path.name, path.read_bytes())
                        except OSError as err:
                            self._log(f"could not back up {path.name}: {err}", warn=True)
                            return

    def _finish_answered(self) -> None:
        """Do what accepting a response leaves until the next block is out (backing the
        response up, removing the block's stimuli), where xdream stopped or was killed before:
        only this session's memory held those tasks. From the journal, so again at each
        resume: a backup of the accepted file that is there is not made again (one cut short is
        made again), and a block's stimuli are listed until they were removed. The response's
        values are in the journal either way."""
        for blk in self.state["blocks"].values():
            if blk["answered"] is None or blk["file"] is None:
                continue
            if self.params.backup and not self._backed_up(blk):
                path = self.score_dir / blk["file"]
                with contextlib.suppress(OSError):  # gone or rewritten: nothing left to copy
                    st = os.stat(path)
                    if [st.st_size, st.st_mtime_ns] == blk["sig"]:
                        self._backup_response(path, blk["file"])
            if self.params.cleanup and blk["stimuli"]:  # emptied once recorded (tasks done)
                self._cleanup(self._shown(blk))

    def _backed_up(self, blk: dict[str, Any]) -> bool:
        """Whether the backup of ``blk``'s accepted response file is there, whole."""
        try:
            return (self.rig_dir / "responses" / blk["file"]).stat().st_size == blk["sig"][0]
        except OSError:
            return False

    def _backup_response(self, path: Path, name: str) -> None:
        if not self.params.backup:
            return
        dest = self.rig_dir / "responses"
        dest.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(path, dest / name)
        except OSError as err:
            self._log(f"could not back up {path.name}: {err}", warn=True)

    # ------------------------------------------------------------------ scores and records
    def _select(self, values: npt.NDArray[np.float64]) -> float:
        if self.groups is None:
            return float(np.mean(values))
        return float(np.mean([np.mean(values[g]) for g in self.groups]))

    def _row_score(self, row: dict[str, Any]) -> float:
        """A presentation's score before baselines; NaN = the rig reported no response."""
        return self._select(np.array(row["values"], dtype=np.float64))

    def _unanswered(self, cur: dict[str, Any]) -> list[int]:
        """Images with no finite response yet (a NaN from the rig is no response)."""
        got = {
            r["index"] for r in self.state["rows"] if r["used"] and np.isfinite(self._row_score(r))
        }
        return [i for i in range(len(cur["ids"])) if i not in got]

    def _baselines(self, cur: dict[str, Any], rows: list[dict[str, Any]]) -> dict[int, float]:
        """Each block's mean finite blank response; a block without one takes the mean of the
        generation's finite blanks (or the last generation's baseline)."""
        blanks: dict[int, list[float]] = {}
        for r in rows:
            if r["kind"] == "blank" and r["shown_generation"] == cur["generation"]:
                score = self._row_score(r)
                if np.isfinite(score):
                    blanks.setdefault(r["block"], []).append(score)
        out = {b: float(np.mean(v)) for b, v in blanks.items()}
        every = [x for v in blanks.values() for x in v]
        fallback = float(np.mean(every)) if every else self.state["last_baseline"]
        if fallback is not None:
            self.state["last_baseline"] = fallback
        for b in cur["blocks"]:
            if b not in out and fallback is not None:
                out[b] = float(fallback)
        return out

    def _scores(self, cur: dict[str, Any], rows: list[dict[str, Any]]) -> Scores:
        n = len(cur["ids"])
        sums, counts = np.zeros(n), np.zeros(n)
        base = self._baselines(cur, rows) if self.params.subtract_blank else {}
        if self.params.subtract_blank and not base and "nobase" not in self._logged:
            self._log_once(
                "nobase", "no blank responses yet: scores are not baseline-subtracted", warn=True
            )
        for r in rows:
            if r["used"]:
                s = self._row_score(r) - base.get(r["block"], 0.0)
                if np.isfinite(s):  # NaN = no response: the mean is over answered showings
                    sums[r["index"]] += s
                    counts[r["index"]] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    def _extra(
        self, cur: dict[str, Any], scores: Scores, rows: list[dict[str, Any]]
    ) -> dict[str, npt.NDArray[Any]]:
        g = cur["generation"]
        out: dict[str, npt.NDArray[Any]] = {}
        if rows:
            values = np.array([r["values"] for r in rows], dtype=np.float64)
            groups = self.groups or [list(range(values.shape[1]))]
            out.update(
                {
                    "rig/presentations/generation": np.full(len(rows), g, np.int32),
                    "rig/presentations/shown_generation": np.array(
                        [r["shown_generation"] for r in rows], np.int32
                    ),
                    "rig/presentations/block": np.array([r["block"] for r in rows], np.int32),
                    "rig/presentations/stimulus": np.array([r["stimulus"] for r in rows], str),
                    "rig/presentations/image_id": np.array([r["id"] for r in rows], str),
                    "rig/presentations/kind": np.array([r["kind"] for r in rows], str),
                    "rig/presentations/index": np.array([r["index"] for r in rows], np.int32),
                    "rig/presentations/response": values,
                    "rig/presentations/channel_scores": np.array(
                        [[np.mean(v[grp]) for grp in groups] for v in values], np.float64
                    ),
                    "rig/presentations/score": np.array(
                        [self._select(v) for v in values], np.float64
                    ),
                    "rig/presentations/late": np.array([r["late"] for r in rows], np.int8),
                    "rig/presentations/used": np.array([r["used"] for r in rows], np.int8),
                    "rig/presentations/received": np.array(
                        [r["received"] for r in rows], np.float64
                    ),
                }
            )
        blocks = [self.state["blocks"][str(b)] for b in cur["blocks"]]
        base = self._baselines(cur, rows) if self.params.blanks else {}
        nan = float("nan")

        def status(b: dict[str, Any]) -> str:
            if b["answered"] is None:
                return "no response"
            return "answered late" if b["timed_out"] else "answered"

        out.update(
            {
                "rig/blocks/generation": np.full(len(blocks), g, np.int32),
                "rig/blocks/block": np.array([b["block"] for b in blocks], np.int32),
                "rig/blocks/n_stimuli": np.array(
                    [b.get("n_stimuli", len(b["stimuli"])) for b in blocks], np.int32
                ),
                "rig/blocks/written": np.array([b["written"] or nan for b in blocks], np.float64),
                "rig/blocks/answered": np.array([b["answered"] or nan for b in blocks], np.float64),
                "rig/blocks/latency": np.array(
                    [nan if b["latency"] is None else b["latency"] for b in blocks], np.float64
                ),
                "rig/blocks/status": np.array([status(b) for b in blocks], str),
                "rig/blocks/response_file": np.array([b["file"] or "" for b in blocks], str),
                "rig/blocks/baseline": np.array(
                    [base.get(b["block"], nan) for b in blocks], np.float64
                ),
            }
        )
        return out

    # ------------------------------------------------------------------ operator output
    def _status(
        self,
        state: str,
        blk: dict[str, Any] | None = None,
        reason: str | None = None,
        continue_with: str | None = None,
    ) -> None:
        """Rewrite ``rig/status.json``: ``state`` (ready, waiting, timed out, paused, stopped,
        finished), ``blk`` the block it is about; for a paused or stopped run why
        (``reason``) and how to go on (``continue_with``). While xdream waits it is rewritten
        every :data:`STATUS_INTERVAL` seconds, so a watcher tells a live wait from an xdream
        that was killed (``updated``, and ``process``: the pid and host that write it)."""
        if self.run_dir is None:
            return
        counts = self.state.get("counts", {})
        blocks = self.state.get("blocks", {}).values()
        status = {
            "state": state,
            "generation": self.state.get("generation"),
            "block": None if blk is None else blk["block"],
            "waiting_for": (
                None
                if blk is None or state != "waiting"
                else f"{protocol.response_stem(blk['block'])}.*"
            ),
            "waiting_since": None if blk is None else _iso(blk["written"]),
            "reason": reason,
            "continue_with": continue_with,
            "last_latency_s": self.state.get("last_latency"),
            "best_score": self.state.get("best"),
            "blocks_written": sum(b["written"] is not None for b in blocks),
            "blocks_answered": sum(b["answered"] is not None for b in blocks),
            **counts,
            # absolute: a rig program or `xdream rig-sim --run` reads it from another folder
            "write_dir": os.path.abspath(self.write_dir),
            "score_dir": os.path.abspath(self.score_dir),
            "process": {"pid": os.getpid(), "host": _HOST},
            "updated": _iso(_now()),  # every STATUS_INTERVAL s while waiting: xdream is alive
        }
        # no fsync: the status is for watching, the journal is what survives a crash
        protocol.write_atomically(self.status_path, (json.dumps(status, indent=2) + "\n").encode())

    def _terminal(self, blk: dict[str, Any], waited: float) -> None:
        if not self.stderr.isatty() or time.monotonic() - self._last_line < 0.25:
            return
        self._last_line = time.monotonic()
        latency = self.state.get("last_latency")
        best = self.state.get("best")
        shown = (
            f"{'-' if latency is None else f'{latency:.3f} s'}",
            f"{'-' if best is None else f'{best:.4g}'}",
            self.state["counts"]["timeouts"],
        )
        line = (
            f"rig: generation {blk['generation']}  block {blk['block']}  waiting {waited:5.1f} s "
            f"for {protocol.response_stem(blk['block'])}.*  last latency {shown[0]}  best "
            f"{shown[1]}  timeouts {shown[2]}"
        )
        # rewritten in place with a carriage return: a line longer than the terminal wraps and
        # each rewrite would start a new one, so it is said shorter (and cut) to fit; padded to
        # the width, so that nothing of a longer line before it is left on the screen
        width = max(20, _columns(self.stderr) - 1)
        if len(line) > width:
            line = (
                f"rig: gen {blk['generation']} block {blk['block']} waiting {waited:.1f} s "
                f"latency {shown[0]} best {shown[1]} timeouts {shown[2]}"
            )
        self.stderr.write("\r" + line[:width].ljust(width))
        self.stderr.flush()
        self._line_shown, self._line_width = True, width

    def _log(self, message: str, warn: bool = False, line: bool = False) -> None:
        stamp = _dt.datetime.now().isoformat(timespec="milliseconds")
        if self.run_dir is not None:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(f"{stamp} {'WARNING ' if warn else ''}{message}\n")
        if warn or (line and not self.stderr.isatty()):
            # a message over the waiting line clears it first: a shorter one left its tail
            prefix = "\r" + " " * self._line_width + "\r" if self._line_shown else ""
            self.stderr.write(f"{prefix}rig: {'warning: ' if warn else ''}{message}\n")
            self.stderr.flush()
            self._line_shown = False

    def _log_once(self, key: str, message: str, warn: bool = False) -> None:
        if key not in self._logged:
            self._logged.add(key)
            self._log(message, warn=warn)

    # ------------------------------------------------------------------ Scorer API
    def describe(self) -> dict[str, Any]:
        """The ``[rig]`` settings that make the target, its folders as given (a relative one is
        inside the experiment folder; ``rig/status.json`` names them resolved): the same before
        and after :meth:`bind`, so the object a run was built with restores it."""
        p = self.params
        return {
            "kind": "rig",
            "write_dir": str(p.write_dir),
            "score_dir": str(p.score_dir or p.write_dir),
            "response_format": p.response_format,
            "channels": p.channels,
            "block_size": p.block_size,
            "reps": p.reps,
            "blanks": p.blanks,
        }

    def stopped(self, error: BaseException) -> None:
        """Say in ``rig/status.json`` that xdream stopped (``"paused"`` after a pause), why and
        how to continue, so that nobody watching it takes it for a live wait. The journal stays
        as the last block left it: ``xdream resume`` awaits the same block again."""
        if self.run_dir is None:
            return
        state = "paused" if isinstance(error, RigPaused) else "stopped"
        reason = _stop_reason(error)
        with contextlib.suppress(OSError):  # a folder gone, a terminal hung up: the error says
            how = continue_command(self.run_dir)
            self._status(state, self._awaited, reason=reason, continue_with=how)
            if state == "stopped":
                self._log(f"xdream stopped: {reason}; continue with {how}")
            if self._line_shown:  # the waiting line ends before the command's last words
                self._line_shown = False
                self.stderr.write("\n")
                self.stderr.flush()

    def close(self) -> None:
        """Write the final status; responses that come later stay in ``score_dir``. For a
        finished run resumed without :meth:`bind` (its share not mounted), only that."""
        if self.run_dir is None and self._refused is not None:
            self._say_finished(self._refused)
            return
        self._run_idle()
        if self._dirty:
            self._save()
        for job in self._pending:
            try:
                job.result()  # let the background backups finish
            except OSError as err:
                self._log(f"an image backup failed: {err}", warn=True)
        self._pending = []
        if self.run_dir is not None:
            self._status("finished")
            if self._line_shown:
                self.stderr.write("\n")
                self._line_shown = False

    def _say_finished(self, folder: Path) -> None:
        """Make ``rig/status.json`` of the run in ``folder``, whose budget is spent, say
        ``finished``, where it does not yet (killed after its last checkpoint, before it
        finished), from its journal, without :meth:`bind`: nothing else is written, nothing
        made, and the rig's folders (a share not mounted) are not looked at. A status that says
        ``finished`` already, or a journal that cannot be read, is left as it is."""
        rig_dir = folder / "rig"
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads((rig_dir / "status.json").read_text()).get("state") == "finished":
                return
        try:
            state = json.loads((rig_dir / "state.json").read_text())
        except (OSError, ValueError):
            return
        if not isinstance(state, dict) or not _status_readable(state):
            return
        self.run_dir, self.rig_dir, self.state = folder, rig_dir, state
        self.status_path = rig_dir / "status.json"
        self.write_dir = self._folder(self.params.write_dir)
        self.score_dir = (
            self.write_dir if self.params.score_dir is None else self._folder(self.params.score_dir)
        )
        with contextlib.suppress(OSError):  # the results are said either way
            self._status("finished")


def _rig_folder(name: str, run_dir: Path) -> Path:
    """``[rig] write_dir`` or ``score_dir`` as a path: a relative one is inside ``run_dir``."""
    path = Path(name).expanduser()
    return path if path.is_absolute() else run_dir / path


def refuse_missing_folders(params: RigSection) -> None:
    """Refuse ``[rig]`` folders (``params``) given as absolute paths that are not there: a
    rig's share that is not mounted, or a typo. Made on the local disk, they would hold
    stimuli the rig never sees, and every block would time out. Only a folder given relative
    to the experiment folder is made. :meth:`RigScorer.bind` checks this (when a run starts
    and when it is resumed), and first :meth:`RigScorer.check_folder`, before the experiment
    makes the run folder or writes in it; ``xdream run`` checks it before it starts."""
    for key in ("write_dir", "score_dir"):
        name = getattr(params, key)
        if name is None:
            continue
        path = Path(name).expanduser()
        if not path.is_absolute() or path.is_dir():
            continue
        if path.exists():
            raise XDreamError(f"[rig] {key} {str(path)!r} is a file, not a folder")
        raise XDreamError(
            f"[rig] {key} {str(path)!r} does not exist: is the rig's share mounted? Create it "
            "first (xdream makes only a folder given relative to the experiment folder)"
        )


def _refuse_block_files(folders: set[Path]) -> None:
    for d in sorted(folders):
        try:
            names = os.listdir(d)
        except OSError:  # not there yet (made by bind), or no folder: bind says so
            continue
        stale = sorted(
            n
            for n in names
            if (protocol.RESPONSE_NAME.match(n) or protocol.STIMULUS_NAME.match(n))
            and not protocol.is_temporary(n)
        )
        if stale:
            raise XDreamError(
                f"{str(d)!r} already holds block files from another session ({stale[0]}, ...);"
                " they would be taken for this experiment's. Move them away or choose empty "
                "write_dir / score_dir folders."
            )


def refuse_leftovers(params: RigSection, run_dir: str | Path) -> None:
    """Refuse a new run in ``run_dir`` whose ``[rig]`` folders (``params``) hold block files
    of another session, which would be taken for its own. :meth:`RigScorer.bind` checks this
    once the run folder is made, and :meth:`RigScorer.check_folder` (``xdream run`` too)
    first, before anything is made or written, so that a refused run leaves no folder behind
    and the same command works once the files are moved away."""
    run_dir = Path(run_dir)
    write_dir = _rig_folder(params.write_dir, run_dir)
    score_dir = write_dir if params.score_dir is None else _rig_folder(params.score_dir, run_dir)
    _refuse_block_files({write_dir, score_dir})


def refuse_unwritten_blocks(params: RigSection, run_dir: str | Path, state: dict[str, Any]) -> None:
    """Refuse to resume the run in ``run_dir`` (its rig journal ``state``) while its ``[rig]``
    folders hold files of a block it has not written: another session's, run on the same
    share meanwhile, or a leftover, whose responses it cannot tell from its rig's answers (a
    response to the block it may have written before it stopped, or to the block it awaits).
    The journal records a block as being written (fsynced) before its first file and as
    written after its files, and a block answered (or timed out) before it writes the next,
    so only the block it was writing may have files that the journal does not record as
    written (:func:`_unjournaled_block`). A response file that the journal knows was there
    before its block was written (``early``, unchanged since) is no answer and is let be."""
    run_dir = Path(run_dir)
    try:
        written = {int(k) for k, b in state["blocks"].items() if b.get("written") is not None}
        unjournaled = _unjournaled_block(state)
        early = dict(state.get("early") or {})
    except (AttributeError, KeyError, TypeError, ValueError):  # bind says what is wrong
        return
    ours = written if unjournaled is None else written | {unjournaled}
    write_dir = _rig_folder(params.write_dir, run_dir)
    score_dir = write_dir if params.score_dir is None else _rig_folder(params.score_dir, run_dir)
    for d in sorted({write_dir, score_dir}):
        try:
            names = os.listdir(d)
        except OSError:  # not there: refuse_missing_folders or bind says so
            continue
        other = sorted(
            (int(m.group(1)), n)
            for n in names
            if not protocol.is_temporary(n)
            and (m := protocol.RESPONSE_NAME.match(n) or protocol.STIMULUS_NAME.match(n))
            and int(m.group(1)) not in ours
            and not _known_early(d / n, early.get(n))
        )
        if other:
            raise XDreamError(
                f"{str(d)!r} holds files of a block this run has not written ({other[0][1]}, "
                "...): another session's on the same share, or a leftover, which this run "
                "cannot tell from its rig's answers. Move them away (keep this run's own files), "
                f"then continue with {continue_how(run_dir)}"
            )


def _unjournaled_block(state: dict[str, Any]) -> int | None:
    """The block that xdream may have written before it stopped without the journal
    (``state``) recording it: the block it journaled as being written (``writing``, fsynced
    before the block's first file) where the journal does not record it written. None if
    there is none: no response to another block not written is its answer.

    A journal of an earlier xdream has no ``writing``: for it, the next block to write (the
    first not written of the plan, or of the next plan), unless a written block is still
    awaited (a block is written only once the one before is answered or timed out, and
    journaled so)."""
    blocks = state["blocks"]
    if "writing" in state:
        writing = state["writing"]
        if writing is None:
            return None
        block = int(writing["block"])
        written = blocks.get(str(block), {}).get("written") is not None
        return None if written else block
    awaited = any(
        b.get("written") is not None and b.get("answered") is None and not b.get("timed_out")
        for b in blocks.values()
    )
    if awaited:
        return None
    pending = sorted(int(k) for k, b in blocks.items() if b.get("written") is None)
    return pending[0] if pending else int(state["next_block"])


# What the journal holds, as the code reads it: (test, what it should be) per field. The
# fields of ``_LATER`` are not in the journal of an earlier xdream (they are set on loading).
_Field = tuple[Callable[[Any], bool], str]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_INT: _Field = (_is_int, "a whole number")
_NUMBER: _Field = (_is_number, "a number")
_BOOL: _Field = (lambda x: isinstance(x, bool), "true or false")
_STR: _Field = (lambda x: isinstance(x, str), "a string")
_LIST: _Field = (lambda x: isinstance(x, list), "a list")
_MAP: _Field = (lambda x: isinstance(x, dict), "a mapping")


def _or_null(field: _Field) -> _Field:
    return (lambda x: x is None or field[0](x), f"null or {field[1]}")


_TOP: dict[str, _Field] = {
    "next_block": _INT,
    "generation": _INT,
    "n_channels": _or_null(_INT),
    "blocks": (_MAP[0], "a mapping of block numbers to blocks"),
    "current": _or_null(_MAP),
    "rows": _LIST,
    "best": _or_null(_NUMBER),
    "last_baseline": _or_null(_NUMBER),
    "last_latency": _or_null(_NUMBER),
    "counts": _MAP,
    "rng": _MAP,
}
_TOP_LATER: dict[str, _Field] = {
    "orientation": _or_null(_STR),
    "counted": _LIST,
    "early": _MAP,
    "writing": _or_null(_MAP),
    "previous": _or_null(_MAP),
}
_BLOCK: dict[str, _Field] = {
    "block": _INT,
    "generation": _INT,
    "stimuli": _LIST,
    "written": _or_null(_NUMBER),
    "answered": _or_null(_NUMBER),
    "timed_out": _BOOL,
    "file": _or_null(_STR),
    "sig": _or_null(_LIST),
    "latency": _or_null(_NUMBER),
}
_BLOCK_LATER: dict[str, _Field] = {"n_stimuli": _INT}
_STIMULUS: dict[str, _Field] = {"name": _STR, "id": _STR, "index": _INT, "kind": _STR}
_CURRENT: dict[str, _Field] = {
    "key": _STR,
    "generation": _INT,
    "ids": _LIST,
    "blocks": _LIST,
    "round": _INT,
    "done": _BOOL,
}
_ROW: dict[str, _Field] = {
    "shown_generation": _INT,
    "block": _INT,
    "stimulus": _STR,
    "id": _STR,
    "kind": _STR,
    "index": _INT,
    "values": _LIST,
    "received": _NUMBER,
    "late": _BOOL,
    "used": _BOOL,
}


def _json_kind(value: Any) -> str:
    """``value`` (read from JSON) as its kind and a short form of it: ``a list ([1, 2])``."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        kind = "a number"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "a list"
    else:
        kind = "a mapping"
    text = json.dumps(value)
    return f"{kind} ({text if len(text) <= 40 else text[:37] + '...'})"


def _fields_problem(
    where: str, value: Any, fields: dict[str, _Field], later: dict[str, _Field] | None = None
) -> str | None:
    """What is wrong with the mapping ``value`` (called ``where``; "" for the journal): a field
    of ``fields`` missing, or one of ``fields`` or ``later`` (if there) of the wrong kind; None
    if nothing."""
    if not isinstance(value, dict):
        return f"{where} is {_json_kind(value)}, not a mapping"
    for key, (ok, expected) in {**fields, **(later or {})}.items():
        if key not in value:
            if key in fields:
                return f"{where or 'it'} has no {json.dumps(key)}"
        elif not ok(value[key]):
            name = f"{where}[{json.dumps(key)}]" if where else json.dumps(key)
            return f"{name} is {_json_kind(value[key])}, not {expected}"
    return None


def _items_problem(where: str, items: list[Any], fields: dict[str, _Field]) -> str | None:
    for i, item in enumerate(items):
        problem = _fields_problem(f"{where}[{i}]", item, fields)
        if problem is not None:
            return problem
    return None


def _current_problem(where: str, cur: Any, blocks: dict[str, Any]) -> str | None:
    problem = _fields_problem(where, cur, _CURRENT)
    if problem is not None:
        return problem
    for i, image_id in enumerate(cur["ids"]):
        if not isinstance(image_id, str):
            return f'{where}["ids"][{i}] is {_json_kind(image_id)}, not a string'
    for i, b in enumerate(cur["blocks"]):
        if not _is_int(b) or str(b) not in blocks:
            known = 'not the number of a block in "blocks"'
            return f'{where}["blocks"][{i}] is {_json_kind(b)}, {known}'
    return None


def journal_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the rig journal ``state`` (read from ``rig/state.json``), in a few
    words, or None: each field that the rig scorer reads, there and of the kind it writes
    (a hand-edited or damaged journal would otherwise stop a resume with a traceback)."""
    problem = _fields_problem("", state, _TOP, _TOP_LATER)
    if problem is not None:
        return problem
    blocks = state["blocks"]
    for key, blk in blocks.items():
        where = f'"blocks"[{json.dumps(key)}]'
        problem = _fields_problem(where, blk, _BLOCK, _BLOCK_LATER)
        if problem is None and str(blk["block"]) != key:
            problem = f'{where}["block"] is {blk["block"]}, not {key}'
        if problem is None:
            problem = _items_problem(f'{where}["stimuli"]', blk["stimuli"], _STIMULUS)
        if problem is not None:
            return problem
    if state["current"] is not None:
        problem = _current_problem('"current"', state["current"], blocks)
    previous = state.get("previous")
    if problem is None and previous is not None:
        problem = _fields_problem('"previous"', previous, {"cur": _MAP, "rows": _LIST})
        if problem is None:
            problem = _current_problem('"previous"["cur"]', previous["cur"], blocks)
        if problem is None:
            problem = _items_problem('"previous"["rows"]', previous["rows"], _ROW)
    if problem is None:
        problem = _items_problem('"rows"', state["rows"], _ROW)
    if problem is None:
        problem = _fields_problem('"counts"', state["counts"], {}, dict.fromkeys(COUNTS, _INT))
    writing = state.get("writing")
    if problem is None and writing is not None:
        problem = _fields_problem('"writing"', writing, {"block": _INT, "time": _or_null(_NUMBER)})
    for i, name in enumerate(state.get("counted") or []):
        if problem is None and not isinstance(name, str):
            problem = f'"counted"[{i}] is {_json_kind(name)}, not a string'
    for name, sigs in (state.get("early") or {}).items():
        ok = isinstance(sigs, list) and all(
            isinstance(sig, list) and len(sig) == 2 and all(map(_is_int, sig)) for sig in sigs
        )
        if problem is None and not ok:
            expected = "not a list of [size, mtime_ns]"
            problem = f'"early"[{json.dumps(name)}] is {_json_kind(sigs)}, {expected}'
    return problem if problem is not None else _numbering_problem(state)


def _numbering_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the journal's numbers (of the right kinds): a block numbered below
    0, a ``next_block`` not above every block's number (the next block would take the number
    of one already written: its record replaced, and a response to the old block taken for
    the new one's answer), or a count below 0."""
    numbers = sorted(int(blk["block"]) for blk in state["blocks"].values())
    if numbers and numbers[0] < 0:
        return f'"blocks"["{numbers[0]}"] is numbered {numbers[0]}, not 0 or more'
    next_block = state["next_block"]
    if next_block < 0:
        return f'"next_block" is {next_block}, not 0 or more'
    if numbers and next_block <= numbers[-1]:
        return (
            f'"next_block" is {next_block}, not above the last block in "blocks" '
            f"({numbers[-1]}): the next block would take the number of one already written"
        )
    for name in COUNTS:
        count = state["counts"].get(name, 0)
        if count < 0:
            return f'"counts"[{json.dumps(name)}] is {count}, not 0 or more'
    return None


def _status_readable(state: dict[str, Any]) -> bool:
    """Whether ``rig/status.json`` can be said from the journal ``state`` (its blocks and
    counts), which :meth:`RigScorer._say_finished` reads without loading it."""
    blocks, counts = state.get("blocks", {}), state.get("counts", {})
    return (
        isinstance(blocks, dict)
        and all(isinstance(b, dict) and "written" in b and "answered" in b for b in blocks.values())
        and isinstance(counts, dict)
    )


def _journal_error(path: Path, problem: str) -> XDreamError:
    return XDreamError(
        f"the rig journal {str(path)!r} is not as xdream writes it: {problem}. It was edited "
        "by hand or damaged; xdream cannot tell from it which blocks were shown and answered. "
        "Put it back as xdream wrote it (undo the edit, or copy it from a backup of the run "
        "folder) and continue the run, or start the experiment again in a new folder"
    )


def _known_early(path: Path, sigs: Any) -> bool:
    """Whether the file ``path`` is as the journal saw it before its block was written
    (``sigs``: its ``early`` signatures, [size, mtime_ns] each)."""
    if not sigs:
        return False
    try:
        st = os.stat(path)
    except OSError:  # gone meanwhile: nothing to refuse
        return True
    return [st.st_size, st.st_mtime_ns] in sigs


def _stop_reason(error: BaseException) -> str:
    """Why the run stopped, for the status file: as the command's last line says it."""
    if isinstance(error, KeyboardInterrupt):  # Ctrl-C, or the command's SIGTERM / SIGHUP
        return f"interrupted ({error})" if str(error) else "interrupted (Ctrl-C)"
    if isinstance(error, GeneratorExit):
        return "the program running the experiment left its generations before the budget"
    if isinstance(error, RigPaused):
        return str(error)
    if isinstance(error, XDreamError):
        return f"error: {error}"
    return f"{type(error).__name__}: {error}"


def read_status(folder: str | Path) -> dict[str, Any]:
    """The rig status of an experiment folder (``rig/status.json``)."""
    return dict(json.loads((Path(folder) / "rig" / "status.json").read_text()))


__all__: Sequence[str] = (
    "RigPaused",
    "RigScorer",
    "read_status",
    "refuse_leftovers",
    "refuse_missing_folders",
)
