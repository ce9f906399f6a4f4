"""The study's findings in sentences, generated from fit.json: what the book's introduction says plainly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.fit import hyperparameter_law, percentile_interval
from replicate.fit.curvature import GO
from replicate.fit.read import CurvatureSummary, FitDocument, HeldoutSummary, LrLawDocument, headline, law_samples
from replicate.paper import HEADLINE, LOSS_LAW, N_OPT_RATIO, SCALE, optimal_steps, paper_laws
from replicate.report.compare import (
    against_goal,
    ci_text,
    comparison,
    fmt_ci,
    fmt_percent,
    holdout_beyond,
    holdout_sides,
    intervals_meet,
    loss_law_checks_sentence,
    n_opt_bracketed,
    n_opt_ratio_word,
    on_batch_edge,
    seed_noise_clause,
    verdict,
    with_seed_noise,
    worst_holdout_error,
)
from replicate.report.lr_law import loss_law_exponents
from replicate.theory.sgd import eta_opt


def _beside(slope: dict, value: float) -> str:
    """How the pooled slope `slope` (value, ci95) stands beside the lr law's ridge `value`."""
    ci = slope.get("ci95")
    if not ci:
        return "has no interval."
    if ci[0] <= value <= ci[1]:
        return "measures the same slope less precisely: its interval contains it."
    return "excludes it: the two estimates disagree."


def summary_lines(fit: FitDocument, line_search: dict | None = None, lr_law: LrLawDocument | None = None) -> list[str]:
    """The study's findings in sentences, from fit.json (and the theory's line_search.json results, and the
    learning-rate law that decides Eq. 13, report.load_lr_law), with 95% intervals in brackets: what the book's
    introduction says plainly."""
    paper = paper_laws()
    optima = pd.DataFrame(fit["optima"])
    lines = []
    if "edge" in optima and optima["batch_size"].notna().any():
        on_b = pd.Series(on_batch_edge(fit), index=optima.index)
        predicted = hyperparameter_law(optima["tokens"], optima["n_params"], **paper["batch_size_law"])
        b = optima["batch_size"]
        ends = (
            [f"all at {b.min():.0f} tokens"]
            if b.min() == b.max()
            else [
                f"{n} at its {end} batch, {edge:.0f} tokens"
                for end, edge in (("smallest", b.min()), ("largest", b.max()))
                if (n := int((on_b & (b == edge)).sum()))
            ]
        )
        lines.append(
            f"B_opt: {int(on_b.sum())} of {len(optima)} (N, T) optima sit on the batch-size edge of the "
            f"grid ({'; '.join(ends)}), so our B_opt law is not "
            f"a measurement. The paper's law itself puts B_opt at {predicted.min():.0f} to "
            f"{predicted.max():.0f} tokens at our (N, T)."
        )
    slope = fit.get("lr_batch_exponent")
    pooled = (
        f"B^{slope['value']:.2f}{ci_text(slope.get('ci95'))} between the grid's best cells"
        if slope and slope.get("value") is not None
        else None
    )
    ridge = (lr_law or {}).get("ridge") or {}
    if ridge.get("value") is not None:
        runs = Path(lr_law["source"]["runs"]).parent
        lines.append(
            f"eta_opt follows the batch size as B^{ridge['value']:.2f}{ci_text(ridge.get('ci95'))} at fixed (N, T), "
            f"by the learning-rate law fitted to every run of `{runs}/` (chapter 6c)"
            + (f"; the study's pooled slope, {pooled} (chapter 6), {_beside(slope, ridge['value'])}" if pooled else ".")
        )
    elif pooled:
        lines.append(
            f"eta_opt follows the batch size as {pooled}: along that ridge the loss changes by a few percent at most "
            "(the hyperparameter chapter)."
        )
    law = fit["loss_law"]
    ci = law.get("ci95", {})
    p = paper["loss_law"]
    lines.append(
        f"Loss law at the optima: alpha_T = {law['alpha_tokens']:.3f}{ci_text(ci.get('alpha_tokens'))} "
        f"(paper {p['alpha_tokens']}), alpha_N = {law['alpha_params']:.3f}"
        f"{ci_text(ci.get('alpha_params'))} (paper {p['alpha_params']})"
        + (
            "; the irreducible term L_inf fits to zero."
            if law.get("l_inf_at_zero")
            else f"; L_inf = {law['l_inf']:.4g}."
        )
    )
    fixed = fit.get("fixed") or {}
    if fixed.get("n_opt_ratio") is not None:
        lines.append(
            f"Fixed vs optimal hyperparameters: N_opt ratio {fixed['n_opt_ratio']:.4g}"
            f"{ci_text(fixed.get('n_opt_ratio_ci95'))} at {fixed['reference_flops']:.0e} FLOPs "
            f"(paper {N_OPT_RATIO:.3g}); loss-fit MSE "
            f"{fixed['loss_law']['mse']:.3g} fixed vs {law['mse']:.3g} optimal (paper "
            f"{HEADLINE['mse_fixed']:.3g} vs {HEADLINE['mse_optimal']:.3g})."
        )
    worst = worst_holdout_error(fit)
    if worst is not None:
        paper_errors = " and ".join(f"{100 * e:.2g}%" for e in HEADLINE["holdout_rel_error"])
        lines.append(
            f"Held-out model: the loss law's largest error on its best loss is {100 * worst:.1f}% over its "
            f"checkpoints (paper: {paper_errors})."
        )
    if line_search:
        ratio = [r["eta_best_measured"] / r["eta_opt_predicted"] for r in line_search["rows"]]
        lines.append(
            f"SGD theory: on the Video DiT the best one-step SGD learning rate, located on a grid centred on the "
            f"prediction, is within {100 * max(abs(r - 1) for r in ratio):.1f}% of eta_opt(B) = eta_max / (1 + "
            f"B_noise / B) at {len(ratio)} batch sizes (B_noise = {line_search['noise']['b_noise']['value']:.3g} "
            "clips): one step of plain SGD at one checkpoint, not AdamW training."
        )
    return lines


