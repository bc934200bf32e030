"""On CUDA: the inner step never waits for the device and replays as a CUDA graph.

Skipped where there is no GPU (CI); run on the GPU machine.
"""

import pytest
import torch

from f1lib import F1Hyper, F1Regularizer, batch_order
from f1lib.train import make_step

from test_train import TwoHeads, toy_data

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def setup(variant):
    torch.manual_seed(0)
    data = toy_data().to("cuda")
    model = TwoHeads().cuda()
    reg = F1Regularizer(data.positive, variant=variant, hyper=F1Hyper(beta=0.1)).cuda()
    optimizer = torch.optim.SGD([{"params": list(model.parameters()), "lr": 0.01},
                                 *reg.param_groups()])
    return data, model, reg, make_step(model, data, reg, optimizer, torch.nn.functional.cross_entropy)


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
    for a, b in zip(eager, state(model, reg)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
