import csv
import dataclasses
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from replicate.config import TrainConfig, count_params
from replicate.profile import Group, load_profile, run_id
from replicate.runs import COLUMNS
from replicate.training.sweep import Estimator, makespan, sweep

# 4 frames of 8 x 8 pixels: 16 tokens per clip. Six groups of about a second each.
TINY = """
description = "test"
workers = 1

[clip]
frames = 4
height = 8
width = 8

[train]
warmup_steps = 2
val_examples = 32

[grid]
checkpoints = [512, 1024, 2048]
batch_sizes = [4, 8]
lrs = [0.001, 0.01, 1.0]
ensemble_rows = {rows}

[[grid.sizes]]
name = "a"
width = 32
depth = 1
heads = 2

[[grid.sizes]]
name = "b"
width = 32
depth = 2
heads = 2

[fixed]
batch_size = 4
lr = 0.01

[holdout]
name = "c"
width = 64
depth = 1
heads = 4
batch_sizes = [4]
lrs = [0.01]
"""


# One fitting size, two learning rates: five short groups, for the tests that run several whole sweeps.
SMALL = TINY.replace("lrs = [0.001, 0.01, 1.0]", "lrs = [0.001, 0.01]").replace(
    '[[grid.sizes]]\nname = "b"\nwidth = 32\ndepth = 2\nheads = 2\n\n', ""
)


def _profile(tmp_path: Path, rows: int = 0, text: str = TINY) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(text.replace("{rows}", str(rows)))
    return path


# `replicate sweep` on the CPU, where identical configs give identical tables (also on a GPU machine)
SWEEP = [sys.executable, "-m", "replicate", "sweep", "--device", "cpu"]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*SWEEP, *args], capture_output=True, text=True, timeout=600, **kwargs)


def _table(path: Path) -> list[dict]:
    """The rows of runs.csv without wall_s, the one column that differs between identical sweeps."""
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def small_reference(tmp_path_factory) -> tuple[Path, Path]:
    """SMALL's profile and its uninterrupted sweep (`replicate sweep`), the table the other ways of running it
    (killed and resumed, through submitit, paused at deadlines) must reproduce."""
    folder = tmp_path_factory.mktemp("small")
    profile = _profile(folder, text=SMALL)
    done = _cli("--profile", str(profile), "--out", str(folder / "ref"))
    assert done.returncode == 0, done.stderr
    return profile, folder / "ref"


def test_profile_builds_runs_and_groups(tmp_path):
    profile = load_profile(str(_profile(tmp_path, rows=12)))
    fit = [r for r in profile.runs if r.role == "fit"]
    assert len(fit) == 2 * 2 * 3 and len(profile.runs) == len(fit) + 1
    # 12 // 4 = 3 learning rates together at batch size 4, one at a time at 8 (and for the held-out cell)
    assert sorted(len(g.runs) for g in profile.groups) == [1] * (2 * 3 + 1) + [3, 3]
    assert len({r.run_id for r in profile.runs}) == len(profile.runs)
    assert [r.index for r in profile.runs] == list(range(len(profile.runs)))
    assert (profile.fixed_batch_clips, profile.fixed_lr) == (4, 0.01)
    for name in ("smoke", "smoke_image", "cpu", "image", "gpu"):  # every shipped profile is valid
        shipped = load_profile(name)
        assert shipped.runs and any(r.role == "holdout" for r in shipped.runs), name
    assert load_profile("stage_a").runs  # one size, no held-out model


def test_the_cpu_profile_has_the_grid_the_study_needs():
    """The issue's spec of the cpu study, kept while the grid is cut to fit its 2-hour budget."""
    profile = load_profile("cpu")
    fit = [r for r in profile.runs if r.role == "fit"]
    sizes = sorted({count_params(r.cfg.model) for r in fit})
    assert len(sizes) >= 4 and sizes[-1] >= 10 * sizes[0]
    checkpoints = fit[0].cfg.checkpoints
    assert all(r.cfg.checkpoints == checkpoints for r in fit) and checkpoints[-1] >= 8 * checkpoints[0]
    batches = sorted({r.cfg.batch_clips for r in fit})
    assert len(batches) >= 4 and all(b == 2 * a for a, b in pairwise(batches))
    for n in sizes:
        lrs = sorted({r.cfg.lr for r in fit if count_params(r.cfg.model) == n})
        assert len(lrs) >= 5 and all(1.5 <= b / a <= 2 for a, b in pairwise(lrs))
        assert {(r.cfg.batch_clips, r.cfg.lr) for r in fit if count_params(r.cfg.model) == n} == {
            (b, lr) for b in batches for lr in lrs
        }  # the full grid at every size
    held = {count_params(r.cfg.model) for r in profile.runs if r.role == "holdout"}
    assert len(held) == 1 and 3 <= held.pop() / sizes[-1] <= 5


