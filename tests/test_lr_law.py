"""The learning-rate law at a fixed batch size (replicate.fit.lr_law, ``replicate lrlaw``), on planted sweeps."""

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from replicate.fit.lr_law import fit_lr_law, lr_exponents_at_fixed_batch
from replicate.fit.table import validate_runs
from replicate.report import lr_law_claim


def level(n: float, t: float) -> float:
    """The planted lr-optimal loss: the paper's additive form."""
    return 0.05 * (t / 1e6) ** -0.3 + 0.05 * (n / 1e5) ** -0.3 + 0.02


def planted(
    e_t: float = -0.2,
    e_n: float = -0.3,
    ridge: float = 0.6,
    sizes: tuple[int, ...] = (25_000, 56_000, 150_000, 310_000),
    noise: float = 0.002,
    seed: int = 0,
    holdout: int | None = None,
) -> pd.DataFrame:
    """A sweep whose optimal lr is 1e-3 (T / 1e6)^e_T (N / 1e5)^e_N (B / 64)^ridge: 6 rates x sqrt(2) apart
    around it at the middle checkpoint, 2 batch sizes, 2 seeds, 5 checkpoints; log L = log level(N, T) + c(v) v^2
    (1.5% and 4% per octave^2 below and above the vertex) + a run's offset + checkpoint noise. A `holdout`
    size trains at the smaller batch size only."""
    rng = np.random.default_rng(seed)
    rows = []
    tokens = [2**20 * 2 ** (k / 2) for k in range(5)]
    for n in (*sizes, *([holdout] if holdout else [])):
        for b in (64, 256) if n != holdout else (64,):
            centre = 1e-3 * (tokens[2] / 1e6) ** e_t * (n / 1e5) ** e_n * (b / 64) ** ridge
            for s in (0, 1):
                for k in range(6):
                    lr = centre * 2 ** ((k - 2.5) / 2)
                    offset = rng.normal(0, noise)
                    for t in tokens:
                        star = 1e-3 * (t / 1e6) ** e_t * (n / 1e5) ** e_n * (b / 64) ** ridge
                        v = math.log(lr / star)
                        c = (0.015 if v < 0 else 0.04) / math.log(2) ** 2
                        log_loss = math.log(level(n, t)) + c * v * v + offset + rng.normal(0, noise / 3)
                        rows.append(
                            {"n_params": n, "tokens": t, "batch_size": b, "lr": lr, "seed": s,
                             "val_loss": math.exp(log_loss), "role": "holdout" if n == holdout else "fit",
                             "run_id": f"{n}-{b}-{s}-{k}"}
                        )  # fmt: skip
    return validate_runs(pd.DataFrame(rows))


def test_the_planted_exponents_and_ridge_are_recovered_within_their_intervals():
    doc = fit_lr_law(planted(), bootstrap=60)
    for key, truth in (("lr_exponent_tokens", -0.2), ("lr_exponent_params", -0.3), ("ridge", 0.6)):
        est = doc[key]
        assert est["value"] == pytest.approx(truth, abs=0.03), key
        assert est["ci95"][0] <= truth <= est["ci95"][1], key
    assert [r["value"] for r in doc["ridge_by_size"]] == pytest.approx([0.6] * 4, abs=0.05)
    below, above = doc["curvature_per_octave2"]["below"]["value"], doc["curvature_per_octave2"]["above"]["value"]
    assert below == pytest.approx(0.015, rel=0.2) and above == pytest.approx(0.04, rel=0.2)
    # the paper's laws at this ridge imply e_T = -0.045 - 0.808 r: far from the planted -0.2, so excluded
    implied = doc["paper_implied"]["lr_exponent_tokens"]["value"]
    assert implied == pytest.approx(lr_exponents_at_fixed_batch(doc["ridge"]["value"])["tokens"])
    words, numbers = lr_law_claim(doc)
    assert "in T: excludes the paper's value" in words and "ridge r = 0.6" in numbers
    # what the measured e_T implies for beta_B given the paper's beta_eta: (beta_eta - e_T) / r
    beta_b = doc["implied"]["beta_b_given_paper_beta_eta"]["value"]
    assert beta_b == pytest.approx((-0.0453 - doc["lr_exponent_tokens"]["value"]) / doc["ridge"]["value"])
    assert len(doc["bootstrap"]["samples"]["e_t"]) == 60 and doc["bootstrap"]["failed"] == 0
    assert all(v["lr_star"] > 0 for v in doc["vertices"])


