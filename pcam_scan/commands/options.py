"""Options several commands share, defined once so they read the same everywhere."""

from __future__ import annotations

import argparse


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """--overwrite: without it, a command refuses to replace a file that already exists."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that already exist (default: refuse, so no result is lost)",
    )
