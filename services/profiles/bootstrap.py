"""Builds the profiles service from its settings: the one place that picks adapters."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from jsonschema import Draft202012Validator

from services.profiles import (
    api,
    consents_api,
    contracts_api,
    gdpr_api,
    import_export_api,
    interactions_api,
    merging_api,
    portal_api,
    purchases,
    purchases_api,
    sign_in_api,
    timeline_api,
    worker,
)
from services.profiles.consents import Consents
from services.profiles.consents_store import ConsentStore
from services.profiles.contracts import ContractBook
from services.profiles.contracts_store import ContractStore
from services.profiles.gdpr import Gdpr
from services.profiles.gdpr_store import CollectionSection, FieldEraser
from services.profiles.handlers import CustomerMoved, Profiles
from services.profiles.interactions import Interactions
from services.profiles.interactions_store import InteractionStore
from services.profiles.ledger_store import LedgerStore
from services.profiles.merging import Merger
from services.profiles.settings import ProfilesSettings
from services.profiles.sign_in import SignIn
from services.profiles.sign_in_store import SignInStore
from services.profiles.store import CustomerStore
from services.profiles.timeline import TimelineRecorder
from services.profiles.timeline import routes as timeline_routes
from services.profiles.timeline_store import TimelineStore
from shared import ops
from shared.runtime import ServiceRuntime


def create_app(settings: ProfilesSettings) -> FastAPI:
    runtime = ServiceRuntime.build(settings, subscriptions=worker.SUBSCRIPTIONS)
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
    ledger_store, contract_store = LedgerStore(runtime.db), ContractStore(runtime.db)
    runtime.startup += [ledger_store.ensure_indexes, contract_store.ensure_indexes]
    ledger = purchases.Ledger(
        units=runtime.units,
        customers=store,
        store=ledger_store,
        timeline=timeline,
        addons=tuple(settings.portal_addons),
    )
    contract_book = ContractBook(
        client=runtime.client,
        customers=store,
        store=contract_store,
        outbox=runtime.outbox,
        relay=runtime.relay,
        timeline=timeline,
    )
    interactions, consents, gdpr = _activity(runtime, profiles)
    runtime.handle(purchases.routes.bind(ledger))
    runtime.handle(timeline_routes.bind(TimelineRecorder(profiles.store, profiles.timeline)))
    merger = Merger.of(profiles, runtime.db)
    runtime.startup.append(merger.ensure_indexes)
    sign_in = _sign_in(settings, runtime, profiles)
    return runtime.http_app(
        [
            ops.router,
            import_export_api.router,  # before api.router: `export` is no customer id
            api.router,
            merging_api.router,
            purchases_api.router,
            contracts_api.router,
            interactions_api.router,
            timeline_api.router,
            consents_api.router,
            gdpr_api.router,
            sign_in_api.router,
            portal_api.router,  # the customer portal's page at /portal/
        ],
        exception_handlers={CustomerMoved: api.redirect_moved},
        larger_bodies={"/api/v1/customers/import": import_export_api.MAX_IMPORT_BYTES},
        profiles=profiles,
        ledger=ledger,
        contracts=contract_book,
        interactions=interactions,
        consents=consents,
        gdpr=gdpr,
        merger=merger,
        sign_in=sign_in,
        portal=portal_api.PortalSite.of(settings),
    )


def _sign_in(settings: ProfilesSettings, runtime: ServiceRuntime, profiles: Profiles) -> SignIn:
    """The customer portal's passwordless sign-in."""
    store = SignInStore(runtime.db)
    runtime.startup.append(store.ensure_indexes)
    return SignIn(
        profiles=profiles,
        store=store,
        tokens=runtime.tokens,
        revocations=runtime.revocations,
        portal_url=settings.portal_url,
        link_ttl=timedelta(seconds=settings.sign_in_link_ttl_seconds),
        links_per_window=settings.sign_in_links_per_window,
        window=timedelta(seconds=settings.sign_in_window_seconds),
        token_ttl=timedelta(seconds=settings.customer_token_ttl_seconds),
    )


def _activity(runtime: ServiceRuntime, profiles: Profiles) -> tuple[Interactions, Consents, Gdpr]:
    """Interactions, consents and the data rights (export, erasure)."""
    db = runtime.db
    interaction_store, consent_store = InteractionStore(db), ConsentStore(db)
    runtime.startup.append(interaction_store.ensure_indexes)
    gdpr = Gdpr(
        profiles,
        exporters=[
            consent_store,
            interaction_store,
            profiles.timeline,
            CollectionSection("ledger", db["ledger"]),
            CollectionSection("customer_figures", db["customer_figures"], key="_id"),
            CollectionSection("contracts", db["contracts"]),
        ],
        erasers=[
            consent_store,
            interaction_store,
            profiles.timeline,
            runtime.outbox,
            # The ledger keeps amounts and items; the free text of a return's reason goes.
            FieldEraser(db["ledger"], ["reason"]),
            FieldEraser(db["contracts"], ["external_reference"]),
        ],
    )
    return Interactions(profiles, interaction_store), Consents(profiles, consent_store), gdpr
