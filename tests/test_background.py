"""The one background loop (shared.background.Periodic): rounds, wake-ups and the lease."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from shared.background import Periodic
from shared.lease import Lease
from shared.mongo import Database
from tests.service_harness import eventually


def holds(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


async def test_a_wake_starts_a_round_before_the_interval_and_a_lease_holder_works_alone(
    db: Database,
) -> None:
    rounds: dict[str, list[bool]] = {"first": [], "second": []}

    def loop(name: str) -> Periodic:
        async def work() -> bool:
            rounds[name].append(periodic.woken)
            return False

        lease = Lease(db["leases"], "job", name, timedelta(minutes=1))
        periodic = Periodic(f"job-{name}", 3600, work, lease=lease)
        return periodic

    first, second = loop("first"), loop("second")
    await first.start()
    await eventually(holds(lambda: rounds["first"] == [False]), message="no round at start")
    await second.start()
    first.wake()
    second.wake()
    await eventually(holds(lambda: rounds["first"] == [False, True]), message="a wake runs a round")
    await asyncio.sleep(0.2)
    assert rounds["second"] == []  # the lease is the first's: the second never worked
    await first.stop()  # hands the lease over at once
    second.wake()
    await eventually(holds(lambda: rounds["second"] == [True]), message="the lease was handed over")
    await second.stop()


async def test_a_failing_round_is_retried_and_more_waiting_runs_at_once() -> None:
    calls: list[int] = []

    async def work() -> bool:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the store went away")
        return len(calls) < 4  # more waiting until the fourth round

    periodic = Periodic("job", 3600, work, retry_after=0.05)
    await periodic.start()
    await eventually(holds(lambda: len(calls) == 4), message="no retry, or a pause")
    await asyncio.sleep(0.2)
    assert len(calls) == 4  # then it waits for the interval
    await periodic.stop()
