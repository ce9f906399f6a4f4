"""The SGD noise scale (McCandlish et al. 2018), measured: |G|^2, tr(Sigma), G^T H G, tr(H Sigma), B_noise, eta_max.

One SGD step of size eta on a minibatch gradient g with E[g] = G and Cov[g] = Sigma / B changes the loss, to
second order, by E[dL] = -eta |G|^2 + (eta^2 / 2) (G^T H G + tr(H Sigma) / B), which is least at
eta_opt(B) = eta_max / (1 + B_noise / B), eta_max = |G|^2 / G^T H G, B_noise = tr(H Sigma) / G^T H G.

Every quantity comes from the two-batch-size trick: E|g_B|^2 = |G|^2 + tr(Sigma) / B and
E[g_B^T H g_B] = G^T H G + tr(H Sigma) / B, each measured at a small and a big batch size and solved for the
two unknowns. H g is a Hessian-vector product on an independent batch (so E[g^T H_C g] = E[g^T H g]), by
double backward or, where an op has no double backward, by central differences of gradients. Standard errors
come from a bootstrap over the independent draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

LossFn = Callable[[list[torch.Tensor], object], torch.Tensor]


@dataclass(frozen=True)
class Estimate:
    value: float
    se: float

    def __format__(self, spec: str) -> str:
        return f"{format(self.value, spec)} +- {format(self.se, spec)}"


@dataclass(frozen=True)
class NoiseScale:
    """Every quantity of the SGD derivation, with standard errors. Units: those of the loss and parameters."""

    grad_norm2: Estimate  # |G|^2
    trace_sigma: Estimate  # tr(Sigma), Sigma the per-example gradient covariance
    gHg: Estimate  # G^T H G
    trace_h_sigma: Estimate  # tr(H Sigma)
    b_simple: Estimate  # tr(Sigma) / |G|^2 (the noise scale when H ~ I)
    b_noise: Estimate  # tr(H Sigma) / G^T H G
    eta_max: Estimate  # |G|^2 / G^T H G
    batch_sizes: tuple[int, int]
    n_draws: int


def _flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _grad(loss_fn: LossFn, params: list[torch.Tensor], batch, create_graph: bool = False) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss_fn(params, batch), params, create_graph=create_graph))


def hvp(
    loss_fn: LossFn,
    params: list[torch.Tensor],
    batch,
    vector: torch.Tensor,
    method: str = "double_backward",
    eps: float = 1e-3,
) -> torch.Tensor:
    """H v of the batch loss at params, flat. `double_backward` differentiates g . v (with SDPA's math kernel,
    the fused ones have no double backward); `finite_difference` is (g(p + e v) - g(p - e v)) / 2e with e
    scaled to the size of p and v."""
    if method == "double_backward":
        with sdpa_kernel(SDPBackend.MATH):
            grads = _grad(loss_fn, params, batch, create_graph=True)
            return _flat(torch.autograd.grad(_flat(grads) @ vector, params))
    if method == "finite_difference":
        step = eps * (_flat(params).norm() + 1e-12) / (vector.norm() + 1e-12)
        pieces = torch.split(vector, [p.numel() for p in params])
        out = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, v in zip(params, pieces, strict=True):
                    p.add_(v.view_as(p), alpha=sign * float(step))
            out.append(_flat(_grad(loss_fn, params, batch)))
            with torch.no_grad():
                for p, v in zip(params, pieces, strict=True):
                    p.sub_(v.view_as(p), alpha=sign * float(step))
        return (out[0] - out[1]) / (2 * step)
    raise ValueError(f"unknown HVP method {method!r}: double_backward or finite_difference")


def _estimates(n2: dict[int, np.ndarray], q: dict[int, np.ndarray], small: int, big: int) -> np.ndarray:
    """The seven quantities from per-draw |g_B|^2 and g_B^T H g_B (last axis: draws; leading axes: resamples)."""
    n_s, n_b, q_s, q_b = n2[small].mean(-1), n2[big].mean(-1), q[small].mean(-1), q[big].mean(-1)
    grad_norm2 = (big * n_b - small * n_s) / (big - small)
    trace_sigma = (n_s - n_b) / (1 / small - 1 / big)
    ghg = (big * q_b - small * q_s) / (big - small)
    trace_h_sigma = (q_s - q_b) / (1 / small - 1 / big)
    return np.stack(
        [grad_norm2, trace_sigma, ghg, trace_h_sigma, trace_sigma / grad_norm2, trace_h_sigma / ghg, grad_norm2 / ghg]
    )


def measure(
    loss_fn: LossFn,
    params: list[torch.Tensor],
    sample_batch: Callable[[int], object],
    *,
    batch_sizes: tuple[int, int] = (8, 64),
    n_draws: int = 32,
    seed: int = 0,
    hvp_method: str = "double_backward",
    hvp_batch_size: int | None = None,
    n_bootstrap: int = 2000,
) -> NoiseScale:
    """Measure the noise scale at `params` (tensors with requires_grad; left unchanged).

    `loss_fn(params, batch)` is the mean loss over a batch; `sample_batch(b)` returns a fresh batch of b
    examples. For each of the two batch sizes, `n_draws` independent batches give g_B, and an independent
    batch (of `hvp_batch_size`, default the big batch size) gives H_C g_B. Needs 3 n_draws gradient and
    2 n_draws HVP evaluations. `seed` seeds the bootstrap (the batches come from `sample_batch`).
    """
    small, big = batch_sizes
    if not 0 < small < big:
        raise ValueError(f"batch_sizes must be (small, big) with 0 < small < big, got {batch_sizes}")
    if n_draws < 2:
        raise ValueError(f"n_draws must be >= 2, got {n_draws}")
    n2: dict[int, np.ndarray] = {}
    q: dict[int, np.ndarray] = {}
    for b in batch_sizes:
        n2[b], q[b] = np.empty(n_draws), np.empty(n_draws)
        for d in range(n_draws):
            g = _flat(_grad(loss_fn, params, sample_batch(b))).detach()
            hg = hvp(loss_fn, params, sample_batch(hvp_batch_size or big), g, hvp_method).detach()
            n2[b][d], q[b][d] = float(g @ g), float(g @ hg)
    point = _estimates(n2, q, small, big)
    rng = np.random.default_rng(seed)
    idx = {b: rng.integers(0, n_draws, size=(n_bootstrap, n_draws)) for b in batch_sizes}
    boot = _estimates({b: n2[b][idx[b]] for b in batch_sizes}, {b: q[b][idx[b]] for b in batch_sizes}, small, big)
    se = boot.std(axis=1, ddof=1)
    return NoiseScale(
        *(Estimate(float(v), float(s)) for v, s in zip(point, se, strict=True)),
        batch_sizes=(small, big),
        n_draws=n_draws,
    )


class QuadraticProblem:
    """A random quadratic with every quantity in closed form.

    Per-example loss l_i(theta) = 1/2 (theta - theta*)^T H (theta - theta*) + xi_i^T (theta - theta*),
    xi_i ~ N(0, S): gradients H (theta - theta*) + xi_i, so G = H delta, Sigma = S and the Hessian is H.
    Spectra: eigenvalues of H and S spaced log-uniformly over `condition` (H) and `noise_condition` (S),
    with random eigenbases.
    """

    def __init__(
        self, dim: int, condition: float = 100.0, noise_condition: float = 10.0, noise: float = 1.0, seed: int = 0
    ) -> None:
        gen = torch.Generator().manual_seed(seed)

        def random_spd(cond: float, scale: float) -> torch.Tensor:
            q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
            eig = scale * torch.logspace(0, -math.log10(cond), dim, dtype=torch.float64)
            return q @ torch.diag(eig) @ q.T

        self.dim = dim
        self.h = random_spd(condition, 1.0)
        self.s = random_spd(noise_condition, noise)
        self.noise_chol = torch.linalg.cholesky(self.s)
        self.theta = torch.randn(dim, generator=gen, dtype=torch.float64).requires_grad_()  # theta* = 0
        self._gen = torch.Generator().manual_seed(seed + 1)

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.theta]

    def sample_batch(self, batch_size: int) -> torch.Tensor:
        """xi (batch_size, dim)."""
        z = torch.randn(batch_size, self.dim, generator=self._gen, dtype=torch.float64)
        return z @ self.noise_chol.T

    def loss_fn(self, params: list[torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        (theta,) = params
        return 0.5 * theta @ self.h @ theta + (xi @ theta).mean()

    def closed_form(self) -> dict[str, float]:
        """The true values of every NoiseScale field."""
        with torch.no_grad():
            g = self.h @ self.theta
            out = {
                "grad_norm2": float(g @ g),
                "trace_sigma": float(torch.trace(self.s)),
                "gHg": float(g @ self.h @ g),
                "trace_h_sigma": float(torch.trace(self.h @ self.s)),
            }
        out.update(
            b_simple=out["trace_sigma"] / out["grad_norm2"],
            b_noise=out["trace_h_sigma"] / out["gHg"],
            eta_max=out["grad_norm2"] / out["gHg"],
        )
        return out


def diffusion_objective(
    model: torch.nn.Module, seed: int = 0, label_dropout: float = 0.1
) -> tuple[LossFn, list[torch.Tensor], Callable[[int], tuple]]:
    """A Video DiT's DDPM training loss as (loss_fn, params, sample_batch) for measure().

    Batches are fresh training clips (a stream seeded apart from any training run's) with fresh noise,
    timesteps and dropped labels: the gradient noise of training itself. loss_fn evaluates `model`, whose
    parameters `params` are (measure() and hvp() perturb them in place and restore them).
    """
    from replicate.training.data import ClipStream
    from replicate.training.diffusion import alphas_cumprod, q_sample

    dev = next(model.parameters()).device
    stream = ClipStream(model.cfg.clip, seed=10**6 + seed, split="train", device=dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    abar = alphas_cumprod().to(dev)

    def sample_batch(batch_size: int) -> tuple:
        x0, y = stream.next(batch_size)
        t = torch.randint(0, len(abar), (batch_size,), device=dev, generator=gen)
        noise = torch.randn(x0.shape, device=dev, generator=gen)
        drop = torch.rand(batch_size, device=dev, generator=gen) < label_dropout
        return q_sample(x0, t, noise, abar), t, y, drop, noise

    def loss_fn(params: list[torch.Tensor], batch: tuple) -> torch.Tensor:
        x_t, t, y, drop, noise = batch
        return ((model(x_t, t, y, drop_labels=drop) - noise) ** 2).mean()

    return loss_fn, [p for p in model.parameters() if p.requires_grad], sample_batch


def sgd_step_gain(
    loss_fn: LossFn,
    params: list[torch.Tensor],
    sample_batch: Callable[[int], object],
    heldout: object,
    batch_size: int,
    etas: Sequence[float],
    n_draws: int = 16,
) -> np.ndarray:
    """Mean change of the held-out loss after one plain SGD step theta - eta g_B, per eta (n_etas,).

    Every eta sees the same n_draws minibatch gradients, so the curve's shape carries little noise; its
    minimum is the step size that the second-order theory predicts as eta_opt(batch_size).
    """
    with torch.no_grad():
        base = float(loss_fn(params, heldout))
    change = np.zeros(len(etas))
    for _ in range(n_draws):
        grads = [g.detach() for g in _grad(loss_fn, params, sample_batch(batch_size))]
        for i, eta in enumerate(etas):
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.sub_(g, alpha=eta)
                change[i] += float(loss_fn(params, heldout)) - base
                for p, g in zip(params, grads, strict=True):
                    p.add_(g, alpha=eta)
    return change / n_draws


def best_step(etas: Sequence[float], change: np.ndarray) -> float:
    """The minimiser of a measured loss-change curve: the vertex of the parabola in eta through the grid's
    minimum and its neighbours (the theory's curve is a parabola in eta); the grid minimum at an edge."""
    etas = np.asarray(etas, dtype=float)
    i = int(np.argmin(change))
    if i in (0, len(etas) - 1):
        return float(etas[i])
    a, b, _ = np.polyfit(etas[i - 1 : i + 2], change[i - 1 : i + 2], 2)
    return float(-b / (2 * a)) if a > 0 else float(etas[i])
