"""The learning-rate law at a fixed batch size in the book: tables and sentences from lr_law.json and a learning-rate
study's summary.json (replicate.fit.lr_law, replicate.fit.heldout)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from replicate.fit.read import CurvatureSummary, FitDocument, HeldoutSummary, LrLawDocument
from replicate.paper import HEADLINE, LOSS_LAW
from replicate.profile import Profile
from replicate.report.compare import (
    against_goal,
    fmt_ci,
    fmt_percent,
    intervals_meet,
    seed_noise_clause,
    verdict,
    with_seed_noise,
)


def _value(estimate: dict | None, digits: int = 3) -> str:
    if estimate is None:
        return "not identified (one size)"
    return f"{estimate['value']:+.{digits}f} {fmt_ci(estimate['ci95'], digits)}"


def lr_law_table(docs: dict[str, dict]) -> pd.DataFrame:
    """One row per study (its lr_law.json): the exponents of lr* in T and N at a fixed batch size, each beside the
    value the paper's laws imply at the study's own ridge r and the verdict, the ridge and the curvatures."""
    rows = []
    for name, doc in docs.items():
        implied = doc["paper_implied"]
        row = {"study": name, "cells": doc["fit"]["cells"], "training groups": doc["fit"]["clusters"]}
        for key, label in (("tokens", "T"), ("params", "N")):
            measured, paper = doc[f"lr_exponent_{key}"], implied[f"lr_exponent_{key}"]["value"]
            row[f"e_{label}"] = _value(measured)
            row[f"paper-implied e_{label}"] = f"{paper:+.3f}"
            row[f"e_{label} verdict"] = (
                "not identified (one size)" if measured is None else verdict(measured["value"], measured["ci95"], paper)
            )
        row["ridge r"] = _value(doc["ridge"], 2)
        curv = doc["curvature_per_octave2"]
        row["bowl per octave^2 (below / above)"] = (
            f"{100 * curv['below']['value']:.1f}% / {100 * curv['above']['value']:.1f}%"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def agreement_lines(docs: dict[str, dict]) -> list[str]:
    """Where the studies' verdicts on an exponent differ, a line that says so with each study's interval and
    whether the intervals overlap; the first study (the headline) decides the book's verdict."""
    lines = []
    for key, label in (("tokens", "T"), ("params", "N")):
        found = {
            name: (doc[f"lr_exponent_{key}"], doc["paper_implied"][f"lr_exponent_{key}"]["value"])
            for name, doc in docs.items()
            if doc[f"lr_exponent_{key}"] is not None
        }
        words = {name: verdict(m["value"], m["ci95"], paper) for name, (m, paper) in found.items()}
        if len(set(words.values())) < 2:
            continue
        each = "; ".join(
            f"{name}: {m['value']:+.3f} {fmt_ci(m['ci95'])} against {paper:+.3f}, {words[name]}"
            for name, (m, paper) in found.items()
        )
        lows, highs = zip(*(m["ci95"] for m, _ in found.values()), strict=True)
        overlap = "have a value in common" if max(lows) <= min(highs) else "have no value in common"
        lines.append(
            f"The rows disagree on e_{label} ({each}); their intervals {overlap}. The verdict in the box "
            f"above is {next(iter(docs))}'s."
        )
    return lines


def _difference_verdict(ci: list[float], paper: float) -> str:
    """`verdict` read off measured minus implied: excludes where its interval excludes 0, not identified where it
    is at least as wide as the paper's exponent, agrees otherwise."""
    lo, hi = ci
    if lo > 0 or hi < 0:
        return "excludes the paper's value"
    return "not identified" if hi - lo >= abs(paper) else "agrees"


