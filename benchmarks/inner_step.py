"""Time Algorithm 1's inner step (f1lib.steps.make_step): eager, and replayed as a CUDA graph.

The S-MNIST-sized step: an MLP 4096 -> 500 -> 10 with an F1 head, batch 100,
N = 120,000 examples held on the device, with no regularizer, and with the
paper and the stable F1Regularizer. Inputs are random: this measures time
only. Compile/capture time is reported apart from the steady state.

    python benchmarks/inner_step.py --device cuda
    python benchmarks/inner_step.py --device cpu --examples 2000 --steps 50
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from f1lib import F1Hyper, F1Regularizer, SharedHeadMLP, TensorData, batch_order
from f1lib.steps import make_step
from timing import clock


def build(variant: str | None, n: int, device: str):
    torch.manual_seed(0)
    data = TensorData(torch.rand(n, 4096, device=device),
                      torch.randint(10, (n,), device=device),
                      torch.arange(n, device=device) % 2 == 0)
    model = SharedHeadMLP().to(device)
    reg = None
    groups = [{"params": list(model.parameters()), "lr": 0.01}]
    if variant is not None:
        reg = F1Regularizer(data.positive, features=model.f1_features, variant=variant,
                            hyper=F1Hyper()).to(device)
        groups += reg.param_groups()
    optimizer = torch.optim.SGD(groups)
    return make_step(model, data, reg, optimizer, F.cross_entropy)


def time_eager(step, order, device) -> float:
    for idx in order[:5]:  # warm-up: lazy initialisation, allocator
        step(idx)
    start = clock(device)
    for idx in order:
        step(idx)
    return (clock(device) - start) / len(order)


def time_graph(step, order) -> tuple[float, float]:
    static_idx = order[0].clone()
    start = clock("cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step(static_idx)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step(static_idx)
    capture = clock("cuda") - start
    start = clock("cuda")
    for idx in order:
        static_idx.copy_(idx)
        graph.replay()
    return (clock("cuda") - start) / len(order), capture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--examples", type=int, default=120_000)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    order = batch_order(0, 0, args.steps, 100, args.examples).to(args.device)
    name = (torch.cuda.get_device_name(0) if args.device == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
    print(f"device: {name}; torch {torch.__version__}; {args.steps} steps of batch 100, "
          f"N = {args.examples}")
    print(f"{'regularizer':<12} {'eager ms/step':>14} {'graph ms/step':>14} {'speed-up':>9} "
          f"{'capture s':>10}")
    for variant in (None, "paper", "stable"):
        step = build(variant, args.examples, args.device)
        eager = time_eager(step, order, args.device)
        row = f"{variant or 'none':<12} {1e3 * eager:>14.3f}"
        if args.device == "cuda":
            step = build(variant, args.examples, args.device)
            graph, capture = time_graph(step, order)
            row += f" {1e3 * graph:>14.3f} {eager / graph:>8.1f}x {capture:>10.2f}"
        print(row)


if __name__ == "__main__":
    main()
