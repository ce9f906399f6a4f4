import copy
import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from replicate import report
from replicate.book import hide_parameters
from replicate.fit import fit_runs, synthetic_sweep
from replicate.fit.curvature import seeds_needed


@pytest.mark.parametrize(
    "ours, ci, paper, verdict",
    [
        (0.8, [0.6, 1.0], 0.808, "agrees"),  # contains it, and narrower than it
        (0.3, [0.2, 0.4], 0.808, "excludes the paper's value"),
        (-0.3, [-0.4, -0.2], 0.808, "excludes the paper's value"),
        (0.5, [-0.2, 0.9], 0.808, "not identified"),  # contains it, but as wide as the value itself
        (0.1, None, 0.808, "no interval"),
        (1.0, [0.004, 3.0], 0.3188, "not identified"),
        (-0.05, [-0.12, 0.03], -0.045, "not identified"),
        (-0.05, [-0.06, -0.03], -0.045, "agrees"),
    ],
)
def test_verdicts(ours, ci, paper, verdict):
    assert report.verdict(ours, ci, paper) == verdict


@pytest.mark.parametrize(
    "ours, ci, paper, verdict",
    [
        (1.73, [1.18, 2.7], 1.66, "not identified"),  # excludes 1, but as wide in log as 1.66 is from 1
        (1.6, [1.4, 1.9], 1.66, "agrees"),  # narrower, in log, than ln 1.66
        (2.7, [1.86, 4.31], 1.66, "excludes the paper's value"),
        (8.8e-7, [1.2e-7, 30.4], 1.66, "not identified"),
        (1.5, [-0.5, 3.0], 1.66, "not identified"),  # a non-positive bound: the linear rule
        (1.5, None, 1.66, "no interval"),
    ],
)
def test_a_ratio_is_judged_on_the_log_scale(ours, ci, paper, verdict):
    """A ratio's "no effect" is 1: its interval is as wide as the effect when its log width reaches |ln paper|."""
    from replicate.report.compare import ratio_verdict

    assert ratio_verdict(ours, ci, paper) == verdict


@pytest.fixture(scope="module")
def fit():
    runs = synthetic_sweep(widths=(32, 48, 64, 96), holdout_widths=(128,), tokens=tuple(2.0**k for k in range(20, 24)))
    lr = float(np.sort(runs["lr"].unique())[3])
    b = float(np.sort(runs["batch_size"].unique())[2])
    return runs, fit_runs(runs, fixed_batch_size=b, fixed_lr=lr, bootstrap=30, seed=0)


def test_comparison_table_covers_every_headline(fit):
    _, result = fit
    table = report.comparison(result)
    assert list(table.columns) == ["quantity", "ours", "95% CI", "paper", "ours / paper", "failed resamples", "verdict"]
    quantities = " ".join(table["quantity"])
    for needle in (
        "beta_B",
        "gamma_B",
        "beta_eta",
        "gamma_eta",
        "alpha_T",
        "alpha_N",
        "N_opt exponent",
        "N_opt(fixed hp)",
        "held-out",
        "+-30%",
    ):
        assert needle in quantities, needle
    surface = table[table["quantity"] == "B_opt exponent in T (beta_B) (surface fit)"].iloc[0]
    assert surface["ours"] == pytest.approx(result["surface"]["batch_size_law"]["exp_tokens"])
    assert surface["failed resamples"] == result["bootstrap"]["failed"]["surface"]
    row = table[table["quantity"] == "B_opt exponent in T (beta_B) (per-(N, T) optima)"].iloc[0]
    assert row["ours"] == pytest.approx(result["batch_size_law"]["exp_tokens"])
    assert row["ours / paper"] == pytest.approx(row["ours"] / 0.808)
    assert row["failed resamples"] == result["bootstrap"]["failed"]["batch_size_law"]
    assert row["verdict"] == report.verdict(row["ours"], result["batch_size_law"]["ci95"]["exp_tokens"], 0.808)
    assert report.verdict_lines(table, ["B_opt"])[0].startswith("B_opt exponent in T")
    # optima clamped to the batch grid's edge are bounds: the optima's B_opt law is no measurement, as the claim
    # table says; the surface's rows and the lr law's keep their verdicts
    edged = copy.deepcopy(result)
    edged["optima"][0]["edge"] = "batch_size"
    edged_table = report.comparison(edged).set_index("quantity")["verdict"]
    word = f"not a measurement (1 of {len(result['optima'])} optima on the batch-size edge)"
    assert edged_table["B_opt exponent in N (gamma_B) (per-(N, T) optima)"] == word
    assert edged_table["B_opt exponent in T (beta_B) (surface fit)"] == surface["verdict"]
    assert not edged_table["eta_opt exponent in T (beta_eta) (per-(N, T) optima)"].startswith("not a measurement")
    # no budget brackets N_opt: the ratio row says what the claim table says
    for law in edged["compute_laws"].values():
        law["isoflop"] = None
    ratio_row = next(v for q, v in report.comparison(edged).set_index("quantity")["verdict"].items() if "fixed hp" in q)
    assert ratio_row == report.claim_verdicts(edged).loc[3, "verdict"] and ratio_row.startswith("not measured here")
    other = copy.deepcopy(result)
    other["loss_law"]["alpha_tokens"] += 0.1
    both = report.exponent_table({"first": result, "second": other}).set_index("quantity")
    assert list(both.columns) == ["paper", "first", "first 95% CI", "second", "second 95% CI"]
    assert both.loc["loss exponent in T", "second"] == pytest.approx(result["loss_law"]["alpha_tokens"] + 0.1)
    assert both.loc["loss exponent in N", "second"] == both.loc["loss exponent in N", "first"]
    assert both.loc["eta_opt exponent in B at fixed (N, T)", "first"] == result["lr_batch_exponent"]["value"]
    assert math.isnan(both.loc["eta_opt exponent in B at fixed (N, T)", "paper"])  # the paper has no such law
    assert "Outside" not in report.rerun_fit_sentence(result, copy.deepcopy(result))
    other["loss_law"]["alpha_tokens"] = result["loss_law"]["ci95"]["alpha_tokens"][1] + 0.1
    sentence = report.rerun_fit_sentence(result, other)
    assert f"loss exponent in T {result['loss_law']['alpha_tokens']:.3g} -> " in sentence
    assert sentence.endswith("not to be trusted).") and "loss exponent in T in the second fit" in sentence


