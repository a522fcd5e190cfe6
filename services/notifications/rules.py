"""The notification rules: which trigger fires for which event, and how each is configured.

Pure: no I/O. Each rule has a name shared with the templates (a template exists per rule
x channel x locale), a purpose (transactional or marketing), an audience (the customer,
or staff for internal messages), the channels it uses by default, and parameters. Every
rule can be switched off and reconfigured (``PUT /api/v1/rules/{name}``, or the
``RAPPORT_NOTIFICATIONS_RULES`` setting for a deployment's defaults).

- purchase_thank_you: crm.purchase.completed (transactional, customer)
- return_confirmation: crm.purchase.returned (transactional, customer)
- complaint_acknowledgement: crm.complaint.opened (transactional, customer)
- complaint_progress: crm.complaint.status_changed with a public comment, and
  crm.complaint.replied (a staff member's public reply) (transactional)
- complaint_resolved: crm.complaint.resolved, summary and CSAT request (transactional)
- sla_escalation: crm.complaint.sla_breached, severity breach (internal, to staff)
- churn_alert_owner: crm.customer.churn_risk_changed to high (internal, account owner)
- retention_offer: crm.customer.churn_risk_changed to high (marketing, customer)
- birthday_greeting: schedule, the birthday at ``local_time`` (marketing, customer)
- renewal_reminder: schedule, ``days_before`` a contract renews or expires (transactional)
- complaint_daily_status: schedule, daily at ``local_time`` while a complaint is open
- sign_in_link: crm.customer.sign_in_requested (transactional, customer, e-mail only,
  *requested*: the customer waits for it, so it goes at once whatever the hour)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.notifications.catalog import (
    BIRTHDAY_GREETING,
    CHURN_ALERT_OWNER,
    COMPLAINT_ACKNOWLEDGEMENT,
    COMPLAINT_DAILY_STATUS,
    COMPLAINT_PROGRESS,
    COMPLAINT_RESOLVED,
    PURCHASE_THANK_YOU,
    RENEWAL_REMINDER,
    RETENTION_OFFER,
    RETURN_CONFIRMATION,
    SIGN_IN_LINK,
    SLA_ESCALATION,
)
from services.notifications.domain import Channel, Purpose
from shared.errors import InvalidInput, NotFound

# The rule names are the templates' trigger names: one list, in the catalog (re-exported).
__all__ = [
    "BIRTHDAY_GREETING",
    "CHURN_ALERT_OWNER",
    "COMPLAINT_ACKNOWLEDGEMENT",
    "COMPLAINT_DAILY_STATUS",
    "COMPLAINT_PROGRESS",
    "COMPLAINT_RESOLVED",
    "PURCHASE_THANK_YOU",
    "RENEWAL_REMINDER",
    "RETENTION_OFFER",
    "RETURN_CONFIRMATION",
    "RULE_NAMES",
    "SIGN_IN_LINK",
    "SLA_ESCALATION",
    "AtLocalTime",
    "Audience",
    "BirthdayParameters",
    "LocalTime",
    "NoParameters",
    "Offer",
    "RenewalParameters",
    "RuleConfig",
    "RuleDefinition",
    "RuleUpdate",
    "configured",
    "days_before",
    "definition",
    "local_time",
    "triggered_by",
    "validate_parameters",
    "validate_update",
]


class Audience(StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"


LocalTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["09:00"])]


class NoParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AtLocalTime(BaseModel):
    model_config = ConfigDict(extra="forbid")

    local_time: LocalTime = Field(default="09:00", description="HH:MM in the customer's zone")

    def at(self) -> time:
        return time.fromisoformat(self.local_time)


class Offer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offer: str | None = Field(default=None, max_length=500, description="shown in the message")
    offer_code: str | None = Field(default=None, max_length=100, description="a voucher code")


class BirthdayParameters(AtLocalTime):
    offer_code: str | None = Field(default=None, max_length=100, description="a voucher code")


class RenewalParameters(AtLocalTime):
    days_before: list[Annotated[int, Field(ge=0, le=366)]] = Field(
        default_factory=lambda: [30, 7, 1],
        min_length=1,
        max_length=10,
        description="reminders this many days before the renewal (or expiry) date",
    )

    @field_validator("days_before")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        return sorted(set(value), reverse=True)


@dataclass(frozen=True)
class RuleDefinition:
    name: str
    description: str
    fires_on: str
    purpose: Purpose
    audience: Audience
    channels: tuple[Channel, ...]
    parameters: type[BaseModel] = NoParameters
    scheduled: bool = False
    event_types: tuple[str, ...] = field(default=())
    # The customer asked for this very message a moment ago and waits for it (a sign-in
    # link): it goes at once (see ``policy.decide``).
    requested: bool = False
    # The channels it may be configured to use (a sign-in link: e-mail, nothing else).
    allowed_channels: tuple[Channel, ...] = tuple(Channel)


_CUSTOMER_CHANNELS = (Channel.EMAIL, Channel.IN_APP, Channel.WEBHOOK)
_STAFF_CHANNELS = (Channel.EMAIL, Channel.WEBHOOK)

DEFINITIONS: dict[str, RuleDefinition] = {
    rule.name: rule
    for rule in (
        RuleDefinition(
            PURCHASE_THANK_YOU,
            "thanks the customer by name for a purchase, naming the items",
            "crm.purchase.completed",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            _CUSTOMER_CHANNELS,
            event_types=("crm.purchase.completed",),
        ),
        RuleDefinition(
            RETURN_CONFIRMATION,
            "confirms a return and its refund",
            "crm.purchase.returned",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            _CUSTOMER_CHANNELS,
            event_types=("crm.purchase.returned",),
        ),
        RuleDefinition(
            COMPLAINT_ACKNOWLEDGEMENT,
            "acknowledges a complaint with the expected response and resolution times",
            "crm.complaint.opened",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            (Channel.EMAIL, Channel.SMS, Channel.IN_APP, Channel.WEBHOOK),
            event_types=("crm.complaint.opened",),
        ),
        RuleDefinition(
            COMPLAINT_PROGRESS,
            "tells the customer about a status change that carries a public comment, or a"
            " staff member's public reply",
            "crm.complaint.status_changed with a public comment, or crm.complaint.replied",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            _CUSTOMER_CHANNELS,
            event_types=("crm.complaint.status_changed", "crm.complaint.replied"),
        ),
        RuleDefinition(
            COMPLAINT_RESOLVED,
            "summarises the resolution and asks for feedback (CSAT)",
            "crm.complaint.resolved",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            _CUSTOMER_CHANNELS,
            event_types=("crm.complaint.resolved",),
        ),
        RuleDefinition(
            SLA_ESCALATION,
            "internal: tells the escalation team a complaint breached its SLA",
            "crm.complaint.sla_breached with severity breach",
            Purpose.TRANSACTIONAL,
            Audience.STAFF,
            _STAFF_CHANNELS,
            event_types=("crm.complaint.sla_breached",),
        ),
        RuleDefinition(
            CHURN_ALERT_OWNER,
            "internal: alerts the account owner that churn risk turned high",
            "crm.customer.churn_risk_changed to high",
            Purpose.TRANSACTIONAL,
            Audience.STAFF,
            _STAFF_CHANNELS,
            event_types=("crm.customer.churn_risk_changed",),
        ),
        RuleDefinition(
            RETENTION_OFFER,
            "a retention message when churn risk turned high, if marketing consent allows",
            "crm.customer.churn_risk_changed to high",
            Purpose.MARKETING,
            Audience.CUSTOMER,
            (Channel.EMAIL, Channel.IN_APP),
            parameters=Offer,
            event_types=("crm.customer.churn_risk_changed",),
        ),
        RuleDefinition(
            BIRTHDAY_GREETING,
            "a birthday greeting at local_time in the customer's time zone",
            "schedule: the customer's birthday",
            Purpose.MARKETING,
            Audience.CUSTOMER,
            (Channel.EMAIL, Channel.IN_APP),
            parameters=BirthdayParameters,
            scheduled=True,
        ),
        RuleDefinition(
            RENEWAL_REMINDER,
            "reminders days_before a contract renews or expires, at local_time",
            "schedule: contracts' renewal or expiry dates",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            (Channel.EMAIL, Channel.SMS, Channel.IN_APP),
            parameters=RenewalParameters,
            scheduled=True,
        ),
        RuleDefinition(
            COMPLAINT_DAILY_STATUS,
            "a daily status report at local_time while a complaint stays open",
            "schedule: every day while a complaint is open",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            (Channel.EMAIL, Channel.IN_APP),
            parameters=AtLocalTime,
            scheduled=True,
        ),
        RuleDefinition(
            SIGN_IN_LINK,
            "the single-use portal sign-in link the customer asked for, at once",
            "crm.customer.sign_in_requested",
            Purpose.TRANSACTIONAL,
            Audience.CUSTOMER,
            (Channel.EMAIL,),
            event_types=("crm.customer.sign_in_requested",),
            requested=True,
            allowed_channels=(Channel.EMAIL,),
        ),
    )
}

RULE_NAMES = tuple(DEFINITIONS)


class RuleConfig(BaseModel):
    """A rule as it is configured now."""

    name: str
    description: str
    fires_on: str
    purpose: Purpose
    audience: Audience
    scheduled: bool
    enabled: bool
    channels: list[Channel]
    parameters: dict[str, Any]


class RuleUpdate(BaseModel):
    """``PUT /rules/{name}``: what to change; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    channels: list[Channel] | None = Field(default=None, max_length=4)
    parameters: dict[str, Any] | None = None


