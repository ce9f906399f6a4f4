"""Stage A in the book: the loss along B per checkpoint with its seed spread, the summary's numbers as a table,
and the sentences that say what they mean (every number from runs.csv, summary.json and the paper module)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from replicate.fit import cluster_tokens
from replicate.fit.curvature import GO, NO_GO, NOISE_TO_CURVATURE, seeds_needed
from replicate.fit.read import CurvatureSummary
from replicate.paper import BATCH_SIZE_LAW, optimal_steps
from replicate.profile import Profile
from replicate.report.compare import fmt_ci, lr_scaling_sentence
from replicate.report.findings import s_opt_range


def seed_spread(runs: pd.DataFrame, column: str = "val_loss") -> pd.DataFrame:
    """At each (T, B): the learning rate whose seed-mean loss is lowest, that mean, and the lowest and highest
    seed there (the error bar). B in clips (batch_samples) and tokens per step (batch_size)."""
    fit = runs[(runs["role"] == "fit") & ~runs["diverged"]]
    fit = fit.assign(tokens=cluster_tokens(fit["tokens"].to_numpy()))  # a run's tokens round to its batch size
    cells = fit.groupby(["n_params", "tokens", "batch_samples", "batch_size", "lr"])[column]
    stats = cells.agg(["mean", "min", "max", "count"]).reset_index()
    best = stats.loc[stats.groupby(["n_params", "tokens", "batch_samples"])["mean"].idxmin()]
    return best.rename(columns={"mean": "loss", "min": "lowest_seed", "max": "highest_seed", "count": "seeds"})


def rise_along_b(runs: pd.DataFrame, column: str = "val_loss") -> list[float]:
    """At each checkpoint, how much higher the loss is at the largest batch than at the smallest (relative), each at
    its best learning rate (seed_spread)."""
    best = seed_spread(runs, column).sort_values("batch_samples")
    return [float(g["loss"].iloc[-1] / g["loss"].iloc[0] - 1) for _, g in best.groupby(["n_params", "tokens"])]


def rise_sentence(runs: pd.DataFrame, summary: CurvatureSummary) -> str:
    """What the loss does along B in plain numbers: its rise from the smallest batch to the largest at every
    checkpoint (both readouts), against the seed noise and the curvature, so that "barely curved" is not read as
    "flat"."""
    clips = sorted(runs.loc[runs["role"] == "fit", "batch_samples"].unique())
    rises = {name: rise_along_b(runs, column) for name, column in (("raw", "val_loss"), ("ema", "val_loss_ema"))}
    span = {name: f"{_pct(min(r))}-{_pct(max(r))}%" for name, r in rises.items() if r}
    upward = sum(r > 0 for r in rises["raw"])
    doublings = math.log2(clips[-1] / clips[0])
    noise = summary["seed_noise"]["raw"]
    spread = noise["near_optimum"]["rms"] * math.sqrt(2 / noise["seeds"])  # a gap between two cells' seed means
    envelope = summary["curvature_per_doubling2"].get("ci95_envelope")
    surface = summary.get("surface") or {}
    optima = (surface.get("optima") or []) if surface.get("converged") else []
    smallest = runs.loc[runs["role"] == "fit", "batch_size"].min()
    below = sum(o["batch_size"] < smallest for o in optima)
    return (
        f"The loss is not flat along B: from {clips[0]:g} clip to {clips[-1]:g} ({doublings:.0f} doublings), at each "
        f"batch size's best learning rate, it rises by {span['raw']} (raw weights"
        + (f"; {span['ema']} with the EMA" if "ema" in span else "")
        + f"), higher at the largest batch at {upward} of {len(rises['raw'])} checkpoints, against about "
        f"{_pct(spread)}% for a gap between two cells' means of {noise['seeds']} seeds (a relative standard "
        f"deviation of {_pct(noise['near_optimum']['rms'])}% per seed near the optimum). What it lacks is a bend"
        + (f" (at most {_pct(envelope[1])}% per squared doubling)" if envelope else "")
        + (
            f": the fitted surface puts B_opt below the smallest batch at {below} of {len(optima)} checkpoints, "
            "where no run measures it."
            if optima
            else "."
        )
    )


def steps_sentence(cpu: pd.DataFrame, runs: pd.DataFrame | None, profile: Profile, where: str) -> str:
    """Why Stage A: the optimal steps of the paper's batch law against the longest run of the cpu study (its
    runs.csv `cpu`, in results folder `where`), and the steps Stage A's checkpoints ask for (its profile, and its
    runs.csv `runs` for its model size)."""
    fit_rows = cpu[cpu["role"] == "fit"]
    longest = int((fit_rows["tokens"] / fit_rows["batch_size"]).max())
    grid = [r.cfg for r in profile.runs]
    tokens = np.array(sorted({c for cfg in grid for c in cfg.checkpoints}), dtype=float)
    n_a = float(runs["n_params"].iloc[0]) if runs is not None else float("nan")
    s_a = optimal_steps(n_a, tokens)
    return (
        f"The paper's law puts the optimal number of steps of the cpu study (`{where}`) at "
        f"{s_opt_range(cpu)}, and its longest run took {longest:,} steps: its optimal batch "
        f"sizes lay below one clip. Stage A's checkpoints ({tokens.min() / 1e6:.2f}M to "
        f"{tokens.max() / 1e6:.2f}M tokens, N = {n_a:,.0f}) ask for {s_a.min():,.0f} to {s_a.max():,.0f} "
        f"steps, and its one-clip runs take {max(cfg.steps for cfg in grid):,}."
    )


def _threshold_seeds(summary: CurvatureSummary) -> str:
    """What the go and no-go thresholds ask of one cell at the measured seed noise (raw weights, near the
    optimum): the seeds per cell that resolve a curvature at each (`seeds_needed`)."""
    noise = summary["seed_noise"]["raw"]["near_optimum"]["rms"]
    if noise is None or not math.isfinite(noise):
        return ""
    go, no_go = seeds_needed(GO, noise), seeds_needed(NO_GO, noise)
    return (
        f" (at the seed noise measured, one cell would resolve {100 * GO:.1f}% with {_seeds(go)} seeds and "
        f"{100 * NO_GO:.1f}% with {_seeds(no_go)})"
    )


def summary_table(summary: CurvatureSummary) -> pd.DataFrame:
    """The summary's headline numbers, one row each, the raw and EMA readouts as columns."""
    parts = {"raw weights": summary, "EMA weights": summary.get("ema")}
    rows: dict[str, dict[str, object]] = {}
    for name, part in parts.items():
        if not part:
            continue
        c, beta, interior = part["curvature_per_doubling2"], part["beta_b"], part["interior_fraction"]
        noise = summary["seed_noise"]["raw"] if part is summary else part["seed_noise"]  # the top level holds both
        converged = (part.get("surface") or {}).get("converged", True)
        flag = "" if converged else " (fit not converged)"
        values = {
            "the surface fit": "converged" if converged else "did not converge: its numbers decide nothing",
            "curvature per squared doubling (%)": _pct(c["value"]) + flag,
            f"its 95% interval, seed bootstrap (%; {_narrow(noise['seeds'])})": _pct_ci(c["ci95"]),
            "its 95% interval, least squares (%)": _pct_ci(c["ci95_least_squares"]),
            "seed noise near the optimum (%; root mean square, median)": _rms_median(noise["near_optimum"]),
            "seed noise, all cells (%; root mean square, median)": _rms_median(noise["all_cells"]),
            "checkpoints with an interior B optimum": f"{interior['interior']} of {interior['checkpoints']}",
            f"B_opt exponent in T (paper {BATCH_SIZE_LAW['exp_tokens']})": f"{beta['value']:.3g} {fmt_ci(beta['ci95'])}"
            if beta["value"] is not None and part["verdict"] != "no-go"
            else ("not identified (no bend along B)" if beta["value"] is not None else "-"),
            "best lr grows as B^r: r (SGD's linear rule 1, Adam's square root 0.5)": _ridge(part["lr_law"]),
            "seeds per cell for noise <= c / 3": _seeds(part["seeds_needed"]),
            "verdict": part["verdict"] + flag,
        }
        for quantity, value in values.items():
            rows.setdefault(quantity, {"quantity": quantity})[name] = value
    return pd.DataFrame(list(rows.values()))


