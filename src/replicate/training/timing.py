"""How long a group's training takes: one step (`step_seconds`, `step_ms`, for the benchmarks and the device
checks) and a whole run (`run_seconds`, for the sweep's deadline estimates), timed with the device's queue
drained; and the step times that device runs measured (`measured_step_seconds`), which the sweep and the device
run take over a calibration."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from replicate.config import TrainConfig
from replicate.profile import SHAPE_FIELDS
from replicate.training.diffusion import ValidationSet, example_losses
from replicate.training.step import GroupStepper, resolve_device
from replicate.training.train import PowerEMA


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


def stepper_ms(stepper: GroupStepper, dev: torch.device, first: int, count: int, batches: list | None = None) -> float:
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
    return stepper_ms(stepper, dev, stepper.warm_steps + 1, steps, batches)


STEP_TIMES = Path("benchmarks") / "device_steps.jsonl"  # under the results root: what device runs measured


def measured_step_seconds(path: Path, device: str, backend: str | None = None) -> dict[tuple[int, ...], float]:
    """Seconds per step (training, EMA and validation included) by group shape (profile.Group.shape), from the
    device runs' bench lines measured on `device` (with `backend`, or any); the latest of a shape wins."""
    times: dict[tuple[int, ...], float] = {}
    if not path.is_file():
        return times
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "group" and row.get("device") == device and backend in (None, row.get("backend")):
            key = tuple(row[k] for k in SHAPE_FIELDS)
            times[key] = row["train_s"] / row["steps"]
    return times
