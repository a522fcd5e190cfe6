"""``make up``: run the whole Rapport stack locally in the foreground.

Starts Kafka, SecantusDB and the SMTP and SMS sinks (unless external ones are given),
creates the contract topics, then runs the four services as child processes
and streams their output. A service that exits on its own is restarted after a
delay that doubles with each quick death (1 s up to 30 s, back to 1 s once it
stayed up a minute), with a line saying which one died, how, and when it comes
back. Ctrl-C (or SIGTERM) stops everything in reverse order and restarts nothing;
if Kafka or SecantusDB dies, everything stops and the exit code is 1. State is kept
in ``RAPPORT_DATA_DIR`` (default ``.rapport/data``) between runs.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from devstack.kafka import KAFKA_VERSION, KafkaBroker
from devstack.lockfile import LockHeldError, PidLock
from devstack.mongo import RUST, SecantusServer, chosen_store
from devstack.paths import REPO_ROOT, data_dir
from devstack.processes import Backoff, Child, Supervisor
from devstack.sms import SmsSink
from devstack.smtp import SmtpSink
from shared.topics import CONTRACT_PARTITIONS

SERVICES = ("profiles", "complaints", "notifications", "analytics")
_DEFAULT_HTTP_PORTS = {
    "profiles": 8001,
    "complaints": 8002,
    "notifications": 8003,
    "analytics": 8004,
}
# Services report ready once their consumer groups are joined; after an unclean
# stop that waits for the broker to expire the old members' sessions.
_READY_TIMEOUT = 180.0
_READY_NOTICE_EVERY = 15.0
_STOP_TIMEOUT = 15.0
# Replica k (from 0) of a service serves on its port + k * REPLICA_PORT_STEP: 8001, 8101, ...
REPLICA_PORT_STEP = 100
# More replicas than a topic has partitions would leave the extra ones idle.
MAX_REPLICAS = max(CONTRACT_PARTITIONS.values())
RESTART_BACKOFF = Backoff(initial=1.0, maximum=30.0, reset_after=60.0)
_TOPICS_TIMEOUT = 120.0


class StackError(RuntimeError):
    """Something the stack needs failed; the message says what."""


class _StopRequestedError(Exception):
    """Ctrl-C or SIGTERM arrived."""


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise StackError(f"{name} must be a port number, got {raw!r}") from None


def _replicas(env: Mapping[str, str]) -> dict[str, int]:
    """``RAPPORT_REPLICAS`` for every service, ``RAPPORT_<SERVICE>_REPLICAS`` for one."""

    def count(name: str, default: int) -> int:
        raw = env.get(name)
        if not raw:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_REPLICAS:
            raise StackError(
                f"{name} must be a whole number from 1 to {MAX_REPLICAS} (the partitions"
                f" of a topic: more replicas would sit idle), got {raw!r}"
            )
        return int(raw)

    every = count("RAPPORT_REPLICAS", 1)
    return {name: count(f"RAPPORT_{name.upper()}_REPLICAS", every) for name in SERVICES}


@dataclass(frozen=True)
class UpConfig:
    data_dir: Path
    external_kafka: str | None
    external_mongodb: str | None
    external_smtp: tuple[str, int] | None
    kafka_port: int
    kafka_controller_port: int
    mongodb_port: int
    smtp_port: int
    external_sms_url: str | None
    sms_port: int
    admin_token: str
    admin_token_generated: bool
    http_ports: Mapping[str, int]
    replicas: Mapping[str, int]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> UpConfig:
        token = env.get("RAPPORT_ADMIN_TOKEN", "")
        smtp_host = env.get("RAPPORT_NOTIFICATIONS_SMTP_HOST")
        external_smtp = None
        if smtp_host:
            external_smtp = (smtp_host, _port(env, "RAPPORT_NOTIFICATIONS_SMTP_PORT", 25))
        return cls(
            data_dir=Path(env.get("RAPPORT_DATA_DIR") or data_dir()).resolve(),
            external_kafka=env.get("RAPPORT_KAFKA_BOOTSTRAP") or None,
            external_mongodb=env.get("RAPPORT_MONGODB_URI") or None,
            external_smtp=external_smtp,
            kafka_port=_port(env, "RAPPORT_KAFKA_PORT", 9092),
            kafka_controller_port=_port(env, "RAPPORT_KAFKA_CONTROLLER_PORT", 9093),
            mongodb_port=_port(env, "RAPPORT_MONGODB_PORT", 27017),
            smtp_port=_port(env, "RAPPORT_SMTP_PORT", 1025),
            external_sms_url=env.get("RAPPORT_NOTIFICATIONS_SMS_URL") or None,
            sms_port=_port(env, "RAPPORT_SMS_PORT", 1026),
            admin_token=token or secrets.token_urlsafe(32),
            admin_token_generated=not token,
            http_ports={
                name: _port(env, f"RAPPORT_{name.upper()}_HTTP_PORT", default)
                for name, default in _DEFAULT_HTTP_PORTS.items()
            },
            replicas=_replicas(env),
        )

    def url_of(self, service: str) -> str:
        """Where a service's first replica serves."""
        return f"http://127.0.0.1:{self.http_ports[service]}"

    @property
    def portal_url(self) -> str:
        """The customer portal: a page the profiles service serves (services/profiles/portal)."""
        return f"{self.url_of('profiles')}/portal"

    def portal_env(self) -> dict[str, str]:
        """Where the portal is and where its page finds the other services' APIs; the
        services let it in through CORS. A variable set already wins."""
        profiles_port = self.http_ports["profiles"]
        return {
            # Sign-in links (profiles) and feedback links (notifications) lead to it.
            "RAPPORT_PORTAL_URL": self.portal_url,
            # Both spellings of the local host are origins of their own to a browser.
            "RAPPORT_PORTAL_ORIGINS": (
                f"http://127.0.0.1:{profiles_port},http://localhost:{profiles_port}"
            ),
            "RAPPORT_PROFILES_PORTAL_COMPLAINTS_URL": self.url_of("complaints"),
            "RAPPORT_PROFILES_PORTAL_NOTIFICATIONS_URL": self.url_of("notifications"),
        }


