"""On CUDA: the inner step (single or run-batched) never waits for the device and
replays as a CUDA graph.

Skipped where there is no GPU (CI); run on the GPU machine.
"""

import itertools

import pytest
import torch

from f1lib import F1Hyper, F1Regularizer, Schedule, batch_order
from f1lib.steps import RunLoss, make_batched_step, make_step
from f1lib.training import train, train_runs

from test_train import Interrupt, StateProbe, TwoHeads, probe_data, toy_data
from test_train_runs import SIDE_BY_SIDE, assert_histories_close, fresh_run

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def setup(variant):
    torch.manual_seed(0)
    data = toy_data().to("cuda")
    model = TwoHeads().cuda()
    reg = F1Regularizer(data.positive, variant=variant, hyper=F1Hyper(beta=0.1)).cuda()
    optimizer = torch.optim.SGD([{"params": list(model.parameters()), "lr": 0.01},
                                 *reg.param_groups()])
    step = make_step(model, data, reg, optimizer, torch.nn.functional.cross_entropy)
    return data, model, reg, step


def state(model, reg):
    return [t.detach().clone() for t in (*model.parameters(), *reg.parameters(), *reg.buffers())]


@cuda
@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_inner_step_does_not_synchronise(variant):
    data, model, reg, step = setup(variant)
    order = batch_order(0, 0, 20, 16, len(data)).cuda()
    step(order[0])  # first call: lazy initialisation may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for idx in order[1:]:
            step(idx)
        reg.dual_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@cuda
