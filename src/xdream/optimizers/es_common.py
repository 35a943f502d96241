"""Pieces shared by the evolution strategies: recombination weights, selection, validation."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from xdream.errors import XDreamError
from xdream.types import Codes, Scores

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def default_population(dim: int) -> int:
    """``lambda = 4 + floor(3 log2 N)``: 40 at N = 4096 as published (Wang & Ponce 2022).

    (The usual CMA-ES default ``4 + floor(3 ln N)`` would give 28 there.) N is taken as at
    least 2, so a one-dimensional code gets 7, as a two-dimensional one does.
    """
    return 4 + math.floor(3 * math.log2(max(dim, 2)))


def log_weights(mu: int) -> FloatArray:
    """Positive recombination weights ``w_i ∝ ln(mu + 1/2) - ln i``, ``i = 1..mu``, summing to 1."""
    w = math.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    return np.asarray(w / w.sum(), dtype=np.float64)


def mu_eff(weights: FloatArray) -> float:
    """Variance-effective selection mass ``(sum w)^2 / sum w^2``."""
    return float(weights.sum() ** 2 / np.sum(weights**2))


def select(scores: Scores, weights: FloatArray) -> tuple[IntArray, FloatArray]:
    """The best ``len(weights)`` answered codes, best first, and their weights.

    NaN ("no response") is never selected; when fewer codes were answered than there are
    weights, the first weights are used and renormalised to sum 1. Ties keep batch order.
    Returns empty arrays when nothing was answered.
    """
    valid = np.flatnonzero(~np.isnan(scores))
    order = valid[np.argsort(-scores[valid], kind="stable")]
    top = order[: len(weights)]
    w = weights[: len(top)]
    return top, (w / w.sum() if len(top) else w)


def check_pending(name: str, codes: Codes, pending: Codes) -> None:
    """Refuse ``tell`` with codes other than those of the last ``ask``, saying how they differ:
    their shape, or (same shape) which rows changed."""
    if codes.shape == pending.shape and np.array_equal(codes, pending):
        return
    expected = f"{name}: tell() must receive the codes returned by the last ask(), in order"
    if codes.shape != pending.shape:
        raise XDreamError(f"{expected} (shape {pending.shape}), got shape {codes.shape}")
    rows = np.flatnonzero((codes != pending).reshape(len(codes), -1).any(axis=1))
    first = f", the first at row {rows[0]}" if len(rows) else ""
    raise XDreamError(
        f"{expected}: these have the same shape {codes.shape} but different values ({len(rows)} "
        f"of {len(codes)} codes differ{first}); tell the codes unchanged (copy them before "
        "changing them, and keep ask()'s order)"
    )


def minimiser_losses(scores: Scores) -> FloatArray | None:
    """Losses for a minimising library: ``-score``, with no response (NaN) told as the worst
    answered loss of the generation. ``None`` when nothing was answered (show the codes again)."""
    answered = ~np.isnan(scores)
    if not answered.any():
        return None
    loss: FloatArray = -np.asarray(scores, dtype=np.float64)
    loss[~answered] = loss[answered].max()
    return loss


def initial_mean(init_codes: Codes | None, dim: int) -> FloatArray:
    """The starting mean: the mean of ``init_codes`` (the code itself for one), else zeros."""
    if init_codes is None:
        return np.zeros(dim)
    if len(init_codes) == 0:
        raise XDreamError("init_codes is empty; pass at least one code or None for zeros")
    return np.asarray(init_codes, dtype=np.float64).mean(axis=0)


def schedule_fraction(step: int, generations: int) -> float:
    """How far generation ``step`` is along a schedule over ``generations`` generations: 0 at
    generation 0, rising linearly to 1 at generation ``generations - 1``, and 1 after it. A
    schedule of one generation is at 0 in generation 0 and at 1 after it (its end value holds
    "from generation ``generations - 1`` on" from the next, since generation 0 is the start)."""
    if generations <= 1:
        return 0.0 if step <= 0 else 1.0
    return min(max(step, 0), generations - 1) / (generations - 1)


def check_int(key: str, value: object, low: int, allow_none: bool = False) -> None:
    """``ValueError`` unless ``value`` is an integer ``>= low`` (or ``None`` when allowed)."""
    if allow_none and value is None:
        return
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low
    if not ok:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{key} must be an integer >= {low}{extra}, got {value!r}")


def check_float(key: str, value: object, low: float, strict: bool = True) -> None:
    """``ValueError`` unless ``value`` is a finite number ``> low`` (``>= low`` if not strict)."""
    ok = (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and (float(value) > low if strict else float(value) >= low)
    )
    if not ok:
        raise ValueError(
            f"{key} must be a finite number {'>' if strict else '>='} {low}, got {value!r}"
        )


def check_shape(what: str, array: FloatArray | Codes, shape: tuple[int, ...]) -> None:
    """``XDreamError`` when a checkpoint array does not fit the current hyperparameters."""
    if array.shape != shape:
        raise XDreamError(
            f"checkpoint {what} has shape {array.shape}, expected {shape}; "
            "were the hyperparameters changed?"
        )
