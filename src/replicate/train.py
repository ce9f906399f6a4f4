"""Training: AdamW with a short linear warm-up then a constant learning rate, validated at token checkpoints.

A constant learning rate makes one run yield the loss at every checkpoint T, which is what the scaling-law
sweeps need (a decaying schedule would tie each run to one T).

The validation loss at a checkpoint is that of the raw weights, as constant-learning-rate training leaves
them, averaged over the last `eval_window` of the steps before it: the validation set is cut into
`eval_slices` interleaved, stratified slices, each scored at its own point of the window, so the average
costs one evaluation and smooths the iterate's jitter without removing the noise floor that a constant rate
leaves (that floor is what makes small batches pay for their extra steps). A second loss, of a power-function
EMA of the weights (Karras et al. 2024, EDM2; DiT evaluates EMA weights too), is recorded beside it: the EMA
averages the noise floor away, and with it the batch-size trade-off: on our models its optimal batch size
sits at the smallest batch at every T (in the cpu study, and in the 8-frame pilot of results/pilot, where
the raw loss's grew with T).

Optimiser (the paper does not publish its AdamW settings): beta1 = 0.9, beta2 = 0.999 (the larger beta2
suits the small batches of a scaling sweep, Porian et al. 2024), eps = 1e-8, weight decay 0 (as DiT), and
gradients clipped to global norm 1.0. Warm-up is linear over `warmup_steps` steps.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from replicate.config import FLOP_KINDS, ClipConfig, ModelConfig, count_params, flops_per_token
from replicate.data import ClipStream
from replicate.diffusion import (
    VAL_SEED,
    ValidationSet,
    alphas_cumprod,
    example_losses,
    stratified_mean_se,
    training_loss,
)
from replicate.ensemble import EnsembleAdamW, clip_grad_norm_per_member_, stack, unstack
from replicate.errors import ConfigError
from replicate.model import VideoDiT
from replicate.progress import progress_bar
from replicate.provenance import provenance

CHECKPOINT_RATIO = math.sqrt(2)


@dataclass(frozen=True)
class TrainConfig:
    """One training run. batch_size in samples (tokens per step = batch_size * model.n_ctx); tokens in tokens."""

    model: ModelConfig
    batch_size: int
    lr: float
    tokens: int
    seed: int = 0
    warmup_steps: int = 25
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    label_dropout: float = 0.1
    checkpoints: tuple[int, ...] = ()  # token counts to validate at; () means token_checkpoints(tokens)
    val_examples: int = 4096
    val_seed: int = VAL_SEED
    blowup: float = 2.0  # diverged once the smoothed training loss exceeds blowup x its first value
    ema_gamma: float | None = 7.0  # power-EMA exponent (relative width 0.10) of the second loss; None: no EMA
    eval_window: float = 0.1  # the raw loss at a checkpoint averages this last fraction of the steps before it
    eval_slices: int = 4  # ... at this many points, each scoring an interleaved slice of the validation set

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1 sample, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.tokens < 1:
            raise ConfigError(f"tokens must be >= 1, got {self.tokens}")
        if self.warmup_steps < 0 or self.val_examples < 2 or self.grad_clip <= 0:
            raise ConfigError("warmup_steps must be >= 0, val_examples >= 2 and grad_clip > 0")
        if self.ema_gamma is not None and self.ema_gamma < 0:
            raise ConfigError(f"ema_gamma must be >= 0 (or None), got {self.ema_gamma}")
        if not 0 <= self.eval_window < 1 or not 1 <= self.eval_slices <= self.val_examples // 2:
            raise ConfigError("eval_window must lie in [0, 1) and eval_slices in [1, val_examples / 2]")
        if any(c < 1 or c > self.tokens for c in self.checkpoints):
            raise ConfigError(f"checkpoints must lie in [1, tokens={self.tokens}], got {self.checkpoints}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.n_ctx

    @property
    def steps(self) -> int:
        return math.ceil(self.tokens / self.tokens_per_step)

    def checkpoint_steps(self) -> list[int]:
        """Steps after which the model is validated: the first step reaching each checkpoint's tokens."""
        targets = self.checkpoints or token_checkpoints(self.tokens)
        return sorted({math.ceil(c / self.tokens_per_step) for c in targets})

    def slice_steps(self) -> dict[int, list[int]]:
        """Step -> the validation slices scored after it: slice k of a checkpoint at step s at
        s - eval_window s (K - 1 - k) / (K - 1), never before the previous checkpoint."""
        out: dict[int, list[int]] = {}
        previous, k_max = 0, max(self.eval_slices - 1, 1)
        for s in self.checkpoint_steps():
            for k in range(self.eval_slices):
                at = max(previous + 1, s - round(self.eval_window * s * (self.eval_slices - 1 - k) / k_max))
                out.setdefault(at, []).append(k)
            previous = s
        return out


