"""Natural reference images: random crops of the photos that ship with scikit-image.

XDream mixed natural images into every generation so a unit's evolved response can be compared
with its response to photos. Crops are drawn with their own seeded RNG (its state is saved in the
checkpoint), so a resumed run draws the same crops as an uninterrupted one.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from xdream.errors import XDreamError, did_you_mean
from xdream.types import Images, StateDict

PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "grass",
    "gravel",
    "brick",
    "coins",
    "moon",
    "hubble_deep_field",
    "immunohistochemistry",
)
"""Names of ``skimage.data`` photos used as the reference pool (all ship inside the package)."""

BUNDLED: tuple[str, ...] = (
    *PHOTOS,
    "cat",
    "cell",
    "checkerboard",
    "clock",
    "colorwheel",
    "logo",
    "microaneurysms",
    "page",
    "retina",
    "text",
)
"""Every ``skimage.data`` picture that :func:`photo` reads: 8-bit grey or RGB(A) images that
ship inside scikit-image (nothing is downloaded); ``skimage:NAME`` names one of them."""


@functools.cache
def photo(name: str) -> torch.Tensor:
    """A bundled photo (:data:`BUNDLED`) as a (3, H, W) float32 tensor in [0, 1] (grey photos
    repeated to RGB, an alpha channel dropped: ``logo``'s is opaque)."""
    from skimage import data

    if name not in BUNDLED:  # other skimage.data names are 3-D stacks, tuples, downloads, ...
        raise XDreamError(
            "xdream reads only the 8-bit grey and colour pictures that ship inside "
            f"scikit-image, and {name!r} is not one of them.{did_you_mean(name, BUNDLED)} "
            f"Give skimage:NAME with NAME one of {', '.join(BUNDLED)} (e.g. skimage:chelsea)"
        )
    try:
        arr = np.asarray(getattr(data, name)())
    except Exception as err:  # a scikit-image version that does not ship it
        raise XDreamError(
            f"this version of scikit-image does not give its photo {name!r} from its own files "
            f"({type(err).__name__}); choose another of {', '.join(PHOTOS)}"
        ) from None
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise XDreamError(
            f"scikit-image's {name!r} is a {arr.dtype} array of shape {arr.shape}, not an 8-bit "
            f"grey or colour photo; choose another of {', '.join(PHOTOS)}"
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3]
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


@functools.lru_cache(maxsize=256)
def crop(name: str, top: int, left: int, side: int, size: int) -> Images:
    """A square crop (top, left, side) of a photo, resized to ``size`` px: (1, 3, s, s).

    Cached, so experiments run in lockstep with the same reference seed resize each crop once.
    """
    img = photo(name)[:, top : top + side, left : left + side][None]
    return F.interpolate(
        img, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0.0, 1.0)


class ReferenceImages:
    """Draws ``n`` random square crops per generation, covering 30-100% of a photo's short side.

    Ids are ``ref_{photo}_{top}_{left}_{side}``, so any crop can be regenerated from its id.
    """

    def __init__(
        self, size: int, seed: int, min_fraction: float = 0.3, photos: tuple[str, ...] = PHOTOS
    ) -> None:
        self.size = size
        self.min_fraction = min_fraction
        self.photos = photos
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._next: tuple[list[tuple[str, int, int, int]], Future[Images]] | None = None

    def _draw(self, rng: np.random.Generator, n: int) -> list[tuple[str, int, int, int]]:
        crops = []
        for _ in range(n):
            name = self.photos[int(rng.integers(len(self.photos)))]
            _, h, w = photo(name).shape
            short = min(h, w)
            side = int(rng.integers(int(self.min_fraction * short), short + 1))
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
            crops.append((name, top, left, side))
        return crops

    def sample(self, n: int) -> tuple[Images, list[str]]:
        """``n`` crops at ``size`` px and their ids.

        The next call's crops (same ``n``) are then resized in a background thread while the
        caller scores these; the crop RNG itself only advances here, so checkpoints and resumed
        runs draw exactly the crops an uninterrupted run draws.
        """
        crops = self._draw(self._rng, n)
        if not crops:
            return torch.zeros(0, 3, self.size, self.size), []
        ready, self._next = self._next, None
        if ready is not None and ready[0] == crops:
            images = ready[1].result()
        else:
            images = _resize_all(crops, self.size)
        ids = [f"ref_{name}_{top}_{left}_{side}" for name, top, left, side in crops]
        peek = np.random.Generator(np.random.PCG64())
        peek.bit_generator.state = self._rng.bit_generator.state
        upcoming = self._draw(peek, n)
        self._next = (upcoming, _prefetcher().submit(_resize_all, upcoming, self.size))
        return images, ids

    def wait(self) -> None:
        """Block until the next call's crops are resized (benchmarks charge that to the loop)."""
        if self._next is not None:
            self._next[1].result()

    def state_dict(self) -> StateDict:
        """The crop RNG's state."""
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: StateDict) -> None:
        """Restore :meth:`state_dict`."""
        self._rng.bit_generator.state = state["rng"]


def _resize_all(crops: list[tuple[str, int, int, int]], size: int) -> Images:
    return torch.cat([crop(name, top, left, side, size) for name, top, left, side in crops])


@functools.cache
def _prefetcher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="xdream-references")


def from_id(ref_id: str, size: int) -> Images:
    """Regenerate a reference crop from its id (``ref_{photo}_{top}_{left}_{side}``).

    Raises :class:`XDreamError` for an id that names no crop a reference could be: another
    form, a photo not in :data:`BUNDLED` (references are drawn from :data:`PHOTOS` unless
    :class:`ReferenceImages` is given others), or a square that is empty or not inside the
    photo."""
    form = "reference ids look like ref_PHOTO_TOP_LEFT_SIDE, as in ref_chelsea_10_20_150"
    try:
        if not ref_id.startswith("ref_"):
            raise ValueError(ref_id)
        name, *numbers = ref_id.removeprefix("ref_").rsplit("_", 3)
        top, left, side = (int(n) for n in numbers)
    except ValueError:
        raise XDreamError(f"{ref_id!r} is not a reference id: {form}") from None
    if name not in BUNDLED:
        raise XDreamError(
            f"{ref_id!r} is not a reference id: {name!r} is not a photo references are drawn "
            f"from.{did_you_mean(name, BUNDLED)} The photos are {', '.join(BUNDLED)}; {form}"
        )
    _, h, w = photo(name).shape
    if side < 1 or top < 0 or left < 0 or top + side > h or left + side > w:
        raise XDreamError(
            f"{ref_id!r} is not a crop of {name!r} ({h} x {w} px): the square of side {side} "
            f"at row {top}, column {left} must lie inside the photo (side >= 1, top + side <= "
            f"{h}, left + side <= {w})"
        )
    return crop(name, top, left, side, size)
