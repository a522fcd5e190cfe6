"""Next best offer: categories bought by customers who bought the same categories."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from services.analytics.domain.summaries import Summary


def next_best_offers(
    own: Summary, peers: Iterable[Summary], limit: int = 3
) -> list[dict[str, Any]]:
    """Categories the customer has not bought that customers who bought the same
    categories did, ranked by how many such customers there are (the evidence)."""
    mine = set(own.categories)
    if not mine:
        return []
    together: dict[str, Counter[str]] = defaultdict(Counter)
    buyers: Counter[str] = Counter()
    products: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for peer in peers:
        theirs = set(peer.categories)
        shared = mine & theirs
        if not shared:
            continue
        for category in theirs - mine:
            buyers[category] += 1
            for bought in shared:
                together[category][bought] += 1
        for sku, name, category in peer.skus:
            if category not in mine:
                products[category][(sku, name)] += 1
    ranked = sorted(buyers, key=lambda c: (-buyers[c], c))[:limit]
    offers = []
    for category in ranked:
        top = sorted(products[category].items(), key=lambda kv: (-kv[1], kv[0]))
        offers.append(
            {
                "category": category,
                "customers": buyers[category],
                "evidence": [
                    {"bought": bought, "customers_who_bought_both": count}
                    for bought, count in sorted(
                        together[category].items(), key=lambda kv: (-kv[1], kv[0])
                    )
                ],
                "product": (
                    {"sku": top[0][0][0], "name": top[0][0][1], "customers": top[0][1]}
                    if top
                    else None
                ),
            }
        )
    return offers
