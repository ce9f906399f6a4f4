"""Configurations (clip, model, training run) and the parameter and FLOP accounting of the Video DiT, without
torch.

Kept apart from the model so that anything that only counts (the fitting library, which must import on a
machine with only numpy, scipy and pandas; profiles; the book) needs no deep-learning framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from replicate.errors import ConfigError

BACKENDS = ("auto", "torch", "triton")  # the model's ops: replicate.kernels picks for "auto"

# Procedural clips: the main sprite's (shape, motion) is the class label (see replicate.training.data).
SHAPES = ("square", "disc", "triangle", "ring")
MOTIONS = ("straight", "bounce", "orbit")
NUM_CLASSES = len(SHAPES) * len(MOTIONS)

FLOP_KINDS = ("6n", "paper", "exact")
VAL_SEED = 0  # the data seed of the validation clips: the same for every run
CHECKPOINT_RATIO = math.sqrt(2)


def label_name(label: int) -> str:
    """A class label in words: its sprite's shape and motion."""
    return f"{shape_name(label)}, {MOTIONS[label % len(MOTIONS)]}"


def shape_name(label: int) -> str:
    """A class label's shape alone: what one frame (an image) shows of it."""
    return SHAPES[label // len(MOTIONS)]


def _check_positive(config: object, names: tuple[str, ...], what: str) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(f"{what}{name} must be >= 1, got {getattr(config, name)}")


@dataclass(frozen=True)
class ClipConfig:
    """Clip geometry. The default clip patchifies to 8 x 4 x 4 = 128 tokens of 16 values with patch (1, 4, 4)."""

    frames: int = 8
    height: int = 16
    width: int = 16
    channels: int = 1

    def __post_init__(self) -> None:
        _check_positive(self, ("frames", "height", "width", "channels"), "clip ")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(C, F, H, W) of one clip."""
        return (self.channels, self.frames, self.height, self.width)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a Video DiT. Sizes in elements; `patch` is (pt, ph, pw)."""

    width: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    patch: tuple[int, int, int] = (1, 4, 4)
    clip: ClipConfig = field(default_factory=ClipConfig)
    num_classes: int = NUM_CLASSES
    freq_dim: int = 256  # sinusoidal timestep features fed to the timestep MLP

    def __post_init__(self) -> None:
        _check_positive(self, ("width", "depth", "heads", "mlp_ratio", "num_classes", "freq_dim"), "")
        if self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.width % 2:
            raise ConfigError(f"width must be even (sin-cos embeddings), got {self.width}")
        dims = (self.clip.frames, self.clip.height, self.clip.width)
        if len(self.patch) != 3 or any(p < 1 or d % p for d, p in zip(dims, self.patch, strict=True)):
            raise ConfigError(f"patch {self.patch} must divide the clip's (frames, height, width) = {dims}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Tokens along (time, height, width)."""
        return (self.clip.frames // self.patch[0], self.clip.height // self.patch[1], self.clip.width // self.patch[2])

    @property
    def n_ctx(self) -> int:
        """Tokens per sample."""
        return math.prod(self.grid)

    @property
    def patch_dim(self) -> int:
        """Values per patch: pt * ph * pw * channels."""
        return math.prod(self.patch) * self.clip.channels

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


# Sizes spanning ~1000x in N (count_params). Head dim 16 for the small models, 32-64 for the large ones.
MODEL_SIZES: dict[str, tuple[int, int, int]] = {  # name: (width, depth, heads)
    "nano": (32, 2, 2),
    "micro": (48, 3, 3),
    "tiny": (64, 4, 4),
    "mini": (96, 5, 6),
    "small": (128, 6, 8),
    "base": (192, 8, 6),
    "medium": (256, 12, 8),
    "large": (384, 16, 6),
}


def model_config(size: str, **overrides) -> ModelConfig:
    """The ModelConfig of a named size (see MODEL_SIZES), with any field overridden."""
    if size not in MODEL_SIZES:
        raise ConfigError(f"unknown model size {size!r}: choose one of {', '.join(MODEL_SIZES)}")
    width, depth, heads = MODEL_SIZES[size]
    return ModelConfig(**{"width": width, "depth": depth, "heads": heads, **overrides})


def count_params(cfg: ModelConfig) -> int:
    """N, the non-embedding parameter count used by every scaling law here.

    Counts the weights and biases of each block's per-token matmuls: attention QKV and output projection,
    and the two MLP linears, L * (4 d^2 + 4 d + 2 d h + h + d) with h = mlp_ratio * d (12 d^2 + 9 d per block
    at ratio 4). Excludes the patch embedding, the (fixed) positional embedding, the timestep and label
    embedders, the final layer and the adaLN modulation linears: those act once per sample or once per
    patch, not once per token per layer, so like an LLM's embeddings they do not scale compute with N.
    """
    d, h = cfg.width, cfg.mlp_ratio * cfg.width
    return cfg.depth * (4 * d * d + 4 * d + 2 * d * h + h + d)


def flops_per_token(cfg: ModelConfig, kind: str = "exact") -> float:
    """Training FLOPs per token.

    - "6n": 6 N, the usual LLM rule.
    - "paper": the video paper's C_token = (3/4) N (7 + n_ctx / d), exact for its cross-attention DiT with
      16 d^2 parameters per layer, applied here to our N.
    - "exact": every matmul FLOP of a forward pass (patch embedding, QKV/out projections, attention scores
      q k^T and weights @ v, MLP, adaLN and timestep MLPs once per sample, final layer), times 3 for training.
    """
    n = count_params(cfg)
    d, h, s, L = cfg.width, cfg.mlp_ratio * cfg.width, cfg.n_ctx, cfg.depth
    if kind == "6n":
        return 6.0 * n
    if kind == "paper":
        return 0.75 * n * (7 + s / d)
    if kind == "exact":
        per_token = 2 * cfg.patch_dim * d  # patch embedding
        per_token += L * (2 * (4 * d * d + 2 * d * h) + 4 * s * d)  # projections, MLP, scores and weights @ v
        per_token += 2 * d * cfg.patch_dim  # final linear
        per_sample = L * 2 * d * 6 * d + 2 * d * 2 * d + 2 * (cfg.freq_dim * d + d * d)  # adaLN, final, t-MLP
        return 3.0 * (per_token + per_sample / s)
    raise ConfigError(f"unknown FLOP kind {kind!r}: choose one of {', '.join(FLOP_KINDS)}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. batch_clips: clips per step (tokens per step = batch_clips * model.n_ctx); tokens in
    tokens. (runs.csv's `batch_size` is tokens per step, the fit's unit; run ids hash this field as batch_size.)"""

    model: ModelConfig
    batch_clips: int
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
    bf16: bool = False  # bf16 autocast for training on CUDA (fp32 otherwise): only where a device run measured
    # that it moves the loss by less than a fifth of the seed noise (device.checks: the precision check)

    def __post_init__(self) -> None:
        if self.batch_clips < 1:
            raise ConfigError(f"batch size must be >= 1 clip, got {self.batch_clips}")
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
        return self.batch_clips * self.model.n_ctx

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
