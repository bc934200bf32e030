"""The exact F1 lower-bound LP for fixed features: the ground truth.

Eban et al. (2017) bound the F1 score of a scorer f from below with hinge
bounds on the true and false positives,

    tp_l = sum_{I+} min(1, f(x_i))          <= tp
    fp_u = sum_{I-} max(0, 1 + f(x_j))      >= fp
    F1 >= F1_lb(f) = 2 tp_l / (|I+| + tp_l + fp_u).

For a linear scorer f = (w.x + b) / eps, the Charnes-Cooper change of
variables (eps = 1 / tp_l, w and b scaled by eps) turns "maximise F1_lb" into
the paper's LP (5)-(9), here with the bias b that the paper omits:

    min   |I+| eps + sum_{I+} tau_i + sum_{I-} phi_j
    s.t.  tau_i <= eps,  tau_i <= w.x_i + b              (i in I+)
          phi_j >= 0,    phi_j >= eps + w.x_j + b        (j in I-)
          sum_{I+} tau_i = 1,   eps >= 0.

Its optimum is OPT = 2 / F1_lb, so `f1_lower_bound = 2 / objective`.
Everything here works in the homogeneous form (scores s = w.x + b and a
margin eps), so that eps = 0 needs no special case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linprog


@dataclass(frozen=True)
class LPSolution:
    """The optimum of the LP. `objective` is inf when the LP is infeasible."""

    objective: float
    f1_lower_bound: float
    w: np.ndarray
    b: float
    eps: float
    tau: np.ndarray
    phi: np.ndarray
    bias: bool
    status: str

    def scores(self, features) -> np.ndarray:
        """The LP's scorer f = (w.x + b) / eps on `features`."""
        return (np.asarray(features, dtype=float) @ self.w + self.b) / self.eps


