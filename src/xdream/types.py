"""Type aliases that carry shapes and units in their names.

``Images`` is ``torch.Tensor``; torch is imported on first use of the name (PEP 562), so the
modules that need only the numpy aliases (the optimisers) work without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

    Images = torch.Tensor
    """(n, 3, H, W) float32 RGB images with values in [0, 1]."""

Codes = npt.NDArray[np.float32]
"""(n, d) float32 codes in a generator's code space."""

Scores = npt.NDArray[np.float64]
"""(n,) float64 scores, higher is better, NaN for "no response"."""

StateDict = dict[str, Any]
"""A component's state: plain Python, numpy arrays and RNG states (picklable)."""


def __getattr__(name: str) -> Any:
    if name == "Images":  # the alias above, at run time
        import torch

        return torch.Tensor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
