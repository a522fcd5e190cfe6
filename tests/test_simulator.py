"""The traffic simulator (``make demo``) against the real profiles and complaints services.

Both services run in this process under uvicorn on free ports, against the session's
broker and store with this test's own topics and databases; the simulator reaches them
only as any client would: HTTP with a bearer token, and CloudEvents on ``crm.purchases``.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import uvicorn
from fastapi import FastAPI
from pymongo import MongoClient as SyncMongoClient

from devstack.demo import DemoConsole, DemoOptions, parse_options
from devstack.ports import free_ports
from services.complaints.bootstrap import create_app as create_complaints
from services.complaints.settings import ComplaintsSettings
from services.profiles.bootstrap import create_app as create_profiles
from services.profiles.settings import ProfilesSettings
from shared.mongo import Database, MongoClient
from shared.topics import COMPLAINTS, PURCHASES, TopicNames
from simulator import Plan, PlanSettings, Simulator, SimulatorConfig
from simulator.cli import config_from_args
from simulator.plan import ComplaintStep, Purchase
from simulator.runner import PurchasesVia
from tests.kafka_reading import read_topic
from tests.service_harness import eventually

TOKEN = "simulator-test-admin-token"
SEED_LOCALES = {"hr", "cs", "sl", "fa"}


@asynccontextmanager
async def serving(app: FastAPI, port: int) -> AsyncIterator[str]:
    """The app under uvicorn on ``port``, lifespan included (its Kafka worker runs too)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("the server stopped before it started")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=60)


