"""The first stage of a device call: what must work before anything is timed or trained, cheapest and most
decisive first, each check one bench line (kind "preflight") written as it finishes, its status ok, failed,
mismatch or skipped, a failure recorded and the next check run:

- env: the versions, the device, its capability and memory, the tools on PATH, the free disk;
- graph_rng: a few steps of the project's optimiser (MemberAdamW: rates and gradient scales read from device
  tensors) on noise from a seeded generator, recorded once in a CUDA graph with the generator registered and
  replayed, against the same steps taken eagerly: the APIs replicate.training.step.StepGraph relies on, in isolation;
- triton_ops: every op of kernels.OPS through the Triton kernels (compiled, on a GPU) against the PyTorch
  reference, forward and backward, at the call's group shapes, in fp32 and bf16: the correctness that timing
  them never checks;
- bench_api: the kernel benchmark's timer (kernels.bench.time_ms: CUDA-graph replay) on an eager and a
  torch.compile'd op, compiled before it is captured.

On the CPU the "graph" is the eager step, the kernels run on the interpreter (or are skipped without it) at one
small shape, and the timer times one call: checks of the logic.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import time
from collections.abc import Callable

import torch

from replicate.config import TrainConfig
from replicate.profile import named_shape
from replicate.provenance import provenance, version
from replicate.training.ensemble import MemberAdamW, MemberBuffers

FP32_RTOL = 2e-5  # fp32 kernels against the reference: both within 1e-5 of the fp64 truth (tests/test_kernels.py)
HALF_ATOL = 8e-3  # bf16: the kernel's error against the fp32 truth at most twice the bf16 reference's plus this
GRAPH_STEPS = (3, 4)  # eager warm-up steps, then steps compared


class PreflightFailed(Exception):
    """A preflight check failed or disagreed (the others ran; their lines say which)."""


def env_check(dev: torch.device) -> dict:
    """The versions, the device, the tools on PATH and the free disk."""
    row = {
        "python": platform.python_version(),
        **provenance(dev),
        **{name: version(name) for name in ("numpy", "scipy", "pandas", "tqdm")},
        "cpus": os.cpu_count(),
        "on_path": {tool: shutil.which(tool) is not None for tool in ("make", "cc", "nvcc", "nvidia-smi")},
        "disk_free_gib": round(shutil.disk_usage(".").free / 2**30, 1),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        row.update(
            capability=list(torch.cuda.get_device_capability(dev)),
            sms=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            graph_generators=hasattr(torch.cuda.CUDAGraph, "register_generator_state"),
        )
    return row


def _toy_step(dev: torch.device) -> tuple[Callable[[], torch.Tensor], torch.Tensor, torch.Generator]:
    """A step of MemberAdamW on two members' 64 x 64 weights pulled to fresh noise: (step, weights, generator)."""
    gen = torch.Generator(dev).manual_seed(0)
    weight = torch.nn.Parameter(torch.zeros(2, 64, 64, device=dev))
    opt = MemberAdamW(MemberBuffers([weight]), torch.tensor([1e-2, 3e-2]))

    def step() -> torch.Tensor:
        noise = torch.randn(2, 64, 64, device=dev, generator=gen)
        opt.zero_grad()
        ((weight - noise) ** 2).sum().backward()
        opt.clip_grad_norm_(1.0)
        opt.step()
        return noise.sum()

    return step, weight, gen


def _replayed(dev: torch.device) -> tuple[list[float], torch.Tensor]:
    """The toy step's outputs and final weights, its steps after the warm-up replayed from one CUDA graph (on the
    CPU taken eagerly)."""
    step, weight, gen = _toy_step(dev)
    warm, steps = GRAPH_STEPS
    if dev.type != "cuda":
        return [float(step()) for _ in range(warm + steps)][warm:], weight.detach()
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch's CUDA-graph notes advise
        for _ in range(warm):
            step()
    torch.cuda.current_stream(dev).wait_stream(side)
    torch.cuda.synchronize(dev)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(gen)
    with torch.cuda.graph(graph):
        out = step()  # recorded, not run
    values = []
    for _ in range(steps):
        graph.replay()
        values.append(float(out))
    return values, weight.detach()


def graph_rng_check(dev: torch.device) -> dict:
    """The toy step replayed from a graph against the same steps taken eagerly: the noise drawn and the weights."""
    step, weight, _ = _toy_step(dev)
    warm, steps = GRAPH_STEPS
    eager = [float(step()) for _ in range(warm + steps)][warm:]
    replayed, replayed_weight = _replayed(dev)
    noise_diff = max(abs(a - b) / max(abs(a), 1.0) for a, b in zip(eager, replayed, strict=True))
    weight_diff = float((weight.detach() - replayed_weight).abs().max())
    ok = noise_diff <= 1e-6 and weight_diff <= 1e-6
    return {"status": "ok" if ok else "mismatch", "noise_rel_diff": noise_diff, "weight_abs_diff": weight_diff}


def _results(fn: Callable, args: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """fn's outputs and the gradients of sum(out * grad) with respect to every argument, in fp32."""
    outs = fn(*args)
    outs = outs if isinstance(outs, tuple) else (outs,)
    back = torch.autograd.grad(outs, args, [g.to(o.dtype) for g, o in zip(grads, outs, strict=True)])
    return [o.detach().float() for o in outs] + [g.float() for g in back]


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max()) / max(float(want.abs().max()), 1.0)


