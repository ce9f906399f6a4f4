import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replicate", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_subcommands():
    out = _run("--help")
    assert out.returncode == 0 and "train" in out.stdout


def test_train_writes_a_record_and_the_model(tmp_path):
    path, weights = tmp_path / "run.json", tmp_path / "model.pt"
    out = _run(
        "train",
        "--width",
        "32",
        "--depth",
        "1",
        "--heads",
        "2",
        "--batch-clips",
        "4",
        "--lr",
        "1e-3",
        "--tokens",
        "4096",
        "--frames",
        "4",
        "--frame-size",
        "8",
        "--val-examples",
        "16",
        "--out",
        str(path),
        "--save-model",
        str(weights),
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(path.read_text())
    assert record["n_params"] == 12 * 32 * 32 + 9 * 32 and record["tokens_per_sample"] == 4 * 2 * 2
    assert record["checkpoints"][-1]["tokens"] == 4096 and not record["diverged"]
    assert {"tokens", "val_loss", "val_loss_se", "train_loss", "wall_s"} <= record["checkpoints"][0].keys()
    assert record["config"]["lr"] == 1e-3 and record["provenance"]["torch"]
    # the saved (EMA) model scores the EMA validation loss the record reports
    from replicate.training.diffusion import ValidationSet, validation_loss
    from replicate.training.train import load_model

    model = load_model(weights)
    assert model.cfg.width == 32 and model.cfg.clip.frames == 4
    val = ValidationSet.build(model.cfg.clip, 16)
    assert validation_loss(model, val)[0] == pytest.approx(record["checkpoints"][-1]["val_loss_ema"], rel=1e-6)


BASE = ["train", "--size", "nano", "--batch-clips", "4", "--lr", "1e-3", "--tokens", "1000"]


@pytest.mark.parametrize(
    "args, match",
    [
        (
            [
                "train",
                "--width",
                "30",
                "--depth",
                "2",
                "--heads",
                "4",
                "--batch-clips",
                "4",
                "--lr",
                "1e-3",
                "--tokens",
                "100",
            ],
            "divisible",
        ),
        (["train", "--size", "nano", "--batch-clips", "4", "--lr=-0.001", "--tokens", "100"], "positive"),
        (["train", "--size", "nano", "--batch-clips", "4", "--lr", "1e-3", "--tokens", "0"], "positive"),
        ([*BASE, "--bogus"], "unrecognized"),
        ([*BASE, "--backend", "cuda"], "backend"),
        (["sweep", "--profile", "smoke", "--backend", "cuda"], "backend"),
        (["device-run", "--backend", "cuda"], "backend"),
        (["train", "--width", "32", "--batch-clips", "4", "--lr", "1e-3", "--tokens", "100"], "--size"),
        (["train", "--size", "huge", "--batch-clips", "4", "--lr", "1e-3", "--tokens", "100"], "size"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, args, match):
    out = _run(*args, "--out", str(tmp_path / "x.json"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and match in out.stderr and "Traceback" not in out.stderr


def test_unwritable_output_fails_before_training(tmp_path):
    out = _run(*BASE, "--out", str(tmp_path / "missing" / "x.json"))
    assert out.returncode == 2 and "does not exist" in out.stderr


def _subcommand_options() -> dict[str, set[str]]:
    """Each subcommand's option strings, from the command line's own parser."""
    import argparse

    from replicate.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {name: set(p._option_string_actions) for name, p in sub.choices.items()}


def _shown_commands(root: Path) -> list[tuple[str, str, str]]:
    """(file, subcommand, the text after it) of every `python[3] -m replicate COMMAND ...` (or the Makefile's
    `$(PY) -m replicate ...`) the README, the chapters,
    the package, the profiles and the Makefile show a reader. A chapter's Markdown lines are joined first (a
    command may wrap onto the next comment line); elsewhere a command ends at its line."""
    files = [root / "README.md", root / "Makefile", *sorted((root / "notebooks").glob("*.py"))]
    files += sorted((root / "src/replicate").rglob("*.py")) + sorted((root / "src/replicate/profiles").glob("*.toml"))
    found = []
    for path in files:
        text = path.read_text()
        if path.parent.name == "notebooks":
            text = re.sub(r"\n# ?", " ", text)
        for match in re.finditer(r"(?:python3?|\$\(PY\)) -m replicate ([a-z][a-z-]*)([^`'\"\n]*)", text):
            found.append((str(path.relative_to(root)), match.group(1), match.group(2)))
    return found


def test_every_command_shown_to_a_reader_names_options_its_subcommand_has():
    """A command in the README or a chapter is what a reader copies: a renamed option (--batch-size became
    --batch-clips) must not survive in one of them."""
    root = Path(__file__).resolve().parents[1]
    options, shown = _subcommand_options(), _shown_commands(root)
    assert len(shown) > 20 and {"train", "sweep", "fit"} <= {command for _, command, _ in shown}
    wrong = [
        f"{where}: {command} {flag}"
        for where, command, rest in shown
        if command in options
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest.split("#")[0])
        if flag not in options[command]
    ]
    assert not wrong, wrong
    unknown = sorted({f"{where}: {command}" for where, command, _ in shown if command not in options})
    assert not unknown, unknown
