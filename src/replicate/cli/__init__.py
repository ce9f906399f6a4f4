"""Command line: ``python -m replicate {train, ...}``, one module per kind of command (training, analysis).

Bad input gets one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from replicate.cli.analysis import add_curvature, add_fit, add_lrlaw, add_porian, add_predict, add_theory
from replicate.cli.training import add_device_run, add_ingest, add_status, add_sweep, add_train
from replicate.errors import ConfigError


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are a single line."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser, every subcommand with its options."""
    parser = _Parser(prog="replicate", description="Scaling laws for video diffusion transformers, replicated.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    add_train(sub)
    add_fit(sub)
    add_sweep(sub)
    add_curvature(sub)
    add_lrlaw(sub)
    add_porian(sub)
    add_predict(sub)
    add_theory(sub)
    add_device_run(sub)
    add_ingest(sub)
    add_status(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"replicate {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"replicate {args.command}: interrupted", file=sys.stderr)
        return 130
