"""The training step with flat per-member state (replicate.training.ensemble.MemberAdamW) against the per-member
reference (replicate.training.ensemble_reference.EnsembleAdamW), side by side in one process, at the studies' shapes.

Each row times both steppers of one group in alternating rounds (the machine's drift cancels in each round's
ratio; medians over rounds) and counts the aten calls of one step of each. `fwd_bwd_ms` is the forward and
backward alone (the loss and its gradient, no clipping or optimiser): no optimiser can make the step faster
than that, so `speedup_bound` = baseline / fwd_bwd is the most a faster optimiser could give at that shape.
What any step could reach on this machine is `floor_ms`: the step's matmul FLOPs (config.flops_per_token,
"exact") at the rate of a large square matmul (`gemm_gflops`), plus AdamW's least memory traffic (each
parameter's gradient, weight and two moments read, the weight and moments written: 28 bytes) at the rate of a
copy of as many values as the group has parameters (`copy_gb_s`: a buffer that fits in the caches is copied
at their rate), both measured beside the row's times; `speedup_ceiling` = baseline / floor_ms. The floor leaves
out every elementwise op and all dispatch, so the ceiling is an upper bound on any implementation of the same
model and optimiser: a speed-up above `speedup_bound` must come from the forward and backward, whose own floor
is `math_floor_ms`.
With --compiled a row also times the flat step through a torch.compile'd stacked model (inductor: the forward
and backward fused into generated C++ loops; `compiled_ms_per_step`, `compiled_speedup`, and the seconds its
first call spent compiling): how much of the gap to the floor a compiled graph closes.
Rows: Stage A's 1-clip and 16-clip groups (E = 8), Stage L's dearest fitting group and its held-out group, and
E = 8, 32, 64 at Stage A's 1-clip shape (2 seeds x E/2 learning rates). Each row carries the speed-up its target
asks of the step (`target_speedup`: 2x at Stage A's 1-clip group, 1.5x elsewhere), whether the step meets it,
and whether the bound would let any optimiser meet it; the table ends with those verdicts and with the cost per
member-step along E.

    python benchmarks/step.py [--quick] [--compiled] [--threads 1] [--out results/benchmarks/step.json]

--quick (about a minute) measures Stage A's 1-clip group and Stage L's held-out group.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from replicate.config import TrainConfig, flops_per_token
from replicate.profile import Group, load_profile
from replicate.provenance import provenance
from replicate.report.tables import step_verdicts
from replicate.training.diffusion import training_loss
from replicate.training.step import GroupStepper, resolve_device
from replicate.training.timing import timed


class _AtenCalls(TorchDispatchMode):
    """Counts the aten calls made under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def aten_calls(stepper: GroupStepper, step: int) -> int:
    """The aten calls of one step (its batch drawn before)."""
    batches = stepper.next_batches()
    with _AtenCalls() as counter:
        stepper.step(step, batches)
    return counter.calls


def forward_backward(stepper: GroupStepper) -> None:
    """The loss and its gradient, as a step computes them, without clipping or the optimiser's update."""
    stepper.opt.zero_grad()
    training_loss(stepper.model, stepper.next_batches(), stepper.gens, stepper.abar, stepper.cfg.label_dropout,
                  stepper.sources).sum().backward()  # fmt: skip


ADAMW_BYTES = 7 * 4  # per fp32 parameter: gradient, weight and two moments read; weight and moments written


def machine_rates(device: torch.device, floats: int, repeats: int = 3) -> dict[str, float]:
    """This machine's matmul rate (GFLOP/s of a 1024^3 fp32 matmul) and memory rate (GB/s read + written by a
    copy of `floats` fp32 values: a group's parameters, so that a buffer that fits in the caches is copied at
    the caches' rate), the best of `repeats`."""
    a, b = torch.randn(1024, 1024, device=device), torch.randn(1024, 1024, device=device)
    src = torch.randn(floats, device=device)
    dst = torch.empty_like(src)
    a @ b, dst.copy_(src)  # warm-up
    gemm = min(timed(device, lambda: a @ b) for _ in range(repeats))
    copy = min(timed(device, lambda: dst.copy_(src)) for _ in range(repeats))
    return {"gemm_gflops": round(2 * 1024**3 / gemm / 1e9, 1), "copy_gb_s": round(2 * src.nbytes / copy / 1e9, 2)}


