"""A child that dies on its own is restarted with backoff, and says so; a stop restarts nothing.

The supervisor (``devstack.processes.Supervisor``, what ``make up`` runs its services with)
is driven with small real child processes; the last test kills a service under
``python -m devstack.up`` itself.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from devstack.ports import free_ports
from devstack.processes import Backoff, Supervisor
from tests.test_make_up import SERVICES, Stack, start_stack, stop_with_ctrl_c, wait_until_ready

# Exits 3 on its first run; later runs start a grandchild and sleep.
CHILD = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys, time
    marker = pathlib.Path(sys.argv[1])
    first = not marker.exists()
    marker.touch()
    print(f"child {os.getpid()} up", flush=True)
    if first:
        sys.exit(3)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(f"grandchild {grandchild.pid}", flush=True)
    time.sleep(600)
    """
)


class Recorder:
    """What the supervisor says and what its children print (from reader threads)."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.output: list[str] = []
        self._lock = threading.Lock()

    def notice(self, text: str) -> None:
        with self._lock:
            self.notices.append(text)

    def line(self, source: str, text: str) -> None:
        with self._lock:
            self.output.append(f"{source}: {text}")

    def grandchildren(self) -> list[int]:
        with self._lock:
            lines = list(self.output)
        return [int(m.group(1)) for line in lines if (m := re.search(r"grandchild (\d+)", line))]


def poll_until(supervisor: Supervisor, condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        supervisor.poll()
        time.sleep(0.02)


def test_backoff_doubles_after_quick_deaths_up_to_the_maximum_and_resets_after_a_long_run() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, reset_after=60.0)
    delays: list[float] = []
    previous: float | None = None
    for _ in range(7):
        previous = backoff.delay(previous, ran_for=2.0)
        delays.append(previous)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.delay(30.0, ran_for=61.0) == 1.0


def test_a_dead_child_is_restarted_with_backoff_and_a_stop_leaves_no_process(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    supervisor = Supervisor(
        recorder.notice, recorder.line, Backoff(initial=0.05, maximum=1.0, reset_after=60.0)
    )
    try:
        child = supervisor.start("worker", [sys.executable, "-c", CHILD, str(tmp_path / "ran")])

        # It exits 3 at once: the supervisor says so and starts it again.
        poll_until(supervisor, lambda: child.restarts == 1, "a restart after exit code 3")
        assert any(
            "worker exited (exit code 3)" in n and "restarting it in 0.05 s" in n
            for n in recorder.notices
        ), recorder.notices
        assert f"restarted worker (pid {child.pid}, restart 1)" in recorder.notices
        poll_until(supervisor, lambda: len(recorder.grandchildren()) == 1, "the grandchild")

        # kill -9: restarted again, after twice the delay.
        killed = child.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        poll_until(supervisor, lambda: child.restarts == 2, "a restart after SIGKILL")
        assert any(
            "worker exited (exit code -9, killed by SIGKILL)" in n and "restarting it in 0.1 s" in n
            for n in recorder.notices
        ), recorder.notices
        assert child.pid != killed
        assert child.exit_code() is None
        poll_until(supervisor, lambda: len(recorder.grandchildren()) == 2, "a new grandchild")
    finally:
        supervisor.stop(timeout=10)

    every_pid = child.pids + recorder.grandchildren()
    assert len(every_pid) == 5  # three runs of the child, two grandchildren
    _, alive = psutil.wait_procs(_existing(every_pid), timeout=10)
    assert alive == [], f"left behind: {alive}"

    # Stopped: nothing is restarted, and the stop is not reported as a death.
    notices = list(recorder.notices)
    assert supervisor.poll() == []
    assert child.restarts == 2
    assert recorder.notices == notices
    assert not any("exit code -15" in n for n in notices)


def _existing(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        if process.status() != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.fixture
def make_up(tmp_path: Path) -> Iterator[Stack]:
    """``python -m devstack.up`` on free ports and its own data folder and topic prefix
    (on ``RAPPORT_KAFKA_BOOTSTRAP`` / ``RAPPORT_MONGODB_URI`` when set, as make up does)."""
    ports = free_ports(9)
    env = dict(os.environ)
    env.update(
        RAPPORT_DATA_DIR=str(tmp_path / "data"),
        RAPPORT_KAFKA_PORT=str(ports[0]),
        RAPPORT_KAFKA_CONTROLLER_PORT=str(ports[1]),
        RAPPORT_MONGODB_PORT=str(ports[2]),
        RAPPORT_SMTP_PORT=str(ports[3]),
        RAPPORT_SMS_PORT=str(ports[4]),
        RAPPORT_TOPIC_PREFIX=f"supervision-{tmp_path.name}.",
    )
    for service, port in zip(SERVICES, ports[5:], strict=True):
        env[f"RAPPORT_{service.upper()}_HTTP_PORT"] = str(port)
    stack = start_stack(env, tmp_path / "up.log")
    yield stack
    if stack.process.poll() is None:  # only with a failing test: never leave a stack running
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stack.process.kill()


@pytest.mark.e2e
def test_make_up_restarts_a_killed_service_and_ctrl_c_still_stops_everything(
    make_up: Stack,
) -> None:
    stack = make_up
    wait_until_ready(stack)
    service = _service_process(stack, "notifications")

    service.kill()
    _wait_for_output(stack, "notifications exited (exit code -9, killed by SIGKILL)")
    _wait_for_output(stack, "restarted notifications (pid ")
    _wait_for_output(stack, "notifications is ready again on ", timeout=240)
    assert _service_process(stack, "notifications").pid != service.pid
    wait_until_ready(stack)  # every service answers, the restarted one included

    descendants = stop_with_ctrl_c(stack)
    _, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == [], f"left behind: {alive}"
    after_stop = stack.output().split("stopping services", 1)[1]
    assert "restarting it in" not in after_stop
    assert "restarted " not in after_stop


def _service_process(stack: Stack, name: str) -> psutil.Process:
    for process in psutil.Process(stack.process.pid).children():
        try:
            if f"services.{name}" in process.cmdline() and process.is_running():
                return process
        except psutil.Error:  # the one just killed, gone meanwhile
            continue
    raise AssertionError(f"no running services.{name} under make up")


def _wait_for_output(stack: Stack, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in stack.output():
        assert stack.process.poll() is None, f"make up exited:\n{stack.output()[-4000:]}"
        assert time.monotonic() < deadline, f"never printed {text!r}:\n{stack.output()[-4000:]}"
        time.sleep(0.5)
