"""The fitting library: planted laws recovered from synthetic sweeps, each method on cases with known answers,
bootstrap coverage, bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replicate.errors import ConfigError
from replicate.fit import (
    TRUTH,
    FlopsPerToken,
    SweepCube,
    bootstrap_runs,
    compute_optimal_size,
    extract_optima,
    fit_compute_law,
    fit_flops_per_token,
    fit_loss_law,
    fit_power_law,
    fit_runs,
    flat_region,
    grid_optima,
    hyperparameter_law,
    isoflop_compute_law,
    loss_along_batch,
    loss_law,
    lr_batch_exponent,
    paper_laws,
    percentile_interval,
    power_law_exponent_se,
    synthetic_sweep,
    validate_runs,
)
from replicate.fit import document as fit_document
from replicate.fit.laws import HYPER_PARAMS
from replicate.fit.read import Bootstrap, ComputeLaw, FitDocument, HyperparameterLaw, LossLaw, Surface

LAW = TRUTH["loss_law"]


SIZES, CHECKPOINTS = np.geomspace(3e4, 3e7, 8), np.geomspace(1e6, 1.6e7, 5)


def loss_table(
    seed: int,
    sizes=SIZES,
    runs_per_size: int = 4,
    checkpoints=CHECKPOINTS,
    run_noise: float = 2e-3,
    checkpoint_noise: float = 5e-4,
    law: dict = LAW,
) -> pd.DataFrame:
    """An (N, T, loss) table without hyperparameters: several runs per size, each validated at several T, with
    a relative offset per run (its checkpoints are correlated) and independent noise per checkpoint."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(sizes):
        for k in range(runs_per_size):
            offset = run_noise * rng.standard_normal()
            loss = loss_law(n, checkpoints, **law) * (1 + offset)
            loss *= 1 + checkpoint_noise * rng.standard_normal(len(checkpoints))
            rows += [(f"n{i}-r{k}", n, t, v) for t, v in zip(checkpoints, loss, strict=True)]
    return pd.DataFrame(rows, columns=["run_id", "n_params", "tokens", "val_loss"])


def optimal_exponent(law: dict) -> float:
    """N_opt ~ C^(alpha_T / (alpha_T + alpha_N)) when C is proportional to N T."""
    return law["alpha_tokens"] / (law["alpha_tokens"] + law["alpha_params"])


# --- the whole pipeline on planted laws ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_laws_recovered_from_a_noisy_sweep(seed):
    runs = synthetic_sweep(seed=seed, run_noise=1e-3, checkpoint_noise=3e-4)
    result = fit_runs(runs, bootstrap=0)
    assert result["mode"] == "hyperparameters" and result["n_diverged"] > 0 and result["n_diverged_runs"] > 0
    for name in ("batch_size_law", "lr_law"):
        for key in ("exp_tokens", "exp_params"):
            assert result[name][key] == pytest.approx(TRUTH[name][key], abs=0.04), (name, key)
    law = result["loss_law"]
    assert law["converged"]
    assert law["alpha_tokens"] == pytest.approx(LAW["alpha_tokens"], abs=0.02)
    assert law["alpha_params"] == pytest.approx(LAW["alpha_params"], abs=0.02)
    assert law["l_inf"] == pytest.approx(LAW["l_inf"], abs=0.01)
    # N_opt(C) from the fitted loss law follows alpha_T / (alpha_T + alpha_N) under 6N
    assert result["compute_laws"]["6n"]["exp"] == pytest.approx(optimal_exponent(law), abs=1e-3)
    assert len(result["optima"]) == 5 * 8 and not any(r["on_edge"] for r in result["optima"])
    json.dumps(result, allow_nan=False)


@pytest.fixture(scope="module")
def planted_fit() -> dict:
    """One fit of a planted sweep with every part: a held-out model, a fixed baseline and a few resamples."""
    runs = synthetic_sweep(holdout_widths=(192,), seed=1)
    fixed_lr = float(np.sort(runs["lr"].unique())[3])
    return fit_runs(runs, fixed_batch_size=4096, fixed_lr=fixed_lr, bootstrap=12)