def test_heatmap_and_neighbourhood_spread(fit):
    runs, _ = fit
    n, t = runs["n_params"].min(), runs["tokens"].max()
    grid = report.heatmap(runs, n, t)
    assert grid.shape == (runs["batch_size"].nunique(), runs[runs["n_params"] == n]["lr"].nunique())
    toy = pd.DataFrame([[1.00, 1.05, 3.0], [1.10, 1.02, 2.0], [np.nan, 1.5, 1.03]])
    assert report.neighbourhood_spread(toy) == pytest.approx(10.0)  # best cell in a corner: its 2 x 2 block
    assert report.neighbourhood_spread(toy.iloc[1:, 1:]) == pytest.approx(100 * (2.0 / 1.02 - 1))


def test_grid_table_and_loading(tmp_path, fit):
    runs, result = fit
    assert report.load_study(tmp_path) is None
    runs.assign(tokens_per_sample=64, batch_samples=runs["batch_size"] // 64, width=32, depth=2, heads=2).to_csv(
        tmp_path / "runs.csv", index=False
    )
    (tmp_path / "fit.json").write_text(json.dumps(result))
    study = report.load_study(tmp_path)
    assert study.fit is not None and study.fit_ema is None
    table = report.grid_table(study.runs)
    assert set(table["role"]) == {"fit", "holdout"} and table["runs"].sum() == study.runs["run_id"].nunique()


def test_parameter_cells_are_removed_from_the_book(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("A = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("A = 2", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(A)"),
    ]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    hide_parameters(path)
    tags = [c.metadata.get("tags", []) for c in nbformat.read(path, as_version=4).cells]
    assert tags == [["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], []]


def test_summary_lines_state_every_finding(fit):
    _, result = fit
    line_search = {
        "noise": {"b_noise": {"value": 4.0}},
        "rows": [
            {"eta_opt_predicted": 0.1, "eta_best_measured": 0.11},
            {"eta_opt_predicted": 0.2, "eta_best_measured": 0.19},
        ],
    }
    lines = report.summary_lines(result, line_search)
    text = " ".join(lines)
    for needle in ("B_opt:", "eta_opt follows", "alpha_T", "Fixed vs optimal", "Held-out", "within 10.0%"):
        assert needle in text, needle
    assert f"{result['loss_law']['alpha_tokens']:.3f}" in text
    optima = pd.DataFrame(result["optima"])
    on_b = optima["edge"].fillna("").str.contains("batch_size")
    for end, edge in (("smallest", optima["batch_size"].min()), ("largest", optima["batch_size"].max())):
        n = int((on_b & (optima["batch_size"] == edge)).sum())
        assert (f"{n} at its {end} batch" in text) == (n > 0), end  # both edges counted, each where it is


def test_the_batch_axis_gives_the_surface_fits_ridge_only_where_that_fit_converged(fit):
    from replicate.report import hyperparameter_laws

    runs, result = fit
    by_batch = hyperparameter_laws.batch_axis(runs)
    result = copy.deepcopy(result)
    result["surface"]["lr_law"] = {"ridge": 0.52, "ci95": {"ridge": [0.41, 0.63]}}
    for converged in (True, False):
        result["surface"]["converged"] = converged
        lines = hyperparameter_laws.batch_axis_lines(result, runs, by_batch, None)
        assert any(line.startswith("lr_opt (the surface fit's ridge) grows as B^0.52") for line in lines) == converged
        assert any("did not converge" in line for line in lines) != converged


def test_the_batch_slope_finding_leads_with_the_lr_laws_ridge_and_sets_the_pooled_slope_beside_it(fit):
    """With the learning-rate law, the B exponent is its ridge (the decisive fit, chapter 6c), and the pooled slope
    between the grid's best cells is said to contain it or to exclude it, as its interval does."""
    _, result = fit
    result = copy.deepcopy(result)
    result["lr_batch_exponent"] = {"value": 0.7, "ci95": [0.4, 0.75]}
    law = {"ridge": {"value": 0.58, "ci95": [0.55, 0.6]}, "source": {"runs": "results/stage_l/runs.csv"}}
    line = next(x for x in report.summary_lines(result, lr_law=law) if x.startswith("eta_opt follows"))
    assert line.startswith("eta_opt follows the batch size as B^0.58 [0.55, 0.6] at fixed (N, T)")
    assert "`results/stage_l/`" in line and "B^0.70 [0.4, 0.75]" in line and "its interval contains it" in line
    law["ridge"]["value"] = 0.9
    line = next(x for x in report.summary_lines(result, lr_law=law) if x.startswith("eta_opt follows"))
    assert "excludes it: the two estimates disagree" in line


def test_provenance_table_reads_csv_jsonl_and_json(tmp_path):
    prov = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0", "triton": "3.6.0", "git_sha": "abc"}
    pd.DataFrame([{"x": 1, **prov}, {"x": 2, **prov, "device": "cpu"}]).to_csv(tmp_path / "a.csv", index=False)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"x": i, **prov}) for i in range(3)) + "\n")
    (tmp_path / "c.json").write_text(json.dumps({"value": 1, "provenance": prov}))
    table = report.provenance_table([tmp_path / n for n in ("a.csv", "b.jsonl", "c.json", "missing.csv")])
    assert (
        table["file"].tolist() == ["a.csv", "b.jsonl", "c.json"]
        and (table["in results/"] == tmp_path.as_posix().split("results/", 1)[-1]).all()
    )
    assert table["rows"].tolist()[:2] == [2, 3] and table["device"][0] == "NVIDIA H100 80GB HBM3; cpu"
    assert set(table["git"]) == {"abc"}


