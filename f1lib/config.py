"""Hyperparameter defaults, in one place.

The values marked "paper" are the ones the paper states (Sec. 3.1 of
"F1 Regularization in Computer Vision"); the others belong to the stable
variant and are documented where they are used (`f1lib.regularizer`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

VARIANTS = ("paper", "stable")


@dataclass(frozen=True)
class F1Hyper:
    """Step sizes and weights of the F1 regularizer.

    Attributes:
        beta: weight of the regularizer in the task loss (paper: 1e-3).
        eta_tau: SGD step size of the per-positive tau table (paper: 0.01).
        eta_eps: SGD step size of epsilon (paper: 0.01).
        eta_w: SGD step size of the LP's hyperplane w (and bias b) (paper: 0.01).
        eta_mu: dual step of mu, paper variant (paper: 1e-5).
        eta_lambda: dual step of the lambda table, paper variant (paper: 1e-3).
        eta_gamma: dual step of the gamma table, paper variant (paper: 1e-3).
        rho: augmented-Lagrangian penalty, which is also the dual step size, stable
            variant.
        center_momentum: momentum of the running feature mean and variance that
            standardize the score, stable variant.
    """

    beta: float = 1e-3
    eta_tau: float = 0.01
    eta_eps: float = 0.01
    eta_w: float = 0.01
    eta_mu: float = 1e-5
    eta_lambda: float = 1e-3
    eta_gamma: float = 1e-3
    rho: float = 1.0
    center_momentum: float = 0.01

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"F1Hyper.{f.name} must be a number, got {value!r}")
            if not (value >= 0 and math.isfinite(value)):  # also catches NaN
                raise ValueError(f"F1Hyper.{f.name} must be finite and >= 0, got {value!r}")
        if not self.rho > 0:
            raise ValueError(f"F1Hyper.rho must be > 0, got {self.rho!r}")
        if not self.center_momentum <= 1:
            raise ValueError(
                f"F1Hyper.center_momentum must be in [0, 1], got {self.center_momentum!r}"
            )


@dataclass(frozen=True)
class Schedule:
    """Algorithm 1's loop sizes and the model's SGD step (paper: 40 x 600, lr 0.01)."""

    outer: int = 40
    inner: int = 600
    batch_size: int = 100
    lr: float = 0.01

    def __post_init__(self):
        for name in ("outer", "inner", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Schedule.{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool)
                and self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError(f"Schedule.lr must be a finite number >= 0, got {self.lr!r}")

    def as_dict(self) -> dict:
        return asdict(self)


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    return variant


def check_hyper(hyper: "F1Hyper | None") -> "F1Hyper":
    """`hyper`, or the paper's F1Hyper() for None; anything else raises ValueError."""
    hyper = hyper if hyper is not None else F1Hyper()
    if not isinstance(hyper, F1Hyper):
        raise ValueError(f"hyper must be an F1Hyper, got {type(hyper).__name__}")
    return hyper


def check_variants(variants) -> list[str]:
    """A study's variants: one or more of VARIANTS, each once."""
    variants = list(variants)
    if not variants or len(set(variants)) != len(variants):
        raise ValueError(f"variants: one or more of {VARIANTS}, each once; got {variants!r}")
    return [check_variant(v) for v in variants]
