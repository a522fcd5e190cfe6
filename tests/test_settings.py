"""Settings: one prefix per service over platform-wide variables; no default secrets."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from services.analytics.settings import AnalyticsSettings
from services.complaints.settings import ComplaintsSettings
from services.notifications.settings import NotificationsSettings
from services.profiles.settings import ProfilesSettings
from shared.settings import DEVELOPMENT_AUTH_SECRET


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RAPPORT_"):
            monkeypatch.delenv(name)


def test_contract_ports_are_the_defaults() -> None:
    ports = [
        cls().http_port
        for cls in (ProfilesSettings, ComplaintsSettings, NotificationsSettings, AnalyticsSettings)
    ]
    assert ports == [8001, 8002, 8003, 8004]


def test_a_service_variable_overrides_the_platform_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_KAFKA_BOOTSTRAP", "kafka-a:9092,kafka-b:9092")
    monkeypatch.setenv("RAPPORT_MONGODB_URI", "mongodb://shared/")
    monkeypatch.setenv("RAPPORT_COMPLAINTS_MONGODB_URI", "mongodb://complaints-only/")
    monkeypatch.setenv("RAPPORT_PROFILES_HTTP_PORT", "9101")
    profiles, complaints = ProfilesSettings(), ComplaintsSettings()
    assert profiles.kafka_servers == ["kafka-a:9092", "kafka-b:9092"]
    assert profiles.mongodb_uri == "mongodb://shared/"
    assert complaints.mongodb_uri == "mongodb://complaints-only/"
    assert profiles.http_port == 9101
    assert complaints.http_port == 8002
    assert profiles.mongodb_database == "rapport_profiles"
    assert profiles.consumer_group == "rapport-profiles"


def test_development_has_a_usable_secret_and_other_environments_do_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ProfilesSettings().secret == DEVELOPMENT_AUTH_SECRET
    monkeypatch.setenv("RAPPORT_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="RAPPORT_AUTH_SECRET must be set"):
        ProfilesSettings()
    for weak in (DEVELOPMENT_AUTH_SECRET, "short-secret"):
        monkeypatch.setenv("RAPPORT_AUTH_SECRET", weak)
        with pytest.raises(ValidationError, match="at least 32"):
            ProfilesSettings()
    monkeypatch.setenv("RAPPORT_AUTH_SECRET", "k" * 48)
    assert ProfilesSettings().secret == "k" * 48


def test_secrets_never_appear_in_the_loggable_description(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_AUTH_SECRET", "s" * 40)
    monkeypatch.setenv("RAPPORT_ADMIN_TOKEN", "admin-token-value")
    description = str(ProfilesSettings().describe())
    assert "s" * 40 not in description
    assert "admin-token-value" not in description
