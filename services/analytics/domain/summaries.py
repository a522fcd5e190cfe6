"""Customers: the summary of one customer's facts, how it is stored, and how it is
rebuilt (whole, one kind of fact, or with new facts added)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from services.analytics.domain.facts import ComplaintFact, FeedbackFact, PurchaseFact, ReturnFact
from services.analytics.domain.figures import money

MIN_RHYTHM_PURCHASES = 3  # two intervals at least
MIN_RHYTHM = timedelta(days=1)


@dataclass(frozen=True)
class Summary:
    """What analytics knows of one customer, rebuilt from that customer's facts."""

    purchases: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    spend: Mapping[str, Decimal] = field(default_factory=dict)
    refunds: Mapping[str, Decimal] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    skus: tuple[tuple[str, str, str], ...] = ()  # sku, name, category
    returns: tuple[datetime, ...] = ()
    complaints: tuple[ComplaintFact, ...] = ()
    feedback: tuple[FeedbackFact, ...] = ()

    @property
    def net(self) -> dict[str, Decimal]:
        currencies = sorted(set(self.spend) | set(self.refunds))
        return {
            cur: self.spend.get(cur, Decimal(0)) - self.refunds.get(cur, Decimal(0))
            for cur in currencies
        }

    @property
    def mean_interval(self) -> timedelta | None:
        if self.purchases < 2 or self.first_purchase_at is None or self.last_purchase_at is None:
            return None
        return (self.last_purchase_at - self.first_purchase_at) / (self.purchases - 1)

    @property
    def usual_interval(self) -> timedelta | None:
        """The mean interval when it is a rhythm to be overdue on: at least two intervals
        and at least :data:`MIN_RHYTHM` apart on average; else None."""
        interval = self.mean_interval
        if self.purchases < MIN_RHYTHM_PURCHASES or interval is None or interval < MIN_RHYTHM:
            return None
        return interval

    def to_document(self) -> dict[str, Any]:
        return {
            "purchases": self.purchases,
            "first_purchase_at": self.first_purchase_at,
            "last_purchase_at": self.last_purchase_at,
            "spend": {cur: money(v) for cur, v in self.spend.items()},
            "refunds": {cur: money(v) for cur, v in self.refunds.items()},
            "categories": list(self.categories),
            "skus": [list(item) for item in self.skus],
            "sku_ids": [item[0] for item in self.skus],
            "returns": list(self.returns),
            "complaints": [complaint_document(c) for c in self.complaints],
            "feedback": [{"at": f.at, "csat": f.csat, "nps": f.nps} for f in self.feedback],
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> Summary:
        if not document:
            return cls()
        return cls(
            purchases=document["purchases"],
            first_purchase_at=document["first_purchase_at"],
            last_purchase_at=document["last_purchase_at"],
            spend={cur: Decimal(v) for cur, v in document["spend"].items()},
            refunds={cur: Decimal(v) for cur, v in document["refunds"].items()},
            categories=tuple(document["categories"]),
            skus=tuple((s[0], s[1], s[2]) for s in document["skus"]),
            returns=tuple(document["returns"]),
            complaints=tuple(complaint_from_document(c) for c in document["complaints"]),
            feedback=tuple(
                FeedbackFact(at=f["at"], csat=f["csat"], nps=f["nps"]) for f in document["feedback"]
            ),
        )


def complaint_document(c: ComplaintFact) -> dict[str, Any]:
    return {
        "complaint_id": c.complaint_id,
        "opened_at": c.opened_at,
        "first_response_due_at": c.first_response_due_at,
        "resolution_due_at": c.resolution_due_at,
        "acknowledged_at": c.acknowledged_at,
        "resolved": sorted(c.resolved),
        "reopened": sorted(c.reopened),
        "closed_at": c.closed_at,
        "waited_on_customer": c.waited_on_customer,
        "breaches": sorted(c.breaches),
        "breach_due": {
            clock: due
            for clock, due in (
                ("first_response", c.first_response_breach_due_at),
                ("resolution", c.resolution_breach_due_at),
            )
            if due is not None
        },
    }


def complaint_from_document(d: Mapping[str, Any]) -> ComplaintFact:
    return ComplaintFact(
        complaint_id=d.get("complaint_id") or d["_id"],
        opened_at=d.get("opened_at"),
        first_response_due_at=d.get("first_response_due_at"),
        resolution_due_at=d.get("resolution_due_at"),
        acknowledged_at=d.get("acknowledged_at"),
        resolved=tuple(d.get("resolved") or ()),
        reopened=tuple(d.get("reopened") or ()),
        closed_at=d.get("closed_at"),
        waited_on_customer=bool(d.get("waited_on_customer")),
        breaches=frozenset(d.get("breaches") or ()),
        first_response_breach_due_at=(d.get("breach_due") or {}).get("first_response"),
        resolution_breach_due_at=(d.get("breach_due") or {}).get("resolution"),
    )


def summarise(
    purchases: Iterable[PurchaseFact],
    returns: Iterable[ReturnFact],
    complaints: Iterable[ComplaintFact],
    feedback: Iterable[FeedbackFact],
) -> Summary:
    ordered = sorted(purchases, key=lambda p: (p.at, p.purchase_id))
    spend: dict[str, Decimal] = defaultdict(Decimal)
    skus: dict[str, tuple[str, str, str]] = {}
    for purchase in ordered:
        spend[purchase.currency] += purchase.total
        for sku, name, category, _ in purchase.items:
            skus[sku] = (sku, name, category)  # the latest purchase names it
    refunds: dict[str, Decimal] = defaultdict(Decimal)
    returned = sorted(returns, key=lambda r: (r.at, r.return_id))
    for item in returned:
        refunds[item.currency] += item.refund
    return Summary(
        purchases=len(ordered),
        first_purchase_at=ordered[0].at if ordered else None,
        last_purchase_at=ordered[-1].at if ordered else None,
        spend=dict(sorted(spend.items())),
        refunds=dict(sorted(refunds.items())),
        categories=tuple(sorted({item[2] for item in skus.values()})),
        skus=tuple(skus[sku] for sku in sorted(skus)),
        returns=tuple(r.at for r in returned),
        complaints=tuple(sorted(complaints, key=lambda c: c.complaint_id)),
        feedback=tuple(sorted(feedback, key=lambda f: (f.at, f.csat, f.nps or -1))),
    )


def resummarise(old: Summary, kind: str, facts: Iterable[Any]) -> Summary:
    """``old`` with the part that one kind of fact (a name of :data:`FACT_KINDS`) makes
    rebuilt from all of the customer's facts of that kind: equal to :func:`summarise` of
    every fact when the other parts of ``old`` are up to date."""
    if kind == "purchases":
        new = summarise(facts, (), (), ())
        return replace(
            old,
            purchases=new.purchases,
            first_purchase_at=new.first_purchase_at,
            last_purchase_at=new.last_purchase_at,
            spend=new.spend,
            categories=new.categories,
            skus=new.skus,
        )
    if kind == "returns":
        new = summarise((), facts, (), ())
        return replace(old, refunds=new.refunds, returns=new.returns)
    if kind == "complaints":
        return replace(old, complaints=summarise((), (), facts, ()).complaints)
    if kind == "feedback":
        return replace(old, feedback=summarise((), (), (), facts).feedback)
    raise ValueError(f"no kind of fact {kind!r}")


def with_new_facts(old: Summary, kind: str, facts: Sequence[Any]) -> Summary | None:
    """``old`` (the summary of a customer's facts) with ``facts`` of one kind added, facts
    it does not count yet (a complaint replaces the one with its id): equal to
    :func:`summarise` of every fact. ``None`` when ``old`` cannot tell: a purchase not
    later than the last one counted may change which purchase names a product, so all of
    the customer's purchases are needed then."""
    if not facts:
        return old
    if kind == "purchases":
        last = old.last_purchase_at
        if last is not None and any(purchase.at <= last for purchase in facts):
            return None
        new = summarise(facts, (), (), ())
        skus = {item[0]: item for item in old.skus} | {item[0]: item for item in new.skus}
        return replace(
            old,
            purchases=old.purchases + new.purchases,
            first_purchase_at=old.first_purchase_at or new.first_purchase_at,
            last_purchase_at=new.last_purchase_at,
            spend=_added(old.spend, new.spend),
            categories=tuple(sorted({item[2] for item in skus.values()})),
            skus=tuple(skus[sku] for sku in sorted(skus)),
        )
    if kind == "returns":
        new = summarise((), facts, (), ())
        return replace(
            old,
            refunds=_added(old.refunds, new.refunds),
            returns=tuple(sorted((*old.returns, *new.returns))),
        )
    if kind == "complaints":
        by_id = {c.complaint_id: c for c in old.complaints} | {c.complaint_id: c for c in facts}
        return replace(old, complaints=tuple(by_id[key] for key in sorted(by_id)))
    if kind == "feedback":
        return replace(old, feedback=summarise((), (), (), (*old.feedback, *facts)).feedback)
    raise ValueError(f"no kind of fact {kind!r}")


def _added(old: Mapping[str, Decimal], new: Mapping[str, Decimal]) -> dict[str, Decimal]:
    totals = defaultdict(Decimal, old)
    for currency, amount in new.items():
        totals[currency] += amount
    return dict(sorted(totals.items()))


FACT_KINDS = ("purchases", "returns", "complaints", "feedback")
