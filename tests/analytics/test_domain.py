"""The pure rules, on small populations worked out by hand: percentiles, RFM quintiles,
segments, loyalty tiers, churn risk and next best offers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.analytics.domain.facts import (
    ComplaintFact,
    FeedbackFact,
    PurchaseFact,
    ReturnFact,
    Settled,
    sla_met_pct,
)
from services.analytics.domain.figures import nearest_rank
from services.analytics.domain.insights import churn, evaluate
from services.analytics.domain.insights import rhythm as rhythm_of
from services.analytics.domain.offers import next_best_offers
from services.analytics.domain.segments import Population, loyalty_tier, rfm
from services.analytics.domain.summaries import (
    FACT_KINDS,
    Summary,
    complaint_document,
    complaint_from_document,
    resummarise,
    summarise,
    with_new_facts,
)
from shared.events.insights import RiskLevel

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def buyer(*ages: float, amount: str = "100.00", categories: tuple[str, ...] = ("tea",)) -> Summary:
    purchases = [
        PurchaseFact(
            purchase_id=f"p{index}",
            at=days_ago(age),
            currency="EUR",
            total=Decimal(amount),
            items=tuple((f"SKU-{c}", c, c, 1) for c in categories),
        )
        for index, age in enumerate(ages)
    ]
    return summarise(purchases, [], [], [])


def test_nearest_rank_percentiles() -> None:
    values = [14400.0, 64800.0, 97200.0]
    assert nearest_rank(values, 50) == 64800.0  # rank ceil(1.5) = 2
    assert nearest_rank(values, 90) == 97200.0  # rank ceil(2.7) = 3
    assert nearest_rank([5.0], 90) == 5.0
    assert nearest_rank([], 50) is None
    assert nearest_rank([float(v) for v in range(1, 11)], 90) == 9.0


def test_rfm_quintiles_segments_and_tiers_of_a_population_worked_out_by_hand() -> None:
    ana = buyer(1, 11, 21, 31, 41, 51)  # 6 purchases, 600.00
    bo = buyer(5, 15, 25)  # 300.00
    cira = buyer(2, amount="20.00")
    dan = buyer(200, 210, 220, amount="30.00")  # 90.00
    eva = buyer(300, amount="10.00")
    population = Population.of([ana, bo, cira, dan, eva, Summary()])
    # Five buyers: cut point k is the k-th smallest value.
    assert population.size == 5
    assert population.frequency == (1, 1, 3, 3)
    assert population.monetary["EUR"] == tuple(Decimal(v) for v in ("10", "20", "90", "300"))

    def judged(summary: Summary) -> tuple[int, int, int, str, str]:
        insight = evaluate(summary, population, days_ago(400), NOW)
        assert insight.rfm is not None
        scores = insight.rfm
        return (
            scores.recency,
            scores.frequency,
            scores.monetary,
            insight.segment.value,
            insight.loyalty_tier.value,
        )

    assert judged(ana) == (5, 5, 5, "champions", "gold")
    assert judged(bo) == (3, 3, 4, "loyal", "silver")
    assert judged(cira) == (4, 1, 2, "new", "bronze")  # one purchase, two days ago
    assert judged(dan) == (2, 3, 3, "at_risk", "silver")
    assert judged(eva) == (1, 1, 1, "lost", "bronze")
    fresh = evaluate(Summary(), population, days_ago(1), NOW)
    assert (fresh.rfm, fresh.segment.value) == (None, "new")
    dormant = evaluate(Summary(), population, days_ago(90), NOW)
    assert dormant.segment.value == "hibernating"
    assert loyalty_tier(buyer(*range(12))).value == "platinum"


def test_monetary_is_ranked_within_each_currency_and_net_of_refunds() -> None:
    euros = summarise(
        [PurchaseFact("p1", days_ago(3), "EUR", Decimal("50.00"))],
        [ReturnFact("r1", days_ago(2), "EUR", Decimal("45.00"))],
        [],
        [],
    )
    assert euros.net == {"EUR": Decimal("5.00")}
    dollars = summarise([PurchaseFact("p2", days_ago(3), "USD", Decimal("1"))], [], [], [])
    others = [buyer(3, amount="10.00"), buyer(4, amount="10.00"), buyer(5, amount="5.00")]
    population = Population.of([euros, dollars, *others])
    # EUR nets 5.00, 5.00, 10.00, 10.00 are the cut points; a lone USD buyer scores 1.
    assert population.monetary["EUR"] == tuple(
        Decimal(v) for v in ("5.00", "5.00", "10.00", "10.00")
    )
    assert population.size == 5
    assert rfm(euros, population, NOW).monetary == 1  # type: ignore[union-attr]
    assert rfm(others[0], population, NOW).monetary == 3  # type: ignore[union-attr]
    assert rfm(dollars, population, NOW).monetary == 1  # type: ignore[union-attr]


def test_too_small_a_population_scores_recency_and_frequency_against_fixed_thresholds() -> None:
    # A fresh start: nobody judged yet, or fewer buyers than quintiles can tell apart.
    for population in (Population(), Population.of([buyer(1), buyer(2), buyer(3), buyer(4)])):

        def judged(summary: Summary, population: Population = population) -> tuple[Any, ...]:
            insight = evaluate(summary, population, days_ago(400), NOW)
            assert insight.rfm is not None
            scores = insight.rfm
            return scores.recency, scores.frequency, scores.monetary, insight.segment.value

        assert judged(buyer(1, 11, 21)) == (5, 3, 3, "loyal")  # not "lost" for want of peers
        assert judged(buyer(2, 12)) == (5, 2, 3, "potential")
        assert judged(buyer(3)) == (5, 1, 3, "new")
        assert judged(buyer(45, 50, 55, 60, 65, 70)) == (4, 4, 3, "loyal")
        assert judged(buyer(100, 110, 120)) == (2, 3, 3, "at_risk")
        assert judged(buyer(150)) == (2, 1, 3, "hibernating")
        assert judged(buyer(200, 210)) == (1, 2, 3, "lost")


def test_overdue_needs_a_rhythm_of_at_least_two_intervals_a_day_apart_on_average() -> None:
    backfilled = buyer(20, 20, 20)  # three purchases at the same moment: no rhythm
    close = buyer(20, 20.1, 20.2)  # every 2.4 hours: no rhythm to be overdue on
    once_again = buyer(40, 20)  # one interval only
    for summary in (backfilled, close, once_again):
        assert churn(summary, NOW).reasons == ()
        rhythm = rhythm_of(summary, NOW)
        assert (rhythm["next_purchase_expected_at"], rhythm["days_overdue"]) == (None, None)
        assert rhythm["days_since_last_purchase"] == 20.0
    assert rhythm_of(backfilled, NOW)["mean_interval_days"] == 0.0
    daily = churn(buyer(5, 4, 3), NOW)  # every day, nothing for 3 days: overdue
    assert daily.reasons == ("overdue: 3.0 days since the last purchase, usually every 1.0 days",)


def test_churn_adds_each_warning_sign_with_its_reason() -> None:
    steady = buyer(40, 30, 20)  # every 10 days, last 20 days ago: overdue (>= 15)
    calm = churn(buyer(25, 15, 5), NOW)
    assert (calm.level, calm.score, calm.reasons) == (RiskLevel.LOW, 0.0, ())
    overdue = churn(steady, NOW)
    assert (overdue.level, overdue.score) == (RiskLevel.MEDIUM, 0.35)
    assert overdue.reasons == (
        "overdue: 20.0 days since the last purchase, usually every 10.0 days",
    )
    complaint = ComplaintFact("k1", opened_at=days_ago(2), breaches=frozenset({"resolution"}))
    unhappy = Summary(
        **{
            **steady.__dict__,
            "complaints": (complaint,),
            "feedback": (FeedbackFact(days_ago(1), csat=2, nps=3),),
            "returns": (days_ago(3),),
        }
    )
    risk = churn(unhappy, NOW)
    # 35 overdue + 25 unresolved + 15 SLA + 20 low CSAT + 10 returns = 105, capped at 1
    assert (risk.level, risk.score) == (RiskLevel.HIGH, 1.0)
    assert [reason.split(":")[0] for reason in risk.reasons] == [
        "overdue",
        "unresolved complaint",
        "SLA breached",
        "low satisfaction",
        "returns",
    ]


def test_a_resolved_complaint_is_open_again_once_reopened() -> None:
    resolved = ComplaintFact("k", days_ago(5), resolved=(days_ago(4),))
    assert not resolved.is_open
    reopened = ComplaintFact("k", days_ago(5), resolved=(days_ago(4),), reopened=(days_ago(3),))
    assert reopened.is_open
    closed = ComplaintFact("k", days_ago(5), closed_at=days_ago(1))
    assert not closed.is_open


def test_next_best_offer_ranks_what_similar_customers_also_bought() -> None:
    me = buyer(3, categories=("tea", "cups"))
    peers = [
        buyer(1, categories=("tea", "kettles")),
        buyer(1, categories=("tea", "cups", "kettles")),
        buyer(1, categories=("cups", "honey")),
        buyer(1, categories=("coffee", "filters")),  # shares nothing: no evidence
    ]
    offers = next_best_offers(me, peers)
    assert [offer["category"] for offer in offers] == ["kettles", "honey"]
    kettles = offers[0]
    assert kettles["customers"] == 2
    assert kettles["evidence"] == [
        {"bought": "tea", "customers_who_bought_both": 2},
        {"bought": "cups", "customers_who_bought_both": 1},
    ]
    assert kettles["product"] == {"sku": "SKU-kettles", "name": "kettles", "customers": 2}


def test_rebuilding_one_kind_of_fact_gives_the_summary_of_every_fact() -> None:
    purchases = [
        PurchaseFact("p1", days_ago(9), "EUR", Decimal("10.00"), (("S1", "Tea", "tea", 1),)),
        PurchaseFact("p2", days_ago(3), "USD", Decimal("4.50"), (("S2", "Cup", "cups", 2),)),
    ]
    returns = [ReturnFact("r1", days_ago(2), "EUR", Decimal("10.00"))]
    complaints = [ComplaintFact("k1", days_ago(4), resolved=(days_ago(1),))]
    feedback = [FeedbackFact(days_ago(1), csat=4, nps=8)]
    everything = summarise(purchases, returns, complaints, feedback)
    facts: dict[str, list[Any]] = {
        "purchases": purchases,
        "returns": returns,
        "complaints": complaints,
        "feedback": feedback,
    }
    for kind in FACT_KINDS:
        without = summarise(*[[] if k == kind else facts[k] for k in FACT_KINDS])
        assert without != everything
        assert resummarise(without, kind, facts[kind]) == everything


def test_an_sla_clock_is_settled_once_met_in_time_or_missed_at_its_due_time() -> None:
    opened, due = days_ago(3), days_ago(2)
    in_time = ComplaintFact("k", opened, first_response_due_at=due, acknowledged_at=days_ago(2.5))
    assert in_time.first_response_settled() == Settled(days_ago(2.5), met=True)
    waiting = ComplaintFact("k", opened, first_response_due_at=due)
    assert waiting.first_response_settled() == Settled(due, met=False)
    late = ComplaintFact("k", opened, first_response_due_at=due, acknowledged_at=days_ago(1))
    assert late.first_response_settled() == Settled(due, met=False)  # not moved
    running = ComplaintFact("k", opened, first_response_due_at=NOW + timedelta(hours=1))
    start, end = NOW - timedelta(days=1), NOW
    assert sla_met_pct([running.first_response_settled()], start, end) is None
    # Waiting on the customer moves the resolution deadline: only a breach tells a miss,
    # at the due time the complaints service announced.
    paused = ComplaintFact("k", opened, resolution_due_at=due, waited_on_customer=True)
    assert paused.resolution_settled() is None
    breached = ComplaintFact(
        "k",
        opened,
        resolution_due_at=due,
        waited_on_customer=True,
        breaches=frozenset({"resolution"}),
        resolution_breach_due_at=days_ago(1),
    )
    assert breached.resolution_settled() == Settled(days_ago(1), met=False)
    assert complaint_from_document(complaint_document(breached)) == breached


def test_adding_new_facts_to_a_stored_summary_gives_the_summary_of_every_fact() -> None:
    tea, cup = ("S1", "Tea", "tea", 1), ("S2", "Cup", "cups", 2)
    old: dict[str, list[Any]] = {
        "purchases": [
            PurchaseFact("p1", days_ago(9), "EUR", Decimal("10.00"), (tea,)),
            PurchaseFact("p2", days_ago(8), "USD", Decimal("4.5"), (cup,)),
        ],
        "returns": [ReturnFact("r1", days_ago(2), "EUR", Decimal("10.00"))],
        "complaints": [ComplaintFact("k1", days_ago(4)), ComplaintFact("k2", days_ago(3))],
        "feedback": [FeedbackFact(days_ago(1), csat=4, nps=8)],
    }
    new: dict[str, list[Any]] = {
        "purchases": [  # later than every purchase counted; the cup renamed, in euros now
            PurchaseFact("p4", days_ago(1), "EUR", Decimal("7"), (("S2", "Mug", "mugs", 1),)),
            PurchaseFact("p3", days_ago(2), "EUR", Decimal("0.25"), (tea,)),
        ],
        "returns": [ReturnFact("r0", days_ago(5), "USD", Decimal("4.50"))],
        "complaints": [  # k1 resolved since, k3 new
            ComplaintFact("k1", days_ago(4), resolved=(days_ago(1),)),
            ComplaintFact("k3", days_ago(1)),
        ],
        "feedback": [FeedbackFact(days_ago(3), csat=1, nps=None)],
    }
    stored = Summary.from_document(summarise(*old.values()).to_document())
    for kind in FACT_KINDS:
        everything = {k: old[k] + new[k] if k == kind else old[k] for k in FACT_KINDS}
        if kind == "complaints":
            everything[kind] = [old[kind][1], *new[kind]]
        expected = summarise(*everything.values())
        added = with_new_facts(stored, kind, new[kind])
        assert added is not None
        assert added.to_document() == expected.to_document()
        assert added == expected

    # A purchase dated before the last one counted may change which one names a product:
    # the summary cannot tell, all purchases are needed.
    earlier = PurchaseFact("p0", days_ago(8), "EUR", Decimal("1.00"), (cup,))
    assert with_new_facts(stored, "purchases", [earlier]) is None
    assert with_new_facts(Summary(), "purchases", [earlier]) == summarise([earlier], [], [], [])
