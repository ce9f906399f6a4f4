"""The Triton kernels against the torch references and independent formulations: outputs and every gradient,
odd shapes, fp32 and fp16, strided inputs as the model passes them, and the backend switch.

Without a GPU the kernels run on Triton's CPU interpreter (conftest sets TRITON_INTERPRET=1) and bf16 is left
out (the interpreter's bf16 arithmetic is not faithful); with one, the same tests run the compiled kernels on
CUDA tensors, bf16 included."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from replicate import kernels
from replicate.errors import ConfigError
from replicate.kernels import OPS, ExampleInputs, reference

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SEQS = (1, 17, 64, 100)
WIDTHS = (48, 96)
DTYPES = (torch.float32, torch.float16) + ((torch.bfloat16,) if DEVICE.type == "cuda" else ())
FP32_RTOL = 1e-5  # max error relative to the largest value (at least 1) of each output and gradient
HALF_ATOL = {torch.float16: 1e-3, torch.bfloat16: 8e-3}  # about one unit in the last place


def _triton(op):
    return lambda *args: getattr(kernels, op)(*args, backend="triton")


def _restrided(a, fn):
    """fn applied to a's whole base tensor, viewed again with a's shape, strides and offset (a plain .to or
    .clone of a strided view would make it contiguous, and the kernels' stride handling would go untested)."""
    base = a._base if a._base is not None else a
    return fn(base.detach()).as_strided(a.shape, a.stride(), a.storage_offset())


def _outputs_and_grads(fn, args, weights):
    """fn's outputs and the gradients of sum(out * weight) w.r.t. every arg, computed in the args' dtypes."""
    views = [_restrided(a, lambda t: t.clone().requires_grad_()) for a in args]
    outs = fn(*views)
    outs = outs if isinstance(outs, tuple) else (outs,)
    loss = sum((o * w.to(o.dtype)).float().sum() for o, w in zip(outs, weights, strict=True))
    return [o.detach() for o in outs] + list(torch.autograd.grad(loss, views))


def _compare(fn, oracle, independent, make_args, dtype, seed=0):
    """Checks fn against the oracle (the torch reference) and an independent fp64 formulation.

    make_args(gen) returns fp64 tensors on gen's device (views allowed, as the model passes chunks of one
    tensor). fp32: every output and gradient within FP32_RTOL of the fp64 formulation. fp16, bf16: the kernel's
    error against the fp64 truth at most twice the torch reference's in that dtype plus HALF_ATOL.
    """
    gen = torch.Generator(DEVICE).manual_seed(seed)
    args = [_restrided(a, lambda t: t.to(dtype)) for a in make_args(gen)]
    truth_args = [a.double() for a in args]  # the kernel's own rounded inputs, in fp64
    outs = fn(*args)
    outs = outs if isinstance(outs, tuple) else (outs,)
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64, device=DEVICE).to(dtype) for o in outs]
    got = _outputs_and_grads(fn, args, weights)
    truth = _outputs_and_grads(independent, truth_args, weights)
    ref = _outputs_and_grads(oracle, args, weights) if dtype != torch.float32 else None
    for i, (g, t) in enumerate(zip(got, truth, strict=True)):
        assert g.dtype == (outs + tuple(args))[i].dtype, f"result {i}: dtype {g.dtype}"
        scale = max(t.abs().max().item(), 1.0)
        err = (g.double() - t).abs().max().item() / scale
        if dtype == torch.float32:
            assert err <= FP32_RTOL, f"result {i}: relative error {err:.2e} vs the fp64 formulation"
        else:
            ref_err = (ref[i].double() - t).abs().max().item() / scale
            assert err <= 2 * ref_err + HALF_ATOL[dtype], f"result {i}: error {err:.2e}, reference {ref_err:.2e}"
    if dtype == torch.float32:  # both within FP32_RTOL of the truth, so within twice that of each other
        for i, (g, r) in enumerate(zip(got, _outputs_and_grads(oracle, args, weights), strict=True)):
            err = (g - r).abs().max().item() / max(r.abs().max().item(), 1.0)
            assert err <= 2 * FP32_RTOL, f"result {i}: relative error {err:.2e} vs the torch reference"


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64, device=gen.device)


