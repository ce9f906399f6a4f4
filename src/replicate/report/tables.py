"""Tables as the book shows them: heat maps of a (B, lr) grid, the sweep's grid, the models, the benchmarks'
tables (kernels, throughput), provenance, MyST boxes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from replicate.config import FLOP_KINDS, MODEL_SIZES, ModelConfig, count_params, flops_per_token, model_config
from replicate.profile import Profile
from replicate.theory.sgd import steps_examples_tradeoff


def heatmap(runs: pd.DataFrame, n_params: float, tokens: float) -> pd.DataFrame:
    """Validation loss at one (N, T) over the (batch size, lr) grid: rows batch size (tokens per step),
    columns lr; NaN where the run diverged."""
    cell = runs[(runs["n_params"] == n_params) & (runs["tokens"] == tokens)]
    return cell.pivot_table(index="batch_size", columns="lr", values="val_loss", aggfunc="mean", dropna=False)


def neighbourhood_spread(grid: pd.DataFrame) -> float:
    """The loss spread (%) over the best cell of a heat map and its neighbours one grid step away."""
    values = grid.to_numpy(dtype=float)
    i, j = np.unravel_index(np.nanargmin(values), values.shape)
    block = values[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
    return float(100 * (np.nanmax(block) / np.nanmin(block) - 1))


def grid_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per model of a sweep: shape, N, role, and the grid it was trained on."""
    rows = []
    for (n, role), g in runs.groupby(["n_params", "role"]):
        first = g.iloc[0]
        rows.append(
            {
                "role": role,
                "width": first["width"],
                "depth": first["depth"],
                "heads": first["heads"],
                "N": int(n),
                "tokens per clip": first["tokens_per_sample"],
                "batch sizes (clips)": value_range(g["batch_samples"].unique()),
                "learning rates": value_range(g["lr"].unique()),
                "tokens": f"{g['tokens'].min():,} - {g['tokens'].max():,}",
                "runs": g["run_id"].nunique(),
            }
        )
    return pd.DataFrame(rows).sort_values(["role", "N"]).reset_index(drop=True)


def runs_sentence(runs: pd.DataFrame) -> str:
    """How many runs and rows a runs.csv holds, and how many runs diverged."""
    diverged = runs.groupby("run_id")["diverged"].any()
    return (
        f"{runs['run_id'].nunique()} runs, {len(runs)} rows of `runs.csv` (one per run and checkpoint); "
        f"{int(diverged.sum())} runs diverged (their later checkpoints are rows without a loss, diverged = True)."
    )


def design_sentence(profile: Profile | None) -> str:
    """A profile's design note (why its grid is what it is), as the chapters quote it."""
    design = profile.design if profile else ""
    return "**How the grid was chosen** (the profile's design note): " + " ".join(design.split())


def value_range(values, listed: int = 4) -> str:
    """A grid's values for a table cell that stays on a line or two: up to `listed` of them listed, more as their
    count and range, with the factor between neighbours where that is constant."""
    v = np.sort(np.unique(np.asarray(values, dtype=float)))
    if len(v) <= listed:
        return ", ".join(f"{x:g}" for x in v)
    steps = v[1:] / v[:-1]
    factor = f", x{steps[0]:.3g} apart" if np.allclose(steps, steps[0], rtol=1e-3) else ""
    return f"{len(v)} from {v[0]:g} to {v[-1]:g}{factor}"


def _under_results(path: Path) -> str:
    return path.parent.as_posix().split("results/", 1)[-1]