def test_seeds_train_together_and_lrs_follow_the_batch_ridge():
    profile = load_profile("stage_a")
    assert len(profile.groups) == 5  # one group per batch size: 2 seeds x 4 lrs
    for group in profile.groups:
        b = group.runs[0].cfg.batch_clips
        assert [r.cfg.seed for r in group.runs] == [0] * 4 + [1] * 4
        lrs = [r.cfg.lr for r in group.runs[:4]]
        assert lrs == [r.cfg.lr for r in group.runs[4:]]
        assert lrs == pytest.approx([1e-4 * 2**k * b**0.7 for k in range(4)], rel=1e-3)
    cpu = load_profile("cpu")  # without lr_batch_exponent every batch size has the size's lrs
    assert {r.cfg.lr for r in cpu.runs if r.cfg.batch_clips == 1 and r.size == "nano"} == {
        r.cfg.lr for r in cpu.runs if r.cfg.batch_clips == 8 and r.size == "nano"
    }


@pytest.mark.parametrize(
    "edit, match",
    [
        (("checkpoints = [512, 1024, 2048]", "checkpoints = [500, 1024]"), "not multiples"),
        (("lrs = [0.001, 0.01, 1.0]", "lrs = []"), "non-empty"),
        (("lrs = [0.001, 0.01, 1.0]", "lrs = [0.001, -0.01]"), "positive"),
        (("ensemble_rows = {rows}", "ensemble_rows = 0\nbogus = 3"), "unknown key"),
        (("lr = 0.01\n\n[holdout]", "lr = 0.02\n\n[holdout]"), "not in the lr grid"),
        (("heads = 2\n\n[[grid.sizes]]", "heads = 5\n\n[[grid.sizes]]"), "divisible"),
        (("[fixed]", "[fixed"), "profile"),
        (("ensemble_rows = {rows}", "ensemble_rows = 0\nstop = { doublings = 1, bogus = 2 }"), "unknown key"),
        (("ensemble_rows = {rows}", "ensemble_rows = 0\nstop = { doublings = -1 }"), "positive"),
        (("workers = 1", 'workers = 1\ndevice = "tpu"'), "device must be"),
        (("workers = 1", 'workers = 1\nafter = "nosuch"'), "unknown profile"),
    ],
)
def test_invalid_profiles_are_one_line_errors(tmp_path, edit, match):
    path = _profile(tmp_path, text=TINY.replace(*edit))
    with pytest.raises(ValueError, match=match):
        load_profile(str(path))
    out = _cli("--profile", str(path), "--out", str(tmp_path / "out"))
    assert out.returncode == 2 and match in out.stderr and out.stderr.count("\n") == 1


def test_a_profile_may_have_no_fixed_baseline_and_split_its_held_out_model(tmp_path):
    text = TINY.replace("[fixed]\nbatch_size = 4\nlr = 0.01\n\n", "").replace("lrs = [0.01]", "lrs = [0.01, 0.02]")
    text = text.replace("ensemble_rows = {rows}", "ensemble_rows = 64\nseeds = [0, 1]")
    profile = load_profile(str(_profile(tmp_path, text=text + "ensemble_rows = 8\n")))
    assert profile.fixed_batch_clips is None and profile.fixed_tokens_per_step is None
    held = [g for g in profile.groups if g.runs[0].role == "holdout"]
    assert [len(g.runs) for g in held] == [2, 2]  # 8 rows at 4 clips: one group per seed
    assert [{r.cfg.seed for r in g.runs} for g in held] == [{0}, {1}]
    fitting = [g for g in profile.groups if g.runs[0].role == "fit"]
    assert all(len(g.runs) == 6 for g in fitting)  # the grid's 64 rows: every rate and seed in one group


