"""The paper's claims at language-model scale, for the book: the published hyperparameter laws as a table
(replicate.published, with this replication's row beside them), and the fixed-vs-tuned claim on Porian et
al.'s public runs (`replicate porian`'s JSON, results/public/porian.json) as tables and sentences whose every
number comes from that JSON."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.fit.read import FitDocument, headline
from replicate.paper import BATCH_SIZE_LAW, N_OPT_RATIO
from replicate.published import HYPERPARAMETER_LAWS
from replicate.report.compare import batch_edge_word, fmt_ci, ratio_verdict, verdict

PORIAN_DIR = Path("data/public/porian")  # the committed tables (relative to the repository root)
LAW_COLUMNS = ["work", "citation", "setting", "B_opt law", "eta_opt law", "B_opt exponent in N", "supports gamma_B > 0"]


def _headline_batch_law(fit: FitDocument) -> Mapping | None:
    """The fit's headline B_opt law (fit.read.headline), where it has an exponent in N."""
    law = headline(fit, "batch_size_law").law
    return law if law and law.get("exp_params") is not None else None


def ours_supports_gamma_b(value: float, ci: list[float] | None) -> str:
    """'yes' where the 95% interval of our B_opt exponent in N lies above 0; 'no' where it excludes the video
    paper's gamma_B; else 'not identified' (a wide interval is no evidence either way)."""
    if ci and ci[0] > 0:
        return "yes"
    if verdict(value, ci, BATCH_SIZE_LAW["exp_params"]) == "excludes the paper's value":
        return "no"
    return "not identified"


def hyperparameter_laws_table(fit: FitDocument | None = None, label: str = "this replication") -> pd.DataFrame:
    """The published laws (replicate.published), and with a fit.json this replication's headline B_opt law:
    each with its citation, its law as printed, its B_opt exponent in N and whether it supports gamma_B > 0."""
    rows = []
    for law in HYPERPARAMETER_LAWS:
        gamma = law["b_exp_params"]
        rows.append(
            [
                law["work"],
                law["key"],
                law["setting"],
                law["batch_law"],
                law["lr_law"] or "-",
                "-" if gamma is None else f"{gamma:g}",
                f"{law['gamma_b_positive']}: {law['why']}",
            ]
        )
    ours = _headline_batch_law(fit) if fit else None
    if ours is not None:
        ci = (ours.get("ci95") or {}).get("exp_params")
        edge = batch_edge_word(fit)  # optima on the grid's batch edge: the fitted law is no measurement to show
        rows.append(
            [
                label,
                "",
                "video diffusion transformers, this project's sweep",
                "-" if edge else f"B_opt = {ours['coef']:.3g} T^{ours['exp_tokens']:.3f} N^{ours['exp_params']:.3f}",
                "-",
                "-" if edge else f"{ours['exp_params']:.3f} {fmt_ci(ci)}",
                edge or ours_supports_gamma_b(ours["exp_params"], ci),
            ]
        )
    return pd.DataFrame(rows, columns=LAW_COLUMNS)


def budget(flops: float) -> str:
    """A FLOP budget as the book writes it: 1e22."""
    return f"{flops:.0e}".replace("e+", "e")


def _with_ci(entry: dict | None, digits: int = 3) -> str:
    if not entry or entry.get("value", entry.get("exp")) is None:
        return "-"
    value = entry.get("value", entry.get("exp"))
    return f"{value:.{digits}g} {fmt_ci(entry.get('ci95'), digits)}"


def porian_exponent_table(doc: dict) -> pd.DataFrame:
    """N_opt exponents per dataset and configuration: IsoFLOP and loss law (ours, with 95% intervals) and
    Porian et al.'s own."""
    rows = []
    for dataset in doc["datasets"].values():
        for name, c in dataset["configs"].items():
            rows.append(
                [
                    dataset["name"],
                    name.replace("_", ", "),
                    _with_ci(c["isoflop"]),
                    _with_ci(c["loss_law_compute"]),
                    _with_ci(c["published"]),
                ]
            )
    columns = ["dataset", "hyperparameters, warm-up, decay", "IsoFLOP (ours)", "loss law (ours)", "Porian et al."]
    return pd.DataFrame(rows, columns=columns)


def porian_ratio_table(doc: dict, base: str | None = None) -> pd.DataFrame:
    """N_opt(base) / N_opt(tuned) per dataset and budget, by both estimators, with 95% intervals."""
    base = base or doc["headline_base"]
    rows = [
        [dataset["name"], budget(r["flops"]), _with_ci(r.get("isoflop")), _with_ci(r.get("loss_law"))]
        for dataset in doc["datasets"].values()
        for r in dataset.get("ratios", {}).get(base, [])
    ]
    return pd.DataFrame(rows, columns=["dataset", "C (FLOPs)", "IsoFLOP", "loss law"])


def _direction(ci: list[float] | None) -> str:
    if not ci:
        return "no interval"
    if ci[0] > 1:
        return "larger with untuned hyperparameters"
    if ci[1] < 1:
        return "smaller with untuned hyperparameters"
    return "direction not identified: the interval contains 1"


