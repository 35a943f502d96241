"""Response files and image files of the rig protocol (spec §9), with plug-in registries.

Readers turn a response file into a :class:`Response`; writers (used by ``xdream rig-sim`` and
by labs that want to emit a format from Python) do the reverse; image writers encode the
stimuli. Shipped formats:

=========== ============ ================================================================
name        file         content
=========== ============ ================================================================
``mat``     ``.mat``     MATLAB: ``stimulusID`` (cell array of file names) and
                         ``tEvokedResp`` (channels x images, MATLAB's orientation). v7.3
                         (HDF5) files are read with h5py, v5/v7 files with ``scipy.io``.
``h5``      ``.h5``      ``scores`` (n, channels) and optional ``indices`` (n,) into the
                         block's file names sorted alphabetically (XDream's h5 format).
``json``    ``.json``    ``{"stimulusID": [...], "responses": [[ch0, ch1, ...], ...]}``
                         (one row per name; a number instead of a row = one channel;
                         ``null`` for a value or a whole row = no response).
``csv``     ``.csv``     one line per stimulus: ``name,ch0,ch1,...``; an optional header
                         line starting with ``stimulusID``; an empty cell or ``NaN`` = no
                         response.
=========== ============ ================================================================

A lab adds its own format by registering a reader (and, for rehearsal with ``rig-sim``, a
writer) under a new name; ``[rig] plugins`` imports the module that does it::

    import xdream.rig

    @xdream.rig.register_reader("npz", extensions=(".npz",))
    def read_npz(path):
        with numpy.load(path) as f:
            return xdream.rig.Response(list(f["names"]), f["responses"])
"""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import importlib.util
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from xdream.errors import ConfigError, XDreamError
from xdream.registry import Registry

Values = npt.NDArray[np.float64]
"""(n, channels) float64 responses, one row per presented stimulus."""


class MalformedResponse(XDreamError):
    """A response file that can be read but does not hold what the protocol promises."""


@dataclass
class Response:
    """What a response file holds: one row of channel values per presented stimulus.

    ``names`` are the stimulus file names as the rig reported them (``None`` when the file
    gives ``indices`` into the block's sorted file names instead, as XDream's h5 format does;
    with neither, row k answers the k-th sorted file name and :attr:`by_position` is set).
    ``warnings`` are logged once per run when the response is accepted. ``complete`` is False
    when the file may still be being written although it parsed (a CSV file whose last line
    has no line end): it is accepted only once it has stayed unchanged for ``settle`` seconds.
    ``orientation`` says how a matrix with several channels was stored (see :func:`_orient_rows`):
    ``"documented"`` or ``"transposed"`` when its shape showed it, ``"square"`` when it could
    not (as many stimuli as channels: ``values`` are read the documented way, and the scorer
    transposes them if the run's earlier files were transposed); ``None`` when there is no
    question (one channel, a 1-D array, or a format with names per row); ``"vector"`` for a
    1-D h5 ``scores`` without ``indices``, which the scorer orients against the block.
    """

    names: list[str] | None
    values: Values
    indices: npt.NDArray[np.int64] | None = None
    warnings: list[str] = field(default_factory=list)
    complete: bool = True
    orientation: str | None = None
    by_position: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.by_position = self.names is None and self.indices is None
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise MalformedResponse(
                f"responses must be (stimuli, channels), got an array of shape {values.shape}"
            )
        self.values = values
        n = values.shape[0]
        if self.names is not None and len(self.names) != n:
            raise MalformedResponse(f"{len(self.names)} stimulus names but {n} rows of responses")
        if self.indices is not None:
            self.indices = np.asarray(self.indices, dtype=np.int64).reshape(-1)
            if len(self.indices) != n:
                raise MalformedResponse(f"{len(self.indices)} indices but {n} rows of responses")
        if self.names is None and self.indices is None:
            self.indices = np.arange(n, dtype=np.int64)


@dataclass(frozen=True)
class Reader:
    """A registered response-file reader."""

    name: str
    extensions: tuple[str, ...]
    read: Callable[[Path], Response]


@dataclass(frozen=True)
class Writer:
    """A registered response-file writer: ``write(path, names, values)``; ``values`` (n, C)."""

    name: str
    extension: str
    write: Callable[[Path, Sequence[str], Values], None]


