"""The exact LP and the hinge helpers, against hand computations and brute force."""

import numpy as np
import pytest
import torch

from f1lib.data.gaussians import gaussian_problem
from f1lib.lp import f1_score, hinge_bounds, hinge_f1_bound, solve_lp


def random_problem(seed, n=60, d=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) + rng.normal(scale=2, size=d)
    positive = rng.random(n) < rng.uniform(0.2, 0.6)
    positive[:2] = [True, False]
    x[positive] += rng.normal(scale=1.5, size=d)
    return x, positive


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("bias", [True, False])
def test_lp_bound_is_two_over_objective_and_below_true_f1(seed, bias):
    x, positive = random_problem(seed)
    sol = solve_lp(x, positive, bias=bias)
    if sol.status == "infeasible":
        assert not bias and sol.f1_lower_bound == 0.0
        return
    assert sol.f1_lower_bound == pytest.approx(2.0 / sol.objective)
    # the LP's optimum is the hinge bound of the LP's own scorer ...
    scores = torch.as_tensor(sol.scores(x))
    assert float(hinge_f1_bound(scores, positive)) == pytest.approx(sol.f1_lower_bound, abs=1e-6)
    # ... which is below that scorer's true F1
    assert sol.f1_lower_bound <= float(f1_score(scores, positive)) + 1e-9
    # feasibility of the returned point
    assert sol.tau.sum() == pytest.approx(1.0)
    assert np.all(sol.tau <= sol.eps + 1e-9)
    assert np.all(sol.tau <= x[positive] @ sol.w + sol.b + 1e-9)
    assert np.all(sol.phi >= x[~positive] @ sol.w + sol.b + sol.eps - 1e-9)
    assert sol.eps >= 1.0 / positive.sum() - 1e-9  # sum tau = 1, tau <= eps


@pytest.mark.parametrize("seed", range(5))
def test_bias_never_hurts_and_makes_the_bound_shift_invariant(seed):
    x, positive = random_problem(seed)
    with_bias = solve_lp(x, positive, bias=True)
    without = solve_lp(x, positive, bias=False)
    assert without.f1_lower_bound <= with_bias.f1_lower_bound + 1e-9
    shifted = solve_lp(x + 7.0, positive, bias=True)
    assert shifted.f1_lower_bound == pytest.approx(with_bias.f1_lower_bound, abs=1e-7)


def test_no_scorer_on_a_grid_beats_the_lp():
    """1-D features: brute force over f = a x + c reaches, never exceeds, the LP optimum."""
    x, positive = gaussian_problem(n=40, separation=1.5, seed=3)
    x = x[:, :1].numpy()
    sol = solve_lp(x, positive.numpy(), bias=True)
    a, c = np.meshgrid(np.linspace(-6, 6, 241), np.linspace(-6, 6, 241))
    f = a.reshape(-1, 1) * x[:, 0] + c.reshape(-1, 1)  # (grid, n)
    pos = positive.numpy()
    tp_l = np.clip(np.minimum(1, f[:, pos]).sum(1), 0, None)
    fp_u = np.maximum(0, 1 + f[:, ~pos]).sum(1)
    grid = 2 * tp_l / (pos.sum() + tp_l + fp_u)
    assert grid.max() <= sol.f1_lower_bound + 1e-9
    assert grid.max() >= sol.f1_lower_bound - 0.01


def test_separable_with_margin_gives_bound_one():
    x = np.array([[-2.0], [-1.5], [1.5], [2.0]])
    sol = solve_lp(x, [False, False, True, True])
    assert sol.f1_lower_bound == pytest.approx(1.0)


def test_lp_without_bias_is_infeasible_for_centred_positives():
    # the positives' mean is the origin: sum_i min(eps, w.x_i) <= w.sum(x_i) = 0 < 1
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [5.0, 5.0]])
    sol = solve_lp(x, [True, True, True, True, False], bias=False)
    assert sol.status == "infeasible"
    assert sol.objective == np.inf and sol.f1_lower_bound == 0.0


def test_hinge_helpers_by_hand():
    scores = torch.tensor([2.0, 0.5, -1.0, -3.0, 0.25, 1.0])
    positive = torch.tensor([True, True, True, False, False, False])
    tp_l, fp_u = hinge_bounds(scores, positive)
    # tp_l = min(1,2) + min(1,0.5) + min(1,-1) = 1 + 0.5 - 1
    assert float(tp_l) == pytest.approx(0.5)
    # fp_u = max(0,1-3) + max(0,1.25) + max(0,2) = 0 + 1.25 + 2
    assert float(fp_u) == pytest.approx(3.25)
    assert float(hinge_f1_bound(scores, positive)) == pytest.approx(2 * 0.5 / (3 + 0.5 + 3.25))
    # true F1: predicted positive = {0, 1, 4, 5}; tp = 2, fp = 2, fn = 1
    assert float(f1_score(scores, positive)) == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    # eps only rescales: f = s / eps
    assert float(hinge_f1_bound(3 * scores, positive, eps=3.0)) == \
        pytest.approx(float(hinge_f1_bound(scores, positive)))


def test_hinge_bound_is_zero_for_a_collapsed_margin_and_negative_tp():
    scores = torch.tensor([-1.0, -2.0, 1.0])
    positive = torch.tensor([True, True, False])
    assert float(hinge_f1_bound(scores, positive)) == 0.0
    assert float(hinge_f1_bound(scores, positive, eps=0.0)) == 0.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="at least one positive"):
        solve_lp(np.ones((3, 2)), [False, False, False])
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        solve_lp(np.ones((3, 2)), [True, False])
    with pytest.raises(ValueError, match="NaN"):
        solve_lp(np.array([[np.nan], [1.0]]), [True, False])
    with pytest.raises(ValueError):
        hinge_f1_bound(torch.ones(3), torch.ones(2, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bounds_of_half_precision_scores_are_summed_in_float32(dtype):
    # a network's F1 head under autocast scores in bf16 or fp16; its bound over a test set
    # must not be computed in that precision (1,001 positives are not a bf16 number)
    x, positive = gaussian_problem(n=3003, separation=1.5, seed=0)
    scores = torch.as_tensor(solve_lp(x, positive).scores(x)).to(dtype)  # eps = 1
    exact_inputs = scores.double()  # the same, already rounded, scores
    assert float(hinge_f1_bound(exact_inputs, positive)) > 0.4  # a bound that says something
    for of_half, of_double in [(hinge_f1_bound(scores, positive),
                                hinge_f1_bound(exact_inputs, positive)),
                               (f1_score(scores, positive), f1_score(exact_inputs, positive))]:
        assert of_half.dtype == torch.float32
        assert float(of_half) == pytest.approx(float(of_double), rel=1e-6)
