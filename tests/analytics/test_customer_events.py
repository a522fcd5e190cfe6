"""Per-customer figures honour erasure and merges (and undone merges); a malformed event
goes to the DLQ with the reason while the worker keeps going."""

from __future__ import annotations

import json
import uuid

from bson import Binary

from services.analytics.handlers.recompute import Recomputer, recompute
from shared.events import new_event
from shared.events.customers import CustomerErased, CustomerMerged, SignInRequested
from shared.events.envelope import KafkaRecord, encode
from shared.events.purchases import PurchaseCompleted
from shared.topics import CUSTOMERS, PURCHASES
from tests.analytics.conftest import (
    Api,
    ago,
    feedback,
    notified,
    opened,
    purchase,
    registered,
)
from tests.kafka_reading import read_topic


async def test_erasure_drops_who_the_customer_was_and_keeps_the_aggregates(api: Api) -> None:
    await api.feed(
        registered("c-gone", "Ana Horvat", ago(hours=3), emails=["ana@example.com"]),
        purchase("c-gone", "g1", ago(hours=2), [("TEA", "tea", "12.00")]),
        opened("c-gone", "kg", ago(hours=2)),
        feedback("c-gone", "kg", 1, 0, ago(hours=1)),
        notified("sent", "c-gone", "ng", ago(hours=1)),
        purchase("c-stays", "s1", ago(hours=2), [("TEA", "tea", "8.00")]),
    )
    await recompute(api.analytics)
    before = await api.get("/kpis")
    assert (await api.get("/customers/c-gone/insights"))["name"] == "Ana Horvat"

    await api.feed(CustomerErased(customer_id="c-gone", erased_at=ago(minutes=30)))

    gone = await api.http.get("/api/v1/customers/c-gone/insights", headers=api.agent)
    assert gone.status_code == 410
    assert await api.get("/kpis") == before  # revenue, complaints, CSAT all still count
    assert (await api.get("/segments"))["total"] == 1
    recent = await api.get("/notifications/recent")
    assert [item["customer_id"] for item in recent["items"]] != ["c-gone"]
    store = api.analytics.store
    for collection in ("purchases", "complaints", "feedback", "notifications"):
        assert await store.db[collection].count_documents({"customer_id": "c-gone"}) == 0
        assert await store.db[collection].count_documents({"named": "c-gone"}) == 0
    kept = await store.customers.find_one({"_id": "c-gone"})
    assert kept is not None
    assert kept["name"] is None
    assert kept["summary"] is None
    assert await store.identities.count_documents({}) == 0  # the e-mail went too
    outbox = api.analytics.outbox.collection
    assert await outbox.count_documents({"key": Binary(b"c-gone")}) == 0
    # A late event about the erased customer is counted anonymously.
    await api.feed(purchase("c-gone", "g2", ago(minutes=10), [("TEA", "tea", "1.00")]))
    assert await store.purchases.count_documents({"customer_id": "c-gone"}) == 0
    assert await store.purchases.count_documents({"named": "c-gone"}) == 0
    assert (await api.get("/kpis"))["purchases"] == before["purchases"] + 1


async def test_a_merge_moves_the_figures_to_the_survivor_and_an_undo_moves_them_back(
    api: Api,
) -> None:
    await api.feed(
        registered("c-keep", "Iva Novak", ago(days=100)),
        purchase("c-keep", "k1", ago(days=30)),
        purchase("c-old", "o1", ago(days=20)),
        purchase("c-old", "o2", ago(days=10)),
        opened("c-old", "ko", ago(days=5)),
    )
    merge = {"customer_id": "c-keep", "source_customer_id": "c-old"}
    await api.feed(CustomerMerged(**merge, merged_at=ago(days=1)))

    survivor = await api.get("/customers/c-keep/insights")
    assert survivor["purchases"]["count"] == 3
    assert survivor["rhythm"]["mean_interval_days"] == 10.0
    assert survivor["complaints"]["open"] == 1
    moved = await api.http.get("/api/v1/customers/c-old/insights", headers=api.agent)
    assert moved.status_code == 404
    assert moved.json()["merged_into"] == "c-keep"
    # What arrives later for the merged-away id counts for the survivor.
    await api.feed(purchase("c-old", "o3", ago(hours=1)))
    assert (await api.get("/customers/c-keep/insights"))["purchases"]["count"] == 4

    await api.feed(CustomerMerged(**merge, merged_at=ago(hours=1), undone=True))
    assert (await api.get("/customers/c-keep/insights"))["purchases"]["count"] == 1
    back = await api.get("/customers/c-old/insights")
    assert back["purchases"]["count"] == 3
    assert back["complaints"]["open"] == 1