@dataclass(frozen=True)
class ImageWriter:
    """A registered image encoder: ``encode(uint8 array (H, W, 3)) -> bytes``."""

    name: str
    extension: str
    encode: Callable[[npt.NDArray[np.uint8]], bytes]


READERS: Registry[Reader] = Registry("response reader")
WRITERS: Registry[Writer] = Registry("response writer")
IMAGE_WRITERS: Registry[ImageWriter] = Registry("image writer")


def register_reader(
    name: str, extensions: Sequence[str], summary: str = ""
) -> Callable[[Callable[[Path], Response]], Callable[[Path], Response]]:
    """Decorator: register ``read(path) -> Response`` for files ending in ``extensions``."""

    def decorate(fn: Callable[[Path], Response]) -> Callable[[Path], Response]:
        exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
        READERS.add(name, Reader(name, exts, fn), summary or _first_line(fn), defined_by=fn)
        return fn

    return decorate


def register_writer(
    name: str, extension: str, summary: str = ""
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: register ``write(path, names, values)`` producing ``block{NNN}{extension}``."""

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        ext = extension if extension.startswith(".") else f".{extension}"
        WRITERS.add(name, Writer(name, ext.lower(), fn), summary or _first_line(fn), defined_by=fn)
        return fn

    return decorate


def register_image_writer(
    name: str, extension: str, summary: str = ""
) -> Callable[[Callable[..., bytes]], Callable[..., bytes]]:
    """Decorator: register ``encode(uint8 (H, W, 3) array) -> bytes`` for stimulus files."""

    def decorate(fn: Callable[..., bytes]) -> Callable[..., bytes]:
        ext = extension if extension.startswith(".") else f".{extension}"
        IMAGE_WRITERS.add(
            name, ImageWriter(name, ext.lower(), fn), summary or _first_line(fn), defined_by=fn
        )
        return fn

    return decorate


def _first_line(fn: Callable[..., Any]) -> str:
    return (fn.__doc__ or "").strip().split("\n", 1)[0]


def load_plugins(plugins: Sequence[str]) -> None:
    """Import plug-in modules (importable names or ``.py`` paths) that register formats."""
    for plugin in plugins:
        if plugin.endswith(".py"):
            path = Path(plugin).expanduser()
            if not path.is_file():
                raise ConfigError(f"rig plug-in file {plugin!r} not found; give an absolute path")
            name = f"xdream_rig_plugin_{path.stem}"
            if name in sys.modules:
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except ValueError as err:  # a name registered twice
                raise ConfigError(f"rig plug-in {plugin!r}: {err}") from None
        else:
            try:
                importlib.import_module(plugin)
            except ImportError as err:
                raise ConfigError(
                    f"cannot import rig plug-in module {plugin!r} ({err}); give an importable "
                    "module name or the path of a .py file"
                ) from None


def reader_for(path: Path, name: str) -> Reader | None:
    """The reader for ``path``: ``name``, or by extension when ``name`` is ``"auto"``."""
    ext = path.suffix.lower()
    if name != "auto":
        reader = READERS.get(name)
        return reader if ext in reader.extensions else None
    for candidate in READERS.names():
        reader = READERS.get(candidate)
        if ext in reader.extensions:
            return reader
    return None


# --------------------------------------------------------------------------- MATLAB
MAT73_HEADER_SIZE = 512


def _mat_names_from_h5(f: h5py.File, ds: h5py.Dataset) -> list[str]:
    """Cell array of char (object references) or a char matrix, as MATLAB v7.3 stores them."""
    if ds.dtype == h5py.ref_dtype:
        names = []
        for ref in np.asarray(ds[()]).reshape(-1):
            # h5py's low-level calls: a block's cells are read in a few ms, not tens
            cell = h5py.h5r.dereference(ref, f.id)
            if not isinstance(cell, h5py.h5d.DatasetID):
                raise MalformedResponse("a 'stimulusID' cell is not a MATLAB char array")
            chars = np.empty(cell.shape, dtype=cell.dtype)
            cell.read(h5py.h5s.ALL, h5py.h5s.ALL, chars)
            # MATLAB stores '' as its dimensions (uint64) with a MATLAB_empty attribute
            empty = chars.dtype == np.uint64 and h5py.Dataset(cell).attrs.get("MATLAB_empty", 0)
            names.append("" if empty else "".join(map(chr, chars.reshape(-1).tolist())))
        return names
    data = np.asarray(ds[()])
    if data.dtype.kind in "ui":  # char matrix: MATLAB (n, L) arrives as (L, n)
        data = data.reshape(data.shape[0], -1) if data.ndim > 1 else data[:, None]
        return ["".join(chr(c) for c in col).rstrip() for col in data.T]
    if data.dtype.kind in "SOU":  # HDF5 strings written by other tools
        return [s.decode() if isinstance(s, bytes) else str(s) for s in data.reshape(-1)]
    raise MalformedResponse(f"'stimulusID' has an unexpected type ({data.dtype})")


MAT_ORIENTATION_WARNING = (
    "'tEvokedResp' is images x channels (MATLAB), not the documented channels x images; it is "
    "read so, and so is a later block with as many stimuli as channels (whose file cannot show "
    "it), but save tEvokedResp' (its transpose) instead"
)
H5_ORIENTATION_WARNING = (
    "'scores' is channels x images in h5py order (images x channels from MATLAB's h5write), "
    "not the documented images x channels; it is read so, and so is a later block with as many "
    "stimuli as channels (whose file cannot show it), but write the transpose instead"
)
SQUARE_WARNING = (
    "its block has as many stimuli as channels, so the file cannot show which way round its "
    "matrix is, and no earlier file of this run showed it: read in the documented orientation "
    "(.mat tEvokedResp channels x images, .h5 scores images x channels in h5py order); a "
    "later square file is read the way round the last file with a clear shape was"
)

SQUARE_AS_BEFORE = (
    "a square block (as many stimuli as channels), whose file does not settle its layout: "
    "read transposed (images x channels in .mat tEvokedResp, channels x images in "
    ".h5 scores), as this run's last file with a clear shape was. If the rig now writes the "
    "documented orientation, this block's scores are transposed: check them (the raw file is "
    "kept under rig/responses)"
)


def _orient_rows(n: int, stored: Values, warning: str) -> tuple[Values, str | None, list[str]]:
    """``stored`` as (n, channels), its :attr:`Response.orientation`, and warnings.

    ``stored`` is documented as (n, channels) and accepted as (channels, n), with ``warning``
    when there is more than one channel; a 1-D array is one row (one channel per stimulus, or
    one stimulus's channels when ``n`` is 1). A square array is read the documented way.
    """
    vector = stored.ndim == 1  # no orientation to show or to mistake
    if vector:
        stored = stored[None, :]
    if stored.shape[0] == n:
        values = stored
        orientation = "documented"
        warnings: list[str] = []
    elif stored.shape[1] == n:
        values = np.ascontiguousarray(stored.T)
        orientation = "transposed"
        warnings = [warning] * (values.shape[1] > 1)
    else:
        raise ValueError("neither orientation fits")
    if vector or values.shape[1] == 1:
        return values, None, warnings
    if stored.shape[0] == stored.shape[1]:
        return values, "square", warnings
    return values, orientation, warnings


def _orient(n: int, matlab: Values) -> tuple[Values, str | None, list[str]]:
    """Rows = stimuli, the orientation and warnings. ``matlab`` is the array in MATLAB's
    orientation, which should be channels x images; images x channels is accepted (with a
    warning when there is more than one channel); a square one is read the documented way."""
    if matlab.ndim == 1:
        matlab = matlab[None, :]
    if matlab.ndim != 2:
        raise MalformedResponse(f"'tEvokedResp' must be 2-D, got shape {matlab.shape}")
    try:
        return _orient_rows(n, matlab.T, MAT_ORIENTATION_WARNING)
    except ValueError:
        raise MalformedResponse(
            f"'tEvokedResp' is {matlab.shape[0]} x {matlab.shape[1]} (MATLAB), but "
            f"'stimulusID' names {n} stimuli; expected channels x {n}"
        ) from None


def orient_scores(scores: Values, n: int, what: str) -> tuple[Values, str | None, list[str]]:
    """XDream's h5 ``scores`` as (n, channels), the orientation and warnings; ``what`` says
    where ``n`` comes from. (images, channels) in h5py order is documented; (channels, images),
    which MATLAB's ``h5write`` of an images x channels matrix (or a column vector) gives, is
    accepted (with a warning when there is more than one channel); a square one is read the
    documented way; a 1-D array is one channel per stimulus, or one stimulus's channels."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim > 2:
        raise MalformedResponse(f"'scores' must be 2-D (images, channels), got {scores.shape}")
    try:
        return _orient_rows(n, scores, H5_ORIENTATION_WARNING)
    except ValueError:
        shape = scores.shape if scores.ndim == 2 else (len(scores), 1)
        raise MalformedResponse(
            f"'scores' is {shape[0]} x {shape[1]} (h5py order), but {what}; expected {n} x channels"
        ) from None


@register_reader("mat", extensions=(".mat",))
def read_mat(path: Path) -> Response:
    """MATLAB ``stimulusID`` + ``tEvokedResp`` (v7.3 via h5py, v5/v7 via scipy.io)."""
    if h5py.is_hdf5(path):
        with h5py.File(path, "r", locking=False) as f:
            for key in ("stimulusID", "tEvokedResp"):
                if key not in f:
                    raise MalformedResponse(f"no variable {key!r} in the v7.3 MAT file")
            names = _mat_names_from_h5(f, f["stimulusID"])
            stored = np.asarray(f["tEvokedResp"][()], dtype=np.float64)
        # h5py shows MATLAB's (channels, images) as (images, channels)
        values, orientation, warnings = _orient(len(names), stored.T)
        return Response(names, values, warnings=warnings, orientation=orientation)
    import scipy.io

    try:
        data = scipy.io.loadmat(
            path, variable_names=["stimulusID", "tEvokedResp"], chars_as_strings=True
        )
    except (ValueError, TypeError, OSError, EOFError) as err:
        raise MalformedResponse(f"not a readable MAT file ({err})") from None
    for key in ("stimulusID", "tEvokedResp"):
        if key not in data:
            raise MalformedResponse(f"no variable {key!r} in the MAT file")
    names = _mat_names_v5(data["stimulusID"])
    stored = np.asarray(data["tEvokedResp"], dtype=np.float64)
    values, orientation, warnings = _orient(len(names), stored)
    return Response(names, values, warnings=warnings, orientation=orientation)


def _mat_names_v5(value: Any) -> list[str]:
    arr = np.asarray(value)
    if arr.dtype.kind == "U":  # char matrix, one name per row
        return [str(s).rstrip() for s in arr.reshape(-1)]
    if arr.dtype == object:  # cell array
        names = []
        for cell in arr.reshape(-1, order="F"):
            cell = np.asarray(cell)
            names.append(str(cell.reshape(-1)[0]) if cell.size else "")
        return names
    raise MalformedResponse(f"'stimulusID' must be a cell array of file names, got {arr.dtype}")


def _mat73_userblock() -> bytes:
    stamp = _dt.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: xdream, Created on: {stamp} HDF5 schema 1.00 ."
    head = text.encode().ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    return head.ljust(MAT73_HEADER_SIZE, b"\x00")


@register_writer("mat73", ".mat")
def write_mat73(path: Path, names: Sequence[str], values: Values) -> None:
    """MATLAB v7.3 (HDF5) ``stimulusID`` cell array and ``tEvokedResp`` channels x images."""
    values = np.asarray(values, dtype=np.float64)
    with h5py.File(path, "w", userblock_size=MAT73_HEADER_SIZE, libver="earliest") as f:
        refs = f.create_group("#refs#")
        ref_list = []
        for i, name in enumerate(names):
            chars = np.array([ord(c) for c in name], dtype=np.uint16)[:, None]
            ds = refs.create_dataset(f"s{i}", data=chars)
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
            ref_list.append(ds.ref)
        cell = f.create_dataset(
            "stimulusID", data=np.array(ref_list, dtype=h5py.ref_dtype)[:, None]
        )
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        resp = f.create_dataset("tEvokedResp", data=values)  # MATLAB reads it as C x n
        resp.attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as fh:
        fh.write(_mat73_userblock())


@register_writer("mat7", ".mat")
def write_mat7(path: Path, names: Sequence[str], values: Values) -> None:
    """MATLAB v7 (compressed v5 format) ``stimulusID`` and ``tEvokedResp`` via scipy.io."""
    import scipy.io

    cell = np.empty((1, len(names)), dtype=object)
    for i, name in enumerate(names):
        cell[0, i] = name
    with open(path, "wb") as fh:
        scipy.io.savemat(
            fh,
            {"stimulusID": cell, "tEvokedResp": np.asarray(values, dtype=np.float64).T},
            do_compression=True,
        )


# --------------------------------------------------------------------------- h5, json, csv
@register_reader("h5", extensions=(".h5", ".hdf5"))
def read_h5(path: Path) -> Response:
    """XDream's h5: ``scores`` (n, channels), optional ``indices`` into sorted block files.

    Without ``indices`` the scorer checks the row count (and orientation) against the block.
    """
    try:
        with h5py.File(path, "r", locking=False) as f:
            if "scores" not in f:
                raise MalformedResponse("no dataset 'scores'")
            scores = np.asarray(f["scores"][()], dtype=np.float64)
            indices = np.asarray(f["indices"][()]) if "indices" in f else None
    except OSError as err:
        raise MalformedResponse(f"not a readable HDF5 file ({err})") from None
    if indices is None:  # oriented by the scorer, which knows the block's size
        if scores.ndim < 2:
            return Response(None, scores.reshape(-1, 1), orientation="vector")
        return Response(None, scores)
    if indices.dtype.kind not in "iu" and not np.array_equal(indices, np.round(indices)):
        raise MalformedResponse("'indices' must be whole numbers (0-based rows)")
    indices = indices.reshape(-1).astype(np.int64)
    n = len(indices)
    values, orientation, warnings = orient_scores(scores, n, f"'indices' has {n}")
    return Response(None, values, indices, warnings=warnings, orientation=orientation)


def write_h5_indexed(
    path: Path, names: Sequence[str], values: Values, block_files: Sequence[str]
) -> None:
    """XDream's h5 format: ``scores`` and ``indices`` into ``sorted(block_files)``."""
    order = {name: i for i, name in enumerate(sorted(block_files))}
    with h5py.File(path, "w") as f:
        f.create_dataset("scores", data=np.asarray(values, dtype=np.float64))
        f.create_dataset("indices", data=np.array([order[n] for n in names], dtype=np.int64))


@register_writer("h5", ".h5")
def write_h5(path: Path, names: Sequence[str], values: Values) -> None:
    """XDream's h5 format (``names`` must be all of the block's files: indices point into them)."""
    write_h5_indexed(path, names, values, names)


@register_reader("json", extensions=(".json",))
def read_json(path: Path) -> Response:
    """``{"stimulusID": [...], "responses": [...]}``, one row (or number) per stimulus."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedResponse(f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or "stimulusID" not in data or "responses" not in data:
        raise MalformedResponse("expected an object with 'stimulusID' and 'responses'")
    names = data["stimulusID"]
    if not isinstance(names, list) or not all(isinstance(s, str) for s in names):
        raise MalformedResponse("'stimulusID' must be a list of file names")
    return Response(names, _json_values(names, data["responses"]))


def _json_number(value: Any, name: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedResponse(
            f"the response to {name!r} is {json.dumps(value)}; responses must be numbers "
            "(null = no response)"
        )
    return float(value)


def _json_values(names: list[str], responses: Any) -> Values:
    """One number (one channel) or one row per name; ``null`` = no response (a whole row)."""
    if not isinstance(responses, list):
        raise MalformedResponse(
            "'responses' must be a list with one number (one channel) or one row of channel "
            "values per stimulus name"
        )
    if len(responses) != len(names):
        raise MalformedResponse(
            f"{len(names)} names in 'stimulusID' but {len(responses)} responses; give one "
            "number (one channel) or one row [ch0, ch1, ...] per name, in the same order"
        )
    rows = [r for r in responses if isinstance(r, list)]
    numbers = [r for r in responses if r is not None and not isinstance(r, list)]
    if rows and numbers:
        raise MalformedResponse(
            "'responses' mixes numbers and rows; give every name a row [ch0, ch1, ...] of the "
            "same length (or a number each for one channel; null = no response)"
        )
    widths = sorted({len(r) for r in rows})
    if len(widths) > 1 or (widths and widths[0] == 0):
        raise MalformedResponse(
            f"the rows of 'responses' hold {' and '.join(map(str, widths))} values; every row "
            "needs one value per channel (null = no response)"
        )
    width = widths[0] if widths else 1
    values = np.empty((len(names), width), dtype=np.float64)
    for k, (name, r) in enumerate(zip(names, responses)):
        if r is None:
            values[k] = np.nan  # no response: every channel
        elif isinstance(r, list):
            values[k] = [_json_number(v, name) for v in r]
        else:
            values[k] = _json_number(r, name)
    return values


@register_writer("json", ".json")
def write_json_response(path: Path, names: Sequence[str], values: Values) -> None:
    """``{"stimulusID": [...], "responses": [[...], ...]}``."""
    rows = [[None if not np.isfinite(v) else float(v) for v in row] for row in values]
    path.write_text(json.dumps({"stimulusID": list(names), "responses": rows}))


@register_reader("csv", extensions=(".csv",))
def read_csv(path: Path) -> Response:
    """One line per stimulus: ``name,ch0,ch1,...`` (optional ``stimulusID,...`` header).

    An empty cell (or ``NaN``) is no response; a UTF-8 byte-order mark (Excel's "CSV UTF-8")
    is ignored.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
    except (UnicodeDecodeError, csv.Error) as err:
        raise MalformedResponse(f"not a readable CSV file ({err})") from None
    if rows and rows[0][0].strip() == "stimulusID":
        rows = rows[1:]
    if not rows:
        raise MalformedResponse("no response lines")
    width = {len(r) for r in rows}
    if len(width) != 1 or width.pop() < 2:
        single = [r[0] for r in rows if len(r) == 1]  # no comma: another separator?
        other = next((sep for sep in ";\t" if single and all(sep in c for c in single)), None)
        raise MalformedResponse(
            "every line needs a name and the same number of channel values"
            + (
                f", separated by commas: this file separates them by {other!r} (Excel in some "
                "locales; save it as CSV with commas, or write the file from the rig's program)"
                if other is not None
                else ""
            )
        )
    try:
        values = np.array(
            [[float(v) if v.strip() else np.nan for v in r[1:]] for r in rows], dtype=np.float64
        )
    except ValueError as err:
        header = rows[0][0].strip()
        first_row_only = _numbers(rows[1:])
        raise MalformedResponse(
            f"the header line must start with stimulusID, got {header!r}"
            if first_row_only and len(rows) > 1
            else f"channel values must be numbers ({err}); leave a cell empty or write NaN for "
            "no response"
        ) from None
    # without a line end the last line may be cut (400.25 read as 400): the scorer waits
    return Response([r[0].strip() for r in rows], values, complete=text.endswith(("\n", "\r")))


def _numbers(rows: Sequence[Sequence[str]]) -> bool:
    """Whether every channel cell of ``rows`` reads as a number (or is empty)."""
    try:
        for r in rows:
            for v in r[1:]:
                if v.strip():
                    float(v)
    except ValueError:
        return False
    return True


@register_writer("csv", ".csv")
def write_csv(path: Path, names: Sequence[str], values: Values) -> None:
    """``stimulusID,ch0,...`` header, then one line per stimulus."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["stimulusID", *(f"ch{c}" for c in range(values.shape[1]))])
    for name, row in zip(names, values):
        w.writerow([name, *(repr(float(v)) for v in row)])
    path.write_text(out.getvalue())


# --------------------------------------------------------------------------- images
@register_image_writer("png", ".png")
def encode_png(image: npt.NDArray[np.uint8]) -> bytes:
    """8-bit RGB PNG, zlib level 1 (lossless, fast: :func:`xdream.records.encode_png`)."""
    from xdream.records import encode_png as encode

    return encode(image, level=1)


@register_image_writer("bmp", ".bmp")
def encode_bmp(image: npt.NDArray[np.uint8]) -> bytes:
    """24-bit BMP (XDream's other image format)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="BMP")
    return buf.getvalue()
