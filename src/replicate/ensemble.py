"""Ensembles of one model trained at E learning rates at once, as one stacked model.

The smallest models leave the hardware idle, so E runs that differ only in learning rate train together:
every ``nn.Linear`` and ``nn.Embedding`` gets an explicit leading member dimension (a batched matmul per
layer), and the batch of member e occupies rows [e B, (e + 1) B) of every activation, so the block's other
ops (LayerNorm-modulate, attention, GELU, with any backend) see an ordinary batch of E B samples. The members
share their initialisation, data, noise and timesteps, exactly as independent runs with the same seed would.
torch.func.vmap is not used: it falls back to a slow loop for SDPA on CPU and does not compose with custom
autograd kernels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """E independent linear layers applied to consecutive row blocks: (E B, *, in) -> (E B, *, out)."""

    def __init__(self, linear: nn.Linear, members: int) -> None:
        super().__init__()
        self.members = members
        self.weight = nn.Parameter(linear.weight.detach().repeat(members, 1, 1))  # (E, out, in)
        self.bias = nn.Parameter(linear.bias.detach().repeat(members, 1))  # (E, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(self.members, -1, x.shape[-1])  # (E, B * ..., in)
        out = torch.baddbmm(self.bias[:, None, :], x, self.weight.transpose(1, 2))
        return out.reshape(*lead, -1)


class EnsembleEmbedding(nn.Module):
    """E embedding tables; the indices of member e are rows [e B, (e + 1) B) of the input."""

    def __init__(self, embedding: nn.Embedding, members: int) -> None:
        super().__init__()
        self.members = members
        self.weight = nn.Parameter(embedding.weight.detach().repeat(members, 1, 1))  # (E, num, D)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        num = self.weight.shape[1]
        offset = torch.arange(self.members, device=idx.device).repeat_interleave(idx.numel() // self.members) * num
        return self.weight.reshape(-1, self.weight.shape[-1])[idx.reshape(-1) + offset].reshape(*idx.shape, -1)


def stack(model: nn.Module, members: int) -> nn.Module:
    """A copy of `model` with every Linear and Embedding stacked `members` times (identical initialisation)."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                setattr(module, name, EnsembleLinear(child, members))
            elif isinstance(child, nn.Embedding):
                setattr(module, name, EnsembleEmbedding(child, members))
    return model


def unstack(model: nn.Module, template: nn.Module, member: int) -> nn.Module:
    """Member `member` of a stacked model as a plain copy of `template` (the unstacked architecture)."""
    plain = copy.deepcopy(template)
    stacked = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in plain.named_parameters():
            p.copy_(stacked[name][member])
    return plain


def per_member_norms(params: list[torch.Tensor], members: int) -> torch.Tensor:
    """The L2 norm of each member's slice of the gradients, (E,)."""
    total = torch.zeros(members, dtype=torch.float32, device=params[0].device)
    for p in params:
        if p.grad is not None:
            total += p.grad.detach().reshape(members, -1).float().pow(2).sum(1)
    return total.sqrt()


def clip_grad_norm_per_member_(params: list[torch.Tensor], max_norm: float, members: int) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ applied to each member's slice separately; returns the norms (E,)."""
    norms = per_member_norms(params, members)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params:
        if p.grad is not None:
            p.grad.mul_(coef.view(-1, *([1] * (p.grad.dim() - 1))).to(p.grad.dtype))
    return norms


class EnsembleAdamW(torch.optim.Optimizer):
    """AdamW (torch's decoupled weight decay and bias correction) with one learning rate per member.

    Every parameter carries the member dimension first. `lrs` (E,) are the peak rates; `set_scale(f)`
    multiplies them all (the warm-up schedule); a member whose rate is set to 0 is frozen.
    """

    def __init__(self, params, lrs: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.lrs = lrs.detach().clone().float()
        self.scale = 1.0

    def set_scale(self, scale: float) -> None:
        self.scale = scale

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ARG002 (torch's signature)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                lr = (self.lrs.to(p.device) * self.scale).view(-1, *([1] * (p.dim() - 1))).to(p.dtype)
                if group["weight_decay"]:
                    p.mul_(1 - lr * group["weight_decay"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(group["eps"])
                p.sub_(m / denom * (lr / (1 - beta1**t)))
