"""Comparing an experiment's runs: the run matrix, summaries and paired differences."""

import numpy as np
import pandas as pd
import pytest

from f1lib.study import Run, paired_differences, run_matrix, summarize


def test_the_run_matrix_and_its_labels():
    runs = run_matrix(["paper", "stable"], [1e-3, 1e-1], seeds=2, successor_baseline=True)
    assert len(runs) == 2 * (2 + 4)
    labels = {r.label for r in runs}
    assert labels == {"baseline", "baseline, lr x 0.1", "paper, β=0.001", "paper, β=0.1",
                      "stable, β=0.001", "stable, β=0.1"}
    assert {r.variant for r in runs if r.method == "baseline"} == {"stable"}
    with pytest.raises(ValueError, match="beta = 0"):
        Run("baseline", 1e-3, 0)
    with pytest.raises(ValueError, match="unknown method"):
        Run("adam", 1e-3, 0)


def test_summary_averages_finished_runs_with_a_t_interval():
    history = pd.DataFrame([
        # run, seed, outer, status, acc; only the last outer loop of a finished run counts
        {"run": "baseline", "method": "baseline", "beta": 0.0, "seed": 0, "outer": 1,
         "status": "finished", "acc": 0.1},
        {"run": "baseline", "method": "baseline", "beta": 0.0, "seed": 0, "outer": 2,
         "status": "finished", "acc": 0.8},
        {"run": "baseline", "method": "baseline", "beta": 0.0, "seed": 1, "outer": 2,
         "status": "finished", "acc": 0.9},
        {"run": "paper, β=0.1", "method": "paper", "beta": 0.1, "seed": 0, "outer": 1,
         "status": "diverged at outer loop 2", "acc": 0.5},
    ])
    summary = summarize(history, ("acc",)).set_index("run")
    base = summary.loc["baseline"]
    assert base["runs"] == 2 and base["finished"] == 2
    assert base["acc"] == pytest.approx(0.85)
    half = 12.7062047 * np.std([0.8, 0.9], ddof=1) / np.sqrt(2)  # t(0.975, 1 dof)
    assert base["acc_low"] == pytest.approx(0.85 - half)
    assert base["acc_high"] == pytest.approx(0.85 + half)
    paper = summary.loc["paper, β=0.1"]
    assert paper["finished"] == 0 and np.isnan(paper["acc"])


def test_paired_differences_compare_each_seed_with_its_own_baseline():
    rows = []
    for seed, (base, f1) in enumerate([(0.80, 0.83), (0.90, 0.92), (0.70, 0.74)]):
        rows += [{"run": "baseline", "method": "baseline", "beta": 0.0, "seed": seed, "outer": 1,
                  "status": "finished", "acc": base},
                 {"run": "stable, β=0.001", "method": "stable", "beta": 0.001, "seed": seed,
                  "outer": 1, "status": "finished", "acc": f1}]
    paired = paired_differences(pd.DataFrame(rows), "acc").set_index("method")
    row = paired.loc["stable, β=0.001"]
    diffs = np.array([0.03, 0.02, 0.04])  # seed by seed
    half = 4.30265273 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert row["seeds"] == 3
    assert row["difference"] == pytest.approx(0.03)
    assert row["low"] == pytest.approx(0.03 - half) and row["high"] == pytest.approx(0.03 + half)
    assert row["verdict"] == "helps"
    # unpaired, the seeds' spread (0.70 .. 0.90) would swamp a 3-point gain
