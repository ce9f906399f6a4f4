import dataclasses

import pytest
import torch

from replicate.config import ClipConfig, ModelConfig, TrainConfig
from replicate.training.diffusion import ValidationSet
from replicate.training.ensemble import MemberAdamW, MemberBuffers, stack, unstack
from replicate.training.ensemble_reference import EnsembleAdamW, clip_grad_norm_per_member_
from replicate.training.model import VideoDiT
from replicate.training.train import train, train_group

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


def test_member_buffers_hold_the_parameters_and_gather_their_gradients_by_member():
    a, b = nn_param(3, 4), nn_param(3, 2, 2)
    before = [a.detach().clone(), b.detach().clone()]
    buffers = MemberBuffers([a, b])
    assert buffers.data.shape == buffers.grad.shape == (3, 8)
    torch.testing.assert_close(a.detach(), before[0], rtol=0, atol=0)
    torch.testing.assert_close(b.detach(), before[1], rtol=0, atol=0)
    buffers.data[1].fill_(7.0)  # row e is member e of every parameter
    assert a[1].eq(7).all() and b[1].eq(7).all() and a[0].ne(7).all()
    (a.sum() + 2 * b.sum()).backward()
    torch.testing.assert_close(buffers.gather_grads(), torch.tensor([[1.0] * 4 + [2.0] * 4] * 3))
    buffers.zero_grad()
    assert a.grad is None and b.grad is None
    (a * torch.arange(3.0)[:, None]).sum().backward()  # b has no gradient: it counts zero
    torch.testing.assert_close(
        buffers.gather_grads(), torch.tensor([[0.0] * 8, [1.0] * 4 + [0.0] * 4, [2.0] * 4 + [0.0] * 4])
    )


def nn_param(*shape: int) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.randn(*shape))


def test_flat_clipping_matches_torch_per_member():
    """MemberAdamW clips each member as torch.nn.utils.clip_grad_norm_ would: the same norms, and the gathered
    gradients divided by `unscale` (what its update divides them by) are torch's clipped gradients."""
    a, b = nn_param(3, 4), nn_param(3, 2, 2)
    opt = MemberAdamW(MemberBuffers([a, b]), torch.ones(3))
    a.grad = torch.randn(3, 4) * 5
    b.grad = torch.randn(3, 2, 2) * torch.tensor([0.01, 1.0, 9.0]).view(3, 1, 1)
    want = []
    for e in range(3):
        pa, pb = a[e].detach().clone().requires_grad_(), b[e].detach().clone().requires_grad_()
        pa.grad, pb.grad = a.grad[e].clone(), b.grad[e].clone()
        norm = torch.nn.utils.clip_grad_norm_([pa, pb], 1.0)
        want.append((norm, torch.cat([pa.grad.flatten(), pb.grad.flatten()])))
    norms = opt.clip_grad_norm_(1.0)
    for e in range(3):
        torch.testing.assert_close(norms[e], want[e][0])
        torch.testing.assert_close(opt.buffers.grad[e] / opt.unscale[e], want[e][1])
    assert opt.unscale[0] > 1 and opt.unscale[1] > 1 and opt.unscale[2] > 1  # every member above norm 1 here


