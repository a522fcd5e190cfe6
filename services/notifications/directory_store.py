"""MongoDB adapter of the directory, what the notifications service knows about customers:
a local read model of the ``crm.customer.*`` events (and of complaint events, for the open
complaints).

Profiles publishes the whole public profile in ``crm.customer.registered`` and
``crm.customer.updated``; the directory keeps the newest version it saw (an older
snapshot arriving late changes nothing), the consents from
``crm.customer.consent_changed``, the open complaints, merges (a merged customer resolves
to the survivor) and erasure (nothing personal is kept, only the fact).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from pymongo import ASCENDING

from services.notifications.directory_domain import Contract, Customer
from services.notifications.documents import Write, update_many, update_one
from services.notifications.domain import Channel, Purpose
from shared.events.customers import ContractStatus, CustomerSnapshot
from shared.identity import End, Link, follow, merged_sources
from shared.mongo import Database, Session


def consent_key(channel: Channel, purpose: Purpose) -> str:
    return f"{channel.value}:{purpose.value}"


def customer_from(document: Mapping[str, Any]) -> Customer:
    consents: dict[tuple[Channel, Purpose], bool] = {}
    for key, granted in (document.get("consents") or {}).items():
        channel, _, purpose = key.partition(":")
        try:
            consents[(Channel(channel), Purpose(purpose))] = bool(granted)
        except ValueError:
            continue
    birthday = document.get("birthday")
    return Customer(
        id=document["_id"],
        given_name=document.get("given_name"),
        family_name=document.get("family_name"),
        preferred_name=document.get("preferred_name"),
        emails=tuple(document.get("emails") or ()),
        phones=tuple(document.get("phones") or ()),
        locale=document.get("locale"),
        time_zone=document.get("time_zone"),
        birthday=date.fromisoformat(birthday) if birthday else None,
        contracts=tuple(
            Contract(
                contract_id=c["contract_id"],
                product=c.get("product", ""),
                active=bool(c.get("active")),
                ends_on=date.fromisoformat(c["ends_on"]) if c.get("ends_on") else None,
                auto_renew=bool(c.get("auto_renew")),
            )
            for c in document.get("contracts") or ()
        ),
        account_owner=document.get("account_owner"),
        consents=consents,
        open_complaints=tuple(document.get("open_complaints") or ()),
        erased=bool(document.get("erased")),
        registered=bool(document.get("version")),
        version=int(document.get("version") or 0),
    )


def _contracts(snapshot: CustomerSnapshot) -> list[dict[str, Any]] | None:
    if snapshot.contracts is None:
        return None
    contracts = []
    for contract in snapshot.contracts:
        ends = contract.renews_at or contract.expires_at
        contracts.append(
            {
                "contract_id": contract.contract_id,
                "product": contract.product,
                "active": contract.status is ContractStatus.ACTIVE,
                "ends_on": ends.isoformat() if ends else None,
                "auto_renew": contract.auto_renew,
            }
        )
    return contracts


def snapshot_fields(snapshot: CustomerSnapshot) -> dict[str, Any]:
    """What a profile snapshot sets on the customer's document."""
    owner = snapshot.attributes.get("account_owner")
    fields: dict[str, Any] = {
        "version": snapshot.version,
        "given_name": snapshot.given_name,
        "family_name": snapshot.family_name,
        "preferred_name": snapshot.preferred_name,
        "emails": [str(email).lower() for email in snapshot.emails],
        "phones": list(snapshot.phones),
        "locale": snapshot.locale,
        "time_zone": snapshot.time_zone,
        "birthday": snapshot.birthday.isoformat() if snapshot.birthday else None,
        "account_owner": owner if isinstance(owner, str) and owner else None,
        "external_ids": [f"{system}:{key}" for system, key in snapshot.external_ids.items()],
        "updated_at": snapshot.updated_at,
    }
    contracts = _contracts(snapshot)
    if contracts is not None:
        fields["contracts"] = contracts
    return fields


PERSONAL_FIELDS = (
    "given_name",
    "family_name",
    "preferred_name",
    "emails",
    "phones",
    "birthday",
    "contracts",
    "account_owner",
    "external_ids",
)


def merge_link(document: Mapping[str, Any] | None) -> Link | None:
    """What following a merge reads of a directory document (``shared.identity``): whom
    it was merged into. Erasure ends no chain here: an erased customer merged into
    another resolves to the survivor, and an erased one resolves to what is left of it."""
    if document is None:
        return None
    return Link(merged_into=document.get("merged_into") or None, erased=False)