def test_a_cell_near_divergence_is_left_out_and_counted():
    runs = planted(sizes=(25_000, 150_000))
    clean = fit_lr_law(runs, bootstrap=0)
    spiked = runs.copy()
    spiked.loc[spiked["lr"].idxmax(), "val_loss"] *= 1.8  # the highest rate, one checkpoint: a loss spike
    doc = fit_lr_law(spiked, bootstrap=0)
    assert clean["fit"]["unstable_cells"] == 0 and doc["fit"]["unstable_cells"] == 1
    assert doc["fit"]["cells"] == clean["fit"]["cells"] - 1
    assert doc["lr_exponent_tokens"]["value"] == pytest.approx(clean["lr_exponent_tokens"]["value"], abs=0.01)


def test_a_planted_paper_law_agrees_and_one_size_leaves_n_unidentified():
    r = 0.6
    implied = lr_exponents_at_fixed_batch(r)
    doc = fit_lr_law(planted(e_t=implied["tokens"], e_n=implied["params"], ridge=r), bootstrap=40)
    words, _ = lr_law_claim(doc)
    assert words == "in T: agrees; in N: agrees"
    # a second readout of the same runs: a verdict both give says so, one that differs is given beside it
    other = fit_lr_law(planted(e_t=implied["tokens"], e_n=-0.6, ridge=r), bootstrap=40)
    words, numbers = lr_law_claim(doc, other)
    assert (
        words == "in T: agrees (both readouts); in N: agrees (raw weights; the EMA readout: excludes the paper's value)"
    )
    assert f"EMA readout: lr* ~ N^{other['lr_exponent_params']['value']:.3f}" in numbers
    one = fit_lr_law(planted(sizes=(56_000,)), bootstrap=20)
    assert one["lr_exponent_params"] is None and one["paper_implied"]["measured_minus_implied"]["params"] is None
    assert "in N: not identified (one model size)" in lr_law_claim(one)[0]


def test_the_held_out_model_is_predicted_by_the_law_and_by_the_loss_law_at_the_optima():
    from replicate.fit.heldout import heldout_summary
    from replicate.fit.read import HeldoutSummary, LrLawDocument

    runs = planted(holdout=600_000)
    lr_doc, summary = heldout_summary(runs, bootstrap=30)
    # fit.read's schemas name every key (the command adds the readout, units, source and provenance)
    assert lr_doc.keys() == LrLawDocument.__annotations__.keys() - {"readout", "units", "source", "provenance"}
    assert summary.keys() == HeldoutSummary.__annotations__.keys() - {"readout", "units", "source", "provenance"}
    assert lr_doc["lr_exponent_tokens"]["value"] == pytest.approx(-0.2, abs=0.03)
    held = summary["heldout"]
    assert held["n_params"] == 600_000 and held["batch_size"] == 64
    # the checkpoints whose T/N lies in the fitting range (3.4 to 168): T >= 2.0M of 1.0M ... 4.2M
    assert [c["tokens"] for c in held["checkpoints"]] == pytest.approx([2**21, 2**21.5, 2**22])
    for ratio in summary["heldout_lr_ratio"]:
        assert ratio["value"] == pytest.approx(1.0, abs=0.08) and ratio["ci95"][0] <= 1.0 <= ratio["ci95"][1]
    for error, check in zip(summary["heldout_loss_error"], held["checkpoints"], strict=True):
        assert abs(error["value"]) < 0.01
        assert check["loss"] == pytest.approx(level(600_000, check["tokens"]), rel=0.01)
    # the loss law at the optima carries its own intervals, from the same resamples: they hold the planted
    # exponents (0.3 in T and N, level's) and the fit's point
    law = held["loss_law"]
    for key, planted_value in (("alpha_tokens", 0.3), ("alpha_params", 0.3)):
        lo, hi = law["ci95"][key]
        assert lo <= law[key] <= hi and lo - 0.05 <= planted_value <= hi + 0.05, key
    assert law["ci95"].keys() == {"a", "alpha_tokens", "b", "alpha_params", "l_inf"}
    # the planted loss does not depend on B at the lr optimum: every gap is noise about 0
    assert len(summary["batch_gap"]) == 4 * 5
    assert all(abs(g["value"]) < 0.01 for g in summary["batch_gap"])
    assert summary["ridge_spread"] < 0.1


