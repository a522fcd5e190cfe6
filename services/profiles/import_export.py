"""CSV and JSON shapes of profiles, for import and export (pure: no I/O).

One row per customer. List cells (``emails``, ``phones``, ``tags``) separate values with
``;``; ``external_ids`` holds ``system:id`` pairs separated with ``;``; custom attributes
are columns named ``attr.<name>``. An empty cell means "not given": on import it leaves
an existing value as it is. What export writes, import reads back unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from services.profiles.domain import Customer

LIST_SEPARATOR = ";"
ATTRIBUTE_PREFIX = "attr."
ADDRESS_COLUMNS = ("street", "city", "postal_code", "region", "country")
SCALAR_COLUMNS = ("given_name", "family_name", "preferred_name", "locale", "time_zone", "birthday")
LIST_COLUMNS = ("emails", "phones", "tags")
COLUMNS = (
    "id",
    "given_name",
    "family_name",
    "preferred_name",
    "emails",
    "phones",
    *ADDRESS_COLUMNS,
    "locale",
    "time_zone",
    "birthday",
    "tags",
    "external_ids",
)
KNOWN = frozenset(COLUMNS)
MAX_ROWS = 10_000


class CsvError(ValueError):
    """The file as a whole cannot be read (the header, the encoding, its size)."""


@dataclass(frozen=True)
class Row:
    number: int  # as a spreadsheet shows it: the header is row 1
    customer_id: str | None
    changes: dict[str, Any]


@dataclass(frozen=True)
class RowError:
    number: int
    reason: str


def read_rows(text: str) -> Iterator[Row | RowError]:
    """Rows of a CSV file, each turned into profile field changes or an error."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as error:
        raise CsvError(f"not a readable CSV header: {error}") from None
    unknown = [
        name for name in header if name not in KNOWN and not name.startswith(ATTRIBUTE_PREFIX)
    ]
    if unknown:
        raise CsvError(f"unknown columns: {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
    if not header:
        raise CsvError("the file is empty: a header row is expected")
    try:
        for index, cells in enumerate(reader, start=2):
            if index - 1 > MAX_ROWS:
                raise CsvError(f"more than {MAX_ROWS} rows: split the file")
            if None in cells:
                yield RowError(index, "more cells than columns")
                continue
            try:
                yield Row(index, (cells.get("id") or "").strip() or None, _changes(cells))
            except ValueError as error:
                yield RowError(index, str(error))
    except csv.Error as error:
        raise CsvError(f"not a readable CSV file: {error}") from None


def _changes(cells: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for column in SCALAR_COLUMNS:
        if value := (cells.get(column) or "").strip():
            changes[column] = value
    for column in LIST_COLUMNS:
        if value := (cells.get(column) or "").strip():
            changes[column] = [part.strip() for part in value.split(LIST_SEPARATOR) if part.strip()]
    if value := (cells.get("external_ids") or "").strip():
        pairs = {}
        for pair in value.split(LIST_SEPARATOR):
            system, separator, external = pair.strip().partition(":")
            if not separator or not system or not external:
                raise ValueError(f"external_ids: {pair.strip()!r} is not system:id")
            pairs[system] = external
        changes["external_ids"] = pairs
    address = {c: v.strip() for c in ADDRESS_COLUMNS if (v := cells.get(c) or "").strip()}
    if address:
        changes["address"] = address
    attributes = {
        name.removeprefix(ATTRIBUTE_PREFIX): value
        for name, value in cells.items()
        if name.startswith(ATTRIBUTE_PREFIX) and value not in (None, "")
    }
    if attributes:
        changes["attributes"] = attributes
    return changes


def header_for(customers: Iterable[Customer]) -> list[str]:
    names = sorted({name for customer in customers for name in customer.attributes})
    return [*COLUMNS, *(f"{ATTRIBUTE_PREFIX}{name}" for name in names)]


def to_row(customer: Customer) -> dict[str, str]:
    address = customer.address.model_dump() if customer.address else {}
    row = {
        "id": customer.id,
        "given_name": customer.given_name or "",
        "family_name": customer.family_name or "",
        "preferred_name": customer.preferred_name or "",
        "emails": LIST_SEPARATOR.join(customer.emails),
        "phones": LIST_SEPARATOR.join(customer.phones),
        **{column: address.get(column) or "" for column in ADDRESS_COLUMNS},
        "locale": customer.locale,
        "time_zone": customer.time_zone,
        "birthday": customer.birthday.isoformat() if customer.birthday else "",
        "tags": LIST_SEPARATOR.join(customer.tags),
        "external_ids": LIST_SEPARATOR.join(f"{s}:{v}" for s, v in customer.external_ids.items()),
    }
    for name, value in customer.attributes.items():
        row[f"{ATTRIBUTE_PREFIX}{name}"] = "" if value is None else str(value)
    return row


def write_csv(header: list[str], rows: Iterable[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
