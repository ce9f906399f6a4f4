"""The book's own machinery, on the committed results: one definition of N_opt, figures that carry their data and
readable log axes, the tables and sentences the chapters print, the execution record and the GPU recipe."""

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

from replicate import report
from replicate.config import count_params
from replicate.fit import paper_laws
from replicate.fit.predict import predict
from replicate.paper import optimal_steps
from replicate.report import execution, extrapolation, figures, recipe

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def cpu():
    return report.load_study(RESULTS / "cpu")


def test_n_opt_has_one_definition_in_the_fit_the_book_and_predict(cpu):
    """ch. 7's N_opt(1e22), ch. 10's and `replicate predict`'s are the argmin of the loss law, with the same
    interval: fit.json's compute_law.n_opt_at_reference, not the power law fitted to it."""
    law = cpu.fit["compute_law"]
    reference, stored, ci = law["reference_flops"], law["n_opt_at_reference"], law["ci95"]["n_opt_at_reference"]
    result = predict(cpu.fit, flops=reference)
    assert result["prediction"]["n_params"] == pytest.approx(stored, rel=1e-9)
    assert result["ci95"]["n_params"] == pytest.approx(ci, rel=1e-9)
    curve = extrapolation.n_opt_curve(cpu.fit, np.array([reference]))
    assert curve[["n_opt_lo", "n_opt_hi"]].iloc[0].tolist() == pytest.approx(ci, rel=1e-9)
    power_law = law["coef"] * reference ** law["exp"]
    assert abs(power_law / stored - 1) > 0.1  # the two differ: only one may be printed as N_opt
    assert f"{stored:.3g}" in extrapolation.n_opt_sentence(cpu.fit)


def test_every_figure_of_the_loss_chapters_carries_its_data_and_labels_its_log_axes(cpu):
    image = report.load_study(RESULTS / "image")
    drawn = {
        "image loss law": figures.loss_law_figure(image.fit),
        "lr law": figures.hyperparameter_law_figure(cpu.fit, "lr", paper_laws()["lr_law"]),
        "EMA batch law": figures.hyperparameter_law_figure(cpu.fit_ema, "batch_size"),
        "compute allocation": figures.compute_allocation_figure(cpu.fit),
        "flat region": figures.flat_region_figure(cpu.fit),
        "isoflop": figures.isoflop_figure(cpu.fit),
    }
    for name, fig in drawn.items():
        data = figures.figure_data(fig)
        assert data is not None and len(data), name
        assert figures.unreadable_log_axes(figures.png(fig)) == [], name
    # the EMA optima all sit on one grid value: the figure names it (its ticks need not) and says they overlap
    (value,) = pd.DataFrame(cpu.fit_ema["optima"])["batch_size"].unique()
    (note,) = [t.get_text() for t in drawn["EMA batch law"].axes[0].texts]
    assert f"({value:g} tokens; the sizes' markers overlap)" in note
    # what the colours do not say has a key: hollow edge markers, the line styles, the held-out prediction
    keys = {
        name: [t.get_text() for t in drawn[name].axes[0].get_legend().get_texts()] for name in drawn if "law" in name
    }
    assert {"on the grid's edge (a bound)", "the paper's law at our (N, T)"} <= set(keys["lr law"])
    assert "its prediction" in keys["image loss law"]


def test_a_narrow_log_axis_without_round_ticks_is_reported_and_tidy_labels_it():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1e5, 1e7], [0.051, 0.058])
    ax.set(xscale="log", yscale="log")
    ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.055]))  # one label only: unreadable
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    bad = figures.unreadable_log_axes(figures.png(fig))
    assert len(bad) == 1 and "y axis" in bad[0]
    assert figures.unreadable_log_axes(figures.png(figures._tidy(fig))) == []
    plain = plt.figure()
    assert figures.unreadable_log_axes(figures.png(plain)) == []  # a figure without axes has nothing to report
    plt.close("all")


def test_show_writes_the_csv_the_book_links(tmp_path, monkeypatch, cpu):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    monkeypatch.setattr(figures, "DATA_DIR", tmp_path / "book" / "data")
    figures.show(figures.loss_curves(cpu.runs), "05_loss_curves")
    written = pd.read_csv(tmp_path / "book" / "data" / "05_loss_curves.csv")
    assert {"run_id", "tokens", "val_loss", "best_at_this_T"} <= set(written.columns)
    image, link = shown
    assert figures.unreadable_log_axes(image.data) == []  # the PNG shown carries its log axes' labels
    assert link.data == "{download}`the data behind this figure (CSV) <data/05_loss_curves.csv>`"


