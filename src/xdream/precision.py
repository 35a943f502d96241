"""Floating-point precision of the forward passes on CUDA: IEEE float32 unless asked otherwise.

PyTorch lets cuDNN run float32 convolutions in TensorFloat-32 (TF32, a 10-bit mantissa) on
Ampere and later GPUs by default. The faster kernels it then picks depend on the batch, so one
image's score depends on which batch it is scored in. Measured on an H200 (torch 2.11, the
embedded EfficientNet-Lite0 on 64 px ``fourier`` images; ``docs/benchmarks.md``, "Float32 on
CUDA"): with TF32 the same 7 images scored 0.3-0.6% differently in a batch of 7 than in a batch
of 40, and up to 18% (relative) differently from the CPU; without it, identically in both
batches, and within 5e-5 of the CPU. TF32 made the forward passes at most 21% faster there (224
px; none at 64 px). xdream therefore computes in IEEE float32: every
:class:`~xdream.experiment.Experiment` renders and scores under :func:`tf32_mode` with its own
setting (``tf32 = false``, the default, in ``[experiment]``; ``tf32 = true`` allows TF32) and
puts PyTorch's flags back afterwards, so two experiments in one process each compute as they ask
and the caller's own setting is untouched.
``xdream bench optimizers`` sets IEEE float32 for its whole (worker) process. A generator or
scorer used on its own, in a loop of your own, computes with PyTorch's current setting: wrap the
calls in ``with tf32_mode(False):`` for the arithmetic experiments use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def set_tf32(allowed: bool) -> None:
    """Allow (``True``) or forbid TensorFloat-32 in CUDA convolutions and matrix products, for
    the whole process (PyTorch's flags are global). Harmless without CUDA."""
    torch.backends.cudnn.allow_tf32 = bool(allowed)
    torch.backends.cuda.matmul.allow_tf32 = bool(allowed)


def tf32_allowed() -> bool:
    """Whether TensorFloat-32 is allowed in CUDA convolutions (PyTorch's current setting)."""
    return bool(torch.backends.cudnn.allow_tf32)


@contextmanager
def tf32_mode(allowed: bool) -> Iterator[None]:
    """Allow or forbid TensorFloat-32 (as :func:`set_tf32`) inside the ``with`` block, then put
    both of PyTorch's flags back as they were, even after an error. The flags are global to
    the process, not to a thread: other threads computing meanwhile see the same setting."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(allowed)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
