"""SegNet training speed: a naive PyTorch loop, and f1lib.train in fp32 and in bf16 + channels_last.

The sky-segmentation step of book/sky_segmentation.ipynb: SegNet (VGG16-BN
encoder, width 1: 29.5M parameters) with its F1 head, the stable F1
regularizer, SGD on minibatches of 7 (the successor's). The images are
f1lib's procedural sky scenes at --size; only time is measured. Modes:

naive         the obvious loop: the images on the host as uint8, made float
              and the masks long per sample (a per-sample transform), a
              shuffling DataLoader, batches copied to the device, float32, and
              `.item()` bookkeeping every step (the loss, the sky IoU, the big
              images' IoU through a boolean mask). It uses f1lib's
              F1Regularizer, so the arithmetic is the same and only the
              engineering differs.
fp32          f1lib.train on the images held on the device, float32, NCHW (on
              CUDA, PyTorch's default still runs its convolutions in TF32,
              cudnn.allow_tf32; so does the naive loop)
fp32, no TF32 the same in full float32 (CUDA only; a row for reference, not the base)
fp32 + CL     float32 in channels_last memory format (CPU only: the sky notebook's mode
              there, f1lib.hardware.channels_last_convolutions)
bf16 + CL     bfloat16 autocast for the network, channels_last images and weights
bf16 + CL + graph   the same, the inner step replayed as a CUDA graph (CUDA only)
bf16+CL+graph+unpool bf16 + CL + graph with SegNet unpooling through
              f1lib.unpool.max_unpool, in channels_last, instead of PyTorch's max_unpool2d,
              which on CUDA copies to and from NCHW (the same values and gradients;
              f1lib.models keeps PyTorch's until the sky chapter's kept runs are done,
              benchmarks/RESULTS.md)
bf16+CL+graph+tuned bf16 + CL + graph with cuDNN's autotuner on (torch.backends.cudnn.benchmark:
              each convolution's fastest algorithm, timed on its first call; CUDA only)
fp32 + CL + unpool  the same change on the CPU, in the sky notebook's CPU mode

Images/s are medians over --repeats timings: the naive loop's over --steps
steps after 3 warm-up steps, f1lib's steady-state (benchmarks/timing.steady_rate:
set-up and graph capture cancel out and are reported apart). The issue's
target is bf16 + CL against fp32; the naive column shows what the engineering
gains besides.

    python benchmarks/segnet.py                       # CUDA, 256 x 256
    python benchmarks/segnet.py --device cpu --size 32 48 --width 0.125 --inner 3
    python benchmarks/segnet.py --count-flops --size 128 192   # the work, not the time
    python benchmarks/segnet.py --profile 30 --size 128 192    # where a step's time goes
    python benchmarks/segnet.py --concurrent 3 --size 128 192  # runs side by side
    python benchmarks/segnet.py --concurrent 3 6 --layouts branches --size 128 192

--count-flops counts one training step's floating-point operations
(torch.utils.flop_counter: convolutions and matrix products, forward and
backward); at the paper profile's size and width, also what the sky
notebook's runs add up to.

--profile ROWS replaces the timings with torch.profiler's view of one training
of --outer x --inner steps in the sky notebook's mode (f1lib.hardware: on a recent GPU
bf16 + channels_last, eager and as a CUDA graph; on the CPU float32 + channels_last): the
device's busy time per step and the ROWS ops with the most of it. At the paper profile's
128 x 192 it says where the book's longest chapter spends its time.

--concurrent R [R ...] asks whether R independent runs train faster side by side
than one after another (on an H200, three did: 1.51x, and f1lib.sky_study has since
trained its runs three at a time in the "branches" layout, which is
f1lib.train_runs(stack=False, graph=True)); given several R, whether more runs at
once gain more (the sky notebook's side_by_side parameter). At 128 x 192 and batch
7 one run's step leaves the GPU under-filled (about 100 TFLOP/s on an H200,
benchmarks/RESULTS.md), and stacking SegNet runs into one vmapped model does
not work (f1lib.train_runs: max_unpool2d has no batching rule). The step is
f1lib.train_runs' single-run step, built the same way, in bf16 + channels_last,
with each run's dual step once per outer loop. The runs' steps are interleaved
(step k of each run, then step k + 1) and laid out three ways (LAYOUTS): each
run's step a CUDA graph of its own, replayed on one stream, or each on a stream
of its own, where kernels of different runs may overlap; or one CUDA graph of
all R steps in R parallel branches; --layouts picks some of them. The rows give
the time per run-step and the ratio to one run alone. On the CPU it runs the runs
eagerly in float32, one after another: a smoke test.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from f1lib import F1Hyper, F1Regularizer, Schedule, TensorData, train
from f1lib.data.sky import ProceduralSky, SkyBatch, load_batches
from f1lib.hardware import bf16_convolutions, channels_last_convolutions
from f1lib.metrics import sky_iou
from f1lib.models import SegNet
from f1lib.steps import CapturedStep, RunLoss, param_groups, side_by_side, single_run_step
from f1lib.tensor_data import batch_order
from f1lib.unpool import max_unpool
from naive import naive_loop
from timing import print_profile, steady_rate, timed

BATCH = 7


class PerSampleSky(Dataset):
    """Scene i as a naive loop holds it: uint8 on the host, made float32 when asked for."""

    def __init__(self, batch: SkyBatch):
        self.batch = batch

    def __len__(self) -> int:
        return len(self.batch)

    def __getitem__(self, i: int):
        b = self.batch
        return b.images[i].float() / 255.0, b.masks[i].long(), b.big[i], i


def segnet_run(positive: Tensor, device: str, width: float, seed: int = 0,
               channels_last: bool = False) -> tuple[SegNet, F1Regularizer]:
    """Every mode's run: SegNet initialised from `seed`, and its stable F1 regularizer
    (beta 1e-3) over the scenes' big/small labels `positive`, on `device`."""
    torch.manual_seed(seed)
    model = SegNet(width=width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    reg = F1Regularizer(positive, features=model.f1_features, hyper=F1Hyper(beta=1e-3))
    return model, reg.to(device)


def in_layout(data: TensorData, channels_last: bool) -> TensorData:
    """The data with its images in channels_last memory format, when asked."""
    if not channels_last:
        return data
    return TensorData(data.inputs.contiguous(memory_format=torch.channels_last), data.targets,
                      data.positive)


def naive_time(batch: SkyBatch, device: str, width: float, steps: int, inner: int) -> float:
    """Seconds per step of the naive loop (benchmarks/naive.py) on the sky scenes."""
    model, reg = segnet_run(batch.big, device, width)

    def ious(logits, masks, big):
        sky, truth = logits.argmax(1) == 1, masks == 1
        return {"iou": sky_iou(sky, truth)["iou_sky"],
                "iou_big": sky_iou(sky[big], truth[big])["iou_sky"]}

    return naive_loop(PerSampleSky(batch), model, reg, device, steps, inner, BATCH,
                      Schedule().lr, ious)


def segnet_time(data: TensorData, device: str, width: float, outer: int, inner: int,
                bf16: bool, channels_last: bool, graph: bool, around=None) -> float:
    """Seconds to train outer x inner steps (inside the context manager `around`,
    if given: the model's set-up stays outside)."""
    data = in_layout(data, channels_last)
    model, reg = segnet_run(data.positive, device, width, channels_last=channels_last)
    return timed(device, lambda: train(
        model, data, reg, schedule=Schedule(outer=outer, inner=inner, batch_size=BATCH),
        bf16=bf16, graph=graph, progress=False), around)


def profile_steps(args: argparse.Namespace, data: TensorData) -> None:
    """torch.profiler's view of the sky notebook's training step in the notebook's mode for
    the device (an Ampere or newer GPU: bf16 + channels_last, eager and as a CUDA graph;
    the CPU: float32 + channels_last; f1lib.hardware)."""
    cuda = args.device == "cuda"
    # the notebook's own choices for this device (f1lib.sky_study asks the same functions)
    mode = dict(bf16=bf16_convolutions(args.device),
                channels_last=channels_last_convolutions(args.device))
    for graph in ([False, True] if cuda else [False]):
        label = (("bf16" if mode["bf16"] else "fp32") + (" + CL" if mode["channels_last"] else "")
                 + (", CUDA graph" if graph else ", eager"))
        # one outer loop first, unprofiled: lazy initialisation stays out of the profile
        segnet_time(data, args.device, args.width, 1, args.inner, graph=graph, **mode)
        print_profile(label, args.device, args.outer * args.inner, args.profile,
                      lambda profiler: segnet_time(data, args.device, args.width, args.outer,
                                                   args.inner, graph=graph, around=profiler,
                                                   **mode))


# how --concurrent lays R runs out on CUDA: each run's step its own graph, all replayed on
# one stream or each on a stream of its own; or one graph of all R steps, forked into R
# branches (the graph's parallel branches may overlap as separate streams do)
LAYOUTS = ("one stream", "streams", "branches")


def interleaved_runs(data: TensorData, device: str, width: float, outer: int, inner: int,
                     runs: int, layout: str = "one stream"):
    """(train, runs): train() trains `runs` independent runs (seeds 0, 1, ...) for outer
    x inner steps each, their steps interleaved (step k of every run, then step k + 1),
    laid out on CUDA as LAYOUTS says; on the CPU all run eagerly, one after another.
    runs[r] (f1lib.steps.RunLoss: the model and its regularizer) ends as
    f1lib.train_runs would train it alone with seed r."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: one of {LAYOUTS}")
    cuda = device == "cuda"
    data = in_layout(data, cuda)
    schedule = Schedule(outer=outer, inner=inner, batch_size=BATCH)
    steps, losses = [], []
    for seed in range(runs):
        model, reg = segnet_run(data.positive, device, width, seed, channels_last=cuda)
        run = RunLoss(model, reg, data, F.cross_entropy, bf16=cuda)
        steps.append(single_run_step(run, torch.optim.SGD(param_groups(run, schedule))))
        losses.append(run)
    streams = cuda and layout != "one stream"
    if cuda and layout == "branches":  # f1lib.train_runs(stack=False, graph=True)'s step
        step_all = CapturedStep(side_by_side(steps, streams=True))
    elif cuda:
        step_all = side_by_side([CapturedStep(step) for step in steps], streams=streams)
    else:
        step_all = side_by_side(steps)

    def train_all() -> None:
        for o in range(outer):
            order = torch.stack([batch_order(seed, o, inner, BATCH, len(data))
                                 for seed in range(runs)], dim=1)  # (inner, R, B)
            # as f1lib.train_runs does: from pinned memory, the host does not wait
            order = (order.pin_memory().to(device, non_blocking=True) if cuda
                     else order.to(device))
            for k in range(inner):
                step_all(order[k])
            for run in losses:
                run.regularizer.dual_step()

    return train_all, losses


def interleaved_time(data: TensorData, device: str, width: float, outer: int, inner: int,
                     runs: int, layout: str) -> float:
    """Seconds of interleaved_runs' training, set-up and capture included."""
    train_all, _ = interleaved_runs(data, device, width, outer, inner, runs, layout)
    return timed(device, train_all)


def layouts_differ(data: TensorData, device: str, width: float, inner: int,
                   runs: int, layouts=LAYOUTS[1:]) -> dict[str, float]:
    """Per layout of `layouts`: the largest difference of any run's final weights,
    buffers and multipliers from the one-stream layout's, after one outer loop."""
    finals = {}
    for layout in ("one stream", *layouts):
        train_all, losses = interleaved_runs(data, device, width, 1, inner, runs, layout)
        train_all()
        finals[layout] = [run.state_dict() for run in losses]
    base = finals["one stream"]
    return {layout: max(float((a.float() - b.float()).abs().max())
                        for mine, theirs in zip(finals[layout], base)
                        for a, b in zip(mine.values(), theirs.values()))
            for layout in layouts}


def concurrent_label(runs: int, layout: str) -> str:
    return {"one stream": f"{runs} runs, one stream", "streams": f"{runs} runs, {runs} streams",
            "branches": f"{runs} runs, one graph, {runs} branches"}[layout]


def concurrent_rows(args: argparse.Namespace, data: TensorData) -> None:
    """One run alone against each count of --concurrent runs interleaved, in each of
    --layouts (CUDA) or one after another (CPU)."""
    cuda = args.device == "cuda"
    layouts = [layout for layout in LAYOUTS if layout in args.layouts] if cuda else ["one stream"]
    modes = [("one run", 1, "one stream")] + [(concurrent_label(runs, layout), runs, layout)
                                              for runs in args.concurrent for layout in layouts]
    print(f"{'f1lib.train_runs step, ' + ('bf16 + CL + graph' if cuda else 'fp32, eager'):<36} "
          f"{'ms/run-step':>11} {'run-steps/s':>11} {'vs one run':>10} {'setup s':>8}")
    alone = None
    for label, count, layout in modes:
        per_step, fixed = steady_rate(
            lambda k: interleaved_time(data, args.device, args.width, k, args.inner, count,
                                       layout), args.outer, args.inner, args.repeats)
        per_run_step = per_step / count
        alone = alone or per_run_step
        print(f"{label:<36} {1e3 * per_run_step:>11.2f} {1 / per_run_step:>11.1f} "
              f"{alone / per_run_step:>9.2f}x {fixed:>8.2f}", flush=True)
    others = [layout for layout in layouts if layout != "one stream"]
    if not others:
        return
    for runs in args.concurrent:  # each run must train as it does alone, whatever the layout
        differ = layouts_differ(data, args.device, args.width, args.inner, runs, others)
        print(f"{runs} runs' final state, largest difference from one stream's after "
              f"{args.inner} steps: " + ", ".join(f"{layout} {value:.3g}"
                                                for layout, value in differ.items()))


@contextmanager
def no_tf32():
    """Full float32 convolutions and matrix products on CUDA, PyTorch's defaults restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextmanager
def cudnn_autotune():
    """cuDNN picks each convolution's algorithm by timing the candidates on its first
    call (torch.backends.cudnn.benchmark), PyTorch's default restored after."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


@contextmanager
def layout_unpool():
    """SegNet unpools with f1lib.unpool.max_unpool, in its input's memory layout, instead of
    PyTorch's max_unpool2d (f1lib.models calls it as F.max_unpool2d); PyTorch's restored
    after."""
    saved = F.max_unpool2d

    def unpool(x, index, kernel_size, stride=None, padding=0, output_size=None):
        if output_size is None:  # SegNet always passes the size before pooling
            raise ValueError("layout_unpool: max_unpool2d without output_size")
        return max_unpool(x, index, output_size[-2:])

    F.max_unpool2d = unpool
    try:
        yield
    finally:
        F.max_unpool2d = saved


def count_flops(size: tuple[int, int], width: float) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from f1lib.profiles import profile_config
    from f1lib.study import run_matrix

    with torch.device("meta"):  # shapes only: nothing is computed
        model = SegNet(width=width)
        images = torch.rand(BATCH, 3, *size)
        masks = torch.randint(0, 2, (BATCH, *size))
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(images)
        torch.nn.functional.cross_entropy(logits, masks).backward()
    step = counter.get_total_flops()
    print(f"SegNet width {width:g}, {size[0]}x{size[1]}, batch {BATCH}: {step / 1e9:,.0f} GFLOP "
          f"per training step ({step / BATCH / 1e9:,.1f} per image)")
    _, paper = profile_config("sky_segmentation", "paper")
    if tuple(paper["size"]) == size and paper["width"] == width:
        runs = len(run_matrix(paper["variants"], paper["betas"], paper["seeds"]))
        steps = paper["outer"] * paper["inner"]
        total = step * runs * steps
        print(f"the paper profile's {runs} runs x {steps:,} steps: {total / 1e15:,.1f} PFLOP; "
              + ", ".join(f"{total / rate / 60:.1f} min at {rate / 1e12:.0f} TFLOP/s"
                          for rate in (200e12, 400e12, 800e12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    parser.add_argument("--width", type=float, default=1.0, help="SegNet's channel multiplier")
    parser.add_argument("--images", type=int, default=70, help="procedural training images")
    parser.add_argument("--steps", type=int, default=40, help="naive loop's timed steps")
    parser.add_argument("--outer", type=int, default=1,
                        help="outer loops of the shorter training (the longer has twice)")
    parser.add_argument("--inner", type=int, default=40, help="steps per outer loop")
    parser.add_argument("--repeats", type=int, default=3, help="timings per mode (median)")
    parser.add_argument("--count-flops", action="store_true",
                        help="count one training step's FLOPs instead of timing")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="profile instead of timing, and print the ROWS busiest ops")
    parser.add_argument("--concurrent", type=int, nargs="+", default=[], metavar="R",
                        help="time R runs side by side, for each R, against one alone, instead")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                        help="--concurrent's layouts of the runs on CUDA (default: all)")
    args = parser.parse_args()
    for runs in args.concurrent:
        if runs < 2:
            parser.error(f"--concurrent {runs}: at least 2 runs side by side")
    if args.count_flops:
        return count_flops(tuple(args.size), args.width)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    device = args.device
    batch = load_batches(ProceduralSky(args.images, size=tuple(args.size)))
    data = TensorData(batch.images.to(device).float().div_(255), batch.masks.to(device).long(),
                      batch.big.to(device))
    params = sum(p.numel() for p in SegNet(width=args.width).parameters())
    name = (torch.cuda.get_device_name(0) if device == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
    print(f"device: {name}; torch {torch.__version__}; SegNet width {args.width:g} "
          f"({params:,} parameters); {args.size[0]}x{args.size[1]} images, batch {BATCH}")
    if args.profile:
        return profile_steps(args, data)
    if args.concurrent:
        return concurrent_rows(args, data)
    # (label, bf16, channels_last, graph, setting)
    modes = [("fp32", False, False, False, nullcontext)]
    if device == "cpu":
        modes += [("fp32 + CL", False, True, False, nullcontext),
                  ("fp32 + CL + unpool", False, True, False, layout_unpool)]
    modes += [("bf16 + CL", True, True, False, nullcontext)]
    if device == "cuda":
        modes += [("bf16 + CL + graph", True, True, True, nullcontext),
                  ("bf16+CL+graph+unpool", True, True, True, layout_unpool),
                  ("bf16+CL+graph+tuned", True, True, True, cudnn_autotune),
                  ("fp32, no TF32", False, False, False, no_tf32)]
    print(f"{'mode':<20} {'ms/step':>9} {'images/s':>9} {'vs naive':>9} {'vs fp32':>8} "
          f"{'setup s':>8}")
    # each row as soon as it is measured: a run stopped midway keeps the rows it had
    naive = statistics.median(naive_time(batch, device, args.width, args.steps, args.inner)
                              for _ in range(args.repeats))
    print(f"{'naive loop':<20} {1e3 * naive:>9.2f} {BATCH / naive:>9.1f} {1:>8.2f}x", flush=True)
    fp32 = None
    for label, bf16, channels_last, graph, setting in modes:
        with setting():
            per_step, fixed = steady_rate(
                lambda k: segnet_time(data, device, args.width, k, args.inner, bf16,
                                      channels_last, graph),
                args.outer, args.inner, args.repeats)
        fp32 = fp32 or per_step
        print(f"{label:<20} {1e3 * per_step:>9.2f} {BATCH / per_step:>9.1f} "
              f"{naive / per_step:>8.2f}x {fp32 / per_step:>7.2f}x {fixed:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
