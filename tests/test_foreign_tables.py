"""``replicate fit`` on a stranger's table: each way such a table used to be misread, on a generated table that
reproduces it (the numbered points of the foreign-table issue), and the prediction a stranger wants from it."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replicate.fit import TRUTH, fit_runs, synthetic_sweep, validate_runs
from replicate.fit.document import _estimators, summary_lines
from replicate.fit.laws import hyperparameter_law
from replicate.fit.table import read_table


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replicate", *args], capture_output=True, text=True, timeout=300)


def _one_line_exit_2(done: subprocess.CompletedProcess, match: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and match in done.stderr and "Traceback" not in done.stderr


def _llm_table(sizes: int = 4, checkpoints: int = 5) -> pd.DataFrame:
    """An LLM-style table without run_id: every size validated at several token counts of one run."""
    n, t = np.meshgrid(np.geomspace(1e7, 1e9, sizes), np.geomspace(1e9, 1e11, checkpoints), indexing="ij")
    loss = 1.7 + 400 / n**0.34 + 400 / t**0.28
    return pd.DataFrame({"n_params": n.ravel(), "tokens": t.ravel(), "val_loss": loss.ravel()})


@pytest.fixture(scope="module")
def small_sweep() -> pd.DataFrame:
    return synthetic_sweep(widths=(32, 48, 64, 96), tokens=tuple(2.0**k for k in range(20, 24)), seed=1)


# 1. runs without a run_id column


def test_runs_without_run_id_follow_the_stated_rule(tmp_path):
    table = _llm_table()
    runs = validate_runs(table)
    assert runs["run"].nunique() == 4  # one run per size, its 5 checkpoints together (was: every row a run)
    assert validate_runs(table, run_columns=["n_params", "tokens"])["run"].nunique() == 20
    # rows of one (N, B, lr) at one token count cannot be one run: the budgets of a per-budget schedule
    twice = pd.concat([table, table]).assign(batch_size=1024.0, lr=1e-3)
    assert validate_runs(twice)["run"].nunique() == 8
    path = tmp_path / "llm.csv"
    table.to_csv(path, index=False)
    done = _cli("fit", str(path), "--out", str(tmp_path / "fit.json"), "--bootstrap", "0")
    assert done.returncode == 0, done.stderr
    assert "20 rows, 4 runs (rows sharing n_params (no run_id column))" in done.stdout
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["n_runs"] == 4 and fit["runs"]["n_checkpoints"] == 20
    other = _cli(
        "fit", str(path), "--out", str(tmp_path / "f.json"), "--bootstrap", "0", "--run-columns", "n_params,tokens"
    )
    assert other.returncode == 0 and "20 runs (rows sharing n_params, tokens (--run-columns))" in other.stdout
    _one_line_exit_2(
        _cli("fit", str(path), "--out", str(tmp_path / "g.json"), "--run-columns", "n_params,width"),
        "names no column width",
    )


def test_the_projects_own_tables_keep_their_runs():
    """A run_id column decides; and on the project's own table the stated rule finds the very same runs."""
    raw = read_table(Path(__file__).resolve().parents[1] / "results" / "cpu" / "runs.csv")
    runs = validate_runs(raw)
    assert runs["run"].nunique() == raw["run_id"].nunique()
    by_rule = validate_runs(raw.drop(columns="run_id"))
    pairs = pd.crosstab(runs["run"], by_rule["run"]) > 0
    assert (pairs.sum(axis=1) == 1).all() and (pairs.sum(axis=0) == 1).all()
    # nothing else about the table changes: its grid, its diverged rows
    assert (runs["lr"] == raw["lr"]).all() and (runs["batch_size"] == raw["batch_size"]).all()
    assert (runs["diverged"] == (raw["diverged"].astype(bool) | ~np.isfinite(raw["val_loss"]))).all()
    assert not runs["diverged_by_loss"].any()


# 2. rates written with different precision


