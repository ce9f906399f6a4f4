import dataclasses
import math

import pytest

from replicate.config import ClipConfig, ModelConfig
from replicate.diffusion import ValidationSet
from replicate.train import TrainConfig, token_checkpoints, train

CLIP = ClipConfig(frames=4, height=8, width=8)
MODEL = ModelConfig(width=32, depth=2, heads=2, clip=CLIP)  # 4 x 2 x 2 = 16 tokens per sample


def _strip_wall(record) -> dict:
    d = record.to_dict()
    d.pop("wall_s")
    for c in d["checkpoints"]:
        c.pop("wall_s")
    return d


def test_checkpoint_grid():
    grid = token_checkpoints(1_600_000)
    assert grid[-1] == 1_600_000 and grid[0] == 100_000 and len(grid) == 9
    ratios = [b / a for a, b in zip(grid, grid[1:], strict=False)]
    assert all(abs(r - math.sqrt(2)) < 1e-3 for r in ratios)
    cfg = TrainConfig(MODEL, batch_size=4, lr=1e-3, tokens=1000, checkpoints=(100, 500, 1000))
    assert cfg.tokens_per_step == 64 and cfg.checkpoint_steps() == [2, 8, 16]


def test_training_is_bit_identical_for_a_seed_and_differs_across_seeds():
    val = ValidationSet.build(CLIP, 32)
    cfg = TrainConfig(MODEL, batch_size=8, lr=2e-3, tokens=2048, warmup_steps=5, checkpoints=(1024, 2048))
    a, b = train(cfg, val=val), train(cfg, val=val)
    assert _strip_wall(a) == _strip_wall(b)
    c = train(dataclasses.replace(cfg, seed=1), val=val)
    assert c.checkpoints[-1].val_loss != a.checkpoints[-1].val_loss


def test_validation_loss_falls_clearly():
    cfg = TrainConfig(MODEL, batch_size=16, lr=3e-3, tokens=40_000, warmup_steps=10, val_examples=256)
    record = train(cfg)
    losses = [c.val_loss for c in record.checkpoints]
    assert not record.diverged and len(losses) == 9
    assert losses[-1] < 0.8 < 1.0  # the zero network scores 1.0
    assert losses[-1] < losses[0] - 5 * record.checkpoints[-1].val_loss_se
    assert [c.tokens for c in record.checkpoints] == sorted(c.tokens for c in record.checkpoints)
    assert record.n_params == 25152 and record.tokens_per_sample == 16
    assert {"device", "torch", "triton", "git_sha"} <= record.provenance.keys()


def test_divergence_is_caught_not_raised():
    cfg = TrainConfig(MODEL, batch_size=8, lr=50.0, tokens=20_000, warmup_steps=1, val_examples=16)
    record = train(cfg)
    assert record.diverged
    assert record.diverged_at_tokens is not None and record.diverged_at_tokens < cfg.tokens
    assert all(math.isfinite(c.val_loss) for c in record.checkpoints)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch size"),
    ({"lr": -1.0}, "learning rate"),
    ({"lr": float("nan")}, "learning rate"),
    ({"tokens": 0}, "tokens"),
    ({"checkpoints": (5000,)}, "checkpoints"),
])
def test_config_validation(kwargs, match):
    base = {"model": MODEL, "batch_size": 4, "lr": 1e-3, "tokens": 1000}
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**base, **kwargs})


def test_power_ema_weights_follow_the_closed_form():
    import torch

    from replicate.train import PowerEMA

    model = torch.nn.Linear(1, 1, bias=False)
    gamma, steps = 3.0, 50
    ema = PowerEMA(model, gamma)
    with torch.no_grad():
        for t in range(1, steps + 1):
            model.weight.fill_(float(t))
            ema.update(model)
    # weight of step tau after T steps: (tau^(g+1) - (tau-1)^(g+1)) / T^(g+1)
    want = sum(tau * (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) for tau in range(1, steps + 1))
    assert ema.model.weight.item() == pytest.approx(want / steps ** (gamma + 1), rel=1e-5)
    assert not ema.model.weight.requires_grad
