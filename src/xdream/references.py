"""Natural reference images: random crops of the photos that ship with scikit-image.

XDream mixed natural images into every generation so a unit's evolved response can be compared
with its response to photos. Crops are drawn with their own seeded RNG (its state is saved in the
checkpoint), so a resumed run draws the same crops as an uninterrupted one.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

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


@functools.cache
def photo(name: str) -> torch.Tensor:
    """A bundled photo as a (3, H, W) float32 tensor in [0, 1] (grey photos repeated to RGB)."""
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    arr = arr[..., :3]
    scale = 255.0 if arr.dtype == np.uint8 else float(max(arr.max(), 1e-8))
    return torch.from_numpy(arr.astype(np.float32) / scale).permute(2, 0, 1).contiguous()


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

    def sample(self, n: int) -> tuple[Images, list[str]]:
        """``n`` crops at ``size`` px and their ids."""
        images, ids = [], []
        for _ in range(n):
            name = self.photos[int(self._rng.integers(len(self.photos)))]
            _, h, w = photo(name).shape
            short = min(h, w)
            side = int(self._rng.integers(int(self.min_fraction * short), short + 1))
            top = int(self._rng.integers(0, h - side + 1))
            left = int(self._rng.integers(0, w - side + 1))
            images.append(crop(name, top, left, side, self.size))
            ids.append(f"ref_{name}_{top}_{left}_{side}")
        if not images:
            return torch.zeros(0, 3, self.size, self.size), []
        return torch.cat(images), ids

    def state_dict(self) -> StateDict:
        """The crop RNG's state."""
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: StateDict) -> None:
        """Restore :meth:`state_dict`."""
        self._rng.bit_generator.state = state["rng"]


def from_id(ref_id: str, size: int) -> Images:
    """Regenerate a reference crop from its id (``ref_{photo}_{top}_{left}_{side}``)."""
    name, top, left, side = ref_id.removeprefix("ref_").rsplit("_", 3)
    return crop(name, int(top), int(left), int(side), size)