def test_best_cells_and_interpolated_optima_side_by_side(cpu):
    frame = report.optima_frame(cpu.runs, cpu.fit)
    table = report.optima_table(cpu.runs, cpu.fit)
    assert len(frame) == len(cpu.fit["optima"]) == len(table)
    # the edge column says which end: the committed grid's 1-clip and 8-clip edges, counted from fit.json apart
    optima = pd.DataFrame(cpu.fit["optima"])
    on_b = optima["edge"].fillna("").str.contains("batch_size")
    ends = table["on an edge"].str.split(", ").explode()
    assert (ends == "smallest B").sum() == (on_b & (optima["batch_size"] == optima["batch_size"].min())).sum() > 0
    assert (ends == "largest B").sum() == (on_b & (optima["batch_size"] == optima["batch_size"].max())).sum() > 0
    assert (frame["gain_pct"] >= 0).all()
    moved = frame["moved_batch"].abs() > 0.5
    assert moved.any() and (~moved).any()  # the stars leave their cells at some (N, T), not at all
    assert f"in B at {int(moved.sum())} of {len(frame)}" in report.optima_sentence(cpu.runs, cpu.fit)


def test_a_law_fitted_to_optima_on_one_grid_value_is_not_identified(cpu):
    assert report.law_identified(cpu.fit, "batch_size") and not report.law_identified(cpu.fit_ema, "batch_size")
    table = report.exponent_table({"raw": cpu.fit, "EMA": cpu.fit_ema}).set_index("quantity")
    assert table.loc["B_opt exponent in T", "EMA 95% CI"] == report.compare.NOT_IDENTIFIED
    assert np.isnan(table.loc["B_opt exponent in T", "EMA"])
    assert table.loc["loss exponent in T", "EMA 95% CI"].startswith("[")
    # the EMA's lr optima all sit at one batch size: its eta_opt law is an lr law at fixed B, and says so
    assert table.loc["eta_opt exponent in T", "EMA 95% CI"].endswith(f"({report.compare.AT_ONE_BATCH})")
    assert "(" not in table.loc["eta_opt exponent in T", "raw 95% CI"]


def test_the_isoflop_chapter_says_where_n_opt_lies(cpu):
    summary = report.isoflop_summary(cpu.fit)
    assert (summary["smallest size reaching it is best"] == summary["budgets reached by >= 2 sizes"]).all()
    sentence = report.isoflop_sentence(summary)
    # a lowest loss at the smallest size bounds N_opt by the next size up: it may lie between the two
    assert "below the second-smallest size" in sentence and "between the two" in sentence
    # the loss law's N_opt at each budget against the smallest size reaching it, its interval's upper end too:
    # counted here from the resamples directly, at the 6n budgets
    from replicate.fit import FlopsPerToken, compute_optimal_size
    from replicate.fit.read import law_samples

    budgets = report.isoflop_budgets(cpu.fit, "6n").groupby("flops")["n_params"].min()
    fpt = FlopsPerToken(**cpu.fit["compute_laws"]["6n"]["flops_per_token"])
    draws = np.array(
        [compute_optimal_size(law, budgets.index.to_numpy(), fpt)[0] for law in law_samples(cpu.fit, "loss_law")]
    )
    high = np.percentile(draws, 97.5, axis=0)
    row = summary.set_index("FLOPs").loc["6n"]
    assert row["its 95% CI's upper end too"] == int((high < budgets.to_numpy()).sum())
    # the committed study: below at every budget in every convention
    assert (summary["its 95% CI's upper end too"] == 10).all() and (
        summary["budgets reached by >= 2 sizes"] == 10
    ).all()
    assert "and so does the upper end of its 95% interval" in sentence and "only 2 to 4 of 10" in sentence
    partial = summary.copy()
    partial.loc[partial["FLOPs"] == "paper", "its 95% CI's upper end too"] = 7  # one convention short: it is named
    assert "does so at only 7 of 10 (paper FLOPs): elsewhere" in report.isoflop_sentence(partial)
    changed = summary.assign(**{"smallest size reaching it is best": 0, "vertices inside the sizes": 2})
    assert "bounds N_opt" in report.isoflop_sentence(changed)


def test_degenerate_numbers_are_flagged_not_printed():
    from replicate.report import stage_a as chapter

    stage_a = report.read_summary(RESULTS / "stage_a/summary.json")
    table = chapter.summary_table(stage_a).set_index("quantity")
    assert stage_a["ema"]["surface"]["converged"] is False
    assert "not converged" in table.loc["verdict", "EMA weights"]
    assert "did not converge" in table.loc["the surface fit", "EMA weights"]
    assert any("did not converge" in line for line in chapter.stage_a_lines(stage_a, 1, 1))
    fit = report.load_study(RESULTS / "cpu").fit
    ratio = report.fixed_ratio_table(fit).iloc[0]
    assert "e-0" in ratio["ours"] and ratio["ours"] != "0.000"


