"""Read caffe's files without caffe: ``.caffemodel`` (binary protobuf) and ``.prototxt`` (text).

A ``.caffemodel`` is a serialised ``NetParameter`` message of ``caffe.proto``. We decode the
protobuf wire format directly (a varint-and-length reader, no generated code) and keep what
weight loading needs: each layer's name, type and parameter blobs. Field numbers (public facts
of ``caffe.proto``):

* ``NetParameter``: ``name = 1``, ``layers = 2`` (``V1LayerParameter``, old files),
  ``input = 3``, ``input_dim = 4``, ``input_shape = 8``, ``layer = 100`` (``LayerParameter``);
* ``LayerParameter``: ``name = 1``, ``type = 2`` (string), ``bottom = 3``, ``top = 4``,
  ``blobs = 7``;
* ``V1LayerParameter``: ``bottom = 2``, ``top = 3``, ``name = 4``, ``type = 5`` (enum),
  ``blobs = 6``;
* ``BlobProto``: ``num = 1``, ``channels = 2``, ``height = 3``, ``width = 4`` (legacy 4-d shape),
  ``data = 5`` (packed float), ``diff = 6``, ``shape = 7`` (``BlobShape``: ``dim = 1``, packed
  int64), ``double_data = 8``.

A truncated or foreign file raises :class:`~xdream.errors.XDreamError` naming the file and the
expected format. :func:`read_prototxt` parses the text format into nested dicts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xdream.errors import MissingFileError, XDreamError
from xdream.weights import head_description

CAFFEMODEL_FORMAT = "a caffe .caffemodel file (binary protobuf NetParameter, as caffe saves it)"

V1_LAYER_TYPES: dict[int, str] = {
    0: "None",
    1: "Accuracy",
    2: "BNLL",
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    7: "EuclideanLoss",
    8: "Flatten",
    9: "HDF5Data",
    10: "HDF5Output",
    11: "Im2col",
    12: "ImageData",
    13: "InfogainLoss",
    14: "InnerProduct",
    15: "LRN",
    16: "MultinomialLogisticLoss",
    17: "Pooling",
    18: "ReLU",
    19: "Sigmoid",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    23: "TanH",
    24: "WindowData",
    25: "Eltwise",
    26: "Power",
    27: "SigmoidCrossEntropyLoss",
    28: "HingeLoss",
    29: "MemoryData",
    30: "ArgMax",
    31: "Threshold",
    32: "DummyData",
    33: "Slice",
    34: "MVN",
    35: "AbsVal",
    36: "Silence",
    37: "ContrastiveLoss",
    38: "Exp",
    39: "Deconvolution",
}
"""``V1LayerParameter.LayerType`` enum values -> the type strings of the current format."""


class _Truncated(Exception):
    """Internal: a field runs past the end of its message."""


@dataclasses.dataclass
class CaffeLayer:
    """One layer of a caffemodel: ``name``, ``type`` (e.g. ``"Convolution"``) and its blobs.

    Each blob is a float32 array in the blob's own shape (the legacy 4-d
    ``num x channels x height x width`` shape for old files; :func:`blob_as` compares it with
    the shape a layer needs).
    """

    name: str
    type: str
    blobs: list[npt.NDArray[np.float32]]


# ----------------------------------------------------------------------------- wire format
def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Truncated
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a message; length-delimited values are views."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        value: Any
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _Truncated
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Truncated
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _Truncated
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


def _packed_varints(value: Any, wire: int) -> list[int]:
    if wire == 0:
        return [int(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def _blob(buf: memoryview) -> npt.NDArray[np.float32]:
    legacy = [0, 0, 0, 0]
    shape: list[int] | None = None
    chunks: list[npt.NDArray[Any]] = []
    for field, wire, value in _fields(buf):
        if 1 <= field <= 4 and wire == 0:
            legacy[field - 1] = value
        elif field == 7 and wire == 2:
            shape = []
            for f, w, v in _fields(value):
                if f == 1:
                    shape += _packed_varints(v, w)
        elif field == 5:  # float data: packed (wire 2) or one float per field (wire 5)
            if wire == 2 and len(value) % 4:
                raise ValueError("packed float data whose length is not a multiple of 4")
            chunks.append(np.frombuffer(value, dtype="<f4"))
        elif field == 8:
            if wire == 2 and len(value) % 8:
                raise ValueError("packed double data whose length is not a multiple of 8")
            chunks.append(np.frombuffer(value, dtype="<f8"))
    if len(chunks) == 1:
        data = chunks[0].astype(np.float32, copy=False)  # a read-only view of the file's bytes
    else:
        data = np.concatenate(chunks or [np.zeros(0)]).astype(np.float32)
    dims = shape if shape is not None else [d for d in legacy if d]
    if dims and int(np.prod(dims)) == data.size:
        return data.reshape(dims)
    if dims:
        raise ValueError(f"blob of shape {dims} holds {data.size} values")
    return data


def _layer(buf: memoryview, v1: bool) -> CaffeLayer:
    name_f, type_f, blobs_f = (4, 5, 6) if v1 else (1, 2, 7)
    name, kind, blobs = "", "", []
    for field, wire, value in _fields(buf):
        if field == name_f and wire == 2:
            name = bytes(value).decode("utf-8", errors="replace")
        elif field == type_f:
            if v1 and wire == 0:
                kind = V1_LAYER_TYPES.get(value, f"V1 type {value}")
            elif wire == 2:
                kind = bytes(value).decode("utf-8", errors="replace")
        elif field == blobs_f and wire == 2:
            blobs.append(_blob(value))
    return CaffeLayer(name, kind, blobs)


def parse_caffemodel(data: bytes | memoryview, source: str = "<bytes>") -> list[CaffeLayer]:
    """The layers of a serialised ``NetParameter`` (``layer`` and legacy ``layers`` fields)."""
    buf = memoryview(data)
    layers: list[CaffeLayer] = []
    try:
        for field, wire, value in _fields(buf):
            if field in (2, 100) and wire == 2:
                layers.append(_layer(value, v1=field == 2))
    except _Truncated:
        found = head_description(bytes(buf[:64]))
        if not found.startswith(("a text file", "a file beginning")):  # an image, HDF5, ...
            raise XDreamError(f"{source!r} is not {CAFFEMODEL_FORMAT}: it is {found}.") from None
        raise XDreamError(
            f"{source!r} is truncated or is not {CAFFEMODEL_FORMAT}: a field runs past the end "
            f"of the data ({len(buf)} bytes). Copy or download the file again."
        ) from None
    except (ValueError, UnicodeDecodeError) as err:
        found = head_description(bytes(buf[:64]))
        if found.startswith("a text file"):
            found += ". Check that the path names the weights (.caffemodel), not the network "
            found += "description (.prototxt)"
        elif found.startswith("a file beginning"):
            found += f" (as protobuf: {err})"
        raise XDreamError(f"{source!r} is not {CAFFEMODEL_FORMAT}: it is {found}.") from None
    if not layers:
        raise XDreamError(
            f"{source!r} holds no layers, so it is not {CAFFEMODEL_FORMAT}. Check the path."
        )
    return layers


def read_caffemodel(path: str | Path) -> list[CaffeLayer]:
    """Read the layers of a ``.caffemodel`` file (see :func:`parse_caffemodel`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"caffemodel {str(path)!r} does not exist")
    return parse_caffemodel(path.read_bytes(), str(path))


