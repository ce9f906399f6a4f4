"""Where a result came from: device, library versions and the git commit of the code.

Torch-free at import: the fit and the report record their provenance on machines without torch.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import platform
import subprocess
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def device_name(device: torch.device) -> str:
    """A human-readable name of the device, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu: AMD EPYC 9B14 (2 threads)'."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {_cpu_model()} ({torch.get_num_threads()} threads)"


@functools.cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_sha() -> str:
    """The commit of the code: $REPLICATE_GIT_SHA if set (copies without .git), else git's, '-dirty' if edited."""
    if os.environ.get("REPLICATE_GIT_SHA"):
        return os.environ["REPLICATE_GIT_SHA"]
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        # results/ and README.md (whose findings make readme writes) are outputs, not code: edits there leave it clean
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":/",
                ":(top,exclude)results",
                ":(top,exclude)README.md",
            ],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def tree_digest(root: Path | None = None) -> str:
    """12 hex digits of a digest of the package's source (every .py and .toml file under src/replicate, by path
    and content): what names the code of a copy that has neither .git nor $REPLICATE_GIT_SHA. The same on any
    checkout of the same source, so a commit is found by computing it there."""
    root = root or Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml") and p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def tree_digest_at(commit: str, repo: Path | None = None) -> str | None:
    """tree_digest of the package's source at `commit` of the git repository holding `repo` (default: this
    package's), or None where git or the commit is not at hand."""
    repo = repo or Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "src/replicate"], cwd=top, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
        return tree_digest(Path(tmp) / "src" / "replicate")


def version(package: str) -> str:
    """The installed version of `package`, or 'none'."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def provenance(device: torch.device) -> dict[str, str]:
    """device, torch, triton and git_sha of the current process (whose caller has torch)."""
    import torch

    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "triton": version("triton"),
        "git_sha": git_sha(),
    }


def fit_provenance() -> dict[str, str]:
    """git_sha and the numpy, scipy and pandas versions: the provenance of a result the analysis side computed."""
    return {"git_sha": git_sha(), **{m: version(m) for m in ("numpy", "scipy", "pandas")}}
