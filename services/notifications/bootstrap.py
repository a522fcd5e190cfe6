"""Builds the notifications service from its settings: the one place that picks adapters."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from services.notifications import (
    api,
    inbox_api,
    templates_api,
    webhooks_api,
    worker,
)
from services.notifications.channels import ChannelSettings, SmsSender, SmtpSender
from services.notifications.deliveries_store import DeliveryLedger
from services.notifications.directory_store import Directory
from services.notifications.dispatcher import Dispatcher
from services.notifications.domain import Channel, Sender
from services.notifications.handlers import routes
from services.notifications.inbox_store import InboxStore
from services.notifications.planning import Notifications
from services.notifications.policy import QuietHours
from services.notifications.preferences_store import PreferenceStore
from services.notifications.rules_store import RuleStore
from services.notifications.scheduling import Scheduler
from services.notifications.scheduling_store import ScheduleStore
from services.notifications.settings import NotificationsSettings
from services.notifications.template_store import TemplateStore
from services.notifications.templating import JinjaTemplateRenderer
from services.notifications.webhooks import WebhookDelivery
from services.notifications.webhooks_store import WebhookStore
from shared import ops, revocation
from shared.runtime import ServiceRuntime


def create_app(settings: NotificationsSettings) -> FastAPI:
    runtime = ServiceRuntime.build(settings, subscriptions=worker.SUBSCRIPTIONS)
    db = runtime.db
    ledger, directory, schedules = DeliveryLedger(db), Directory(db), ScheduleStore(db)
    notifications = Notifications(
        client=runtime.client,
        ledger=ledger,
        directory=directory,
        preferences=PreferenceStore(db),
        rule_store=RuleStore(db),
        schedules=schedules,
        outbox=runtime.outbox,
        relay=runtime.relay,
        rule_settings=settings.rules,
        default_time_zone=settings.default_time_zone,
        default_locale=settings.default_locale,
        default_quiet_hours=QuietHours.parse(settings.quiet_hours_start, settings.quiet_hours_end),
        quiet_hours_apply_to=settings.quiet_hours_pairs,
        marketing_cap=settings.marketing_daily_cap,
        escalation_address=settings.escalation_address,
        team_addresses=settings.team_addresses,
        owner_fallback_address=settings.owner_fallback_address,
        portal_url=settings.portal_url,
    )
    inbox_store = InboxStore(db, clock=notifications.now)
    notifications.inbox = inbox_store
    renderer = JinjaTemplateRenderer(
        TemplateStore(db), company=settings.company_name, default_locale=settings.default_locale
    )
    channel_settings = ChannelSettings.model_validate(settings, from_attributes=True)
    webhook_delivery = WebhookDelivery(WebhookStore(db), channel_settings)
    notifications.webhooks = webhook_delivery
    sms = SmsSender(channel_settings)
    # (as many kept SMTP connections as sends run at once)
    smtp = SmtpSender(channel_settings, max_idle=settings.dispatcher_concurrency)
    senders: dict[Channel, Sender] = {
        Channel.EMAIL: smtp,
        Channel.SMS: sms,
    }
    dispatcher = Dispatcher(
        notifications,
        renderer,
        senders,
        poll_interval=settings.dispatcher_poll_interval_seconds,
        batch_size=settings.dispatcher_batch_size,
        concurrency=settings.dispatcher_concurrency,
        lease=timedelta(seconds=settings.dispatcher_lease_seconds),
        max_attempts=settings.max_attempts,
        backoff_base=settings.backoff_base_seconds,
        backoff_cap=settings.backoff_cap_seconds,
        send_timeout=settings.send_timeout_seconds,
        webhook_timeout=settings.webhook_timeout_seconds,
        stop_timeout=settings.dispatcher_stop_timeout_seconds,
        unknown_customer_grace=timedelta(seconds=settings.unknown_customer_grace_seconds),
        max_in_hand=settings.dispatcher_max_in_hand,
    )
    notifications.wake_dispatcher = dispatcher.wake
    notifications.hand_off = dispatcher
    scheduler = Scheduler(notifications, settings.scheduler_poll_interval_seconds)
    runtime.handle(routes.bind(notifications))
    runtime.handle(revocation.routes.bind(runtime.revocations))  # customers' sign-outs
    runtime.startup += [
        ledger.ensure_indexes,
        directory.ensure_indexes,
        schedules.ensure_indexes,
        renderer.ensure_indexes,
        inbox_store.ensure_indexes,
        webhook_delivery.ensure_indexes,
        dispatcher.start,
        scheduler.start,
    ]
    # Run in reverse: the scheduler stops, the dispatcher finishes and records the sends in
    # flight, and only then are the channels' clients closed.
    runtime.shutdown += [
        webhook_delivery.close,
        smtp.close,
        sms.close,
        dispatcher.stop,
        scheduler.stop,
    ]
    return runtime.http_app(
        [ops.router, api.router, templates_api.router, inbox_api.router, webhooks_api.router],
        inbox=inbox_store,
        templates=renderer,
        webhooks=webhook_delivery,
        notifications=notifications,
        dispatcher=dispatcher,
        scheduler=scheduler,
        renderer=renderer,
    )
