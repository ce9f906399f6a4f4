"""``python -m replicate fit``: writes the fit as JSON; bad input gets one line and exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from replicate.fit import synthetic_sweep


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "replicate", "fit", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def sweep_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "runs.csv"
    synthetic_sweep(widths=(32, 48, 64, 96), holdout_widths=(128,), tokens=tuple(2.0**k for k in range(20, 24))).to_csv(
        path, index=False
    )
    return path


def test_fit_writes_the_json(sweep_csv, tmp_path):
    runs = pd.read_csv(sweep_csv)
    lr = float(np.sort(runs["lr"].unique())[3])
    out = tmp_path / "fit.json"
    done = _run(
        str(sweep_csv),
        "--out",
        str(out),
        "--bootstrap",
        "12",
        "--seed",
        "3",
        "--flops",
        "paper",
        "--fixed-batch-size",
        "4096",
        "--fixed-lr",
        repr(lr),
    )
    assert done.returncode == 0, done.stderr
    fit = json.loads(out.read_text())
    assert fit["mode"] == "hyperparameters" and fit["n_rows"] == len(runs) and fit["holdout"]
    assert fit["compute_law"]["flops"] == "paper" and fit["fixed"]["lr"] == lr
    assert fit["bootstrap"]["resamples"] == 12 and fit["loss_law"]["ci95"]["alpha_tokens"] is not None
    assert "hyperparameters" in done.stdout and str(out) in done.stdout
    assert fit["source"]["sha256"] and fit["source"]["bootstrap"] == 12 and fit["provenance"]["git_sha"]


def test_if_changed_skips_only_an_identical_fit(sweep_csv, tmp_path):
    out = tmp_path / "fit.json"
    args = (str(sweep_csv), "--out", str(out), "--bootstrap", "0", "--if-changed")
    assert _run(*args).returncode == 0
    first = out.read_text()
    again = _run(*args)
    assert again.returncode == 0 and "up to date" in again.stdout and out.read_text() == first
    changed = _run(*args[:-2], "1", "--if-changed")  # another bootstrap count: refitted
    assert changed.returncode == 0 and "up to date" not in changed.stdout
    assert json.loads(out.read_text())["source"]["bootstrap"] == 1


def test_fit_takes_a_table_without_hyperparameters(tmp_path):
    n, t = np.meshgrid(np.geomspace(1e6, 1e9, 5), np.geomspace(1e8, 1e10, 4))
    path = tmp_path / "llm.csv"
    pd.DataFrame(
        {"n_params": n.ravel(), "tokens": t.ravel(), "val_loss": (1.7 + 400 / n**0.34 + 400 / t**0.28).ravel()}
    ).to_csv(path, index=False)
    done = _run(str(path), "--out", str(tmp_path / "fit.json"), "--bootstrap", "0")
    assert done.returncode == 0, done.stderr
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["mode"] == "loss_only" and fit["loss_law"]["alpha_params"] == pytest.approx(0.34, abs=1e-3)


def _table(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    return str(path)


def _file(tmp_path, content: bytes) -> str:
    path = tmp_path / "runs.csv"
    path.write_bytes(content)
    return str(path)


def _small() -> pd.DataFrame:
    return pd.DataFrame(
        {"n_params": [1e5, 1e6, 1e7] * 2, "tokens": [1e7] * 3 + [1e8] * 3, "val_loss": [1.0, 0.9, 0.8, 0.9, 0.8, 0.7]}
    )


@pytest.mark.parametrize(
    "make, extra, match",
    [
        (lambda p: str(p / "missing.csv"), [], "cannot read"),
        (lambda p: str(p), [], "cannot read"),
        (lambda p: _file(p, b"\xff\xfe\x00\x81garbage\n\x00\xff"), [], "cannot read"),
        (lambda p: _file(p, b""), [], "cannot read"),
        (lambda p: _table(p, _small().drop(columns="val_loss")), [], "missing column val_loss"),
        (lambda p: _table(p, _small().assign(tokens=["x", 1, 2, 3, 4, 5])), [], "not numeric"),
        (lambda p: _table(p, _small().assign(n_params=0)), [], "must be positive"),
        (lambda p: _table(p, _small().assign(diverged=True)), [], "every row is diverged"),
        (lambda p: _table(p, _small().iloc[:3]), [], "fewer than"),
        (lambda p: _table(p, _small()), ["--fixed-lr", "1e-3"], "both"),
        (
            lambda p: _table(p, _small().assign(batch_size=1024, lr=1e-3)),
            ["--fixed-batch-size", "8", "--fixed-lr", "1"],
            "is no value of the grid",
        ),
        (lambda p: _table(p, _small()), ["--bootstrap", "-1"], ">= 0"),
        (lambda p: _table(p, _small()), ["--flops", "7n"], "invalid choice"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, make, extra, match):
    done = _run(make(tmp_path), "--out", str(tmp_path / "fit.json"), "--bootstrap", "0", *extra)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and match in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "fit.json").exists()


def test_unwritable_output_fails_before_fitting(sweep_csv, tmp_path):
    done = _run(str(sweep_csv), "--out", str(tmp_path / "missing" / "fit.json"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_loss_column_fits_another_column(sweep_csv, tmp_path):
    runs = pd.read_csv(sweep_csv)
    scaled = tmp_path / "scaled.csv"
    runs.assign(val_loss_ema=runs["val_loss"] * 1.5).to_csv(scaled, index=False)
    outs = {}
    for column in ("val_loss", "val_loss_ema"):
        out = tmp_path / f"{column}.json"
        done = _run(str(scaled), "--out", str(out), "--bootstrap", "0", "--loss-column", column)
        assert done.returncode == 0, done.stderr
        outs[column] = json.loads(out.read_text())
    plain, ema = outs["val_loss"]["loss_law"], outs["val_loss_ema"]["loss_law"]
    assert ema["l_inf"] == pytest.approx(1.5 * plain["l_inf"], rel=1e-3)  # the law of 1.5 L
    assert ema["alpha_tokens"] == pytest.approx(plain["alpha_tokens"], abs=1e-3)
    missing = _run(str(sweep_csv), "--out", str(tmp_path / "x.json"), "--loss-column", "val_loss_raw")
    assert missing.returncode == 2 and "no column val_loss_raw" in missing.stderr


def test_predict_reproduces_the_papers_checks_and_gives_intervals_from_a_fit(sweep_csv, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "replicate",
            "predict",
            "--params",
            "1.07e9",
            "--tokens",
            "4e9",
            "--law",
            "paper",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    paper = json.loads(done.stdout)["prediction"]  # the values printed on the paper's held-out figure
    assert paper["batch_size"] == pytest.approx(6.77e4, rel=0.002) and paper["lr"] == pytest.approx(1.86e-4, rel=0.002)
    assert paper["val_loss"] == pytest.approx(0.5185, abs=1e-4)
    out = tmp_path / "fit.json"
    assert _run(str(sweep_csv), "--out", str(out), "--bootstrap", "20").returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "replicate", "predict", "--flops", "1e18", "--fit", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("n_params", "tokens", "batch_size", "lr", "val_loss"):
        lo, hi = result["ci95"][key]
        assert lo <= result["prediction"][key] <= hi, key
    assert result["resamples"] == 20
    for bad in (
        ["--params", "1e6", "--law", "paper"],
        ["--flops", "-1", "--law", "paper"],
        ["--flops", "1e20", "--fit", str(tmp_path / "nope.json")],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "replicate", "predict", *bad], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2 and done.stderr.count("\n") == 1, bad
