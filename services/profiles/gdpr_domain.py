"""The data rights, their rule: what is left of an erased profile (pure: no I/O)."""

from __future__ import annotations

from datetime import datetime

from services.profiles.domain import Customer, CustomerStatus, ProfileFields
from services.profiles.timeline_domain import ERASED


def tombstone(customer: Customer, now: datetime) -> Customer:
    """What is left of an erased profile: its id, dates and version, and no person."""
    cleared = {
        name: field.get_default(call_default_factory=True)
        for name, field in ProfileFields.model_fields.items()
    }
    return customer.model_copy(
        update={
            **cleared,
            "given_name": ERASED,
            "status": CustomerStatus.ERASED,
            "updated_at": now,
            "version": customer.version + 1,
        }
    )
