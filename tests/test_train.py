import dataclasses
import math

import pytest
import torch

from replicate.config import ClipConfig, ModelConfig, TrainConfig, token_checkpoints
from replicate.training.diffusion import ValidationSet
from replicate.training.train import train, train_group

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
    cfg = TrainConfig(MODEL, batch_clips=4, lr=1e-3, tokens=1000, checkpoints=(100, 500, 1000))
    assert cfg.tokens_per_step == 64 and cfg.checkpoint_steps() == [2, 8, 16]


def test_training_is_bit_identical_for_a_seed_and_differs_across_seeds():
    val = ValidationSet.build(CLIP, 32)
    cfg = TrainConfig(MODEL, batch_clips=8, lr=2e-3, tokens=2048, warmup_steps=5, checkpoints=(1024, 2048))
    a, b = train(cfg, val=val, device="cpu"), train(cfg, val=val, device="cpu")  # bit-identity is a CPU property
    assert _strip_wall(a) == _strip_wall(b)
    c = train(dataclasses.replace(cfg, seed=1), val=val, device="cpu")
    assert c.checkpoints[-1].val_loss != a.checkpoints[-1].val_loss


def test_validation_loss_falls_clearly():
    cfg = TrainConfig(MODEL, batch_clips=16, lr=3e-3, tokens=40_000, warmup_steps=10, val_examples=256)
    record = train(cfg)
    losses = [c.val_loss for c in record.checkpoints]
    assert not record.diverged and len(losses) == 9
    assert losses[-1] < 0.8 < 1.0  # the zero network scores 1.0
    assert losses[-1] < losses[0] - 5 * record.checkpoints[-1].val_loss_se
    assert [c.tokens for c in record.checkpoints] == sorted(c.tokens for c in record.checkpoints)
    assert record.n_params == 25152 and record.tokens_per_sample == 16
    assert {"device", "torch", "triton", "git_sha"} <= record.provenance.keys()


def test_divergence_is_caught_not_raised():
    cfg = TrainConfig(MODEL, batch_clips=8, lr=50.0, tokens=20_000, warmup_steps=1, val_examples=16)
    record = train(cfg)
    assert record.diverged
    assert record.diverged_at_tokens is not None and record.diverged_at_tokens < cfg.tokens
    assert all(math.isfinite(c.val_loss) for c in record.checkpoints)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_clips": 0}, "batch size"),
        ({"lr": -1.0}, "learning rate"),
        ({"lr": float("nan")}, "learning rate"),
        ({"tokens": 0}, "tokens"),
        ({"checkpoints": (5000,)}, "checkpoints"),
    ],
)
def test_config_validation(kwargs, match):
    base = {"model": MODEL, "batch_clips": 4, "lr": 1e-3, "tokens": 1000}
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{**base, **kwargs})


def test_power_ema_weights_follow_the_closed_form():
    import torch

    from replicate.training.ensemble import MemberBuffers
    from replicate.training.train import PowerEMA

    model = torch.nn.Linear(1, 1, bias=False)
    gamma, steps = 3.0, 50
    ema = PowerEMA(model, gamma)
    weights = MemberBuffers(model.parameters(), grads=False)
    with torch.no_grad():
        for t in range(1, steps + 1):
            model.weight.fill_(float(t))
            ema.update(weights)
    # weight of step tau after T steps: (tau^(g+1) - (tau-1)^(g+1)) / T^(g+1)
    want = sum(tau * (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) for tau in range(1, steps + 1))
    assert ema.model.weight.item() == pytest.approx(want / steps ** (gamma + 1), rel=1e-5)
    assert not ema.model.weight.requires_grad


def test_slice_steps_spread_each_checkpoint_over_its_window():
    cfg = TrainConfig(
        MODEL,
        batch_clips=4,
        lr=1e-3,
        tokens=64 * 1000,
        checkpoints=(64 * 100, 64 * 1000),
        eval_window=0.1,
        eval_slices=4,
        val_examples=64,
    )
    steps = cfg.slice_steps()
    assert steps == {90: [0], 93: [1], 97: [2], 100: [3], 900: [0], 933: [1], 967: [2], 1000: [3]}
    short = TrainConfig(
        MODEL,
        batch_clips=4,
        lr=1e-3,
        tokens=64 * 4,
        checkpoints=(64 * 2, 64 * 4),
        eval_window=0.5,
        eval_slices=4,
        val_examples=64,
    )
    assert short.slice_steps() == {1: [0, 1], 2: [2, 3], 3: [0, 1, 2], 4: [3]}  # never before the previous one


