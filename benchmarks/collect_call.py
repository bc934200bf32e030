"""What one call of benchmarks/device.sh brought back, put where it belongs in this checkout.

The device tool leaves a call's $OUT in a folder here (its `files_at`). This puts
- the finished notebooks (book/*.ipynb) and the figures/ files that they wrote where they
  are kept, less any cell tagged `outputs-note`: a note on where a page's earlier outputs
  came from, which the fresh execution makes untrue;
- the call's logs (device.log, bench.log, ..., and each notebook's own) in
  benchmarks/runs/<session>/call<N>-<name>.log, N counting the calls kept there;
- the finished runs of notebooks that did not finish, beside the FINGERPRINT that device.sh
  wrote (the f1lib source that trained them), in benchmarks/runs/<session>/<notebook>-<profile>/,
  where benchmarks/carry_runs.py readies them for the next session; runs kept before, by
  this session or an earlier one, are not kept twice;
and rebuilds the README's and the book's tables from figures/ (f1lib.ledger.update_tables).
It reads the whole tarball before it writes anything, and refuses one that holds anything else.

    python benchmarks/collect_call.py FILES_AT --session 2026-11-28-h200
"""

import argparse
import json
import re
import tarfile
from pathlib import Path, PurePosixPath

import nbformat

from f1lib.ledger import update_tables
from f1lib.provenance import hardware_text, run_git

ROOT = Path(__file__).resolve().parents[1]
NOTE_TAG = "outputs-note"
# what device.sh puts in results.tgz, and where each kind of file goes
KINDS = {
    "notebook": re.compile(r"book/[\w-]+\.ipynb"),
    "figure": re.compile(r"figures/\w[\w.-]*"),
    "log": re.compile(r"\.cache/reproduce/[\w-]+\.log"),
    "run": re.compile(r"\.cache/[\w-]+/(\w+\.json|FINGERPRINT)"),
}


def kind_of(name: str) -> str:
    """Which of KINDS a tarball member is; ValueError for anything else."""
    path = PurePosixPath(name).as_posix()
    for kind, pattern in KINDS.items():
        if pattern.fullmatch(path):
            return kind
    raise ValueError(f"results.tgz holds {name!r}, which device.sh does not bring back")


def read_results(tarball: Path) -> dict[str, dict[str, bytes]]:
    """Every regular file of the tarball, by kind and then by name."""
    found: dict[str, dict[str, bytes]] = {kind: {} for kind in KINDS}
    with tarfile.open(tarball) as tar:
        for member in tar.getmembers():
            if member.isdir():
                continue
            if not member.isfile():
                raise ValueError(f"results.tgz holds {member.name!r}, not a plain file")
            found[kind_of(member.name)][member.name] = tar.extractfile(member).read()
    return found


def without_note(notebook: bytes) -> tuple[bytes, int]:
    """The notebook less its cells tagged NOTE_TAG, and how many there were."""
    nb = nbformat.reads(notebook.decode(), as_version=4)
    kept = [cell for cell in nb.cells if NOTE_TAG not in cell.metadata.get("tags", [])]
    if len(kept) == len(nb.cells):
        return notebook, 0
    dropped = len(nb.cells) - len(kept)
    nb.cells = kept
    return nbformat.writes(nb).encode() + b"\n", dropped


def next_call(session: Path) -> int:
    numbers = [int(m.group(1)) for path in session.glob("call*-*")
               if (m := re.match(r"call(\d+)-", path.name))]
    return max(numbers, default=0) + 1


def kept_before(runs: Path, folder: str) -> set[bytes]:
    """The contents of every run kept under any session's `folder`."""
    return {path.read_bytes() for path in runs.glob(f"*/{folder}/*.json")}


def git_note(root: Path, commit: str) -> str:
    """Whether f1lib differs between the commit that a record names and HEAD here."""
    head = run_git("rev-parse", "HEAD", cwd=root) or ""
    if commit == head:
        return "HEAD here"
    if run_git("cat-file", "-e", f"{commit}^{{commit}}", cwd=root) is None:
        return "a commit this repository does not have: check it"
    changed = run_git("diff", "--name-only", commit, "HEAD", "--", "f1lib", cwd=root)
    changed = (changed or "").split()
    return (f"f1lib unchanged since, at HEAD {head[:7]}" if not changed else
            f"f1lib changed since ({', '.join(changed)}): these outputs are not today's code's")


