"""How long a group's training takes: one step (`step_seconds`, for the benchmarks) and a whole run
(`run_seconds`, for the sweep's deadline estimates), timed with the device's queue drained."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from replicate.config import TrainConfig
from replicate.diffusion import ValidationSet, example_losses
from replicate.train import GroupStepper, PowerEMA, resolve_device


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


def run_seconds(cfgs: list[TrainConfig], device: str = "auto", backend: str = "auto", budget_s: float = 0.25) -> float:
    """Predicted wall seconds of train_group(cfgs): its steps as the trainer takes them (fresh clips, the EMA
    update), timed for about `budget_s` after a warm-up step, plus its validation passes at every checkpoint
    (the window's slices and the EMA's: two passes over the set), timed on 64 examples. Short bursts run at a
    higher clock than a sustained sweep: the sweep corrects for that with what its finished groups took."""
    dev = resolve_device(device)
    group = GroupStepper(cfgs, dev, backend)
    base = group.cfg
    ema = PowerEMA(group.model, base.ema_gamma) if base.ema_gamma is not None else None
    val = ValidationSet.build(base.model.clip, min(64, base.val_examples), base.val_seed, dev)

    def step(k: int) -> None:
        group.step(k)
        if ema:
            ema.update(group.model)

    step(1)
    example_losses(group.model, val, members=len(cfgs))  # warm-up
    steps, spent = 0, 0.0
    while steps < 3 or spent < budget_s:
        spent += timed(dev, lambda k=steps + 2: step(k))
        steps += 1
    val_s = timed(dev, lambda: example_losses(group.model, val, members=len(cfgs))) * base.val_examples / len(val)
    return base.steps * spent / steps + len(base.checkpoint_steps()) * (2 if ema else 1) * val_s