def _example(name, seq, width, heads, scale=2.0):
    """make_args for _compare: the catalog's example inputs in fp64, offset and scaled away from N(0, 1)."""
    return lambda gen: OPS[name].example(
        ExampleInputs(lambda shape: _randn(gen, *shape) * scale + 0.5, 2, seq, width, heads)
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("seq", SEQS)
@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_of_the_catalog(name, seq, width, dtype):
    """Outputs and gradients against the reference and the fp64 formulation at the block's shapes (3 heads:
    head dims 16 and 32 for attention), with the strided views the model passes."""
    op = OPS[name]
    _compare(_triton(name), op.reference, op.formula, _example(name, seq, width, 3), dtype)


@pytest.mark.parametrize(("seq", "head_dim"), [(17, 64), (100, 64), (33, 128)])
def test_attention_at_larger_head_dims(seq, head_dim):
    op = OPS["attention"]
    _compare(_triton("attention"), op.reference, op.formula, _example("attention", seq, 2 * head_dim, 2), torch.float32)


@pytest.mark.parametrize("shape", [(7,), (3, 37, 50), (2, 4099)])  # tails, and more than one program
def test_gelu_tanh_at_any_shape(shape):
    op = OPS["gelu_tanh"]  # wide enough to reach tanh's saturation both ways
    _compare(_triton("gelu_tanh"), op.reference, op.formula, lambda gen: [_randn(gen, *shape) * 4], torch.float32)


@pytest.mark.parametrize(("members", "rows", "k", "n"), [(1, 1, 16, 16), (3, 50, 40, 70), (2, 33, 97, 130)])
def test_linear_gelu_at_odd_shapes(members, rows, k, n):
    """Tails along every axis of the tiles (32 on the interpreter), one row, one member, K beyond one tile."""
    op = OPS["linear_gelu"]

    def make(gen):
        return [_randn(gen, members, rows, k), _randn(gen, members, k, n) / k**0.5, _randn(gen, members, n)]

    _compare(_triton("linear_gelu"), op.reference, op.formula, make, torch.float32)


def test_linear_gelu_refuses_mismatched_shapes():
    x, w, b = (
        torch.zeros(2, 5, 8, device=DEVICE),
        torch.zeros(2, 8, 16, device=DEVICE),
        torch.zeros(2, 16, device=DEVICE),
    )
    with pytest.raises(ValueError, match="expected x"):
        kernels.linear_gelu(x, w[:1], b, backend="triton")
    with pytest.raises(ValueError, match="bias"):
        kernels.linear_gelu(x, w, b[:, :8], backend="triton")


def test_attention_contiguous_inputs_and_peaked_scores():
    def make(gen):  # large logits: the online softmax must rescale without overflow
        return [_randn(gen, 1, 3, 70, 32) * 4 for _ in range(3)]

    _compare(_triton("attention"), reference.attention, OPS["attention"].formula, make, torch.float32, seed=1)


def test_mixed_dtypes_follow_the_reference():
    """fp32 residual stream with fp16 modulation (as under autocast): outputs promote, gradients keep the
    dtype of their input."""
    gen = torch.Generator(DEVICE).manual_seed(0)
    x, y = _randn(gen, 2, 9, 48).float(), _randn(gen, 2, 9, 48).float()
    gate, shift, scale = (t.half() for t in _randn(gen, 2, 3 * 48).chunk(3, dim=1))
    args = [x, gate, y, shift, scale]
    weights = [_randn(gen, 2, 9, 48).float() for _ in range(2)]
    got = _outputs_and_grads(_triton("gated_residual_layernorm_modulate"), args, weights)
    want = _outputs_and_grads(reference.gated_residual_layernorm_modulate, args, weights)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=5e-3, atol=5e-3)  # fp16 gradients: a few units in the last place


