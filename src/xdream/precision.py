"""Floating-point precision of the forward passes on CUDA: IEEE float32 unless asked otherwise.

PyTorch lets cuDNN run float32 convolutions in TensorFloat-32 (TF32, a 10-bit mantissa) on
Ampere and later GPUs by default. The faster kernels it then picks depend on the batch, so one
image's score depends on which batch it is scored in. Measured on an H200 (torch 2.11, the
embedded EfficientNet-Lite0 on 64 px ``fourier`` images; ``docs/benchmarks.md``, "Float32 on
CUDA"): with TF32 the same 7 images scored 0.3-0.6% differently in a batch of 7 than in a batch
of 40, and up to 18% (relative) differently from the CPU; without it, identically in both
batches, and within 5e-5 of the CPU. TF32 made the forward passes at most 21% faster there (224
px; none at 64 px). xdream therefore computes in IEEE float32: every :class:`~xdream.
experiment.Experiment` sets this process-wide as it is built (``tf32 = false``, the default, in
``[experiment]``), and so does ``xdream bench optimizers``; ``tf32 = true`` allows TF32 again.
"""

from __future__ import annotations

import torch


def set_tf32(allowed: bool) -> None:
    """Allow (``True``) or forbid TensorFloat-32 in CUDA convolutions and matrix products, for
    the whole process (PyTorch's flags are global). Harmless without CUDA."""
    torch.backends.cudnn.allow_tf32 = bool(allowed)
    torch.backends.cuda.matmul.allow_tf32 = bool(allowed)


def tf32_allowed() -> bool:
    """Whether TensorFloat-32 is allowed in CUDA convolutions (PyTorch's current setting)."""
    return bool(torch.backends.cudnn.allow_tf32)
