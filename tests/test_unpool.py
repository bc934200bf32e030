"""f1lib.unpool.max_unpool against PyTorch's max_unpool2d: the same values and gradients, bit
for bit, in the input's memory layout."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from f1lib.unpool import max_unpool

CL = torch.channels_last


def pooled(shape, dtype, layout, seed=0):
    """max_pool2d's values and indices over a ReLU'd random map: many windows tie at 0."""
    torch.manual_seed(seed)
    before = torch.randn(shape, dtype=torch.float64).relu().to(dtype)
    before = before.contiguous(memory_format=layout)
    values, index = F.max_pool2d(before, 2, 2, return_indices=True)
    return values, index, before.shape[-2:]


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 3, 8, 12), (3, 5, 13, 15), (1, 16, 7, 9)])
def test_values_and_gradients_equal_max_unpool2d_bit_for_bit(shape, dtype, layout):
    values, index, size = pooled(shape, dtype, layout)
    ours_in = values.detach().clone().requires_grad_()
    # PyTorch's unpooling in float64, cast back: it only moves values, and float64 holds every
    # float32 and bfloat16 exactly, so this is its result in `dtype` bit for bit, also where its
    # CPU kernel lacks bfloat16 (torch 2.2, the oldest release that pyproject.toml allows)
    theirs_in = values.detach().double().requires_grad_()
    ours = max_unpool(ours_in, index, size)
    theirs = F.max_unpool2d(theirs_in, index, 2, 2, output_size=size)
    assert ours.shape == theirs.shape == (*shape[:2], *size)  # odd sizes come back whole
    assert ours.dtype == dtype
    assert torch.equal(ours, theirs.to(dtype))
    # a gradient that differs at every output position, so a wrong gather shows
    incoming = torch.randn(theirs.shape, dtype=torch.float64).to(dtype)
    ours.backward(incoming)
    theirs.backward(incoming.double())
    assert torch.equal(ours_in.grad, theirs_in.grad.to(dtype))


def test_the_output_keeps_the_inputs_layout_and_a_gradient_in_another_layout_is_read_right():
    values, index, size = pooled((2, 8, 10, 14), torch.float32, CL)
    assert max_unpool(values, index, size).is_contiguous(memory_format=CL)
    nchw = values.contiguous()
    assert max_unpool(nchw, index, size).is_contiguous()
    leaf = values.detach().clone().requires_grad_()
    out = max_unpool(leaf, index, size)
    incoming = torch.randn(out.shape)  # NCHW, while the output is channels_last
    out.backward(incoming)
    # each pooled value's gradient is the incoming gradient where that value was put
    expected = incoming.flatten(2).gather(2, index.flatten(2)).view_as(values)
    assert torch.equal(leaf.grad, expected)


class _AtenOps(TorchDispatchMode):
    """Records the name of every aten op that runs inside it."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


# the ops through which a tensor is copied into another memory layout
LAYOUT_COPIES = ("clone", "copy_", "_to_copy", "contiguous")


@pytest.mark.parametrize("layout", [torch.contiguous_format, CL])
def test_neither_the_unpooling_nor_its_gradient_copies_between_layouts(layout):
    """The module's reason to exist: in a channels_last network PyTorch's CUDA unpooling
    copies to and from NCHW; this one must not copy at all, in either layout, as long as the
    incoming gradient is laid out as the output is."""
    values, index, size = pooled((2, 8, 10, 14), torch.float32, layout)
    leaf = values.detach().clone().requires_grad_()
    incoming = torch.randn((2, 8, *size)).contiguous(memory_format=layout)
    with _AtenOps() as ops:
        out = max_unpool(leaf, index, size)
        out.backward(incoming)
    copies = [name for name in ops.names if name.split(".")[0] in LAYOUT_COPIES]
    assert copies == [], ops.names
    # the recorder sees the function's own ops, its gradient's gather among them
    assert "scatter_.src" in ops.names and "gather.default" in ops.names


def test_a_hand_made_unpooling():
    x = torch.tensor([[[[5.0, 6.0]]]])
    index = torch.tensor([[[[3, 1]]]])  # (1, 0) and (0, 1) of a 2 x 3 plane: h * 3 + w
    assert max_unpool(x, index, (2, 3)).tolist() == [[[[0.0, 6.0, 0.0], [5.0, 0.0, 0.0]]]]


def test_bad_input_is_refused_with_a_reason():
    values, index, size = pooled((1, 2, 4, 4), torch.float32, torch.contiguous_format)
    with pytest.raises(ValueError, match="must be int64"):
        max_unpool(values, index.int(), size)
    with pytest.raises(ValueError, match="x's shape"):
        max_unpool(values, index[:, :1], size)
    with pytest.raises(ValueError, match=r"at least x's \(2, 2\)"):
        max_unpool(values, index, (1, 4))
    with pytest.raises(ValueError, match=r"\(N, C, h, w\)"):
        max_unpool(values[0], index[0], size)
