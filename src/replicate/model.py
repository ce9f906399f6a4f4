"""A Video Diffusion Transformer in the style of facebookresearch/DiT ``models.py``.

3D patches (kernel = stride = (pt, ph, pw)), a fixed 3D sin-cos positional embedding, timestep and label
embedders, adaLN-Zero blocks with full 3D self-attention, a final adaLN layer and unpatchify. Every
modulation and the final linear start at zero, so the network outputs zeros at initialisation.

The block's hot ops (LayerNorm-modulate, gated residual, attention, GELU) go through
:mod:`replicate.kernels`, whose ``backend`` switch picks the PyTorch reference or the Triton kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from replicate import kernels
from replicate.data import NUM_CLASSES, ClipConfig
from replicate.errors import ConfigError

FLOP_KINDS = ("6n", "paper", "exact")


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
        for name in ("width", "depth", "heads", "mlp_ratio", "num_classes", "freq_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
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
        return (self.clip.frames // self.patch[0], self.clip.height // self.patch[1],
                self.clip.width // self.patch[2])

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


def sincos_pos_embed_3d(width: int, grid: tuple[int, int, int]) -> np.ndarray:
    """Fixed 3D sin-cos positional embedding, (T*H*W, width): time, height and width each get an even share."""
    share = 2 * (width // 6)  # height and width axes; time takes the rest
    dims = (width - 2 * share, share, share)
    coords = np.meshgrid(*(np.arange(g, dtype=np.float64) for g in grid), indexing="ij")
    parts = [_sincos_1d(dim, c.reshape(-1)) for dim, c in zip(dims, coords, strict=True)]
    return np.concatenate(parts, axis=1).astype(np.float32)


def _sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
    """(len(pos), dim) sin-cos features, as DiT's get_1d_sincos_pos_embed_from_grid."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / max(dim / 2.0, 1.0))
    out = np.outer(pos, omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


class TimestepEmbedder(nn.Module):
    """Scalar timesteps -> vectors: sinusoidal features, then a 2-layer MLP."""

    def __init__(self, width: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """(B,) timesteps -> (B, dim) sinusoidal features (dim even)."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.timestep_embedding(t, self.freq_dim))  # (B, D)


class LabelEmbedder(nn.Module):
    """Class labels -> vectors. Index num_classes is the null class (dropped labels, for guidance)."""

    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, width)

    def forward(self, y: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        if drop is not None:
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return self.embedding_table(y)  # (B, D)


class Attention(nn.Module):
    """Full (non-causal) multi-head self-attention over all tokens of the clip."""

    def __init__(self, width: int, heads: int, backend: str) -> None:
        super().__init__()
        self.heads, self.backend = heads, backend
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, D = x.shape
        qkv = self.qkv(x).reshape(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, H, S, Dh)
        out = kernels.attention(qkv[0], qkv[1], qkv[2], backend=self.backend)  # (B, H, S, Dh)
        return self.proj(out.transpose(1, 2).reshape(B, S, D))


class Mlp(nn.Module):
    """Linear -> GELU (tanh) -> Linear."""

    def __init__(self, width: int, hidden: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(kernels.gelu_tanh(self.fc1(x), backend=self.backend))


class DiTBlock(nn.Module):
    """A transformer block with adaLN-Zero conditioning."""

    def __init__(self, width: int, heads: int, mlp_ratio: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.attn = Attention(width, heads, backend)
        self.mlp = Mlp(width, mlp_ratio * width, backend)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, S, D) tokens, c (B, D) conditioning."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        be = self.backend
        h = self.attn(kernels.layernorm_modulate(x, shift_msa, scale_msa, backend=be))
        x = kernels.gated_residual(x, gate_msa, h, backend=be)
        h = self.mlp(kernels.layernorm_modulate(x, shift_mlp, scale_mlp, backend=be))
        return kernels.gated_residual(x, gate_mlp, h, backend=be)


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm, then a linear to patch values."""

    def __init__(self, width: int, patch_dim: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.linear = nn.Linear(width, patch_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(kernels.layernorm_modulate(x, shift, scale, backend=self.backend))  # (B, S, P)


class VideoDiT(nn.Module):
    """Predicts the noise in a noised clip: (x_t (B, C, F, H, W), t (B,), y (B,)) -> eps (B, C, F, H, W)."""

    def __init__(self, cfg: ModelConfig, backend: str = "auto") -> None:
        super().__init__()
        kernels.check_backend(backend)
        self.cfg = cfg
        d = cfg.width
        # kernel = stride = patch: a Conv3d over non-overlapping patches is exactly a linear on flattened patches
        self.x_embedder = nn.Linear(cfg.patch_dim, d)
        self.t_embedder = TimestepEmbedder(d, cfg.freq_dim)
        self.y_embedder = LabelEmbedder(cfg.num_classes, d)
        self.register_buffer("pos_embed", torch.from_numpy(sincos_pos_embed_3d(d, cfg.grid))[None], persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.heads, cfg.mlp_ratio, backend) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(d, cfg.patch_dim, backend)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier linears, N(0, 0.02) embedders, zeros for adaLN and the output."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, F, H, W) -> (B, S, pt*ph*pw*C), tokens in (time, height, width) order."""
        B, C = x.shape[:2]
        (gt, gh, gw), (pt, ph, pw) = self.cfg.grid, self.cfg.patch
        x = x.reshape(B, C, gt, pt, gh, ph, gw, pw).permute(0, 2, 4, 6, 3, 5, 7, 1)
        return x.reshape(B, gt * gh * gw, pt * ph * pw * C)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, pt*ph*pw*C) -> (B, C, F, H, W), the inverse of patchify."""
        B, C = x.shape[0], self.cfg.clip.channels
        (gt, gh, gw), (pt, ph, pw) = self.cfg.grid, self.cfg.patch
        x = x.reshape(B, gt, gh, gw, pt, ph, pw, C).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(B, C, gt * pt, gh * ph, gw * pw)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                drop_labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.x_embedder(self.patchify(x)) + self.pos_embed  # (B, S, D)
        c = self.t_embedder(t) + self.y_embedder(y, drop_labels)  # (B, D)
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final_layer(h, c))
