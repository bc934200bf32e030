"""Notebooks side by side on the CPU: torch's default threads against an equal share of the cores.

`python -m f1lib.reproduce --jobs N` runs N notebooks at once. Left alone, each kernel's
torch starts one thread per core, so N kernels start N threads per core. This runs the
CPU work that both sky chapters start with, painting procedural scenes
(f1lib.data.sky.ProceduralSky), in N processes at once, twice: with torch's default
threads, and with the share that f1lib.reproduce gives each kernel on a CUDA machine
(f1lib.reproduce.kernel_threads, through $OMP_NUM_THREADS). One process alone, with the
default threads, is the reference. Each process reports its own painting time, set-up
(imports, the textures' warm-up) excluded; the table gives the slowest of each round, the
medians over --repeats rounds.

    python benchmarks/cpu_share.py                       # 4 at once, as `make reproduce JOBS=4`
    python benchmarks/cpu_share.py --processes 2 --images 400 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from f1lib.reproduce import THREADS_ENV, kernel_threads, usable_cores


def paint(images: int) -> None:
    """The worker: paint `images` scenes and print the seconds it took, as JSON."""
    import torch

    from f1lib.data.sky import ProceduralSky

    scenes = ProceduralSky(images, size=(128, 192), seed=0)
    scenes.batch([0])  # reads scikit-image's textures once
    start = time.perf_counter()
    scenes.batch(range(images))
    scenes.fractions()
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "threads": torch.get_num_threads()}))


def round_of(processes: int, images: int, threads: int | None) -> list[dict]:
    """`processes` painters started together; threads None: torch's default."""
    env = {k: v for k, v in os.environ.items() if k != THREADS_ENV}
    if threads is not None:
        env[THREADS_ENV] = str(threads)
    command = [sys.executable, __file__, "--worker", "--images", str(images)]
    started = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(processes)]
    reports = []
    for process in started:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"a painter exited {process.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--images", type=int, default=1500, help="scenes each process paints")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu"],
                        help="the work is the CPU's on every machine")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return paint(args.images)
    if args.processes < 1 or args.images < 1 or args.repeats < 1:
        parser.error("--processes, --images and --repeats must be at least 1")
    cores = usable_cores()
    share = kernel_threads(args.processes, cores)
    print(f"{cores} cores; {args.images} scenes of 128x192 per process; "
          f"medians of {args.repeats}")
    print(f"{'round':<26}{'processes':>10}{'threads each':>14}{'slowest s':>11}{'vs alone':>10}")
    rounds = [("alone, default threads", 1, None),
              ("together, default threads", args.processes, None),
              ("together, an equal share", args.processes, share)]
    alone = None
    for label, processes, threads in rounds:
        timings = [round_of(processes, args.images, threads) for _ in range(args.repeats)]
        slowest = statistics.median(max(r["seconds"] for r in t) for t in timings)
        alone = alone or slowest
        print(f"{label:<26}{processes:>10}{timings[0][0]['threads']:>14}{slowest:>11.2f}"
              f"{slowest / alone:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