def test_the_lr_optima_carry_each_seeds_deviation_from_its_cells_mean_in_a_resample():
    from replicate.fit.heldout import HeldOut, heldout_summary
    from replicate.fit.lr_law import LrLawFit

    runs = planted(holdout=600_000)
    shifted = runs.assign(val_loss=runs["val_loss"] * np.where(runs["seed"] == 1, 1.02, 1.0))  # seed 1: +2%
    law = LrLawFit(shifted)
    held = HeldOut(law, shifted)
    point = held.optimum(law.q, law.y)
    # seed 0's clusters weighted +1, seed 1's -1: each cell's mean moves by (l0 - l1) / sqrt(2), the deviation
    # of a seed times sqrt(2 / (2 - 1)); a weight of 0 leaves the data's optima
    seed_of = law.cells.drop_duplicates("cluster").set_index("cluster")["seed"].sort_index()
    signs = np.where(seed_of.to_numpy() == 0, 1.0, -1.0)
    moved = held.optimum(law.q, law.y, signs)["loss"] / point["loss"] - 1
    assert moved.to_numpy() == pytest.approx(-0.02 / 1.01 / math.sqrt(2), abs=0.002)
    assert held.optimum(law.q, law.y, np.zeros(law.clusters))["loss"].to_numpy() == pytest.approx(point["loss"])
    # k seeds: sqrt(k / (k - 1)) on each deviation (sqrt(3/2) for three); one seed, none
    loss = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 7.0])
    held._groups = pd.DataFrame({"n_params": [1, 1, 1, 2, 2, 3], "tokens": 1.0, "batch_size": 1.0})
    assert held._seed_deviations(loss) == pytest.approx([-(1.5**0.5), 0, 1.5**0.5, -(2**0.5) / 2, 2**0.5 / 2, 0])
    # so the bootstrap's batch gaps and loss law widen with the seeds' spread, which a level per seed would hide
    half = {}
    for name, table in (("plain", runs), ("shifted", shifted)):
        summary = heldout_summary(table, bootstrap=40)[1]
        half[name] = np.median([(hi - lo) / 2 for lo, hi in (g["ci95"] for g in summary["batch_gap"])])
    assert half["shifted"] > 0.005 > 3 * half["plain"], half


