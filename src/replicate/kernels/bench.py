"""Timing the Triton ops against eager PyTorch and torch.compile at the shapes of a training group: the harness
that benchmarks/kernels.py prints and the device run records (bench lines of kind "kernel" and "autotune").

Every op of the catalog (kernels.OPS), forward and backward, with the inputs one group hands it: E members x
B clips of S tokens at width D with H heads, in the ensemble's layout (the row ops and attention see E B
samples; the stacked first MLP layer multiplies (E, B S, D)). On a GPU each is timed by replaying a CUDA graph
of many calls (triton.testing.do_bench_cudagraph: no host launch overhead in the numbers, as inside the
captured training step), eager attention being SDPA (PyTorch's library kernel); on the CPU the Triton
kernels run on the interpreter and the wall clock times one call: a check of the logic, not a measurement.
`achieved` is GB/s for the row ops (the bytes a fused forward + backward must move, the same count for every
backend: an effective bandwidth) and TFLOP/s for the matmul ops, against `peak`, the device's copy bandwidth
or bf16 matmul rate measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from replicate.io import write_csv
from replicate.kernels import OPS, ExampleInputs, Op

BACKENDS = ("eager", "compile", "triton")
# results/benchmarks/kernels.csv: one row per (op, shape, backend), with the provenance of the device run
COLUMNS = (
    "op",
    "shape",
    "dtype",
    "backend",
    "ms",
    "speedup_vs_eager",
    "achieved",
    "peak",
    "unit",
    "device",
    "torch",
    "triton",
    "git_sha",
)


def time_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds per call: the median over replays of a CUDA graph of calls on a GPU, one timed call on CPU.
    Gradients accumulate into the inputs' .grad across calls (one add per input, the same for every backend):
    resetting them to None, as do_bench_cudagraph's grad_to_none does by detaching in place, would cut the
    inputs that are views of one tensor (the model's chunks and packed qkv) off their base."""
    if device.type == "cuda":
        from triton.testing import do_bench_cudagraph

        return do_bench_cudagraph(fn, rep=50, return_mode="median")
    fn()  # the first call compiles (torch.compile) or traces; the second is timed
    start = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - start)


