import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_sweep import SMALL, _table

import replicate.device.checks as device_checks_module
import replicate.device.run as device_run_module
from replicate.device.call import Call, Stage, StageTimeout
from replicate.device.checks import Checks
from replicate.device.ingest import ingest
from replicate.device.run import FIXED_FILES, MAX_FILES, call_commit, device_run
from replicate.profile import load_profile, named_shape
from replicate.provenance import git_sha, tree_digest
from replicate.runs import next_profile, study_status
from replicate.training.sweep import sweep

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


@pytest.fixture
def one(tmp_path: Path) -> Path:
    """A profile of one group (two learning rates stacked): the least training a call can do."""
    path = tmp_path / "one.toml"
    text = SMALL.replace("{rows}", "8").replace("batch_sizes = [4, 8]", "batch_sizes = [4]")
    path.write_text(text[: text.index("[holdout]")])
    return path


def _bench(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]


def _no_checks(monkeypatch) -> None:
    """Calls that only train (and measure with the time left): the checks are the other tests' subject."""
    monkeypatch.setattr(Checks, "stages", lambda self: [])


def test_device_calls_in_chunks_ingest_to_the_uninterrupted_table(
    tmp_path, tiny, monkeypatch, in_process, pausing_clock, request
):
    import replicate.training.sweep as sweep_module

    # one commit for the reference and the calls, with or without .git (a call takes the source's digest there)
    monkeypatch.setenv("REPLICATE_GIT_SHA", "0123456789ab")
    git_sha.cache_clear()
    request.addfinalizer(git_sha.cache_clear)
    profile = load_profile(str(tiny))
    reference = sweep(profile, tmp_path / "ref", device="cpu", log=lambda msg: None)
    assert reference.left == 0
    # each call starts a group at once (no group seems to fit, one starts anyway, and the device checks, the next
    # test's, take no time here) and pauses it at its next 16-step boundary (pausing_clock)
    monkeypatch.setattr(sweep_module, "MIN_START_S", 0.0)
    monkeypatch.setattr(sweep_module.Estimator, "seconds", lambda self, group: 1e6)
    _no_checks(monkeypatch)
    results, calls, paused = tmp_path / "results", 0, 0
    while calls < 30:
        calls += 1
        out = tmp_path / f"out{calls}"  # a fresh $OUT each call, as on the device machine
        result = device_run(out, profile=str(tiny), results=results, deadline_s=0.5, device="cpu")
        files = sorted(p.name for p in out.iterdir())
        manifest = json.loads((out / "manifest.json").read_text())
        assert len(files) <= MAX_FILES and set(FIXED_FILES) <= set(files) and sorted(manifest["files"]) == files
        assert manifest["runs_added"] == result.runs_added == len({r["run_id"] for r in _table(out / "runs.csv")})
        # a call that finishes its training early measures steps with the time left ("step" rows)
        bench = _bench(out)
        assert {row["kind"] for row in bench} <= {"group", "step"}, bench
        assert all(row["step_ms"] > 0 and row["git_sha"] for row in bench if row["kind"] == "group")
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


