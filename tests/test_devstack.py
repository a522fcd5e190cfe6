"""The local infrastructure is the real thing: Apache Kafka 4.x, SecantusDB, an SMTP sink.

Uses the session fixtures of ``devstack.pytest_plugin`` (loaded by tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import smtplib
import socket
import struct
import threading
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pymongo
import pymongo.errors
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from devstack.kafka import KAFKA_VERSION, KafkaBroker, KafkaError, ensure_jars
from devstack.lockfile import LockHeldError, PidLock
from devstack.mongo import (
    PYTHON,
    RUST,
    MongoError,
    SecantusServer,
    chosen_store,
    find_secantusd_rs,
)
from devstack.ports import free_port, free_ports, is_port_free
from devstack.processes import pid_alive
from devstack.smtp import SmtpSink
from devstack.up import Console, Stack, UpConfig, banner

API_FETCH = 1
API_VERSIONS = 18
API_CONSUMER_GROUP_HEARTBEAT = 68


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "broker closed the connection"
        data += chunk
    return data


def api_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    """Ask the broker which protocol versions it speaks (ApiVersions v0, by hand)."""
    host, port = bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)
    client_id = b"devstack-test"
    header = struct.pack(">hhih", API_VERSIONS, 0, 42, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(header)) + header)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        body = _recv_exactly(sock, size)
    correlation_id, error_code, count = struct.unpack_from(">ihi", body)
    assert (correlation_id, error_code) == (42, 0)
    versions: dict[int, tuple[int, int]] = {}
    for index in range(count):
        key, low, high = struct.unpack_from(">hhh", body, 10 + 6 * index)
        versions[key] = (low, high)
    return versions


def test_broker_speaks_the_kafka_4_protocol(kafka_bootstrap: str) -> None:
    versions = api_versions(kafka_bootstrap)
    # Kafka 4.0 dropped Fetch v0-v3 (KIP-896) and ships the new consumer group
    # protocol (KIP-848): no 3.x broker and no imitation looks like this.
    assert versions[API_FETCH][0] >= 4
    assert API_CONSUMER_GROUP_HEARTBEAT in versions


def test_session_broker_is_genuine_kafka_in_kraft_mode(kafka_broker: KafkaBroker | None) -> None:
    if kafka_broker is None:
        pytest.skip("RAPPORT_KAFKA_BOOTSTRAP points at an external broker")
    log = kafka_broker.log_file.read_text()
    assert f"Kafka version: {KAFKA_VERSION}" in log
    assert "KafkaRaftServer nodeId=1] Kafka Server started" in log
    meta = (kafka_broker.logs_dir / "meta.properties").read_text()
    cluster_id = next(
        line.split("=", 1)[1] for line in meta.splitlines() if line.startswith("cluster.id=")
    )
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    cluster = admin.describe_cluster(request_timeout=10).result()
    assert cluster.cluster_id == cluster_id
    assert [node.port for node in cluster.nodes] == [kafka_broker.port]


async def test_produce_consume_round_trip_with_a_consumer_group(kafka_bootstrap: str) -> None:
    topic = f"devstack-roundtrip-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for index in range(3):
            await producer.send_and_wait(topic, f"m{index}".encode(), key=b"customer-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        async with asyncio.timeout(30):
            while len(received) < 3:
                batches = await consumer.getmany(timeout_ms=1000)
                received += [record.value for records in batches.values() for record in records]
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    assert received == [b"m0", b"m1", b"m2"]
    assert committed == 3


def test_broker_restart_on_the_same_data_dir_keeps_messages(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    broker = KafkaBroker(tmp_path / "kafka", port, controller_port, heap="256m")
    try:
        broker.start()
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce("persisted", b"survives a restart")
        assert producer.flush(30) == 0
        first_pid = broker.pid
        assert first_pid is not None
        broker.stop()
        assert not pid_alive(first_pid)
        assert not broker.pid_file.exists()

        broker.start()  # same folder, same ports: what `make up` does
        consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "restart-check",
                "auto.offset.reset": "earliest",
            }
        )
        try:
            consumer.subscribe(["persisted"])
            values = []
            for _ in range(30):
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    values.append(message.value())
                    break
        finally:
            consumer.close()
        assert values == [b"survives a restart"]
    finally:
        broker.stop()
    assert not broker.pid_file.exists()


def test_cached_jars_need_neither_maven_nor_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    libs = ensure_jars()  # already cached when the session started its own broker
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("mvn") is None
    assert ensure_jars() == libs
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()
    assert (libs / f"kafka-server-{KAFKA_VERSION}.jar").exists()


def _fake_maven(bin_dir: Path, calls: Path, *, fail: bool = False) -> None:
    """A stand-in ``mvn`` that "resolves" two jars into -DoutputDirectory (or fails)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "mvn"
    if fail:
        body = 'echo "resolution failed: boom"; exit 1'
    else:
        body = (
            'for arg; do case "$arg" in\n'
            '  -DoutputDirectory=*) out="${arg#-DoutputDirectory=}";;\n'
            "esac; done\n"
            f'mkdir -p "$out" && touch "$out/kafka_2.13-{KAFKA_VERSION}.jar" "$out/extra.jar"'
        )
    script.write_text(f'#!/bin/sh\necho run >> "{calls}"\n{body}\n')
    script.chmod(0o755)


