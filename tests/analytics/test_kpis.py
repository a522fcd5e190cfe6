"""KPIs per window from a known event set equal hand-computed figures; the same events
delivered again change nothing; bad parameters are refused with problem+json."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.analytics.settings import AnalyticsSettings
from shared.events import new_event
from shared.events.envelope import encode
from shared.kafka import AiokafkaPublisher
from shared.topics import TopicNames
from tests.analytics.conftest import (
    Api,
    acknowledged,
    ago,
    breached,
    events_of,
    feedback,
    notified,
    opened,
    purchase,
    registered,
    resolved,
    returned,
    running,
)
from tests.service_harness import DrivenClock


def known_events() -> list[Any]:
    return [
        registered("c-ana", "Ana Horvat", ago(hours=5)),
        registered("c-bo", "Bořek Novák", ago(days=3)),
        purchase("c-ana", "p1", ago(hours=4), [("SKU-TEA", "tea", "19.90")]),
        purchase("c-ana", "p2", ago(hours=2), [("SKU-CUP", "cups", "30.10")]),
        purchase("c-bo", "p3", ago(hours=1), [("SKU-POT", "pots", "50.00")]),
        purchase("c-bo", "p4", ago(hours=3), [("SKU-TEA", "tea", "10.00")], currency="USD"),
        purchase("c-bo", "p5", ago(days=2), [("SKU-KETTLE", "kettles", "100.00")]),
        returned("c-ana", "r1", "p2", "30.10", ago(hours=1)),
        # k1: answered in 1 h (due 8 h), resolved after 4 h
        opened("c-ana", "k1", ago(hours=10)),
        acknowledged("c-ana", "k1", ago(hours=9)),
        resolved("c-ana", "k1", ago(hours=6)),
        # k2: answered after 9 h (late), resolved after 18 h (due 40 h)
        opened("c-bo", "k2", ago(hours=20)),
        acknowledged("c-bo", "k2", ago(hours=11)),
        resolved("c-bo", "k2", ago(hours=2)),
        # k3: opened before the window, resolved in it after 27 h, breached its resolution SLA
        opened("c-bo", "k3", ago(hours=30)),
        acknowledged("c-bo", "k3", ago(hours=29)),
        breached("c-bo", "k3", "resolution", ago(hours=5)),
        resolved("c-bo", "k3", ago(hours=3)),
        # k4: still open
        opened("c-ana", "k4", ago(hours=1)),
        # k5: never answered, its first response due 7 h ago: a miss, at its due time
        opened("c-ana", "k5", ago(hours=15)),
        # k6: answered in time before the window, its resolution due 5 h ago: a miss
        opened("c-bo", "k6", ago(hours=45)),
        acknowledged("c-bo", "k6", ago(hours=44)),
        notified("sent", "c-ana", "n1", ago(hours=1)),
        notified("sent", "c-bo", "n2", ago(hours=2)),
        notified("failed", "c-ana", "n3", ago(hours=3)),
        notified("suppressed", "c-bo", "n4", ago(hours=4)),
        notified("sent", "c-bo", "n5", ago(days=2)),
        feedback("c-ana", "k1", 5, 10, ago(hours=5)),
        feedback("c-bo", "k2", 2, 3, ago(hours=1)),
        feedback("c-bo", "k3", 4, 9, ago(hours=2)),
        feedback("c-bo", "k2", 3, None, ago(hours=1)),
    ]


DAY = {
    "window": "24h",
    "from": "2026-11-22T12:00:00Z",
    "to": "2026-11-23T12:00:00Z",
    "purchases": 4,
    "returns": 1,
    "returns_rate": 25.0,
    "revenue": {"EUR": "100.00", "USD": "10.00"},
    "refunds": {"EUR": "30.10"},
    "average_order_value": {"EUR": "33.33", "USD": "10.00"},
    "new_customers": 1,
    "complaints": {
        "opened": 4,
        "resolved": 3,
        # resolution times 4 h, 18 h, 27 h; nearest rank: p50 = 2nd, p90 = 3rd
        "resolution_time_p50_seconds": 64800.0,
        "resolution_time_p90_seconds": 97200.0,
        # clocks settled in the window: first response k1 met, k2 late (missed at its due
        # time), k5 unanswered past due; k3 and k6 were answered before the window
        "first_response_sla_met_pct": 33.33,
        # resolution k1 and k2 met, k3 breached, k6 unresolved past due
        "resolution_sla_met_pct": 50.0,
    },
    "notifications": {"sent": 2, "failed": 1, "suppressed": 1},
    # CSAT (5 + 2 + 4 + 3) / 4; NPS of 10, 3, 9: 2 promoters, 1 detractor of 3
    "satisfaction": {"responses": 4, "csat_average": 3.5, "nps": 33.33},
}


def same_moment(response: dict[str, Any]) -> dict[str, Any]:
    """The API writes UTC as +00:00 or Z depending on the serializer; compare as Z."""
    return {
        **response,
        "from": response["from"].replace("+00:00", "Z"),
        "to": response["to"].replace("+00:00", "Z"),
    }


async def test_kpis_of_a_known_event_set_equal_the_hand_computed_figures(api: Api) -> None:
    await api.feed(*known_events())

    assert same_moment(await api.get("/kpis", window="24h")) == DAY
    assert same_moment(await api.get("/kpis")) == DAY  # 24 h is the default
    week = await api.get("/kpis", window="7d")
    assert week["purchases"] == 5
    assert week["revenue"] == {"EUR": "200.00", "USD": "10.00"}
    assert week["average_order_value"] == {"EUR": "50.00", "USD": "10.00"}
    assert week["new_customers"] == 2
    assert week["notifications"]["sent"] == 3
    # k3 and k6 were answered in time within the week: 3 of 5 first responses met
    assert week["complaints"]["first_response_sla_met_pct"] == 60.0
    assert week["complaints"]["resolution_sla_met_pct"] == 50.0
    hour = await api.get("/kpis", window="1h")
    # (11:00, 12:00]: p3, r1 and k4 at 11:00 sharp fall just outside
    assert hour["purchases"] == 0
    assert hour["returns_rate"] is None
    assert hour["complaints"]["opened"] == 0
    assert hour["complaints"]["resolution_time_p50_seconds"] is None
    assert hour["complaints"]["first_response_sla_met_pct"] is None  # k4 is not due yet
    assert hour["complaints"]["resolution_sla_met_pct"] is None
    assert hour["satisfaction"]["csat_average"] is None


async def test_series_fill_every_bucket_and_sum_revenue_as_decimals(api: Api) -> None:
    await api.feed(*known_events())

    series = await api.get("/kpis/series", metric="revenue", bucket="hour", currency="EUR")
    assert series["bucket"] == "hour"
    assert series["currency"] == "EUR"
    points = {p["at"].replace("+00:00", "Z"): p["value"] for p in series["points"]}
    assert len(points) == 25  # 12:00 yesterday to 12:00 today, both included
    assert points["2026-11-23T08:00:00Z"] == "19.90"
    assert points["2026-11-23T10:00:00Z"] == "30.10"
    assert points["2026-11-23T11:00:00Z"] == "50.00"
    assert points["2026-11-23T09:00:00Z"] == "0"
    purchases = await api.get("/kpis/series", metric="purchases", window="7d", bucket="day")
    assert sum(p["value"] for p in purchases["points"]) == 5
    assert len(purchases["points"]) == 8
    opened_series = await api.get("/kpis/series", metric="complaints_opened", window="24h")
    assert sum(p["value"] for p in opened_series["points"]) == 4
    await api.feed(purchase("c-ana", "p6", ago(minutes=7, seconds=30)))
    minutes = await api.get("/kpis/series", metric="purchases", window="1h")
    assert minutes["bucket"] == "minute"  # the default for an hour
    assert len(minutes["points"]) == 61
    assert [p["at"].replace("+00:00", "Z") for p in minutes["points"] if p["value"]] == [
        "2026-11-23T11:52:00Z"
    ]


async def test_a_complaint_left_unanswered_past_its_due_time_is_a_miss_counted_once(
    api: Api,
) -> None:
    await api.feed(
        # first response due 2 h ago, resolution 1 h ago: neither has happened
        opened(
            "c-ana",
            "k-late",
            ago(hours=10),
            first_response_due=timedelta(hours=8),
            resolution_due=timedelta(hours=9),
        ),
        # answered and resolved in time
        opened("c-bo", "k-fast", ago(hours=6)),
        acknowledged("c-bo", "k-fast", ago(hours=5)),
        resolved("c-bo", "k-fast", ago(hours=4)),
        # first response due in 1 h: still running, so neither met nor missed yet
        opened("c-bo", "k-soon", ago(hours=7)),
    )

    async def sla(window: str = "24h") -> tuple[float | None, float | None]:
        figures = (await api.get("/kpis", window=window))["complaints"]
        return figures["first_response_sla_met_pct"], figures["resolution_sla_met_pct"]

    # Customers are waiting on k-late: not 100 %.
    assert await sla() == (50.0, 50.0)
    # The complaints service announces both breaches: the same misses, not new ones.
    await api.feed(
        breached("c-ana", "k-late", "first_response", ago(hours=2)),
        breached("c-ana", "k-late", "resolution", ago(hours=1)),
    )
    assert await sla() == (50.0, 50.0)
    # Answered and resolved late afterwards: still counted once, where it was missed.
    api.clock.advance(minutes=30)
    await api.feed(
        acknowledged("c-ana", "k-late", ago(minutes=-10)),
        resolved("c-ana", "k-late", ago(minutes=-20)),
    )
    assert await sla() == (50.0, 50.0)
    assert await sla("1h") == (None, None)  # the late answers settle nothing new
    assert (await api.get("/kpis"))["complaints"]["resolved"] == 2
    # k-soon's first-response due time passes unanswered, judged at the injected now.
    api.clock.advance(hours=1)
    assert await sla() == (33.33, 50.0)
    assert await sla("1h") == (0.0, None)


async def test_the_same_events_delivered_again_change_nothing(api: Api) -> None:
    events = events_of(*known_events())
    await api.feed_events(events)
    before = {w: await api.get("/kpis", window=w) for w in ("1h", "24h", "7d", "30d")}
    insights_before = await api.get("/customers/c-bo/insights")
    applied = await api.applied()

    # Every record again (a redelivery after a crash), then, behind them in the same
    # partitions, new events that restate known facts (a purchase id, an answer) and so
    # must count once too.
    await api.send_records([(api.topics(e.topic), encode(e)) for e in events])
    restated = [
        purchase("c-ana", "p1", ago(hours=4), [("SKU-TEA", "tea", "19.90")]),
        purchase("c-bo", "p3", ago(hours=1), [("SKU-POT", "pots", "50.00")]),
        returned("c-ana", "r1", "p2", "30.10", ago(hours=1)),
        acknowledged("c-ana", "k1", ago(hours=8)),
        acknowledged("c-bo", "k2", ago(hours=10)),
    ]
    await api.feed_events([new_event(p, source="/tests") for p in restated])

    assert await api.applied() == applied + len(restated)
    after = {w: await api.get("/kpis", window=w) for w in ("1h", "24h", "7d", "30d")}
    assert after == before
    assert await api.get("/customers/c-bo/insights") == insights_before


async def test_bad_parameters_are_refused_with_problem_json(api: Api) -> None:
    for path, params in [
        ("/kpis", {"window": "2h"}),
        ("/kpis/series", {"bucket": "week"}),
        ("/kpis/series", {"metric": "profit"}),
        ("/kpis/series", {"window": "30d", "bucket": "minute"}),
        ("/kpis/series", {"currency": "euro"}),
        ("/segments/champions", {"limit": "0"}),
        ("/segments/champions", {"cursor": "not-a-cursor"}),
        ("/churn-risks", {"level": "extreme"}),
        ("/churn-risks", {"limit": "1000"}),
        ("/notifications/recent", {"limit": "-1"}),
        ("/offers/bought-together", {}),
    ]:
        response = await api.http.get(f"/api/v1{path}", params=params, headers=api.agent)
        assert response.status_code == 422, (path, params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    unknown = await api.http.get("/api/v1/segments/whales", headers=api.agent)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_only_staff_and_services_read_the_figures(api: Api) -> None:
    response = await api.http.get("/api/v1/kpis", headers=api.customer("c-ana"))
    assert response.status_code == 403
    anonymous = await api.http.get("/api/v1/kpis")
    assert anonymous.status_code == 401


async def test_a_restarted_worker_counts_nothing_twice(
    analytics_settings: AnalyticsSettings,
    clock: DrivenClock,
    publisher: AiokafkaPublisher,
    topics: TopicNames,
) -> None:
    events = known_events()
    async with running(analytics_settings, clock, publisher, topics) as first:
        await first.feed(*events[:12])
    # The same consumer group and database again: offsets not committed before the stop
    # are delivered again, and the markers make them no-ops.
    async with running(analytics_settings, clock, publisher, topics) as second:
        await second.feed(*events[12:])
        assert same_moment(await second.get("/kpis")) == DAY
