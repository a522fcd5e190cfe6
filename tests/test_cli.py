"""The ``rapport`` command line on the real broker: every command answers ``--help``, says
what it found and exits with the documented code."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from typer.testing import CliRunner, Result

from devstack.ports import free_port
from ops.cli import app
from shared.auth import Role, TokenService
from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events import KafkaRecord
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database
from shared.outbox import Outbox
from shared.routing import BoundRoutes
from shared.settings import DEVELOPMENT_AUTH_SECRET
from shared.topics import PURCHASES, TopicNames
from tests.conftest import delete_topics, visible
from tests.kafka_reading import read_topic

COMMANDS = [
    [],
    ["status"],
    ["topics"],
    ["topics", "create"],
    ["topics", "describe"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "redrive"],
    ["replay"],
    ["token"],
    ["token", "mint"],
    ["up"],
    ["demo"],
]


def rapport(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env, input=stdin)


async def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """The command in a thread of its own: it runs its own event loop, as from a shell."""
    return await asyncio.to_thread(rapport, *args, env=env, stdin=stdin)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rapport")
def test_every_command_explains_itself(command: list[str]) -> None:
    result = rapport(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: rapport" in result.output


def test_an_unknown_command_or_option_is_a_usage_error() -> None:
    assert rapport("teleport").exit_code == 2
    assert rapport("dlq", "list", "--since", "yesterday-ish").exit_code == 2


async def test_topics_create_then_describe(kafka_bootstrap: str, test_id: str) -> None:
    prefix = f"test-cli-{test_id}."
    names = TopicNames(prefix)
    connection = ["--bootstrap", kafka_bootstrap, "--prefix", prefix]
    try:
        missing = await run(*connection, "topics", "describe", "--json")
        assert missing.exit_code == 1
        assert {row["partitions"] for row in json.loads(missing.output)} == {0}

        created = await run(*connection, "topics", "create")
        assert created.exit_code == 0, created.output
        assert f"{len(names.all())} created" in created.output
        await visible(kafka_bootstrap, set(names.all()))

        again = await run(*connection, "topics", "create")
        assert "0 created" in again.output

        described = await run(*connection, "topics", "describe", "--json")
        assert described.exit_code == 0, described.output
        rows = {row["topic"]: row for row in json.loads(described.output)}
        assert rows[names(PURCHASES)]["partitions"] == names.all()[names(PURCHASES)]
        assert rows[names.dlq(names(PURCHASES))]["partitions"] == 3
    finally:
        await delete_topics(kafka_bootstrap, prefix)


async def dead_letter_two(kafka_bootstrap: str, topics: TopicNames, db: Database) -> None:
    """Two records a consumer cannot read, dead-lettered by the real consumer path."""
    publisher = AiokafkaPublisher([kafka_bootstrap], client_id="rapport-tests")
    await publisher.start()
    try:
        consumer = EventConsumer(
            service="profiles",
            client=db.client,
            db=db,
            publisher=publisher,
            routes=BoundRoutes(),
            topics=topics,
            outbox=Outbox(db, topics),
        )
        await consumer.ensure_indexes()
        bad_json = IncomingMessage(topics(PURCHASES), 0, 7, b"c-1", b"{not json", [])
        no_type = IncomingMessage(topics(PURCHASES), 1, 9, b"c-2", b'{"specversion": "1.0"}', [])
        outcomes = await consumer.handle_batch([bad_json, no_type])
        assert outcomes == [Outcome.DEAD_LETTERED, Outcome.DEAD_LETTERED]
    finally:
        await publisher.stop()


async def test_dead_letters_are_listed_shown_and_redriven(
    kafka_bootstrap: str, topics: TopicNames, db: Database
) -> None:
    await dead_letter_two(kafka_bootstrap, topics, db)
    connection = ["--bootstrap", kafka_bootstrap, "--prefix", topics.prefix]

    listed = await run(*connection, "dlq", "list", "--topic", "crm.purchases", "--json")
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.output)
    assert len(letters) == 2
    assert {letter["source"] for letter in letters} == {
        f"{topics(PURCHASES)}:0:7",
        f"{topics(PURCHASES)}:1:9",
    }
    assert all(letter["consumer"] == "profiles" and letter["reason"] for letter in letters)

    # Time and offset ranges narrow the list.
    recent = await run(*connection, "dlq", "list", "--since", "1h", "--json")
    assert len(json.loads(recent.output)) == 2
    old = await run(*connection, "dlq", "list", "--until", "2020-01-01T00:00:00", "--json")
    assert json.loads(old.output) == []
    first = letters[0]["id"]
    _, partition, offset = first.rsplit(":", 2)
    narrowed = await run(
        *connection,
        *("dlq", "list", "--topic", "crm.purchases", "--partition", partition),
        *("--from-offset", offset, "--to-offset", offset, "--json"),
    )
    assert [letter["id"] for letter in json.loads(narrowed.output)] == [first]

    shown = await run(*connection, "dlq", "show", first)
    assert shown.exit_code == 0, shown.output
    details = json.loads(shown.output)
    assert details["reason"] == letters[0]["reason"]
    assert details["headers"]["dlq-attempts"]
    absent = await run(*connection, "dlq", "show", f"{topics.dlq(topics(PURCHASES))}:0:999")
    assert absent.exit_code == 1
    assert (await run(*connection, "dlq", "show", "not-an-id")).exit_code == 2

    # A redrive needs a selection, asks first, and sends the originals back.
    assert (await run(*connection, "dlq", "redrive")).exit_code == 2
    declined = await run(*connection, "dlq", "redrive", "--topic", "crm.purchases", stdin="n\n")
    assert declined.exit_code == 1
    redriven = await run(*connection, "dlq", "redrive", "--topic", "crm.purchases", "--yes")
    assert redriven.exit_code == 0, redriven.output
    assert "redrove 2 dead letters" in redriven.output
    records = await read_topic(kafka_bootstrap, topics(PURCHASES), until=lambda r: len(r) >= 2)
    assert sorted(record.value for record in records) == sorted(
        [b"{not json", b'{"specversion": "1.0"}']
    )
    for record in records:
        headers = dict(record.headers)
        assert not any(name.startswith("dlq-") for name in headers)
        assert headers["rapport-redriven-from"].decode().startswith(topics.dlq(topics(PURCHASES)))


class _Ready(BaseHTTPRequestHandler):
    """A service's /readyz answering ready (only the command's HTTP side is under test)."""

    def do_GET(self) -> None:
        body = json.dumps({"status": "ready", "checks": {"kafka": "ok"}}).encode()
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ready_service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_status_tells_readiness_and_lag(
    kafka_bootstrap: str, topics: TopicNames, ready_service: str
) -> None:
    publisher = AiokafkaPublisher([kafka_bootstrap], client_id="rapport-tests")
    await publisher.start()
    try:
        record = KafkaRecord(key=b"c-1", value=b"{}", headers=[])
        await publisher.publish([(topics(PURCHASES), record)] * 5)
    finally:
        await publisher.stop()
    # The profiles group has committed one of the five: four behind.
    group = f"{topics.prefix}rapport-profiles"
    # (no auto-commit: stopping would commit the consumer's position, the end, over it)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topics(PURCHASES), p) for p in range(6)]
        ends = await consumer.end_offsets(tps)
        [(tp, end)] = [(tp, end) for tp, end in ends.items() if end]
        consumer.assign([tp])
        await consumer.commit({tp: OffsetAndMetadata(1, "")})
    finally:
        await consumer.stop()
    assert end == 5

    closed = f"http://127.0.0.1:{free_port()}"
    env = {
        "RAPPORT_PROFILES_URL": ready_service,
        "RAPPORT_COMPLAINTS_URL": closed,
        "RAPPORT_NOTIFICATIONS_URL": ready_service,
        "RAPPORT_ANALYTICS_URL": ready_service,
    }
    connection = ["--bootstrap", kafka_bootstrap, "--prefix", topics.prefix]
    result = await run(*connection, "status", "--json", env=env)
    assert result.exit_code == 1, result.output  # complaints does not answer
    found = {row["service"]: row for row in json.loads(result.output)}
    assert found["profiles"]["ready"] is True
    assert found["complaints"]["ready"] is False
    assert "no answer" in found["complaints"]["detail"]
    assert found["profiles"]["group"] == group
    assert found["profiles"]["lag"][topics(PURCHASES)] == 4, result.output
    assert found["analytics"]["lag"] is None  # never committed
    assert found["profiles"]["members"] == 0  # no worker is running

    env["RAPPORT_COMPLAINTS_URL"] = ready_service
    assert (await run(*connection, "status", env=env)).exit_code == 0


def test_token_mint_signs_with_the_configured_secret() -> None:
    env = {"RAPPORT_ENVIRONMENT": "development", "RAPPORT_AUTH_SECRET": ""}
    minted = rapport("token", "mint", "--role", "agent", "--subject", "ana", env=env)
    assert minted.exit_code == 0, minted.output
    principal = TokenService(DEVELOPMENT_AUTH_SECRET).verify(minted.output.strip())
    assert principal.subject == "ana"
    assert principal.roles == frozenset({Role.AGENT})

    customer = rapport("token", "mint", "--role", "customer", "--customer-id", "c-1", env=env)
    assert (
        TokenService(DEVELOPMENT_AUTH_SECRET).verify(customer.output.strip()).customer_id == "c-1"
    )
    assert rapport("token", "mint", "--role", "customer", env=env).exit_code == 2
    assert rapport("token", "mint", "--role", "wizard", env=env).exit_code == 2
    production = {"RAPPORT_ENVIRONMENT": "production", "RAPPORT_AUTH_SECRET": ""}
    refused = rapport("token", "mint", env=production)
    assert refused.exit_code != 0  # no usable default secret outside development


async def test_topics_describe_reads_the_prefix_from_the_environment(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    env = {"RAPPORT_KAFKA_BOOTSTRAP": kafka_bootstrap, "RAPPORT_TOPIC_PREFIX": topics.prefix}
    described = await run("topics", "describe", env=env)
    assert described.exit_code == 0, described.output
    assert topics(PURCHASES) in described.output