def test_rates_written_short_are_one_grid_value(small_sweep, tmp_path):
    lrs = np.sort(small_sweep["lr"].unique())
    short = small_sweep.assign(lr=[float(f"{v:.4g}") if i % 2 else v for i, v in enumerate(small_sweep["lr"])])
    assert short["lr"].nunique() == 2 * len(lrs)  # the failure: twice the grid, cells split in two
    runs = validate_runs(short)
    assert np.allclose(np.sort(runs["lr"].unique()), lrs, rtol=1e-12)
    path = tmp_path / "runs.csv"
    short.drop(columns="run_id").to_csv(path, index=False)
    fixed = f"{lrs[3]:.4g}"  # as a reader of the paper would type it
    done = _cli("fit", str(path), "--out", str(tmp_path / "fit.json"), "--bootstrap", "0", "--fixed-batch-size", "4096",
                "--fixed-lr", fixed)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        f"lrs {', '.join(f'{v:g}' for v in lrs[:3])}" in done.stdout and f"({len(lrs)} spellings merged)" in done.stdout
    )
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["fixed"]["lr"] == pytest.approx(float(fixed)) and fit["grid"]["lr_merged"] == len(lrs)
    _one_line_exit_2(
        _cli("fit", str(path), "--out", str(tmp_path / "x.json"), "--fixed-batch-size", "4096", "--fixed-lr", "0.03"),
        "fixed lr 0.03 is no value of the grid",
    )
    # the fixed cell trained at every size but one: its law would stand on other points than the optimal one's
    gap = short[~((short["batch_size"] == 4096) & np.isclose(short["lr"], lrs[3], rtol=1e-3) & (short["width"] == 96))]
    gap.to_csv(path, index=False)
    _one_line_exit_2(
        _cli("fit", str(path), "--out", str(tmp_path / "x.json"), "--fixed-batch-size", "4096", "--fixed-lr", fixed),
        "have no run at 4 of 16 (N, T)",
    )


# 3. diverged runs without a flag


def test_diverged_runs_without_a_flag_are_detected_and_excluded(small_sweep):
    # a stranger's log: no diverged column, a diverged run's loss recorded as a large finite number
    foreign = small_sweep.drop(columns=["diverged", "run_id"]).assign(val_loss=small_sweep["val_loss"].fillna(10.0))
    assert not validate_runs(foreign, diverged_above=math.inf)["diverged"].any()  # the failure: all taken as data
    planted = int(small_sweep["diverged"].sum())
    runs = validate_runs(foreign)
    assert planted > 0 and (runs["diverged"] == small_sweep["diverged"]).all()
    fit = fit_runs(foreign, bootstrap=0)
    assert fit["divergence"]["n_rows_by_loss"] == planted and fit["n_diverged"] == planted
    assert any("taken as diverged" in w for w in fit["warnings"])
    # the lr law for a model 5x beyond the table stays near the planted one (with the rows in: a third of it)
    law = fit["surface"]["lr_law"] if fit["surface"]["converged"] else fit["lr_law"]
    n, t = 5e6, 2.0**23
    predicted = hyperparameter_law(t, n, **{k: law[k] for k in ("coef", "exp_tokens", "exp_params")})
    assert predicted / hyperparameter_law(t, n, **TRUTH["lr_law"]) == pytest.approx(1.0, abs=0.25)
    with pytest.raises(Exception, match="above 1"):
        validate_runs(foreign, diverged_above=0.5)


# 4. two estimators that disagree


