"""``make up`` smoke test: the whole stack comes up, stays, and Ctrl-C leaves nothing behind.

It runs what ``make up`` runs (``python -m devstack.up``) with its own data folder and
free ports; with ``RAPPORT_KAFKA_BOOTSTRAP`` / ``RAPPORT_MONGODB_URI`` set it uses those
servers instead, as ``make up`` does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pymongo import MongoClient

from devstack.ports import free_ports
from devstack.up import REPLICA_PORT_STEP
from ops.kafka import group_members
from services.analytics.worker import SUBSCRIPTIONS as ANALYTICS_TOPICS

SERVICES = ("profiles", "complaints", "notifications", "analytics")
ADMIN_TOKEN = "smoke-test-admin-token"

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    process: subprocess.Popen[str]
    ports: dict[str, int]
    env: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    ports = free_ports(9)
    env = dict(os.environ)
    env.update(
        RAPPORT_DATA_DIR=str(tmp_path / "data"),
        RAPPORT_KAFKA_PORT=str(ports[0]),
        RAPPORT_KAFKA_CONTROLLER_PORT=str(ports[1]),
        RAPPORT_MONGODB_PORT=str(ports[2]),
        RAPPORT_SMTP_PORT=str(ports[3]),
        RAPPORT_SMS_PORT=str(ports[8]),
        RAPPORT_ADMIN_TOKEN=ADMIN_TOKEN,
        RAPPORT_TOPIC_PREFIX=f"smoke-{tmp_path.name}.",
    )
    for service, port in zip(SERVICES, ports[4:8], strict=True):
        env[f"RAPPORT_{service.upper()}_HTTP_PORT"] = str(port)
    return env


def start_stack(env: dict[str, str], log: Path) -> Stack:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.up"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    ports = {service: int(env[f"RAPPORT_{service.upper()}_HTTP_PORT"]) for service in SERVICES}
    return Stack(process, ports, env, log)


def wait_until_ready(stack: Stack, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    waiting = set(SERVICES)
    while waiting and time.monotonic() < deadline:
        assert stack.process.poll() is None, f"make up exited early:\n{stack.output()[-4000:]}"
        for service in sorted(waiting):
            try:
                response = httpx.get(f"http://127.0.0.1:{stack.ports[service]}/readyz", timeout=2)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                waiting.discard(service)
        time.sleep(0.5)
    assert not waiting, f"not ready: {waiting}\n{stack.output()[-4000:]}"


def stop_with_ctrl_c(stack: Stack) -> list[psutil.Process]:
    """Send SIGINT as a terminal would; returns the descendants it had."""
    descendants = psutil.Process(stack.process.pid).children(recursive=True)
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=90) == 0, stack.output()[-4000:]
    return descendants


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    started: list[Stack] = []
    yield started
    for stack in started:  # only reached with a failing test: never leave a stack running
        if stack.process.poll() is None:
            stack.process.send_signal(signal.SIGTERM)
            try:
                stack.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stack.process.kill()


def test_make_up_serves_all_four_services_and_ctrl_c_leaves_no_process(
    stack_env: dict[str, str], tmp_path: Path, stacks: list[Stack]
) -> None:
    stack = start_stack(stack_env, tmp_path / "up-1.log")
    stacks.append(stack)
    wait_until_ready(stack)

    output = stack.output()
    assert ADMIN_TOKEN in output  # the banner prints the admin token
    for service in SERVICES:
        assert f"http://127.0.0.1:{stack.ports[service]}" in output
    me = httpx.get(
        f"http://127.0.0.1:{stack.ports['profiles']}/api/v1/me",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert me.status_code == 200
    assert me.json()["roles"] == ["admin"]

    # The customer portal: at the address the banner prints, calling the other services.
    profiles = f"http://127.0.0.1:{stack.ports['profiles']}"
    complaints = f"http://127.0.0.1:{stack.ports['complaints']}"
    assert f"{profiles}/portal/" in output
    assert httpx.get(f"{profiles}/portal/").headers["content-type"].startswith("text/html")
    config = httpx.get(f"{profiles}/portal/config.json").json()
    assert config["apis"]["complaints"] == complaints
    preflight = httpx.options(
        f"{complaints}/api/v1/complaints",
        headers={"Origin": profiles, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers["access-control-allow-origin"] == profiles
    mongodb_uri = stack_env.get("RAPPORT_MONGODB_URI") or (
        f"mongodb://127.0.0.1:{stack_env['RAPPORT_MONGODB_PORT']}/?retryWrites=false"
    )
    database = f"smoke_{tmp_path.name}"[:60]
    with MongoClient[dict[str, Any]](mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        client[database]["customers"].insert_one({"_id": "c-first-run", "given_name": "Ana"})

    descendants = stop_with_ctrl_c(stack)
    assert descendants, "make up started no child processes"
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == [], f"left behind: {[process.info for process in alive]}"
    assert not (Path(stack_env["RAPPORT_DATA_DIR"]) / "up.lock").exists()

    # A second run finds what the first one stored.
    second = start_stack(stack_env, tmp_path / "up-2.log")
    stacks.append(second)
    wait_until_ready(second)
    with MongoClient[dict[str, Any]](mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        assert client[database]["customers"].find_one({"_id": "c-first-run"}) is not None
        client.drop_database(database)
    descendants = stop_with_ctrl_c(second)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == []


def _port_with_a_free_replica_port() -> int:
    """A free port whose second replica's port (+100) is free too."""
    for port in free_ports(20):
        if port + REPLICA_PORT_STEP < 65536 and _free(port + REPLICA_PORT_STEP):
            return port
    raise AssertionError("no free pair of ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_make_up_runs_replicas_that_share_the_partitions_of_one_consumer_group(
    stack_env: dict[str, str], tmp_path: Path, stacks: list[Stack]
) -> None:
    port = _port_with_a_free_replica_port()
    stack_env.update(RAPPORT_ANALYTICS_HTTP_PORT=str(port), RAPPORT_ANALYTICS_REPLICAS="2")
    stack = start_stack(stack_env, tmp_path / "up-replicas.log")
    stacks.append(stack)
    wait_until_ready(stack)
    second = f"http://127.0.0.1:{port + REPLICA_PORT_STEP}"
    deadline = time.monotonic() + 120
    while "Rapport is up" not in stack.output():  # make up waits for every replica
        assert time.monotonic() < deadline, stack.output()[-4000:]
        assert stack.process.poll() is None, stack.output()[-4000:]
        time.sleep(0.5)
    assert httpx.get(f"{second}/readyz", timeout=5).status_code == 200
    assert f"starting analytics-2 on {second} (replica 2 of 2)" in stack.output()

    bootstrap = stack_env.get("RAPPORT_KAFKA_BOOTSTRAP") or (
        f"127.0.0.1:{stack_env['RAPPORT_KAFKA_PORT']}"
    )
    group = f"{stack_env['RAPPORT_TOPIC_PREFIX']}rapport-analytics"
    members = asyncio.run(group_members([bootstrap], group))
    assert len(members) == 2, members
    owned = list(members.values())
    assert all(owned), f"a replica owns nothing: {members}"
    assert not owned[0] & owned[1]  # shared, never both
    assert {topic for topic, _ in owned[0] | owned[1]} == {
        f"{stack_env['RAPPORT_TOPIC_PREFIX']}{topic}" for topic in ANALYTICS_TOPICS
    }

    descendants = stop_with_ctrl_c(stack)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == [], f"left behind: {[process.info for process in alive]}"


def test_make_up_refuses_more_replicas_than_partitions(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    stack_env["RAPPORT_REPLICAS"] = "7"
    log = tmp_path / "up-too-many.log"
    stack = start_stack(stack_env, log)
    assert stack.process.wait(timeout=60) != 0
    assert "RAPPORT_REPLICAS must be a whole number from 1 to 6" in stack.output()
