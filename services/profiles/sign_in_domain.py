"""Portal sign-in rules: what a link is, when it may be used, and how a refusal reads.

Pure: no I/O. A link's token is 256 random bits, URL-safe; only its SHA-256 digest is
ever stored. A link works once, until it expires, unless it was withdrawn (at sign-out).
Each refusal names a ``reason`` (``malformed``, ``unknown``, ``withdrawn``, ``used``,
``expired``, ``account_closed``) so the portal can say what happened, and asks for a new
link.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from shared.errors import Gone, NotFound, RapportError

TOKEN_BYTES = 32
# What ``secrets.token_urlsafe(TOKEN_BYTES)`` makes: 43 URL-safe base64 characters.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
ASK_AGAIN = "ask for a new link with your e-mail address"


class MalformedLink(RapportError):
    status = 400
    title = "Invalid sign-in link"


class UnknownLink(NotFound):
    title = "Unknown sign-in link"


class LinkExpired(Gone):
    title = "Sign-in link expired"


class LinkUsed(Gone):
    title = "Sign-in link already used"


class LinkWithdrawn(Gone):
    title = "Sign-in link withdrawn"


class AccountClosed(Gone):
    title = "Account closed"


@dataclass(frozen=True)
class SignInLink:
    """A sign-in link as stored: ``id`` is the digest of its token."""

    id: str
    customer_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    withdrawn_at: datetime | None = None


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def address_key(email: str) -> str:
    """What the throttle counts links by: a digest, so it keeps no address."""
    return hashlib.sha256(f"email:{email}".encode()).hexdigest()


def checked_token(token: str) -> str:
    """The token as given, if it can be one this service made; else a 400."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise MalformedLink(f"this is not a sign-in link's token; {ASK_AGAIN}", reason="malformed")
    return token


def ensure_usable(link: SignInLink | None, now: datetime) -> SignInLink:
    """The link, if it may sign its customer in at ``now``; else why not."""
    if link is None:
        raise UnknownLink(f"this sign-in link is not known; {ASK_AGAIN}", reason="unknown")
    if link.withdrawn_at is not None:
        raise LinkWithdrawn(
            f"this sign-in link was withdrawn when you signed out; {ASK_AGAIN}",
            reason="withdrawn",
        )
    if link.used_at is not None:
        raise already_used()
    if link.expires_at <= now:
        raise LinkExpired(
            f"this sign-in link expired at {link.expires_at.isoformat()}; {ASK_AGAIN}",
            reason="expired",
            expired_at=link.expires_at,
        )
    return link


def already_used() -> LinkUsed:
    return LinkUsed(
        f"this sign-in link was already used (each works once); {ASK_AGAIN}", reason="used"
    )


def account_closed() -> AccountClosed:
    return AccountClosed(
        f"the account this link was for was closed or merged since; {ASK_AGAIN}",
        reason="account_closed",
    )
