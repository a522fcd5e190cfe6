"""Respect for the customer: whether a message may go, and when. Pure: no I/O.

The order of the checks is the order of the reasons a customer would accept:

1. internal messages (audience staff) go to staff at once: no consent, no quiet hours;
2. an erased customer gets nothing;
   a message the customer asked for a moment ago and waits for (a sign-in link: its
   rule is *requested*) then goes at once: the customer's standing choices about what
   the company sends (consents, opt-outs, quiet hours) are about messages the company
   starts, and the asking is the consent to this one;
3. an explicit refusal of the channel x purpose (``crm.customer.consent_changed`` with
   ``granted: false``) suppresses; marketing also needs an explicit grant;
4. the customer's own opt-outs (preferences) suppress;
5. no marketing while the customer has an open complaint;
6. at most ``marketing_cap`` marketing messages per customer per local day;
7. quiet hours in the customer's time zone *defer* a message to their end when its channel
   and purpose are ones they hold back (``Situation.quiet_hours_apply_to``; by default
   every SMS and marketing on e-mail and in-app, see ``QUIET_HOURS_APPLY_TO``); a message
   is never dropped for the hour it was due.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.notifications.domain import Channel, Purpose
from services.notifications.rules import Audience

# Quiet hours are there so that no message wakes anyone. They hold back what interrupts
# whatever it says (an SMS) and what nobody waits for (marketing) on the channels a person
# reads. A transactional e-mail (a receipt, an acknowledgement) lies silently in the
# mailbox and is wanted at once; in-app messages are only seen when the customer looks; a
# webhook goes to a system, not a person, marketing or not.
QUIET_HOURS_APPLY_TO: frozenset[tuple[Channel, Purpose]] = frozenset(
    {
        (Channel.SMS, Purpose.TRANSACTIONAL),
        (Channel.SMS, Purpose.MARKETING),
        (Channel.EMAIL, Purpose.MARKETING),
        (Channel.IN_APP, Purpose.MARKETING),
    }
)


def channel_purpose_pairs(values: Iterable[str]) -> frozenset[tuple[Channel, Purpose]]:
    """``channel:purpose`` texts (``sms:transactional``) as pairs; a ``ValueError`` names
    the first that is not one."""
    pairs: set[tuple[Channel, Purpose]] = set()
    for value in values:
        channel, _, purpose = value.strip().lower().partition(":")
        try:
            pairs.add((Channel(channel.strip()), Purpose(purpose.strip())))
        except ValueError:
            raise ValueError(
                f"{value!r} is not channel:purpose; channels are {', '.join(Channel)},"
                f" purposes are {', '.join(Purpose)} (e.g. sms:transactional)"
            ) from None
    return frozenset(pairs)


def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The IANA zone ``name``, or ``default`` when it is missing or unknown."""
    for candidate in (name, default, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class QuietHours:
    """Local hours in which what they hold back waits; ``start > end`` spans midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> QuietHours | None:
        if not start or not end or start == end:
            return None
        return cls(time.fromisoformat(start), time.fromisoformat(end))

    def contains(self, moment: time) -> bool:
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def ends_after(self, local: datetime) -> datetime:
        """The end of the quiet period ``local`` (zone-aware) falls in."""
        end = datetime.combine(local.date(), self.end, tzinfo=local.tzinfo)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=local.tzinfo)
        return _exists(end)


def _exists(local: datetime) -> datetime:
    """A wall time that a DST gap skips moves forward to when the clock shows it again."""
    roundtrip = local.astimezone(UTC).astimezone(local.tzinfo)
    return roundtrip if roundtrip.replace(tzinfo=None) != local.replace(tzinfo=None) else local


@dataclass(frozen=True)
class Preferences:
    """What the customer chose: channel x purpose opt-outs and their own quiet hours."""

    opt_outs: frozenset[tuple[Channel, Purpose]] = frozenset()
    quiet_hours: QuietHours | None = None
    quiet_hours_off: bool = False


@dataclass(frozen=True)
class Situation:
    """Everything the decision needs about one message on one channel."""

    channel: Channel
    purpose: Purpose
    audience: Audience
    now: datetime
    time_zone: str = "UTC"
    consents: Mapping[tuple[Channel, Purpose], bool] = field(default_factory=dict)
    preferences: Preferences = Preferences()
    default_quiet_hours: QuietHours | None = None
    # The channel x purpose pairs quiet hours hold back (the others go at once).
    quiet_hours_apply_to: frozenset[tuple[Channel, Purpose]] = QUIET_HOURS_APPLY_TO
    open_complaints: int = 0
    marketing_today: int = 0
    marketing_cap: int = 2
    erased: bool = False
    # The customer asked for this message and is waiting for it (a sign-in link).
    requested: bool = False


@dataclass(frozen=True)
class Send:
    at: datetime
    deferred_because: str | None = None


@dataclass(frozen=True)
class Suppress:
    reason: str


Decision = Send | Suppress


def decide(situation: Situation) -> Decision:
    s = situation
    if s.audience is Audience.STAFF:
        return Send(s.now)
    if s.erased:
        return Suppress("customer erased")
    if s.requested:
        return Send(s.now)
    consent = s.consents.get((s.channel, s.purpose))
    if consent is False:
        return Suppress(f"no {s.purpose.value} consent for {s.channel.value}")
    if s.purpose is Purpose.MARKETING and consent is not True:
        return Suppress(f"no marketing consent for {s.channel.value}")
    if (s.channel, s.purpose) in s.preferences.opt_outs:
        return Suppress(f"customer opted out of {s.purpose.value} {s.channel.value}")
    if s.purpose is Purpose.MARKETING:
        if s.open_complaints:
            return Suppress("no marketing while a complaint is open")
        if s.marketing_today >= s.marketing_cap:
            return Suppress(f"daily marketing cap of {s.marketing_cap} reached")
    return Send(*quiet_hours_deferral(s))


def quiet_hours_deferral(s: Situation) -> tuple[datetime, str | None]:
    """When the message may go: now, or the end of the quiet hours if they hold back its
    channel and purpose. The customer's preferences say *when* their quiet hours are (or
    that they want none); ``quiet_hours_apply_to`` says *what* they hold back."""
    if s.requested or (s.channel, s.purpose) not in s.quiet_hours_apply_to:
        return s.now, None
    hours = None if s.preferences.quiet_hours_off else s.preferences.quiet_hours
    if hours is None and not s.preferences.quiet_hours_off:
        hours = s.default_quiet_hours
    if hours is None:
        return s.now, None
    local = s.now.astimezone(zone(s.time_zone))
    if not hours.contains(local.time()):
        return s.now, None
    return hours.ends_after(local).astimezone(UTC), "quiet hours"


def local_day(moment: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """The UTC bounds of the customer's local day that ``moment`` falls in."""
    tz = zone(time_zone)
    local = moment.astimezone(tz)
    start = datetime.combine(local.date(), time(0), tzinfo=tz)
    end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)
