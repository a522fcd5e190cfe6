"""Merging two profiles, its rules: how a source's fields fold into a target, what the
target gained, and how an undo takes it away again (pure: no I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.profiles.domain import Customer

LIST_FIELDS = ("emails", "phones", "tags")
MAP_FIELDS = ("external_ids", "attributes")
FILLED_FIELDS = ("given_name", "family_name", "preferred_name", "address", "birthday")


class Gains(BaseModel):
    """What a merge added to the target: what an undo takes away again."""

    lists: dict[str, list[str]] = Field(default_factory=dict)
    maps: dict[str, dict[str, Any]] = Field(default_factory=dict)
    filled: dict[str, Any] = Field(default_factory=dict)


def fold_into(target: Customer, source: Customer, now: datetime) -> tuple[Customer, Gains]:
    """The target with what only the source knew; the target's own values win."""
    gains = Gains()
    changes: dict[str, Any] = {}
    for name in LIST_FIELDS:
        mine: list[str] = getattr(target, name)
        added = [value for value in getattr(source, name) if value not in mine]
        if added:
            gains.lists[name] = added
            changes[name] = [*mine, *added]
    for name in MAP_FIELDS:
        own: dict[str, Any] = getattr(target, name)
        new = {key: value for key, value in getattr(source, name).items() if key not in own}
        if new:
            gains.maps[name] = new
            changes[name] = {**own, **new}
    for name in FILLED_FIELDS:
        value = getattr(source, name)
        if getattr(target, name) is None and value is not None:
            dumped = value.model_dump() if isinstance(value, BaseModel) else value
            gains.filled[name] = dumped
            changes[name] = dumped
    return target.with_changes(changes, now), gains


def take_back(target: Customer, gains: Gains, now: datetime) -> Customer:
    """The target without what a merge gave it (values changed since are kept)."""
    changes: dict[str, Any] = {}
    for name, added in gains.lists.items():
        changes[name] = [value for value in getattr(target, name) if value not in added]
    for name, added_map in gains.maps.items():
        current: dict[str, Any] = getattr(target, name)
        changes[name] = {k: v for k, v in current.items() if added_map.get(k, object()) != v}
    for name, value in gains.filled.items():
        current_value = getattr(target, name)
        dumped = (
            current_value.model_dump() if isinstance(current_value, BaseModel) else current_value
        )
        if dumped == value:
            changes[name] = None
    return target.with_changes(changes, now)


class MergeResult(BaseModel):
    merge_id: str
    target: Customer
    source: Customer
    moved: dict[str, int]
