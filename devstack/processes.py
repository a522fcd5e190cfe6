"""Spawn helper processes so that none of them can outlive us, and supervise them.

Three layers make sure a broker or database never lingers:

* every child runs in its own process group, so a terminal Ctrl-C reaches only
  the supervisor (which then stops children in order) and a stop signal also
  reaches grandchildren;
* children are tracked and killed from an ``atexit`` hook if their owner
  forgot or crashed with an exception;
* on Linux the kernel sends SIGTERM to a child whose parent dies, which covers
  the cases where ``atexit`` never runs (SIGKILL, a CI timeout).

A :class:`Supervisor` restarts a child that exits on its own, waiting longer after
each quick death (:class:`Backoff`), and says so.
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
from dataclasses import dataclass
from datetime import datetime, timedelta
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


# -- supervision: restart a child that exits on its own ----------------------------------


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``initial`` seconds, doubling after each quick death up to
    ``maximum``; a child that stayed up ``reset_after`` seconds starts again at ``initial``."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def delay(self, previous: float | None, ran_for: float) -> float:
        if previous is None or ran_for >= self.reset_after:
            return self.initial
        return min(previous * 2, self.maximum)


def describe_exit(code: int) -> str:
    """``exit code 3``, or ``exit code -9, killed by SIGKILL`` for a signal."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"exit code {code}, killed by {name}"
    return f"exit code {code}"


Output = Callable[[str, str], None]


class Child:
    """One supervised child: its command, its current process and its restart history.

    The child's output (stdout and stderr) is read line by line on a thread and handed to
    ``output(name, line)``.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None,
        cwd: Path | None,
        output: Output,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = env
        self.cwd = cwd
        self.restarts = 0
        self.pids: list[int] = []  # every process this child has had, oldest first
        self._output = output
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started_at = 0.0
        self._delay: float | None = None  # the last restart delay
        self._restart_at: float | None = None  # set while dead and waiting to restart

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._proc

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def exit_code(self) -> int | None:
        """None while the current process runs (or none was started)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def waiting_to_restart(self) -> bool:
        return self._restart_at is not None

    def spawn(self, now: float) -> None:
        if self._proc is not None:
            stop_all([self._proc])  # already dead: only forgets it
        self._proc = spawn(self.args, pipe_output=True, cwd=self.cwd, env=self.env)
        self.pids.append(self._proc.pid)
        self._started_at = now
        self._restart_at = None
        self._reader = threading.Thread(
            target=self._pump, args=(self._proc,), name=f"out-{self.name}", daemon=True
        )
        self._reader.start()

    def drain(self) -> None:
        """Wait (briefly) until the last lines of output were handed on."""
        if self._reader is not None:
            self._reader.join(timeout=5)

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self._output(self.name, raw.decode(errors="replace").rstrip())


class Supervisor:
    """Runs named children and restarts one that exits on its own, with :class:`Backoff`.

    Nothing happens behind the caller's back: :meth:`poll` notices deaths and performs
    the restarts that are due, so children are always spawned from the caller's thread
    (the main thread, for the parent-death signal). ``notice(text)`` hears of every death
    and restart; :meth:`stop` stops every child at once and restarts nothing afterwards.
    """

    def __init__(
        self,
        notice: Callable[[str], None],
        output: Output,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children: list[Child] = []
        self._notice = notice
        self._output = output
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._stopped = False

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        if self._stopped:
            raise RuntimeError("the supervisor was stopped")
        child = Child(name, args, env=env, cwd=cwd, output=self._output)
        child.spawn(self._clock())
        self.children.append(child)
        return child

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def poll(self) -> list[Child]:
        """Notice children that died, restart those whose delay is over; returns the
        children restarted by this call."""
        if self._stopped:
            return []
        now = self._clock()
        restarted = []
        for child in self.children:
            if child._restart_at is None:
                code = child.exit_code()
                if code is None:
                    continue
                self._schedule(child, code, now)
            if child._restart_at is not None and now >= child._restart_at:
                child.drain()
                child.restarts += 1
                child.spawn(now)
                self._notice(f"restarted {child.name} (pid {child.pid}, restart {child.restarts})")
                restarted.append(child)
        return restarted

    def _schedule(self, child: Child, code: int, now: float) -> None:
        if child.process is not None:
            # Whatever the dead child left running in its group (it cannot stop them any
            # more) would outlive everything: the group is only ever signalled on stop.
            _signal_group(child.process, signal.SIGKILL)
        ran_for = now - child._started_at
        child._delay = self._backoff.delay(child._delay, ran_for)
        child._restart_at = now + child._delay
        at = datetime.now().astimezone() + timedelta(seconds=child._delay)
        self._notice(
            f"{child.name} exited ({describe_exit(code)}) after {ran_for:.0f} s;"
            f" restarting it in {child._delay:g} s (at {at:%H:%M:%S})"
        )

    def send_signal(self, name: str, sig: signal.Signals) -> int | None:
        """Signal the named child's process group; returns the pid signalled (None when
        the child is not running). Its death is noticed and handled by :meth:`poll`."""
        child = self.child(name)
        proc = child.process
        if proc is None or proc.poll() is not None:
            return None
        _signal_group(proc, sig)
        return proc.pid

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every child (SIGTERM, SIGKILL after ``timeout``); no restart follows."""
        self._stopped = True
        stop_all([c.process for c in self.children if c.process is not None], timeout)
        for child in self.children:
            child.drain()
            child._restart_at = None
