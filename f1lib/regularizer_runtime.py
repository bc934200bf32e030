"""What lets F1Regularizer's arithmetic run anywhere: its input checks, a gradient scaler,
and the shims for autocast, torch.compile, torch.func.vmap and CUDA graphs.

None of it is the method; `f1lib.regularizer` holds that, and calls these.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# whether torch.compile is tracing the call: torch.compiler.is_compiling since torch 2.3,
# torch._dynamo's before; resolved at import, as torch 2.2's Dynamo cannot trace the lookup
compiling = getattr(torch.compiler, "is_compiling", None)
if compiling is None:
    from torch._dynamo import is_compiling as compiling


def scale_grad(x: Tensor, scale: float | Tensor) -> Tensor:
    """x itself in the forward pass; its gradient multiplied by `scale` (a float or a
    tensor) in the backward.

    x + scale * (x - x) with the first and last x detached: for finite x the
    value equals x (x - x is exactly 0; only a negative zero comes out positive),
    and the gradient is exactly grad * scale. Plain ATen ops rather than a custom
    autograd.Function, because torch.func's vmap batches them natively, where a
    Function's generated vmap rule runs Python on every call. Two kernels (the
    difference, then one fused multiply-add), as the forward pass runs them over
    the whole tau table at every step."""
    frozen = x.detach()
    if isinstance(scale, Tensor):
        return torch.addcmul(frozen, x - frozen, scale)
    return torch.add(frozen, x - frozen, alpha=scale)


def running_mean_update(module: nn.Module, name: str, value: Tensor, momentum: float) -> None:
    """buffer += momentum (value - buffer), for the module's buffer `name`.

    In place, as a CUDA graph replays it into the same memory and as
    torch.func.functional_call (run-batching) passes it back. Under torch.compile,
    a new tensor instead: Inductor's partitioner may recompute a read of the
    buffer in the backward pass after the forward pass has updated it, which
    silently gives w the gradient of the updated statistics (pytorch/pytorch#197039;
    tests/test_regularizer.py). Checked on the CPU only; f1lib's own CUDA graphs
    (f1lib.steps.CapturedStep) take the in-place path, and torch.compile's
    mode="reduce-overhead" is unchecked."""
    buffer = getattr(module, name)
    if compiling():
        setattr(module, name, torch.add(buffer, value - buffer, alpha=momentum))
    else:
        buffer.add_(value - buffer, alpha=momentum)


def positive_mask(positive) -> Tensor:
    """The I+ membership of a training set as a non-empty (N,) bool tensor with at least
    one positive and one negative; 0/1 values are accepted, anything else raises
    ValueError."""
    positive = torch.as_tensor(positive)
    if positive.dim() != 1 or positive.numel() == 0:
        raise ValueError(
            f"positive must be a non-empty (N,) mask, got shape {tuple(positive.shape)}"
        )
    if positive.dtype != torch.bool:
        if not ((positive == 0) | (positive == 1)).all():
            raise ValueError("positive must be boolean (or 0/1)")
        positive = positive.bool()
    if not positive.any():
        raise ValueError("the F1 regularizer needs at least one positive example")
    if positive.all():
        raise ValueError("the F1 regularizer needs at least one negative example: with every "
                         "example positive, F1 is 1 whatever the scores, and there is nothing "
                         "to learn")
    return positive


def slot_table(positive: Tensor) -> tuple[Tensor, Tensor]:
    """(the dataset indices of the positives, each example's slot in the per-positive
    tables: its rank among the positives, -1 for a negative)."""
    positive_index = torch.nonzero(positive).squeeze(1)
    slot = torch.full((positive.numel(),), -1, dtype=torch.long)
    slot[positive_index] = torch.arange(positive_index.numel())
    return positive_index, slot


def check_labels(is_positive: Tensor, positive: Tensor, index: Tensor) -> None:
    """Raise ValueError unless every index is in range of the table `is_positive` and
    labelled `positive` as there. Reads values, hence synchronises with an accelerator."""
    num_examples = is_positive.numel()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_examples):
        raise ValueError(
            f"dataset index out of range [0, {num_examples}): "
            f"min {int(index.min())}, max {int(index.max())}"
        )
    table = is_positive[index]
    missing = index[positive & ~table]
    if missing.numel():
        raise ValueError(
            f"{missing.numel()} positive(s) absent from the regularizer's index table, "
            f"e.g. dataset indices {missing[:5].tolist()}: build F1Regularizer from the "
            "same positive mask that labels the batches"
        )
    extra = index[~positive & table]
    if extra.numel():
        raise ValueError(
            f"{extra.numel()} example(s) labelled negative in the batch are positives in "
            f"the index table, e.g. dataset indices {extra[:5].tolist()}"
        )


def checked_batch(scores: Tensor, positive: Tensor, index: Tensor, features: int,
                  dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(scores as (B, features) in the tables' `dtype`, index as int64), after checking
    the shapes and dtypes of a batch; ValueError names what is wrong."""
    if dtype in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"the regularizer's tables are {dtype}, where the LP's constraints keep "
            "three digits (a model's .half() or .bfloat16() reaches a regularizer it holds): "
            "keep it in float32 with reg.float(), and mixed precision with torch.autocast"
        )
    h = scores.to(dtype)  # the tables' float32, or float64 after .double()
    if h.dim() == 1:
        h = h.unsqueeze(1)
    if h.dim() != 2 or h.shape[1] != features:
        shapes = "(B,) or (B, 1)" if features == 1 else f"(B, {features})"
        raise ValueError(
            f"scores must be {shapes}, as features={features}; got {tuple(scores.shape)}"
        )
    batch = h.shape[0]
    if positive.shape != (batch,) or positive.dtype != torch.bool:
        raise ValueError(
            f"positive must be a bool tensor of shape ({batch},); got "
            f"{positive.dtype} {tuple(positive.shape)}"
        )
    if index.shape != (batch,) or index.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"index must be an integer tensor of shape ({batch},); got "
            f"{index.dtype} {tuple(index.shape)}"
        )
    return h, index.long()


def without_autocast(device_type: str):
    """The tables' dtype whatever autocast the caller's loss runs under: in bf16 the
    scores and the LP's constraints would keep three digits, and not fit the tables."""
    return torch.autocast(device_type, enabled=False)