def test_the_held_out_verdicts_read_the_intervals_and_its_figure_shares_one_t_axis():
    import copy

    from replicate.fit.heldout import heldout_summary
    from replicate.report.figures import heldout_figure
    from replicate.report.lr_law import heldout_lines

    lr_doc, summary = heldout_summary(planted(holdout=600_000), bootstrap=20)
    lr_line, loss_line, law_line = heldout_lines(summary)
    assert "within the goal of x1.25. The law's lr* " in lr_line and "over 3 checkpoints" in lr_line
    assert "within the goal of 1%" in loss_line
    # the law's own exponents against the paper's, by their intervals: the planted 0.3 in N is narrow and apart
    # from the paper's 0.3188
    law = summary["heldout"]["loss_law"]
    assert f"alpha_N = {law['alpha_params']:.3f} [" in law_line and "(the paper's 0.3188: excludes" in law_line
    fig = heldout_figure(summary, lr_doc)
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()

    def with_errors(*errors: tuple[float, float, float], noise: dict | None = None) -> dict:
        changed = copy.deepcopy(summary)
        changed["heldout_loss_error"] = [{"tokens": 0.0, "value": v, "ci95": [lo, hi]} for v, lo, hi in errors]
        changed["heldout_seed_noise"] = noise  # the intervals as given, unless a seed noise is planted
        return changed

    # a point inside the goal whose interval crosses it is not called within; a wholly outside one is outside
    crossing = heldout_lines(with_errors((-0.008, -0.012, -0.005), (-0.002, -0.004, -0.001)))[1]
    assert "-0.80% [-1.20, -0.50]% at worst over 2 checkpoints" in crossing
    assert "not decided against the goal of 1% (a 95% interval crosses it)" in crossing
    assert "lies below the measured loss at 2 of 2 checkpoints (95% intervals)" in crossing
    wide = heldout_lines(with_errors((-0.008, -0.02, 0.005), (0.001, -0.01, 0.01)))[1]
    assert "The prediction is not told from the measured loss at 2 of 2 checkpoints (95% intervals)" in wide
    outside = heldout_lines(with_errors((0.02, 0.015, 0.025), (-0.002, -0.004, 0.001)))[1]
    assert (
        "outside the goal of 1%" in outside
        and "lies above the measured loss at 1 of 2 checkpoints, is not told from it at 1 (95%" in outside
    )
    assert "the paper reports 0.03% and 0.15% at its scale" in outside and "seed noise" not in outside
    # the held-out model's seed noise is in no bootstrap interval: 0.4% for a mean of 2 seeds adds 0.55% at 95%
    # in quadrature on each side: [-0.8 - hypot(0.4, 0.554), -0.8 + hypot(0.3, 0.554)]
    noise = {"seeds": 2, "near_optimum": {"rms": 0.004, "cells": 7}}
    noisy = heldout_lines(with_errors((-0.008, -0.012, -0.005), noise=noise))
    assert "-0.80% [-1.48, -0.17]% at worst" in noisy[1]
    assert "add the held-out model's own seed noise (0.40% between its 2 seeds near its optimum, over 7" in noisy[1]
    # the table of checkpoints gives the same, wider, intervals, by hand
    from replicate.report.lr_law import heldout_table

    first = summary["heldout"]["checkpoints"][0]["loss_error"]
    v, (lo, hi), seed = first["value"], first["ci95"], 1.96 * 0.004 / math.sqrt(2)
    wide = (
        f"{100 * v:+.2f}% [{100 * (v - math.hypot(v - lo, seed)):+.2f}, {100 * (v + math.hypot(hi - v, seed)):+.2f}]%"
    )
    assert heldout_table(with_errors((0.0, 0.0, 0.0), noise=noise))["loss error"].iloc[0] == wide
    ratios = copy.deepcopy(summary)
    ratios["heldout_lr_ratio"] = [{"tokens": 0.0, "value": 0.7, "ci95": [0.6, 0.78]}]
    assert heldout_lines(ratios)[0].endswith(
        "outside the goal of x1.25. The law's lr* lies below the vertex at 1 of 1 checkpoint (95% intervals)."
    )
    ratios["heldout_lr_ratio"] += [{"tokens": 1.0, "value": 1.1, "ci95": [0.95, 1.2]}]
    assert heldout_lines(ratios)[0].endswith(
        "lies below the vertex at 1 of 2 checkpoints, is not told from it at 1 (95% intervals)."
    )


def test_the_lr_star_figure_draws_the_paper_implied_slopes_through_the_fitted_law():
    from replicate.report.figures import lr_star_figure

    doc = fit_lr_law(planted(), bootstrap=10)
    fig = lr_star_figure(doc, 64.0)
    for ax, key in zip(fig.axes, ("tokens", "params"), strict=True):
        (line,) = [line for line in ax.get_lines() if line.get_label().startswith("paper-implied slope")]
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        slope = np.log(y[-1] / y[0]) / np.log(x[-1] / x[0])
        assert slope == pytest.approx(doc["paper_implied"][f"lr_exponent_{key}"]["value"], rel=1e-9)
        assert f"^{slope:.2f})" in line.get_label()