def test_the_s_opt_range_names_the_runs_it_covers(cpu):
    text = report.s_opt_range(cpu.runs)
    assert "over its fitting runs" in text and "with the held-out model" in text
    fitting = report.s_opt_range(cpu.runs[cpu.runs["role"] == "fit"])
    assert "held-out" not in fitting and fitting in text


def test_three_fits_name_the_exponents_whose_sign_they_do_not_agree_on(cpu):
    same = report.fits_agreement_sentence({"a": cpu.fit, "b": cpu.fit})
    assert "Signs that differ" not in same and "not determined" not in same
    flipped = copy.deepcopy(cpu.fit)
    flipped["loss_law"]["alpha_tokens"] *= -1
    text = report.fits_agreement_sentence({"a": cpu.fit, "b": flipped})
    assert (
        "loss exponent in T (" in text
        and "the loss law's exponents move with it" not in text.split("Estimates that")[0]
    )
    assert "the loss law's exponents move with it" in text.split("Estimates that")[1]


def test_the_image_verdict_follows_the_held_out_error(cpu):
    image = report.load_study(RESULTS / "image")
    lines = report.law_form_verdict(image.fit, cpu.fit, image.runs)
    assert "not shown at this scale" in lines[-1] and "single run" in lines[2]
    # the in-sample fit counts its edge optima and refits the interior ones alone
    assert lines[1].startswith("The law uses 21 optima, 11 of them on an edge") and "interior ones alone" in lines[1]
    # two overlapping intervals, one as wide as the other's value, do not say the exponents agree
    assert "alpha_N 0.332 [0.129, 2.55] on images" in lines[3] and lines[3].endswith("not told apart).")
    assert "alpha_T 0.151 [0.133, 0.166] on images, 0.328 [0.162, 0.466] on video (difference -0.178" in lines[3]
    assert "]: they differ); alpha_N" in lines[3]  # two overlapping intervals, yet a difference that excludes 0
    # the committed case: inside at 5 of 7, the worst (9.7%) and the last above it, which an upper bound explains
    assert "inside the prediction's 95% interval at 5 of 7 checkpoints, above it at 2 (the worst above it)" in lines[-1]
    assert "does not decide against the form either" in lines[-1]
    # how far above the interval's top: what the run would have to overstate its optimum by
    tops = [h["observed_val_loss"] / h["predicted_val_loss_ci95"][1] - 1 for h in image.fit["holdout"]]
    assert f"up to {100 * max(tops):.1f}% above its top: an observed loss that only bounds the optimum" in lines[-1]
    below = copy.deepcopy(image.fit)
    for h in below["holdout"]:
        h["observed_val_loss"] = h["predicted_val_loss_ci95"][0] * 0.99  # every checkpoint below its interval
    verdict = report.law_form_verdict(below, cpu.fit, image.runs)[-1]
    assert "below it at 7 (the worst below it): a loss below the prediction is the law's miss" in verdict
    good = copy.deepcopy(image.fit)
    for h in good["holdout"]:
        h["rel_error"] = 0.004
    assert "holds at 1% here" in report.law_form_verdict(good)[-1]


def test_two_fits_exponents_are_told_apart_by_the_interval_of_their_difference():
    """Two independent fits' resamples paired: overlapping 95% intervals can still differ."""
    from replicate.fit.laws import LOSS_PARAMS
    from replicate.report.findings import exponents_apart

    rng = np.random.default_rng(0)

    def fit(centre: float, sd: float) -> dict:
        drawn = {f"loss_law.{k}": [1.0] * 2000 for k in LOSS_PARAMS}
        drawn["loss_law.alpha_tokens"] = list(rng.normal(centre, sd, 2000))
        return {"loss_law": {**{k: 1.0 for k in LOSS_PARAMS}, "alpha_tokens": centre}, "bootstrap": {"samples": drawn}}

    # each 95% interval is about +-0.098 wide: 0.18 apart they share about 0.016, while the interval of the
    # difference (+-0.139) excludes 0
    a, b = fit(0.1, 0.05), fit(0.28, 0.05)
    ends = [np.percentile(f["bootstrap"]["samples"]["loss_law.alpha_tokens"], [2.5, 97.5]) for f in (a, b)]
    assert report.compare.intervals_meet(*ends)
    assert exponents_apart(a, b, "alpha_tokens").endswith("they differ")
    assert exponents_apart(a, fit(0.15, 0.05), "alpha_tokens").endswith("not told apart")
    assert exponents_apart(a, {"loss_law": b["loss_law"]}, "alpha_tokens") == "no interval"