def _coupled_table() -> pd.DataFrame:
    """A loss surface with an N x T term the additive law lacks: its N_opt and the IsoFLOP minima part ways."""
    rng = np.random.default_rng(0)
    rows = []
    for n in np.geomspace(1e7, 1e9, 12):
        for t in np.geomspace(1e7, 3e11, 24):
            if n <= t <= 1000 * n:
                loss = 1.8 + 400 * n**-0.34 + 410 * t**-0.28 + 100 * (n / t) ** 0.5 * n**-0.2
                rows.append((f"N{n:.0f}", n, t, loss * (1 + 1e-4 * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["run_id", "n_params", "tokens", "val_loss"])


def test_estimators_that_disagree_are_both_shown_and_flagged():
    fit = fit_runs(_coupled_table(), bootstrap=60, flops="6n")
    (pair,) = [p for p in fit["estimators"] if p["quantity"] == "N_opt exponent"]
    law, iso = pair["estimates"]["loss law"], pair["estimates"]["IsoFLOP"]
    assert pair["disagree"] and (law["ci95"][0] > iso["ci95"][1] or iso["ci95"][0] > law["ci95"][1])
    lines = summary_lines(fit)
    assert any(line.startswith("estimators disagree on the N_opt exponent: loss law") for line in lines)
    assert any("(IsoFLOP)" in line and "(loss law" in line for line in lines)  # both, not one headline
    assert any("exclude each other" in w for w in fit["warnings"])


def test_estimator_pairs_cover_the_hyperparameter_laws():
    def law(value: float, lo: float, hi: float) -> dict:
        return {"exp_tokens": value, "ci95": {"exp_tokens": [lo, hi]}}

    result = {"batch_size_law": law(0.3, 0.2, 0.4), "surface": {"batch_size_law": law(0.8, 0.7, 0.9)}}
    warnings: list[str] = []
    (pair,) = _estimators(result, warnings)
    assert pair["quantity"] == "B_opt exponent in T" and pair["disagree"] and len(warnings) == 1
    result["surface"]["batch_size_law"] = law(0.35, 0.3, 0.9)
    assert not _estimators(result, [])[0]["disagree"]


# 5. a loss law that does not converge


def test_a_loss_law_that_does_not_converge_still_predicts_flagged():
    # L_inf and a nearly flat N term trade off: the law has no strict minimum (alpha_N is not pinned)
    table = _llm_table(5, 4).assign(role="fit")
    table["val_loss"] = 1.7 + 400 / table["n_params"] ** 0.02 + 400 / table["tokens"] ** 0.28
    held = pd.DataFrame({"n_params": [3e9], "tokens": [1e11], "role": "holdout"})
    held["val_loss"] = 1.7 + 400 / held["n_params"] ** 0.02 + 400 / held["tokens"] ** 0.28
    fit = fit_runs(pd.concat([table, held], ignore_index=True), bootstrap=0)
    assert not fit["loss_law"]["converged"]
    (row,) = fit["holdout"]
    assert row["predicted_val_loss"] is not None and row["loss_law_converged"] is False  # was: withheld (NaN)
    compute = fit["compute_law"]
    assert compute["exp"] is not None and compute["loss_law_converged"] is False
    lo, hi = compute["alpha_params_range95"]
    assert lo <= fit["loss_law"]["alpha_params"] <= hi
    assert any("not converged" in line and "alpha_N within" in line for line in summary_lines(fit))


# 6. one model size


def test_one_model_size_leaves_n_opt_not_identified(tmp_path):
    path = tmp_path / "one.csv"
    _llm_table(1, 6).to_csv(path, index=False)
    out = tmp_path / "fit.json"
    done = _cli("fit", str(path), "--out", str(out), "--bootstrap", "0")
    assert done.returncode == 0, done.stderr
    assert "N_opt: not identified (one model size)" in done.stdout and "N_opt ~" not in done.stdout
    compute = json.loads(out.read_text())["compute_law"]
    assert compute["exp"] is None and compute["identified"] is False
    _one_line_exit_2(_cli("predict", "--flops", "1e20", "--fit", str(out)), "no compute law")


# 7. curvature on a table without batch_size and lr


def test_curvature_without_hyperparameters_is_one_line(tmp_path):
    path = tmp_path / "llm.csv"
    _llm_table().to_csv(path, index=False)
    _one_line_exit_2(_cli("curvature", str(path), "--out", str(tmp_path / "c.json")), "needs batch_size and lr")
    _one_line_exit_2(_cli("lrlaw", str(path), "--out", str(tmp_path / "l.json")), "needs batch_size and lr")


# acceptance: what a stranger wants from the fit


def test_predict_on_a_foreign_fit_beyond_its_sizes(small_sweep, tmp_path):
    foreign = small_sweep.drop(columns=["run_id", "diverged"])  # diverged rows: blank losses
    foreign = foreign.assign(lr=[float(f"{v:.3g}") for v in foreign["lr"]])
    path, out = tmp_path / "theirs.csv", tmp_path / "fit.json"
    foreign.to_csv(path, index=False)
    assert _cli("fit", str(path), "--out", str(out), "--bootstrap", "20").returncode == 0
    n_new = 4 * foreign["n_params"].max()
    done = _cli("predict", "--fit", str(out), "--params", f"{n_new:g}", "--tokens", "1e7", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("lr", "val_loss", "batch_size"):
        lo, hi = result["ci95"][key]
        assert lo <= result["prediction"][key] <= hi and lo < hi, key
    truth = hyperparameter_law(1e7, n_new, **TRUTH["lr_law"])
    assert result["ci95"]["lr"][0] / 2 < truth < 2 * result["ci95"]["lr"][1]