def test_a_call_runs_every_stage_and_ingest_stops_on_rows_that_contradict_the_table(tmp_path, one, tiny):
    """The whole call on the CPU: the checks (logic checks here), training, then the steps timed at the measured
    profile's shapes, the costliest group first; then ingest, which refuses a row that contradicts the table."""
    from replicate.device.checks import by_cost

    results, out = tmp_path / "results", tmp_path / "out"
    result = device_run(out, profile=str(one), measure=str(tiny), results=results, deadline_s=600.0, device="cpu")
    manifest = json.loads((out / "manifest.json").read_text())
    stages = ["preflight", "capture", "precision", "streams", "train", "measure"]
    assert [s["stage"] for s in manifest["stages"]] == stages and manifest["status"] == "finished"
    assert all(s["status"] == "ok" for s in manifest["stages"]) and not result.failed, manifest["stages"]
    assert sum(s["box_s"] for s in manifest["stages"][:4]) < 600.0 and manifest["runs_added"] == 2
    bench = _bench(out)
    preflight = {r["check"]: r for r in bench if r["kind"] == "preflight"}
    assert list(preflight) == ["env", "graph_rng", "triton_ops", "bench_api"]
    assert all(r["status"] == "ok" for r in preflight.values()), preflight
    assert len(preflight["triton_ops"]["errors"]) == 5  # every op of the catalog, against the reference
    assert {r["backend"] for r in bench if r["kind"] == "group"} == {"auto"}  # verified: auto may take Triton
    checks = {r["kind"]: r for r in bench if r["kind"].endswith("_check")}
    assert [r["groups"] for r in checks["stream_check"]["rows"]] == [1, 2, 4, 8]
    assert all(r["round_ms"] > 0 for r in checks["stream_check"]["rows"])
    # on the CPU both are the eager fp32 step
    assert (
        checks["capture_check"]["max_rel_loss_diff"] == 0.0 and checks["precision_check"]["bf16_rel_loss_diff"] == 0.0
    )
    steps = [r for r in bench if r["kind"] == "step"]
    assert [r["run_id"] for r in steps] == [g.runs[0].run_id for g in by_cost(load_profile(str(tiny)))]
    assert all(r["ms"] > 0 and r["profile"] == "tiny" and not r["captured"] for r in steps)
    assert ingest(out, results).runs_added == 2
    before = (results / "one" / "runs.csv").read_text()
    lines = (out / "runs.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[5] = repr(float(cells[5]) * 1.01)  # val_loss of a run the table holds
    (out / "runs.csv").write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")
    bad = _cli("ingest", str(out), "--results", str(results))
    assert bad.returncode == 2 and "differ" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert (results / "one" / "runs.csv").read_text() == before


def test_device_run_and_ingest_refuse_bad_arguments_with_exit_2(tmp_path, tiny):
    (tmp_path / "full").mkdir()  # an earlier call's folder
    (tmp_path / "full" / "manifest.json").write_text("x")
    (tmp_path / "wrapped").mkdir()  # a wrapper's log leaves room for 7 files, not 8
    (tmp_path / "wrapped" / "call.log").write_text("x")
    cases = [
        ("device-run", "--profile", str(tiny), "--out", str(tmp_path / "full"), "--device", "cpu"),
        ("device-run", "--profile", str(tiny), "--out", str(tmp_path / "wrapped"), "--max-files", "4"),
        ("device-run", "--profile", str(tiny), "--out", str(tmp_path / "o"), "--deadline-s", "-1"),
        ("device-run", "--profile", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o2")),
        ("device-run", "--profile", str(tiny), "--measure", "none", "--out", str(tmp_path / "o3")),
        ("ingest", str(tmp_path / "missing")),
        ("ingest", str(tmp_path / "full")),
        ("status", str(tmp_path / "full")),
    ]
    for args in cases:
        out = _cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not any((tmp_path / o).exists() for o in ("o", "o2", "o3"))
    assert sorted(p.name for p in (tmp_path / "wrapped").iterdir()) == ["call.log"]


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
    assert load_profile("study").after == "stage_a" and not load_profile("stage_a").after  # the plan is data
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


def test_a_capture_failure_is_recorded_and_the_other_checks_and_training_go_on_eagerly(tmp_path, one, monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(device_checks_module, "capture_check", fails)
    monkeypatch.setattr("replicate.device.preflight.preflight", lambda *args: "not this test's subject")
    out = tmp_path / "out"
    result = device_run(
        out, profile=str(one), measure=str(one), results=tmp_path / "results", deadline_s=600.0, device="cpu"
    )
    manifest = json.loads((out / "manifest.json").read_text())
    status = {s["stage"]: s["status"] for s in manifest["stages"]}
    assert status == {s: "ok" for s in ("preflight", "precision", "streams", "train", "measure")} | {
        "capture": "failed"
    }
    assert result.failed == ["capture"] and "not permitted" in manifest["stages"][1]["summary"]
    assert manifest["runs_added"] == result.runs_added == 2 and manifest["status"] == "finished"
    bench = _bench(out)
    assert "not permitted" in next(r for r in bench if r["kind"] == "capture_check")["error"]
    later = [r for r in bench if r["kind"] in ("precision_check", "stream_check", "group")]
    assert len(later) == 3 and not any(r["capture"] for r in later)
    # this preflight verified no Triton op: backend auto trained with PyTorch's ops
    assert [r["backend"] for r in later if r["kind"] == "group"] == ["torch"]
    assert "Traceback" in (out / "device_run.log").read_text()  # stderr is in the log
    cli = _cli(
        "device-run", "--profile", str(one), "--out", str(tmp_path / "cli"), "--device", "cpu", "--deadline-s", "1"
    )
    assert cli.returncode in (0, 1), cli.stderr  # a call too short for anything still returns its files
    # and, where its box let the group start (a fast machine calibrates it as fitting), that group's paused state
    names = {p.name for p in (tmp_path / "cli").iterdir()}
    assert set(FIXED_FILES) <= names and all(name.startswith("paused_") for name in names - set(FIXED_FILES))


def test_sigterm_mid_run_leaves_a_manifest_and_the_finished_rows_that_ingest_accepts(tmp_path, tiny, monkeypatch):
    """SIGTERM after the first finished group, another in flight (two workers): the call stops there, its
    worker terminated, and writes the rows it has and the manifest; the log was written as it went."""
    _no_checks(monkeypatch)
    copy_rows = device_run_module._copy_rows

    def then_terminate(call, *args):
        copy_rows(call, *args)
        if call.manifest.get("runs_added"):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(device_run_module, "_copy_rows", then_terminate)
    previous = signal.getsignal(signal.SIGTERM)
    out, results = tmp_path / "out", tmp_path / "results"
    result = device_run(out, profile=str(tiny), results=results, deadline_s=600.0, device="cpu", workers=2)
    assert signal.getsignal(signal.SIGTERM) is previous
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.status == manifest["status"] == "interrupted" and not multiprocessing.active_children()
    assert [(s["stage"], s["status"]) for s in manifest["stages"]] == [("train", "interrupted")]
    assert manifest["running"] is None and 0 < manifest["runs_added"] < len(load_profile(str(tiny)).runs)
    assert len(_table(out / "runs.csv")) > 0 and "SIGTERM" in (out / "device_run.log").read_text()
    assert sum(r["kind"] == "group" for r in _bench(out)) == len({r["run_id"] for r in _table(out / "runs.csv")})
    done = ingest(out, results)
    assert done.runs_added == manifest["runs_added"] and not done.complete


def test_a_folder_cut_short_by_a_kill_is_still_one_that_ingest_accepts(tmp_path, one):
    """What a SIGKILL leaves: the manifest of the stage in flight, the rows so far; ingest takes it."""
    out, results = tmp_path / "out", tmp_path / "results"
    call = Call(out, 60.0, FIXED_FILES, MAX_FILES)
    prof = load_profile(str(one))
    call.manifest = {"study": prof.name, "call": "killed", "profile_toml": one.read_text()}
    with call.opened():
        device_run_module._copy_rows(call, prof, tmp_path, set())
        call.write_manifest("running", "train")
        print("a line before the kill")
        assert "a line before the kill" in (out / "device_run.log").read_text()  # line-buffered
    assert json.loads((out / "manifest.json").read_text())["running"] == "train"
    assert ingest(out, results).runs_added == 0 and (results / "one" / "device_logs" / "killed.log").is_file()


def test_every_stage_keeps_its_time_box_and_a_failure_is_the_stage_s_result(tmp_path):
    """A stage that loops past its box is interrupted there; one stuck where Python cannot interrupt it (SIGALRM
    blocked, as in a compiler's C++) leaves its stack in the log (the watchdog) and is cut when it returns; one
    that raises is recorded; the next stage runs after each, and the last gets what is left of the deadline."""
    call = Call(tmp_path / "out", 10.0, FIXED_FILES, MAX_FILES)
    seen = {}

    def loops(deadline: float) -> str:
        while True:
            time.sleep(0.01)

    def stuck(deadline: float) -> str:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            time.sleep(deadline - time.monotonic() + 2.5)  # past the box, its grace and the watchdog's
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        return "returned"

    def fails(deadline: float) -> str:
        raise ValueError("a bug")

    def rest(deadline: float) -> str:
        seen["deadline"] = deadline
        return "ok"

    stages = [
        Stage("loops", 0.05, loops),
        Stage("stuck", 0.05, stuck),
        Stage("fails", 0.05, fails),
        Stage("rest", None, rest),
    ]
    with call.opened():
        records = [call.run(stage) for stage in stages]
    assert [r["status"] for r in records] == ["timeout", "timeout", "failed", "ok"]
    assert all(r["box_s"] == 0.5 for r in records[:3]) and "a bug" in records[2]["summary"]
    assert records[0]["seconds"] < 0.5 + 0.55 + 1.0  # the box and its grace, give or take a busy machine
    assert abs(seen["deadline"] - (call.end - call.reserve)) < 1e-6
    log = (tmp_path / "out" / "device_run.log").read_text()
    assert "Timeout (0:00:01" in log and "in stuck" in log  # faulthandler's dump of the stuck stage
    assert [s["stage"] for s in json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]] == [
        s.name for s in stages
    ]


def test_never_more_than_max_files_come_back_and_bundled_states_are_ingested(tmp_path, tiny, monkeypatch):
    """Five paused states carried in and a wrapper's file already in OUT: the states that do not get a file of
    their own travel in one archive, the folder holds at most --max-files files, and ingest unpacks them."""
    _no_checks(monkeypatch)
    monkeypatch.setattr(device_run_module, "_train_stage", lambda *args: Stage("train", None, lambda d: "none"))
    monkeypatch.setattr(Checks, "measure", lambda self, deadline: "none")
    results, paused = tmp_path / "results", tmp_path / "results" / "tiny" / "paused"
    paused.mkdir(parents=True)
    states = {f"s{k}.pt": bytes([k]) * (100 + k) for k in range(5)}
    for name, data in states.items():
        (paused / name).write_bytes(data)
    for max_files, archives in ((8, 1), (6, 1), (5, 0)):
        out = tmp_path / f"out{max_files}"
        out.mkdir()
        (out / "call.log").write_text("a wrapper's")
        result = device_run(out, profile=str(tiny), results=results, deadline_s=60.0, device="cpu", max_files=max_files)
        files = sorted(p.name for p in out.iterdir())
        assert len(files) <= max_files and sorted(result.files + ["call.log"]) == files
        assert sum(f.endswith(".tar") for f in files) == archives
        manifest = json.loads((out / "manifest.json").read_text())
        assert (sorted(manifest["paused"]), manifest["foreign_files"]) == (
            sorted(states) if archives else [],
            ["call.log"],
        )
        fresh = tmp_path / f"fresh{max_files}"
        assert ingest(out, fresh).paused == (5 if archives else 0)
        assert {p.name: p.read_bytes() for p in (fresh / "tiny" / "paused").glob("*.pt")} == (
            states if archives else {}
        )


def test_a_call_without_a_commit_carries_the_digest_of_its_source(tmp_path, monkeypatch):
    unknown = lambda: "unknown"  # noqa: E731 (git_sha's stand-in: no $REPLICATE_GIT_SHA, no .git)
    unknown.cache_clear = lambda: None
    monkeypatch.setattr(device_run_module, "git_sha", unknown)
    # set, then unset: monkeypatch records the variable, so the value call_commit writes is undone after the test
    # (a bare delenv of an unset variable records nothing, and later tests' subprocesses would inherit it)
    monkeypatch.setenv("REPLICATE_GIT_SHA", "")
    monkeypatch.delenv("REPLICATE_GIT_SHA")
    sha = call_commit()
    assert sha == f"tree-{tree_digest()}" and os.environ["REPLICATE_GIT_SHA"] == sha  # the workers' rows too
    for name in ("a", "b"):
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "m.py").write_text("x = 1\n")
        (tmp_path / name / "notes.txt").write_text(name)  # not source
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    (tmp_path / "b" / "sub" / "m.py").write_text("x = 2\n")
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "b")


