"""Message templates, their model: what a template is made of per channel (subject, text,
html), where it comes from (shipped, custom), the locale fallback chain (``sr-Latn-RS`` ->
``sr-Latn`` -> ``sr`` -> ``en``) and the writing direction (pure: no I/O; the templates
are read by ``template_store.py`` and rendered by ``templating.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import langcodes
from pydantic import BaseModel, ConfigDict, Field

from services.notifications.domain import (
    Channel,
    PermanentDeliveryError,
    TextDirection,
)
from shared.errors import InvalidInput

DEFAULT_LOCALE = "en"


MAX_SUBJECT = 1_000
MAX_TEXT = 20_000
MAX_HTML = 200_000

# Languages written right to left (ISO 639), and scripts that are.
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ur", "ps", "sd", "ug", "yi", "dv", "ckb", "syr"})
RTL_SCRIPTS = frozenset({"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm", "Rohg", "Mand"})


class Part(StrEnum):
    SUBJECT = "subject"
    TEXT = "text"
    HTML = "html"


# What each channel's template is made of: required parts, then optional ones.
CHANNEL_PARTS: dict[Channel, tuple[frozenset[Part], frozenset[Part]]] = {
    Channel.EMAIL: (frozenset({Part.SUBJECT, Part.TEXT}), frozenset({Part.HTML})),
    Channel.SMS: (frozenset({Part.TEXT}), frozenset()),
    Channel.IN_APP: (frozenset({Part.SUBJECT, Part.TEXT}), frozenset()),
    Channel.WEBHOOK: (frozenset({Part.SUBJECT, Part.TEXT}), frozenset()),
}


class Source(StrEnum):
    SHIPPED = "shipped"
    CUSTOM = "custom"
    DRAFT = "draft"


class TemplateRenderError(PermanentDeliveryError):
    """A template could not be rendered with the message's data; sending it again will not
    help until the template is fixed (then the delivery can be redriven)."""


class TemplateBody(BaseModel):
    """A template's parts: Jinja2 source. Which parts a channel takes: e-mail subject, text
    and optionally html; sms text; in_app and webhook subject and text."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(default=None, max_length=MAX_SUBJECT)
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    html: str | None = Field(default=None, max_length=MAX_HTML)

    def parts(self) -> dict[Part, str]:
        found = {Part.SUBJECT: self.subject, Part.TEXT: self.text, Part.HTML: self.html}
        return {part: source for part, source in found.items() if source and source.strip()}


@dataclass(frozen=True)
class StoredTemplate:
    trigger: str
    channel: Channel
    locale: str
    source: Source
    body: TemplateBody
    updated_at: datetime | None = None
    updated_by: str | None = None


# --- locales ---------------------------------------------------------------------------


def normalize_locale(tag: str) -> str:
    """The canonical form of a BCP 47 tag (``sr-latn-rs`` → ``sr-Latn-RS``); 422 when it is
    not a valid tag of a known language."""
    if not re.fullmatch(r"[A-Za-z0-9]{1,8}(-[A-Za-z0-9]{1,8}){0,7}", tag or ""):
        raise InvalidInput(f"locale {tag!r} is not a BCP 47 language tag (e.g. hr, fa-IR)")
    if not langcodes.tag_is_valid(tag) or tag.lower() == "und":
        raise InvalidInput(f"locale {tag!r} is not a valid BCP 47 language tag")
    return langcodes.standardize_tag(tag)


def fallback_chain(locale: str, default: str = DEFAULT_LOCALE) -> list[str]:
    """Most specific first: ``fa-IR`` → ``fa`` → ``en``; ``sr-Latn-RS`` → ``sr-Latn`` →
    ``sr`` → ``en``. A tag that is not valid falls back to the default alone."""
    chain: list[str] = []
    try:
        tag = normalize_locale(locale)
    except InvalidInput:
        tag = None
    if tag is not None:
        language = langcodes.Language.get(tag)
        chain.append(tag)
        base = language.language or ""
        if language.script and language.territory:
            chain.append(f"{base}-{language.script}-{language.territory}")
        if language.script:
            # sr-Latn-RS must not fall to sr-RS, which is written in another script
            chain.append(f"{base}-{language.script}")
        elif language.territory:
            chain.append(f"{base}-{language.territory}")
        chain.append(base)
    chain.append(default)
    return [tag for tag in dict.fromkeys(chain) if tag]


def direction_of(locale: str) -> TextDirection:
    try:
        language = langcodes.Language.get(locale)
    except (ValueError, LookupError):
        return TextDirection.LTR
    if language.script:
        rtl = language.script in RTL_SCRIPTS
    else:
        rtl = (language.language or "") in RTL_LANGUAGES
    return TextDirection.RTL if rtl else TextDirection.LTR
