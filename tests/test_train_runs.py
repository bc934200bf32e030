"""Run-batching (f1lib.training.train_runs): R runs trained together equal each trained alone."""

import itertools
import signal
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from f1lib import F1Hyper, F1Regularizer, NonFiniteError, Schedule, SharedHeadMLP, train
from f1lib.steps import RunLoss, make_batched_step, side_by_side
from f1lib.training import train_runs

from test_train import Interrupt, TwoHeads, signal_at, toy_data

SCHEDULE = Schedule(outer=3, inner=7, batch_size=16, lr=0.05)


def fresh_run(variant, beta, seed, model_cls=TwoHeads):
    torch.manual_seed(seed)
    data = toy_data()
    model = model_cls()
    reg = F1Regularizer(data.positive, features=getattr(model, "f1_features", 1),
                        variant=variant, hyper=F1Hyper(beta=beta))
    return model, reg, data


def state(model, reg):
    return {**{f"model.{k}": v.clone() for k, v in model.state_dict().items()},
            **{f"reg.{k}": v.clone() for k, v in reg.state_dict().items()}}


def accuracy(model, data):
    return {"accuracy": (model(data.inputs)[0].argmax(1) == data.targets).float().mean()}


def assert_histories_close(got, expected):
    assert [row["outer"] for row in got] == [row["outer"] for row in expected]
    for a, b in zip(got, expected, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key


# (variant, beta, seed): seeds and betas differ within a batch
BATCHES = {
    "stable": [("stable", 0.0, 0), ("stable", 1e-3, 1), ("stable", 0.1, 0), ("stable", 1.0, 2)],
    "paper": [("paper", 1e-3, 0), ("paper", 0.1, 1), ("paper", 1.0, 1)],
}


@pytest.mark.parametrize("variant", sorted(BATCHES))
def test_each_batched_run_equals_the_run_trained_alone(variant):
    specs = BATCHES[variant]
    alone, alone_states = [], []
    for spec in specs:
        model, reg, data = fresh_run(*spec)
        alone.append(train(model, data, reg, schedule=SCHEDULE, seed=spec[2], progress=False,
                           evaluate=lambda m, data=data: accuracy(m, data)))
        alone_states.append(state(model, reg))

    runs = [fresh_run(*spec) for spec in specs]
    data = runs[0][2]
    together = train_runs([m for m, _, _ in runs], data, [r for _, r, _ in runs],
                          seeds=[spec[2] for spec in specs], schedule=SCHEDULE, progress=False,
                          evaluate=lambda m: accuracy(m, data))
    for r, (history, expected) in enumerate(zip(together, alone, strict=True)):
        assert_histories_close(history, expected)
        got = state(runs[r][0], runs[r][1])
        for key, value in alone_states[r].items():
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=key)
    # the runs really differ: a batch of copies would pass the comparison above too
    assert len({round(h[-1]["task_loss"], 6) for h in together}) == len(specs)


def test_shared_head_mlp_runs_batch_with_the_seed_f1_head():
    specs = [("stable", 1e-3, 0), ("stable", 0.1, 1)]

    def model_cls():
        return SharedHeadMLP(in_features=2, hidden=6, classes=2)

    alone = []
    for spec in specs:
        model, reg, data = fresh_run(*spec, model_cls=model_cls)
        alone.append(train(model, data, reg, schedule=SCHEDULE, seed=spec[2], progress=False))
    runs = [fresh_run(*spec, model_cls=model_cls) for spec in specs]
    together = train_runs([m for m, _, _ in runs], runs[0][2], [r for _, r, _ in runs],
                          seeds=[0, 1], schedule=SCHEDULE, progress=False)
    for got, expected in zip(together, alone, strict=True):
        assert_histories_close(got, expected)


