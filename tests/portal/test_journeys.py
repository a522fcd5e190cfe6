"""A customer's journeys through the portal, in a real browser against the real services:
signing in with the link from the e-mail (and the clear pages of links that cannot be
used), editing the profile and consents, finding an article in Croatian, opening a support
request and following it to an agent's public reply (never the internal note), the inbox,
and the Persian portal right to left on a phone."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import Browser, Page, expect

from shared.auth import Role
from tests.portal.conftest import (
    PHONE,
    SESSION_KEY,
    WAIT_MS,
    PortalStack,
    assert_labelled,
    no_sideways_scrolling,
    opened_page,
    sign_in,
)
from tests.service_harness import eventually


async def stored_session(page: Page) -> Any:
    return await page.evaluate(f"() => JSON.parse(sessionStorage.getItem('{SESSION_KEY}'))")


async def test_a_customer_signs_in_with_the_emailed_link_and_a_spent_link_says_why(
    stack: PortalStack, browser: Browser
) -> None:
    customer = await stack.new_customer("Ana", family_name="Horvat")
    email = customer["emails"][0]
    async with opened_page(browser, f"{stack.portal}/") as page:
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        await assert_labelled(page)
        await page.get_by_label("E-mail address").fill(email)
        await page.get_by_role("button", name="Send me a sign-in link").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Check your inbox")
        await expect(page.locator("#link-sent")).to_contain_text(f"If {email} belongs")

        mail = await stack.mail_to(email)
        link = next(word for word in mail.text().split() if "/sign-in#token=" in word)
        assert link.startswith(f"{stack.portal}/sign-in#token=")
        await page.goto(link)
        await expect(page.get_by_role("heading", level=1)).to_have_text("My details")
        await expect(page.locator("main")).to_contain_text("Hello, Ana.")
        assert page.url == f"{stack.portal}/me", "the token left the address bar"
        session = await stored_session(page)
        assert session["customer_id"] == customer["id"]
        me = await stack.profiles.get(
            "/me", headers={"Authorization": f"Bearer {session['token']}"}
        )
        assert me == {
            "subject": customer["id"],
            "roles": ["customer"],
            "customer_id": customer["id"],
        }

        await page.reload()  # the token lives in the tab
        await expect(page.get_by_role("heading", level=1)).to_have_text("My details")
        await expect(page.get_by_role("navigation", name="Main")).to_be_visible()

        # The same link again: used up, and the page says so in the API's words too.
        await page.goto(link)
        refused = page.locator("#link-refused")
        await expect(refused).to_have_attribute("data-reason", "used")
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "This sign-in link was already used"
        )
        await expect(page.locator("#api-reason")).to_contain_text("was already used")
        assert "token=" not in page.url

        # A link still unused when the customer signs out stops working.
        await stack.profiles.http.post("/api/v1/portal/sign-in", json={"email": email})
        unused = await stack.link_to(email, seen={link})
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        await expect(page.locator("main")).to_contain_text("You are signed out.")
        await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
        assert await stored_session(page) is None
        await page.goto(unused)
        await expect(refused).to_have_attribute("data-reason", "withdrawn")
        await expect(page.locator("#api-reason")).to_contain_text("withdrawn")

        # A link opened too late.
        await stack.profiles.http.post("/api/v1/portal/sign-in", json={"email": email})
        late = await stack.link_to(email, seen={link, unused})
        sign_in_cases = stack.profiles_app.state.sign_in
        clock = sign_in_cases.clock
        sign_in_cases.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
        try:
            await page.goto(late)
            await expect(refused).to_have_attribute("data-reason", "expired")
        finally:
            sign_in_cases.clock = clock
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "This sign-in link has expired"
        )
        await expect(page.get_by_role("heading", level=2)).to_contain_text(
            ["Get a new sign-in link"]
        )
        await expect(page.get_by_label("E-mail address")).to_be_visible()  # ask again, right there


async def test_the_customer_edits_the_profile_and_consents_and_the_api_has_them(
    stack: PortalStack, browser: Browser
) -> None:
    customer = await stack.new_customer("Ivana", family_name="Kovač")
    async with opened_page(browser, f"{stack.portal}/") as page:
        await sign_in(page, stack, customer["emails"][0])
        await expect(page.locator("#consents")).to_be_visible()
        await expect(page.locator("main")).not_to_contain_text("null")
        await assert_labelled(page)
        await page.get_by_label("Given name").fill("Ivona")
        await page.get_by_label("Phone number 1", exact=True).fill("+385 91 234 5678")
        await page.get_by_label("Street and number").fill("Ilica 1")
        await page.get_by_label("City").fill("Zagreb")
        await page.get_by_label("Country").fill("hr")
        await page.get_by_label("Time zone").fill("Europe/Zagreb")
        await page.get_by_label("Birthday").fill("1990-04-12")
        await page.get_by_label("Language for our messages").select_option("hr")
        await page.get_by_role("button", name="Save changes").click()

        # Saved, and the portal now speaks the customer's new language.
        await expect(page.locator("html")).to_have_attribute("lang", "hr")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Moji podaci")
        await expect(page.locator("main")).to_contain_text("Vaši su podaci spremljeni.")
        await expect(page.get_by_label("Ime", exact=True)).to_have_value("Ivona")
        saved = await stack.profiles.get(f"/customers/{customer['id']}")
        assert saved["given_name"] == "Ivona"
        assert saved["family_name"] == "Kovač"  # untouched
        assert saved["phones"] == ["+385912345678"]
        assert saved["address"]["street"] == "Ilica 1"
        assert saved["address"]["country"] == "HR"
        assert saved["time_zone"] == "Europe/Zagreb"
        assert saved["birthday"] == "1990-04-12"
        assert saved["locale"] == "hr"

        # Consents per channel and purpose, recorded as the customer's own decision.
        marketing = page.locator("#consent-email-marketing")
        await expect(marketing).not_to_be_checked()  # offers only once allowed
        await expect(page.locator("#consent-sms-transactional")).to_be_checked()
        await marketing.check()
        await expect(page.locator("#consent-status")).to_contain_text("uključeno")
        await page.locator("#consent-sms-transactional").uncheck()
        await expect(page.locator("#consent-status")).to_contain_text("isključeno")
        consents = await stack.profiles.get(f"/customers/{customer['id']}/consents")
        decided = {(c["channel"], c["purpose"]): c for c in consents["consents"]}
        assert decided["email", "marketing"]["granted"] is True
        assert decided["email", "marketing"]["source"] == "self-service"
        assert decided["sms", "transactional"]["granted"] is False

        # An agent changed the profile meanwhile: the customer's save does not overwrite it.
        await stack.profiles.call(
            "PATCH", f"/customers/{customer['id']}", json={"family_name": "Kovačić"}
        )
        await page.get_by_label("Kako da vam se obraćamo?").fill("Ivi")
        await page.get_by_role("button", name="Spremi promjene").click()
        await expect(page.get_by_role("alert")).to_contain_text("promijenjeni drugdje")
        kept = await stack.profiles.get(f"/customers/{customer['id']}")
        assert (kept["family_name"], kept["preferred_name"]) == ("Kovačić", None)


async def test_a_croatian_customer_finds_an_article_by_searching_without_diacritics(
    stack: PortalStack, browser: Browser
) -> None:
    bill = await stack.publish_article(
        kind="faq",
        locale="hr",
        title="Kako platiti račun karticom",
        body="Račun platite karticom u **Mojim podacima**:\n\n- odaberite račun\n- potvrdite",
        tags=["plaćanje"],
    )
    await stack.publish_article(
        kind="faq", locale="hr", title="Reklamacija proizvoda", body="Reklamaciju prijavite."
    )
    english = await stack.publish_article(
        kind="faq", locale="en", title="Paying your invoice (racun)", body="Pay by card."
    )
    customer = await stack.new_customer("Marko", locale="hr")
    async with opened_page(browser, f"{stack.portal}/", locale="hr-HR") as page:
        await expect(page.get_by_role("heading", level=1)).to_have_text("Prijava")
        await sign_in(page, stack, customer["emails"][0])
        await page.get_by_role("link", name="Centar za pomoć").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Centar za pomoć")
        await assert_labelled(page)
        await page.get_by_role("searchbox", name="Pretraži centar za pomoć").fill("racun")

        results = page.locator("#help-results > li")
        await expect(results.first).to_have_attribute("data-article", bill["id"])
        await expect(results.first.locator("h3")).to_have_text("Kako platiti račun karticom")
        await expect(results.first).to_contain_text("Česta pitanja")
        await expect(page.locator("#help-summary")).to_contain_text("„racun”")
        await expect(
            page.locator(f'#help-results > li[data-article="{english["id"]}"]')
        ).to_have_count(0)

        await results.first.get_by_role("link").click()
        article = page.locator("#article")
        await expect(article.get_by_role("heading", level=1)).to_have_text(
            "Kako platiti račun karticom"
        )
        await expect(article).to_have_attribute("lang", "hr")
        await expect(article).to_have_attribute("dir", "ltr")
        await expect(article.locator("strong")).to_have_text("Mojim podacima")
        await expect(article.locator("li")).to_have_text(["odaberite račun", "potvrdite"])
        assert page.url == f"{stack.portal}/help/{bill['id']}"


async def test_a_support_request_shows_its_due_times_and_public_replies_never_internal_notes(
    stack: PortalStack, browser: Browser
) -> None:
    parcel = await stack.publish_article(
        kind="faq",
        locale="en",
        title="Where is my parcel? Tracking a late delivery",
        body="Most parcels arrive within three working days.",
    )
    customer = await stack.new_customer("Petra", family_name="Novak")
    order = f"o-{uuid.uuid4().hex[:8]}"
    await stack.profiles.call(
        "POST",
        "/purchases",
        json={
            "purchase_id": order,
            "customer_id": customer["id"],
            "items": [
                {"sku": "KET-1", "name": "Kettle", "category": "kitchen", "quantity": 1,
                 "unit_price": "39.90"}
            ],
            "total_amount": "39.90",
            "currency": "EUR",
            "channel": "web",
        },
    )  # fmt: skip
    async with opened_page(browser, f"{stack.portal}/") as page:
        await sign_in(page, stack, customer["emails"][0])
        await page.get_by_role("link", name="Support").click()
        await expect(page.locator("main")).to_contain_text("You have no requests yet.")
        await page.get_by_role("link", name="Open a new request").click()
        await page.get_by_label("What is it about?").select_option("delivery")
        await page.get_by_label("Subject").fill("Parcel not here")
        await page.get_by_label("What happened?").press_sequentially("My parcel delivery is late")

        # Matching help articles while typing; one opens without leaving the form.
        suggestion = page.locator(f'#suggestion-list li[data-article="{parcel["id"]}"] button')
        await expect(suggestion).to_have_text(parcel["title"])
        await suggestion.click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text("Most parcels arrive within three working days.")
        await dialog.get_by_role("button", name="Close").click()
        await expect(dialog).to_be_hidden()
        await expect(page.get_by_label("What happened?")).to_have_value(
            "My parcel delivery is late"
        )

        await page.get_by_label("Which purchase is it about? (optional)").select_option(order)
        await assert_labelled(page)
        await page.get_by_role("button", name="Send request").click()

        # The answer says when to expect the first reply and the resolution.
        await expect(page.get_by_role("heading", level=1)).to_have_text("Parcel not here")
        await expect(page.locator("main")).to_contain_text("We have your request.")
        complaint_id = page.url.rsplit("/", 1)[-1]
        opened = await stack.complaints.get(f"/complaints/{complaint_id}")
        assert (opened["customer_id"], opened["channel"]) == (customer["id"], "web")
        assert (opened["category"], opened["related_purchase_id"]) == ("delivery", order)
        assert opened["description"] == "My parcel delivery is late"
        first_due, resolution_due = opened["first_response_due_at"], opened["resolution_due_at"]
        assert first_due
        assert resolution_due
        await expect(page.locator("#first-reply-due")).to_have_attribute("datetime", first_due)
        await expect(page.locator("#resolution-due")).to_have_attribute("datetime", resolution_due)
        await expect(page.locator(f'#promise time[datetime="{first_due}"]')).to_have_count(1)
        await expect(page.locator("#request-purchase")).to_have_text(order)

        # An agent answers (and notes something internal): the reply appears by itself.
        path = f"/complaints/{complaint_id}/comments"
        note = "Internal: the courier lost it, do not promise a date"
        await stack.complaints.call("POST", path, json={"text": note, "visibility": "internal"})
        reply = "Sorry for the wait! Your parcel left our depot this morning."
        await stack.complaints.call("POST", path, json={"text": reply, "visibility": "public"})
        await expect(page.locator("#conversation .from-staff")).to_contain_text(reply)
        await expect(page.locator("#conversation .from-staff")).to_contain_text("Customer service")
        await expect(page.locator("main")).not_to_contain_text("courier lost it")
        assert note not in await page.content()

        await page.get_by_label("Your reply").fill("Thank you, I will wait.")
        await page.get_by_role("button", name="Send reply").click()
        await expect(page.locator("#conversation .from-customer")).to_contain_text("Thank you")
        comments = (await stack.complaints.get(f"/complaints/{complaint_id}"))["comments"]
        mine = [c for c in comments if c["by_customer"]]
        assert [(c["text"], c["visibility"]) for c in mine] == [
            ("Thank you, I will wait.", "public")
        ]

        await page.get_by_role("link", name="Back to your requests").click()
        listed = page.locator(f'#requests li[data-complaint="{complaint_id}"]')
        await expect(listed).to_contain_text("Parcel not here")
        await expect(listed.locator("[data-status]")).to_have_text("Received")

        # The in-app notifications of all this (acknowledgement, reply) in the inbox.
        inbox = f"/customers/{customer['id']}/inbox"

        async def delivered() -> bool:
            return bool((await stack.notifications.get(inbox))["unread_count"] >= 1)

        await eventually(delivered, timeout=WAIT_MS / 1000, message="no in-app message came")
        await page.get_by_role("link", name="Inbox").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Inbox")
        unread = page.locator("#messages li.unread")
        await expect(unread.first).to_be_visible()
        before = await unread.count()
        first_id = await unread.first.get_attribute("data-message")
        await unread.first.get_by_role("button", name=re.compile(r"^Mark .* as read$")).click()
        await expect(unread).to_have_count(before - 1)
        messages = {m["id"]: m for m in (await stack.notifications.get(inbox))["items"]}
        assert messages[first_id]["read_at"] is not None


async def test_the_persian_portal_reads_right_to_left_on_a_phone(
    stack: PortalStack, browser: Browser
) -> None:
    article = await stack.publish_article(
        kind="faq",
        locale="fa",
        title="چگونه سفارش خود را پیگیری کنیم",
        body="برای پیگیری سفارش به بخش پشتیبانی بروید.",
    )
    customer = await stack.new_customer("Sara", locale="fa")
    async with opened_page(browser, f"{stack.portal}/", locale="fa-IR", viewport=PHONE) as page:
        root = page.locator("html")
        await expect(root).to_have_attribute("dir", "rtl")
        await expect(root).to_have_attribute("lang", "fa")
        await expect(page.get_by_role("heading", level=1)).to_have_text("ورود")
        await no_sideways_scrolling(page)
        # Mirrored: the brand sits at the right edge, the language menu at the left.
        brand = await page.locator(".brand").bounding_box()
        language = await page.locator("#language").bounding_box()
        assert brand
        assert language
        assert brand["x"] + brand["width"] > PHONE["width"] - 40
        assert language["x"] < brand["x"]

        await sign_in(page, stack, customer["emails"][0])
        await expect(page.get_by_role("heading", level=1)).to_have_text("مشخصات من")
        await expect(root).to_have_attribute("dir", "rtl")
        await no_sideways_scrolling(page)
        label = await page.locator("label[for=given_name]").bounding_box()
        given = await page.locator("#given_name").bounding_box()
        assert label
        assert given
        assert label["x"] + label["width"] > given["x"] + given["width"] - 2  # flush right

        # The community asks for the member's tier benefits in Persian.
        async with page.expect_request(lambda r: "/community/members/me" in r.url) as asked:
            await page.goto(f"{stack.portal}/community")
        assert (await asked.value).url.endswith("/community/members/me?locale=fa")
        await expect(page.locator("#member-card")).to_be_visible()

        await page.goto(f"{stack.portal}/help")
        await page.locator("#help-q").fill("سفارش")
        first = page.locator("#help-results > li").first
        await expect(first).to_have_attribute("data-article", article["id"])
        await first.get_by_role("link").click()
        shown = page.locator("#article")
        await expect(shown).to_have_attribute("dir", "rtl")
        await expect(shown.get_by_role("heading", level=1)).to_have_text(article["title"])
        await no_sideways_scrolling(page)

        # Switching to English lays the portal out left to right; the article stays rtl.
        await page.locator("#language").select_option("en")
        await expect(root).to_have_attribute("dir", "ltr")
        await expect(page.get_by_role("link", name="Back to the help centre")).to_be_visible()
        await expect(shown).to_have_attribute("dir", "rtl")


async def test_the_page_calls_the_other_services_across_origins_with_cors(
    stack: PortalStack,
) -> None:
    portal_origin = stack.urls["profiles"]
    preflight = await stack.complaints.http.options(
        "/api/v1/complaints",
        headers={
            "Origin": portal_origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == portal_origin
    assert "access-control-allow-credentials" not in preflight.headers
    customer = stack.tokens.mint("c-1", {Role.CUSTOMER}, customer_id="c-1")
    inbox = await stack.notifications.http.get(
        "/api/v1/customers/c-1/inbox",
        headers={"Origin": portal_origin, "Authorization": f"Bearer {customer}"},
    )
    assert inbox.status_code == 200
    assert inbox.headers["access-control-allow-origin"] == portal_origin
    # A refusal is readable by the page too (it says why).
    refused = await stack.complaints.http.get(
        "/api/v1/complaints", headers={"Origin": portal_origin}
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == portal_origin

    elsewhere = await stack.complaints.http.options(
        "/api/v1/complaints",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in elsewhere.headers