def test_rerun_agreement_counts_matching_optima_and_loss_differences():
    rows = [
        {
            "run_id": f"r{b}{lr}",
            "n_params": 100,
            "tokens": t,
            "batch_size": b,
            "lr": lr,
            "val_loss": 1.0 + 0.01 * (b == 64) + 0.02 * (lr == 2) + 0.001 * t,
            "diverged": False,
        }
        for b in (64, 128)
        for lr in (1, 2)
        for t in (1, 2)
    ]
    first = pd.DataFrame(rows)
    second = first.copy()
    flip = (second["tokens"] == 2) & (second["batch_size"] == 64) & (second["lr"] == 1)
    second.loc[flip, "val_loss"] -= 0.05  # the best cell at T = 2 moves to B = 64
    second = second[~((second["tokens"] == 1) & (second["run_id"] == "r1282"))]  # T = 1 lacks a cell
    row = report.rerun_agreement(first, second).iloc[0]
    assert row["(N, T) compared"] == 1 and row["same best cell"] == 0 and row["same best batch"] == 0
    assert row["max |dL/L| (%)"] == pytest.approx(100 * 0.05 / 1.012)
    assert row["median |dL/L| (%)"] == 0
    sentence = report.rerun_sentence(report.rerun_agreement(first, second))
    assert "same at 0 of the 1 (N, T) (of 2) where neither sweep lost a run to divergence, the best" in sentence
    none = report.rerun_sentence(report.rerun_agreement(first, second[second["tokens"] == 1]))
    assert "of the 0 (N, T) (of 1) where neither sweep lost a run to divergence, none of them at N = 100" in none
    scaled = first.assign(val_loss=first["val_loss"] * np.where(first["lr"] == 2, 1.01, 1.0))
    spread = report.rerun_spread(first, scaled)
    assert spread.loc[2, 100] == pytest.approx(1.0) and spread.loc[1, 100] == 0


def test_identical_rows_counts_bit_equal_rows_of_matched_runs():
    first = pd.DataFrame(
        {
            "run_id": ["a", "a", "b"],
            "tokens": [1, 2, 1],
            "val_loss": [0.1, 0.2, math.nan],
            "val_loss_ema": [0.3, 0.4, math.nan],
        }
    )
    assert report.identical_rows(first, first.copy()) == (3, 3)
    nudged = first.assign(val_loss_ema=[0.3, np.nextafter(0.4, 1), math.nan])  # one ulp apart
    assert report.identical_rows(first, nudged) == (2, 3)
    assert report.identical_rows(first, nudged.iloc[:1], columns=("val_loss",)) == (1, 1)


def test_table_formats_floats_and_marks_missing_values():
    html = report.table(pd.DataFrame({"x": [0.000123456, math.nan], "y": ["a", None]}), digits=3).to_html()
    assert "0.000123" in html and "nan" not in html.lower() and "None" not in html
    assert html.count(">-<") == 2