def token_checkpoints(tokens: int, span: float = 16.0, ratio: float = CHECKPOINT_RATIO) -> tuple[int, ...]:
    """A geometric grid of token counts, `ratio` apart, from tokens / span up to tokens."""
    n = round(math.log(span) / math.log(ratio))
    return tuple(sorted({max(1, round(tokens / ratio**k)) for k in range(n + 1)}))


@dataclass
class Checkpoint:
    step: int
    tokens: int  # training tokens seen
    val_loss: float  # raw weights, averaged over the evaluation window
    val_loss_se: float
    val_loss_ema: float | None  # power-EMA weights at the checkpoint (None without an EMA)
    val_loss_ema_se: float | None
    train_loss: float  # mean training loss since the previous checkpoint
    wall_s: float  # seconds since the start of training


@dataclass
class TrainRecord:
    config: TrainConfig
    n_params: int
    tokens_per_sample: int
    tokens_per_step: int
    flops_per_token: dict[str, float]
    checkpoints: list[Checkpoint] = field(default_factory=list)
    diverged: bool = False
    diverged_at_tokens: int | None = None
    wall_s: float = 0.0  # seconds the whole run (its ensemble) took
    provenance: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def build_model(cfg: TrainConfig, device: torch.device, backend: str = "auto") -> VideoDiT:
    """The run's model, initialised from its seed without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = VideoDiT(cfg.model, backend=backend)
    return model.to(device)


class PowerEMA:
    """EDM2's power-function EMA of a model's weights: after step t it weights the iterate of step tau by
    tau^gamma, an average over the last ~sigma_rel of the run with sigma_rel = sqrt((g+1) / ((g+2)^2 (g+3)))
    (0.10 at gamma = 7), whatever the run's length.
    """

    def __init__(self, model: torch.nn.Module, gamma: float) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.gamma, self.step = gamma, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.step += 1
        beta = (1 - 1 / self.step) ** (self.gamma + 1)
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1 - beta)


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


def check_group(cfgs: list[TrainConfig]) -> TrainConfig:
    """The shared config of runs that may train as one ensemble: identical but for learning rate and seed."""
    if not cfgs:
        raise ConfigError("an ensemble needs at least one run")
    base = cfgs[0]
    if any(dataclasses.replace(c, lr=base.lr, seed=base.seed) != base for c in cfgs):
        raise ConfigError("runs of one ensemble must differ only in learning rate and seed")
    return base


def make_optimizer(model: torch.nn.Module, cfgs: list[TrainConfig]) -> EnsembleAdamW:
    """AdamW with each member's learning rate, for a model stacked len(cfgs) times."""
    base = check_group(cfgs)
    return EnsembleAdamW(model.parameters(), torch.tensor([c.lr for c in cfgs]), betas=base.betas,
                         eps=base.adam_eps, weight_decay=base.weight_decay)


Batch = tuple[torch.Tensor, torch.Tensor]  # clips (B, C, F, H, W) and labels (B,)


def train_step(model: torch.nn.Module, opt: EnsembleAdamW, step: int, batches: list[Batch],
               gens: list[torch.Generator], sources: list[int], abar: torch.Tensor, cfg: TrainConfig,
               active: torch.Tensor) -> torch.Tensor:
    """Optimiser step `step` (from 1) of every member, member e on batches[sources[e]] (one batch per seed,
    see diffusion.training_loss): linear warm-up, then the constant rate; bf16 autocast on CUDA; members not
    `active` (diverged) get no gradient. Returns the losses (E,) on device.
    """
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=batches[0][0].device.type == "cuda"):
        losses = training_loss(model, batches, gens, abar, cfg.label_dropout, sources)
    opt.zero_grad(set_to_none=True)
    torch.where(active, losses, 0.0).sum().backward()
    clip_grad_norm_per_member_(list(model.parameters()), cfg.grad_clip, len(active))
    opt.set_scale(min(1.0, step / max(cfg.warmup_steps, 1)))
    opt.step()
    return losses.detach()