def test_the_batch_gap_sentence_counts_cells_against_the_seed_noise():
    from replicate.report.lr_law import batch_gap_sentence, batch_gap_table

    def gap(n: float, t: float, value: float, half: float) -> dict:
        return {"n_params": n, "tokens": t, "value": value, "ci95": [value - half, value + half]}

    gaps = [gap(1e4, 1e6, 0.012, 0.002), gap(1e5, 1e6, 0.010, 0.002), gap(1e4, 4e6, 0.001, 0.002),
            gap(1e5, 4e6, -0.004, 0.001)]  # fmt: skip
    sentence = batch_gap_sentence({"batch_gap": gaps})
    assert "higher at 3 of 4 (N, T) and lower at 1." in sentence and "seeds' own spread" not in sentence
    assert "lie above zero at 2 and below it at 1; their half-widths (0.10-0.20%) each rest on one" in sentence
    assert sentence.count("no test cell by cell.") == 1
    assert "+1.10% at T = 1.00M tokens and -0.15% at T = 4.00M" in sentence
    # two seeds a cell at 0.4%: a gap of two means varies by 0.4%, so 1.96 times that is 0.78%
    noise = {"seeds": 2, "near_optimum": {"rms": 0.004}}
    sentence = batch_gap_sentence({"batch_gap": gaps, "seed_noise": noise})
    assert (
        "so about 0.40% for a gap" in sentence and "higher by more than 1.96 times that at 2 and lower at 0" in sentence
    )
    assert "the other 2 are not told apart from seed noise cell by cell." in sentence
    assert "no test cell by cell; the pooled comparison above is the one to read." in sentence
    assert list(batch_gap_table({"batch_gap": gaps})["N"]) == ["10,000", "100,000"]  # the book hides the index
    assert batch_gap_sentence({"batch_gap": []}).startswith("No (N, T)")


