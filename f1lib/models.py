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
    """in -> hidden (ReLU) -> classes, and the F1 features from the same hidden layer.

    The seed's MNIST model (4096 -> 500 -> 10). The seed scores the F1 task as
    w . h_F1 with h_F1 = fc_1(hidden), a one-unit linear head (with bias) on
    the shared layer, and the LP's w a scalar on top: `f1_head=True`, the
    default, returns that head's output and wants `F1Regularizer(positive,
    features=model.f1_features)` with f1_features = 1. With `f1_head=False` the
    500 hidden units themselves are the F1 features and the regularizer's
    (w, b) is the head, trained at the LP's step size eta_w rather than
    through the network's gradient (an alternative the MNIST notebook can run).

    The F1 term reaches the classifier only through the shared hidden layer:
    with no shared layer it could not change the classifier at all.
    """

    def __init__(self, in_features: int = 4096, hidden: int = 500, classes: int = 10,
                 f1_head: bool = True):
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, classes)
        self.f1_head = nn.Linear(hidden, 1) if f1_head else None
        self.f1_features = 1 if f1_head else hidden

    def forward(self, x: Tensor):
        z = self.hidden(x)
        return self.classifier(z), (z if self.f1_head is None else self.f1_head(z))