def test_member_adamw_matches_torch_adamw_per_member():
    torch.manual_seed(0)
    lrs = [1e-3, 3e-2, 0.0]  # a frozen member (rate 0) does not move
    a, b = nn_param(3, 5, 3), nn_param(3, 4)
    singles = [[a.detach()[e].clone().requires_grad_(), b.detach()[e].clone().requires_grad_()] for e in range(3)]
    opt = MemberAdamW(MemberBuffers([a, b]), torch.tensor(lrs), weight_decay=0.1)
    refs = [torch.optim.AdamW(s, lr=lr, weight_decay=0.1) for s, lr in zip(singles, lrs, strict=True)]
    for _ in range(5):
        ga, gb = torch.randn(3, 5, 3), torch.randn(3, 4)
        a.grad, b.grad = ga.clone(), gb.clone()
        opt.clip_grad_norm_(1e9)  # gathers the gradients; no member is clipped
        opt.step()
        for e, ref in enumerate(refs):
            singles[e][0].grad, singles[e][1].grad = ga[e].clone(), gb[e].clone()
            ref.step()
    for e in range(3):
        torch.testing.assert_close(a.detach()[e], singles[e][0].detach(), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(b.detach()[e], singles[e][1].detach(), rtol=1e-6, atol=1e-7)


def test_the_flat_update_calls_one_kernel_per_member_and_never_reads_back():
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    seen = {}
    for members in (2, 16):
        params = [nn_param(members, 6, 5), nn_param(members, 5), nn_param(members, 3, 2)]
        opt = MemberAdamW(MemberBuffers(params), torch.full((members,), 1e-3))
        for p in params:
            p.grad = torch.randn_like(p)
        with Ops() as ops:
            opt.clip_grad_norm_(1.0)
            opt.step()
        seen[members] = ops.names
    # one fused update per member, whatever the number of tensors; everything else the same at any E
    assert [n for n in seen[16] if "fused" not in n] == [n for n in seen[2] if "fused" not in n]
    assert sum("fused_adamw" in n for n in seen[16]) == 16
    assert len(seen[2]) < 20
    assert not any("item" in name or "local_scalar" in name for name in seen[16])  # no host sync


def test_the_flat_step_trains_as_the_reference_step():
    """200 steps of a group of 2 seeds x 2 rates, flat (MemberAdamW) and per member (EnsembleAdamW). The two
    round differently (clipping's norm sums in another order and divides where the reference multiplies), by
    one float32 ulp here and there, which training carries forward as a random walk: the members' losses agree
    exactly for the first steps and within a few 1e-6 relative at worst over 200 (1e-7 typical), the weights
    likewise (norm of the difference over the norm, per tensor and member); the test allows 1e-5 for both. A
    cell's seed noise is 0.7%: the orders of magnitude between them are what the test holds. The key
    projection's bias is left out: its gradient is zero in exact arithmetic (softmax ignores a shift shared by
    every key), so Adam moves it by rounding noise alone, and differently in either order; it has no effect on
    the loss."""
    from replicate.training.step import GroupStepper

    base = TrainConfig(MODEL, batch_clips=1, lr=1e-3, tokens=16 * 200, warmup_steps=10)
    cfgs = [dataclasses.replace(base, lr=lr, seed=seed) for seed in (0, 1) for lr in (3e-4, 3e-3)]
    flat = GroupStepper(cfgs, torch.device("cpu"))
    ref = GroupStepper(cfgs, torch.device("cpu"), reference=True)
    worst = 0.0
    for step in range(1, 201):
        a, b = flat.step(step), ref.step(step)
        worst = max(worst, float(((a - b).abs() / b.abs()).max()))
    assert worst < 1e-5
    width = MODEL.width
    for (name, p), q in zip(flat.model.named_parameters(), ref.model.parameters(), strict=True):
        p, q = p.detach(), q.detach()
        if name.endswith("attn.qkv.bias"):
            p, q = torch.cat([p[:, :width], p[:, 2 * width :]], 1), torch.cat([q[:, :width], q[:, 2 * width :]], 1)
        err = ((p - q).flatten(1).norm(dim=1) / q.flatten(1).norm(dim=1)).max()
        assert err < 1e-5, name


def test_an_ensemble_of_three_equals_three_independent_runs():
    val = ValidationSet.build(CLIP, 64)
    base = TrainConfig(MODEL, batch_clips=8, lr=1e-3, tokens=3072, warmup_steps=4, checkpoints=(1024, 3072))
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
    base = TrainConfig(MODEL, batch_clips=8, lr=1e-3, tokens=8192, warmup_steps=1, checkpoints=(2048, 8192))
    good, bad = train_group([base, dataclasses.replace(base, lr=50.0)], val=val, device="cpu")
    assert bad.diverged and bad.diverged_at_tokens < base.tokens
    assert not good.diverged and len(good.checkpoints) == 2
    alone = train(base, val=val, device="cpu")
    assert good.checkpoints[-1].val_loss == pytest.approx(alone.checkpoints[-1].val_loss, rel=1e-5)


def test_an_ensemble_over_seeds_and_lrs_equals_its_independent_runs():
    val = ValidationSet.build(CLIP, 64)
    base = TrainConfig(MODEL, batch_clips=4, lr=1e-3, tokens=2048, warmup_steps=4, checkpoints=(1024, 2048))
    cfgs = [dataclasses.replace(base, lr=lr, seed=seed) for seed in (0, 1) for lr in (1e-3, 3e-3)]
    group = train_group(cfgs, val=val, device="cpu")
    for k in (1, 2):  # one member of each seed, at the other rate (the rest are the same path)
        cfg, member = cfgs[k], group[k]
        alone = train(cfg, val=val, device="cpu")
        for a, b in zip(member.checkpoints, alone.checkpoints, strict=True):
            assert a.val_loss == pytest.approx(b.val_loss, rel=1e-5)
            assert a.val_loss_ema == pytest.approx(b.val_loss_ema, rel=1e-5)
            assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
    # a seed changes the initialisation and the data: its members are not the other seed's
    assert abs(group[2].checkpoints[0].train_loss / group[0].checkpoints[0].train_loss - 1) > 1e-3


def test_group_members_must_differ_only_in_lr_and_seed():
    base = TrainConfig(MODEL, batch_clips=8, lr=1e-3, tokens=1024)
    with pytest.raises(ValueError, match="only in learning rate and seed"):
        train_group([base, dataclasses.replace(base, batch_clips=16)])


def _step_benchmark():
    """benchmarks/step.py as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "step.py"
    spec = importlib.util.spec_from_file_location("step_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_step_benchmark_floors_a_group_at_its_matmul_flops_and_adamw_traffic():
    """benchmarks/step.py's floor: the group's matmul FLOPs at the gemm rate plus 28 bytes per trainable parameter
    (every member's, embedders included) at the copy rate."""
    from replicate.config import flops_per_token
    from replicate.training.step import GroupStepper

    bench = _step_benchmark()
    base = TrainConfig(model=MODEL, batch_clips=2, tokens=64 * 16, lr=1e-3)
    cfgs = [dataclasses.replace(base, lr=lr) for lr in (1e-3, 2e-3, 4e-3)]
    params = GroupStepper(cfgs, torch.device("cpu")).opt.buffers.data.shape[1]
    assert params == sum(p.numel() for p in VideoDiT(MODEL).parameters())
    floor = bench.floors(cfgs, params, {"gemm_gflops": 2.0, "copy_gb_s": 4.0})
    flops = 3 * base.tokens_per_step * flops_per_token(MODEL, "exact")
    assert floor["math_floor_ms"] == pytest.approx(1e3 * flops / 2e9, rel=1e-3)
    assert floor["optimiser_floor_ms"] == pytest.approx(1e3 * 3 * params * 28 / 4e9, rel=1e-3)
    rates = bench.machine_rates(torch.device("cpu"), 3 * params, repeats=1)
    assert rates["gemm_gflops"] > 0 and rates["copy_gb_s"] > 0


def test_the_step_benchmark_says_which_targets_are_met_and_which_no_optimiser_could_meet():
    """The verdicts read each row's target, its speed-up and its bound, and the cost per member-step along E at
    the first row's shape; the 1-clip shape's rows are the first row's group name and its E variants."""
    from replicate.report.tables import step_verdicts

    bench = _step_benchmark()
    names = [name for name, _cfgs, _target in bench.shapes(quick=True)]
    assert [target for _name, _cfgs, target in bench.shapes(quick=True)] == [bench.ONE_CLIP_TARGET, bench.TARGET]

    def row(group, members, speedup, bound, target, per_member):
        return {"group": group, "members": members, "target_speedup": target, "meets_target": speedup >= target,
                "bound_allows_target": bound >= target, "ms_per_member_step": per_member}  # fmt: skip

    rows = [
        row(names[0], 8, 1.2, 1.7, 2.0, 0.70),
        row(names[1], 4, 1.6, 2.0, 1.5, 16.0),
        row("stage_a fit w48d2 B=16 clips", 8, 1.1, 1.2, 1.5, 3.0),
        row(f"{names[0]}, E=32", 32, 1.3, 2.0, 1.5, 0.56),
        row(f"{names[0]}, E=64", 64, 1.5, 2.6, 1.5, 0.59),
    ]
    lines = step_verdicts(rows)
    beyond = "out of any optimiser's reach"
    assert lines[0] == f"the flat step, target 2x: met at 0 of 1 shape(s); {beyond} (bound below 2x) at 1"
    assert lines[1] == (
        f"the flat step, target 1.5x: met at 2 of 4 shape(s) ({names[1]}; {names[0]}, E=64); {beyond} "
        "(bound below 1.5x) at 1"
    )
    assert lines[2] == "ms per member-step along E = 8: 0.700, 32: 0.560, 64: 0.590: not falling throughout"
    rows[-1]["ms_per_member_step"] = 0.5
    assert step_verdicts(rows)[2].endswith("64: 0.500: falling")
