"""The book's build step after papermill: ``python -m replicate.book NOTEBOOK.ipynb`` (the Makefile calls it)."""

from __future__ import annotations

import sys
from pathlib import Path


def hide_parameters(notebook: str | Path) -> None:
    """Tag an executed notebook's parameter cells (the source's and papermill's injected one) "remove-cell",
    so that the book shows neither."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, notebook)


if __name__ == "__main__":
    hide_parameters(sys.argv[1])
