"""`pcam-scan scan SLIDES_OR_DIRS... --model CKPT --store OUT.zarr`: heatmaps for a batch of slides.

Runs on Ray (a local Ray started for the run, or the cluster at `--address`); `--in-process`
runs the same stages without Ray, for debugging. Exit 0 when every slide is complete, 1 when
any slide failed (each failure is in the table and in the store), 2 on a user error.
"""

from __future__ import annotations

import argparse
import sys

from pcam_scan.commands.options import add_slide_backend_option
from pcam_scan.defaults import BLOCK_CELLS, STAIN_METHODS
from pcam_scan.model.names import DEVICE_HELP, is_device_name
from pcam_scan.model.settings import CPU_BATCH_SIZE, DEFAULT_BATCH_SIZE

SCAN_DESCRIPTION = """\
Tile each slide into blocks of 96 px patches at the model's um/px, predict every tissue cell
(32 px at 0.972 um/px for PCam) and write the probabilities as a heatmap per slide into a Zarr
store. Runs on a local Ray started for the run, or on the cluster at --address.

Resume: run the same command again. Complete slides are skipped, an unfinished slide keeps the
blocks it wrote and scans the rest; the result equals an uninterrupted run. A store belongs to
one model and one set of settings: another model or other settings are refused.

Exit codes: 0 every slide complete; 1 one or more slides failed (each is in the table and marked
failed in the store, the others went on); 2 a user error (bad option, checkpoint or store);
130 interrupted.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="scan slides into a Zarr heatmap store (Ray)",
        description=SCAN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scan_arguments(parser)
    parser.set_defaults(func=run)


def add_scan_arguments(
    parser: argparse.ArgumentParser, address_help: str = "Ray cluster address (default: a local Ray)"
) -> None:
    """The arguments shared by `scan` and `submit`."""
    parser.add_argument("slides", nargs="+", help="slide files, or folders of slides")
    parser.add_argument("--model", required=True, help="scanner checkpoint (.safetensors)")
    parser.add_argument("--store", required=True, help="Zarr store: a folder or an fsspec URL (s3://...)")
    parser.add_argument("--address", default=None, help=address_help)
    parser.add_argument(
        "--stride",
        type=int,
        default=None,
        help="stride in px at the model MPP (default: the model's label size, every cell: 32 for PCam)",
    )
    parser.add_argument("--tta", action="store_true", help="mean over the 8 flips/rotations")
    parser.add_argument(
        "--no-qc",
        action="store_true",
        help="no slide quality control (ink, blur, folds, bubbles are then neither flagged nor excluded)",
    )
    parser.add_argument("--mpp", type=float, default=None, help="override the slides' um/px")
    add_slide_backend_option(parser)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"patches per model batch (default {DEFAULT_BATCH_SIZE} on a GPU, {CPU_BATCH_SIZE} on the CPU)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--block-cells",
        type=int,
        default=BLOCK_CELLS,
        help=f"cells per block side (= Zarr chunk, default {BLOCK_CELLS})",
    )
    parser.add_argument("--device", type=device_name, default="auto", help=f"where the model runs: {DEVICE_HELP}")
    parser.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="each block in batches of its own, so its heatmap is bit-identical whatever the scheduling "
        "(on CUDA also cuDNN deterministic); --no-deterministic fills batches across blocks and slides "
        "(a GPU never waits on a padded batch; the last float bits may vary). Default: on for CPU "
        "models, off on a GPU",
    )
    parser.add_argument(
        "--stain-normalise",
        choices=STAIN_METHODS,
        default=None,
        help="normalise each block's stain before the model (Macenko, torchstain; needs --stain-reference); "
        "recorded in the store's settings hash (default: off)",
    )
    parser.add_argument(
        "--stain-reference",
        metavar="FILE",
        default=None,
        help="a tissue-rich H&E image (PNG, JPEG, TIFF) whose stain the regions are normalised to",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs of the local Ray, or with --in-process its model threads (default: all)",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="model actors on this many GPUs (one each); lets an autoscaling cluster add GPU nodes "
        "(default: one actor per GPU present at the start, CPU actors when there is none)",
    )
    parser.add_argument("--in-process", action="store_true", help="no Ray: scan in this process")


def device_name(text: str) -> str:
    """argparse type of --device: refused here, before a cluster starts, not in the model actor."""
    if not is_device_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device ({DEVICE_HELP})")
    return text


def run(args: argparse.Namespace) -> int:
    from pcam_scan.cli import failure_of
    from pcam_scan.resources import check_worker_count
    from pcam_scan.scan.outcome import ScanLedger, summary_table
    from pcam_scan.scan.runner import ScanRequest, run_scan
    from pcam_scan.store.location import StoreLocation
    from pcam_scan.store.run_records import record_run, recorded_if_raised, summary_markdown, utc_now, write_summary
    from pcam_scan.store.scan_lock import scan_lock

    request = ScanRequest.from_args(args, list(args.slides))
    check_worker_count("--num-cpus", args.num_cpus)
    started = utc_now()
    ledger = ScanLedger()  # what became of each slide so far: a run that stops early records it too
    with scan_lock(StoreLocation(request.store_uri)):  # one scan per local store at a time
        with recorded_if_raised(request.store_uri, "scan", vars(args), started, failure_of, ledger.attempts):
            outcomes = run_scan(request, choose_executor(request.placement.in_process), ledger=ledger)
        code = 1 if any(o.failed for o in outcomes) else 0
        record = record_run(request.store_uri, "scan", vars(args), started, code, ledger.attempts())
        summary = write_summary(StoreLocation(request.store_uri), summary_markdown(record, request.store_uri))
    print(summary_table(outcomes))
    print(f"store: {args.store} (summary {summary}; runs: pcam-scan history)", file=sys.stderr)
    return code


def choose_executor(in_process: bool):  # type: ignore[no-untyped-def]
    """The entry point picks where a scan runs: this process, or Ray (the only import of
    `cluster` on the scan path; the core never imports it)."""
    if in_process:
        from pcam_scan.scan.inprocess import in_process_executor

        return in_process_executor
    from cluster.executor import ray_executor

    return ray_executor