def _lr_exponent_verdict(lr_law: LrLawDocument, key: str) -> tuple[str, str] | None:
    """(verdict, its number) for lr*'s exponent in `key` ("tokens" or "params"), None where not identified."""
    measured = lr_law[f"lr_exponent_{key}"]
    if measured is None:
        return None
    paper = lr_law["paper_implied"][f"lr_exponent_{key}"]["value"]
    label = {"tokens": "T", "params": "N"}[key]
    # what the two slopes' difference means over the data's range: the measured over the implied lr*, from one
    # end of the range to the other (1: the same slope), with the difference's interval (the two share r)
    values = [v[{"tokens": "tokens", "params": "n_params"}[key]] for v in lr_law.get("vertices") or []]
    span = max(values) / min(values) if values else None
    diff = (lr_law["paper_implied"].get("measured_minus_implied") or {}).get(key)
    apart = (
        f"; across the data's {span:.3g}x in {label} the measured lr* moves x{span ** diff['value']:.2f} "
        f"[{span ** diff['ci95'][0]:.2f}, {span ** diff['ci95'][1]:.2f}] against the implied"
        if span and diff and diff.get("ci95")
        else ""
    )
    return (
        verdict(measured["value"], measured["ci95"], paper),
        f"lr* ~ {label}^{measured['value']:.3f} {fmt_ci(measured['ci95'])} (paper-implied {paper:.3f}{apart})",
    )