class Console:
    """Serialises output lines from the supervisor and the services' reader threads."""

    _COLORS = ("36", "35", "33", "32", "34")

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._color = stream.isatty() and not os.environ.get("NO_COLOR")
        self._assigned: dict[str, str] = {}

    def line(self, source: str, text: str) -> None:
        label = f"{source:<13}|"
        with self._lock:
            if self._color:
                # Colours in order of first appearance: stable across runs.
                color = self._assigned.setdefault(
                    source, self._COLORS[len(self._assigned) % len(self._COLORS)]
                )
                label = f"\033[{color}m{label}\033[0m"
            self._stream.write(f"{label} {text}\n")
            self._stream.flush()

    def info(self, text: str) -> None:
        self.line("up", text)

    def block(self, text: str) -> None:
        with self._lock:
            self._stream.write(text)
            self._stream.flush()


class ServiceProcess:
    """One ``python -m services.<name>`` child of the supervisor (one replica of the
    service: ``name``, ``name-2``, ...; every replica joins the service's consumer group),
    and where it serves."""

    def __init__(self, name: str, port: int, child: Child, service: str | None = None) -> None:
        self.name = name
        self.service = service or name
        self.port = port
        self.child = child

    @staticmethod
    def command(name: str) -> list[str]:
        return [sys.executable, "-m", f"services.{name}"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:  # noqa: S310 - fixed http URL
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


class Stack:
    """The running infrastructure and services, started and stopped in order."""

    def __init__(self, config: UpConfig, console: Console, stop_requested: threading.Event) -> None:
        self.config = config
        self._console = console
        self._stop_requested = stop_requested
        self.kafka: KafkaBroker | None = None
        self.mongodb: SecantusServer | None = None
        self.smtp: SmtpSink | None = None
        self.sms: SmsSink | None = None
        self.services: list[ServiceProcess] = []
        self.supervisor = Supervisor(console.info, console.line, RESTART_BACKOFF)

    @property
    def kafka_bootstrap(self) -> str:
        if self.kafka is not None:
            return self.kafka.bootstrap
        assert self.config.external_kafka is not None
        return self.config.external_kafka

    @property
    def mongodb_uri(self) -> str:
        if self.mongodb is not None:
            return self.mongodb.uri
        assert self.config.external_mongodb is not None
        return self.config.external_mongodb

    @property
    def smtp_address(self) -> tuple[str, int]:
        if self.smtp is not None:
            return self.smtp.host, self.smtp.port
        assert self.config.external_smtp is not None
        return self.config.external_smtp

    @property
    def sms_url(self) -> str | None:
        return self.sms.url if self.sms is not None else self.config.external_sms_url

    def start(self) -> None:
        self._start_infrastructure()
        self._check_stop()
        self._create_topics()
        self._check_stop()
        self._start_services()
        self._wait_services_ready()

    def watch(self) -> int:
        """Run until a stop is requested (exit 0) or Kafka or SecantusDB dies (exit 1);
        restart services that exit on its own, and say when they are ready again."""
        recovering: dict[str, ServiceProcess] = {}
        by_name = {service.name: service for service in self.services}
        while not self._stop_requested.wait(0.5):
            failure = self._find_dead_infrastructure()
            if failure:
                self._console.info(f"{failure}; shutting everything down")
                return 1
            for child in self.supervisor.poll():
                recovering[child.name] = by_name[child.name]
            for name, service in list(recovering.items()):
                if service.child.waiting_to_restart:
                    continue
                if service.is_ready():
                    self._console.info(f"{name} is ready again on {service.url}")
                    del recovering[name]
        return 0

    def shutdown(self) -> None:
        """Stop services, then the SMTP sink, SecantusDB and Kafka (reverse order)."""
        if self.services:
            self._console.info("stopping services")
            self.supervisor.stop(_STOP_TIMEOUT)
            self.services = []
        if self.sms is not None:
            self._console.info("stopping SMS sink")
            self.sms.stop()
            self.sms = None
        if self.smtp is not None:
            self._console.info("stopping SMTP sink")
            self.smtp.stop()
            self.smtp = None
        if self.mongodb is not None:
            self._console.info("stopping SecantusDB")
            self.mongodb.stop()
            self.mongodb = None
        if self.kafka is not None:
            self._console.info("stopping Kafka")
            self.kafka.stop()
            self.kafka = None

    def _check_stop(self) -> None:
        if self._stop_requested.is_set():
            raise _StopRequestedError

    def _start_infrastructure(self) -> None:
        cfg = self.config
        logs = cfg.data_dir / "logs"
        if cfg.external_kafka is None:
            self._console.info(
                f"starting Apache Kafka {KAFKA_VERSION} on 127.0.0.1:{cfg.kafka_port}"
            )
            self.kafka = KafkaBroker(
                cfg.data_dir / "kafka",
                cfg.kafka_port,
                cfg.kafka_controller_port,
                log_file=logs / "kafka.log",
            )
            self.kafka.start()
        self._check_stop()
        if cfg.external_mongodb is None:
            # (the two servers' files differ: each keeps its own folder)
            store = chosen_store()
            folder = cfg.data_dir / ("mongo-rs" if store == RUST else "mongo")
            self.mongodb = SecantusServer(
                cfg.mongodb_port, folder, log_file=logs / "mongodb.log", store=store
            )
            self._console.info(
                f"starting SecantusDB ({self.mongodb.name}) on 127.0.0.1:{cfg.mongodb_port}"
            )
            self.mongodb.start()
        if cfg.external_smtp is None:
            self._console.info(f"starting SMTP sink on 127.0.0.1:{cfg.smtp_port}")
            self.smtp = SmtpSink("127.0.0.1", cfg.smtp_port, cfg.data_dir / "smtp")
            self.smtp.start()
        if cfg.external_sms_url is None:
            self._console.info(f"starting SMS sink on 127.0.0.1:{cfg.sms_port}")
            self.sms = SmsSink("127.0.0.1", cfg.sms_port)
            self.sms.start()

    def _create_topics(self) -> None:
        self._console.info("creating Kafka topics (rapport topics create)")
        env = {**os.environ, "RAPPORT_KAFKA_BOOTSTRAP": self.kafka_bootstrap}
        try:
            result = subprocess.run(
                [sys.executable, "-m", "ops.cli", "topics", "create"],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=_TOPICS_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StackError(f"creating topics took over {_TOPICS_TIMEOUT:.0f}s") from None
        for line in (result.stdout + result.stderr).splitlines():
            self._console.line("topics", line)
        if result.returncode != 0:
            raise StackError(f"creating topics failed (exit {result.returncode}); see above")

    def _service_env(self) -> dict[str, str]:
        smtp_host, smtp_port = self.smtp_address
        env = dict(os.environ)
        env.update(
            RAPPORT_ENVIRONMENT="development",
            RAPPORT_KAFKA_BOOTSTRAP=self.kafka_bootstrap,
            RAPPORT_MONGODB_URI=self.mongodb_uri,
            RAPPORT_ADMIN_TOKEN=self.config.admin_token,
            RAPPORT_NOTIFICATIONS_SMTP_HOST=smtp_host,
            RAPPORT_NOTIFICATIONS_SMTP_PORT=str(smtp_port),
            # Line-by-line output, so the streamed logs are not delayed.
            PYTHONUNBUFFERED="1",
        )
        if self.sms_url:
            env["RAPPORT_NOTIFICATIONS_SMS_URL"] = self.sms_url
        if self.mongodb is not None:  # (an external store's own setting is left alone)
            env.setdefault("RAPPORT_MONGODB_IN_CHUNK", str(self.mongodb.in_chunk))
        for name, value in self.config.portal_env().items():
            env.setdefault(name, value)
        # The stream workers' local folders live with the rest of the stack's data.
        # Every service learns every port, e.g. to link to its siblings.
        for name, port in self.config.http_ports.items():
            env[f"RAPPORT_{name.upper()}_HTTP_PORT"] = str(port)
        return env

    def _start_services(self) -> None:
        env = self._service_env()
        for service in SERVICES:
            count = self.config.replicas[service]
            for replica in range(count):
                name = service if replica == 0 else f"{service}-{replica + 1}"
                port = self.config.http_ports[service] + replica * REPLICA_PORT_STEP
                of = f" (replica {replica + 1} of {count})" if count > 1 else ""
                self._console.info(f"starting {name} on http://127.0.0.1:{port}{of}")
                child = self.supervisor.start(
                    name,
                    ServiceProcess.command(service),
                    env={**env, f"RAPPORT_{service.upper()}_HTTP_PORT": str(port)},
                    cwd=REPO_ROOT,
                )
                self.services.append(ServiceProcess(name, port, child, service))

    def _wait_services_ready(self) -> None:
        started = time.monotonic()
        deadline = started + _READY_TIMEOUT
        next_notice = started + _READY_NOTICE_EVERY
        pending = list(self.services)
        while pending:
            self._check_stop()
            failure = self._find_dead_infrastructure()
            if failure:
                raise StackError(failure)
            self.supervisor.poll()  # a service that died while starting comes back
            pending = [service for service in pending if not service.is_ready()]
            if pending and time.monotonic() >= deadline:
                names = ", ".join(service.name for service in pending)
                raise StackError(f"not ready after {_READY_TIMEOUT:.0f}s: {names}")
            if pending and time.monotonic() >= next_notice:
                names = ", ".join(service.name for service in pending)
                waited = time.monotonic() - started
                self._console.info(f"waiting for /readyz of {names} ({waited:.0f}s so far)")
                next_notice += _READY_NOTICE_EVERY
            if pending:
                self._stop_requested.wait(0.5)

    def _find_dead_infrastructure(self) -> str | None:
        if self.kafka is not None and not self.kafka.is_running():
            return f"Kafka exited unexpectedly; see {self.kafka.log_file}"
        if self.mongodb is not None and not self.mongodb.is_running():
            return f"SecantusDB exited unexpectedly; see {self.mongodb.log_file}"
        return None


def banner(stack: Stack) -> str:
    cfg = stack.config
    lines = [
        "",
        "=" * 78,
        "  Rapport is up.  Ctrl-C stops everything; data is kept between runs.",
        "-" * 78,
    ]
    for service in stack.services:
        lines.append(f"  {service.name:<14} {service.url}/   API docs: {service.url}/docs")
        if service.name == "analytics":  # the fragment never leaves the browser
            signed_in = f"{service.url}/#token={urllib.parse.quote(cfg.admin_token, safe='')}"
            lines.append(f"  {'Dashboard':<14} {signed_in}  (opens signed in)")
        if service.name == "profiles":
            portal = f"{cfg.portal_url}/"
            lines.append(f"  {'Portal':<14} {portal}  (customers sign in with a link by e-mail)")
    kafka_note = f"Apache Kafka {KAFKA_VERSION}, KRaft" if stack.kafka else "external"
    mongo_note = "SecantusDB" if stack.mongodb else "external"
    smtp_host, smtp_port = stack.smtp_address
    smtp_note = f"mails saved in {stack.smtp.folder}" if stack.smtp else "external"
    lines += [
        f"  {'Kafka':<14} {stack.kafka_bootstrap}  ({kafka_note})",
        f"  {'MongoDB':<14} {stack.mongodb_uri}  ({mongo_note})",
        f"  {'SMTP sink':<14} {smtp_host}:{smtp_port}  ({smtp_note})",
    ]
    if stack.sms_url:
        sms_note = "in memory" if stack.sms else "external"
        lines.append(f"  {'SMS sink':<14} {stack.sms_url}  ({sms_note})")
    lines += [
        f"  {'Data folder':<14} {cfg.data_dir}  (logs in {cfg.data_dir / 'logs'})",
        f"  {'Admin token':<14} {cfg.admin_token}",
    ]
    if cfg.admin_token_generated:
        lines.append(f"  {'':<14} (new for this run; set RAPPORT_ADMIN_TOKEN to keep one)")
    profiles = stack.services[0].url if stack.services else "http://127.0.0.1:8001"
    lines += [
        "",
        "  Try:",
        f'    curl -H "Authorization: Bearer {cfg.admin_token}" {profiles}/api/v1/me',
        "=" * 78,
        "",
    ]
    return "\n".join(lines) + "\n"


def run(env: Mapping[str, str], console: Console) -> int:
    """Bring the stack up, run until stopped, tear it down; returns the exit code."""
    try:
        config = UpConfig.from_env(env)
    except StackError as exc:
        console.info(f"error: {exc}")
        return 2
    lock = PidLock(config.data_dir / "up.lock")
    try:
        lock.acquire()
    except LockHeldError as exc:
        console.info(
            f"error: another `make up` (pid {exc.pid}) is already running on {config.data_dir}; "
            "stop it first, or set RAPPORT_DATA_DIR to use another data folder"
        )
        return 1

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only flag it: the main loop notices within half a second and stops
        # things in order, which an exception raised mid-step could not do.
        if not stop_requested.is_set():
            console.info(f"{signal.Signals(signum).name} received, stopping (please wait)")
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(config, console, stop_requested)
    try:
        stack.start()
        console.block(banner(stack))
        return stack.watch()
    except _StopRequestedError:
        return 0
    except Exception as exc:  # report any startup failure, then clean up
        console.info(f"error: {exc}")
        return 1
    finally:
        stop_requested.set()
        stack.shutdown()
        lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    sys.exit(run(os.environ, Console(sys.stdout)))


if __name__ == "__main__":
    main()
