"""How long a group's training takes: one step (`step_seconds`, for the benchmarks) and a whole run
(`run_seconds`, for the sweep's deadline estimates), timed with the device's queue drained."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

import torch

from replicate.config import TrainConfig
from replicate.diffusion import ValidationSet, example_losses
from replicate.step import GroupStepper
from replicate.train import PowerEMA, resolve_device


def timed(dev: torch.device, fn: Callable[[], object]) -> float:
    """Wall seconds of fn(), the device's queue drained before and after."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def step_seconds(cfgs: list[TrainConfig], device: str = "auto", backend: str = "auto", steps: int = 3) -> float:
    """Median seconds of one training step of the group's stacked model, after a warm-up step; data excluded."""
    dev = resolve_device(device)
    group = GroupStepper(cfgs, dev, backend)
    batches = group.next_batches()
    times = [timed(dev, lambda k=step + 1: group.step(k, batches)) for step in range(steps + 1)]
    return sorted(times[1:])[steps // 2]


def run_seconds(
    cfgs: list[TrainConfig], device: str = "auto", backend: str = "auto", budget_s: float = 0.25, capture: bool = False
) -> float:
    """Predicted wall seconds of train_group(cfgs): its steps as the trainer takes them (fresh clips, the EMA
    update), timed for about `budget_s` after a warm-up step, plus its validation passes at every checkpoint
    (the window's slices and the EMA's: two passes over the set), timed on 64 examples. Short bursts run at a
    higher clock than a sustained sweep: the sweep corrects for that with what its finished groups took.
    `capture`: the step replayed from a CUDA graph (timed once recorded)."""
    dev = resolve_device(device)
    group = GroupStepper(cfgs, dev, backend, capture)
    base = group.cfg
    ema = PowerEMA(group.model, base.ema_gamma) if base.ema_gamma is not None else None
    val = ValidationSet.build(base.model.clip, min(64, base.val_examples), base.val_seed, dev)

    def step(k: int) -> None:
        group.step(k)
        if ema:
            ema.update(group.buffers)

    warm = group.warm_steps
    for k in range(1, warm + 1):
        step(k)
    example_losses(group.model, val, members=len(cfgs))  # warm-up
    steps, spent = 0, 0.0
    while steps < 3 or spent < budget_s:
        spent += timed(dev, lambda k=steps + warm + 1: step(k))
        steps += 1
    val_s = timed(dev, lambda: example_losses(group.model, val, members=len(cfgs))) * base.val_examples / len(val)
    return base.steps * spent / steps + len(base.checkpoint_steps()) * (2 if ema else 1) * val_s


def _steps_ms(stepper: GroupStepper, dev: torch.device, first: int, count: int, batches: list | None = None) -> float:
    """Milliseconds per step of the stepper's steps first, ..., first + count - 1: on `batches` each (data
    excluded), or on fresh clips (None: clips included, as the trainer takes them)."""
    return 1e3 * timed(dev, lambda: [stepper.step(k, batches) for k in range(first, first + count)]) / count


def step_ms(
    cfgs: list[TrainConfig], device: str = "auto", backend: str = "auto", capture: bool = False, steps: int = 50
) -> float:
    """Milliseconds per training step of the group over `steps` steps on one batch (data excluded: clips are
    rendered in blocks, which a few steps would catch or miss), after its warm-up: one eager step, or with
    `capture` the eager warm-up, the recording and a first replay of its CUDA graph (on the CPU the eager step)."""
    dev = resolve_device(device)
    stepper = GroupStepper(cfgs, dev, backend, capture)
    batches = stepper.next_batches()
    for k in range(1, stepper.warm_steps + 1):
        stepper.step(k, batches)
    return _steps_ms(stepper, dev, stepper.warm_steps + 1, steps, batches)


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
        "eager_ms": _steps_ms(eager, dev, steps + 1, timed_steps),
        "graph_ms": _steps_ms(captured, dev, steps + 1, timed_steps),
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