def test_output_has_the_documented_keys(planted_fit):
    result = planted_fit
    # the schema (fit.read) names every key the document has, and no other; source and provenance come from fit_file
    assert result.keys() == FitDocument.__annotations__.keys() - {"source", "provenance"}
    assert result["surface"].keys() == Surface.__annotations__.keys()
    assert result["bootstrap"].keys() == Bootstrap.__annotations__.keys()
    assert result["batch_size_law"].keys() == HyperparameterLaw.__annotations__.keys()
    assert result["loss_law"].keys() <= LossLaw.__annotations__.keys()
    assert result["compute_law"].keys() <= ComputeLaw.__annotations__.keys()
    assert {"surface.batch_size_law.exp_tokens", "loss_law.alpha_tokens"} <= result["bootstrap"]["samples"].keys()
    assert {"n_params", "tokens", "batch_size", "lr", "val_loss", "on_edge"} <= result["optima"][0].keys()
    assert set(result["batch_size_law"]["ci95"]) == {"coef", "exp_tokens", "exp_params"}
    assert {"a", "alpha_tokens", "b", "alpha_params", "l_inf"} <= result["loss_law"]["ci95"].keys()
    assert {"coef", "exp", "flops"} <= result["compute_law"].keys() and result["compute_law"]["flops"] == "exact"
    assert {"loss_law", "compute_law"} <= result["fixed"].keys()
    assert {
        "n_params",
        "tokens",
        "predicted_val_loss",
        "observed_val_loss",
        "rel_error",
        "predicted_batch_size",
        "predicted_lr",
    } <= result["holdout"][0].keys()
    lo, hi = result["loss_law"]["ci95"]["alpha_tokens"]
    assert lo < result["loss_law"]["alpha_tokens"] < hi
    json.dumps(result, allow_nan=False)


def test_fixed_hyperparameters_fit_worse_and_shift_n_opt(planted_fit):
    result = planted_fit
    fixed = result["fixed"]
    # away from the optimum the loss carries a hyperparameter penalty that changes with N and T: a worse fit
    assert fixed["loss_law"]["mse"] > 3 * result["loss_law"]["mse"]
    assert fixed["n_opt_ratio"] == pytest.approx(
        fixed["compute_law"]["n_opt_at_reference"] / result["compute_law"]["n_opt_at_reference"]
    )
    assert fixed["n_opt_ratio"] != pytest.approx(1.0, abs=0.05)


def test_holdout_is_predicted_not_fitted(planted_fit):
    result = planted_fit
    fitted = {r["n_params"] for r in result["optima"]}
    assert result["holdout"] and all(h["n_params"] not in fitted for h in result["holdout"])
    for h in result["holdout"]:
        assert abs(h["rel_error"]) < 0.005
        truth_b = TRUTH["batch_size_law"]["coef"] * h["tokens"] ** 0.808 * h["n_params"] ** 0.1906
        truth_lr = TRUTH["lr_law"]["coef"] * h["tokens"] ** -0.0453 * h["n_params"] ** -0.1619
        assert h["predicted_batch_size"] == pytest.approx(truth_b, rel=0.25)
        assert h["predicted_lr"] == pytest.approx(truth_lr, rel=0.25)


def test_deterministic_given_the_seed():
    runs = loss_table(0)
    a, b = fit_runs(runs, bootstrap=20, seed=5), fit_runs(runs, bootstrap=20, seed=5)
    assert a == b
    assert fit_runs(runs, bootstrap=20, seed=6)["loss_law"]["ci95"] != a["loss_law"]["ci95"]


def test_paper_laws_in_raw_units_reproduce_the_papers_checks():
    """The laws, stated in billions and converted to raw units, give the numbers printed on the paper's figures."""
    from replicate.paper import FIGURE_VALUES

    paper = paper_laws()
    for key in ("batch_size", "lr"):
        v = FIGURE_VALUES[key]
        law = paper["batch_size_law" if key == "batch_size" else "lr_law"]
        assert hyperparameter_law(v["tokens"], v["n_params"], **law) == pytest.approx(v["value"], rel=2e-3)
    for v in FIGURE_VALUES["loss"]:
        assert loss_law(v["n_params"], v["tokens"], **paper["loss_law"]) == pytest.approx(v["value"], abs=1e-4)
    assert FIGURE_VALUES["batch_size"]["value"] == 6.77e4 and FIGURE_VALUES["loss"][0]["value"] == 0.5185


def test_the_papers_batch_law_fixes_the_number_of_steps_at_every_scale():
    from replicate.paper import optimal_steps

    v = paper_laws()["batch_size_law"]
    n, t = 1.07e9, 4e9  # the paper's held-out cell: T / B_opt steps
    assert optimal_steps(n, t) == pytest.approx(t / hyperparameter_law(t, n, **v), rel=1e-12)
    # at 20 tokens per parameter: about 8.1e4 steps from N = 5e4 to 5e9 (within 2%), rising as (T / N)^0.19
    steps = [optimal_steps(n, 20 * n) for n in (5e4, 5e6, 5e9)]
    assert max(steps) / min(steps) < 1.02 and 7.5e4 < steps[0] < 8.5e4
    assert optimal_steps(1e6, 2e8) / optimal_steps(1e6, 2e7) == pytest.approx(10 ** (1 - v["exp_tokens"]), rel=1e-9)


# --- optima ---------------------------------------------------------------------------------------------------


