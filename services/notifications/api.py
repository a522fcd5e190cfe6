"""HTTP API of the notifications core: the delivery ledger, redrive, preferences, rules.

Templates, the in-app inbox and webhook subscriptions have their own routers
(``templates_api``, ``inbox_api``, ``webhooks_api``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel

from services.notifications import deliveries, scheduling
from services.notifications import rules as r
from services.notifications.deliveries_domain import Delivery, DeliveryStatus
from services.notifications.deliveries_store import status_filter
from services.notifications.planning import Notifications
from services.notifications.preferences_domain import CustomerPreferences
from services.notifications.rules import Audience, RuleConfig, RuleUpdate
from services.notifications.scheduling_domain import ScheduleStatus
from shared.auth import AdminPrincipal, CurrentPrincipal, Principal, Role, require_roles
from shared.errors import InvalidInput
from shared.pagination import Page, decode_cursor, page_of

StaffPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT))]
CustomerId = Annotated[str, Path(min_length=1, max_length=200)]
DeliveryId = Annotated[str, Path(min_length=1, max_length=200)]
RuleName = Annotated[str, Path(min_length=1, max_length=64)]


def get_notifications(request: Request) -> Notifications:
    notifications: Notifications = request.app.state.notifications
    return notifications


NotificationsDep = Annotated[Notifications, Depends(get_notifications)]


class DeliveryPage(Page[Delivery]):
    pass


router = APIRouter(prefix="/api/v1", tags=["notifications"])


@router.get("/deliveries")
async def list_deliveries(
    ctx: NotificationsDep,
    principal: CurrentPrincipal,
    status: Annotated[
        list[DeliveryStatus] | None,
        Query(description="pending (incl. deferred and retrying), sent, failed, suppressed"),
    ] = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DeliveryPage:
    """The delivery ledger, newest first; a customer token sees the messages sent to it
    (not the internal ones about it, such as an escalation or a churn alert)."""
    customer = not deliveries.is_staff(principal)
    if customer:
        if customer_id is not None:
            principal.ensure_may_access_customer(customer_id)  # 403 for another's
        customer_id = principal.customer_id
    if rule is not None and rule not in r.RULE_NAMES:
        raise InvalidInput(f"no rule {rule}; rules are: {', '.join(r.RULE_NAMES)}")
    filters = status_filter(
        status or [],
        [customer_id] if customer_id else [],
        rule,
        audience=Audience.CUSTOMER if customer else None,
    )
    found = await ctx.ledger.page(filters, decode_cursor(cursor, "deliveries"), limit + 1)
    page, next_cursor = page_of(found, limit, lambda d: (d.created_at, d.id), "deliveries")
    return DeliveryPage(items=page, next_cursor=next_cursor)


@router.get("/deliveries/{delivery_id}")
async def read_delivery(
    delivery_id: DeliveryId, ctx: NotificationsDep, principal: CurrentPrincipal
) -> Delivery:
    return await deliveries.read_delivery(ctx, delivery_id, principal)


@router.post(
    "/deliveries/{delivery_id}/redrive",
    responses={409: {"description": "only a failed delivery can be redriven"}},
)
async def redrive(delivery_id: DeliveryId, ctx: NotificationsDep, _: StaffPrincipal) -> Delivery:
    """Try a failed delivery again from its first attempt (same delivery id, so a
    receiver that saw it before can tell)."""
    return await deliveries.redrive(ctx, delivery_id)


@router.get("/customers/{customer_id}/preferences", tags=["preferences"])
async def read_preferences(
    customer_id: CustomerId, ctx: NotificationsDep, principal: CurrentPrincipal
) -> CustomerPreferences:
    """What applies to the customer now: their own choice and, after a merge, the opt-outs
    made on the profiles merged into theirs (until the customer chooses again)."""
    principal.ensure_may_access_customer(customer_id)
    return await ctx.preferences_of(await ctx.directory.current_id(customer_id))


@router.put("/customers/{customer_id}/preferences", tags=["preferences"])
async def put_preferences(
    customer_id: CustomerId,
    body: CustomerPreferences,
    ctx: NotificationsDep,
    principal: CurrentPrincipal,
) -> CustomerPreferences:
    """Opt-outs per channel and purpose, and quiet hours (local HH:MM in the customer's
    time zone); the customer may change their own."""
    principal.ensure_may_access_customer(customer_id)
    unique = list(dict.fromkeys(body.opt_outs))
    body = body.model_copy(update={"opt_outs": unique})
    current = await ctx.directory.current_id(customer_id)
    merged = await ctx.directory.merged_from(current)
    return await ctx.preferences.put(current, body, ctx.now(), covers=merged)


class SchedulePublic(BaseModel):
    """A scheduled message of the customer: a birthday greeting, a renewal reminder (per
    contract and days before its date), a complaint's daily status."""

    id: str
    rule: str
    customer_id: str
    due_at: datetime
    occurrence: str
    status: ScheduleStatus
    params: dict[str, Any]
    fired: str | None


@router.get("/customers/{customer_id}/schedules", tags=["schedules"])
async def list_schedules(
    customer_id: CustomerId,
    ctx: NotificationsDep,
    _: StaffPrincipal,
    rule: Annotated[str | None, Query(max_length=64)] = None,
) -> list[SchedulePublic]:
    """The customer's scheduled messages, with when each is next due (staff: e.g. to
    answer "when will I be reminded?"); cancelled ones say so."""
    current = await ctx.directory.current_id(customer_id)
    found = await ctx.schedules.of_customer(current, rule=rule)
    return [
        SchedulePublic(
            id=s.id, rule=s.rule, customer_id=s.customer_id, due_at=s.due_at,
            occurrence=s.occurrence, status=s.status, params=dict(s.params), fired=s.fired,
        )
        for s in found
    ]  # fmt: skip


@router.get("/rules", tags=["rules"])
async def list_rules(ctx: NotificationsDep, _: StaffPrincipal) -> list[RuleConfig]:
    return await ctx.all_rules()


@router.get("/rules/{name}", tags=["rules"])
async def read_rule(name: RuleName, ctx: NotificationsDep, _: StaffPrincipal) -> RuleConfig:
    r.definition(name)
    return await ctx.rule(name)


@router.put("/rules/{name}", tags=["rules"])
async def put_rule(
    name: RuleName, body: RuleUpdate, ctx: NotificationsDep, _: AdminPrincipal
) -> RuleConfig:
    """Switch a rule on or off, choose its channels, set its parameters (422 when they do
    not fit the rule). New times or days of a scheduled rule move its pending schedules."""
    r.definition(name)
    current = await ctx.rule(name)
    override = r.validate_update(name, body, current)
    if override:
        await ctx.rule_store.put(name, override)
        if name in (r.BIRTHDAY_GREETING, r.RENEWAL_REMINDER) and "parameters" in override:
            await scheduling.resync_schedules(ctx)
    return await ctx.rule(name)
