"""A MongoDB-compatible server for dev and tests: SecantusDB as a child process.

Two builds of the same project speak the same protocol with the same flags:
``secantusd-py`` (the Python server, installed with the dev extra: the default) and
``secantusd-rs`` (its Rust server, several times faster, built from crates.io with
``make secantusd-rs`` into ``.tools/bin``). ``RAPPORT_DEV_STORE=rust`` chooses the Rust
one (``RAPPORT_SECANTUSD_RS`` names another binary); it has no in-memory mode, so an
in-memory store is a temporary folder, removed at stop.

SecantusDB is GPL-2.0, so it is only ever *run*, never imported or linked: nothing in
this repository links against it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import pymongo
import pymongo.errors

from devstack import processes
from devstack.paths import REPO_ROOT
from devstack.ports import is_port_free

IN_MEMORY = ":memory:"
PYTHON, RUST = "python", "rust"
PYTHON_IN_CHUNK = 50


class MongoError(RuntimeError):
    """The SecantusDB server could not be started."""


def _locate(name: str, expected: Path, hint: str) -> str:
    """``name`` where it is expected, else on PATH."""
    if expected.exists():
        return str(expected)
    found = shutil.which(name)
    if found is None:
        raise MongoError(f"{name} not found: {hint}")
    return found


def find_secantusd() -> str:
    """Locate ``secantusd-py``: next to our interpreter (the venv) or on PATH."""
    # sys.executable is not resolved on purpose: in a venv it is the venv's
    # bin/python symlink, and the console script lives beside it.
    beside = Path(sys.executable).parent / "secantusd-py"
    return _locate("secantusd-py", beside, "install the dev extra (pip install -e '.[dev]')")


def find_secantusd_rs() -> str:
    """Locate ``secantusd-rs``: ``RAPPORT_SECANTUSD_RS``, ``.tools/bin``, or PATH."""
    named = os.environ.get("RAPPORT_SECANTUSD_RS")
    if named:
        return named
    built = REPO_ROOT / ".tools" / "bin" / "secantusd-rs"
    return _locate("secantusd-rs", built, "build it with `make secantusd-rs`")


def chosen_store() -> str:
    """The dev store ``RAPPORT_DEV_STORE`` asks for: ``python`` (default) or ``rust``."""
    store = os.environ.get("RAPPORT_DEV_STORE", PYTHON).strip().lower() or PYTHON
    if store not in (PYTHON, RUST):
        raise MongoError(f"RAPPORT_DEV_STORE={store!r}: expected {PYTHON!r} or {RUST!r}")
    return store


class SecantusServer:
    """SecantusDB listening on 127.0.0.1; ``storage`` may be ``":memory:"``; ``store``:
    which server (default: :func:`chosen_store`)."""

    def __init__(
        self,
        port: int,
        storage: Path | str = IN_MEMORY,
        *,
        log_file: Path | None = None,
        host: str = "127.0.0.1",
        store: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.storage = storage
        self.log_file = log_file
        self.store = store or chosen_store()
        self._proc: subprocess.Popen[bytes] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    @property
    def name(self) -> str:
        return "secantusd-rs" if self.store == RUST else "secantusd-py"

    @property
    def in_chunk(self) -> int:
        """Keys per ``$in`` query its clients should send (``RAPPORT_MONGODB_IN_CHUNK``):
        the Python server matches ``$in`` against every key for every candidate, so one
        query of 500 keys costs it 5-10 times what ten of 50 do; 0 (no limit) for Rust."""
        return PYTHON_IN_CHUNK if self.store == PYTHON else 0

    @property
    def folder(self) -> Path | None:
        """Where the running server keeps its files (None: in memory)."""
        if self._scratch is not None:
            return Path(self._scratch.name)
        return None if str(self.storage) == IN_MEMORY else Path(self.storage)

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
        if storage == IN_MEMORY and self.store == RUST:
            self._scratch = tempfile.TemporaryDirectory(prefix="secantusd-rs-")
            storage = self._scratch.name
        if storage != IN_MEMORY:
            Path(storage).mkdir(parents=True, exist_ok=True)
            # Run inside the storage folder so a stray ./secantusd.toml in the
            # caller's directory is never auto-discovered.
            cwd = Path(storage)
        binary = find_secantusd_rs() if self.store == RUST else find_secantusd()
        args = [binary, "--host", self.host, "--port", str(self.port)]
        args += ["--storage-path", storage]
        if self.store == RUST:
            # The write-ahead log is allocated in full: 128 MB by default, per server.
            args += ["--log-file-max", "32MB"]
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
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

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
                raise MongoError(f"{self.name} exited during startup (log: {self.log_file})")
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
