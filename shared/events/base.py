"""Base of every event payload: the ``data`` of a Rapport CloudEvent."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)


def _decimal_text_only(value: object) -> object:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string such as "19.90", never a number')
    return value


# What a store's decimal type keeps exactly (MongoDB's Decimal128, IEEE 754 decimal128).
AMOUNT_DIGITS = 34


def _is_finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("amount must be a finite decimal")
    # (between the first and the last digit that is not zero; ``normalize`` would round)
    digits = value.as_tuple().digits
    if len(digits) > AMOUNT_DIGITS and len("".join(map(str, digits)).strip("0")) > AMOUNT_DIGITS:
        raise ValueError(f"amount has more than {AMOUNT_DIGITS} significant digits")
    return value


# Money travels as a decimal string ("19.90"), never a float: a JSON number is refused.
Amount = Annotated[
    Decimal,
    BeforeValidator(_decimal_text_only),
    AfterValidator(_is_finite),
    PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}),
]
NonNegativeAmount = Annotated[Amount, Field(ge=0)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Timestamp = AwareDatetime
ShortText = Annotated[str, StringConstraints(max_length=500)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]


class Personal:
    """Marks a payload field that could identify the person (``Annotated[T, PERSONAL]``):
    an erasure blanks it in the events not yet published (:meth:`EventPayload.scrubbed`).
    It changes neither validation nor the JSON Schema."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PERSONAL"


PERSONAL = Personal()
# What a personal text that cannot be empty says once erased.
ERASED_TEXT = "[erased]"


class Record(BaseModel):
    """An immutable value inside an event; unknown fields are ignored (tolerant reader)."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class EventPayload(Record):
    """The typed ``data`` of one event type at one version.

    Subclasses name their CloudEvents ``type``, schema ``version`` and contract topic
    (without the deployment's prefix). Unknown fields are ignored so that a newer
    producer does not break an older consumer (tolerant reader).
    """

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    topic: ClassVar[str]
    # The event carries a credential (a sign-in link): services of the platform act on it,
    # but it never leaves the platform (notifications' webhooks do not forward it).
    carries_secret: ClassVar[bool] = False

    def customer_key(self) -> str:
        """The customer id this event is about: Kafka key and CloudEvents ``subject``."""
        customer_id = getattr(self, "customer_id", None)
        if not isinstance(customer_id, str) or not customer_id:
            raise ValueError(f"{self.event_type} carries no customer id")
        return customer_id

    @classmethod
    def personal_fields(cls) -> tuple[str, ...]:
        """The fields declared :data:`PERSONAL`, in their order."""
        return _personal_fields(cls)

    def scrubbed(self) -> Self:
        """This payload with its personal fields blanked: ``None`` where the field may be
        absent, an empty list or map for a list or map, else :data:`ERASED_TEXT`."""
        fields = type(self).model_fields
        changes: dict[str, Any] = {}
        for name in self.personal_fields():
            value = getattr(self, name)
            if value is None or value in ([], {}):
                continue
            if fields[name].default is None:
                changes[name] = None
            elif isinstance(value, list):
                changes[name] = []
            elif isinstance(value, dict):
                changes[name] = {}
            else:
                changes[name] = ERASED_TEXT
        return self.model_copy(update=changes) if changes else self

    @classmethod
    def dataschema(cls) -> str:
        return f"urn:rapport:schema:{cls.event_type}:v{cls.schema_version}"


@cache
def _personal_fields(payload: type[EventPayload]) -> tuple[str, ...]:
    return tuple(
        name
        for name, info in payload.model_fields.items()
        if any(isinstance(marker, Personal) for marker in info.metadata)
    )