def gpu_cfg_bf16() -> bool:
    from replicate.profile import load_profile

    settings = {run.cfg.bf16 for run in load_profile("gpu").runs}
    assert len(settings) == 1  # the recipe reads one run's: the profile must hold one setting
    return settings.pop()


def test_the_gpu_recipe_and_its_time_come_from_the_measured_steps():
    from replicate.profile import load_profile

    estimate = recipe.gpu_estimate(load_profile("gpu"), RESULTS / "benchmarks/gpu_steps.jsonl")
    steps = pd.read_json(RESULTS / "benchmarks/gpu_steps.jsonl", lines=True)
    mini = steps[(steps["size"] == "mini") & (steps["clips"] == 1)].set_index("procs")["steps_per_s_total"]
    assert estimate["speedup"] == pytest.approx(mini[12] / mini[1], rel=1e-6)
    assert estimate["wall_s"] >= estimate["single_process_s"] / estimate["speedup"]
    text = recipe.gpu_recipe(estimate)
    assert "make book PROFILE=gpu" in text and "--deadline-s" in text and "paused/" in text
    assert recipe.duration(estimate["wall_s"]) in text
    # the committed rows have no backend column: they ran when auto took the Triton kernels, and say so
    assert "backend" not in steps and f"with backend {recipe.LEGACY_BACKEND}," in text
    assert set(recipe.gpu_steps_table()[0]["backend"]) == {recipe.LEGACY_BACKEND}
    assert "so the estimate is likely high" in text  # auto no longer takes the kernels those steps ran
    assert "likely high" not in recipe.gpu_recipe({**estimate, "backend": "torch"})
    assert "no time can be estimated" in recipe.gpu_recipe(None)
    # the steps ran under bf16 autocast and the profile trains in fp32: the estimate may err either way
    assert not gpu_cfg_bf16() and "may err either way" in text
    # the lab's first commands: its environment, a check that torch sees the GPU, the dry run; a failing call
    # stops the resume loop instead of spinning
    assert text.index("make venv") < text.index("torch.cuda.is_available()") < text.index("--dry-run")
    assert "    --deadline-s 540 || exit 1" in text
    # the book prints code blocks in a column of about 76 characters: a longer line is clipped (the browser test
    # found 78 clipped)
    code = "\n".join(text.split("```")[1::2])
    assert max(len(line) for line in code.splitlines()) <= 72
    # the dry run's time lets every worker step at one process's speed: optimistic where they share the GPU
    assert (
        f"{estimate['workers']} were measured {estimate['speedup']:.1f}x faster than one, so it is optimistic" in text
    )
    # what the grid can test: its longest runs' steps against the paper's S_opt, counted here from the grid's
    # tokens per step at its smallest batch rather than from the runs' checkpoint steps
    gpu = load_profile("gpu")
    fit = [r.cfg for r in gpu.runs if r.role == "fit"]
    smallest = min(fit, key=lambda c: c.tokens_per_step)
    cells = {(count_params(c.model), t) for c in fit for t in c.checkpoints}
    reached = sum(t / smallest.tokens_per_step >= optimal_steps(n, t) for n, t in cells)
    assert 0 < reached < len(cells)
    assert f"they reach it at {reached} of {len(cells)} fitting (N, T)" in text
    stage_a = recipe.s_opt_reach(load_profile("stage_a"))
    assert f"Stage A reached S_opt at {stage_a['reached']} of {stage_a['cells']} checkpoints" in text
    assert "per cell, will not locate B_opt either" in text and "--profile gpu --dry-run" in text
    sizes = sorted({count_params(c.model) for c in fit})
    assert f"What it measures: the learning-rate and loss laws at the optima of {len(sizes)} sizes" in text
    assert f"N = {sizes[0]:,} to {sizes[-1]:,}" in text and f"{gpu.workers} workers share one GPU" in text
    row = recipe.commands_table().set_index("command").loc["make book PROFILE=gpu"]
    assert row["time, as recorded"] == f"never run; estimated {recipe.duration(estimate['wall_s'])}"
    assert recipe.logged_wall_time(RESULTS / "cpu/sweep.log") == pytest.approx(5039)


def test_the_readme_gpu_recipe_is_the_books():
    from replicate.book import GPU_END, GPU_START, readme_gpu_recipe

    text = (ROOT / "README.md").read_text()
    section = text[text.index(GPU_START) + len(GPU_START) : text.index(GPU_END)].strip()
    assert section == readme_gpu_recipe(ROOT).strip(), "README's GPU recipe is stale: run make readme"