def test_stage_a_profile_table_and_sentences_come_from_the_results():
    from test_curvature import stage_a_table

    from replicate.fit import validate_runs
    from replicate.fit.curvature import batch_curvature
    from replicate.report import stage_a

    runs = stage_a_table(0.004, 0.003, rep=1)
    profile = stage_a.seed_spread(runs)
    assert len(profile) == 7 * 5 and (profile["lowest_seed"] <= profile["loss"]).all()
    assert (profile["loss"] <= profile["highest_seed"]).all() and (profile["seeds"] == 2).all()
    summary = batch_curvature(validate_runs(runs), bootstrap=20)
    summary["seed_noise"] = {"raw": summary["seed_noise"], "ema": None}  # as curvature_file writes it
    table = stage_a.summary_table(summary)
    assert list(table.columns) == ["quantity", "raw weights"] and summary["verdict"] in set(table["raw weights"])
    # 2 seeds per cell: the seed bootstrap's interval says how much too narrow it is (sqrt(2/1))
    assert "its 95% interval, seed bootstrap (%; 2 seeds per cell: about 1.4x too narrow)" in set(table["quantity"])
    from replicate.report import figures

    # the figure says which minimum its percentages are above: the surface's where it converged, else the grid's
    label = figures.batch_curvature_figure(profile, summary).axes[0].get_ylabel()
    assert summary["surface"]["converged"] and label == "loss above the surface's minimum (the triangles) (%)"
    assert (
        figures.batch_curvature_figure(profile, None).axes[0].get_ylabel()
        == "loss above the checkpoint's best batch (%)"
    )
    lines = stage_a.stage_a_lines(summary, 30, 40)
    assert "30 of its 40 runs" in lines[0]
    assert f"{100 * summary['curvature_per_doubling2']['value']:.2f}% per squared doubling" in lines[1]
    assert f"**{summary['verdict']}**" in lines[1]
    assert not any("No-go at this scale" in line for line in lines)  # a curvature of 0.4% is a go
    # the planted best lr does not move with B: a ridge near 0, which excludes both scaling rules
    ridge = next(line for line in lines if line.startswith("Along B the best learning rate"))
    assert f"B^{summary['lr_law']['ridge']:.2f}" in ridge and ridge.count("excludes") == 2
    assert report.lr_scaling_sentence("x", 0.7, [0.4, 0.75]) == (
        "x grows as B^0.70 [0.4, 0.75]: the interval contains Adam's square-root rule (0.5); excludes SGD's linear "
        "rule (1)."
    )
    sqrt_rule = copy.deepcopy(summary)
    sqrt_rule["lr_law"].update(ridge=0.5, ridge_ci95=[0.45, 0.55])
    ridge = next(line for line in stage_a.stage_a_lines(sqrt_rule, 40, 40) if line.startswith("Along B"))
    assert "contains Adam's square-root rule (0.5); excludes SGD's linear rule (1)" in ridge
    flat = copy.deepcopy(summary)
    flat.update(verdict="no-go", verdict_envelope=["no-go"], seeds_needed=10**6)
    lines = stage_a.stage_a_lines(flat, 40, 40)
    assert any(line.startswith("**No-go at this scale**") for line in lines)
    flat["verdict_envelope"] = ["marginal", "no-go"]  # the interval reaches above no-go: the box says no more
    spans = stage_a.stage_a_lines(flat, 40, 40)
    assert any(line.startswith("**Not testable at this scale**") for line in spans)
    assert not any("No-go at this scale" in line for line in spans)
    assert any("more than 10,000 seeds; the surface pools every cell, so it needs fewer" in line for line in lines)
    # the thresholds say what they ask of one cell at the measured noise: seeds_needed at each
    noise = flat["seed_noise"]["raw"]["near_optimum"]["rms"]
    counts = f"resolve 0.3% with {seeds_needed(0.003, noise):,} seeds and 0.1% with {seeds_needed(0.001, noise):,})"
    assert counts in lines[0]
    # an upper end below the go threshold: no seed count makes it a go, whatever the per-cell count says
    assert not any("no number of seeds" in line for line in lines)  # the planted 0.4% reaches above it
    flat["curvature_per_doubling2"] = {**flat["curvature_per_doubling2"], "ci95_envelope": [1e-4, 1.2e-3]}
    assert any("no number of seeds can make this a go" in line for line in stage_a.stage_a_lines(flat, 40, 40))
    table = stage_a.summary_table(flat).set_index("quantity")["raw weights"]
    assert table["seeds per cell for noise <= c / 3"] == "more than 10,000"
    near = flat["seed_noise"]["raw"]["near_optimum"]
    assert table["seed noise near the optimum (%; root mean square, median)"] == (
        f"{100 * near['rms']:.2f} ({100 * near['median']:.2f})"
    )
    assert table[next(q for q in table.index if q.startswith("B_opt exponent"))] == "not identified (no bend along B)"


def test_the_sampled_model_is_named_by_the_loss_of_the_weights_it_samples_from(tmp_path):
    """`train --save-model` saves the EMA weights: the sentence gives their loss first, the raw weights' beside."""
    from replicate.report.tables import sampled_model_sentence

    last = {"tokens": 2000384, "val_loss": 0.0477, "val_loss_ema": 0.0438}
    (tmp_path / "model.json").write_text(json.dumps({"n_params": 1186560, "checkpoints": [last]}))
    sentence = sampled_model_sentence(tmp_path / "model.pt")
    assert "validation loss 0.0438 with the EMA weights it samples from (0.0477 with its raw weights)" in sentence
    (tmp_path / "model.json").write_text(json.dumps({"n_params": 1, "checkpoints": [{**last, "val_loss_ema": None}]}))
    assert sampled_model_sentence(tmp_path / "model.pt").endswith("validation loss 0.0477.")


