"""The naive reference loop that the benchmark scripts time f1lib against.

The obvious PyTorch training loop: a Dataset that makes each example when it
is asked for (a per-sample transform), a shuffling DataLoader, every batch
copied to the device, float32, and Python-side bookkeeping that reads values
back with `.item()` every step. It trains with f1lib's F1Regularizer, as
f1lib does, so the arithmetic is the same and only the engineering differs:
given f1lib's minibatches, it ends where f1lib.train does (tests/test_benchmarks.py).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from f1lib import F1Regularizer
from timing import clock


def naive_loop(dataset: Dataset, model: nn.Module, reg: F1Regularizer, device: str,
               steps: int, inner: int, batch_size: int, lr: float,
               bookkeeping: Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]],
               batches: Iterable[list[int]] | None = None) -> float:
    """Seconds per step over `steps` steps, after 3 warm-up steps.

    dataset[i] is (input, target, big, i); the loss is the task's cross-entropy
    (none where the model returns no task output: f1lib.FixedFeatures) plus the
    regularizer's term, and the dual step follows every `inner` steps.
    bookkeeping(logits, targets, big) gives the step's metrics, each read back.
    `batches` (each a list of dataset indices) replaces the shuffling: a test's
    way to feed the loop f1lib's minibatches.
    """
    optimizer = torch.optim.SGD([{"params": list(model.parameters()), "lr": lr},
                                 *reg.param_groups()])
    log, done, start = [], 0, 0.0
    while done < steps + 3:
        loader = (DataLoader(dataset, batch_sampler=batches) if batches is not None else
                  DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True))
        for inputs, targets, big, idx in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            big, idx = big.to(device), idx.to(device)
            logits, h = model(inputs)
            loss = reg(h, big, idx)
            if logits is not None:
                loss = F.cross_entropy(logits, targets) + loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            reg.project_()
            log.append({"loss": loss.item(), **{name: value.item() for name, value
                                                 in bookkeeping(logits, targets, big).items()}})
            done += 1
            if done % inner == 0:
                reg.dual_step()
            if done == 3:
                start = clock(device)
            if done == steps + 3:
                break
    return (clock(device) - start) / steps
