"""The customer portal's passwordless sign-in: a single-use link by e-mail, then a token.

Asking for a link names an e-mail address. When a live profile owns it, a link is stored
(only the SHA-256 digest of its random token) and ``crm.customer.sign_in_requested``,
carrying the link, goes through the outbox in the same transaction; notifications e-mails
it at once. Whatever the address, the caller hears the same (no account enumeration), and
at most ``links_per_window`` links go to one address per window, however often it asks.

Redeeming the link's token marks the link used (a conditional update, so of two
redemptions at once one wins) and gives a customer token bound to the customer. A link
that is expired, used, withdrawn, unknown or malformed, or whose customer was erased or
merged meanwhile, is refused with a problem naming the ``reason``, so the portal can say
what happened and offer a new link.

Signing out revokes the token it is made with (by its ``jti``) and withdraws the links
still unused. Every service verifies tokens on its own and reads no other service's
database, so profiles stores the revocation (``revoked_tokens``) and announces it,
``crm.customer.signed_out``, in one transaction; complaints, notifications and analytics
keep what they hear (:mod:`shared.revocation`) and refuse the token from then on, within
seconds. A token without a ``jti`` (minted before revocation existed) only expires
(``token_ttl``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.errors import DuplicateKeyError

from services.profiles.domain import CustomerStatus
from services.profiles.handlers import SOURCE, Profiles
from services.profiles.sign_in_domain import (
    SignInLink,
    account_closed,
    address_key,
    already_used,
    checked_token,
    ensure_usable,
    new_token,
    token_digest,
)
from services.profiles.sign_in_store import SignInStore, ThrottleRace
from shared.auth import Role, TokenService
from shared.clock import Clock, to_millisecond, utc_now
from shared.events import new_event
from shared.events.customers import CustomerSignedOut, SignInRequested
from shared.mongo import Session, in_transaction, in_transaction_retrying
from shared.revocation import RevocationStore
from shared.unit_of_work import UnitOfWork

SIGN_IN_PATH = "/sign-in"


@dataclass
class SignIn:
    """What the sign-in use cases need: the profiles' ports, the link store, the token
    service, the signed-out tokens and the settings of links and tokens."""

    profiles: Profiles
    store: SignInStore
    tokens: TokenService
    revocations: RevocationStore
    portal_url: str
    link_ttl: timedelta = timedelta(minutes=15)
    links_per_window: int = 5
    window: timedelta = timedelta(minutes=15)
    token_ttl: timedelta = timedelta(hours=12)
    clock: Clock = utc_now

    def url_for(self, token: str) -> str:
        # In the fragment: browsers never send it, so it stays out of server logs and
        # Referer headers, and a mail scanner that follows the link uses nothing up.
        return f"{self.portal_url.rstrip('/')}{SIGN_IN_PATH}#token={token}"


@dataclass(frozen=True)
class SignedIn:
    access_token: str
    expires_in: int
    customer_id: str


async def request_link(sign_in: SignIn, email: str, locale: str | None = None) -> bool:
    """Send a sign-in link to ``email`` if a live profile owns it and the address has not
    had its share of links; True when a link went."""
    profiles = sign_in.profiles
    owner = await profiles.store.owner_of([f"email:{email}"])
    customer = None if owner is None else await profiles.store.get(owner[1])
    if customer is None or customer.status is not CustomerStatus.ACTIVE:
        return False
    now = to_millisecond(sign_in.clock())
    token = new_token()
    link = SignInLink(
        id=token_digest(token),
        customer_id=customer.id,
        created_at=now,
        expires_at=now + sign_in.link_ttl,
    )
    payload = SignInRequested(
        customer_id=customer.id,
        email=email,
        sign_in_url=sign_in.url_for(token),
        expires_at=link.expires_at,
        locale=locale or customer.locale,
        requested_at=now,
    )
    event = new_event(payload, source=SOURCE)

    async def store(session: Session) -> bool:
        counted = await sign_in.store.admit(
            session, address_key(email), now, sign_in.links_per_window, sign_in.window
        )
        if counted:
            await sign_in.store.insert(session, link)
            await profiles.outbox.add(session, [event])
        return counted

    sent = await in_transaction_retrying(
        profiles.client, store, retry_on=(ThrottleRace, DuplicateKeyError)
    )
    if sent:
        profiles.relay.wake()
    return sent


async def redeem(sign_in: SignIn, token: str) -> SignedIn:
    """Use the link of ``token`` and sign its customer in."""
    digest = token_digest(checked_token(token))
    now = to_millisecond(sign_in.clock())

    async def use(session: Session) -> str:
        link = ensure_usable(await sign_in.store.get(digest, session), now)
        customer = await sign_in.profiles.store.get(link.customer_id, session)
        if customer is None or customer.status is not CustomerStatus.ACTIVE:
            raise account_closed()
        if not await sign_in.store.use(session, digest, now):  # a redemption at the same time
            raise already_used()
        return customer.id

    customer_id = await in_transaction(sign_in.profiles.client, use)
    access_token = sign_in.tokens.mint(
        customer_id, {Role.CUSTOMER}, customer_id=customer_id, ttl=sign_in.token_ttl
    )
    return SignedIn(access_token, int(sign_in.token_ttl.total_seconds()), customer_id)


async def sign_out(
    sign_in: SignIn, customer_id: str, token_id: str | None, expires_at: datetime | None
) -> int:
    """Revoke the customer token ``token_id`` (its ``jti``; it expires at ``expires_at``)
    and announce it; withdraw the customer's unused links and return how many. A token
    without a ``jti`` cannot be revoked: it works until it expires."""
    now = to_millisecond(sign_in.clock())
    withdrawn = await sign_in.store.withdraw_unused(customer_id, now)
    if token_id is None or expires_at is None:
        return withdrawn
    signed_out = CustomerSignedOut(
        customer_id=customer_id, token_id=token_id, expires_at=expires_at, signed_out_at=now
    )
    profiles = sign_in.profiles

    async def store(uow: UnitOfWork) -> None:
        # (refused in this process once committed; the others learn it from the event)
        sign_in.revocations.record(uow, signed_out)
        uow.emit([new_event(signed_out, source=SOURCE)])

    await profiles.units().run(store)
    return withdrawn