def ridge_carried_lines(docs: dict[str, dict]) -> list[str]:
    """The paper-implied exponents are computed at each study's measured ridge r, whose own uncertainty the table's
    verdicts leave out: the measured minus the implied exponent, resample by resample (the two share r), per
    study, and whether every verdict stands with it (excludes where this interval excludes 0, not otherwise)."""
    parts, changed = [], []
    for name, doc in docs.items():
        diff = doc["paper_implied"].get("measured_minus_implied") or {}
        each = []
        for key, label in (("tokens", "T"), ("params", "N")):
            measured = doc[f"lr_exponent_{key}"]
            if measured is None or key not in diff:
                continue
            paper = doc["paper_implied"][f"lr_exponent_{key}"]["value"]
            # the difference judged by the book's rule against the paper's exponent (0 where the two agree)
            carried = _difference_verdict(diff[key]["ci95"], paper)
            if carried != verdict(measured["value"], measured["ci95"], paper):
                changed.append(f"{name}'s e_{label} ({carried})")
            each.append(f"e_{label} {diff[key]['value']:+.3f} {fmt_ci(diff[key]['ci95'])}")
        if each:
            parts.append(f"{name}: {', '.join(each)}")
    if not parts:
        return []
    stands = (
        f"With it the verdict changes for {', '.join(changed)}"
        if changed
        else "Every verdict above stands with it (excludes where this interval excludes 0; not identified where it"
        " is as wide as the paper's exponent; agrees otherwise): the ridge's uncertainty changes none"
    )
    return [
        "The paper-implied exponents are computed at each study's measured ridge r. Carrying r's uncertainty, the "
        f"measured minus the implied exponent, resample by resample (they share r): {'; '.join(parts)}. {stands}."
    ]


def seed_noise_sentence(
    summary: HeldoutSummary, profile: Profile, stage_a: CurvatureSummary | None, stage_a_profile: Profile | None
) -> str | None:
    """How far the seeds of one cell lie apart near each (N, T, B)'s best lr (summary.json's seed_noise), with the
    readout it was measured with (the profile's validation examples and slices), beside Stage A's where given."""
    noise = summary.get("seed_noise")
    if not noise or not math.isfinite(noise["near_optimum"]["rms"]):
        return None

    def readout(prof: Profile) -> str:
        cfg = prof.runs[0].cfg
        return f"{cfg.val_examples:,} validation examples scored in {cfg.eval_slices} slices"

    near = noise["near_optimum"]
    held = (summary.get("heldout_seed_noise") or {}).get("near_optimum") or {}
    text = (
        f"Between the {noise['seeds']} seeds of a cell, near each (N, T, B)'s best learning rate, Stage L's losses "
        f"have a relative standard deviation of {100 * near['rms']:.2f}% (root mean square over {near['cells']} "
        f"cells of the fitting sizes; {readout(profile)})"
        + (
            f", and the held-out model's {100 * held['rms']:.2f}% ({held['cells']} cells)"
            if held and math.isfinite(held["rms"])
            else ""
        )
    )
    if stage_a is None or stage_a_profile is None:
        return text + "."
    other = stage_a["seed_noise"]["raw"]["near_optimum"]
    return (
        text + f"; Stage A's, one model read out on {readout(stage_a_profile)}, {100 * other['rms']:.2f}% "
        f"({other['cells']} cells). The models differ, so the two compare the readouts only roughly."
    )


def ridge_table(doc: LrLawDocument) -> pd.DataFrame:
    """The lr-B ridge r per model size (the slope of ln lr* in ln B at fixed (N, T))."""
    return pd.DataFrame(
        [{"N": f"{r['n_params']:,}", "ridge r": _value(r, 2)} for r in doc["ridge_by_size"]]
        + [{"N": "all sizes (shared slope)", "ridge r": _value(doc["ridge"], 2)}]
    )


def disjoint_ridges(doc: LrLawDocument) -> tuple[dict, dict] | None:
    """The two sizes whose ridge intervals lie furthest apart, where they have no value in common (else None)."""
    ridges = [r for r in doc["ridge_by_size"] if r.get("ci95")]
    if len(ridges) < 2:
        return None
    low, high = min(ridges, key=lambda r: r["ci95"][1]), max(ridges, key=lambda r: r["ci95"][0])
    return None if intervals_meet(low["ci95"], high["ci95"]) else (low, high)


