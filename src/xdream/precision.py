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
and the caller's own setting is untouched. With torch 2.9 and later the settings are PyTorch's
``fp32_precision`` ones (``torch.backends.cuda.matmul``, ``torch.backends.cudnn.conv`` and
``.rnn``), as PyTorch recommends, so a program that uses that API is not mixed with the legacy
``allow_tf32`` flags (PyTorch then refuses to read them); older torch gets the legacy flags.
On the CPU the same API lets oneDNN compute float32 in bfloat16 (``torch.backends.mkldnn``, set
by ``torch.backends.fp32_precision = "bf16"`` or ``torch.set_float32_matmul_precision("medium")``;
scores moved by up to 18% on a CPU with bfloat16 units): :func:`tf32_mode` and :func:`set_tf32`
set those to IEEE as well, whatever ``allowed`` says (TF32 is a CUDA setting).
``xdream bench optimizers`` sets IEEE float32 for its whole (worker) process. A generator or
scorer used on its own, in a loop of your own, computes with PyTorch's current setting: wrap the
calls in ``with tf32_mode(False):`` for the arithmetic experiments use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def _precision_settings() -> list[Any]:
    """The settings of PyTorch's ``fp32_precision`` API (torch 2.9 and later) that TF32 on CUDA
    depends on: matrix products, cuDNN convolutions and cuDNN RNNs (what the legacy flags
    ``cuda.matmul.allow_tf32`` and ``cudnn.allow_tf32`` set); ``[]`` for an older torch.

    Where the API exists, xdream uses it alone: once a program sets TF32 through it, reading a
    legacy flag raises ``RuntimeError`` (a "mix of the legacy and new APIs")."""
    backends = torch.backends
    if not hasattr(backends.cuda.matmul, "fp32_precision"):
        return []
    return [backends.cuda.matmul, backends.cudnn.conv, backends.cudnn.rnn]  # type: ignore[attr-defined]


def _cpu_settings() -> list[Any]:
    """oneDNN's ``fp32_precision`` settings on the CPU (matrix products, convolutions, RNNs),
    which may compute float32 in bfloat16; ``[]`` for a torch without them."""
    mkldnn = torch.backends.mkldnn
    if not hasattr(getattr(mkldnn, "matmul", None), "fp32_precision"):
        return []
    return [mkldnn.matmul, mkldnn.conv, mkldnn.rnn]  # type: ignore[attr-defined]


def set_tf32(allowed: bool) -> None:
    """Allow (``True``) or forbid TensorFloat-32 in CUDA convolutions and matrix products, for
    the whole process (PyTorch's flags are global); CPU float32 stays IEEE either way (oneDNN's
    bfloat16 setting is turned off). Harmless without CUDA."""
    settings = _precision_settings()
    for setting in settings:
        setting.fp32_precision = "tf32" if allowed else "ieee"
    for setting in _cpu_settings():
        setting.fp32_precision = "ieee"
    if not settings:  # a torch before the fp32_precision API
        torch.backends.cudnn.allow_tf32 = bool(allowed)
        torch.backends.cuda.matmul.allow_tf32 = bool(allowed)


def tf32_allowed(op: str = "conv") -> bool:
    """Whether TensorFloat-32 is allowed in CUDA convolutions (``op="conv"``) or matrix
    products (``op="matmul"``): PyTorch's current setting."""
    if op not in ("conv", "matmul"):
        raise ValueError(f"op must be 'conv' or 'matmul', got {op!r}")
    settings = _precision_settings()
    if not settings:
        module = torch.backends.cudnn if op == "conv" else torch.backends.cuda.matmul
        return bool(module.allow_tf32)
    # "none" inherits: a convolution's from cuDNN's, then both from the process-wide setting
    chain = [settings[0]] if op == "matmul" else [settings[1], torch.backends.cudnn]
    for setting in [*chain, torch.backends]:
        if setting.fp32_precision != "none":
            return bool(setting.fp32_precision == "tf32")
    return False


@contextmanager
def tf32_mode(allowed: bool) -> Iterator[None]:
    """Allow or forbid TensorFloat-32 (as :func:`set_tf32`) inside the ``with`` block, then put
    PyTorch's settings back as they were, even after an error: the ``fp32_precision`` ones
    :func:`set_tf32` changes where the torch has them (the legacy flags, which they do not
    change, stay as they were), else both legacy flags; and oneDNN's CPU settings. The
    settings are global to the process, not to a thread: other threads computing meanwhile see
    the same setting."""
    settings = _precision_settings()
    cpu = _cpu_settings()
    if settings:
        saved = [setting.fp32_precision for setting in settings]
    else:
        saved = [torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32]
    saved_cpu = [setting.fp32_precision for setting in cpu]
    set_tf32(allowed)
    try:
        yield
    finally:
        if settings:
            for setting, value in zip(settings, saved):
                setting.fp32_precision = value
        else:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        for setting, value in zip(cpu, saved_cpu):
            setting.fp32_precision = value
