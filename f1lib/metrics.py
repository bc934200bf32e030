"""Evaluation metrics, as device tensors (no host sync until a caller reads them)."""

from __future__ import annotations

from torch import Tensor


def accuracy_by_group(logits: Tensor, targets: Tensor, groups: dict[str, Tensor]) -> dict[str, Tensor]:
    """Top-1 accuracy overall ("acc") and within each group ("acc_<name>").

    logits: (N, C); targets: (N,) class indices; groups: name -> (N,) bool mask.
    An empty group has accuracy NaN, not a silent 0.
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits (N, C) and targets (N,) expected; got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    correct = (logits.argmax(1) == targets).float()
    out = {"acc": correct.mean()}
    for name, mask in groups.items():
        if mask.shape != targets.shape or mask.dtype.is_floating_point:
            raise ValueError(f"group {name!r} must be a bool mask of shape {tuple(targets.shape)}")
        mask = mask.bool()
        out[f"acc_{name}"] = (correct * mask).sum() / mask.sum()
    return out