async def all_pages(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


@pytest.mark.parametrize("purchases_via", ["kafka", "http"])
async def test_simulated_traffic_reaches_the_services(
    purchases_via: PurchasesVia,
    kafka_bootstrap: str,
    mongodb_uri: str,
    topics: TopicNames,
    db: Database,
    mongo_client: MongoClient,
) -> None:
    common: dict[str, Any] = {
        "kafka_bootstrap": kafka_bootstrap,
        "mongodb_uri": mongodb_uri,
        "topic_prefix": topics.prefix,
        "admin_token": TOKEN,
        "outbox_poll_interval_seconds": 0.05,
    }
    complaints_db = f"{db.name}_complaints"
    profiles_port, complaints_port = free_ports(2)
    try:
        async with AsyncExitStack() as stack:
            profiles_url = await stack.enter_async_context(
                serving(
                    create_profiles(ProfilesSettings(mongodb_database=db.name, **common)),
                    profiles_port,
                )
            )
            complaints_url = await stack.enter_async_context(
                serving(
                    create_complaints(ComplaintsSettings(mongodb_database=complaints_db, **common)),
                    complaints_port,
                )
            )
            config = SimulatorConfig(
                profiles_url=profiles_url,
                complaints_url=complaints_url,
                kafka_bootstrap=kafka_bootstrap,
                topic_prefix=topics.prefix,
                token=TOKEN,
                rate=50,
                duration=7,
                customers=12,
                seed=7,
                history_days=10,
                run_id="t",
                purchases_via=purchases_via,
            )
            stats = await Simulator(config).run()

            assert stats.error_count == 0, stats.error_examples
            assert stats.customers_created >= 12
            assert stats.purchases > 0
            assert stats.history_purchases > 0
            assert stats.complaints_opened > 0

            headers = {"Authorization": f"Bearer {TOKEN}"}
            profiles = await stack.enter_async_context(
                httpx.AsyncClient(base_url=profiles_url, headers=headers, timeout=30)
            )
            complaints = await stack.enter_async_context(
                httpx.AsyncClient(base_url=complaints_url, headers=headers, timeout=30)
            )

            customers = await all_pages(profiles, "/api/v1/customers")
            assert len(customers) == stats.customers_created
            languages = {customer["locale"].split("-")[0] for customer in customers}
            assert languages >= SEED_LOCALES, languages
            assert len(languages) >= 6
            assert {customer["time_zone"] for customer in customers} >= {
                "Europe/Zagreb",
                "Europe/Prague",
                "Europe/Ljubljana",
                "Asia/Tehran",
            }
            names = [f"{c['given_name']} {c['family_name']}" for c in customers]
            assert any(not name.isascii() for name in names), names
            assert all(c["emails"] for c in customers)
            assert all(phone.startswith("+") for c in customers for phone in c["phones"])

            bought = stats.purchases + stats.history_purchases
            # Returns, and refunds granted by resolving complaints (booked from Kafka).
            returned = stats.returns + stats.history_returns + stats.refunds
            assert stats.refunds > 0
            counted: tuple[int, int] = (0, 0)

            async def ledger_complete() -> bool:
                nonlocal counted
                purchases = returns = 0
                for customer in customers:
                    figures = await profiles.get(f"/api/v1/customers/{customer['id']}/figures")
                    purchases += figures.json()["purchase_count"]
                    returns += figures.json()["return_count"]
                counted = (purchases, returns)
                return counted == (bought, returned)

            try:
                await eventually(ledger_complete, timeout=60)
            except AssertionError:
                raise AssertionError(
                    f"ledger has (purchases, returns) {counted}, sent {(bought, returned)}"
                ) from None
            for topic in (PURCHASES, COMPLAINTS):
                rejected = await read_topic(kafka_bootstrap, topics.dlq(topics(topic)))
                reasons = [dict(record.headers).get("dlq-reason") for record in rejected]
                assert rejected == [], reasons

            listed = await all_pages(complaints, "/api/v1/complaints")
            assert len(listed) == stats.complaints_opened
            states = {complaint["status"] for complaint in listed}
            assert len(states) >= 2, states
            feedback = [f for complaint in listed for f in complaint["feedback"]]
            assert len(feedback) == stats.feedback
            assert feedback, "no complaint got feedback"
            assert all(1 <= f["csat"] <= 5 for f in feedback)
    finally:
        await mongo_client.drop_database(complaints_db)


def plan(seed: int) -> Plan:
    return Plan(
        PlanSettings(
            seed=seed,
            customers=30,
            history_days=30,
            start=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
            run_id="r",
        )
    )


def test_the_same_seed_plans_the_same_traffic() -> None:
    first, second, other = plan(42), plan(42), plan(43)
    assert first.setup() == second.setup()
    assert first.history(range(30)) == second.history(range(30))
    assert list(itertools.islice(first.live(), 800)) == list(itertools.islice(second.live(), 800))

    assert first.setup() != other.setup()
    assert list(itertools.islice(first.live(), 800)) != list(itertools.islice(other.live(), 800))


def test_a_plan_has_rhythms_churners_and_complaint_lifecycles() -> None:
    the_plan = plan(42)
    customers = [action.customer for action in the_plan.setup()]
    assert len({round(c.mean_interval_days) for c in customers}) > 5
    churners = [c for c in customers if c.quiet_days is not None]
    assert churners
    history = the_plan.history(range(30))
    start = the_plan.settings.start
    for churner in churners:
        quiet = churner.quiet_days
        assert quiet is not None
        bought = [
            e.at
            for e in history
            if isinstance(e, Purchase) and e.customer_ref == churner.ref and e.at is not None
        ]
        # They used to buy, and stopped well before the start: overdue on their rhythm.
        assert bought
        assert (start - max(bought)).total_seconds() >= quiet * 86_400
        assert quiet > churner.mean_interval_days
    live = list(itertools.islice(the_plan.live(), 1500))
    steps = {str(action.step) for action in live if isinstance(action, ComplaintStep)}
    assert {"acknowledge", "in_progress", "resolve", "feedback"} <= steps
    # Baskets pair what goes together: pasta comes with sauce more often than not.
    purchases = [action for action in live if isinstance(action, Purchase)]
    with_pasta = [p for p in purchases if any(line.sku == "GRO-PASTA" for line in p.lines)]
    with_sauce = [p for p in with_pasta if any(line.sku == "GRO-SAUCE" for line in p.lines)]
    assert with_pasta
    assert len(with_sauce) > len(with_pasta) / 2


def test_the_cli_takes_its_defaults_from_the_stack_environment() -> None:
    env = {
        "RAPPORT_ADMIN_TOKEN": "tok",
        "RAPPORT_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
        "RAPPORT_TOPIC_PREFIX": "demo.",
        "RAPPORT_PROFILES_HTTP_PORT": "9001",
    }
    config = config_from_args([], env)
    assert config.token == "tok"
    assert config.kafka_bootstrap == "127.0.0.1:19092"
    assert config.topic_prefix == "demo."
    assert config.profiles_url == "http://127.0.0.1:9001"
    assert config.complaints_url == "http://127.0.0.1:8002"
    forever = config_from_args(["--duration", "0", "--rate", "2.5", "--seed", "9"], env)
    assert (forever.duration, forever.rate, forever.seed) == (None, 2.5, 9)


@pytest.mark.e2e
def test_make_demo_runs_the_stack_feeds_it_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """What ``make demo`` runs, with its own data folder, ports, topics and databases."""
    ports = free_ports(9)
    prefix = f"demo-{tmp_path.name}"[-40:].replace("_", "-")
    env = dict(os.environ)
    env.update(
        RAPPORT_DATA_DIR=str(tmp_path / "data"),
        RAPPORT_KAFKA_PORT=str(ports[0]),
        RAPPORT_KAFKA_CONTROLLER_PORT=str(ports[1]),
        RAPPORT_MONGODB_PORT=str(ports[2]),
        RAPPORT_SMTP_PORT=str(ports[3]),
        RAPPORT_SMS_PORT=str(ports[8]),
        RAPPORT_ADMIN_TOKEN=TOKEN,
        RAPPORT_TOPIC_PREFIX=f"{prefix}.",
        RAPPORT_DEMO_CUSTOMERS="6",
        RAPPORT_DEMO_RATE="20",
        RAPPORT_DEMO_DURATION="4",
        RAPPORT_DEMO_HISTORY_DAYS="5",
    )
    databases = []
    for service, port in zip(
        ("profiles", "complaints", "notifications", "analytics"), ports[4:8], strict=True
    ):
        env[f"RAPPORT_{service.upper()}_HTTP_PORT"] = str(port)
        database = f"{prefix}_{service}".replace("-", "_")
        env[f"RAPPORT_{service.upper()}_MONGODB_DATABASE"] = database
        databases.append(database)
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.demo"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while "traffic done" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            time.sleep(0.5)
        output = log.read_text(errors="replace")
        assert f"http://127.0.0.1:{ports[7]}/#token={TOKEN}" in output
        assert " 0 API errors" in output, output[-4000:]
        customers = httpx.get(
            f"http://127.0.0.1:{ports[4]}/api/v1/customers",
            params={"tag": "simulated"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert customers.status_code == 200
        assert len(customers.json()["items"]) >= 6

        descendants = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0, log.read_text(errors="replace")[-4000:]
        _, alive = psutil.wait_procs(descendants, timeout=10)
        assert alive == []
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        mongodb_uri = env.get("RAPPORT_MONGODB_URI")
        if mongodb_uri:  # the demo's own SecantusDB went away with its data folder
            with SyncMongoClient[dict[str, Any]](
                mongodb_uri, serverSelectionTimeoutMS=5000
            ) as client:
                for database in databases:
                    client.drop_database(database)


def test_make_demo_reads_its_options_from_the_environment() -> None:
    options = parse_options([], {"RAPPORT_DEMO_RATE": "12.5", "RAPPORT_DEMO_CUSTOMERS": "30"})
    assert options == DemoOptions(rate=12.5, duration=0, customers=30, seed=42, history_days=30)
    assert parse_options(["--duration", "60"], {}).duration == 60
    with pytest.raises(SystemExit):
        parse_options([], {"RAPPORT_DEMO_RATE": "0"})


def test_make_demo_keeps_the_services_logs_off_the_screen() -> None:
    screen, services = io.StringIO(), io.StringIO()
    console = DemoConsole(screen, services)
    console.info("starting profiles")
    console.line("profiles", '{"message": "Uvicorn running"}')
    assert "starting profiles" in screen.getvalue()
    assert "Uvicorn running" not in screen.getvalue()
    assert "Uvicorn running" in services.getvalue()
