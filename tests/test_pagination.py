"""The page builder every list endpoint uses (shared.pagination): cut, cursor, scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import InvalidInput
from shared.pagination import NEXT_CURSOR, Page, cursor_after, decode_cursor, page_of

START = datetime(2024, 5, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Item:
    id: str
    at: datetime


def items(count: int) -> list[Item]:
    """Newest first, as the stores page them."""
    return [Item(f"i{n}", START - timedelta(minutes=n)) for n in range(count)]


def position(item: Item) -> tuple[datetime, str]:
    return item.at, item.id


def test_a_full_page_has_a_cursor_to_its_last_item() -> None:
    found = items(4)  # fetched with limit + 1: there is more

    page, cursor = page_of(found, 3, position)

    assert page == found[:3]
    assert cursor is not None
    assert decode_cursor(cursor) == position(found[2])


def test_a_short_or_exact_page_is_the_last() -> None:
    assert page_of(items(2), 3, position) == (items(2), None)
    assert page_of(items(3), 3, position) == (items(3), None)
    assert page_of([], 3, position) == ([], None)


def test_the_scope_is_kept_and_checked() -> None:
    page, cursor = page_of(items(3), 2, position, "deliveries")

    assert cursor is not None
    assert decode_cursor(cursor, "deliveries") == position(page[-1])
    with pytest.raises(InvalidInput):
        decode_cursor(cursor)  # a cursor of another order is refused
    with pytest.raises(InvalidInput):
        decode_cursor(cursor, "inbox")


def test_paging_with_the_cursors_visits_every_item_once() -> None:
    everything = items(7)
    seen: list[Item] = []
    cursor: str | None = None
    while True:
        after = decode_cursor(cursor, "scope")
        rest = [i for i in everything if after is None or position(i) < after]
        page, cursor = page_of(rest[:3], 2, position, "scope")  # a store's limit + 1
        seen += page
        if cursor is None:
            break
    assert seen == everything


def test_a_page_cut_by_its_use_case_gets_the_same_cursor() -> None:
    found = items(4)
    page, cursor = page_of(found, 3, position, "s")

    assert cursor_after(page, True, position, "s") == cursor
    assert cursor_after(page, False, position, "s") is None
    assert cursor_after([], True, position, "s") is None


def test_the_page_model_publishes_its_items_and_the_next_cursor() -> None:
    class ItemPage(Page[int]):
        pass

    schema = ItemPage.model_json_schema()

    assert schema["title"] == "ItemPage"
    assert schema["required"] == ["items", "next_cursor"]
    assert schema["properties"]["next_cursor"]["description"] == NEXT_CURSOR
    assert ItemPage(items=[1, 2], next_cursor=None).model_dump() == {
        "items": [1, 2],
        "next_cursor": None,
    }
