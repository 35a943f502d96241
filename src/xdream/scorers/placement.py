"""Where an image goes in the network's input: all of it, or a box over the unit's receptive
field (spec §8, the Ponce lab's receptive-field-aware placement).

By default an image fills the network's whole input. With a placement, it is resized to a
square box of the input and pasted into a grey canvas (0.5 in each channel, before the
network's normalisation) the size of the input; the network sees that canvas. The box is
given in the network's input pixels as ``(left, top, size)``, or found for the unit
(``"rf"``): the smallest square that holds its receptive field, the input pixels whose
change can change the unit (:func:`receptive_field_box`).
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from xdream.errors import XDreamError
from xdream.networks.base import resize
from xdream.types import Images

GREY = 0.5
"""The canvas around a placed image, in each channel (images are RGB in [0, 1])."""

PLACEMENTS = ("full", "rf")
"""The placements given by name: the whole input, or the unit's receptive field."""

PROBES = 4
"""Random inputs whose gradients give a unit's receptive field (their union)."""


@dataclasses.dataclass(frozen=True)
class Box:
    """A square of the network's input, in its pixels: columns ``left`` to ``left + size - 1``,
    rows ``top`` to ``top + size - 1``."""

    left: int
    top: int
    size: int

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.size]


def check_placement(value: Any) -> str | Box:
    """``value`` as a placement: ``"full"``, ``"rf"`` or a :class:`Box` made of
    ``(left, top, size)`` (whole numbers, ``left`` and ``top`` from 0, ``size`` from 1); a
    clear error otherwise. Whether the box fits the input is checked where the input's size is
    known (:func:`fit`)."""
    if value is None or isinstance(value, str):
        if value is None or value in PLACEMENTS:
            return "full" if value is None else value
        raise XDreamError(
            f"placement must be 'full', 'rf' or [left, top, size] in the network's input pixels, "
            f"got {value!r}"
        )
    if isinstance(value, Box):
        value = value.as_list()
    if not isinstance(value, Sequence) or len(value) != 3:
        raise XDreamError(
            f"placement must be 'full', 'rf' or [left, top, size] (3 whole numbers) in the "
            f"network's input pixels, got {value!r}"
        )
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value):
        raise XDreamError(f"placement [left, top, size] takes whole numbers, got {list(value)!r}")
    left, top, size = (int(v) for v in value)
    if left < 0 or top < 0 or size < 1:
        raise XDreamError(
            f"placement [left, top, size] needs left and top >= 0 and size >= 1, got "
            f"{[left, top, size]!r}"
        )
    return Box(left, top, size)


def fit(box: Box, input_size: int, network: str) -> Box:
    """``box``, refused unless it lies within the ``input_size`` px input of ``network``."""
    if box.left + box.size > input_size or box.top + box.size > input_size:
        raise XDreamError(
            f"placement {box.as_list()!r} (left, top, size) goes past the {input_size} x "
            f"{input_size} px input of {network!r}: left + size and top + size must be at most "
            f"{input_size}"
        )
    return box


def place(images: Images, box: Box, input_size: int) -> Images:
    """``images`` ``(n, 3, H, W)`` resized to the box and pasted into a grey canvas of
    ``input_size`` px."""
    canvas = torch.full(
        (images.shape[0], 3, input_size, input_size),
        GREY,
        dtype=images.dtype,
        device=images.device,
    )
    canvas[:, :, box.top : box.top + box.size, box.left : box.left + box.size] = resize(
        images, box.size
    )
    return canvas


def as_seen(images: Images, image_size: int | None, box: Box | None, input_size: int) -> Images:
    """``images`` ``(n, 3, H, W)`` as the network takes them before its normalisation:
    resized to ``image_size`` first where given (XDream's intermediate downsampling), then
    placed in ``box`` on the grey canvas, or resized to fill the ``input_size`` px input."""
    if image_size is not None:
        images = resize(images, image_size)
    if box is not None:
        return place(images, box, input_size)
    return resize(images, input_size)


