"""`pcam-scan train`: the fastai training recipe, which lives in the `training` package.

Only the parser is built here (fastai-free); fastai is imported when the command runs.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from training.cli import DESCRIPTION, add_arguments

    parser = subparsers.add_parser(
        "train",
        help="train a scanner checkpoint on PCam, Kaggle PCam or patches mined from slides",
        description=DESCRIPTION,
    )
    add_arguments(parser)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from training.cli import run

    return run(args)
