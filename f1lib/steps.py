"""Algorithm 1's inner step, built for one run or many.

One run's loss is `RunLoss`; its step is `single_run_step`: the loss, its backward pass, the
optimizer's step and the regularizer's projections, with nothing read back from the device.
Several runs of one experiment step together in one of two ways:

- stacked (`make_batched_step`): their weights are stacked (`stack_runs`) and one vmapped
  step trains them all (torch.func), so R runs cost about one run's kernel launches; each
  run's result equals training it alone, to floating-point rounding;
- side by side (`side_by_side`): each run keeps its own weights and optimizer and steps in
  turn, on CUDA each on a stream of its own so that their kernels overlap; each run's
  result is exactly what it would be alone. This serves networks that vmap cannot batch.

On CUDA any of these steps can be captured once as a CUDA graph and replayed
(`CapturedStep`). `f1lib.training.train_runs` runs the steps built here in Algorithm 1's loops.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from .config import Schedule
from .regularizer import F1Regularizer
from .tensor_data import TensorData


class RunLoss(nn.Module):
    """One run's model and regularizer as one module: idx -> (loss, task loss, Lagrangian).

    The loss of Algorithm 1's inner step on the minibatch `idx` of `data`. It
    is the one definition of that loss: `make_step` calls it for a single run,
    `make_batched_step` vmaps it over stacked runs. With `bf16` the model and
    the task loss run under bfloat16 autocast; the regularizer always computes
    in float32. The data is held as plain attributes: shared, never stacked.
    """

    def __init__(self, model: nn.Module, regularizer: F1Regularizer | None, data: TensorData,
                 task_loss: Callable[[Tensor, Tensor], Tensor], bf16: bool = False):
        super().__init__()
        self.model, self.regularizer = model, regularizer
        self.data, self.task_loss, self.bf16 = data, task_loss, bf16

    def forward(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        data = self.data
        # no autocast cache: it must not outlive a captured CUDA graph's step
        with torch.autocast(data.inputs.device.type, dtype=torch.bfloat16, enabled=self.bf16,
                            cache_enabled=False):
            output = self.model(data.inputs[idx])
            if not (isinstance(output, (tuple, list)) and len(output) == 2):
                # a bare tensor would unpack along its rows, silently when there are two
                shown = (f"a tensor of shape {tuple(output.shape)}"
                         if isinstance(output, Tensor) else type(output).__name__)
                raise TypeError("the model must return (task_output, h), h being what the F1 "
                                f"hyperplane scores (task_output may be None); it returned {shown}")
            task_output, f1_output = output
            if task_output is not None and data.targets is not None:
                task = self.task_loss(task_output, data.targets[idx])
            else:
                task = torch.zeros((), device=data.inputs.device)
        if self.regularizer is None:
            return task, task.detach(), torch.zeros((), device=data.inputs.device)
        # the trainer checked every label against the table before the first step
        penalty, lagrangian = self.regularizer.penalty(f1_output, data.positive[idx], idx,
                                                       check_labels=False)
        return task + penalty, task.detach(), lagrangian


def make_step(model: nn.Module, data: TensorData, regularizer: F1Regularizer | None,
              optimizer: torch.optim.Optimizer, task_loss: Callable[[Tensor, Tensor], Tensor],
              bf16: bool = False):
    """Algorithm 1's inner step on the minibatch `idx`: returns (task loss, Lagrangian).

    Both come back as device tensors: nothing here waits for the device, so
    the step can run ahead of it, or be captured in a CUDA graph.
    """
    return single_run_step(RunLoss(model, regularizer, data, task_loss, bf16), optimizer)


def single_run_step(run: RunLoss, optimizer: torch.optim.Optimizer):
    """One inner step of one run, as a function of the minibatch's dataset indices: the loss,
    its backward pass, the optimizer's step and the regularizer's projections. It returns
    the task loss and the Lagrangian as device tensors, read nowhere, so that the step can
    be captured (`CapturedStep`) or interleaved with other runs' steps."""
    regularizer = run.regularizer

    def step(idx: Tensor) -> tuple[Tensor, Tensor]:
        loss, task, lagrangian = run(idx)
        if regularizer is not None:
            regularizer.last_lagrangian = lagrangian
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if regularizer is not None:
            regularizer.project_()
        return task, lagrangian

    return step


def side_by_side(steps: Sequence[Callable[[Tensor], tuple[Tensor, Tensor]]],
                 streams: bool = False) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """One step of R independent runs: idx (R, B) -> (task losses, Lagrangians), each (R,).

    steps[r] (`single_run_step`, or a `CapturedStep` of one) takes run r's
    minibatch idx[r]. With `streams` (CUDA), run r's step goes on a stream of
    its own, which first waits for the caller's stream, and the caller's
    stream then waits for every run's: the runs' kernels may overlap on the
    device, while all that came before and comes after sees them in order.
    Captured in a CUDA graph, the streams become the graph's parallel branches.
    Each step is its run's own, unchanged: the runs end exactly as they would alone.
    """
    lanes = [torch.cuda.Stream() for _ in steps] if streams else []

    def step(idx: Tensor) -> tuple[Tensor, Tensor]:
        caller = torch.cuda.current_stream() if lanes else None
        outputs = []
        for r, run_step in enumerate(steps):
            if lanes:
                lanes[r].wait_stream(caller)
                with torch.cuda.stream(lanes[r]):
                    outputs.append(run_step(idx[r]))
            else:
                outputs.append(run_step(idx[r]))
        for lane in lanes:
            caller.wait_stream(lane)
        tasks, lagrangians = zip(*outputs)
        if len(outputs) == 1:  # a view, where stacking would add two copies to every step
            return tasks[0].view(1), lagrangians[0].view(1)
        return torch.stack(tasks), torch.stack(lagrangians)

    return step


