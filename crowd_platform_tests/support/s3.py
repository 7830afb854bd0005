"""A real S3 endpoint for tests: moto in server mode on a free loopback port (reached through
s3fs and botocore exactly as a production bucket would be), with credentials that only it takes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_SESSION_TOKEN": None, "AWS_PROFILE": None}


def set_env(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set (or, for None, unset) environment variables; returns the previous values."""
    previous = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return previous


@contextmanager
def moto_bucket(bucket: str) -> Iterator[str]:
    """Start the server, point this process's AWS settings at it, create ``bucket``; yields the
    endpoint URL (child processes need AWS_ENDPOINT_URL and AWS_ENV too: os.environ carries them)."""
    from moto import server as moto_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    previous = set_env({**AWS_ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True).mkdir(bucket)
        yield endpoint
    finally:
        set_env(previous)
        server.stop()
