"""Child process of the outbox crash test: commits a change with its event, then dies.

It is killed (SIGKILL, no cleanup) right after the commit and before any relay could
publish, the worst moment for a service without an outbox.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from shared.events import new_event
from shared.events.customers import CustomerErased
from shared.mongo import Session, create_client, in_transaction
from shared.outbox import Outbox
from shared.topics import TopicNames


async def commit_then_die(mongodb_uri: str, database: str, prefix: str, event_id: str) -> None:
    client = create_client(mongodb_uri, app_name="outbox-crash-child")
    db = client[database]
    outbox = Outbox(db, TopicNames(prefix))
    await outbox.ensure_indexes()
    event = new_event(
        CustomerErased.model_validate({"customer_id": "c-9", "erased_at": "2026-11-22T12:00:00Z"}),
        source="/tests/crash",
        event_id=event_id,
    )

    async def change(session: Session) -> None:
        await db["customers"].insert_one({"_id": "c-9", "erased": True}, session=session)
        await outbox.add(session, [event])

    await in_transaction(client, change)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(commit_then_die(*sys.argv[1:5]))
