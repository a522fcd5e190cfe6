"""Likely duplicates: profiles that are probably the same person under two ids.

Live profiles never share an exact e-mail or phone (the store refuses it), so duplicates
hide behind small differences: ``ana.horvat+shop@gmail.com`` against
``anahorvat@gmail.com``, one digit of a phone typed differently, ``Horvát`` against
``Horvat``. Each profile carries match keys that make such near-misses meet in one index
lookup; candidates are then scored on their names.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from rapidfuzz import fuzz

from services.profiles.domain import Customer

# Providers that ignore dots in the local part of an address.
DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
SIMILAR_NAME = 85.0


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a name (Horvát -> horvat)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def canonical_email(email: str) -> str:
    local, _, domain = email.lower().partition("@")
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def full_name(customer: Customer) -> str:
    return fold(" ".join(part for part in (customer.given_name, customer.family_name) if part))


def match_keys(customer: Customer) -> list[str]:
    keys = {f"email:{canonical_email(email)}" for email in customer.emails}
    # The last eight digits survive most ways of writing a national number.
    keys |= {f"phone:{phone[-8:]}" for phone in customer.phones}
    if customer.family_name:
        keys.add(f"family:{fold(customer.family_name)}")
    if customer.birthday is not None:
        keys.add(f"birthday:{customer.birthday.isoformat()}")
    return sorted(keys)


@dataclass(frozen=True)
class Duplicate:
    customer: Customer
    score: float
    reasons: list[str] = field(default_factory=list)


def assess(customer: Customer, candidate: Customer) -> Duplicate | None:
    """How likely ``candidate`` is ``customer`` under another id; None when unlikely."""
    reasons: list[str] = []
    score = 0.0
    mine, theirs = set(match_keys(customer)), set(match_keys(candidate))
    if {k for k in mine & theirs if k.startswith("email:")}:
        reasons.append("same e-mail address once normalised")
        score += 60
    if {k for k in mine & theirs if k.startswith("phone:")}:
        reasons.append("same phone number")
        score += 50
    name_a, name_b = full_name(customer), full_name(candidate)
    similarity = fuzz.token_sort_ratio(name_a, name_b) if name_a and name_b else 0.0
    if similarity >= SIMILAR_NAME:
        reasons.append(f"similar name ({similarity:.0f}% alike)")
        score += similarity / 2
    same_birthday = customer.birthday is not None and customer.birthday == candidate.birthday
    if same_birthday and similarity >= SIMILAR_NAME:
        reasons.append("same birthday")
        score += 20
    if not reasons:
        return None
    return Duplicate(candidate, min(score, 100.0), reasons)
