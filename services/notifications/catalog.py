"""The triggers templates are written for: what each template may use, with sample data.

A trigger is a notification rule's name (``rules.py`` uses the same names). The rule
builds the template context; it carries the trigger's ``fields`` (a field the rule does
not know is passed as ``None``, so templates test optional fields with ``{% if %}``) plus
the fields every trigger has (:data:`COMMON_FIELDS`). Most field names are those of the
event that fires the rule, so a context can start from the event's payload.

Values may be Python objects or their JSON form: dates and times as ``date``/``datetime``
or ISO 8601 strings, money as ``Decimal`` or a decimal string. Templates format them with
the filters ``date``, ``datetime``, ``money(currency)`` and ``number`` (see
``formatting.py``), which write them as the template's language does and show times in
the recipient's ``time_zone``.

A template is checked against this list when it is saved: a name that is neither a field
nor a Jinja global is refused (422), so a typo never reaches a customer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from shared.errors import NotFound

PURCHASE_THANK_YOU = "purchase_thank_you"
RETURN_CONFIRMATION = "return_confirmation"
COMPLAINT_ACKNOWLEDGEMENT = "complaint_acknowledgement"
COMPLAINT_PROGRESS = "complaint_progress"
COMPLAINT_RESOLVED = "complaint_resolved"
SLA_ESCALATION = "sla_escalation"
CHURN_ALERT_OWNER = "churn_alert_owner"
RETENTION_OFFER = "retention_offer"
BIRTHDAY_GREETING = "birthday_greeting"
RENEWAL_REMINDER = "renewal_reminder"
COMPLAINT_DAILY_STATUS = "complaint_daily_status"
SIGN_IN_LINK = "sign_in_link"

COMMON_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "customer_id": "the customer's id",
        "customer_name": "how to address the customer (preferred or given name); may be None",
        "company": "the sender's name as customers know it (filled in from the settings)",
        "locale": "the locale of the template in use (filled in by the renderer)",
        "time_zone": "the recipient's IANA time zone; dates and times are shown in it",
    }
)

_CUSTOMER = {
    "customer_id": "c-1024",
    "customer_name": "Ivana Šimić",
    "company": "Rapport",
    "time_zone": "Europe/Zagreb",
}


@dataclass(frozen=True)
class Trigger:
    name: str
    description: str
    fields: Mapping[str, str]
    sample: Mapping[str, Any]
    internal: bool = False
    marketing: bool = False

    @property
    def all_fields(self) -> frozenset[str]:
        return frozenset(self.fields) | frozenset(COMMON_FIELDS)

    def context(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared field present (``None`` when not given), then ``values``."""
        return {**dict.fromkeys(self.all_fields), **values}


_ITEM = "items: list of {sku, name, category, quantity, unit_price}"