async def test_a_purchase_named_by_e_mail_counts_for_the_profile_that_has_it(api: Api) -> None:
    by_email = PurchaseCompleted.model_validate(
        {
            "purchase_id": "m1",
            "customer_email": "Mia@Example.com",
            "items": [
                {"sku": "T", "name": "Tea", "category": "tea", "quantity": 1, "unit_price": "3.00"}
            ],
            "total_amount": "3.00",
            "currency": "EUR",
            "channel": "pos",
            "purchased_at": ago(hours=2),
        }
    )
    await api.feed(by_email)  # before analytics has heard of the profile
    assert (await api.get("/kpis"))["purchases"] == 1
    await api.feed(registered("c-mia", "Mia M", ago(hours=1), emails=["mia@example.com"]))
    assert (await api.get("/customers/c-mia/insights"))["purchases"]["count"] == 1


async def test_a_malformed_event_goes_to_the_dlq_and_the_worker_keeps_going(
    api: Api, kafka_bootstrap: str
) -> None:
    good = encode(new_event(purchase("c-1", "x1", ago(hours=1)), source="/tests"))
    broken = json.loads(good.value)
    broken["data"]["total_amount"] = 12.5  # money as a JSON number
    await api.send_records(
        [(api.topics(PURCHASES), KafkaRecord(good.key, json.dumps(broken).encode(), good.headers))]
    )
    await api.feed(purchase("c-1", "x2", ago(hours=1)))  # behind it, same partition

    records = await read_topic(
        kafka_bootstrap, api.topics.dlq(api.topics(PURCHASES)), until=lambda found: len(found) >= 1
    )
    [record] = records
    headers = dict(record.headers)
    assert b"total_amount" in headers["dlq-reason"]
    assert headers["dlq-consumer"] == b"analytics"
    assert (await api.get("/kpis"))["purchases"] == 1


async def test_only_one_of_two_instances_recomputes_at_a_time(api: Api) -> None:
    first = Recomputer(api.analytics, interval=3600)
    second = Recomputer(api.analytics, interval=3600)
    await api.analytics.store.state.delete_many({"_id": "recompute_lease"})
    assert await first.claim()
    assert not await second.claim()
    assert await first.claim()  # renewing its own lease
    await first.stop()  # hands the lease over at once
    assert await second.claim()
    await second.stop()


async def test_a_sign_in_link_is_read_and_ignored_never_kept_nor_dead_lettered(
    api: Api, kafka_bootstrap: str
) -> None:
    token = uuid.uuid4().hex
    link = SignInRequested(
        customer_id="c-ana", email="ana@example.com", locale="hr",
        sign_in_url=f"https://portal.example.com/sign-in#token={token}",
        requested_at=ago(minutes=1), expires_at=ago(minutes=-14),
    )  # fmt: skip
    await api.feed(registered("c-ana", "Ana Horvat", ago(hours=1), emails=["ana@example.com"]))
    await api.send_records(
        [(api.topics(CUSTOMERS), encode(new_event(link, source="/rapport/profiles")))]
    )
    # Behind it on the same partition: once this is applied, the link was read.
    await api.feed(registered("c-ana", "Ana Horvat", ago(hours=1), emails=["ana@example.com"]))

    assert await read_topic(kafka_bootstrap, api.topics.dlq(api.topics(CUSTOMERS))) == []
    db = api.analytics.store.db
    for name in await db.list_collection_names():
        kept = await db[name].find().to_list()
        assert token not in json.dumps(kept, default=str), name
