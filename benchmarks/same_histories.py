"""Whether two executions of the book computed the same numbers: every table in two figures/
folders, and every claim, equal but for wall times and speeds.

    python benchmarks/same_histories.py /tmp/before/figures figures

A refactor must change no number: run the quick profile before and after it
(CONTRIBUTING.md) and compare. Exits 1, naming what differs, when anything but the
timing columns differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

# what depends on the machine's load, not on the computation
TIMING = ("wall_s", "_per_s", "elapsed")


def timing(name: str) -> bool:
    return any(part in name for part in TIMING)


def table_differences(before: Path, after: Path) -> list[str]:
    """What differs between the CSV tables of the two folders, timing columns left out."""
    names = sorted({p.name for p in before.glob("*.csv")} | {p.name for p in after.glob("*.csv")})
    found = []
    for name in names:
        if not (before / name).exists() or not (after / name).exists():
            found.append(f"{name}: in one folder only")
            continue
        old, new = pd.read_csv(before / name), pd.read_csv(after / name)
        old = old[[c for c in old.columns if not timing(c)]]
        new = new[[c for c in new.columns if not timing(c)]]
        if list(old.columns) != list(new.columns) or old.shape != new.shape:
            found.append(f"{name}: columns or shape differ ({old.shape} vs {new.shape})")
            continue
        same = (old == new) | (old.isna() & new.isna())
        if not same.all().all():
            columns = [c for c in old.columns if not same[c].all()]
            found.append(f"{name}: {int((~same).sum().sum())} values differ, in {columns}")
    return found


def claims(folder: Path) -> dict[str, dict]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict):
            for row in record.get("results", {}).get("claims", []):
                out[row["key"]] = {k: v for k, v in row.items() if k != "outcome"}
    return out


def claim_differences(before: Path, after: Path) -> list[str]:
    old, new = claims(before), claims(after)
    return [f"claim {key}: {old.get(key)} vs {new.get(key)}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="the figures/ folder of one execution")
    parser.add_argument("after", type=Path, help="the figures/ folder of the other")
    args = parser.parse_args(argv)
    found = table_differences(args.before, args.after) + claim_differences(args.before,
                                                                           args.after)
    tables = len(list(args.after.glob("*.csv")))
    if found:
        print("\n".join(found))
        return 1
    print(f"the same: {tables} tables and {len(claims(args.after))} claims, wall times aside")
    return 0


if __name__ == "__main__":
    sys.exit(main())