def ridge_sentence(doc: LrLawDocument) -> str:
    """Whether the ridge is the same at every size (the separable form the law assumes): the sizes' range, the
    pair of sizes whose intervals lie furthest apart where two have no value in common, and how far a shift of
    r's level by that range would move the paper-implied exponents (e_T = beta_eta - r beta_B,
    e_N = gamma_eta - r gamma_B) against the gaps between the measured and the implied ones. That bounds the
    ridge's level, not a ridge that changes with N, which the law's form leaves out."""
    ridges = doc["ridge_by_size"]
    if len(ridges) < 2:
        return f"The ridge, measured at one size, is r = {_value(doc['ridge'], 2)}."
    values = [r["value"] for r in ridges]
    spread = max(values) - min(values)
    text = f"The ridge ranges from {min(values):.2f} to {max(values):.2f} over the sizes (spread {spread:.2f})"
    apart = disjoint_ridges(doc)
    if apart:
        text += (
            f", and the intervals at N = {apart[0]['n_params']:,} and N = {apart[1]['n_params']:,} have no value in "
            "common: one r for every size is an approximation here"
        )
    paper, gaps = doc["paper_implied"]["paper"], doc["paper_implied"].get("measured_minus_implied") or {}
    moves = {"tokens": spread * abs(paper["beta_b"]), "params": spread * abs(paper["gamma_b"])}
    if not all(key in gaps for key in moves):
        return text + "."
    smaller = all(moves[key] < abs(gaps[key]["value"]) for key in moves)
    return text + (
        f". Were r's level {spread:.2f} higher or lower, the paper-implied e_T would move by {moves['tokens']:.3f} "
        f"(x the paper's beta_B, {paper['beta_b']}) and e_N by {moves['params']:.3f} (x its gamma_B, "
        f"{paper['gamma_b']}), against measured-minus-implied gaps of {gaps['tokens']['value']:+.3f} and "
        f"{gaps['params']['value']:+.3f}: "
        + ("each smaller than the gap it would have to close." if smaller else "enough to close a gap.")
    )


JOINT_WORDS = {  # `verdict` on one exponent given the paper's other, read as the test of the pair it is
    "excludes the paper's value": "excludes the paper's pair",
    "agrees": "the paper's pair agrees",
    "not identified": "not identified",
}


def implied_lines(doc: LrLawDocument) -> list[str]:
    """What the measured exponents imply for the paper's batch and lr laws, one sentence each: each holds one of
    the paper's exponents fixed, so its verdict is on the pair (batch law, lr law), never on one law alone."""
    implied = doc["implied"]
    names = {
        "beta_b_given_paper_beta_eta": ("beta_B", "the paper's beta_eta"),
        "beta_eta_given_paper_beta_b": ("beta_eta", "the paper's beta_B"),
        "gamma_b_given_paper_gamma_eta": ("gamma_B", "the paper's gamma_eta"),
        "gamma_eta_given_paper_gamma_b": ("gamma_eta", "the paper's gamma_B"),
    }
    paper = doc["paper_implied"]["paper"]
    values = {"beta_B": paper["beta_b"], "beta_eta": paper["beta_eta"], "gamma_B": paper["gamma_b"]}
    values["gamma_eta"] = paper["gamma_eta"]
    lines = []
    for key, (what, given) in names.items():
        if key not in implied:
            continue
        est = implied[key]
        lines.append(
            f"Given {given}, {what} = {_value(est)} (the paper's {values[what]:+.3f}: "
            f"{JOINT_WORDS[verdict(est['value'], est['ci95'], values[what])]})."
        )
    return lines


def ridge_estimators_line(doc: LrLawDocument, fit: FitDocument | None, name: str) -> str | None:
    """Where study `name`'s runs give chapter 6's pooled lr-B slope (fit.json's lr_batch_exponent: the per-batch
    interpolated lr optima, interior ones only, joined at fixed (N, T)) beside this chapter's ridge r (the lr
    law's bowl through every cell, one r for every size): the two estimators and whether their intervals meet."""
    slope = (fit or {}).get("lr_batch_exponent") or {}
    if slope.get("value") is None or not slope.get("ci95"):
        return None
    ridge = doc["ridge"]
    if not ridge.get("ci95"):
        return None
    apart = disjoint_ridges(doc)
    return (
        f"The {name} row's ridge r, {_value(ridge, 2)}, and chapter 6's lr-B slope from the same runs, "
        f"{slope['value']:+.2f} {fmt_ci(slope['ci95'], 2)}, are two estimators of one slope: the bowl through "
        "every cell with one r for every size, and the interpolated lr optimum of each batch size joined at fixed "
        "(N, T), interior optima only. Their intervals "
        + ("meet" if intervals_meet(ridge["ci95"], slope["ci95"]) else "have no value in common")
        + (
            f"; the bowl fit's own sizes disagree (N = {apart[0]['n_params']:,}: {_value(apart[0], 2)}; "
            f"N = {apart[1]['n_params']:,}: {_value(apart[1], 2)}), so its shared r is narrow because the model "
            "says one r, not because the data pin one"
            if apart
            else ""
        )
        + "."
    )


