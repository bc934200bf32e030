"""f1lib.unpool.max_unpool against PyTorch's max_unpool2d: the same values and gradients, bit
for bit, in the input's memory layout."""

import pytest
import torch
import torch.nn.functional as F

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
    theirs_in = values.detach().clone().requires_grad_()
    ours = max_unpool(ours_in, index, size)
    theirs = F.max_unpool2d(theirs_in, index, 2, 2, output_size=size)
    assert ours.shape == theirs.shape == (*shape[:2], *size)  # odd sizes come back whole
    assert ours.dtype == dtype
    assert torch.equal(ours, theirs)
    # a gradient that differs at every output position, so a wrong gather shows
    incoming = torch.randn(theirs.shape, dtype=torch.float64).to(dtype)
    ours.backward(incoming)
    theirs.backward(incoming)
    assert torch.equal(ours_in.grad, theirs_in.grad)


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
