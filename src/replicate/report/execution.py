"""How the book was executed: which results files each chapter read (recorded while it ran), how long it ran
(papermill's record in the executed notebook), where every file read came from (its provenance and the
commit that holds it), and the software that ran it.

`record_reads` is switched on by the environment: with $REPLICATE_READS_LOG set (the Makefile sets it per
notebook) every file under results/ that the process opens for reading is appended to that log.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd

from replicate.provenance import git_sha
from replicate.report.tables import provenance_table

READS_ENV = "REPLICATE_READS_LOG"
RESULTS = "results"


def _opened_for_reading(mode: object, flags: object) -> bool:
    if isinstance(mode, str):
        return not any(c in mode for c in "wax+")
    return isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR) == 0


def record_reads(log: str | Path | None = None) -> bool:
    """From now on, append every results/ file this process opens for reading to `log` (default: the file named
    by $REPLICATE_READS_LOG; nothing without one), each path once, relative to the working directory. True when
    recording."""
    log = log or os.environ.get(READS_ENV)
    if not log:
        return False
    log, root, seen = Path(log).resolve(), Path.cwd().resolve(), set()

    def hook(event: str, args: tuple) -> None:
        if event != "open" or not isinstance(args[0], str | os.PathLike):
            return
        path = os.fspath(args[0])
        if RESULTS not in str(path) or not _opened_for_reading(args[1], args[2]):
            return
        try:
            rel = Path(os.path.abspath(path)).relative_to(root).as_posix()
        except ValueError:
            return
        if rel.startswith(f"{RESULTS}/") and rel not in seen:
            seen.add(rel)
            with open(log, "a") as out:  # mode "a": the hook ignores its own write
                out.write(rel + "\n")

    sys.addaudithook(hook)
    return True


def chapter_reads(reads_dir: str | Path) -> dict[str, list[str]]:
    """Per chapter (the log's file name), the results files it read, in order."""
    return {
        log.stem: list(dict.fromkeys(line for line in log.read_text().splitlines() if line))
        for log in sorted(Path(reads_dir).glob("*.txt"))
    }


@functools.cache
def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def committed_in(path: str) -> str:
    """The commit that holds the file's current content: the last one to change it ("uncommitted" where the
    working tree differs from it, "-" without git)."""
    if _git("status", "--porcelain", "--", path):
        return "uncommitted"
    return _git("log", "-1", "--format=%h", "--", path) or "-"


def execution_table(book_dir: str | Path, reads_dir: str | Path) -> pd.DataFrame:
    """One row per executed chapter: how long papermill ran it, and the results folders and files it read."""
    reads = chapter_reads(reads_dir)
    rows = []
    for nb in sorted(Path(book_dir).glob("*.ipynb")):
        meta = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {})
        files = reads.get(nb.stem, [])
        folders = dict.fromkeys(Path(f).parent.as_posix().removeprefix(f"{RESULTS}/") for f in files)
        rows.append(
            {
                "chapter": f"{{doc}}`{nb.stem}`",
                "ran (s)": meta.get("duration"),
                "results files read": len(files),
                "from results/": ", ".join(folders) or "-",
            }
        )
    return pd.DataFrame(rows)


def files_table(reads_dir: str | Path) -> pd.DataFrame:
    """Every results file the book read: the chapters that read it, the commit that holds it, and the provenance
    recorded inside it (the code's commit that wrote it, the device, torch)."""
    reads = chapter_reads(reads_dir)
    readers: dict[str, list[str]] = {}
    for chapter, files in reads.items():
        for f in files:
            readers.setdefault(f, []).append(chapter.split("_")[0])
    paths = sorted(readers)
    inside = provenance_table([Path(p) for p in paths]).set_index(["in results/", "file"])
    rows = []
    for p in paths:
        key = (Path(p).parent.as_posix().removeprefix(f"{RESULTS}/"), Path(p).name)
        prov = inside.loc[key] if key in inside.index else None
        rows.append(
            {
                "file (results/)": "/".join(key),
                "read by": ", ".join(readers[p]),
                "committed in": committed_in(p),
                "written by code at": "-" if prov is None else prov["git"],
                "device": "-" if prov is None else prov["device"],
            }
        )
    return pd.DataFrame(rows)


DIRTY_NOTE = (
    "A commit marked `-dirty` in 'written by code at' is the commit the code was at when it wrote the file, with "
    "uncommitted edits on top: that commit alone does not reproduce the file bit for bit. The file itself is held by "
    "the commit in 'committed in'; re-running its command at that commit (ch. 10's commands) writes it again from "
    "committed code, which should give the same numbers (the code is deterministic given its seeds) but is not "
    "checked here."
)


PACKAGES = ("torch", "triton", "numpy", "scipy", "pandas", "jupyter-book", "papermill", "jupytext")


def environment_table() -> pd.DataFrame:
    """The software this process runs with: Python, the platform, the commit, CUDA, and the packages' versions."""
    import torch  # imported where it is asked for: the rest of the report runs without it

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git": git_sha(),
        "cuda": torch.cuda.is_available(),
        **{p: metadata.version(p) for p in PACKAGES},
    }
    return pd.DataFrame(env.items(), columns=["", "version"])
