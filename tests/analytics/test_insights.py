"""Per customer: RFM segments and loyalty tiers against the population, churn risk with its
reasons announced once on change, insights, and next best offers with their evidence."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

from services.analytics.handlers.recompute import judge_population, recompute
from shared.events import new_event
from shared.topics import INSIGHTS
from tests.analytics.conftest import (
    NOW,
    Api,
    ServiceWith,
    ago,
    opened,
    purchase,
    registered,
)
from tests.kafka_reading import read_topic
from tests.service_harness import DrivenClock, eventually


async def insight_events(api: Api, kafka_bootstrap: str) -> list[dict[str, Any]]:
    """Every event on crm.insights once the outbox has published all it holds."""

    async def relayed() -> bool:
        return await api.analytics.outbox.collection.count_documents({"published_at": None}) == 0

    await eventually(relayed, timeout=30, message="the outbox did not publish")
    records = await read_topic(kafka_bootstrap, api.topics(INSIGHTS))
    return [json.loads(record.value) for record in records]


def churn_changes(events: list[dict[str, Any]], customer_id: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in events
        if e["type"] == "crm.customer.churn_risk_changed" and e["subject"] == customer_id
    ]


async def test_a_customer_overdue_on_their_rhythm_with_an_open_complaint_becomes_high_risk(
    api: Api, kafka_bootstrap: str
) -> None:
    # Every 10 days, the last one 20 days before NOW; a complaint opened the day after it.
    api.clock.now = ago(days=19)
    await api.feed(
        registered("c-risk", "Mira Kovač", ago(days=60)),
        purchase("c-risk", "o1", ago(days=40)),
        purchase("c-risk", "o2", ago(days=30)),
        purchase("c-risk", "o3", ago(days=20)),
        opened("c-risk", "k1", ago(days=19, hours=1)),
    )
    early = await api.get("/customers/c-risk/insights")
    assert early["churn"]["level"] == "low"  # not overdue yet; an open complaint alone: 0.25
    assert early["churn"]["reasons"] == ["unresolved complaint: 1 open"]

    api.clock.now = NOW  # time passes; the periodic task notices
    assert await recompute(api.analytics) >= 1

    risks = await api.get("/churn-risks", level="high")
    [risk] = risks["items"]
    assert risk["customer_id"] == "c-risk"
    assert risk["name"] == "Mira Kovač"
    assert risk["score"] == 0.6
    assert risk["reasons"] == [
        "overdue: 20.0 days since the last purchase, usually every 10.0 days",
        "unresolved complaint: 1 open",
    ]
    insights = await api.get("/customers/c-risk/insights")
    assert insights["churn"]["level"] == "high"
    assert insights["rhythm"]["mean_interval_days"] == 10.0
    assert insights["rhythm"]["days_overdue"] == 10.0
    assert insights["complaints"]["open"] == 1

    await recompute(api.analytics)  # judged again, nothing changed: nothing announced
    [change] = churn_changes(await insight_events(api, kafka_bootstrap), "c-risk")
    assert change["previous_level"] == "low"
    assert change["level"] == "high"
    assert change["score"] == 0.6
    assert [reason.split(":")[0] for reason in change["reasons"]] == [
        "overdue",
        "unresolved complaint",
    ]


def population() -> list[Any]:
    return [
        registered("c-a", "Ana A", ago(days=400)),
        *[
            purchase("c-a", f"a{i}", ago(days=1 + 10 * i), [("T", "tea", "100.00")])
            for i in range(6)
        ],
        *[
            purchase("c-b", f"b{i}", ago(days=5 + 10 * i), [("T", "tea", "100.00")])
            for i in range(3)
        ],
        purchase("c-c", "c0", ago(days=2), [("T", "tea", "20.00")]),
        *[
            purchase("c-d", f"d{i}", ago(days=200 + 10 * i), [("C", "cups", "30.00")])
            for i in range(3)
        ],
        purchase("c-e", "e0", ago(days=300), [("C", "cups", "10.00")]),
        registered("c-f", "Fero F", ago(days=1)),
    ]


async def test_segments_count_every_segment_and_page_through_their_members(api: Api) -> None:
    await api.feed(*population())
    await recompute(api.analytics)

    counts = await api.get("/segments")
    assert counts == {
        "total": 6,
        "segments": [
            {"segment": "champions", "count": 1},
            {"segment": "loyal", "count": 1},
            {"segment": "potential", "count": 0},
            {"segment": "new", "count": 2},
            {"segment": "at_risk", "count": 1},
            {"segment": "hibernating", "count": 0},
            {"segment": "lost", "count": 1},
        ],
    }
    [champion] = (await api.get("/segments/champions"))["items"]
    assert champion == {
        "customer_id": "c-a",
        "name": "Ana A",
        "segment": "champions",
        "loyalty_tier": "gold",
        "rfm": {"recency": 5, "frequency": 5, "monetary": 5},
    }
    first = await api.get("/segments/new", limit=1)
    second = await api.get("/segments/new", limit=1, cursor=first["next_cursor"])
    assert [m["customer_id"] for m in first["items"] + second["items"]] == ["c-c", "c-f"]
    assert second["next_cursor"] is None
    at_risk = await api.get("/churn-risks")  # high and medium by default
    assert [(r["customer_id"], r["level"], r["score"]) for r in at_risk["items"]] == [
        ("c-d", "medium", 0.35)  # every 10 days, nothing for 200
    ]
    low, cursor = [], None
    while True:
        page = await api.get(
            "/churn-risks", level="low", limit=2, **({"cursor": cursor} if cursor else {})
        )
        low += [r["customer_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert low == ["c-a", "c-b", "c-c", "c-e", "c-f"]
    dan = await api.get("/customers/c-d/insights")
    assert (dan["segment"], dan["loyalty_tier"], dan["rfm"]) == (
        "at_risk",
        "silver",
        {"recency": 2, "frequency": 3, "monetary": 3},
    )


async def test_a_customer_token_reads_only_its_own_insights(api: Api) -> None:
    await api.feed(purchase("c-own", "o1", ago(days=1)))
    own = await api.get("/customers/c-own/insights", headers=api.customer("c-own"))
    assert own["purchases"]["count"] == 1
    other = await api.http.get("/api/v1/customers/c-own/insights", headers=api.customer("c-x"))
    assert other.status_code == 403
    missing = await api.http.get("/api/v1/customers/c-nobody/insights", headers=api.agent)
    assert missing.status_code == 404


async def test_next_best_offer_and_items_bought_together_come_with_their_counts(
    api: Api,
) -> None:
    await api.feed(
        purchase("c-1", "q1", ago(days=3), [("TEA", "tea", "5.00"), ("CUP", "cups", "7.00")]),
        purchase("c-2", "q2", ago(days=3), [("TEA", "tea", "5.00"), ("CUP", "cups", "7.00")]),
        purchase("c-2", "q3", ago(days=2), [("KETTLE", "kettles", "40.00")]),
        purchase("c-3", "q4", ago(days=2), [("TEA", "tea", "5.00"), ("HONEY", "honey", "9.00")]),
        purchase("c-4", "q5", ago(days=1), [("TEA", "tea", "5.00")]),
    )
    together = await api.get("/offers/bought-together", sku="TEA")
    assert together["purchases"] == 4
    assert together["customers"] == 4
    assert together["items"] == [
        {
            "sku": "CUP",
            "name": "Cup",
            "category": "cups",
            "purchases_together": 2,
            "customers_together": 2,
        },
        {
            "sku": "HONEY",
            "name": "Honey",
            "category": "honey",
            "purchases_together": 1,
            "customers_together": 1,
        },
        {
            "sku": "KETTLE",
            "name": None,
            "category": None,
            "purchases_together": 0,
            "customers_together": 1,
        },
    ]
    by_category = await api.get("/offers/bought-together", category="tea")
    assert by_category["items"][0] == {
        "category": "cups",
        "purchases_together": 2,
        "customers_together": 2,
    }

    offers = (await api.get("/customers/c-4/insights"))["next_best_offers"]
    assert [(o["category"], o["customers"]) for o in offers] == [
        ("cups", 2),
        ("honey", 1),
        ("kettles", 1),
    ]
    assert offers[0]["evidence"] == [{"bought": "tea", "customers_who_bought_both": 2}]
    assert offers[0]["product"] == {"sku": "CUP", "name": "Cup", "customers": 2}
    alone = await api.get("/customers/c-4/next-best-offer")
    assert alone["offers"] == offers


async def test_the_background_task_notices_a_customer_falling_overdue_as_time_passes(
    service_with: ServiceWith, clock: DrivenClock
) -> None:
    clock.now = ago(days=9)
    async with service_with(recompute_interval_seconds=0.2) as api:
        await api.feed(
            purchase("c-late", "l1", ago(days=30)),
            purchase("c-late", "l2", ago(days=20)),
            purchase("c-late", "l3", ago(days=10)),
        )
        assert (await api.get("/churn-risks"))["items"] == []
        clock.now = NOW  # 10 days later: 1.0 interval, not yet overdue
        clock.advance(days=6)  # 16 days after the last purchase: overdue

        async def noticed() -> bool:
            return bool((await api.get("/churn-risks", level="medium"))["items"])

        await eventually(noticed, timeout=30, message="the periodic judgement did not run")
        [risk] = (await api.get("/churn-risks", level="medium"))["items"]
        assert risk["reasons"][0].startswith("overdue: 16.0 days since the last purchase")


def segment_changes(events: list[dict[str, Any]], customer_id: str) -> list[tuple[Any, Any]]:
    return [
        (e["data"]["previous_segment"], e["data"]["segment"])
        for e in events
        if e["type"] == "crm.customer.segment_changed" and e["subject"] == customer_id
    ]


async def test_on_a_fresh_start_segments_make_sense_at_once_and_follow_the_growing_population(
    service_with: ServiceWith, kafka_bootstrap: str
) -> None:
    async with service_with(regrade_growth=0.2, regrade_settle_seconds=0.5) as api:
        # The first buyers arrive while the population judged at startup is empty, the
        # steady one's history a purchase at a time (a batch is judged once, at its end).
        await api.feed(
            purchase("c-steady", "s0", ago(days=1)),
            *[purchase("c-gone", f"g{i}", ago(days=300 + 7 * i)) for i in range(2)],
        )
        for i in (1, 2):
            await api.feed(purchase("c-steady", f"s{i}", ago(days=1 + 7 * i)))
        steady = await api.get("/customers/c-steady/insights")
        assert steady["segment"] == "loyal"  # not "lost" for want of peers to rank against
        assert (await api.get("/customers/c-gone/insights"))["segment"] == "lost"

        # More buyers: everyone is judged again against them without waiting for the hour.
        await api.feed(*[purchase(f"c-{i}", f"o{i}", ago(days=40 + 30 * i)) for i in range(8)])

        async def judged_against_all() -> bool:
            if (await api.analytics.store.population()).size != 10:
                return False
            _, fresh = await judge_population(api.analytics.store, NOW)
            counts = Counter(item.insight.segment.value for item in fresh)
            segments = await api.get("/segments")
            return {s["segment"]: s["count"] for s in segments["segments"] if s["count"]} == counts

        await eventually(judged_against_all, timeout=60, message="the population was not judged")
        assert (await api.get("/customers/c-steady/insights"))["segment"] == "champions"
        events = await insight_events(api, kafka_bootstrap)
        # Announced once per real change as the history arrives, never a spurious "lost".
        assert segment_changes(events, "c-steady") == [
            (None, "new"),
            ("new", "potential"),
            ("potential", "loyal"),
            ("loyal", "champions"),
        ]
        gone = segment_changes(events, "c-gone")  # its peers decide where it goes from "lost"
        assert gone[0] == (None, "lost")
        assert all(before == after[1] for (before, _), after in zip(gone[1:], gone, strict=False))
        assert all(before != now for before, now in gone)
        assert gone[-1][1] == (await api.get("/customers/c-gone/insights"))["segment"]


def tier_changes(events: list[dict[str, Any]], customer_id: str) -> list[tuple[Any, ...]]:
    return [
        (
            e["data"]["previous_segment"],
            e["data"]["segment"],
            e["data"].get("previous_loyalty_tier"),
            e["data"]["loyalty_tier"],
        )
        for e in events
        if e["type"] == "crm.customer.segment_changed" and e["subject"] == customer_id
    ]


async def test_a_tier_that_moves_while_the_segment_stays_is_announced(
    api: Api, kafka_bootstrap: str
) -> None:
    # Long ago, so recency scores 1 however many purchases: at_risk from the third on.
    await api.feed(*[purchase("c-tier", f"t{i}", ago(days=400 + i)) for i in range(5)])
    insights = await api.get("/customers/c-tier/insights")
    assert (insights["segment"], insights["loyalty_tier"]) == ("at_risk", "silver")
    before = tier_changes(await insight_events(api, kafka_bootstrap), "c-tier")

    await api.feed(purchase("c-tier", "t5", ago(days=390)))  # the sixth purchase: gold
    insights = await api.get("/customers/c-tier/insights")
    assert (insights["segment"], insights["loyalty_tier"]) == ("at_risk", "gold")
    await recompute(api.analytics)  # judged again, nothing changed: nothing announced
    after = tier_changes(await insight_events(api, kafka_bootstrap), "c-tier")
    assert after[: len(before)] == before
    assert after[len(before) :] == [("at_risk", "at_risk", "silver", "gold")]


async def test_an_announced_change_continues_the_trace_of_the_event_that_caused_it(
    api: Api, kafka_bootstrap: str
) -> None:
    await api.feed(*[purchase("c-traced", f"r{i}", ago(days=400 + i)) for i in range(5)])
    before = len(tier_changes(await insight_events(api, kafka_bootstrap), "c-traced"))
    trace_id = uuid.uuid4().hex
    sixth = new_event(
        purchase("c-traced", "r5", ago(days=390)),  # silver -> gold: announced
        source="/tests",
        extensions={"traceparent": f"00-{trace_id}-{'6' * 16}-01"},
    )
    await api.feed_events([sixth])

    events = await insight_events(api, kafka_bootstrap)
    changes = [
        e for e in events if e["type"] == "crm.customer.segment_changed"
        and e["subject"] == "c-traced"
    ][before:]  # fmt: skip
    assert [change["data"]["loyalty_tier"] for change in changes] == ["gold"]
    assert changes[0]["traceparent"].split("-")[1] == trace_id
