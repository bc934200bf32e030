"""The claims ledger: each claim of the paper, what we measured, and a verdict.

A notebook builds its claims with `claim(...)`, glues each field for the
book's claims page (`glue`, pasted there with myst-nb's `{glue:text}` role)
and stores them in its figure's JSON under results["claims"]. The README's
table is made from those JSON files (`python -m f1lib.ledger`), never by hand,
and so is the table beside it, which the book's intro page shows too, of what
computed each chapter, and how long it took.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .provenance import notebook_costs, records, repo_root

VERDICTS = ("holds", "partly", "does not hold", "not testable here")
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
COSTS_START, COSTS_END = "<!-- costs:start -->", "<!-- costs:end -->"
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


def claim(key: str, claim: str, paper: str, measured: str, setting: str, verdict: str,
          scope: str | None = None, elsewhere: str | None = None) -> dict:
    """A row of the ledger. `verdict` is one of VERDICTS; with `scope`, the data it was
    measured on, the row's verdict reads "on <scope>: <verdict>", followed by `elsewhere`
    (what was not run: "on COCO-Stuff: not run here"), and `outcome` keeps the bare verdict."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    shown = verdict if scope is None else f"on {scope}: {verdict}"
    if elsewhere:
        shown += f"; {elsewhere}"
    return {"key": key, "claim": claim, "paper": paper, "measured": measured,
            "setting": setting, "verdict": shown, "outcome": verdict}


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


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; a pipe or line break inside a cell is escaped."""
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(cell(value) for value in line) + " |\n" for line in lines)


def markdown_table(rows: list[dict]) -> str:
    return table(["claim", "the paper", "measured here", "setting", "verdict"],
                 [[r[c] for c in COLUMNS] for r in rows])


def costs_table(figures: Path, links: str = "book/") -> str:
    """What computed each chapter the book shows, and how long it took
    (f1lib.provenance.notebook_costs), a row per notebook; each chapter links to its
    notebook as `links` + its name (the README's are under book/, the book's own beside)."""
    rows = []
    for cost in notebook_costs(figures):
        stem = cost["notebook"].removesuffix(".ipynb")
        took = f"{cost['wall_time_s']:g} s"
        training = "" if cost["training_s"] is None else f"{cost['training_s']:g} s"
        if cost["resumed"]:  # the notebook time is its last execution's part alone
            took += " in its last execution, which resumed earlier ones"
            training += " over all of them" if training else ""
        rows.append([f"[{stem}]({links}{cost['notebook']})", cost["profile"], cost["hardware"],
                     took, training, f"{cost['commit']}, {cost['date']}"])
    return table(["chapter", "profile", "computed on", "notebook time", "of it training",
                  "commit, date"], rows)


def replace_section(text: str, start: str, end: str, body: str, where: Path) -> str:
    """`text` with what lies between the markers `start` and `end` replaced by `body`."""
    if start not in text or end not in text:
        raise ValueError(f"{where} has no {start} ... {end} section")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{body}{end}{after}"


def update_tables(readme: Path, intro: Path, figures: Path) -> bool:
    """Rewrite the tables made from the records in `figures`, each between its markers: the
    README's claims table and its table of what computed each chapter, and the same costs
    table on the book's `intro` page; True if any changed. Nothing is written unless both
    pages have their markers."""
    pages = {readme: [(START, END, markdown_table(collect(figures))),
                      (COSTS_START, COSTS_END, costs_table(figures))],
             intro: [(COSTS_START, COSTS_END, costs_table(figures, links=""))]}
    changed = {}
    for page, sections in pages.items():
        text = new = Path(page).read_text()
        for start, end, body in sections:
            new = replace_section(new, start, end, body, page)
        if new != text:
            changed[page] = new
    for page, new in changed.items():
        Path(page).write_text(new)
    return bool(changed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m f1lib.ledger",
        description="Rebuild the README's claims table, and the README's and the book's "
                    "table of what computed each chapter, from the records in figures/*.json.")
    parser.add_argument("readme", nargs="?", type=Path,
                        help="the README to rewrite (default: the checkout's README.md)")
    root = repo_root() or Path.cwd()
    readme = parser.parse_args().readme or root / "README.md"
    changed = update_tables(readme, root / "book" / "intro.md", root / "figures")
    print(f"{readme} and book/intro.md: tables {'updated' if changed else 'unchanged'}")
