"""Ray Job Submission: send a scan to a cluster's head, follow its status and logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from cluster.job import JOB_ENV_VAR
from pcam_scan.errors import ConfigError, PcamScanError
from pcam_scan.scan.runner import ScanRequest

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


AGENT_STARTING = "No available agent to submit job"
"""What a head answers while its job agent is still starting (just after `ray start --head`)."""
AGENT_WAIT_S = 60.0


def submit_scan(request: ScanRequest, dashboard_address: str) -> str:
    """Submit the scan as a Ray job and return its id. The job joins the cluster it runs on.

    A head whose job agent is still starting says so and asks to try again later: that is
    retried for up to `AGENT_WAIT_S`, with one line on stderr, instead of failing the submit.
    """
    import sys
    import time

    job_request = replace(
        request, placement=replace(request.placement, address="auto", in_process=False, num_cpus=None)
    )
    runtime_env = {"env_vars": {JOB_ENV_VAR: job_request.to_json()}}
    client = _client(dashboard_address)
    deadline = time.monotonic() + AGENT_WAIT_S
    told = False
    while True:
        try:
            return str(client.submit_job(entrypoint="python -m cluster.job", runtime_env=runtime_env))
        except RuntimeError as err:
            message = " ".join(str(err).split())
            if AGENT_STARTING not in message or time.monotonic() > deadline:
                raise PcamScanError(f"the cluster refused the job: {message}") from None
            if not told:
                print(f"the job agent at {dashboard_address} is still starting; trying again", file=sys.stderr)
                told = True
            time.sleep(1.0)


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
