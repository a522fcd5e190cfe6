"""``rapport replay``: rebuild analytics from the topics, with a progress bar, and compare."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.analytics.replay import differences, live_figures, replay
from services.analytics.settings import AnalyticsSettings
from shared.clock import to_millisecond


def run(database: str | None, now: datetime | None, *, compare: bool, as_json: bool) -> int:
    """0 when the replay equals the live figures (or was not compared), 1 otherwise,
    2 when asked to rebuild into the live database."""
    console = Console(soft_wrap=True)
    settings = AnalyticsSettings()
    target = database or f"{settings.mongodb_database}_replay"
    if target == settings.mongodb_database:
        console.print("the replay must not rebuild into the live database")
        return 2
    logging.basicConfig(level=logging.WARNING)
    moment = to_millisecond(now or datetime.now(UTC))
    columns = (TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("replay", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = asyncio.run(replay(settings, database=target, now=moment, progress=advance))
    figures = result.figures
    console.print(f"replayed {result.events} events into {result.database} (group {result.group})")
    console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in result.outcomes.items()))
    if as_json:
        print(json.dumps(figures, default=str, indent=2, sort_keys=True))
    else:
        day = figures["kpis"]["24h"]
        console.print(
            f"at {moment.isoformat()}: last 24h {day['purchases']} purchases, "
            f"revenue {day['revenue']}"
        )
    if not compare:
        return 0
    found = differences(asyncio.run(live_figures(settings, moment)), figures)
    if found:
        console.print(f"[red]{len(found)} differences from the live figures:[/]")
        console.print("\n".join(found[:200]), markup=False)
        return 1
    console.print("[green]the replayed figures equal the live figures[/]")
    return 0