def test_ingest_holds_the_calls_source_to_the_commit_its_rows_name(tmp_path):
    """The manifest's tree digest against the digest of the named commit's source, in a repository of its own:
    the same source agrees; an edit made before the call and never committed is named."""
    from replicate.device.ingest import source_check

    source = tmp_path / "src" / "replicate"
    source.mkdir(parents=True)
    (source / "m.py").write_text("x = 1\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "m"]):
        subprocess.run([*git, *args], cwd=tmp_path, check=True, capture_output=True)
    sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    sha = sha.stdout.strip()
    ran = {"git_sha": sha, "tree_digest": tree_digest(source)}
    assert source_check(ran, tmp_path) == f"the call ran commit {sha}'s source"
    (source / "m.py").write_text("x = 2\n")  # edited, not committed, and the call runs the edit
    edited = source_check({"git_sha": sha, "tree_digest": tree_digest(source)}, tmp_path)
    assert edited.startswith(f"the call ran source tree-{tree_digest(source)}, not commit {sha}'s")
    unknown = source_check({"git_sha": "0123456789ab", "tree_digest": "x"}, tmp_path)
    assert unknown.startswith("commit 0123456789ab is not in this repository")
    assert source_check({"git_sha": sha}, tmp_path).startswith("the call recorded no tree digest")
    assert source_check({"git_sha": "tree-abc", "tree_digest": "abc"}, tmp_path) == ""


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


def _kernel_folder(path: Path, profile: Path, lines: list[dict]) -> Path:
    """A device run's folder that holds only bench lines (what ingest reads of a kernel benchmark)."""
    path.mkdir()
    (path / "manifest.json").write_text(
        json.dumps({"study": "tiny", "call": path.name, "profile_toml": profile.read_text()})
    )
    (path / "bench.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_ingest_merges_kernel_rows_per_op_shape_backend_and_device_and_the_complete_cases_of_a_partial_one(
    tmp_path, tiny
):
    """The kernel lines (kernels.bench.op_rows, here on the interpreter at a tiny shape) become kernels.csv rows,
    replacing only the rows of the same op, shape, dtype, backend and device; of a benchmark cut short or with
    cases skipped, only the cases timed with every backend go in, and the others are named."""
    from replicate.kernels import OPS
    from replicate.kernels.bench import COLUMNS, op_rows

    shape = {"width": 32, "depth": 2, "heads": 2, "n_ctx": 16, "batch_samples": 1, "members": 2}
    peak = {"copy_gbps": 1.0, "matmul_tflops": 1.0}
    rows, skipped = op_rows([shape], torch.device("cpu"), torch.float32, float("inf"), peak, ("eager", "triton"))
    assert not skipped and len(rows) == 2 * len(OPS)
    env = {"device": "gpu A", "torch": "t", "triton": "t", "git_sha": "abc"}
    tuning = {"kind": "autotune", "tuning": [{"kernel": "k", "key": ["1"], "best": "x"}], **env}
    done = {"kind": "kernel_benchmark", "rows": len(rows), "skipped": [], "complete": True}
    results = tmp_path / "results"
    first = [{"kind": "kernel", **row, **env} for row in rows]
    ingest(_kernel_folder(tmp_path / "a", tiny, [*first, tuning, done]), results)
    table = _table(results / "benchmarks" / "kernels.csv")
    assert list(table[0]) == list(COLUMNS) and len(table) == len(rows)
    assert {(r["op"], r["backend"]) for r in table} == {(op, b) for op in OPS for b in ("eager", "triton")}
    # a second device, and one case of the first measured again (its eager row changed)
    second = [{**line, "device": "gpu B"} for line in first] + [{**first[0], "ms": 123.0}, first[1]]
    tuning_b = {**tuning, "device": "gpu B", "tuning": [{"kernel": "k", "key": ["1"], "best": "y"}]}
    ingest(_kernel_folder(tmp_path / "b", tiny, [*second, tuning_b, done]), results)
    table = _table(results / "benchmarks" / "kernels.csv")
    assert len(table) == 2 * len(rows) and sum(r["device"] == "gpu B" for r in table) == len(rows)
    assert [r["ms"] for r in table if r["device"] == "gpu A"] == ["123"] + [f"{r['ms']:.4g}" for r in rows[1:]]
    tuned = json.loads((results / "benchmarks" / "kernels_tuning.json").read_text())["tuning"]
    assert sorted((t["device"], t["best"]) for t in tuned) == [("gpu A", "x"), ("gpu B", "y")]
    kernels = results / "benchmarks" / "kernels.csv"
    before = kernels.read_bytes()
    # a third device's benchmark cut short inside the second op (its triton row never came), and one with the
    # last op's triton failing (NaN) and its summary naming the skipped case
    third = [{**line, "device": "gpu C"} for line in first]
    failed = [*third[:-1], {**third[-1], "ms": float("nan")}]
    partial = [*failed, {**done, "skipped": [f"{third[-1]['op']} triton at {third[-1]['shape']}"], "complete": False}]
    skipped = ingest(_kernel_folder(tmp_path / "skipped", tiny, partial), results, skip_kernels=True)
    assert kernels.read_bytes() == before and skipped.kernel_cases == 0  # --skip-kernels: the tables as they were
    assert json.dumps(partial[-1]) in (results / "benchmarks" / "device_steps.jsonl").read_text()  # lines kept
    cut = _cli("ingest", str(_kernel_folder(tmp_path / "cut", tiny, third[:3])), "--results", str(results))
    assert cut.returncode == 0 and "no end to the benchmark" in cut.stdout and "1 cases merged" in cut.stdout
    case = f"{third[2]['op']} {third[2]['dtype']} at {third[2]['shape']} on gpu C (triton missing)"
    assert f"1 incomplete left out ({case})" in cut.stdout
    assert [(r["op"], r["backend"]) for r in _table(kernels) if r["device"] == "gpu C"] == [
        (third[0]["op"], "eager"),
        (third[1]["op"], "triton"),
    ]
    result = ingest(_kernel_folder(tmp_path / "failed", tiny, partial), results)
    assert result.kernel_state.startswith("1 cases skipped") and result.kernel_cases == len(OPS) - 1
    assert result.kernel_cases_left == (f"{third[-1]['op']} float32 at {third[-1]['shape']} on gpu C (triton missing)",)
    merged = {r["op"] for r in _table(kernels) if r["device"] == "gpu C"}
    assert merged == set(OPS) - {third[-1]["op"]}


def test_the_kernel_benchmark_times_the_training_step_first_and_checks_its_budget_per_backend(monkeypatch):
    """On a clock that advances one second per timing: the captured step's rows come first, and the budget is
    checked before each backend, so the deadline cuts between backends of one op (nothing runs past it)."""
    import replicate.kernels.bench as bench

    clock, calls = [0.0], []

    def timing_of(what):
        def time_it(*args, **kwargs):
            calls.append(what(*args))
            clock[0] += 1.0
            return 1.0

        return time_it

    fake_time = type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])})
    monkeypatch.setattr(device_checks_module, "time", fake_time)
    monkeypatch.setattr(bench, "time", fake_time)
    monkeypatch.setattr(
        device_checks_module, "step_ms", timing_of(lambda cfgs, device, backend, *rest: ("step", backend))
    )
    monkeypatch.setattr(bench, "fwd_bwd", lambda fn, inputs: fn)
    monkeypatch.setattr(bench, "backend_fns", lambda op, device: {b: b for b in bench.BACKENDS})
    monkeypatch.setattr(bench, "time_ms", timing_of(lambda fn, device: ("op", fn)))
    monkeypatch.setattr(bench, "peaks", lambda device: {"copy_gbps": 1.0, "matmul_tflops": 1.0})
    groups = [g.cfgs for g in load_profile("stage_l").bench_groups()]
    for deadline, expected in ((2.5, 3), (5.5, 6)):
        clock[0], calls[:] = 0.0, []
        bench_run = device_checks_module.kernel_benchmark(groups, torch.device("cpu"), torch.float32, deadline)
        assert len(calls) == expected and clock[0] <= deadline + 1.0
        assert calls[:4] == [("step", "torch"), ("step", "triton"), ("step", "torch"), ("step", "triton")][: len(calls)]
        assert [r["op"] for r in bench_run["rows"]][:3] == ["train_step (captured)"] * 3
        # 2.5: the large group's Triton step and every op at both shapes; 5.5: all but the first op's first two
        assert len(bench_run["skipped"]) == {2.5: 1 + 2 * len(bench.OPS), 5.5: 2 * len(bench.OPS)}[deadline]
    assert calls[4:] == [("op", "eager"), ("op", "compile")]  # layernorm_modulate at the largest group, in time
    dearest = bench.shape_label(named_shape(groups[-1]))
    assert bench_run["skipped"][0] == f"layernorm_modulate triton at {dearest}"  # cut between backends


