"""The benchmark scripts run on the CPU (a smoke test: they must run; nothing is timed)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--device", "cpu",
                           *args], capture_output=True, text=True, timeout=600,
                          check=True).stdout.splitlines()


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
                                                   ("f1lib, eager", 2)]
    assert all(float(r[2]) > 0 for r in rows)  # ms/step
    assert rows[0][4] == "1.0x"
    assert any(line.startswith("projected: 2 runs x 24,000 steps") for line in lines)


def test_segnet_benchmark_compares_fp32_with_bf16_channels_last():
    lines = run("segnet.py", "--size", "32", "48", "--width", "0.125", "--inner", "12",
                "--images", "28", "--repeats", "1")
    rows = table(lines, "mode")
    assert [line[:20].strip() for line in rows] == ["fp32", "bf16 + CL"]
    assert rows[0].split()[3] == "1.00x"