def collect(files_at: Path, session: Path, root: Path = ROOT) -> list[str]:
    """Put one call's files where they belong; one line of report per thing done."""
    tarball = files_at / "results.tgz"
    found = read_results(tarball) if tarball.exists() else {kind: {} for kind in KINDS}
    fingerprints = {PurePosixPath(name).parent.name: data.decode().strip()
                    for name, data in found["run"].items() if name.endswith("/FINGERPRINT")}
    unstamped = {PurePosixPath(name).parent.name for name in found["run"]} - set(fingerprints)
    if unstamped:
        raise ValueError(f"results.tgz has runs without FINGERPRINT in {sorted(unstamped)}: "
                         "they could not be carried to a later session")
    for folder, fingerprint in fingerprints.items():
        stamp = session / folder / "FINGERPRINT"
        if stamp.exists() and stamp.read_text().strip() != fingerprint:
            raise ValueError(f"{stamp} says {stamp.read_text().strip()}, this call's runs "
                             f"{fingerprint}: collect them into another session's folder")
    logs = {path.name: path.read_bytes() for path in sorted(files_at.glob("*.log"))}
    for earlier in sorted(session.glob("call*-device.log")):
        if earlier.read_bytes() == logs.get("device.log"):
            raise ValueError(f"this call was collected before: {earlier} is its device.log")
    report = []
    call = next_call(session)
    session.mkdir(parents=True, exist_ok=True)
    logs |= {PurePosixPath(name).name: data for name, data in found["log"].items()}
    for name, data in logs.items():
        (session / f"call{call}-{name}").write_bytes(data)
    if logs:
        report.append(f"{len(logs)} logs in {session}/call{call}-*.log")

    for name, data in found["notebook"].items():
        data, dropped = without_note(data)
        (root / name).write_bytes(data)
        report.append(f"{name}" + (f", less {dropped} cell tagged {NOTE_TAG}" if dropped else ""))
    for name, data in found["figure"].items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        if name.endswith(".json") and isinstance(record := json.loads(data), dict) \
                and "notebook" in record:
            commit = record.get("git", {}).get("commit") or "unknown"
            report.append(
                f"  {name}: {record['notebook']}, profile {record['profile']}, "
                f"{hardware_text(record['device'])}, "
                f"{record['wall_time_s']} s, commit {commit[:7]} ({git_note(root, commit)})")

    for folder, fingerprint in sorted(fingerprints.items()):
        before = kept_before(session.parent, folder)
        new = {name: data for name, data in found["run"].items()
               if PurePosixPath(name).parent.name == folder and name.endswith(".json")
               and data not in before}
        if new:
            (session / folder).mkdir(exist_ok=True)
            (session / folder / "FINGERPRINT").write_text(fingerprint + "\n")
            for name, data in new.items():
                (session / folder / PurePosixPath(name).name).write_bytes(data)
        report.append(f"{folder}: {len(new)} new finished runs kept in {session / folder} "
                      f"(f1lib {fingerprint}); {len(before)} kept before")

    readme = root / "README.md"
    if update_tables(readme, root / "book" / "intro.md", root / "figures"):
        report.append(f"{readme.name} and book/intro.md: tables updated")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files_at", type=Path, help="the folder where the call's $OUT lies")
    parser.add_argument("--session", required=True,
                        help="the session's folder under benchmarks/runs: <date>-<gpu>")
    args = parser.parse_args()
    if not re.fullmatch(r"[\w.-]+", args.session):
        parser.error(f"--session {args.session!r}: one folder name, such as 2026-11-28-h200")
    if not (args.files_at / "device.log").exists():
        parser.error(f"{args.files_at} has no device.log: not the $OUT of benchmarks/device.sh")
    try:
        report = collect(args.files_at, ROOT / "benchmarks" / "runs" / args.session)
    except ValueError as error:
        parser.error(str(error))
    print("\n".join(report))


if __name__ == "__main__":
    main()