def definition(name: str) -> RuleDefinition:
    try:
        return DEFINITIONS[name]
    except KeyError:
        raise NotFound(f"no rule {name}; rules are: {', '.join(RULE_NAMES)}") from None


def configured(name: str, *overrides: Mapping[str, Any]) -> RuleConfig:
    """The rule's defaults with ``overrides`` applied in order (settings, then stored)."""
    rule = definition(name)
    enabled = True
    channels: list[Channel] = list(rule.channels)
    parameters: dict[str, Any] = rule.parameters().model_dump()
    for override in overrides:
        if override.get("enabled") is not None:
            enabled = bool(override["enabled"])
        if override.get("channels") is not None:
            channels = _channels(override["channels"], rule)
        if override.get("parameters") is not None:
            parameters = validate_parameters(name, {**parameters, **override["parameters"]})
    return RuleConfig(
        name=rule.name,
        description=rule.description,
        fires_on=rule.fires_on,
        purpose=rule.purpose,
        audience=rule.audience,
        scheduled=rule.scheduled,
        enabled=enabled,
        channels=channels,
        parameters=parameters,
    )


def _channels(values: Sequence[Any], rule: RuleDefinition) -> list[Channel]:
    try:
        channels = [Channel(value) for value in values]
    except ValueError:
        raise InvalidInput(f"channels are {', '.join(Channel)}") from None
    refused = [channel.value for channel in channels if channel not in rule.allowed_channels]
    if refused:
        allowed = ", ".join(channel.value for channel in rule.allowed_channels)
        raise InvalidInput(
            f"{rule.name} cannot use {', '.join(refused)}; its channels are: {allowed}"
        )
    return list(dict.fromkeys(channels))


