"""Run records: each `scan`, `diagnose` and `evaluate` over a store appends one JSON document,
`runs/<started>-<written ns>-<host>-<pid>-<token>.json` (the keys in pcam_scan.store.schema, `RunRecord`).

One document per run, under a name no other run can take, so appending never rewrites (and can
never lose) an earlier record, and two runs recording at once do not race. A local store's
record is written to a hidden temporary file and renamed into place (pcam_scan.outputs), so a
concurrent reader sees a whole record or none; an object store's PUT is atomic by itself. The
documents are plain objects beside the Zarr nodes (no `zarr.json`), invisible to Zarr and to the
slide listing. A store of format version 1 has no `runs/`: its history is empty.
"""

from __future__ import annotations

import datetime
import getpass
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from pcam_scan.bounded_json import JsonLimits, parse_json
from pcam_scan.errors import PcamScanError, StoreError, describe_error
from pcam_scan.outputs import write_output_bytes
from pcam_scan.store.identity import package_versions
from pcam_scan.store.location import StoreLocation
from pcam_scan.store.schema import RUN_COMPLETED_OUTCOME, RUNS_PREFIX, RunRecord, SlideAttempt

LOG = logging.getLogger(__name__)
MAX_RECORD_BYTES = 16 * 1024 * 1024
"""A record of 100,000 slides' attempts is ~10 MB; anything larger is not ours."""


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return str(os.getuid())


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)  # paths, enums


def new_record(
    command: str,
    arguments: Mapping[str, object],
    started: str,
    exit_code: int,
    attempts: Sequence[SlideAttempt],
    outcome: str = RUN_COMPLETED_OUTCOME,
    message: str = "",
) -> RunRecord:
    """A record of a run that just ended on this host, by this user and process."""
    args = {k: _jsonable(v) for k, v in arguments.items() if not callable(v)}
    return RunRecord(
        command,
        args,
        package_versions(),
        socket.gethostname(),
        _user(),
        os.getpid(),
        started,
        utc_now(),
        exit_code,
        tuple(attempts),
        outcome,
        message,
    )


def record_name(record: RunRecord, written_ns: int) -> str:
    """The record's key under `runs/`: names sort oldest first, by the start second and then by
    when each was written (`time.time_ns()`), so two runs that start within one second, as a
    script's back-to-back commands do, still list in the order they ran."""
    stamp = "".join(ch for ch in record.started if ch.isdigit())[:14]
    host = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in record.host)[:40]
    return f"{stamp}-{written_ns:020d}-{host}-{record.pid}-{secrets.token_hex(4)}.json"


def append_run_record(location: StoreLocation, record: RunRecord) -> str:
    """Add the record to the store; returns its key (`runs/...json`)."""
    data = (json.dumps(record.to_json(), indent=1, allow_nan=False) + "\n").encode("utf-8")
    key = f"{RUNS_PREFIX}/{record_name(record, time.time_ns())}"
    local = location.local_path
    if local is not None:
        write_output_bytes(local / key, data, overwrite=False)
        return key
    store = location.zarr_store(read_only=False)
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(data)))
    return key


def read_run_records(location: StoreLocation) -> list[RunRecord | str]:
    """Every run record, oldest first (by name: the start time leads it); an unreadable one is
    a one-line message in its place, so one bad document hides no other."""
    store = location.zarr_store(read_only=True)

    async def keys() -> list[str]:
        return [key async for key in store.list_prefix(f"{RUNS_PREFIX}/")]

    out: list[RunRecord | str] = []
    names = sorted(k for k in sync(keys()) if k.endswith(".json") and not Path(k).name.startswith("."))
    for key in names:
        try:
            buffer = sync(store.get(key, prototype=default_buffer_prototype()))
            if buffer is None:
                continue  # removed meanwhile
            raw = buffer.to_bytes()
            if len(raw) > MAX_RECORD_BYTES:
                raise StoreError(f"larger than {MAX_RECORD_BYTES} bytes")
            out.append(RunRecord.from_json(parse_json(raw, JsonLimits(max_bytes=MAX_RECORD_BYTES))))
        except (PcamScanError, OSError, ValueError) as err:
            out.append(f"{key}: unreadable run record ({err})")
    return out


