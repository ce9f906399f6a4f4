"""Progress bars: tqdm where installed (requirements.txt has it; the lent GPU machines have it too), else a quiet
stand-in, so that a bare machine still runs."""

from __future__ import annotations

from typing import Any

try:
    from tqdm import tqdm
except ImportError:  # a bare environment: the bars are a convenience, not a dependency
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
