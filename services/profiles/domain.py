"""Profiles domain: who a customer is, and the rules their data must satisfy.

Pure: no I/O. Contact data is normalised on the way in (e-mails lower-cased, phones in
E.164, BCP 47 locales in canonical case, IANA time zones checked), so that uniqueness and
search compare like with like.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import langcodes
import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from shared.errors import InvalidInput, validation_errors
from shared.events.customers import PostalAddress
from shared.identity import Link

MAX_CONTACTS = 10
MAX_TAGS = 50
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
# Keys of stored maps are plain identifiers: no ``.`` or ``$`` (MongoDB field paths) and no
# ``:`` (``system:id`` is how an external id is named in queries and events).
KEY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ExternalSystem = Annotated[str, StringConstraints(strip_whitespace=True, pattern=KEY_PATTERN)]
ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AttributeName = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]


def normalise_email(value: str) -> str:
    return value.strip().lower()


def normalise_phone(value: str) -> str:
    """E.164 form of an international number (``+385 91 234 5678`` -> ``+385912345678``)."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(
            f"{value!r} is not a phone number in international form (+<country code>...)"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_locale(value: str) -> str:
    if not langcodes.tag_is_valid(value):
        raise ValueError(f"{value!r} is not a BCP 47 language tag such as 'hr' or 'fa-IR'")
    return str(langcodes.standardize_tag(value))


def check_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as 'Europe/Zagreb'") from None
    return value


def check_birthday(value: date) -> date:
    if value > datetime.now(UTC).date():
        raise ValueError("a birthday cannot be in the future")
    if value.year < 1900:
        raise ValueError("a birthday before 1900 is not plausible")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Email = Annotated[EmailStr, AfterValidator(normalise_email)]
Phone = Annotated[str, StringConstraints(max_length=40), AfterValidator(normalise_phone)]
Locale = Annotated[str, StringConstraints(max_length=35), AfterValidator(normalise_locale)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(check_time_zone)]
Birthday = Annotated[date, AfterValidator(check_birthday)]
Emails = Annotated[list[Email], Field(max_length=MAX_CONTACTS), AfterValidator(_unique)]
Phones = Annotated[list[Phone], Field(max_length=MAX_CONTACTS), AfterValidator(_unique)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_unique)]
AttributeValue = str | int | float | bool | None
ExternalIds = Annotated[dict[ExternalSystem, ExternalId], Field(max_length=20)]
Attributes = Annotated[dict[AttributeName, AttributeValue], Field(max_length=100)]


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"
    ERASED = "erased"


class ProfileFields(BaseModel):
    """What a customer's profile says; every field may be changed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    given_name: Name | None = None
    family_name: Name | None = None
    preferred_name: Name | None = None
    emails: Emails = Field(default_factory=list)
    phones: Phones = Field(default_factory=list)
    address: PostalAddress | None = None
    locale: Locale = "en"
    time_zone: TimeZone = "UTC"
    birthday: Birthday | None = None
    tags: Tags = Field(default_factory=list)
    external_ids: ExternalIds = Field(default_factory=dict)
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _named_or_reachable(self) -> Self:
        # An external id alone is enough: a POS may know a loyalty card and nothing else.
        if not (
            self.given_name or self.family_name or self.emails or self.phones or self.external_ids
        ):
            raise ValueError("a customer needs a name, an e-mail, a phone or an external id")
        return self


def link_of_profile(status: str, merged_into: str | None) -> Link:
    """A profile's merge link (``shared.identity``) from its status and survivor."""
    return Link(
        merged_into=merged_into if status == CustomerStatus.MERGED else None,
        erased=status == CustomerStatus.ERASED,
    )


class Customer(ProfileFields):
    """A profile as stored: its fields plus identity and bookkeeping."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: CustomerStatus = CustomerStatus.ACTIVE
    merged_into: str | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 1

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    @property
    def link(self) -> Link:
        """What following a merge chain reads of this profile (``shared.identity``): the
        survivor of a merged one, and whether it was erased."""
        return link_of_profile(self.status, self.merged_into)

    @property
    def display_name(self) -> str:
        """The name to greet the customer with (the personal touch)."""
        return self.preferred_name or self.given_name or self.family_name or ""

    def identity_keys(self) -> set[str]:
        """Keys that must belong to at most one live profile."""
        if self.status is not CustomerStatus.ACTIVE:
            return set()
        keys = {f"email:{email}" for email in self.emails}
        keys |= {f"phone:{phone}" for phone in self.phones}
        keys |= {f"external:{system}:{value}" for system, value in self.external_ids.items()}
        return keys

    def with_changes(self, changes: dict[str, Any], now: datetime) -> Customer:
        """A new version of this profile with ``changes`` applied and validated."""
        fields = self.model_dump(include=set(ProfileFields.model_fields))
        fields.update(changes)
        try:
            validated = ProfileFields.model_validate(fields)
        except ValidationError as error:  # e.g. a change that leaves no name nor contact
            raise InvalidInput(
                "the changed profile would not be valid",
                errors=validation_errors(error.errors(include_url=False)),
            ) from None
        return self.model_copy(
            update={
                **{name: getattr(validated, name) for name in ProfileFields.model_fields},
                "updated_at": now,
                "version": self.version + 1,
            }
        )


def new_customer_id() -> str:
    return f"cus_{uuid.uuid4().hex}"


def register(fields: ProfileFields, now: datetime, customer_id: str | None = None) -> Customer:
    return Customer(
        id=customer_id or new_customer_id(),
        created_at=now,
        updated_at=now,
        **fields.model_dump(),
    )


def changed_fields(before: Customer, after: Customer) -> list[str]:
    return [
        name for name in ProfileFields.model_fields if getattr(before, name) != getattr(after, name)
    ]


class CustomerSort(StrEnum):
    NEWEST_CREATED = "-created_at"
    OLDEST_CREATED = "created_at"
    LAST_UPDATED = "-updated_at"
    FIRST_UPDATED = "updated_at"

    @property
    def field(self) -> str:
        return self.value.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


@dataclass(frozen=True)
class CustomerQuery:
    """Which live profiles a listing asks for (all given criteria hold), normalised."""

    email: str | None = None
    phone: str | None = None
    tag: str | None = None
    external_id: tuple[str, str] | None = None  # (system, id)
    name_prefix: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        email: str | None = None,
        phone: str | None = None,
        tag: str | None = None,
        external_id: str | None = None,
        name_prefix: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> CustomerQuery:
        """From a listing's parameters; ``external_id`` is ``system:id``."""
        external: tuple[str, str] | None = None
        if external_id:
            system, separator, value = external_id.partition(":")
            if not separator or not re.match(KEY_PATTERN, system):
                raise InvalidInput("external_id is `system:id`, the system letters, digits, _ or -")
            external = (system, value)
        try:
            phone = normalise_phone(phone) if phone else None
        except ValueError as error:
            raise InvalidInput(str(error)) from None
        return cls(
            email=normalise_email(email) if email else None,
            phone=phone,
            tag=tag or None,
            external_id=external,
            name_prefix=name_prefix or None,
            created_after=created_after,
            created_before=created_before,
        )
