"""The smoke book in a real browser: build it (make book PROFILE=smoke) into a folder, then drive headless
Chromium (Debian's package, through Playwright's executable_path: no browser download) over every page.

Marked `browser`: `make test` leaves it out, `make browser-test` (run by .ci/run) runs it. The build goes to
$REPLICATE_BOOK_OUT (default: a temporary folder), with a screenshot of every page in its screenshots/.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

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
# Tables wider than the text column (their columns are clipped behind a scroll bar) and figures shown below
# 70% of their drawn size (their text gets too small to read; plots.BOOK_WIDTH_IN keeps them under it)
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
  };
}"""
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
            if path.stem in ("index", "01_introduction"):
                assert page.locator("table:has-text('verdict')").count() >= 1, "the summary table is missing"
            if page.locator(".math").count():  # the local MathJax typesets every formula
                # attached, not visible: the first equation may sit in a collapsed cell
                page.wait_for_function(
                    "[...document.querySelectorAll('.math')].every(e => e.querySelector('mjx-container'))",
                    timeout=30000,
                )
            layout = page.evaluate(LAYOUT)
            assert not layout["wide"], f"{path.name}: tables wider than the page's column: {layout['wide']}"
            assert not layout["shrunk"], f"{path.name}: figures too small to read: {layout['shrunk']}"
            prose = page.evaluate(VISIBLE_PROSE)
            leftover = TEX_LEFTOVER.findall(prose)
            assert not leftover, f"{path.name}: raw TeX in the page's text: {leftover[:5]}"
        browser.close()
