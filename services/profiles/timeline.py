"""The customer's timeline: one entry per thing that happened, newest first.

Every use case that changes something about a customer appends its entry in the same
transaction as the change, and the worker appends the complaint and notification events
it consumes, so the timeline is complete without asking any other service. Here: reading
it, and filing those events (``routes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.profiles.handlers import Profiles, get_customer
from services.profiles.store import CustomerStore
from services.profiles.timeline_domain import (
    RECORDED_EVENTS,
    EntryKind,
    TimelineEntry,
    describe,
)
from services.profiles.timeline_store import TimelineStore
from shared.events import Event
from shared.events.complaints import ComplaintEvent
from shared.events.notifications import NotificationEvent
from shared.identity import End, follow
from shared.routing import Routes
from shared.unit_of_work import UnitOfWork


async def read_timeline(
    profiles: Profiles,
    customer_id: str,
    kinds: Sequence[EntryKind] = (),
    after: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[TimelineEntry]:
    """The live customer's entries, newest first: ``limit`` of them past ``after``."""
    customer = await get_customer(profiles, customer_id)
    return await profiles.timeline.page(customer.id, kinds=kinds, after=after, limit=limit)


async def owner_of_entry(customers: CustomerStore, customer_id: str, uow: UnitOfWork) -> str | None:
    """Whose timeline an event about ``customer_id`` belongs on; None to drop it.

    - A merged profile's events go to the survivor (following ``merged_into``).
    - An erased customer's are dropped: recording them would bring back what erasure
      removed (a complaint's subject, a notification's reason).
    - An id the profiles service has not seen is recorded under that id all the same:
      ids are opaque and other systems may know a customer before profiles does (or
      a profile may be imported later under that id); until a profile with that id
      exists the entries are unreachable through the API, and erasing the id clears them.
    - A merge chain too long to follow (a data error) leaves them with the last profile.
    """
    reached = await follow(customer_id, lambda key: customers.link(uow, key))
    return None if reached.end is End.ERASED else reached.customer_id


@dataclass(frozen=True)
class TimelineRecorder:
    """What filing other services' events on the timeline needs."""

    customers: CustomerStore
    timeline: TimelineStore


routes: Routes[TimelineRecorder] = Routes()


async def load_owners(
    recorder: TimelineRecorder,
    events: Sequence[Event[ComplaintEvent | NotificationEvent]],
    uow: UnitOfWork,
) -> None:
    """The profiles a batch's events are about, and their survivors, in one read (and one
    more per merge step); entries are written without reading the timeline."""
    await recorder.customers.load(uow, [event.payload.customer_key() for event in events])


@routes.on(*RECORDED_EVENTS, load=load_owners)
async def record(
    recorder: TimelineRecorder, event: Event[ComplaintEvent | NotificationEvent], uow: UnitOfWork
) -> None:
    """File a complaint or notification event on the timeline of the customer it is about.

    The entry's id is the event's id: a redelivered event is skipped by the consumer's
    processed-event marker, and a second entry with that id would fail the transaction.
    """
    happening = describe(event.payload)
    if happening is None:
        return
    owner = await owner_of_entry(recorder.customers, event.payload.customer_key(), uow)
    if owner is None:
        return
    recorder.timeline.add(uow, entry_id=event.id, customer_id=owner, happening=happening)
