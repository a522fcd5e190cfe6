"""``python -m tests.notifications.delivery_server``: only the delivery side's routers
(templates, inbox, webhooks) as a process of their own, for the fuzz test."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from services.notifications import inbox, templates_api, webhooks
from services.notifications.channels import ChannelSettings
from services.notifications.inbox import InboxStore
from services.notifications.templating import JinjaTemplateRenderer, TemplateStore
from services.notifications.webhooks import WebhookDelivery, WebhookStore
from shared.auth import TokenService
from shared.http import create_http_app
from shared.mongo import create_client


def create_app(mongodb_uri: str, database: str, admin_token: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = create_client(mongodb_uri, app_name="rapport-delivery-fuzz")
        db = client[database]
        app.state.templates = JinjaTemplateRenderer(TemplateStore(db))
        app.state.inbox = InboxStore(db)
        app.state.webhooks = WebhookDelivery(WebhookStore(db), ChannelSettings())
        for store in (app.state.templates, app.state.inbox, app.state.webhooks):
            await store.ensure_indexes()
        try:
            yield
        finally:
            await app.state.webhooks.close()
            await client.close()

    async def ready() -> dict[str, str]:
        return {}

    return create_http_app(
        service="notifications",
        lifespan=lifespan,
        readiness=ready,
        routers=[templates_api.router, inbox.router, webhooks.router],
        state={"tokens": TokenService("fuzz-secret-" + "x" * 32, admin_token=admin_token)},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mongodb-uri", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--admin-token", required=True)
    args = parser.parse_args()
    app = create_app(args.mongodb_uri, args.database, args.admin_token)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
