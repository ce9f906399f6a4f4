"""Procedural video clips: textured sprites moving over drifting textured backgrounds.

Clip ``i`` of split ``s`` under seed ``k`` is a pure function of ``(k, s, i)``: every random parameter of a
clip is a counter-based hash of those three numbers, so the stream is unlimited, needs no storage, can be
generated in any order on any device, and train, validation and test clips never coincide. Rendering is
vectorised over the batch and runs on the training device.

Each clip shows a *main* sprite, whose (shape, motion) pair is the clip's class label, drawn over a
*distractor* sprite of random shape and motion. Values lie in [-1, 1]; layout (B, C, F, H, W).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from replicate.config import MOTIONS, SHAPES, ClipConfig
from replicate.errors import ConfigError

SPLITS = {"train": 0, "val": 1, "test": 2}

_M32 = 0xFFFFFFFF
_MULT = 0x45D9F3B  # < 2**31, so every product of a 32-bit value stays inside int64
_N_SPRITE_FIXED = 15  # per sprite: 8 motion, shape, motion class, radius, solid, 3 texture; then 2 colours
_N_BG_FIXED = 4  # drift, 3 wave; then 2 colours


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash (int64 tensors holding values in [0, 2**32))."""
    x = x ^ (x >> 16)
    x = (x * _MULT) & _M32
    x = x ^ (x >> 16)
    x = (x * _MULT) & _M32
    return x ^ (x >> 16)


def clip_uniforms(seed: int, split: str, index: torch.Tensor, n: int) -> torch.Tensor:
    """n uniforms in [0, 1) per clip: a pure function of (seed, split, index). index (B,) int64 -> (B, n)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    dev = index.device
    scalar = torch.tensor([seed & _M32, (seed >> 32) & _M32, SPLITS[split]], dtype=torch.int64, device=dev)
    base = _mix32(_mix32(_mix32(scalar[0]) ^ scalar[1]) ^ (scalar[2] + 0x9E3779B))
    lo, hi = index & _M32, (index >> 32) & _M32
    # Two independent 32-bit keys per clip: a 64-bit key, so clips of different splits never coincide.
    h1 = _mix32(_mix32(lo ^ base) ^ hi)
    h2 = _mix32(_mix32(h1 ^ 0x5BD1E995) ^ _mix32(base ^ 0x27D4EB2))
    k = _mix32(torch.arange(n, dtype=torch.int64, device=dev) + 0x165667B1)
    u = _mix32(_mix32(h1[:, None] ^ k[None, :]) ^ h2[:, None])
    return (u >> 8).to(torch.float32) * (1.0 / (1 << 24))


def _triangle_wave(p: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Reflect p into [lo, hi], as a ball bouncing between two walls."""
    span = (hi - lo).clamp_min(1e-3)
    q = torch.remainder(p - lo, 2 * span)
    return lo + span - (q - span).abs()


def _sprite_positions(u: torch.Tensor, motion: torch.Tensor, r: torch.Tensor, cfg: ClipConfig) -> torch.Tensor:
    """Sprite centres per frame in pixels, (B, F, 2) as (x, y). u (B, >= 8) uniforms."""
    t = torch.arange(cfg.frames, device=u.device, dtype=torch.float32)[None, :, None]  # (1, F, 1)
    size = torch.tensor([cfg.width, cfg.height], device=u.device, dtype=torch.float32)
    lo, hi = r[:, None, None], size - r[:, None, None]  # (B, 1, 1), (B, 1, 2)
    p0 = lo + (hi - lo) * u[:, None, 0:2]  # (B, 1, 2)
    # straight: a steady glide from p0 to another point inside the frame
    p1 = lo + (hi - lo) * u[:, None, 2:4]
    straight = p0 + (p1 - p0) * t / max(cfg.frames - 1, 1)
    # bounce: a fast ball reflecting off the frame's walls
    angle = 2 * math.pi * u[:, None, 4:5]
    speed = 0.08 * size.min() * (1 + 1.5 * u[:, None, 5:6])
    velocity = speed * torch.cat([torch.cos(angle), torch.sin(angle)], dim=-1)
    bounce = _triangle_wave(p0 + velocity * t, lo, hi)
    # orbit: a circle around p0, either direction
    radius = 0.12 * size.min() * (1 + 1.5 * u[:, None, 6:7])
    omega = (0.3 + 0.5 * u[:, None, 7:8]) * torch.where(u[:, None, 5:6] < 0.5, -1.0, 1.0)
    phase = angle + omega * t
    orbit = p0 + radius * torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)
    m = motion[:, None, None]
    return torch.where(m == 0, straight, torch.where(m == 1, bounce, orbit))