def test_a_diverging_run_stops_alone_and_the_others_go_on():
    # the paper variant at beta = 1e4 runs away (its Lagrangian is unbounded below)
    specs = [("paper", 1e-3, 0), ("paper", 1e4, 0), ("paper", 1e-3, 1)]
    alone = []
    for spec in specs:
        model, reg, data = fresh_run(*spec)
        try:
            alone.append(train(model, data, reg, schedule=Schedule(outer=6, inner=20, lr=0.5,
                                                                    batch_size=16),
                               seed=spec[2], progress=False))
        except NonFiniteError as err:
            alone.append(err)
    assert isinstance(alone[1], NonFiniteError), "the test needs a run that diverges"

    runs = [fresh_run(*spec) for spec in specs]
    together = train_runs([m for m, _, _ in runs], runs[0][2], [r for _, r, _ in runs],
                          seeds=[s for _, _, s in specs], progress=False,
                          schedule=Schedule(outer=6, inner=20, lr=0.5, batch_size=16))
    assert isinstance(together[1], NonFiniteError)
    assert together[1].outer == alone[1].outer
    assert_histories_close(together[1].history, alone[1].history)
    for r in (0, 2):
        assert_histories_close(together[r], alone[r])


@pytest.mark.parametrize("stop", ["between outer loops", "Ctrl-C mid-step"])
def test_batched_resume_equals_an_uninterrupted_batch(tmp_path, stop):
    specs = BATCHES["stable"][:3]
    schedule = Schedule(outer=4, inner=5, batch_size=16)

    def batch(seed_offset=0):
        runs = [fresh_run(v, b, s + seed_offset) for v, b, s in specs]
        return [m for m, _, _ in runs], runs[0][2], [r for _, r, _ in runs]

    models, data, regs = batch()
    whole = train_runs(models, data, regs, seeds=[0, 1, 2], schedule=schedule, progress=False)
    expected = [state(m, r) for m, r in zip(models, regs)]

    ckpt = tmp_path / "batch.ckpt"
    calls = itertools.count()

    def interrupt_in_outer_loop_3(_model):
        if next(calls) == 2 * len(specs):  # the first evaluation of outer loop 3
            raise Interrupt
        return {}

    models, data, regs = batch()
    if stop == "between outer loops":
        with pytest.raises(Interrupt):
            train_runs(models, data, regs, seeds=[0, 1, 2], schedule=schedule, checkpoint=ckpt,
                       evaluate=interrupt_in_outer_loop_3, progress=False)
    else:  # in step 2 of outer loop 3, held until the batch's step ends
        with pytest.raises(KeyboardInterrupt):
            train_runs(models, data, regs, seeds=[0, 1, 2], schedule=schedule, checkpoint=ckpt,
                       checkpoint_interval=1e9, task_loss=signal_at(2 * 5 + 2, signal.SIGINT),
                       progress=False)
        assert torch.load(ckpt, weights_only=False)["inner"] == 2
    models, data, regs = batch(seed_offset=50)  # other initial values: the checkpoint wins
    resumed = train_runs(models, data, regs, seeds=[0, 1, 2], schedule=schedule,
                         checkpoint=ckpt, progress=False)
    assert resumed == whole
    for r, (m, reg) in enumerate(zip(models, regs)):
        got = state(m, reg)
        assert all(torch.equal(expected[r][k], got[k]) for k in got)


def test_runs_that_cannot_share_a_step_are_refused():
    a, ra, data = fresh_run("stable", 1e-3, 0)
    b, rb, _ = fresh_run("paper", 1e-3, 1)
    with pytest.raises(ValueError, match="differs from run 0's in more than beta"):
        train_runs([a, b], data, [ra, rb], seeds=[0, 1], schedule=SCHEDULE, progress=False)
    c = TwoHeads(hidden=5)
    rc = F1Regularizer(data.positive, hyper=F1Hyper(beta=1e-3))
    with pytest.raises(ValueError, match="in shape"):
        train_runs([a, c], data, [ra, rc], seeds=[0, 1], schedule=SCHEDULE, progress=False)
    with pytest.raises(ValueError, match="as many regularizers and seeds"):
        train_runs([a], data, [ra], seeds=[0, 1], schedule=SCHEDULE, progress=False)
    with pytest.raises(ValueError, match="CUDA graph"):
        train_runs([a], data, [ra], seeds=[0], schedule=SCHEDULE, progress=False, graph=True)


