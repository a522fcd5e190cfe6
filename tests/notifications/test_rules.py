"""The rules: which triggers an event fires, and how a rule is configured."""

from __future__ import annotations

import pytest

from services.notifications import catalog
from services.notifications import rules as r
from services.notifications.domain import Channel, Purpose
from shared.errors import InvalidInput, NotFound


def test_each_event_fires_its_documented_rules() -> None:
    assert r.triggered_by("crm.purchase.completed", {}) == [r.PURCHASE_THANK_YOU]
    assert r.triggered_by("crm.purchase.returned", {}) == [r.RETURN_CONFIRMATION]
    assert r.triggered_by("crm.complaint.opened", {}) == [r.COMPLAINT_ACKNOWLEDGEMENT]
    assert r.triggered_by("crm.complaint.resolved", {}) == [r.COMPLAINT_RESOLVED]
    assert r.triggered_by("crm.customer.registered", {}) == []
    assert r.triggered_by("crm.customer.sign_in_requested", {}) == [r.SIGN_IN_LINK]


def test_a_status_change_speaks_to_the_customer_only_with_a_public_comment() -> None:
    event = "crm.complaint.status_changed"
    assert r.triggered_by(event, {"public_comment": "We ordered the part."}) == [
        r.COMPLAINT_PROGRESS
    ]
    assert r.triggered_by(event, {"public_comment": None}) == []


def test_only_a_breach_escalates_not_a_warning() -> None:
    event = "crm.complaint.sla_breached"
    assert r.triggered_by(event, {"severity": "breach"}) == [r.SLA_ESCALATION]
    assert r.triggered_by(event, {"severity": "warning"}) == []


def test_churn_risk_turning_high_alerts_the_owner_and_offers_retention_once() -> None:
    event = "crm.customer.churn_risk_changed"
    fired = r.triggered_by(event, {"level": "high", "previous_level": "medium"})
    assert fired == [r.CHURN_ALERT_OWNER, r.RETENTION_OFFER]
    assert r.triggered_by(event, {"level": "high", "previous_level": "high"}) == []
    assert r.triggered_by(event, {"level": "medium", "previous_level": "high"}) == []


def test_internal_rules_go_to_staff_and_marketing_rules_are_marked() -> None:
    assert r.definition(r.SLA_ESCALATION).audience is r.Audience.STAFF
    assert r.definition(r.CHURN_ALERT_OWNER).audience is r.Audience.STAFF
    assert r.definition(r.RETENTION_OFFER).purpose is Purpose.MARKETING
    assert r.definition(r.BIRTHDAY_GREETING).purpose is Purpose.MARKETING
    assert r.definition(r.PURCHASE_THANK_YOU).purpose is Purpose.TRANSACTIONAL


def test_renewal_reminders_default_to_30_7_1_days_at_nine() -> None:
    config = r.configured(r.RENEWAL_REMINDER)
    assert r.days_before(config) == [30, 7, 1]
    assert r.local_time(config).isoformat() == "09:00:00"
    assert r.local_time(r.configured(r.BIRTHDAY_GREETING)).isoformat() == "09:00:00"


def test_settings_then_stored_overrides_apply_in_order() -> None:
    from_settings = {"enabled": False, "parameters": {"days_before": [14, 3]}}
    stored = {"enabled": True, "channels": ["email"]}
    config = r.configured(r.RENEWAL_REMINDER, from_settings, stored)
    assert config.enabled is True
    assert config.channels == [Channel.EMAIL]
    assert r.days_before(config) == [14, 3]


def test_unusable_parameters_are_refused_with_the_reason() -> None:
    current = r.configured(r.RENEWAL_REMINDER)
    with pytest.raises(InvalidInput, match="days_before"):
        r.validate_update(
            r.RENEWAL_REMINDER, r.RuleUpdate(parameters={"days_before": [-3]}), current
        )
    with pytest.raises(InvalidInput, match="local_time"):
        r.validate_update(
            r.BIRTHDAY_GREETING, r.RuleUpdate(parameters={"local_time": "25:00"}), current
        )
    with pytest.raises(InvalidInput):
        r.validate_update(r.PURCHASE_THANK_YOU, r.RuleUpdate(parameters={"surprise": 1}), current)
    with pytest.raises(NotFound):
        r.definition("no_such_rule")


def test_the_rule_names_are_the_templates_trigger_names() -> None:
    assert set(r.RULE_NAMES) == set(catalog.TRIGGER_NAMES)


def test_a_sign_in_link_goes_by_e_mail_only_and_cannot_be_sent_elsewhere() -> None:
    rule = r.definition(r.SIGN_IN_LINK)
    assert (rule.purpose, rule.audience, rule.requested) == (
        Purpose.TRANSACTIONAL,
        r.Audience.CUSTOMER,
        True,
    )
    assert r.configured(r.SIGN_IN_LINK).channels == [Channel.EMAIL]
    current = r.configured(r.SIGN_IN_LINK)
    for channels in (["email", "webhook"], ["in_app"], ["sms"]):
        with pytest.raises(InvalidInput, match="sign_in_link cannot use"):
            r.validate_update(r.SIGN_IN_LINK, r.RuleUpdate(channels=channels), current)
    with pytest.raises(InvalidInput, match="cannot use webhook"):
        r.configured(r.SIGN_IN_LINK, {"channels": ["webhook"]})  # a deployment's settings
    assert r.validate_update(r.SIGN_IN_LINK, r.RuleUpdate(enabled=False), current) == {
        "enabled": False
    }