def _bowl(log_b, log_lr, centre_b, centre_lr, curv_b=0.02, curv_lr=(0.02, 0.02)):
    """(groups, n_B, n_lr) log-losses: quadratic in log B, quadratic in log lr with its own curvature per side."""
    u = log_b[None, :, None] - np.asarray(centre_b)[:, None, None]
    v = log_lr[None, None, :] - np.asarray(centre_lr)[:, None, None]
    return np.log(0.5) + curv_b * u**2 + np.where(v < 0, curv_lr[0], curv_lr[1]) * v**2


def test_grid_optima_exact_for_a_quadratic_bowl():
    log_b, log_lr = np.log(2.0) * np.arange(6), np.log(1.5) * np.arange(7)
    cb, cl = np.array([1.3, 2.1]), np.array([1.2, 1.9])
    opt = grid_optima(_bowl(log_b, log_lr, cb, cl), np.zeros((2, 6, 7), bool), log_b, log_lr)
    assert np.allclose(opt["log_batch"], cb, atol=1e-9) and np.allclose(opt["log_lr"], cl, atol=1e-9)
    assert np.allclose(opt["log_loss"], np.log(0.5), atol=1e-12)
    assert not opt["on_edge"].any() and opt["band_agrees"].all() and (opt["n_cells"] == 42).all()


def test_grid_optima_edge_divergence_and_empty_flags():
    log_b, log_lr = np.log(2.0) * np.arange(5), np.log(1.5) * np.arange(6)
    cube = _bowl(log_b, log_lr, [2.0, -1.0, 1.5, 1.5], [4.0, 1.0, 1.2, 1.0])
    cube[0] = _bowl(log_b, log_lr, [2.0], [9.0])[0]  # group 0: the best lr lies beyond the grid
    diverged = np.zeros(cube.shape, bool)
    diverged[2, :, 3:] = True  # group 2: every lr above its optimum diverges
    cube[2][diverged[2]] = np.nan
    cube[3] = np.nan  # group 3: nothing finite
    opt = grid_optima(cube, diverged, log_b, log_lr)
    assert opt["on_edge"][0] and opt["edge_lr"][0] and not opt["edge_batch"][0]
    assert opt["on_edge"][1] and opt["edge_batch"][1] and not opt["edge_lr"][1]  # group 1: B below the grid
    assert opt["log_batch"][1] == log_b[0]
    assert opt["at_divergence"][2] and not opt["on_edge"][2] and opt["log_lr"][2] == pytest.approx(log_lr[2])
    assert not opt["valid"][3] and np.isnan(opt["log_loss"][3])


def test_band_cross_check_flags_a_lopsided_landscape():
    log_b, log_lr = np.log(2.0) * np.arange(5), np.log(1.5) * np.arange(9)
    # gentle toward small lr, very steep toward large: the 0.25% band leans far to the small-lr side
    cube = _bowl(log_b, log_lr, [1.4, 1.4], [2.5, 2.5], curv_lr=(0.002, 0.2))
    cube[1] = _bowl(log_b, log_lr, [1.4], [2.5])[0]
    opt = grid_optima(cube, np.zeros(cube.shape, bool), log_b, log_lr)
    assert not opt["band_agrees"][0] and opt["band_agrees"][1]
    assert opt["band_log_lr"][0] < opt["log_lr"][0] - 0.5 * np.log(1.5)


def test_extracted_optima_track_the_planted_ones_despite_the_asymmetric_lr_penalty():
    runs = validate_runs(synthetic_sweep(seed=4, run_noise=3e-4))
    opt = extract_optima(runs)
    assert len(opt) == 5 * 8  # checkpoints rounded to each batch size still form one T per size
    truth_b = TRUTH["batch_size_law"]["coef"] * opt["tokens"] ** 0.808 * opt["n_params"] ** 0.1906
    truth_lr = TRUTH["lr_law"]["coef"] * opt["tokens"] ** -0.0453 * opt["n_params"] ** -0.1619
    assert np.mean(np.abs(np.log(opt["batch_size"] / truth_b)) < 0.5 * np.log(2)) > 0.9
    assert np.mean(np.abs(np.log(opt["lr"] / truth_lr)) < 0.5 * np.log(1.5)) > 0.9


