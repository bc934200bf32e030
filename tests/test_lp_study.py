"""f1lib.lp_study: the problems and seeds of a variant train stacked, and each run
ends where f1lib.train takes it alone (the lp_bound chapter's "in essence")."""

import pandas as pd
import pytest
import torch

from f1lib import F1Hyper, F1Regularizer, FixedFeatures, Schedule, TensorData, train
from f1lib.lp import f1_score, hinge_f1_bound
from f1lib.lp_study import Job, Problem, chapter_problems, lp_jobs, run_job, run_lp_study

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
def test_a_stacked_job_gives_each_problem_and_seed_the_run_it_would_have_alone(variant):
    problems = (PROBLEM, Problem(0.7, 0.0))
    rows = pd.DataFrame(run_job(Job(problems, variant, (0, 1, 2), SCHEDULE)))
    assert sorted(set(zip(rows["problem"], rows["seed"]))) == sorted(
        (p.label, s) for p in problems for s in (0, 1, 2))
    assert (rows["status"] == "finished").all()
    for problem in problems:
        for seed in (0, 1, 2):
            mine = rows[(rows["problem"] == problem.label) & (rows["seed"] == seed)]
            mine = mine.sort_values("outer")
            history = alone(problem, variant, seed)
            assert list(mine["outer"]) == [row["outer"] for row in history] == [1, 2, 3]
            for column in ("exact_f1_bound", "true_f1", "violation", "eps", "mu",
                           "lagrangian"):
                expected = torch.tensor([float(row[column]) for row in history])
                got = torch.tensor(mine[column].to_numpy(), dtype=torch.float32)
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6,
                                           msg=f"{problem.label}, seed {seed}, {column}")
    # the six runs differ (a stack that trained one run six times would not)
    last = rows[rows["outer"] == 3]
    assert last["lagrangian"].nunique() == 6


def test_a_job_refuses_problems_whose_positives_differ():
    other = Problem(1.5, 5.0, n_examples=120, positive_fraction=0.5)
    with pytest.raises(ValueError, match="positives differ"):
        run_job(Job((PROBLEM, other), "stable", (0,), SCHEDULE))


@pytest.mark.parametrize("setting, message", [
    ({"problems": []}, "one or more"),
    ({"problems": [[1.5]]}, "pairs"),
    ({"problems": [1.5, 0.0]}, "pairs"),
    ({"positive_fraction": 1.5}, "positive_fraction"),
    ({"n_examples": 1}, "n >= 2"),
])
def test_the_chapters_problems_refuse_a_bad_setting_before_any_training(setting, message):
    config = {"problems": [[1.5, 0.0]], "n_examples": 120, "positive_fraction": 1 / 3}
    assert chapter_problems(config) == [Problem(1.5, 0.0, 120, 1 / 3)]
    with pytest.raises(ValueError, match=message):
        chapter_problems({**config, **setting})


def test_jobs_refuse_variants_that_are_not_one_or_more_known_ones_each_once():
    problems = [Problem(1.5, 0.0)]
    for variants in ([], ["stable", "stable"], ["sgd"]):
        with pytest.raises(ValueError, match="variant"):
            lp_jobs(problems, variants, 1, Schedule(outer=1, inner=1, batch_size=10))


def test_jobs_stack_every_problem_of_one_size_and_variant():
    small = Problem(6.0, 0.0, n_examples=60)
    jobs = lp_jobs([PROBLEM, small, Problem(0.7, 0.0)], ["paper", "stable"], 2, SCHEDULE)
    assert [(job.variant, [p.label for p in job.problems], job.seeds) for job in jobs] == [
        ("paper", [PROBLEM.label, "separation 0.7, offset 0"], (0, 1)),
        ("paper", [small.label], (0, 1)),
        ("stable", [PROBLEM.label, "separation 0.7, offset 0"], (0, 1)),
        ("stable", [small.label], (0, 1))]


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
    # a run's wall time is its share of its job's: the runs of a job report the same
    assert (here.groupby("variant")["wall_s"].nunique() == 1).all()


def test_fixed_features_with_a_table_look_up_the_indices_they_are_given():
    x, _ = PROBLEM.data()
    idx = torch.tensor([5, 0, 119, 5])
    task, features = FixedFeatures(x)(idx)
    assert task is None and torch.equal(features, x[idx])
    assert FixedFeatures()(x)[1] is x  # without one, the inputs are the features
    with pytest.raises(TypeError, match="takes dataset indices"):
        FixedFeatures(x)(x[:3])
    with pytest.raises(ValueError, match=r"\(N, d\) floating-point"):
        FixedFeatures(torch.arange(6))