def provenance_table(paths: list[Path]) -> pd.DataFrame:
    """Where each result file came from: rows, device(s), library versions and git commits (the path as its
    folder under results/ and its file name, columns that a narrow page can hold)."""
    rows = []
    for path in paths:
        if path.suffix in (".csv", ".jsonl") and path.is_file():
            df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_json(path, lines=True)
            if "device" in df:
                rows.append(
                    {
                        "in results/": _under_results(path),
                        "file": path.name,
                        "rows": len(df),
                        "device": "; ".join(df["device"].unique()),
                        "torch": ", ".join(df["torch"].astype(str).unique()),
                        "triton": ", ".join(df["triton"].astype(str).unique()),
                        "git": ", ".join(df["git_sha"].astype(str).unique()),
                    }
                )
        elif path.suffix == ".json" and path.is_file():
            data = json.loads(path.read_text())
            prov = data.get("provenance", data) if isinstance(data, dict) else (data[0] if data else {})
            rows.append(
                {
                    "in results/": _under_results(path),
                    "file": path.name,
                    "rows": None,
                    "device": prov.get("device", "-"),
                    "torch": prov.get("torch", "-"),
                    "triton": prov.get("triton", "-"),
                    "git": prov.get("git_sha", "-"),
                }
            )
    return pd.DataFrame(rows)


def paper_box(lines: list[str], title: str = "Compared with the paper") -> str:
    """A MyST admonition (rendered from a notebook's Markdown output) with one bullet per line."""
    body = "\n".join(f"- {line}" for line in lines)
    return f":::{{admonition}} {title}\n:class: note\n{body}\n:::\n"


def table(df: pd.DataFrame, digits: int = 4):
    """A DataFrame as the book shows it: no index column, floats to `digits` significant digits, missing
    values (None, NaN) as '-'."""
    return df.style.hide(axis="index").format(
        lambda v: (
            "-"
            if v is None or (isinstance(v, float) and math.isnan(v))
            else (f"{v:.{digits}g}" if isinstance(v, float) else v)
        )
    )


def study_models(profile: Profile) -> pd.DataFrame:
    """The models a sweep profile trains (fitting and held-out), with N and the training FLOPs per token of each
    convention at the profile's own clips (config.flops_per_token): the sizes a study's laws are fitted on."""
    rows, seen = [], set()
    for run in profile.runs:
        m = run.cfg.model
        if (run.role, m) in seen:
            continue
        seen.add((run.role, m))
        rows.append({"role": run.role, **_model_row(run.size, m), "tokens per clip": m.n_ctx, **_flop_ratios(m)})
    return pd.DataFrame(rows).sort_values(["role", "N"]).reset_index(drop=True)


def named_sizes() -> pd.DataFrame:
    """The named sizes of config.MODEL_SIZES at the default clip, as study_models shows a study's."""
    return pd.DataFrame(
        [{**_model_row(name, cfg), **_flop_ratios(cfg)} for name, cfg in ((n, model_config(n)) for n in MODEL_SIZES)]
    )


def _model_row(size: str, m: ModelConfig) -> dict:
    shape = {"width d": m.width, "depth": m.depth, "heads": m.heads, "head dim": m.head_dim}
    return {"size": size, **shape, "N": count_params(m)}


def _flop_ratios(m: ModelConfig) -> dict:
    n = count_params(m)
    return {f"{k} / N": flops_per_token(m, k) / n for k in FLOP_KINDS}


def dit_scale_lines(sizes: pd.DataFrame) -> list[str]:
    """How our DiT and its FLOP count differ from the paper's (study_models' or named_sizes' table)."""
    return [
        "The paper's DiT is a cross-attention DiT on VAE latents with about 1280 tokens per sample and widths of "
        "several hundred to thousands; ours is an in-context (adaLN) DiT on grayscale pixels, "
        f"{sizes['tokens per clip'].iloc[0] if 'tokens per clip' in sizes else '-'} tokens per clip, widths "
        f"{sizes['width d'].min()}-{sizes['width d'].max()}.",
        "The paper's FLOP count $C_\\mathrm{token} = \\tfrac34 N (7 + n_\\mathrm{ctx}/d)$ assumes $16 d^2$ "
        "parameters per layer (self- and cross-attention, MLP); our blocks have $12 d^2$, so for us it is only a "
        f"convention: {sizes['paper / N'].min():.2f}-{sizes['paper / N'].max():.2f} x N, against "
        f"{sizes['exact / N'].min():.2f}-{sizes['exact / N'].max():.2f} x N for the exact count.",
    ]


