"""Training: AdamW with a short linear warm-up then a constant learning rate, validated at token checkpoints.

A constant learning rate makes one run yield the loss at every checkpoint T, which is what the scaling-law
sweeps need (a decaying schedule would tie each run to one T). What is validated is a power-function EMA of
the weights (Karras et al. 2024, EDM2), which averages over a fixed fraction of the run however long it is:
at a constant learning rate the raw iterate jitters, and its loss varied by 2.4% across training seeds of one
config where the EMA's varied by 0.45% (micro, 400k tokens); DiT, too, evaluates EMA weights.

Optimiser (the paper does not publish its AdamW settings): beta1 = 0.9, beta2 = 0.999 (the larger beta2
suits the small batches of a scaling sweep, Porian et al. 2024), eps = 1e-8, weight decay 0 (as DiT), and
gradients clipped to global norm 1.0. Warm-up is linear over `warmup_steps` steps.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.optim.lr_scheduler import LambdaLR

from replicate.data import ClipStream
from replicate.diffusion import VAL_SEED, ValidationSet, alphas_cumprod, training_loss, validation_loss
from replicate.errors import ConfigError
from replicate.model import FLOP_KINDS, ModelConfig, VideoDiT, count_params, flops_per_token
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
    ema_gamma: float | None = 7.0  # power-EMA exponent (relative width 0.10); None validates the raw weights

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


def token_checkpoints(tokens: int, span: float = 16.0, ratio: float = CHECKPOINT_RATIO) -> tuple[int, ...]:
    """A geometric grid of token counts, `ratio` apart, from tokens / span up to tokens."""
    n = round(math.log(span) / math.log(ratio))
    return tuple(sorted({max(1, round(tokens / ratio**k)) for k in range(n + 1)}))


@dataclass
class Checkpoint:
    step: int
    tokens: int  # training tokens seen
    val_loss: float
    val_loss_se: float
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


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, LambdaLR]:
    """AdamW and the warm-up-then-constant learning-rate schedule."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                            weight_decay=cfg.weight_decay)
    return opt, LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)))


def train_step(model: VideoDiT, opt: torch.optim.Optimizer, sched: LambdaLR, x0: torch.Tensor, y: torch.Tensor,
               gen: torch.Generator, abar: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """One optimiser step on a batch (bf16 autocast on CUDA); returns the loss, still on the device."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x0.device.type == "cuda"):
        loss = training_loss(model, x0, y, gen, abar, cfg.label_dropout)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()
    return loss.detach()


def train(
    cfg: TrainConfig,
    *,
    device: str = "auto",
    backend: str = "auto",
    val: ValidationSet | None = None,
    progress: bool = False,
    on_checkpoint: Callable[[TrainRecord, VideoDiT], None] | None = None,
) -> TrainRecord:
    """Train one model and validate it at every checkpoint. Never raises on divergence: it stops the run
    and sets `diverged`. Deterministic on CPU: the same config gives a bit-identical record (but wall_s).
    `on_checkpoint(record, model)` runs after each validation with the validated (EMA) model.
    """
    dev = resolve_device(device)
    start = time.perf_counter()
    record = TrainRecord(cfg, count_params(cfg.model), cfg.model.n_ctx, cfg.tokens_per_step,
                         {k: flops_per_token(cfg.model, k) for k in FLOP_KINDS}, provenance=provenance(dev))
    model = build_model(cfg, dev, backend)
    val = val if val is not None else ValidationSet.build(cfg.model.clip, cfg.val_examples, cfg.val_seed, dev)
    opt, sched = make_optimizer(model, cfg)
    ema = PowerEMA(model, cfg.ema_gamma) if cfg.ema_gamma is not None else None
    evaluated = ema.model if ema else model
    stream = ClipStream(cfg.model.clip, cfg.seed, "train", dev)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    abar = alphas_cumprod().to(dev)

    checkpoint_steps = set(cfg.checkpoint_steps())
    pending: list[torch.Tensor] = []  # losses not yet read back (reading every step would sync a GPU)
    since_checkpoint: list[float] = []
    first = smoothed = None
    bar = progress_bar(total=cfg.steps, desc=f"N={record.n_params:,}", disable=not progress)
    for step in range(1, cfg.steps + 1):
        x0, y = stream.next(cfg.batch_size)
        pending.append(train_step(model, opt, sched, x0, y, gen, abar, cfg))
        if ema:
            ema.update(model)
        bar.update(1)
        if step % 16 and step not in checkpoint_steps and step != cfg.steps:
            continue
        for value in torch.stack(pending).float().cpu().tolist():
            first = value if first is None else first
            smoothed = value if smoothed is None else 0.9 * smoothed + 0.1 * value
            since_checkpoint.append(value)
            if not math.isfinite(value) or smoothed > cfg.blowup * first:
                record.diverged = True
        pending.clear()
        bar.set_postfix(loss=f"{smoothed:.4f}")
        if not record.diverged and step in checkpoint_steps:
            val_loss, val_se = validation_loss(evaluated, val)
            record.diverged = not math.isfinite(val_loss)
            if not record.diverged:
                record.checkpoints.append(Checkpoint(step, step * cfg.tokens_per_step, val_loss, val_se,
                                                     sum(since_checkpoint) / len(since_checkpoint),
                                                     time.perf_counter() - start))
                since_checkpoint.clear()
                if on_checkpoint is not None:
                    on_checkpoint(record, evaluated)
        if record.diverged:
            record.diverged_at_tokens = step * cfg.tokens_per_step
            break
    bar.close()
    return record
