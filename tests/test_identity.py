"""Following merge chains, written once (shared.identity): every end of a chain."""

from __future__ import annotations

from shared.identity import (
    MAX_MERGE_HOPS,
    End,
    Link,
    Reached,
    follow,
    follow_known,
    link_of,
    merged_sources,
    merged_sources_known,
)

LINKS = {
    "a": Link(merged_into="b"),
    "b": Link(merged_into="c"),
    "c": Link(),
    "gone": Link(erased=True),
    "to-gone": Link(merged_into="gone"),
    "to-nowhere": Link(merged_into="never-heard-of"),
}


async def test_a_chain_ends_live_erased_unknown_or_too_long() -> None:
    async def link(customer_id: str) -> Link | None:
        return LINKS.get(customer_id)

    assert await follow("a", link) == Reached("c", End.LIVE)
    assert await follow("c", link) == Reached("c", End.LIVE)
    assert await follow("to-gone", link) == Reached("gone", End.ERASED)
    assert await follow("to-nowhere", link) == Reached("never-heard-of", End.UNKNOWN)
    loop = {"x": Link(merged_into="y"), "y": Link(merged_into="x")}
    assert follow_known("x", loop.get).end is End.TOO_LONG
    # The same walk over links in memory.
    assert [follow_known(key, LINKS.get) for key in ("a", "to-gone")] == [
        Reached("c", End.LIVE),
        Reached("gone", End.ERASED),
    ]


async def test_a_chain_of_max_hops_is_followed_and_one_more_is_not() -> None:
    chain = {f"p{n}": Link(merged_into=f"p{n + 1}") for n in range(MAX_MERGE_HOPS)}
    chain[f"p{MAX_MERGE_HOPS}"] = Link()
    assert follow_known("p1", chain.get) == Reached(f"p{MAX_MERGE_HOPS}", End.LIVE)
    assert follow_known("p0", chain.get).end is End.TOO_LONG


async def test_merged_sources_walks_back_through_every_level_once() -> None:
    into = {"b": ["a"], "c": ["b", "d"], "d": ["c"]}  # (d <-> c: a loop is not followed twice)

    async def merged_into(ids: list[str]) -> list[str]:
        return [source for target in ids for source in into.get(target, [])]

    assert await merged_sources("c", merged_into) == ["b", "d", "a"]
    assert await merged_sources("c", merged_into, limit=2) == ["b", "d"]
    # The level that reaches the limit is kept whole (no source of a survivor is lost).
    assert await merged_sources("c", merged_into, limit=1) == ["b", "d"]
    assert await merged_sources("a", merged_into) == []
    assert merged_sources_known("c", lambda ids: [s for t in ids for s in into.get(t, [])]) == [
        "b",
        "d",
        "a",
    ]


def test_a_stored_link_reads_a_flag_or_a_time_as_erased() -> None:
    assert link_of(None) is None
    assert link_of({"_id": "a", "merged_into": "b"}) == Link("b", erased=False)
    assert link_of({"_id": "a", "erased": False, "merged_into": None}) == Link(None, False)
    assert link_of({"_id": "a", "erased_at": "2026-01-01"}, erased="erased_at") == Link(None, True)
