"""``replicate fit, curvature, lrlaw, porian, predict, theory``: the commands that analyse results (all torch-free
but theory)."""

from __future__ import annotations

import argparse
from pathlib import Path

from replicate.cli.args import (
    add_bootstrap,
    add_loss_column,
    check_output_path,
    positive_float,
    positive_float_or_inf,
)
from replicate.config import FLOP_KINDS
from replicate.errors import ConfigError


def add_fit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit",
        help="fit the scaling laws to a table of runs, with bootstrap intervals",
        description="Fit optima, hyperparameter laws, the loss law and the compute law to a runs "
        "table (CSV: n_params, tokens, val_loss; batch_size and lr for the "
        "hyperparameter stage); write them as JSON.",
    )
    p.add_argument("runs", type=Path, help="runs table, CSV (one row per run x checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="the fit, JSON")
    p.add_argument(
        "--fixed-batch-size",
        type=positive_float,
        help="fit the laws also on the runs at this batch size (tokens per step) ...",
    )
    p.add_argument("--fixed-lr", type=positive_float, help="... and this learning rate")
    p.add_argument(
        "--profile",
        help="take the fixed batch size and learning rate from this sweep profile (default: "
        "the profile.toml beside the table, which the sweep writes, if there is one)",
    )
    p.add_argument(
        "--flops",
        choices=FLOP_KINDS,
        default="exact",
        help="FLOP convention of the headline compute law (default exact; 6n without FLOP columns)",
    )
    add_bootstrap(p, "runs (the seeds of every cell where cells hold several)", "fit")
    add_loss_column(p)
    p.add_argument(
        "--run-columns",
        type=_column_list,
        help="comma-separated columns whose shared values make one run (default: run_id if the table has it, "
        "else n_params, batch_size, lr, seed, those present)",
    )
    p.add_argument(
        "--diverged-above",
        type=positive_float_or_inf,
        help="a row whose loss exceeds this many times the best at its (N, T) is diverged (default 2, and only "
        "in a table without a diverged column; inf: never)",
    )
    p.set_defaults(func=_fit)


def _column_list(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",") if c.strip()]
    if not columns:
        raise argparse.ArgumentTypeError("expected column names separated by commas")
    return columns


def _fit(args: argparse.Namespace) -> int:
    from replicate.fit.document import fit_file

    out = check_output_path(args.out)
    result = fit_file(
        args.runs,
        out,
        profile=args.profile,
        fixed_batch_size=args.fixed_batch_size,
        fixed_lr=args.fixed_lr,
        flops=args.flops,
        bootstrap=args.bootstrap,
        seed=args.seed,
        loss_column=args.loss_column,
        if_changed=args.if_changed,
        run_columns=args.run_columns,
        diverged_above=args.diverged_above,
    )
    if result is None:
        print(f"fit: {out} is up to date with {args.runs}")
        return 0
    from replicate.fit.document import summary_lines

    print("\n".join(summary_lines(result)) + f" -> {out}")
    return 0


def add_curvature(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curvature",
        help="how curved is the loss along the batch size against the seed noise (Stage A's go/no-go)",
        description="From a sweep with several seeds per (B, lr) cell: the curvature of the loss along B per "
        "squared doubling (one surface through every checkpoint), the seed noise, the share of interior B optima, "
        "the B_opt exponent in T, and the verdict (go >= 0.3%, no-go < 0.1%); raw and EMA readouts; JSON.",
    )
    p.add_argument("runs", type=Path, help="runs table, CSV (one row per run x checkpoint, with seeds)")
    p.add_argument("--out", type=Path, required=True, help="the summary, JSON")
    add_bootstrap(p, "the seeds of every cell", "summary")
    p.set_defaults(func=_curvature)


def _curvature(args: argparse.Namespace) -> int:
    from replicate.fit.curvature import curvature_file

    out = check_output_path(args.out)
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    summary = curvature_file(args.runs, out, args.bootstrap, args.seed, if_changed=args.if_changed)
    if summary is None:
        print(f"curvature: {out} is up to date with {args.runs}")
        return 0
    c = summary["curvature_per_doubling2"]
    ci = c["ci95_envelope"]
    interval = f" [{100 * ci[0]:.2f}%, {100 * ci[1]:.2f}%]" if ci else ""
    value = "not measured" if c["value"] is None else f"{100 * c['value']:.2f}% per doubling^2{interval}"
    noise = summary["seed_noise"]["raw"]["near_optimum"]["rms"]
    noise_text = "not measured" if noise is None else f"{100 * noise:.2f}% per cell"
    print(f"curvature {value}; seed noise {noise_text}; verdict {summary['verdict']} -> {out}")
    return 0


def add_lrlaw(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lrlaw",
        help="the learning-rate law at fixed batch size: lr* ~ T^e_T N^e_N, and what it implies for the paper's laws",
        description="Fit the optimal learning rate's exponents in T and N at a fixed batch size (one bowl in ln lr "
        "per (N, T, B, seed) group, asymmetric), the lr-B ridge per model size, and the exponents the paper's "
        "laws imply given that ridge; 95%% intervals by a wild cluster bootstrap over training groups; JSON.",
    )
    p.add_argument("runs", type=Path, help="runs table, CSV (batch_size and lr columns; one row per run x checkpoint)")
    p.add_argument("--out", type=Path, required=True, help="the law, JSON (lr_law.json)")
    p.add_argument(
        "--summary",
        type=Path,
        help="also the held-out checks of a learning-rate study (the law's lr* and the loss law at the lr-optimal "
        "cells, predicting the held-out model; the batch-size gap per (N, T)), JSON (summary.json)",
    )
    add_bootstrap(p, "training groups (N, B, seed), wild", "law")
    add_loss_column(p)
    p.set_defaults(func=_lrlaw)