def test_max_members_splits_one_size_by_seed_and_keeps_its_run_ids(tmp_path):
    text = TINY.replace("ensemble_rows = {rows}", "ensemble_rows = 64\nseeds = [0, 1]")
    whole = load_profile(str(_profile(tmp_path, text=text)))
    capped = text.replace('name = "b"\n', 'name = "b"\nmax_members = 3\n')
    split = load_profile(str(_profile(tmp_path, text=capped)))
    assert [r.run_id for r in split.runs] == [r.run_id for r in whole.runs]
    sizes_b = [g for g in split.groups if g.runs[0].size == "b"]
    assert [len(g.runs) for g in sizes_b] == [3, 3, 3, 3]  # 2 batch sizes x 2 seeds, 3 lrs each
    assert [{r.cfg.seed for r in g.runs} for g in sizes_b] == [{0}, {1}, {0}, {1}]
    assert all(len(g.runs) == 6 for g in split.groups if g.runs[0].size == "a")


def test_the_stop_rule_keeps_each_batch_while_it_is_at_most_one_doubling_below_the_law():
    from replicate.config import count_params
    from replicate.paper import optimal_batch

    study = load_profile("study")
    fits = [g for g in study.groups if g.runs[0].role == "fit"]
    for group in fits:
        cfg = group.runs[0].cfg
        n, reach = count_params(cfg.model), 2 * cfg.batch_clips * cfg.model.n_ctx
        assert all(optimal_batch(n, t) <= reach for t in cfg.checkpoints)  # kept: within one doubling
        later = [t for t in (2097152, 2965504, 4194304, 5931008, 8388608, 11862016, 16777216) if t > cfg.tokens]
        assert all(optimal_batch(n, t) > reach for t in later)  # stopped: the optimum moved past it
    by_batch = {b: max(g.runs[0].cfg.steps for g in fits if g.runs[0].cfg.batch_clips == b) for b in (1, 2, 4, 8, 16)}
    assert by_batch[1] < by_batch[4]  # the 1-clip chains stop early: the longest is no longer theirs
    holdout = [g.runs[0].cfg for g in study.groups if g.runs[0].role == "holdout"]
    assert all(c.checkpoints == (8388608, 11862016, 16777216) for c in holdout)  # the rule is for fitting runs


def test_unknown_profile_exits_2():
    out = _cli("--profile", "huge")
    assert out.returncode == 2 and "unknown profile 'huge'" in out.stderr and "smoke" in out.stderr


def test_dry_run_counts_runs_and_flops(tmp_path):
    profile = load_profile(str(_profile(tmp_path, rows=24)))
    estimator = Estimator(lambda group: group.flops())  # a second a group here: the CLI below calibrates
    result = sweep(profile, tmp_path / "out", dry_run=True, log=lambda msg: None, estimator=estimator)
    assert result.left == len(profile.runs) and result.done == 0 and result.left_seconds == len(profile.groups)
    assert not (tmp_path / "out" / "runs.csv").exists()
    # exact FLOPs per run: 3 x (2048 training tokens + 3 checkpoints x 32 clips x 16 tokens / 3) per token
    from replicate.config import flops_per_token

    total = sum(flops_per_token(r.cfg.model) * (2048 + 3 * 32 * 16 / 3) for r in profile.runs)
    assert sum(g.flops() for g in profile.groups) == pytest.approx(total)
    out = _cli("--profile", str(_profile(tmp_path)), "--out", str(tmp_path / "o2"), "--dry-run")
    assert out.returncode == 0 and f"{len(profile.runs)} to run" in out.stdout and "FLOPs" in out.stdout


def test_the_sweeps_calibration_times_the_step_it_will_train(tmp_path, monkeypatch):
    """The default estimator times each group through the sweep's backend and capture, not the defaults."""
    from replicate.training import sweep as sweep_module

    seen = []
    monkeypatch.setattr(
        sweep_module, "run_seconds", lambda cfgs, device, backend, capture: seen.append((backend, capture)) or 1.0
    )
    profile = load_profile(str(_profile(tmp_path)))
    sweep(profile, tmp_path / "out", dry_run=True, log=lambda msg: None, device="cpu", backend="torch", capture=True)
    assert seen and set(seen) == {("torch", True)}