def test_the_kernel_stage_writes_what_it_measured_however_it_ends(tmp_path, monkeypatch):
    def cut_short(groups, dev, dtype, deadline, steps, capture, rows, skipped, tuning):
        rows.append({"op": "gelu_tanh", "shape": "s", "backend": "eager", "ms": 1.0})
        raise StageTimeout("past its box")

    monkeypatch.setattr(device_checks_module, "kernel_benchmark", cut_short)
    (tmp_path / "bench.jsonl").touch()
    checks = Checks(load_profile("stage_l"), tmp_path, torch.device("cpu"), "auto", {"git_sha": "abc"}, tmp_path)
    with pytest.raises(StageTimeout):
        checks.check_kernels(time.monotonic() + 60)
    bench = _bench(tmp_path)
    assert [r["kind"] for r in bench] == ["kernel", "autotune", "kernel_benchmark"]
    assert bench[-1]["complete"] is False and bench[0]["git_sha"] == "abc"


def test_backend_auto_keeps_the_triton_ops_only_where_the_preflight_verified_them(tmp_path, one, capsys):
    """Checks.gate_triton on the preflight's triton_ops status (a call's end to end: the capture-failure test,
    whose preflight verifies nothing, trains with PyTorch's ops; the whole-call test keeps auto)."""
    for status, backend, kept in (("ok", "auto", "auto"), ("failed", "auto", "torch"), ("partial", "auto", "torch"),
                                  ("not run", "auto", "torch"), ("failed", "triton", "triton")):  # fmt: skip
        checks = Checks(load_profile(str(one)), tmp_path, torch.device("cpu"), backend, {}, tmp_path)
        checks.gate_triton(status)
        assert checks.backend == kept, (status, backend)
        assert (f"not verified ({status})" in capsys.readouterr().out) == (kept != backend)


def test_device_run_options_left_out_take_device_runs_own_defaults_which_their_help_names():
    import argparse
    import inspect

    from replicate.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["device-run"]
    actions = {a.dest: a for a in sub._actions}
    defaults = inspect.signature(device_run).parameters
    for key in ("profile", "measure", "deadline_s", "max_files"):
        assert actions[key].default is None  # not passed: device_run's own default applies
        default = defaults[key].default
        shown = f"{default:g}" if isinstance(default, float | int) else default
        assert f"default {shown}" in actions[key].help or f"{shown} (the default" in actions[key].help, key