def stage_a_lines(summary: CurvatureSummary, runs_done: int, runs_planned: int) -> list[str]:
    """What Stage A says, in sentences: its progress, its curvature against the thresholds, its noise, and
    what the verdict means for the study."""
    lines = []
    if runs_done < runs_planned:
        lines.append(
            f"Stage A is not complete: {runs_done} of its {runs_planned} runs are in `runs.csv`; the numbers "
            "below are those of the finished batch sizes and change as the rest arrive."
        )
    c = summary["curvature_per_doubling2"]
    if c["value"] is None:
        lines.append(
            "The curvature is not measured yet: the surface needs at least three batch sizes with finished runs."
        )
        noise = summary["seed_noise"]["raw"]["near_optimum"]
        if noise["rms"] is not None:
            lines.append(
                f"One cell's seed-to-seed noise near the optimum, so far: {_pct(noise['rms'])}% (raw weights, "
                f"{noise['cells']} cells)."
            )
        return lines
    envelope = c["ci95_envelope"]
    lines.append(
        f"Curvature along B: {_pct(c['value'])}% per squared doubling (95% interval {_pct_ci(envelope)}%, the "
        f"envelope of the seed bootstrap and the least-squares interval); go needs at least {100 * GO:.1f}%, "
        f"no-go is below {100 * NO_GO:.1f}%{_threshold_seeds(summary)}. Verdict: **{summary['verdict']}**"
        + (
            "."
            if len(summary["verdict_envelope"]) <= 1
            else f" (the interval spans {' and '.join(summary['verdict_envelope'])}: not decided by these seeds)."
        )
    )
    ema = summary.get("ema") or {}
    if ema and not (ema.get("surface") or {}).get("converged", True):
        lines.append(
            "The EMA readout's surface fit did not converge: its curvature, interval and verdict in the table come "
            "from that unconverged fit, are shown for completeness and decide nothing; the raw readout decides."
        )
    noise = summary["seed_noise"]["raw"]["near_optimum"]["rms"]
    if noise is not None:
        lines.append(
            f"One cell's seed-to-seed noise near the optimum is {_pct(noise)}% (raw weights). One cell alone would "
            f"resolve the curvature (its noise at most {NOISE_TO_CURVATURE:.2g} of it) with "
            + f"{_seeds(summary['seeds_needed'])} seeds"
            + "; the surface pools every cell, so it needs fewer, by a factor this chapter does not measure."
        )
    ridge = summary["lr_law"].get("ridge")
    if ridge is not None:
        what = "Along B the best learning rate (the surface's ridge r)"
        lines.append(lr_scaling_sentence(what, ridge, summary["lr_law"].get("ridge_ci95")))
    beta = summary["beta_b"]
    if summary["verdict"] == "no-go":
        interior = summary["interior_fraction"]
        title = "No-go" if len(summary["verdict_envelope"]) <= 1 else "Not testable"  # the interval spans two verdicts
        lines.append(
            f"**{title} at this scale**: over the batch grid, the loss at each batch size's best learning rate "
            f"bends by less than {_pct(envelope[1]) if envelope else '-'}% per squared doubling of B (the "
            f"interval's upper end; two doublings from an optimum, at most "
            f"{_pct(4 * envelope[1]) if envelope else '-'}%), against a seed noise of {_pct(noise)}% per run in "
            "one cell; the best batch is the smallest at "
            f"{interior['at_smallest']} of {interior['checkpoints']} checkpoints, and B_opt and its exponent in T "
            "are not identified."
            + (
                f" The interval's upper end is below the {100 * GO:.1f}% a go needs, so no number of seeds can make "
                "this a go: the curvature is a property of the loss, not of its noise."
                if envelope and envelope[1] < GO
                else ""
            )
            + " The paper's batch law cannot be tested at this scale, so the study (Stage B) does not run here; a "
            "larger model, where the loss may curve along B, is the next measurement."
        )
    elif beta["value"] is not None:
        ci = beta["ci95"]
        if ci and ci[0] <= beta["paper"] <= ci[1]:
            relation = "contains the paper's value" + (
                "" if ci[1] - ci[0] < beta["paper"] else ", but is wider than it: not identified"
            )
        else:
            relation = "excludes the paper's value" if ci else "has no interval"
        lines.append(
            f"B_opt moves with T as T^{beta['value']:.2f} {fmt_ci(ci)} over this one model (paper: "
            f"{beta['paper']:.3f}); the interval {relation}."
        )
    return lines


