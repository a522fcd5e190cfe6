"""What the portal's pages call, seen from a customer token that is not the data's owner:
every service refuses another customer's data (403, problem+json) whatever the method,
customers never see a hidden community post nor who is behind a nickname, and bad input
is answered with problem+json (422) naming what is wrong. Against the portal's stack, so
the services are wired as the page meets them."""

from __future__ import annotations

import uuid
from typing import Any

from shared.auth import Role
from tests.portal.conftest import PortalStack
from tests.support.api import PROBLEM, ApiClient

COMMUNITY = "/api/v1/community"


async def refused(
    api: ApiClient, method: str, path: str, headers: dict[str, str], status: int, body: Any = None
) -> dict[str, Any]:
    response = await api.http.request(method, path, json=body, headers=headers)
    assert response.status_code == status, (method, path, response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM, (method, path)
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


async def test_a_customer_never_reads_or_changes_another_customers_data(
    stack: PortalStack,
) -> None:
    ana = await stack.new_customer("Ana")
    ivo = await stack.new_customer("Ivo")
    complaint = await stack.complaints.call(
        "POST",
        "/complaints",
        json={"customer_id": ana["id"], "channel": "web", "category": "billing",
              "subject": "Charged twice", "description": "Two charges."},
    )  # fmt: skip
    ivos = stack.profiles.customer(ivo["id"])  # the same token works on every service
    customer = f"/api/v1/customers/{ana['id']}"
    calls: list[tuple[str, str, Any]]
    calls = [
        ("GET", customer, None),
        ("PATCH", customer, {"given_name": "Hijacked"}),
        ("DELETE", customer, None),
        ("GET", f"{customer}/export", None),
        ("GET", f"{customer}/consents", None),
        ("PUT", f"{customer}/consents/email/marketing", {"granted": True}),
        ("GET", f"{customer}/timeline", None),
        ("GET", f"{customer}/ledger", None),
    ]
    for method, path, body in calls:
        await refused(stack.profiles, method, path, ivos, 403, body)
    case = f"/api/v1/complaints/{complaint['id']}"
    calls = [
        ("GET", case, None),
        ("GET", f"{case}/history", None),
        ("POST", f"{case}/comments", {"text": "Not mine"}),
        ("POST", f"{case}/feedback", {"csat": 1}),
        ("POST", f"{case}/reopen", {}),
        ("POST", "/api/v1/complaints", {"customer_id": ana["id"], "channel": "web",
                                         "category": "x", "subject": "s", "description": "d"}),
    ]  # fmt: skip
    for method, path, body in calls:
        await refused(stack.complaints, method, path, ivos, 403, body)
    listed = await stack.complaints.get("/complaints", ivos)
    assert complaint["id"] not in [item["id"] for item in listed["items"]]
    calls = [
        ("GET", f"{customer}/preferences", None),
        ("PUT", f"{customer}/preferences", {"opt_outs": [], "quiet_hours_off": True}),
        ("GET", f"{customer}/inbox", None),
        ("POST", f"{customer}/inbox/read-all", None),
        ("POST", f"{customer}/inbox/m-1/read", None),
        ("GET", "/api/v1/deliveries?customer_id=" + ana["id"], None),
    ]
    for method, path, body in calls:
        await refused(stack.notifications, method, path, ivos, 403, body)
    # Nothing changed for Ana.
    assert (await stack.profiles.get(f"/customers/{ana['id']}"))["given_name"] == "Ana"
    assert (await stack.complaints.get(f"/complaints/{complaint['id']}"))["comments"] == []
    prefs = await stack.notifications.get(f"/customers/{ana['id']}/preferences")
    assert prefs["quiet_hours_off"] is False


async def test_community_member_data_and_hidden_posts_stay_out_of_customers_reach(
    stack: PortalStack,
) -> None:
    api = stack.complaints
    ana, ivo = f"c-ana-{uuid.uuid4().hex[:8]}", f"c-ivo-{uuid.uuid4().hex[:8]}"
    anas, ivos = api.customer(ana), api.customer(ivo)
    question = await api.call(
        "POST", "/community/questions", anas,
        json={"locale": "en", "title": f"Warranty {uuid.uuid4().hex[:6]}", "body": "How long?"},
    )  # fmt: skip
    answer = await api.call(
        "POST", f"/community/questions/{question['id']}/answers", ivos, json={"body": "Two years."}
    )
    thread = f"{COMMUNITY}/questions/{question['id']}"
    # Whose post it is stays with staff: a customer sees a nickname, no member id.
    seen = await api.get(f"/community/questions/{question['id']}", ivos)
    assert seen["author"]["member_id"] is None
    assert seen["answers"][0]["author"]["member_id"] is None
    assert (await api.get(f"/community/questions/{question['id']}"))["author"]["member_id"] == ana
    await refused(api, "GET", f"{COMMUNITY}/members/{ana}", ivos, 403)
    await refused(api, "GET", f"{COMMUNITY}/reports", ivos, 403)
    # Ivo may not act on Ana's question as its asker or author, nor moderate.
    await refused(api, "PUT", f"{thread}/accepted-answer", ivos, 403, {"answer_id": answer["id"]})
    await refused(api, "PATCH", thread, ivos, 403, {"title": "Hijacked"})
    await refused(api, "DELETE", thread, ivos, 403)
    await refused(api, "PATCH", f"{COMMUNITY}/answers/{answer['id']}", anas, 403, {"body": "x"})
    await refused(api, "POST", f"{COMMUNITY}/posts/{question['id']}/hide", ivos, 403)
    # Hidden by staff: gone for every customer, its author too; staff still see it.
    await api.call("POST", f"/community/posts/{question['id']}/hide", json={"reason": "spam"})
    for headers in (anas, ivos):
        await refused(api, "GET", thread, headers, 404)
        await refused(api, "GET", f"{COMMUNITY}/answers/{answer['id']}", headers, 404)
        await refused(api, "PUT", f"{COMMUNITY}/posts/{question['id']}/vote", headers, 404,
                      {"value": "up"})  # fmt: skip
        listed = await api.get("/community/questions", headers, limit=100)
        assert question["id"] not in [item["id"] for item in listed["items"]]
        found = await api.get("/community/questions", headers, q=question["title"])
        assert question["id"] not in [item["id"] for item in found["items"]]
        await refused(api, "GET", f"{COMMUNITY}/questions?hidden=true", headers, 422)
    assert (await api.get(f"/community/questions/{question['id']}"))["hidden"] is True


async def test_bad_input_from_the_portal_gets_problem_json(stack: PortalStack) -> None:
    customer = await stack.new_customer("Mia")
    mine = stack.profiles.customer(customer["id"])
    url = f"/api/v1/customers/{customer['id']}"
    complaint = await stack.complaints.call(
        "POST",
        "/complaints",
        json={"customer_id": customer["id"], "channel": "web", "category": "other",
              "subject": "Question", "description": "Hello"},
    )  # fmt: skip
    cases: list[tuple[ApiClient, str, str, Any]] = [
        (stack.profiles, "PATCH", url, {"emails": ["not-an-address"]}),
        (stack.profiles, "PUT", f"{url}/consents/email/marketing", {"granted": "maybe"}),
        (stack.complaints, "POST", f"/api/v1/complaints/{complaint['id']}/comments", {"text": ""}),
        (stack.complaints, "POST", f"{COMMUNITY}/questions",
         {"locale": "xx", "title": "", "body": ""}),
        (stack.complaints, "PUT", f"{COMMUNITY}/members/me", {"nickname": "x"}),
        (stack.complaints, "PUT", f"{COMMUNITY}/posts/cq-1/vote", {"value": "sideways"}),
        (stack.complaints, "POST", f"{COMMUNITY}/posts/cq-1/reports", {"reason": ""}),
        (stack.notifications, "PUT", f"{url}/preferences",
         {"opt_outs": [{"channel": "pigeon", "purpose": "marketing"}]}),
        (stack.notifications, "PUT", f"{url}/preferences",
         {"quiet_hours": {"start": "25:00", "end": "07:00"}}),
    ]  # fmt: skip
    for api, method, path, body in cases:
        problem = await refused(api, method, path, mine, 422, body)
        assert problem["errors"], (method, path)
    # A rating out of range is refused before the resolution is even looked at.
    problem = await refused(
        stack.complaints, "POST", f"/api/v1/complaints/{complaint['id']}/feedback", mine, 422,
        {"csat": 7, "nps": 11},
    )  # fmt: skip
    assert {tuple(error["location"])[-1] for error in problem["errors"]} >= {"csat", "nps"}
    # Rating or reopening a request not resolved yet is a conflict, said as problem+json.
    await refused(stack.complaints, "POST", f"/api/v1/complaints/{complaint['id']}/feedback",
                  mine, 409, {"csat": 5})  # fmt: skip
    await refused(stack.complaints, "POST", f"/api/v1/complaints/{complaint['id']}/reopen",
                  mine, 409, {})  # fmt: skip
    # The portal's requests carry no service role: a service token posts nothing.
    await refused(stack.complaints, "PUT", f"{COMMUNITY}/members/me",
                  stack.complaints.as_(Role.SERVICE), 403, {"nickname": "Robot"})  # fmt: skip
