"""Argument helpers every ``bppo`` parser shares: the config flags and bounded numbers."""

from __future__ import annotations

import argparse


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config; repeat to merge several, later files win",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides applied last, e.g. rollout.n=8 trainer.steps=20",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the Ray workers' output (vLLM, DeepSpeed) in the terminal too; it is always in <run_dir>/worker.log",
    )


def number(cast, *, minimum=None, above=None, maximum=None, below=None):
    """An argparse type: ``cast`` within bounds; argparse names the flag in its error line."""
    import operator

    bounds = [
        (minimum, operator.ge, ">="),
        (above, operator.gt, ">"),
        (maximum, operator.le, "<="),
        (below, operator.lt, "<"),
    ]

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected {'an integer' if cast is int else 'a number'}"
            ) from None
        for bound, holds, sign in bounds:
            if bound is not None and not holds(value, bound):  # NaN holds no bound
                raise argparse.ArgumentTypeError(f"{text!r}: must be {sign} {bound}")
        if value != value:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a number")
        return value

    return parse