def heldout_table(summary: HeldoutSummary) -> pd.DataFrame:
    """The held-out model's checkpoints: the law's lr* against its own vertex, the loss law against its loss (its
    interval with the held-out model's seed noise, as heldout_lines gives it)."""
    held = summary.get("heldout")
    if not held:
        return pd.DataFrame()
    rows = []
    errors = with_seed_noise([c["loss_error"] for c in held["checkpoints"]], summary.get("heldout_seed_noise"))
    for c, error in zip(held["checkpoints"], errors, strict=True):
        ratio = c["lr_ratio"]
        rows.append(
            {
                "T (tokens)": f"{c['tokens'] / 1e6:.2f}M",
                "T/N": f"{c['t_over_n']:.1f}",
                "lr* measured": f"{c['lr_star']:.3g}",
                "lr* predicted": f"{c['lr_predicted']:.3g}",
                "predicted / measured": f"{ratio['value']:.2f} {fmt_ci(ratio['ci95'], 3)}",
                "loss measured": f"{c['loss']:.4f}",
                "loss predicted": f"{c['loss_predicted']:.4f}",
                "loss error": fmt_percent(error),
            }
        )
    return pd.DataFrame(rows)


def _goal(estimates: list[dict], low: float, high: float, goal: str) -> str:
    """against_goal in words: within, outside, or not decided against the goal `goal`."""
    word = against_goal(estimates, low, high)
    if word == "not decided":
        return f"not decided against the goal of {goal} (a 95% interval crosses it)"
    return f"{word} the goal of {goal}"


def _sides(errors: list[dict], what: str = "the measured loss", centre: float = 0.0) -> str:
    """At how many checkpoints the prediction lies below, above, or is not told from `what` (an error at
    `centre`: 0 for a difference, 1 for a ratio), by their 95% intervals."""
    cis = [e["ci95"] or [e["value"], e["value"]] for e in errors]
    below, above = sum(hi < centre for _, hi in cis), sum(lo > centre for lo, _ in cis)
    parts: list[str] = []
    for word, n in (("lies below", below), ("lies above", above), ("is not told from", len(cis) - below - above)):
        if n:
            total = f" of {len(cis)} checkpoint{'s' if len(cis) > 1 else ''}"
            parts.append(f"{word} {'it' if parts else what} at {n}" + ("" if parts else total))
    return ", ".join(parts) + " (95% intervals)"


def heldout_lines(summary: HeldoutSummary) -> list[str]:
    """The held-out checks against their goals, in sentences (none without a held-out model); a check is within
    its goal only where every checkpoint's 95% interval is."""
    held = summary.get("heldout")
    if not held:
        return []
    goals = summary["goals"]
    ratios = summary["heldout_lr_ratio"]
    errors = with_seed_noise(summary["heldout_loss_error"], summary.get("heldout_seed_noise"))
    worst_ratio = max(ratios, key=lambda r: abs(math.log(r["value"])))
    worst_error = max(errors, key=lambda e: abs(e["value"]))
    g_lr, g_loss = goals["heldout_lr_ratio"], goals["heldout_loss_error"]
    paper = " and ".join(f"{100 * e:.2g}%" for e in HEADLINE["holdout_rel_error"])
    return [
        f"The law's lr* for the held-out model (N = {held['n_params']:,}) is {worst_ratio['value']:.2f}x its own "
        f"vertex at worst ({fmt_ci(worst_ratio['ci95'])}) over {len(ratios)} checkpoints inside the fitting range "
        f"of T/N: {_goal(ratios, 1 / g_lr, g_lr, f'x{g_lr}')}. The law's lr* "
        f"{_sides(ratios, 'the vertex', 1.0)}.",
        f"The paper's loss-law form (Eq. 15), fitted at the lr-optimal cells of the fitting sizes, predicts the "
        f"held-out model's "
        f"lr-optimal loss with an error of {fmt_percent(worst_error)} at worst over {len(errors)} checkpoints: "
        f"{_goal(errors, -g_loss, g_loss, f'{100 * g_loss:.0f}%')}. The prediction {_sides(errors)}; the "
        f"paper reports {paper} at its scale."
        + (
            f" These intervals add {clause} to the fit's bootstrap, which carries the fitting sizes' seed noise "
            "(each training group's deviation from its cell's seed mean) but not the held-out model's."
            if (clause := seed_noise_clause(summary.get("heldout_seed_noise")))
            else ""
        ),
        *([_loss_law_sentence(held["loss_law"])] if held.get("loss_law") else []),
    ]


