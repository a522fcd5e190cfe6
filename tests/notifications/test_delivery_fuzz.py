"""Bad input never gets a 500 from the templates, inbox and webhooks endpoints:
schemathesis fuzzes them from their OpenAPI document (as tests.fuzzing does for whole
services), served by a process of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devstack.ports import free_port
from shared.mongo import Database
from tests.fuzzing import ADMIN_TOKEN, SEED, _wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_no_request_makes_the_delivery_endpoints_fail(
    mongodb_uri: str, db: Database, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "delivery.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.notifications.delivery_server",
                "--port",
                str(port),
                "--mongodb-uri",
                mongodb_uri,
                "--database",
                db.name,
                "--admin-token",
                ADMIN_TOKEN,
            ],
            stdout=log,
            stderr=log,
            cwd=ROOT,  # `tests` is not an installed package
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
                    "15",
                    "--seed",
                    SEED,
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
                cwd=tmp_path,
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert result.returncode == 0, (
        result.stdout[-6000:] + result.stderr[-2000:] + log_path.read_text()[-3000:]
    )
    assert "passed" in result.stdout
