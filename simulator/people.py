"""Synthetic customers: names, contacts and addresses from Faker's locale providers.

Every customer is a pure function of the seed and its number, so the same ``--seed``
always yields the same people, whatever else the run does.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import cache

import phonenumbers
from faker import Faker


@dataclass(frozen=True)
class Region:
    """Where a customer lives: the seeds' countries first, then more of Europe."""

    faker_locale: str
    locale: str  # BCP 47, as the profile stores it
    time_zone: str
    country: str  # ISO 3166 alpha-2
    currency: str
    weight: float


REGIONS: tuple[Region, ...] = (
    Region("hr_HR", "hr-HR", "Europe/Zagreb", "HR", "EUR", 22),
    Region("cs_CZ", "cs-CZ", "Europe/Prague", "CZ", "CZK", 15),
    Region("sl_SI", "sl-SI", "Europe/Ljubljana", "SI", "EUR", 13),
    Region("fa_IR", "fa-IR", "Asia/Tehran", "IR", "IRR", 10),
    Region("en_GB", "en-GB", "Europe/London", "GB", "GBP", 10),
    Region("de_DE", "de-DE", "Europe/Berlin", "DE", "EUR", 10),
    Region("pl_PL", "pl-PL", "Europe/Warsaw", "PL", "PLN", 5),
    Region("it_IT", "it-IT", "Europe/Rome", "IT", "EUR", 5),
    Region("fr_FR", "fr-FR", "Europe/Paris", "FR", "EUR", 5),
    Region("es_ES", "es-ES", "Europe/Madrid", "ES", "EUR", 5),
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
# Letters NFKD does not take apart into a base letter and a mark.
_ASCII_FOLDS = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss", "ø": "o"})


@dataclass(frozen=True)
class Person:
    given_name: str
    family_name: str
    email: str
    phone: str | None
    birthday: date
    street: str
    city: str
    postal_code: str
    region: Region


@cache
def _faker(locale: str) -> Faker:
    return Faker(locale)


def ascii_handle(text: str) -> str:
    """``Rožman`` -> ``rozman``; empty for a script with no Latin letters (Persian)."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLDS))
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum()).lower()


def mobile_number(region: str, rng: random.Random) -> str | None:
    """A valid mobile number of ``region`` in E.164, or None if none was found quickly."""
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if example is None:
        return None
    digits = str(example.national_number)
    keep = max(2, len(digits) - 6)
    for _ in range(20):
        tail = "".join(str(rng.randrange(10)) for _ in range(len(digits) - keep))
        candidate = phonenumbers.PhoneNumber(
            country_code=example.country_code, national_number=int(digits[:keep] + tail)
        )
        if phonenumbers.is_valid_number(candidate):
            return phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
    return None


def person(number: int, region: Region, rng: random.Random) -> Person:
    """Customer ``number`` of the run, drawn with ``rng`` (seeded for this customer)."""
    fake = _faker(region.faker_locale)
    fake.seed_instance(rng.getrandbits(64))
    female = rng.random() < 0.52
    if female:
        given = fake.first_name_female()
        family = getattr(fake, "last_name_female", fake.last_name)()
    else:
        given = fake.first_name_male()
        family = getattr(fake, "last_name_male", fake.last_name)()
    handle = ".".join(part for part in (ascii_handle(given), ascii_handle(family)) if part)
    if not handle:
        handle = ascii_handle(fake.user_name()) or "customer"
    email = f"{handle}.{number}@{rng.choice(_EMAIL_DOMAINS)}"
    phone = mobile_number(region.country, rng) if rng.random() < 0.8 else None
    birthday = date(rng.randint(1941, 2006), rng.randint(1, 12), rng.randint(1, 28))
    return Person(
        given_name=given,
        family_name=family,
        email=email,
        phone=phone,
        birthday=birthday,
        street=" ".join(fake.street_address().split()),
        city=fake.city(),
        postal_code=fake.postcode(),
        region=region,
    )
