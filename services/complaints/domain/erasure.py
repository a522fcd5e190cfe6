"""Erasure: a complaint without personal text; categories, times, scores and money stay."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.complaints.domain.model import Complaint

ERASED_TEXT = "[erased]"


def anonymise(complaint: Complaint, now: datetime) -> Complaint:
    """The complaint without personal text; categories, times, scores and money stay."""
    if complaint.erased:
        return complaint
    return complaint.model_copy(
        update={
            "subject": ERASED_TEXT,
            "description": ERASED_TEXT,
            "comments": [c.model_copy(update={"text": ERASED_TEXT}) for c in complaint.comments],
            "resolutions": [
                r.model_copy(update={"summary": ERASED_TEXT}) for r in complaint.resolutions
            ],
            "feedback": [f.model_copy(update={"comment": None}) for f in complaint.feedback],
            "history": [
                h.model_copy(update={"details": _without_text(h.details)})
                for h in complaint.history
            ],
            "erased": True,
            "updated_at": now,
        }
    )


def _without_text(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if key not in {"reason"}}