class GroupStepper:
    """What a training step of a group needs: its stacked model (and a plain model of its architecture),
    optimiser, and per seed a noise generator and a clip stream, and the divergence mask. The trainer and the
    step benchmarks share it. Members of one seed share their initialisation, clips and noise.
    """

    def __init__(self, cfgs: list[TrainConfig], device: torch.device, backend: str = "auto") -> None:
        self.cfg = check_group(cfgs)
        self.seeds = list(dict.fromkeys(c.seed for c in cfgs))  # in order of first appearance
        self.sources = [self.seeds.index(c.seed) for c in cfgs]
        plains = [build_model(dataclasses.replace(self.cfg, seed=seed), device, backend) for seed in self.seeds]
        self.plain = plains[0]
        self.model = stack([plains[k] for k in self.sources])
        self.opt = make_optimizer(self.model, cfgs)
        self.gens = [torch.Generator(device=device).manual_seed(seed) for seed in self.seeds]
        self.abar = alphas_cumprod().to(device)
        self.active = torch.ones(len(cfgs), dtype=torch.bool, device=device)
        self.device = device
        self.seek(0)

    def seek(self, steps: int) -> None:
        """Point the clip streams at the batch of step `steps` + 1 (clips are pure functions of their index)."""
        self.streams = [ClipStream(self.cfg.model.clip, seed, "train", self.device, start=steps * self.cfg.batch_size)
                        for seed in self.seeds]

    def next_batches(self) -> list[Batch]:
        """Each seed's next batch."""
        return [stream.next(self.cfg.batch_size) for stream in self.streams]

    def step(self, step: int, batches: list[Batch] | None = None, forward: torch.nn.Module | None = None
             ) -> torch.Tensor:
        """train_step number `step` on `batches` (default: the streams' next), through `forward` (default: the
        stacked model; e.g. a compiled one). Returns the members' losses (E,) on the device."""
        batches = batches if batches is not None else self.next_batches()
        return train_step(forward or self.model, self.opt, step, batches, self.gens, self.sources, self.abar,
                          self.cfg, self.active)


def _timed(dev: torch.device, fn: Callable[[], object]) -> float:
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
    times = [_timed(dev, lambda k=step + 1: group.step(k, batches)) for step in range(steps + 1)]
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
        spent += _timed(dev, lambda k=steps + 2: step(k))
        steps += 1
    val_s = _timed(dev, lambda: example_losses(group.model, val, members=len(cfgs))) * base.val_examples / len(val)
    return base.steps * spent / steps + len(base.checkpoint_steps()) * (2 if ema else 1) * val_s


def train(cfg: TrainConfig, **kwargs) -> TrainRecord:
    """Train one model: train_group with a single member (see there for the arguments)."""
    return train_group([cfg], **kwargs)[0]


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
) -> list[TrainRecord] | None:
    """Train runs that differ only in learning rate and seed as one stacked model, validating each at every
    checkpoint.

    Never raises on divergence: a diverging member is frozen and marked `diverged`, the others go on.
    Deterministic on CPU: the same configs give bit-identical records (but wall_s).
    `on_checkpoint(record, model, ema_model)` runs after each member's validation with copies of its raw
    weights and its EMA weights (None without an EMA).
    Pausing: once the clock (time.time()) passes `stop_at`, the group stops at its next 16-step boundary,
    writes everything it needs to go on into the file `state` and returns None; a call with the same
    arguments and that file continues from there (and deletes it when done). Paused and resumed, a group
    gives the same records on the CPU as one that ran through.
    """
    base = check_group(cfgs)
    members = len(cfgs)
    dev = resolve_device(device)
    start = time.perf_counter()
    records = [TrainRecord(c, count_params(c.model), c.model.n_ctx, c.tokens_per_step,
                           {k: flops_per_token(c.model, k) for k in FLOP_KINDS}, provenance=provenance(dev))
               for c in cfgs]
    group = GroupStepper(cfgs, dev, backend)
    plain, model, opt, active = group.plain, group.model, group.opt, group.active
    if val is None:
        val = ValidationSet.build(base.model.clip, base.val_examples, base.val_seed, dev)
    val = val.to(dev)
    ema = PowerEMA(model, base.ema_gamma) if base.ema_gamma is not None else None
    slices = [val.subset(torch.arange(k, len(val), base.eval_slices)) for k in range(base.eval_slices)]
    window = torch.full((members, len(val)), math.nan, dtype=torch.float64, device=val.t.device)

    checkpoint_steps, slice_steps = set(base.checkpoint_steps()), base.slice_steps()
    pending: list[torch.Tensor] = []  # losses not yet read back (reading every step would sync a GPU)
    since_checkpoint: list[list[float]] = [[] for _ in cfgs]
    first: list[float | None] = [None] * members
    smoothed: list[float | None] = [None] * members
    done, paused = 0, False
    if state is not None and Path(state).is_file():
        done = _load_state(Path(state), model, opt, ema, window, group.gens, active, records, [first, smoothed],
                           since_checkpoint)
        group.seek(done)
        start -= records[0].wall_s  # wall_s holds the seconds trained before the pause
    bar = progress_bar(total=base.steps, initial=done, disable=not progress,
                       desc=f"N={records[0].n_params:,}" + (f" x{members}" if members > 1 else ""))
    for step in range(done + 1, base.steps + 1):
        pending.append(group.step(step))
        if ema:
            ema.update(model)
        bar.update(1)
        if step % 16 and step not in slice_steps and step != base.steps:
            continue
        for losses in torch.stack(pending).float().cpu().tolist():
            for e, value in enumerate(losses):
                if records[e].diverged:
                    continue
                first[e] = value if first[e] is None else first[e]
                smoothed[e] = value if smoothed[e] is None else 0.9 * smoothed[e] + 0.1 * value
                since_checkpoint[e].append(value)
                if not math.isfinite(value) or smoothed[e] > base.blowup * first[e]:
                    _diverge(records[e], step, e, active, opt)
        pending.clear()
        bar.set_postfix(loss=" ".join(f"{v:.4f}" for v in smoothed if v is not None))
        for k in slice_steps.get(step, []) if bool(active.any()) else []:
            window[:, k::base.eval_slices] = example_losses(model, slices[k], members=members)
        if step in checkpoint_steps and bool(active.any()):
            ema_losses = example_losses(ema.model, val, members=members) if ema else None
            for e, record in enumerate(records):
                if record.diverged:
                    continue
                val_loss, val_se = stratified_mean_se(window[e])
                ema_loss, ema_se = stratified_mean_se(ema_losses[e]) if ema else (None, None)
                if not math.isfinite(val_loss):
                    _diverge(record, step, e, active, opt)
                    continue
                record.checkpoints.append(Checkpoint(step, step * base.tokens_per_step, val_loss, val_se, ema_loss,
                                                     ema_se, sum(since_checkpoint[e]) / len(since_checkpoint[e]),
                                                     time.perf_counter() - start))
                since_checkpoint[e].clear()
                if on_checkpoint is not None:
                    on_checkpoint(record, unstack(model, plain, e), unstack(ema.model, plain, e) if ema else None)
            window.fill_(math.nan)
        if not bool(active.any()):
            break
        paused = stop_at is not None and step % 16 == 0 and step < base.steps and time.time() > stop_at
        if paused:
            break
    bar.close()
    for record in records:
        record.wall_s = time.perf_counter() - start
    if paused:
        _save_state(Path(state), step, model, opt, ema, window, group.gens, active, records, [first, smoothed],
                    since_checkpoint)
        return None
    if state is not None:
        Path(state).unlink(missing_ok=True)
    return records


