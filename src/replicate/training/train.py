"""Training: AdamW with a short linear warm-up then a constant learning rate, validated at token checkpoints.

A constant learning rate makes one run yield the loss at every checkpoint T, which is what the scaling-law
sweeps need (a decaying schedule would tie each run to one T).

The validation loss at a checkpoint is that of the raw weights, as constant-learning-rate training leaves
them, averaged over the last `eval_window` of the steps before it: the validation set is cut into
`eval_slices` interleaved, stratified slices, each scored at its own point of the window, so the average
costs one evaluation and smooths the iterate's jitter without removing the noise floor that a constant rate
leaves (that floor is what makes small batches pay for their extra steps). A second loss, of a power-function
EMA of the weights (Karras et al. 2024, EDM2; DiT evaluates EMA weights too), is recorded beside it: the EMA
averages the noise floor away, and with it the batch-size trade-off (the book's hyperparameter chapter compares
the two readouts' optima: fit_ema.json beside fit.json).

Optimiser (the paper does not publish its AdamW settings): beta1 = 0.9, beta2 = 0.999 (the larger beta2
suits the small batches of a scaling sweep, Porian et al. 2024), eps = 1e-8, weight decay 0 (as DiT), and
gradients clipped to global norm 1.0. Warm-up is linear over `warmup_steps` steps.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import torch

from replicate.config import FLOP_KINDS, ClipConfig, ModelConfig, TrainConfig, count_params, flops_per_token
from replicate.io import atomic_write
from replicate.progress import progress_bar
from replicate.provenance import provenance
from replicate.runs import Checkpoint, TrainRecord
from replicate.training.diffusion import ValidationSet, example_losses, stratified_mean_se
from replicate.training.ensemble import MemberBuffers, unstack
from replicate.training.model import VideoDiT
from replicate.training.step import GroupStepper, check_group, resolve_device


class PowerEMA:
    """EDM2's power-function EMA of a model's weights: after step t it weights the iterate of step tau by
    tau^gamma, an average over the last ~sigma_rel of the run with sigma_rel = sqrt((g+1) / ((g+2)^2 (g+3)))
    (0.10 at gamma = 7), whatever the run's length. Its copy of the model keeps its weights in MemberBuffers
    laid out as the model's, so an update is one lerp over one buffer.
    """

    def __init__(self, model: torch.nn.Module, gamma: float) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.weights = MemberBuffers(self.model.parameters(), grads=False)
        self.gamma, self.step = gamma, 0

    @torch.no_grad()
    def update(self, weights: MemberBuffers) -> None:
        """Average in the model's current weights (its MemberBuffers, of the model this EMA copied)."""
        self.step += 1
        beta = (1 - 1 / self.step) ** (self.gamma + 1)
        self.weights.data.lerp_(weights.data, 1 - beta)


def save_model(model: VideoDiT, path: str | Path) -> None:
    """Weights and architecture of a (plain) Video DiT, for samples and later measurements."""
    torch.save({"config": dataclasses.asdict(model.cfg), "state_dict": model.state_dict()}, path)


def load_model(path: str | Path, device: str = "cpu") -> VideoDiT:
    """A Video DiT saved by save_model."""
    blob = torch.load(path, map_location=device, weights_only=True)
    cfg = dict(blob["config"])
    cfg["clip"] = ClipConfig(**cfg["clip"])
    cfg["patch"] = tuple(cfg["patch"])
    model = VideoDiT(ModelConfig(**cfg))
    model.load_state_dict(blob["state_dict"])
    return model.to(device)


def train(cfg: TrainConfig, **kwargs) -> TrainRecord:
    """Train one model: train_group with a single member (see there for the arguments)."""
    return train_group([cfg], **kwargs)[0]


