import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_sweep import SMALL, _table

from replicate.device_run import FIXED_FILES, MAX_FILES, device_run, ingest
from replicate.profile import load_profile
from replicate.runs import next_profile, study_status
from replicate.sweep import sweep

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "replicate", *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SMALL.replace("{rows}", "0"))
    return path


def test_device_calls_in_chunks_ingest_to_the_uninterrupted_table(tmp_path, tiny, monkeypatch):
    import replicate.device_run as device_run_module
    import replicate.sweep as sweep_module

    profile = load_profile(str(tiny))
    reference = sweep(profile, tmp_path / "ref", device="cpu", log=lambda msg: None)
    assert reference.left == 0
    # each call starts one group at once and pauses it at step 16 (its worker takes longer than 0.45 s to start):
    # no group seems to fit, one starts anyway, and the device checks (the next test's) take no time here
    monkeypatch.setattr(sweep_module, "MIN_START_S", 0.0)
    monkeypatch.setattr(sweep_module.Estimator, "seconds", lambda self, group: 1e6)
    monkeypatch.setattr(device_run_module, "device_checks", lambda *args: None)
    results, calls, paused = tmp_path / "results", 0, 0
    while calls < 30:
        calls += 1
        out = tmp_path / f"out{calls}"  # a fresh $OUT each call, as on the device machine
        result = device_run(out, profile=str(tiny), results=results, deadline_s=0.5, device="cpu")
        files = sorted(p.name for p in out.iterdir())
        manifest = json.loads((out / "manifest.json").read_text())
        assert len(files) <= MAX_FILES and set(FIXED_FILES) <= set(files) and sorted(manifest["files"]) == files
        assert manifest["runs_added"] == result.runs_added == len({r["run_id"] for r in _table(out / "runs.csv")})
        bench = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
        assert all(row["kind"] == "group" and row["step_ms"] > 0 and row["git_sha"] for row in bench)
        paused += len(manifest["paused"])
        ingest(out, results)  # the paused states move out of this folder into results/tiny/paused
        if manifest["complete"]:
            break
    assert manifest["complete"] and paused > 0, (calls, paused)
    assert _table(results / "tiny" / "runs.csv") == _table(tmp_path / "ref" / "runs.csv")
    assert not list((results / "tiny" / "paused").glob("*.pt"))
    steps = [json.loads(line) for line in (results / "benchmarks" / "device_steps.jsonl").read_text().splitlines()]
    assert sum(row["kind"] == "group" for row in steps) == len(profile.groups)
    # ingesting a folder again changes nothing
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    for k in range(1, calls + 1):
        ingest(tmp_path / f"out{k}", results)
    assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before
    assert study_status(results / "tiny") == (len(profile.runs), len(profile.runs))