def blob_as(
    blob: npt.NDArray[np.float32], shape: tuple[int, ...]
) -> npt.NDArray[np.float32] | None:
    """``blob`` as an array of ``shape`` if its own dims are ``shape`` (a legacy 4-d blob may
    add leading 1s: ``(1, 1, 4096, 9216)`` for an InnerProduct's weights), else ``None`` (the
    same number of values laid out otherwise, e.g. transposed, is not the same tensor)."""
    dims = tuple(blob.shape)
    while len(dims) > len(shape) and dims[0] == 1:
        dims = dims[1:]
    return blob.reshape(shape) if dims == tuple(shape) else None


def blobs_by_layer(layers: list[CaffeLayer]) -> dict[str, CaffeLayer]:
    """Layers that carry blobs, by name (the last one wins if a name repeats)."""
    return {layer.name: layer for layer in layers if layer.blobs}


def layer_arrays(
    by_name: dict[str, CaffeLayer],
    name: str,
    kind: str,
    shapes: Sequence[tuple[int, ...]],
    *,
    source: str,
    owner: str,
    expected: str,
    another: str,
    layout: str = "",
) -> list[npt.NDArray[np.float32]]:
    """The weights (and, with a second shape, the biases) of layer ``name`` of a caffemodel
    (``by_name``: :func:`blobs_by_layer`) as arrays of ``shapes``, checked as a network built
    from them needs: the layer is there with those blobs, is a ``kind`` layer (``"Convolution"``,
    ...), and each blob holds its shape's values in that shape (:func:`blob_as`: a transposed
    blob is refused). Errors name the file (``source``), the network (``owner``), what was
    ``expected`` instead, what else the file may be the caffemodel of (``another``) and the
    weights' ``layout`` (e.g. ``" (out, in, ...)"``)."""
    parts = ("weights", "biases")[: len(shapes)]
    layer = by_name.get(name)
    if layer is None or len(layer.blobs) < len(shapes):
        raise XDreamError(
            f"{source!r} has no layer {name!r} with {' and '.join(parts)} (layers with weights: "
            f"{', '.join(by_name) or 'none'}); expected {expected}."
        )
    if layer.type != kind:
        raise XDreamError(
            f"{source!r}: layer {name!r} is a {layer.type} layer, but {owner}'s {name!r} is a "
            f"{kind} layer; expected {expected}."
        )
    arrays = []
    for blob, shape, part in zip(layer.blobs, shapes, parts):
        if blob.size != math.prod(shape):
            raise XDreamError(
                f"{source!r}: layer {name!r} holds {blob.size} {part}, but {owner} needs "
                f"{shape} = {math.prod(shape)}; is this the caffemodel of another {another}?"
            )
        array = blob_as(blob, shape)
        if array is None:
            raise XDreamError(
                f"{source!r}: layer {name!r} ({kind}) holds {part} of shape {tuple(blob.shape)}, "
                f"but {owner} needs {shape}{layout if part == 'weights' else ''}; was the file "
                "converted with its weights laid out otherwise?"
            )
        arrays.append(array)
    return arrays


