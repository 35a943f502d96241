"""Regenerate recorded images from their codes (``xdream render``).

Every evolved image is stored as its code in ``record.h5``; rendering the code with the run's
generator (rebuilt from ``config.yaml``) gives the image back at the generator's full output
resolution, or larger where the generator has a ``size`` parameter (the code is unchanged).
Reference crops are regenerated from their ids. Only the codes of the images asked for are
read from ``record.h5`` (:func:`xdream.records.read_codes`), not the whole record's.

A running experiment appends to ``record.h5`` while it runs, so a read can catch it mid-write:
:func:`render` then reads it again (:data:`RETRIES` times) while the run is alive, and says
the record is being written if every read failed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from xdream import records
from xdream.errors import RecordUnreadableError, XDreamError
from xdream.generators.base import Generator
from xdream.report import is_running, load_generator

MAX_SIZE = 4096
"""The largest ``size`` that :func:`render` draws (pixels per side)."""

RETRIES = 5
"""Reads of a running experiment's ``record.h5`` before :func:`render` gives up."""
RETRY_SECONDS = 0.5
"""Pause between those reads."""

T = TypeVar("T")


def _refuse_many_units(run: Path) -> None:
    """A many-unit run's folder holds no record itself: say to name one unit's folder."""
    units = records.unit_folders(run)
    if units:
        raise XDreamError(
            f"{str(run)!r} is a many-unit run: its images are recorded per unit, so name one "
            f"unit's folder, e.g. `xdream render {units[0]} --ids best`. "
            f"{records.list_units(units)}"
        )


def _read(run: Path) -> tuple[records.Record, Generator]:
    """The run's record, without its codes (:func:`_read_codes` reads the rows wanted), and
    its generator."""

    def read() -> tuple[records.Record, Generator]:
        rec = records.read(run, codes=False)
        return rec, load_generator(run, rec)

    return _retrying(run, read)


def _read_codes(run: Path, rows: list[int], seen: int) -> npt.NDArray[np.float32]:
    """The codes of record rows ``rows`` alone, in that order (``seen``: the rows the record
    read held)."""
    return _retrying(run, lambda: records.read_codes(run, rows, seen=seen))


def _retrying(run: Path, read: Callable[[], T]) -> T:
    """``read()`` of the run's record.h5; read again while a live run may be writing it."""
    for attempt in range(1, RETRIES + 1):
        try:
            return read()
        except RecordUnreadableError as err:
            if not is_running(run):  # no run writes it: damaged (the error says what to do)
                raise
            if attempt == RETRIES:
                why = type(err.__cause__ or err).__name__
                raise RecordUnreadableError(
                    f"cannot read the records in {str(run)!r} ({why}) "
                    f"after {RETRIES} tries: the running experiment is writing record.h5. "
                    "Try again in a moment."
                ) from err
        time.sleep(RETRY_SECONDS)
    raise AssertionError("unreachable")


