"""The delivery side's routers (templates, inbox, webhooks) in the platform's HTTP app,
on this test's database, with tokens for each role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from services.notifications import inbox_api, templates_api, webhooks_api
from services.notifications.channels import ChannelSettings
from services.notifications.inbox_store import InboxStore
from services.notifications.template_store import TemplateStore
from services.notifications.templating import JinjaTemplateRenderer
from services.notifications.webhooks import WebhookDelivery
from services.notifications.webhooks_store import WebhookStore
from shared.auth import TokenService
from shared.http import create_http_app
from shared.mongo import Database
from tests.support.api import ApiClient, in_process

SECRET = "delivery-tests-secret-of-enough-length"


@dataclass
class DeliveryApi(ApiClient):
    """The delivery routers' API, with the stores behind it."""

    renderer: JinjaTemplateRenderer
    inbox: InboxStore
    webhooks: WebhookDelivery


@asynccontextmanager
async def _no_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield


async def _ready() -> dict[str, str]:
    return {}


@asynccontextmanager
async def delivery_api(db: Database, **settings: Any) -> AsyncIterator[DeliveryApi]:
    channel_settings = ChannelSettings(**settings)
    renderer = JinjaTemplateRenderer(TemplateStore(db))
    inbox_store = InboxStore(db)
    delivery = WebhookDelivery(WebhookStore(db), channel_settings)
    for store in (renderer, inbox_store, delivery):
        await store.ensure_indexes()
    tokens = TokenService(SECRET)
    app = create_http_app(
        service="notifications",
        lifespan=_no_lifespan,
        readiness=_ready,
        routers=[templates_api.router, inbox_api.router, webhooks_api.router],
        state={"tokens": tokens, "templates": renderer, "inbox": inbox_store, "webhooks": delivery},
    )
    async with in_process(app, "notifications") as http:
        try:
            yield DeliveryApi(http, tokens, renderer, inbox_store, delivery)
        finally:
            await delivery.close()
