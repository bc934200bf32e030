"""The sky chapters' verdicts: a gain is judged only with headroom and a narrow interval."""

import numpy as np
import pandas as pd
import pytest

from f1lib.sky_claims import (histogram_claim, sampling_distance, score_text,
                              segmentation_claims)


def frames(miou_rows, baseline_miou=0.87):
    """`paired` and `summary` as f1lib.study makes them: rows (method, low, high) of the
    paired mean-IoU difference; the thresholded IoU's differences are flat zero."""
    paired = {
        "miou": pd.DataFrame([{"method": m, "seeds": 7, "difference": (lo + hi) / 2, "low": lo,
                               "high": hi} for m, lo, hi in miou_rows]),
        "thresholded_iou": pd.DataFrame([{"method": m, "seeds": 7, "difference": 0.0,
                                          "low": -0.01, "high": 0.01} for m, _, _ in miou_rows]),
    }
    summary = pd.DataFrame([{"run": "baseline", "miou": baseline_miou, "miou_low": 0.85,
                             "miou_high": 1.02, "thresholded_iou": 0.68,
                             "thresholded_iou_low": 0.6, "thresholded_iou_high": 0.75}])
    return paired, summary


def fig8(rows, **kw):
    paired, summary = frames(rows, **kw)
    return segmentation_claims(paired, summary, ["paper", "stable"], 1e-3, True, "s")[0]


def test_a_narrow_interval_below_the_claimed_gain_rules_it_out_on_the_proxy():
    row = fig8([("paper, β=0.001", -0.012, 0.010), ("stable, β=0.001", -0.005, 0.014)])
    assert row["outcome"] == "does not hold"
    assert row["verdict"] == "on the procedural proxy: does not hold; on COCO-Stuff: not run here"
    assert "paper, β=0.001: -0.10 [-1.20, +1.00] points" in row["measured"]


def test_a_half_width_over_one_and_a_half_points_decides_nothing_and_says_why():
    # stable's interval, -2 to +1.2 points, lies below +4: without the gate it would rule
    # the gain out; its half-width, 1.6 points, is over the 1.5 that tell +4 from 0
    row = fig8([("paper, β=0.001", -0.012, 0.010), ("stable, β=0.001", -0.020, 0.012)])
    assert row["outcome"] == "not testable here"
    assert "half-width of 1.60 points is over the 1.5" in row["measured"]


def test_a_baseline_without_room_for_the_gain_cannot_test_it():
    row = fig8([("paper, β=0.001", -0.001, 0.001), ("stable, β=0.001", -0.001, 0.001)],
               baseline_miou=0.975)
    assert row["outcome"] == "not testable here"
    assert "leaves 2.50 points, less than the 4.0 claimed" in row["measured"]


def test_a_gain_measured_above_zero_holds():
    assert fig8([("paper, β=0.001", 0.001, 0.02), ("stable, β=0.001", 0.002, 0.02)]) \
        ["outcome"] == "holds"


def test_scores_print_with_intervals_cut_at_the_range_of_a_score():
    row = {"miou": 0.8437, "miou_low": 0.6351, "miou_high": 1.0523}
    assert score_text(row, "miou") == "0.8437 [0.6351, 1.0000]"


def test_figure_7_is_decided_on_coco_stuffs_annotations_only():
    procedural = np.linspace(0, 1, 1000, endpoint=False)
    row = histogram_claim({"procedural": procedural}, 0.6, "s", None)
    assert row["outcome"] == "not testable here" and row["verdict"].startswith("on COCO-Stuff")
    assert f"within {sampling_distance(1000):.3f}" in row["measured"]
    coco = np.r_[np.full(858, 0.3), np.full(142, 0.9)]  # 14.2% big, as published
    row = histogram_claim({"procedural": procedural, "COCO": coco}, 0.6, "s", "COCO")
    assert row["outcome"] == "holds" and "COCO: 14.2% big" in row["measured"]
    row = histogram_claim({"procedural": procedural, "COCO": procedural}, 0.6, "s", "COCO")
    assert row["outcome"] == "does not hold"  # 40% big