def seen_by(run: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """How the target network of experiment ``run`` took its images (``summary.json``'s
    ``target``): resized to its ``image_size`` where set, then placed in its ``placement``
    square on grey or filling the network's input (:func:`~xdream.scorers.placement.as_seen`),
    before the network's normalisation. A rig run, or a summary that does not say, is refused:
    there is no network input to show."""
    return target_view(records.read_summary(run).get("target"), run)


def target_view(target: Any, run: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """:func:`seen_by` for the ``target`` that the summary of ``run`` describes."""
    from xdream.scorers.placement import Box, as_seen

    if isinstance(target, dict) and target.get("kind") != "cnn-unit":
        raise XDreamError(
            f"{str(run)!r} did not score its images with a network (its target is "
            f"{target.get('kind')!r}): they were shown as rendered; render without --as-seen"
        )
    preprocess = target.get("preprocess") if isinstance(target, dict) else None
    size = preprocess.get("input_size") if isinstance(preprocess, dict) else None
    if not isinstance(size, int) or not isinstance(target, dict):
        raise XDreamError(
            f"the summary.json of {str(run)!r} does not say how its network took its images "
            "(its target's preprocess input_size): `xdream resume` of the run writes it again "
            "(a finished run too); or render without --as-seen"
        )
    image_size, square = target.get("image_size"), target.get("placement")
    box = Box(*square) if isinstance(square, list) else None
    return lambda images: as_seen(images, image_size, box, size)


def render(
    run: str | Path,
    ids: list[str],
    *,
    out: str | Path | None = None,
    size: int | None = None,
    seen: bool = False,
) -> list[Path]:
    """Render images ``ids`` of experiment ``run`` as PNGs in ``out`` (default ``run/renders``).

    An id is an image id from the record (``gen012_000003``), ``best`` (the best image of the
    run), or a reference id (``ref_chelsea_10_20_200``). With ``seen``, each image is drawn
    as the target network took it (:func:`seen_by`: at its input size, in the run's placement
    square on grey, after its ``image_size`` step), into ``ID_seen.png``. Returns the written
    files.
    """
    from xdream import generators
    from xdream.references import from_id

    run = Path(run)
    if not ids:
        raise XDreamError("give at least one image id (see record.h5 'image_ids'), or 'best'")
    _refuse_many_units(run)
    if seen and size is not None:
        raise XDreamError(
            "--as-seen draws the images at the network's input as they were scored, from the "
            "run's own rendering; render with --size or --as-seen, not both"
        )
    view = seen_by(run) if seen else None
    rec, generator = _read(run)
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
            raise XDreamError(
                f"--size must be a whole number of pixels from 1 to {MAX_SIZE} (a {MAX_SIZE} px "
                f"image takes about {3 * 4 * MAX_SIZE**2 // 2**20} MiB as float32), got {size!r}; "
                "render at most that size"
            )
        if "size" not in {f.name for f in dataclasses.fields(generator.params)}:
            raise XDreamError(
                f"generator {generator.name!r} has no 'size' parameter; render without --size"
            )
        params = {**dataclasses.asdict(generator.params), "size": size}
        resized = generators.make(generator.name, **params)
        if resized.code_dim != generator.code_dim:
            raise XDreamError(
                f"generator {generator.name!r} at size {size} takes codes of dimension "
                f"{resized.code_dim}, not the run's {generator.code_dim}; choose another size"
            )
        generator = resized
    row_of = {image_id: i for i, image_id in enumerate(rec.image_ids)}
    wanted: list[tuple[str, int | None]] = []
    for image_id in ids:
        if image_id == "best":
            if not np.isfinite(rec.scores).any():
                raise XDreamError(f"{str(run)!r} has no scored image yet, so no best image")
            i = int(np.nanargmax(rec.scores))
            wanted.append((rec.image_ids[i], i))
        elif image_id.startswith("ref_"):
            wanted.append((image_id, None))
        elif image_id in row_of:
            wanted.append((image_id, row_of[image_id]))
        else:
            from xdream.errors import did_you_mean

            raise XDreamError(
                f"no image {image_id!r} in {str(run)!r}.{did_you_mean(image_id, row_of)} Ids "
                f"look like {rec.image_ids[0] if rec.image_ids else 'gen000_000000'}, 'best', or "
                "a reference id ref_PHOTO_TOP_LEFT_SIDE"
            )
    rows = [row for _, row in wanted if row is not None]
    code_of = dict(zip(rows, _read_codes(run, rows, len(rec.scores)))) if rows else {}
    folder = Path(out) if out is not None else run / "renders"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise XDreamError(f"cannot create output folder {str(folder)!r}: {err.strerror}") from None
    written = []
    for image_id, row in wanted:
        if row is None:
            image = from_id(image_id, generator.output_size[0])[0]  # XDreamError when not one
        else:
            image = generator.generate(code_of[row][None])[0]
        if view is not None:
            image = view(image[None].float().cpu())[0].clamp(0, 1)
        path = folder / (f"{image_id}_seen.png" if view is not None else f"{image_id}.png")
        records.save_png(image, path)
        written.append(path)
    return written