def test_stage_a_says_how_far_the_loss_rises_along_b_not_only_its_bend():
    """A planted loss that rises 2% from 1 clip to 4 at the best rate (raw; 1% with the EMA) at two checkpoints:
    the sentence gives those rises, the seed noise and where the surface put B_opt."""
    from replicate.report import stage_a

    rows = []
    for tokens in (1e6, 2e6):
        for clips in (1, 2, 4):
            for lr, worse in ((1e-3, 0.0), (2e-3, 0.05)):
                for seed in (0, 1):
                    loss = 0.1 * (1 + 0.01 * math.log2(clips) + worse)
                    ema = 0.1 * (1 + 0.005 * math.log2(clips) + worse)
                    rows.append(
                        {"role": "fit", "diverged": False, "n_params": 5e4, "tokens": tokens, "batch_samples": clips,
                         "batch_size": 16 * clips, "lr": lr, "seed": seed, "val_loss": loss, "val_loss_ema": ema}
                    )  # fmt: skip
    runs = pd.DataFrame(rows)
    assert stage_a.rise_along_b(runs) == pytest.approx([0.02, 0.02])
    summary = {
        "seed_noise": {"raw": {"seeds": 4, "near_optimum": {"rms": 0.006}}},  # a gap of two 4-seed means: 0.42%
        "curvature_per_doubling2": {"ci95_envelope": [1e-4, 1.2e-3]},
        "surface": {"converged": True, "optima": [{"batch_size": 4.0}, {"batch_size": 20.0}]},
    }
    sentence = stage_a.rise_sentence(runs, summary)
    assert (
        "from 1 clip to 4 (2 doublings)" in sentence and "rises by 2.00-2.00% (raw weights; 1.00-1.00% with" in sentence
    )
    assert "at 2 of 2 checkpoints, against about 0.42% for a gap between two cells' means of 4 seeds" in sentence
    assert (
        "(a relative standard deviation of 0.60% per seed near the optimum)" in sentence and "at most 0.12%" in sentence
    )
    assert "puts B_opt below the smallest batch at 1 of 2 checkpoints" in sentence
    summary["surface"]["converged"] = False  # an unconverged surface's optima say nothing
    assert "puts B_opt" not in stage_a.rise_sentence(runs, summary)


def test_loss_law_checks_in_words_and_table(fit):
    _, result = fit
    table = report.loss_law_checks(result)
    assert len(table) == len(result["loss_law"]["leave_one_size_out"]) >= 4
    sentence = report.loss_law_checks_sentence(result)
    assert f"uses {result['loss_law']['n_points']} optima, {result['loss_law']['n_on_edge']} of them" in sentence
    law = result["loss_law"]
    worst = max(h["max_abs_rel_error"] for h in law["interaction_law"]["leave_one_size_out"])
    assert "comparing the additive form with Kaplan et al.'s form with an N x T interaction" in sentence
    assert f"{100 * worst:.2f}% with the interaction." in sentence  # the worst case beside the median


def test_claim_verdicts_come_from_the_fit(fit):
    _, result = fit
    claims = report.claim_verdicts(result)
    assert len(claims) == 4 and list(claims.columns) == ["claim", "verdict", "deciding number"]
    surface = result["surface"]["batch_size_law"]
    expected = report.verdict(surface["exp_tokens"], surface["ci95"]["exp_tokens"], 0.808)
    assert claims.loc[0, "verdict"] == expected and f"{surface['exp_tokens']:.3g}" in claims.loc[0, "deciding number"]
    no_go = {"verdict": "no-go", "curvature_per_doubling2": {"value": 0.0005}}
    flat = copy.deepcopy(result)
    flat["surface"]["converged"] = False
    assert report.claim_verdicts(flat, no_go).loc[0, "verdict"].startswith("not testable")
    assert "0.05% per doubling^2" in report.claim_verdicts(flat, no_go).loc[0, "deciding number"]
    no_go["curvature_per_doubling2"]["ci95_envelope"] = [0.0001, 0.0012]
    reason = "(the loss bends too little along B to locate B_opt: at most 0.12% per doubling^2, a go needs 0.3%)"
    assert report.claim_verdicts(flat, no_go).loc[0, "verdict"].endswith(reason)
    from test_lr_law import planted

    from replicate.fit.lr_law import fit_lr_law

    lr_doc = fit_lr_law(planted(), bootstrap=10)
    joint = report.claim_verdicts(result, lr_law=lr_doc).loc[1, "verdict"]
    assert (
        joint
        == report.lr_law_claim(lr_doc)[0] + " (a joint test with Eq. 10: the paper-implied exponents use both laws)"
    )
    # each exponent's number says how far apart the two laws put lr* over the data's range
    tokens = [v["tokens"] for v in lr_doc["vertices"]]
    gap = lr_doc["lr_exponent_tokens"]["value"] - lr_doc["paper_implied"]["lr_exponent_tokens"]["value"]
    span = max(tokens) / min(tokens)
    claim = report.lr_law_claim(lr_doc)[1]
    assert f"across the data's {span:.3g}x in T the measured lr* moves x{span**gap:.2f} [" in claim
    # a measured slope steeper than the implied: the measured lr* moves below it, a factor under 1, with its interval
    steeper = copy.deepcopy(lr_doc)
    steeper["paper_implied"]["measured_minus_implied"]["tokens"] = {"value": -0.2, "ci95": [-0.3, -0.1]}
    factors = f"x{span**-0.2:.2f} [{span**-0.3:.2f}, {span**-0.1:.2f}] against the implied"
    assert span**-0.2 < 1 and factors in report.lr_law_claim(steeper)[1]
    unbracketed = copy.deepcopy(result)
    for law in unbracketed["compute_laws"].values():
        law["isoflop"] = None
    assert unbracketed["fixed"]["n_opt_ratio"] is not None
    assert report.claim_verdicts(unbracketed).loc[3, "verdict"].startswith("not measured here (no budget")


