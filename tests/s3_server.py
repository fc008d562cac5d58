"""A real S3-compatible server for tests: moto's server mode on a free loopback port, with one
bucket and the environment that points boto/s3fs at it (as deploy/kuberay/ pods get theirs)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

BUCKET = "pcam-scan-test"


@pytest.fixture(scope="module")
def s3_bucket() -> Iterator[str]:
    """An S3 server on a free loopback port with one empty bucket, and the environment that
    points boto/s3fs at it (no credentials or profile of this machine leak in)."""
    import boto3  # here, not at import: every test session loads this module (tests/conftest.py)
    from moto.server import ThreadedMotoServer

    werkzeug_log = logging.getLogger("werkzeug")  # the server's request log
    old_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                env.delenv(name, raising=False)
            env.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
            env.setenv("AWS_ACCESS_KEY_ID", "pcam-scan-test")
            env.setenv("AWS_SECRET_ACCESS_KEY", "pcam-scan-test-secret")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield BUCKET
    finally:
        server.stop()
        werkzeug_log.setLevel(old_level)