def lr_law_claim(lr_law: LrLawDocument, ema: LrLawDocument | None = None) -> tuple[str, str]:
    """Eq. 13 tested at a fixed batch size (replicate.fit.lr_law, an lr_law.json): the verdict on its T and its N
    dependence, each against the exponent the paper's laws imply given the measured lr-B ridge, and the numbers
    that decide them. With `ema`, the same runs' law under the EMA readout: a verdict that both readouts give
    says so, one that differs gives the EMA's beside it, with its number."""
    words, numbers = [], []
    for key, label in (("tokens", "T"), ("params", "N")):
        raw = _lr_exponent_verdict(lr_law, key)
        if raw is None:
            words.append(f"in {label}: not identified (one model size)")
            continue
        words.append(f"in {label}: {raw[0]}")
        numbers.append(raw[1])
        other = _lr_exponent_verdict(ema, key) if ema is not None else None
        if other is not None and other[0] == raw[0]:
            words[-1] += " (both readouts)"
        elif other is not None:
            words[-1] += f" (raw weights; the EMA readout: {other[0]})"
            numbers.append(f"EMA readout: {other[1]}")
    ridge = lr_law["ridge"]
    numbers.append(f"ridge r = {ridge['value']:.2f} {fmt_ci(ridge['ci95'], 2)}")
    groups = f"{lr_law['fit']['clusters']} training groups"
    runs = (lr_law.get("source") or {}).get("runs")
    where = f"{Path(runs).parent}, {groups}" if runs else groups
    return "; ".join(words), ", ".join(numbers) + f" at fixed B ({where})"


def heldout_claim(summary: HeldoutSummary, study_worst: float | None = None) -> tuple[str, str]:
    """The loss law's held-out claim tested on Stage L's held-out model (summary.json, replicate.fit.heldout): the
    verdict by every checkpoint's 95% interval, at the goal of the study and at the paper's own precision, and
    the number that decides it (`study_worst`: the study's held-out error, beside it where there is one)."""
    # the bootstrap carries the fitting sizes' seed noise, not the held-out model's: that widens its intervals
    errors = with_seed_noise(summary["heldout_loss_error"], summary.get("heldout_seed_noise"))
    goal = summary["goals"]["heldout_loss_error"]
    paper = max(HEADLINE["holdout_rel_error"])
    at_goal, at_paper = against_goal(errors, -goal, goal), against_goal(errors, -paper, paper)
    if at_paper == "within":
        word = f"holds at the paper's {100 * paper:.2g}%"
    else:
        at = {"within": "holds", "outside": "does not hold", "not decided": "not decided"}[at_goal]
        # the paper's figure is one prediction per model; where only some checkpoints exclude it, say how many
        # and what the last one says on its own
        outside = sum(against_goal([e], -paper, paper) == "outside" for e in errors)
        last = against_goal(errors[-1:], -paper, paper)
        some = f" at {outside} of {len(errors)} checkpoints" if outside < len(errors) else ""
        some += f", the last {_LAST_WORD[last]}" if last != "outside" else ""
        excludes = f"; excludes the paper's {100 * paper:.2g}%{some}" if at_paper == "outside" else ""
        word = f"{at} at {100 * goal:.0f}%{excludes}"
    worst = max(errors, key=lambda e: abs(e["value"]))
    held = summary["heldout"]
    decides = (
        f"worst held-out error {fmt_percent(worst)}"
        + (f", the last {fmt_percent(errors[-1])}" if errors[-1] is not worst else "")
        + f" (Stage L, N = {held['n_params']:,}, {len(errors)} checkpoints"
        + ("; intervals with its seed noise" if seed_noise_clause(summary.get("heldout_seed_noise")) else "")
        + ")"
        + (f"; the study's held-out model: {100 * study_worst:.1f}%" if study_worst is not None else "")
    )
    return word + " (Stage L: the optima in lr at one batch size)", decides


_LAST_WORD = {"within": "within it", "not decided": "not decided against it"}


