"""The measurements of a device call (replicate.device_run's stages), at the shapes of the profile it measures.

Each is a function of its deadline that writes its bench lines (OUT/bench.jsonl) as it goes and returns a
summary line; a failure is the stage's result (replicate.device_call), and the next stage runs:
- preflight (replicate.preflight): the environment, a small captured step, the Triton ops' correctness;
- capture: the captured step against the eager one on the smallest group. Until it passes, and where it fails
  or disagrees, every step of the call is eager (`Checks.capture`): the other checks and the training go on;
- precision: bf16 autocast against fp32, against a fifth of Stage A's seed noise (the rule for keeping bf16;
  the profiles decide, through TrainConfig.bf16);
- streams: how many groups one process overlaps on separate streams;
- kernels (on a GPU): the kernel benchmark, the training step torch vs Triton first, then each op against eager
  PyTorch and torch.compile at the largest and the smallest group (lines "kernel" and "autotune"), and a line
  "kernel_benchmark" that says whether it is complete (`ingest` takes only complete ones into kernels.csv);
- measure: the training step at every group shape, the costliest group first: eager and captured, PyTorch's
  ops and the Triton kernels (lines "step"), then streams at the costliest shape, until the deadline.
On the CPU each runs a few steps, eagerly and with PyTorch's ops: a check of the logic, not a measurement.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from replicate.device_call import Stage
from replicate.profile import Group, Profile, named_shape
from replicate.timing import capture_check, kernel_benchmark, precision_check, step_ms, stream_check

CAPTURE_TOLERANCE = 1e-3  # captured vs eager losses, relative: the same kernels (atomics aside) or a bug
# each stage's box: at most this share of the call's deadline (a cap, not a reservation: what a stage leaves
# goes to the next); about 90 s of the default 480 for the kernel benchmark's cold compiles
SHARES = {"preflight": 0.15, "capture": 0.06, "precision": 0.06, "streams": 0.08, "kernels": 0.19}
# steps on a GPU, and on the CPU where they only check the logic
CAPTURE_STEPS = {"cuda": (8, 50), "cpu": (4, 4)}  # compared, then timed
PRECISION_STEPS = {"cuda": (400, 100), "cpu": (8, 4)}  # trained, of which the last are compared and timed
STREAM_ROUNDS = {"cuda": 50, "cpu": 2}
MEASURE_STEPS = {"cuda": 50, "cpu": 2}
KERNEL_STEPS = 100  # the kernel benchmark's timed training steps


class CaptureMismatch(Exception):
    """The captured step does not reproduce the eager one: training with it would record wrong losses."""


def group_shape(group: Group) -> dict:
    """A group's id and shape, named, for a bench line."""
    return {"run_id": group.runs[0].run_id, **named_shape(group.cfgs)}


