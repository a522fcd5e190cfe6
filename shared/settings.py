"""Settings shared by every service: one env prefix per service, with fallbacks.

A service reads ``RAPPORT_<SERVICE>_<FIELD>`` first, then the platform-wide
``RAPPORT_<FIELD>``, so one ``RAPPORT_KAFKA_BOOTSTRAP`` serves the whole stack while a
single service can still be pointed elsewhere.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

# Usable only in development; every other environment must set its own secret.
DEVELOPMENT_AUTH_SECRET = "rapport-development-secret-not-for-production-use"
MIN_SECRET_LENGTH = 32
# A web origin as a browser sends it: scheme, host and optional port; no path, no wildcard.
ORIGIN = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$", re.IGNORECASE)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class PlatformSettings(BaseSettings):
    """What every Rapport process needs to reach the platform."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    topic_replication_factor: int = Field(default=1, ge=1)
    mongodb_uri: str = "mongodb://127.0.0.1:27017/?retryWrites=false"
    # Keys per $in query a batch's read sends (shared.mongo.in_chunk); 0: all in one, as
    # MongoDB wants. The Python dev store wants 50, and the dev tooling sets that for it.
    mongodb_in_chunk: int = Field(default=0, ge=0)
    log_level: str = "INFO"

    @property
    def kafka_servers(self) -> list[str]:
        return [server.strip() for server in self.kafka_bootstrap.split(",") if server.strip()]


class ServiceSettings(PlatformSettings):
    """Base of each service's settings; subclasses set ``service_name`` and the prefix."""

    service_name: ClassVar[str] = ""
    default_http_port: ClassVar[int] = 8000

    http_host: str = "127.0.0.1"
    http_port: int = 0
    mongodb_database: str = ""
    auth_secret: SecretStr | None = None
    admin_token: SecretStr | None = None
    consumer_max_attempts: int = Field(default=3, ge=1)
    # One unit of work takes what one poll gives, up to this many records, waiting at
    # most ``consumer_linger_ms`` for more once the first arrived.
    consumer_batch_size: int = Field(default=500, ge=1, le=10_000)
    consumer_linger_ms: int = Field(default=50, ge=0, le=10_000)
    # Stream workers per process (Kafka Streams' ``num.stream.threads``): each is a member
    # of the consumer group with partitions of its own and applies its batches in
    # transactions of its own, so one runs its handlers while another waits for the store.
    # Events with the same key stay on one partition, hence in one worker, in order. More
    # than one raises a backlog's throughput a little and costs latency under steady load
    # (docs/consuming.md); replicas scale further.
    consumer_streams: int = Field(default=1, ge=1, le=16)
    # A replica that stops heartbeating loses its partitions after this long.
    consumer_session_timeout_ms: int = Field(default=10_000, ge=1_000)
    outbox_poll_interval_seconds: float = Field(default=0.2, gt=0)
    # The customer portal (a page profiles serves at /portal/) calls every service's API
    # from the browser; these origins may do so (CORS). Tokens travel in the Authorization
    # header, never in cookies, so no credentials are allowed and no wildcard is needed.
    portal_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins of the customer portal allowed to call the API from a browser"
        " (CORS), comma-separated, e.g. https://profiles.example.com; empty: none",
    )

    @field_validator("portal_origins", mode="before")
    @classmethod
    def _origins_as_a_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.strip().startswith("["):  # a JSON list, as the Helm chart passes lists
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"portal_origins is not a JSON list: {error}") from None
        return [part.strip() for part in value.split(",") if part.strip()]

    @field_validator("portal_origins")
    @classmethod
    def _plain_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: name scheme, host and port, such as"
                    " https://portal.example.com (no path, no wildcard)"
                )
        return list(dict.fromkeys(origin.lower() for origin in origins))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        platform_env = EnvSettingsSource(settings_cls, env_prefix="RAPPORT_")
        return init_settings, env_settings, platform_env, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> Self:
        if not self.http_port:
            self.http_port = self.default_http_port
        if not self.mongodb_database:
            self.mongodb_database = f"rapport_{self.service_name}"
        if self.admin_token is not None and not self.admin_token.get_secret_value():
            self.admin_token = None
        if self.auth_secret is None or not self.auth_secret.get_secret_value():
            if self.environment is not Environment.DEVELOPMENT:
                raise ValueError(
                    f"RAPPORT_AUTH_SECRET must be set when RAPPORT_ENVIRONMENT={self.environment}"
                )
            self.auth_secret = SecretStr(DEVELOPMENT_AUTH_SECRET)
        secret = self.auth_secret.get_secret_value()
        if self.environment is not Environment.DEVELOPMENT and (
            secret == DEVELOPMENT_AUTH_SECRET or len(secret) < MIN_SECRET_LENGTH
        ):
            raise ValueError(
                f"RAPPORT_AUTH_SECRET must be a private value of at least {MIN_SECRET_LENGTH}"
                " characters outside development"
            )
        return self

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}rapport-{self.service_name}"

    @property
    def secret(self) -> str:
        assert self.auth_secret is not None  # set by the validator
        return self.auth_secret.get_secret_value()

    def describe(self) -> dict[str, Any]:
        """Settings safe to log: secrets are never included."""
        return self.model_dump(exclude={"auth_secret", "admin_token"}, mode="json")
