"""A MongoDB-compatible server for dev and tests: SecantusDB as a child process.

SecantusDB is GPL-2.0, so it is only ever *run* (``secantusd-py``), never
imported: nothing in this repository links against it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import pymongo
import pymongo.errors

from devstack import processes
from devstack.ports import is_port_free

IN_MEMORY = ":memory:"


class MongoError(RuntimeError):
    """The SecantusDB server could not be started."""


def find_secantusd() -> str:
    """Locate ``secantusd-py``: next to our interpreter (the venv) or on PATH."""
    # sys.executable is not resolved on purpose: in a venv it is the venv's
    # bin/python symlink, and the console script lives beside it.
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("secantusd-py")
    if found is None:
        raise MongoError("secantusd-py not found: install the dev extra (pip install -e '.[dev]')")
    return found


class SecantusServer:
    """``secantusd-py`` listening on 127.0.0.1; ``storage`` may be ``":memory:"``."""

    def __init__(
        self,
        port: int,
        storage: Path | str = IN_MEMORY,
        *,
        log_file: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = port
        self.storage = storage
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        # retryWrites=false: retryable writes are a replica-set feature the
        # services must not rely on in development.
        return f"mongodb://{self.host}:{self.port}/?retryWrites=false"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until it answers ``ping``."""
        if self.is_running():
            return
        if not is_port_free(self.host, self.port):
            raise MongoError(f"port {self.port} is already in use; cannot start SecantusDB")
        storage = str(self.storage)
        cwd: Path | None = None
        if storage != IN_MEMORY:
            Path(storage).mkdir(parents=True, exist_ok=True)
            # Run inside the storage folder so a stray ./secantusd.toml in the
            # caller's directory is never auto-discovered.
            cwd = Path(storage)
        args = [find_secantusd(), "--host", self.host, "--port", str(self.port)]
        args += ["--storage-path", storage]
        self._proc = processes.spawn(args, log_file=self.log_file, cwd=cwd)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server (it flushes its storage), SIGKILL after ``timeout``."""
        if self._proc is not None:
            processes.stop(self._proc, timeout)
            self._proc = None

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

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise MongoError(f"secantusd-py exited during startup (log: {self.log_file})")
            if self._ping():
                return
            if time.monotonic() >= deadline:
                raise MongoError(
                    f"SecantusDB not ready after {timeout:.0f}s (log: {self.log_file})"
                )
            time.sleep(0.1)

    def _ping(self) -> bool:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500
        )
        try:
            client.admin.command("ping")
        except pymongo.errors.PyMongoError:
            return False
        finally:
            client.close()
        return True
