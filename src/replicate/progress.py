"""Progress bars: tqdm where installed; a quiet stand-in on the GPU image, which has no tqdm."""

from __future__ import annotations

from typing import Any

try:
    from tqdm import tqdm
except ImportError:  # the GPU image: only torch, triton, numpy, scipy, pandas
    tqdm = None


class _Silent:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, message: str) -> None:
        print(message, flush=True)


def progress_bar(total: int, desc: str = "", disable: bool = False, **kwargs: Any):
    """A tqdm bar (or a silent stand-in where tqdm is absent or disabled)."""
    if tqdm is None or disable:
        return _Silent()
    return tqdm(total=total, desc=desc, dynamic_ncols=True, **kwargs)
