"""The measurements a device run makes before it trains (replicate.device_run): the captured step against the
eager one (a mismatch stops the call), bf16 against fp32, captured groups on parallel streams, and on a GPU
the kernel benchmark; each a line of bench.jsonl.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from replicate.profile import Group, Profile, named_shape
from replicate.timing import CAPTURED_STEP, capture_check, kernel_benchmark, precision_check, stream_check

KERNEL_CHECK_S = 90.0  # the kernel benchmark's share of a device call
CAPTURE_TOLERANCE = 1e-3  # captured vs eager losses, relative: the same kernels (atomics aside) or a bug


def device_checks(
    prof: Profile, out: Path, dev: torch.device, backend: str, env: dict[str, str], results: Path
) -> None:
    """On the profile's smallest group (cheapest step): the captured step against the eager one (raises
    CaptureMismatch if they disagree or capture fails); bf16 autocast against fp32, against a fifth of Stage
    A's seed noise (the rule for keeping bf16; the profiles decide, through TrainConfig.bf16); how many
    captured groups one process overlaps on separate streams; and, on a GPU, the kernel benchmark (each op
    against eager PyTorch and torch.compile, the captured step with PyTorch's ops against the Triton kernels,
    at the smallest and the largest group; lines of kind "kernel" and "autotune"). All go to bench.jsonl; a
    measurement that fails (other than the first) is a line with its error, and training goes on."""
    bench_groups = prof.bench_groups()
    smallest = bench_groups[0]
    base = {"profile": prof.name, **group_shape(smallest), "backend": backend, **env}
    try:
        check = capture_check(smallest.cfgs, str(dev), backend)
    except Exception as err:  # e.g. an op that cannot be captured: the run stops cleanly, its files come back
        bench_line(out, {"kind": "capture_check", **base, "error": f"{type(err).__name__}: {err}"})
        raise CaptureMismatch(f"capturing the step failed: {type(err).__name__}: {err}") from err
    bench_line(out, {"kind": "capture_check", **base, **check})
    print(
        f"captured vs eager step of group {smallest.runs[0].run_id}: losses within {check['max_rel_loss_diff']:.1e} "
        f"(relative), {check['eager_ms']:.2f} ms eager, {check['graph_ms']:.2f} ms captured per step"
    )
    if not check["max_rel_loss_diff"] <= CAPTURE_TOLERANCE:  # NaN too
        raise CaptureMismatch(
            f"the captured step's losses differ from the eager step's by {check['max_rel_loss_diff']:.2e} "
            f"(> {CAPTURE_TOLERANCE:g}): nothing trained; see bench.jsonl"
        )
    summary = results / "stage_a" / "summary.json"
    noise = json.loads(summary.read_text())["seed_noise"]["raw"]["near_optimum"]["rms"] if summary.is_file() else None

    def precision() -> str:
        row = precision_check(smallest.cfgs, str(dev), backend)
        keep = noise is not None and abs(row["bf16_rel_loss_diff"]) < noise / 5
        bench_line(out, {"kind": "precision_check", **base, **row, "seed_noise": noise, "bf16_would_pass": keep})
        verdict = (
            f"a fifth of Stage A's seed noise is {noise / 5:.3%}: bf16 {'passes' if keep else 'fails'}"
            if noise
            else "no Stage A seed noise to judge it by"
        )
        return (
            f"bf16 autocast vs fp32: training losses differ by {row['bf16_rel_loss_diff']:+.3%} after "
            f"{row['steps']} steps, {row['bf16_ms']:.2f} vs {row['fp32_ms']:.2f} ms per step; {verdict}"
        )

    def streams() -> str:
        rows = stream_check(smallest.cfgs, str(dev), backend)
        bench_line(out, {"kind": "stream_check", **base, "rows": rows})
        return "captured groups on their own streams in one process: " + ", ".join(
            f"{r['groups']}: {r['group_steps_per_s']:,.0f} group-steps/s" for r in rows
        )

    def kernel_check() -> str:
        """The kernel benchmark (benchmarks/kernels.py's rows) at the smallest and the largest group, in at most
        KERNEL_CHECK_S: each op against eager and torch.compile, then the captured step torch vs triton."""
        bench = kernel_benchmark([g.cfgs for g in bench_groups], dev, torch.bfloat16, time.monotonic() + KERNEL_CHECK_S)
        for row in bench["rows"]:
            bench_line(out, {"kind": "kernel", "profile": prof.name, **row, **env})
        bench_line(out, {"kind": "autotune", "profile": prof.name, "tuning": list(bench["tuning"].values()), **env})
        steps = ", ".join(
            f"{r['backend']} {r['ms']:.3f} ms at {r['shape']}" for r in bench["rows"] if r["op"] == CAPTURED_STEP
        )
        return (
            f"kernel benchmark: {len(bench['rows'])} timings, {len(bench['tuning'])} autotuned keys; captured "
            f"step: {steps}" + (f"; skipped: {', '.join(bench['skipped'])}" if bench["skipped"] else "")
        )

    measures = [("precision_check", precision), ("stream_check", streams)]
    if dev.type == "cuda":  # the Triton kernels run on a GPU (the CPU's interpreter is no timing)
        measures.append(("kernel_check", kernel_check))
    for kind, measure in measures:
        try:
            print(measure())
        except Exception as err:  # a measurement, not the training: record it and go on
            bench_line(out, {"kind": kind, **base, "error": f"{type(err).__name__}: {err}"})
            print(f"{kind} failed: {type(err).__name__}: {err}")


class CaptureMismatch(Exception):
    """The captured step does not reproduce the eager one: training with it would record wrong losses."""


def group_shape(group: Group) -> dict:
    """A group's id and shape, named, for a bench line."""
    return {"run_id": group.runs[0].run_id, **named_shape(group.cfgs)}


def bench_line(out: Path, row: dict) -> None:
    with open(out / "bench.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
