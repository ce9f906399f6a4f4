"""Extract the IsoFLOP points of Porian et al. (arXiv 2406.19146) into the small CSVs beside this script.

Run once, by hand, where a clone (or bare git directory) of github.com/formll/resolving-scaling-law-discrepancies
exists; the build reads only the CSVs it writes (build machines cannot reach GitHub):

    python data/public/porian/extract.py GIT_DIR [--commit SHA]

It reads data/summary_df.pickle.xz (RefinedWeb) and data/summary_df_owt2.pickle.xz (OpenWebText2) at that commit
(`git show`, so the working tree does not matter), keeps the configurations whose model size counts the output
layer and whose loss is the validation loss (the paper's corrected FLOP count), and writes:

- isoflop_<dataset>_<hparams>_<warmup>_<decay>.csv: one row per (model size, FLOP budget) IsoFLOP point;
- optima.csv: the paper's own compute-optimal point per budget (its interpolation and bootstrap spread);
- exponents.csv: the paper's own N_opt exponent per configuration, with its bootstrap interval;
- source.json: the repository, the commit and the blob of every file read.

Reading the pickles needs pandas (>= 2; they hold pandas objects) and nothing else.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

REPOSITORY = "https://github.com/formll/resolving-scaling-law-discrepancies"
PICKLES = {"rw": "data/summary_df.pickle.xz", "owt2": "data/summary_df_owt2.pickle.xz"}
KEY = ("dataset", "hparams", "warmup", "decay")
# the paper's corrected count (output layer counted, attention not) and its validation loss; the other rows of
# the pickles repeat the same runs with Kaplan's count and the training loss
KEEP = {"param_count": "standard", "val": "val"}
HERE = Path(__file__).resolve().parent


def _git(git_dir: str, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, check=True).stdout


def _isoflop_rows(config: pd.Series) -> pd.DataFrame:
    """The IsoFLOP points of one configuration: every model size the paper read at every budget."""
    parts = []
    for _, budget in config["data"].iterrows():
        n, t, loss = (np.atleast_1d(np.asarray(budget[k], dtype=float)) for k in ("orig_n", "orig_t", "orig_loss"))
        ok = np.isfinite(n) & np.isfinite(t) & np.isfinite(loss)
        if not ok.any():
            continue  # a budget that no size of this configuration reached
        flops = float(budget["flops"])
        # the pickles' T is C / 6N: check it, so that the CSV's C = 6 N T holds to its printed digits
        if not np.allclose(6 * n[ok] * t[ok], flops, rtol=1e-6):
            raise ValueError(f"{tuple(config[list(KEY)])}: C != 6 N T at budget {flops:g}")
        parts.append(pd.DataFrame({"n_params": n[ok], "flops": flops, "val_loss": loss[ok]}))
    points = pd.concat(parts, ignore_index=True)
    # Runs: with a constant or a single long (Kaplan) schedule every budget of a size is a checkpoint of one
    # run; with a cosine decay matched to each budget (decay "chinchilla") every point is a run of its own
    per_budget = config["decay"] == "chinchilla"
    points["run_id"] = [
        f"N{n:.0f}" + (f"-C{c:.3g}" if per_budget else "")
        for n, c in zip(points["n_params"], points["flops"], strict=True)
    ]
    points["tokens"] = points["flops"] / (6 * points["n_params"])
    for k in KEY:
        points[k] = config[k]
    return points[[*KEY, "run_id", "n_params", "tokens", "flops", "val_loss"]]


def _optima_rows(config: pd.Series) -> pd.DataFrame:
    """The paper's own compute-optimal points (its interpolation of each IsoFLOP curve, with the log-space
    standard deviation of N_opt over its bootstrap)."""
    o = config["optimal_pairs"]
    out = pd.DataFrame(
        {
            "flops": o["flops"].astype(float),
            "n_opt": o["n"].astype(float),
            "tokens_opt": o["t"].astype(float),
            "loss_opt": o["loss"].astype(float),
            "n_opt_log_sd": o["n_star_std"].astype(float),
        }
    )
    for k in KEY:
        out.insert(KEY.index(k), k, config[k])
    return out


def _exponent_row(config: pd.Series) -> dict:
    """The paper's headline N_opt exponent (its weighted fit to the bootstrap medians) and the 2.5 / 97.5%
    quantiles of its weighted bootstrap, as the paper's tables compute them."""
    fits = config["fit_results"]
    boot = [b["n_exponent"] for b in fits["bootstrap_weighted"] if "n_exponent" in b]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {
        **{k: config[k] for k in KEY},
        "n_opt_exponent": float(fits["bs_median_weighted"]["n_exponent"]),
        "ci95_low": float(lo),
        "ci95_high": float(hi),
        "resamples": len(boot),
    }


def extract(git_dir: str, commit: str, out: Path = HERE) -> dict:
    """Write the CSVs and source.json into `out`; return source.json's content."""
    commit = _git(git_dir, "rev-parse", commit).decode().strip()
    optima, exponents, written = [], [], []
    blobs = {}
    for path in PICKLES.values():
        blobs[path] = _git(git_dir, "rev-parse", f"{commit}:{path}").decode().strip()
        summary = pd.read_pickle(io.BytesIO(_git(git_dir, "show", f"{commit}:{path}")), compression="xz")
        keep = summary[(summary["param_count"] == KEEP["param_count"]) & (summary["val"] == KEEP["val"])]
        for _, config in keep.iterrows():
            name = "isoflop_" + "_".join(str(config[k]) for k in KEY) + ".csv"
            _isoflop_rows(config).to_csv(out / name, index=False, float_format="%.10g")
            written.append(name)
            optima.append(_optima_rows(config))
            exponents.append(_exponent_row(config))
    pd.concat(optima, ignore_index=True).to_csv(out / "optima.csv", index=False, float_format="%.8g")
    pd.DataFrame(exponents).to_csv(out / "exponents.csv", index=False, float_format="%.6g")
    source = {
        "repository": REPOSITORY,
        "commit": commit,
        "licence": "MIT (LICENSE beside this file, copied from the repository)",
        "read": blobs,
        "written": sorted(written) + ["optima.csv", "exponents.csv"],
        "kept": "configurations with param_count == 'standard' and val == 'val'",
    }
    (out / "source.json").write_text(json.dumps(source, indent=1) + "\n")
    return source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir", help="the repository's git directory (a clone's .git, or a bare mirror)")
    parser.add_argument("--commit", default="HEAD", help="the commit to read (default HEAD)")
    args = parser.parse_args()
    source = extract(args.git_dir, args.commit)
    print(f"porian: {len(source['written'])} files from {source['commit'][:12]} -> {HERE}")


if __name__ == "__main__":
    main()
