"""Reading and checking a table of runs (the sweep's ``runs.csv`` contract, or anyone's (N, D, loss) table).

A stranger's table is read by stated rules, each reported by ``replicate fit``: runs are the rows sharing a
``run_id`` (else the rows sharing n_params, batch_size, lr and seed, those of them present, or the columns
given with --run-columns); a learning rate or batch size written to fewer digits than another within GRID_RTOL
of it, and equal to that one rounded to those digits, is that grid value (the same number, spelled short);
a row is diverged where its ``diverged`` column says so, its loss is not finite, or (by default only in a
table without a ``diverged`` column) its loss exceeds DIVERGED_ABOVE times the best loss at its (N, T).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from replicate.config import FLOP_KINDS
from replicate.errors import ConfigError
from replicate.fit.optima import cluster_tokens

REQUIRED = ("n_params", "tokens", "val_loss")
HYPER = ("batch_size", "lr")
ROLES = ("fit", "holdout")
RUN_COLUMNS = ("n_params", "batch_size", "lr", "seed")  # what tells runs apart in a table without run_id
# lr and B values this close may be one grid value spelled twice: 2.44e-4 is 0.000244140625 written short (a
# short spelling must also be the other value rounded: distinct rates of a continuous sweep stay distinct)
GRID_RTOL = 0.01
# A loss this many times the best at its (N, T) is a diverged run's: a language model that diverges sits near
# ln(vocabulary) (7-11 nats) against a best of 2-5, a diffusion model near the unit noise variance (about 1)
# against 0.1-0.5; slow but stable runs of the project's own sweeps stay within 4x at early checkpoints, so the
# default applies only where a table does not flag divergence itself
DIVERGED_ABOVE = 2.0
_TRUE = {"true", "1", "yes", "t", "y", "1.0"}
_FALSE = {"false", "0", "no", "f", "n", "0.0", "", "nan", "none"}


def read_table(path: str | Path, loss_column: str = "val_loss") -> pd.DataFrame:
    """A runs table from CSV, unchecked; unreadable files raise ConfigError. `loss_column` names another column
    to fit as the loss (e.g. ``val_loss_ema``, the EMA weights' loss of the sweep's table): it replaces
    val_loss, and its ``_se`` column val_loss_se."""
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        reason = getattr(err, "strerror", None) or str(err).strip().splitlines()[0]
        raise ConfigError(f"cannot read {path}: {reason}") from None
    if loss_column != "val_loss":
        if loss_column not in df:
            raise ConfigError(f"{path}: no column {loss_column} to fit as the loss")
        df = df.assign(val_loss=df[loss_column], val_loss_se=df.get(f"{loss_column}_se", np.nan))
    return df


def load_runs(
    path: str | Path,
    loss_column: str = "val_loss",
    *,
    run_columns: list[str] | None = None,
    diverged_above: float | None = None,
) -> pd.DataFrame:
    """`read_table` checked by `validate_runs` (with its run and divergence options)."""
    return validate_runs(
        read_table(path, loss_column), source=str(path), run_columns=run_columns, diverged_above=diverged_above
    )


def validate_runs(
    df: pd.DataFrame,
    source: str = "runs table",
    *,
    run_columns: list[str] | None = None,
    diverged_above: float | None = None,
) -> pd.DataFrame:
    """Check a runs table and return a normalised copy.

    Required: ``n_params`` (parameters), ``tokens`` (training tokens seen), ``val_loss``. With both
    ``batch_size`` (tokens per step) and ``lr`` the hyperparameter stage runs; with neither every row is taken
    as already at its optimum. Optional: ``diverged`` (booleans), ``role`` (fit or holdout; blank = fit),
    ``run_id``, ``flops_6n/paper/exact`` (FLOPs per token), ``width``, ``n_ctx``, ``seed``.

    The copy has float ``n_params, tokens, val_loss`` (NaN where diverged), ``batch_size`` and ``lr`` on their
    canonical grid (`canonical_grid`; the values as written in ``batch_size_given``, ``lr_given``), bool
    ``diverged`` (also set where val_loss is not finite, or far above its (N, T)'s best: `far_above`, flagged
    in ``diverged_by_loss``), ``role``, and ``run``: an integer run index (`run_rule`). `diverged_above`: the
    factor over the best loss at its (N, T) above which a row is diverged; None is DIVERGED_ABOVE in a table
    without a ``diverged`` column and no such test in one with it; inf turns the test off. Validating a
    validated table changes nothing. Anything wrong raises ConfigError with a one-line message.
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
    if diverged_above is not None and not diverged_above > 1:
        raise ConfigError(f"the divergence factor must be above 1 (inf: no test), got {diverged_above:g}")
    out = df.copy()
    for col in ("n_params", "tokens", *present, *(f"flops_{k}" for k in FLOP_KINDS if f"flops_{k}" in df)):
        out[col] = _positive(df[col], col, source)
    for col in present:
        # the values as written survive a second validation, which sees only the canonical ones
        out[f"{col}_given"] = df[f"{col}_given"] if f"{col}_given" in df else out[col]
        out[col] = canonical_grid(out[col].to_numpy())
    loss = _numeric(df["val_loss"], "val_loss", source)
    bad = np.isfinite(loss) & (loss <= 0)
    if bad.any():
        raise ConfigError(
            f"{source}: val_loss must be positive (laws are fitted in log space), got {loss[bad][0]:g}"
            f" on line {_line(bad)}"
        )
    flagged = _booleans(df["diverged"], source) if "diverged" in df else np.zeros(len(df), dtype=bool)
    factor = diverged_above if diverged_above is not None else (np.inf if "diverged" in df else DIVERGED_ABOVE)
    by_loss = far_above(out["n_params"].to_numpy(), out["tokens"].to_numpy(), loss, factor) & ~flagged
    out["diverged_by_loss"] = by_loss | (
        df["diverged_by_loss"].to_numpy(dtype=bool) if "diverged_by_loss" in df else False
    )
    out["diverged"] = flagged | by_loss | ~np.isfinite(loss)
    out["val_loss"] = np.where(out["diverged"], np.nan, loss)
    out["role"] = _roles(df["role"], source) if "role" in df else "fit"
    out["run"] = _runs(out, run_columns, source)
    if out["diverged"].all():
        raise ConfigError(f"{source}: every row is diverged or has no finite val_loss")
    if not (out["role"] == "fit").any():
        raise ConfigError(f"{source}: every row has role holdout; nothing to fit")
    return out


