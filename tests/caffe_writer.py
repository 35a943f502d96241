"""Write caffemodel files for tests, encoding protobuf by hand with caffe.proto's field numbers.

NetParameter: name 1, layers (V1LayerParameter) 2, layer (LayerParameter) 100.
LayerParameter: name 1, type 2 (string), blobs 7. V1LayerParameter: name 4, type 5 (enum),
blobs 6. BlobProto: num 1, channels 2, height 3, width 4, data 5 (packed float), shape 7
(BlobShape: dim 1, packed int64).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

V1_TYPES = {"Convolution": 4, "InnerProduct": 14, "Deconvolution": 39, "ReLU": 18, "Data": 5}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_delimited(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def blob_parts(array: np.ndarray, legacy: bool = False) -> list[bytes]:
    """A BlobProto: ``shape`` (new) or num/channels/height/width padded to 4-d (legacy)."""
    parts = []
    if legacy:
        dims = [1] * (4 - array.ndim) + list(array.shape)
        parts += [tag(i + 1, 0) + varint(d) for i, d in enumerate(dims)]
    else:
        packed = b"".join(varint(d) for d in array.shape)
        parts.append(length_delimited(7, length_delimited(1, packed)))
    data = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return [*parts, tag(5, 2) + varint(len(data)), data]


def layer_parts(name: str, kind: str, blobs: list[np.ndarray], v1: bool = False) -> list[bytes]:
    """A LayerParameter (or, with ``v1``, a V1LayerParameter) with ``blobs``."""
    if v1:
        parts = [length_delimited(4, name.encode()), tag(5, 0) + varint(V1_TYPES[kind])]
    else:
        parts = [length_delimited(1, name.encode()), length_delimited(2, kind.encode())]
    for b in blobs:
        inner = blob_parts(b, legacy=v1)
        parts += [tag(6 if v1 else 7, 2) + varint(sum(map(len, inner))), *inner]
    return parts


def write_caffemodel(
    path: Path, layers: list[tuple[str, str, list[np.ndarray]]], v1: bool = False
) -> Path:
    """Write a NetParameter with the given ``(name, type, blobs)`` layers to ``path``."""
    with open(path, "wb") as fh:
        fh.write(length_delimited(1, b"test-net"))
        for name, kind, blobs in layers:
            parts = layer_parts(name, kind, blobs, v1)
            fh.write(tag(2 if v1 else 100, 2) + varint(sum(map(len, parts))))
            for part in parts:
                fh.write(part)
    return path
