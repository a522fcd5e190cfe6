"""Respect for the customer: consent, preferences, quiet hours, the marketing cap."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from services.notifications.domain import Channel, Purpose
from services.notifications.policy import (
    QUIET_HOURS_APPLY_TO,
    Preferences,
    QuietHours,
    Send,
    Situation,
    Suppress,
    decide,
    local_day,
)
from services.notifications.rules import Audience
from services.notifications.settings import NotificationsSettings

NIGHT = QuietHours(time(21, 0), time(8, 0))
# 23:30 in Zagreb (UTC+1 in November).
LATE_EVENING = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
NOON = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


def situation(**changes: object) -> Situation:
    base = Situation(
        channel=Channel.EMAIL,
        purpose=Purpose.TRANSACTIONAL,
        audience=Audience.CUSTOMER,
        now=NOON,
        time_zone="Europe/Zagreb",
        default_quiet_hours=NIGHT,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_transactional_message_goes_now_in_the_day() -> None:
    assert decide(situation()) == Send(NOON)


def test_quiet_hours_defer_to_their_local_end_never_drop() -> None:
    decision = decide(situation(now=LATE_EVENING, channel=Channel.SMS))
    assert isinstance(decision, Send)
    assert decision.at == datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Zagreb
    assert decision.deferred_because == "quiet hours"


def test_quiet_hours_follow_the_customers_time_zone() -> None:
    # 22:30 UTC is 17:30 in New York: not quiet there.
    sms = situation(now=LATE_EVENING, channel=Channel.SMS, time_zone="America/New_York")
    assert decide(sms) == Send(LATE_EVENING)


def test_the_customers_own_quiet_hours_win_and_can_be_switched_off() -> None:
    own = Preferences(quiet_hours=QuietHours(time(12, 0), time(14, 0)))
    decision = decide(situation(channel=Channel.SMS, preferences=own))
    assert isinstance(decision, Send)
    assert decision.at == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # 14:00 local
    # They say when the quiet hours are, not what they hold back: a receipt still goes.
    assert decide(situation(preferences=own)) == Send(NOON)
    none = Preferences(quiet_hours_off=True)
    assert decide(situation(now=LATE_EVENING, channel=Channel.SMS, preferences=none)) == (
        Send(LATE_EVENING)
    )


def test_in_app_messages_are_not_held_by_quiet_hours() -> None:
    assert decide(situation(now=LATE_EVENING, channel=Channel.IN_APP)) == Send(LATE_EVENING)


# 05:31 in Zagreb (UTC+1 in November): a purchase made before the quiet hours end.
DAWN = datetime(2026, 11, 24, 4, 31, tzinfo=UTC)
ZAGREB_MORNING = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # 08:00 in Zagreb


def test_a_thank_you_at_dawn_goes_at_once_by_email_and_in_app_and_the_sms_waits() -> None:
    thanks = situation(now=DAWN)
    assert decide(thanks) == Send(DAWN)
    assert decide(replace(thanks, channel=Channel.IN_APP)) == Send(DAWN)
    assert decide(replace(thanks, channel=Channel.WEBHOOK)) == Send(DAWN)
    assert decide(replace(thanks, channel=Channel.SMS)) == Send(ZAGREB_MORNING, "quiet hours")


def test_marketing_waits_for_the_morning_on_email_and_in_app_not_on_webhooks() -> None:
    granted = {(channel, Purpose.MARKETING): True for channel in Channel}
    offer = situation(now=LATE_EVENING, purpose=Purpose.MARKETING, consents=granted)
    for channel in (Channel.EMAIL, Channel.IN_APP, Channel.SMS):
        assert decide(replace(offer, channel=channel)) == Send(ZAGREB_MORNING, "quiet hours")
    # A webhook goes to a system, not a person.
    assert decide(replace(offer, channel=Channel.WEBHOOK)) == Send(LATE_EVENING)


def test_what_quiet_hours_hold_back_is_configured_per_channel_and_purpose() -> None:
    receipts_too = QUIET_HOURS_APPLY_TO | {(Channel.EMAIL, Purpose.TRANSACTIONAL)}
    thanks = situation(now=DAWN, quiet_hours_apply_to=receipts_too)
    assert decide(thanks) == Send(ZAGREB_MORNING, "quiet hours")
    nothing = situation(now=DAWN, channel=Channel.SMS, quiet_hours_apply_to=frozenset())
    assert decide(nothing) == Send(DAWN)


def test_the_setting_takes_pairs_comma_separated_or_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert NotificationsSettings().quiet_hours_pairs == QUIET_HOURS_APPLY_TO
    monkeypatch.setenv(
        "RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO", "sms:transactional, Email:Transactional"
    )
    assert NotificationsSettings().quiet_hours_pairs == {
        (Channel.SMS, Purpose.TRANSACTIONAL),
        (Channel.EMAIL, Purpose.TRANSACTIONAL),
    }
    monkeypatch.setenv("RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO", '["in_app:marketing"]')
    assert NotificationsSettings().quiet_hours_apply_to == ["in_app:marketing"]
    monkeypatch.setenv("RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO", "")
    assert NotificationsSettings().quiet_hours_pairs == frozenset()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("sms:transactional,email", "'email' is not channel:purpose"),
        ("pigeon:marketing", "'pigeon:marketing' is not channel:purpose; channels are email,"),
        ('["sms:marketing"', "is not a JSON list"),
    ],
)
def test_a_bad_setting_stops_the_service_at_start_saying_why(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO", value)
    with pytest.raises(ValidationError) as refused:
        NotificationsSettings()
    assert "RAPPORT_NOTIFICATIONS_QUIET_HOURS_APPLY_TO" in str(refused.value)
    assert says in str(refused.value)


def test_marketing_needs_explicit_consent_on_the_channel() -> None:
    marketing = situation(purpose=Purpose.MARKETING)
    assert decide(marketing) == Suppress("no marketing consent for email")
    granted = {(Channel.EMAIL, Purpose.MARKETING): True}
    assert decide(replace(marketing, consents=granted)) == Send(NOON)


def test_a_revoked_consent_suppresses_even_transactional_messages() -> None:
    revoked = {(Channel.SMS, Purpose.TRANSACTIONAL): False}
    decision = decide(situation(channel=Channel.SMS, consents=revoked))
    assert decision == Suppress("no transactional consent for sms")


def test_an_opt_out_in_the_preferences_suppresses() -> None:
    opted_out = Preferences(opt_outs=frozenset({(Channel.EMAIL, Purpose.TRANSACTIONAL)}))
    assert decide(situation(preferences=opted_out)) == Suppress(
        "customer opted out of transactional email"
    )


def test_no_marketing_while_a_complaint_is_open() -> None:
    granted = {(Channel.EMAIL, Purpose.MARKETING): True}
    decision = decide(situation(purpose=Purpose.MARKETING, consents=granted, open_complaints=1))
    assert decision == Suppress("no marketing while a complaint is open")
    # Transactional messages still go.
    assert decide(situation(open_complaints=1)) == Send(NOON)


def test_the_daily_marketing_cap() -> None:
    granted = {(Channel.EMAIL, Purpose.MARKETING): True}
    marketing = situation(purpose=Purpose.MARKETING, consents=granted, marketing_cap=2)
    assert decide(replace(marketing, marketing_today=1)) == Send(NOON)
    assert decide(replace(marketing, marketing_today=2)) == Suppress(
        "daily marketing cap of 2 reached"
    )


def test_internal_messages_go_to_staff_at_once() -> None:
    staff = situation(audience=Audience.STAFF, now=LATE_EVENING, erased=True)
    assert decide(staff) == Send(LATE_EVENING)


def test_an_erased_customer_gets_nothing() -> None:
    assert decide(situation(erased=True)) == Suppress("customer erased")


def test_a_local_day_has_its_zones_bounds() -> None:
    start, end = local_day(LATE_EVENING, "Europe/Zagreb")
    assert start == datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # midnight in Zagreb
    assert end == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)


def test_a_message_the_customer_asked_for_goes_at_once_whatever_they_chose_before() -> None:
    # A sign-in link at 23:30, with e-mail receipts held back at night, transactional
    # e-mail refused and opted out of: the customer just asked for it and is waiting.
    asked = situation(
        requested=True,
        now=LATE_EVENING,
        quiet_hours_apply_to=QUIET_HOURS_APPLY_TO | {(Channel.EMAIL, Purpose.TRANSACTIONAL)},
        consents={(Channel.EMAIL, Purpose.TRANSACTIONAL): False},
        preferences=Preferences(opt_outs=frozenset({(Channel.EMAIL, Purpose.TRANSACTIONAL)})),
    )
    assert decide(asked) == Send(LATE_EVENING)
    assert decide(replace(asked, requested=False)) == Suppress("no transactional consent for email")
    # An erased customer still gets nothing.
    assert decide(replace(asked, erased=True)) == Suppress("customer erased")
