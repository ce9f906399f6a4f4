"""A Video Diffusion Transformer in the style of facebookresearch/DiT ``models.py``.

3D patches (kernel = stride = (pt, ph, pw)), a fixed 3D sin-cos positional embedding, timestep and label
embedders, adaLN-Zero blocks with full 3D self-attention, a final adaLN layer and unpatchify. Every
modulation and the final linear start at zero, so the network outputs zeros at initialisation.

The block's hot ops (LayerNorm-modulate, attention, the MLP's first layer with its GELU) go through
:mod:`replicate.kernels`, whose ``backend`` switch picks the PyTorch reference or the Triton kernels; what they
fuse is the kernels' business.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from replicate import kernels
from replicate.config import ModelConfig


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
        out = kernels.attention(*qkv.unbind(0), backend=self.backend)  # (B, H, S, Dh)
        return self.proj(out.transpose(1, 2).reshape(B, S, D))


class Mlp(nn.Module):
    """Linear -> GELU (tanh) -> Linear."""

    def __init__(self, width: int, hidden: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(kernels.linear_gelu_layer(x, self.fc1, backend=self.backend))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, backend: str) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift: DiT's modulate(norm(x), shift, scale), one op of the kernels' switch."""
    return kernels.layernorm_modulate(x, shift, scale, backend=backend)


def gated(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x + gate * y, gate (B, D) broadcast over the tokens; addcmul rounds once per element (the numerics of the
    committed studies)."""
    return torch.addcmul(x, gate.unsqueeze(1), y)


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
        x = gated(x, gate_msa, self.attn(modulate(x, shift_msa, scale_msa, self.backend)))
        x = gated(x, gate_mlp, self.mlp(modulate(x, shift_mlp, scale_mlp, self.backend)))
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm, then a linear to patch values."""

    def __init__(self, width: int, patch_dim: int, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.linear = nn.Linear(width, patch_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(x, shift, scale, self.backend))  # (B, S, P)


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

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, drop_labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.x_embedder(self.patchify(x)) + self.pos_embed  # (B, S, D)
        c = self.t_embedder(t) + self.y_embedder(y, drop_labels)  # (B, D)
        for block in self.blocks:
            h = block(h, c)  # (B, S, D)
        return self.unpatchify(self.final_layer(h, c))