def require_hyperparameters(runs: pd.DataFrame, source: str, what: str) -> None:
    """ConfigError unless the table has both batch_size and lr (`what` needs them)."""
    missing = [c for c in HYPER if c not in runs]
    if missing:
        raise ConfigError(f"{source}: {what} needs batch_size and lr columns; this table has no {' or '.join(missing)}")


def _digits(value: float) -> int:
    """Significant digits of a float as written shortest (repr): 0.000244 has 3, 4096.0 has 4."""
    mantissa = repr(float(value)).lower().split("e")[0].lstrip("-").replace(".", "").lstrip("0").rstrip("0")
    return max(len(mantissa), 1)


def _spelled_short(short: float, full: float) -> bool:
    """`short` is `full` rounded to the digits `short` is written with (and has fewer of them)."""
    d = _digits(short)
    return d < _digits(full) and float(f"{full:.{d}g}") == short


def canonical_grid(values: np.ndarray, rtol: float = GRID_RTOL) -> np.ndarray:
    """Each value on its grid: a value that is another value within `rtol` rounded to fewer digits (2.44e-4 and
    0.000244140625) becomes the most precise such value, provided the candidates are themselves spellings of it;
    every other value stays as it is (a grid whose values are not spellings of each other comes back unchanged)."""
    values = np.asarray(values, dtype=float)
    distinct, inverse = np.unique(values, return_inverse=True)
    canonical = distinct.copy()
    lo = np.searchsorted(distinct, distinct / (1 + rtol), side="left")
    hi = np.searchsorted(distinct, distinct * (1 + rtol), side="right")
    for i, short in enumerate(distinct):
        longer = [w for w in distinct[lo[i] : hi[i]] if _spelled_short(short, w)]
        if longer:
            best = max(longer, key=_digits)
            if all(w == best or _spelled_short(w, best) for w in longer):
                canonical[i] = best
    return canonical[inverse]


def far_above(n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, factor: float) -> np.ndarray:
    """Rows whose finite loss exceeds `factor` times the best finite loss at their (N, T) (T clustered as the
    sweep grid's checkpoints are, `cluster_tokens`)."""
    finite = np.isfinite(loss)
    if not np.isfinite(factor) or not finite.any():
        return np.zeros(len(loss), dtype=bool)
    group = pd.MultiIndex.from_arrays([n_params, cluster_tokens(tokens)])
    best = pd.Series(np.where(finite, loss, np.inf)).groupby(pd.factorize(group)[0]).transform("min").to_numpy()
    return finite & (loss > factor * best)


