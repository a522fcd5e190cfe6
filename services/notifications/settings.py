"""Settings of the notifications service.

``RAPPORT_NOTIFICATIONS_*`` first, then the platform-wide ``RAPPORT_*``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

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
    dispatcher_batch_size: int = Field(default=50, ge=1, le=1000)
    dispatcher_concurrency: int = Field(default=8, ge=1, le=256)
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
        default="http://127.0.0.1:8003", description="base of links in messages (feedback)"
    )

    # Rules
    rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            'rule overrides (JSON), e.g. {"birthday_greeting": {"enabled": false},'
            ' "renewal_reminder": {"parameters": {"days_before": [14, 3]}}}'
        ),
    )

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
