"""The claims ledger: each claim of the paper, what we measured, and a verdict.

A notebook builds its claims with `claim(...)`, glues each field for the
book's claims page (`glue`, pasted there with myst-nb's `{glue:text}` role)
and stores them in its figure's JSON under results["claims"]. The README's
table is made from those JSON files (`python -m f1lib.ledger`), never by hand.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .provenance import records, repo_root

VERDICTS = ("holds", "partly", "does not hold", "not testable here")
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
COLUMNS = ("claim", "paper", "measured", "setting", "verdict")


def improvement_verdict(low: float, high: float, claimed: float) -> str:
    """Verdict on "it improves by `claimed`" from the 95% interval of the improvement.

    holds               the whole interval is above 0: an improvement is measured;
    does not hold       the whole interval is below the claimed gain: a gain of
                        that size is ruled out;
    not testable here   neither: the interval is too wide to tell (or there is none).
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not testable here"
    if low > 0:
        return "holds"
    return "does not hold" if high < claimed else "not testable here"


def combined_verdict(verdicts: list[str]) -> str:
    """One verdict for a claim measured several ways (variants, problems): holds if
    all hold, partly if some do, does not hold if all fail, else not testable here."""
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    if "holds" in verdicts:
        return "partly"
    if verdicts and all(v == "does not hold" for v in verdicts):
        return "does not hold"
    return "not testable here"


def claim(key: str, claim: str, paper: str, measured: str, setting: str, verdict: str) -> dict:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"key": key, "claim": claim, "paper": paper, "measured": measured,
            "setting": setting, "verdict": verdict}


GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value) -> None:
    """Store `value` in the notebook's output under `name`, undisplayed, in the
    format myst-nb's glue reads (a scrapbook record). Written here so that a
    notebook glues on machines without myst-nb too (the GPU machine has none);
    outside IPython it does nothing."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is None:
        return
    display({GLUE_PREFIX + "text/plain": repr(value)}, raw=True,
            metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})


def glue_claims(claims: list[dict]) -> None:
    """Glue every field of every claim as `claim_<key>_<field>`."""
    for row in claims:
        for field in COLUMNS:
            glue(f"claim_{row['key']}_{field}", row[field])


def collect(figures: Path) -> list[dict]:
    """Every claim recorded in figures/*.json, in file-name order."""
    return [{**row, "source": record["notebook"], "profile": record["profile"]}
            for _, record in records(figures)
            for row in record.get("results", {}).get("claims", [])]


def markdown_table(rows: list[dict]) -> str:
    head = "| claim | the paper | measured here | setting | verdict |\n|---|---|---|---|---|\n"
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return head + "".join(
        "| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |\n" for r in rows)


def update_readme(readme: Path, figures: Path) -> bool:
    """Rewrite the table between the README's claims markers; True if it changed."""
    text = Path(readme).read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} section")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    new = f"{before}{START}\n{markdown_table(collect(figures))}{END}{after}"
    if new != text:
        Path(readme).write_text(new)
    return new != text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m f1lib.ledger",
        description="Rebuild the README's claims table from the records in figures/*.json.")
    parser.add_argument("readme", nargs="?", type=Path,
                        help="the README to rewrite (default: the checkout's README.md)")
    root = repo_root() or Path.cwd()
    readme = parser.parse_args().readme or root / "README.md"
    changed = update_readme(readme, root / "figures")
    print(f"{readme}: claims table {'updated' if changed else 'unchanged'}")
