"""The help centre over HTTP: staff write and publish articles in five languages, customers
read and search what is published, and every replica searches what is stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.complaints.domain.articles import Article, ArticleKind
from services.complaints.domain.language import Locale
from services.complaints.help_centre_search import ArticleIndex
from services.complaints.settings import ComplaintsSettings
from tests.complaints.conftest import Api, running
from tests.service_harness import DrivenClock
from tests.support.api import PROBLEM

ARTICLES = "/api/v1/help/articles"

BILL = {
    "kind": "faq",
    "locale": "hr",
    "title": "Kako platiti račun",
    "body": "Račun možete platiti karticom ili uplatnicom. Ako račun nije stigao, "
    "pogledajte spam. Plaćanje računa je jednostavno.",
    "tags": ["Račun", "plaćanje", "račun"],
}
DELIVERY = {
    "kind": "faq",
    "locale": "hr",
    "title": "Dostava i povrat robe",
    "body": "Povrat robe moguć je u roku od 14 dana. Paket šaljemo s računom u kutiji.",
}
COMPLAINT_HOWTO = {
    "kind": "best_practice",
    "locale": "hr",
    "title": "Reklamacija proizvoda",
    "body": "Reklamaciju prijavite kroz portal; odgovor stiže unutar dva radna dana.",
}
REFUNDS = {
    "kind": "product_information",
    "locale": "en",
    "title": "How refunds work",
    "body": "We refund returned goods within 14 days, to the card you paid with.",
    "product": "kettle-2000",
    "category": "kitchen",
}
CZECH = {
    "kind": "faq",
    "locale": "cs",
    "title": "Jak reklamovat zboží",
    "body": "Reklamace se vyřizuje do 30 dnů od převzetí.",
}
SLOVENE = {
    "kind": "faq",
    "locale": "sl",
    "title": "Kako vrniti izdelek",
    "body": "Izdelek lahko vrnete v 14 dneh brez pojasnila.",
}
PERSIAN = {
    "kind": "faq",
    "locale": "fa",
    "title": "چگونه شکایت ثبت کنیم",
    "body": "برای ثبت شکایت فرم پشتیبانی را پر کنید؛ پاسخ ظرف دو روز کاری می‌رسد.",
}


async def create(api: Api, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    response = await api.http.post(ARTICLES, json=body, headers=headers or api.agent)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{ARTICLES}/{response.json()['id']}"
    return response.json()


async def published(api: Api, body: dict[str, Any]) -> Any:
    article = await create(api, body)
    response = await api.http.post(f"{ARTICLES}/{article['id']}/publish", headers=api.agent)
    assert response.status_code == 200, response.text
    return response.json()


async def search(api: Api, q: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    response = await api.http.get(
        ARTICLES, params={"q": q, **params}, headers=headers or api.customer("cus_ana")
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def ids(items: list[Any]) -> list[str]:
    return [item["id"] for item in items]


async def test_staff_write_and_publish_articles_in_five_languages(api: Api) -> None:
    written = {}
    for body in (BILL, REFUNDS, CZECH, SLOVENE, PERSIAN):
        draft = await create(api, body, headers=api.admin if body is CZECH else api.agent)
        assert draft["status"] == "draft"
        assert draft["published_at"] is None
        assert draft["version"] == 1
        publish = await api.http.post(f"{ARTICLES}/{draft['id']}/publish", headers=api.agent)
        assert publish.status_code == 200
        assert publish.headers["etag"] == '"2"'
        assert publish.json()["status"] == "published"
        assert publish.json()["published_at"] is not None
        again = await api.http.post(f"{ARTICLES}/{draft['id']}/publish", headers=api.agent)
        assert again.json()["version"] == 2  # publishing twice changes nothing

        read = await api.get(f"/help/articles/{draft['id']}", headers=api.customer("cus_ana"))
        assert read["title"] == body["title"]
        assert read["body"] == body["body"]
        assert read["kind"] == body["kind"]
        assert read["locale"] == body["locale"]
        assert read["direction"] == ("rtl" if body["locale"] == "fa" else "ltr")
        written[body["locale"]] = read

    assert written["hr"]["tags"] == ["račun", "plaćanje"]  # lower case, each once
    assert written["en"]["product"] == "kettle-2000"
    assert written["en"]["category"] == "kitchen"
    listed = await api.get("/help/articles", headers=api.customer("cus_ana"))
    assert {item["locale"]: item["direction"] for item in listed["items"]} == {
        "en": "ltr",
        "hr": "ltr",
        "cs": "ltr",
        "sl": "ltr",
        "fa": "rtl",
    }
    [persian] = (await api.get("/help/articles", headers=api.customer("cus_ana"), locale="fa"))[
        "items"
    ]
    assert persian["excerpt"] == PERSIAN["body"]
    first = await api.get("/help/articles", limit=3)
    assert len(first["items"]) == 3
    rest = await api.get("/help/articles", limit=3, cursor=first["next_cursor"])
    assert len(rest["items"]) == 2
    assert rest["next_cursor"] is None
    assert {*ids(first["items"]), *ids(rest["items"])} == {a["id"] for a in written.values()}


async def test_a_customer_reads_published_articles_and_never_a_draft(api: Api) -> None:
    live = await published(api, BILL)
    draft = await create(api, DELIVERY)
    customer = api.customer("cus_ana")

    hidden = await api.http.get(f"{ARTICLES}/{draft['id']}", headers=customer)
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == PROBLEM
    assert (await api.http.get(f"{ARTICLES}/{draft['id']}", headers=api.agent)).status_code == 200
    assert (await api.http.get(f"{ARTICLES}/{live['id']}", headers=customer)).status_code == 200

    assert ids((await api.get("/help/articles", headers=customer))["items"]) == [live["id"]]
    staff_list = await api.get("/help/articles", headers=api.agent)
    assert ids(staff_list["items"]) == [draft["id"], live["id"]]  # newest first
    assert ids((await api.get("/help/articles", status="draft"))["items"]) == [draft["id"]]
    asked = await api.http.get(ARTICLES, params={"status": "draft"}, headers=customer)
    assert asked.status_code == 422
    assert asked.headers["content-type"] == PROBLEM
    # Search covers published articles only, for staff too.
    assert ids(await search(api, "povrat robe ", headers=api.agent)) == []

    unpublished = await api.http.post(f"{ARTICLES}/{live['id']}/unpublish", headers=api.agent)
    assert unpublished.json()["status"] == "draft"
    assert (await api.http.get(f"{ARTICLES}/{live['id']}", headers=customer)).status_code == 404
    assert await search(api, "račun") == []


async def test_a_customer_cannot_write_articles(api: Api) -> None:
    customer = api.customer("cus_ana")
    refused = await api.http.post(ARTICLES, json=BILL, headers=customer)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    assert "admin, agent" in refused.json()["detail"]

    article = await create(api, BILL)
    path = f"{ARTICLES}/{article['id']}"
    for method, url, body in [
        ("PATCH", path, {"title": "Hacked"}),
        ("POST", f"{path}/publish", None),
        ("POST", f"{path}/unpublish", None),
        ("DELETE", path, None),
    ]:
        response = await api.http.request(method, url, json=body, headers=customer)
        assert response.status_code == 403, (method, url)
        assert response.headers["content-type"] == PROBLEM
    assert (await api.http.get(path, headers=api.agent)).json()["title"] == BILL["title"]
    assert (await api.http.get(ARTICLES)).status_code == 401


async def test_bad_input_is_422_problem_json(api: Api) -> None:
    for bad in [
        BILL | {"locale": "de"},
        BILL | {"title": "   "},
        BILL | {"title": ""},
        BILL | {"kind": "rumour"},
        BILL | {"body": ""},
        BILL | {"tags": [f"t{n}" for n in range(21)]},
        BILL | {"status": "published"},  # publishing is its own step
        {key: value for key, value in BILL.items() if key != "locale"},
    ]:
        response = await api.http.post(ARTICLES, json=bad, headers=api.agent)
        assert response.status_code == 422, bad
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"], bad

    article = await create(api, BILL)
    for patch in [{"locale": "xx"}, {"title": None}, {"kind": "rumour"}, {"title": " "}]:
        response = await api.http.patch(
            f"{ARTICLES}/{article['id']}", json=patch, headers=api.agent
        )
        assert response.status_code == 422, patch
        assert response.headers["content-type"] == PROBLEM
    for params in [{"q": "račun", "locale": "de"}, {"q": ""}, {"kind": "rumour"}]:
        response = await api.http.get(ARTICLES, params=params, headers=api.agent)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == PROBLEM


async def test_staff_revise_with_if_match_and_delete(api: Api) -> None:
    article = await published(api, BILL)
    path = f"{ARTICLES}/{article['id']}"

    revised = await api.http.patch(
        path, json={"title": "Plaćanje računa karticom"}, headers=api.agent | {"If-Match": '"2"'}
    )
    assert revised.status_code == 200, revised.text
    assert revised.json()["version"] == 3
    assert revised.json()["status"] == "published"
    assert revised.json()["body"] == BILL["body"]
    stale = await api.http.patch(
        path, json={"title": "Lost update"}, headers=api.agent | {"If-Match": '"2"'}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == PROBLEM
    assert stale.json()["current_version"] == 3
    assert [hit["title"] for hit in await search(api, "karticom ")] == ["Plaćanje računa karticom"]

    assert (await api.http.delete(path, headers=api.admin)).status_code == 204
    assert (await api.http.get(path, headers=api.agent)).status_code == 404
    assert (await api.http.delete(path, headers=api.admin)).status_code == 404
    assert await search(api, "karticom ") == []


async def test_croatian_search_finds_with_and_without_diacritics_best_match_first(
    api: Api,
) -> None:
    bill = await published(api, BILL)
    delivery = await published(api, DELIVERY)
    await published(api, COMPLAINT_HOWTO)
    await published(api, REFUNDS)

    for q in ("račun", "racun", "RAČUN", "računa ", "racuna "):  # inflected: the same stem
        hits = await search(api, q, locale="hr")
        assert ids(hits) == [bill["id"], delivery["id"]], q
        assert hits[0]["score"] > hits[1]["score"] > 0
        assert hits[0]["excerpt"].startswith("Račun možete platiti")
    assert ids(await search(api, "racun")) == [bill["id"], delivery["id"]]  # any locale
    assert await search(api, "račun", locale="en") == []
    assert await search(api, "račun", kind="best_practice") == []
    assert ids(await search(api, "povrat robe ", limit=1)) == [delivery["id"]]


async def test_the_word_being_typed_matches_as_a_prefix(api: Api) -> None:
    howto = await published(api, COMPLAINT_HOWTO)
    bill = await published(api, BILL)
    await published(api, REFUNDS)

    assert ids(await search(api, "reklam")) == [howto["id"]]
    assert ids(await search(api, "kako plat", locale="hr")) == [bill["id"]]
    assert await search(api, "reklam ") == []  # a finished word is a whole word
    assert ids(await search(api, "refu", locale="en")) != []

    response = await api.http.get(
        "/api/v1/help/suggestions",
        params={"q": "Želim reklam", "locale": "hr"},
        headers=api.customer("cus_ana"),
    )
    assert response.status_code == 200, response.text
    [suggestion] = response.json()
    assert suggestion["id"] == howto["id"]
    assert suggestion["title"] == "Reklamacija proizvoda"
    assert suggestion["direction"] == "ltr"


async def test_a_persian_query_finds_the_persian_article_right_to_left(api: Api) -> None:
    persian = await published(api, PERSIAN)
    await published(api, BILL)

    for q in ("شکایت", "ثبت شکایت ", "شكايت"):  # the last typed on an Arabic keyboard
        [hit] = await search(api, q)
        assert hit["id"] == persian["id"], q
        assert hit["direction"] == "rtl"
        assert hit["locale"] == "fa"
    response = await api.http.get(
        "/api/v1/help/suggestions", params={"q": "شکا"}, headers=api.customer("cus_ana")
    )
    assert [(s["id"], s["direction"]) for s in response.json()] == [(persian["id"], "rtl")]


async def test_another_instance_searches_what_is_stored(
    api: Api, complaints_settings: ComplaintsSettings, clock: DrivenClock
) -> None:
    async with running(complaints_settings, clock) as other:
        assert await search(other, "račun") == []  # its index is built, empty

        bill = await published(api, BILL)
        assert ids(await search(other, "račun")) == [bill["id"]]

        await api.http.patch(
            f"{ARTICLES}/{bill['id']}", json={"title": "Uplatnica"}, headers=api.agent
        )
        assert [hit["title"] for hit in await search(other, "uplatnica ")] == ["Uplatnica"]

        await api.http.post(f"{ARTICLES}/{bill['id']}/unpublish", headers=api.agent)
        assert await search(other, "račun") == []

        # And the other way round: written there, found here.
        refunds = await published(other, REFUNDS)
        assert ids(await search(api, "refunds ")) == [refunds["id"]]


def test_the_index_stems_each_language_and_filters_by_kind() -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def article(article_id: str, body: dict[str, Any]) -> Article:
        return Article.model_validate(
            {**body, "id": article_id, "status": "published", "created_at": now}
            | {"updated_at": now, "created_by": "ana", "updated_by": "ana"}
        )

    index = ArticleIndex(
        [
            article("en", REFUNDS),
            article("cs", CZECH),
            article("sl", SLOVENE),
            article("hr", BILL | {"body": "Đak plaća račune."}),
        ],
        version=1,
    )

    def found(q: str, **filters: Any) -> list[str]:
        return [hit.article.id for hit in index.search(q, **filters)]

    assert found("refunded ") == ["en"]  # english stems
    assert found("reklamaci ") == ["cs"]  # czech stems
    assert found("izdelek ") == ["sl"]  # slovenian: as written
    assert found("dak ") == ["hr"]  # đ folds to d
    assert found("refund ", kind=ArticleKind.FAQ) == []
    assert found("refund ", locales=[Locale.HR]) == []
    assert found("  !? ") == []