def loss_law_exponents(law: dict) -> str:
    """The exponents of a loss law fitted at lr-optimal cells (summary.json's heldout.loss_law) with their
    intervals, each against the paper's (report.compare.verdict)."""
    ci = law.get("ci95") or {}
    parts = []
    for key, name in (("alpha_tokens", "alpha_T"), ("alpha_params", "alpha_N")):
        word = verdict(law[key], ci.get(key), LOSS_LAW[key])
        parts.append(f"{name} = {law[key]:.3f} {fmt_ci(ci.get(key))} (the paper's {LOSS_LAW[key]}: {word})")
    return ", ".join(parts)


def _loss_law_sentence(law: dict) -> str:
    """The loss law fitted at the lr-optimal cells, its exponents against the paper's, and its L_inf."""
    ci = law.get("ci95") or {}
    return (
        f"That loss law, fitted at the lr-optimal cells: {loss_law_exponents(law)}, L_inf = {law['l_inf']:.3g} "
        f"{fmt_ci(ci.get('l_inf'))}. It is fitted on this study's clips, not the cpu study's, so its exponents need "
        "not equal those of chapter 7's fit."
    )


def batch_gap_table(summary: HeldoutSummary) -> pd.DataFrame:
    """L(largest B) / L(smallest B) - 1 at the lr optimum, (N, T) by (N, T): a row per size (its N the first
    column), T as columns."""
    gaps = pd.DataFrame(summary.get("batch_gap") or [])
    if gaps.empty:
        return gaps
    gaps["cell"] = [f"{100 * v:+.2f}%" for v in gaps["value"]]
    table = gaps.pivot(index="n_params", columns="tokens", values="cell")
    table.columns = [f"T = {t / 1e6:.2f}M" for t in table.columns]
    return table.reset_index().rename(columns={"n_params": "N"}).assign(N=lambda t: [f"{n:,.0f}" for n in t["N"]])


