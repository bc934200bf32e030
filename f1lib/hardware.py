"""How a device computes best: whether its convolutions should run in bf16 and in the
channels_last layout, and its float32 matrix products on TF32 tensor cores."""

from __future__ import annotations

from contextlib import contextmanager

import torch


def bf16_convolutions(device) -> bool:
    """Whether convolutions on `device` should run under bfloat16 autocast: on CUDA devices
    of compute capability 8.0 or newer (Ampere, Hopper), where cuDNN has bf16 kernels. On
    older GPUs, Colab's T4 (7.5) among them, PyTorch runs bf16 convolutions on slow
    kernels of its own (pytorch/pytorch#81139), and float32 is faster; on the CPU the runs
    stay in float32, as its tests check them bit for bit."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def channels_last_convolutions(device) -> bool:
    """Whether a convolutional network on `device` should hold its images and weights in
    channels_last memory format: under bf16 convolutions (`bf16_convolutions`), whose
    tensor-core kernels read channels last, and on the CPU, where oneDNN's float32
    convolutions do too, and measured faster than NCHW (benchmarks/RESULTS.md), computing
    the same function (tests/test_segmentation.py compares the two layouts in float64). Older GPUs' float32
    convolutions stay NCHW, as nothing has measured them."""
    device = torch.device(device)
    return device.type == "cpu" or bf16_convolutions(device)


@contextmanager
def tf32_matmuls(enabled: bool = True):
    """Inside the block, with `enabled`, float32 matrix products may run on
    TF32 tensor cores (torch.set_float32_matmul_precision("high"): 10 bits of
    mantissa, float32 range and accumulation); the precision before the block
    comes back after it. Callers enable it on CUDA only: it also sets oneDNN's
    float32 matmul precision to "tf32" (torch.backends.mkldnn.matmul), which
    CPUs with such an instruction set would use."""
    precision = torch.get_float32_matmul_precision()
    if enabled:
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
