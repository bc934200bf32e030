"""Algorithm 1's trainer: minibatch order, determinism, resume, NaN stops, a real task."""

import importlib
import itertools
import signal

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from f1lib import (F1Hyper, F1Regularizer, NonFiniteError, Schedule, TensorData, batch_order,
                   train)
from f1lib.data.gaussians import gaussian_problem
from f1lib.checkpoint import checkpoint_elapsed


class TwoHeads(nn.Module):
    """A shared hidden layer, a 2-class task head and a 1-unit F1 head."""

    def __init__(self, d=2, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.task = nn.Linear(hidden, 2)
        self.f1 = nn.Linear(hidden, 1)

    def forward(self, x):
        z = self.body(x)
        return self.task(z), self.f1(z)


def toy_data(n=90, seed=0):
    x, positive = gaussian_problem(n=n, separation=3.0, offset=1.0, seed=seed)
    return TensorData(x.float(), positive.long(), positive)


def fresh(variant="stable", seed=0):
    torch.manual_seed(seed)
    data = toy_data()
    return TwoHeads(), F1Regularizer(data.positive, variant=variant,
                                     hyper=F1Hyper(beta=0.1)), data


def test_batch_order_is_epochs_of_permutations_and_reproducible():
    order = batch_order(seed=3, outer=2, inner=7, batch_size=3, n=10).flatten()
    assert sorted(order[:10].tolist()) == list(range(10))
    assert sorted(order[10:20].tolist()) == list(range(10))
    assert torch.equal(order, batch_order(3, 2, 7, 3, 10).flatten())
    assert not torch.equal(order, batch_order(3, 3, 7, 3, 10).flatten())
    assert not torch.equal(order, batch_order(4, 2, 7, 3, 10).flatten())


def test_training_is_deterministic_on_cpu():
    schedule = Schedule(outer=3, inner=10, batch_size=16)
    runs = []
    for _ in range(2):
        model, reg, data = fresh()
        runs.append((train(model, data, reg, schedule=schedule, progress=False),
                     [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("older_format", [False, True], ids=["", "older format"])
@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path, variant, older_format):
    schedule = Schedule(outer=4, inner=6, batch_size=16)
    model, reg, data = fresh(variant)
    whole = train(model, data, reg, schedule=schedule, progress=False)
    expected = {**model.state_dict(), **{f"reg.{k}": v for k, v in reg.state_dict().items()}}

    ckpt = tmp_path / "run.ckpt"

    outer_loops_done = itertools.count()

    def stop_after_two(_model):
        # interrupted during outer loop 3: the checkpoint holds outer loops 1 and 2
        if next(outer_loops_done) == 2:
            raise Interrupt
        return {}

    model, reg, data = fresh(variant)
    with pytest.raises(Interrupt):
        train(model, data, reg, schedule=schedule, checkpoint=ckpt, evaluate=stop_after_two,
              progress=False)
    assert torch.load(ckpt, weights_only=False)["outer"] == 2
    if older_format:  # the first format: one optimizer's state, as "optimizer"
        state = torch.load(ckpt, weights_only=False)
        state["optimizer"] = state.pop("optimizers")[0]
        torch.save(state, ckpt)
    # a new process would start from fresh objects, with other initial values
    model, reg, data = fresh(variant, seed=99)
    resumed = train(model, data, reg, schedule=schedule, checkpoint=ckpt, progress=False)
    got = {**model.state_dict(), **{f"reg.{k}": v for k, v in reg.state_dict().items()}}
    assert resumed == whole
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def signal_at(call: int, signum: int, times: int = 1):
    """A task loss that raises `signum` (`times` times) inside the `call`-th step, mid-step;
    `calls` counts the steps that reached the loss."""
    calls = itertools.count(1)

    def loss(output, target):
        if next(calls) == call:
            for _ in range(times):
                signal.raise_signal(signum)
        return F.cross_entropy(output, target)

    loss.calls = calls
    return loss


def raise_interrupt(signum, frame):  # a handler that ends the run, as a scheduler's would
    raise Interrupt


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_step_stops_after_that_step_and_the_run_resumes_from_it(
        tmp_path, signum):
    schedule = Schedule(outer=3, inner=6, batch_size=16)
    model, reg, data = fresh()
    whole = train(model, data, reg, schedule=schedule, progress=False)
    expected = {**model.state_dict(), **{f"reg.{k}": v for k, v in reg.state_dict().items()}}

    # SIGINT keeps Python's own handler (KeyboardInterrupt); SIGTERM gets one that raises
    if signum == signal.SIGTERM:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ckpt = tmp_path / "run.ckpt"
    model, reg, data = fresh()
    # a long interval: no checkpoint is due before the signal, in step 3 of outer loop 2
    try:
        with pytest.raises(KeyboardInterrupt if signum == signal.SIGINT else Interrupt):
            train(model, data, reg, schedule=schedule, checkpoint=ckpt, checkpoint_interval=1e9,
                  task_loss=signal_at(6 + 3, signum), progress=False)
    finally:
        after = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, previous)
    assert after == handlers
    state = torch.load(ckpt, weights_only=False)
    assert (state["outer"], state["inner"]) == (1, 3)

    model, reg, data = fresh(seed=99)
    resumed = train(model, data, reg, schedule=schedule, checkpoint=ckpt, progress=False)
    got = {**model.state_dict(), **{f"reg.{k}": v for k, v in reg.state_dict().items()}}
    assert resumed == whole
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_without_a_checkpoint_or_at_a_second_signal_the_signal_acts_at_once(tmp_path):
    schedule = Schedule(outer=3, inner=6, batch_size=16)
    model, reg, data = fresh()
    loss = signal_at(4, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(model, data, reg, schedule=schedule, task_loss=loss, progress=False)
    assert next(loss.calls) == 5  # nothing to save, so no step after the 4th began

    ckpt = tmp_path / "run.ckpt"
    model, reg, data = fresh()
    loss = signal_at(6 + 4, signal.SIGINT, times=2)
    with pytest.raises(KeyboardInterrupt):
        train(model, data, reg, schedule=schedule, checkpoint=ckpt, task_loss=loss,
              progress=False)
    assert next(loss.calls) == 11
    # the second Ctrl-C stopped the step itself: the file is the last outer loop's
    state = torch.load(ckpt, weights_only=False)
    assert (state["outer"], state["inner"]) == (1, 0)


def test_a_checkpoint_interval_writes_once_that_long_has_passed_and_resumes_from_there(
        tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(importlib.import_module("f1lib.training"), "monotonic", lambda: now[0])
    schedule = Schedule(outer=6, inner=4, batch_size=16)
    model, reg, data = fresh("stable")
    whole = train(model, data, reg, schedule=schedule, progress=False)
    expected = {**model.state_dict(), **{f"reg.{k}": v for k, v in reg.state_dict().items()}}

    ckpt = tmp_path / "run.ckpt"
    seen = []

    def outer_loop_of_25_s(_model):  # and what the file held before this loop's write
        now[0] += 25
        seen.append(torch.load(ckpt, weights_only=False)["outer"] if ckpt.exists() else None)
        if len(seen) == 5:
            raise Interrupt
        return {}

    model, reg, data = fresh("stable")
    with pytest.raises(Interrupt):
        train(model, data, reg, schedule=schedule, checkpoint=ckpt, checkpoint_interval=60,
              evaluate=outer_loop_of_25_s, progress=False)
    # written after outer loop 3 (75 s in), not after loops 1 and 2 (25, 50 s) or 4 (25 s on)
    assert seen == [None, None, None, 3, 3]
    assert checkpoint_elapsed(ckpt) == 75.0
    model, reg, data = fresh("stable", seed=99)
    resumed = train(model, data, reg, schedule=schedule, checkpoint=ckpt, checkpoint_interval=60,
                    progress=False)
    got = {**model.state_dict(), **{f"reg.{k}": v for k, v in reg.state_dict().items()}}
    assert resumed == whole
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    # no time passed in the resumed run, yet its last outer loop was written, and the
    # file still counts the 75 s trained before the interruption
    assert torch.load(ckpt, weights_only=False)["outer"] == 6
    assert checkpoint_elapsed(ckpt) == 75.0
    assert checkpoint_elapsed(tmp_path / "none.ckpt") == 0.0


def test_a_checkpoint_in_a_folder_not_made_yet_is_written_there(tmp_path):
    model, reg, data = fresh()
    ckpt = tmp_path / "runs" / "today" / "run.ckpt"
    train(model, data, reg, schedule=Schedule(outer=1, inner=2, batch_size=4), checkpoint=ckpt,
          progress=False)
    assert checkpoint_elapsed(ckpt) > 0


def test_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt = tmp_path / "run.ckpt"
    model, reg, data = fresh()
    train(model, data, reg, schedule=Schedule(outer=1, inner=2, batch_size=8), checkpoint=ckpt,
          progress=False)
    with pytest.raises(ValueError, match="another run"):
        train(model, data, reg, schedule=Schedule(outer=2, inner=2, batch_size=8),
              checkpoint=ckpt, progress=False)


def test_nan_stops_with_the_outer_loop_and_last_finite_values():
    calls = itertools.count()

    def loss_that_breaks(output, target):
        # finite for the 4 steps of outer loop 1, NaN from outer loop 2 on
        return F.cross_entropy(output, target) * (float("nan") if next(calls) >= 4 else 1.0)

    model, reg, data = fresh()
    with pytest.raises(NonFiniteError) as err:
        train(model, data, reg, schedule=Schedule(outer=3, inner=4, batch_size=8),
              task_loss=loss_that_breaks, progress=False)
    message = str(err.value)
    assert "outer loop 2 of 3" in message
    assert "task_loss" in message
    assert "last finite values: {'outer': 1" in message
    assert err.value.outer == 2
    assert [row["outer"] for row in err.value.history] == [1]


def test_a_task_trains_and_the_regularizer_reports_each_outer_loop():
    model, reg, data = fresh()
    history = train(model, data, reg, schedule=Schedule(outer=8, inner=30, batch_size=16, lr=0.1),
                    evaluate=lambda m: {"accuracy": (m(data.inputs)[0].argmax(1) == data.targets)
                                        .float().mean()},
                    progress=False)
    assert [row["outer"] for row in history] == list(range(1, 9))
    assert history[-1]["task_loss"] < history[0]["task_loss"]
    assert history[-1]["accuracy"] > 0.9  # two Gaussians 3 sd apart
    for key in ("lagrangian", "violation", "sum_tau_error", "f1_bound", "f1"):
        assert key in history[-1]
    assert 0.0 <= history[-1]["f1_bound"] <= history[-1]["f1"] <= 1.0


def test_bad_arguments():
    model, reg, data = fresh()
    with pytest.raises(ValueError, match="Schedule"):
        train(model, data, reg, schedule={"outer": 1}, progress=False)
    with pytest.raises(ValueError, match="positive integer"):
        Schedule(outer=0)
    for interval in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="checkpoint_interval is in seconds"):
            train(model, data, reg, checkpoint_interval=interval, progress=False)
    other = F1Regularizer(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="cover 2 examples"):
        train(model, data, other, schedule=Schedule(outer=1, inner=1), progress=False)
    with pytest.raises(ValueError, match="bool tensor"):
        TensorData(data.inputs, data.targets, data.positive.long())
    with pytest.raises(ValueError, match="batch_size 1000 is larger than the data's"):
        train(model, data, reg, schedule=Schedule(outer=1, inner=1, batch_size=1000),
              progress=False)
    with pytest.raises(ValueError, match="seeds must be integers"):
        train(model, data, reg, seed="0", schedule=Schedule(outer=1, inner=1), progress=False)
    flipped = F1Regularizer(~data.positive)  # labels that disagree with the data's
    with pytest.raises(ValueError, match="absent from the regularizer's index table"):
        train(model, data, flipped, schedule=Schedule(outer=1, inner=1), progress=False)
    # a model that returns one tensor: with minibatches of 2 its rows would unpack silently
    # into a task output and a score
    probe = data.inputs.shape[1]
    with pytest.raises(TypeError, match=r"must return \(task_output, h\).*shape \(2, 2\)"):
        train(nn.Linear(probe, 2), data, reg, schedule=Schedule(outer=1, inner=1, batch_size=2),
              progress=False)


class StateProbe(nn.Module):
    """A one-layer model that records `read()` (some global torch state) at every forward."""

    def __init__(self, read):
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.read, self.seen = read, []

    def forward(self, x):
        self.seen.append(self.read())
        out = self.linear(x)
        return out, out[:, :1]


def probe_data(device="cpu"):
    return TensorData(torch.rand(8, 4), torch.randint(0, 2, (8,)), torch.arange(8) < 4).to(device)


def test_tf32_is_for_cuda_only_and_the_precision_is_restored_after_training():
    model = StateProbe(torch.get_float32_matmul_precision)
    before = torch.get_float32_matmul_precision()
    train(model, probe_data(), None, schedule=Schedule(outer=1, inner=2, batch_size=4),
          progress=False, tf32=True)
    assert set(model.seen) == {before}  # on the CPU the flag changes nothing
    assert torch.get_float32_matmul_precision() == before


UNPICKLED = []


def _record_unpickling(note):
    UNPICKLED.append(note)
    return note


class Planted:
    """An object whose unpickling runs code: what a checkpoint handed over by a stranger
    could hold."""

    def __reduce__(self):
        return _record_unpickling, ("code ran",)


@pytest.mark.parametrize("reader", ["resume", "elapsed"])
def test_a_checkpoint_holding_a_pickled_object_is_refused_and_runs_no_code(tmp_path, reader):
    schedule = Schedule(outer=2, inner=3, batch_size=16)
    model, reg, data = fresh()
    ckpt = tmp_path / "run.ckpt"
    train(model, data, reg, schedule=schedule, checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=True)  # what f1lib writes loads safely
    state["planted"] = Planted()
    torch.save(state, ckpt)
    UNPICKLED.clear()
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt}.*not loaded.*delete it"):
        if reader == "resume":
            other_model, other_reg, _ = fresh()
            train(other_model, data, other_reg, schedule=schedule, checkpoint=ckpt,
                  progress=False)
        else:
            checkpoint_elapsed(ckpt)
    assert UNPICKLED == []


@pytest.mark.parametrize("change, named", [
    ("beta", "regularizer"), ("variant", "regularizer"), ("positives", "regularizer"),
    ("model", "shapes"), ("seed", "seed"), ("schedule", "schedule")])
def test_a_checkpoint_of_another_run_is_refused_with_what_differs(tmp_path, change, named):
    schedule = Schedule(outer=2, inner=3, batch_size=16)
    model, reg, data = fresh()
    ckpt = tmp_path / "run.ckpt"
    train(model, data, reg, schedule=schedule, checkpoint=ckpt, progress=False)
    model, reg, data = fresh()
    seed = 0
    if change == "beta":
        reg = F1Regularizer(data.positive, hyper=F1Hyper(beta=0.2))
    elif change == "variant":
        reg = F1Regularizer(data.positive, variant="paper", hyper=F1Hyper(beta=0.1))
    elif change == "positives":  # as many positives, other examples
        flipped = data.positive.flip(0)
        assert flipped.sum() == data.positive.sum() and not torch.equal(flipped, data.positive)
        data = TensorData(data.inputs, data.targets, flipped)
        reg = F1Regularizer(flipped, hyper=F1Hyper(beta=0.1))
    elif change == "model":
        model.task = nn.Linear(model.task.in_features, 3)
    elif change == "seed":
        seed = 1
    else:
        schedule = Schedule(outer=2, inner=3, batch_size=8)
    with pytest.raises(ValueError, match=rf"{ckpt} belongs to another run: its .*{named}"):
        train(model, data, reg, schedule=schedule, seed=seed, checkpoint=ckpt, progress=False)


@pytest.mark.parametrize("damage", ["truncated", "empty", "a folder", "text"])
def test_a_damaged_checkpoint_names_its_path_and_the_remedy(tmp_path, damage):
    schedule = Schedule(outer=2, inner=3, batch_size=16)
    model, reg, data = fresh()
    ckpt = tmp_path / "run.ckpt"
    train(model, data, reg, schedule=schedule, checkpoint=ckpt, progress=False)
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "a folder":
        ckpt.unlink()
        ckpt.mkdir()
    else:
        ckpt.write_text("not a checkpoint\n")
    model, reg, data = fresh()
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt} .*delete it to start the run over"):
        train(model, data, reg, schedule=schedule, checkpoint=ckpt, progress=False)
