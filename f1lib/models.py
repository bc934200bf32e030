"""Models that return (task_output, f1_score), as f1lib.train expects."""

from __future__ import annotations

from torch import Tensor, nn


class FixedFeatures(nn.Module):
    """No task and no learned features: the F1 regularizer sees the inputs.

    With it, Algorithm 1 optimises the LP's own variables only, which is the
    setting where the exact LP (`f1lib.lp.solve_lp`) is the ground truth.
    """

    def forward(self, x: Tensor):
        return None, x


class SharedHeadMLP(nn.Module):
    """in -> hidden (ReLU) -> classes, plus a 1-unit F1 head on the same hidden layer.

    The seed's MNIST model (4096 -> 500 -> 10) with its successor's F1 head
    (500 -> 1, with bias): the F1 term reaches the classifier only through
    the shared hidden layer.
    """

    def __init__(self, in_features: int = 4096, hidden: int = 500, classes: int = 10):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, classes)
        self.f1_head = nn.Linear(hidden, 1)

    def forward(self, x: Tensor):
        z = self.hidden(x)
        return self.classifier(z), self.f1_head(z)
