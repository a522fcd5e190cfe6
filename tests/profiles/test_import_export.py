"""CSV import (valid rows written, bad rows reported, nothing half-written) and export."""

from __future__ import annotations

import csv
import io
from typing import Any

from tests.profiles.conftest import Api
from tests.profiles.test_customers import create

HEADER = (
    "given_name,family_name,emails,phones,locale,time_zone,birthday,tags,external_ids,"
    "attr.loyalty_card\n"
)


def csv_body(*rows: str) -> bytes:
    return (HEADER + "".join(f"{row}\n" for row in rows)).encode()


async def import_csv(api: Api, body: bytes, **params: Any) -> dict[str, Any]:
    response = await api.http.post(
        "/api/v1/customers/import",
        content=body,
        params=params,
        headers={**api.agent, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_import_writes_valid_rows_and_reports_bad_ones_by_row_number(api: Api) -> None:
    existing = await create(api)  # ana.horvat@example.hr, +385912345678, eshop:1001
    body = csv_body(
        "Petra,Novak,petra@example.si,+386 40 123 456,sl,Europe/Ljubljana,1985-02-01,"
        "vip;new,pos:17,LC-000001",
        "Bad,Phone,bad@example.si,12345,sl,,,,,",
        "Jan,Dvořák,jan@example.cz,,cs,Europe/Prague,,,,",
        "Dup,Row,jan@example.cz,,cs,,,,,",
        "Ana,Horvat,ana.horvat@example.hr,,hr,,,gold,,LC-999999",
        ",,,,,,,,,",
        "Anna,Horvat,,+385 91 234 5678,hr,,,,,",
        "Zone,Wrong,zone@example.cz,,cs,Europe/Atlantis,,,,",
        "Card,Wrong,card@example.cz,,cs,,,,,not-a-card",
    )
    dry = await import_csv(api, body, dry_run="true")
    assert dry["created"] == 2
    assert (await api.http.get("/api/v1/customers", headers=api.agent)).json()["items"][0][
        "id"
    ] == existing["id"]  # a dry run writes nothing

    result = await import_csv(api, body)

    assert result["created"] == 2
    assert result["updated_ids"] == [existing["id"]]  # row 6 names her by e-mail
    errors = {error["row"]: error["reason"] for error in result["errors"]}
    assert sorted(errors) == [3, 5, 7, 8, 9, 10]
    assert "international form" in errors[3]
    assert "also in row 4" in errors[5]
    assert "needs a name, an e-mail, a phone or an external id" in errors[7]
    assert "also updated by row 6" in errors[8]  # row 8 names her by phone
    assert "IANA" in errors[9]
    assert "attribute" in errors[10]
    petra = (
        await api.http.get(
            "/api/v1/customers", params={"email": "petra@example.si"}, headers=api.agent
        )
    ).json()["items"][0]
    assert petra["phones"] == ["+38640123456"]
    assert petra["tags"] == ["vip", "new"]
    assert petra["external_ids"] == {"pos": "17"}
    assert petra["attributes"] == {"loyalty_card": "LC-000001"}
    bad = await api.http.get(
        "/api/v1/customers", params={"email": "bad@example.si"}, headers=api.agent
    )
    assert bad.json()["items"] == []  # a bad row is not half-written
    ana = (await api.http.get(f"/api/v1/customers/{existing['id']}", headers=api.agent)).json()
    assert ana["attributes"]["loyalty_card"] == "LC-999999"
    assert "gold" in ana["tags"]


async def test_import_of_thousands_of_rows_in_one_request(api: Api) -> None:
    rows = [f"Name{n},Family{n},person{n}@example.hr,,hr,,,,," for n in range(1500)]
    result = await import_csv(api, csv_body(*rows))
    assert result["created"] == 1500
    assert result["failed"] == 0
    again = await import_csv(api, csv_body(*rows))  # the same file again changes nothing
    assert again["unchanged"] == 1500
    assert again["created"] == again["updated"] == 0


async def test_unreadable_files_are_refused_whole(api: Api) -> None:
    for body, content_type, status in (
        (b"shoe_size,given_name\n42,Ana\n", "text/csv", 422),
        (b"\xff\xfe\x00", "text/csv", 422),
        ("\U0008e692d}\r\u00cd".encode(), "text/csv", 422),  # schemathesis: a bare CR, was a 500
        (b"{}", "application/json", 415),
        (b"given_name\n" + b"x" * (6 * 1024 * 1024), "text/csv", 413),
    ):
        response = await api.http.post(
            "/api/v1/customers/import",
            content=body,
            headers={**api.agent, "Content-Type": content_type},
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"


async def test_export_round_trips_through_import(api: Api) -> None:
    await create(api)
    await create(
        api,
        given_name="Reza",
        family_name="Ahmadi",
        emails=["reza@example.ir"],
        phones=[],
        locale="fa-IR",
        time_zone="Asia/Tehran",
        external_ids={"crm": "r-1"},
        attributes={},
    )
    exported = await api.http.get(
        "/api/v1/customers/export", params={"format": "csv"}, headers=api.agent
    )
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {row["given_name"] for row in rows} == {"Ana", "Reza"}
    reza = next(row for row in rows if row["given_name"] == "Reza")
    assert reza["locale"] == "fa-IR"
    assert reza["external_ids"] == "crm:r-1"

    result = await import_csv(api, exported.text.encode())
    assert result["unchanged"] == 2
    assert result["failed"] == 0

    as_json = await api.http.get(
        "/api/v1/customers/export", params={"format": "json"}, headers=api.agent
    )
    assert {item["family_name"] for item in as_json.json()} == {"Horvat", "Ahmadi"}
    customer_token = api.customer(rows[0]["id"])
    forbidden = await api.http.get("/api/v1/customers/export", headers=customer_token)
    assert forbidden.status_code == 403


async def test_likely_duplicates_are_listed_with_reasons(api: Api) -> None:
    ana = await create(api, emails=["ana.horvat+shop@gmail.com"], phones=["+385 91 234 5678"])
    twin = await create(
        api,
        given_name="Ána",
        family_name="Horvat",
        emails=["anahorvat@gmail.com"],
        phones=[],
        external_ids={},
    )
    namesake = await create(
        api,
        given_name="Ana",
        family_name="Horvat",
        emails=["other@example.hr"],
        phones=[],
        external_ids={},
        birthday="1990-04-12",
    )
    stranger = await create(
        api,
        given_name="Ivo",
        family_name="Kovač",
        emails=["ivo@example.hr"],
        phones=[],
        external_ids={},
    )
    response = await api.http.get(f"/api/v1/customers/{ana['id']}/duplicates", headers=api.agent)
    assert response.status_code == 200
    found = {item["customer"]["id"]: item for item in response.json()}
    assert set(found) == {twin["id"], namesake["id"]}
    assert stranger["id"] not in found
    assert "same e-mail address once normalised" in found[twin["id"]]["reasons"]
    assert "same birthday" in found[namesake["id"]]["reasons"]
    assert found[twin["id"]]["score"] > found[namesake["id"]]["score"]


async def test_import_accepts_an_uploaded_file(api: Api) -> None:
    body = csv_body("Mina,Rahimi,mina@example.ir,,fa-IR,Asia/Tehran,,,,")
    response = await api.http.post(
        "/api/v1/customers/import",
        files={"file": ("customers.csv", body, "text/csv")},
        headers=api.agent,
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1
    missing = await api.http.post(
        "/api/v1/customers/import",
        files={"other": ("customers.csv", body, "text/csv")},
        headers=api.agent,
    )
    assert missing.status_code == 422
    assert "`file`" in missing.json()["detail"]
