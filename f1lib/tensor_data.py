"""A training set held in tensors, and the order in which Algorithm 1 draws its minibatches."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TensorData:
    """A training set held in tensors: row i of each is dataset index i.

    inputs: (N, ...) model inputs; targets: (N, ...) task targets, or None when
    there is no task; positive: (N,) bool, the F1 regularizer's I+.
    """

    inputs: Tensor
    targets: Tensor | None
    positive: Tensor

    def __post_init__(self):
        n = self.inputs.shape[0]
        if self.targets is not None and self.targets.shape[0] != n:
            raise ValueError(f"targets has {self.targets.shape[0]} rows, inputs {n}")
        if self.positive.shape != (n,) or self.positive.dtype != torch.bool:
            raise ValueError(
                f"positive must be a bool tensor of shape ({n},); got "
                f"{self.positive.dtype} {tuple(self.positive.shape)}"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device) -> "TensorData":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return TensorData(move(self.inputs), move(self.targets), move(self.positive))


def batch_order(seed: int, outer: int, inner: int, batch_size: int, n: int) -> Tensor:
    """The (inner, batch_size) dataset indices of outer loop `outer`.

    Epochs of random permutations, drawn on the CPU from a generator seeded by
    (seed, outer): the same order on every device, and a resumed run replays
    it exactly.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + outer)
    epochs = math.ceil(inner * batch_size / n)
    perm = torch.cat([torch.randperm(n, generator=g) for _ in range(epochs)])
    return perm[: inner * batch_size].view(inner, batch_size)
