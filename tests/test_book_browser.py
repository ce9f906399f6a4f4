"""The smoke book in a real browser: build it (make book PROFILE=smoke) into a folder, then drive headless
Chromium (Debian's package, through Playwright's executable_path: no browser download) over every page.

Marked `browser`: `make test` leaves it out, `make browser-test` (run by .ci/run) runs it. The build goes to
$REPLICATE_BOOK_OUT (default: a temporary folder), with a screenshot of every page in its screenshots/. Each page
must render without tracebacks, broken images or raw TeX, keep its tables and printed lines inside the column and
its figures legible, label every log axis with two ticks or more, link each figure's data, and offer each chapter's
executed notebook and source for download.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
# The page's prose as a reader sees it: without code, typeset formulas, scripts and styles
VISIBLE_PROSE = """() => {
  const main = (document.querySelector('main') || document.body).cloneNode(true);
  main.querySelectorAll('.cell_input, pre, code, mjx-container, script, style, .MathJax').forEach(e => e.remove());
  return main.textContent;
}"""
# what a formula that failed to typeset leaves in the text: a dollar sign or a TeX command
TEX_LEFTOVER = re.compile(r"\$|\\(?:mathrm|frac|tfrac|eta|alpha|beta|gamma|sum|left|right|mathbb|propto|qquad)\b")
# Tables wider than the text column (their columns are clipped behind a scroll bar), figures shown below 70% of
# their drawn size (their text gets too small to read; plots.BOOK_WIDTH_IN keeps them under it), and printed
# output or code whose lines run past the column (collapsed code cells, which a reader has not opened, aside)
LAYOUT = """() => {
  const main = document.querySelector('main') || document.body;
  const column = (document.querySelector('article.bd-article') || main).getBoundingClientRect().width;
  const shown = e => e.getBoundingClientRect().width > 0;
  return {
    wide: [...main.querySelectorAll('table')].filter(shown)
      .filter(t => t.getBoundingClientRect().width > column + 2).map(t => t.innerText.slice(0, 60)),
    shrunk: [...main.querySelectorAll('img')].filter(shown)
      .filter(i => i.naturalWidth && i.getBoundingClientRect().width < 0.7 * i.naturalWidth)
      .map(i => `${i.naturalWidth} px shown at ${Math.round(i.getBoundingClientRect().width)}`),
    clipped: [...main.querySelectorAll('pre')].filter(shown).filter(e => !e.closest('details:not([open])'))
      .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText.slice(0, 60)),
  };
}"""
# Each executed cell's figures (PNG outputs) and the links under them to their data (CSV)
FIGURES = """() => [...document.querySelectorAll('.cell_output')].map(cell => ({
  images: [...cell.querySelectorAll('img')].map(i => i.src).filter(src => src.endsWith('.png')),
  data: [...cell.querySelectorAll('a')].map(a => a.href).filter(href => href.endsWith('.csv')),
}))"""
# The download menu's links (the theme's: executed notebook and page source; the book's extension: .py source)
DOWNLOADS = """() => [...document.querySelectorAll('.dropdown-download-buttons a, a.dropdown-item')]
  .map(a => a.href).filter(href => href.startsWith('file:'))"""


def _local(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _check_figures(page, name: str) -> None:
    """Every figure PNG of a cell carries its log axes' tick labels (plots.show writes them) with two labels or
    more on each, and its cell links as many existing CSV files as it shows figures."""
    from replicate.report.figures import unreadable_log_axes

    for cell in page.evaluate(FIGURES):
        for src in cell["images"]:
            bad = unreadable_log_axes(_local(src).read_bytes())
            assert bad is not None, f"{name}: a figure not drawn through plots.show ({src})"
            assert not bad, f"{name}: log axes with fewer than two tick labels: {bad}"
        assert len(cell["data"]) >= len(cell["images"]), f"{name}: a figure without the CSV of its data"
        missing = [href for href in cell["data"] if not _local(href).is_file()]
        assert not missing, f"{name}: links to missing data {missing}"


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    out = Path(os.environ.get("REPLICATE_BOOK_OUT") or tmp_path_factory.mktemp("book")).resolve()
    build = subprocess.run(
        ["make", "book", "PROFILE=smoke", f"BOOK_OUT={out}"], cwd=ROOT, capture_output=True, text=True, timeout=3600
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    html = out / "_build" / "html"
    assert (html / "index.html").is_file()
    return html


def _pages(html: Path) -> list[Path]:
    toc = (ROOT / "_toc.yml").read_text().split()
    names = [t.split("/")[-1] for t in toc if t.startswith("book/")]
    return [html / "book" / f"{name}.html" for name in names]


def test_every_page_renders_in_chromium(book):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is not installed: make browser-test installs it"
    shots = book.parent.parent / "screenshots"
    shots.mkdir(exist_ok=True)
    pages = _pages(book)
    assert len(pages) >= 10
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for path in [book / "index.html", *pages]:
            assert path.is_file(), f"missing page {path.name}"
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_timeout(300)  # images and MathJax
            page.screenshot(path=str(shots / f"{path.stem}.png"), full_page=True)
            text = page.inner_text("body")
            assert "Traceback" not in text, path.name
            assert page.locator("div.output.error, .cell_output .error").count() == 0, path.name
            broken = page.evaluate(
                "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            assert not broken, f"{path.name}: broken images {broken}"
            if path.stem == "01_introduction":
                assert page.locator("table:has-text('verdict')").count() >= 1, "the summary table is missing"
            if (ROOT / "notebooks" / f"{path.stem}.py").is_file():  # a chapter: its notebook and source download
                links = page.evaluate(DOWNLOADS)
                for suffix in (".ipynb", ".py"):
                    found = [u for u in links if u.endswith(suffix) and _local(u).is_file()]
                    assert found, f"{path.name}: no {suffix} download in {links}"
            _check_figures(page, path.name)
            if page.locator(".math").count():  # the local MathJax typesets every formula
                # attached, not visible: the first equation may sit in a collapsed cell
                page.wait_for_function(
                    "[...document.querySelectorAll('.math')].every(e => e.querySelector('mjx-container'))",
                    timeout=30000,
                )
            layout = page.evaluate(LAYOUT)
            assert not layout["wide"], f"{path.name}: tables wider than the page's column: {layout['wide']}"
            assert not layout["shrunk"], f"{path.name}: figures too small to read: {layout['shrunk']}"
            assert not layout["clipped"], f"{path.name}: printed lines clipped: {layout['clipped']}"
            prose = page.evaluate(VISIBLE_PROSE)
            leftover = TEX_LEFTOVER.findall(prose)
            assert not leftover, f"{path.name}: raw TeX in the page's text: {leftover[:5]}"
        browser.close()
