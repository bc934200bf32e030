"""The F1 regularizer: the Lagrangian of the paper's eq. (20) as an nn.Module.

Given a batch of F1-head outputs h with the examples' dataset indices and I+/I- labels,
it returns the minibatch term to add to the task loss. tau, lambda and gamma live in
tables with one entry per positive, addressed by dataset index; eps, mu and the LP's
hyperplane (w, b) beside them. Two variants:

"paper"  the equations, projections and step sizes as the paper states them (Sec. 2.3,
         3.1): minibatch sums, unscaled; no bias; eps >= 0; lambda and gamma by plain
         ascent, unprojected; beta on every gradient, the LP variables' included. The
         initial values, which the paper does not state, are its successor's
         (tau, eps, w ~ U(0, 1); mu = lambda = gamma = 1e-3).
"stable" the same LP bound, with corrections marked where they apply: (S1) units of
         1/|I+|; (S2) a bias; (S3) standardized features; (S4) beta on the network's
         gradient only; (S5) unbiased minibatch estimates; (S6) a per-example step for
         tau; (S7) the method of multipliers; (S8) eps >= 1/|I+|; (S9) lambda, gamma >= 0.
         The book's method page derives each.

Input checks and the shims for autocast, torch.compile and vmap: `f1lib.regularizer_runtime`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import regularizer_runtime as runtime
from .config import F1Hyper, check_hyper, check_variant
from .lp import constraint_report
from .regularizer_runtime import scale_grad

VARIANT_HAS_BIAS = {"paper": False, "stable": True}  # (S2)
VARIANCE_FLOOR = 1e-5  # added to (S3)'s running variance before its root, as batch norm does


def _augmented_term(c: Tensor, multiplier: Tensor, rho: float) -> Tensor:
    """(S7) psi(c, m) = (max(0, m + rho c)^2 - m^2) / (2 rho) for c <= 0, multiplier m >= 0:
    m c + rho/2 c^2 while active, -m^2/(2 rho) once slack by over m / rho. Unlike the plain
    m c, its minimum over the linear tau is finite."""
    return (torch.relu(multiplier + rho * c).square() - multiplier.square()) / (2 * rho)


class F1Regularizer(nn.Module):
    """beta x the Lagrangian (20) of the F1 lower-bound LP, for minibatch SGD.

    positive: (N,) bool, every training example's I+ membership in dataset-index order;
    features: the width d of the F1 head's output h; variant: "paper" or "stable";
    hyper: step sizes and beta, by default the paper's.
    Use: `loss = task_loss + reg(h, positive[idx], idx)`, an optimizer over
    `reg.param_groups()` beside the model's, `reg.project_()` after each optimizer step
    and `reg.dual_step()` after each inner loop.
    """

    def __init__(self, positive: Tensor, features: int = 1, variant: str = "stable",
                 hyper: F1Hyper | None = None):
        super().__init__()
        self.variant = check_variant(variant)
        self.hyper = check_hyper(hyper)
        positive = runtime.positive_mask(positive)
        if not (isinstance(features, int) and features >= 1):
            raise ValueError(f"features must be a positive integer, got {features!r}")
        self.num_examples, self.num_positives = positive.numel(), int(positive.sum())
        self.features, n_pos = features, self.num_positives

        positive_index, slot = runtime.slot_table(positive)
        self.register_buffer("is_positive", positive.clone())
        self.register_buffer("positive_index", positive_index)
        self.register_buffer("slot", slot)
        self.register_buffer("last_score", torch.zeros(self.num_examples))
        self.register_buffer("seen", torch.zeros(self.num_examples, dtype=torch.bool))
        self.register_buffer("center", torch.zeros(features))
        self.register_buffer("variance", torch.ones(features))

        if self.variant == "paper":
            self.tau = nn.Parameter(torch.rand(n_pos))
            self.eps = nn.Parameter(torch.rand(()))
            self.w = nn.Parameter(torch.rand(features))
            dual = 1e-3
        else:
            # (S1) Units of 1/|I+|: tau = tau~/|I+|, eps = eps~/|I+|, (w, b) = (w~, b~)/|I+|.
            # The LP's variables sit at scale 1/|I+| (sum tau = 1), so in raw units a fixed
            # SGD step is too large for a big dataset and too small for a small one.
            self.tau = nn.Parameter(torch.ones(n_pos))
            self.eps = nn.Parameter(torch.ones(()))
            self.w = nn.Parameter(torch.zeros(features))
            dual = 0.0
        # (S2) the bias the paper's LP lacks; in the paper variant b stays a frozen 0
        self.b = nn.Parameter(torch.zeros(()), requires_grad=VARIANT_HAS_BIAS[self.variant])
        self.register_buffer("mu", torch.full((), dual))
        self.register_buffer("lam", torch.full((n_pos,), dual))
        self.register_buffer("gam", torch.full((n_pos,), dual))
        # a tensor, as runs trained together (f1lib.training.train_runs) differ in it
        self.register_buffer("beta", torch.tensor(float(self.hyper.beta)), persistent=False)
        self.last_lagrangian: Tensor | None = None

    @property
    def unit(self) -> float:
        """LP units per internal unit of tau, eps, w and b (S1)."""
        return 1.0 / self.num_positives if self.variant == "stable" else 1.0

    def param_groups(self) -> list[dict]:
        """SGD parameter groups with the paper's separate step sizes: plain SGD, as in
        Algorithm 1, whatever momentum and weight decay the network's optimizer has."""
        h = self.hyper
        plain = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}
        groups = [{"params": [p], "lr": lr, "name": name, **plain} for name, p, lr in
                  (("tau", self.tau, h.eta_tau), ("eps", self.eps, h.eta_eps),
                   ("w", self.w, h.eta_w))]
        if self.b.requires_grad:
            groups[2]["params"].append(self.b)
        return groups

    # ------------------------------------------------------------------ the Lagrangians
    def forward(self, scores: Tensor, positive: Tensor, index: Tensor, *,
                check_labels: bool = True) -> Tensor:
        """beta x the minibatch Lagrangian of scores (B, d) or (B,), positive (B,) bool and
        dataset indices (B,); its value is kept in `last_lagrangian`. It never waits for
        the device, so a CUDA graph or torch.compile(fullgraph=True) can hold it. On the CPU
        and uncompiled, it checks the batch's labels against the table unless told not to
        (f1lib.train checks the whole dataset once instead)."""
        out, value = self.penalty(scores, positive, index, check_labels=check_labels)
        self.last_lagrangian = value.detach()
        return out

    def penalty(self, scores: Tensor, positive: Tensor, index: Tensor, *,
                check_labels: bool = True) -> tuple[Tensor, Tensor]:
        """(beta x the minibatch Lagrangian, the Lagrangian): `forward` without keeping
        the value on the module, so that torch.func.vmap can batch it over runs."""
        h, index = runtime.checked_batch(scores, positive, index, self.features, self.w.dtype)
        # under torch.compile the check's reads would break the graph at every step
        if check_labels and h.device.type == "cpu" and not runtime.compiling():
            self.check_labels(positive, index)
        with runtime.without_autocast(h.device.type):
            return self._lagrangian(h, positive, index)

    def _lagrangian(self, h: Tensor, positive: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        slot = self.slot[index].clamp(min=0)
        pos = positive.to(h.dtype)
        neg = 1.0 - pos
        beta = self.beta
        if self.variant == "paper":
            s = h @ self.w
            value = self._paper_lagrangian(s, pos, neg, slot)
            out = beta * value
        else:
            # (S4) beta weighs the pull on the network only: the network sees beta x grad,
            # while tau, eps, w and b keep their own step sizes (beta = 1e-3 on them would
            # slow the LP's variables a thousandfold).
            centred = h - self.center
            s = self._stable_score(scale_grad(centred, beta))
            value = self._stable_lagrangian(s, pos, neg, slot, batch=h.shape[0])
            out = value + (beta - 1.0) * value.detach()  # value beta x L, gradients as above
        with torch.no_grad():
            self.last_score[index] = s.detach()
            # a device tensor: a host scalar's copy cannot be captured in a CUDA graph
            self.seen[index] = torch.ones_like(index, dtype=torch.bool)
            if self.variant == "stable" and self.training:
                momentum = self.hyper.center_momentum
                spread = centred.square().mean(0)
                runtime.running_mean_update(self, "center", h.mean(0), momentum)
                runtime.running_mean_update(self, "variance", spread, momentum)
        return out, value.detach()

    def _paper_lagrangian(self, s, pos, neg, slot) -> Tensor:
        """Eq. (20), its sums over the minibatch as the paper states."""
        tau, lam, gam = self.tau[slot], self.lam[slot], self.gam[slot]
        eps = self.eps
        return (
            self.num_positives * eps
            + (neg * torch.relu(eps + s)).sum()
            + self.mu * ((pos * tau).sum() - 1)
            + (pos * lam * (tau - s)).sum()
            + (pos * gam * (tau - eps)).sum()
        )

    def _stable_score(self, centred: Tensor) -> Tensor:
        """(S3) s = w.((h - c) / sigma) + b, c and sigma^2 running mean and variance of h:
        the same scorers, but w decoupled from b and from the features' scale, which a
        network's features do not keep (on MNIST at beta = 0.1 they drifted to |h| ~ 500
        and one step on w diverged the run)."""
        return (centred * self._inverse_spread()) @ self.w + self.b

    def _inverse_spread(self) -> Tensor:
        return (self.variance + VARIANCE_FLOOR).rsqrt()

    def _stable_lagrangian(self, s, pos, neg, slot, batch: int) -> Tensor:
        n_pos, rho = self.num_positives, self.hyper.rho
        # (S5) a sum over the dataset is N/B x the sum over a uniform batch of B; terms that
        # need no data (sum tau, tau - eps) are exact over the tables
        scale = self.num_examples / batch
        # (S6) rescaling tau's gradient by |I+|/scale gives every tau_i the step eta_tau on
        # its own constraints, whatever N, B and |I+|
        tau_table = scale_grad(self.tau, n_pos / scale)
        tau = tau_table[slot]
        eps = self.eps
        sum_error = tau_table.mean() - 1.0  # sum tau - 1 in LP units
        return (  # (S7) augmented: rho makes the inner problem bounded below
            eps
            + scale / n_pos * (neg * torch.relu(eps + s)).sum()
            + self.mu * sum_error
            + rho / 2 * sum_error.square()
            + scale / n_pos * (pos * (
                _augmented_term(tau - s, self.lam[slot], rho)
                + _augmented_term(tau - eps, self.gam[slot], rho)
            )).sum()
        )

    # ------------------------------------------------------------------ after the steps
    @property
    def eps_floor(self) -> float:
        """The primal projection's lower bound on eps."""
        if self.variant == "paper":
            return 0.0  # the paper's eps = max(0, eps)
        return 1.0  # (S8) sum tau = 1 with tau_i <= eps forces eps >= 1/|I+|: 1 in (S1)'s units

    @torch.no_grad()
    def project_(self) -> None:
        """The primal projection after each SGD step."""
        self.eps.clamp_(min=self.eps_floor)

    @torch.no_grad()
    def dual_step(self) -> None:
        """Algorithm 1's dual updates, from the tables (no pass over the data). A positive
        that no batch has shown yet has no score: its lambda waits."""
        h = self.hyper
        tau = self.tau
        s = self.last_score[self.positive_index]
        seen = self.seen[self.positive_index]
        if self.variant == "paper":
            self.mu.add_(h.eta_mu * (tau.sum() - 1))
            self.lam.add_(h.eta_lambda * (tau - s) * seen)
            self.gam.add_(h.eta_gamma * (tau - self.eps))
        else:  # (S7) ascent with step rho, and (S9) lambda, gamma >= 0
            self.mu.add_(h.rho * (tau.mean() - 1))
            self.lam.copy_(torch.where(seen, torch.relu(self.lam + h.rho * (tau - s)), self.lam))
            self.gam.copy_(torch.relu(self.gam + h.rho * (tau - self.eps)))

    # ------------------------------------------------------------------ reporting
    @torch.no_grad()
    def scorer(self) -> tuple[Tensor, Tensor, Tensor]:
        """(w, b, eps) in LP units: the learned scorer is f(h) = (w.h + b) / eps."""
        u = self.unit
        if self.variant == "paper":
            return self.w * u, self.b * u, self.eps * u
        w = self.w * self._inverse_spread()
        return w * u, (self.b - self.center @ w) * u, self.eps * u

    @torch.no_grad()
    def diagnostics(self) -> dict[str, Tensor]:
        """`f1lib.lp.constraint_report` of the tables in LP units, from each example's
        latest score (those that no batch has shown yet are left out), and mu."""
        u = self.unit
        report = constraint_report(self.tau * u, self.eps * u, self.last_score * u,
                                   self.is_positive, self.seen)
        return {**report, "mu": self.mu.clone()}

    def check_labels(self, positive: Tensor, index: Tensor) -> None:
        """Raise ValueError unless every index is in range and labelled as in the table; it
        waits for the device, so f1lib.train calls it once before training."""
        runtime.check_labels(self.is_positive, positive, index)