def test_ingest_stops_on_rows_that_contradict_the_table(tmp_path, tiny):
    results, out = tmp_path / "results", tmp_path / "out"
    device_run(out, profile=str(tiny), results=results, deadline_s=600.0, device="cpu")
    checks = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()][:3]
    assert [c["kind"] for c in checks] == ["capture_check", "precision_check", "stream_check"]
    assert [r["groups"] for r in checks[2]["rows"]] == [1, 2, 4, 8] and all(
        r["round_ms"] > 0 for r in checks[2]["rows"]
    )
    # on the CPU both are the eager fp32 step
    assert checks[0]["max_rel_loss_diff"] == 0.0 and checks[1]["bf16_rel_loss_diff"] == 0.0
    assert _cli("ingest", str(out), "--results", str(results)).returncode == 0
    before = (results / "tiny" / "runs.csv").read_text()
    lines = (out / "runs.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[5] = repr(float(cells[5]) * 1.01)  # val_loss of a run the table holds
    (out / "runs.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    bad = _cli("ingest", str(out), "--results", str(results))
    assert bad.returncode == 2 and "differ" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert (results / "tiny" / "runs.csv").read_text() == before


def test_device_run_and_ingest_refuse_bad_arguments_with_exit_2(tmp_path, tiny):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.csv").write_text("x")
    cases = [
        ("device-run", "--profile", str(tiny), "--out", str(tmp_path / "full"), "--device", "cpu"),
        ("device-run", "--profile", str(tiny), "--out", str(tmp_path / "o"), "--deadline-s", "-1"),
        ("device-run", "--profile", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o2")),
        ("ingest", str(tmp_path / "missing")),
        ("ingest", str(tmp_path / "full")),
        ("status", str(tmp_path / "full")),
    ]
    for args in cases:
        out = _cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine may train a CUDA profile")
def test_a_profile_designed_for_cuda_is_not_swept_on_the_cpu_unless_asked(tmp_path, tiny):
    cuda = tmp_path / "gpu_only.toml"
    cuda.write_text('device = "cuda"\n' + tiny.read_text())
    refused = _cli("sweep", "--profile", str(cuda), "--out", str(tmp_path / "out"))
    assert refused.returncode == 2 and "--device cpu" in refused.stderr
    assert not (tmp_path / "out" / "runs.csv").exists()
    asked = _cli("sweep", "--profile", str(cuda), "--out", str(tmp_path / "out"), "--device", "cpu", "--dry-run")
    assert asked.returncode == 0, asked.stderr


def test_the_next_profile_is_stage_a_until_it_is_complete_and_a_go(tmp_path):
    assert next_profile(tmp_path) == "stage_a"
    done, total = study_status(ROOT / "results" / "stage_a")
    verdict = json.loads((ROOT / "results" / "stage_a" / "summary.json").read_text())["verdict"]
    assert next_profile(ROOT / "results") == ("stage_a" if done < total or verdict == "no-go" else "study")
    complete = tmp_path / "stage_a"
    complete.mkdir()
    (complete / "profile.toml").write_text((ROOT / "results" / "stage_a" / "profile.toml").read_text())
    (complete / "runs.csv").write_text("")
    assert next_profile(tmp_path) == "stage_a"  # nothing finished
    # every run finished: the study, unless Stage A said no-go
    profile = load_profile(str(complete / "profile.toml"))
    from replicate.runs import COLUMNS

    (complete / "runs.csv").write_text(",".join(COLUMNS) + "\n" + "".join(f"{r.run_id}\n" for r in profile.runs))
    assert next_profile(tmp_path) == "study"
    (complete / "summary.json").write_text(json.dumps({"verdict": "no-go"}))
    assert next_profile(tmp_path) == "stage_a"
    status = _cli("status", str(ROOT / "results" / "stage_a"))
    assert status.returncode == (0 if done == total else 1) and f"{done}/{total}" in status.stdout


def test_a_step_that_cannot_be_captured_stops_the_call_cleanly(tmp_path, tiny, monkeypatch):
    import replicate.device_checks as device_checks_module

    def fails(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(device_checks_module, "capture_check", fails)
    out = tmp_path / "out"
    result = device_run(out, profile=str(tiny), results=tmp_path / "results", deadline_s=600.0, device="cpu")
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.error and "capturing the step failed" in manifest["error"] and manifest["runs_added"] == 0
    bench = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    assert bench == [bench[0]] and "not permitted" in bench[0]["error"]
    assert "device run stopped" in (out / "device_run.log").read_text()


def test_a_dry_run_states_the_cost_on_the_devices_that_device_runs_measured(tmp_path, tiny):
    results = tmp_path / "results"
    out = _cli("sweep", "--profile", str(tiny), "--out", str(results / "tiny"), "--device", "cpu", "--dry-run")
    assert out.returncode == 0 and "no device run has measured" in out.stdout
    (results / "benchmarks").mkdir()
    shape = {"width": 32, "depth": 1, "heads": 2, "n_ctx": 16, "batch_samples": 4, "members": 1}
    line = {"kind": "group", "device": "NVIDIA H200", "backend": "auto", **shape, "steps": 32, "train_s": 96.0}
    (results / "benchmarks" / "device_steps.jsonl").write_text(json.dumps(line) + "\n")
    out = _cli("sweep", "--profile", str(tiny), "--out", str(results / "tiny"), "--device", "cpu", "--dry-run")
    # the two 4-clip groups of size a (32 steps each at the measured 3 s per step)
    assert "on NVIDIA H200: 2 of the 5 pending groups have measured step times, about 3.2 min" in out.stdout


def test_ingest_turns_the_kernel_benchmark_into_the_kernel_tables(tmp_path, tiny):
    """The device run's kernel lines (kernels.bench.op_rows, here on the interpreter at a tiny shape) become
    results/benchmarks/kernels.csv, one row per op and backend, and its autotune line kernels_tuning.json."""
    from replicate.kernels import OPS
    from replicate.kernels.bench import COLUMNS, op_rows

    results, out = tmp_path / "results", tmp_path / "out"
    device_run(out, profile=str(tiny), results=results, deadline_s=600.0, device="cpu")
    shape = {"width": 32, "depth": 2, "heads": 2, "n_ctx": 16, "batch_samples": 1, "members": 2}
    peak = {"copy_gbps": 1.0, "matmul_tflops": 1.0}
    rows, skipped = op_rows([shape], torch.device("cpu"), torch.float32, float("inf"), peak, ("eager", "triton"))
    assert not skipped and len(rows) == 2 * len(OPS)
    env = {"device": "test", "torch": "t", "triton": "t", "git_sha": "abc"}
    with open(out / "bench.jsonl", "a") as f:
        for row in rows:
            f.write(json.dumps({"kind": "kernel", **row, **env}) + "\n")
        f.write(json.dumps({"kind": "autotune", "tuning": [{"kernel": "k", "key": ["1"]}], **env}) + "\n")
    ingest(out, results)
    table = _table(results / "benchmarks" / "kernels.csv")
    assert list(table[0]) == list(COLUMNS) and len(table) == len(rows)
    assert {(r["op"], r["backend"]) for r in table} == {(op, b) for op in OPS for b in ("eager", "triton")}
    tuning = json.loads((results / "benchmarks" / "kernels_tuning.json").read_text())
    assert tuning["tuning"] == [{"kernel": "k", "key": ["1"]}] and tuning["git_sha"] == "abc"