def test_a_batch_without_regularizers_trains_the_task_alone():
    torch.manual_seed(0)
    data = toy_data()
    models = [TwoHeads() for _ in range(2)]
    initial = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    histories = train_runs(models, data, None, seeds=[0, 1], schedule=SCHEDULE, progress=False,
                           task_loss=F.cross_entropy)
    for seed, (init, history) in enumerate(zip(initial, histories, strict=True)):
        alone = TwoHeads()
        alone.load_state_dict(init)
        assert_histories_close(history, train(alone, data, None, schedule=SCHEDULE, seed=seed,
                                              progress=False))


def test_batched_steps_accumulate_each_linear_weight_gradient_without_a_copy():
    # vmap'd nn.Linear yields a stacked weight's gradient as (R, in, out) transposed; into a
    # row-major stack autograd would copy it every step: R x 500 x 4096 floats for S-MNIST
    runs = []
    for beta, seed in ((1e-3, 0), (0.1, 1), (1.0, 2)):
        model, reg, data = fresh_run("stable", beta, seed)
        runs.append(RunLoss(model, reg, data, F.cross_entropy))
    step, _ = make_batched_step(runs, SCHEDULE)
    idx = torch.stack([torch.arange(16), torch.arange(16, 32), torch.arange(32, 48)])
    step(idx)  # the first step allocates
    weights = {tuple(m.weight.shape) for run in runs for m in run.model.modules()
               if isinstance(m, torch.nn.Linear)}
    with torch.profiler.profile(record_shapes=True) as profile:
        step(idx)
    copied = [tuple(event.input_shapes[0][1:]) for event in profile.events()
              if event.name == "aten::copy_" and len(event.input_shapes[0]) == 3]
    assert weights and not weights & set(copied)


# ------------------------------------------------------------------ side by side
# runs that cannot be stacked: other variants, another architecture, no regularizer
SIDE_BY_SIDE = [("stable", 1e-3, 0, TwoHeads), ("paper", 0.1, 1, TwoHeads),
                ("stable", 0.1, 2, lambda: TwoHeads(hidden=5))]


def side_by_side_runs(seed_offset=0):
    runs = [fresh_run(v, b, s + seed_offset, model_cls=cls) for v, b, s, cls in SIDE_BY_SIDE]
    return [m for m, _, _ in runs], runs[0][2], [r for _, r, _ in runs]


def test_runs_side_by_side_end_bit_for_bit_as_each_alone():
    alone, alone_states = [], []
    for variant, beta, seed, cls in SIDE_BY_SIDE:
        model, reg, data = fresh_run(variant, beta, seed, model_cls=cls)
        alone.append(train(model, data, reg, schedule=SCHEDULE, seed=seed, progress=False,
                           evaluate=lambda m, data=data: accuracy(m, data)))
        alone_states.append(state(model, reg))
    models, data, regs = side_by_side_runs()
    with pytest.raises(ValueError, match="in more than beta"):  # these runs cannot be stacked
        train_runs(models, data, regs, seeds=[0, 1, 2], schedule=SCHEDULE, progress=False)
    together = train_runs(models, data, regs, seeds=[s for _, _, s, _ in SIDE_BY_SIDE],
                          schedule=SCHEDULE, progress=False, stack=False,
                          evaluate=lambda m: accuracy(m, data))
    assert together == alone
    for r, (model, reg) in enumerate(zip(models, regs)):
        got = state(model, reg)
        assert got.keys() == alone_states[r].keys()
        assert all(torch.equal(got[k], alone_states[r][k]) for k in got), r
    assert len({h[-1]["task_loss"] for h in together}) == len(SIDE_BY_SIDE)