def _exclusive(a: list[float] | None, b: list[float] | None) -> str:
    if not a or not b:
        return "one of them has no interval"
    apart = a[1] < b[0] or b[1] < a[0]
    return "the intervals exclude each other" if apart else "the intervals overlap"


def porian_sentences(doc: dict, flops: float = 1e22) -> list[str]:
    """The fixed-vs-tuned claim on Porian et al.'s runs in sentences, one per dataset, then the confounds: the
    IsoFLOP exponents untuned and tuned, and the ratio N_opt(base) / N_opt(tuned) at `flops` by both estimators
    against the video paper's 1.66x (verdict words of report.compare.verdict: a wide interval is 'not identified')."""
    base, tuned = doc["headline_base"], doc["tuned"]
    out = []
    for dataset in doc["datasets"].values():
        b, t = dataset["configs"][base], dataset["configs"][tuned]
        at = [r for r in dataset.get("ratios", {}).get(base, []) if np.isclose(r["flops"], flops)]
        text = (
            f"{dataset['name']}: N_opt grows as C^{_with_ci(b['isoflop'])} (IsoFLOP) with one set of "
            f"hyperparameters for every size ({base.replace('_', ', ')}) and as C^{_with_ci(t['isoflop'])} with "
            f"them tuned per size ({_exclusive((b['isoflop'] or {}).get('ci95'), (t['isoflop'] or {}).get('ci95'))})."
        )
        if at:
            r = at[0]
            parts = []
            for name, label in (("isoflop", "IsoFLOP laws"), ("loss_law", "loss laws")):
                if r.get(name):
                    ci = r[name]["ci95"]
                    parts.append(
                        f"{_with_ci(r[name], 3)} by the {label} ({_direction(ci)}; against the video paper's "
                        f"{N_OPT_RATIO:.2f}x: {ratio_verdict(r[name]['value'], ci, N_OPT_RATIO)})"
                    )
            text += f" At {budget(flops)} FLOPs N_opt(base) / N_opt(tuned) = " + "; ".join(parts) + "."
        out.append(text)
    out.append("Confounds: " + "; ".join(doc["confounds"]) + ".")
    return out


def porian_budget_range(tables: str | Path = PORIAN_DIR) -> tuple[float, float]:
    """The smallest and largest FLOP budget of Porian et al.'s committed IsoFLOP tables (the data's range)."""
    flops = pd.concat(pd.read_csv(p, usecols=["flops"]) for p in sorted(Path(tables).glob("isoflop_*.csv")))
    return float(flops["flops"].min()), float(flops["flops"].max())


def porian_n_opt_frame(doc: dict) -> pd.DataFrame:
    """N_opt at each evaluated budget, per dataset and configuration, by the IsoFLOP law: value and 95% interval,
    with the law's coefficient and exponent (the figure's points and lines)."""
    rows = []
    for dataset in doc["datasets"].values():
        for name, c in dataset["configs"].items():
            law = c["isoflop"] or {}
            for point in c["n_opt"]:
                iso = point.get("isoflop") or {}
                ci = iso.get("ci95") or [np.nan, np.nan]
                rows.append(
                    {
                        "dataset": dataset["name"],
                        "config": name,
                        "flops": point["flops"],
                        "n_opt": iso.get("value", np.nan),
                        "lo": ci[0],
                        "hi": ci[1],
                        "coef": law.get("coef", np.nan),
                        "exp": law.get("exp", np.nan),
                    }
                )
    return pd.DataFrame(rows)


def porian_summary_line(doc: dict, flops: float = 1e22) -> str:
    """The fixed-vs-tuned claim at language-model scale in one sentence (README's findings): the IsoFLOP ratio per
    dataset."""
    parts, open_ = [], []
    for dataset in doc["datasets"].values():
        for r in dataset.get("ratios", {}).get(doc["headline_base"], []):
            if np.isclose(r["flops"], flops) and r.get("isoflop"):
                word = ratio_verdict(r["isoflop"]["value"], r["isoflop"]["ci95"], N_OPT_RATIO)
                parts.append(f"{_with_ci(r['isoflop'])} ({dataset['name']}: {word})")
            if np.isclose(r["flops"], flops) and r.get("loss_law"):
                if _direction(r["loss_law"]["ci95"]).startswith("direction not identified"):
                    open_.append(f"{_with_ci(r['loss_law'])} ({dataset['name']})")
    lo, hi = porian_budget_range()
    return (
        "Fixed against tuned hyperparameters at language-model scale (Porian et al.'s public runs, chapter 11): "
        f"N_opt with one set of hyperparameters for every size over N_opt with them tuned is {' and '.join(parts)} "
        f"at {budget(flops)} "
        f"FLOPs by IsoFLOP laws fitted on budgets {lo:.3g} to {hi:.3g}, against the video paper's "
        f"{N_OPT_RATIO:.2f}"
        + (f"; the loss laws' estimates, {' and '.join(open_)}, do not fix even its direction." if open_ else ".")
    )