def _ridge(lr_law: dict) -> str:
    """The ridge r with its interval, or "-" where the surface did not converge."""
    r = lr_law.get("ridge")
    return "-" if r is None or not math.isfinite(r) else f"{r:.3g} {fmt_ci(lr_law.get('ridge_ci95'))}"


SEEDS_CAP = 10_000  # above it a seed count is no plan, only "too many"


def _seeds(needed: int | None) -> str:
    """A seed count per cell (one cell alone; the pooled surface needs fewer), capped in words above SEEDS_CAP."""
    if needed is None:
        return "-"
    return f"{needed:,}" if needed <= SEEDS_CAP else f"more than {SEEDS_CAP:,}"


def _rms_median(noise: dict) -> str:
    """A seed noise's root mean square and, beside it, its median: a few outlying cells move the first only."""
    median = noise.get("median")
    return _pct(noise["rms"]) + ("" if median is None else f" ({_pct(median)})")


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def _narrow(seeds: int) -> str:
    """How much too narrow a bootstrap over `seeds` seeds per cell is: resampling n values keeps (n - 1) / n of
    their variance, so its interval is about sqrt(n / (n - 1)) too narrow (1.4x with 2 seeds)."""
    if seeds < 2:
        return f"{seeds} seed per cell: no spread to resample"
    return f"{seeds} seeds per cell: about {math.sqrt(seeds / (seeds - 1)):.2g}x too narrow"


def _pct_ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