def test_the_loss_law_claim_is_decided_by_stage_l_held_out_model_where_it_has_trained(fit):
    _, result = fit

    def summary(*errors: tuple[float, float, float]) -> dict:
        checks = [{"tokens": 1e6, "value": v, "ci95": [lo, hi]} for v, lo, hi in errors]
        return {"heldout": {"n_params": 1_186_560}, "heldout_loss_error": checks, "goals": {"heldout_loss_error": 0.01}}

    row = report.claim_verdicts(result, heldout=summary((-0.0068, -0.0092, -0.0052), (-0.002, -0.005, -0.001))).loc[2]
    # the first checkpoint excludes the paper's 0.15%, the last crosses it: the verdict says so
    last = "at 1 of 2 checkpoints, the last not decided against it"
    assert (
        row["verdict"]
        == f"holds at 1%; excludes the paper's 0.15% {last} (Stage L: the optima in lr at one batch size)"
    )
    numbers = "worst held-out error -0.68% [-0.92, -0.52]%, the last -0.20% [-0.50, -0.10]% (Stage L, N = 1,186,560, 2"
    assert row["deciding number"].startswith(numbers)
    both = summary((-0.0068, -0.0092, -0.0052), (-0.004, -0.005, -0.002))
    verdict = report.claim_verdicts(result, heldout=both).loc[2, "verdict"]
    assert verdict.endswith("excludes the paper's 0.15% (Stage L: the optima in lr at one batch size)")
    # the last checkpoint excludes it, an earlier one does not: still counted
    later = summary((-0.0005, -0.003, 0.001), (-0.0068, -0.0092, -0.0052))
    verdict = report.claim_verdicts(result, heldout=later).loc[2, "verdict"]
    assert verdict.endswith(
        "excludes the paper's 0.15% at 1 of 2 checkpoints (Stage L: the optima in lr at one batch size)"
    )
    worst = report.worst_holdout_error(result)
    assert f"the study's held-out model: {100 * worst:.1f}%" in row["deciding number"]
    tight = report.claim_verdicts(result, heldout=summary((0.001, 0.0005, 0.0014))).loc[2, "verdict"]
    assert tight == "holds at the paper's 0.15% (Stage L: the optima in lr at one batch size)"
    crossing = report.claim_verdicts(result, heldout=summary((0.008, 0.005, 0.012))).loc[2, "verdict"]
    assert crossing == "not decided at 1%; excludes the paper's 0.15% (Stage L: the optima in lr at one batch size)"
    wide = report.claim_verdicts(result, heldout=summary((0.001, -0.004, 0.012))).loc[2, "verdict"]
    assert (
        wide == "not decided at 1% (Stage L: the optima in lr at one batch size)"
    )  # its interval holds the paper's 0.15% too
    assert report.claim_verdicts(result, heldout=summary((0.03, 0.02, 0.04))).loc[2, "verdict"].startswith("does not")
    # the held-out model's seed noise widens the bootstrap's intervals: the first checkpoint's [-0.92, -0.52]%
    # reaches past -0.15% once 1.96 x 0.4% / sqrt(2) is added in quadrature, and no checkpoint excludes 0.15%
    noisy = summary((-0.0068, -0.0092, -0.0052), (-0.002, -0.005, -0.001))
    noisy["heldout_seed_noise"] = {"seeds": 2, "near_optimum": {"rms": 0.004, "cells": 7}}
    row = report.claim_verdicts(result, heldout=noisy).loc[2]
    assert row["verdict"] == "not decided at 1% (Stage L: the optima in lr at one batch size)"
    assert (
        "-0.68% [-1.28, -0.10]%" in row["deciding number"] and "intervals with its seed noise" in row["deciding number"]
    )
    # Stage L without its held-out model yet: the study's own held-out model decides, as before
    untrained = {"heldout": None, "heldout_loss_error": [], "goals": {"heldout_loss_error": 0.01}}
    assert report.claim_verdicts(result, heldout=untrained).equals(report.claim_verdicts(result))


def test_the_study_models_and_clips_are_the_profiles():
    from replicate.profile import load_profile

    profile = load_profile(str(Path(__file__).resolve().parents[1] / "results/cpu/profile.toml"))
    models = report.study_models(profile)
    assert len(models) == len({(r.role, r.cfg.model) for r in profile.runs}) and (models["tokens per clip"] == 64).all()
    assert "4 frames of 16 x 16 pixels" in report.clip_sentence(profile) and "64 tokens" in report.clip_sentence(
        profile
    )


def test_the_readme_findings_are_the_committed_results():
    """README's findings are generated (make readme): they must be what the committed results say today."""
    from replicate.book import FINDINGS_END, FINDINGS_START, readme_findings

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text[text.index(FINDINGS_START) + len(FINDINGS_START) : text.index(FINDINGS_END)].strip()
    expected = readme_findings(root / "results/cpu", root / "results/theory", root / "results/stage_a")
    assert section == expected.replace(str(root) + "/", "").strip(), "README's findings are stale: run make readme"


def test_the_readme_step_speed_is_the_committed_benchmark():
    """README's step-speed part is generated from results/benchmarks/ensemble.json and step.json: stacking's
    gains, each verdict line and the sentence's ranges are what the rows say."""
    from replicate.book import STEP_END, STEP_START, readme_step_speed

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text[text.index(STEP_START) + len(STEP_START) : text.index(STEP_END)].strip()
    assert section == readme_step_speed(root / "results/benchmarks").strip(), "stale: run make readme"
    ensemble = json.loads((root / "results/benchmarks/ensemble.json").read_text())
    row = next(row for row in ensemble if row["E"] == max(r["E"] for r in ensemble))
    assert f"E = {row['E']} {row['speedup_vs_sequential']:.2f}x" in section
    rows = json.loads((root / "results/benchmarks/step.json").read_text())
    speedups = [row["speedup"] for row in rows]
    assert f"runs {min(speedups):.2f}-{max(speedups):.2f}x as fast as the reference" in section
    met = sum(row["meets_target"] for row in rows if row["target_speedup"] == 1.5)
    assert f"the flat step, target 1.5x: met at {met} of " in section
    compiled = sum(row["compiled_speedup"] >= row["target_speedup"] for row in rows)
    assert f"its target met at {compiled} of {len(rows)} shapes" in section


