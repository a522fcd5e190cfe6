"""The portal's self-service beyond the first slice, in a real browser against the real
services: the community (a question another customer answers and the asker accepts, with
reputation beside the nickname), rating a resolved request through notifications'
feedback link (opened signed out: sign-in leads back to it) and reopening it, message
preferences, the GDPR export and erasure."""

from __future__ import annotations

import json
import re
import uuid

from playwright.async_api import Browser, expect

from shared.auth import Role
from tests.portal.conftest import PortalStack, assert_labelled, opened_page, sign_in

COMMUNITY = "/community"


async def test_a_question_another_customer_answers_is_accepted_and_earns_reputation(
    stack: PortalStack, browser: Browser
) -> None:
    asker = await stack.new_customer("Lucija")
    helper = await stack.new_customer("Tomislav")
    helpers = stack.complaints.customer(helper["id"])
    nickname = f"Lucy {uuid.uuid4().hex[:6]}"
    helper_nick = f"KettleGuru-{uuid.uuid4().hex[:6]}"
    await stack.complaints.call("PUT", f"{COMMUNITY}/members/me", helpers,
                                json={"nickname": helper_nick})  # fmt: skip
    title = f"How do I descale my kettle {uuid.uuid4().hex[:6]}?"
    async with opened_page(browser, f"{stack.portal}/") as page:
        await sign_in(page, stack, asker["emails"][0])
        await page.get_by_role("link", name="Community").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Community")
        await expect(page.get_by_role("link", name="Community")).to_have_attribute(
            "aria-current", "page"
        )

        # The member's own card: a made-up nickname until one is chosen, then that one.
        await page.get_by_label("Your nickname").fill(nickname)
        await page.get_by_role("button", name="Save nickname").click()
        await expect(page.locator("#nickname-status")).to_contain_text("nickname is saved")
        await expect(page.locator("#member-summary")).to_contain_text(nickname)

        await page.get_by_role("link", name="Ask a question").click()
        await assert_labelled(page)
        await page.get_by_label("Your question", exact=True).fill(title)
        await page.get_by_label("Details", exact=True).fill("White flakes in the water. Vinegar?")
        await page.get_by_label("Tags (optional)").fill("Kettle, cleaning")
        await page.get_by_role("button", name="Post question").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(title)
        await expect(page.locator("main")).to_contain_text("Your question is posted.")
        question_id = page.url.rsplit("/", 1)[-1]
        await expect(page.locator("#question .nickname")).to_have_text(nickname)
        await expect(page.locator("#question [data-vote]")).to_have_count(0)  # not on one's own

        # Another customer answers (through the API); staff answer too.
        answers = f"{COMMUNITY}/questions/{question_id}/answers"
        helpful = await stack.complaints.call(
            "POST", answers, helpers, json={"body": "Boil **vinegar** and water, 1:1."}
        )
        staff = await stack.complaints.call("POST", answers, json={"body": "Or use citric acid."})
        await page.reload()
        answer = page.locator(f'#answers li[data-answer="{helpful["id"]}"]')
        await expect(answer.locator(".post-body strong")).to_have_text("vinegar")
        await expect(answer.locator(".nickname")).to_have_text(helper_nick)
        await expect(answer.locator("[data-reputation]")).to_have_text("0 points")
        staff_answer = page.locator(f'#answers li[data-answer="{staff["id"]}"]')
        await expect(staff_answer).to_contain_text("Answer from our team")
        await expect(staff_answer.locator("[data-staff]")).to_have_count(1)

        # The asker votes it up (the vote shows as theirs) and accepts it: it goes first.
        up = answer.get_by_role("button", name="Helpful", exact=True)
        await up.click()
        await expect(page.locator("#thread-status")).to_contain_text("Your vote is counted.")
        await expect(answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(answer.locator("[data-score]")).to_have_text("1 vote")
        await answer.get_by_role("button", name="Accept this answer").click()
        await expect(page.locator("#thread-status")).to_contain_text("You accepted this answer")
        first = page.locator("#answers > li").first
        await expect(first).to_have_attribute("data-answer", helpful["id"])
        await expect(first).to_have_attribute("data-accepted", "true")
        await expect(first).to_contain_text("Accepted answer")
        # 10 for the upvote on an answer, 15 for the acceptance, shown beside the name.
        await expect(first.locator("[data-reputation]")).to_have_text("25 points")

        # A report on the staff answer goes to staff, once.
        await staff_answer.get_by_role("button", name="Report").click()
        await staff_answer.get_by_label("What is wrong with this post?").fill("Off topic")
        await staff_answer.get_by_role("button", name="Send report").click()
        await expect(page.locator("#thread-status")).to_contain_text("our team will look")

        # Listed as solved; found by a search; filtered out of the unanswered ones.
        await page.get_by_role("link", name="Back to the community").click()
        listed = page.locator(f'#questions li[data-question="{question_id}"]')
        await expect(listed).to_contain_text("Solved")
        await page.get_by_label("Only questions without an answer").check()
        await expect(listed).to_have_count(0)
        await page.get_by_label("Only questions without an answer").uncheck()
        await page.get_by_role("searchbox", name="Search questions").fill("descale kettle")
        await expect(listed).to_be_visible()
        await expect(page.locator("#community-summary")).to_contain_text("“descale kettle”")

    thread = await stack.complaints.get(f"{COMMUNITY}/questions/{question_id}", helpers)
    assert thread["accepted_answer_id"] == helpful["id"]
    assert (thread["answers"][0]["id"], thread["answers"][0]["up"]) == (helpful["id"], 1)
    member = await stack.complaints.get(f"{COMMUNITY}/members/me", helpers)
    assert (member["nickname"], member["reputation"]) == (helper_nick, 25)
    reports = await stack.complaints.get(f"{COMMUNITY}/reports", limit=100)
    assert [r["reason"] for r in reports["items"] if r["post_id"] == staff["id"]] == ["Off topic"]


async def test_a_customer_rates_a_resolved_request_through_the_feedback_link_and_reopens_it(
    stack: PortalStack, browser: Browser
) -> None:
    customer = await stack.new_customer("Jana")
    email = customer["emails"][0]
    complaint = await stack.complaints.call(
        "POST",
        "/complaints",
        json={
            "customer_id": customer["id"], "channel": "email", "category": "product",
            "subject": "Toaster burns bread", "description": "Even on the lowest setting.",
        },
    )  # fmt: skip
    path = f"/complaints/{complaint['id']}"
    await stack.complaints.call("POST", f"{path}/acknowledge")
    await stack.complaints.call("POST", f"{path}/status", json={"status": "in_progress"})
    await stack.complaints.call(
        "POST",
        f"{path}/resolve",
        json={"resolution_type": "replacement", "summary": "A new toaster is on its way."},
    )
    # Notifications' mail about the resolution carries the feedback link into the portal.
    mail = await stack.mail_to(email, unless=lambda m: "/feedback" not in m.text())
    found = re.search(r"https?://\S+/complaints/[^/\s]+/feedback", mail.text())
    assert found, mail.text()
    feedback_link = found.group(0)
    assert feedback_link == f"{stack.portal}/complaints/{complaint['id']}/feedback"

    # Opened signed out, the link asks for sign-in, and the mailed sign-in link leads back.
    async with opened_page(browser, feedback_link) as page:
        await expect(page.locator("#sign-in-form")).to_be_visible()
        await sign_in(page, stack, email, lands_on=feedback_link)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Toaster burns bread")
        rating = page.locator("#rating-title")
        await expect(rating).to_have_text("How did we do?")
        await expect(rating).to_be_focused()
        await expect(page.locator("main")).to_contain_text("A new toaster is on its way.")
        await assert_labelled(page)

        # CSAT is required; NPS and the comment are not.
        await page.get_by_role("button", name="Send rating").click()
        await expect(page.locator("#csat-scale-error")).to_have_text("Choose a number from 1 to 5.")
        await page.locator("#csat-scale").get_by_label("4", exact=True).check()
        await page.locator("#nps-scale").get_by_label("9", exact=True).check()
        await page.get_by_label("Anything you want to add? (optional)").fill("Quick, thanks")
        await page.get_by_role("button", name="Send rating").click()
        await expect(page.locator("#follow-up")).to_contain_text("Thank you for your rating.")
        await expect(page.locator("#rated")).to_contain_text("You gave us 4 of 5.")
        await expect(page.locator("#rated")).to_contain_text("Recommendation: 9 of 10.")
        rated = await stack.complaints.get(path)
        [feedback] = rated["feedback"]
        assert (feedback["csat"], feedback["nps"], feedback["comment"]) == (4, 9, "Quick, thanks")

        # Within the reopen window: not solved after all.
        await page.get_by_label("What is still wrong? (optional)").fill("The new one burns too")
        await page.get_by_role("button", name="Reopen request").click()
        await expect(page.locator("#follow-up")).to_contain_text("Your request is open again.")
        await expect(page.locator("#request-facts [data-status]")).to_have_text("Reopened")
        await expect(page.locator("#rating")).to_have_count(0)
        reopened = await stack.complaints.get(path)
        assert reopened["status"] == "reopened"


async def test_a_customer_sets_message_preferences_downloads_their_data_and_erases_it(
    stack: PortalStack, browser: Browser
) -> None:
    customer = await stack.new_customer("Dora", family_name="Babić")
    email = customer["emails"][0]
    preferences = f"/customers/{customer['id']}/preferences"
    async with opened_page(browser, f"{stack.portal}/") as page:
        await sign_in(page, stack, email)
        await assert_labelled(page)

        # Message preferences: SMS offers off, own quiet hours; notifications has them.
        sms_offers = page.locator("#pref-sms-marketing")
        await expect(sms_offers).to_be_checked()
        await sms_offers.uncheck()
        await page.get_by_label("My own quiet hours").check()
        await page.get_by_label("From").fill("22:30")
        await page.get_by_label("Until").fill("07:15")
        await page.get_by_role("button", name="Save preferences").click()
        await expect(page.locator("#preferences-status")).to_contain_text("preferences are saved")
        saved = await stack.notifications.get(preferences)
        assert saved["opt_outs"] == [{"channel": "sms", "purpose": "marketing"}]
        assert saved["quiet_hours"] == {"start": "22:30", "end": "07:15"}
        assert saved["quiet_hours_off"] is False

        # The GDPR export, saved as a JSON file.
        async with page.expect_download() as waiting:
            await page.get_by_role("button", name="Download my data (JSON)").click()
        download = await waiting.value
        assert download.suggested_filename == f"customer-{customer['id']}.json"
        exported = json.loads((await download.path()).read_text(encoding="utf-8"))
        assert exported["customer_id"] == customer["id"]
        assert exported["profile"]["family_name"] == "Babić"

        # Erasure asks for the e-mail address first; a wrong one erases nothing.
        await page.get_by_role("button", name="Delete my account…").click()
        confirm = page.get_by_label("To confirm, type your e-mail address")
        await expect(confirm).to_be_focused()
        await confirm.fill("someone.else@example.hr")
        await page.get_by_role("button", name="Delete my account for good").click()
        await expect(page.locator("#erase-confirm-error")).to_have_text(
            "This is not the address of your account."
        )
        await stack.profiles.get(f"/customers/{customer['id']}")  # still there
        await confirm.fill(email.upper())
        await page.get_by_role("button", name="Delete my account for good").click()

        # Signed out, told why, and the customer is gone for the API.
        await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
        await expect(page.locator("main")).to_contain_text("Your account is deleted")
        await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
        assert await page.evaluate("() => sessionStorage.length") == 0
    gone = await stack.profiles.http.get(
        f"/api/v1/customers/{customer['id']}", headers=stack.profiles.as_(Role.AGENT)
    )
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"
