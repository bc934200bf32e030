"""Max-unpooling that keeps its input's memory layout.

SegNet's decoder opens each block by max-unpooling with the encoder's pooling
indices. PyTorch's CUDA `max_unpool2d` works in NCHW only: on a channels_last
network it copies its input and its indices (int64) to NCHW and returns NCHW,
which the next convolution copies back; its gradient, a gather over flattened
planes, copies the incoming gradient and the indices once more. segnet.py's unpool
row measures what avoiding those copies is worth.

`max_unpool` scatters each pooled value straight into an output laid out as
its input is (NCHW or channels_last), and gathers the gradient back through
the same positions: the values and gradients of `F.max_unpool2d`, bit for bit
(each output element receives at most one value, and each gradient element is
one element of the incoming gradient), without the copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _layout(x: Tensor) -> torch.memory_format:
    """channels_last when `x` is laid out so (and not also plain contiguous), else NCHW."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _memory_order(layout: torch.memory_format) -> tuple[int, int, int, int]:
    """The dimensions of an (N, C, H, W) tensor in the order that `layout` keeps them in memory."""
    return (0, 2, 3, 1) if layout == torch.channels_last else (0, 1, 2, 3)


class _MaxUnpool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, size: tuple[int, int]) -> Tensor:
        layout = _layout(x)
        n, c = x.shape[:2]
        # allocated in its layout: new_zeros would give NCHW, and a copy to channels_last
        out = torch.empty((n, c, *size), dtype=x.dtype, device=x.device,
                          memory_format=layout).zero_()
        sample, s_c, _, s_w = out.stride()
        # index = h * W + w within its (n, c) plane; in either layout the plane's row stride
        # is W times its column stride, so the element sits c * s_c + index * s_w past its
        # sample's start
        channels = torch.arange(c, device=x.device).view(1, c, 1, 1) * s_c
        order = _memory_order(layout)

        def rows(t: Tensor) -> Tensor:  # a row per sample, in memory order: a view, no copy,
            return t.permute(order).reshape(n, -1)  # for a tensor laid out as the output

        positions = rows(torch.add(channels, index, alpha=s_w))  # one kernel, index's layout
        # a scatter along each sample's row, which measured faster than index_put_ over
        # one flat index on the CPU
        out.as_strided((n, sample), (sample, 1)).scatter_(1, positions, rows(x))
        ctx.save_for_backward(positions)
        ctx.layout, ctx.shape = layout, x.shape
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (positions,) = ctx.saved_tensors
        grad = grad.contiguous(memory_format=ctx.layout)  # as the output was: no copy then
        sample = grad.stride(0)
        picked = grad.as_strided((len(grad), sample), (sample, 1)).gather(1, positions)
        order = _memory_order(ctx.layout)
        inverse = sorted(range(4), key=order.__getitem__)
        # back from each sample's row in memory order to (N, C, h, w), in the output's layout
        return picked.view([ctx.shape[d] for d in order]).permute(inverse), None, None


def max_unpool(x: Tensor, index: Tensor, size: Sequence[int]) -> Tensor:
    """`F.max_unpool2d(x, index, kernel, stride, output_size=size)` for the indices that
    `F.max_pool2d(..., return_indices=True)` gave, in `x`'s memory layout.

    x:     (N, C, h, w) pooled values;
    index: (N, C, h, w) int64, each value's position h' * W + w' in its (H, W) plane;
    size:  (H, W) of the output, the size before pooling.
    """
    if x.dim() != 4:
        raise ValueError(f"max_unpool: x must be (N, C, h, w), got shape {tuple(x.shape)}")
    if index.shape != x.shape:
        raise ValueError(f"max_unpool: index must have x's shape {tuple(x.shape)}, "
                         f"got {tuple(index.shape)}")
    if index.dtype != torch.int64:
        raise ValueError(f"max_unpool: index must be int64 (max_pool2d's), got {index.dtype}")
    size = tuple(int(s) for s in size)
    if len(size) != 2 or size[0] < x.shape[2] or size[1] < x.shape[3]:
        raise ValueError(f"max_unpool: size must be (H, W), at least x's {tuple(x.shape[2:])}, "
                         f"got {size}")
    return _MaxUnpool.apply(x, index, size)
