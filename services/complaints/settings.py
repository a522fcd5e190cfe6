"""Settings of the complaints service: ``RAPPORT_COMPLAINTS_*``, falling back to ``RAPPORT_*``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.complaints.domain.community import DEFAULT_TIER_BENEFITS, TierBenefits
from shared.settings import ServiceSettings


def _default_tier_benefits() -> TierBenefits:
    return {tier: dict(texts) for tier, texts in DEFAULT_TIER_BENEFITS.items()}


class ComplaintsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_COMPLAINTS_", extra="ignore")

    service_name: ClassVar[str] = "complaints"
    default_http_port: ClassVar[int] = 8002

    sla_check_interval_seconds: float = Field(
        default=15.0, gt=0, description="how often the SLA watcher looks for due deadlines"
    )
    sla_warning_share: float = Field(
        default=0.8, gt=0, lt=1, description="share of an SLA target at which to warn"
    )
    escalation_team: str = Field(
        default="escalations", min_length=1, description="team a breached complaint goes to"
    )
    reopen_window_hours: float = Field(
        default=14 * 24, ge=0, description="how long after resolution a complaint may reopen"
    )
    community_edit_window_minutes: float = Field(
        default=60, ge=0, description="how long after posting an author may edit the post"
    )
    community_tier_benefits: TierBenefits = Field(
        default_factory=_default_tier_benefits,
        description="loyalty tier to the benefits the community shows beside it (JSON): a "
        'text for every language, or texts per locale with an `en` fallback ({"en": ..., '
        '"hr": ...})',
    )