def paused_step(path: str | Path) -> int | None:
    """The step at which the group paused in the state file `path` (GroupState.save) stopped; None without one
    or where it cannot be read (the resuming worker then reports why). The file is memory-mapped: its tensors
    are not read."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError):
        return None


class GroupState:
    """Everything the training loop of a group changes, in one object: the stepper (stacked model, optimiser,
    generators, clip streams, divergence mask), the EMA, the records, the evaluation window, the step count
    and the divergence detector's running values. A paused group is one `save(path)`; it resumes from
    `GroupState.load(path, ...)`, on this machine or another (the file holds plain tensors and lists)."""

    def __init__(
        self, cfgs: list[TrainConfig], device: torch.device, backend: str, n_val: int, capture: bool = False
    ) -> None:
        self.stepper = GroupStepper(cfgs, device, backend, capture)  # checks that the configs may share a group
        base = self.cfg = self.stepper.cfg
        self.members = len(cfgs)
        self.ema = PowerEMA(self.stepper.model, base.ema_gamma) if base.ema_gamma is not None else None
        prov = provenance(device)
        self.records = [
            TrainRecord(
                c,
                count_params(c.model),
                c.model.n_ctx,
                c.tokens_per_step,
                {k: flops_per_token(c.model, k) for k in FLOP_KINDS},
                provenance=prov,
            )
            for c in cfgs
        ]
        # (E, n_val): each member's losses on the validation slices scored in the current evaluation window
        self.window = torch.full((self.members, n_val), math.nan, dtype=torch.float64, device=device)
        self.step = 0  # optimiser steps taken
        self.first: list[float | None] = [None] * self.members  # each member's first training loss ...
        self.smoothed: list[float | None] = [None] * self.members  # ... and its running mean (divergence)
        self.since: list[list[float]] = [[] for _ in cfgs]  # training losses since the last checkpoint

    def observe(self, losses: list[list[float]], step: int) -> None:
        """Take the training losses of the steps up to `step` ((steps, E)); freeze members that blew up."""
        for row in losses:
            for e, value in enumerate(row):
                if self.records[e].diverged:
                    continue
                self.first[e] = value if self.first[e] is None else self.first[e]
                self.smoothed[e] = value if self.smoothed[e] is None else 0.9 * self.smoothed[e] + 0.1 * value
                self.since[e].append(value)
                if not math.isfinite(value) or self.smoothed[e] > self.cfg.blowup * self.first[e]:
                    self.diverge(e, step)

    def diverge(self, member: int, step: int) -> None:
        """Mark a member diverged at `step` and freeze it."""
        record = self.records[member]
        record.diverged = True
        record.diverged_at_tokens = step * record.tokens_per_step
        self.stepper.active[member] = False
        self.stepper.opt.lrs[member] = 0.0

    def checkpoint(
        self,
        val: ValidationSet,
        wall_s: float,
        on_checkpoint: Callable[[TrainRecord, VideoDiT, VideoDiT | None], None] | None,
    ) -> None:
        """Score every live member at the current step: the window's raw loss and the EMA weights' loss."""
        model, plain = self.stepper.model, self.stepper.plain
        ema_losses = example_losses(self.ema.model, val, members=self.members) if self.ema else None
        for e, record in enumerate(self.records):
            if record.diverged:
                continue
            val_loss, val_se = stratified_mean_se(self.window[e])
            ema_loss, ema_se = stratified_mean_se(ema_losses[e]) if self.ema else (None, None)
            if not math.isfinite(val_loss):
                self.diverge(e, self.step)
                continue
            record.checkpoints.append(
                Checkpoint(
                    self.step,
                    self.step * self.cfg.tokens_per_step,
                    val_loss,
                    val_se,
                    ema_loss,
                    ema_se,
                    sum(self.since[e]) / len(self.since[e]),
                    wall_s,
                )
            )
            self.since[e].clear()
            if on_checkpoint is not None:
                on_checkpoint(record, unstack(model, plain, e), unstack(self.ema.model, plain, e) if self.ema else None)
        self.window.fill_(math.nan)

    def save(self, path: Path) -> None:
        """This state as one file (plain tensors and lists), written atomically."""
        stepper = self.stepper
        blob = {
            "step": self.step,
            "model": stepper.model.state_dict(),
            "opt": stepper.opt.state_dict(),
            "lrs": stepper.opt.lrs,
            "ema": (self.ema.model.state_dict(), self.ema.step) if self.ema else None,
            "window": self.window,
            "gens": [gen.get_state() for gen in stepper.gens],
            "active": stepper.active,
            "running": [self.first, self.smoothed],
            "since": self.since,
            "records": [
                {
                    "checkpoints": [dataclasses.asdict(c) for c in r.checkpoints],
                    "diverged": r.diverged,
                    "diverged_at_tokens": r.diverged_at_tokens,
                    "wall_s": r.wall_s,
                }
                for r in self.records
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: torch.save(blob, f), binary=True)

    @classmethod
    def load(
        cls, path: Path, cfgs: list[TrainConfig], device: torch.device, backend: str, n_val: int, capture: bool = False
    ) -> GroupState:
        """The state `save` wrote, rebuilt for these configs on `device`."""
        state = cls(cfgs, device, backend, n_val, capture)
        blob = torch.load(path, map_location=device, weights_only=True)
        stepper = state.stepper
        stepper.model.load_state_dict(blob["model"])
        stepper.opt.load_state_dict(blob["opt"])
        stepper.opt.lrs.copy_(blob["lrs"])
        if state.ema:
            state.ema.model.load_state_dict(blob["ema"][0])
            state.ema.step = blob["ema"][1]
        state.window.copy_(blob["window"])
        for gen, saved in zip(stepper.gens, blob["gens"], strict=True):
            gen.set_state(saved.cpu())
        stepper.active.copy_(blob["active"])
        state.first, state.smoothed = (list(v) for v in blob["running"])
        state.since = [list(v) for v in blob["since"]]
        for record, saved in zip(state.records, blob["records"], strict=True):
            record.checkpoints = [Checkpoint(**c) for c in saved["checkpoints"]]
            record.diverged, record.diverged_at_tokens = saved["diverged"], saved["diverged_at_tokens"]
            record.wall_s = saved["wall_s"]
        state.step = blob["step"]
        stepper.seek(state.step)
        return state


def train_group(
    cfgs: list[TrainConfig],
    *,
    device: str = "auto",
    backend: str = "auto",
    val: ValidationSet | None = None,
    progress: bool = False,
    on_checkpoint: Callable[[TrainRecord, VideoDiT, VideoDiT | None], None] | None = None,
    state: Path | None = None,
    stop_at: float | None = None,
    capture: bool = False,
    on_steps: Callable[[int, int], None] | None = None,
) -> list[TrainRecord] | None:
    """Train runs that differ only in learning rate and seed as one stacked model, validating each at every
    checkpoint.

    Never raises on divergence: a diverging member is frozen and marked `diverged`, the others go on.
    Deterministic on CPU: the same configs give bit-identical records (but wall_s).
    `on_checkpoint(record, model, ema_model)` runs after each member's validation with copies of its raw
    weights and its EMA weights (None without an EMA).
    Pausing: once the clock (time.time()) passes `stop_at`, the group stops at its next 16-step boundary,
    writes its GroupState into the file `state` and returns None; a call with the same arguments and that file
    continues from there (and deletes it when done). Paused and resumed, a group gives the same records on the
    CPU as one that ran through.
    `capture`: on CUDA, replay the step from a CUDA graph (replicate.training.step.StepGraph); no effect on the CPU.
    `on_steps(step, steps)` runs wherever the losses are read back (every 16 steps, at each evaluation slice's step
    and at the last): a sweep's progress, told from a worker process.
    """
    base = check_group(cfgs)
    dev = resolve_device(device)
    if val is None:
        val = ValidationSet.build(base.model.clip, base.val_examples, base.val_seed, dev)
    val = val.to(dev)
    resume = state is not None and Path(state).is_file()
    group = (
        GroupState.load(Path(state), cfgs, dev, backend, len(val), capture)
        if resume
        else GroupState(cfgs, dev, backend, len(val), capture)
    )
    stepper, members = group.stepper, group.members
    start = time.perf_counter() - group.records[0].wall_s  # wall_s: the seconds trained before a pause
    slices = [val.subset(torch.arange(k, len(val), base.eval_slices)) for k in range(base.eval_slices)]
    checkpoint_steps, slice_steps = set(base.checkpoint_steps()), base.slice_steps()
    pending: list[torch.Tensor] = []  # losses not yet read back (reading every step would sync a GPU)
    paused = False
    bar = progress_bar(
        total=base.steps,
        initial=group.step,
        disable=not progress,
        desc=f"N={group.records[0].n_params:,}" + (f" x{members}" if members > 1 else ""),
    )
    for step in range(group.step + 1, base.steps + 1):
        pending.append(stepper.step(step))
        if group.ema:
            group.ema.update(stepper.buffers)
        group.step = step
        bar.update(1)
        if step % 16 and step not in slice_steps and step != base.steps:
            continue
        group.observe(torch.stack(pending).float().cpu().tolist(), step)
        pending.clear()
        if on_steps is not None:
            on_steps(step, base.steps)
        bar.set_postfix(loss=" ".join(f"{v:.4f}" for v in group.smoothed if v is not None))
        if bool(stepper.active.any()):
            for k in slice_steps.get(step, []):
                group.window[:, k :: base.eval_slices] = example_losses(stepper.model, slices[k], members=members)
            if step in checkpoint_steps:
                group.checkpoint(val, time.perf_counter() - start, on_checkpoint)
        if not bool(stepper.active.any()):
            break
        paused = stop_at is not None and step % 16 == 0 and step < base.steps and time.time() > stop_at
        if paused:
            break
    bar.close()
    for record in group.records:
        record.wall_s = time.perf_counter() - start
    if paused:
        group.save(Path(state))
        return None
    if state is not None:
        Path(state).unlink(missing_ok=True)
    return group.records
