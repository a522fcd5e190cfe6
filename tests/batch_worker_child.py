"""Child process of the batch crash tests: a service runtime whose handler is slow.

It consumes ``crm.purchases`` in batches with a route that counts each purchase per
customer (through the unit of work) and records one effect document per event, sleeping
``delay`` seconds per event so a batch is in hand long enough to be killed or stopped in
the middle. The tests kill it with SIGKILL or stop it with SIGTERM and look at what was
stored and which offsets were committed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass
from typing import ClassVar

from pydantic_settings import SettingsConfigDict
from pymongo import UpdateOne

from shared.events import Event
from shared.events.purchases import PurchaseCompleted
from shared.mongo import Collection
from shared.routing import Routes
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings
from shared.topics import PURCHASES
from shared.unit_of_work import UnitOfWork


class ChildSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_CHILD_", extra="ignore")
    service_name: ClassVar[str] = "batch-child"


@dataclass
class Effects:
    effects: Collection
    counts: Collection
    delay: float


routes: Routes[Effects] = Routes()


@routes.on(PurchaseCompleted)
async def record(effects: Effects, event: Event[PurchaseCompleted], uow: UnitOfWork) -> None:
    await asyncio.sleep(effects.delay)
    uow.insert(effects.effects, {"_id": event.id, "purchase_id": event.payload.purchase_id})
    uow.write(
        effects.counts,
        UpdateOne({"_id": event.payload.customer_key()}, {"$inc": {"n": 1}}, upsert=True),
        key=event.payload.customer_key(),
    )


async def main(
    bootstrap: str, mongodb_uri: str, prefix: str, database: str, delay: str, streams: str
) -> None:
    settings = ChildSettings(
        kafka_bootstrap=bootstrap,
        mongodb_uri=mongodb_uri,
        topic_prefix=prefix,
        mongodb_database=database,
        consumer_batch_size=50,
        consumer_streams=int(streams),
    )
    runtime = ServiceRuntime.build(settings, subscriptions=[PURCHASES])
    for worker in runtime.workers:
        worker.stop_timeout = 30.0 if float(delay) < 0.5 else 0.5
    runtime.handle(routes.bind(Effects(runtime.db["effects"], runtime.db["counts"], float(delay))))
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    await runtime.start()
    print("started", flush=True)
    await stopped.wait()
    await runtime.stop()
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
