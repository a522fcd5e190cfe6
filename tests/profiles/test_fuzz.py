"""Bad input never gets a 500: schemathesis fuzzes every profiles endpoint from its OpenAPI.

The service runs as its own process (as in production) on this test's topics and
database; schemathesis generates valid and invalid requests for all operations, with
stateful sequences (create, then read, patch, merge...), and fails on any server error.
The seed is fixed so that a failure reproduces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack.ports import free_port
from shared.mongo import Database
from shared.topics import TopicNames

ADMIN_TOKEN = "fuzz-admin-token"


def test_no_request_makes_the_profiles_service_fail(
    kafka_bootstrap: str, mongodb_uri: str, topics: TopicNames, db: Database, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "RAPPORT_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "RAPPORT_MONGODB_URI": mongodb_uri,
        "RAPPORT_TOPIC_PREFIX": topics.prefix,
        "RAPPORT_PROFILES_MONGODB_DATABASE": db.name,
        "RAPPORT_PROFILES_HTTP_PORT": str(port),
        "RAPPORT_ADMIN_TOKEN": ADMIN_TOKEN,
        "RAPPORT_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "profiles.log").open("w")
    service = subprocess.Popen(
        [sys.executable, "-m", "services.profiles"], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert service.poll() is None, (tmp_path / "profiles.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
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
                "15",
                "--seed",
                "20261122",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # schemathesis keeps a cache folder in its working directory
            check=False,
        )
    finally:
        service.terminate()
        service.wait(timeout=30)
        log.close()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
