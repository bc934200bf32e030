"""Evaluation metrics, as device tensors (no host sync until a caller reads them)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


def accuracy_by_group(logits: Tensor, targets: Tensor,
                      groups: dict[str, Tensor]) -> dict[str, Tensor]:
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


def sky_iou(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """IoU of sky and mean IoU over {background, sky}, pooled over every pixel of
    the set (the standard segmentation IoU), from torchmetrics.

    pred, target: (N, H, W) bool or {0, 1} masks, True on sky.
    """
    # where transformers is installed, torchmetrics imports it, and with it tqdm.auto,
    # which without ipywidgets warns about notebook progress bars (the GPU machine's
    # image): a warning about nobody's widgets, printed into the book's output
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from torchmetrics.functional.classification import multiclass_jaccard_index

    _check_masks(pred, target)
    per_class = multiclass_jaccard_index(pred.long(), target.long(), num_classes=2,
                                         average="none")
    return {"iou_sky": per_class[1], "miou": per_class.mean()}


def _intersection_union(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    _check_masks(pred, target)
    pred, target = pred.bool().flatten(1), target.bool().flatten(1)
    return (pred & target).sum(1), (pred | target).sum(1)


def per_image_iou(pred: Tensor, target: Tensor) -> Tensor:
    """(N,) IoU of sky in each image; 1 where both masks are empty (nothing to find,
    nothing found)."""
    inter, union = _intersection_union(pred, target)
    ones = torch.ones_like(union, dtype=torch.float)
    return torch.where(union > 0, inter / union.clamp(min=1), ones)


THRESHOLDS = 10  # 0.50, 0.55, ..., 0.95


def thresholded_iou(pred: Tensor, target: Tensor) -> Tensor:
    """The successor's "mean IoU": per image, the fraction of the thresholds
    0.50, 0.55, ..., 0.95 that its sky IoU exceeds, averaged over images; its
    public code (github.com/abhay-venkatesh/f1-cv) computes
    ceil(clamp(20 (IoU - 0.5), 0, 10)) / 10. Not the
    standard mean IoU.

    Counted exactly, in integers (IoU > 0.5 + 0.05 k  <=>  20 inter > (10 + k) union):
    in floating point the formula counts an IoU of exactly 0.55 as above 0.55.
    """
    inter, union = _intersection_union(pred, target)
    k = torch.arange(THRESHOLDS, device=inter.device)
    cleared = (20 * inter[:, None] > (10 + k) * union[:, None]).sum(1)
    cleared = torch.where(union > 0, cleared, torch.full_like(cleared, THRESHOLDS))
    return (cleared.float() / THRESHOLDS).mean()


def _check_masks(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"masks must both be (N, H, W); got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
