"""HTTP API of analytics: KPIs, series, segments, churn risks, insights, offers.

Staff (admin, agent) and systems (service) read everything; a customer token reads only
its own insights and next best offer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from services.analytics import queries
from services.analytics.domain.figures import Bucket, Metric, Window
from services.analytics.handlers.context import Analytics
from shared.auth import CurrentPrincipal, Principal, Role, require_roles
from shared.events.insights import RiskLevel
from shared.pagination import Page

ReaderPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT, Role.SERVICE))]
CustomerId = Annotated[str, Path(min_length=1, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Cursor = Annotated[
    str | None, Query(max_length=500, description="`next_cursor` of the previous page")
]
Currency = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$", description="ISO 4217")]


def get_analytics(request: Request) -> Analytics:
    analytics: Analytics = request.app.state.analytics
    return analytics


AnalyticsDep = Annotated[Analytics, Depends(get_analytics)]


class ComplaintKpis(BaseModel):
    opened: int
    resolved: int = Field(description="complaints whose first resolution is in the window")
    resolution_time_p50_seconds: float | None = Field(
        description="nearest-rank median of first resolution time minus opening time"
    )
    resolution_time_p90_seconds: float | None
    first_response_sla_met_pct: float | None = Field(
        description="of first-response clocks settled in the window (answered in time, or"
        " missed: their due time passed unanswered or before a late answer), % met"
    )
    resolution_sla_met_pct: float | None = Field(
        description="of resolution clocks settled in the window (resolved in time, or"
        " missed: their due time passed unresolved or before a late resolution), % met"
    )


class NotificationKpis(BaseModel):
    sent: int
    failed: int
    suppressed: int


class SatisfactionKpis(BaseModel):
    responses: int
    csat_average: float | None = Field(description="mean CSAT (1-5) of the window's feedback")
    nps: float | None = Field(description="% promoters (9-10) minus % detractors (0-6)")


class Kpis(BaseModel):
    window: Window
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    purchases: int
    returns: int
    returns_rate: float | None = Field(description="returns per 100 purchases in the window")
    revenue: dict[str, str] = Field(description="gross revenue per currency, decimal strings")
    refunds: dict[str, str]
    average_order_value: dict[str, str]
    new_customers: int
    complaints: ComplaintKpis
    notifications: NotificationKpis
    satisfaction: SatisfactionKpis


class SeriesPoint(BaseModel):
    at: datetime
    value: int | str = Field(description="a count, or a decimal string for revenue")


class Series(BaseModel):
    metric: Metric
    window: Window
    bucket: Bucket
    currency: str | None
    points: list[SeriesPoint]


class SegmentCount(BaseModel):
    segment: str
    count: int


class SegmentCounts(BaseModel):
    total: int
    segments: list[SegmentCount]


class RfmPublic(BaseModel):
    recency: int
    frequency: int
    monetary: int


class SegmentMember(BaseModel):
    customer_id: str
    name: str | None
    segment: str | None
    loyalty_tier: str | None
    rfm: RfmPublic | None


class SegmentPage(Page[SegmentMember]):
    next_cursor: str | None  # published without a description (the OpenAPI document is kept)


class ChurnRisk(BaseModel):
    customer_id: str
    name: str | None
    level: RiskLevel
    score: float
    reasons: list[str]
    changed_at: datetime | None


class ChurnPage(Page[ChurnRisk]):
    next_cursor: str | None  # published without a description (the OpenAPI document is kept)


class RecentNotification(BaseModel):
    event_type: str
    customer_id: str
    name: str | None = None
    channel: str
    rule: str
    reason: str | None
    at: datetime


class RecentNotifications(BaseModel):
    items: list[RecentNotification]


class ChurnPublic(BaseModel):
    level: RiskLevel
    score: float = Field(description="0..1: the points of the warning signs / 100")
    reasons: list[str]
    changed_at: datetime | None = Field(description="when the level last changed")


class PurchaseFigures(BaseModel):
    count: int
    spend: dict[str, str]
    refunds: dict[str, str]
    net: dict[str, str]
    returns: int
    categories: list[str]


class Rhythm(BaseModel):
    purchases: int
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    mean_interval_days: float | None
    days_since_last_purchase: float | None
    next_purchase_expected_at: datetime | None
    days_overdue: float | None


class ComplaintFigures(BaseModel):
    total: int
    open: int
    recent: int = Field(description="opened in the last 90 days")
    sla_breached: int


class Satisfaction(BaseModel):
    responses: int
    csat_average: float | None
    latest_csat: int | None
    latest_nps: int | None


class Evidence(BaseModel):
    bought: str = Field(description="a category the customer bought")
    customers_who_bought_both: int


class Product(BaseModel):
    sku: str
    name: str
    customers: int


class Offer(BaseModel):
    category: str
    customers: int = Field(description="customers sharing a category who bought this one")
    evidence: list[Evidence]
    product: Product | None


class Insights(BaseModel):
    customer_id: str
    name: str | None
    evaluated_at: datetime
    segment: str
    loyalty_tier: str
    rfm: RfmPublic | None
    churn: ChurnPublic
    purchases: PurchaseFigures
    rhythm: Rhythm
    complaints: ComplaintFigures
    satisfaction: Satisfaction
    next_best_offers: list[Offer]


class NextBestOffer(BaseModel):
    customer_id: str
    bought: list[str]
    offers: list[Offer]


router = APIRouter(prefix="/api/v1", tags=["analytics"])


@router.get("/kpis", response_model_by_alias=True)
async def read_kpis(ctx: AnalyticsDep, _: ReaderPrincipal, window: Window = Window.DAY) -> Kpis:
    """Figures of the window ending now, by event time."""
    return Kpis.model_validate(await queries.kpis(ctx.store, window, ctx.now()))


@router.get("/kpis/series")
async def read_series(
    ctx: AnalyticsDep,
    _: ReaderPrincipal,
    metric: Metric = Metric.PURCHASES,
    window: Window = Window.DAY,
    bucket: Annotated[
        Bucket | None, Query(description="default: minute for 1h, hour for 24h/7d, day for 30d")
    ] = None,
    currency: Currency = None,
) -> Series:
    """One figure per bucket over the window; empty buckets are 0."""
    found = await queries.series(ctx.store, metric, window, bucket, currency, ctx.now())
    return Series.model_validate(found)


@router.get("/segments")
async def read_segments(ctx: AnalyticsDep, _: ReaderPrincipal) -> SegmentCounts:
    """How many customers each segment has (every segment listed)."""
    return SegmentCounts.model_validate(await queries.segment_counts(ctx.store))


@router.get("/segments/{segment}")
async def read_segment(
    ctx: AnalyticsDep,
    _: ReaderPrincipal,
    segment: Annotated[str, Path(max_length=50)],
    cursor: Cursor = None,
    limit: Limit = 50,
) -> SegmentPage:
    """The segment's customers, by customer id."""
    return SegmentPage.model_validate(
        await queries.segment_members(ctx.store, segment, cursor, limit)
    )