def _ridge_runs(exponent: float) -> pd.DataFrame:
    """A (B, lr) grid at two (N, T) whose lr optimum scales as B^exponent and whose loss is flat along B."""
    rows = []
    for g, (n, t) in enumerate([(1e5, 1e6), (2e5, 2e6)]):
        for b in 64.0 * 2.0 ** np.arange(5):
            lr_opt = 1e-3 * (b / 64) ** exponent * (1 + g)
            for lr in 1e-4 * 2.0 ** np.arange(12):
                loss = 0.1 * np.exp(0.02 * np.log(lr / lr_opt) ** 2)  # a parabola in log loss, log lr
                rows.append(
                    {
                        "run_id": f"{g}-{b}-{lr}",
                        "n_params": n,
                        "tokens": t,
                        "batch_size": b,
                        "lr": lr,
                        "val_loss": loss,
                        "diverged": False,
                        "role": "fit",
                    }
                )
    return validate_runs(pd.DataFrame(rows))


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_lr_batch_exponent_recovers_the_planted_scaling(exponent):
    runs = _ridge_runs(exponent)
    cube = SweepCube.from_runs(runs)
    assert lr_batch_exponent(cube.optima(), cube.batch_size) == pytest.approx(exponent, abs=1e-6)
    profile = loss_along_batch(runs)
    assert len(profile) == 10 and np.allclose(profile["val_loss"], 0.1)
    assert np.allclose(
        profile["lr"], 1e-3 * (profile["batch_size"] / 64) ** exponent * np.where(profile["n_params"] > 1e5, 2, 1)
    )


def test_lr_batch_exponent_in_the_fit_with_an_interval(planted_fit):
    entry = planted_fit["lr_batch_exponent"]  # the planted lr optimum does not depend on B
    assert abs(entry["value"]) < 0.1 and entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]


def test_power_law_exponent_se_matches_the_scatter_of_refits():
    rng = np.random.default_rng(0)
    t, n = np.meshgrid(np.geomspace(1e5, 1e6, 3), np.geomspace(1e4, 1e5, 3))
    fits, ses = [], []
    for _ in range(400):
        y = 2.0 * t**0.3 * n**-0.2 * np.exp(0.1 * rng.standard_normal(t.shape))
        fits.append(fit_power_law(y.ravel(), t.ravel(), n.ravel())[1])
        ses.append(power_law_exponent_se(y.ravel(), t.ravel(), n.ravel()))
    assert np.allclose(np.std(fits, axis=0), np.sqrt(np.mean(np.square(ses), axis=0)), rtol=0.15)
    assert np.isnan(power_law_exponent_se(np.ones(2), np.array([1.0, 2.0]), np.array([1.0, 3.0]))).all()


# --- the loss law -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["log", "raw"])
def test_loss_law_exact_on_noiseless_points(space):
    n, t = np.meshgrid(np.geomspace(3e4, 3e7, 6), np.geomspace(1e6, 1e8, 7))
    fit = fit_loss_law(n.ravel(), t.ravel(), loss_law(n, t, **LAW).ravel(), space=space)
    assert fit.converged
    for key, value in LAW.items():
        assert getattr(fit, key) == pytest.approx(value, rel=1e-4), key


def test_a_law_without_irreducible_loss_is_a_converged_boundary_fit():
    n, t = np.meshgrid(np.geomspace(3e4, 3e5, 4), np.geomspace(2e5, 2e6, 7))
    law = {**LAW, "l_inf": 0.0}
    loss = loss_law(n, t, **law).ravel()
    fit = fit_loss_law(n.ravel(), t.ravel(), loss)
    assert fit.converged and fit.l_inf_at_zero and fit.l_inf < 1e-5 * loss.min()
    assert fit.alpha_tokens == pytest.approx(LAW["alpha_tokens"], rel=1e-3)
    assert fit.alpha_params == pytest.approx(LAW["alpha_params"], rel=1e-3)
    refit = fit_loss_law(n.ravel(), t.ravel(), loss * (1 + 0.002 * np.cos(np.arange(loss.size))), init=fit)
    assert refit.converged
    shifted = fit_loss_law(n.ravel(), t.ravel(), loss + 0.5 * loss.min())  # now L_inf > 0 fits better
    assert shifted.converged and not shifted.l_inf_at_zero
    assert shifted.l_inf == pytest.approx(0.5 * loss.min(), rel=1e-3)


def test_warm_start_and_grid_reach_the_same_optimum():
    table = loss_table(1)
    w = np.random.default_rng(0).integers(0, 3, len(table))
    args = table["n_params"], table["tokens"], table["val_loss"], w
    cold, warm = fit_loss_law(*args), fit_loss_law(*args, init=fit_loss_law(*args[:3]))
    assert cold.converged and warm.converged
    for key in LAW:
        assert getattr(warm, key) == pytest.approx(getattr(cold, key), rel=1e-4), key


def test_a_mean_of_tiny_huber_terms_fits_the_same():
    """Hoffmann et al.'s fit averaged the Huber terms and its optimizer stopped early (Besiroglu et al.); here
    convergence is a Newton-step test, which does not depend on the objective's scale."""
    table = loss_table(3)
    args = table["n_params"], table["tokens"], table["val_loss"]
    summed, mean = fit_loss_law(*args), fit_loss_law(*args, weights=np.full(len(table), 1 / len(table)))
    assert summed.converged and mean.converged
    for key in LAW:
        assert getattr(mean, key) == pytest.approx(getattr(summed, key), rel=1e-5), key


