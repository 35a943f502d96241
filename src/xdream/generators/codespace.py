"""Code-space helpers: initial codes and bounds for generators whose codes are CNN activations.

DeePSiM generators invert AlexNet layers, so their natural codes are that layer's activations:
for fc6 (and every layer but fc8) post-ReLU, hence >= 0. XDream started from N(0, 1) codes, or,
in its tests, from per-unit normal draws ``N(mu, sd)`` of the layer's pre-ReLU statistics
clipped at 0 (spec §7). For fc6 the statistics are about ``mu = -15``, ``sd = 15``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xdream.errors import MissingFileError, XDreamError
from xdream.types import Codes

Bound = float | Sequence[float] | npt.NDArray[np.floating] | None
"""A lower or upper bound: one number for every unit, one per unit, or ``None`` (unbounded)."""


def normal_codes(n: int, dim: int, rng: np.random.Generator) -> Codes:
    """``n`` codes from N(0, 1), shape ``(n, dim)`` float32."""
    return rng.standard_normal((n, dim)).astype(np.float32)


def code_stats(
    mean: float | npt.NDArray[np.floating], std: float | npt.NDArray[np.floating], dim: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``mean`` and ``std`` (numbers, or arrays of ``dim`` values of any shape) as ``(dim,)``
    arrays; :class:`~xdream.errors.XDreamError` unless they are finite with ``std >= 0``."""
    mu = np.broadcast_to(np.asarray(mean, dtype=np.float64).reshape(-1), (dim,))
    sd = np.broadcast_to(np.asarray(std, dtype=np.float64).reshape(-1), (dim,))
    if (sd < 0).any() or not (np.isfinite(mu).all() and np.isfinite(sd).all()):
        raise XDreamError("code statistics must be finite with std >= 0")
    return mu, sd


def stats_codes(
    n: int,
    mean: float | npt.NDArray[np.floating],
    std: float | npt.NDArray[np.floating],
    rng: np.random.Generator,
    dim: int,
    relu: bool = True,
) -> Codes:
    """``n`` codes drawn per unit from ``N(mean, std)``, clipped at 0 when ``relu`` (spec §7).

    ``mean`` and ``std`` are numbers or arrays of ``dim`` values (any shape of that size).
    """
    mu, sd = code_stats(mean, std, dim)
    codes = rng.normal(mu, sd, size=(n, dim))
    if relu:
        codes = np.maximum(codes, 0.0)
    return codes.astype(np.float32)


def bound_array(bound: Bound, dim: int, what: str) -> npt.NDArray[np.float32] | None:
    """``bound`` as ``(dim,)`` float32 (``None`` stays ``None``); checks the size."""
    if bound is None:
        return None
    arr = np.asarray(bound, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.full(dim, arr[0], dtype=np.float32)
    if arr.size != dim:
        raise XDreamError(
            f"{what} must be one number or {dim} numbers (one per code unit), got {arr.size}"
        )
    if np.isnan(arr).any():
        raise XDreamError(
            f"{what} must be numbers, got NaN for {int(np.isnan(arr).sum())} of {dim} code "
            "units; leave it unset for no bound"
        )
    return arr


def clip_codes(
    codes: Codes, lower: npt.NDArray[np.float32] | None, upper: npt.NDArray[np.float32] | None
) -> Codes:
    """``codes`` clipped per unit to ``[lower, upper]`` (either may be ``None``)."""
    if lower is None and upper is None:
        return codes
    return np.clip(codes, lower, upper).astype(np.float32)


def load_code_stats(
    path: str | Path, layer: str, dim: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-unit ``(mu, sig)`` of a layer's activations from an HDF5 or ``.npz`` file.

    HDF5: datasets ``<layer>/mu`` and ``<layer>/sig`` (the layout of XDream's
    ``stats_caffenet.h5``) or top-level ``mu`` and ``sig``; ``.npz``: arrays ``mu`` and ``sig``.
    Each holds ``dim`` values (any shape of that size) or one value.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"code statistics file {str(path)!r} does not exist")
    expected = (
        f"expected an HDF5 file with datasets '{layer}/mu' and '{layer}/sig' (XDream's "
        "stats_caffenet.h5 layout) or top-level 'mu' and 'sig', or an .npz with 'mu' and 'sig'"
    )
    try:
        if path.suffix == ".npz":
            with np.load(path) as f:
                mu, sig = np.asarray(f["mu"]), np.asarray(f["sig"])
        else:
            import h5py

            with h5py.File(path, "r") as f:
                group = f.get(layer, f)
                mu, sig = np.asarray(group["mu"][()]), np.asarray(group["sig"][()])
    except (KeyError, OSError, ValueError) as err:
        raise XDreamError(
            f"cannot read code statistics from {str(path)!r} ({err}); {expected}"
        ) from None
    for name, arr in (("mu", mu), ("sig", sig)):
        if arr.size not in (1, dim):
            raise XDreamError(
                f"{str(path)!r}: {name} has {arr.size} values, expected {dim} (one per unit)"
            )
    return mu.astype(np.float64), sig.astype(np.float64)
