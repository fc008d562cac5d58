"""The `pcam-scan` command line: builds the parser from the command modules and turns
user-facing errors into one line and a non-zero exit."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from pcam_scan import __version__
from pcam_scan.errors import PcamScanError, Terminated, describe_error

# Each name is a module in pcam_scan.commands with a `register(subparsers)` function.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "info",
    "model_info",
    "evaluate",
    "diagnose",
    "stage",
    "history",
    "compare",
    "qc",
    "fit_aggregator",
    "export",
    "export_model",
    "import_model",
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
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process ended by SIGTERM
EXIT_BUG = 1  # an uncaught exception: Python's traceback and exit code


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs in the main thread, SIGTERM raises `Terminated`; the handler that
    was there before is put back afterwards (tests run many commands in one process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        "'pcam-scan: error: ...'); 130 interrupted; 143 terminated (SIGTERM). "
        "'pcam-scan COMMAND --help' describes a command.",
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
        with _sigterm_as_interrupt():
            code = args.func(args)
    # OSError: a path the system refuses (missing, unwritable, a full disk)
    except (PcamScanError, OSError, KeyboardInterrupt) as err:
        code, message = failure_of(err)
        print(f"pcam-scan: {'error: ' if code == EXIT_USER_ERROR else ''}{message}", file=sys.stderr)
        return code
    return int(code or EXIT_OK)


def failure_of(err: BaseException) -> tuple[int, str]:
    """The exit code and the one line for a command that raised `err` (a run's record keeps
    the same, pcam_scan.store.run_records.recorded_if_raised)."""
    if isinstance(err, Terminated) or (isinstance(err, SystemExit) and err.code == signal.SIGTERM):
        return EXIT_TERMINATED, "terminated (SIGTERM)"  # Ray's driver turns SIGTERM into SystemExit(15)
    if isinstance(err, SystemExit):
        return (err.code if isinstance(err.code, int) else EXIT_BUG), f"exited ({err.code})"
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(err, PcamScanError):
        return EXIT_USER_ERROR, " ".join(str(err).split())
    if isinstance(err, OSError):
        return EXIT_USER_ERROR, " ".join(_describe_os_error(err).split())
    return EXIT_BUG, describe_error(err)


def _describe_os_error(err: OSError) -> str:
    reason = err.strerror or type(err).__name__
    return f"{err.filename}: {reason}" if err.filename else reason


if __name__ == "__main__":
    sys.exit(main())
