"""Settings of the profiles service: ``RAPPORT_PROFILES_*``, falling back to ``RAPPORT_*``."""

from __future__ import annotations

from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

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

    @field_validator("attribute_schema")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as error:
            raise ValueError(f"attribute_schema is not a JSON Schema: {error.message}") from None
        return schema
