"""``make demo``: the whole platform, started as ``make up`` starts it, fed synthetic traffic.

The stack comes up exactly as with ``make up`` (same data folder, ports, token and
readiness checks); then the traffic simulator runs against it with a live progress panel
while the dashboard fills. The services' own log lines go to ``<data dir>/logs/services.log``
so that they do not scroll the panel away. Ctrl-C stops the simulator, then the stack.

Options (arguments, or the environment for ``make demo``): ``--rate`` /
``RAPPORT_DEMO_RATE`` (actions per second, 5), ``--duration`` / ``RAPPORT_DEMO_DURATION``
(seconds of traffic, 0 = until Ctrl-C), ``--customers`` / ``RAPPORT_DEMO_CUSTOMERS`` (200),
``--seed`` / ``RAPPORT_DEMO_SEED`` (42), ``--history-days`` / ``RAPPORT_DEMO_HISTORY_DAYS``
(30). When the traffic ends, the stack keeps running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from rich.console import Console as RichConsole

from devstack.lockfile import LockHeldError, PidLock
from devstack.up import Console, Stack, StackError, UpConfig, banner
from simulator.cli import run_with_display, summary_line
from simulator.runner import Simulator, SimulatorConfig

_SCREEN_SOURCES = frozenset({"up", "topics", "demo"})
_SIMULATOR_STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class DemoOptions:
    rate: float
    duration: int
    customers: int
    seed: int
    history_days: int


def _number(text: str, *, kind: type[int] | type[float], minimum: float, name: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
    if kind is float and not value > minimum:
        raise argparse.ArgumentTypeError(f"{name} must be above {minimum:g}, got {text}")
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{name} must be at least {minimum:g}, got {text}")
    return value


def parse_options(argv: Sequence[str] | None, env: Mapping[str, str]) -> DemoOptions:
    parser = argparse.ArgumentParser(
        prog="make demo", description="Run Rapport and feed it synthetic traffic."
    )

    def option(name: str, kind: type[int] | type[float], default: str, minimum: float) -> None:
        variable = f"RAPPORT_DEMO_{name.upper().replace('-', '_')}"
        parser.add_argument(
            f"--{name}",
            type=lambda text: _number(text, kind=kind, minimum=minimum, name=name),
            default=env.get(variable) or default,
            help=f"(${variable}, default {default})",
        )

    option("rate", float, "5", 0)
    option("duration", int, "0", 0)
    option("customers", int, "200", 0)
    option("seed", int, "42", -(2**63))
    option("history-days", int, "30", 0)
    args = parser.parse_args(argv)
    return DemoOptions(
        rate=float(args.rate),
        duration=int(args.duration),
        customers=int(args.customers),
        seed=int(args.seed),
        history_days=int(args.history_days),
    )


class DemoConsole(Console):
    """The supervisor's lines on screen; the services' own lines into a log file."""

    def __init__(self, screen: IO[str], services_log: IO[str]) -> None:
        super().__init__(screen)
        self._services = Console(services_log)

    def line(self, source: str, text: str) -> None:
        if source in _SCREEN_SOURCES:
            super().line(source, text)
        else:
            self._services.line(source, text)


def dashboard_url(config: UpConfig) -> str:
    token = urllib.parse.quote(config.admin_token, safe="")
    return f"http://127.0.0.1:{config.http_ports['analytics']}/#token={token}"


def simulator_config(stack: Stack, options: DemoOptions, env: Mapping[str, str]) -> SimulatorConfig:
    ports = stack.config.http_ports
    return SimulatorConfig(
        profiles_url=f"http://127.0.0.1:{ports['profiles']}",
        complaints_url=f"http://127.0.0.1:{ports['complaints']}",
        kafka_bootstrap=stack.kafka_bootstrap,
        topic_prefix=env.get("RAPPORT_TOPIC_PREFIX", ""),
        token=stack.config.admin_token,
        rate=options.rate,
        duration=options.duration or None,
        customers=options.customers,
        seed=options.seed,
        history_days=options.history_days,
    )


def _dashboard_notice(config: UpConfig, services_log: Path) -> str:
    url = dashboard_url(config)
    width = max(78, len(url) + 6)
    return "\n".join(
        [
            "",
            "#" * width,
            "#",
            "#   Dashboard (open in a browser; the token in the link signs you in):",
            "#",
            f"#     {url}",
            "#",
            "#   Synthetic traffic starts now. Ctrl-C stops the traffic and the stack.",
            f"#   The services' logs: {services_log}",
            "#",
            "#" * width,
            "",
            "",
        ]
    )


def _simulate(
    simulator: Simulator, screen: RichConsole, console: Console, config: UpConfig
) -> None:
    """The simulator's own event loop, in its own thread; the main thread watches the stack."""
    try:
        stats = asyncio.run(run_with_display(simulator, screen))
    except Exception as error:  # e.g. Kafka vanished: the stack goes on, the user is told
        console.line("demo", f"the simulator stopped: {error}")
        return
    console.line("demo", summary_line(stats))
    if stats.phase == "finished":
        console.line("demo", "traffic done; the stack keeps running until Ctrl-C")
        console.line("demo", f"dashboard: {dashboard_url(config)}")


def run(env: Mapping[str, str], argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_options(argv, env)
        config = UpConfig.from_env(env)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs = config.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    services_log_path = logs / "services.log"
    with services_log_path.open("a", encoding="utf-8") as services_log:
        console = DemoConsole(sys.stdout, services_log)
        return _run(options, config, env, console, services_log_path)


def _run(
    options: DemoOptions,
    config: UpConfig,
    env: Mapping[str, str],
    console: DemoConsole,
    services_log: Path,
) -> int:
    lock = PidLock(config.data_dir / "up.lock")
    try:
        lock.acquire()
    except LockHeldError as exc:
        console.info(
            f"error: a `make up` or `make demo` (pid {exc.pid}) is already running on "
            f"{config.data_dir}; stop it first, or set RAPPORT_DATA_DIR to another folder"
        )
        return 1

    stop_requested = threading.Event()
    simulators: list[Simulator] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stop_requested.is_set():
            console.info(f"{signal.Signals(signum).name} received, stopping (please wait)")
        stop_requested.set()
        for simulator in simulators:
            simulator.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = Stack(config, console, stop_requested)
    worker: threading.Thread | None = None
    try:
        stack.start()
        console.block(banner(stack))
        console.block(_dashboard_notice(config, services_log))
        simulator = Simulator(simulator_config(stack, options, env))
        simulators.append(simulator)
        worker = threading.Thread(
            target=_simulate,
            args=(simulator, RichConsole(file=sys.stdout), console, config),
            name="simulator",
            daemon=True,
        )
        worker.start()
        return stack.watch()
    except Exception as exc:  # a stop during start-up, or a start-up failure
        if stop_requested.is_set():
            return 0
        console.info(f"error: {exc}")
        return 1
    finally:
        stop_requested.set()
        for simulator in simulators:
            simulator.request_stop()
        if worker is not None:
            worker.join(_SIMULATOR_STOP_TIMEOUT)
        stack.shutdown()
        lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    sys.exit(run(os.environ, sys.argv[1:]))


if __name__ == "__main__":
    main()
