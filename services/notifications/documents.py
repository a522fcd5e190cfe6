"""A write as the batch queues it and as it sees it: one description, two uses.

A batch changes the documents it loaded in memory (so each event sees what the earlier
ones did) and queues the same change for its unit of work (so the store gets it at
commit, in one ``bulk_write`` per collection). Describing each change once, as a
MongoDB filter and update, and applying that description both ways keeps the two from
drifting apart. Pure: only the operators the notifications service uses are understood
(``$set``, ``$unset``, ``$inc``, ``$addToSet``, ``$pull``, ``$setOnInsert``; ``$in``,
``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$or``), with MongoDB's meaning.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pymongo import UpdateMany, UpdateOne

Document = dict[str, Any]
_MISSING = object()


@dataclass(frozen=True)
class Write:
    """An update of the documents matching ``filter`` (one or ``many``)."""

    filter: Mapping[str, Any]
    update: Mapping[str, Any]
    upsert: bool = False
    many: bool = False
    # The ``_id`` the write is about, when the filter names one.
    key: Any = field(default=None)

    def operation(self) -> UpdateOne | UpdateMany:
        if self.many:
            return UpdateMany(dict(self.filter), dict(self.update), upsert=self.upsert)
        return UpdateOne(dict(self.filter), dict(self.update), upsert=self.upsert)


def update_one(
    key: Any, update: Mapping[str, Any], *, upsert: bool = False, **conditions: Any
) -> Write:
    return Write({"_id": key, **conditions}, update, upsert=upsert, key=key)


def update_many(filter: Mapping[str, Any], update: Mapping[str, Any]) -> Write:
    return Write(filter, update, many=True)


def apply(documents: dict[Any, Document | None], write: Write) -> None:
    """Change ``documents`` (by ``_id``; ``None``: known absent) as ``write`` changes the
    collection, as far as these documents go. A document never read stays unknown: the
    store has it right, and reading it later finds it so."""
    if write.key is not None and not write.many:
        if write.key not in documents:
            return
        document = documents[write.key]
        if document is not None:
            if matches(document, write.filter):
                documents[write.key] = updated(document, write.update)
            # (one that is there but does not match is not replaced: MongoDB would refuse
            # the upsert, a duplicate ``_id``)
        elif write.upsert:
            inserted = {
                name: value
                for name, value in write.filter.items()
                if not name.startswith("$") and not _is_operator(value)
            }
            documents[write.key] = updated(inserted, write.update, inserting=True)
        return
    for key, document in list(documents.items()):
        if document is not None and matches(document, write.filter):
            documents[key] = updated(document, write.update)
            if not write.many:
                return


def matches(document: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    for name, condition in filter.items():
        if name == "$or":
            if not any(matches(document, alternative) for alternative in condition):
                return False
            continue
        if not _holds(_get(document, name), condition):
            return False
    return True


def updated(
    document: Mapping[str, Any], update: Mapping[str, Any], *, inserting: bool = False
) -> Document:
    result = copy.deepcopy(dict(document))
    for operator, fields in update.items():
        if operator == "$setOnInsert" and not inserting:
            continue
        for name, value in fields.items():
            _change(result, operator, name, copy.deepcopy(value))
    return result


def _change(document: Document, operator: str, name: str, value: Any) -> None:
    if operator in ("$set", "$setOnInsert"):
        _put(document, name, value)
    elif operator == "$unset":
        _remove(document, name)
    elif operator == "$inc":
        current = _get(document, name)
        _put(document, name, (0 if current in (None, _MISSING) else current) + value)
    elif operator == "$addToSet":
        current = list(_present(_get(document, name)) or [])
        added = value["$each"] if isinstance(value, Mapping) and "$each" in value else [value]
        current.extend(item for item in _unique(added) if item not in current)
        _put(document, name, current)
    elif operator == "$pull":
        current = _present(_get(document, name))
        if isinstance(current, list):
            _put(document, name, [item for item in current if item != value])
    else:
        raise ValueError(f"{operator} is not understood in memory")


def _holds(value: Any, condition: Any) -> bool:
    if not _is_operator(condition):
        return _equals(value, condition)
    for operator, operand in condition.items():
        if operator == "$in":
            if not any(_equals(value, candidate) for candidate in operand):
                return False
        elif operator == "$ne":
            if _equals(value, operand):
                return False
        elif operator in ("$gt", "$gte", "$lt", "$lte"):
            present = _present(value)
            if present is None or not _compare(present, operator, operand):
                return False
        else:
            raise ValueError(f"{operator} is not understood in memory")
    return True


def _compare(value: Any, operator: str, operand: Any) -> bool:
    try:
        if operator == "$gt":
            return bool(value > operand)
        if operator == "$gte":
            return bool(value >= operand)
        if operator == "$lt":
            return bool(value < operand)
        return bool(value <= operand)
    except TypeError:
        return False


def _equals(value: Any, expected: Any) -> bool:
    """MongoDB equality: a missing field equals null; an array matches a value it holds."""
    present = _present(value)
    if isinstance(present, list) and not isinstance(expected, list):
        return expected in present
    return bool(present == expected)


def _is_operator(value: Any) -> bool:
    return isinstance(value, Mapping) and any(str(key).startswith("$") for key in value)


def _present(value: Any) -> Any:
    return None if value is _MISSING else value


def _unique(values: Iterable[Any]) -> list[Any]:
    unique: list[Any] = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return unique


def _get(document: Mapping[str, Any], name: str) -> Any:
    current: Any = document
    for part in name.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _put(document: Document, name: str, value: Any) -> None:
    *parents, last = name.split(".")
    current = document
    for part in parents:
        child = current.get(part)
        if not isinstance(child, dict):
            child = {}
            current[part] = child
        current = child
    current[last] = value


def _remove(document: Document, name: str) -> None:
    *parents, last = name.split(".")
    current: Any = document
    for part in parents:
        current = current.get(part) if isinstance(current, dict) else None
    if isinstance(current, dict):
        current.pop(last, None)
