"""Settings of the analytics service: ``RAPPORT_ANALYTICS_*``, falling back to ``RAPPORT_*``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class AnalyticsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_ANALYTICS_", extra="ignore")

    service_name: ClassVar[str] = "analytics"
    default_http_port: ClassVar[int] = 8004

    recompute_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how often every customer's segment and churn risk are judged again",
    )
    regrade_growth: float = Field(
        default=0.2,
        ge=0,
        le=10,
        description=(
            "judge everyone again (a few seconds later, not at the next interval) once the"
            " buying customers grew by this fraction since last judged; 0: only periodically"
        ),
    )
    regrade_settle_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how long a growth-triggered judgement waits for the rest of a burst",
    )