def peaks(device: torch.device) -> dict[str, float]:
    """The device's copy bandwidth (GB/s, 1 GiB device to device) and bf16 matmul rate (TFLOP/s, n = 8192);
    on the CPU small fp32 stand-ins, for the logic only."""
    n_copy, n_mm, dtype = (2**28, 8192, torch.bfloat16) if device.type == "cuda" else (2**20, 256, torch.float32)
    src = torch.empty(n_copy, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    a, b = (torch.randn(n_mm, n_mm, device=device, dtype=dtype) for _ in range(2))
    return {
        "copy_gbps": 2 * n_copy * 4 / time_ms(lambda: dst.copy_(src), device) / 1e6,
        "matmul_tflops": 2 * n_mm**3 / time_ms(lambda: a @ b, device) / 1e9,
    }


def fwd_bwd(fn: Callable, inputs: list[torch.Tensor]) -> Callable[[], None]:
    """A closure running fn forward and backward with fixed random output gradients."""
    outs = fn(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    grads = [torch.randn_like(o) for o in outs]

    def run() -> None:
        res = fn(*inputs)
        torch.autograd.backward(res if isinstance(res, tuple) else (res,), grads)

    return run


def backend_fns(op: Op, device: torch.device) -> dict[str, Callable]:
    return {
        "eager": op.reference,  # attention: SDPA, which picks its fastest library kernel for the shape
        # on the CPU only traced (no code generation): the logic check needs no compiler
        "compile": torch.compile(op.reference, dynamic=False, backend="inductor" if device.type == "cuda" else "eager"),
        "triton": lambda *a: op.fn(*a, backend="triton"),
    }


def accuracy_rows(backend: str = "triton", seed: int = 0) -> list[dict]:
    """Every op of the catalog through `backend` in float32 against its written-out formula in float64 (the truth),
    on seeded inputs of an odd shape (2 clips of 17 tokens, width 48, 3 heads): the largest relative error of its
    outputs and of its input gradients (for a random weighting of the outputs), each scaled by the truth's largest
    magnitude where that exceeds 1."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for name, op in OPS.items():
        inputs = op.example(
            ExampleInputs(lambda shape: torch.randn(*shape, generator=gen, dtype=torch.float64), 2, 17, 48, 3)
        )
        truth_in = [x.detach().clone().requires_grad_() for x in inputs]
        test_in = [x.detach().float().clone().requires_grad_() for x in inputs]
        truth, out = op.formula(*truth_in), op.fn(*test_in, backend=backend)
        truth, out = (truth, out) if isinstance(truth, tuple) else ((truth,), (out,))
        w = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in truth]
        g_truth = torch.autograd.grad(sum((t * v).sum() for t, v in zip(truth, w, strict=True)), truth_in)
        g_out = torch.autograd.grad(sum((o * v.float()).sum() for o, v in zip(out, w, strict=True)), test_in)
        errors = [
            (o.double() - t).abs().max().item() / max(t.abs().max().item(), 1.0)
            for o, t in zip((*out, *g_out), (*truth, *g_truth), strict=True)
        ]
        outputs, grads = errors[: len(out)], errors[len(out) :]
        rows.append({"op": name, "output error": max(outputs), "worst gradient error": max(grads)})
    return rows


def write_table(path: Path, rows: list[dict]) -> None:
    """The rows as kernels.csv (COLUMNS; floats to 4 significant digits), atomically."""
    write_csv(path, COLUMNS, [[f"{r[k]:.4g}" if isinstance(r[k], float) else r[k] for k in COLUMNS] for r in rows])


def shape_label(shape: dict) -> str:
    """A group's shape for tables: E x B clips x S tokens, width D, H heads."""
    return f"E{shape['members']}xB{shape['batch_samples']}xS{shape['n_ctx']}xD{shape['width']}xH{shape['heads']}"


def op_inputs(op: Op, shape: dict, make: Callable[[tuple[int, ...]], torch.Tensor]) -> list[torch.Tensor]:
    """The inputs one group of `shape` (a dict of profile.SHAPE_FIELDS) hands `op`, each made by make(dims)."""
    batch = shape["members"] * shape["batch_samples"]
    return op.example(
        ExampleInputs(make, batch, shape["n_ctx"], shape["width"], shape["heads"], members=shape["members"])
    )


def op_rows(
    shapes: list[dict],
    device: torch.device,
    dtype: torch.dtype,
    deadline: float,
    peak: dict[str, float],
    backends: tuple[str, ...] = BACKENDS,
    tuning: dict[tuple[str, str], dict] | None = None,
    rows: list[dict] | None = None,
    skipped: list[str] | None = None,
) -> tuple[list[dict], list[str]]:
    """Each op of the catalog at each group shape (dicts of profile.SHAPE_FIELDS), in that order, forward +
    backward, with each backend; (rows, cases skipped because time.monotonic() passed `deadline`, checked
    before each backend, or failed, with the error). A row: op, shape, dtype, backend, ms, speedup_vs_eager,
    achieved, peak, unit. `tuning` collects the autotuning (record_tuning). Rows and skipped cases are appended
    to `rows` and `skipped` where given, as each op finishes: a caller cut short keeps what was measured."""
    es = torch.finfo(dtype).bits // 8
    rows, skipped = (rows if rows is not None else []), (skipped if skipped is not None else [])
    for shape in shapes:
        batch = shape["members"] * shape["batch_samples"]
        seq, width, heads = shape["n_ctx"], shape["width"], shape["heads"]
        for name, op in OPS.items():
            if time.monotonic() > deadline:
                skipped.append(f"{name} at {shape_label(shape)}")
                continue

            def make(dims: tuple[int, ...]) -> torch.Tensor:
                return torch.randn(*dims, dtype=dtype, device=device).requires_grad_()

            inputs = op_inputs(op, shape, make)
            nbytes, flops = op.cost(batch, seq, width, heads, es)
            fns = backend_fns(op, device)
            times = {}
            for b in backends:
                if time.monotonic() > deadline:  # a backend's first call compiles: the budget is checked before each
                    skipped.append(f"{name} {b} at {shape_label(shape)}")
                    continue
                try:
                    times[b] = time_ms(fwd_bwd(fns[b], inputs), device)
                except Exception as err:  # one backend failing (a compile error) must not cost the others' numbers
                    times[b] = float("nan")
                    skipped.append(f"{name} {b} at {shape_label(shape)}: {type(err).__name__}: {str(err)[:200]}")
            if tuning is not None:
                record_tuning(tuning)
            for backend, ms in times.items():
                achieved = nbytes / ms / 1e6 if nbytes is not None else flops / ms / 1e9
                rows.append(
                    {
                        "op": name,
                        "shape": shape_label(shape),
                        "dtype": str(dtype).removeprefix("torch."),
                        "backend": backend,
                        "ms": ms,
                        "speedup_vs_eager": times["eager"] / ms if "eager" in times else float("nan"),
                        "achieved": achieved,
                        "peak": peak["copy_gbps"] if nbytes is not None else peak["matmul_tflops"],
                        "unit": "GB/s" if nbytes is not None else "TFLOP/s",
                    }
                )
    return rows, skipped


def _autotuners() -> list[tuple[str, object]]:
    """(kernel name, its triton autotuner) of every Tunable whose autotuner has been built (it ran on a GPU)."""
    import sys

    found = []
    for module_name, module in sorted(sys.modules.items()):
        if module_name.startswith("replicate.kernels.") and module is not None:
            for attr, value in vars(module).items():
                tuned = getattr(value, "__dict__", {}).get("_tuned")  # functools.cached_property's slot
                if tuned is not None:
                    found.append((f"{module_name.rsplit('.', 1)[-1]}.{attr}", tuned))
    return found


def record_tuning(seen: dict[tuple[str, str], dict]) -> None:
    """Add to `seen` every (kernel, tuning key) tuned since the last call: its best config and the timings of
    every config tried (Triton keeps only the last tuning's, so call this after each case)."""
    for kernel, tuner in _autotuners():
        timings = getattr(tuner, "configs_timings", None) or {}
        for key, best in getattr(tuner, "cache", {}).items():
            if (kernel, str(key)) not in seen:
                seen[(kernel, str(key))] = {
                    "kernel": kernel,
                    "key": [str(k) for k in key],
                    "best": str(best),
                    "timings_ms": {
                        str(c): t if isinstance(t, float) else list(map(float, t)) for c, t in timings.items()
                    },
                }
