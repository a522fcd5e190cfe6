"""Settings of the profiles service: ``RAPPORT_PROFILES_*``, falling back to ``RAPPORT_*``."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ProfilesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_PROFILES_", extra="ignore")

    service_name: ClassVar[str] = "profiles"
    default_http_port: ClassVar[int] = 8001