def test_makespan_and_the_estimator_learn_from_finished_groups(tmp_path):
    assert makespan([3.0, 1.0, 1.0, 1.0], 2) == 3.0 and makespan([1.0] * 4, 2) == 2.0 and makespan([5.0], 3) == 5.0
    groups = load_profile(str(_profile(tmp_path, rows=24))).groups
    a = next(g for g in groups if Estimator.shape(g) != Estimator.shape(groups[0]))
    b = groups[0]
    est = Estimator(lambda group: group.flops())  # calibrated: 1 s a group
    assert est.seconds(a) == est.seconds(b) == pytest.approx(1.0)
    est.finished(b, 2.0)  # it took twice its calibration: the same shape now measured, the others scaled
    assert est.seconds(b) == pytest.approx(2.0) and est.seconds(a) == pytest.approx(2.0)
    est.finished(a, 3.0)
    assert est.seconds(a) == pytest.approx(3.0) and est.drift == [2.0, 3.0]


def test_the_estimators_rates_persist_between_calls_on_one_machine(tmp_path):
    """A sweep in bounded calls calibrates a shape once: the next call's Estimator starts from the stored rates
    (a measured one stays measured), another machine calibrates anew, and an unreadable store is ignored."""
    groups = load_profile(str(_profile(tmp_path, rows=24))).groups
    a = next(g for g in groups if Estimator.shape(g) != Estimator.shape(groups[0]))
    b = groups[0]
    store, timed = tmp_path / "paused" / "rates.json", []

    def calibrate(group):
        timed.append(group)
        return group.flops()  # 1 s a group

    first = Estimator(calibrate, store, "gpu X")
    first.seconds(a), first.seconds(b)
    first.finished(b, 2.0)  # b measured at twice its calibration
    assert len(timed) == 2 and store.is_file()
    again = Estimator(calibrate, store, "gpu X")
    assert again.seconds(b) == pytest.approx(2.0) and again.seconds(a) == pytest.approx(2.0)  # a: scaled by drift
    assert len(timed) == 2  # nothing calibrated again
    Estimator(calibrate, store, "cpu Y").seconds(a)
    assert len(timed) == 3
    assert Estimator(calibrate, store, "gpu X").seconds(a) == pytest.approx(2.0)  # the other machine's left it
    store.write_text("{not json")
    assert Estimator(calibrate, store, "gpu X").seconds(a) == pytest.approx(1.0) and len(timed) == 4
    store.write_text('{"gpu X": {"rates": {"x": {"rate": 1}}}}')  # JSON, but not what the Estimator writes
    assert Estimator(calibrate, store, "gpu X").seconds(a) == pytest.approx(1.0) and len(timed) == 5


def test_sweep_writes_the_contract_and_diverged_runs_go_on(tmp_path):
    out = _cli("--profile", str(_profile(tmp_path, rows=24)), "--out", str(tmp_path / "out"), "--workers", "2")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "out" / "runs.csv", newline="") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == COLUMNS
    rows = _table(tmp_path / "out" / "runs.csv")
    assert len(rows) == 13 * 3
    diverged = [r for r in rows if r["diverged"] == "True"]
    assert diverged and all(r["lr"] == "1.0" and math.isnan(float(r["val_loss"])) for r in diverged)
    fine = [r for r in rows if r["diverged"] == "False"]
    assert all(0 < float(r["val_loss"]) < 1.5 and float(r["val_loss_se"]) > 0 for r in fine)
    assert {r["role"] for r in rows} == {"fit", "holdout"}
    assert {int(r["tokens"]) for r in rows} == {512, 1024, 2048}
    assert all(int(r["batch_size"]) == int(r["batch_samples"]) * 16 for r in rows)
    assert all(float(r["flops_exact"]) > float(r["flops_6n"]) for r in rows)
    # a second call finds everything done and changes nothing
    before = (tmp_path / "out" / "runs.csv").read_text()
    again = _cli("--profile", str(_profile(tmp_path, rows=24)), "--out", str(tmp_path / "out"))
    assert again.returncode == 0 and (tmp_path / "out" / "runs.csv").read_text() == before