def test_reads_are_recorded_per_chapter_and_tabled(tmp_path):
    log = tmp_path / "reads" / "07_loss_law.txt"
    log.parent.mkdir()
    code = (
        "from replicate.report.execution import record_reads; import pandas as pd; "
        f"record_reads({str(log)!r}); pd.read_csv('results/cpu/runs.csv', nrows=1); "
        "open('results/cpu/fit.json').read(); open('results/cpu/fit.json').read(); "
        f"open({str(tmp_path / 'results_out.txt')!r}, 'w').write('x')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert log.read_text().split() == ["results/cpu/runs.csv", "results/cpu/fit.json"]
    nb = tmp_path / "book" / "07_loss_law.ipynb"
    nb.parent.mkdir()
    nb.write_text(json.dumps({"cells": [], "metadata": {"papermill": {"duration": 12.5}}}))
    runs = execution.execution_table(nb.parent, log.parent)
    assert runs.iloc[0].to_dict() == {
        "chapter": "{doc}`07_loss_law`",
        "ran (s)": 12.5,
        "results files read": 2,
        "from results/": "cpu",
    }
    files = execution.files_table(log.parent).set_index("file (results/)")
    assert files.loc["cpu/runs.csv", "read by"] == "07"
    assert files.loc["cpu/runs.csv", "device"].startswith("cpu")
    assert (
        files.loc["cpu/fit.json", "written by code at"]
        == report.read_fit(RESULTS / "cpu/fit.json")["provenance"]["git_sha"]
    )


def test_the_download_menu_offers_the_chapters_source(tmp_path):
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import book_downloads
    finally:
        sys.path.pop(0)
    menu = {"label": "download-buttons", "buttons": [{"text": ".ipynb"}, {"text": ".pdf"}]}
    context = {"header_buttons": [menu], "pathto": lambda target, _: f"../{target}"}
    app = SimpleNamespace(srcdir=str(ROOT))
    book_downloads.add_source_button(app, "book/07_loss_law", "page.html", context, None)
    assert [b["text"] for b in menu["buttons"]] == [".ipynb", ".py", ".pdf"]
    assert menu["buttons"][1]["url"] == "../_sources/notebooks/07_loss_law.py"
    book_downloads.add_source_button(app, "book/preface", "page.html", context, None)  # no notebook: no button
    assert len(menu["buttons"]) == 3


def test_durations_round_to_the_nearest_minute_on_either_side_of_an_hour():
    from replicate.report import recipe

    assert [recipe.duration(s) for s in (51, 89, 3599, 5039, 7380)] == [
        "51 s",
        "1 min",
        "1 h 00 min",
        "1 h 24 min",
        "2 h 03 min",
    ]


def test_the_held_out_sentence_says_where_the_observed_loss_lies_against_the_prediction(cpu):
    from replicate.report.loss_law import holdout_sentence

    held = cpu.fit["holdout"]
    sides = ["above" if h["observed_val_loss"] > h["predicted_val_loss_ci95"][1] else "not above" for h in held]
    text = holdout_sentence(cpu.fit)
    assert f"lies above it at {sides.count('above')}" in text and f"(of {len(held)} checkpoints)" in text
    beyond = max(h["observed_val_loss"] / h["predicted_val_loss_ci95"][1] - 1 for h in held)
    assert f"up to {100 * beyond:.1f}% above its top: an upper bound explains the sign of such a miss" in text
    # an observed loss below the interval is counted as such (planted)
    below = copy.deepcopy(cpu.fit)
    for h in below["holdout"]:
        h["observed_val_loss"] = h["predicted_val_loss_ci95"][0] / 2
    assert f"lies below it at {len(held)} (of {len(held)} checkpoints)." in holdout_sentence(below)
    # the claim table's verdict on the held-out error says the observed losses only bound the optimum
    table = report.comparison(cpu.fit).set_index("quantity")
    bound = sum(bool(h["observed_on_edge"]) and h["rel_error"] < 0 for h in held)
    assert table.loc["held-out loss, worst |relative error|", "verdict"].endswith(
        f"(the law predicts lower; the observed loss an upper bound at {bound} of {len(held)} checkpoints)"
    )
    above = copy.deepcopy(cpu.fit)  # where the law predicts higher, an upper bound explains nothing
    for h in above["holdout"]:
        h["rel_error"] = abs(h["rel_error"])
    assert report.comparison(above).set_index("quantity").loc["held-out loss, worst |relative error|", "verdict"] == (
        "above 1%"
    )
