"""Ensembles of one model trained at E learning rates at once, as one stacked model.

The smallest models leave the hardware idle, so E runs that differ only in learning rate and seed train
together: every ``nn.Linear`` and ``nn.Embedding`` gets an explicit leading member dimension (a batched matmul
per layer), and the batch of member e occupies rows [e B, (e + 1) B) of every activation, so the block's other
ops (LayerNorm-modulate, attention, GELU, with any backend) see an ordinary batch of E B samples. Each member
is initialised from its own plain model and trains on its seed's data, noise and timesteps
(diffusion.training_loss), exactly as an independent run of that seed would.
torch.func.vmap is not used: it falls back to a slow loop for SDPA on CPU and does not compose with custom
autograd kernels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """E independent linear layers applied to consecutive row blocks: (E B, *, in) -> (E B, *, out)."""

    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        self.members = len(linears)
        # (E, in, out), as the batched matmul reads it: stored as nn.Linear's (out, in), the weight's gradient
        # arrives transposed and is copied into place (the cpu study's groups ran 28% faster without the copy)
        self.weight = nn.Parameter(torch.stack([m.weight.detach().t() for m in linears]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears]))  # (E, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(self.members, -1, x.shape[-1])  # (E, B * ..., in)
        return torch.baddbmm(self.bias[:, None, :], x, self.weight).reshape(*lead, -1)

    def unstack_into(self, linear: nn.Linear, member: int) -> None:
        linear.weight.copy_(self.weight[member].t())
        linear.bias.copy_(self.bias[member])


class EnsembleEmbedding(nn.Module):
    """E embedding tables; the indices of member e are rows [e B, (e + 1) B) of the input."""

    def __init__(self, embeddings: list[nn.Embedding]) -> None:
        super().__init__()
        self.members = len(embeddings)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in embeddings]))  # (E, num, D)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        num = self.weight.shape[1]
        offset = torch.arange(self.members, device=idx.device).repeat_interleave(idx.numel() // self.members) * num
        return self.weight.reshape(-1, self.weight.shape[-1])[idx.reshape(-1) + offset].reshape(*idx.shape, -1)

    def unstack_into(self, embedding: nn.Embedding, member: int) -> None:
        embedding.weight.copy_(self.weight[member])


def stack(models: list[nn.Module]) -> nn.Module:
    """One model holding every model of `models` (the same architecture) as a member, in order: a copy of the
    first with every Linear and Embedding stacked. stack([plain] * E) is E identical members."""
    stacked = copy.deepcopy(models[0])
    others = [dict(m.named_modules()) for m in models]
    for prefix, module in list(stacked.named_modules()):
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.Linear):
                setattr(module, name, EnsembleLinear([m[path] for m in others]))
            elif isinstance(child, nn.Embedding):
                setattr(module, name, EnsembleEmbedding([m[path] for m in others]))
    return stacked


def unstack(model: nn.Module, template: nn.Module, member: int) -> nn.Module:
    """Member `member` of a stacked model as a plain copy of `template` (the unstacked architecture)."""
    plain = copy.deepcopy(template)
    stacked = dict(model.named_modules())
    with torch.no_grad():
        for name, module in plain.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                stacked[name].unstack_into(module, member)
    return plain


def _member_views(values: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """values (E,) as a broadcastable (E, 1, ...) view for each tensor (in its dtype)."""
    return [values.to(t.dtype).view(-1, *([1] * (t.dim() - 1))) for t in tensors]


def per_member_norms(params: list[torch.Tensor], members: int) -> torch.Tensor:
    """The L2 norm of each member's slice of the gradients, (E,)."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(members, -1), dim=1, dtype=torch.float32) for g in grads])
    return torch.linalg.vector_norm(norms, dim=0)


def clip_grad_norm_per_member_(params: list[torch.Tensor], max_norm: float, members: int) -> torch.Tensor:
    """torch.nn.utils.clip_grad_norm_ applied to each member's slice separately; returns the norms (E,)."""
    norms = per_member_norms(params, members)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    grads = [p.grad for p in params if p.grad is not None]
    torch._foreach_mul_(grads, _member_views(coef, grads))
    return norms


class EnsembleAdamW(torch.optim.Optimizer):
    """AdamW (torch's decoupled weight decay and bias correction) with one learning rate per member.

    Every parameter carries the member dimension first. `lrs` (E,) are the peak rates; `set_scale(f)`
    multiplies them all (the warm-up schedule); a member whose rate is set to 0 is frozen. Each member's
    slices are updated by torch's fused AdamW kernel, one call per member: one pass over the weights instead
    of the nine of a foreach update, which made the optimiser a third of a small model's step on the CPU.
    The rates and the scale live in tensors on the parameters' device, read by the kernel when it runs, so a
    step captured in a CUDA graph (replicate.capture) follows the schedule and the freezes without being
    captured again (float64 on the CPU, as the Python floats of earlier versions; float32 on a GPU, which the
    CUDA kernel reads). The step count is per-parameter state, as in torch.optim.AdamW, so state_dict() holds
    all of it.
    """

    def __init__(
        self,
        params,
        lrs: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"betas": betas, "eps": eps, "weight_decay": weight_decay})
        device = self.param_groups[0]["params"][0].device
        self.lrs = lrs.detach().float().to(device)  # float32, as the rates were always held
        self.scale = torch.ones((), dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)

    def set_scale(self, scale: float) -> None:
        self.scale.fill_(scale)

    @torch.no_grad()
    def step(self, closure=None) -> None:  # noqa: ARG002 (torch's signature)
        lrs = self.lrs.to(self.scale.dtype) * self.scale  # (E,): no host sync, no Python float to bake in
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p] = {
                        "step": torch.zeros((), device=p.device),
                        "exp_avg": torch.zeros_like(p),
                        "exp_avg_sq": torch.zeros_like(p),
                    }
            states = [self.state[p] for p in params]
            steps = [s["step"] for s in states]
            torch._foreach_add_(steps, 1)
            # the CPU kernel reads every tensor as contiguous whatever its strides (torch 2.13)
            grads = [p.grad.contiguous() for p in params]
            # every tensor's member slices from one unbind, not one index per member and tensor (a sixth of
            # the update's 1.4 ms for the smallest cpu-profile model, 6 members)
            slices = [
                [t.unbind(0) for t in tensors]
                for tensors in (params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states])
            ]
            for e in range(len(lrs)):  # frozen members too (rate 0): a captured graph has no branches
                torch._fused_adamw_(
                    *([t[e] for t in kind] for kind in slices),
                    [],
                    steps,
                    lr=lrs[e],
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    amsgrad=False,
                    maximize=False,
                )
