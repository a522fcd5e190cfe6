"""The portal's languages (help centre and community), the way each is laid out, and
the rules shared by what people write there (articles, questions)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Self

from pydantic import BaseModel, model_validator


class Locale(StrEnum):
    """The portal's languages."""

    EN = "en"
    HR = "hr"
    CS = "cs"
    SL = "sl"
    FA = "fa"


class Direction(StrEnum):
    LTR = "ltr"
    RTL = "rtl"


RIGHT_TO_LEFT = frozenset({Locale.FA})


def locale_or_english(tag: str | None) -> Locale:
    """The portal language ``tag`` asks for (``hr``, ``hr-HR``); English for any other."""
    primary = (tag or "").strip().replace("_", "-").split("-")[0].lower()
    try:
        return Locale(primary)
    except ValueError:
        return Locale.EN


def direction_of(locale: Locale) -> Direction:
    """How a page in ``locale`` is laid out: Persian runs right to left."""
    return Direction.RTL if locale in RIGHT_TO_LEFT else Direction.LTR


class Writing(BaseModel):
    """What staff or a member writes (an article, a question): its tags count once each."""

    @model_validator(mode="after")
    def _tags_once(self) -> Self:
        tags = getattr(self, "tags", None)
        if tags is not None:
            setattr(self, "tags", list(dict.fromkeys(tags)))  # noqa: B010 (fields of subclasses)
        return self


class Revision(Writing):
    """A change to what was written: only the fields sent change, and those in
    ``required`` may not be cleared (set to null)."""

    required: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _required_stay_set(self) -> Self:
        cleared = [
            name
            for name in self.required
            if name in self.model_fields_set and getattr(self, name) is None
        ]
        if cleared:
            raise ValueError(f"{', '.join(cleared)} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}