def claim_verdicts(
    fit: FitDocument,
    stage_a: CurvatureSummary | None = None,
    lr_law: LrLawDocument | None = None,
    heldout: HeldoutSummary | None = None,
    lr_law_ema: LrLawDocument | None = None,
) -> pd.DataFrame:
    """The paper's claims, one row each: the claim, our verdict (holds / does not hold / not identified / not
    testable at this scale, with the reason) and the one number that decides it, all from fit.json, Stage A's
    summary.json and, for Eq. 13, the learning-rate law at a fixed batch size (`lr_law`, where measured), and
    for the loss law's prediction, Stage L's held-out model (`heldout`, its summary.json, where trained)."""
    paper = paper_laws()
    rows = []
    optima = pd.DataFrame(fit["optima"])
    on_edge = int(optima["on_edge"].astype(bool).sum()) if "on_edge" in optima else 0
    curvature = (stage_a or {}).get("curvature_per_doubling2", {}).get("value")
    for law, name, eq in (("batch_size_law", "B_opt", "Eq. 10"), ("lr_law", "eta_opt", "Eq. 13")):
        p = paper[law]
        claim = f"{name} = c T^{p['exp_tokens']:+.3g} N^{p['exp_params']:+.3g} ({eq})"
        # the lr axis has its own optima, whatever B's do; B's per-(N, T) optima sit on the grid's edge where
        # the surface finds no minimum along B, so they cannot stand for Eq. 10
        chosen = headline(fit, law, fallback=law == "lr_law")
        part, method = chosen.law, chosen.method
        if law == "lr_law" and lr_law is not None:
            word, decides = lr_law_claim(lr_law, lr_law_ema)
            # at a fixed B the paper's lr* exponents combine Eq. 13's with Eq. 10's along the ridge: one test of both
            word += " (a joint test with Eq. 10: the paper-implied exponents use both laws)"
        elif part and part.get("exp_tokens") is not None:
            ci = (part.get("ci95") or {}).get("exp_tokens")
            word = verdict(part["exp_tokens"], ci, p["exp_tokens"])
            decides = f"exponent in T {part['exp_tokens']:.3g} {fmt_ci(ci)} ({method})"
        elif stage_a is not None and stage_a.get("verdict") == "no-go":
            envelope = stage_a["curvature_per_doubling2"].get("ci95_envelope")
            interval = f" [{100 * envelope[0]:.2f}, {100 * envelope[1]:.2f}]%" if envelope else ""
            # what decides it is the bowl's depth against what locating B_opt needs, not the seed noise
            below = f": at most {100 * envelope[1]:.2f}% per doubling^2, a go needs {100 * GO:.1f}%" if envelope else ""
            word = f"not testable at this scale (the loss bends too little along B to locate B_opt{below})"
            decides = f"curvature {100 * curvature:.2f}%{interval} per doubling^2 (Stage A)"
        else:
            word = "not testable at this scale (the optima sit on the grid's edge; no curvature along B to locate)"
            decides = f"{on_edge} of {len(optima)} (N, T) optima on an edge" + (
                f"; Stage A: {stage_a['verdict']}, curvature {100 * curvature:.2f}% per doubling^2"
                if curvature is not None
                else ""
            )
        rows.append({"claim": claim, "verdict": word, "deciding number": decides})
    worst = worst_holdout_error(fit)
    best = min(HEADLINE["holdout_rel_error"])
    if heldout is not None and heldout.get("heldout"):
        word, decides = heldout_claim(heldout, worst)
    else:
        word = (
            "not tested (no held-out model)"
            if worst is None
            else "holds at 1%"
            if worst <= 0.01
            else "does not hold at this scale"
        )
        decides = "-" if worst is None else f"worst held-out error {100 * worst:.1f}%"
    rows.append(
        {
            "claim": "the loss law fitted at the optima predicts a larger model's loss "
            f"(within {100 * best:.2g}-{100 * max(HEADLINE['holdout_rel_error']):.2g}%)",
            "verdict": word,
            "deciding number": decides,
        }
    )
    fixed = fit.get("fixed") or {}
    ratio = fixed.get("n_opt_ratio")
    ci = fixed.get("n_opt_ratio_ci95")
    word = "not measured here" if ratio is None else n_opt_ratio_word(fit)
    rows.append(
        {
            "claim": f"fixed hyperparameters overestimate N_opt (x{N_OPT_RATIO:.2f} at 1e22 FLOPs)",
            "verdict": word,
            "deciding number": "-" if ratio is None else f"N_opt ratio {ratio:.4g} {fmt_ci(ci)}",
        }
    )
    return pd.DataFrame(rows)