def test_the_readme_h100_numbers_are_the_committed_benchmarks():
    """README's H100 section is typed: each number must be what results/benchmarks/ says (kernels.csv,
    train_throughput.jsonl, gpu_steps.jsonl)."""
    root = Path(__file__).resolve().parents[1]
    bench = root / "results/benchmarks"
    text = " ".join((root / "README.md").read_text().split())  # the bullets wrap
    rows = [json.loads(line) for line in (bench / "train_throughput.jsonl").read_text().splitlines()]
    h100 = [row for row in rows if "H100" in row["device"]]
    tokens, ratios = [row["tokens_per_s"] for row in h100], [100 * row["ratio"] for row in h100]
    expected = [
        f"{max(tokens) / 1e3:.0f}k tokens/s (nano) to {min(tokens) / 1e3:.0f}k (9.5M-parameter medium)",
        f"{min(ratios):.1g}-{max(ratios):.0f}% of the GPU's fp32 matmul rate (TF32 off, measured beside it)",
    ]
    kernels = pd.read_csv(bench / "kernels.csv")
    triton = kernels[kernels["backend"] == "triton"].set_index(["op", "shape"])["speedup_vs_eager"]
    ops = triton.drop("train_step", level="op")
    fused = ops.loc[["layernorm_modulate", "gated_residual", "gated_residual_layernorm_modulate"]]
    attention = ops.loc["attention"]
    step = kernels[kernels["op"] == "train_step"].set_index("backend")["speedup_vs_eager"]
    expected += [
        f"run at {ops.min():.2f}-{ops.max():.2f}x eager PyTorch's speed (GELU {ops.loc['gelu_tanh'].iloc[0]:.2f}x",
        f"the fused residual/layer-norm ops {fused.min():.2f}-{fused.max():.2f}x",
        f"attention {attention.iloc[0]:.2f}x at 128 tokens and {attention.iloc[1]:.2f}x at 1024",
        f"a whole training step is {step['triton']:.2f}x eager with them and {step['compile']:.2f}x with",
    ]
    steps = pd.read_json(bench / "gpu_steps.jsonl", lines=True)
    one = steps[steps["procs"] == 1]
    mini = steps[(steps["size"] == "mini") & (steps["clips"] == 1)].set_index("procs")["steps_per_s_total"]
    expected += [
        f"takes {one['ms_per_step'].min():.0f}-{one['ms_per_step'].max():.0f} ms of host time for "
        f"N = {one['n_params'].min() / 1e6:.1f}M-{one['n_params'].max() / 1e6:.0f}M whatever the batch "
        f"({one['clips'].min()}-{one['clips'].max()} clips)",
        f"{mini.index.max()} processes sharing the GPU step {mini.iloc[-1] / mini.loc[1]:.1f}x faster than one",
    ]
    missing = [line for line in expected if line not in text]
    assert not missing, missing


def test_kernel_speed_table_has_one_row_per_op_and_the_speedups():
    speed = pd.read_csv(Path(__file__).resolve().parents[1] / "results/benchmarks/kernels.csv")
    table = report.kernel_speed_table(speed)
    assert len(table) == len(speed.drop_duplicates(["op", "shape"]))
    row = speed[(speed["op"] == "gelu_tanh") & (speed["backend"] == "triton")].iloc[0]
    got = table.loc[table["op"] == "GELU", "triton x"].iloc[0]
    assert got == pytest.approx(row["speedup_vs_eager"], rel=0.01)  # the benchmark's own ratio, rounded to 4 digits
    text = report.kernel_speed_sentence(speed, frozenset())
    assert f"{row['device']}" in text and "not faster for any op" in text and "TRITON_FASTER is empty" in text


def test_kernel_speed_reads_a_device_runs_rows_with_the_captured_step_against_torch():
    rows = [
        ("gelu_tanh", "eager", 1.0),
        ("gelu_tanh", "compile", 0.5),
        ("gelu_tanh", "triton", 0.4),
        ("attention", "eager", 1.0),
        ("attention", "compile", 2.0),
        ("attention", "triton", 2.0),
        ("train_step (captured)", "torch", 3.0),
        ("train_step (captured)", "triton", 2.0),
    ]
    speed = pd.DataFrame(
        [{"op": o, "shape": "s", "backend": b, "ms": ms, "device": "GPU", "torch": "t", "triton": "t", "git_sha": "x"}
         for o, b, ms in rows]
    )  # fmt: skip
    table = report.kernel_speed_table(speed).set_index("op")
    assert table.loc["GELU", "triton x best"] == pytest.approx(1.25)
    assert table.loc["attention", "triton x best"] == pytest.approx(0.5)
    assert table.loc["training step (captured)", "triton x"] == pytest.approx(1.5)
    text = report.kernel_speed_sentence(speed, frozenset({"gelu_tanh"}))
    assert "0.50-1.25x" in text and "at least as fast for GELU." in text and "1.50x (s)" in text
    assert "takes Triton for gelu_tanh" in text


