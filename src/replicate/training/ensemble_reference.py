"""Today's per-member optimiser, kept as the reference: the test oracle and the benchmark baseline of
replicate.training.ensemble.MemberAdamW (as replicate.kernels.reference is for the kernels).

EnsembleAdamW updates each member's slices of every parameter with one call of torch's fused AdamW kernel per
member, and clips each member's gradients from per-tensor norms: a Python loop over members and tensors that
made the optimiser a third of a small group's step on the CPU, and half of it at 64 members.
"""

from __future__ import annotations

import torch


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

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Each member's gradients clipped to `max_norm`; returns the norms (E,)."""
        params = [p for group in self.param_groups for p in group["params"]]
        return clip_grad_norm_per_member_(params, max_norm, len(self.lrs))

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