def line_search_scope(line_search: dict, dit_noise: list[dict]) -> str:
    """What chapter 4's line-search check covers, and its largest deviation from the prediction beside the
    prediction's own 95% interval (eta_max and B_noise each at +-1.96 SE, the combination that widens it)."""
    noise, rows = line_search["noise"], line_search["rows"]
    model = dit_noise[0]  # theory_study searches from the first checkpoint of the smallest size
    worst = max(rows, key=lambda r: abs(math.log(r["eta_best_measured"] / r["eta_opt_predicted"])))
    b, best = worst["batch_size"], worst["eta_best_measured"]
    (em, em_se), (bn, bn_se) = ((noise[k]["value"], noise[k]["se"]) for k in ("eta_max", "b_noise"))
    lo = eta_opt(b, em - 1.96 * em_se, bn + 1.96 * bn_se)
    hi = eta_opt(b, em + 1.96 * em_se, max(bn - 1.96 * bn_se, 0.0))
    sizes = ", ".join(str(r["batch_size"]) for r in rows)
    return (
        f"Scope: one checkpoint ({model['tokens']:,} training tokens) of one model ({model['size']}, "
        f"N = {model['n_params']:,}), plain SGD, a single step from there, at {len(rows)} batch sizes ({sizes} "
        f"clips), each step's gain averaged over {noise['n_draws']} minibatches. The largest deviation is at "
        f"B = {b}: the best measured step is {best / worst['eta_opt_predicted']:.3f} times the predicted one; the "
        f"prediction's own 95% interval there is [{lo:.3g}, {hi:.3g}], and the measured {best:.3g} lies "
        f"{'inside' if lo <= best <= hi else 'outside'} it."
    )


def s_opt_range(runs: pd.DataFrame) -> str:
    """The steps S_opt that the paper's batch law implies (paper.optimal_steps) over a study's fitting (N, T), and
    with its held-out model where it has one: the one way the book states that range."""
    s_opt = np.array([optimal_steps(n, t) for n, t in zip(runs["n_params"], runs["tokens"], strict=True)])
    fitting = (runs["role"] == "fit").to_numpy()
    text = f"{s_opt[fitting].min():,.0f} to {s_opt[fitting].max():,.0f} steps over its fitting runs"
    if not fitting.all():
        text += f" ({s_opt.min():,.0f} to {s_opt.max():,.0f} with the held-out model)"
    return text


def steps_sentence(runs: pd.DataFrame, where: str) -> str:
    """The longest run of the study in `where` (its runs.csv) in optimiser steps, its tokens per parameter, and the
    steps the paper's batch law implies there."""
    steps = runs["tokens"] / runs["batch_size"]
    per_param = runs["tokens"] / runs["n_params"]
    return (
        f"The study rendered here ({where}) trained its longest run for {steps.max():,.0f} steps, at "
        f"{per_param.min():.2g} to {per_param.max():.3g} tokens per parameter, where the paper's law puts "
        f"$S_\\mathrm{{opt}}$ at {s_opt_range(runs)}."
    )


