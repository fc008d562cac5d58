"""The `pcam-scan` command line: builds the parser from the command modules and turns
user-facing errors into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from pcam_scan import __version__
from pcam_scan.errors import PcamScanError

# Each name is a module in pcam_scan.commands with a `register(subparsers)` function.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "info",
    "model_info",
    "evaluate",
    "diagnose",
    "fit_aggregator",
    "export",
    "synth",
    "scan",
    "submit",
    "train",
    "calibrate",
    "view",
    "render",
)

EXIT_OK = 0
EXIT_SLIDES_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line naming the command's --help, not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"pcam-scan: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; command modules import nothing heavy until they run."""
    parser = OneLineParser(
        prog="pcam-scan",
        description="Scan whole-slide images for metastases with a PatchCamelyon ResNet50.",
        epilog="Exit codes: 0 success; 1 some slides failed (scan); 2 a user error (one line "
        "'pcam-scan: error: ...'); 130 interrupted. 'pcam-scan COMMAND --help' describes a command.",
    )
    parser.add_argument("--version", action="version", version=f"pcam-scan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"pcam_scan.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a `PcamScanError` (or a file the system refuses) becomes one line
    `pcam-scan: error: ...` and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except PcamScanError as err:
        return _user_error(str(err))
    except OSError as err:  # a path the system refuses: missing, unwritable, a full disk
        return _user_error(_describe_os_error(err))
    except KeyboardInterrupt:
        print("pcam-scan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code or EXIT_OK)


def _user_error(message: str) -> int:
    print(f"pcam-scan: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USER_ERROR


def _describe_os_error(err: OSError) -> str:
    reason = err.strerror or type(err).__name__
    return f"{err.filename}: {reason}" if err.filename else reason


if __name__ == "__main__":
    sys.exit(main())
