"""The templates API: list, read, edit with validation (422 with a reason), revert to the
shipped template, preview with sample data, and the triggers' fields."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.mongo import Database
from tests.notifications.delivery_app import DeliveryApi, delivery_api

PATH = "/api/v1/templates/purchase_thank_you/email/hr"


@pytest.fixture
async def api(db: Database) -> AsyncIterator[DeliveryApi]:
    async with delivery_api(db) as service:
        yield service


async def test_the_triggers_name_their_fields_and_sample(api: DeliveryApi) -> None:
    response = await api.http.get("/api/v1/triggers", headers=api.agent)
    assert response.status_code == 200
    triggers = {trigger["name"]: trigger for trigger in response.json()}
    assert set(triggers) >= {
        "purchase_thank_you",
        "return_confirmation",
        "complaint_acknowledgement",
        "complaint_progress",
        "complaint_resolved",
        "sla_escalation",
        "churn_alert_owner",
        "retention_offer",
        "birthday_greeting",
        "renewal_reminder",
        "complaint_daily_status",
    }
    renewal = triggers["renewal_reminder"]
    assert {"customer_name", "days_left", "product", "due_date"} <= set(renewal["fields"])
    assert renewal["sample"]["days_left"] == 7


async def test_the_list_shows_shipped_templates_and_custom_ones_in_their_place(
    api: DeliveryApi,
) -> None:
    listed = await api.http.get(
        "/api/v1/templates", params={"trigger": "purchase_thank_you"}, headers=api.agent
    )
    entries = {(t["channel"], t["locale"]): t["source"] for t in listed.json()}
    assert entries[("email", "fa")] == "shipped"
    assert {locale for channel, locale in entries if channel == "email"} == {
        "en", "hr", "cs", "sl", "fa"
    }  # fmt: skip

    saved = await api.http.put(
        PATH,
        json={"subject": "Hvala, {{ customer_name }}", "text": "Narudžba {{ purchase_id }}"},
        headers=api.agent,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["source"] == "custom"
    assert saved.json()["updated_by"] == "tester"
    listed = await api.http.get(
        "/api/v1/templates", params={"channel": "email", "locale": "hr"}, headers=api.agent
    )
    sources = {t["trigger"]: t["source"] for t in listed.json()}
    assert sources["purchase_thank_you"] == "custom"
    assert sources["complaint_resolved"] == "shipped"


async def test_saving_then_deleting_reverts_to_the_shipped_template(api: DeliveryApi) -> None:
    shipped = (await api.http.get(PATH, headers=api.agent)).json()
    assert shipped["source"] == "shipped"
    assert "{{ purchase_id }}" in shipped["subject"]

    await api.http.put(
        PATH, json={"subject": "Hvala!", "text": "Kratko i jasno."}, headers=api.admin
    )
    preview = await api.http.post(f"{PATH}/preview", headers=api.agent)
    assert preview.json()["subject"] == "Hvala!"
    assert preview.json()["source"] == "custom"

    deleted = await api.http.delete(PATH, headers=api.agent)
    assert deleted.status_code == 204
    preview = await api.http.post(f"{PATH}/preview", headers=api.agent)
    assert preview.json()["subject"] == "Hvala na narudžbi P-2026-00042"
    assert preview.json()["source"] == "shipped"
    again = await api.http.delete(PATH, headers=api.agent)
    assert again.status_code == 404


async def test_a_preview_renders_sample_data_in_the_language_after_fallback(
    api: DeliveryApi,
) -> None:
    response = await api.http.post(
        "/api/v1/templates/complaint_acknowledgement/email/fa-IR/preview", headers=api.agent
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["requested_locale"] == "fa-IR"
    assert preview["locale"] == "fa"
    assert preview["direction"] == "rtl"
    assert 'dir="rtl"' in preview["html"]
    assert 'lang="fa"' in preview["html"]
    assert "Ivana Šimić" in preview["text"]


async def test_a_draft_is_previewed_without_being_saved(api: DeliveryApi) -> None:
    response = await api.http.post(
        "/api/v1/templates/renewal_reminder/sms/en/preview",
        json={"text": "{{ product }} ends in {{ days_left }} days"},
        headers=api.agent,
    )
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "Home insurance Plus ends in 7 days"
    assert response.json()["source"] == "draft"
    stored = await api.http.get("/api/v1/templates/renewal_reminder/sms/en", headers=api.agent)
    assert stored.json()["source"] == "shipped"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"subject": "Hi", "text": "{% for %}"}, "does not compile"),
        ({"subject": "Hi {{ customer.name }}", "text": "x"}, "customer"),
        ({"subject": "Hi", "text": "{{ ''.__class__ }}"}, "sample data"),
        ({"text": "no subject"}, "needs subject"),
        ({"subject": "  ", "text": "blank subject"}, "needs subject"),
        ({"subject": "Hi", "text": "x", "extra": 1}, ""),
        ({"subject": "Hi", "text": ""}, ""),
    ],
)
async def test_a_bad_template_is_a_422_that_says_why(
    api: DeliveryApi, body: dict[str, object], reason: str
) -> None:
    response = await api.http.put(PATH, json=body, headers=api.agent)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert reason in response.text
    preview = await api.http.post(f"{PATH}/preview", json=body, headers=api.agent)
    assert preview.status_code == 422


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/templates/purchase_thank_you/email/xx-!!", 422),
        ("/api/v1/templates/purchase_thank_you/email/zz", 422),
        ("/api/v1/templates/purchase_thank_you/fax/en", 422),
        ("/api/v1/templates/no_such_trigger/email/en", 404),
        ("/api/v1/templates/retention_offer/sms/en", 404),
        ("/api/v1/templates/purchase_thank_you/email/de", 404),
    ],
)
async def test_unknown_locales_channels_and_triggers_are_clear_errors(
    api: DeliveryApi, path: str, status: int
) -> None:
    response = await api.http.get(path, headers=api.agent)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_only_staff_edit_templates(api: DeliveryApi) -> None:
    body = {"subject": "Hi", "text": "x"}
    for headers in (api.customer("c-1"), {}):
        response = await api.http.put(PATH, json=body, headers=headers)
        assert response.status_code in (401, 403)
    customer = await api.http.get("/api/v1/templates", headers=api.customer("c-1"))
    assert customer.status_code == 403