def scale_sentence(runs: pd.DataFrame, where: str) -> str:
    """How the rendered study's models and token counts (runs.csv, in `where`) compare with the paper's
    (paper.SCALE)."""
    n_lo, n_hi = runs["n_params"].min(), runs["n_params"].max()
    (p_lo, p_hi), (pt_lo, pt_hi) = SCALE["n_params"], SCALE["tokens"]
    return (
        f"**Scale**: the models of the study rendered here ({where}) have {n_lo:,.0f} to {n_hi:,.0f} parameters and "
        f"see at most {runs['tokens'].max():,.0f} tokens (Stages A and L give theirs in chapters 6b and 6c); the "
        f"paper's have {_si(p_lo)} to {_si(p_hi)} and see {_si(pt_lo)} to {_si(pt_hi)}: these are "
        f"{p_lo / n_hi:,.0f} to {p_hi / n_lo:,.0f} times smaller, over a {n_hi / n_lo:.0f}x range of sizes, the "
        f"held-out model included (the paper's: {p_hi / p_lo:.0f}x)."
    )


def limitations(
    fit: FitDocument,
    runs: pd.DataFrame,
    stage_a: CurvatureSummary | None = None,
    fit_ema: FitDocument | None = None,
    heldout: HeldoutSummary | None = None,
) -> list[str]:
    """What the rendered study cannot say, and why, one sentence each, from its fit.json and runs.csv (and
    Stage A's summary.json for the seed noise, fit_ema.json for the readouts' optima, Stage L's summary.json for
    the loss law at its lr optima): the book's limitations section."""
    steps = runs["tokens"] / runs["batch_size"]
    cells = runs.groupby(["n_params", "batch_size", "lr"])["seed"].nunique()
    loss = fit["loss_law"]
    unidentified = comparison(fit).query("verdict == 'not identified'")["quantity"].tolist()
    lines = [
        f"**Steps**: the longest run of the study rendered here took {steps.max():,.0f} optimiser steps, where the "
        "paper's batch law puts the "
        f"optimum's steps at {s_opt_range(runs)}: by that law, runs shorter than that have their best batch below "
        "the smallest one, where B_opt can be bounded but not located (chapter 4).",
        f"**Seeds**: {cells.min()}"
        + (f" to {cells.max()}" if cells.max() > cells.min() else "")
        + (" seed" if cells.max() == 1 else " seeds")
        + " per (N, B, lr) cell"
        + (
            f"; Stage A measured a seed-to-seed spread of {near:.2%} per cell near the optimum (raw readout, its own "
            "model and clips), so loss differences below about twice that are not resolved by one run."
            if stage_a and (near := stage_a["seed_noise"]["raw"]["near_optimum"]["rms"]) is not None
            else "; the spread between seeds is not measured in this study."
        ),
        f"**Grid edges**: {loss['n_on_edge']} of the {loss['n_points']} (N, T) optima sit on an edge of the (B, lr) "
        "grid; they bound the optimum's loss from above rather than locate it.",
        "**Evaluation protocol**: the paper does not publish how it scores a model at constant learning rate; we "
        "record the raw weights' windowed loss and the EMA weights' loss"
        + (f" {_readouts_agree(fit, fit_ema)} (chapter 6)." if fit_ema else " (chapter 6)."),
        f"**Data**: procedural grayscale clips ({runs['n_ctx'].iloc[0]} pixel-patch tokens each here), not VAE "
        "latents of "
        "real video: the loss is another quantity, so constants (coefficients, L_inf) do not compare, only "
        "exponents, signs and directions.",
    ]
    if loss.get("l_inf_at_zero"):
        lines.append(
            f"**L_inf is not identified**: the fit puts the irreducible loss at its bound, zero (the paper's is "
            f"{LOSS_LAW['l_inf']}, most of its loss), so the fitted exponents absorb the floor."
        )
    if unidentified:
        stage_l = ((heldout or {}).get("heldout") or {}).get("loss_law")
        lines.append(
            "**Not identified by these data** (intervals as wide as the paper's value): "
            + "; ".join(unidentified)
            + "."
            + (_stage_l_loss_exponents(stage_l) if stage_l and any("loss exponent" in u for u in unidentified) else "")
        )
    if not n_opt_bracketed(fit):
        lines.append(
            "**N_opt is not bracketed**: no compute budget is reached by three sizes with an interior minimum, so "
            "every compute-optimal size (the 1e22-FLOP comparison included) is read off a fitted law far outside "
            f"the trained sizes (at most {runs['n_params'].max():,} parameters)."
        )
    holdout = [h for h in fit.get("holdout") or [] if h.get("rel_error") is not None]
    if holdout:
        fit_n = runs.loc[runs["role"] == "fit", "n_params"].max()
        lines.append(
            f"**Extrapolation**: the held-out model has {holdout[0]['n_params'] / fit_n:.1f}x the parameters of the "
            f"largest fitted one; predictions beyond that are not tested here."
        )
    return lines


