"""f1lib: F1 regularization (Venkatesh & Zeng) as a small PyTorch library."""

from .config import F1Hyper, Schedule
from .lp import LPSolution, f1_score, hinge_bounds, hinge_f1_bound, solve_lp
from .models import FixedFeatures, SharedHeadMLP
from .regularizer import F1Regularizer
from .tensor_data import TensorData, batch_order
from .training import NonFiniteError, train, train_runs

__version__ = "0.2.0"

__all__ = [
    "F1Hyper", "F1Regularizer", "FixedFeatures", "LPSolution", "NonFiniteError", "Schedule",
    "SharedHeadMLP",
    "TensorData", "batch_order", "f1_score", "hinge_bounds", "hinge_f1_bound", "solve_lp",
    "train", "train_runs",
]
