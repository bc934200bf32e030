"""The claims ledger: each claim of the paper, what we measured, and a verdict.

A notebook builds its claims with `claim(...)` and stores them in its figure's JSON
under results["claims"]. The README's table and the book's claims page are made from
those JSON files (`python -m f1lib.ledger`), never by hand, verdict first; so is the
table, on the README and on the book's intro page, of what computed each chapter and
how long it took.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .provenance import notebook_costs, records, repo_root

VERDICTS = ("holds", "partly", "does not hold", "not testable here")
START, END = "<!-- claims:start -->", "<!-- claims:end -->"
COSTS_START, COSTS_END = "<!-- costs:start -->", "<!-- costs:end -->"
SETTINGS_START, SETTINGS_END = "<!-- settings:start -->", "<!-- settings:end -->"
COLAB_START, COLAB_END = "<!-- colab:start -->", "<!-- colab:end -->"
COLUMNS = ("claim", "paper", "measured", "setting", "verdict")
# the verdict at a glance: a sphinx-design badge colour on the book's page, a mark in the README
BADGES = {"holds": "success", "partly": "warning", "does not hold": "danger",
          "not testable here": "muted"}
MARKS = {"holds": "🟢", "partly": "🟡", "does not hold": "🔴", "not testable here": "⚪"}


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


def claims_markdown(claims: list[dict]) -> str:
    """A chapter's claims in words: each claim, what was measured, and its verdict."""
    return "\n\n".join(f"**{c['claim']}**: {c['measured']}. Verdict: **{c['verdict']}**."
                         for c in claims)


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


def outcome(row: dict) -> tuple[str, str]:
    """(the bare verdict, what the row says around it: its scope and what was not run)."""
    bare, shown = row.get("outcome", row["verdict"]), row["verdict"]
    scope, _, elsewhere = shown.partition(f": {bare}") if shown != bare else ("", "", "")
    return bare, "; ".join(part for part in (scope, elsewhere.strip("; ")) if part)


def markdown_table(rows: list[dict]) -> str:
    """The README's table: the verdict (a coloured mark first), the claim, what was measured."""
    cells = []
    for r in rows:
        bare, rest = outcome(r)
        cells.append([f"{MARKS[bare]} {bare}" + (f" ({rest})" if rest else ""), r["claim"],
                      r["measured"], f"[{r['source'].removesuffix('.ipynb')}](book/{r['source']})"])
    return table(["verdict", "claim", "measured here (95% intervals)", "chapter"], cells)


def claims_page(rows: list[dict]) -> str:
    """The book's claims page body: a badge per verdict beside its claim, then each claim's
    details (the paper's words, the measurement, its setting) in a dropdown."""
    cells = []
    for r in rows:
        bare, rest = outcome(r)
        badge = f"{{bdg-{BADGES[bare]}}}`{bare}`" + (f" {rest}" if rest else "")
        cells.append([badge, f"[{r['claim']}](claim-{r['key']})",
                      f"[{r['source'].removesuffix('.ipynb')}]({r['source']})"])
    parts = [table(["verdict", "claim", "chapter"], cells)]
    for r in rows:
        parts.append(f"\n(claim-{r['key']})=\n:::{{dropdown}} {r['claim']}\n"
                     f"The paper\n: {r['paper']}\n\nMeasured here\n: {r['measured']}\n\n"
                     f"Setting\n: {r['setting']}\n\nVerdict\n: {r['verdict']}\n:::\n")
    return "".join(parts)


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


def colab_table() -> str:
    """What each chapter trains in Colab under `auto` (quick), and an estimate of how long
    (f1lib.colab.colab_estimates)."""
    from .colab import colab_estimates

    rows = [[f"[{name}]({name}.ipynb)", work, time] for name, work, time in colab_estimates()]
    return table(["chapter", "trained on Colab's GPU", "time there"], rows)


def settings_page(figures: Path) -> str:
    """Each chapter's resolved parameters as its last execution ran them (the record with the
    longest notebook time, as in `costs_table`), a section per notebook."""
    last: dict[str, dict] = {}
    for _, record in records(figures):
        if "parameters" in record and record["wall_time_s"] >= last.get(
                record["notebook"], {}).get("wall_time_s", -1):
            last[record["notebook"]] = record
    parts = []
    for notebook, record in sorted(last.items()):
        stem = notebook.removesuffix(".ipynb")
        rows = [["profile", f"`{record['profile']}`"]] + [
            [name, f"`{value!r}`"] for name, value in record["parameters"].items()]
        parts.append(f"\n## [{stem}]({notebook})\n\n" + table(["parameter", "value"], rows))
    return "".join(parts)


def replace_section(text: str, start: str, end: str, body: str, where: Path) -> str:
    """`text` with what lies between the markers `start` and `end` replaced by `body`."""
    if start not in text or end not in text:
        raise ValueError(f"{where} has no {start} ... {end} section")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{body}{end}{after}"


def update_tables(readme: Path, intro: Path, figures: Path, claims: Path | None = None,
                  settings: Path | None = None) -> bool:
    """Rewrite the tables made from the records in `figures`, each between its markers: the
    README's claims table and its table of what computed each chapter, the same costs
    table on the book's `intro` page and, given, the book's `claims` and `settings` pages;
    True if any changed. Nothing is written unless every page has its markers."""
    rows = collect(figures)
    pages = {readme: [(START, END, markdown_table(rows)),
                      (COSTS_START, COSTS_END, costs_table(figures))],
             intro: [(COSTS_START, COSTS_END, costs_table(figures, links=""))]}
    if COLAB_START in Path(intro).read_text():  # the book's own intro has the Colab table
        pages[intro].append((COLAB_START, COLAB_END, colab_table()))
    if claims is not None:
        pages[claims] = [(START, END, claims_page(rows))]
    if settings is not None:
        pages[settings] = [(SETTINGS_START, SETTINGS_END, settings_page(figures))]
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
        description="Rebuild the README's and the book's claims tables, and their tables of "
                    "what computed each chapter, from the records in figures/*.json.")
    parser.add_argument("readme", nargs="?", type=Path,
                        help="the README to rewrite (default: the checkout's README.md)")
    root = repo_root() or Path.cwd()
    readme = parser.parse_args().readme or root / "README.md"
    book = root / "book"
    changed = update_tables(readme, book / "intro.md", root / "figures", book / "claims.md",
                            book / "settings.md")
    print(f"{readme} and book/{{intro,claims,settings}}.md: tables "
          f"{'updated' if changed else 'unchanged'}")
