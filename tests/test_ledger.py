"""The claims ledger: verdicts from intervals, glue records, and the README table from JSON."""

import json

import pytest

from f1lib.ledger import (END, START, claim, collect, combined_verdict, improvement_verdict,
                          markdown_table, update_readme)


def test_an_improvement_holds_above_zero_and_fails_below_the_claimed_gain():
    claimed = 0.04
    assert improvement_verdict(0.001, 0.02, claimed) == "holds"  # measured, if smaller
    assert improvement_verdict(-0.001, 0.02, claimed) == "does not hold"  # +4 ruled out
    assert improvement_verdict(-0.03, -0.01, claimed) == "does not hold"  # it hurts
    assert improvement_verdict(-0.16, 0.24, claimed) == "not testable here"  # too wide
    assert improvement_verdict(float("nan"), float("nan"), claimed) == "not testable here"


def test_a_claim_needs_a_known_verdict():
    with pytest.raises(ValueError, match="verdict"):
        claim("k", "c", "p", "m", "s", "probably")


def write_record(folder, name, claims):
    (folder / f"{name}.json").write_text(json.dumps(
        {"notebook": f"{name}.ipynb", "profile": "quick", "results": {"claims": claims}}))


def test_the_readme_table_is_made_from_the_figures_json(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    write_record(figures, "b", [claim("b1", "B | pipe", "p", "m", "s", "holds")])
    write_record(figures, "a", [claim("a1", "A", "p", "m", "s", "partly")])
    (figures / "c.json").write_text(json.dumps({"notebook": "c.ipynb", "profile": "quick",
                                                "results": {}}))  # no claims: no rows
    rows = collect(figures)
    assert [r["key"] for r in rows] == ["a1", "b1"]
    table = markdown_table(rows)
    assert "| A | p | m | s | partly |" in table
    assert "B \\| pipe" in table  # a pipe inside a cell is escaped

    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\nstale\n{END}\n\nafter\n")
    assert update_readme(readme, figures) is True
    text = readme.read_text()
    assert "stale" not in text and table in text and text.endswith("after\n")
    assert update_readme(readme, figures) is False  # idempotent
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="claims:start"):
        update_readme(readme, figures)


def test_the_readme_shows_the_claims_that_figures_record():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    table = markdown_table(collect(root / "figures"))
    text = (root / "README.md").read_text()
    section = text.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == table.strip(), "README is stale: run python -m f1lib.ledger"


def test_a_claim_measured_several_ways_gets_one_verdict():
    assert combined_verdict(["holds", "holds"]) == "holds"
    assert combined_verdict(["holds", "not testable here"]) == "partly"
    assert combined_verdict(["holds", "does not hold"]) == "partly"
    assert combined_verdict(["does not hold", "does not hold"]) == "does not hold"
    assert combined_verdict(["does not hold", "not testable here"]) == "not testable here"
    assert combined_verdict([]) == "not testable here"