def test_backend_switch(monkeypatch):
    x = torch.randn(1, 2, 16, device=DEVICE)
    for op in kernels.OPS:
        want = "triton" if DEVICE.type == "cuda" and op in kernels.TRITON_FASTER else "torch"
        assert kernels.resolve_backend("auto", x, op) == want
    assert kernels.resolve_backend("triton", x, "gelu_tanh") == "triton"
    with pytest.raises(ConfigError, match="backend"):
        kernels.resolve_backend("cuda", x, "gelu_tanh")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    x = x.cpu()
    assert kernels.resolve_backend("auto", x, "gelu_tanh") == "torch"
    with pytest.raises(ConfigError, match="CUDA"):
        kernels.gelu_tanh(x, backend="triton")
    with pytest.raises(ConfigError, match="CUDA"):
        kernels.attention(x[None], x[None], x[None], backend="triton")


def test_attention_head_dim_and_shape_checks():
    q = torch.randn(1, 1, 4, 24, device=DEVICE)
    with pytest.raises(ValueError, match="head dim"):
        kernels.attention(q, q, q, backend="triton")
    torch.testing.assert_close(kernels.attention(q, q, q, backend="auto"), reference.attention(q, q, q))
    x, row = torch.randn(2, 3, 8, device=DEVICE), torch.randn(2, 8, device=DEVICE)
    with pytest.raises(ValueError, match="rows"):
        kernels.layernorm_modulate(x, row, row[:1], backend="triton")


