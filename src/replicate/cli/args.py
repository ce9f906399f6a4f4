"""The command line's shared argument types and checks."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from replicate.errors import ConfigError


def check_output_path(path: Path) -> Path:
    """Fail before any work if `path` cannot be written."""
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory")
    if not path.parent.is_dir():
        raise ConfigError(f"--out: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--out: directory {path.parent} is not writable")
    return path


def positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def positive_float_or_inf(text: str) -> float:
    """A positive number, infinity included ("inf": a test switched off)."""
    if text.strip().lower() in ("inf", "infinity"):
        return math.inf
    return positive_float(text)


def add_bootstrap(p: argparse.ArgumentParser, unit: str, what: str) -> None:
    """--bootstrap, --seed and --if-changed: the options of the commands that write a fitted JSON."""
    p.add_argument("--bootstrap", type=int, default=1000, help=f"resamples of {unit} for the 95%% intervals (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument(
        "--if-changed",
        action="store_true",
        help=f"do nothing when --out already holds the {what} of this very table with these options",
    )


def add_loss_column(p: argparse.ArgumentParser) -> None:
    """--loss-column: which column of the runs table is fitted as the loss."""
    p.add_argument(
        "--loss-column",
        default="val_loss",
        help="the column fitted as the loss (default val_loss; val_loss_ema: the EMA weights' loss)",
    )