def validate_parameters(name: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's parameters checked against its model; 422 naming what is wrong."""
    model = definition(name).parameters
    try:
        return model.model_validate(dict(parameters)).model_dump()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'parameters'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise InvalidInput(f"parameters of {name}: {problems}") from None


def validate_update(name: str, update: RuleUpdate, current: RuleConfig) -> dict[str, Any]:
    """The stored override after ``update``; raises 422 for unusable parameters."""
    override: dict[str, Any] = {}
    if update.enabled is not None:
        override["enabled"] = update.enabled
    if update.channels is not None:
        override["channels"] = [
            channel.value for channel in _channels(update.channels, definition(name))
        ]
    if update.parameters is not None:
        override["parameters"] = validate_parameters(
            name, {**current.parameters, **update.parameters}
        )
    return override


def local_time(config: RuleConfig) -> time:
    return time.fromisoformat(str(config.parameters.get("local_time", "09:00")))


def days_before(config: RuleConfig) -> list[int]:
    return [int(day) for day in config.parameters.get("days_before", [30, 7, 1])]


def triggered_by(event_type: str, payload: Mapping[str, Any]) -> list[str]:
    """The rules an event fires (before each rule's on/off switch is looked at)."""
    if event_type == "crm.complaint.status_changed":
        return [COMPLAINT_PROGRESS] if payload.get("public_comment") else []
    if event_type == "crm.complaint.sla_breached":
        return [SLA_ESCALATION] if payload.get("severity", "breach") == "breach" else []
    if event_type == "crm.customer.churn_risk_changed":
        turned_high = payload.get("level") == "high" and payload.get("previous_level") != "high"
        return [CHURN_ALERT_OWNER, RETENTION_OFFER] if turned_high else []
    return [rule.name for rule in DEFINITIONS.values() if event_type in rule.event_types]
