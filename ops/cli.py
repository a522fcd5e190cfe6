"""``rapport``: one command line for operating Rapport.

Every command reads the platform's settings from the environment as the services do
(``RAPPORT_KAFKA_BOOTSTRAP``, ``RAPPORT_TOPIC_PREFIX``, ``RAPPORT_MONGODB_URI``, ...);
``--bootstrap`` and ``--prefix`` override the first two. Exit codes: 0 done, 1 the
answer is "no" (a service not ready, a letter not found, replay differs from live),
2 bad usage.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ops import dlq, kafka
from ops.status import collect
from shared.auth import Role, TokenService
from shared.settings import PlatformSettings, ServiceSettings
from shared.topics import TopicNames, ensure_topics

app = typer.Typer(
    name="rapport",
    help="Operate Rapport: status, topics, dead letters, replay, tokens, the local stack.",
    no_args_is_help=True,
    add_completion=False,
)
topics_app = typer.Typer(help="The contract's topics.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(dlq_app, name="dlq")
app.add_typer(token_app, name="token")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@dataclass(frozen=True)
class Target:
    bootstrap: list[str]
    names: TopicNames


def _target(ctx: typer.Context) -> Target:
    target = ctx.find_root().obj
    assert isinstance(target, Target)
    return target


@app.callback()
def main(
    ctx: typer.Context,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default: RAPPORT_KAFKA_BOOTSTRAP)")
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(help="the deployment's topic prefix (default: RAPPORT_TOPIC_PREFIX)"),
    ] = None,
) -> None:
    settings = PlatformSettings()
    servers = bootstrap or settings.kafka_bootstrap
    ctx.obj = Target(
        bootstrap=[s.strip() for s in servers.split(",") if s.strip()],
        names=TopicNames(settings.topic_prefix if prefix is None else prefix),
    )


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


# Status


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Every service's readiness and each consumer group's lag. Exit 1 unless all ready."""
    target = _target(ctx)
    found = asyncio.run(collect(os.environ, target.bootstrap, target.names))
    if as_json:
        _print_json([one.as_dict() for one in found])
    else:
        table = Table("service", "ready", "detail", "consumer group", "members", "lag")
        for one in found:
            lag = "no commits yet" if one.total_lag is None else str(one.total_lag)
            mark = "[green]yes[/]" if one.ready else "[red]no[/]"
            table.add_row(one.service, mark, one.detail, one.group, str(one.members), lag)
        out.print(table)
    raise typer.Exit(0 if all(one.ready for one in found) else 1)


# Topics


@topics_app.command("create")
def topics_create(
    ctx: typer.Context,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            min=1, help="replicas per partition (default: RAPPORT_TOPIC_REPLICATION_FACTOR)"
        ),
    ] = None,
) -> None:
    """Create the contract's topics and their dead-letter topics that do not exist yet."""
    target = _target(ctx)
    factor = replication_factor or PlatformSettings().topic_replication_factor
    created = asyncio.run(ensure_topics(target.bootstrap, target.names, factor))
    for name in created:
        out.print(f"created {name}")
    out.print(f"{len(created)} created, {len(target.names.all())} in the contract")


@topics_app.command("describe")
def topics_describe(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The contract's topics as the broker has them. Exit 1 if one is missing."""
    target = _target(ctx)
    wanted = target.names.all()
    found = asyncio.run(kafka.partitions_of(target.bootstrap, list(wanted)))
    rows = [(name, len(found.get(name, [])), count) for name, count in wanted.items()]
    if as_json:
        keys = ("topic", "partitions", "contract_partitions")
        _print_json([dict(zip(keys, row, strict=True)) for row in rows])
    else:
        table = Table("topic", "partitions", "contract")
        for name, have, count in rows:
            table.add_row(name, str(have) if have else "[red]missing[/]", str(count))
        out.print(table)
    raise typer.Exit(0 if all(have for _, have, _ in rows) else 1)


# Dead letters


def _moment(text: str | None, name: str) -> datetime | None:
    """An ISO time (UTC when no zone), or a duration back from now: ``90m``, ``2h``, ``7d``."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"give an ISO time or a duration like 2h or 7d, not {text!r}", param_hint=name
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


TopicOption = Annotated[
    str | None, typer.Option(help="a contract topic (crm.purchases) or its .dlq; default all")
]
SinceOption = Annotated[
    str | None, typer.Option(help="dead since: an ISO time, or 30m / 2h / 7d ago")
]
UntilOption = Annotated[str | None, typer.Option(help="dead until: an ISO time, or 30m / 2h ago")]
PartitionOption = Annotated[int | None, typer.Option(min=0, help="one DLQ partition")]
FromOption = Annotated[int | None, typer.Option(min=0, help="from this DLQ offset (inclusive)")]
ToOption = Annotated[int | None, typer.Option(min=0, help="to this DLQ offset (inclusive)")]


def _selection(
    topic: str | None,
    since: str | None,
    until: str | None,
    partition: int | None,
    from_offset: int | None,
    to_offset: int | None,
) -> dlq.Selection:
    return dlq.Selection(
        topic=topic,
        since=_moment(since, "--since"),
        until=_moment(until, "--until"),
        partition=partition,
        from_offset=from_offset,
        to_offset=to_offset,
    )


def _letters(target: Target, selection: dlq.Selection) -> list[dlq.DeadLetter]:
    try:
        return asyncio.run(dlq.read(target.bootstrap, target.names, selection))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--topic") from None


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    topic: TopicOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    partition: PartitionOption = None,
    from_offset: FromOption = None,
    to_offset: ToOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Dead letters with their reason, oldest first."""
    selection = _selection(topic, since, until, partition, from_offset, to_offset)
    letters = _letters(_target(ctx), selection)
    if as_json:
        _print_json([letter.summary() for letter in letters])
        return
    table = Table("id", "dead at", "event", "consumer", "reason")
    for letter in letters:
        s = letter.summary()
        table.add_row(
            s["id"], s["dead_at"], f"{s['event_type']} {s['event_id']}", s["consumer"], s["reason"]
        )
    out.print(table)
    out.print(f"{len(letters)} dead letters")


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    letter_id: Annotated[str, typer.Argument(help="<dlq topic>:<partition>:<offset>")],
) -> None:
    """One dead letter in full: reason, origin, headers and the event. Exit 1 if absent."""
    try:
        letter = asyncio.run(dlq.show(_target(ctx).bootstrap, letter_id))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="LETTER_ID") from None
    if letter is None:
        err.print(f"no dead letter {letter_id}")
        raise typer.Exit(1)
    _print_json(letter.details())