def error_table(rows: list[dict]):
    """kernels.bench.accuracy_rows as the book shows it: errors in scientific notation."""
    return pd.DataFrame(rows).style.hide(axis="index").format("{:.1e}", subset=["output error", "worst gradient error"])


KERNEL_BENCHMARK = Path("results/benchmarks/kernels.csv")
THROUGHPUT = Path("results/benchmarks/train_throughput.jsonl")


def load_kernel_benchmark(path: str | Path = KERNEL_BENCHMARK) -> pd.DataFrame | None:
    """The kernel benchmark's table (ingest merges the device runs' rows into it); None where none is measured."""
    path = Path(path)
    return pd.read_csv(path) if path.is_file() else None


def kernel_benchmarks_by_device(speed: pd.DataFrame) -> list[pd.DataFrame]:
    """The kernel benchmark's rows device by device, in the order the table first names them: ingest keeps each
    device's rows, so one table can hold several GPUs, and a speed-up is only a speed-up on one of them."""
    return [rows for _, rows in speed.groupby("device", sort=False)]


def throughput_table(path: str | Path = THROUGHPUT) -> pd.DataFrame | None:
    """benchmarks/train_throughput.py's rows: per model, the training and the clip generator's tokens per second;
    None where it has not run."""
    path = Path(path)
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(
        [
            {
                "model": r["config"]["size"],
                "N": r["config"]["n_params"],
                "device": r["device"],
                "training tokens/s": r["tokens_per_s"],
                "generator tokens/s": r["data_tokens_per_s"],
                "generator / training": r["data_speedup"],
            }
            for r in rows
        ]
    )


def sampled_model_sentence(weights: str | Path) -> str | None:
    """The model whose samples a chapter shows, from its record beside the weights (model.json); None without it."""
    record = Path(weights).with_suffix(".json")
    if not record.is_file():
        return None
    meta = json.loads(record.read_text())
    last = meta["checkpoints"][-1]
    # `train --save-model` saves the EMA weights where the run kept an EMA: the samples come from those
    ema = last.get("val_loss_ema")
    loss = (
        f"validation loss {ema:.4f} with the EMA weights it samples from ({last['val_loss']:.4f} with its raw weights)"
        if ema is not None
        else f"validation loss {last['val_loss']:.4f}"
    )
    return f"The sampled model: N = {meta['n_params']:,}, trained on {last['tokens']:,} tokens, {loss}."


def clip_sentence(profile: Profile) -> str:
    """The clips a profile trains on, in words."""
    m = profile.runs[0].cfg.model
    c = m.clip
    return (
        f"The study rendered here (`{profile.path}`) trains on {'grayscale' if c.channels == 1 else 'colour'} "
        f"clips of {c.frames} frames of {c.height} x {c.width} pixels, cut into patches of "
        f"{' x '.join(map(str, m.patch))} pixels: {m.n_ctx} tokens of {m.patch_dim} values per clip."
    )


STEP_OP = "train_step"  # rows whose op starts with this time a whole training step, not one op
BEST_OF = "triton x best"  # Triton's speed-up over the faster of eager and torch.compile
OP_LABELS = {  # the catalog's op names, as the book's table shows them (words wrap; identifiers do not)
    "layernorm_modulate": "LN-modulate",
    "gated_residual_layernorm_modulate": "residual + LN-modulate",
    "gated_residual": "gated residual",
    "gelu_tanh": "GELU",
    "linear_gelu": "linear + GELU",
    "train_step": "training step",
    "train_step (captured)": "training step (captured)",
    "train_step (eager)": "training step (eager)",
}


