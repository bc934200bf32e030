"""Finished runs of a notebook that a GPU session could not finish, readied for the next one.

A notebook of the paper profile keeps each finished run in .cache/<notebook>-paper/<key>.json
(f1lib.study.run_study), and device.sh brings those of unfinished notebooks back. Committed
in benchmarks/runs/<session>/<notebook>-<profile>/ beside FINGERPRINT, the f1lib source
they were trained with (f1lib.study.library_fingerprint), they spare a later session their
device time, but only while that source is the same (f1lib.study.study_sources: the modules
that train and evaluate the runs; plots, ledger and provenance may change): each run's key
includes it, so runs of other code would not be
used, and would make the notebook record that it resumed an earlier execution when it did
not. This copies the runs whose FINGERPRINT is today's into
.device/runs/<notebook>-<profile>/, which travels with .device; device.sh moves them into
.cache/ on the GPU machine. benchmarks/device_setup.sh calls it:

    python benchmarks/carry_runs.py [--runs benchmarks/runs] [--into .device/runs]
"""

import argparse
import shutil
from pathlib import Path

from f1lib.study import library_fingerprint

ROOT = Path(__file__).resolve().parents[1]


def carry(runs: Path, into: Path, fingerprint: str) -> list[str]:
    """Copy every <session>/<folder>/*.json whose FINGERPRINT is `fingerprint`
    into `into`/<folder>/; one line of report per folder."""
    report = []
    for stamp in sorted(runs.glob("*/*/FINGERPRINT")):
        folder = stamp.parent
        trained_by = stamp.read_text().strip()
        files = sorted(folder.glob("*.json"))
        where = folder.relative_to(runs)
        if trained_by != fingerprint:
            report.append(f"{where}: {len(files)} runs of other f1lib source ({trained_by}, "
                          f"today {fingerprint}), left behind")
            continue
        (into / folder.name).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy2(file, into / folder.name / file.name)
        report.append(f"{where}: {len(files)} runs carried to {into / folder.name}")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "benchmarks" / "runs")
    parser.add_argument("--into", type=Path, default=ROOT / ".device" / "runs")
    args = parser.parse_args()
    for line in carry(args.runs, args.into, library_fingerprint()) or ["no runs to carry"]:
        print(line)


if __name__ == "__main__":
    main()