def _as_problem(features, positive):
    x = np.asarray(features, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    pos = np.asarray(positive)
    if x.ndim != 2 or pos.shape != (x.shape[0],):
        raise ValueError(
            f"features must be (N, d) and positive (N,); got {x.shape} and {pos.shape}"
        )
    if pos.dtype != bool:
        if not np.isin(pos, (0, 1)).all():
            raise ValueError("positive must be boolean (or 0/1)")
        pos = pos.astype(bool)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    if not pos.any():
        raise ValueError("the LP needs at least one positive example")
    return x, pos


def solve_lp(features, positive, *, bias: bool = True) -> LPSolution:
    """Solve the LP (5)-(9) (with a bias b when `bias`) with HiGHS.

    Returns the optimum; an infeasible LP (possible without a bias, when no
    hyperplane through the origin gives the positives a positive hinge sum)
    has objective inf and an F1 lower bound of 0.
    """
    x, pos = _as_problem(features, positive)
    xp, xn = x[pos], x[~pos]
    n_pos, n_neg, d = len(xp), len(xn), x.shape[1]
    # the variables, in order: (name, width, bounds)
    layout = [("w", d, (None, None)), ("b", int(bias), (None, None)), ("eps", 1, (0, None)),
              ("tau", n_pos, (None, None)), ("phi", n_neg, (0, None))]
    widths = {name: width for name, width, _ in layout}
    start = dict(zip(widths, np.cumsum([0, *widths.values()])))
    bounds = [bound for _, width, bound in layout for _ in range(width)]

    def rows(n, **blocks):
        """n constraint rows: the given blocks at their variables, zeros elsewhere."""
        return sp.hstack([sp.csr_matrix(blocks[k]) if k in blocks else
                          sp.csr_matrix((n, width)) for k, width in widths.items()])

    cost = rows(1, eps=[[n_pos]], tau=np.ones((1, n_pos)), phi=np.ones((1, n_neg)))
    cost = cost.toarray().ravel()

    eye_p, eye_n = sp.identity(n_pos), sp.identity(n_neg)
    ones_p, ones_n = np.ones((n_pos, 1)), np.ones((n_neg, 1))
    bias_p = {"b": -ones_p} if bias else {}
    bias_n = {"b": ones_n} if bias else {}
    a_ub = sp.vstack(
        [
            rows(n_pos, eps=-ones_p, tau=eye_p),  # tau_i <= eps
            rows(n_pos, w=-xp, tau=eye_p, **bias_p),  # tau_i <= w.x_i + b
            rows(n_neg, w=xn, eps=ones_n, phi=-eye_n, **bias_n),  # phi_j >= eps + w.x_j + b
        ],
        format="csr",
    )
    a_eq = rows(1, tau=np.ones((1, n_pos))).tocsr()  # sum tau = 1
    res = linprog(
        cost,
        A_ub=a_ub,
        b_ub=np.zeros(a_ub.shape[0]),
        A_eq=a_eq,
        b_eq=[1.0],
        bounds=bounds,
        method="highs",
    )
    if res.status == 2:  # infeasible
        nan = np.full(d, np.nan)
        return LPSolution(np.inf, 0.0, nan, np.nan, np.nan, np.full(n_pos, np.nan),
                          np.full(n_neg, np.nan), bias, "infeasible")
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the F1 LP: {res.message}")
    part = {k: res.x[start[k]:start[k] + widths[k]].copy() for k in widths}
    return LPSolution(
        objective=float(res.fun),
        f1_lower_bound=2.0 / float(res.fun),
        w=part["w"],
        b=float(part["b"][0]) if bias else 0.0,
        eps=float(part["eps"][0]),
        tau=part["tau"],
        phi=part["phi"],
        bias=bias,
        status="optimal",
    )


def _as_tensors(scores, positive):
    s = torch.as_tensor(scores)
    if not s.is_floating_point():
        s = s.double()
    elif s.dtype in (torch.float16, torch.bfloat16):
        # their sums over a dataset would keep three digits (tests/test_lp.py: in bf16
        # the LP scorer's bound over 3,003 examples came out 0.41797 for 0.41946)
        s = s.float()
    pos = torch.as_tensor(positive, device=s.device)
    if s.shape != pos.shape or s.dim() != 1:
        raise ValueError(f"scores and positive must both be (N,); got {tuple(s.shape)}, "
                         f"{tuple(pos.shape)}")
    return s, pos.bool()


def hinge_bounds(scores, positive, eps=1.0):
    """The hinge bounds (tp_l, fp_u) of the scorer f = scores / eps.

    Homogeneous form: tp_l = sum_{I+} min(eps, s_i) / eps and
    fp_u = sum_{I-} max(0, eps + s_j) / eps, so that eps only rescales.
    """
    s, pos = _as_tensors(scores, positive)
    eps = torch.as_tensor(eps, dtype=s.dtype, device=s.device)
    tp_l = torch.where(pos, torch.minimum(s, eps), 0).sum() / eps
    fp_u = torch.where(pos, 0, torch.relu(eps + s)).sum() / eps
    return tp_l, fp_u


def hinge_f1_bound(scores, positive, eps=1.0) -> torch.Tensor:
    """`F1_lb = 2 tp_l / (|I+| + tp_l + fp_u)` of the scorer `f = scores / eps`.

    Written as `2 T / (|I+| eps + T + F)` with `T = eps tp_l`, `F = eps fp_u`, so it
    is defined at eps = 0 too. tp_l is clamped at 0: for a negative tp_l the
    formula no longer bounds anything, and 0 is the trivial bound.
    """
    s, pos = _as_tensors(scores, positive)
    eps = torch.as_tensor(eps, dtype=s.dtype, device=s.device)
    t = torch.where(pos, torch.minimum(s, eps), 0).sum().clamp(min=0)
    f = torch.where(pos, 0, torch.relu(eps + s)).sum()
    den = pos.sum() * eps + t + f
    return torch.where(den > 0, 2 * t / den.clamp(min=torch.finfo(s.dtype).tiny), 0)


def f1_score(scores, positive) -> torch.Tensor:
    """The true F1 of the classifier "positive iff score > 0"."""
    s, pos = _as_tensors(scores, positive)
    pred = s > 0
    tp = (pred & pos).sum()
    den = pos.sum() + pred.sum()
    return torch.where(den > 0, 2 * tp / den.clamp(min=1), 0.0).to(s.dtype)


def constraint_report(tau, eps, scores, positive, seen) -> dict[str, torch.Tensor]:
    """How far the point (tau, eps) with each example's score is from the LP's
    constraints, and the bounds it gives: |sum tau - 1|, the total violation of
    sum tau = 1, tau_i <= s_i and tau_i <= eps (tau in I+'s order), and the hinge F1
    bound and F1 over the examples `seen` (those that have a score)."""
    s_pos, seen_pos = scores[positive], seen[positive]
    sum_error = tau.sum() - 1
    violation = (
        sum_error.abs()
        + (torch.relu(tau - s_pos) * seen_pos).sum()
        + torch.relu(tau - eps).sum()
    )
    return {
        "sum_tau_error": sum_error,
        "violation": violation,
        "f1_bound": hinge_f1_bound(scores[seen], positive[seen], eps),
        "f1": f1_score(scores[seen], positive[seen]),
        "eps": eps,
    }
