"""Settings of the complaints service: ``RAPPORT_COMPLAINTS_*``, falling back to ``RAPPORT_*``."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ComplaintsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_COMPLAINTS_", extra="ignore")

    service_name: ClassVar[str] = "complaints"
    default_http_port: ClassVar[int] = 8002
