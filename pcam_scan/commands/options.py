"""Options several commands share, defined once so they read the same everywhere."""

from __future__ import annotations

import argparse

from pcam_scan.defaults import BOOTSTRAP_REPLICATES, SLIDE_BACKEND, SLIDE_BACKENDS


def add_slide_backend_option(parser: argparse.ArgumentParser) -> None:
    """--slide-backend: the library that decodes the slides (the heatmaps are the same)."""
    parser.add_argument(
        "--slide-backend",
        choices=SLIDE_BACKENDS,
        default=SLIDE_BACKEND,
        help=f"library that reads the slides (default {SLIDE_BACKEND}: tiffslide for SVS and generic TIFF "
        "whose tiles it decodes as OpenSlide does, at about 0.4x the CPU, with OpenSlide for their levels "
        "of fractional downsample; OpenSlide for the rest)",
    )


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """--overwrite: without it, a command refuses to replace a file that already exists."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files that already exist (default: refuse, so no result is lost)",
    )


def add_bootstrap_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--bootstrap and --seed: the replicates and seed of a bootstrap interval (`what` it is for)."""
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=BOOTSTRAP_REPLICATES,
        help=f"bootstrap replicates for the {what} (default {BOOTSTRAP_REPLICATES})",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")


DEFAULT_EXCLUDE: str | None = None
"""The --exclude default: None stands for `CAMELYON16_EXCLUDED` (pcam_scan.evaluation.reference),
which `split_names` looks up only when a command runs, since importing pcam_scan.evaluation while
building the parser would slow every `pcam-scan` call by over a second."""


def add_exclude_option(parser: argparse.ArgumentParser) -> None:
    """--exclude: reference slides to leave out, by default the two Camelyon16 excluded."""
    parser.add_argument(
        "--exclude",
        default=DEFAULT_EXCLUDE,
        help="comma-separated reference slides to leave out (default: the two the Camelyon16 "
        "organisers excluded; '' keeps all)",
    )


def split_names(text: str | None) -> list[str]:
    """`a, b,,c` -> [a, b, c]: the comma-separated slide names of --exclude; None (its default)
    -> the slides the Camelyon16 organisers excluded."""
    if text is None:
        from pcam_scan.evaluation.reference import CAMELYON16_EXCLUDED

        return list(CAMELYON16_EXCLUDED)
    return [name.strip() for name in text.split(",") if name.strip()]