def _save_state(path: Path, step: int, model: torch.nn.Module, opt: EnsembleAdamW, ema: PowerEMA | None,
                window: torch.Tensor, gens: list[torch.Generator], active: torch.Tensor,
                records: list[TrainRecord], running: list[list], since: list[list[float]]) -> None:
    """A paused group's state (plain tensors and lists), written to a temporary file and renamed."""
    blob = {"step": step, "model": model.state_dict(), "opt": opt.state_dict(), "lrs": opt.lrs,
            "ema": (ema.model.state_dict(), ema.step) if ema else None,
            "window": window, "gens": [gen.get_state() for gen in gens], "active": active, "running": running,
            "since": since,
            "records": [{"checkpoints": [dataclasses.asdict(c) for c in r.checkpoints], "diverged": r.diverged,
                         "diverged_at_tokens": r.diverged_at_tokens, "wall_s": r.wall_s} for r in records]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def _load_state(path: Path, model: torch.nn.Module, opt: EnsembleAdamW, ema: PowerEMA | None,
                window: torch.Tensor, gens: list[torch.Generator], active: torch.Tensor,
                records: list[TrainRecord], running: list[list], since: list[list[float]]) -> int:
    """Restore what _save_state wrote into the freshly built objects; returns the step it was written at."""
    blob = torch.load(path, map_location=window.device, weights_only=True)
    model.load_state_dict(blob["model"])
    opt.load_state_dict(blob["opt"])
    opt.lrs = blob["lrs"].cpu()
    if ema:
        ema.model.load_state_dict(blob["ema"][0])
        ema.step = blob["ema"][1]
    window.copy_(blob["window"])
    for gen, saved in zip(gens, blob["gens"], strict=True):
        gen.set_state(saved.cpu())
    active.copy_(blob["active"])
    for have, saved in zip(running, blob["running"], strict=True):
        have[:] = saved
    for have, saved in zip(since, blob["since"], strict=True):
        have[:] = saved
    for record, saved in zip(records, blob["records"], strict=True):
        record.checkpoints = [Checkpoint(**c) for c in saved["checkpoints"]]
        record.diverged, record.diverged_at_tokens = saved["diverged"], saved["diverged_at_tokens"]
        record.wall_s = saved["wall_s"]
    return blob["step"]


def _diverge(record: TrainRecord, step: int, member: int, active: torch.Tensor, opt: EnsembleAdamW) -> None:
    """Mark a member diverged at `step` and freeze it."""
    record.diverged = True
    record.diverged_at_tokens = step * record.tokens_per_step
    active[member] = False
    opt.lrs[member] = 0.0
