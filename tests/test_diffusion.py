import pytest
import torch

from replicate.config import ClipConfig, ModelConfig
from replicate.training.diffusion import (
    TIMESTEPS,
    ValidationSet,
    alphas_cumprod,
    ddim_sample,
    q_sample,
    training_loss,
    validation_loss,
)
from replicate.training.model import VideoDiT

CLIP = ClipConfig(frames=4, height=8, width=8)
CFG = ModelConfig(width=32, depth=2, heads=2, clip=CLIP)


def test_schedule_and_forward_process():
    abar = alphas_cumprod()
    assert abar.shape == (TIMESTEPS,) and torch.all(abar[1:] < abar[:-1])
    assert abar[0] == pytest.approx(1 - 1e-4) and abar[-1] < 1e-4
    x0, noise = torch.zeros(1000, 1), torch.randn(1000, 1)
    t = torch.full((1000,), 999)
    assert torch.allclose(q_sample(x0, t, noise, abar), noise * (1 - abar[-1]).sqrt().float())


def test_validation_set_is_fixed_and_stratified():
    a, b = ValidationSet.build(CLIP, 64), ValidationSet.build(CLIP, 64)
    assert torch.equal(a.x_t, b.x_t) and torch.equal(a.noise, b.noise) and torch.equal(a.t, b.t)
    i = torch.arange(64)  # example i has t in stratum [i T / n, (i + 1) T / n)
    assert torch.all(a.t >= i * TIMESTEPS // 64) and torch.all(a.t < ((i + 1) * TIMESTEPS + 63) // 64)
    assert not torch.equal(ValidationSet.build(CLIP, 64, seed=1).x_t, a.x_t)


def test_validation_loss_of_the_zero_model_is_the_noise_power():
    val = ValidationSet.build(CLIP, 256)
    loss, se = validation_loss(VideoDiT(CFG), val, batch_size=100)
    assert loss == pytest.approx(float(val.noise.double().pow(2).mean()), rel=1e-6)
    assert 0 < se < 0.01


def test_training_loss_at_init_is_one():
    model = VideoDiT(CFG)
    x0 = torch.rand(64, *CLIP.shape) * 2 - 1
    loss = training_loss(
        model, [(x0, torch.zeros(64, dtype=torch.long))], [torch.Generator().manual_seed(0)], alphas_cumprod()
    )
    assert loss.item() == pytest.approx(1.0, abs=0.02)


def test_ddim_sampler_shapes_and_range():
    torch.manual_seed(0)
    model = VideoDiT(CFG)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    y = torch.tensor([0, 5])
    out = ddim_sample(model, y, CLIP.shape, steps=5, guidance=2.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, *CLIP.shape) and torch.isfinite(out).all()
    assert out.abs().max() <= 1 + 1e-5


def test_the_collapsed_strata_standard_error_matches_the_spread_over_independent_validation_sets():
    """The SE validation_loss reports is about the standard deviation of the loss over 60 independent validation
    sets (it errs high: a pair's variance counts the loss's drift with t), where the iid SE, blind to the strata,
    is several times it. A model whose loss depends strongly on t (it predicts x_t itself: right at t = 999,
    wrong at t = 0) is the case the strata are for."""
    import math
    import statistics

    from replicate.training.diffusion import example_losses

    class PredictsItsInput(torch.nn.Module):
        def forward(self, x, t, y, drop_labels=None):
            return x

    model = PredictsItsInput()
    sets = [ValidationSet.build(CLIP, 256, seed=seed) for seed in range(1000, 1060)]
    means, ses = zip(*(validation_loss(model, val) for val in sets), strict=True)
    spread = statistics.stdev(means)
    assert 0.9 < statistics.mean(ses) / spread < 1.5
    iid = statistics.mean(float(v.std()) / math.sqrt(len(v)) for v in (example_losses(model, s)[0] for s in sets))
    assert iid / spread > 3
