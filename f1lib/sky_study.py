"""Does F1 regularization help SegNet find the sky? The runs behind book/sky_segmentation.ipynb.

The runs and their comparison are f1lib.study's: baseline (beta = 0) and the
F1 variants, the same SGD step for all. The successor (Ravi et al. 2020)
trained its sky baseline with Adam and its F1 runs with plain SGD.
The F1 positives I+ are the "big" images, sky fraction >= 0.6.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import Schedule
from .data.sky_common import SkyBatch, sample_indices
from .hardware import bf16_convolutions, channels_last_convolutions
from .lp import f1_score
from .metrics import sky_iou, thresholded_iou
from .models import SegNet
from .regularizer import F1Regularizer
from .study import Run, run_split_study, train_split

# what the notebook summarises, per method
SUMMARY_COLUMNS = ("miou", "iou_sky", "thresholded_iou", "miou_big", "miou_small", "head_f1",
                   "violation")

# SegNet runs trained side by side on CUDA (f1lib.steps.side_by_side), where one run leaves
# the GPU under-filled (benchmarks/RESULTS.md); on the CPU the step is compute-bound and they
# train one at a time.
SIDE_BY_SIDE = 3


@dataclass
class SkySet:
    """Images as float in [0, 1] (channels_last where the network runs in it:
    `f1lib.hardware.channels_last_convolutions`), masks as class indices, on one device."""

    images: Tensor  # (N, 3, H, W) float32
    masks: Tensor  # (N, H, W) int64, 1 on sky
    big: Tensor  # (N,) bool, the F1 positives

    @classmethod
    def from_batch(cls, batch: SkyBatch, device) -> "SkySet":
        images = batch.images.to(device).float().div_(255)
        if channels_last_convolutions(device):
            images = images.contiguous(memory_format=torch.channels_last)
        return cls(images, batch.masks.to(device).long(), batch.big.to(device))

    @property
    def targets(self) -> Tensor:
        """The task's targets: the sky masks."""
        return self.masks

    def __len__(self) -> int:
        return self.images.shape[0]


@torch.no_grad()
def predict(model, images: Tensor, chunk: int = 32) -> tuple[Tensor, Tensor]:
    """(sky masks, F1-head outputs) of `images`, `chunk` images at a time."""
    masks, heads = [], []
    for part in images.split(chunk):
        logits, head = model(part)
        masks.append(logits.argmax(1).bool())
        heads.append(head.float())
    return torch.cat(masks), torch.cat(heads)


def evaluation(regularizer: F1Regularizer, test: SkySet):
    """evaluate(model) for f1lib.train: IoU of sky, mean IoU over {background, sky}
    (pooled over all test pixels; also on big and small images apart), the
    successor's thresholded IoU, and the F1 of the head's big/small call."""

    def evaluate(model) -> dict:
        pred, head = predict(model, test.images)
        truth = test.masks.bool()
        row = sky_iou(pred, truth)
        row["thresholded_iou"] = thresholded_iou(pred, truth)
        for name, group in (("big", test.big), ("small", ~test.big)):
            row[f"miou_{name}"] = (sky_iou(pred[group], truth[group])["miou"] if group.any()
                                   else torch.tensor(float("nan")))
        w, b, _ = regularizer.scorer()
        row["head_f1"] = f1_score(head @ w + b, test.big)
        return row

    return evaluate


def pack_masks(masks: Tensor) -> str:
    """Boolean masks as base64 of their packed bits (for the history rows)."""
    return base64.b64encode(np.packbits(masks.cpu().numpy().astype(bool)).tobytes()).decode()


def unpack_masks(text: str, shape: tuple[int, ...]) -> Tensor:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))
    return torch.from_numpy(bits[: int(np.prod(shape))].reshape(shape).astype(bool))


def train_batch(runs: list[Run], train_set: SkySet, test_set: SkySet, schedule: Schedule,
                width: float, checkpoint: Path | None = None, samples: int = 4,
                graph: bool = False) -> list[list[dict]]:
    """Runs of one learning rate, trained side by side (f1lib.training.train_runs with
    stack=False): each run's history rows, the last of which also holds the final
    model's masks of `samples` test images (`sample_indices`, `pack_masks`). On a GPU with
    bf16 convolutions (`f1lib.hardware.bf16_convolutions`) the network runs under bf16
    autocast, elsewhere in float32; in channels_last memory format on such a GPU and on
    the CPU (`f1lib.hardware.channels_last_convolutions`)."""
    device = train_set.images.device
    bf16 = bf16_convolutions(device)
    channels_last = channels_last_convolutions(device)

    def make_model():
        model = SegNet(width=width).to(device)
        return model.to(memory_format=torch.channels_last) if channels_last else model

    histories, models = train_split(runs, make_model, train_set, test_set, schedule,
                                    evaluation, checkpoint, task_loss=F.cross_entropy,
                                    bf16=bf16, graph=graph, stack=False)
    shown = sample_indices(test_set.big, samples).to(device)
    for rows, model in zip(histories, models, strict=True):
        if rows[-1]["status"] == "finished" and samples:
            model.eval()
            masks, _ = predict(model, test_set.images[shown])
            rows[-1]["sample_masks"] = pack_masks(masks)
    return histories


def run_sky_study(runs: list[Run], train_set: SkySet, test_set: SkySet, schedule: Schedule,
                  work_dir: Path, width: float, samples: int = 4,
                  graph: bool = False, side_by_side: int | None = None) -> pd.DataFrame:
    """Every run's history, one row per run and outer loop, resumable (f1lib.study.run_study).
    Up to `side_by_side` runs of one learning rate train side by side; by default
    SIDE_BY_SIDE on CUDA and one at a time on the CPU. Either way each run's result is
    what it would be alone; an interrupted study resumes its batch in progress only with
    the same `side_by_side` (else that batch starts over)."""
    def train_some(batch: list[Run], checkpoint: Path) -> list[list[dict]]:
        return train_batch(batch, train_set, test_set, schedule, width, checkpoint, samples,
                           graph)

    if side_by_side is None:
        side_by_side = SIDE_BY_SIDE if train_set.images.device.type == "cuda" else 1
    if side_by_side < 1:
        raise ValueError(f"side_by_side: at least one run at a time, got {side_by_side}")
    return run_split_study(runs, train_some, train_set, test_set, schedule, work_dir,
                           [width, samples], group_by=lambda run: run.lr_scale,
                           max_together=side_by_side)


def segnet_parameters(width: float) -> int:
    """How many parameters SegNet has at channel multiplier `width`."""
    return sum(p.numel() for p in SegNet(width=width).parameters())


def setup_text(profile: str, device: str, runs: list[Run], seeds: int, schedule: Schedule,
               width: float) -> str:
    """The sky_segmentation chapter's set-up in one line: its runs, schedule and network."""
    parameters = segnet_parameters(width)
    return (f"profile {profile!r} on {device}: {len(runs)} runs ({len(runs) // seeds} "
            f"methods x {seeds} seeds), {schedule.outer} x {schedule.inner} steps of batch "
            f"{schedule.batch_size}, SGD lr {schedule.lr:g}; SegNet width {width:g} "
            f"({parameters:,} parameters), {'bf16' if bf16_convolutions(device) else 'float32'} "
            f"in {'channels_last' if channels_last_convolutions(device) else 'NCHW'}")
