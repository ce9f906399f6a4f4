"""The measurements of a device call (replicate.device.run's stages), at the shapes of the profile it measures.

Each is a function of its deadline that writes its bench lines (OUT/bench.jsonl) as it goes and returns a
summary line; a failure is the stage's result (replicate.device.call), and the next stage runs:
- preflight (replicate.device.preflight): the environment, a small captured step, the Triton ops' correctness;
- capture: the captured step against the eager one on the smallest group. Until it passes, and where it fails
  or disagrees, every step of the call is eager (`Checks.capture`): the other checks and the training go on;
- precision: bf16 autocast against fp32, against a fifth of the seed noise that the plan's first study (Stage A)
  measured (runs.seed_noise; the rule for keeping bf16: the profiles decide, through TrainConfig.bf16);
- streams: how many groups one process overlaps on separate streams;
- kernels (on a GPU): the kernel benchmark, the training step torch vs Triton first, then each op against eager
  PyTorch and torch.compile at the largest and the smallest group (lines "kernel" and "autotune"), and a line
  "kernel_benchmark" that says whether it is complete (`ingest` takes only complete ones into kernels.csv);
- measure: the training step at every group shape, the costliest group first: eager and captured, PyTorch's
  ops and the Triton kernels (lines "step"), then streams at the costliest shape, until the deadline.
On the CPU each runs a few steps, eagerly and with PyTorch's ops: a check of the logic, not a measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from replicate.config import TrainConfig
from replicate.device.call import Stage
from replicate.profile import Group, Profile, named_shape
from replicate.runs import seed_noise
from replicate.training.step import GroupStepper, resolve_device
from replicate.training.timing import step_ms, stepper_ms, timed

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


def capture_check(
    cfgs: list[TrainConfig], device: str = "auto", backend: str = "auto", steps: int = 8, timed_steps: int = 50
) -> dict[str, float]:
    """The group's first `steps` steps taken eagerly and captured (two steppers from the same seeds): the largest
    relative difference of the members' losses between them, then the milliseconds per step of each over
    `timed_steps` more (fresh clips included). On the CPU both are the eager step: a logic check."""
    dev = resolve_device(device)
    eager, captured = GroupStepper(cfgs, dev, backend), GroupStepper(cfgs, dev, backend, capture=True)
    first = [(eager.step(k), captured.step(k)) for k in range(1, steps + 1)]
    diff = max(float(((b - a).abs() / a.abs()).max()) for a, b in first)
    return {
        "max_rel_loss_diff": diff,
        "eager_ms": stepper_ms(eager, dev, steps + 1, timed_steps),
        "graph_ms": stepper_ms(captured, dev, steps + 1, timed_steps),
        "steps": steps,
    }


CAPTURED_STEP = "train_step (captured)"  # backend_rows' op: the whole captured training step


EAGER_STEP = "train_step (eager)"  # the same where the step could not be captured


def backend_rows(
    groups: list[list[TrainConfig]],
    device: torch.device,
    deadline: float,
    timed_steps: int = 100,
    capture: bool = True,
    rows: list[dict] | None = None,
    skipped: list[str] | None = None,
) -> tuple[list[dict], list[str]]:
    """The training step of each group (its members' TrainConfigs), replayed from a CUDA graph (eager without
    `capture`), with PyTorch's ops and with the Triton kernels (step_ms); rows in kernels.bench.op_rows' layout, ms
    per step, speed-up against the torch backend; and the cases skipped because time.monotonic() passed
    `deadline` (checked before each backend) or failed. Appended to `rows` and `skipped` where given."""
    from replicate.kernels.bench import shape_label
    from replicate.profile import named_shape

    rows, skipped = (rows if rows is not None else []), (skipped if skipped is not None else [])
    op = CAPTURED_STEP if capture else EAGER_STEP
    for cfgs in groups:
        label, ms = shape_label(named_shape(cfgs)), {}
        for backend in ("torch", "triton"):
            if time.monotonic() > deadline:
                skipped.append(f"{op} {backend} at {label}")
                continue
            try:
                ms[backend] = step_ms(cfgs, str(device), backend, capture, timed_steps)
            except Exception as err:  # the Triton step failing must not cost the torch step's number
                skipped.append(f"{op} {backend} at {label}: {type(err).__name__}: {str(err)[:200]}")
        rows.extend(
            {
                "op": op,
                "shape": label,
                "dtype": "bf16-autocast" if cfgs[0].bf16 else "fp32",
                "backend": backend,
                "ms": t,
                "speedup_vs_eager": ms["torch"] / t if "torch" in ms else float("nan"),
                "achieved": float("nan"),
                "peak": float("nan"),
                "unit": "",
            }
            for backend, t in ms.items()
        )
    return rows, skipped


def kernel_benchmark(
    groups: list[list[TrainConfig]],
    device: torch.device,
    dtype: torch.dtype,
    deadline: float,
    timed_steps: int | None = 100,
    capture: bool = True,
    rows: list[dict] | None = None,
    skipped: list[str] | None = None,
    tuning: dict[tuple[str, str], dict] | None = None,
) -> dict:
    """The kernel benchmark at each group's shape (benchmarks/kernels.py prints it, the device run records it),
    the decisive rows first: unless timed_steps is None, backend_rows for the training step over `timed_steps`
    (captured unless `capture` is false); then the device's peaks and kernels.bench.op_rows for every op, the
    largest group's shape first; all until time.monotonic() passes `deadline`, checked before each backend.
    Returns peak, rows, skipped (with why) and tuning (per kernel and key); the rows, skipped cases and tunings
    go into `rows`, `skipped` and `tuning` as they come where given (a caller cut short keeps them)."""
    from replicate.kernels.bench import op_rows, peaks
    from replicate.profile import named_shape

    rows, skipped = (rows if rows is not None else []), (skipped if skipped is not None else [])
    tuning = tuning if tuning is not None else {}
    if timed_steps is not None:
        backend_rows(groups, device, deadline, timed_steps, capture, rows, skipped)
    peak = peaks(device)
    shapes = [named_shape(cfgs) for cfgs in reversed(groups)]
    op_rows(shapes, device, dtype, deadline, peak, tuning=tuning, rows=rows, skipped=skipped)
    return {"peak": peak, "rows": rows, "skipped": skipped, "tuning": tuning}


def precision_check(
    cfgs: list[TrainConfig],
    device: str = "auto",
    backend: str = "auto",
    steps: int = 400,
    last: int = 100,
    capture: bool = True,
) -> dict[str, float]:
    """The group trained `steps` captured (with `capture`, else eager) steps in fp32 and in bf16 autocast from
    the same seeds (the same clips and noise): the mean relative difference of the members' training losses over
    the `last` steps (bf16 / fp32 - 1), and the milliseconds per step of each. On the CPU both are fp32 (no
    autocast)."""
    dev = resolve_device(device)
    runs = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        stepper = GroupStepper([dataclasses.replace(c, bf16=bf16) for c in cfgs], dev, backend, capture)
        for k in range(1, steps - last + 1):
            stepper.step(k)
        tail: list[torch.Tensor] = []
        timed_steps = range(steps - last + 1, steps + 1)
        seconds = timed(dev, lambda s=stepper, out=tail, ks=timed_steps: out.extend(s.step(k) for k in ks))
        runs[name] = (torch.stack(tail).double().mean(0), 1e3 * seconds / last)
    (fp32, fp32_ms), (bf16, bf16_ms) = runs["fp32"], runs["bf16"]
    diff = float((bf16 / fp32 - 1).mean())
    return {"bf16_rel_loss_diff": diff, "fp32_ms": fp32_ms, "bf16_ms": bf16_ms, "steps": steps}


def stream_check(
    cfgs: list[TrainConfig],
    device: str = "auto",
    backend: str = "auto",
    counts: tuple[int, ...] = (1, 2, 4, 8),
    rounds: int = 50,
    capture: bool = True,
    deadline: float = float("inf"),
) -> list[dict[str, float]]:
    """How many captured (with `capture`, else eager) groups one process can overlap: for each count S, S copies
    of the group, each stepped on its own CUDA stream, round-robin for `rounds` rounds; group-steps per second in
    all (on the CPU, one after another: a logic check). The design question of the GPU issue: streams in one
    process, or more processes (which the GPU time-slices). Counts left when time.monotonic() passes `deadline`
    are left out."""
    dev = resolve_device(device)
    rows = []
    for count in counts:
        if time.monotonic() > deadline:
            break
        steppers = [GroupStepper(cfgs, dev, backend, capture) for _ in range(count)]
        warm = steppers[0].warm_steps
        for stepper in steppers:
            for k in range(1, warm + 1):
                stepper.step(k)
        streams = [torch.cuda.Stream(dev) if dev.type == "cuda" else None for _ in steppers]

        def run(steppers: list[GroupStepper] = steppers, streams: list = streams, first: int = warm + 1) -> None:
            for k in range(first, first + rounds):
                for stepper, stream in zip(steppers, streams, strict=True):
                    with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                        stepper.step(k)

        seconds = timed(dev, run)
        rows.append(
            {"groups": count, "group_steps_per_s": count * rounds / seconds, "round_ms": 1e3 * seconds / rounds}
        )
    return rows


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
        from replicate.device.preflight import preflight

        def first(deadline: float) -> str:
            groups, rows = [g.cfgs for g in self.prof.bench_groups()], {}

            def emit(row: dict) -> None:
                rows[row["check"]] = row
                self.line("preflight", **row)

            try:
                return preflight(groups, self.dev, deadline, emit)
            finally:
                self.gate_triton(rows.get("triton_ops", {}).get("status", "not run"))

        stages = [
            Stage("preflight", SHARES["preflight"], first),
            Stage("capture", SHARES["capture"], self.check_capture),
            Stage("precision", SHARES["precision"], self.check_precision),
            Stage("streams", SHARES["streams"], self.check_streams),
        ]
        if self.dev.type == "cuda":  # the Triton kernels run on a GPU (the CPU's interpreter is no timing)
            stages.append(Stage("kernels", SHARES["kernels"], self.check_kernels))
        return stages

    def gate_triton(self, status: str) -> None:
        """Backend "auto" trains with PyTorch's ops unless the preflight verified every Triton op against its
        reference (status "ok"): a kernel that is wrong, or was not checked in time, must not train the study."""
        if self.backend == "auto" and status != "ok":
            self.backend = "torch"
            print(f"preflight: the Triton ops are not verified ({status}): backend auto trains with PyTorch's ops")

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
        noise = seed_noise(self.results)
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
