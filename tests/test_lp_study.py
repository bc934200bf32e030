"""f1lib.lp_study: the seeds of a problem and variant train stacked, and each run
ends where f1lib.train takes it alone (the lp_bound chapter's "in essence")."""

import pandas as pd
import pytest
import torch

from f1lib import F1Hyper, F1Regularizer, FixedFeatures, Schedule, TensorData, train
from f1lib.lp import f1_score, hinge_f1_bound
from f1lib.lp_study import Job, Problem, run_job, run_lp_study

SCHEDULE = Schedule(outer=3, inner=40, batch_size=30)
PROBLEM = Problem(1.5, 5.0)


def alone(problem: Problem, variant: str, seed: int) -> list[dict]:
    """One run as the lp_bound chapter describes it: f1lib.train, then the exact bound."""
    x, positive = problem.data()
    x = x.float()
    torch.manual_seed(seed)
    reg = F1Regularizer(positive, features=2, variant=variant, hyper=F1Hyper(beta=1.0))

    def exact(_model):
        w, b, eps = reg.scorer()
        s = x @ w + b
        return {"exact_f1_bound": hinge_f1_bound(s, positive, eps),
                "true_f1": f1_score(s, positive)}

    return train(FixedFeatures(), TensorData(x, None, positive), reg, schedule=SCHEDULE,
                 seed=seed, evaluate=exact, progress=False)


@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_a_stacked_job_gives_each_seed_the_run_it_would_have_alone(variant):
    rows = pd.DataFrame(run_job(Job(PROBLEM, variant, (0, 1, 2), SCHEDULE)))
    assert sorted(set(rows["seed"])) == [0, 1, 2]
    assert (rows["status"] == "finished").all()
    for seed in (0, 1, 2):
        mine = rows[rows["seed"] == seed].sort_values("outer")
        history = alone(PROBLEM, variant, seed)
        assert list(mine["outer"]) == [row["outer"] for row in history] == [1, 2, 3]
        for column in ("exact_f1_bound", "true_f1", "violation", "eps", "mu", "lagrangian"):
            expected = torch.tensor([float(row[column]) for row in history])
            got = torch.tensor(mine[column].to_numpy(), dtype=torch.float32)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6,
                                       msg=f"seed {seed}, {column}")
    # the seeds' runs differ (a stack that trained one run thrice would not)
    last = rows[rows["outer"] == 3]
    assert last["lagrangian"].nunique() == 3


def test_the_process_pool_gives_the_study_that_one_process_gives():
    problems = [PROBLEM, Problem(6.0, 0.0)]
    here, reference = run_lp_study(problems, ["paper", "stable"], 2, SCHEDULE, workers=1)
    pooled, pooled_reference = run_lp_study(problems, ["paper", "stable"], 2, SCHEDULE,
                                            workers=2)
    key = ["problem", "variant", "seed", "outer"]
    assert len(here) == 2 * 2 * 2 * SCHEDULE.outer  # problems x variants x seeds x outer loops
    assert not here.duplicated(key).any()
    pd.testing.assert_frame_equal(
        here.drop(columns="wall_s").sort_values(key).reset_index(drop=True),
        pooled.drop(columns="wall_s").sort_values(key).reset_index(drop=True))
    pd.testing.assert_frame_equal(reference, pooled_reference)
    # a run's wall time is its share of its job's: the seeds of a job report the same
    assert (here.groupby(["problem", "variant"])["wall_s"].nunique() == 1).all()
