"""The Triton kernels against eager PyTorch and torch.compile at the study's own shapes.

Each op of the catalog, forward + backward, at the shapes of the smallest and the largest group of a sweep
profile (default `study`: E members x B clips of 16 tokens, widths 32-80), timed by replaying CUDA graphs
(replicate.kernels.bench: no host overhead in the numbers); then the whole captured training step of both
groups with the torch and the triton backend (replicate.training.timing.capture_check). `achieved` is against the
device's copy bandwidth or bf16 matmul rate measured in the same run. The device run (`make device`) records
the same rows as bench lines; this script prints a table and writes a CSV, and the autotuning (each kernel's
configs and their timings per tuning key) as JSON.

`--device cpu` runs everything at a tiny shape on the Triton interpreter: a check of the script's logic
(the times mean nothing). Cases past `--deadline-s` are skipped and listed.

    python benchmarks/kernels.py [--profile study] [--device auto] [--deadline-s 90]
        [--out results/benchmarks/kernels.csv] [--tuning-out results/benchmarks/kernels_tuning.json]

On the CPU the files go to _build/benchmarks/ unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="study", help="sweep profile whose smallest and largest group to use")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--deadline-s", type=float, default=90.0, help="seconds; later cases are skipped")
    parser.add_argument("--skip-train-step", action="store_true")
    parser.add_argument("--out", type=Path, help="CSV (default: results/benchmarks/kernels.csv on a GPU)")
    parser.add_argument("--tuning-out", type=Path, help="JSON (default: beside --out, kernels_tuning.json)")
    args = parser.parse_args()
    import torch

    if args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()):
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("benchmarks/kernels.py: --device cuda, but no CUDA GPU", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    # a CPU check of the logic must not replace the committed GPU measurements
    out = args.out or Path("results/benchmarks" if device.type == "cuda" else "_build/benchmarks") / "kernels.csv"
    tuning_out = args.tuning_out or out.with_name(out.stem + "_tuning.json")

    from replicate.device.checks import kernel_benchmark
    from replicate.errors import ConfigError
    from replicate.io import write_json
    from replicate.kernels.bench import write_table
    from replicate.profile import load_profile
    from replicate.provenance import provenance

    start = time.monotonic()
    try:
        prof = load_profile(args.profile)
    except ConfigError as err:
        print(f"benchmarks/kernels.py: {err}", file=sys.stderr)
        return 2
    groups = [g.cfgs for g in prof.bench_groups()]
    if device.type == "cpu":  # the interpreter: one tiny group (two members, one clip) checks the logic
        groups = [[dataclasses.replace(c, batch_clips=1) for c in groups[0][:2]]]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    timed_steps = None if args.skip_train_step else 100 if device.type == "cuda" else 1
    bench = kernel_benchmark(groups, device, dtype, start + args.deadline_s, timed_steps)
    rows, skipped, peak, tuning = bench["rows"], bench["skipped"], bench["peak"], bench["tuning"]
    prov = provenance(device)
    for r in rows:
        r.update({k: prov[k] for k in ("device", "torch", "triton", "git_sha")})
    print(f"{prov['device']}: copy {peak['copy_gbps']:.0f} GB/s, matmul {peak['matmul_tflops']:.1f} TFLOP/s")
    print(f"{'op':<34} {'shape':<24} {'backend':<8} {'ms':>9} {'x eager':>8} {'achieved':>9} {'% peak':>7}")
    for r in rows:
        share = 100 * r["achieved"] / r["peak"] if r["peak"] == r["peak"] else float("nan")
        print(
            f"{r['op']:<34} {r['shape']:<24} {r['backend']:<8} {r['ms']:9.4f} {r['speedup_vs_eager']:8.2f} "
            f"{r['achieved']:9.1f} {share:6.1f}%"
        )
    if skipped:
        print(f"skipped (past the {args.deadline_s:.0f} s deadline, or failed): {', '.join(skipped)}")
    if device.type == "cpu":
        print("(the Triton interpreter on the CPU: a check of the logic; the times mean nothing)")
    out.parent.mkdir(parents=True, exist_ok=True)  # _build/benchmarks/ on a fresh clone
    write_table(out, rows)
    write_json(tuning_out, {"profile": prof.name, "tuning": list(tuning.values()), "provenance": prov})
    print(f"wrote {out} and {tuning_out} in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