def run_rule(columns: pd.Index | list[str], run_columns: list[str] | None = None) -> tuple[list[str], str]:
    """How rows are told apart into runs: (the columns, the rule in words). A ``run_id`` column names the runs;
    else `run_columns`, else the RUN_COLUMNS present: rows sharing their values are the checkpoints of one run
    (where such rows share a token count they are several runs, dealt out in table order)."""
    if run_columns:
        return list(run_columns), f"rows sharing {', '.join(run_columns)} (--run-columns)"
    if "run_id" in columns:
        return ["run_id"], "rows sharing a run_id"
    cols = [c for c in RUN_COLUMNS if c in columns]
    return cols, f"rows sharing {', '.join(cols)} (no run_id column)"


def grid_summary(runs: pd.DataFrame) -> dict | None:
    """The (B, lr) grid of a validated table: its values and how many spellings were merged into them."""
    if "batch_size" not in runs:
        return None
    out = {}
    for col in HYPER:
        given = runs.get(f"{col}_given", runs[col])
        out[col] = sorted(float(v) for v in runs[col].unique())
        out[f"{col}_merged"] = int(given.nunique() - runs[col].nunique())
    out["rtol"] = GRID_RTOL
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


def _runs(df: pd.DataFrame, run_columns: list[str] | None, source: str) -> np.ndarray:
    """An integer id per run by `run_rule`; rows with a blank run_id each form a run of their own."""
    cols, _ = run_rule(df.columns, run_columns)
    unknown = [c for c in cols if c not in df]
    if unknown:
        raise ConfigError(f"{source}: --run-columns names no column {', '.join(unknown)}")
    if cols == ["run_id"]:
        codes, _ = pd.factorize(df["run_id"])
        blank = codes < 0
        codes[blank] = codes.max() + 1 + np.arange(blank.sum())
        return codes
    group = df.groupby(cols, sort=False, dropna=False).ngroup().to_numpy()
    # rows of one group at one token count cannot be checkpoints of one run: the k-th of them goes to run k
    nth = pd.DataFrame({"group": group, "tokens": df["tokens"].to_numpy()}).groupby(["group", "tokens"]).cumcount()
    nth = nth.to_numpy()
    return pd.factorize(pd.MultiIndex.from_arrays([group, nth]))[0]


def fixed_rows(runs: pd.DataFrame, batch_size: float, lr: float) -> pd.DataFrame:
    """Fixed-vs-optimal: the finite fit rows of a validated table trained at one batch size (tokens per step)
    and lr, each matched to its grid value within GRID_RTOL. ConfigError, listing the grid, where no grid value
    matches, or where that (B, lr) cell has no run at some (N, T) of the fit rows (its law would stand on
    other points than the optimal one's)."""
    fit = runs[runs["role"] == "fit"]

    def grid_value(col: str, value: float) -> float:
        grid = np.sort(fit[col].unique())
        near = grid[np.isclose(grid, value, rtol=GRID_RTOL, atol=0)]
        if not len(near):
            listing = ", ".join(f"{v:g}" for v in grid)
            raise ConfigError(f"the fixed {col} {value:g} is no value of the grid ({col}: {listing})")
        return float(near[np.argmin(np.abs(near - value))])

    b, eta = grid_value("batch_size", batch_size), grid_value("lr", lr)
    cell = fit[(fit["batch_size"] == b) & (fit["lr"] == eta)]
    if cell.empty:
        raise ConfigError(f"no run at the fixed batch_size {b:g} and lr {eta:g} (the grid has no such cell)")
    points = pd.MultiIndex.from_arrays([fit["n_params"], cluster_tokens(fit["tokens"].to_numpy())])
    covered = set(points[fit.index.isin(cell.index)])
    missing = [p for p in dict.fromkeys(points) if p not in covered]
    if missing:
        named = ", ".join(f"(N={n:.3g}, T={t:.3g})" for n, t in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ConfigError(
            f"the fixed batch_size {b:g} and lr {eta:g} have no run at {len(missing)} of {len(set(points))} "
            f"(N, T): {named}"
        )
    at = cell[~cell["diverged"]]
    if at.empty:
        raise ConfigError(f"every run at the fixed batch_size {b:g} and lr {eta:g} diverged")
    return at