def test_bootstrap_runs_draws_runs_and_survives_failures():
    seen = []

    def refit(counts):
        seen.append(counts)
        if counts[0] == 0:
            raise ConfigError("run 0 not drawn")
        return {"first": float(counts[0])}

    samples = bootstrap_runs(refit, n_runs=7, resamples=200, keys=["first", "absent"], seed=1)
    assert all(c.sum() == 7 and len(c) == 7 for c in seen)
    first = samples["first"]
    assert np.isnan(samples["absent"]).all() and np.isnan(first).mean() == pytest.approx((6 / 7) ** 7, abs=0.08)
    assert np.nanmean(first) == pytest.approx(1 / (1 - (6 / 7) ** 7), rel=0.1)  # E[draws | drawn at all]
    assert np.array_equal(bootstrap_runs(refit, 7, 200, ["first"], seed=1)["first"], first, equal_nan=True)
    assert percentile_interval(first)[0] >= 1 and percentile_interval(np.full(5, 1.0)) is None


def test_chinchilla_table_recovered_in_loss_only_mode():
    """Hoffmann et al.'s approach-3 law, L = E + A / N^0.34 + B / D^0.28, from a table with no hyperparameters."""
    rng = np.random.default_rng(7)
    n, d = np.meshgrid(np.geomspace(7e7, 1.6e10, 12), np.geomspace(5e9, 5e11, 8))
    loss = (1.69 + 406.4 / n**0.34 + 410.7 / d**0.28) * (1 + 2e-3 * rng.standard_normal(n.shape))
    table = pd.DataFrame({"n_params": n.ravel(), "tokens": d.ravel(), "val_loss": loss.ravel()})
    result = fit_runs(table, bootstrap=0)
    law = result["loss_law"]
    assert result["mode"] == "loss_only" and result["batch_size_law"] is None and result["fixed"] is None
    assert law["alpha_params"] == pytest.approx(0.34, abs=0.03)
    assert law["alpha_tokens"] == pytest.approx(0.28, abs=0.03)
    assert law["l_inf"] == pytest.approx(1.69, abs=0.05)
    assert any("6 N T" in w for w in result["warnings"]) and result["compute_law"]["flops"] == "6n"


def test_raw_and_log_fits_compared(monkeypatch):
    table = loss_table(2)
    assert not any("raw-residual" in w for w in fit_runs(table, bootstrap=0)["warnings"])
    monkeypatch.setattr(fit_document, "RAW_LOG_TOLERANCE", -1.0)
    assert any("raw-residual" in w for w in fit_runs(table, bootstrap=0)["warnings"])


def test_bootstrap_over_runs_covers_the_truth():
    """95% intervals from resampling runs cover the planted exponents in >= 85% of 20 synthetic tables whose
    checkpoints share a per-run offset (resampling rows instead would pretend the checkpoints independent)."""
    keys = ("alpha_tokens", "alpha_params", "l_inf")
    covered = {k: 0 for k in keys}
    widths = {k: [] for k in keys}
    replicates = 20
    for seed in range(replicates):
        ci = fit_runs(
            loss_table(100 + seed, sizes=np.geomspace(3e4, 3e7, 6), checkpoints=np.geomspace(1e6, 1.6e7, 4)),
            bootstrap=40,
            seed=seed,
        )["loss_law"]["ci95"]
        for k in keys:
            covered[k] += ci[k][0] <= LAW[k] <= ci[k][1]
            widths[k].append(ci[k][1] - ci[k][0])
    for k in keys:
        assert covered[k] >= 0.85 * replicates, (k, covered[k])
        assert np.median(widths[k]) < 0.08, k  # informative, not merely wide


# --- compute allocation -------------------------------------------------------------------------------------


def test_compute_optimal_size_matches_the_closed_form():
    a, at, b, an = LAW["a"], LAW["alpha_tokens"], LAW["b"], LAW["alpha_params"]
    flops = np.geomspace(1e12, 1e22, 6)
    n_opt, loss = compute_optimal_size(LAW, flops, FlopsPerToken("6n", 6.0))
    closed = (b * an / (a * at)) ** (1 / (at + an)) * (flops / 6) ** (at / (at + an))
    assert np.allclose(n_opt, closed, rtol=1e-4)
    assert np.allclose(loss, loss_law(closed, flops / (6 * closed), **LAW), rtol=1e-9)
    law = fit_compute_law(LAW, FlopsPerToken("6n", 6.0), 1e12, 1e18)
    assert law["exp"] == pytest.approx(optimal_exponent(LAW), abs=1e-5)


