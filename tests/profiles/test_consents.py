"""Consents per channel and purpose: current decisions, their history, and the events."""

from __future__ import annotations

import json
from typing import Any

from shared.topics import CUSTOMERS, TopicNames
from tests.kafka_reading import Records, read_topic
from tests.profiles.conftest import Api
from tests.profiles.test_interactions import new_customer
from tests.support.api import PROBLEM


def consent_events(records: Records) -> list[dict[str, Any]]:
    events = [json.loads(record.value) for record in records]
    return [event for event in events if event["type"] == "crm.customer.consent_changed"]


async def put(
    api: Api, customer_id: str, path: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    response = await api.http.put(
        f"/api/v1/customers/{customer_id}/consents/{path}", json=body, headers=headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_a_change_publishes_one_event_and_repeating_it_publishes_none(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    customer = await new_customer(api)
    cid = customer["id"]

    granted = await put(
        api, cid, "email/marketing", {"granted": True, "source": "web form"}, api.agent
    )
    again = await put(api, cid, "email/marketing", {"granted": True, "source": "call"}, api.agent)
    withdrawn = await put(
        api, cid, "email/marketing", {"granted": False, "source": "unsubscribe link"}, api.agent
    )

    assert granted["changed"] is True
    assert granted["consent"]["granted"] is True
    assert granted["consent"]["source"] == "web form"
    assert again == {**granted, "changed": False}  # the first decision stands, untouched
    assert withdrawn["changed"] is True
    records = await read_topic(
        kafka_bootstrap,
        topics(CUSTOMERS),
        until=lambda records: any(not e["data"]["granted"] for e in consent_events(records)),
    )
    # Events leave in the order they were committed: a second one would be before this.
    events = consent_events(records)
    assert [(e["data"]["granted"], e["data"]["source"]) for e in events] == [
        (True, "web form"),
        (False, "unsubscribe link"),
    ]
    assert events[0]["subject"] == cid
    assert events[0]["data"]["channel"] == "email"
    assert events[0]["data"]["purpose"] == "marketing"

    entries = (
        await api.http.get(
            f"/api/v1/customers/{cid}/timeline", params={"kind": "consent"}, headers=api.agent
        )
    ).json()["items"]
    assert [entry["summary"] for entry in entries] == [
        "marketing e-mail consent withdrawn (unsubscribe link)",
        "marketing e-mail consent granted (web form)",
    ]
    assert [entry["id"] for entry in entries] == [events[1]["id"], events[0]["id"]]


async def test_the_overview_shows_every_channel_and_purpose_and_the_history(api: Api) -> None:
    customer = await new_customer(api)
    cid = customer["id"]
    await put(api, cid, "sms/transactional", {"granted": True, "source": "checkout"}, api.agent)
    await put(api, cid, "in_app/marketing", {"granted": False, "source": "app settings"}, api.agent)
    await put(api, cid, "sms/transactional", {"granted": False, "source": "call"}, api.agent)

    response = await api.http.get(f"/api/v1/customers/{cid}/consents", headers=api.agent)

    assert response.status_code == 200
    overview = response.json()
    current = {
        (c["channel"], c["purpose"]): (c["granted"], c["source"]) for c in overview["consents"]
    }
    assert len(current) == 8
    assert current[("sms", "transactional")] == (False, "call")
    assert current[("in_app", "marketing")] == (False, "app settings")
    assert current[("email", "marketing")] == (None, None)  # nobody decided yet
    assert [(h["channel"], h["granted"], h["source"]) for h in overview["history"]] == [
        ("sms", False, "call"),
        ("in_app", False, "app settings"),
        ("sms", True, "checkout"),
    ]
    assert overview["history"][0]["changed_by"] == "tester"


async def test_a_customer_decides_for_itself_only_and_staff_must_name_the_source(
    api: Api,
) -> None:
    mine = await new_customer(api)
    other = await new_customer(api, emails=["eva@example.si"], phones=[])
    me = api.customer(mine["id"])

    decided = await put(api, mine["id"], "email/marketing", {"granted": True, "source": "x"}, me)
    assert decided["consent"]["source"] == "self-service"
    own = await api.http.get(f"/api/v1/customers/{mine['id']}/consents", headers=me)
    assert own.status_code == 200
    assert own.json()["history"][0]["source"] == "self-service"

    for response in (
        await api.http.get(f"/api/v1/customers/{other['id']}/consents", headers=me),
        await api.http.put(
            f"/api/v1/customers/{other['id']}/consents/email/marketing",
            json={"granted": True},
            headers=me,
        ),
    ):
        assert response.status_code == 403
        assert response.headers["content-type"] == PROBLEM

    url = f"/api/v1/customers/{mine['id']}/consents"
    no_source = await api.http.put(
        f"{url}/sms/marketing", json={"granted": True}, headers=api.agent
    )
    assert no_source.status_code == 422
    assert "source" in no_source.json()["detail"]
    for path in ("fax/marketing", "email/spam"):
        response = await api.http.put(
            f"{url}/{path}", json={"granted": True, "source": "x"}, headers=api.agent
        )
        assert response.status_code == 422, path
    unknown = await api.http.get("/api/v1/customers/cus_nobody/consents", headers=api.agent)
    assert unknown.status_code == 404
