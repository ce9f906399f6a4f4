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
from collections.abc import Iterable

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


class MemberBuffers:
    """The parameters of a stacked model as (E, ...) views of one contiguous (E, P) tensor `data`, and a second,
    `grad`, that gathers their gradients in the same layout: row e of each is member e, whatever the tensor.

    What is per member (gradient norms, the optimiser's moments and rates, the EMA) is then one op over a
    buffer, or one call per member over its contiguous row, instead of one per member and tensor. Autograd
    leaves each parameter's gradient where its backward put it (no buffer to zero, nothing accumulated in place:
    on the CPU a step is bound by passes over parameter-sized memory, and those cost two passes more than
    `gather_grads`' one copy). Every parameter must carry the member dimension first, as replicate.training.ensemble's
    stacked layers do; a plain model is E = its first dimension, which is all the EMA needs.
    """

    def __init__(self, params: Iterable[nn.Parameter], grads: bool = True) -> None:
        self.params = list(params)
        members = self.params[0].shape[0]
        if any(p.shape[0] != members for p in self.params):
            raise ValueError("every parameter of a stacked model carries the member dimension first")
        sizes = [p[0].numel() for p in self.params]
        with torch.no_grad():
            self.data = torch.cat([p.detach().reshape(members, -1) for p in self.params], dim=1)  # (E, P)
        for p, view in zip(self.params, self.data.split(sizes, dim=1), strict=True):
            p.data = view.view(p.shape)
        self.grad = torch.zeros_like(self.data) if grads else None
        # the parameters' gradients' places in `grad`, as (E, ...) views made once
        places = self.grad.split(sizes, dim=1) if grads else []
        self._grad_views = [g.view(p.shape) for p, g in zip(self.params, places, strict=False)]

    @property
    def members(self) -> int:
        return self.data.shape[0]

    def zero_grad(self) -> None:
        """Forget the parameters' gradients (as torch's zero_grad(set_to_none=True): the next backward writes
        fresh ones instead of adding into old)."""
        for p in self.params:
            p.grad = None

    def gather_grads(self) -> torch.Tensor:
        """The parameters' gradients copied into `grad` (one pass; a parameter without one counts zero)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        torch._foreach_copy_(self._grad_views, grads)
        return self.grad


class MemberAdamW:
    """AdamW (torch's decoupled weight decay and bias correction) with one learning rate per member, over
    MemberBuffers, with per-member gradient clipping.

    `clip_grad_norm_` gathers the gradients into the (E, P) buffer and takes every member's norm in one
    reduction; `step` then runs torch's fused AdamW kernel once per member over that member's contiguous row,
    with the member's rate and its clipping factor (the kernel's gradient scale) read from device tensors. That
    is the fewest passes over parameter-sized memory a step can make (the update reads the gradient and the
    moments and writes the moments and the weights once), which is what bounds it on the CPU; a vectorised
    update with the rates as an (E, 1) broadcast needs three passes more (measured slower than the reference at
    Stage L's held-out shape, benchmarks/step.py). The loop is E calls of one kernel, not one per member and
    tensor, and it has no host sync: on a GPU a captured step holds E update kernels.
    `lrs` (E,) are the peak rates; `set_scale(f)` multiplies them all (the warm-up schedule); a member whose rate
    is set to 0 is frozen. Rates and scale are read when the update runs, so a captured step follows the schedule
    and the freezes without being captured again (float64 on the CPU, as the reference; float32 on a GPU, which
    the CUDA kernel reads). The reference, one fused call per member over every tensor's slices, is
    replicate.training.ensemble_reference.EnsembleAdamW; the two agree to float32 rounding (tests/test_ensemble.py).
    """

    def __init__(
        self,
        buffers: MemberBuffers,
        lrs: torch.Tensor,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if buffers.grad is None:
            raise ValueError("MemberAdamW needs MemberBuffers with gradients")
        self.buffers = buffers
        data = buffers.data
        device = data.device
        self.lrs = lrs.detach().float().to(device)  # (E,), float32 as the rates were always held
        self.scale = torch.ones((), dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
        self.rates = torch.empty(len(self.lrs), dtype=self.scale.dtype, device=device)  # lrs x scale, per step
        self.unscale = torch.ones(len(self.lrs), device=device)  # 1 / each member's clipping factor
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(data), torch.zeros_like(data)
        self.step_count = torch.zeros((), device=device)
        # each member's row of every buffer, and its rate and gradient scale: views made once
        self._rows = [
            ([data[e]], [buffers.grad[e]], [self.exp_avg[e]], [self.exp_avg_sq[e]], self.rates[e], self.unscale[e])
            for e in range(buffers.members)
        ]

    def set_scale(self, scale: float) -> None:
        self.scale.fill_(scale)

    def zero_grad(self) -> None:
        self.buffers.zero_grad()

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """torch.nn.utils.clip_grad_norm_ for each member's gradients separately, applied by the next `step`
        (the gathered gradients are divided there, in the pass that reads them); returns the norms (E,)."""
        norms = torch.linalg.vector_norm(self.buffers.gather_grads(), dim=1, dtype=torch.float32)
        torch.clamp((norms + 1e-6) / max_norm, min=1.0, out=self.unscale)
        return norms

    @torch.no_grad()
    def step(self) -> None:
        torch.mul(self.lrs.to(self.scale.dtype), self.scale, out=self.rates)
        self.step_count += 1
        for param, grad, exp_avg, exp_avg_sq, rate, unscale in self._rows:
            torch._fused_adamw_(
                param,
                grad,
                exp_avg,
                exp_avg_sq,
                [],
                [self.step_count],
                lr=rate,
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=self.weight_decay,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
                grad_scale=unscale,
            )

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"step": self.step_count, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.step_count.copy_(state["step"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
