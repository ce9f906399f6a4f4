import dataclasses

import pytest
import torch

from replicate.config import ClipConfig, ModelConfig, TrainConfig
from replicate.diffusion import ValidationSet
from replicate.ensemble import EnsembleAdamW, clip_grad_norm_per_member_, stack, unstack
from replicate.model import VideoDiT
from replicate.train import train, train_group

CLIP = ClipConfig(frames=4, height=8, width=8)
MODEL = ModelConfig(width=32, depth=2, heads=2, clip=CLIP)


def test_stacked_model_computes_each_member_like_the_plain_model():
    torch.manual_seed(0)
    plain = VideoDiT(MODEL)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ens = stack([plain] * 3)
    with torch.no_grad():  # make member 2 different from the others
        for p in ens.parameters():
            p[2].mul_(1.5)
    x = torch.randn(4, *CLIP.shape)
    t, y = torch.tensor([1, 200, 500, 999]), torch.tensor([0, 3, 5, 11])
    out = ens(x.repeat(3, 1, 1, 1, 1), t.repeat(3), y.repeat(3)).view(3, 4, *CLIP.shape)
    torch.testing.assert_close(out[0], plain(x, t, y), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[1], out[0])
    torch.testing.assert_close(out[2], unstack(ens, plain, 2)(x, t, y), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[2], out[0])


def test_ensemble_adamw_matches_torch_adamw_per_member():
    torch.manual_seed(0)
    lrs = [1e-3, 3e-2]
    stacked = torch.randn(2, 5, 3, requires_grad=True)
    singles = [stacked.detach()[e].clone().requires_grad_() for e in range(2)]
    opt = EnsembleAdamW([stacked], torch.tensor(lrs), weight_decay=0.1)
    refs = [torch.optim.AdamW([s], lr=lr, weight_decay=0.1) for s, lr in zip(singles, lrs, strict=True)]
    for _ in range(5):
        g = torch.randn(2, 5, 3)
        stacked.grad = g.transpose(1, 2).contiguous().transpose(1, 2)  # strided: torch's CPU kernel needs a copy
        opt.step()
        for e, (s, ref) in enumerate(zip(singles, refs, strict=True)):
            s.grad = g[e].clone()
            ref.step()
    for e in range(2):
        torch.testing.assert_close(stacked.detach()[e], singles[e].detach(), rtol=1e-6, atol=1e-7)


def test_per_member_clipping_matches_torch():
    a, b = torch.randn(3, 4, requires_grad=True), torch.randn(3, 2, 2, requires_grad=True)
    a.grad, b.grad = torch.randn(3, 4) * 5, torch.randn(3, 2, 2) * torch.tensor([0.01, 1.0, 9.0]).view(3, 1, 1)
    want = []
    for e in range(3):
        pa, pb = a[e].detach().clone().requires_grad_(), b[e].detach().clone().requires_grad_()
        pa.grad, pb.grad = a.grad[e].clone(), b.grad[e].clone()
        torch.nn.utils.clip_grad_norm_([pa, pb], 1.0)
        want.append((pa.grad, pb.grad))
    clip_grad_norm_per_member_([a, b], 1.0, 3)
    for e in range(3):
        torch.testing.assert_close(a.grad[e], want[e][0])
        torch.testing.assert_close(b.grad[e], want[e][1])


def test_an_ensemble_of_three_equals_three_independent_runs():
    val = ValidationSet.build(CLIP, 64)
    base = TrainConfig(MODEL, batch_size=8, lr=1e-3, tokens=3072, warmup_steps=4, checkpoints=(1024, 3072))
    cfgs = [dataclasses.replace(base, lr=lr) for lr in (1e-3, 3e-3, 1e-2)]
    group = train_group(cfgs, val=val, device="cpu")  # fp32: CUDA trains in bf16
    for cfg, member in zip(cfgs, group, strict=True):
        alone = train(cfg, val=val, device="cpu")
        assert len(member.checkpoints) == len(alone.checkpoints) == 2
        for a, b in zip(member.checkpoints, alone.checkpoints, strict=True):
            assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5)
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
    assert len({m.checkpoints[-1].val_loss for m in group}) == 3


def test_a_diverging_member_is_frozen_and_the_others_go_on():
    val = ValidationSet.build(CLIP, 32)
    base = TrainConfig(MODEL, batch_size=8, lr=1e-3, tokens=8192, warmup_steps=1, checkpoints=(2048, 8192))
    good, bad = train_group([base, dataclasses.replace(base, lr=50.0)], val=val, device="cpu")
    assert bad.diverged and bad.diverged_at_tokens < base.tokens
    assert not good.diverged and len(good.checkpoints) == 2
    alone = train(base, val=val, device="cpu")
    assert good.checkpoints[-1].val_loss == pytest.approx(alone.checkpoints[-1].val_loss, rel=1e-5)


def test_an_ensemble_over_seeds_and_lrs_equals_its_independent_runs():
    val = ValidationSet.build(CLIP, 64)
    base = TrainConfig(MODEL, batch_size=4, lr=1e-3, tokens=2048, warmup_steps=4, checkpoints=(1024, 2048))
    cfgs = [dataclasses.replace(base, lr=lr, seed=seed) for seed in (0, 1) for lr in (1e-3, 3e-3)]
    group = train_group(cfgs, val=val, device="cpu")
    for cfg, member in zip(cfgs, group, strict=True):
        alone = train(cfg, val=val, device="cpu")
        for a, b in zip(member.checkpoints, alone.checkpoints, strict=True):
            assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5)
            assert a.val_loss_ema == pytest.approx(b.val_loss_ema, rel=1e-5)
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
    # a seed changes the initialisation and the data: its members are not the other seed's
    assert abs(group[2].checkpoints[0].train_loss / group[0].checkpoints[0].train_loss - 1) > 1e-3


def test_group_members_must_differ_only_in_lr_and_seed():
    base = TrainConfig(MODEL, batch_size=8, lr=1e-3, tokens=1024)
    with pytest.raises(ValueError, match="only in learning rate and seed"):
        train_group([base, dataclasses.replace(base, batch_size=16)])