_TRIGGERS = (
    Trigger(
        PURCHASE_THANK_YOU,
        "thanks the customer by name for a purchase, naming the items",
        {
            "purchase_id": "the purchase's id",
            "items": _ITEM,
            "total_amount": "total, a decimal",
            "currency": "ISO 4217 code of the amounts",
            "channel": "where the purchase was made (web, store, ...)",
            "purchased_at": "when; may be None",
        },
        {
            **_CUSTOMER,
            "purchase_id": "P-2026-00042",
            "items": [
                {
                    "sku": "TNT-2P",
                    "name": "Trekking tent, 2 people",
                    "category": "outdoor",
                    "quantity": 1,
                    "unit_price": "189.90",
                },
                {
                    "sku": "HL-300",
                    "name": "Head lamp 300 lm",
                    "category": "outdoor",
                    "quantity": 2,
                    "unit_price": "24.50",
                },
            ],
            "total_amount": "238.90",
            "currency": "EUR",
            "channel": "web",
            "purchased_at": "2026-11-22T14:05:00+00:00",
        },
    ),
    Trigger(
        RETURN_CONFIRMATION,
        "confirms a return and the refund",
        {
            "return_id": "the return's id",
            "purchase_id": "the purchase the items came from",
            "items": "items: list of {sku, quantity, unit_price}",
            "refund_amount": "the refund, a decimal",
            "currency": "ISO 4217 code of the refund",
            "reason": "the customer's reason; may be None",
            "returned_at": "when; may be None",
        },
        {
            **_CUSTOMER,
            "return_id": "R-2026-0007",
            "purchase_id": "P-2026-00042",
            "items": [{"sku": "HL-300", "quantity": 1, "unit_price": "24.50"}],
            "refund_amount": "24.50",
            "currency": "EUR",
            "reason": "too dim",
            "returned_at": "2026-11-25T10:30:00+00:00",
        },
    ),
    Trigger(
        COMPLAINT_ACKNOWLEDGEMENT,
        "acknowledges a new complaint with the expected first-response and resolution times",
        {
            "complaint_id": "the complaint's id",
            "subject": "the complaint's subject, as the customer gave it",
            "category": "its category",
            "priority": "low, normal, high or urgent",
            "first_response_due_at": "when the first answer is due; may be None",
            "resolution_due_at": "when the resolution is due; may be None",
            "opened_at": "when it was opened",
        },
        {
            **_CUSTOMER,
            "complaint_id": "CMP-3141",
            "subject": "The tent zipper broke on the first trip",
            "category": "product_quality",
            "priority": "normal",
            "first_response_due_at": "2026-11-23T13:00:00+00:00",
            "resolution_due_at": "2026-11-27T16:00:00+00:00",
            "opened_at": "2026-11-23T09:00:00+00:00",
        },
    ),
    Trigger(
        COMPLAINT_PROGRESS,
        "a status change of a complaint that carries a public comment, or a staff member's"
        " public reply (crm.complaint.replied: the status is unchanged)",
        {
            "complaint_id": "the complaint's id",
            "subject": "the complaint's subject; may be None",
            "from_status": "the status before (for a reply: as now); may be None for a reply",
            "to_status": "the status now: in_progress or waiting_on_customer (or others);"
            " may be None for a reply to a complaint this service has no status of",
            "public_comment": "the agent's comment for the customer",
            "changed_at": "when (for a reply: when it was written)",
        },
        {
            **_CUSTOMER,
            "complaint_id": "CMP-3141",
            "subject": "The tent zipper broke on the first trip",
            "from_status": "acknowledged",
            "to_status": "waiting_on_customer",
            "public_comment": "Could you send us a photo of the zipper and the receipt?",
            "changed_at": "2026-11-23T11:20:00+00:00",
        },
    ),
    Trigger(
        COMPLAINT_RESOLVED,
        "the resolution summary and a request for feedback (CSAT 1-5)",
        {
            "complaint_id": "the complaint's id",
            "subject": "the complaint's subject; may be None",
            "resolution_type": "explanation, replacement, repair, refund, return, goodwill_credit",
            "summary": "what was done, for the customer",
            "refund_amount": "refund or credit, a decimal; may be None",
            "currency": "ISO 4217 code of refund_amount; may be None",
            "purchase_id": "the purchase refunded; may be None",
            "resolved_at": "when",
            "feedback_url": "where the customer rates the resolution; may be None",
        },
        {
            **_CUSTOMER,
            "complaint_id": "CMP-3141",
            "subject": "The tent zipper broke on the first trip",
            "resolution_type": "replacement",
            "summary": "We are sending you a new tent; the courier will bring it on Thursday.",
            "refund_amount": None,
            "currency": None,
            "purchase_id": "P-2026-00042",
            "resolved_at": "2026-11-24T15:45:00+00:00",
            "feedback_url": "https://portal.example.com/complaints/CMP-3141/feedback",
        },
    ),
    Trigger(
        SLA_ESCALATION,
        "internal: a complaint breached its SLA; goes to the escalation team",
        {
            "complaint_id": "the complaint's id",
            "subject": "the complaint's subject; may be None",
            "clock": "first_response or resolution",
            "severity": "warning or breach",
            "due_at": "the deadline that was missed",
            "detected_at": "when the breach was seen",
            "priority": "the priority now",
            "escalated_to": "the team it was escalated to; may be None",
        },
        {
            **_CUSTOMER,
            "complaint_id": "CMP-3141",
            "subject": "The tent zipper broke on the first trip",
            "clock": "first_response",
            "severity": "breach",
            "due_at": "2026-11-23T13:00:00+00:00",
            "detected_at": "2026-11-23T13:00:15+00:00",
            "priority": "high",
            "escalated_to": "escalations",
        },
        internal=True,
    ),
    Trigger(
        CHURN_ALERT_OWNER,
        "internal: the customer's churn risk turned high; goes to the account owner",
        {
            "level": "the risk level now (high)",
            "previous_level": "the level before; may be None",
            "score": "the risk score, 0 to 1",
            "reasons": "list of short reasons",
            "changed_at": "when",
        },
        {
            **_CUSTOMER,
            "level": "high",
            "previous_level": "medium",
            "score": 0.82,
            "reasons": ["no purchase in 120 days", "two complaints this quarter"],
            "changed_at": "2026-11-22T06:00:00+00:00",
        },
        internal=True,
    ),
    Trigger(
        RETENTION_OFFER,
        "marketing: a personal message to keep a customer whose churn risk turned high",
        {
            "offer": "a sentence describing the offer; may be None",
            "offer_code": "a voucher code; may be None",
        },
        {**_CUSTOMER, "offer": "15 % off your next order", "offer_code": "STAY15"},
        marketing=True,
    ),
    Trigger(
        BIRTHDAY_GREETING,
        "marketing: a birthday greeting at 09:00 in the customer's time zone",
        {"offer_code": "a birthday voucher code; may be None"},
        {**_CUSTOMER, "offer_code": None},
        marketing=True,
    ),
    Trigger(
        RENEWAL_REMINDER,
        "a reminder before a contract or subscription renews or expires",
        {
            "contract_id": "the contract's id",
            "product": "the contract's product name",
            "days_left": "whole days until due_date",
            "due_date": "the renewal or expiry date",
            "auto_renew": "true when it renews by itself, false when it expires",
        },
        {
            **_CUSTOMER,
            "contract_id": "INS-77-2025",
            "product": "Home insurance Plus",
            "days_left": 7,
            "due_date": "2026-11-30",
            "auto_renew": False,
        },
    ),
    Trigger(
        COMPLAINT_DAILY_STATUS,
        "a daily status report to the customer while a complaint stays open",
        {
            "complaint_id": "the complaint's id",
            "subject": "the complaint's subject; may be None",
            "status": "the status now",
            "opened_at": "when it was opened",
            "days_open": "whole days since it was opened",
            "resolution_due_at": "when the resolution is due; may be None",
            "last_public_comment": "the latest public comment; may be None",
        },
        {
            **_CUSTOMER,
            "complaint_id": "CMP-3141",
            "subject": "The tent zipper broke on the first trip",
            "status": "in_progress",
            "opened_at": "2026-11-23T09:00:00+00:00",
            "days_open": 2,
            "resolution_due_at": "2026-11-27T16:00:00+00:00",
            "last_public_comment": "The replacement tent is on its way to our store.",
        },
    ),
    Trigger(
        SIGN_IN_LINK,
        "the single-use link the customer asked for to sign in to the portal",
        {
            "sign_in_url": "the link (a secret: it signs the customer in, once)",
            "expires_at": "when the link stops working",
            "valid_minutes": "how many minutes the link works from when it was asked for",
        },
        {
            **_CUSTOMER,
            "sign_in_url": "https://portal.example.com/sign-in#token=sample-Zx3c9vQ2LkT0aW",
            "expires_at": "2026-11-23T10:15:00+00:00",
            "valid_minutes": 15,
        },
    ),
)

TRIGGERS: Mapping[str, Trigger] = MappingProxyType({t.name: t for t in _TRIGGERS})
TRIGGER_NAMES: tuple[str, ...] = tuple(TRIGGERS)


def trigger(name: str) -> Trigger:
    try:
        return TRIGGERS[name]
    except KeyError:
        raise NotFound(f"no trigger {name}; triggers are: {', '.join(TRIGGER_NAMES)}") from None