def test_import_compiles_nothing_and_queries_no_driver():
    """Importing every kernel module without the interpreter, on a machine without a GPU, must not touch the
    CUDA driver (which would raise there); and the package alone imports no kernel module."""
    code = (
        "import sys, replicate.kernels as k; assert 'replicate.kernels.flash_attention' not in sys.modules; "
        "import replicate.kernels.modulate, replicate.kernels.gelu, replicate.kernels.flash_attention, "
        "replicate.kernels.clip_attention, replicate.kernels.linear; "
        "import torch; assert not torch.cuda.is_initialized()"
    )
    env = {key: v for key, v in os.environ.items() if key != "TRITON_INTERPRET"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def _verified_on(lines: list[dict]) -> dict[str, set[str]]:
    """Per device, the ops a device call's preflight checked against their references with every case passing
    (its triton_ops check's status "ok"; the case names begin with the op's)."""
    verified: dict[str, set[str]] = {}
    for line in lines:
        if line.get("kind") == "preflight" and line.get("check") == "triton_ops" and line.get("status") == "ok":
            ops = {case.split(" ")[0] for case in line.get("errors", {})}
            verified.setdefault(line["device"], set()).update(ops)
    return verified


def test_auto_takes_triton_only_where_the_benchmark_measured_it_faster_on_a_gpu_that_verified_it():
    """TRITON_FASTER: the ops whose Triton kernel ran faster than eager at every shape measured on a GPU, and
    whose compiled kernel that GPU's preflight checked against the reference (device_steps.jsonl): speed alone
    must not switch `auto` onto a kernel whose compiled output nobody checked."""
    import json

    import pandas as pd

    results = Path(__file__).resolve().parents[1] / "results/benchmarks"
    speed = pd.read_csv(results / "kernels.csv")
    steps = results / "device_steps.jsonl"
    verified = _verified_on([json.loads(line) for line in steps.read_text().splitlines()] if steps.is_file() else [])
    gpu = speed[(speed["backend"] == "triton") & ~speed["device"].str.startswith("cpu")]
    faster = {
        op
        for op, g in gpu.groupby("op")
        if (g["speedup_vs_eager"] > 1).all() and all(op in verified.get(device, set()) for device in g["device"])
    }
    assert kernels.TRITON_FASTER == faster & set(kernels.OPS)
    ok = {"kind": "preflight", "check": "triton_ops", "status": "ok", "device": "gpu A"}
    lines = [{**ok, "errors": {"gelu_tanh fp32 at E2": 0.0}}, {**ok, "status": "failed", "errors": {"attention": 1}}]
    assert _verified_on(lines) == {"gpu A": {"gelu_tanh"}}


def test_short_clips_take_the_whole_clip_kernel_and_long_sequences_flash_attention(monkeypatch):
    from replicate.kernels import clip_attention, flash_attention

    used = []
    for module in (clip_attention, flash_attention):
        original = module.attention
        monkeypatch.setattr(module, "attention", lambda *a, m=module, f=original: used.append(m) or f(*a))
    for seq in (16, clip_attention.CLIP_MAX_SEQ, clip_attention.CLIP_MAX_SEQ + 1):
        q = torch.randn(2, 2, seq, 16, device=DEVICE)
        torch.testing.assert_close(kernels.attention(q, q, q, backend="triton"), reference.attention(q, q, q))
    assert used == [clip_attention, clip_attention, flash_attention]
    q = torch.randn(1, 1, clip_attention.CLIP_MAX_SEQ + 1, 16, device=DEVICE)
    with pytest.raises(ValueError, match="at most"):
        clip_attention.attention(q, q, q)


def test_the_kernel_benchmark_checks_its_logic_on_the_cpu(tmp_path):
    """benchmarks/kernels.py --device cpu: every op of the catalog with every backend and the captured step with
    both, at a tiny shape on the interpreter, into the CSV and the tuning JSON it names."""
    import csv
    import json

    out = tmp_path / "new" / "kernels.csv"  # a folder that does not exist yet, as _build/benchmarks/ on a clone
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"
    done = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert {(r["op"], r["backend"]) for r in rows} == {
        *((op, b) for op in OPS for b in ("eager", "compile", "triton")),
        ("train_step (captured)", "torch"),
        ("train_step (captured)", "triton"),
    }
    assert all(float(r["ms"]) > 0 for r in rows)
    assert json.loads((out.parent / "kernels_tuning.json").read_text())["tuning"] == []  # nothing autotunes on CPU


def test_autotuning_tries_only_the_configs_whose_tiles_fit_the_registers(monkeypatch):
    """Tunable.prune, triton's early_config_prune: the fp32 clip attention backward at 64 tokens and head dim 64
    keeps only its 4-warp config (on one warp it spills tens of KB and takes minutes to compile), fp32 linear_gelu
    drops its K = 64 tile, bf16 keeps every config at the study's 16 tokens, and no launch is left with none."""
    import triton

    from replicate.kernels import clip_attention, flash_attention, linear
    from replicate.kernels._triton import Tunable

    def warps(tunable, named, **meta):
        return [c.num_warps for c in tunable.prune(tunable.configs, named, **meta)]

    assert warps(clip_attention._bwd, {"S": 64}, HEAD_DIM=64, PRECISION="ieee", BLOCK_S=64) == [4]
    assert warps(clip_attention._fwd, {"S": 16}, HEAD_DIM=16, PRECISION="ieee", BLOCK_S=16) == [1, 2, 4]
    assert warps(clip_attention._bwd, {"S": 16}, HEAD_DIM=16, PRECISION="tf32", BLOCK_S=16) == [1, 2, 4]
    fp32 = linear._fwd.prune(linear._fwd.configs, {"M": 256, "N": 192, "K": 48}, PRECISION="ieee")
    assert [c.kwargs["BLOCK_K"] for c in fp32] == [32, 32]
    assert len(linear._fwd.prune(linear._fwd.configs, {"M": 256, "N": 192, "K": 48}, PRECISION="tf32")) == 3
    for tunable in (clip_attention._fwd, clip_attention._bwd, flash_attention._fwd, flash_attention._dkdv):
        for head_dim in kernels.ATTENTION_HEAD_DIMS:
            for precision in ("ieee", "tf32"):
                meta = {"HEAD_DIM": head_dim, "PRECISION": precision, "BLOCK_S": 64}
                kept = tunable.prune(tunable.configs, {"S": 64}, **meta)
                assert kept and set(kept) <= set(tunable.configs)
    built = {}
    monkeypatch.setattr(triton, "autotune", lambda **kw: built.update(kw) or (lambda fn: fn))
    fresh = Tunable(clip_attention._clip_bwd, clip_attention._CONFIGS, ["S"], {}, lambda m: 1.0)
    assert fresh._tuned is clip_attention._clip_bwd and built["prune_configs_by"]["early_config_prune"] == fresh.prune
