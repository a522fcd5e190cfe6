"""``python -m simulator``: feed a running Rapport realistic synthetic traffic.

Defaults come from the same environment as ``make up`` (``RAPPORT_ADMIN_TOKEN``,
``RAPPORT_KAFKA_BOOTSTRAP``, ``RAPPORT_TOPIC_PREFIX``, ``RAPPORT_<SERVICE>_HTTP_PORT``), so
in a shell where the stack's variables are set, no option is needed but the token.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.live import Live

from simulator.display import render
from simulator.runner import Simulator, SimulatorConfig, SimulatorError, Stats


def _positive_rate(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    def url(service: str, default: int) -> str:
        return f"http://127.0.0.1:{env.get(f'RAPPORT_{service.upper()}_HTTP_PORT') or default}"

    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Feed a running Rapport synthetic customers, purchases, returns, "
        "complaints and feedback through its public APIs and Kafka.",
    )
    parser.add_argument("--profiles-url", default=url("profiles", 8001))
    parser.add_argument("--complaints-url", default=url("complaints", 8002))
    parser.add_argument(
        "--kafka-bootstrap", default=env.get("RAPPORT_KAFKA_BOOTSTRAP") or "127.0.0.1:9092"
    )
    parser.add_argument("--topic-prefix", default=env.get("RAPPORT_TOPIC_PREFIX", ""))
    parser.add_argument(
        "--token",
        default=env.get("RAPPORT_ADMIN_TOKEN", ""),
        help="an admin bearer token (default: $RAPPORT_ADMIN_TOKEN; make up prints one)",
    )
    parser.add_argument(
        "--rate", type=_positive_rate, default=5.0, help="live actions per second (5)"
    )
    parser.add_argument(
        "--duration",
        type=_not_negative,
        default=300,
        help="seconds of live traffic; 0 runs until Ctrl-C (300)",
    )
    parser.add_argument(
        "--customers", type=_not_negative, default=200, help="customers to start with (200)"
    )
    parser.add_argument("--seed", type=int, default=42, help="the same seed, the same traffic")
    parser.add_argument(
        "--history-days",
        type=_not_negative,
        default=30,
        help="days of past purchases to publish first for new customers; 0 for none (30)",
    )
    parser.add_argument(
        "--purchases-via",
        choices=("kafka", "http"),
        default="kafka",
        help="how shops report sales: CloudEvents on crm.purchases (as a till or a web "
        "shop would) or POST /api/v1/purchases (kafka)",
    )
    parser.add_argument("--concurrency", type=_positive, default=8)
    parser.add_argument(
        "--run-id", default="", help="prefix of purchase ids (default: new for every run)"
    )
    return parser


def config_from_args(argv: Sequence[str] | None, env: Mapping[str, str]) -> SimulatorConfig:
    args = build_parser(env).parse_args(argv)
    return SimulatorConfig(
        profiles_url=args.profiles_url.rstrip("/"),
        complaints_url=args.complaints_url.rstrip("/"),
        kafka_bootstrap=args.kafka_bootstrap,
        topic_prefix=args.topic_prefix,
        token=args.token,
        rate=args.rate,
        duration=args.duration or None,
        customers=args.customers,
        seed=args.seed,
        history_days=args.history_days,
        purchases_via=args.purchases_via,
        concurrency=args.concurrency,
        run_id=args.run_id,
    )


async def run_with_display(simulator: Simulator, console: Console) -> Stats:
    """Run with the live panel; the final panel stays on screen as the summary."""
    with Live(
        get_renderable=lambda: render(simulator.stats),
        console=console,
        refresh_per_second=4,
        transient=False,
    ):
        return await simulator.run()


async def _main(config: SimulatorConfig, console: Console) -> int:
    simulator = Simulator(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, simulator.request_stop)
    try:
        stats = await run_with_display(simulator, console)
    except SimulatorError as error:
        console.print(f"[bold red]cannot simulate:[/] {error}")
        return 1
    except Exception as error:  # e.g. the broker is not reachable at all
        console.print(f"[bold red]simulator stopped:[/] {error!r}")
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    console.print(summary_line(stats))
    return 0


def summary_line(stats: Stats) -> str:
    return (
        f"{stats.customers} customers, {stats.purchases + stats.history_purchases} purchases, "
        f"{stats.returns + stats.history_returns} returns, {stats.complaints_opened} complaints, "
        f"{stats.feedback} feedback, {stats.error_count} API errors "
        f"in {stats.elapsed():.0f}s ({stats.phase})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv, os.environ)
    console = Console()
    if not config.token:
        console.print(
            "[red]no token:[/] pass --token or set RAPPORT_ADMIN_TOKEN "
            "(make up prints the admin token in its banner)"
        )
        return 2
    return asyncio.run(_main(config, console))


if __name__ == "__main__":
    sys.exit(main())
