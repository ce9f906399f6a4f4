"""Atomic writes, one policy for every result file: write a temporary file beside the target, flush and fsync
it, rename it over the target and fsync the folder. A reader, a crash or a SIGKILL sees the old file or the
new one, never a partial one. Torch-free: torch blobs come in through `write`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: Path, write: Callable[[IO], None], binary: bool = False) -> None:
    """Call write(f) on a temporary file, then put it in place of `path` (see the module docstring)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def json_safe(obj: Any) -> Any:
    """Plain Python for json: numpy scalars and arrays (anything with .tolist()) to numbers and lists, tuples to
    lists, NaN and infinities to None."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, payload: Any) -> None:
    """`payload` as indented JSON, atomically."""
    atomic_write(path, lambda f: json.dump(payload, f, indent=1))


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    """A CSV table, atomically."""

    def write(f: IO) -> None:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)

    atomic_write(path, write)


def table_source(path: Path, **options: Any) -> dict:
    """What a result is computed from: a table (its path and SHA-256, None where it does not exist) and options."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"runs": str(path), "sha256": digest, **options}


def holds_source(path: Path, source: dict) -> bool:
    """True when the JSON at `path` was computed from `source` (its "source" entry equals it): then it is
    touched, so that make sees it newer than its inputs again, and need not be recomputed."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        previous = json.loads(path.read_text()).get("source")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False
    if previous != source:
        return False
    path.touch()
    return True