def _lrlaw(args: argparse.Namespace) -> int:
    from replicate.fit.heldout import lr_law_file

    out = check_output_path(args.out)
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    summary = check_output_path(args.summary) if args.summary else None
    doc = lr_law_file(
        args.runs, out, args.bootstrap, args.seed, args.loss_column, if_changed=args.if_changed, summary=summary
    )
    if doc is None:
        print(f"lrlaw: {out} is up to date with {args.runs}")
        return 0

    from replicate.report import lr_law_claim

    words, numbers = lr_law_claim(doc)
    print(f"{numbers}: {words}; {doc['fit']['cells']} cells, {doc['fit']['clusters']} training groups -> {out}")
    return 0


def add_porian(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "porian",
        help="the fixed-vs-tuned claim at language-model scale, on Porian et al.'s public IsoFLOP points",
        description="Fit every configuration of Porian et al.'s IsoFLOP tables (data/public/porian) with `fit` "
        "(C = 6NT), and give the N_opt exponents by IsoFLOP and by the loss law and N_opt(base) / N_opt(tuned) at "
        "1e19-1e22 FLOPs with 95%% bootstrap intervals; JSON.",
    )
    p.add_argument("data", type=Path, nargs="?", default=Path("data/public/porian"), help="the tables' folder")
    p.add_argument("--out", type=Path, required=True, help="the claim, JSON (results/public/porian.json)")
    add_bootstrap(p, "runs, per configuration", "claim")
    p.set_defaults(func=_porian)


def _porian(args: argparse.Namespace) -> int:
    from replicate.fit.public import porian_file
    from replicate.report.public import porian_sentences

    out = check_output_path(args.out)
    doc = porian_file(args.data, out, args.bootstrap, args.seed, if_changed=args.if_changed)
    if doc is None:
        print(f"porian: {out} is up to date with {args.data}")
        return 0
    print("\n".join(porian_sentences(doc)[:-1]) + f" -> {out}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="B_opt, eta_opt and the loss at (N, T), or at the compute-optimal (N, T) of a budget",
        description="Evaluate the laws of a fit.json (95% intervals from its bootstrap resamples) or the paper's "
        "printed laws. Units: N in parameters, T in tokens, B in tokens per step, C in FLOPs. For a budget, N_opt(C) "
        "is the size that minimises the fit's loss law at C (the paper's laws: its printed Eq. 18).",
    )
    p.add_argument("--params", type=positive_float, help="model size N (parameters)")
    p.add_argument("--tokens", type=positive_float, help="training tokens T")
    p.add_argument(
        "--flops", type=positive_float, help="a compute budget C instead: N_opt(C), the loss law's minimiser, and T_opt"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--fit", type=Path, help="a fit.json (replicate fit)")
    source.add_argument("--law", choices=("paper",), help="the paper's printed laws (no intervals)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    import json

    from replicate.fit.predict import paper_fit, predict
    from replicate.fit.read import read_fit

    if args.fit is not None:
        fit = read_fit(args.fit)
        if fit is None:
            raise ConfigError(f"cannot read {args.fit}: no such file")
    else:
        fit = paper_fit()
    result = predict(fit, args.params, args.tokens, args.flops)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    units = {"n_params": "parameters", "tokens": "tokens", "batch_size": "tokens per step", "lr": "", "val_loss": ""}
    names = {"n_params": "N", "tokens": "T", "batch_size": "B_opt", "lr": "eta_opt", "val_loss": "loss"}
    source = str(args.fit) if args.fit else "the paper's laws"
    budget = f" at C = {args.flops:.3g} FLOPs ({result['flop_convention']})" if args.flops else ""
    print(
        f"{source}{budget}; 95% intervals over {result['resamples']} bootstrap resamples"
        if result["resamples"]
        else f"{source}{budget}; no intervals"
    )
    for key, value in result["prediction"].items():
        ci = result["ci95"].get(key)
        interval = (
            f"[{ci[0]:.4g}, {ci[1]:.4g}]"
            if ci
            else ("(given)" if key in ("n_params", "tokens") and not args.flops else "-")
        )
        print(f"  {names[key]:<8} {value:>12.4g} {interval:>26}  {units[key]}")
    return 0


def add_theory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "theory",
        help="measure the SGD noise scale on quadratics and the Video DiT",
        description="Run the noise-scale experiments of the SGD chapter; write JSON files.",
    )
    p.add_argument("--out", type=Path, default=Path("results/theory"), help="results directory")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="a seconds-long version (tests)")
    p.set_defaults(func=_theory)


def _theory(args: argparse.Namespace) -> int:
    from replicate.theory.study import run

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is not a directory")
    run(args.out, device=args.device, quick=args.quick)
    print(f"theory: results in {args.out}")
    return 0