def test_every_figure_of_the_theory_and_isoflop_chapters_draws(fit):
    """The figures the chapters draw, from the committed theory results and a synthetic fit (smoke of plots)."""
    import matplotlib

    matplotlib.use("Agg")
    from replicate.report import figures

    root = Path(__file__).resolve().parents[1] / "results/theory"
    theory = {name: report.load_json(root / f"{name}.json") for name in ("quadratic", "dit_noise", "line_search")}
    quad = report.quadratic_estimates(theory["quadratic"])
    assert len(quad) == 7 * len(theory["quadratic"]["results"]) and quad["z"].notna().all()
    dit = report.dit_noise_scales(theory["dit_noise"])
    drawn = (
        figures.quadratic_estimates_figure(quad),
        figures.line_search_figure(theory["line_search"]["results"]),
        figures.noise_scale_figure(dit),
        figures.tradeoff_figure(dit, [1, 2, 4]),
    )
    for fig in drawn:
        assert fig.axes and all(ax.has_data() for ax in fig.axes)
    panels = [ax for ax in figures.isoflop_figure(fit[1]).axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2  # one panel per FLOP convention, empty where no budget


def test_the_limitations_and_the_scope_sentences_come_from_the_results():
    root = Path(__file__).resolve().parents[1] / "results"
    study = report.load_study(root / "cpu")
    stage_a = report.read_summary(root / "stage_a/summary.json")
    lines = report.limitations(study.fit, study.runs, stage_a, study.fit_ema)
    steps = (study.runs["tokens"] / study.runs["batch_size"]).max()
    assert any(f"longest run of the study rendered here took {steps:,.0f} optimiser steps" in line for line in lines)
    near = stage_a["seed_noise"]["raw"]["near_optimum"]["rms"]
    assert any(f"{near:.2%} per cell" in line for line in lines)
    loss = study.fit["loss_law"]
    assert any(f"{loss['n_on_edge']} of the {loss['n_points']} (N, T) optima" in line for line in lines)
    assert any(line.startswith("**L_inf is not identified**") for line in lines) == bool(loss["l_inf_at_zero"])
    held = report.load_heldout(root / "stage_l")
    stage_l = report.limitations(study.fit, study.runs, stage_a, study.fit_ema, held)
    law = held["heldout"]["loss_law"]
    assert any(f"(chapter 6c), gives alpha_T = {law['alpha_tokens']:.3f}" in line for line in stage_l)
    assert not any("Stage L's loss law" in line for line in lines)
    without = report.limitations(study.fit, study.runs)
    assert any("not measured in this study" in line for line in without)
    theory = {k: report.load_json(root / f"theory/{k}.json")["results"] for k in ("line_search", "dit_noise")}
    scope = report.line_search_scope(theory["line_search"], theory["dit_noise"])
    ratios = [r["eta_best_measured"] / r["eta_opt_predicted"] for r in theory["line_search"]["rows"]]
    worst = max(ratios, key=lambda r: abs(math.log(r)))
    assert f"{worst:.3f} times the predicted one" in scope and f"N = {theory['dit_noise'][0]['n_params']:,}" in scope
    scale = report.scale_sentence(study.runs, "results/cpu")
    assert f"the study rendered here (results/cpu) have {study.runs['n_params'].min():,.0f} to" in scale
    assert f"{study.runs['n_params'].max():,.0f} parameters" in scale


def test_the_chapters_prologue_says_what_is_missing_and_how_to_make_it(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj.data))
    assert report.open_study(tmp_path / "none", "smoke") is None
    synthetic_sweep(widths=(32, 48), tokens=(2**20, 2**21), seed=0).to_csv(tmp_path / "runs.csv", index=False)
    study = report.open_study(tmp_path, "smoke")
    assert study is not None and study.fit is None
    assert report.open_study(tmp_path, "smoke", need_fit=False) is not None  # runs are enough: no note
    assert shown == [
        f"**No sweep results in `{tmp_path / 'none'}` yet.** Run `make book PROFILE=smoke`.",
        f"**No fit in `{tmp_path}` yet.** Run `make book PROFILE=smoke`.",
    ]


def test_kernel_speed_is_told_device_by_device_and_never_averages_dtypes():
    one = pd.read_csv(Path(__file__).resolve().parents[1] / "results/benchmarks/kernels.csv")
    other = one.assign(device="another GPU", ms=one["ms"] / 2)
    both = pd.concat([one, other], ignore_index=True)
    with pytest.raises(ValueError, match="several devices"):
        report.kernel_speed_table(both)
    split = report.kernel_benchmarks_by_device(both)
    assert [rows["device"].unique().tolist() for rows in split] == [[one["device"].iloc[0]], ["another GPU"]]
    tables = [report.kernel_speed_table(rows) for rows in split]
    assert tables[1]["baseline ms"].to_numpy() == pytest.approx(tables[0]["baseline ms"].to_numpy() / 2)
    assert "another GPU" in report.kernel_speed_sentence(split[1], frozenset())
    # the same op, shape and backend in two dtypes: a row each, not their mean
    fp32 = one.assign(dtype="fp32", ms=one["ms"] * 3)
    table = report.kernel_speed_table(pd.concat([one, fp32], ignore_index=True))
    assert len(table) == 2 * len(report.kernel_speed_table(one)) and set(table["dtype"]) >= {"fp32"}
    base = report.kernel_speed_table(one)["baseline ms"].to_numpy()
    assert table.loc[table["dtype"] == "fp32", "baseline ms"].to_numpy() == pytest.approx(3 * base)
