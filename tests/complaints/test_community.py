"""The customer community over HTTP and Kafka: customers ask, answer each other, vote and
accept; staff answer (marked), hide and read reports; reputations and loyalty tiers show
beside nicknames; search, erasure and merges; the events and their schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from services.analytics.domain.insights import Churn, Insight
from services.analytics.domain.segments import LoyaltyTier, Rfm, Segment
from services.analytics.handlers import judging
from services.analytics.handlers.routing import routes as analytics_routes
from services.complaints.community import Community
from services.complaints.community import routes as community_routes
from services.complaints.community_store import CommunityStore
from services.complaints.domain.community import (
    DEFAULT_TIER_BENEFITS,
    Answer,
    Earned,
    Question,
    benefits_in,
    earned,
)
from services.complaints.domain.language import Locale
from services.complaints.settings import ComplaintsSettings
from services.notifications.handlers import routes as notifications_routes
from services.profiles.purchases import routes as ledger_routes
from services.profiles.timeline import routes as timeline_routes
from shared.auth import Role
from shared.consumer import EventConsumer, IncomingMessage, Outcome
from shared.events import new_event
from shared.events.community import AnswerAccepted, AnswerPosted, QuestionAsked
from shared.events.customers import CustomerErased, CustomerMerged
from shared.events.envelope import decode, encode
from shared.events.insights import RfmScores, RiskLevel, SegmentChanged
from shared.events.schemas import DEFAULT_FOLDER
from shared.kafka import AiokafkaPublisher
from shared.mongo import Database
from shared.outbox import Outbox, OutboxRelay
from shared.routing import Routes
from shared.topics import COMPLAINTS, CUSTOMERS, INSIGHTS, TopicNames
from tests.complaints.conftest import MONDAY_MORNING, Api
from tests.kafka_reading import read_topic
from tests.service_harness import eventually
from tests.support.api import PROBLEM
from tests.support.commands import counted_client

COMMUNITY = "/api/v1/community"
QUESTIONS = f"{COMMUNITY}/questions"

KETTLE = {
    "locale": "en",
    "title": "Kettle switches off too early",
    "body": "My kettle turns itself off before the water boils. Is that normal?",
    "tags": ["Kettle", "heating", "kettle"],
    "product": "kettle-2000",
    "category": "kitchen",
}
BILL = {
    "locale": "hr",
    "title": "Kako platiti račun karticom?",
    "body": "Stigao mi je račun, a ne vidim gdje se plaća karticom.",
    "tags": ["račun"],
}
DELIVERY = {
    "locale": "hr",
    "title": "Dostava kasni",
    "body": "Paket nije stigao ni nakon tjedan dana.",
}


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    return problem


async def ask(api: Api, who: dict[str, str], body: dict[str, Any] | None = None) -> Any:
    response = await api.http.post(QUESTIONS, json=body or KETTLE, headers=who)
    question = await ok(response, 201)
    assert response.headers["location"] == f"{QUESTIONS}/{question['id']}"
    return question


async def answer(api: Api, who: dict[str, str], question_id: str, text: str) -> Any:
    response = await api.http.post(
        f"{QUESTIONS}/{question_id}/answers", json={"body": text}, headers=who
    )
    return await ok(response, 201)


async def vote(api: Api, who: dict[str, str], post_id: str, value: str) -> httpx.Response:
    return await api.http.put(
        f"{COMMUNITY}/posts/{post_id}/vote", json={"value": value}, headers=who
    )


async def accept(api: Api, who: dict[str, str], question_id: str, answer_id: str) -> Any:
    response = await api.http.put(
        f"{QUESTIONS}/{question_id}/accepted-answer", json={"answer_id": answer_id}, headers=who
    )
    return response


async def nickname(api: Api, who: dict[str, str], name: str) -> Any:
    response = await api.http.put(f"{COMMUNITY}/members/me", json={"nickname": name}, headers=who)
    return await ok(response)


async def thread(api: Api, who: dict[str, str], question_id: str) -> Any:
    return await ok(await api.http.get(f"{QUESTIONS}/{question_id}", headers=who))


async def my_page(api: Api, who: dict[str, str], **params: Any) -> Any:
    return await ok(await api.http.get(f"{COMMUNITY}/members/me", params=params, headers=who))


async def listed(api: Api, who: dict[str, str], **params: Any) -> Any:
    return await ok(await api.http.get(QUESTIONS, params=params, headers=who))


def ids(items: list[Any]) -> list[str]:
    return [item["id"] for item in items]


async def test_a_customer_asks_another_answers_the_asker_accepts_and_reputations_follow(
    api: Api,
) -> None:
    ana, ben, cleo = api.customer("cus_ana"), api.customer("cus_ben"), api.customer("cus_cleo")
    await nickname(api, ana, "Ana the Brewer")
    await nickname(api, ben, "kettle_fixer")

    question = await ask(api, ana)
    assert question["author"] == {
        "nickname": "Ana the Brewer", "reputation": 0, "tier": None, "staff": False,
        "member_id": None,
    }  # fmt: skip
    assert question["mine"] is True
    assert question["by_staff"] is False
    assert question["tags"] == ["kettle", "heating"]
    assert question["direction"] == "ltr"
    reply = await answer(api, ben, question["id"], "Descale it with vinegar, then it boils.")
    assert reply["author"]["nickname"] == "kettle_fixer"

    await ok(await vote(api, ana, reply["id"], "up"))  # +10 for Ben
    await ok(await vote(api, ben, question["id"], "up"))  # +5 for Ana
    accepted = await ok(await accept(api, ana, question["id"], reply["id"]))  # +15 for Ben
    assert accepted["accepted_answer_id"] == reply["id"]

    seen = await thread(api, cleo, question["id"])
    assert seen["author"]["nickname"] == "Ana the Brewer"
    assert seen["author"]["reputation"] == 5
    assert seen["mine"] is False
    assert seen["answer_count"] == 1
    [shown] = seen["answers"]
    assert shown["accepted"] is True
    assert shown["author"] == {
        "nickname": "kettle_fixer", "reputation": 25, "tier": None, "staff": False,
        "member_id": None,
    }  # fmt: skip
    assert (shown["up"], shown["down"], shown["score"]) == (1, 0, 1)

    await ok(await vote(api, cleo, reply["id"], "down"))  # -2 for Ben
    assert (await my_page(api, ben))["reputation"] == 23
    page = await my_page(api, ana)
    assert page["nickname"] == "Ana the Brewer"
    assert page["nickname_chosen"] is True
    assert page["earned"] == {
        "question_upvotes": 1, "answer_upvotes": 0, "downvotes": 0, "accepted_answers": 0,
    }  # fmt: skip
    # Staff see who is behind a nickname.
    staff_view = await thread(api, api.agent, question["id"])
    assert staff_view["author"]["member_id"] == "cus_ana"
    assert staff_view["answers"][0]["author"]["member_id"] == "cus_ben"

    # Never below 0: a member whose posts were only voted down shows 0.
    dora = api.customer("cus_dora")
    doubtful = await ask(api, dora, KETTLE | {"title": "Kettles are a scam"})
    for voter in (ana, ben):
        await ok(await vote(api, voter, doubtful["id"], "down"))
    dora_page = await my_page(api, dora)
    assert dora_page["earned"]["downvotes"] == 2
    assert dora_page["reputation"] == 0
    assert dora_page["nickname"].startswith("member-")  # never a name she did not choose
    assert dora_page["nickname_chosen"] is False


async def test_nicknames_are_unique_and_chosen_by_the_member(api: Api) -> None:
    await nickname(api, api.customer("cus_ana"), "Ana B")
    taken = await api.http.put(
        f"{COMMUNITY}/members/me", json={"nickname": "ana  b"}, headers=api.customer("cus_eve")
    )
    await refused(taken, 409)
    renamed = await nickname(api, api.customer("cus_ana"), "Ana Brewer")
    assert renamed["nickname"] == "Ana Brewer"
    freed = await nickname(api, api.customer("cus_eve"), "Ana B")  # released by the rename
    assert freed["nickname"] == "Ana B"


async def test_staff_answers_are_marked_and_only_the_asker_or_staff_accept(api: Api) -> None:
    ana, ben = api.customer("cus_ana"), api.customer("cus_ben")
    question = await ask(api, ana)
    from_ben = await answer(api, ben, question["id"], "Try descaling it.")
    from_staff = await answer(api, api.agent, question["id"], "The thermostat is faulty.")
    assert from_staff["by_staff"] is True
    assert from_staff["author"]["staff"] is True
    assert from_staff["author"]["nickname"].startswith("staff-")

    problem = await refused(await accept(api, ben, question["id"], from_ben["id"]), 403)
    assert "asker" in problem["detail"]
    assert (await thread(api, ana, question["id"]))["accepted_answer_id"] is None

    await ok(await accept(api, ana, question["id"], from_ben["id"]))
    assert (await my_page(api, ben))["reputation"] == 15
    # Changeable: staff (or the asker) move it to another answer.
    moved = await ok(await accept(api, api.agent, question["id"], from_staff["id"]))
    assert moved["accepted_answer_id"] == from_staff["id"]
    assert (await my_page(api, ben))["reputation"] == 0
    answers = (await thread(api, ana, question["id"]))["answers"]
    assert [(a["id"], a["accepted"]) for a in answers] == [
        (from_staff["id"], True),  # the accepted first
        (from_ben["id"], False),
    ]
    withdrawn = await api.http.delete(f"{QUESTIONS}/{question['id']}/accepted-answer", headers=ana)
    assert (await ok(withdrawn))["accepted_answer_id"] is None
    other = await ask(api, ben, KETTLE | {"title": "Another"})
    wrong = await accept(api, ana, other["id"], from_ben["id"])
    await refused(wrong, 403)  # not her question
    mismatched = await accept(api, ben, other["id"], from_ben["id"])
    await refused(mismatched, 422)  # not an answer to this question


async def test_one_vote_per_voter_a_second_replaces_it_and_nobody_votes_on_their_own(
    api: Api,
) -> None:
    ana, ben = api.customer("cus_ana"), api.customer("cus_ben")
    question = await ask(api, ana)
    post = f"{COMMUNITY}/posts/{question['id']}/vote"

    first = await ok(await vote(api, ben, question["id"], "up"))
    assert (first["up"], first["down"], first["my_vote"]) == (1, 0, "up")
    again = await ok(await vote(api, ben, question["id"], "up"))
    assert (again["up"], again["down"]) == (1, 0)
    replaced = await ok(await vote(api, ben, question["id"], "down"))
    assert (replaced["up"], replaced["down"], replaced["score"]) == (0, 1, -1)
    assert (await thread(api, ben, question["id"]))["my_vote"] == "down"
    assert (await thread(api, ana, question["id"]))["my_vote"] is None

    own = await refused(await vote(api, ana, question["id"], "up"), 409)
    assert "own" in own["detail"]
    withdrawn = await ok(await api.http.delete(post, headers=ben))
    assert (withdrawn["up"], withdrawn["down"], withdrawn["my_vote"]) == (0, 0, None)
    assert (await my_page(api, ana))["earned"]["downvotes"] == 0
    await refused(await vote(api, api.as_(Role.SERVICE), question["id"], "up"), 403)
    await refused(await vote(api, ben, "cq_missing", "up"), 404)


async def test_authors_edit_within_the_window_and_delete_keeping_the_thread(api: Api) -> None:
    ana, ben = api.customer("cus_ana"), api.customer("cus_ben")
    question = await ask(api, ana)
    path = f"{QUESTIONS}/{question['id']}"
    reply = await answer(api, ben, question["id"], "Descale it.")

    await refused(await api.http.patch(path, json={"title": "Hijacked"}, headers=ben), 403)
    await refused(
        await api.http.patch(
            f"{COMMUNITY}/answers/{reply['id']}", json={"body": "Mine now"}, headers=ana
        ),
        403,
    )
    await refused(await api.http.delete(path, headers=ben), 403)
    api.clock.advance(minutes=30)
    edited = await ok(await api.http.patch(path, json={"title": "Kettle stops early"}, headers=ana))
    assert edited["title"] == "Kettle stops early"
    assert edited["edited_at"] is not None
    assert edited["body"] == KETTLE["body"]
    api.clock.advance(minutes=31)  # 61 minutes after posting: the window has closed
    late = await refused(await api.http.patch(path, json={"title": "Too late"}, headers=ana), 409)
    assert late["editable_until"].startswith("2026-11-23T10:00")

    await ok(await api.http.delete(f"{COMMUNITY}/answers/{reply['id']}", headers=ben), 204)
    kept = await thread(api, ana, question["id"])
    [gone] = kept["answers"]
    assert (gone["id"], gone["deleted"], gone["body"]) == (reply["id"], True, "")
    assert kept["answer_count"] == 0
    await refused(await vote(api, ana, reply["id"], "up"), 409)

    await ok(await api.http.delete(path, headers=ana), 204)
    shape = await thread(api, ben, question["id"])
    assert shape["deleted"] is True
    assert (shape["title"], shape["body"], shape["tags"]) == ("[deleted]", "", [])
    assert [a["id"] for a in shape["answers"]] == [reply["id"]]
    assert (await listed(api, ben))["items"] == []
    closed = await api.http.post(f"{path}/answers", json={"body": "late"}, headers=ben)
    await refused(closed, 409)


async def test_reported_posts_are_hidden_by_staff_and_vanish_for_customers(api: Api) -> None:
    ana, ben, cleo = api.customer("cus_ana"), api.customer("cus_ben"), api.customer("cus_cleo")
    question = await ask(api, ana, BILL)
    spam = await answer(api, ben, question["id"], "Buy cheap watches at example.com")
    path = f"{QUESTIONS}/{question['id']}"

    report = await api.http.post(
        f"{COMMUNITY}/posts/{spam['id']}/reports", json={"reason": "spam"}, headers=cleo
    )
    made = await ok(report, 201)
    assert (made["post_id"], made["question_id"], made["reporter_id"]) == (
        spam["id"],
        question["id"],
        None,
    )
    twice = await api.http.post(
        f"{COMMUNITY}/posts/{spam['id']}/reports", json={"reason": "spam!"}, headers=cleo
    )
    await refused(twice, 409)
    by_service = await api.http.post(
        f"{COMMUNITY}/posts/{spam['id']}/reports",
        json={"reason": "looks like spam"},
        headers=api.as_(Role.SERVICE),
    )
    await ok(by_service, 201)
    reports = await ok(await api.http.get(f"{COMMUNITY}/reports", headers=api.agent))
    assert [(r["post_id"], r["reporter_id"]) for r in reports["items"]] == [
        (spam["id"], "service:tester"),
        (spam["id"], "cus_cleo"),
    ]
    await refused(await api.http.get(f"{COMMUNITY}/reports", headers=cleo), 403)
    await refused(await api.http.post(f"{COMMUNITY}/posts/{spam['id']}/hide", headers=cleo), 403)

    hidden = await api.http.post(
        f"{COMMUNITY}/posts/{spam['id']}/hide", json={"reason": "spam"}, headers=api.agent
    )
    moderation = await ok(hidden)
    assert (moderation["hidden"], moderation["report_count"]) == (True, 2)
    assert (await thread(api, ana, question["id"]))["answers"] == []
    assert (await thread(api, ana, question["id"]))["answer_count"] == 0
    await refused(await api.http.get(f"{COMMUNITY}/answers/{spam['id']}", headers=ana), 404)
    [marked] = (await thread(api, api.agent, question["id"]))["answers"]
    assert (marked["hidden"], marked["hide_reason"], marked["report_count"]) == (True, "spam", 2)

    # A hidden question: 404 for customers (its author too), out of lists and searches.
    await ok(await api.http.post(f"{COMMUNITY}/posts/{question['id']}/hide", headers=api.admin))
    for customer in (ana, cleo):
        problem = await refused(await api.http.get(path, headers=customer), 404)
        assert question["id"] in problem["detail"]
        assert (await listed(api, customer))["items"] == []
        assert (await listed(api, customer, q="račun"))["items"] == []
        await refused(await vote(api, customer, question["id"], "up"), 404)
        await refused(
            await api.http.post(f"{path}/answers", json={"body": "hello"}, headers=customer),
            404,
        )
    await refused(await api.http.get(QUESTIONS, params={"hidden": True}, headers=ana), 422)
    staff_thread = await thread(api, api.agent, question["id"])
    assert staff_thread["hidden"] is True
    [staff_listed] = (await listed(api, api.agent))["items"]
    assert (staff_listed["id"], staff_listed["hidden"]) == (question["id"], True)
    assert ids((await listed(api, api.agent, hidden=True))["items"]) == [question["id"]]
    assert ids((await listed(api, api.agent, q="račun"))["items"]) == [question["id"]]

    await ok(await api.http.post(f"{COMMUNITY}/posts/{question['id']}/unhide", headers=api.agent))
    assert (await thread(api, ana, question["id"]))["hidden"] is False
    assert ids((await listed(api, cleo, q="racun"))["items"]) == [question["id"]]


async def test_bad_input_is_422_problem_json(api: Api) -> None:
    ana = api.customer("cus_ana")
    for bad in [
        KETTLE | {"locale": "de"},
        KETTLE | {"title": "   "},
        KETTLE | {"body": ""},
        KETTLE | {"tags": [f"t{n}" for n in range(11)]},
        KETTLE | {"author_id": "cus_ben"},  # the author is the token's customer
        {key: value for key, value in KETTLE.items() if key != "title"},
    ]:
        problem = await refused(await api.http.post(QUESTIONS, json=bad, headers=ana), 422)
        assert problem["errors"], bad
    question = await ask(api, ana)
    for url, method, body in [
        (f"{COMMUNITY}/posts/{question['id']}/vote", "PUT", {"value": "sideways"}),
        (f"{COMMUNITY}/posts/{question['id']}/reports", "POST", {"reason": ""}),
        (f"{QUESTIONS}/{question['id']}/answers", "POST", {"body": " "}),
        (f"{QUESTIONS}/{question['id']}", "PATCH", {"title": None}),
        (f"{QUESTIONS}/{question['id']}/accepted-answer", "PUT", {}),
        (f"{COMMUNITY}/members/me", "PUT", {"nickname": "x"}),
        (f"{COMMUNITY}/members/me", "PUT", {"nickname": "[erased]"}),
    ]:
        response = await api.http.request(method, url, json=body, headers=ana)
        await refused(response, 422)
    for params in [
        {"locale": "de"},
        {"sort": "random"},
        {"cursor": "not-a-cursor"},
        {"q": ""},
        {"q": "kettle", "cursor": "x"},
        {"q": "kettle", "sort": "votes"},
    ]:
        await refused(await api.http.get(QUESTIONS, params=params, headers=ana), 422)
    await refused(await api.http.post(QUESTIONS, json=KETTLE, headers=api.as_(Role.SERVICE)), 403)
    assert (await api.http.get(QUESTIONS)).status_code == 401


async def test_listing_newest_or_by_votes_a_page_at_a_time_with_filters(api: Api) -> None:
    ana, ben, cleo = api.customer("cus_ana"), api.customer("cus_ben"), api.customer("cus_cleo")
    asked = []
    for number in range(5):
        api.clock.advance(minutes=1)
        body = (BILL if number % 2 else KETTLE) | {"title": f"Question {number}"}
        asked.append(await ask(api, ana, body))
    await answer(api, ben, asked[1]["id"], "An answer")
    for voter in (ben, cleo):
        await ok(await vote(api, voter, asked[2]["id"], "up"))
    await ok(await vote(api, ben, asked[0]["id"], "up"))
    await ok(await vote(api, ben, asked[4]["id"], "down"))

    newest = [q["id"] for q in reversed(asked)]
    first = await listed(api, ben, limit=2)
    rest = await listed(api, ben, limit=3, cursor=first["next_cursor"])
    assert ids(first["items"]) + ids(rest["items"]) == newest
    assert rest["next_cursor"] is None

    best = [asked[2]["id"], asked[0]["id"], asked[3]["id"], asked[1]["id"], asked[4]["id"]]
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"sort": "votes", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await listed(api, ben, **params)
        pages += ids(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == best
    assert [q["score"] for q in (await listed(api, ben, sort="votes"))["items"]] == [
        2, 1, 0, 0, -1,
    ]  # fmt: skip
    mixed = await api.http.get(
        QUESTIONS, params={"sort": "newest", "cursor": first["next_cursor"]}, headers=ben
    )
    assert mixed.status_code == 200
    wrong_sort = await api.http.get(
        QUESTIONS, params={"sort": "votes", "cursor": first["next_cursor"]}, headers=ben
    )
    await refused(wrong_sort, 422)

    croatian = await listed(api, ben, locale="hr")
    assert ids(croatian["items"]) == [asked[3]["id"], asked[1]["id"]]
    assert croatian["items"][0]["direction"] == "ltr"
    assert ids((await listed(api, ben, tag="račun"))["items"]) == [asked[3]["id"], asked[1]["id"]]
    unanswered = await listed(api, ben, unanswered=True)
    assert asked[1]["id"] not in ids(unanswered["items"])
    assert len(unanswered["items"]) == 4


async def test_search_finds_a_croatian_question_with_and_without_diacritics(api: Api) -> None:
    ana = api.customer("cus_ana")
    bill = await ask(api, ana, BILL)
    delivery = await ask(api, ana, DELIVERY)
    await ask(api, ana, KETTLE)
    persian = await ask(
        api, ana, {"locale": "fa", "title": "چگونه شکایت ثبت کنیم", "body": "فرم پشتیبانی کجاست؟"}
    )
    assert persian["direction"] == "rtl"

    for q in ("račun", "racun", "RAČUN", "računa ", "racun kartic"):
        found = await listed(api, api.customer("cus_ben"), q=q, locale="hr")
        assert ids(found["items"]) == [bill["id"]], q
        assert found["items"][0]["relevance"] > 0
        assert found["items"][0]["author"]["nickname"].startswith("member-")
    assert ids((await listed(api, ana, q="racun"))["items"]) == [bill["id"]]  # any locale
    assert (await listed(api, ana, q="račun", locale="en"))["items"] == []
    assert ids((await listed(api, ana, q="paket "))["items"]) == [delivery["id"]]
    assert ids((await listed(api, ana, q="شکایت"))["items"]) == [persian["id"]]

    await ok(await api.http.patch(f"{QUESTIONS}/{bill['id']}", json={"title": "Uplatnica"},
                                  headers=ana))  # fmt: skip
    assert ids((await listed(api, ana, q="uplatnica "))["items"]) == [bill["id"]]
    await ok(await api.http.delete(f"{QUESTIONS}/{bill['id']}", headers=ana), 204)
    assert (await listed(api, ana, q="uplatnica "))["items"] == []


async def send(publisher: AiokafkaPublisher, topic: str, payload: Any) -> None:
    await publisher.publish([(topic, encode(new_event(payload, source="/tests")))])


def segment(customer_id: str, tier: str, at: str) -> SegmentChanged:
    return SegmentChanged(
        customer_id=customer_id,
        segment="loyal",
        loyalty_tier=tier,
        rfm=RfmScores(recency=5, frequency=4, monetary=4),
        changed_at=at,
    )


async def test_the_loyalty_tier_from_analytics_shows_beside_the_name_with_its_benefits(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    ana = api.customer("cus_ana")
    await nickname(api, ana, "Ana")
    question = await ask(api, ana)
    await send(publisher, topics(INSIGHTS), segment("cus_ana", "gold", "2026-11-23T10:00:00Z"))
    await send(publisher, topics(INSIGHTS), segment("cus_ana", "silver", "2026-11-22T10:00:00Z"))
    await send(publisher, topics(INSIGHTS), segment("cus_new", "platinum", "2026-11-23T10:00:00Z"))

    async def tiered() -> bool:
        page = await my_page(api, api.customer("cus_new"))
        return bool(page["tier"] == "platinum")

    await eventually(tiered, timeout=30, message="the segment change was not consumed")
    page = await my_page(api, ana)
    assert page["tier"] == "gold"  # the older silver arrived later and changed nothing
    assert page["benefits"] == DEFAULT_TIER_BENEFITS["gold"][Locale.EN]  # no locale: English
    # In the reader's language (the portal passes its own); any other one: English.
    croatian = await my_page(api, ana, locale="hr")
    assert croatian["benefits"] == DEFAULT_TIER_BENEFITS["gold"][Locale.HR]
    assert (
        croatian["benefits"] == "Besplatna dostava, povrat u roku od 60 dana i prioritetna podrška."
    )
    assert {key: value for key, value in croatian.items() if key != "benefits"} == {
        key: value for key, value in page.items() if key != "benefits"
    }
    persian = await my_page(api, ana, locale="fa-IR")
    assert persian["benefits"] == DEFAULT_TIER_BENEFITS["gold"][Locale.FA]
    german = await my_page(api, ana, locale="de")
    assert german["benefits"] == DEFAULT_TIER_BENEFITS["gold"][Locale.EN]
    author = (await thread(api, api.customer("cus_ben"), question["id"]))["author"]
    assert (author["nickname"], author["tier"]) == ("Ana", "gold")
    listed_author = (await listed(api, api.customer("cus_ben")))["items"][0]["author"]
    assert listed_author["tier"] == "gold"
    # Choosing a nickname answers the page too, its benefits in the language asked for.
    renamed = await ok(
        await api.http.put(
            f"{COMMUNITY}/members/me", params={"locale": "sl"}, json={"nickname": "Ana H"},
            headers=ana,
        )
    )  # fmt: skip
    assert renamed["benefits"] == DEFAULT_TIER_BENEFITS["gold"][Locale.SL]


def test_tier_benefits_are_one_text_or_texts_per_locale_with_an_english_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert all(set(texts) == set(Locale) for texts in DEFAULT_TIER_BENEFITS.values())
    monkeypatch.setenv(
        "RAPPORT_COMPLAINTS_COMMUNITY_TIER_BENEFITS",
        json.dumps({"gold": "Gold, in any language", "silver": {"en": "Silver", "hr": "Srebro"}}),
    )
    benefits = ComplaintsSettings().community_tier_benefits
    assert benefits_in(benefits["gold"], Locale.FA) == "Gold, in any language"  # the old form
    assert benefits_in(benefits["silver"], Locale.HR) == "Srebro"
    assert benefits_in(benefits["silver"], Locale.CS) == "Silver"  # none in Czech: English
    monkeypatch.setenv(
        "RAPPORT_COMPLAINTS_COMMUNITY_TIER_BENEFITS", json.dumps({"silver": {"hr": "Srebro"}})
    )
    with pytest.raises(ValidationError, match="`en`, the fallback"):
        ComplaintsSettings()
    monkeypatch.setenv(
        "RAPPORT_COMPLAINTS_COMMUNITY_TIER_BENEFITS", json.dumps({"silver": {"en": "S", "de": "D"}})
    )
    with pytest.raises(ValidationError):
        ComplaintsSettings()  # a language the portal does not speak


async def test_a_tier_analytics_announces_while_the_segment_stays_shows_in_the_community(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    ana = api.customer("cus_ana")
    await nickname(api, ana, "Ana")
    await send(publisher, topics(INSIGHTS), segment("cus_ana", "silver", "2026-11-22T10:00:00Z"))
    # Analytics judges her again: still loyal, now gold; what it announces, as it is.
    before = {"insight": {"segment": "loyal", "loyalty_tier": "silver", "churn_level": "low"}}
    judged = Insight(
        rfm=Rfm(5, 4, 3),
        segment=Segment.LOYAL,
        loyalty_tier=LoyaltyTier.GOLD,
        churn=Churn(RiskLevel.LOW, 0.0, ()),
    )
    _, payloads = judging._changes("cus_ana", before, judged, datetime(2026, 11, 23, tzinfo=UTC))
    [announced] = [p for p in payloads if isinstance(p, SegmentChanged)]
    assert (announced.previous_segment, announced.segment) == ("loyal", "loyal")
    await send(publisher, topics(INSIGHTS), announced)

    async def gold() -> bool:
        return bool((await my_page(api, ana))["tier"] == "gold")

    await eventually(gold, timeout=30, message="the tier change was not shown")
    assert (await my_page(api, ana))["benefits"] == DEFAULT_TIER_BENEFITS["gold"][Locale.EN]


async def test_erasure_blanks_a_members_posts_and_nickname_and_keeps_the_thread(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    ana, ben = api.customer("cus_ana"), api.customer("cus_ben")
    await nickname(api, ana, "Ana Horvat")
    question = await ask(api, ana, BILL)
    reply = await answer(api, ben, question["id"], "Use the payment link.")
    own_reply = await answer(api, ana, question["id"], "Thanks, Ana Horvat from Zagreb here")
    await ok(await vote(api, ben, question["id"], "up"))
    await ok(await accept(api, ana, question["id"], reply["id"]))

    await send(
        publisher,
        topics(CUSTOMERS),
        CustomerErased(customer_id="cus_ana", erased_at="2026-11-23T12:00:00Z"),
    )

    async def erased() -> bool:
        return bool((await thread(api, ben, question["id"]))["title"] == "[erased]")

    await eventually(erased, timeout=30, message="the member's posts were not erased")
    kept = await thread(api, ben, question["id"])
    assert "Ana" not in json.dumps(kept)
    assert (kept["body"], kept["tags"], kept["author"]["nickname"]) == ("[erased]", [], "[erased]")
    assert (kept["up"], kept["accepted_answer_id"]) == (1, reply["id"])
    bodies = {a["id"]: a["body"] for a in kept["answers"]}
    assert bodies == {reply["id"]: "Use the payment link.", own_reply["id"]: "[erased]"}
    assert (await listed(api, ben, q="račun"))["items"] == []
    assert (await my_page(api, ana))["nickname"] == "[erased]"
    await refused(await api.http.post(QUESTIONS, json=KETTLE, headers=ana), 410)
    free = await nickname(api, api.customer("cus_eve"), "Ana Horvat")  # released
    assert free["nickname"] == "Ana Horvat"


async def test_a_merge_moves_membership_to_the_survivor(
    api: Api, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    old, new, ben = api.customer("cus_old"), api.customer("cus_new"), api.customer("cus_ben")
    await nickname(api, old, "Teapot")
    question = await ask(api, old)
    await ok(await vote(api, ben, question["id"], "up"))
    bens = await answer(api, ben, question["id"], "Descale it.")
    await ok(await vote(api, old, bens["id"], "up"))
    await ok(await vote(api, new, bens["id"], "down"))  # the survivor's vote stays

    await send(
        publisher,
        topics(CUSTOMERS),
        CustomerMerged(
            customer_id="cus_new", source_customer_id="cus_old", merged_at="2026-11-23T10:00:00Z"
        ),
    )

    async def moved() -> bool:
        return bool((await thread(api, new, question["id"]))["mine"])

    await eventually(moved, timeout=30, message="the membership did not move")
    page = await my_page(api, new)
    assert (page["nickname"], page["reputation"]) == ("Teapot", 5)
    answered = (await thread(api, new, question["id"]))["answers"][0]
    assert (answered["up"], answered["down"], answered["my_vote"]) == (0, 1, "down")
    # The merged customer's token now acts as the survivor: the asker accepts.
    await ok(await accept(api, old, question["id"], bens["id"]))

    await send(
        publisher,
        topics(CUSTOMERS),
        CustomerMerged(
            customer_id="cus_new",
            source_customer_id="cus_old",
            merged_at="2026-11-23T11:00:00Z",
            undone=True,
        ),
    )

    async def moved_back() -> bool:
        return bool((await thread(api, old, question["id"]))["mine"])

    await eventually(moved_back, timeout=30, message="the undone merge kept the membership")
    assert (await thread(api, new, question["id"]))["mine"] is False
    back = await my_page(api, old)
    assert (back["nickname"], back["reputation"]) == ("Teapot", 5)
    survivor = await my_page(api, new)
    assert (survivor["nickname_chosen"], survivor["reputation"]) == (False, 0)


async def test_community_events_reach_kafka_with_their_schemas(
    api: Api, kafka_bootstrap: str, topics: TopicNames
) -> None:
    ana, ben = api.customer("cus_ana"), api.customer("cus_ben")
    question = await ask(api, ana, BILL)
    reply = await answer(api, ben, question["id"], "Use the payment link.")
    await answer(api, api.agent, question["id"], "Staff posts announce nothing.")
    await ok(await accept(api, ana, question["id"], reply["id"]))

    records = await read_topic(
        kafka_bootstrap, topics(COMPLAINTS), until=lambda records: len(records) >= 3
    )
    by_type = {json.loads(record.value)["type"]: record for record in records}
    assert sorted(by_type) == [
        "crm.community.answer_accepted",
        "crm.community.answer_posted",
        "crm.community.question_asked",
    ]
    # The Kafka key and the subject are the author's customer id.
    assert [(by_type[t].key, json.loads(by_type[t].value)["subject"]) for t in sorted(by_type)] == [
        (b"cus_ben", "cus_ben"),
        (b"cus_ben", "cus_ben"),
        (b"cus_ana", "cus_ana"),
    ]
    events = [json.loads(by_type[t].value) for t in sorted(by_type)]
    accepted, posted, asked = (e["data"] for e in events)
    assert (asked["question_id"], asked["title"], asked["locale"]) == (
        question["id"], BILL["title"], "hr",
    )  # fmt: skip
    assert (posted["answer_id"], posted["question_id"]) == (reply["id"], question["id"])
    assert (accepted["answer_id"], accepted["accepted_by"]) == (reply["id"], "asker")
    for event in events:
        schema_file = Path(DEFAULT_FOLDER) / f"{event['type']}.v1.json"
        schema = json.loads(schema_file.read_text())
        errors = list(Draft202012Validator(schema).iter_errors(event))
        assert errors == [], (event["type"], errors)


def test_the_reputation_rule() -> None:
    now = MONDAY_MORNING
    question = Question(
        id="cq_1", author_id="ana", body="b", title="t", locale="en", created_at=now,
        updated_at=now, up=3, down=1,
    )  # fmt: skip
    assert earned(question) == Earned(question_upvotes=3, downvotes=1)
    reply = Answer(
        id="ca_1", author_id="ben", asker_id="ana", question_id="cq_1", body="b",
        created_at=now, updated_at=now, up=2, down=1, accepted=True,
    )  # fmt: skip
    assert earned(reply).reputation == 2 * 10 + 15 - 2
    own = reply.model_copy(update={"author_id": "ana"})  # accepting one's own earns nothing
    assert earned(own).accepted_answers == 0
    assert earned(reply.model_copy(update={"hidden": True})) == Earned()
    assert Earned(downvotes=4).reputation == 0
    assert (Earned(question_upvotes=1) + Earned(answer_upvotes=1)).reputation == 15


def test_the_other_consumers_of_the_topic_read_community_events_and_ignore_them() -> None:
    """On ``crm.complaints`` beside the complaint events: every consumer decodes them (an
    unknown type would be dead-lettered) and none of the other services handles them."""
    payloads = [
        QuestionAsked(customer_id="c", question_id="q", locale="en", title="t", body="b",
                      asked_at=MONDAY_MORNING),
        AnswerPosted(customer_id="c", question_id="q", answer_id="a", body="b",
                     posted_at=MONDAY_MORNING),
        AnswerAccepted(customer_id="c", question_id="q", answer_id="a", accepted_by="asker",
                       accepted_at=MONDAY_MORNING),
    ]  # fmt: skip
    for payload in payloads:
        assert payload.topic == COMPLAINTS
        record = encode(new_event(payload, source="/tests"))
        assert decode(record.value, record.headers).payload == payload
        for routes in (analytics_routes, notifications_routes, ledger_routes, timeline_routes):
            bound = cast(Routes[Any], routes).bind(None)
            assert not bound.handles(payload.event_type)


async def test_a_batch_of_tier_changes_is_one_write_and_no_read(
    mongodb_uri: str, db: Database, publisher: AiokafkaPublisher, topics: TopicNames
) -> None:
    """Tier changes come with every purchase that moves a customer: a batch of them costs
    the store one update command, whatever their number, and reads nothing; the latest
    tier of each customer wins whatever the order, and a member keeps the rest."""
    async with counted_client(mongodb_uri) as (client, counter):
        service_db = client[db.name]
        store = CommunityStore(service_db)
        await store.ensure_indexes()
        await service_db["community_members"].insert_one(
            {"_id": "cus_ana", "customer_id": "cus_ana", "staff": False, "nickname": "Ana",
             "tier": "platinum", "tier_changed_at": datetime(2026, 11, 24, tzinfo=UTC)}
        )  # fmt: skip
        outbox = Outbox(service_db, topics)
        context = Community(
            client=client, store=store, outbox=outbox,
            relay=OutboxRelay(service_db, publisher, "complaints"),
        )  # fmt: skip
        consumer = EventConsumer(
            service="complaints", client=client, db=service_db, publisher=publisher,
            routes=community_routes.bind(context), topics=topics, outbox=outbox,
        )  # fmt: skip
        changes = [
            segment("cus_ana", "gold", "2026-11-23T10:00:00Z"),  # older than platinum
            segment("cus_ana", "silver", "2026-11-25T10:00:00Z"),
            segment("cus_bo", "gold", "2026-11-25T10:00:00Z"),
            segment("cus_bo", "silver", "2026-11-24T10:00:00Z"),  # older: changes nothing
            *(segment(f"cus_{n}", "bronze", "2026-11-25T10:00:00Z") for n in range(40)),
        ]
        batch = [
            IncomingMessage(topics(INSIGHTS), 0, offset, record.key, record.value, record.headers)
            for offset, record in enumerate(
                encode(new_event(change, source="/rapport/analytics")) for change in changes
            )
        ]
        counter.clear()
        assert await consumer.handle_batch(batch) == [Outcome.PROCESSED] * len(batch)
        assert counter.written("community_members") == [("update", len(changes))]
        assert "community_members" not in counter.finds()
        members = {
            document["_id"]: document async for document in service_db["community_members"].find()
        }
        assert (members["cus_ana"]["tier"], members["cus_ana"]["nickname"]) == ("silver", "Ana")
        assert members["cus_bo"]["tier"] == "gold"
        assert members["cus_bo"]["tier_changed_at"] == datetime(2026, 11, 25, 10, tzinfo=UTC)
        assert {members[f"cus_{n}"]["tier"] for n in range(40)} == {"bronze"}
        assert (members["cus_7"]["staff"], members["cus_7"]["nickname"]) == (False, None)
