"""The genuine Apache Kafka broker (KRaft, combined broker+controller) for dev and tests.

The broker jars come from Maven Central through ``deploy/kafka/pom.xml`` and are
cached, so only the very first start needs the network (and Maven).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import os
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from types import TracebackType
from typing import Self

from devstack import processes
from devstack.paths import REPO_ROOT, cache_dir
from devstack.ports import is_port_free, port_accepts

POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.properties"
_COMPLETE_MARKER = ".complete"


class KafkaError(RuntimeError):
    """The broker could not be fetched, formatted or started."""


def _read_kafka_version(pom: Path) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(pom).findtext("m:properties/m:kafka.version", namespaces=ns)  # noqa: S314 - our own file
    if not version:
        raise KafkaError(f"no <kafka.version> property in {pom}")
    return version.strip()


KAFKA_VERSION = _read_kafka_version(POM)


def ensure_jars(cache: Path | None = None) -> Path:
    """Return the folder holding the broker's jars, fetching them once with Maven.

    The jars land in ``<cache>/kafka-<version>/libs``. They are resolved into a
    temporary folder and renamed into place together with a completion marker,
    so an interrupted download is never mistaken for a complete one.
    """
    cache = cache or cache_dir()
    root = cache / f"kafka-{KAFKA_VERSION}"
    libs = root / "libs"
    if (root / _COMPLETE_MARKER).exists():
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    # Serialise concurrent fetches (e.g. `make up` and a test run started together).
    with (cache / f"kafka-{KAFKA_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / _COMPLETE_MARKER).exists():
            return libs
        _fetch_jars(root)
    return libs


def _fetch_jars(root: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaError(
            f"Kafka {KAFKA_VERSION} jars are not cached in {root} and Maven (mvn) is not "
            "installed: install Maven once (it fetches the broker from Maven Central)"
        )
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".fetch-") as tmp:
        staged = Path(tmp) / root.name
        cmd = [
            mvn, "-q", "-B", "-f", str(POM),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staged / 'libs'}",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        broker_jar = staged / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar"
        if result.returncode != 0 or not broker_jar.exists():
            raise KafkaError(
                f"fetching Kafka {KAFKA_VERSION} with Maven failed "
                f"(exit {result.returncode}):\n{result.stdout}{result.stderr}"
            )
        (staged / _COMPLETE_MARKER).write_text(KAFKA_VERSION + "\n")
        if root.exists():  # leftover of an older, incomplete layout
            shutil.rmtree(root)
        staged.rename(root)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaError("java not found: install a JDK 17+ or set JAVA_HOME")
    return java


def _random_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` prints it.

    Generated here to save a JVM start: it is a URL-safe base64 UUID, and Kafka
    itself re-draws ids that start with '-' because they look like CLI flags.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


# A broker keeps about four files open per partition; a test session creates
# thousands of partitions, past the usual 1,024 or 20,000 descriptors.
_OPEN_FILES_WANTED = 262_144


def _raise_open_files_limit() -> None:
    """Raise this process's open-files limit, which the broker inherits, as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < _OPEN_FILES_WANTED:
        try:  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (_OPEN_FILES_WANTED, _OPEN_FILES_WANTED))
            return
        except (ValueError, OSError):
            pass
    target = _OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, _OPEN_FILES_WANTED)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class KafkaBroker:
    """One Apache Kafka process acting as both KRaft controller and broker.

    ``data_dir`` keeps the formatted storage, so a broker restarted on the same
    folder (and ports) keeps its topics and messages.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        *,
        heap: str = "512m",
        log_file: Path | None = None,
        cache: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.log_file = log_file or data_dir / "broker.log"
        self._cache = cache
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 90.0) -> None:
        """Fetch jars if needed, format storage once, start and wait until ready."""
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def launch(self) -> None:
        """Start the broker process without waiting for it to serve requests."""
        if self.is_running():
            return
        libs = ensure_jars(self._cache)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_not_running_elsewhere()
        for port in (self.port, self.controller_port):
            if not is_port_free("127.0.0.1", port):
                raise KafkaError(f"port {port} is already in use; cannot start Kafka")
        self.properties_file.write_text(self._server_properties())
        _raise_open_files_limit()
        classpath = f"{libs}/*"
        if not (self.logs_dir / "meta.properties").exists():
            self._format_storage(classpath)
        self._proc = processes.spawn(
            [
                _java(),
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseG1GC",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(self.properties_file),
            ],
            log_file=self.log_file,
            cwd=self.data_dir,
        )
        self.pid_file.write_text(f"{self._proc.pid}\n")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until the broker answers a metadata request listing itself."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise KafkaError(
                    f"Kafka exited during startup; see {self.log_file}:\n{self.log_tail()}"
                )
            if port_accepts("127.0.0.1", self.port) and self._metadata_has_broker():
                return
            if time.monotonic() >= deadline:
                raise KafkaError(
                    f"Kafka not ready after {timeout:.0f}s; see {self.log_file}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the broker down cleanly (SIGTERM), killing it after ``timeout``."""
        if self._proc is None:
            return  # never started by us: the pid file, if any, is not ours
        processes.stop(self._proc, timeout)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _check_not_running_elsewhere(self) -> None:
        # Two brokers on one log dir would corrupt it; Kafka also refuses via
        # its own .lock, but this message is clearer.
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        if processes.pid_alive(pid) and _is_kafka(pid):
            raise KafkaError(f"a Kafka broker (pid {pid}) already uses {self.data_dir}")
        self.pid_file.unlink(missing_ok=True)  # stale: its process is gone

    def _format_storage(self, classpath: str) -> None:
        # Without meta.properties nothing usable is in there (an interrupted
        # format at worst), and the format tool refuses non-empty dirs.
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        # --standalone makes this node the single voter of a dynamic quorum
        # (KIP-853), so controller.quorum.voters is not needed.
        cmd = [
            _java(), "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp", classpath, "kafka.tools.StorageTool", "format",
            "-t", _random_cluster_id(), "-c", str(self.properties_file), "--standalone",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")

    def _metadata_has_broker(self) -> bool:
        # Imported lazily: confluent-kafka is a dev dependency and loading
        # librdkafka is only needed once a broker is being started.
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415

        # log_level 0: refused connections while the broker boots are expected.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:  # any failure just means "not yet"
            return False
        # Fenced (still registering) brokers are left out of metadata replies.
        return bool(metadata.brokers)

    def _server_properties(self) -> str:
        cport = self.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.logs_dir),
            # A single node can only ever hold one replica of anything.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # Consumers in tests should not wait 3 s for a rebalance that has
            # nobody else to wait for.
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "num.partitions": "1",
        }
        header = "# Written by devstack.kafka on every start; edits are overwritten.\n"
        return header + "".join(f"{key}={value}\n" for key, value in settings.items())


def _is_kafka(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # cannot tell (non-Linux): assume the worst
    return b"kafka.Kafka" in cmdline


def main(argv: list[str] | None = None) -> None:
    """``python -m devstack.kafka fetch``: cache the broker jars (needs Maven once)."""
    parser = argparse.ArgumentParser(description="Manage the local Apache Kafka broker's jars.")
    parser.add_argument("command", choices=["fetch"])
    parser.parse_args(argv)
    try:
        libs = ensure_jars()
    except KafkaError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"Apache Kafka {KAFKA_VERSION} jars ready in {libs}")


if __name__ == "__main__":
    main()