@pytest.mark.parametrize("variant", ["paper", "stable"])
def test_captured_inner_step_matches_eager(variant):
    steps, warmup = 30, 3
    order = batch_order(0, 0, steps, 16, 90).cuda()

    data, model, reg, step = setup(variant)
    for idx in order:
        step(idx)
    eager = state(model, reg)

    data, model, reg, step = setup(variant)
    static_idx = order[0].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for idx in order[:warmup]:
            static_idx.copy_(idx)
            step(static_idx)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_idx)  # recorded, not run
    for idx in order[warmup:]:
        static_idx.copy_(idx)
        graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(eager, state(model, reg), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def fresh_runs(variant, betas):
    models, regs = [], []
    for seed, beta in enumerate(betas):
        torch.manual_seed(seed)
        models.append(TwoHeads().cuda())
        regs.append(F1Regularizer(toy_data().positive, variant=variant,
                                  hyper=F1Hyper(beta=beta)).cuda())
    return models, toy_data().to("cuda"), regs


@cuda
@pytest.mark.parametrize("variant", ["paper", "stable"])
@pytest.mark.parametrize("betas", [[0.1], [0.0, 1e-3, 0.1]], ids=["one run", "three runs"])
def test_training_replayed_as_a_cuda_graph_matches_eager(variant, betas):
    schedule = Schedule(outer=3, inner=8, batch_size=16)
    results = []
    for graph in (False, True):
        models, data, regs = fresh_runs(variant, betas)
        results.append(train_runs(models, data, regs, seeds=list(range(len(betas))),
                                  schedule=schedule, graph=graph, progress=False))
    for eager, replayed in zip(*results, strict=True):
        assert_histories_close(replayed, eager)


@cuda
def test_the_batched_inner_step_does_not_synchronise():
    models, data, regs = fresh_runs("stable", [0.0, 1e-3, 0.1])
    runs = [RunLoss(m, r, data, torch.nn.functional.cross_entropy) for m, r in zip(models, regs)]
    step, _ = make_batched_step(runs, Schedule())
    order = torch.stack([batch_order(s, 0, 10, 16, len(data)) for s in range(3)], 1).cuda()
    step(order[0])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for idx in order[1:]:
            step(idx)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@cuda
def test_segnet_in_bf16_and_channels_last_replays_as_a_cuda_graph():
    # the sky notebook's own training function, on tiny procedural scenes
    from f1lib.data.sky import ProceduralSky, load_batches
    from f1lib.sky_study import SkySet, train_batch
    from f1lib.study import Run

    size = (32, 48)
    train_set = SkySet.from_batch(load_batches(ProceduralSky(28, size=size)), "cuda")
    test_set = SkySet.from_batch(load_batches(ProceduralSky(7, size=size, seed=9)), "cuda")
    assert train_set.images.is_contiguous(memory_format=torch.channels_last)
    # two runs side by side: eagerly on two streams, then as one graph of two branches
    runs = [Run("stable", 1e-3, 0), Run("paper", 1e-3, 1)]
    histories = [train_batch(runs, train_set, test_set, Schedule(outer=2, inner=6, batch_size=7),
                             width=0.125, samples=2, graph=graph) for graph in (False, True)]
    for eager, replayed in zip(*histories, strict=True):
        assert [r["outer"] for r in replayed] == [1, 2]
        assert replayed[-1]["sample_masks"]
        # bf16 convolutions: the same kernels in the same order, but not promised bit for bit
        for a, b in zip(replayed, eager, strict=True):
            for key in ("task_loss", "lagrangian", "miou"):
                assert a[key] == pytest.approx(b[key], rel=2e-2, abs=2e-2), key
    assert histories[1][0][-1]["task_loss"] != histories[1][1][-1]["task_loss"]


@cuda
def test_tf32_training_runs_its_products_in_tf32_and_ends_close_to_float32():
    probe = StateProbe(torch.get_float32_matmul_precision).cuda()
    train(probe, probe_data("cuda"), None, schedule=Schedule(outer=1, inner=2, batch_size=4),
          progress=False, tf32=True)
    assert set(probe.seen) == {"high"}
    assert torch.get_float32_matmul_precision() == "highest"

    schedule = Schedule(outer=3, inner=8, batch_size=16)
    results = []
    for tf32 in (False, True):
        models, data, regs = fresh_runs("stable", [0.0, 0.1])
        results.append(train_runs(models, data, regs, seeds=[0, 1], schedule=schedule,
                                  graph=True, tf32=tf32, progress=False))
    for full, reduced in zip(*results, strict=True):
        for a, b in zip(full, reduced, strict=True):
            assert a["task_loss"] == pytest.approx(b["task_loss"], rel=1e-2)


@cuda
def test_batched_graph_training_resumed_on_cuda_ends_as_an_uninterrupted_run(tmp_path):
    # the checkpoint is loaded onto the device; the CPU's RNG state in it must come back
    # to the CPU (torch.set_rng_state refuses a CUDA tensor), which no CPU test can see
    betas, schedule = [0.0, 0.1], Schedule(outer=4, inner=6, batch_size=16)

    def trained(evaluate=None, checkpoint=None):
        models, data, regs = fresh_runs("stable", betas)
        return train_runs(models, data, regs, seeds=[0, 1], schedule=schedule, graph=True,
                          evaluate=evaluate, checkpoint=checkpoint, progress=False)

    whole = trained()
    calls = itertools.count()

    def stop_in_outer_loop_three(_model):
        if next(calls) == 2 * len(betas):
            raise Interrupt
        return {}

    ckpt = tmp_path / "runs.ckpt"
    with pytest.raises(Interrupt):
        trained(stop_in_outer_loop_three, ckpt)
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["outer"] == 2
    for resumed, expected in zip(trained(checkpoint=ckpt), whole, strict=True):
        assert_histories_close(resumed, expected)


@cuda
def test_a_signal_between_replayed_steps_stops_there_and_resumes_on_cuda(tmp_path, monkeypatch):
    # on replay no Python of the step runs: the signal comes with the 9th call (step 3 of
    # outer loop 2, after the capture), and the checkpoint must hold the replayed steps
    import signal

    from f1lib.steps import CapturedStep

    betas, schedule = [0.0, 0.1], Schedule(outer=3, inner=6, batch_size=16)

    def trained(checkpoint=None):
        models, data, regs = fresh_runs("stable", betas)
        return train_runs(models, data, regs, seeds=[0, 1], schedule=schedule, graph=True,
                          checkpoint=checkpoint, checkpoint_interval=1e9, progress=False)

    whole = trained()
    calls, replay = itertools.count(1), CapturedStep.__call__

    def signalled(self, idx):
        if next(calls) == 6 + 3:
            signal.raise_signal(signal.SIGINT)
        return replay(self, idx)

    ckpt = tmp_path / "runs.ckpt"
    with monkeypatch.context() as patch:
        patch.setattr(CapturedStep, "__call__", signalled)
        with pytest.raises(KeyboardInterrupt):
            trained(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert (state["outer"], state["inner"]) == (1, 3)
    for resumed, expected in zip(trained(ckpt), whole, strict=True):
        assert_histories_close(resumed, expected)


@cuda
def test_runs_side_by_side_as_one_graph_train_as_each_alone():
    # other variants and another architecture: runs that only side by side can share a step

    schedule = Schedule(outer=3, inner=8, batch_size=16)

    def on_cuda(variant, beta, seed, cls):
        model, reg, data = fresh_run(variant, beta, seed, model_cls=cls)
        return model.cuda(), reg.cuda(), data.to("cuda")

    alone = []
    for spec in SIDE_BY_SIDE:
        model, reg, data = on_cuda(*spec)
        alone.append(train(model, data, reg, schedule=schedule, seed=spec[2], progress=False,
                           graph=True))
    runs = [on_cuda(*spec) for spec in SIDE_BY_SIDE]
    together = train_runs([m for m, _, _ in runs], runs[0][2], [r for _, r, _ in runs],
                          seeds=[spec[2] for spec in SIDE_BY_SIDE], schedule=schedule,
                          progress=False, graph=True, stack=False)
    for got, expected in zip(together, alone, strict=True):
        assert_histories_close(got, expected)


@cuda
def test_max_unpool_on_cuda_equals_pytorchs_and_replays_without_waiting_for_the_device():
    """f1lib.unpool.max_unpool in SegNet's mode on CUDA (bf16, channels_last): PyTorch's
    values and gradients bit for bit, no host-device sync, and the same as a CUDA graph."""
    import torch.nn.functional as F

    from f1lib.unpool import max_unpool

    torch.manual_seed(0)
    before = torch.randn(7, 64, 64, 96, device="cuda").relu().bfloat16()
    before = before.contiguous(memory_format=torch.channels_last)
    values, index = F.max_pool2d(before, 2, 2, return_indices=True)
    size = before.shape[-2:]
    incoming = torch.randn(before.shape, device="cuda").bfloat16()

    def unpooled(unpool):
        leaf = values.detach().clone().requires_grad_()
        out = unpool(leaf)
        out.backward(incoming)
        return out, leaf.grad

    theirs = unpooled(lambda x: F.max_unpool2d(x, index, 2, 2, output_size=size))
    ours = unpooled(lambda x: max_unpool(x, index, size))
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)

    leaf = values.detach().clone().requires_grad_()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        max_unpool(leaf, index, size).backward(incoming)
    finally:
        torch.cuda.set_sync_debug_mode("default")

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture stream, as capture wants
        for _ in range(2):
            leaf.grad = None
            max_unpool(leaf, index, size).backward(incoming)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    leaf.grad = None
    with torch.cuda.graph(graph):
        out = max_unpool(leaf, index, size)
        out.backward(incoming)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, theirs[0]) and torch.equal(leaf.grad, theirs[1])
