"""The claims ledger: verdicts from intervals, and the README's and the claims page's tables from JSON."""

import json

import pytest

from f1lib.ledger import (COLAB_END, COLAB_START, COSTS_END, COSTS_START, END, SETTINGS_END,
                          SETTINGS_START, START, claim, claims_page, colab_table, collect, combined_verdict, costs_table,
                          improvement_verdict, markdown_table, outcome, settings_page,
                          update_tables)

CPU = {"torch_device": "cpu", "cpu": "x86_64", "cpu_count": 2, "platform": "Linux", "gpu": None}


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


def write_record(folder, name, claims=(), notebook=None, wall_time_s=1.0, device=CPU, **more):
    """A figure's provenance record as f1lib.provenance.Provenance writes it, less what the
    ledger does not read."""
    (folder / f"{name}.json").write_text(json.dumps(
        {"notebook": notebook or f"{name}.ipynb", "profile": "quick", "device": device,
         "git": {"commit": "0123456789abcdef"}, "date": "2026-12-07T10:00:00+00:00",
         "wall_time_s": wall_time_s, "resumed": False, "results": {"claims": list(claims)},
         **more}))


def test_the_readme_table_is_made_from_the_figures_json(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    write_record(figures, "b", [claim("b1", "B | pipe", "p", "m", "s", "holds")])
    write_record(figures, "a", [claim("a1", "A", "p", "m", "s", "partly")])
    write_record(figures, "c")  # no claims: no rows
    rows = collect(figures)
    assert [r["key"] for r in rows] == ["a1", "b1"]
    table = markdown_table(rows)
    assert "| 🟡 partly | A | m | [a](book/a.ipynb) |" in table  # the verdict first
    assert "B \\| pipe" in table  # a pipe inside a cell is escaped

    readme, intro = tmp_path / "README.md", tmp_path / "intro.md"
    readme.write_text(f"# title\n\n{START}\nstale\n{END}\n\nbetween\n{COSTS_START}\nformer costs\n"
                      f"{COSTS_END}\nafter\n")
    intro.write_text(f"# intro\n{COSTS_START}\n{COSTS_END}\nchapters\n")
    assert update_tables(readme, intro, figures) is True
    text = readme.read_text()
    assert "stale" not in text and table in text and text.endswith("after\n")
    assert "former costs" not in text and costs_table(figures) in text and "\nbetween\n" in text
    # the book's page links to the notebooks beside it, the README to those under book/
    assert intro.read_text() == (f"# intro\n{COSTS_START}\n{costs_table(figures, links='')}"
                                 f"{COSTS_END}\nchapters\n")
    assert "](c.ipynb)" in intro.read_text() and "](book/c.ipynb)" in text
    assert update_tables(readme, intro, figures) is False  # idempotent
    readme.write_text(f"{START}\n{END}\n")
    with pytest.raises(ValueError, match="costs:start"):
        update_tables(readme, intro, figures)
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="claims:start"):
        update_tables(readme, intro, figures)
    # nothing is written unless every page has its markers
    readme.write_text(f"{START}\nstale\n{END}\n{COSTS_START}\n{COSTS_END}\n")
    intro.write_text("no markers")
    with pytest.raises(ValueError, match="intro.md has no <!-- costs:start -->"):
        update_tables(readme, intro, figures)
    assert "stale" in readme.read_text()


def test_the_claims_page_shows_each_verdict_as_a_badge_and_the_details_on_demand(tmp_path):
    scoped = claim("s1", "Sky", "+4", "-0.8 points", "cpu", "does not hold",
                   scope="the procedural proxy", elsewhere="on COCO-Stuff: not run here")
    assert outcome(scoped) == ("does not hold",
                               "on the procedural proxy; on COCO-Stuff: not run here")
    assert outcome(claim("k", "c", "p", "m", "s", "holds")) == ("holds", "")
    write_record(tmp_path, "sky", [scoped])
    write_record(tmp_path, "lp", [claim("l1", "LP", "p", "0%", "s", "not testable here")])
    page = claims_page(collect(tmp_path))
    assert ("| {bdg-muted}`not testable here` | [LP](claim-l1) | [lp](lp.ipynb) |" in page)
    assert ("| {bdg-danger}`does not hold` on the procedural proxy; on COCO-Stuff: not run "
            "here | [Sky](claim-s1) | [sky](sky.ipynb) |") in page
    details = page.split("(claim-s1)=\n", 1)[1]
    assert details.startswith(":::{dropdown} Sky\n") and "Measured here\n: -0.8 points" in details