@router.get("/churn-risks")
async def read_churn_risks(
    ctx: AnalyticsDep,
    _: ReaderPrincipal,
    level: Annotated[RiskLevel | None, Query(description="default: high and medium")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ChurnPage:
    """Customers at risk, highest score first, with the reasons."""
    return ChurnPage.model_validate(await queries.churn_risks(ctx.store, level, cursor, limit))


@router.get("/customers/{customer_id}/insights")
async def read_insights(
    customer_id: CustomerId, ctx: AnalyticsDep, principal: CurrentPrincipal
) -> Insights:
    """RFM, segment, loyalty tier, churn risk with reasons, purchase rhythm, complaints,
    satisfaction and next best offers with their evidence."""
    principal.ensure_may_access_customer(customer_id)
    return Insights.model_validate(await queries.insights(ctx, customer_id, ctx.now()))


@router.get("/customers/{customer_id}/next-best-offer")
async def read_next_best_offer(
    customer_id: CustomerId, ctx: AnalyticsDep, principal: CurrentPrincipal
) -> NextBestOffer:
    """Categories customers who bought what this customer bought also bought."""
    principal.ensure_may_access_customer(customer_id)
    return NextBestOffer.model_validate(await queries.next_best_offer(ctx.store, customer_id))


@router.get("/offers/bought-together")
async def read_bought_together(
    ctx: AnalyticsDep,
    _: ReaderPrincipal,
    sku: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """What is bought with a product (or category): in the same purchase, and by the
    same customers, with the counts."""
    return await queries.bought_together(ctx.store, sku, category, limit)


@router.get("/notifications/recent")
async def read_recent_notifications(
    ctx: AnalyticsDep, _: ReaderPrincipal, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> RecentNotifications:
    """The latest notification outcomes, newest first."""
    return RecentNotifications.model_validate(await queries.recent_notifications(ctx.store, limit))
