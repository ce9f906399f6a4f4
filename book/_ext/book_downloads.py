"""Sphinx extension of the book: each chapter's download menu (the theme's: the executed notebook, .ipynb, and a
print to .pdf) also offers the chapter's source, the jupytext percent file in notebooks/ that `make book` executes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SOURCES = "notebooks"  # relative to the book's root (the repository)


def _source(app, pagename: str) -> Path | None:
    path = Path(app.srcdir) / SOURCES / f"{Path(pagename).name}.py"
    return path if path.is_file() else None


def add_source_button(app, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Put a ".py" entry into the theme's download menu of a page built from a chapter's notebook."""
    source = _source(app, pagename)
    if source is None:
        return
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            button["buttons"].insert(
                1,
                {
                    "type": "link",
                    "url": context["pathto"](f"_sources/{SOURCES}/{source.name}", 1),
                    "text": ".py",
                    "icon": "fas fa-file-code",
                    "tooltip": "Download the chapter's source (jupytext, percent format)",
                    "label": "download-py-button",
                },
            )


def copy_sources(app, exception) -> None:
    """Copy the chapters' sources next to the pages' own (_sources/) so that the menu's links resolve offline."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / "_sources" / SOURCES
    out.mkdir(parents=True, exist_ok=True)
    for source in sorted((Path(app.srcdir) / SOURCES).glob("*.py")):
        shutil.copy2(source, out / source.name)


def setup(app) -> dict:
    app.connect("html-page-context", add_source_button, priority=600)  # after the theme's buttons (priority 501)
    app.connect("build-finished", copy_sources)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