def floors(cfgs: list[TrainConfig], params: int, rates: dict[str, float]) -> dict[str, float]:
    """The least time of a step of the group (E members of `params` parameters each) at this machine's rates:
    its matmuls at `gemm_gflops` and AdamW's memory traffic at `copy_gb_s` (the module's docstring)."""
    cfg = cfgs[0]
    flops = len(cfgs) * cfg.tokens_per_step * flops_per_token(cfg.model, "exact")
    math_ms = 1e3 * flops / (rates["gemm_gflops"] * 1e9)
    memory_ms = 1e3 * len(cfgs) * params * ADAMW_BYTES / (rates["copy_gb_s"] * 1e9)
    return {"math_floor_ms": round(math_ms, 3), "optimiser_floor_ms": round(memory_ms, 3)}


def compare(
    name: str,
    cfgs: list[TrainConfig],
    target: float,
    device: torch.device,
    rounds: int,
    budget_s: float,
    compiled: bool = False,
) -> dict:
    """One row: the flat and the reference step of the group `cfgs` (and with `compiled` the flat step through a
    torch.compile'd model), timed in `rounds` alternating rounds of about `budget_s` seconds each, and the floor
    at this machine's rates, measured before them."""
    flat, ref = GroupStepper(cfgs, device), GroupStepper(cfgs, device, reference=True)
    rates = machine_rates(device, flat.buffers.data.numel())
    for k in range(1, 4):  # warm-up: the optimisers' state exists and the caches are hot
        flat.step(k)
        ref.step(k)
    steppers = {"flat": flat.step, "ref": ref.step, "fwd_bwd": lambda _k: forward_backward(flat)}
    extra: dict[str, float] = {}
    if compiled:
        # a graph of this row's shapes alone: after an earlier row's, dynamo would recompile with the batch
        # dimension symbolic (automatic dynamic shapes), whose kernels run slower than either eager or static
        torch._dynamo.reset()
        model = torch.compile(flat.model, dynamic=False)
        extra["compile_s"] = round(timed(device, lambda: flat.step(4, forward=model)), 1)  # the first call compiles
        flat.step(4, forward=model)  # and the second runs what it compiled
        steppers["compiled"] = lambda k: flat.step(k, forward=model)
    per_round = max(3, round(budget_s / timed(device, lambda: flat.step(4))))
    times: dict[str, list[float]] = {key: [] for key in steppers}
    step = 5
    for _ in range(rounds):
        for key, fn in steppers.items():
            seconds = timed(device, lambda fn=fn, first=step: [fn(first + i) for i in range(per_round)])
            times[key].append(1e3 * seconds / per_round)
        step += per_round
    ms = {key: statistics.median(values) for key, values in times.items()}
    speedups = [r / f for f, r in zip(times["flat"], times["ref"], strict=True)]
    if compiled:
        ratios = [r / c for c, r in zip(times["compiled"], times["ref"], strict=True)]
        extra |= {
            "compiled_ms_per_step": round(ms["compiled"], 3),
            "compiled_speedup": round(statistics.median(ratios), 3),
        }
    members = len(cfgs)
    return {
        "group": name,
        "members": members,
        "ms_per_step": round(ms["flat"], 3),
        "baseline_ms_per_step": round(ms["ref"], 3),
        "speedup": round(statistics.median(speedups), 3),
        "speedup_range": [round(min(speedups), 3), round(max(speedups), 3)],
        "fwd_bwd_ms": round(ms["fwd_bwd"], 3),
        "speedup_bound": round(ms["ref"] / ms["fwd_bwd"], 3),
        "target_speedup": target,
        "meets_target": statistics.median(speedups) >= target,
        "bound_allows_target": ms["ref"] / ms["fwd_bwd"] >= target,
        "aten_calls": aten_calls(flat, step),
        "baseline_aten_calls": aten_calls(ref, step),
        **(floor := floors(cfgs, flat.buffers.data.shape[1], rates)),
        "floor_ms": round(sum(floor.values()), 3),
        "speedup_ceiling": round(ms["ref"] / sum(floor.values()), 2),
        **rates,
        "ms_per_member_step": round(ms["flat"] / members, 4),
        "baseline_ms_per_member_step": round(ms["ref"] / members, 4),
        **extra,
        "rounds": rounds,
        "steps_per_round": per_round,
    }


