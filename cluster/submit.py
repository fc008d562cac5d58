"""Ray Job Submission: send a scan to a cluster's head, follow its status and logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from pcam_scan.errors import ConfigError, PcamScanError
from pcam_scan.scan.runner import ScanRequest

from cluster.job import JOB_ENV_VAR


AUTH_HINT = (
    "the Ray cluster at {address} requires its auth token: set RAY_AUTH_MODE=token and "
    "RAY_AUTH_TOKEN (or put the token in ~/.ray/auth_token)"
)


def _client(address: str):  # type: ignore[no-untyped-def]
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError:
        raise ConfigError(AUTH_HINT.format(address=address)) from None
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"cannot reach the Ray job server at {address}: {' '.join(str(err).split())}") from None


def submit_scan(request: ScanRequest, dashboard_address: str) -> str:
    """Submit the scan as a Ray job and return its id. The job joins the cluster it runs on."""
    job_request = replace(request, address="auto", in_process=False, num_cpus=None)
    runtime_env = {"env_vars": {JOB_ENV_VAR: job_request.to_json()}}
    try:
        return str(_client(dashboard_address).submit_job(entrypoint="python -m cluster.job", runtime_env=runtime_env))
    except RuntimeError as err:
        raise PcamScanError(f"the cluster refused the job: {' '.join(str(err).split())}") from None


def job_status(job_id: str, dashboard_address: str) -> tuple[str, str]:
    """(status, message) of a submitted job."""
    client = _client(dashboard_address)
    try:
        info = client.get_job_info(job_id)
    except RuntimeError:
        raise PcamScanError(f"no job {job_id!r} on {dashboard_address}") from None
    return str(info.status), str(info.message or "")


TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def job_logs(job_id: str, dashboard_address: str, follow: bool = False, poll_s: float = 2.0) -> Iterator[str]:
    """The job's log so far; with `follow`, new output as it comes until the job ends."""
    import time

    client = _client(dashboard_address)
    shown = 0
    while True:
        try:
            text = client.get_job_logs(job_id)
            status = str(client.get_job_status(job_id))
        except RuntimeError:
            raise PcamScanError(f"no job {job_id!r} on {dashboard_address}") from None
        if len(text) > shown:
            yield text[shown:]
            shown = len(text)
        if not follow or status.split(".")[-1] in TERMINAL_STATES:
            return
        time.sleep(poll_s)