class Directory:
    """The directory read outside a batch (the HTTP API); a batch reads it through
    ``batch.Batch``, which changes it too."""

    def __init__(self, db: Database) -> None:
        self.customers = db["customers"]

    async def ensure_indexes(self) -> None:
        await self.customers.create_index([("emails", ASCENDING)])
        await self.customers.create_index([("external_ids", ASCENDING)])
        await self.customers.create_index([("merged_into", ASCENDING)])

    async def get(self, customer_id: str, session: Session | None = None) -> Customer | None:
        """The customer, following merges to the survivor; None when never heard of."""
        read: dict[str, Mapping[str, Any]] = {}

        async def link(key: str) -> Link | None:
            document = await self.customers.find_one({"_id": key}, session=session)
            if document is not None:
                read[key] = document
            return merge_link(document)

        reached = await follow(customer_id, link)
        return customer_from(read[reached.customer_id]) if reached.end is End.LIVE else None

    async def current_id(self, customer_id: str, session: Session | None = None) -> str:
        customer = await self.get(customer_id, session)
        return customer.id if customer is not None else customer_id

    async def live_ids(self) -> list[str]:
        """The ids of every customer registered and neither erased nor merged away."""
        cursor = self.customers.find(
            {"version": {"$gte": 1}, "erased": {"$ne": True}, "merged_into": None}, {"_id": 1}
        )
        return [document["_id"] async for document in cursor]

    async def merged_from(self, customer_id: str, session: Session | None = None) -> list[str]:
        """The profiles merged into ``customer_id`` (and into those), not undone."""

        async def merged_into(ids: list[str]) -> list[str]:
            cursor = self.customers.find({"merged_into": {"$in": ids}}, {"_id": 1}, session=session)
            return [document["_id"] async for document in cursor]

        return await merged_sources(customer_id, merged_into)


# -- what the events change (applied in a batch: see ``batch.py``) -------------------------


def snapshot_write(stored: Mapping[str, Any] | None, snapshot: CustomerSnapshot) -> Write | None:
    """Keep the snapshot if it is newer than what is stored (an older one arriving late
    changes nothing) and the customer was not erased; None when it is not kept."""
    if stored is not None and (
        stored.get("erased") or int(stored.get("version") or 0) >= snapshot.version
    ):
        return None
    return update_one(snapshot.customer_id, {"$set": snapshot_fields(snapshot)}, upsert=True)


def consent_write(
    stored: Mapping[str, Any] | None,
    customer_id: str,
    channel: Channel,
    purpose: Purpose,
    granted: bool,
) -> Write | None:
    """Record a consent; an erased customer keeps none (None: nothing to write)."""
    if stored is not None and stored.get("erased"):
        return None
    return update_one(
        customer_id,
        {"$set": {f"consents.{consent_key(channel, purpose)}": granted}},
        upsert=True,
        erased={"$ne": True},
    )


def complaint_opened_write(customer_id: str, complaint_id: str) -> Write:
    """``customer_id``: the survivor the complaint's customer stands for."""
    return update_one(customer_id, {"$addToSet": {"open_complaints": complaint_id}}, upsert=True)


def complaint_ended_write(complaint_id: str) -> Write:
    return update_many(
        {"open_complaints": complaint_id}, {"$pull": {"open_complaints": complaint_id}}
    )


def merge_writes(
    source: Mapping[str, Any] | None, source_id: str, target_id: str, *, undone: bool
) -> list[Write]:
    """The source resolves to the survivor (its open complaints move along) until the
    merge is undone. ``source``: the source's document as it is before the merge."""
    if undone:
        writes = [update_one(source_id, {"$set": {"merged_into": None}}, merged_into=target_id)]
        writes += [
            update_one(target_id, {"$pull": {"open_complaints": complaint_id}})
            for complaint_id in (source or {}).get("moved_complaints") or ()
        ]
        return writes
    complaints = list((source or {}).get("open_complaints") or ())
    moved = {"merged_into": target_id, "moved_complaints": complaints}
    writes = [update_one(source_id, {"$set": moved}, upsert=True)]
    if complaints:
        each = {"open_complaints": {"$each": complaints}}
        writes.append(update_one(target_id, {"$addToSet": each}, upsert=True))
    return writes


def erasure_write(customer_id: str, erased_at: datetime) -> Write:
    """Only the fact remains: no name, address, birthday or contract."""
    return update_one(
        customer_id,
        {"$set": {"erased": True, "erased_at": erased_at},
         "$unset": dict.fromkeys(PERSONAL_FIELDS, "")},
        upsert=True,
    )  # fmt: skip