def test_jars_are_fetched_once_and_moved_into_place_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    _fake_maven(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    # A fetch that was interrupted before completing leaves no marker.
    (cache / f"kafka-{KAFKA_VERSION}" / "libs").mkdir(parents=True)

    libs = ensure_jars(cache)
    assert sorted(path.name for path in libs.iterdir()) == [
        "extra.jar",
        f"kafka_2.13-{KAFKA_VERSION}.jar",
    ]
    assert ensure_jars(cache) == libs
    assert calls.read_text().count("run") == 1
    assert not list(cache.glob(".fetch-*"))


def test_a_failed_fetch_reports_maven_output_and_caches_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_maven(tmp_path / "bin", tmp_path / "calls", fail=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    with pytest.raises(KafkaError, match="boom"):
        ensure_jars(cache)
    assert not (cache / f"kafka-{KAFKA_VERSION}").exists()


def test_mongodb_uri_serves_pymongo(mongodb_uri: str) -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000
    )
    with client:
        collection = client.devstack_test[f"items_{uuid.uuid4().hex[:8]}"]
        collection.create_index("email", unique=True)
        collection.insert_one({"email": "ada@example.test"})
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            collection.insert_one({"email": "ada@example.test"})


def _store_available(store: str) -> str:
    """``store``, or a skip when it is the Rust server and it was not built here."""
    if store == RUST:
        try:
            find_secantusd_rs()
        except MongoError:
            pytest.skip("secantusd-rs is not built (make secantusd-rs)")
    return store


def test_the_dev_store_is_python_unless_rust_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAPPORT_DEV_STORE", raising=False)
    assert chosen_store() == PYTHON
    assert SecantusServer(free_port()).name == "secantusd-py"
    monkeypatch.setenv("RAPPORT_DEV_STORE", " Rust ")
    assert chosen_store() == RUST
    assert SecantusServer(free_port()).name == "secantusd-rs"
    monkeypatch.setenv("RAPPORT_DEV_STORE", "mongod")
    with pytest.raises(MongoError, match="expected 'python' or 'rust'"):
        chosen_store()
    monkeypatch.setenv("RAPPORT_SECANTUSD_RS", str(tmp_path / "elsewhere" / "secantusd-rs"))
    assert find_secantusd_rs() == str(tmp_path / "elsewhere" / "secantusd-rs")


def test_make_up_reads_its_own_python_store_in_small_in_queries_and_other_stores_unlimited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Python server matches $in against every key for every candidate: 50 keys a query.
    assert SecantusServer(free_port(), store=PYTHON).in_chunk == 50
    assert SecantusServer(free_port(), store=RUST).in_chunk == 0
    monkeypatch.delenv("RAPPORT_MONGODB_IN_CHUNK", raising=False)
    config = UpConfig.from_env(
        {
            "RAPPORT_KAFKA_BOOTSTRAP": "kafka:9092",
            "RAPPORT_MONGODB_URI": "mongodb://db:27017",
            "RAPPORT_NOTIFICATIONS_SMTP_HOST": "mail",
        }
    )
    stack = Stack(config, Console(io.StringIO()), threading.Event())
    # An external store: the services keep their default (no limit) unless told.
    assert "RAPPORT_MONGODB_IN_CHUNK" not in stack._service_env()
    for store, expected in ((PYTHON, "50"), (RUST, "0")):
        stack.mongodb = SecantusServer(free_port(), store=store)
        assert stack._service_env()["RAPPORT_MONGODB_IN_CHUNK"] == expected
    monkeypatch.setenv("RAPPORT_MONGODB_IN_CHUNK", "20")
    assert stack._service_env()["RAPPORT_MONGODB_IN_CHUNK"] == "20"


@pytest.mark.parametrize("store", [PYTHON, RUST])
def test_secantus_keeps_data_across_restarts_and_stops_without_leftovers(
    tmp_path: Path, store: str
) -> None:
    port = free_port()
    server = SecantusServer(
        port, tmp_path / "mongo", log_file=tmp_path / "secantusd.log", store=_store_available(store)
    )
    server.start()
    try:
        pid = server.pid
        assert pid is not None
        writer: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.uri)
        with writer:
            writer.devstack_test.items.insert_one({"_id": 1, "value": "kept"})
        server.stop()
        assert not pid_alive(pid)
        assert is_port_free("127.0.0.1", port)

        server.start()
        reader: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.uri)
        with reader:
            assert reader.devstack_test.items.find_one({"_id": 1}) == {"_id": 1, "value": "kept"}
    finally:
        server.stop()


