"""Stage A's measurement: the curvature of the loss along B from one surface, the seed noise, the verdict."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from replicate.fit import synthetic_stage_a, validate_runs
from replicate.fit.bootstrap import bootstrap_runs
from replicate.fit.curvature import batch_curvature, seeds_needed, verdict


def stage_a_table(curvature: float, noise: float, seeds: int = 2, rep: int = 0) -> pd.DataFrame:
    """A planted Stage-A sweep: `curvature` per doubling^2 along B, one noise draw per run and seed."""
    return synthetic_stage_a(curvature, noise, seeds, seed=rep)


@pytest.mark.parametrize("planted, expected", [(0.004, "go"), (0.002, "marginal"), (0.0005, "no-go")])
def test_the_surface_recovers_a_planted_curvature_and_exponent(planted, expected):
    out = batch_curvature(validate_runs(stage_a_table(planted, 0.0)), bootstrap=0)
    assert out["curvature_per_doubling2"]["value"] == pytest.approx(planted, rel=0.05)
    assert out["beta_b"]["value"] == pytest.approx(0.808, abs=0.02)
    assert out["verdict"] == expected
    assert out["interior_fraction"]["fraction"] >= 6 / 7  # the planted optimum stays inside the grid
    assert out["lr_law"]["ridge"] == pytest.approx(0.0, abs=0.05)  # the planted lr_opt does not follow B


def test_noise_is_measured_between_seeds_and_the_intervals_cover_the_truth():
    out = batch_curvature(validate_runs(stage_a_table(0.003, 0.004, rep=3)), bootstrap=60, seed=1)
    noise = out["seed_noise"]
    assert noise["seeds"] == 2 and noise["all_cells"]["cells"] == 5 * 4 * 7
    assert 0.002 < noise["all_cells"]["rms"] < 0.008  # run noise 0.4% plus checkpoint noise 0.13%
    low, high = out["curvature_per_doubling2"]["ci95_envelope"]
    assert low < 0.003 < high and out["bootstrap"]["failed"] == 0
    assert out["seeds_needed"] == seeds_needed(out["curvature_per_doubling2"]["value"], noise["near_optimum"]["rms"])


def test_verdict_and_seed_count():
    assert [verdict(c) for c in (0.003, 0.0029, 0.001, 0.00099, float("nan"))] == [
        "go",
        "marginal",
        "marginal",
        "no-go",
        "not measured",
    ]
    assert seeds_needed(0.003, 0.003) == 9  # noise / (curvature / 3) = 3 -> 9 seeds
    assert seeds_needed(0.0, 0.01) is None


def test_a_stratified_bootstrap_keeps_every_stratum_whole():
    strata = np.array([0, 0, 1, 1, 1, 2])
    seen = []
    bootstrap_runs(lambda counts: seen.append(counts.copy()) or {}, 6, 20, ["x"], strata=strata)
    for counts in seen:
        assert [counts[strata == s].sum() for s in range(3)] == [2, 3, 1] and counts[5] == 1


def test_curvature_cli_writes_the_summary_and_rejects_bad_input(tmp_path):
    table = stage_a_table(0.004, 0.002)
    path = tmp_path / "runs.csv"
    table.assign(val_loss_ema=table["val_loss"] * 0.99).to_csv(path, index=False)
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "replicate", "curvature", str(path), "--out", str(out), "--bootstrap", "5"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    for key in ("curvature_per_doubling2", "seed_noise", "interior_fraction", "beta_b", "verdict"):
        assert key in summary
    assert summary["seed_noise"]["ema"]["seeds"] == 2 and summary["ema"]["verdict"] == summary["verdict"]
    assert "verdict go" in done.stdout
    bad = subprocess.run(
        [*cmd[:3], str(tmp_path / "missing.csv"), "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