def test_resume_after_sigkill_gives_the_uninterrupted_table(tmp_path, small_reference):
    profile, reference = small_reference
    table = tmp_path / "killed" / "runs.csv"
    proc = subprocess.Popen(
        [*SWEEP, "--profile", str(profile), "--out", str(tmp_path / "killed")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (table.exists() and len(_table(table)) >= 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _table(table)
    assert 0 < len(partial) < len(_table(reference / "runs.csv")), "the kill came too late to test resume"
    resumed = _cli("--profile", str(profile), "--out", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    assert _table(table) == _table(reference / "runs.csv")


def test_runs_an_edited_profile_drops_are_retired_not_lost(tmp_path, small_reference):
    out = tmp_path / "out"
    shutil.copytree(small_reference[1], out)
    before = _table(out / "runs.csv")
    edited = _profile(tmp_path, text=SMALL.replace("lrs = [0.001, 0.01]", "lrs = [0.01]"))
    again = _cli("--profile", str(edited), "--out", str(out), "--dry-run")
    assert again.returncode == 0 and not (out / "runs.retired.csv").exists()
    again = _cli("--profile", str(edited), "--out", str(out))
    assert again.returncode == 0 and "moved to" in again.stdout
    kept, retired = _table(out / "runs.csv"), _table(out / "runs.retired.csv")
    assert {r["lr"] for r in kept} == {"0.01"} and {r["lr"] for r in retired} == {"0.001"}
    assert sorted(map(str, kept + retired)) == sorted(map(str, before))


def test_deadline_starts_nothing_that_cannot_finish(tmp_path):
    out = _cli("--profile", str(_profile(tmp_path)), "--out", str(tmp_path / "out"), "--deadline-s", "0.001")
    assert out.returncode == 0 and "runs left" in out.stdout
    assert not (tmp_path / "out" / "runs.csv").exists()


def test_submitit_local_executor_gives_the_same_table(tmp_path, small_reference):
    pytest.importorskip("submitit")
    profile, reference = small_reference
    slurmless = _cli("--profile", str(profile), "--out", str(tmp_path / "sub"), "--executor", "submitit")
    assert slurmless.returncode == 0, slurmless.stderr
    assert _table(tmp_path / "sub" / "runs.csv") == _table(reference / "runs.csv")


def test_runs_longer_than_the_deadline_pause_and_resume_to_the_same_table(
    tmp_path, monkeypatch, small_reference, in_process, pausing_clock
):
    import replicate.training.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "MIN_START_S", 0.0)  # start groups however little time is left
    profile = load_profile(str(small_reference[0]))
    out, calls, paused = tmp_path / "chunks", 0, 0
    while calls < 30:
        calls += 1
        result = sweep(profile, out, device="cpu", deadline_s=1.0, log=lambda msg: None)
        paused += result.paused
        if result.left == 0:
            break
    assert result.left == 0 and paused > 0, (calls, paused)
    assert _table(out / "runs.csv") == _table(small_reference[1] / "runs.csv")
    assert not list((out / "paused").glob("*.pt"))


def test_a_paused_group_is_budgeted_by_its_steps_left(tmp_path, small_reference, capsys):
    """The time left that a deadline reports, and a dry run's, count a paused group's steps still to train (from
    its state file), not the whole group's; the line as it starts says where it resumes."""
    from replicate.training.sweep import ESTIMATE_MARGIN, run_group, state_name, steps_left
    from replicate.training.train import paused_step

    profile, out = load_profile(str(small_reference[0])), tmp_path / "out"
    group = max(profile.groups, key=lambda g: g.runs[0].cfg.steps)
    total = group.runs[0].cfg.steps
    assert total > 16
    state = out / "paused" / state_name(group)
    state.parent.mkdir(parents=True)
    assert run_group(group.cfgs, "cpu", "auto", 1, state, stop_at=0.0) is None  # paused at its first 16 steps
    assert paused_step(state) == 16 and steps_left(group, state) == pytest.approx(1 - 16 / total)
    # a deadline too short to start anything: every group is left, each a second (its calibration) x its steps left
    result = sweep(profile, out, device="cpu", deadline_s=1e-3, log=lambda msg: None, estimator=Estimator(Group.flops))
    assert result.left == len(profile.runs) and state.is_file()
    whole = len(profile.groups)
    assert result.left_seconds == pytest.approx(ESTIMATE_MARGIN * (whole - 16 / total))
    dry = sweep(profile, out, dry_run=True, workers=1, log=lambda msg: None, estimator=Estimator(Group.flops))
    assert dry.left_seconds == pytest.approx(whole - 16 / total)  # one worker
    capsys.readouterr()
    done = sweep(profile, out, device="cpu", log=lambda msg: None, estimator=Estimator(Group.flops))
    assert done.left == 0 and not state.is_file()
    first, said = group.runs[0], capsys.readouterr().out
    start = f"training {first.role} {first.size} B={first.cfg.batch_clips} x{len(group.runs)}"
    assert f"{start}, resumed at {100 * 16 / total:.0f}% of its steps: about " in said
    assert said.count("training ") == len(profile.groups)  # a line for every group as it starts
    state.write_bytes(b"not a state")  # unreadable: budgeted whole (its worker says why when it resumes)
    assert paused_step(state) is None and steps_left(group, state) == 1.0


def test_every_committed_run_id_is_recomputed_and_a_new_defaulted_field_keeps_it():
    # the studies a sweep resumes (results/pilot's tables predate fields added since, under the old whole-config id)
    root = Path(__file__).resolve().parents[1] / "results"
    checked = 0
    for toml in sorted(root.glob("*/profile.toml")):
        table = toml.with_name("runs.csv")
        if not table.is_file():
            continue
        profile = load_profile(str(toml))
        with open(table, newline="") as f:
            committed = {row["run_id"] for row in csv.DictReader(f)}
        assert committed <= {r.run_id for r in profile.runs}, toml
        checked += len(committed)
    assert checked > 500
    # a config class that gained a defaulted field: the same runs keep their ids, a changed value gets a new one
    extended = dataclasses.make_dataclass(
        "TrainConfig", [("new_knob", float, dataclasses.field(default=0.5))], bases=(TrainConfig,), frozen=True
    )
    cfg = load_profile("smoke").runs[0].cfg
    same = extended(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    assert run_id(same) == run_id(cfg)
    assert run_id(dataclasses.replace(same, new_knob=0.7)) != run_id(cfg)


def test_the_sweep_bar_moves_as_a_group_trains_and_counts_each_group_once(tmp_path):
    """A training group writes how far it is (train_group's on_steps, through a progress file); the sweep's bar
    moves to that fraction of the group's FLOPs while it trains, and to the whole group when it returns, never
    past it, and a paused group keeps what it trained."""
    from replicate.training import sweep as sweeping
    from replicate.training.train import train_group

    # the file a worker writes, read back; a half-written or missing file reads as no progress
    path = tmp_path / "g.progress"
    told = sweeping._ProgressFile(path)
    told(16, 64)
    assert sweeping.read_progress(path) == 0.25
    told(32, 64)  # within PROGRESS_EVERY_S of the last write: skipped
    assert sweeping.read_progress(path) == 0.25
    told(64, 64)  # the last step is always written
    assert sweeping.read_progress(path) == 1.0
    path.write_text("16")
    assert sweeping.read_progress(path) == 0.0 and sweeping.read_progress(tmp_path / "none") == 0.0

    # train_group tells where it reads its losses back, in order, its last step last
    profile = load_profile(str(_profile(tmp_path)))
    group = profile.groups[0]
    steps = []
    train_group(group.cfgs, device="cpu", on_steps=lambda step, total: steps.append((step, total)))
    total = group.cfgs[0].steps
    assert steps[-1] == (total, total) and len(steps) >= 2 and all(s < t for (s, _), (t, _) in pairwise(steps))

    class Bar:
        def __init__(self) -> None:
            self.n = 0

        def update(self, n: int) -> None:
            assert n > 0
            self.n += n

    bar = Bar()
    runner = sweeping._Runner(tmp_path, None, None, 1, "cpu", "torch", 1, False, None, 0.0, None, None, tmp_path)
    flops = round(group.flops())
    runner.progress_file(group).write_text(f"{total // 2} {total}\n")
    runner.show(group, bar)
    runner.show(group, bar)  # the same progress twice moves it once
    assert bar.n == round(0.5 * group.flops())
    runner.show(group, bar, 1.0)  # returned: the whole group, once
    runner.done_training(group)
    assert bar.n == flops and not runner.progress_file(group).exists()

    # through a whole sweep, the bar ends at its total: each group counted once
    seen = []

    def recording(total: int, **kwargs):
        bar = Bar()
        seen.append((total, bar))
        return type("B", (), {"update": bar.update, "write": print, "close": lambda self: None})()

    original = sweeping.progress_bar
    sweeping.progress_bar = recording
    try:
        result = sweep(profile, tmp_path / "out", workers=1, device="cpu")
    finally:
        sweeping.progress_bar = original
    ((total_flops, bar),) = seen
    assert result.left == 0 and bar.n == total_flops
