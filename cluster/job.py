"""The entry point of a submitted scan job: `python -m cluster.job`, run by Ray on the cluster.

The submitter puts the scan request in the job's runtime environment (`PCAM_SCAN_JOB`, JSON);
this is the one place that reads it, at the process boundary, and the scan joins the cluster
the job runs on.
"""

from __future__ import annotations

import os
import sys

JOB_ENV_VAR = "PCAM_SCAN_JOB"


def main() -> int:
    from cluster.executor import ray_executor
    from pcam_scan.errors import PcamScanError
    from pcam_scan.scan.outcome import summary_table
    from pcam_scan.scan.runner import ScanRequest, run_scan

    text = os.environ.get(JOB_ENV_VAR)
    if text is None:
        print(f"pcam-scan job: error: {JOB_ENV_VAR} is not set; submit with `pcam-scan submit`", file=sys.stderr)
        return 2
    try:
        outcomes = run_scan(ScanRequest.from_json(text), ray_executor)
    except PcamScanError as err:
        print(f"pcam-scan job: error: {err}", file=sys.stderr)
        return 2
    print(summary_table(outcomes), flush=True)
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