def test_the_raw_loss_averages_its_window_and_the_ema_loss_is_recorded():
    val = ValidationSet.build(CLIP, 64)
    cfg = TrainConfig(
        MODEL,
        batch_clips=8,
        lr=2e-3,
        tokens=4096,
        warmup_steps=4,
        checkpoints=(2048, 4096),
        eval_window=0.5,
        eval_slices=4,
    )
    seen = []
    # CPU: the window's average is checked to 1e-9 against the losses of the weights it averaged
    record = train(cfg, val=val, device="cpu", on_checkpoint=lambda r, model, ema: seen.append((model, ema)))
    last = record.checkpoints[-1]
    assert last.val_loss_ema is not None and last.val_loss_ema != last.val_loss
    from replicate.training.diffusion import validation_loss

    # early in training the loss falls fast, so its average over the window lies above its value at the end
    assert last.val_loss > validation_loss(seen[-1][0], val)[0]
    assert validation_loss(seen[-1][1], val)[0] == pytest.approx(last.val_loss_ema, rel=1e-9)
    seen.clear()
    point = train(
        dataclasses.replace(cfg, eval_window=0.0),
        val=val,
        device="cpu",
        on_checkpoint=lambda r, model, ema: seen.append((model, ema)),
    )
    assert point.checkpoints[-1].val_loss == pytest.approx(validation_loss(seen[-1][0], val)[0], rel=1e-9)
    no_ema = train(dataclasses.replace(cfg, ema_gamma=None), val=val, device="cpu")
    assert no_ema.checkpoints[-1].val_loss_ema is None
    assert no_ema.checkpoints[-1].val_loss == pytest.approx(last.val_loss, rel=1e-9)  # the EMA changes nothing else


def test_a_paused_and_resumed_group_equals_one_that_ran_through(tmp_path):
    val = ValidationSet.build(CLIP, 32)
    base = TrainConfig(
        MODEL,
        batch_clips=4,
        lr=2e-3,
        tokens=4096,
        warmup_steps=4,
        checkpoints=(1024, 2048, 4096),
        eval_window=0.5,
        eval_slices=4,
    )
    cfgs = [base, dataclasses.replace(base, lr=50.0)]  # one member diverges: its frozen state must survive too
    through = train_group(cfgs, val=val, device="cpu")
    state, pauses = tmp_path / "group.pt", 0
    while (records := train_group(cfgs, val=val, device="cpu", state=state, stop_at=0.0)) is None:
        pauses += 1  # stop_at is past: every call trains to the next 16-step boundary and pauses
        assert state.is_file()
    assert pauses == base.steps // 16 - 1 and not state.exists()
    assert [_strip_wall(r) for r in records] == [_strip_wall(r) for r in through]
    assert records[1].diverged and not records[0].diverged


def _capture_group() -> list[TrainConfig]:
    return [
        TrainConfig(MODEL, batch_clips=4, lr=lr, tokens=10**6, seed=seed, warmup_steps=4)
        for seed in (0, 1)
        for lr in (1e-3, 3e-3)
    ]


def test_the_capture_check_is_the_eager_step_both_ways_on_the_cpu():
    from replicate.device.checks import capture_check

    check = capture_check(_capture_group(), "cpu", steps=4, timed_steps=2)
    assert check["max_rel_loss_diff"] == 0.0 and check["eager_ms"] > 0 and check["graph_ms"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_captured_step_replays_the_eager_one_on_cuda():
    from replicate.device.checks import CAPTURE_TOLERANCE, capture_check

    check = capture_check(_capture_group(), "cuda", steps=12, timed_steps=20)
    assert check["max_rel_loss_diff"] <= CAPTURE_TOLERANCE, check
