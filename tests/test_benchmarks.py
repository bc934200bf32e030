"""The benchmark scripts run on the CPU (a smoke test: not timed, just run)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_inner_step_benchmark_runs_on_cpu():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "inner_step.py"), "--device", "cpu",
         "--examples", "300", "--steps", "3"],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    rows = [line.split()[0] for line in out.splitlines()[2:]]
    assert rows == ["none", "paper", "stable"]