def test_flops_per_token_fitted_from_the_table():
    runs = synthetic_sweep(widths=(32, 48, 64, 96, 128, 192, 256))
    paper = fit_flops_per_token(runs, "paper")
    n = runs["n_params"].to_numpy()
    assert np.allclose(paper(n), runs["flops_paper"], rtol=5e-3) and paper.max_rel_error < 5e-3
    assert paper(1e12) / 1e12 == pytest.approx(0.75 * 7, rel=0.03)  # the n_ctx / d term fades at large N
    assert np.array_equal(fit_flops_per_token(runs, "6n")(n), 6 * n)
    with pytest.raises(ConfigError, match="flops_exact"):
        fit_flops_per_token(runs.drop(columns="flops_exact"), "exact")


def test_isoflop_recovers_the_compute_exponent():
    n, t = np.meshgrid(np.geomspace(1e5, 1e8, 13), np.geomspace(1e6, 1e11, 30))
    iso = isoflop_compute_law(n.ravel(), t.ravel(), loss_law(n, t, **LAW).ravel(), FlopsPerToken("6n", 6.0))
    assert len(iso["budgets"]) >= 3 and all(p["n_sizes"] >= 3 for p in iso["budgets"])
    assert iso["exp"] == pytest.approx(optimal_exponent(LAW), abs=0.03)
    few = isoflop_compute_law(
        np.array([1e5, 1e6]), np.array([1e7, 1e7]), np.array([1.0, 0.9]), FlopsPerToken("6n", 6.0)
    )
    assert few is None


def test_flat_region_rises_away_from_n_opt():
    region = flat_region(LAW, FlopsPerToken("6n", 6.0), 1e20)
    rise = region["rel_increase"]
    assert all(v > 0 for v in rise.values())
    assert rise["0.5"] > rise["0.7"] and rise["1.5"] > rise["1.3"]
    assert region["n_opt"] == pytest.approx(compute_optimal_size(LAW, 1e20, FlopsPerToken("6n", 6.0))[0][0])


# --- bad input ----------------------------------------------------------------------------------------------


def _small():
    return pd.DataFrame(
        {"n_params": [1e5, 1e6, 1e7] * 2, "tokens": [1e7] * 3 + [1e8] * 3, "val_loss": [1.0, 0.9, 0.8, 0.9, 0.8, 0.7]}
    )


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda df: df.drop(columns="tokens"), "missing column tokens"),
        (lambda df: df.assign(n_params=["a", 1, 2, 3, 4, 5]), "n_params is not numeric"),
        (lambda df: df.assign(tokens=[0, 1, 2, 3, 4, 5]), "tokens must be positive"),
        (lambda df: df.assign(n_params=[-1, 1, 2, 3, 4, 5]), "n_params must be positive"),
        (lambda df: df.assign(val_loss=[-1.0, 1, 1, 1, 1, 1]), "val_loss must be positive"),
        (lambda df: df.assign(batch_size=1024), "without lr"),
        (lambda df: df.assign(batch_size=1024, lr=[1e-3, 0, 1e-3, 1e-3, 1e-3, 1e-3]), "lr must be positive"),
        (lambda df: df.assign(role="train"), "role must be fit or holdout"),
        (lambda df: df.assign(role="holdout"), "nothing to fit"),
        (lambda df: df.assign(diverged="maybe"), "diverged must be true/false"),
        (lambda df: df.assign(diverged=True), "every row is diverged"),
        (lambda df: df.assign(val_loss=np.nan), "every row is diverged"),
        (lambda df: df.iloc[:0], "no rows"),
        (lambda df: df.iloc[:4], "fewer than the loss law's 5 parameters"),
    ],
)
def test_bad_tables_raise_one_line_config_errors(change, match):
    with pytest.raises(ConfigError, match=match) as err:
        fit_runs(change(_small()), bootstrap=0)
    assert "\n" not in str(err.value)


def test_bad_fit_options():
    runs = synthetic_sweep(widths=(32, 48, 64))
    with pytest.raises(ConfigError, match="fixed batch_size 3 is no value of the grid"):
        fit_runs(runs, fixed_batch_size=3, fixed_lr=1e-3, bootstrap=0)
    with pytest.raises(ConfigError, match="both"):
        fit_runs(runs, fixed_lr=1e-3, bootstrap=0)
    with pytest.raises(ConfigError, match="need batch_size and lr"):
        fit_runs(_small(), fixed_batch_size=8, fixed_lr=1e-3, bootstrap=0)
    with pytest.raises(ConfigError, match="FLOP convention"):
        fit_runs(_small(), flops="7n", bootstrap=0)
    with pytest.raises(ConfigError, match=">= 0"):
        fit_runs(_small(), bootstrap=-1)


def test_few_sizes_warn_rather_than_fail():
    """A smoke sweep (two sizes, optima on the edge, a diverging lr) still fits, with warnings that say why."""
    runs = synthetic_sweep(widths=(32, 48), tokens=(16384.0, 32768.0, 65536.0), n_batch=2, n_lr=4, lr_step=3.0)
    result = fit_runs(runs, bootstrap=5)
    assert result["n_diverged"] > 0
    text = " ".join(result["warnings"])
    assert "2 model sizes" in text and "grid edge" in text