def batch_gap_sentence(summary: HeldoutSummary) -> str:
    """What the batch-gap table says: the gaps' signs; at how many (N, T) a gap lies beyond what the seeds alone
    would give (summary.json's seed noise near the optimum, pooled over the cells, for two cells' seed means
    counted independent), and at how many its bootstrap interval (which carries each cell's own seed difference,
    one difference per cell) excludes zero; and how the median over the sizes moves with T."""
    gaps = pd.DataFrame(summary.get("batch_gap") or [])
    if gaps.empty:
        return "No (N, T) was trained at two batch sizes."
    values = gaps["value"].to_numpy()
    by_t = gaps.groupby("tokens")["value"].median()
    text = f"The larger batch's lr-optimal loss is higher at {int((values > 0).sum())} of {len(gaps)} (N, T)"
    text += f" and lower at {int((values < 0).sum())}."
    noise = summary.get("seed_noise")
    if noise and math.isfinite(noise["near_optimum"]["rms"]):
        rms = noise["near_optimum"]["rms"]
        spread = rms * math.sqrt(2 / noise["seeds"])  # a gap of two cells' seed means
        costs, gains = int((values > 1.96 * spread).sum()), int((values < -1.96 * spread).sum())
        text += (
            f" Against the seeds' own spread (a relative standard deviation of {100 * rms:.2f}% near the optimum, "
            f"so about {100 * spread:.2f}% for a gap between two cells' means of {noise['seeds']} seeds), it is "
            f"higher by more than 1.96 times that at {costs} and lower at {gains}; the other "
            f"{len(gaps) - costs - gains} are not told apart from seed noise cell by cell."
        )
    cis = [ci for ci in gaps["ci95"] if ci]
    if cis:
        half = [(hi - lo) / 2 for lo, hi in cis]
        above, below = sum(lo > 0 for lo, _ in cis), sum(hi < 0 for _, hi in cis)
        text += (
            f" The fit's bootstrap intervals, which carry each cell's own seed difference, lie above zero at "
            f"{above} and below it at {below}; their half-widths ({100 * min(half):.2f}-{100 * max(half):.2f}%) "
            "each rest on one seed difference per cell, so they are no test cell by cell"
            + ("; the pooled comparison above is the one to read." if noise else ".")
        )
    return (
        text + f" Its median over the sizes is {100 * by_t.iloc[0]:+.2f}% at T = {by_t.index[0] / 1e6:.2f}M tokens and "
        f"{100 * by_t.iloc[-1]:+.2f}% at T = {by_t.index[-1] / 1e6:.2f}M."
    )


def law_band(doc: LrLawDocument, batch_size: float, n_params: np.ndarray, tokens: np.ndarray) -> tuple:
    """The law's ln lr* at (N, T) pairs for a batch size of the grid, and the 2.5 and 97.5 percentiles over the
    bootstrap samples: (lr*, lower, upper), arrays."""
    fit, samples = doc["fit"], doc["bootstrap"]["samples"]
    lt, ln = np.log(tokens / fit["t0"]), np.log(n_params / fit["n0"])
    key = f"a_{float(batch_size)!r}"
    e_n = doc["lr_exponent_params"]["value"] if doc["lr_exponent_params"] else 0.0
    centre = fit["log_lr_at_center"][repr(float(batch_size))] + doc["lr_exponent_tokens"]["value"] * lt + e_n * ln
    if key not in samples or not samples[key]:
        return np.exp(centre), None, None
    a, e_t = np.asarray(samples[key]), np.asarray(samples["e_t"])
    e_ns = np.asarray(samples["e_n"]) if doc["lr_exponent_params"] else np.zeros_like(a)
    curves = a[:, None] + e_t[:, None] * lt[None, :] + e_ns[:, None] * ln[None, :]
    lo, hi = np.nanpercentile(curves, [2.5, 97.5], axis=0)
    return np.exp(centre), np.exp(lo), np.exp(hi)


def trained(profile: Profile, runs: pd.DataFrame | None, role: str | None = None) -> tuple[int, int]:
    """(runs trained, runs in the profile) of a profile, or of its runs of one role (`fit` or `holdout`), from its
    runs.csv `runs` (None before any)."""
    wanted = {r.run_id for r in profile.runs if role is None or r.role == role}
    done = set() if runs is None else set(runs["run_id"])
    return len(wanted & done), len(wanted)


def progress_sentence(profile: Profile, runs: pd.DataFrame | None) -> str:
    """How much of Stage L's profile has trained (its runs.csv `runs`, None before any), and its design note: the
    plan and its grid's reasons, in the words the study trained under."""
    (done, total), (held, held_total) = trained(profile, runs), trained(profile, runs, "holdout")
    held_out = f" (the held-out model's: {held} of {held_total})" if held_total else ""
    return f"{done} of {total} runs trained{held_out}. The plan (the profile's design note): " + " ".join(
        profile.design.split()
    )


def heldout_pending(profile: Profile | None, runs: pd.DataFrame | None) -> str:
    """Why a learning-rate study has no held-out results yet: how far its held-out model has trained."""
    if profile is None:
        return "**No held-out results yet**: this study has not been trained."
    held, total = trained(profile, runs, "holdout")
    if total == 0:
        return "**No held-out model** in this study's profile."
    return f"**No held-out results yet**: the held-out model has trained {held} of its {total} runs."
