"""Checks against values worked out by hand, each aimed at a plausible bug that a looser
test would let through."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import torch

from f1lib import F1Hyper, F1Regularizer, Schedule, batch_order, hinge_f1_bound
from f1lib.lp import hinge_bounds
from f1lib.ledger import combined_verdict, improvement_verdict
from f1lib.study import paired_differences


def test_the_defaults_are_the_papers_settings():
    """Sec. 3.1: beta 1e-3, primal steps 0.01, dual steps 1e-3 (lambda, gamma) and 1e-5
    (mu), SGD lr 0.01, 40 x 600 steps; the stable variant's own rho 1 and momentum 0.01."""
    assert F1Hyper() == F1Hyper(beta=1e-3, eta_tau=0.01, eta_eps=0.01, eta_w=0.01,
                                eta_mu=1e-5, eta_lambda=1e-3, eta_gamma=1e-3, rho=1.0,
                                center_momentum=0.01)
    assert (Schedule().outer, Schedule().inner, Schedule().lr) == (40, 600, 0.01)


def test_hinge_bounds_with_a_learned_eps_by_hand():
    """Scores s = (3, 1, -1 | -3, 0) with eps = 2, the first three positive:
    tp_l = (min(2,3) + min(2,1) + min(2,-1)) / 2 = 1; fp_u = (max(0, 2-3) + max(0, 2+0)) / 2
    = 1; F1_lb = 2 * 1 / (3 + 1 + 1) = 0.4. With eps = 1 the same scores give
    tp_l = 1, fp_u = 1, F1_lb 0.4 too, so eps = 4 tells them apart: tp_l = (3+1-1)/4 = 0.75,
    fp_u = (1 + 4) / 4 = 1.25, F1_lb = 1.5 / 5 = 0.3."""
    s = torch.tensor([3.0, 1.0, -1.0, -3.0, 0.0], dtype=torch.float64)
    pos = torch.tensor([True, True, True, False, False])
    tp, fp = hinge_bounds(s, pos, 2.0)
    assert (float(tp), float(fp)) == (1.0, 1.0)
    assert float(hinge_f1_bound(s, pos, 2.0)) == pytest.approx(0.4)
    tp, fp = hinge_bounds(s, pos, 4.0)
    assert (float(tp), float(fp)) == (0.75, 1.25)
    assert float(hinge_f1_bound(s, pos, 4.0)) == pytest.approx(0.3)


def test_the_minibatch_orders_of_neighbouring_seeds_and_outer_loops_all_differ():
    """A seed mixed as seed + outer would make seed s at loop o + 1 repeat seed s + 1 at
    loop o, and the seeds' intervals too narrow."""
    orders = {(seed, outer): tuple(batch_order(seed, outer, 4, 5, 20).flatten().tolist())
              for seed, outer in itertools.product(range(5), range(5))}
    assert len(set(orders.values())) == len(orders)


def test_the_stable_variant_projects_its_inequality_multipliers_at_zero():
    positive = torch.tensor([True, True, False, False])
    reg = F1Regularizer(positive, variant="stable")
    scores = torch.tensor([50.0, 50.0, -1.0, -1.0])  # tau_i - s_i far below 0
    reg(scores, positive, torch.arange(4))
    with torch.no_grad():
        reg.lam.fill_(0.1)
        reg.gam.fill_(0.1)
        reg.tau.fill_(-5.0)  # tau_i - eps far below 0
    reg.dual_step()
    assert torch.equal(reg.lam, torch.zeros(2)) and torch.equal(reg.gam, torch.zeros(2))


def test_the_verdict_rules_at_their_edges():
    claimed = 0.04
    assert improvement_verdict(0.0, 0.0, claimed) == "does not hold"  # zero width, at 0
    assert improvement_verdict(0.0, 0.05, claimed) == "not testable here"  # 0 is not above 0
    assert improvement_verdict(1e-9, 0.05, claimed) == "holds"
    assert improvement_verdict(-0.01, claimed, claimed) == "not testable here"  # reaches it
    assert combined_verdict([]) == "not testable here"
    assert combined_verdict(["holds", "does not hold"]) == "partly"


def test_a_paired_difference_below_zero_hurts():
    rows = [{"run": run, "seed": seed, "outer": 1, "status": "finished", "acc": acc}
            for run, accs in (("baseline", (0.90, 0.91, 0.92)), ("f1", (0.80, 0.82, 0.81)))
            for seed, acc in enumerate(accs)]
    (row,) = paired_differences(pd.DataFrame(rows), "acc").to_dict("records")
    assert row["verdict"] == "hurts" and row["difference"] == pytest.approx(-0.1)


def test_coco_stuffs_histogram_agrees_with_its_published_summary():
    """COCO-Stuff 2017 train, images with both sky categories (the successor's selection):
    3,654 images, 519 of them with a sky fraction of at least 0.6, mean 0.362, median 0.339.
    Those numbers, written here and not read from f1lib, pin the histogram the procedural
    scenes are drawn from: a swapped bin or a mistyped count moves at least one of them."""
    import numpy as np

    from f1lib.data.sky_common import COCO_SKY_HISTOGRAM, coco_fraction_quantile

    counts = np.asarray(COCO_SKY_HISTOGRAM)
    assert counts.sum() == 3654 and counts[6:].sum() == 519
    mids = (np.arange(10) + 0.5) / 10  # uniform within each bin
    assert float(counts @ mids / counts.sum()) == pytest.approx(0.362, abs=0.002)
    assert float(coco_fraction_quantile(0.5)) == pytest.approx(0.339, abs=0.005)
