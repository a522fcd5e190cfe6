"""Settings of the notifications service.

``RAPPORT_NOTIFICATIONS_*`` first, then the platform-wide ``RAPPORT_*``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_NOTIFICATIONS_", extra="ignore")

    service_name: ClassVar[str] = "notifications"
    default_http_port: ClassVar[int] = 8003