@dlq_app.command("redrive")
def dlq_redrive(
    ctx: typer.Context,
    topic: TopicOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    partition: PartitionOption = None,
    from_offset: FromOption = None,
    to_offset: ToOption = None,
    letter_ids: Annotated[
        list[str] | None, typer.Option("--id", help="one letter (repeatable) instead of a range")
    ] = None,
    all_topics: Annotated[
        bool, typer.Option("--all", help="every topic's letters (when no --topic or --id)")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Send dead letters back to their source topic, to be applied once (after a fix)."""
    target = _target(ctx)
    if letter_ids:
        try:
            found = [asyncio.run(dlq.show(target.bootstrap, one)) for one in letter_ids]
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--id") from None
        missing = [one for one, letter in zip(letter_ids, found, strict=True) if letter is None]
        if missing:
            err.print(f"no dead letter {', '.join(missing)}")
            raise typer.Exit(1)
        letters = [letter for letter in found if letter is not None]
    else:
        if topic is None and not all_topics:
            raise typer.BadParameter("name a --topic, an --id, or say --all", param_hint="--topic")
        selection = _selection(topic, since, until, partition, from_offset, to_offset)
        letters = _letters(target, selection)
    if not letters:
        out.print("no dead letters match: nothing redriven")
        return
    if not yes and not typer.confirm(f"redrive {len(letters)} dead letters?"):
        raise typer.Exit(1)
    count = asyncio.run(dlq.redrive(target.bootstrap, letters))
    out.print(f"redrove {count} dead letters to their source topics")


# Replay


@app.command()
def replay(
    database: Annotated[
        str | None, typer.Option(help="rebuild into this database (wiped); default <live>_replay")
    ] = None,
    now: Annotated[str | None, typer.Option(help="judge at this ISO moment (UTC)")] = None,
    compare: Annotated[bool, typer.Option(help="compare with the live figures")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print every figure as JSON")] = False,
) -> None:
    """Rebuild analytics from the beginning of the topics; exit 1 if it differs from live."""
    # Imported here: it loads the analytics service and its settings.
    from ops import replaying  # noqa: PLC0415

    moment = _moment(now, "--now") if now else None
    raise typer.Exit(replaying.run(database, moment, compare=compare, as_json=as_json))


# Tokens


@token_app.command("mint")
def token_mint(
    role: Annotated[list[Role] | None, typer.Option(help="repeatable; default admin")] = None,
    subject: Annotated[str, typer.Option(help="who the token names")] = "cli",
    customer_id: Annotated[str | None, typer.Option(help="for a customer token")] = None,
    hours: Annotated[float, typer.Option(min=0.01, help="lifetime")] = 12.0,
) -> None:
    """Print a bearer token signed with RAPPORT_AUTH_SECRET."""
    roles = set(role or [Role.ADMIN])
    if Role.CUSTOMER in roles and not customer_id:
        raise typer.BadParameter("a customer token needs --customer-id", param_hint="--role")
    tokens = TokenService(ServiceSettings().secret)
    print(tokens.mint(subject, roles, customer_id=customer_id, ttl=timedelta(hours=hours)))


# The local stack


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def up() -> None:
    """Run the whole stack locally in the foreground (what `make up` does)."""
    # The development tools are imported only when asked for.
    from devstack.up import Console as UpConsole  # noqa: PLC0415
    from devstack.up import run  # noqa: PLC0415

    raise typer.Exit(run(os.environ, UpConsole(sys.stdout)))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def demo(ctx: typer.Context) -> None:
    """The stack fed synthetic traffic (what `make demo` does); options as `--rate 5`."""
    try:
        from devstack.demo import run  # noqa: PLC0415 (it needs the dev extras: faker)
    except ImportError as error:
        err.print(f"the demo needs the dev extras (pip install -e '.[dev]'): {error}")
        raise typer.Exit(2) from None
    raise typer.Exit(run(os.environ, ctx.args))


if __name__ == "__main__":
    app()