def record_run(
    store_uri: str,
    command: str,
    arguments: Mapping[str, object],
    started: str,
    exit_code: int,
    attempts: Sequence[SlideAttempt],
) -> RunRecord:
    """Build the run's record and append it to the store."""
    record = new_record(command, arguments, started, exit_code, attempts)
    append_run_record(StoreLocation(store_uri), record)
    return record


Failure = Callable[[BaseException], tuple[int, str]]
"""The exit code and the one line the command line gives a command that raised an error."""


@contextmanager
def recorded_if_raised(
    store_uri: str,
    command: str,
    arguments: Mapping[str, object],
    started: str,
    failure: Failure,
    attempts: Callable[[], Sequence[SlideAttempt]] = tuple,
) -> Iterator[None]:
    """A run that raises, or is interrupted (Ctrl-C, SIGTERM), still appends its record to the
    store, `failed` or `interrupted` with its one line and the per-slide `attempts()` so far (a
    scan's `pcam_scan.scan.outcome.ScanLedger`: each slide completed, failed, or unfinished), and
    the exception goes on. Nothing is recorded where no store exists yet (the error came before
    there was one); a record that cannot be written (the store's disk is full) is logged and
    never hides the run's own error."""
    try:
        yield
    except BaseException as err:
        exit_code, message = failure(err)
        outcome = "interrupted" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "failed"
        try:
            location = StoreLocation(store_uri)
            if _store_exists(location):
                record = new_record(command, arguments, started, exit_code, attempts(), outcome, message)
                append_run_record(location, record)
        except Exception as record_err:  # the run's own error is what the user must see
            LOG.warning("the %s run's record could not be written: %s", command, describe_error(record_err))
        raise


def _store_exists(location: StoreLocation) -> bool:
    local = location.local_path
    if local is not None:
        return (local / "zarr.json").is_file()
    return bool(sync(location.zarr_store(read_only=True).exists("zarr.json")))


def summary_markdown(record: RunRecord, store_uri: str) -> str:
    """A short Markdown page about one run: what, where, when, and each slide not done."""
    done = len(record.attempts) - record.failed
    lines = [
        f"# pcam-scan {record.command}: {store_uri}",
        "",
        f"- started {record.started}, ended {record.ended}, exit code {record.exit_code}, {record.outcome}"
        + (f": {record.message}" if record.message else ""),
        f"- host {record.host}, user {record.user}, pid {record.pid}",
        f"- slides: {len(record.attempts)} attempted, {done} completed, {record.failed} failed",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(record.versions.items())),
        "",
        "| slide | state | message |",
        "|---|---|---|",
    ]
    for attempt in record.attempts:
        message = attempt.message.replace("|", "\\|")
        lines.append(f"| {attempt.slide_id} | {attempt.state} | {message} |")
    lines += ["", "Every run's record: `pcam-scan history STORE`."]
    return "\n".join(lines) + "\n"


SUMMARY_NAME = "summary.md"


def summary_location(location: StoreLocation) -> str:
    """Where a scan's summary goes: beside a local store, `<store name>.summary.md` (so stores
    sharing a folder keep theirs apart); inside a URL store, `summary.md` at its root (there is
    no "beside" an object-store prefix that the user surely may write)."""
    local = location.local_path
    if local is not None:
        return str(local.with_name(f"{local.name}.{SUMMARY_NAME}"))
    return f"{location.uri.rstrip('/')}/{SUMMARY_NAME}"


def write_summary(location: StoreLocation, text: str) -> str:
    """Write (replace) the scan's summary; returns where it went."""
    target = summary_location(location)
    data = text.encode("utf-8")
    local = location.local_path
    if local is not None:
        write_output_bytes(Path(target), data, overwrite=True)
    else:
        store = location.zarr_store(read_only=False)
        sync(store.set(SUMMARY_NAME, default_buffer_prototype().buffer.from_bytes(data)))
    return target
