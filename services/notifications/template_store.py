"""Where message templates come from: the shipped files in ``shipped/`` (one TOML file per
trigger and locale, a table per channel) and the edited ones saved through the API in
MongoDB (``templates``), which win over the shipped one of the same trigger, channel and
locale until deleted. What a template is (and its locales) is ``template_domain.py``;
rendering them is ``templating.py``."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from services.notifications import catalog
from services.notifications.domain import Channel
from services.notifications.template_domain import (
    Source,
    StoredTemplate,
    TemplateBody,
    normalize_locale,
)
from shared.mongo import Database

SHIPPED_PACKAGE = "services.notifications"
SHIPPED_FOLDER = "shipped"
LAYOUT_FILE = "_layout.html"


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