def _stage_l_loss_exponents(law: dict) -> str:
    """Stage L's loss-law exponents at its lr optima, for the limitations' 'not identified' line, with the two
    caveats that keep them from standing in for this study's: other clips, and an L_inf its data may not pin."""
    l_inf_ci = (law.get("ci95") or {}).get("l_inf")
    floor = l_inf_ci is not None and l_inf_ci[0] < 0.01 * law["l_inf"]
    return (
        f" Stage L's loss law, fitted at its optima in lr at one batch size on its own clips (chapter 6c), "
        f"gives {loss_law_exponents(law)}"
        + (
            ", though its L_inf's interval reaches zero, so those exponents may absorb part of the floor"
            if floor
            else ""
        )
        + "; its clips differ, so its exponents need not equal this study's."
    )


def _readouts_agree(fit: FitDocument, fit_ema: FitDocument) -> str:
    """Where the raw and the EMA readouts put the optimal batch, as a clause."""
    key = ["n_params", "tokens"]
    both = pd.DataFrame(fit["optima"]).merge(pd.DataFrame(fit_ema["optima"]), on=key, suffixes=("", "_ema"))
    same = int((both["batch_size"] == both["batch_size_ema"]).sum())
    smaller = int((both["batch_size_ema"] < both["batch_size"]).sum())
    return f"and their optimal batches agree at {same} of {len(both)} (N, T) points (the EMA's is smaller at {smaller})"


def _si(x: float) -> str:
    """1.7e7 as '17M', 1.4e11 as '140B'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _interval_sides(fit: FitDocument, side: dict[float, str], worst_side: str | None) -> str:
    """Where the held-out losses lie against their predictions' 95% intervals, and what that says of a miss: one
    below is the law's; one above an upper bound explains in sign, and in size only if the optimum lies that far
    below the observed loss."""
    count = {k: sum(v == k for v in side.values()) for k in ("inside", "above", "below")}
    text = f"; the held-out image loss lies inside the prediction's 95% interval at {count['inside']} of {len(side)} "
    text += "checkpoints" + "".join(f", {k} it at {count[k]}" for k in ("above", "below") if count[k])
    text += f" (the worst {'inside' if worst_side == 'inside' else worst_side + ' it'})"
    if count["below"]:
        return text + ": a loss below the prediction is the law's miss, whatever the run."
    return text + (
        f", up to {100 * holdout_beyond(fit):.1f}% above its top: an observed loss that only bounds the optimum from "
        "above explains the sign of that miss, and its size only if the optimum lies at least that far below it, "
        "so the miss does not decide against the form either."
        if count["above"]
        else "."
    )


def exponents_apart(image: FitDocument, video: FitDocument, key: str) -> str:
    """Whether two independent fits' loss-law exponent `key` differ: the 95% interval of their difference over
    every pair of the two fits' resamples (two 95% intervals can overlap while the difference excludes 0)."""
    a = np.array([law[key] for law in law_samples(image, "loss_law")])
    b = np.array([law[key] for law in law_samples(video, "loss_law")])
    # every pair of resamples: independent of how the two bootstraps' draws line up
    ci = percentile_interval(np.subtract.outer(a, b).ravel())
    if ci is None:
        return "no interval"
    difference = f"difference {image['loss_law'][key] - video['loss_law'][key]:+.3f} {fmt_ci(ci)}"
    return f"{difference}: they differ" if not intervals_meet(ci, [0.0, 0.0]) else f"{difference}: not told apart"


