"""Builds the complaints service from its settings: the one place that picks adapters."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.complaints import api, community, community_api, help_centre_api, worker
from services.complaints.community import Community
from services.complaints.community_store import CommunityStore
from services.complaints.handlers import Complaints, Watcher, routes
from services.complaints.help_centre import HelpCentre
from services.complaints.help_centre_store import ArticleStore
from services.complaints.settings import ComplaintsSettings
from services.complaints.store import ComplaintStore, CustomerDirectory, SlaConfigStore
from shared import ops, revocation
from shared.runtime import ServiceRuntime


def create_app(settings: ComplaintsSettings) -> FastAPI:
    runtime = ServiceRuntime.build(settings, subscriptions=worker.SUBSCRIPTIONS)
    store = ComplaintStore(runtime.db)
    complaints = Complaints(
        client=runtime.client,
        store=store,
        config=SlaConfigStore(runtime.db),
        outbox=runtime.outbox,
        relay=runtime.relay,
        directory=CustomerDirectory(runtime.db),
        warning_share=settings.sla_warning_share,
        escalation_team=settings.escalation_team,
        reopen_window=timedelta(hours=settings.reopen_window_hours),
    )
    runtime.handle(routes.bind(complaints))
    watcher = Watcher(complaints, settings.sla_check_interval_seconds)
    help_centre = HelpCentre(client=runtime.client, store=ArticleStore(runtime.db))
    members = Community(
        client=runtime.client,
        store=CommunityStore(runtime.db),
        outbox=runtime.outbox,
        relay=runtime.relay,
        edit_window=timedelta(minutes=settings.community_edit_window_minutes),
        tier_benefits=settings.community_tier_benefits,
    )
    runtime.handle(community.routes.bind(members))
    runtime.handle(revocation.routes.bind(runtime.revocations))  # customers' sign-outs
    runtime.startup += [
        store.ensure_indexes,
        help_centre.store.ensure_indexes,
        members.store.ensure_indexes,
        watcher.start,
    ]
    runtime.shutdown.append(watcher.stop)
    return runtime.http_app(
        [ops.router, api.router, help_centre_api.router, community_api.router],
        complaints=complaints,
        watcher=watcher,
        help_centre=help_centre,
        community=members,
    )