def _sprite_alpha(
    shape: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """Anti-aliased coverage in [0, 1] of each sprite, centred at the origin, written into `out`.
    shape, r (B, 1, 1, 1); dx (B, F, 1, W), dy (B, F, H, 1) pixel offsets; out (B, F, H, W).

    The signed distance is max(three half-planes a |dx| + b dy - c, | |(dx, dy)| - m1 | - m2): square and
    triangle (apex up; y grows downward) use the half-planes, disc and ring the round term, and the unused
    family is pushed to -1e4. Terms are built on the small separable tensors; the full grid is only touched
    in place.
    """
    off = 1e4
    tri, rnd, ring = shape == 2, (shape == 1) | (shape == 3), shape == 3
    c = torch.where(rnd, off, torch.where(tri, 0.55 * r, 0.85 * r))
    ax = dx.abs()
    # square: |dx|, dy, -dy <= 0.85 r; triangle: dy, 0.866 |dx| - 0.5 dy (twice) <= 0.55 r
    planes = [
        (torch.where(tri, 0.0, 1.0), torch.where(tri, 1.0, 0.0)),
        (torch.where(tri, 0.866, 0.0), torch.where(tri, -0.5, 1.0)),
        (torch.where(tri, 0.866, 0.0), torch.where(tri, -0.5, -1.0)),
    ]
    torch.add(planes[0][0] * ax - c, planes[0][1] * dy, out=out)
    tmp = torch.empty_like(out)
    for a, b in planes[1:]:
        torch.add(a * ax - c, b * dy, out=tmp)
        torch.maximum(out, tmp, out=out)
    m1 = torch.where(ring, 0.75 * r, 0.0)
    m2 = torch.where(rnd, torch.where(ring, 0.3 * r, r), off)
    torch.add(dx * dx, dy * dy, out=tmp).sqrt_().sub_(m1).abs_().sub_(m2)
    torch.maximum(out, tmp, out=out)
    return out.neg_().add_(0.5).clamp_(0, 1)


def _wave(
    u_freq, u_angle, u_phase, px: torch.Tensor, py: torch.Tensor, max_freq: float, out: torch.Tensor
) -> torch.Tensor:
    """sin(2 pi (f (px cos a + py sin a) + phase)) into `out`, with f = max_freq * u_freq, a = 2 pi u_angle.

    Separable: sin(X + Y) = sin X cos Y + cos X sin Y with X over px and Y over py, so the trigonometry runs
    on the small px and py tensors and only a multiply-add touches the full grid.
    """
    k = 2 * math.pi * max_freq * u_freq
    angle = 2 * math.pi * u_angle
    x_arg = k * torch.cos(angle) * px + 2 * math.pi * u_phase
    y_arg = k * torch.sin(angle) * py
    torch.mul(torch.sin(x_arg), torch.cos(y_arg), out=out)
    return out.addcmul_(torch.cos(x_arg), torch.sin(y_arg))


def make_clips(
    cfg: ClipConfig, seed: int, split: str, index: torch.Tensor, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render clips ``index`` of ``split`` under ``seed``.

    Returns videos (B, C, F, H, W) in [-1, 1] (float32) and labels (B,) in [0, NUM_CLASSES).
    """
    index = torch.as_tensor(index, dtype=torch.int64, device=device)
    if index.ndim != 1 or (index.numel() and int(index.min()) < 0):
        raise ConfigError("clip indices must be a 1-D tensor of non-negative integers")
    B, C, F = index.numel(), cfg.channels, cfg.frames
    n_bg, n_sprite = _N_BG_FIXED + 2 * C, _N_SPRITE_FIXED + 2 * C
    u = clip_uniforms(seed, split, index, n_bg + 2 * n_sprite)
    ub, us = u[:, :n_bg], u[:, n_bg:].reshape(B, 2, n_sprite)

    ys = torch.arange(cfg.height, device=device, dtype=torch.float32)[:, None] + 0.5  # (H, 1)
    xs = torch.arange(cfg.width, device=device, dtype=torch.float32)[None, :] + 0.5  # (1, W)
    t = torch.arange(F, device=device, dtype=torch.float32)

    # Three layers, each colour = mid + half * pattern: the background (two colours blended by a drifting
    # wave), the distractor sprite, then the main sprite (index 0, the label) on top. "Over" compositing is
    # linear in the colours, so video[b, c] = sum_k coef[b, c, k] * basis[b, k] over six single-channel
    # images: each layer's visibility (k < 3) and its visibility times its pattern (k >= 3). One bmm then
    # writes the clip; everything before it works in place on `basis`.
    basis = torch.empty(B, 6, F, cfg.height, cfg.width, device=device)
    coef = torch.empty(B, C, 6, device=device)
    drift = (ub[:, 0] - 0.5)[:, None] * 0.15 * t[None, :]  # (B, F) cycles
    _wave(
        ub[:, 1, None, None, None],
        ub[:, 2, None, None, None],
        (ub[:, 3, None] + drift)[:, :, None, None],
        xs,
        ys,
        max_freq=0.12,
        out=basis[:, 3],
    )
    col_a, col_b = ub[:, 4 : 4 + C], ub[:, 4 + C : 4 + 2 * C]
    coef[:, :, 0], coef[:, :, 3] = col_a + col_b, col_b - col_a  # 2 mid and 2 half: video spans [-1, 1]
    for k, s in enumerate((1, 0), start=1):
        p = us[:, s]
        shape = (p[:, 8] * len(SHAPES)).long().clamp_max(len(SHAPES) - 1)
        motion = (p[:, 9] * len(MOTIONS)).long().clamp_max(len(MOTIONS) - 1)
        r = min(cfg.height, cfg.width) * (0.12 + 0.13 * p[:, 10])  # (B,) pixels
        pos = _sprite_positions(p, motion, r, cfg)  # (B, F, 2)
        dx = xs[None, None] - pos[:, :, 0, None, None]  # (B, F, 1, W)
        dy = ys[None, None] - pos[:, :, 1, None, None]  # (B, F, H, 1)
        _sprite_alpha(shape[:, None, None, None], dx, dy, r[:, None, None, None], out=basis[:, k])
        _wave(
            p[:, 12, None, None, None],
            p[:, 13, None, None, None],
            p[:, 14, None, None, None],
            dx,
            dy,
            max_freq=0.45,
            out=basis[:, k + 3],
        )
        ca, cb = p[:, 15 : 15 + C], p[:, 15 + C : 15 + 2 * C]
        coef[:, :, k] = ca + cb
        coef[:, :, k + 3] = torch.where((p[:, 11] < 0.35)[:, None], 0.0, cb - ca)  # a third are solid
    torch.sub(1, basis[:, 2], out=basis[:, 0])  # not under the main sprite
    basis[:, 1].mul_(basis[:, 0])  # distractor visible
    basis[:, 0].sub_(basis[:, 1])  # background visible: (1 - alpha_d) (1 - alpha_m)
    basis[:, 3:].mul_(basis[:, :3])
    coef[:, :, :3] -= 1  # 2 mid - 1, as the visibilities sum to 1
    video = torch.bmm(coef, basis.view(B, 6, -1)).view(B, C, F, cfg.height, cfg.width)

    shape_main = (us[:, 0, 8] * len(SHAPES)).long().clamp_max(len(SHAPES) - 1)
    motion_main = (us[:, 0, 9] * len(MOTIONS)).long().clamp_max(len(MOTIONS) - 1)
    return video, shape_main * len(MOTIONS) + motion_main


class ClipStream:
    """Consecutive clips of one split: an unlimited, never-repeating, resumable stream.

    Renders ahead in blocks of at least `block` clips, since one render call costs a fixed ~250 small ops.
    """

    def __init__(
        self,
        cfg: ClipConfig,
        seed: int,
        split: str = "train",
        device: torch.device | str = "cpu",
        start: int = 0,
        block: int = 256,
    ) -> None:
        self.cfg, self.seed, self.split, self.device, self.block = cfg, seed, split, device, block
        self.position = start  # index of the next clip served
        self._buffer: tuple[torch.Tensor, torch.Tensor] | None = None
        self._buffer_start = start

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch_size clips: videos (B, C, F, H, W) and labels (B,)."""
        lo = self.position - self._buffer_start
        if self._buffer is None or lo + batch_size > len(self._buffer[1]):
            n = max(batch_size, self.block)
            index = torch.arange(self.position, self.position + n, dtype=torch.int64, device=self.device)
            self._buffer, self._buffer_start, lo = (
                make_clips(self.cfg, self.seed, self.split, index, self.device),
                self.position,
                0,
            )
        self.position += batch_size
        videos, labels = self._buffer
        return videos[lo : lo + batch_size], labels[lo : lo + batch_size]


def frame_strip(video: torch.Tensor, gap: int = 1) -> np.ndarray:
    """One clip (C, F, H, W) in [-1, 1] as an RGB uint8 image (H, F * (W + gap) - gap, 3): frames side by side."""
    c, f, h, w = video.shape
    img = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    if c == 1:
        img = img.expand(3, f, h, w)
    elif c != 3:
        img = img[:3] if c > 3 else torch.cat([img, img[-1:].expand(3 - c, f, h, w)])
    out = torch.full((h, f * (w + gap) - gap, 3), 255, dtype=torch.uint8)
    for i in range(f):
        out[:, i * (w + gap) : i * (w + gap) + w] = img[:, i].permute(1, 2, 0)
    return out.numpy()


def save_gif(video: torch.Tensor, path: str | Path, scale: int = 8, ms_per_frame: int = 120) -> Path:
    """Write one clip (C, F, H, W) as a looping GIF, each pixel scaled up `scale` times. Needs Pillow."""
    from PIL import Image

    strip = frame_strip(video, gap=0)
    h, w = video.shape[-2:]
    frames = [
        Image.fromarray(strip[:, i * w : (i + 1) * w]).resize((w * scale, h * scale), Image.NEAREST)
        for i in range(video.shape[1])
    ]
    path = Path(path)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return path