def test_the_settings_page_lists_each_chapters_last_resolved_parameters(tmp_path):
    write_record(tmp_path, "run", wall_time_s=5.0, parameters={"seeds": 3, "size": [64, 96]})
    # the same notebook's later figure, written at a longer notebook time, is its last word
    write_record(tmp_path, "run_more", notebook="run.ipynb", wall_time_s=9.0,
                 parameters={"seeds": 7, "size": [64, 96]})
    write_record(tmp_path, "other", parameters={"source": "mlxtend"})
    write_record(tmp_path, "bare")  # a record without parameters: no section
    page = settings_page(tmp_path)
    assert page.index("## [other](other.ipynb)") < page.index("## [run](run.ipynb)")
    assert "| seeds | `7` |" in page and "| seeds | `3` |" not in page
    assert "| size | `[64, 96]` |" in page and "| source | `'mlxtend'` |" in page
    assert "| profile | `quick` |" in page and "bare" not in page


def test_the_costs_table_gives_each_notebooks_last_execution(tmp_path):
    """A row per notebook: its last figure's record (the longest notebook time) names the
    machine, the commit and the time; the training time comes from the record that has it."""
    gpu = {**CPU, "torch_device": "cuda", "cpu_count": 16, "gpu": "NVIDIA H100"}
    write_record(tmp_path, "train", notebook="train.ipynb", wall_time_s=90.5, device=gpu,
                 training_s=80.25, resumed=True)
    write_record(tmp_path, "train_samples", notebook="train.ipynb", wall_time_s=92.0,
                 device=gpu, resumed=True)
    write_record(tmp_path, "cpu_chapter", wall_time_s=12.0,
                 git={"commit": "fedcba9876543210", "library_modified": True})
    beside = {**gpu, "torch_device": "cpu"}  # a CPU chapter run on a GPU machine
    write_record(tmp_path, "beside", wall_time_s=3.0, device=beside)
    (tmp_path / "data.json").write_text("[1, 2]")  # not a record: no row
    lines = costs_table(tmp_path).splitlines()
    assert lines[0] == ("| chapter | profile | computed on | notebook time | of it training "
                        "| commit, date |")
    assert lines[2:] == [
        "| [beside](book/beside.ipynb) | quick | the CPU (16 cores) of a machine with an "
        "NVIDIA H100 | 3 s |  | 0123456, 2026-12-07 |",
        "| [cpu_chapter](book/cpu_chapter.ipynb) | quick | CPU (2 cores) | 12 s |  "
        "| fedcba9 with uncommitted changes to f1lib, 2026-12-07 |",
        "| [train](book/train.ipynb) | quick | NVIDIA H100 | 92 s in its last execution, which "
        "resumed earlier ones | 80.25 s over all of them | 0123456, 2026-12-07 |",
    ]


def test_the_readme_and_the_book_show_what_figures_record():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    rows = collect(root / "figures")
    text = (root / "README.md").read_text()
    section = text.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == markdown_table(rows).strip(), \
        "README is stale: run python -m f1lib.ledger"
    page = (root / "book" / "claims.md").read_text()
    section = page.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == claims_page(rows).strip(), \
        "book/claims.md is stale: run python -m f1lib.ledger"
    intro = (root / "book" / "intro.md").read_text()
    assert intro.split(COLAB_START, 1)[1].split(COLAB_END, 1)[0].strip() == \
        colab_table().strip(), "book/intro.md's Colab table is stale: run python -m f1lib.ledger"
    page = (root / "book" / "settings.md").read_text()
    section = page.split(SETTINGS_START, 1)[1].split(SETTINGS_END, 1)[0]
    assert section.strip() == settings_page(root / "figures").strip(), \
        "book/settings.md is stale: run python -m f1lib.ledger"
    costs = text.split(COSTS_START, 1)[1].split(COSTS_END, 1)[0]
    assert costs.strip() == costs_table(root / "figures").strip(), \
        "README's costs are stale: run python -m f1lib.ledger"
    # one row per chapter of the book, each computed on the machine its record names
    chapters = sorted(path.name for path in (root / "book").glob("*.ipynb"))
    assert [row.split("](book/")[1].split(")")[0] for row in costs.strip().splitlines()[2:]] \
        == chapters
    intro = (root / "book" / "intro.md").read_text()
    assert intro.split(COSTS_START, 1)[1].split(COSTS_END, 1)[0].strip() == \
        costs_table(root / "figures", links="").strip(), \
        "book/intro.md's costs are stale: run python -m f1lib.ledger"


def test_a_claim_measured_several_ways_gets_one_verdict():
    assert combined_verdict(["holds", "holds"]) == "holds"
    assert combined_verdict(["holds", "not testable here"]) == "partly"
    assert combined_verdict(["holds", "does not hold"]) == "partly"
    assert combined_verdict(["does not hold", "does not hold"]) == "does not hold"
    assert combined_verdict(["does not hold", "not testable here"]) == "not testable here"
    assert combined_verdict([]) == "not testable here"


def test_a_scoped_verdict_says_where_it_was_measured_and_what_was_not_run():
    row = claim("k", "c", "p", "m", "s", "does not hold", scope="the procedural proxy",
                elsewhere="on COCO-Stuff: not run here")
    assert row["verdict"] == "on the procedural proxy: does not hold; on COCO-Stuff: not run here"
    assert row["outcome"] == "does not hold"
    assert claim("k", "c", "p", "m", "s", "holds")["verdict"] == "holds"