def bench_line(out: Path, row: dict) -> None:
    """One line of OUT/bench.jsonl, written through (a kill loses no finished line)."""
    with open(out / "bench.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def by_cost(prof: Profile) -> list[Group]:
    """One group of each shape, the costliest group (training and validation FLOPs) of the shape first."""
    first: dict[tuple[int, ...], Group] = {}
    for group in sorted(prof.groups, key=Group.flops, reverse=True):
        first.setdefault(group.shape(), group)
    return list(first.values())


@dataclass
class Checks:
    """The measurements of one call at the shapes of `prof`, written to out/bench.jsonl with the provenance `env`;
    `capture`: whether steps are replayed from CUDA graphs (only once the capture check passed)."""

    prof: Profile
    out: Path
    dev: torch.device
    backend: str
    env: dict[str, str]
    results: Path
    capture: bool = False

    @property
    def graphs(self) -> bool:
        """Whether steps are replayed from CUDA graphs (a CPU has none: there `capture` is the check's verdict)."""
        return self.capture and self.dev.type == "cuda"

    def line(self, kind: str, group: Group | None = None, **fields: object) -> None:
        shape = group_shape(group) if group is not None else {}
        bench_line(
            self.out, {"kind": kind, "profile": self.prof.name, **shape, "backend": self.backend, **fields, **self.env}
        )

    def stages(self) -> list[Stage]:
        """The checks in the order a call runs them, with their shares of its deadline."""
        from replicate.preflight import preflight

        def first(deadline: float) -> str:
            groups = [g.cfgs for g in self.prof.bench_groups()]
            return preflight(groups, self.dev, deadline, lambda row: self.line("preflight", **row))

        stages = [
            Stage("preflight", SHARES["preflight"], first),
            Stage("capture", SHARES["capture"], self.check_capture),
            Stage("precision", SHARES["precision"], self.check_precision),
            Stage("streams", SHARES["streams"], self.check_streams),
        ]
        if self.dev.type == "cuda":  # the Triton kernels run on a GPU (the CPU's interpreter is no timing)
            stages.append(Stage("kernels", SHARES["kernels"], self.check_kernels))
        return stages

    def check_capture(self, deadline: float) -> str:
        """The captured step against the eager one on the smallest group; `capture` only once they agree."""
        self.capture, smallest = False, self.prof.bench_groups()[0]
        try:
            check = capture_check(smallest.cfgs, str(self.dev), self.backend, *CAPTURE_STEPS[self.dev.type])
        except Exception as err:  # e.g. an op that cannot be captured: recorded, and every step stays eager
            self.line("capture_check", smallest, error=f"{type(err).__name__}: {err}")
            raise
        self.line("capture_check", smallest, **check)
        if not check["max_rel_loss_diff"] <= CAPTURE_TOLERANCE:  # NaN too
            raise CaptureMismatch(
                f"the captured step's losses differ from the eager step's by {check['max_rel_loss_diff']:.2e} "
                f"(> {CAPTURE_TOLERANCE:g}): every step of this call is eager"
            )
        self.capture = True
        return (
            f"captured vs eager step of group {smallest.runs[0].run_id}: losses within "
            f"{check['max_rel_loss_diff']:.1e} (relative), {check['eager_ms']:.2f} ms eager, "
            f"{check['graph_ms']:.2f} ms captured per step"
        )

    def check_precision(self, deadline: float) -> str:
        """bf16 autocast against fp32 on the smallest group, judged against a fifth of Stage A's seed noise."""
        smallest = self.prof.bench_groups()[0]
        summary = self.results / "stage_a" / "summary.json"
        noise = (
            json.loads(summary.read_text())["seed_noise"]["raw"]["near_optimum"]["rms"] if summary.is_file() else None
        )
        steps, last = PRECISION_STEPS[self.dev.type]
        row = precision_check(smallest.cfgs, str(self.dev), self.backend, steps, last, self.capture)
        keep = noise is not None and abs(row["bf16_rel_loss_diff"]) < noise / 5
        self.line("precision_check", smallest, **row, seed_noise=noise, bf16_would_pass=keep, capture=self.graphs)
        verdict = (
            f"a fifth of Stage A's seed noise is {noise / 5:.3%}: bf16 {'passes' if keep else 'fails'}"
            if noise
            else "no Stage A seed noise to judge it by"
        )
        return (
            f"bf16 autocast vs fp32: training losses differ by {row['bf16_rel_loss_diff']:+.3%} after "
            f"{row['steps']} steps, {row['bf16_ms']:.2f} vs {row['fp32_ms']:.2f} ms per step; {verdict}"
        )

    def check_streams(self, deadline: float, group: Group | None = None) -> str:
        """Copies of a group (default: the smallest) on their own streams in one process."""
        group = group or self.prof.bench_groups()[0]
        rounds = STREAM_ROUNDS[self.dev.type]
        rows = stream_check(
            group.cfgs, str(self.dev), self.backend, rounds=rounds, capture=self.capture, deadline=deadline
        )
        self.line("stream_check", group, rows=rows, capture=self.graphs)
        return f"{'captured' if self.graphs else 'eager'} groups on their own streams in one process: " + ", ".join(
            f"{r['groups']}: {r['group_steps_per_s']:,.0f} group-steps/s" for r in rows
        )

    def check_kernels(self, deadline: float) -> str:
        """The kernel benchmark (benchmarks/kernels.py's rows) at the smallest and the largest group until the
        deadline; what it measured is written however it ends, with a line that says whether it is complete."""
        rows, skipped, tuning, complete = [], [], {}, False
        groups = [g.cfgs for g in self.prof.bench_groups()]
        try:
            kernel_benchmark(
                groups, self.dev, torch.bfloat16, deadline, KERNEL_STEPS, self.capture, rows, skipped, tuning
            )
            complete = not skipped
        finally:
            for row in rows:
                bench_line(self.out, {"kind": "kernel", "profile": self.prof.name, **row, **self.env})
            bench_line(
                self.out, {"kind": "autotune", "profile": self.prof.name, "tuning": list(tuning.values()), **self.env}
            )
            self.line("kernel_benchmark", rows=len(rows), skipped=skipped, complete=complete)
        steps = ", ".join(
            f"{r['backend']} {r['ms']:.3f} ms at {r['shape']}" for r in rows if r["op"].startswith("train")
        )
        return f"kernel benchmark: {len(rows)} timings, {len(tuning)} autotuned keys; training step: {steps}" + (
            f"; skipped: {', '.join(skipped)}" if skipped else ""
        )

    def measure(self, deadline: float) -> str:
        """The training step at every group shape, the costliest group first: eager and captured (once the
        capture check passed), PyTorch's ops and the Triton kernels (on a GPU; then streams at the costliest
        shape); until the deadline (checked before each)."""
        captures = (False, True) if self.graphs else (False,)
        backends = ("torch", "triton") if self.dev.type == "cuda" else ("torch",)
        groups, done, skipped = by_cost(self.prof), 0, 0
        for group in groups:
            for backend in backends:
                for capture in captures:
                    if time.monotonic() > deadline:
                        skipped += 1
                        continue
                    try:
                        ms = step_ms(group.cfgs, str(self.dev), backend, capture, MEASURE_STEPS[self.dev.type])
                    except Exception as err:  # the Triton step failing must not cost the others' numbers
                        self.line(
                            "step", group, backend=backend, captured=capture, error=f"{type(err).__name__}: {err}"
                        )
                        continue
                    self.line("step", group, backend=backend, captured=capture, ms=ms)
                    done += 1
        summary = f"{done} step timings at {len(groups)} shapes of {self.prof.name}, {skipped} past the deadline"
        if self.dev.type == "cuda" and time.monotonic() < deadline:  # on the CPU the stream stage checked the logic
            summary += "; " + self.check_streams(deadline, groups[0])
        return summary
