"""The F1 regularizer: the Lagrangian of the seed's eq. (20) as an nn.Module.

For a batch of F1-head outputs h (one row per example, with the example's
dataset index and its I+/I- label) the module returns the minibatch term that
is added to the task loss. Its state:

    tau, lambda, gamma   one entry per positive, in tables indexed through the
                         dataset index (`slot[index]`)
    eps, mu, w (and b)   scalars / the LP's hyperplane over the F1 features
    center, variance     running mean and variance of the features (stable variant)
    last_score           each example's latest score s = w.h (+ b), so that
                         `dual_step()` needs no extra pass over the data

Two variants (`variant=`):

"paper"  the equations, projections and step sizes exactly as the seed states
         them (Sec. 2.3 and 3.1). Minibatch sums, unscaled; the constant
         |I+| eps term unscaled; no bias; eps projected to >= 0; lambda and
         gamma updated by plain ascent, unprojected; beta multiplies every
         gradient, the LP's own variables' included. Initial values, which the
         seed does not state, follow its public successor's code
         (tau, eps, w ~ U(0, 1); mu = lambda = gamma = 1e-3).

"stable" the corrections derived in REFERENCE.md, each marked (S1)...(S7)
         where it is applied below. It keeps the LP's bound as its objective.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import F1Hyper, check_variant
from .lp import f1_score, hinge_f1_bound


# the seed's LP has no bias; the stable variant adds one (S2)
VARIANT_HAS_BIAS = {"paper": False, "stable": True}
# added to the running variance of (S3) before its square root, as batch norm does
VARIANCE_FLOOR = 1e-5


def scale_grad(x: Tensor, scale: float | Tensor) -> Tensor:
    """x itself in the forward pass; its gradient multiplied by `scale` (a float or a
    tensor) in the backward.

    x + scale * (x - x) with the first and last x detached: for finite x the
    value equals x (x - x is exactly 0; only a negative zero comes out positive),
    and the gradient is exactly grad * scale. Plain ATen ops, not a custom
    autograd.Function: torch.func's vmap batches them natively, where a
    Function's generated vmap rule runs Python on every call (0.5 ms of a 2.4 ms
    stacked step of three LP runs on the CPU; benchmarks/RESULTS.md). Two kernels
    (the difference, then one fused multiply-add), as the forward pass runs them
    over the whole tau table at every step."""
    frozen = x.detach()
    if isinstance(scale, Tensor):
        return torch.addcmul(frozen, x - frozen, scale)
    return torch.add(frozen, x - frozen, alpha=scale)


# whether torch.compile is tracing the call: torch.compiler.is_compiling since torch 2.3,
# torch._dynamo's before; resolved at import, as torch 2.2's Dynamo cannot trace the lookup
_compiling = getattr(torch.compiler, "is_compiling", None)
if _compiling is None:
    from torch._dynamo import is_compiling as _compiling


def _augmented_term(c: Tensor, multiplier: Tensor, rho: float) -> Tensor:
    """The augmented-Lagrangian term of an inequality c <= 0 with multiplier >= 0.

    psi(c, m) = (max(0, m + rho c)^2 - m^2) / (2 rho): it equals m c + rho/2 c^2
    while the constraint is active and flattens to -m^2/(2 rho) once it is
    slack by more than m / rho. Its minimum over c is finite, unlike the plain
    Lagrangian's m c, whose infimum over the linear tau is -inf (REFERENCE.md).
    """
    return (torch.relu(multiplier + rho * c).square() - multiplier.square()) / (2 * rho)


class F1Regularizer(nn.Module):
    """beta x the Lagrangian (20) of the F1 lower-bound LP, for minibatch SGD.

    Args:
        positive: (N,) bool, the I+ membership of every example of the
            training set, in dataset-index order. It defines the tables.
        features: width d of the F1 head's output h (the LP's x_i).
        variant: "paper" or "stable": what each does is listed in the docstring of
            f1lib.regularizer and on the book's method page.
        hyper: step sizes and beta; defaults are the seed's.

    Use: `loss = task_loss + reg(h, positive[idx], idx)`, an optimizer over
    `reg.param_groups()` beside the model's, `reg.project_()` after each
    optimizer step, and `reg.dual_step()` after each inner loop.
    """

    def __init__(self, positive: Tensor, features: int = 1, variant: str = "stable",
                 hyper: F1Hyper | None = None):
        super().__init__()
        self.variant = check_variant(variant)
        self.hyper = hyper if hyper is not None else F1Hyper()
        if not isinstance(self.hyper, F1Hyper):
            raise ValueError(f"hyper must be an F1Hyper, got {type(self.hyper).__name__}")
        positive = torch.as_tensor(positive)
        if positive.dim() != 1 or positive.numel() == 0:
            raise ValueError(
                f"positive must be a non-empty (N,) mask, got shape {tuple(positive.shape)}"
            )
        if positive.dtype != torch.bool:
            if not ((positive == 0) | (positive == 1)).all():
                raise ValueError("positive must be boolean (or 0/1)")
            positive = positive.bool()
        n_pos = int(positive.sum())
        if n_pos == 0:
            raise ValueError("the F1 regularizer needs at least one positive example")
        if not (isinstance(features, int) and features >= 1):
            raise ValueError(f"features must be a positive integer, got {features!r}")
        self.num_examples = positive.numel()
        self.num_positives = n_pos
        self.features = features

        positive_index = torch.nonzero(positive).squeeze(1)
        slot = torch.full((self.num_examples,), -1, dtype=torch.long)
        slot[positive_index] = torch.arange(n_pos)
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
            # (S1) The stable variant works in units of 1/|I+|: tau = tau~/|I+|,
            # eps = eps~/|I+|, (w, b) = (w~, b~)/|I+|. The LP's variables sit at
            # scale 1/|I+| (sum tau = 1), so in raw units any fixed SGD step is
            # too large for a big dataset and too small for a small one; in
            # these units they are O(1) and the Lagrangian's value is the LP
            # objective minus the constant sum tau = 1. The bound is unchanged.
            self.tau = nn.Parameter(torch.ones(n_pos))
            self.eps = nn.Parameter(torch.ones(()))
            self.w = nn.Parameter(torch.zeros(features))
            dual = 0.0
        # (S2) the bias the seed's LP lacks; in the paper variant b stays a frozen 0
        self.b = nn.Parameter(torch.zeros(()), requires_grad=VARIANT_HAS_BIAS[self.variant])
        self.register_buffer("mu", torch.full((), dual))
        self.register_buffer("lam", torch.full((n_pos,), dual))
        self.register_buffer("gam", torch.full((n_pos,), dual))
        # hyper.beta as a tensor: runs trained together (train_runs) differ in it
        self.register_buffer("beta", torch.tensor(float(self.hyper.beta)), persistent=False)
        self.last_lagrangian: Tensor | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def unit(self) -> float:
        """LP units per internal unit of tau, eps, w and b (see (S1))."""
        return 1.0 / self.num_positives if self.variant == "stable" else 1.0

    def param_groups(self) -> list[dict]:
        """SGD parameter groups with the seed's separate step sizes.

        Algorithm 1 takes plain SGD steps on the LP's variables. Each group says so
        (no momentum, no weight decay), so that the momentum and weight decay that an
        optimizer's defaults give the network do not reach them."""
        h = self.hyper
        plain = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}
        groups = [
            {"params": [self.tau], "lr": h.eta_tau, "name": "tau", **plain},
            {"params": [self.eps], "lr": h.eta_eps, "name": "eps", **plain},
            {"params": [self.w], "lr": h.eta_w, "name": "w", **plain},
        ]
        if self.b.requires_grad:
            groups[2]["params"].append(self.b)
        return groups

    def _stable_score(self, centred: Tensor) -> Tensor:
        """The stable variant's score of features already centred, h - c."""
        # (S3) Standardize the features before the hyperplane:
        # s = w.((h - c) / sigma) + b, with c a running mean of h and sigma^2 a
        # running mean of (h - c)^2 (momentum `center_momentum`). This is the
        # same family of scorers (w absorbs 1/sigma, b absorbs w.c), but it
        # decouples w from b and from the features' scale. On features offset
        # from the origin the uncentred problem is badly conditioned, and SGD
        # oscillates. On features of spread sigma, w's gradient grows with
        # sigma, so a fixed step eta_w overshoots. A network's features have
        # no fixed scale: on MNIST at beta = 0.1, centred only, they drifted to
        # |h| ~ 500, and one step on w diverged the run.
        return (centred * self._inverse_spread()) @ self.w + self.b

    def _inverse_spread(self) -> Tensor:
        return (self.variance + VARIANCE_FLOOR).rsqrt()

    def check_labels(self, positive: Tensor, index: Tensor) -> None:
        """Raise ValueError unless every index is in range and labelled as in the table.

        Reads values, hence synchronises with an accelerator: `forward` calls
        it for CPU tensors only; `f1lib.train` calls it once for the whole
        dataset before training, and not per batch.
        """
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_examples):
            raise ValueError(
                f"dataset index out of range [0, {self.num_examples}): "
                f"min {int(index.min())}, max {int(index.max())}"
            )
        table = self.is_positive[index]
        missing = index[positive & ~table]
        if missing.numel():
            raise ValueError(
                f"{missing.numel()} positive(s) absent from the regularizer's index table, "
                f"e.g. dataset indices {missing[:5].tolist()}: build F1Regularizer from the "
                "same positive mask that labels the batches"
            )
        extra = index[~positive & table]
        if extra.numel():
            raise ValueError(
                f"{extra.numel()} example(s) labelled negative in the batch are positives in "
                f"the index table, e.g. dataset indices {extra[:5].tolist()}"
            )

    def _check_batch(self, scores: Tensor, positive: Tensor, index: Tensor,
                     check_labels: bool) -> tuple[Tensor, Tensor]:
        if self.w.dtype in (torch.float16, torch.bfloat16):
            raise ValueError(
                f"the regularizer's tables are {self.w.dtype}, where the LP's constraints keep "
                "three digits (a model's .half() or .bfloat16() reaches a regularizer it holds): "
                "keep it in float32 with reg.float(), and mixed precision with torch.autocast"
            )
        h = scores.to(self.w.dtype)  # the tables' float32, or float64 after .double()
        if h.dim() == 1:
            h = h.unsqueeze(1)
        if h.dim() != 2 or h.shape[1] != self.features:
            shapes = "(B,) or (B, 1)" if self.features == 1 else f"(B, {self.features})"
            raise ValueError(
                f"scores must be {shapes}, as features={self.features}; got {tuple(scores.shape)}"
            )
        batch = h.shape[0]
        if positive.shape != (batch,) or positive.dtype != torch.bool:
            raise ValueError(
                f"positive must be a bool tensor of shape ({batch},); got "
                f"{positive.dtype} {tuple(positive.shape)}"
            )
        if index.shape != (batch,) or index.dtype not in (torch.int32, torch.int64):
            raise ValueError(
                f"index must be an integer tensor of shape ({batch},); got "
                f"{index.dtype} {tuple(index.shape)}"
            )
        # under torch.compile the check's reads would break the graph at every step
        if check_labels and h.device.type == "cpu" and not _compiling():
            self.check_labels(positive, index)
        return h, index.long()

    # ------------------------------------------------------------------ forward
    def forward(self, scores: Tensor, positive: Tensor, index: Tensor, *,
                check_labels: bool = True) -> Tensor:
        """beta x the minibatch Lagrangian; add it to the task loss.

        scores: (B, d) or (B,) F1-head outputs; positive: (B,) bool; index:
        (B,) dataset indices. No host-device synchronisation on CUDA, static
        shapes throughout: it can be captured in a CUDA graph, or compiled
        into one graph with the task loss (torch.compile, fullgraph=True). It
        computes in its tables' dtype (float32, or float64 after `.double()`),
        also under a mixed-precision loop's autocast. On the CPU, and not under
        torch.compile, the batch's labels are checked against the table unless
        `check_labels` is False; f1lib.train checks the whole dataset once
        instead (`check_labels(positive, index)`: do the same before a compiled
        loop). The Lagrangian's own value is kept in `last_lagrangian`.
        """
        out, value = self.penalty(scores, positive, index, check_labels=check_labels)
        self.last_lagrangian = value.detach()
        return out

    def penalty(self, scores: Tensor, positive: Tensor, index: Tensor, *,
                check_labels: bool = True) -> tuple[Tensor, Tensor]:
        """(beta x the minibatch Lagrangian, the Lagrangian): `forward` without
        keeping the value on the module, so that torch.func.vmap can batch it
        over runs (f1lib.train.train_runs)."""
        h, index = self._check_batch(scores, positive, index, check_labels)
        # the tables' dtype whatever autocast the caller's loss runs under: in bf16 the
        # scores and the LP's constraints would keep three digits, and not fit the tables
        with torch.autocast(h.device.type, enabled=False):
            return self._lagrangian(h, positive, index)

    def _lagrangian(self, h: Tensor, positive: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """penalty's arithmetic on checked scores, and what it records: the scores, and
        the stable variant's running statistics."""
        slot = self.slot[index].clamp(min=0)
        pos = positive.to(h.dtype)
        neg = 1.0 - pos
        beta = self.beta
        if self.variant == "paper":
            s = h @ self.w
            value = self._paper_lagrangian(s, pos, neg, slot)
            out = beta * value
        else:
            # (S4) beta weighs the regularizer's pull on the network only: the
            # network sees beta x grad, while tau, eps, w and b take their own
            # step sizes whatever beta is. Under the seed's reading beta = 1e-3
            # also slows the LP's variables a thousandfold, so they barely move.
            # h - c once: the score and the running variance's update both use it
            centred = h - self.center
            s = self._stable_score(scale_grad(centred, beta))
            value = self._stable_lagrangian(s, pos, neg, slot, batch=h.shape[0])
            # value beta x L, gradients as above
            out = value + (beta - 1.0) * value.detach()
        with torch.no_grad():
            self.last_score[index] = s.detach()
            # the value as a device tensor: `seen[index] = True` copies a host scalar to
            # the device, which a CUDA graph cannot capture, and index_fill_ loops over
            # the runs under vmap (one kernel per run)
            self.seen[index] = torch.ones_like(index, dtype=torch.bool)
            if self.variant == "stable" and self.training:
                momentum = self.hyper.center_momentum
                spread = centred.square().mean(0)
                self._running_mean_update("center", h.mean(0), momentum)
                self._running_mean_update("variance", spread, momentum)
        return out, value.detach()

    def _running_mean_update(self, name: str, value: Tensor, momentum: float) -> None:
        """buffer += momentum (value - buffer), for the buffer `name`.

        In place, as a CUDA graph replays it into the same memory and as
        torch.func.functional_call (run-batching) passes it back. Under torch.compile,
        a new tensor instead: Inductor's partitioner may recompute a read of the
        buffer in the backward pass after the forward pass has updated it, which
        silently gave w the gradient of the updated statistics, 0.5% off on the CPU
        with torch 2.14 (pytorch/pytorch#197039, open; tests/test_regularizer.py).
        Checked on the CPU only; f1lib's own CUDA graphs (f1lib.steps.CapturedStep)
        take the in-place path, and torch.compile's mode="reduce-overhead" is unchecked."""
        buffer = getattr(self, name)
        if _compiling():
            setattr(self, name, torch.add(buffer, value - buffer, alpha=momentum))
        else:
            buffer.add_(value - buffer, alpha=momentum)

    def _paper_lagrangian(self, s, pos, neg, slot) -> Tensor:
        """Eq. (20), its sums over the minibatch as the seed states."""
        tau, lam, gam = self.tau[slot], self.lam[slot], self.gam[slot]
        eps = self.eps
        return (
            self.num_positives * eps
            + (neg * torch.relu(eps + s)).sum()
            + self.mu * ((pos * tau).sum() - 1)
            + (pos * lam * (tau - s)).sum()
            + (pos * gam * (tau - eps)).sum()
        )

    def _stable_lagrangian(self, s, pos, neg, slot, batch: int) -> Tensor:
        n_pos, rho = self.num_positives, self.hyper.rho
        # (S5) Unbiased minibatch estimates: a sum over the dataset is
        # estimated by N/B x the sum over a batch of B examples drawn uniformly.
        # Terms that need no data (sum tau, tau - eps) are exact over the tables.
        scale = self.num_examples / batch
        # (S6) Each tau_i is a per-example variable touched only by its own
        # constraints; its gradient here carries the factor scale/|I+| of (S1)
        # and (S5). Rescaling by |I+|/scale gives every tau_i the step eta_tau
        # on its own constraint terms, independent of N, B and |I+|.
        tau_table = scale_grad(self.tau, n_pos / scale)
        tau = tau_table[slot]
        eps = self.eps
        # (S7) Augmented Lagrangian (method of multipliers): the penalty rho
        # makes the inner problem bounded below, and dual_step's ascent with
        # step rho then converges to the LP's multipliers.
        sum_error = tau_table.mean() - 1.0  # sum tau - 1 in LP units
        return (
            eps
            + scale / n_pos * (neg * torch.relu(eps + s)).sum()
            + self.mu * sum_error
            + rho / 2 * sum_error.square()
            + scale / n_pos * (pos * (
                _augmented_term(tau - s, self.lam[slot], rho)
                + _augmented_term(tau - eps, self.gam[slot], rho)
            )).sum()
        )

    # ------------------------------------------------------------- after steps
    @property
    def eps_floor(self) -> float:
        """The primal projection's lower bound on eps."""
        if self.variant == "paper":
            return 0.0  # the seed's eps = max(0, eps)
        # (S8) sum tau = 1 with tau_i <= eps forces eps >= 1/|I+|
        # (eps~ >= 1 in the units of (S1)); eps = 0 is infeasible.
        return 1.0

    @torch.no_grad()
    def project_(self) -> None:
        """The primal projection after each SGD step."""
        self.eps.clamp_(min=self.eps_floor)

    @torch.no_grad()
    def dual_step(self) -> None:
        """Algorithm 1's dual updates, from the tables (no pass over the data)."""
        h = self.hyper
        tau = self.tau
        s = self.last_score[self.positive_index]
        seen = self.seen[self.positive_index]
        # a positive that no batch has shown yet has no score: its lambda waits
        if self.variant == "paper":
            self.mu.add_(h.eta_mu * (tau.sum() - 1))
            self.lam.add_(h.eta_lambda * (tau - s) * seen)
            self.gam.add_(h.eta_gamma * (tau - self.eps))
        else:
            # (S7) the method of multipliers' ascent, with step rho and (S9)
            # lambda, gamma >= 0: they are multipliers of inequalities.
            self.mu.add_(h.rho * (tau.mean() - 1))
            self.lam.copy_(torch.where(seen, torch.relu(self.lam + h.rho * (tau - s)), self.lam))
            self.gam.copy_(torch.relu(self.gam + h.rho * (tau - self.eps)))

    # ------------------------------------------------------------- reporting
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
        """Constraint violations and bounds from the tables, in LP units.

        Scores are each example's latest (from the batch that last held it);
        examples that no batch has shown yet are left out.
        """
        u = self.unit
        tau, eps = self.tau * u, self.eps * u
        seen = self.seen
        s = self.last_score * u
        s_pos = s[self.positive_index]
        seen_pos = seen[self.positive_index]
        sum_error = tau.sum() - 1
        violation = (
            sum_error.abs()
            + (torch.relu(tau - s_pos) * seen_pos).sum()
            + torch.relu(tau - eps).sum()
        )
        return {
            "sum_tau_error": sum_error,
            "violation": violation,
            "f1_bound": hinge_f1_bound(s[seen], self.is_positive[seen], eps),
            "f1": f1_score(s[seen], self.is_positive[seen]),
            "eps": eps,
            "mu": self.mu.clone(),
        }
