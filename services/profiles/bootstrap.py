"""Builds the profiles service from its settings: the one place that picks adapters."""

from __future__ import annotations

from fastapi import FastAPI
from jsonschema import Draft202012Validator

from services.profiles import api, worker
from services.profiles.handlers import CustomerMoved, Profiles
from services.profiles.settings import ProfilesSettings
from services.profiles.store import CustomerStore
from services.profiles.timeline import TimelineStore
from shared import ops
from shared.runtime import ServiceRuntime


def create_app(settings: ProfilesSettings) -> FastAPI:
    runtime = ServiceRuntime.build(settings, handlers={}, subscriptions=worker.SUBSCRIPTIONS)
    store = CustomerStore(runtime.db)
    timeline = TimelineStore(runtime.db)
    runtime.startup += [store.ensure_indexes, timeline.ensure_indexes]
    profiles = Profiles(
        client=runtime.client,
        store=store,
        outbox=runtime.outbox,
        relay=runtime.relay,
        timeline=timeline,
        attribute_schema=Draft202012Validator(settings.attribute_schema),
    )
    for event_type, handler in worker.handlers().items():
        runtime.on(event_type, handler)
    return runtime.http_app(
        [ops.router, api.router],
        exception_handlers={CustomerMoved: api.redirect_moved},
        profiles=profiles,
    )
