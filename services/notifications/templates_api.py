"""HTTP API of the message templates: list, read, edit (validated), revert, preview.

Staff (admin, agent) edit; staff and services read. A trigger's fields and sample data
are under ``GET /api/v1/triggers``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, status
from pydantic import BaseModel, Field

from services.notifications import catalog
from services.notifications.domain import Channel, RenderedMessage, TextDirection
from services.notifications.template_domain import (
    Source,
    StoredTemplate,
    TemplateBody,
    normalize_locale,
)
from services.notifications.templating import JinjaTemplateRenderer
from shared.auth import Principal, Role, require_roles

StaffPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT))]
ReaderPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AGENT, Role.SERVICE))]
TriggerName = Annotated[str, Path(min_length=1, max_length=100, description="see /triggers")]
Locale = Annotated[str, Path(min_length=1, max_length=100, examples=["hr", "fa-IR"])]


def get_templates(request: Request) -> JinjaTemplateRenderer:
    """The renderer the app was built with (``app.state.templates``, or ``renderer``)."""
    state = request.app.state
    templates: JinjaTemplateRenderer = getattr(state, "templates", None) or state.renderer
    return templates


TemplatesDep = Annotated[JinjaTemplateRenderer, Depends(get_templates)]


class TemplateSummary(BaseModel):
    trigger: str
    channel: Channel
    locale: str
    source: Source


class TemplatePublic(TemplateSummary):
    subject: str | None
    text: str
    html: str | None
    updated_at: datetime | None
    updated_by: str | None

    @classmethod
    def of(cls, template: StoredTemplate) -> TemplatePublic:
        return cls(
            trigger=template.trigger,
            channel=template.channel,
            locale=template.locale,
            source=template.source,
            **template.body.model_dump(),
            updated_at=template.updated_at,
            updated_by=template.updated_by,
        )


class Preview(BaseModel):
    trigger: str
    channel: Channel
    requested_locale: str
    locale: str = Field(description="the locale used after the fallback chain")
    source: Source
    subject: str
    text: str
    html: str | None
    direction: TextDirection

    @classmethod
    def of(
        cls, trigger: str, channel: Channel, locale: str, source: Source, message: RenderedMessage
    ) -> Preview:
        return cls(
            trigger=trigger,
            channel=channel,
            requested_locale=locale,
            locale=message.locale,
            source=source,
            subject=message.subject,
            text=message.text,
            html=message.html,
            direction=message.direction,
        )


class TriggerPublic(BaseModel):
    name: str
    description: str
    internal: bool
    marketing: bool
    fields: dict[str, str]
    sample: dict[str, Any]


router = APIRouter(prefix="/api/v1", tags=["templates"])


@router.get("/triggers")
async def list_triggers(_: ReaderPrincipal) -> list[TriggerPublic]:
    """The triggers templates are written for, each with the fields a template may use
    and the sample data previews render with."""
    return [
        TriggerPublic(
            name=spec.name,
            description=spec.description,
            internal=spec.internal,
            marketing=spec.marketing,
            fields={**catalog.COMMON_FIELDS, **spec.fields},
            sample=dict(spec.sample),
        )
        for spec in catalog.TRIGGERS.values()
    ]


@router.get("/templates")
async def list_templates(
    templates: TemplatesDep,
    _: ReaderPrincipal,
    trigger: Annotated[str | None, Query(max_length=100)] = None,
    channel: Channel | None = None,
    locale: Annotated[str | None, Query(max_length=100)] = None,
) -> list[TemplateSummary]:
    """Every template: the shipped ones, and the custom ones that replace them."""
    wanted_locale = normalize_locale(locale) if locale else None
    return [
        TemplateSummary(trigger=t.trigger, channel=t.channel, locale=t.locale, source=t.source)
        for t in await templates.all_templates()
        if (trigger is None or t.trigger == trigger)
        and (channel is None or t.channel is channel)
        and (wanted_locale is None or t.locale == wanted_locale)
    ]


@router.get("/templates/{trigger}/{channel}/{locale}")
async def read_template(
    trigger: TriggerName,
    channel: Channel,
    locale: Locale,
    templates: TemplatesDep,
    _: ReaderPrincipal,
) -> TemplatePublic:
    """The template of exactly this locale (404 when messages in it use a fallback)."""
    return TemplatePublic.of(await templates.get(trigger, channel, locale))


@router.put("/templates/{trigger}/{channel}/{locale}")
async def save_template(
    trigger: TriggerName,
    channel: Channel,
    locale: Locale,
    body: TemplateBody,
    templates: TemplatesDep,
    principal: StaffPrincipal,
) -> TemplatePublic:
    """Save a custom template in place of the shipped one. It must compile, use only the
    trigger's fields and render with the trigger's sample data; otherwise 422."""
    saved = await templates.save(trigger, channel, locale, body, by=principal.subject)
    return TemplatePublic.of(saved)


@router.delete("/templates/{trigger}/{channel}/{locale}", status_code=status.HTTP_204_NO_CONTENT)
async def revert_template(
    trigger: TriggerName,
    channel: Channel,
    locale: Locale,
    templates: TemplatesDep,
    _: StaffPrincipal,
) -> None:
    """Delete the custom template: the shipped one is used again."""
    await templates.revert(trigger, channel, locale)


@router.post("/templates/{trigger}/{channel}/{locale}/preview")
async def preview_template(
    trigger: TriggerName,
    channel: Channel,
    locale: Locale,
    templates: TemplatesDep,
    _: ReaderPrincipal,
    draft: Annotated[
        TemplateBody | None,
        Body(description="a draft to try before saving; without it, the template in use"),
    ] = None,
) -> Preview:
    """Render with the trigger's sample data."""
    source, message = await templates.preview(trigger, channel, locale, draft)
    return Preview.of(trigger, channel, locale, source, message)
