"""Settings of the profiles service: ``RAPPORT_PROFILES_*``, falling back to ``RAPPORT_*``."""

from __future__ import annotations

from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.profiles.ledger import DEFAULT_ADDONS, Addon
from shared.settings import ServiceSettings

# Without a deployment schema, custom attributes may hold any scalar value.
DEFAULT_ATTRIBUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
}


class ProfilesSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_PROFILES_", extra="ignore")

    service_name: ClassVar[str] = "profiles"
    default_http_port: ClassVar[int] = 8001

    attribute_schema: dict[str, Any] = Field(
        default_factory=lambda: dict(DEFAULT_ATTRIBUTE_SCHEMA),
        description="JSON Schema (2020-12) the custom attributes of every profile must match",
    )

    # The customer portal: this service serves it at /portal/ (services/profiles/portal_api.py)
    # and signs customers in (services/profiles/sign_in.py).
    portal_url: str = Field(
        default="http://127.0.0.1:8001/portal",
        pattern=r"^https?://[^\s#?]+$",
        description="base of the customer portal; sign-in links go to <portal_url>/sign-in",
    )
    portal_complaints_url: str = Field(
        default="http://127.0.0.1:8002",
        pattern=r"^https?://[^\s#?]+$",
        description="the complaints service as the customer's browser reaches it (the portal"
        " calls its API: help centre, support requests); allow the portal's origin there"
        " with RAPPORT_PORTAL_ORIGINS",
    )
    portal_notifications_url: str = Field(
        default="http://127.0.0.1:8003",
        pattern=r"^https?://[^\s#?]+$",
        description="the notifications service as the customer's browser reaches it (the"
        " portal's inbox)",
    )
    portal_addons: list[Addon] = Field(
        default_factory=lambda: list(DEFAULT_ADDONS),
        max_length=100,
        description="the add-ons customers may order in the portal, at these prices: a JSON"
        " list of {sku, name, names: {locale: name}, category, unit_price, currency}",
    )
    sign_in_link_ttl_seconds: int = Field(
        default=900, ge=1, le=86_400, description="how long a sign-in link works (once)"
    )
    sign_in_links_per_window: int = Field(
        default=5, ge=1, description="sign-in links sent per e-mail address per window, at most"
    )
    sign_in_window_seconds: int = Field(
        default=900, ge=1, description="the window of sign-in_links_per_window"
    )
    customer_token_ttl_seconds: int = Field(
        default=43_200, ge=60, le=30 * 86_400, description="lifetime of a portal sign-in token"
    )

    @field_validator("attribute_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise ValueError(f"attribute_schema is not a JSON Schema: {error.message}") from None
        return schema