def op_error(name: str, shape: dict, dev: torch.device, dtype: torch.dtype, seed: int = 0) -> float:
    """How far the Triton kernel of op `name` is from PyTorch at the inputs one group of `shape` hands it, every
    output and input gradient, relative to each result's largest value (at least 1): in fp32 its largest error
    against the reference, to hold to FP32_RTOL; in half precision its largest error against the reference in
    fp32 on the same inputs beyond twice the half-precision reference's own, to hold to HALF_ATOL."""
    from replicate.kernels import OPS
    from replicate.kernels.bench import op_inputs

    op, gen = OPS[name], torch.Generator(dev).manual_seed(seed)
    args = op_inputs(op, shape, lambda dims: torch.randn(*dims, generator=gen, device=dev).to(dtype).requires_grad_())
    outs = op.reference(*args)
    grads = [torch.randn(o.shape, generator=gen, device=dev) for o in (outs if isinstance(outs, tuple) else (outs,))]
    got = _results(lambda *a: op.fn(*a, backend="triton"), args, grads)
    ref = _results(op.reference, args, grads)
    if dtype == torch.float32:
        return max(_rel(g, r) for g, r in zip(got, ref, strict=True))
    rounded = [g.to(dtype).float() for g in grads]  # the output gradients the half-precision runs got
    truth = _results(op.reference, [a.detach().float().requires_grad_() for a in args], rounded)
    return max(_rel(g, t) - 2 * _rel(r, t) for g, r, t in zip(got, ref, truth, strict=True))


def triton_ops_check(groups: list[list[TrainConfig]], dev: torch.device, deadline: float) -> dict:
    """op_error of every op at every group's shape and dtype (one small shape, fp32, on the interpreter) until
    time.monotonic() passes `deadline`."""
    from replicate.kernels import OPS
    from replicate.kernels._triton import interpreting
    from replicate.kernels.bench import shape_label

    if dev.type != "cuda" and not interpreting():
        return {"status": "skipped", "why": "no GPU, and the Triton interpreter is off (TRITON_INTERPRET)"}
    shapes = [named_shape(cfgs) for cfgs in groups]
    if dev.type != "cuda":  # the interpreter: two members of one clip check the logic
        shapes = [{**shapes[0], "members": min(2, shapes[0]["members"]), "batch_samples": 1}]
    dtypes = (torch.float32, torch.bfloat16) if dev.type == "cuda" else (torch.float32,)
    errors, bad, skipped = {}, [], []
    for shape in shapes:
        for dtype in dtypes:
            limit = FP32_RTOL if dtype == torch.float32 else HALF_ATOL
            for name in OPS:
                case = f"{name} {str(dtype).removeprefix('torch.')} at {shape_label(shape)}"
                if time.monotonic() > deadline:
                    skipped.append(case)
                    continue
                try:
                    errors[case] = op_error(name, shape, dev, dtype)
                except Exception as err:  # a kernel that does not compile is a failed case, not a failed check
                    errors[case] = f"{type(err).__name__}: {str(err)[:300]}"
                if not (isinstance(errors[case], float) and errors[case] <= limit):
                    bad.append(case)
    status = "failed" if bad else "partial" if skipped else "ok"
    return {"status": status, "bad": bad, "skipped": skipped, "errors": errors}


def bench_api_check(groups: list[list[TrainConfig]], dev: torch.device) -> dict:
    """kernels.bench.time_ms on GELU at the smallest group's shape, eager and torch.compile'd: finite and positive."""
    from replicate.kernels import OPS
    from replicate.kernels.bench import backend_fns, fwd_bwd, op_inputs, time_ms

    op = OPS["gelu_tanh"]
    inputs = op_inputs(op, named_shape(groups[0]), lambda dims: torch.randn(*dims, device=dev).requires_grad_())
    fns = backend_fns(op, dev)
    ms = {backend: time_ms(fwd_bwd(fns[backend], inputs), dev) for backend in ("eager", "compile")}
    ok = all(isinstance(t, float) and math.isfinite(t) and t > 0 for t in ms.values())
    return {"status": "ok" if ok else "failed", "eager_ms": ms["eager"], "compile_ms": ms["compile"]}


def preflight(groups: list[list[TrainConfig]], dev: torch.device, deadline: float, emit: Callable[[dict], None]) -> str:
    """The checks (see the module docstring) until time.monotonic() passes `deadline`, each emitted as a row
    (check, status, seconds, its fields); a summary line, or PreflightFailed naming the checks that failed."""
    checks: dict[str, Callable[[], dict]] = {
        "env": lambda: env_check(dev),
        "graph_rng": lambda: graph_rng_check(dev),
        "triton_ops": lambda: triton_ops_check(groups, dev, deadline),
        "bench_api": lambda: bench_api_check(groups, dev),
    }
    status = {}
    for name, check in checks.items():
        t0 = time.monotonic()
        if t0 > deadline:
            row = {"status": "skipped", "why": "past the preflight's time box"}
        else:
            try:
                row = {"status": "ok", **check()}
            except Exception as err:  # recorded; the next check runs
                row = {"status": "failed", "error": f"{type(err).__name__}: {str(err)[:500]}"}
        emit({"check": name, **row, "seconds": round(time.monotonic() - t0, 2)})
        status[name] = row["status"]
    summary = ", ".join(f"{name} {s}" for name, s in status.items())
    if any(s in ("failed", "mismatch") for s in status.values()):
        raise PreflightFailed(summary)
    return summary
