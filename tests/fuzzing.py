"""Fuzzing a service from its own OpenAPI document with schemathesis.

The service runs as its own process (as in production) on the test's topics and
database; schemathesis generates valid and invalid requests for every operation, with
stateful sequences (create, then read, change...), and fails on any server error. The
seed is fixed so that a failure reproduces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack.ports import free_port

ADMIN_TOKEN = "fuzz-admin-token"
# CI runs a short, seeded pass; `make fuzz` a long one (RAPPORT_FUZZ_EXAMPLES per
# operation, RAPPORT_FUZZ_SEED to try other inputs or replay a finding).
SEED = os.environ.get("RAPPORT_FUZZ_SEED", "20261122")
EXAMPLES = int(os.environ.get("RAPPORT_FUZZ_EXAMPLES", "0")) or None


def assert_no_server_errors(
    service: str,
    *,
    kafka_bootstrap: str,
    mongodb_uri: str,
    topic_prefix: str,
    database: str,
    workdir: Path,
    max_examples: int = 15,
) -> None:
    port = free_port()
    prefix = f"RAPPORT_{service.upper()}_"
    env = {
        **os.environ,
        "RAPPORT_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RAPPORT_MONGODB_URI": mongodb_uri,
        "RAPPORT_TOPIC_PREFIX": topic_prefix,
        f"{prefix}MONGODB_DATABASE": database,
        f"{prefix}HTTP_PORT": str(port),
        "RAPPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        "RAPPORT_LOG_LEVEL": "WARNING",
    }
    log_path = workdir / f"{service}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"], env=env, stdout=log, stderr=log
        )
        try:
            _wait_ready(f"http://127.0.0.1:{port}/readyz", process, log_path)
            result = subprocess.run(
                [
                    str(Path(sys.executable).parent / "st"),
                    "run",
                    f"http://127.0.0.1:{port}/openapi.json",
                    "--header",
                    f"Authorization: Bearer {ADMIN_TOKEN}",
                    "--checks",
                    "not_a_server_error",
                    "--max-examples",
                    str(EXAMPLES or max_examples),
                    "--seed",
                    SEED,
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                timeout=600 if EXAMPLES is None else 3600,
                check=False,
                cwd=workdir,  # schemathesis keeps a cache folder in its working directory
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert result.returncode == 0, (
        result.stdout[-6000:] + result.stderr[-2000:] + _server_errors(log_path)
    )
    assert "passed" in result.stdout


def _server_errors(log: Path) -> str:
    """The service's own account of its 500s: the last logged errors, tracebacks included."""
    errors = [line for line in log.read_text().splitlines() if '"level": "ERROR"' in line]
    return "\n--- errors logged by the service ---\n" + "\n".join(errors[-2:])[-4000:]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready: {log.read_text()[-3000:]}")