def kernel_speed_table(speed: pd.DataFrame) -> pd.DataFrame:
    """benchmarks/kernels.py's CSV (or a device run's kernel rows), one row per op and shape: the baseline's
    milliseconds forward + backward (eager PyTorch; for the captured training step, the step with PyTorch's ops),
    the speed-up over it of torch.compile and of our Triton kernels ("x", above 1: faster), and Triton's over
    the faster of eager and compile where both were timed (BEST_OF, the kernels issue's acceptance ratio).
    One device's rows (kernel_benchmarks_by_device); a dtype column where an op and shape were timed in several."""
    if "device" in speed and speed["device"].nunique() > 1:
        raise ValueError("the kernel table holds several devices: pass one device's rows (kernel_benchmarks_by_device)")
    index = ["op", "shape"]
    if "dtype" in speed and speed.duplicated(["op", "shape", "backend"]).any():
        index.append("dtype")  # never an average over dtypes
    wide = speed.pivot_table(index=index, columns="backend", values="ms", sort=False)
    nan = pd.Series(float("nan"), index=wide.index)
    base = wide.get("eager", nan).fillna(wide.get("torch", nan))
    keys = wide.index.to_frame(index=False)
    out = pd.DataFrame({"op": [OP_LABELS.get(o, o) for o in keys["op"]], "shape": keys["shape"].to_numpy()})
    if "dtype" in keys:
        out["dtype"] = keys["dtype"].to_numpy()
    out["baseline ms"] = base.to_numpy()
    for backend in ("compile", "triton"):
        if backend in wide:
            out[f"{backend} x"] = (base / wide[backend]).to_numpy()
    if {"eager", "compile", "triton"} <= set(wide):
        out[BEST_OF] = (wide[["eager", "compile"]].min(axis=1) / wide["triton"]).to_numpy()
    return out


def kernel_speed_sentence(speed: pd.DataFrame, faster: frozenset[str]) -> str:
    """What the kernel table says, generated: the device, Triton's range of speed-ups over the faster of eager
    and compile per op (or over eager), which ops are at least as fast, the whole step's speed-up, and the ops
    backend "auto" takes from Triton (`faster`, kernels.TRITON_FASTER)."""
    first = speed.iloc[0]
    is_step = speed["op"].str.startswith(STEP_OP)
    ops = kernel_speed_table(speed[~is_step])
    col = BEST_OF if BEST_OF in ops else "triton x"
    against = "the faster of eager PyTorch and torch.compile" if col == BEST_OF else "eager PyTorch"
    ratio = ops[col]
    winners = sorted(set(ops.loc[ratio >= 1, "op"]))
    text = (
        f"Measured on an {first['device']} (torch {first['torch']}, triton {first['triton']}, commit "
        f"{first['git_sha']}). Forward + backward, our Triton kernels run at {ratio.min():.2f}-{ratio.max():.2f}x "
        f"the speed of {against} (1 = as fast): "
        + (f"at least as fast for {', '.join(winners)}." if winners else "**not faster for any op**.")
    )
    steps = kernel_speed_table(speed[is_step]) if is_step.any() else pd.DataFrame()
    if len(steps) and "triton x" in steps:
        text += " A whole training step with them runs at " + ", ".join(
            f"{r['triton x']:.2f}x ({r['shape']})" for _, r in steps.iterrows()
        )
        text += " the speed of the step with PyTorch's ops" + (
            f" (torch.compile: {', '.join(f'{x:.2f}x' for x in steps['compile x'])})."
            if "compile x" in steps and steps["compile x"].notna().all()
            else "."
        )
    return text + (
        f" Backend `auto` takes Triton for {', '.join(sorted(faster))} (kernels.TRITON_FASTER) and PyTorch's ops for"
        " the rest."
        if faster
        else " Backend `auto` therefore takes PyTorch's ops on a GPU (kernels.TRITON_FASTER is empty)."
    )


def flop_overhead_sentence(sizes: pd.DataFrame) -> str:
    """How far the exact training FLOP count and the paper's formula lie above 6N for the smallest and the largest
    model of study_models' table."""
    ends = sizes.sort_values("N").iloc[[0, -1]]
    parts = [
        f"{r['exact / N']:.2f} N for the {'smallest' if i == 0 else 'largest'} model ({r['size']}, N = {r['N']:,}), "
        f"{100 * (r['exact / N'] / 6 - 1):.0f}% above 6N"
        for i, (_, r) in enumerate(ends.iterrows())
    ]
    return (
        f"Counted exactly, a training token costs {parts[0]}, and {parts[1]}; the paper's formula gives "
        f"{sizes['paper / N'].min():.2f} to {sizes['paper / N'].max():.2f} N over these models."
    )


