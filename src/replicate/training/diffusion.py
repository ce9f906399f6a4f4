"""DDPM with epsilon prediction: the training loss, a low-noise validation loss, and a DDIM sampler.

Noise schedule: Ho et al. (2020) and DiT's linear betas, beta_t from 1e-4 to 0.02 over 1000 steps;
x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with abar_t = prod_{s <= t} (1 - beta_s), t in {0, ..., 999}.
Training loss: mean squared error between eps and the model's prediction, t uniform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from replicate.config import VAL_SEED, ClipConfig
from replicate.training.data import make_clips

TIMESTEPS = 1000


def alphas_cumprod(steps: int = TIMESTEPS, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """abar_t of the linear beta schedule, float64, shape (steps,)."""
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, per sample t (B,)."""
    a = abar.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def _repeat(x: torch.Tensor, members: int) -> torch.Tensor:
    """Rows repeated for each member of an ensemble: (B, ...) -> (members B, ...)."""
    return x if members == 1 else x.repeat(members, *([1] * (x.dim() - 1)))


def training_loss(
    model: torch.nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    generators: list[torch.Generator],
    abar: torch.Tensor,
    label_dropout: float = 0.1,
    sources: list[int] | None = None,
) -> torch.Tensor:
    """The DDPM loss MSE(eps, model(x_t, t, y)) per ensemble member, (members,): t uniform, labels dropped to
    the null class w.p. label_dropout.

    batches[k] = (clips (B, C, F, H, W), labels (B,)) and generators[k] are one data seed's; member e trains on
    source sources[e] (default: one member on source 0). Each source draws its timesteps, noise and dropped
    labels from its own generator in the order a run of that seed alone would, so members of one source see
    the same examples (an ensemble over learning rates) and members of different sources are different runs
    (an ensemble over seeds).
    """
    sources = [0] if sources is None else sources
    drawn = []
    for (x0, y), generator in zip(batches, generators, strict=True):
        B, dev = x0.shape[0], x0.device
        t = torch.randint(0, len(abar), (B,), device=dev, generator=generator)
        noise = torch.randn(x0.shape, device=dev, generator=generator)
        drop = torch.rand(B, device=dev, generator=generator) < label_dropout
        drawn.append((q_sample(x0, t, noise, abar), t, y, drop, noise))
    x_t, t, y, drop, noise = (torch.cat([drawn[k][i] for k in sources]) for i in range(5))
    pred = model(x_t, t, y, drop_labels=drop)
    return ((pred.float() - noise) ** 2).reshape(len(sources), -1).mean(1)


@dataclass
class ValidationSet:
    """Held-out clips with fixed noise and fixed stratified timesteps: a pure function of (clip, n, seed).

    Example i has timestep t_i = floor((i + u_i) * T / n) with u_i uniform: one example per stratum of
    the uniform timestep distribution, so the estimator has the training objective's expectation but not
    its timestep noise. Every run sees exactly these inputs, so differences between runs carry no sampling
    noise of their own.
    """

    x_t: torch.Tensor  # (n, C, F, H, W) noised clips
    noise: torch.Tensor  # (n, C, F, H, W) the targets
    t: torch.Tensor  # (n,) timesteps, increasing
    y: torch.Tensor  # (n,) labels

    @classmethod
    def build(
        cls, clip: ClipConfig, n: int, seed: int = VAL_SEED, device: torch.device | str = "cpu", chunk: int = 1024
    ) -> ValidationSet:
        if n < 2:
            raise ValueError(f"the validation set needs >= 2 examples, got {n}")
        abar = alphas_cumprod()
        gen = torch.Generator().manual_seed(seed)
        u = torch.rand(n, generator=gen, dtype=torch.float64)
        t = ((torch.arange(n, dtype=torch.float64) + u) * len(abar) / n).long().clamp_max(len(abar) - 1)
        x_ts, noises, ys = [], [], []
        for start in range(0, n, chunk):
            idx = torch.arange(start, min(start + chunk, n))
            x0, y = make_clips(clip, seed, "val", idx)
            noise = torch.randn(x0.shape, generator=gen)
            x_ts.append(q_sample(x0, t[idx], noise, abar))
            noises.append(noise)
            ys.append(y)
        return cls(torch.cat(x_ts).to(device), torch.cat(noises).to(device), t.to(device), torch.cat(ys).to(device))

    def __len__(self) -> int:
        return len(self.t)

    def to(self, device: torch.device | str) -> ValidationSet:
        """The same examples on `device`."""
        return ValidationSet(*(v.to(device) for v in (self.x_t, self.noise, self.t, self.y)))

    def subset(self, index: torch.Tensor) -> ValidationSet:
        """The examples at `index` (e.g. an interleaved, still stratified, slice)."""
        index = index.to(self.t.device)
        return ValidationSet(self.x_t[index], self.noise[index], self.t[index], self.y[index])


@torch.no_grad()
def example_losses(model: torch.nn.Module, val: ValidationSet, batch_size: int = 512, members: int = 1) -> torch.Tensor:
    """The eps-MSE of every validation example in fp32, (members, n) float64, in stratum order.
    `members` > 1 scores each member of an ensemble (see replicate.training.ensemble); batch_size counts rows in all.
    """
    was_training = model.training
    model.eval()
    losses = torch.empty(members, len(val), dtype=torch.float64, device=val.t.device)
    chunk = max(1, batch_size // members)
    for s in range(0, len(val), chunk):
        e = min(s + chunk, len(val))
        pred = model(*(_repeat(z[s:e], members) for z in (val.x_t, val.t, val.y))).float()
        err = (pred - _repeat(val.noise[s:e], members)) ** 2
        losses[:, s:e] = err.reshape(members, e - s, -1).mean(2).double()
    model.train(was_training)
    return losses


def stratified_mean_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of per-example values with one example per stratum (in stratum order).

    The SE is the collapsed-strata estimate: adjacent strata are paired and each pair's variance taken as
    (v_a - v_b)^2, which also counts the drift of the loss with t inside a pair (so it errs high). Applied to
    the difference of two models' losses on the same examples it gives the paired SE of their gap.
    """
    n = len(values)
    pairs = values[: n - n % 2].view(-1, 2)
    return float(values.mean()), math.sqrt(float(((pairs[:, 0] - pairs[:, 1]) ** 2).sum())) / n


def validation_loss(model: torch.nn.Module, val: ValidationSet, batch_size: int = 512) -> tuple[float, float]:
    """Mean eps-MSE over the validation set in fp32, and its standard error (see stratified_mean_se)."""
    return stratified_mean_se(example_losses(model, val, batch_size)[0])


@torch.no_grad()
def ddim_sample(
    model: torch.nn.Module,
    y: torch.Tensor,
    shape: tuple[int, ...],
    steps: int = 50,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from pure noise to clips (B, *shape), with classifier-free guidance."""
    was_training = model.training
    model.eval()
    abar = alphas_cumprod()
    dev = y.device
    x = torch.randn((len(y), *shape), generator=generator, device=dev)
    ts = torch.linspace(len(abar) - 1, 0, steps).round().long()
    null = torch.ones_like(y, dtype=torch.bool)
    for i, t in enumerate(ts):
        tt = torch.full_like(y, int(t))
        eps = model(x, tt, y)
        if guidance != 1.0:
            eps_uncond = model(x, tt, y, drop_labels=null)
            eps = eps_uncond + guidance * (eps - eps_uncond)
        a = abar[t].item()
        a_prev = abar[ts[i + 1]].item() if i + 1 < len(ts) else 1.0
        x0 = ((x - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
        eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)  # consistent with the clamped x0
        x = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    model.train(was_training)
    return x
