"""A pid lock file that cannot go stale.

The file records the owner's pid for humans, but ownership is an ``flock`` on
it: the kernel drops that lock when the owner dies, however it dies, so a file
left behind by a crashed owner is simply taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class LockHeldError(RuntimeError):
    """Another live process holds the lock."""

    def __init__(self, path: Path, pid: int | None) -> None:
        owner = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"{path} is held by {owner}")
        self.path = path
        self.pid = pid


class PidLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockHeldError` without waiting."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Python opens descriptors non-inheritable, so children we spawn do not
        # keep the lock alive after we exit.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LockHeldError(self.path, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock. Safe to call when not held."""
        if self._fd is None:
            return
        # Unlink first: once the lock drops, a newcomer must not find our pid.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