def kernel_shapes_sentence(speed: pd.DataFrame, sizes: pd.DataFrame | None = None) -> str:
    """Where the kernel table's shapes come from: those recorded with the measurement (its shape column; the
    training step's model), its commit and device, beside the rendered study's clips and widths."""
    first = speed.iloc[0]
    steps = [
        "{} (batch {} clips of {} tokens, width {}, {} blocks)".format(s.split(":")[0], *m.groups())
        for s in dict.fromkeys(speed["shape"].astype(str))
        if (m := re.search(r"B(\d+)xS(\d+)xD(\d+)xL(\d+)", s))
    ]
    text = (
        f"The shapes are those recorded with this measurement (commit {first['git_sha']}, {first['device']}): the "
        "shape column gives clips x tokens x width for the block's ops (the MLP's width for GELU) and clips x heads "
        "x tokens x head dimension for attention"
        + (f"; the training step is that of model {', '.join(steps)}" if steps else "")
        + "."
    )
    if sizes is not None and "tokens per clip" in sizes:
        text += (
            f" The study rendered here has {sizes['tokens per clip'].iloc[0]} tokens per clip and widths "
            f"{sizes['width d'].min()} to {sizes['width d'].max()}. The benchmark now times the shapes of the profile "
            "it is given (its cheapest and its dearest group, `replicate.kernels.bench`), so the next GPU measurement "
            "replaces this table with the study's own."
        )
    return text


THEORY_QUANTITIES = ("grad_norm2", "trace_sigma", "gHg", "trace_h_sigma", "b_simple", "b_noise", "eta_max")


def quadratic_estimates(quadratic: dict) -> pd.DataFrame:
    """theory's quadratic.json as one row per (problem, quantity): the closed form, the estimate, its standard
    error, the relative error and the z-score."""
    rows = [
        {
            "problem": f"dim {q['dim']}, cond {q['condition']:g}",
            "quantity": f,
            "truth": q["truth"][f],
            "estimate": q["estimate"][f]["value"],
            "se": q["estimate"][f]["se"],
        }
        for q in quadratic["results"]
        for f in THEORY_QUANTITIES
    ]
    table = pd.DataFrame(rows)
    return table.assign(
        **{
            "rel. error": table["estimate"] / table["truth"] - 1,
            "z": (table["estimate"] - table["truth"]) / table["se"],
        }
    )


def dit_noise_scales(dit_noise: dict) -> pd.DataFrame:
    """theory's dit_noise.json as one row per (size, checkpoint): B_noise, B_simple, eta_max and their errors."""
    keys = ("b_noise", "b_simple", "eta_max")
    return pd.DataFrame(
        [
            {
                "size": r["size"],
                "N": r["n_params"],
                "T": r["tokens"],
                **{k: r[k]["value"] for k in keys},
                **{f"{k} se": r[k]["se"] for k in keys},
            }
            for r in dit_noise["results"]
        ]
    )


def tradeoff_sentence(dit: pd.DataFrame, batches: list[float]) -> str:
    """Where the study's batch sizes (clips) sit against the knee of step 5's trade-off, E / E_min = 1 + B / B_noise,
    for the smallest and the largest B_noise measured on the model (dit_noise_scales)."""
    measured = dit.loc[dit["b_noise"] > 0, "b_noise"]
    b = np.asarray(sorted(batches), dtype=float)
    parts = []
    for b_noise in (measured.min(), measured.max()):
        _, examples = steps_examples_tradeoff(b, b_noise)
        side = "above" if b.min() >= b_noise else "below" if b.max() <= b_noise else "on both sides of"
        parts.append(
            f"at B_noise = {b_noise:.3g} clips they lie {side} the knee and need {examples.min():.2g} to "
            f"{examples.max():.2g} times the fewest examples"
        )
    return (
        f"The study's batches of {b.min():g} to {b.max():g} clips: {parts[0]}; {parts[1]}. Over its checkpoints the "
        "study thus spans both regimes of step 5, and where B_noise is smallest its larger batches spend a budget of "
        "examples markedly less well than its smallest, by the one-step theory."
    )


