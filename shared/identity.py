"""Customer identity as a service knows it: who was merged into whom, who was erased.

Profiles owns identity; every other service keeps what profiles' ``crm.customer.merged``
and ``crm.customer.erased`` events told it, in documents of its own that name the survivor
(``merged_into``) and mark an erasure. Following a merge chain is written here once, over
whatever holds those links: a unit of work, a batch's memory, a collection.

- :func:`follow` (and :func:`follow_known`, for links already in memory) walks from an id
  to where its chain ends: a live profile, an erased one, an id nobody has heard of, or a
  chain too long to be anything but a data error (:data:`MAX_MERGE_HOPS`). What to do at
  each end (raise, file under the last id, drop) stays the caller's decision.
- :func:`merged_sources` (and :func:`merged_sources_known`) walks the other way: the
  profiles merged into an id, directly or through others.
- :func:`link_of` reads the link of a stored document that keeps ``merged_into`` and an
  erasure mark.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

# Merges rarely chain; a longer chain would be a bug upstream.
MAX_MERGE_HOPS = 10


class Link(NamedTuple):
    """What a service knows of one customer id."""

    merged_into: str | None = None
    erased: bool = False


class End(StrEnum):
    LIVE = "live"  # neither merged away nor erased
    ERASED = "erased"
    UNKNOWN = "unknown"  # no link for this id: never heard of (or not yet)
    TOO_LONG = "too_long"  # more than MAX_MERGE_HOPS merges: a data error


class Reached(NamedTuple):
    """Where a chain ended: the last id reached, and how it ended."""

    customer_id: str
    end: End


def _step(current: str, link: Link | None) -> Reached | str:
    """The end reached at ``current``, or the next id to look at."""
    if link is None:
        return Reached(current, End.UNKNOWN)
    if link.erased:
        return Reached(current, End.ERASED)
    if link.merged_into:
        return link.merged_into
    return Reached(current, End.LIVE)


async def follow(customer_id: str, link: Callable[[str], Awaitable[Link | None]]) -> Reached:
    """Follow ``customer_id``'s merges, asking ``link`` for each id on the way."""
    current = customer_id
    for _ in range(MAX_MERGE_HOPS):
        step = _step(current, await link(current))
        if isinstance(step, Reached):
            return step
        current = step
    return Reached(current, End.TOO_LONG)


def follow_known(customer_id: str, link: Callable[[str], Link | None]) -> Reached:
    """:func:`follow` over links already in memory."""
    current = customer_id
    for _ in range(MAX_MERGE_HOPS):
        step = _step(current, link(current))
        if isinstance(step, Reached):
            return step
        current = step
    return Reached(current, End.TOO_LONG)


async def merged_sources(
    customer_id: str,
    merged_into: Callable[[list[str]], Awaitable[list[str]]],
    *,
    limit: int = 100,
) -> list[str]:
    """The ids merged into ``customer_id``, directly or through others, a level at a time
    until ``limit`` are found (the last level read is kept whole: a survivor's opt-outs
    must not lose a source); ``merged_into(ids)`` answers the ids merged into any of
    ``ids``."""
    found: list[str] = []
    frontier = [customer_id]
    while frontier and len(found) < limit:
        frontier = _new_level(await merged_into(frontier), found, customer_id)
        found.extend(frontier)
    return found


def merged_sources_known(
    customer_id: str, merged_into: Callable[[list[str]], list[str]], *, limit: int = 100
) -> list[str]:
    """:func:`merged_sources` over links already in memory."""
    found: list[str] = []
    frontier = [customer_id]
    while frontier and len(found) < limit:
        frontier = _new_level(merged_into(frontier), found, customer_id)
        found.extend(frontier)
    return found


def _new_level(sources: list[str], found: list[str], customer_id: str) -> list[str]:
    """The sources not met before (a loop in bad data is not followed twice)."""
    return [
        source for source in dict.fromkeys(sources) if source not in found and source != customer_id
    ]


def link_of(document: Mapping[str, Any] | None, *, erased: str = "erased") -> Link | None:
    """The link a stored document keeps (``merged_into``; ``erased`` names its erasure
    mark: a flag or a time, set when erased)."""
    if document is None:
        return None
    mark = document.get(erased)
    return Link(
        merged_into=str(document["merged_into"]) if document.get("merged_into") else None,
        erased=mark is not None and mark is not False,
    )
