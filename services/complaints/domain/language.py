"""The portal's languages (help centre and community) and the way each is laid out."""

from __future__ import annotations

from enum import StrEnum


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


def direction_of(locale: Locale) -> Direction:
    """How a page in ``locale`` is laid out: Persian runs right to left."""
    return Direction.RTL if locale in RIGHT_TO_LEFT else Direction.LTR
