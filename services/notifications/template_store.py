"""Message templates and where they come from: the shipped files in ``shipped/`` (one TOML
file per trigger and locale, a table per channel) and the edited ones saved through the API
in MongoDB (``templates``), which win over the shipped one of the same trigger, channel and
locale until deleted; the locale fallback chain (``sr-Latn-RS`` -> ``sr-Latn`` -> ``sr`` ->
``en``) and the writing direction. Rendering them is ``templating.py``."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from importlib import resources
from typing import Any

import langcodes
from pydantic import BaseModel, ConfigDict, Field

from services.notifications import catalog
from services.notifications.domain import (
    Channel,
    PermanentDeliveryError,
    TextDirection,
)
from shared.errors import InvalidInput
from shared.mongo import Database

DEFAULT_LOCALE = "en"
SHIPPED_PACKAGE = "services.notifications"
SHIPPED_FOLDER = "shipped"
LAYOUT_FILE = "_layout.html"

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


# --- the shipped templates -------------------------------------------------------------


class ShippedTemplates:
    """The templates that come with the service, read once from the package's files."""

    def __init__(self, folder: Any = None) -> None:
        root = folder if folder is not None else resources.files(SHIPPED_PACKAGE) / SHIPPED_FOLDER
        self.templates: dict[tuple[str, Channel, str], TemplateBody] = {}
        self.layout = (root / LAYOUT_FILE).read_text(encoding="utf-8")
        for trigger_folder in root.iterdir():
            if not trigger_folder.is_dir() or trigger_folder.name not in catalog.TRIGGERS:
                continue
            for file in trigger_folder.iterdir():
                if not file.name.endswith(".toml"):
                    continue
                locale = normalize_locale(file.name.removesuffix(".toml"))
                tables = tomllib.loads(file.read_text(encoding="utf-8"))
                for channel_name, parts in tables.items():
                    channel = Channel(channel_name)
                    key = (trigger_folder.name, channel, locale)
                    self.templates[key] = TemplateBody.model_validate(parts)

    def get(self, trigger: str, channel: Channel, locale: str) -> TemplateBody | None:
        return self.templates.get((trigger, channel, locale))


# --- custom templates in MongoDB -------------------------------------------------------


def _key(trigger: str, channel: Channel, locale: str) -> str:
    return f"{trigger}/{channel.value}/{locale}"


class TemplateStore:
    """Templates edited through the API; they override the shipped ones."""

    def __init__(self, db: Database) -> None:
        self.templates = db["templates"]

    async def ensure_indexes(self) -> None:
        await self.templates.create_index([("trigger", 1), ("channel", 1), ("locale", 1)])

    async def find(
        self, trigger: str, channels: Iterable[Channel], locales: Iterable[str]
    ) -> dict[tuple[Channel, str], StoredTemplate]:
        keys = [_key(trigger, channel, locale) for channel in channels for locale in locales]
        found: dict[tuple[Channel, str], StoredTemplate] = {}
        async for document in self.templates.find({"_id": {"$in": keys}}):
            template = _stored(document)
            found[(template.channel, template.locale)] = template
        return found

    async def all(self) -> list[StoredTemplate]:
        return [_stored(document) async for document in self.templates.find({})]

    async def save(self, template: StoredTemplate) -> None:
        document = {
            "trigger": template.trigger,
            "channel": template.channel.value,
            "locale": template.locale,
            **template.body.model_dump(),
            "updated_at": template.updated_at,
            "updated_by": template.updated_by,
        }
        await self.templates.replace_one(
            {"_id": _key(template.trigger, template.channel, template.locale)},
            document,
            upsert=True,
        )

    async def delete(self, trigger: str, channel: Channel, locale: str) -> bool:
        result = await self.templates.delete_one({"_id": _key(trigger, channel, locale)})
        return result.deleted_count == 1


def _stored(document: Mapping[str, Any]) -> StoredTemplate:
    return StoredTemplate(
        trigger=document["trigger"],
        channel=Channel(document["channel"]),
        locale=document["locale"],
        source=Source.CUSTOM,
        body=TemplateBody(
            subject=document.get("subject"), text=document["text"], html=document.get("html")
        ),
        updated_at=document.get("updated_at"),
        updated_by=document.get("updated_by"),
    )


# --- rendering -------------------------------------------------------------------------
