"""Deliveries, their use cases over HTTP: read one (a customer token only a message sent
to it) and try a failed one again (redrive). Listing the ledger is a page query of the
store (``DeliveryLedger.page``); the events' and schedules' use cases that decide the
deliveries are ``handlers.py`` and ``scheduling.py``, sending them ``dispatcher.py``."""

from __future__ import annotations

from services.notifications.deliveries_domain import Delivery, DeliveryStatus
from services.notifications.planning import Notifications
from services.notifications.rules import Audience
from shared.auth import Principal, Role
from shared.errors import Conflict, NotFound


def is_staff(principal: Principal) -> bool:
    return principal.has_any(Role.ADMIN, Role.AGENT, Role.SERVICE)


async def read_delivery(ctx: Notifications, delivery_id: str, principal: Principal) -> Delivery:
    """The delivery, if the principal may see it: staff any; a customer token one sent to
    its own customer (not an internal one about it: 404), another's a 403."""
    delivery = await ctx.ledger.get(delivery_id)
    if delivery is None or (not is_staff(principal) and delivery.audience is not Audience.CUSTOMER):
        raise NotFound(f"no delivery {delivery_id}")
    principal.ensure_may_access_customer(delivery.customer_id)
    return delivery


async def redrive(ctx: Notifications, delivery_id: str) -> Delivery:
    """Try a failed delivery again from its first attempt (same delivery id, so a
    receiver that saw it before can tell)."""
    delivery = await ctx.ledger.get(delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id}")
    if delivery.status is not DeliveryStatus.FAILED:
        raise Conflict(f"delivery {delivery_id} is {delivery.status.value}, not failed")
    if not await ctx.ledger.redrive(delivery, ctx.now()):
        raise Conflict(f"delivery {delivery_id} changed meanwhile; read it again")
    redriven = await ctx.ledger.get(delivery_id)
    assert redriven is not None
    return redriven