def test_side_by_side_resume_equals_an_uninterrupted_run_and_refuses_a_stacked_checkpoint(
        tmp_path):
    schedule, seeds = Schedule(outer=4, inner=5, batch_size=16), [0, 1, 2]
    models, data, regs = side_by_side_runs()
    whole = train_runs(models, data, regs, seeds=seeds, schedule=schedule, progress=False,
                       stack=False)
    expected = [state(m, r) for m, r in zip(models, regs)]

    ckpt = tmp_path / "side.ckpt"
    calls = itertools.count()

    def interrupt_in_outer_loop_3(_model):
        if next(calls) == 2 * len(seeds):
            raise Interrupt
        return {}

    models, data, regs = side_by_side_runs()
    with pytest.raises(Interrupt):
        train_runs(models, data, regs, seeds=seeds, schedule=schedule, checkpoint=ckpt,
                   evaluate=interrupt_in_outer_loop_3, progress=False, stack=False)
    models, data, regs = side_by_side_runs(seed_offset=50)  # the checkpoint's values win
    resumed = train_runs(models, data, regs, seeds=seeds, schedule=schedule, checkpoint=ckpt,
                         progress=False, stack=False)
    assert resumed == whole
    for r, (m, reg) in enumerate(zip(models, regs)):
        got = state(m, reg)
        assert all(torch.equal(expected[r][k], got[k]) for k in got), r

    stacked = [fresh_run("stable", b, s) for b, s in [(0.0, 0), (0.1, 1)]]
    stacked_args = ([m for m, _, _ in stacked], stacked[0][2], [r for _, r, _ in stacked])
    ckpt2 = tmp_path / "stacked.ckpt"
    train_runs(*stacked_args, seeds=[0, 1], schedule=schedule, checkpoint=ckpt2, progress=False)
    with pytest.raises(ValueError, match="holds runs trained stacked"):
        train_runs(*stacked_args, seeds=[0, 1], schedule=schedule, checkpoint=ckpt2,
                   progress=False, stack=False)


def test_side_by_side_forks_each_run_onto_its_stream_and_joins_them_all(monkeypatch):
    # the CUDA streams' protocol, recorded with stand-in streams: each run's step on its own
    # stream, after that stream waited for the caller's; the caller waits for every run's
    events = []

    class Stream:
        def __init__(self, name):
            self.name = name

        def wait_stream(self, other):
            events.append(("wait", self.name, other.name))

    current = [Stream("caller")]
    lanes = iter([Stream("lane 0"), Stream("lane 1"), Stream("lane 2")])

    @contextmanager
    def on(stream):
        before, current[0] = current[0], stream
        try:
            yield
        finally:
            current[0] = before

    monkeypatch.setattr(torch.cuda, "Stream", lambda: next(lanes))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: current[0])
    monkeypatch.setattr(torch.cuda, "stream", on)

    def run_step(r):
        def step(idx):
            events.append(("step", r, current[0].name, idx.tolist()))
            return torch.tensor(float(r)), torch.tensor(10.0 + r)
        return step

    step = side_by_side([run_step(r) for r in range(3)], streams=True)
    tasks, lagrangians = step(torch.arange(6).view(3, 2))
    assert events == [
        ("wait", "lane 0", "caller"), ("step", 0, "lane 0", [0, 1]),
        ("wait", "lane 1", "caller"), ("step", 1, "lane 1", [2, 3]),
        ("wait", "lane 2", "caller"), ("step", 2, "lane 2", [4, 5]),
        ("wait", "caller", "lane 0"), ("wait", "caller", "lane 1"), ("wait", "caller", "lane 2"),
    ]
    assert current[0].name == "caller"
    assert tasks.tolist() == [0.0, 1.0, 2.0] and lagrangians.tolist() == [10.0, 11.0, 12.0]
