"""The built book in a real browser: Debian's chromium, driven headless by Playwright.

Every page is loaded from a local HTTP server. The test checks that each
figure image loads, that the equations render (MathJax, served from the
book itself), that the claims page shows each verdict as a badge, and that no page
logs a console error. Screenshots go to _build/screenshots/ for CI artefacts.

`make test` builds the book and runs this with F1LIB_BROWSER=required, under
which a missing browser or book fails instead of skipping.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
REQUIRED = os.environ.get("F1LIB_BROWSER") == "required"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SKIP_PAGES = {"genindex.html", "search.html", "index.html"}  # index.html only redirects
VERDICTS = {"holds", "partly", "does not hold", "not testable here"}


def _missing() -> str | None:
    if not os.environ.get("F1LIB_BROWSER"):
        return "set F1LIB_BROWSER=required after building the book (make test does)"
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not (HTML / "index.html").exists():
        return f"no built book at {HTML} (jupyter-book build book/)"
    return None


def pages() -> list[str]:
    if not HTML.exists():
        return []
    return sorted(p.name for p in HTML.glob("*.html") if p.name not in SKIP_PAGES)


@pytest.fixture(scope="module")
def browser_site():
    reason = _missing()
    if reason:
        if REQUIRED:
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser, f"http://127.0.0.1:{server.server_address[1]}"
        browser.close()
    server.shutdown()


@pytest.fixture
def browser_page(browser_site):
    """A fresh page per test: a page reused across tests would report the requests
    that its next navigation aborts (a favicon still loading) to the next test."""
    browser, base = browser_site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    yield page, base
    page.close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_the_book_has_its_pages():
    if _missing() and not REQUIRED:
        pytest.skip(_missing())
    names = set(pages())
    assert {"intro.html", "method.html", "api.html", "lp_bound.html", "mnist.html",
            "sky_histogram.html", "claims.html"} <= names


def test_the_front_door_leads_to_the_introduction(browser_page):
    page, base = browser_page
    page.goto(f"{base}/index.html")
    page.wait_for_url("**/intro.html", timeout=10_000)


@pytest.mark.parametrize("name", pages() or ["intro.html"])
def test_page_loads_with_its_figures_and_equations_and_no_errors(browser_page, name):
    page, base = browser_page
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{base}/{name}", wait_until="load")
    html = (HTML / name).read_text()
    if 'class="math' in html:
        # MathJax typesets after load; wait for it, then look for its output
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=30_000)
        page.evaluate("() => MathJax.startup.promise")
        rendered = page.locator("mjx-container").count()
        assert rendered > 0, "equations left untypeset"
        assert page.locator("mjx-merror").count() == 0, "MathJax reported a TeX error"
    broken = page.evaluate(
        "() => Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)")
    assert broken == [], f"images that did not load: {broken}"
    page.screenshot(path=str(SHOTS / f"{Path(name).stem}.png"), full_page=True)
    assert failed == [], f"requests that failed: {failed}"
    assert errors == [], f"console errors: {errors}"


def test_the_claims_page_shows_each_verdict_first_as_a_coloured_badge(browser_page):
    page, base = browser_page
    page.goto(f"{base}/claims.html", wait_until="load")
    rows = page.locator("table tbody tr")
    assert rows.count() >= 4
    colours = {"holds": "success", "partly": "warning", "does not hold": "danger",
               "not testable here": "muted"}
    for k in range(rows.count()):
        cells = rows.nth(k).locator("td")
        texts = [cells.nth(j).inner_text().strip() for j in range(cells.count())]
        assert all(texts), f"row {k} has an empty cell: {texts}"
        badge = cells.nth(0).locator(".sd-badge")
        assert badge.count() == 1, f"row {k}: no badge in {texts[0]!r}"
        verdict = badge.inner_text().strip()
        assert verdict in VERDICTS, f"row {k}: badge {verdict!r}"
        assert f"sd-bg-{colours[verdict]}" in badge.get_attribute("class")
        # the rest of the cell says where the verdict was measured, if anywhere in particular
        assert re.fullmatch(rf"{verdict}( on [^;]+(; [^;]+)?)?", texts[0]), texts[0]
        assert cells.nth(1).locator("a").count() == 1  # to the claim's details
    # the details, on demand: one closed dropdown per claim, opened by a click
    dropdowns = page.locator("details.sd-dropdown")
    assert dropdowns.count() == rows.count()
    first = dropdowns.first
    assert first.get_attribute("open") is None
    first.locator("summary").click()
    assert first.get_attribute("open") is not None
    assert "Measured here" in first.inner_text()


TEST_ADDRESS = "https://github.com/example-owner/f1-companion"


@pytest.fixture(scope="module")
def published_copy(tmp_path_factory, browser_site):
    """The book as `jupyter-book build book/` makes it on a fresh clone, with no vendored
    MathJax, and with a public address set in _config.yml."""
    import subprocess
    import sys

    copy = tmp_path_factory.mktemp("published") / "repo"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file() and not name.startswith("book/_vendor/"):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    config = copy / "_config.yml"
    config.write_text(config.read_text().replace('url: ""', f'url: "{TEST_ADDRESS}"', 1))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    built = subprocess.run([str(jupyter_book), "build", "-W", "--keep-going", "book/"],
                           cwd=copy, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return copy / "_build" / "html"


def test_a_fresh_clone_builds_warning_free_with_mathjax_from_its_cdn(published_copy):
    assert not (published_copy / "mathjax").exists()
    page = (published_copy / "method.html").read_text()
    assert "https://cdn.jsdelivr.net/npm/mathjax@3.2.2/es5/tex-mml-chtml.js" in page
    # the book built with the vendored copy serves its own
    assert "../mathjax/tex-mml-chtml.js" in (HTML / "method.html").read_text()


@pytest.mark.parametrize("notebook", sorted(p.stem for p in (ROOT / "book").glob("*.ipynb")))
def test_a_published_notebook_page_opens_in_colab(published_copy, browser_site, notebook):
    browser, _ = browser_site
    page = browser.new_page()
    try:
        page.goto((published_copy / f"{notebook}.html").as_uri(), wait_until="domcontentloaded")
        links = page.locator("a[href^='https://colab.research.google.com/']")
        hrefs = {links.nth(k).get_attribute("href") for k in range(links.count())}
        owner_repo = TEST_ADDRESS.removeprefix("https://github.com/")
        assert hrefs == {f"https://colab.research.google.com/github/{owner_repo}/blob/main/"
                         f"book/{notebook}.ipynb"}
        assert page.locator(f"a[href='{TEST_ADDRESS}']").count() >= 1  # the repository button
    finally:
        page.close()


def test_an_unpublished_book_has_no_colab_link():
    if _missing():
        pytest.skip(_missing())
    assert "colab.research.google.com" not in (HTML / "mnist.html").read_text()
