"""The live progress panel and the closing summary, drawn with rich."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from simulator.runner import Stats, revenue_text

_STATES = (
    "open",
    "acknowledged",
    "in_progress",
    "waiting_on_customer",
    "resolved",
    "reopened",
    "closed",
)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "until Ctrl-C"
    whole = int(seconds)
    return f"{whole // 3600:d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def render(stats: Stats, title: str = "Rapport traffic simulator") -> RenderableType:
    left = Table.grid(padding=(0, 2))
    left.add_column(style="bold")
    left.add_column(justify="right")
    left.add_row("phase", stats.phase)
    left.add_row("elapsed", _clock(stats.elapsed()))
    left.add_row("remaining", _clock(stats.remaining()))
    left.add_row(
        "customers",
        f"{stats.customers} of {stats.planned_customers}+"
        + (f" ({stats.customers_reused} from earlier runs)" if stats.customers_reused else ""),
    )
    left.add_row("consents / contracts", f"{stats.consents} / {stats.contracts}")
    left.add_row("interactions", str(stats.interactions))
    left.add_row("purchases (live)", str(stats.purchases))
    left.add_row("purchases (history)", str(stats.history_purchases))
    left.add_row("returns", f"{stats.returns} (+{stats.history_returns} history)")

    right = Table.grid(padding=(0, 2))
    right.add_column(style="bold")
    right.add_column(justify="right")
    right.add_row("complaints opened", str(stats.complaints_opened))
    states = stats.by_state()
    for state in _STATES:
        right.add_row(f"  {state.replace('_', ' ')}", str(states.get(state, 0)))
    right.add_row("feedback (CSAT/NPS)", str(stats.feedback))
    right.add_row("refunds / reopened", f"{stats.refunds} / {stats.reopened}")
    right.add_row("skipped", str(stats.skipped))
    error_style = "bold red" if stats.error_count else "green"
    right.add_row("API errors", Text(str(stats.error_count), style=error_style))

    columns = Table.grid(padding=(0, 4))
    columns.add_row(left, right)
    parts: list[RenderableType] = [columns, Text(f"revenue sent: {revenue_text(stats.revenue)}")]
    if stats.errors:
        worst = ", ".join(f"{key} x{count}" for key, count in stats.errors.most_common(3))
        parts.append(Text(f"errors: {worst}", style="red"))
    if stats.last_error:
        parts.append(Text(f"last: {stats.last_error}", style="dim red"))
    return Panel(Group(*parts), title=title, border_style="cyan")
