"""Session fixtures giving tests a real Kafka broker, MongoDB server and SMTP sink.

Load with ``pytest_plugins = ["devstack.pytest_plugin"]`` in ``tests/conftest.py``.
Set ``RAPPORT_KAFKA_BOOTSTRAP`` / ``RAPPORT_MONGODB_URI`` to run the suite against
servers that are already running instead of starting local ones.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from devstack.kafka import KafkaBroker
from devstack.mongo import IN_MEMORY, SecantusServer
from devstack.ports import free_port, free_ports
from devstack.sms import SmsSink
from devstack.smtp import SmtpSink
from shared.mongo import set_in_chunk
from shared.settings import PlatformSettings

_previous_sigterm: signal.Handlers | None = None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Python's default SIGTERM action kills the interpreter outright, skipping
    # fixture teardown; as KeyboardInterrupt pytest tears everything down.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    global _previous_sigterm  # noqa: PLW0603 - restored in pytest_unconfigure
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
        _previous_sigterm = signal.SIG_DFL


def pytest_unconfigure(config: pytest.Config) -> None:
    global _previous_sigterm  # noqa: PLW0603
    if _previous_sigterm is not None:
        signal.signal(signal.SIGTERM, _previous_sigterm)
        _previous_sigterm = None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker | None]:
    """The broker this session started, or None when using RAPPORT_KAFKA_BOOTSTRAP."""
    if os.environ.get("RAPPORT_KAFKA_BOOTSTRAP"):
        yield None
        return
    port, controller_port = free_ports(2)
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), port, controller_port)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker | None) -> str:
    """``host:port`` of a genuine Apache Kafka 4.x broker (KRaft)."""
    if kafka_broker is None:
        return os.environ["RAPPORT_KAFKA_BOOTSTRAP"]
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def mongodb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecantusServer | None]:
    """The in-memory server this session started, or None when using RAPPORT_MONGODB_URI."""
    if os.environ.get("RAPPORT_MONGODB_URI"):
        yield None
        return
    log_file = tmp_path_factory.mktemp("mongodb") / "secantusd.log"
    server = SecantusServer(free_port(), IN_MEMORY, log_file=log_file)
    server.start()
    # What the session runs (in this process or as children) reads this store in $in
    # queries of the size it wants, unless told otherwise.
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(
            "RAPPORT_MONGODB_IN_CHUNK",
            os.environ.get("RAPPORT_MONGODB_IN_CHUNK") or str(server.in_chunk),
        )
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def mongodb_uri(mongodb_server: SecantusServer | None) -> str:
    """A ``mongodb://`` URI (retryWrites=false) of a MongoDB-compatible server; this
    process reads it in ``$in`` queries of ``RAPPORT_MONGODB_IN_CHUNK`` keys at most, as
    the services do (the session's own store sets that for itself)."""
    set_in_chunk(PlatformSettings().mongodb_in_chunk)
    if mongodb_server is None:
        return os.environ["RAPPORT_MONGODB_URI"]
    return mongodb_server.uri


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """An in-memory SMTP sink on a free port, shared by the whole session.

    Use ``wait_for`` with a predicate specific to your test: other tests'
    mails are in there too.
    """
    sink = SmtpSink("127.0.0.1", free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture(scope="session")
def sms_sink() -> Iterator[SmsSink]:
    """An in-memory SMS provider sink on a free port, shared by the whole session.

    Use ``wait_for`` with a predicate specific to your test: other tests' messages are in
    there too.
    """
    sink = SmsSink("127.0.0.1", 0)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()