def test_the_cli_writes_lr_law_json_and_refuses_a_table_without_rates(tmp_path):
    table = tmp_path / "runs.csv"
    planted(sizes=(25_000, 150_000)).to_csv(table, index=False)
    out = tmp_path / "lr_law.json"
    cmd = [sys.executable, "-m", "replicate", "lrlaw", str(table), "--out", str(out), "--bootstrap", "10"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "lr* ~ T^" in done.stdout and json.loads(out.read_text())["source"]["bootstrap"] == 10
    again = subprocess.run([*cmd, "--if-changed"], capture_output=True, text=True)
    assert "up to date" in again.stdout
    summary = tmp_path / "summary.json"
    done = subprocess.run([*cmd, "--summary", str(summary)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(summary.read_text())["heldout"] is None  # no held-out model in this table
    pd.DataFrame({"n_params": [1e5], "tokens": [1e6], "val_loss": [0.1]}).to_csv(table, index=False)
    bad = subprocess.run(cmd, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "batch_size and lr" in bad.stderr


def test_studies_that_disagree_on_an_exponent_are_named_with_their_intervals():
    from replicate.report.lr_law import agreement_lines

    def doc(tokens: tuple, params: tuple | None) -> dict:
        def est(v):
            return None if v is None else {"value": v[0], "ci95": [v[1], v[2]]}

        implied = {"lr_exponent_tokens": {"value": -0.5}, "lr_exponent_params": {"value": -0.27}}
        return {"lr_exponent_tokens": est(tokens), "lr_exponent_params": est(params), "paper_implied": implied}

    same = {"a": doc((-0.2, -0.25, -0.15), (-0.3, -0.35, -0.25)), "b": doc((-0.2, -0.3, -0.1), None)}
    assert agreement_lines(same) == []  # both exclude -0.5 in T; only one study measures N
    split = {"a": doc((-0.2, -0.25, -0.15), (-0.23, -0.25, -0.21)), "b": doc((-0.2, -0.3, -0.1), (-0.3, -0.35, -0.26))}
    (line,) = agreement_lines(split)
    assert line.startswith("The rows disagree on e_N") and "have no value in common" in line and "a's" in line
    assert "-0.230 [-0.25, -0.21]" in line and "agrees" in line and "excludes" in line


def test_carrying_the_ridges_uncertainty_names_a_verdict_it_would_change():
    """The measured-minus-implied interval (resample by resample, sharing r) is held to each verdict: excludes
    where it excludes 0, and only there."""
    from replicate.report.lr_law import ridge_carried_lines

    def doc(measured: tuple, diff: tuple) -> dict:
        implied = {
            "lr_exponent_tokens": {"value": -0.5},
            "lr_exponent_params": {"value": -0.27},
            "measured_minus_implied": {"params": {"value": diff[0], "ci95": [diff[1], diff[2]]}},
        }
        params = {"value": measured[0], "ci95": [measured[1], measured[2]]}
        return {"lr_exponent_tokens": None, "lr_exponent_params": params, "paper_implied": implied}

    # excludes -0.27, and so does the difference: the verdict stands
    (line,) = ridge_carried_lines({"a": doc((-0.23, -0.25, -0.21), (0.04, 0.02, 0.06))})
    assert "a: e_N +0.040 [0.02, 0.06]" in line and "Every verdict above stands" in line
    # excludes -0.27 at the point value of r, but r's own spread makes the difference hold 0: named
    (line,) = ridge_carried_lines({"a": doc((-0.23, -0.25, -0.21), (0.04, -0.01, 0.09))})
    assert line.endswith("With it the verdict changes for a's e_N (agrees).")
    # agrees, yet the difference excludes 0: named too
    (line,) = ridge_carried_lines({"b": doc((-0.27, -0.29, -0.25), (0.03, 0.01, 0.05))})
    assert line.endswith("With it the verdict changes for b's e_N (excludes the paper's value).")
    # agrees, but the difference is as wide as the paper's exponent: not identified once r's spread is carried
    (line,) = ridge_carried_lines({"c": doc((-0.27, -0.29, -0.25), (0.0, -0.2, 0.2))})
    assert line.endswith("With it the verdict changes for c's e_N (not identified).")


def test_the_ridge_sentence_names_sizes_that_disagree_and_what_their_spread_moves():
    """Disjoint per-size intervals are named; the spread moves e_T by spread x beta_B and e_N by spread x gamma_B,
    held against the measured-minus-implied gaps."""
    from replicate.report.lr_law import ridge_sentence

    def doc(sizes: list[tuple], gaps: tuple) -> dict:
        paper = {"beta_b": 0.8, "gamma_b": 0.2, "beta_eta": -0.05, "gamma_eta": -0.16}
        gap = {
            key: {"value": g, "ci95": [g - 0.01, g + 0.01]} for key, g in zip(("tokens", "params"), gaps, strict=True)
        }
        ridges = [{"n_params": n, "value": v, "ci95": [lo, hi]} for n, v, lo, hi in sizes]
        return {
            "ridge_by_size": ridges,
            "ridge": ridges[0],
            "paper_implied": {"paper": paper, "measured_minus_implied": gap},
        }

    apart = ridge_sentence(doc([(100, 0.5, 0.48, 0.52), (200, 0.6, 0.57, 0.63)], (0.3, 0.05)))
    assert "spread 0.10" in apart and "N = 100 and N = 200 have no value in common" in apart
    assert "Were r's level 0.10 higher or lower, the paper-implied e_T would move by 0.080" in apart
    assert "e_N by 0.020" in apart
    assert apart.endswith("each smaller than the gap it would have to close.")
    close = ridge_sentence(doc([(100, 0.5, 0.45, 0.56), (200, 0.6, 0.55, 0.65)], (0.3, 0.01)))
    assert "no value in common" not in close and close.endswith("enough to close a gap.")


def test_an_exponent_implied_given_the_papers_other_is_a_verdict_on_the_pair():
    from replicate.report.lr_law import implied_lines

    paper = {"beta_b": 0.808, "gamma_b": 0.19, "beta_eta": -0.045, "gamma_eta": -0.16}
    doc = {
        "paper_implied": {"paper": paper},
        "implied": {
            "beta_b_given_paper_beta_eta": {"value": 0.36, "ci95": [0.29, 0.43]},
            "gamma_b_given_paper_gamma_eta": {"value": 0.19, "ci95": [0.18, 0.2]},
        },
    }
    excluded, agreed = implied_lines(doc)
    assert (
        excluded.startswith("Given the paper's beta_eta, beta_B = +0.360") and "excludes the paper's pair" in excluded
    )
    assert "the paper's pair agrees" in agreed


def test_the_two_ridge_estimators_say_whether_their_intervals_meet():
    from replicate.report.lr_law import ridge_estimators_line

    sizes = [{"n_params": 1, "value": 0.5, "ci95": [0.49, 0.51]}, {"n_params": 2, "value": 0.65, "ci95": [0.64, 0.66]}]
    doc = {"ridge": {"value": 0.57, "ci95": [0.56, 0.58]}, "ridge_by_size": sizes}
    wide = ridge_estimators_line(doc, {"lr_batch_exponent": {"value": 0.7, "ci95": [0.4, 0.75]}}, "s")
    assert "Their intervals meet" in wide and "the bowl fit's own sizes disagree (N = 1: +0.50 [0.49, 0.51]" in wide
    overlapping = {**doc, "ridge_by_size": [{**sizes[0], "ci95": [0.45, 0.7]}, sizes[1]]}
    assert "disagree" not in ridge_estimators_line(
        overlapping, {"lr_batch_exponent": {"value": 0.7, "ci95": [0.4, 0.75]}}, "s"
    )
    apart = ridge_estimators_line(doc, {"lr_batch_exponent": {"value": 0.7, "ci95": [0.65, 0.75]}}, "s")
    assert "have no value in common" in apart
    assert ridge_estimators_line(doc, {"lr_batch_exponent": None}, "s") is None


def test_stage_l_progress_counts_the_held_out_runs_apart():
    from replicate.profile import load_profile
    from replicate.report.lr_law import heldout_pending, progress_sentence, trained

    profile = load_profile("stage_l")
    fit = [r.run_id for r in profile.runs if r.role == "fit"]
    held = [r.run_id for r in profile.runs if r.role == "holdout"]
    runs = pd.DataFrame({"run_id": [*fit, held[0], held[0], "not-in-the-profile"]})  # two checkpoints of one run
    assert trained(profile, runs) == (len(fit) + 1, len(profile.runs))
    assert trained(profile, runs, "holdout") == (1, len(held))
    assert progress_sentence(profile, runs).startswith(f"{len(fit) + 1} of {len(profile.runs)} runs trained")
    assert f"the held-out model has trained 1 of its {len(held)} runs" in heldout_pending(profile, runs)
    assert f"0 of its {len(held)} runs" in heldout_pending(profile, None)
    assert "has not been trained" in heldout_pending(None, None)


def test_the_seed_noise_sentence_gives_each_studys_readout_beside_its_spread():
    from replicate.profile import load_profile
    from replicate.report.lr_law import seed_noise_sentence

    near = {"rms": 0.0049, "median": 0.0037, "cells": 56}
    summary = {"seed_noise": {"seeds": 2, "all_cells": near, "near_optimum": near}}
    stage_l, stage_a = load_profile("stage_l"), load_profile("stage_a")
    alone = seed_noise_sentence(summary, stage_l, None, None)
    cfg = stage_l.runs[0].cfg
    assert "a relative standard deviation of 0.49%" in alone
    assert f"{cfg.val_examples:,} validation examples scored in {cfg.eval_slices}" in alone
    other = {"seed_noise": {"raw": {"near_optimum": {"rms": 0.0068, "cells": 35}}}}
    both = seed_noise_sentence(summary, stage_l, other, stage_a)
    assert "Stage A's, one model read out on" in both and "0.68% (35 cells)" in both
    assert seed_noise_sentence({}, stage_l, None, None) is None  # a summary written before the entry
    held = {**summary, "heldout_seed_noise": {"seeds": 2, "near_optimum": {"rms": 0.0107, "cells": 7}}}
    assert (
        "cells of the fitting sizes; " in alone
        and ", and the held-out model's 1.07% (7 cells)" in seed_noise_sentence(held, stage_l, None, None)
    )