ONE_CLIP_TARGET, TARGET = 2.0, 1.5  # the step's speed-up over the reference: Stage A's 1-clip group, every shape


def _name(profile: str, group: Group) -> str:
    run = group.runs[0]
    return f"{profile} {run.role} {run.size} B={run.cfg.batch_clips} clips"


def shapes(quick: bool) -> list[tuple[str, list[TrainConfig], float]]:
    """The measured groups: (name, their configs, the speed-up the step is held to), Stage A's 1-clip group
    first."""
    stage_a, stage_l = load_profile("stage_a"), load_profile("stage_l")
    by_batch = {g.runs[0].cfg.batch_clips: g for g in stage_a.groups}
    one_clip = by_batch[min(by_batch)]
    holdout = next(g for g in stage_l.groups if g.runs[0].role == "holdout")
    rows = [(_name("stage_a", one_clip), one_clip.cfgs, ONE_CLIP_TARGET)]
    if quick:
        return [*rows, (_name("stage_l", holdout), holdout.cfgs, TARGET)]
    dearest = max((g for g in stage_l.groups if g.runs[0].role == "fit"), key=Group.step_flops)
    rows += [(_name("stage_a", by_batch[max(by_batch)]), by_batch[max(by_batch)].cfgs, TARGET)]
    rows += [(_name("stage_l", g), g.cfgs, TARGET) for g in (dearest, holdout)]
    base = one_clip.cfgs[0]
    for members in (32, 64):  # Stage A's 1-clip shape, more rates stacked (2 seeds)
        lrs = [base.lr * 2 ** (k / 4) for k in range(members // 2)]
        cfgs = [dataclasses.replace(base, seed=seed, lr=lr) for seed in (0, 1) for lr in lrs]
        rows.append((f"{_name('stage_a', one_clip)}, E={members}", cfgs, TARGET))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Stage A's 1-clip group and Stage L's held-out only")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per row (default 7, quick 5)")
    parser.add_argument("--compiled", action="store_true", help="also the flat step through a torch.compile'd model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a sweep worker uses 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/step.json"))
    args = parser.parse_args()
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (5 if args.quick else 7)
    budget = 0.25 if args.quick else 0.4
    rows = []
    columns = (
        ("E", 3), ("ms/step", 8), ("baseline", 9), ("speedup", 8), ("bound", 6), ("fwd+bwd", 8), ("floor", 7),
        ("ceiling", 8), ("aten", 11), ("ms/member", 9), *((("compiled", 9),) if args.compiled else ()),
    )  # fmt: skip
    print(f"{'group':52s} " + " ".join(f"{name:>{width}s}" for name, width in columns))
    start = time.perf_counter()
    for name, cfgs, target in shapes(args.quick):
        row = compare(name, cfgs, target, device, rounds, budget, args.compiled)
        rows.append({**row, **provenance(device)})
        print(
            f"{name:52s} {row['members']:3d} {row['ms_per_step']:8.2f} {row['baseline_ms_per_step']:9.2f} "
            f"{row['speedup']:7.2f}x {row['speedup_bound']:5.2f}x {row['fwd_bwd_ms']:8.2f} {row['floor_ms']:7.2f} "
            f"{row['speedup_ceiling']:7.2f}x {row['aten_calls']:5d}/{row['baseline_aten_calls']:<5d} "
            f"{row['ms_per_member_step']:9.3f}" + (f" {row['compiled_speedup']:8.2f}x" if args.compiled else ""),
            flush=True,
        )
    print(
        f"({time.perf_counter() - start:.0f} s; bound: the baseline over the forward and backward alone; floor: the "
        "step's matmuls at a large matmul's rate plus AdamW's memory traffic at a copy's of its size; ceiling: the "
        "baseline over the floor"
        + ("; compiled: the baseline over the flat step through torch.compile" if args.compiled else "")
        + ")"
    )
    print("\n".join(step_verdicts(rows)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