# ----------------------------------------------------------------------------- text format
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<punct>[{}:;,\[\]])
      | (?P<word>[^\s{}:;,\[\]"'#]+)
    )""",
    re.VERBOSE,
)

Message = dict[str, list[Any]]
"""A parsed text-format message: field name -> list of values (scalars or messages)."""


def _tokens(text: str, source: str) -> Iterator[tuple[str, str, int]]:
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                return
            raise XDreamError(f"{source!r} line {line}: cannot read {text[pos : pos + 20]!r}")
        line += text.count("\n", pos, m.end())
        pos = m.end()
        kind = m.lastgroup
        if kind is None or kind == "comment":
            continue
        yield kind, m.group(kind), line


def _scalar(kind: str, token: str) -> Any:
    if kind == "string":
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    low = token.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(token)
    except ValueError:
        pass
    try:
        return float(token)
    except ValueError:
        return token  # an enum value such as MAX or CAFFE


def parse_prototxt(text: str, source: str = "<text>") -> Message:
    """Parse protobuf text format (a ``.prototxt``) into nested :data:`Message` dicts."""
    tokens = list(_tokens(text, source))
    pos = 0

    def fail(msg: str) -> XDreamError:
        line = tokens[min(pos, len(tokens) - 1)][2] if tokens else 1
        return XDreamError(
            f"{source!r} line {line}: {msg}; expected a caffe network description in protobuf "
            "text format (a .prototxt such as deploy.prototxt)"
        )

    def message(closing: bool) -> Message:
        nonlocal pos
        out: Message = {}
        while pos < len(tokens):
            kind, tok, _ = tokens[pos]
            if kind == "punct" and tok == "}":
                if not closing:
                    raise fail("unmatched '}'")
                pos += 1
                return out
            if kind != "word":
                raise fail(f"expected a field name, got {tok!r}")
            pos += 1
            if pos < len(tokens) and tokens[pos][1] == ":":
                pos += 1
            if pos >= len(tokens):
                raise fail(f"field {tok!r} has no value")
            vkind, vtok, _ = tokens[pos]
            if vkind == "punct" and vtok == "{":
                pos += 1
                value: Any = message(closing=True)
            elif vkind in ("word", "string"):
                value = _scalar(vkind, vtok)
                pos += 1
            else:
                raise fail(f"field {tok!r} has no value")
            out.setdefault(tok, []).append(value)
            if pos < len(tokens) and tokens[pos][1] in (";", ","):
                pos += 1
        if closing:
            raise fail("missing '}' at the end of the file")
        return out

    return message(closing=False)


def read_prototxt(path: str | Path) -> Message:
    """Read a ``.prototxt`` file (see :func:`parse_prototxt`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"prototxt {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise XDreamError(
            f"{str(path)!r} is not text, so it is not a .prototxt network description (did "
            "you swap the .caffemodel and the .prototxt?)"
        ) from None
    return parse_prototxt(text, str(path))


def prototxt_layers(net: Message) -> dict[str, Message]:
    """The ``layer`` (or legacy ``layers``) entries of a parsed prototxt, by name."""
    entries = net.get("layer", []) + net.get("layers", [])
    return {str(entry.get("name", [""])[0]): entry for entry in entries}


def first(message: Message, key: str, default: Any = None) -> Any:
    """The first value of ``key`` in ``message`` (``default`` when absent)."""
    values = message.get(key)
    return values[0] if values else default