def test_the_rust_store_in_memory_is_a_temporary_folder_removed_at_stop(tmp_path: Path) -> None:
    server = SecantusServer(
        free_port(), log_file=tmp_path / "secantusd.log", store=_store_available(RUST)
    )
    server.start()
    try:
        folder = server.folder
        assert folder is not None
        assert folder.is_dir()
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.uri)
        with client:
            client.devstack_test.items.insert_one({"_id": 1})
            assert client.devstack_test.items.count_documents({}) == 1
    finally:
        server.stop()
    assert not folder.exists()


def _mail(subject: str, to: str = "ada@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "rapport@example.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Hello Ada,\nyour complaint was received.\n")
    return message


def test_smtp_sink_receives_and_exposes_mail(smtp_sink: SmtpSink) -> None:
    subject = f"Complaint received {uuid.uuid4().hex[:8]}"
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as smtp:
        smtp.send_message(_mail(subject), to_addrs=["ada@example.test", "audit@example.test"])

    received = smtp_sink.wait_for(lambda message: message["Subject"] == subject, timeout=10)
    assert received.envelope_from == "rapport@example.test"
    assert received.envelope_to == ("ada@example.test", "audit@example.test")
    assert received["To"] == "ada@example.test"
    assert "your complaint was received" in received.text()
    assert any(message is received for message in smtp_sink.messages)


def test_smtp_sink_wait_for_times_out(smtp_sink: SmtpSink) -> None:
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(lambda message: message["Subject"] == "never sent", timeout=0.2)


def test_smtp_sink_writes_eml_files_to_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "smtp"
    with SmtpSink("127.0.0.1", free_port(), folder) as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
            smtp.send_message(_mail("Saved to disk"))
        sink.wait_for(lambda message: message["Subject"] == "Saved to disk")
    files = list(folder.glob("*.eml"))
    assert len(files) == 1
    saved = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert saved["Subject"] == "Saved to disk"
    assert saved["X-Envelope-To"] == "ada@example.test"


def test_up_lock_refuses_a_second_owner_and_takes_over_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "up.lock"
    path.write_text("4194303\n")  # left behind by a run that was SIGKILLed
    first = PidLock(path)
    first.acquire()
    assert path.read_text().strip() == str(os.getpid())
    with pytest.raises(LockHeldError) as refused:
        PidLock(path).acquire()
    assert refused.value.pid == os.getpid()
    first.release()
    assert not path.exists()
    second = PidLock(path)
    second.acquire()
    second.release()


def test_up_config_defaults_and_external_servers(tmp_path: Path) -> None:
    local = UpConfig.from_env({"RAPPORT_DATA_DIR": str(tmp_path)})
    assert local.data_dir == tmp_path
    assert (local.external_kafka, local.external_mongodb, local.external_smtp) == (None, None, None)
    assert (local.kafka_port, local.mongodb_port, local.smtp_port) == (9092, 27017, 1025)
    assert dict(local.http_ports) == {
        "profiles": 8001,
        "complaints": 8002,
        "notifications": 8003,
        "analytics": 8004,
    }
    assert local.admin_token_generated
    assert len(local.admin_token) >= 32

    external = UpConfig.from_env(
        {
            "RAPPORT_KAFKA_BOOTSTRAP": "kafka:9092",
            "RAPPORT_MONGODB_URI": "mongodb://db:27017",
            "RAPPORT_ADMIN_TOKEN": "fixed-token",
            "RAPPORT_ANALYTICS_HTTP_PORT": "9004",
        }
    )
    assert external.external_kafka == "kafka:9092"
    assert external.external_mongodb == "mongodb://db:27017"
    assert (external.admin_token, external.admin_token_generated) == ("fixed-token", False)
    assert external.http_ports["analytics"] == 9004


def test_make_up_serves_the_portal_and_points_every_service_at_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "RAPPORT_PORTAL_URL",
        "RAPPORT_PORTAL_ORIGINS",
        "RAPPORT_PROFILES_PORTAL_COMPLAINTS_URL",
        "RAPPORT_PROFILES_PORTAL_NOTIFICATIONS_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    config = UpConfig.from_env(
        {
            "RAPPORT_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
            "RAPPORT_MONGODB_URI": "mongodb://127.0.0.1:27017",
            "RAPPORT_NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "RAPPORT_PROFILES_HTTP_PORT": "9001",
            "RAPPORT_COMPLAINTS_HTTP_PORT": "9002",
        }
    )
    stack = Stack(config, Console(io.StringIO()), threading.Event())
    stack.services = [
        SimpleNamespace(name=name, url=f"http://127.0.0.1:{port}")  # type: ignore[misc]
        for name, port in config.http_ports.items()
    ]
    assert "  Portal         http://127.0.0.1:9001/portal/  " in banner(stack)

    env = stack._service_env()
    # Sign-in links (profiles) and feedback links (notifications) lead to the portal ...
    assert env["RAPPORT_PORTAL_URL"] == "http://127.0.0.1:9001/portal"
    # ... whose page finds the other services there, and they let it in (CORS).
    assert env["RAPPORT_PROFILES_PORTAL_COMPLAINTS_URL"] == "http://127.0.0.1:9002"
    assert env["RAPPORT_PROFILES_PORTAL_NOTIFICATIONS_URL"] == "http://127.0.0.1:8003"
    assert env["RAPPORT_PORTAL_ORIGINS"] == "http://127.0.0.1:9001,http://localhost:9001"

    monkeypatch.setenv("RAPPORT_PORTAL_URL", "https://portal.example.com")
    assert stack._service_env()["RAPPORT_PORTAL_URL"] == "https://portal.example.com"