def stack_runs(runs: Sequence[nn.Module]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Stack R modules of one architecture: (parameters, buffers), each (R, ...).

    Afterwards each module's own parameters and buffers are views of its slice
    of the stacked tensors, so an update of the stack (one optimizer step for
    all runs) is seen by every module, and a module's load_state_dict writes
    into the stack. Evaluation, checkpoints and the regularizer's dual step
    and diagnostics thus work on each run's module as usual.
    """
    params, buffers = stack_module_state(list(runs))
    for name, stacked in params.items():
        owner, _, leaf = name.rpartition(".")
        # vmap'd nn.Linear yields a weight's gradient as input^T @ grad_output, (in, out) per
        # run: stored column-major, a stack takes that gradient as it comes, where a row-major
        # one has autograd copy it every step (R x 500 x 4096 floats for the S-MNIST network)
        if leaf == "weight" and isinstance(runs[0].get_submodule(owner), nn.Linear):
            stacked = stacked.detach().mT.contiguous().mT.requires_grad_(stacked.requires_grad)
            params[name] = stacked
        for r, module in enumerate(runs):  # run r's parameter: a view of its slice
            sub = module.get_submodule(owner)
            setattr(sub, leaf, nn.Parameter(stacked[r].detach(),
                                            requires_grad=getattr(sub, leaf).requires_grad))
    for name, stacked in buffers.items():
        owner, _, leaf = name.rpartition(".")
        for r, module in enumerate(runs):
            setattr(module.get_submodule(owner), leaf, stacked[r])
    return params, buffers


def make_batched_step(runs: Sequence[RunLoss], schedule: Schedule):
    """The inner step of R runs trained together: (step, optimizer).

    The runs are stacked (`stack_runs`) and one SGD, with each parameter
    group's step size, updates the stack. step(idx) takes minibatches idx
    (R, B) and returns (task losses, Lagrangians), each (R,). The runs'
    losses are vmapped over the stack; their sum's gradient is each run's own
    gradient, since no run's loss depends on another's weights.
    """
    _check_batchable(runs)
    base = runs[0]
    groups = param_groups(base, schedule)
    names = {id(p): name for name, p in base.named_parameters()}
    params, buffers = stack_runs(runs)
    optimizer = torch.optim.SGD([{**g, "params": [params[names[id(p)]] for p in g["params"]]}
                                 for g in groups])
    regularizer = base.regularizer
    eps = params.get("regularizer.eps")
    batched = vmap(lambda p, b, idx: functional_call(base, (p, b), (idx,)))

    def step(idx: Tensor) -> tuple[Tensor, Tensor]:
        loss, task, lagrangian = batched(params, buffers, idx)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        if eps is not None:  # F1Regularizer.project_, on every run's eps at once
            with torch.no_grad():
                eps.clamp_(min=regularizer.eps_floor)
        return task, lagrangian

    return step, optimizer


class CapturedStep:
    """A CUDA step function, captured once as a CUDA graph and replayed.

    Every call is one real step: the first `warmup` run eagerly on a side
    stream (as torch.cuda.graphs requires before capture), the next one is
    recorded and then replayed, and later calls copy their minibatch indices
    into the graph's static input and replay it. The outputs are the graph's
    static tensors, overwritten by the next call.

    Warm-up and capture share one stream: cuBLAS and cuDNN set up their
    handles and workspaces per stream, lazily, and that set-up must not
    happen inside the capture (PyTorch's make_graphed_callables does the
    same since pytorch/pytorch#187745).
    """

    def __init__(self, step: Callable[[Tensor], object], warmup: int = 3):
        self.step, self.warmup, self.calls = step, warmup, 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stream: torch.cuda.Stream | None = None

    def __call__(self, idx: Tensor):
        if self.graph is None:
            self.stream = self.stream or torch.cuda.Stream()
            if self.calls < self.warmup:
                self.calls += 1
                self.stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(self.stream):
                    out = self.step(idx)
                torch.cuda.current_stream().wait_stream(self.stream)
                return out
            self.static_idx = idx.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=self.stream):
                self.static_out = self.step(self.static_idx)  # recorded, not run
        else:
            self.static_idx.copy_(idx)
        self.graph.replay()
        return self.static_out


def param_groups(run: RunLoss, schedule: Schedule) -> list[dict]:
    """The optimizer's parameter groups of one run: the model's trainable weights at the
    schedule's learning rate, then the regularizer's variables at their own."""
    trainable = [p for p in run.model.parameters() if p.requires_grad]
    groups = [{"params": trainable, "lr": schedule.lr, "name": "model"}] if trainable else []
    if run.regularizer is not None:
        groups += run.regularizer.param_groups()
    if not groups:
        raise ValueError("nothing to train: the model and the regularizer have no parameters")
    return groups


def _check_batchable(runs: Sequence[RunLoss]) -> None:
    """Runs trained together must share an architecture, and differ in beta only."""
    first = runs[0]
    shapes = {k: v.shape for k, v in first.state_dict().items()}
    reg = first.regularizer
    for r, run in enumerate(runs[1:], start=1):
        if {k: v.shape for k, v in run.state_dict().items()} != shapes:
            raise ValueError(f"run {r}'s model or regularizer differs from run 0's in shape")
        other = run.regularizer
        if (reg is None) != (other is None):
            raise ValueError("either every run has a regularizer or none has")
        if reg is not None and (other.variant != reg.variant or
                                replace(other.hyper, beta=reg.hyper.beta) != reg.hyper):
            raise ValueError(
                f"run {r}'s regularizer differs from run 0's in more than beta "
                f"({other.variant}, {other.hyper} vs {reg.variant}, {reg.hyper})"
            )
