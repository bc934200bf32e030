"""The inner step's ATen ops, recorded on the CPU for CI, which has no GPU.

No host round trip: a step captured as a CUDA graph (f1lib.steps.CapturedStep)
may not read a value back to the host (.item(), bool(), the nonzero behind a
boolean mask) nor copy host data in (a Python scalar written through advanced
indexing, a torch.tensor built inside the step). tests/test_cuda.py checks this
on a GPU, where `seen[index] = True` once failed every captured test at once that
way. Here the ops that would make such a round trip on CUDA
are rejected.

No per-run loop: the run-batched step must dispatch as many ops for many runs as
for two. An op without a vmap batching rule for its arguments runs once per run
(index_fill_ with a batched index did), which on a GPU is a kernel per run.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from f1lib import F1Hyper, F1Regularizer, Schedule, TensorData, batch_order
from f1lib.models import SegNet
from f1lib.steps import RunLoss, make_batched_step, make_step

from test_train import fresh
from test_train_runs import fresh_run

aten = torch.ops.aten

# ops whose output depends on values the host must read first
READS_BACK = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten.is_nonzero,
              aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.equal}
INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class HostRoundTrips(TorchDispatchMode):
    """Records, by name, every op that reads back to or copies from the host on CUDA,
    and counts every op."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        name = str(func)
        self.count += 1
        if packet in READS_BACK:
            self.found.append(f"{name}: reads a value back")
        elif packet in (aten.lift_fresh, aten.lift_fresh_copy):
            self.found.append(f"{name}: a tensor made from host data")
        elif packet in INDEXING:
            indices = args[1]
            if any(i is not None and i.dtype == torch.bool for i in indices):
                self.found.append(f"{name}: a boolean mask (its nonzero reads back)")
            # a Python scalar written through advanced indexing arrives as a 0-dim
            # tensor, made on the host even when the target is on CUDA
            if packet is not aten.index and args[2].dim() == 0:
                self.found.append(f"{name}: writes a 0-dim (host) value")
        return func(*args, **kwargs)


def round_trips(fn, *args) -> list[str]:
    with HostRoundTrips() as mode:
        fn(*args)
    return mode.found


def test_the_recorder_catches_each_kind_of_round_trip():
    x, mask, idx = torch.zeros(6), torch.tensor([True, False] * 3), torch.tensor([0, 2])

    def scalar_write():
        x[idx] = True

    found = [round_trips(lambda: x.sum().item()), round_trips(lambda: x[mask]),
             round_trips(scalar_write), round_trips(lambda: x.nonzero()),
             round_trips(lambda: x.index_fill_(0, idx, 1.0)), round_trips(lambda: x[idx] * 2)]
    assert [bool(f) for f in found] == [True, True, True, True, False, False]


def single_step(variant):
    model, reg, data = fresh(variant)
    optimizer = torch.optim.SGD([{"params": list(model.parameters()), "lr": 0.01},
                                 *reg.param_groups()])
    return make_step(model, data, reg, optimizer, torch.nn.functional.cross_entropy), reg, data


@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_the_inner_step_and_the_dual_step_make_no_host_round_trip(variant):
    step, reg, data = single_step(variant)
    order = batch_order(0, 0, 3, 16, len(data))
    step(order[0])  # the first call may set things up lazily, as on CUDA
    assert round_trips(lambda: [step(idx) for idx in order[1:]]) == []
    assert round_trips(reg.dual_step) == []


def batched_step(variant, count):
    """(step, runs, minibatch order) of `count` runs of the toy problem trained together."""
    runs = [RunLoss(*fresh_run(variant, 10.0 ** -(r + 1), 0), torch.nn.functional.cross_entropy)
            for r in range(count)]
    data = runs[0].data
    step, _ = make_batched_step(runs, Schedule(lr=0.01))
    order = torch.stack([batch_order(seed, 0, 3, 16, len(data)) for seed in range(count)], dim=1)
    step(order[0])  # the first call may set things up lazily, as on CUDA
    return step, runs, order


@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_the_run_batched_inner_step_makes_no_host_round_trip(variant):
    step, runs, order = batched_step(variant, 3)
    assert round_trips(lambda: [step(idx) for idx in order[1:]]) == []
    assert round_trips(lambda: [run.regularizer.dual_step() for run in runs]) == []


@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_the_run_batched_inner_step_dispatches_as_many_ops_for_six_runs_as_for_two(variant):
    counts = []
    for count in (2, 6):
        step, _, order = batched_step(variant, count)
        with HostRoundTrips() as mode:
            step(order[1])
        counts.append(mode.count)
    assert counts[0] == counts[1] > 0


def test_the_segnet_step_in_bf16_and_channels_last_makes_no_host_round_trip():
    torch.manual_seed(0)
    images = torch.rand(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    masks = torch.rand(8, 32, 32) < 0.3
    positive = masks.flatten(1).float().mean(1) > 0.3
    positive[0] = True
    data = TensorData(images, masks.long(), positive)
    model = SegNet(width=0.125).to(memory_format=torch.channels_last)
    reg = F1Regularizer(data.positive, features=model.f1_features, hyper=F1Hyper(beta=1e-3))
    optimizer = torch.optim.SGD([{"params": list(model.parameters()), "lr": 0.01},
                                 *reg.param_groups()])
    step = make_step(model, data, reg, optimizer, torch.nn.functional.cross_entropy, bf16=True)
    order = batch_order(0, 0, 3, 4, len(data))
    step(order[0])
    assert round_trips(lambda: [step(idx) for idx in order[1:]]) == []
