"""Spawn helper processes so that none of them can outlive us.

Three layers make sure a broker or database never lingers:

* every child runs in its own process group, so a terminal Ctrl-C reaches only
  the supervisor (which then stops children in order) and a stop signal also
  reaches grandchildren;
* children are tracked and killed from an ``atexit`` hook if their owner
  forgot or crashed with an exception;
* on Linux the kernel sends SIGTERM to a child whose parent dies, which covers
  the cases where ``atexit`` never runs (SIGKILL, a CI timeout).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1

_live: set[subprocess.Popen[bytes]] = set()
_live_lock = threading.Lock()


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when we die."""
    # The kernel ties PDEATHSIG to the *thread* that forked, so a child spawned
    # from a short-lived worker thread would be killed when that thread ends.
    # Only the main thread lives as long as the process.
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        # If the parent died between fork and prctl the signal never comes.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def spawn(
    args: Sequence[str],
    *,
    log_file: Path | None = None,
    pipe_output: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a new process group; output goes to a file, a pipe or nowhere.

    Output is never inherited: under pytest our stdout is a per-test capture
    file that a long-lived server must not keep writing into.
    """
    stdout: int = subprocess.DEVNULL
    log_handle = None
    if pipe_output:
        stdout = subprocess.PIPE
    elif log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_handle = log_file.open("ab")
        stdout = log_handle.fileno()
    try:
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_parent_death_hook(),  # noqa: PLW1509 - see _parent_death_hook
        )
    finally:
        if log_handle is not None:
            log_handle.close()  # the child holds its own descriptor
    with _live_lock:
        _live.add(proc)
    return proc


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    # The group may already be empty: nothing left to signal is fine.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM the child's process group, SIGKILL it after ``timeout`` seconds.

    Returns the child's exit code. Safe to call twice.
    """
    stop_all([proc], timeout)
    return proc.returncode


def stop_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """Stop several children in parallel: SIGTERM all, then SIGKILL stragglers.

    Each child is signalled once only: servers such as uvicorn treat a second
    SIGTERM as "exit now" and would skip their graceful shutdown.
    """
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    with _live_lock:
        _live.difference_update(procs)


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (zombies included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@atexit.register
def _stop_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live)
    stop_all(leftovers, timeout=5.0)
