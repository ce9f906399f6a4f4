"""Command line: ``python -m replicate {train, ...}``.

Bad input gets one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from replicate.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are a single line."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON so that a reader (or a crash) never sees a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_output_path(path: Path) -> Path:
    """Fail before any work if `path` cannot be written."""
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory")
    if not path.parent.is_dir():
        raise ConfigError(f"--out: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--out: directory {path.parent} is not writable")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one Video DiT and validate it at token checkpoints",
                       description="Train one model with a constant learning rate; write its record as JSON.")
    p.add_argument("--size", help="a named size (sets width, depth and heads; see replicate.model.MODEL_SIZES)")
    p.add_argument("--width", type=_positive_int, help="hidden size d")
    p.add_argument("--depth", type=_positive_int, help="number of blocks")
    p.add_argument("--heads", type=_positive_int, help="attention heads (width must be divisible by heads)")
    p.add_argument("--batch-size", type=_positive_int, required=True, help="samples per step")
    p.add_argument("--lr", type=_positive_float, required=True, help="peak (constant) learning rate")
    p.add_argument("--tokens", type=_positive_int, required=True, help="training tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup-steps", type=int, default=25)
    p.add_argument("--val-examples", type=_positive_int, default=4096, help="validation clips")
    p.add_argument("--frames", type=_positive_int, default=8)
    p.add_argument("--frame-size", type=_positive_int, default=16, help="clip height and width in pixels")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--backend", default="auto", help="auto, torch or triton")
    p.add_argument("--out", type=Path, required=True, help="the record, JSON (rewritten at every checkpoint)")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from replicate.data import ClipConfig
    from replicate.kernels import check_backend
    from replicate.model import ModelConfig, model_config
    from replicate.train import TrainConfig, train

    out = check_output_path(args.out)
    check_backend(args.backend)
    shape = {k: getattr(args, k) for k in ("width", "depth", "heads") if getattr(args, k) is not None}
    clip = ClipConfig(frames=args.frames, height=args.frame_size, width=args.frame_size)
    if args.size:
        model = model_config(args.size, clip=clip, **shape)
    elif len(shape) == 3:
        model = ModelConfig(clip=clip, **shape)
    else:
        raise ConfigError("give --size, or all of --width, --depth and --heads")
    cfg = TrainConfig(model, batch_size=args.batch_size, lr=args.lr, tokens=args.tokens, seed=args.seed,
                      warmup_steps=args.warmup_steps, val_examples=args.val_examples)

    def save(record, model=None) -> None:
        write_json_atomic(out, record.to_dict())

    record = train(cfg, device=args.device, backend=args.backend, progress=True, on_checkpoint=save)
    save(record)
    last = record.checkpoints[-1] if record.checkpoints else None
    status = "diverged" if record.diverged else "done"
    summary = f"; val_loss {last.val_loss:.5f} +- {last.val_loss_se:.5f} at {last.tokens:,} tokens" if last else ""
    print(f"{status}: N = {record.n_params:,}{summary} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="replicate", description="Scaling laws for video diffusion transformers, replicated.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_train(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"replicate {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"replicate {args.command}: interrupted", file=sys.stderr)
        return 130
