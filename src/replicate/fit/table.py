"""Reading and checking a table of runs (the sweep's ``runs.csv`` contract, or anyone's (N, D, loss) table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from replicate.errors import ConfigError

REQUIRED = ("n_params", "tokens", "val_loss")
HYPER = ("batch_size", "lr")
FLOP_CONVENTIONS = ("6n", "paper", "exact")
ROLES = ("fit", "holdout")
_TRUE = {"true", "1", "yes", "t", "y", "1.0"}
_FALSE = {"false", "0", "no", "f", "n", "0.0", "", "nan", "none"}


def load_runs(path: str | Path, loss_column: str = "val_loss") -> pd.DataFrame:
    """Read a runs table from CSV and check it with `validate_runs`; unreadable files raise ConfigError.

    `loss_column` names another column to fit as the loss (e.g. ``val_loss_ema``, the EMA weights' loss of
    the sweep's table): it replaces val_loss, and its ``_se`` column val_loss_se.
    """
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = getattr(err, "strerror", None) or str(err).strip().splitlines()[0]
        raise ConfigError(f"cannot read {path}: {reason}") from None
    if loss_column != "val_loss":
        if loss_column not in df:
            raise ConfigError(f"{path}: no column {loss_column} to fit as the loss")
        df = df.assign(val_loss=df[loss_column], val_loss_se=df.get(f"{loss_column}_se", np.nan))
    return validate_runs(df, source=str(path))


def validate_runs(df: pd.DataFrame, source: str = "runs table") -> pd.DataFrame:
    """Check a runs table and return a normalised copy.

    Required: ``n_params`` (parameters), ``tokens`` (training tokens seen), ``val_loss``. With both
    ``batch_size`` (tokens per step) and ``lr`` the hyperparameter stage runs; with neither every row is taken
    as already at its optimum. Optional: ``diverged`` (booleans), ``role`` (fit or holdout; blank = fit),
    ``run_id``, ``flops_6n/paper/exact`` (FLOPs per token), ``width``, ``n_ctx``, ``seed``.

    The copy has float ``n_params, tokens, val_loss`` (NaN where diverged), bool ``diverged`` (also set where
    val_loss is not finite), ``role``, and ``run``: an integer run index. Rows of one run share a ``run_id``;
    without that column a run is one (n_params, batch_size, lr, seed) cell, or one row in a table without
    hyperparameters. Anything else wrong raises ConfigError with a one-line message.
    """
    if len(df) == 0:
        raise ConfigError(f"{source}: no rows")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"{source}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    present = [c for c in HYPER if c in df.columns]
    if len(present) == 1:
        other = "lr" if present == ["batch_size"] else "batch_size"
        raise ConfigError(
            f"{source}: column {present[0]} given without {other}; give both batch_size and lr, or neither"
        )
    out = df.copy()
    for col in ("n_params", "tokens", *present, *(f"flops_{k}" for k in FLOP_CONVENTIONS if f"flops_{k}" in df)):
        out[col] = _positive(df[col], col, source)
    loss = _numeric(df["val_loss"], "val_loss", source)
    bad = np.isfinite(loss) & (loss <= 0)
    if bad.any():
        raise ConfigError(
            f"{source}: val_loss must be positive (laws are fitted in log space), got {loss[bad][0]:g}"
            f" on line {_line(bad)}"
        )
    flagged = _booleans(df["diverged"], source) if "diverged" in df else np.zeros(len(df), dtype=bool)
    out["diverged"] = flagged | ~np.isfinite(loss)
    out["val_loss"] = np.where(out["diverged"], np.nan, loss)
    out["role"] = _roles(df["role"], source) if "role" in df else "fit"
    out["run"] = _runs(out, present)
    if out["diverged"].all():
        raise ConfigError(f"{source}: every row is diverged or has no finite val_loss")
    if not (out["role"] == "fit").any():
        raise ConfigError(f"{source}: every row has role holdout; nothing to fit")
    return out


def _show(value: object) -> str:
    if pd.isna(value):
        return "a blank"
    return repr(value) if isinstance(value, str) else str(value)


def _line(mask: np.ndarray) -> int:
    """CSV line of the first flagged row (header = line 1)."""
    return int(np.flatnonzero(mask)[0]) + 2


def _numeric(col: pd.Series, name: str, source: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(values) & col.notna().to_numpy() & (col.astype(str).str.strip().str.lower() != "nan").to_numpy()
    if bad.any():
        raise ConfigError(
            f"{source}: column {name} is not numeric: {_show(col.iloc[np.flatnonzero(bad)[0]])} on line {_line(bad)}"
        )
    return values


def _positive(col: pd.Series, name: str, source: str) -> np.ndarray:
    values = _numeric(col, name, source)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise ConfigError(
            f"{source}: column {name} must be positive and finite, got "
            f"{_show(col.iloc[np.flatnonzero(bad)[0]])} on line {_line(bad)}"
        )
    return values


def _booleans(col: pd.Series, source: str) -> np.ndarray:
    text = col.astype(str).str.strip().str.lower()
    unknown = ~(text.isin(_TRUE) | text.isin(_FALSE))
    if unknown.any():
        raise ConfigError(
            f"{source}: column diverged must be true/false, got {_show(col[unknown].iloc[0])} "
            f"on line {_line(unknown.to_numpy())}"
        )
    return text.isin(_TRUE).to_numpy()


def _roles(col: pd.Series, source: str) -> np.ndarray:
    text = col.fillna("fit").astype(str).str.strip().str.lower().replace("", "fit")
    unknown = ~text.isin(ROLES)
    if unknown.any():
        raise ConfigError(
            f"{source}: column role must be fit or holdout, got {_show(col[unknown].iloc[0])} "
            f"on line {_line(unknown.to_numpy())}"
        )
    return text.to_numpy()


def _runs(df: pd.DataFrame, hyper: list[str]) -> np.ndarray:
    """An integer id per run; rows with a blank run_id each form a run of their own."""
    if "run_id" in df:
        codes, _ = pd.factorize(df["run_id"])
    elif hyper:
        codes, _ = pd.factorize(pd.MultiIndex.from_frame(df[[c for c in ("n_params", *hyper, "seed") if c in df]]))
    else:
        return np.arange(len(df))
    blank = codes < 0
    codes[blank] = codes.max() + 1 + np.arange(blank.sum())
    return codes


def fixed_rows(runs: pd.DataFrame, batch_size: float, lr: float) -> pd.DataFrame:
    """Fixed-vs-optimal: the finite fit rows of a validated table trained at one batch size (tokens per step)
    and lr, matched to a relative 1e-6. ConfigError, listing the grid, when there are none."""
    fit = runs[runs["role"] == "fit"]
    at = fit[
        ~fit["diverged"] & np.isclose(fit["batch_size"], batch_size, rtol=1e-6) & np.isclose(fit["lr"], lr, rtol=1e-6)
    ]
    if at.empty:

        def listing(col: str) -> str:
            return ", ".join(f"{v:g}" for v in sorted(fit[col].unique()))

        raise ConfigError(
            f"no finite fit rows at batch_size {batch_size:g} and lr {lr:g}; batch sizes: "
            f"{listing('batch_size')}; lrs: {listing('lr')}"
        )
    return at
