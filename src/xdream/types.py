"""Type aliases that carry shapes and units in their names."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

Codes = npt.NDArray[np.float32]
"""(n, d) float32 codes in a generator's code space."""

Scores = npt.NDArray[np.float64]
"""(n,) float64 scores, higher is better, NaN for "no response"."""

Images = torch.Tensor
"""(n, 3, H, W) float32 RGB images with values in [0, 1]."""

StateDict = dict[str, Any]
"""A component's state: plain Python, numpy arrays and RNG states (picklable)."""