def law_form_verdict(image: dict, video: dict | None = None, runs: pd.DataFrame | None = None) -> list[str]:
    """The paper's appendix claim that the same loss-law form holds for an image DiT, judged as the book judges it
    on video: the form fitted in sample, then its prediction of a larger held-out model (holds at 1%, the rule of
    claim_verdicts), with the exponents of both fits beside each other. `runs`: the image study's runs.csv, for
    the size of the held-out model's grid."""
    law = image["loss_law"]
    lines = [
        f"In sample the additive form {'fits' if law['converged'] else 'does not converge on'} the image optima: "
        f"median |log residual| {100 * law['huber']['median_abs_log_residual']:.1f}% over {law['n_points']} optima"
        + ("; L_inf fits to zero." if law.get("l_inf_at_zero") else "."),
        loss_law_checks_sentence(image),
    ]
    held = sorted(image.get("holdout") or [], key=lambda h: h["tokens"])
    worst = worst_holdout_error(image)
    side = holdout_sides(image)
    worst_side = side.get(max(held, key=lambda h: abs(h["rel_error"]))["tokens"]) if held else None
    if held and worst is not None:
        errors = ", ".join(f"{100 * abs(h['rel_error']):.2g}%" for h in held)
        edge = sum(bool(h.get("observed_on_edge")) for h in held)
        grows = bool(np.all(np.diff([abs(h["rel_error"]) for h in held]) >= 0))
        cells = None
        if runs is not None:
            cells = len(runs.loc[runs["role"] == "holdout", ["batch_size", "lr"]].drop_duplicates())
        observed = (
            "the loss of its single run (one batch size and learning rate), an upper bound on its optimum"
            if cells == 1
            else f"the best cell of a small grid, on its edge at {edge} of them (an upper bound on the optimum)"
        )
        lines.append(
            f"Out of sample it predicts the held-out image model (N = {held[0]['n_params']:,.0f}) with errors of "
            f"{errors} at its {len(held)} checkpoints in order of T: they "
            f"{'grow steadily' if grows else 'do not grow steadily'} with T, and the observed loss is {observed}, "
            f"so the worst, {100 * worst:.1f}%, measures that run as much as the law."
        )
    if video is not None:
        pairs = []
        for key, name in (("alpha_tokens", "alpha_T"), ("alpha_params", "alpha_N")):
            a, b = image["loss_law"], video["loss_law"]
            ci_a, ci_b = (a.get("ci95") or {}).get(key), (b.get("ci95") or {}).get(key)
            pairs.append(
                f"{name} {a[key]:.3f}{ci_text(ci_a)} on images, {b[key]:.3f}{ci_text(ci_b)} on video "
                f"({exponents_apart(image, video, key)})"
            )
        lines.append("The exponents: " + "; ".join(pairs) + ".")
    video_worst = worst_holdout_error(video) if video is not None else None
    holds = worst is not None and worst <= 0.01
    lines.append(
        "**Verdict on 'the same law form holds for images': "
        + ("it holds at 1% here.**" if holds else "not shown at this scale.**")
        + (
            ""
            if holds
            else " The form fits in sample, as it does on video. Predicting a larger model, the test the paper "
            f"applies on video, it misses the paper's {100 * max(HEADLINE['holdout_rel_error']):.2g}%: worst "
            f"held-out error {100 * worst:.1f}% on images"
            + (
                f" and {100 * video_worst:.1f}% on the cpu study's held-out video model"
                if video_worst is not None
                else ""
            )
            + (_interval_sides(image, side, worst_side) if side else ".")
            if worst is not None
            else " There is no held-out model to test it."
        )
    )
    return lines