def step_verdicts(rows: list[dict]) -> list[str]:
    """benchmarks/step.py's verdicts on its rows, a line per target: which rows meet their speed-up, at how many no
    optimiser could (the forward and backward alone slower than the target allows), and the cost per member-step
    at the first row's shape (Stage A's 1-clip group) along E."""
    lines = []
    for target in sorted({row["target_speedup"] for row in rows}, reverse=True):
        held = [row for row in rows if row["target_speedup"] == target]
        met = [row for row in held if row["meets_target"]]
        beyond = [row for row in held if not row["bound_allows_target"]]
        lines.append(
            f"the flat step, target {target:g}x: met at {len(met)} of {len(held)} shape(s)"
            + (f" ({'; '.join(row['group'] for row in met)})" if met else "")
            + f"; out of any optimiser's reach (bound below {target:g}x) at {len(beyond)}"
        )
    along = sorted((row for row in rows if row["group"].startswith(rows[0]["group"])), key=lambda row: row["members"])
    if len(along) > 1:
        costs = [row["ms_per_member_step"] for row in along]
        falling = all(b < a for a, b in zip(costs, costs[1:], strict=False))
        lines.append(
            "ms per member-step along E = "
            + ", ".join(f"{row['members']}: {row['ms_per_member_step']:.3f}" for row in along)
            + (": falling" if falling else ": not falling throughout")
        )
    return lines


def step_speed_lines(rows: list[dict]) -> list[str]:
    """What benchmarks/step.py's committed rows say, for the README: the flat step's speed-up over the reference
    at every shape, what its forward and backward alone and the machine's floor would allow, the compiled step's
    where it was timed (and at how many shapes it meets the target), and the verdicts (step_verdicts)."""
    first = rows[0]

    def span(key: str) -> str:
        values = [row[key] for row in rows]
        return f"{min(values):.2f}-{max(values):.2f}x"

    members = sorted({row["members"] for row in rows})
    text = (
        f"On `{first['device']}` (torch {first['torch']}, commit {first['git_sha']}), at {len(rows)} shapes of "
        f"{members[0]} to {members[-1]} members: the flat step runs {span('speedup')} as fast as the reference; "
        f"the forward and backward alone would allow {span('speedup_bound')} to any optimiser, and the machine's "
        f"floor (the matmuls at a large matmul's rate, AdamW's memory traffic at a copy's) {span('speedup_ceiling')}."
    )
    if all("compiled_speedup" in row for row in rows):
        met = [row for row in rows if row["compiled_speedup"] >= row["target_speedup"]]
        text += (
            f" Through a torch.compile'd model the step runs {span('compiled_speedup')} as fast as the reference,"
            f" its target met at {len(met)} of {len(rows)} shapes"
            + (f" ({'; '.join(row['group'] for row in met)})" if met else "")
            + ". The bound limits what an optimiser alone can give, not a compiled forward and backward."
        )
    text += (
        " Against the speed-ups asked of the step (its target at each shape, and a cost per member-step that falls as"
        " members are stacked):"
    )
    return [text, *step_verdicts(rows)]


def ensemble_speed_line(rows: list[dict]) -> str:
    """What benchmarks/ensemble.py's committed rows say, for the README: per model, how many times faster E
    stacked members train than E sequential runs, at every E above 1."""
    first = rows[0]
    models = list(dict.fromkeys(row["model"] for row in rows))
    parts = []
    for model in models:
        stacked = [row for row in rows if row["model"] == model and row["E"] > 1]
        parts.append(
            f"{model} ({stacked[0]['n_params']:,} parameters): "
            + ", ".join(f"E = {row['E']} {row['speedup_vs_sequential']:.2f}x" for row in stacked)
        )
    return (
        f"On `{first['device']}` (torch {first['torch']}, commit {first['git_sha']}, {first['batch_size']} clips per "
        f"step), stacking trains E members this many times faster than E sequential runs: {'; '.join(parts)}."
    )
