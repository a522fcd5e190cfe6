"""Orders and subscriptions in the portal, in a real browser against the real services: a
customer extends a subscription and notifications move its renewal reminders to the new
date; orders an add-on that reaches the ledger; starts a return of it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from playwright.async_api import Browser, expect

from services.profiles.contracts_domain import add_months
from tests.portal.conftest import PortalStack, assert_labelled, opened_page, sign_in
from tests.service_harness import eventually

RULE = "renewal_reminder"


async def reminders(stack: PortalStack, customer_id: str) -> list[dict[str, Any]]:
    """The customer's active renewal reminders, as notifications has scheduled them."""
    found: list[dict[str, Any]] = await stack.notifications.get(
        f"/customers/{customer_id}/schedules", rule=RULE
    )
    return [schedule for schedule in found if schedule["status"] == "active"]


async def test_extend_a_subscription_and_see_the_renewal_reminder_rescheduled(
    stack: PortalStack, browser: Browser
) -> None:
    customer = await stack.new_customer("Lucija", time_zone="Europe/Zagreb")
    today = datetime.now(UTC).date()
    renews = today + timedelta(days=45)
    contract = await stack.profiles.call(
        "POST",
        f"/customers/{customer['id']}/contracts",
        json={
            "product": "Streaming Plus",
            "start_date": (today - timedelta(days=320)).isoformat(),
            "renews_at": renews.isoformat(),
            "auto_renew": True,
        },
    )

    async def scheduled_for(day: date) -> bool:
        found = await reminders(stack, customer["id"])
        # 30, 7 and 1 days before (the rule's default), all still ahead.
        return len(found) == 3 and all(
            s["params"]["contract"]["ends_on"] == day.isoformat() for s in found
        )

    await eventually(lambda: scheduled_for(renews), message="no renewal reminders scheduled")
    before = {s["id"]: s["due_at"] for s in await reminders(stack, customer["id"])}

    async with opened_page(browser, f"{stack.portal}/") as page:
        await sign_in(page, stack, customer["emails"][0])
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Orders").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Orders and subscriptions")
        await assert_labelled(page)
        card = page.locator(f"[data-contract='{contract['contract_id']}']")
        await expect(card.locator(".renews-at")).to_have_attribute("datetime", renews.isoformat())

        await card.get_by_label("Extend by").select_option("3")
        await card.get_by_role("button", name="Extend Streaming Plus").click()
        extended = add_months(renews, 3)
        await expect(card.locator(".renews-at")).to_have_attribute("datetime", extended.isoformat())
        await expect(card).to_contain_text("Streaming Plus now runs until")

        saved = await stack.profiles.get(
            f"/customers/{customer['id']}/contracts/{contract['contract_id']}"
        )
        assert saved["renews_at"] == extended.isoformat()
        await eventually(
            lambda: scheduled_for(extended), message="the renewal reminders did not move"
        )
        moved = {s["id"]: s["due_at"] for s in await reminders(stack, customer["id"])}
        assert moved.keys() == before.keys()  # the same reminders, rescheduled
        assert all(moved[key] > before[key] for key in before)

        # An add-on from the catalogue, then a return of one of them.
        await page.get_by_label("Add-on", exact=True).select_option("addon-priority-support")
        await page.get_by_label("Quantity").fill("2")
        await expect(page.locator("#addon-total")).to_contain_text("19.80")
        await page.get_by_role("button", name="Order", exact=True).click()
        await expect(page.get_by_role("status").filter(has_text="is ordered")).to_be_visible()
        purchase = page.locator(".ledger-purchase").first
        await expect(purchase).to_contain_text("ordered here")
        ledger = await stack.profiles.get(f"/customers/{customer['id']}/ledger")
        order = ledger["items"][0]
        assert (order["channel"], order["amount"]) == ("portal", "19.80")

        await purchase.get_by_role("button", name="Return Priority support").click()
        await purchase.get_by_label("How many to return").select_option("1")
        await expect(purchase).to_contain_text("You get back")
        await purchase.get_by_role("button", name="Start the return").click()
        await expect(page.get_by_role("status").filter(has_text="is recorded")).to_be_visible()
        await expect(page.locator(".ledger-return")).to_have_count(1)
        returned = await stack.profiles.get(f"/customers/{customer['id']}/ledger")
        bought = next(e for e in returned["items"] if e["kind"] == "purchase")
        assert (bought["refunded"], bought["returned_quantities"]) == (
            "9.90",
            {"addon-priority-support": 1},
        )