def receptive_field(
    read: Callable[[torch.Tensor], torch.Tensor],
    position: tuple[int, int] | None,
    input_size: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
    what: str,
) -> torch.Tensor:
    """The receptive field of the units at ``position`` (``(x, y)``; ``None`` for a flat
    layer) of the layer that ``read`` returns (``(n, C[, H, W])`` for a network input), as an
    ``(input_size, input_size)`` boolean mask on the CPU: the input pixels where the gradient
    of the sum of the layer's channels there is not zero, for any of :data:`PROBES` seeded
    random inputs. ``what`` names the unit in the errors (weights that allow no gradient, a
    gradient that is not finite, or zero everywhere)."""
    generator = torch.Generator().manual_seed(0)
    # gradients, even for a scorer made within torch.inference_mode() or torch.no_grad()
    with torch.inference_mode(False), torch.enable_grad():
        inputs = torch.randn(PROBES, 3, input_size, input_size, generator=generator)
        inputs = inputs.to(device=device, dtype=dtype).requires_grad_(True)
        try:
            out = read(inputs)
            chosen = out if position is None else out[..., position[1], position[0]]
            (grad,) = torch.autograd.grad(chosen.float().sum(), inputs)
        except RuntimeError as err:
            if "nference tensor" not in str(err):
                raise
            raise XDreamError(
                f"cannot find the receptive field of {what}: the network's weights were made "
                "within torch.inference_mode(), which allows no gradients; build (or load) the "
                "network outside it, or give the placement as [left, top, size]"
            ) from None
    if not torch.isfinite(grad).all():  # NaN spreads through 0 * NaN: no field to read
        raise XDreamError(
            f"cannot find the receptive field of {what}: its gradient is not a finite number "
            f"for {PROBES} random inputs (the network computes NaN or infinity on them); give "
            "the placement as [left, top, size]"
        )
    support = grad.detach().abs().amax(dim=(0, 1)).cpu() > 0
    if not support.any():
        raise XDreamError(
            f"cannot find the receptive field of {what}: its response does not change with its "
            f"input for any of {PROBES} random inputs; give the placement as [left, top, size]"
        )
    return support


def receptive_field_box(
    read: Callable[[torch.Tensor], torch.Tensor],
    position: tuple[int, int] | None,
    input_size: int,
    *,
    device: torch.device,
    dtype: torch.dtype,
    what: str,
) -> Box:
    """The smallest square of the input that holds the :func:`receptive_field` of the units
    at ``position`` of the layer that ``read`` returns. A square taller or wider than the field
    is centred on it and kept within the input."""
    support = receptive_field(read, position, input_size, device=device, dtype=dtype, what=what)
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    top, bottom = int(rows[0]), int(rows[-1])
    left, right = int(cols[0]), int(cols[-1])
    size = max(bottom - top, right - left) + 1
    left = min(max(0, left - (size - (right - left + 1)) // 2), input_size - size)
    top = min(max(0, top - (size - (bottom - top + 1)) // 2), input_size - size)
    return Box(left, top, size)


def blind_to(box: Box, support: torch.Tensor) -> bool:
    """Whether a unit whose :func:`receptive_field` is ``support`` sees none of ``box``: it
    then sees the grey canvas only, and every image scores the same."""
    inside = support[box.top : box.top + box.size, box.left : box.left + box.size]
    return not bool(inside.any())


def field_words(support: torch.Tensor) -> str:
    """Where a :func:`receptive_field` lies, in words: its columns and rows of the input."""
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    return f"columns {int(cols[0])}-{int(cols[-1])}, rows {int(rows[0])}-{int(rows[-1])}"


def warn_if_blind(box: Box, fields: Callable[[], list[tuple[str, torch.Tensor]]]) -> None:
    """Warn where a unit cannot see ``box``: ``fields()`` gives each unit's name and
    :func:`receptive_field` (a search that fails, on a network that allows no gradient say,
    leaves the box unchecked: it was given, not found)."""
    try:
        named = fields()
    except XDreamError:
        return
    blind = [(what, support) for what, support in named if blind_to(box, support)]
    if not blind:
        return
    shown = "; ".join(f"{what} (its field: {field_words(support)})" for what, support in blind[:3])
    more = f"; and {len(blind) - 3} more" if len(blind) > 3 else ""
    warnings.warn(
        f"placement {box.as_list()} (left, top, size) lies outside the receptive field of "
        f"{shown}{more}: {'it sees' if len(blind) == 1 else 'they see'} only the grey canvas, "
        "and every image scores the same there. Give a box that overlaps the field, or "
        "placement 'rf'",
        UserWarning,
        stacklevel=4,
    )