def _surface_bench():
    import importlib.util

    path = Path(__file__).parents[1] / "benchmarks" / "surface_fit.py"
    spec = importlib.util.spec_from_file_location("surface_fit", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.fixture(scope="module")
def planted_surfaces():
    """benchmarks/surface_fit.py's planted sweeps (0.3% curvature per doubling^2, 0.9% noise per run), both
    estimators on each of 30, the surface started from the noiseless sweep's fit; the first 10 with bootstrap
    intervals of the surface (100 resamples)."""
    from replicate.fit.surface import fit_surface

    bench = _surface_bench()
    cube = SweepCube.from_runs(bench.planted(0, noise=0.0))
    truth, _ = fit_surface(cube)
    reps = [bench.replicate_once(seed, 100 if seed < 10 else 0, init=truth) for seed in range(30)]
    return bench, cube, truth, reps


def test_the_surface_fit_recovers_a_noisy_batch_law_better_than_per_cell_optima(planted_surfaces):
    """The surface's 95% intervals cover the planted exponents in at least 8 of 10 replicates, and over 30
    sweeps its median error of beta_B and gamma_B is at most half the two-stage method's (the full table: the
    benchmark)."""
    bench, _, _, reps = planted_surfaces
    for key, true in bench.TRUE.items():
        assert sum(r["ci95"][key][0] <= true <= r["ci95"][key][1] for r in reps[:10]) >= 8, key
        errors = {m: np.median([abs(r[m][key] - true) for r in reps]) for m in ("two_stage", "surface")}
        assert errors["surface"] <= 0.5 * errors["two_stage"], (key, errors)


def test_the_exponents_information_bound_scales_with_the_noise_and_bounds_least_squares(planted_surfaces):
    """fit.surface.exponent_sd: the standard deviations grow in proportion to the noise, the least-squares
    sandwich is never below the Cramer-Rao bound, and the surface's scatter over planted sweeps matches it."""
    from replicate.fit.surface import exponent_sd

    _, cube, surface, reps = planted_surfaces
    sd1, sd2 = exponent_sd(cube, surface, 0.009, 0.003), exponent_sd(cube, surface, 0.018, 0.006)
    for key, value in sd1["cramer_rao"].items():
        assert sd2["cramer_rao"][key] == pytest.approx(2 * value, rel=1e-6)
        assert sd1["least_squares"][key] >= value * (1 - 1e-9)
    scatter = np.std([r["surface"]["exp_params"] for r in reps])
    assert 0.6 < scatter / sd1["least_squares"]["exp_params"] < 1.6


def test_the_loss_law_reports_its_edge_points_an_interior_refit_and_leave_one_size_out_errors():
    runs = synthetic_sweep(seed=2, run_noise=1e-3)
    fit = fit_runs(runs, bootstrap=0)
    law, optima = fit["loss_law"], fit["optima"]
    assert law["n_points"] == len(optima) and law["n_on_edge"] == sum(o["on_edge"] for o in optima)
    assert law["interior_only"]["n_points"] == law["n_points"] - law["n_on_edge"]
    assert law["interior_only"]["alpha_tokens"] == pytest.approx(TRUTH["loss_law"]["alpha_tokens"], abs=0.05)
    held = law["leave_one_size_out"]
    assert len(held) == runs.loc[runs["role"] == "fit", "n_params"].nunique()
    assert all(h["max_abs_rel_error"] < 0.02 for h in held)  # the planted law is additive: it extrapolates


def test_the_alpha_n_profile_is_narrow_where_the_law_is_identified_and_wide_where_not():
    from replicate.fit.loss import profile_alpha_params

    n, t = np.meshgrid(np.geomspace(1e5, 1e8, 5), np.geomspace(1e6, 1e9, 6))
    loss = loss_law(n.ravel(), t.ravel(), **TRUTH["loss_law"])
    sharp = profile_alpha_params(n.ravel(), t.ravel(), loss * (1 + 1e-4 * np.random.default_rng(0).standard_normal(30)))
    lo, hi = sharp["range95"]
    assert lo <= TRUTH["loss_law"]["alpha_params"] <= hi and hi - lo < 0.05
    narrow_n = n[:, :2].ravel(), t[:, :2].ravel()  # two sizes a factor 5.6 apart, 1% noise
    noisy = loss_law(*narrow_n, **TRUTH["loss_law"]) * (1 + 0.01 * np.random.default_rng(1).standard_normal(12))
    wide = profile_alpha_params(*narrow_n, noisy)
    assert wide["range95"][1] - wide["range95"][0] > TRUTH["loss_law"]["alpha_params"]


def test_leave_one_size_out_picks_the_form_that_generated_the_data():
    from replicate.fit.interaction import interaction_law

    n, t = np.meshgrid(np.geomspace(1e5, 3e7, 5), np.geomspace(1e6, 1e9, 6))
    noise = 1 + 2e-4 * np.random.default_rng(0).standard_normal(n.size)
    law = {"n_c": 3e4, "t_c": 1e5, "alpha_params": 0.3, "alpha_tokens": 0.25, "l_inf": 0.05}
    kaplan = pd.DataFrame(
        {"n_params": n.ravel(), "tokens": t.ravel(), "val_loss": interaction_law(n.ravel(), t.ravel(), **law) * noise}
    )
    additive = kaplan.assign(val_loss=loss_law(n.ravel(), t.ravel(), **TRUTH["loss_law"]) * noise)
    assert fit_runs(kaplan, bootstrap=0)["loss_law"]["preferred_form"]["form"] == "interaction"
    assert fit_runs(additive, bootstrap=0)["loss_law"]["preferred_form"]["form"] == "additive"


def test_anyones_llm_style_table_fits_to_finite_laws():
    """A plain sweep table as an LLM study would publish it: one row per run, a few (N, D) cells with 100 (B, lr)
    points each, B in tokens, no run ids, seeds, FLOP columns or roles."""
    rng = np.random.default_rng(0)
    rows = []
    for n in (1e7, 4e7, 1.6e8):
        for d in (2e9, 8e9, 3.2e10):
            b_opt, lr_opt = 2e5 * (d / 8e9) ** 0.5, 1e-3 * (n / 4e7) ** -0.2
            for b in b_opt * 2.0 ** np.arange(-4.5, 5):
                for lr in lr_opt * 2.0 ** np.arange(-4.5, 5):
                    bowl = 0.004 * np.log2(b / b_opt) ** 2 + 0.01 * np.log2(lr / lr_opt) ** 2
                    loss = loss_law(n, d, **TRUTH["loss_law"]) * (1 + bowl) * (1 + 2e-3 * rng.standard_normal())
                    rows.append({"n_params": n, "tokens": d, "batch_size": b, "lr": lr, "val_loss": loss})
    fit = fit_runs(pd.DataFrame(rows), bootstrap=10)
    for law in ("batch_size_law", "lr_law", "loss_law"):
        assert np.isfinite(fit[law]["exp_tokens" if law != "loss_law" else "alpha_tokens"]), law
    surface = fit["surface"]["batch_size_law"]
    assert fit["surface"]["converged"] and surface["exp_tokens"] == pytest.approx(0.5, abs=0.1)


def test_the_holdout_takes_the_headline_surface_laws_where_the_surface_converged():
    fit = fit_runs(synthetic_sweep(widths=(32, 48, 64), holdout_widths=(96,), seed=3), bootstrap=0)
    assert fit["surface"]["converged"]
    laws = {k: fit["surface"][k] for k in ("batch_size_law", "lr_law")}
    for row in fit["holdout"]:
        for key, law in (("predicted_batch_size", "batch_size_law"), ("predicted_lr", "lr_law")):
            want = hyperparameter_law(row["tokens"], row["n_params"], **{k: laws[law][k] for k in HYPER_PARAMS})
            assert row[key] == pytest.approx(want, rel=1e-9)


def test_a_surface_whose_minimum_lies_off_the_grid_reports_no_laws_but_its_lr_ridge_with_an_interval():
    """B_opt planted 3 doublings below the smallest batch (as in the cpu study): no B_opt law and no curvature
    (nor intervals from the resamples that place a vertex on the grid), but the lr-B ridge is the surface's
    shape, with an interval over every resample."""
    runs = synthetic_sweep(widths=(32, 48, 64), n_batch=11, seed=4)
    runs = runs[runs["batch_size"] >= np.sort(runs["batch_size"].unique())[-3]]  # 3 doublings above B_opt
    surface = fit_runs(runs, bootstrap=20)["surface"]
    assert not surface["converged"] and surface["batch_size_law"]["exp_tokens"] is None
    assert all(v is None for v in surface["batch_size_law"]["ci95"].values())
    assert surface["curvature_per_doubling2"] == {"value": None, "ci95": None}
    lo, hi = surface["lr_law"]["ci95"]["ridge"]
    assert lo <= surface["lr_law"]["ridge"] <= hi and abs(surface["lr_law"]["ridge"]) < 0.1  # planted: 0
    # the vertex (ln B_opt at the data's centre) stays within VERTEX_REACH doublings of the grid
    from replicate.fit.surface import VERTEX_REACH, fit_surface

    cube = SweepCube.from_runs(validate_runs(runs))
    vertex = fit_surface(cube)[0]["params"][len(cube.n_params)]
    reach = VERTEX_REACH * np.log(2)
    assert np.log(cube.batch_size[0]) - reach - 1e-9 <= vertex <= np.log(cube.batch_size[-1]) + reach + 1e-9
