"""MongoDB adapter of preferences: one document per customer in ``preferences``, and how
the choices of profiles merged into one customer combine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from services.notifications.preferences_domain import CustomerPreferences
from shared.mongo import Database, Session


class PreferenceStore:
    def __init__(self, db: Database) -> None:
        self.preferences = db["preferences"]

    async def get(self, customer_id: str, session: Session | None = None) -> CustomerPreferences:
        return _preferences(await self.preferences.find_one({"_id": customer_id}, session=session))

    async def combined(
        self, customer_ids: Sequence[str], session: Session | None = None
    ) -> CustomerPreferences:
        """What a customer merged from several profiles chose (see :func:`combine`)."""
        if not customer_ids:
            return CustomerPreferences()
        cursor = self.preferences.find({"_id": {"$in": list(customer_ids)}}, session=session)
        documents = {document["_id"]: document async for document in cursor}
        return combine(customer_ids, documents)

    async def put(
        self,
        customer_id: str,
        preferences: CustomerPreferences,
        now: datetime,
        covers: Sequence[str] = (),
    ) -> CustomerPreferences:
        """Replace the customer's choice. ``covers``: the profiles merged into this one
        when the choice was made; their own choices stop counting for this customer (and
        count again for themselves if the merge is undone)."""
        await self.preferences.replace_one(
            {"_id": customer_id},
            {
                "_id": customer_id,
                **preferences.model_dump(mode="json"),
                "covers": list(covers),
                "updated_at": now,
            },
            upsert=True,
        )
        return preferences


def combine(
    customer_ids: Sequence[str], documents: Mapping[str, Mapping[str, Any] | None]
) -> CustomerPreferences:
    """What a customer merged from several profiles (``customer_ids``, the survivor
    first) chose, from their stored ``documents``: every opt-out any of them made; the
    quiet hours of the first that set its own. Profiles the survivor's own choice was made
    over (see ``PreferenceStore.put``) no longer count: that choice replaced theirs."""
    if not customer_ids:
        return CustomerPreferences()
    survivor, *others = customer_ids
    document = documents.get(survivor)
    covered = set(document.get("covers", [])) if document else set()
    found = [_preferences(document)]
    found.extend(_preferences(documents.get(other)) for other in others if other not in covered)
    if len(found) == 1:
        return found[0]
    own = next((p for p in found if p.quiet_hours or p.quiet_hours_off), found[0])
    return CustomerPreferences(
        opt_outs=list(dict.fromkeys(o for p in found for o in p.opt_outs)),
        quiet_hours=own.quiet_hours,
        quiet_hours_off=own.quiet_hours_off,
    )


def _preferences(document: Mapping[str, Any] | None) -> CustomerPreferences:
    if document is None:
        return CustomerPreferences()
    return CustomerPreferences.model_validate(
        {k: v for k, v in document.items() if k in CustomerPreferences.model_fields}
    )
