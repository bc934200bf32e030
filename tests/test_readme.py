"""The README's Python, run as written, so that its examples stay true to the library."""

import re
from pathlib import Path

import pytest
import torch

import f1lib
from f1lib.data.gaussians import gaussian_problem

README = Path(__file__).resolve().parents[1] / "README.md"
API = Path(__file__).resolve().parents[1] / "book" / "api.md"


def readme_block(containing: str, page: Path = README) -> str:
    """The one ```python block of `page` (the README) that contains `containing`."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"{len(found)} python blocks in {page.name} contain {containing!r}"
    return found[0]


def problem():
    """The names the README's examples take as given: a model returning (task_output, h)
    with d = 1, and two Gaussian classes whose positives are I+."""
    x, positive = gaussian_problem(n=300, separation=3.0, offset=1.0, seed=0)  # >= a batch
    torch.manual_seed(0)
    model = f1lib.SharedHeadMLP(in_features=2, hidden=8, classes=2)
    return {"model": model, "x": x.float(), "y": positive.long(), "positive": positive, "d": 1}


def shortened(monkeypatch):
    """f1lib.Schedule with the README's arguments, made 2 x 5 steps so that a test is quick."""
    schedule = f1lib.Schedule
    monkeypatch.setattr(f1lib, "Schedule", lambda **kw: schedule(**{**kw, "outer": 2,
                                                                    "inner": 5}))


@pytest.mark.parametrize("variant", ["stable", "paper"])
def test_the_readme_trains_a_model_and_its_loop_by_hand_ends_where_train_does(variant,
                                                                              monkeypatch):
    shortened(monkeypatch)
    trained = problem()
    example = readme_block("f1lib.train(")
    assert 'variant="stable"' in example
    exec(example.replace('variant="stable"', f'variant="{variant}"'), trained)
    assert len(trained["history"]) == 2 and trained["schedule"].inner == 5
    assert trained["schedule"].batch_size == 100 and trained["schedule"].lr == 0.01

    # the same start, the loop written out, with the schedule and seed the first example set
    by_hand = {**problem(), "f1lib": f1lib, "schedule": trained["schedule"],
               "seed": trained["seed"]}
    by_hand["reg"] = f1lib.F1Regularizer(by_hand["positive"], features=1, variant=variant)
    exec(readme_block("reg.dual_step()  # Algorithm 1"), by_hand)
    for name in ("model", "reg"):
        ends = [*trained[name].state_dict().values()]
        assert all(torch.equal(a, b)
                   for a, b in zip(ends, by_hand[name].state_dict().values(), strict=True))
    start = problem()["model"].state_dict()
    assert not all(torch.equal(a, start[k]) for k, a in trained["model"].state_dict().items())


@pytest.mark.parametrize("variant", ["stable", "paper"])
def test_the_readme_loop_through_f1lib_steps_ends_where_the_loop_by_hand_does(variant):
    schedule = f1lib.Schedule(outer=2, inner=5, batch_size=30)
    ends = []
    for page, block in ((README, "reg.dual_step()  # Algorithm 1"), (API, "single_run_step(")):
        names = {**problem(), "f1lib": f1lib, "schedule": schedule, "seed": 3}
        names["reg"] = f1lib.F1Regularizer(names["positive"], features=1, variant=variant)
        # the optimizer that the loop by hand builds, for the block that takes it as given
        names["optimizer"] = torch.optim.SGD([{"params": names["model"].parameters(),
                                               "lr": schedule.lr}, *names["reg"].param_groups()])
        exec(readme_block(block, page), names)
        ends.append([*names["model"].state_dict().values(), *names["reg"].state_dict().values()])
    assert all(torch.equal(a, b) for a, b in zip(*ends, strict=True))
    start = problem()["model"].state_dict().values()
    assert not all(torch.equal(a, b) for a, b in zip(ends[0], start))


def test_the_readme_trains_runs_together(monkeypatch):
    shortened(monkeypatch)
    given = problem()
    models = [given["model"]] + [f1lib.SharedHeadMLP(in_features=2, hidden=8, classes=2)
                                 for _ in range(2)]
    names = {"f1lib": f1lib, "models": models, "schedule": f1lib.Schedule(),
             "data": f1lib.TensorData(given["x"], given["y"], given["positive"]),
             "regularizers": [f1lib.F1Regularizer(given["positive"],
                                                  hyper=f1lib.F1Hyper(beta=beta))
                              for beta in (1e-3, 1e-2, 1e-1)]}
    example = readme_block("train_runs(", API)
    if not torch.cuda.is_available():  # the graph it asks for is CUDA's
        assert "graph=True" in example
        example = example.replace("graph=True", "graph=False")
    exec(example, names)
    assert [len(history) for history in names["histories"]] == [2, 2, 2]
