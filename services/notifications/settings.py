"""Settings of the notifications service.

``RAPPORT_NOTIFICATIONS_*`` first, then the platform-wide ``RAPPORT_*``.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.notifications.domain import Channel, Purpose
from services.notifications.policy import QUIET_HOURS_APPLY_TO, channel_purpose_pairs
from services.notifications.rules import configured
from shared.errors import RapportError
from shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_NOTIFICATIONS_", extra="ignore")

    service_name: ClassVar[str] = "notifications"
    default_http_port: ClassVar[int] = 8003

    # Channels
    smtp_host: str = Field(default="127.0.0.1", description="SMTP server for e-mail")
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_tls: bool = Field(default=False, description="implicit TLS (port 465)")
    smtp_from: str = Field(
        default="Rapport <notifications@rapport.local>", description="From of every e-mail"
    )
    sms_url: str = Field(
        default="http://127.0.0.1:1026/messages", description="the SMS provider's HTTP endpoint"
    )
    sms_api_key: SecretStr | None = None
    sms_sender_id: str = Field(default="Rapport", max_length=11)
    send_timeout_seconds: float = Field(
        default=10.0, gt=0, description="longest a channel may take to accept one message"
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, description="longest a webhook receiver may take to answer"
    )
    webhook_allow_private: bool | None = Field(
        default=None,
        description="allow webhook URLs on private addresses and plain http (default: not in"
        " production)",
    )
    webhook_allowed_hosts: list[str] = Field(default_factory=list)

    # Dispatcher
    dispatcher_poll_interval_seconds: float = Field(
        default=0.25, gt=0, description="how often the dispatcher looks for due deliveries"
    )
    # (a claim is a transaction, and on the Rust dev store its query costs what all the due
    # deliveries cost, whatever the limit: through a backlog, 200 a claim sent 26 % more
    # than 50, with a third less work for the store; bench/README.md)
    dispatcher_batch_size: int = Field(
        default=200, ge=1, le=1000, description="deliveries claimed at most in one go"
    )
    dispatcher_concurrency: int = Field(
        default=16, ge=1, le=256, description="sends in flight at most at once"
    )
    dispatcher_max_in_hand: int = Field(
        default=2000,
        ge=0,
        le=100_000,
        description="deliveries due now the event path hands straight to the dispatcher"
        " while fewer than this wait to be sent (0: the dispatcher always looks for them)",
    )
    dispatcher_stop_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description=(
            "how long a stop waits for the sends in flight to finish (and be recorded) before"
            " abandoning them to be retried after the lease"
        ),
    )
    dispatcher_lease_seconds: float = Field(
        default=120.0, gt=0, description="how long a claimed delivery is reserved for a sender"
    )
    max_attempts: int = Field(default=5, ge=1, description="attempts before a delivery fails")
    backoff_base_seconds: float = Field(default=2.0, gt=0)
    backoff_cap_seconds: float = Field(default=600.0, gt=0)
    unknown_customer_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description=(
            "how long a delivery for a customer not yet known waits for their registration"
            " before it is suppressed with reason `unknown customer`"
        ),
    )

    # Schedules
    scheduler_poll_interval_seconds: float = Field(default=30.0, gt=0)

    # Respect
    default_time_zone: str = Field(
        default="UTC", description="IANA zone for customers whose profile has not arrived yet"
    )
    default_locale: str = Field(default="en")
    quiet_hours_start: str | None = Field(
        default="21:00",
        pattern=r"^(([01]\d|2[0-3]):[0-5]\d)?$",
        description="local HH:MM when quiet hours begin; empty: no default quiet hours",
    )
    quiet_hours_end: str | None = Field(
        default="08:00", pattern=r"^(([01]\d|2[0-3]):[0-5]\d)?$", description="local HH:MM"
    )
    quiet_hours_apply_to: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: sorted(f"{c}:{p}" for c, p in QUIET_HOURS_APPLY_TO),
        description=(
            "the channel:purpose pairs quiet hours hold back, comma-separated or a JSON list"
            " (default: every SMS, marketing e-mail and in-app); the others go at once;"
            " empty: none"
        ),
    )
    marketing_daily_cap: int = Field(
        default=2, ge=0, description="marketing messages per customer per local day"
    )

    # Staff recipients
    escalation_address: str = Field(
        default="escalations@rapport.local", description="where SLA escalations go"
    )
    team_addresses: dict[str, str] = Field(
        default_factory=dict,
        description='per team, e.g. {"escalations": "esc@example.com"} (JSON)',
    )
    owner_fallback_address: str = Field(
        default="account-owners@rapport.local",
        description="where churn alerts go when the customer has no account owner",
    )
    company_name: str = Field(default="Rapport", description="the sender's name in messages")
    portal_url: str = Field(
        default="http://127.0.0.1:8001/portal",
        description="base of links in messages (feedback): the customer portal",
    )

    # Rules
    rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            'rule overrides (JSON), e.g. {"birthday_greeting": {"enabled": false},'
            ' "renewal_reminder": {"parameters": {"days_before": [14, 3]}}}'
        ),
    )

    @field_validator("quiet_hours_apply_to", mode="before")
    @classmethod
    def _pairs_as_a_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().startswith("["):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO is not a JSON list: {error}"
                ) from None
        return [part for part in re.split(r"[,\s]+", value) if part]

    @field_validator("quiet_hours_apply_to")
    @classmethod
    def _pairs_exist(cls, value: list[str]) -> list[str]:
        try:
            pairs = channel_purpose_pairs(value)
        except ValueError as error:
            raise ValueError(f"RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO: {error}") from None
        return sorted(f"{channel}:{purpose}" for channel, purpose in pairs)

    @property
    def quiet_hours_pairs(self) -> frozenset[tuple[Channel, Purpose]]:
        """What quiet hours hold back, as the policy decision takes it."""
        return channel_purpose_pairs(self.quiet_hours_apply_to)

    @model_validator(mode="after")
    def _rules_exist_and_fit(self) -> Self:
        for name, override in self.rules.items():
            try:
                configured(name, override)
            except RapportError as error:
                raise ValueError(f"RAPPORT_NOTIFICATIONS_RULES: {error.detail}") from None
        return self

    def describe(self) -> dict[str, Any]:
        return self.model_dump(
            exclude={"auth_secret", "admin_token", "smtp_password", "sms_api_key"}, mode="json"
        )
