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
    """in -> hidden (ReLU) -> classes; the hidden layer is also the F1 features.

    The seed's MNIST model (4096 -> 500 -> 10). Its F1 head, a 500 -> 1 linear
    unit with bias on the shared hidden layer as in the successor's code, is the
    regularizer's own hyperplane: build `F1Regularizer(positive,
    features=model.hidden_features)`, whose (w, b) are that head. In the LP the
    scorer w.x (+ b) is exactly what the F1 bound is computed for; a separate
    nn.Linear head in front of it would parameterise the same line twice.

    The F1 term reaches the classifier only through the shared hidden layer:
    with no shared layer it could not change the classifier at all.
    """

    def __init__(self, in_features: int = 4096, hidden: int = 500, classes: int = 10):
        super().__init__()
        self.hidden_features = hidden
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, classes)

    def forward(self, x: Tensor):
        z = self.hidden(x)
        return self.classifier(z), z
