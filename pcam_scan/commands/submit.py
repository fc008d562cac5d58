"""`pcam-scan submit`, `status` and `logs`: a scan as a Ray job on a cluster's head node."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pcam_scan.commands.scan import add_scan_arguments
from pcam_scan.errors import ConfigError

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = subparsers.add_parser(
        "submit",
        help="submit a scan to a Ray cluster as a job",
        description="Submit `pcam-scan scan` with these arguments as a Ray job to a cluster's head "
        "node and print the job id. Slide, checkpoint and store paths must be visible on the "
        "cluster at the same absolute paths (a shared volume) or be object-store URLs; folders are "
        "expanded there. Token authentication: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN. "
        "Follow the job with `pcam-scan status JOB` and `pcam-scan logs JOB --follow`.",
    )
    add_scan_arguments(submit, address_help=f"Ray dashboard (job server) URL (default {DEFAULT_DASHBOARD})")
    submit.set_defaults(func=run_submit)
    status = subparsers.add_parser(
        "status",
        help="status of a submitted scan job",
        description="Print a submitted scan job's state (PENDING, RUNNING, SUCCEEDED, FAILED, "
        "STOPPED) and its message, as the cluster's job server reports it.",
    )
    status.add_argument("job", help="job id printed by `pcam-scan submit`")
    status.add_argument("--address", default=DEFAULT_DASHBOARD, help="Ray dashboard (job server) URL")
    status.set_defaults(func=run_status)
    logs = subparsers.add_parser(
        "logs",
        help="logs of a submitted scan job",
        description="Print a submitted scan job's output (its progress lines and the per-slide "
        "table); with --follow, keep printing until the job ends.",
    )
    logs.add_argument("job", help="job id printed by `pcam-scan submit`")
    logs.add_argument("--address", default=DEFAULT_DASHBOARD, help="Ray dashboard (job server) URL")
    logs.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    logs.set_defaults(func=run_logs)


def run_submit(args: argparse.Namespace) -> int:
    from cluster.submit import submit_scan
    from pcam_scan.scan.runner import ScanRequest

    if args.in_process or args.num_cpus is not None:
        raise ConfigError("--in-process and --num-cpus describe a local run; a submitted job runs on the cluster")
    address = args.address or DEFAULT_DASHBOARD
    # files and folders travel as absolute paths and are expanded on the cluster, where they
    # are (a shared volume), so a folder of thousands of slides is one short argument
    slides = [p if "://" in p else Path(p).absolute() for p in args.slides]
    store = args.store if "://" in args.store else str(Path(args.store).resolve())
    request = replace(ScanRequest.from_args(args, slides), checkpoint=str(Path(args.model).resolve()), store_uri=store)
    print(submit_scan(request, address))
    return 0


def run_status(args: argparse.Namespace) -> int:
    from cluster.submit import job_status

    status, message = job_status(args.job, args.address)
    print(f"{args.job}  {status}  {message}".rstrip())
    return 0


def run_logs(args: argparse.Namespace) -> int:
    from cluster.submit import job_logs

    for chunk in job_logs(args.job, args.address, follow=args.follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0
