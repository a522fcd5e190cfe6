"""Structure of the container stack: docker-compose.yml, Dockerfile and .dockerignore.

No Docker engine is needed: the files are parsed and checked against the
contract (ports, images, start order, secrets, licensing of the image).
"""

from __future__ import annotations

import os
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.analytics.settings import AnalyticsSettings
from services.complaints.settings import ComplaintsSettings
from services.notifications.settings import NotificationsSettings
from services.profiles.settings import ProfilesSettings
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KAFKA_POM = ROOT / "deploy" / "kafka" / "pom.xml"

SERVICE_PORTS = {
    "profiles": 8001,
    "complaints": 8002,
    "notifications": 8003,
    "analytics": 8004,
}
REQUIRED_SECRET = re.compile(r"^\$\{RAPPORT_AUTH_SECRET:\?[^}]+\}$")
SETTINGS: dict[str, type[ServiceSettings]] = {
    "profiles": ProfilesSettings,
    "complaints": ComplaintsSettings,
    "notifications": NotificationsSettings,
    "analytics": AnalyticsSettings,
}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as a mapping, whichever syntax the file uses."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (str(item).partition("=") for item in raw)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """``value`` as `docker compose` gives it to the container, with ``variables`` set."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"] or "", match["arg"] or ""
        found = variables.get(name)
        missing = found is None or (op.startswith(":") and not found)
        if not missing:
            return str(found)
        if op.endswith("?"):
            raise AssertionError(f"{name} is required: {arg}")
        return arg if op.endswith("-") else ""

    return VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def words(value: str | list[Any]) -> list[str]:
    """A command or healthcheck test as a list of words."""
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(words(test))


def build_of(service: dict[str, Any]) -> tuple[str, str]:
    """(context, dockerfile) of a service that is built from the repository."""
    build = service["build"]
    if isinstance(build, str):
        return build, "Dockerfile"
    return build.get("context", "."), build.get("dockerfile", "Dockerfile")


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def pom_kafka_version() -> str:
    root = ET.parse(KAFKA_POM).getroot()
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "kafka.version" and element.text:
            return element.text.strip()
    raise AssertionError(f"no <kafka.version> property in {KAFKA_POM}")


def dockerfile_instructions(text: str, keyword: str) -> list[str]:
    """Arguments of every instruction `keyword` (line continuations joined)."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].upper() == keyword:
            found.append(parts[1].strip())
    return found


# --- kafka ---------------------------------------------------------------


def test_kafka_is_the_official_image_of_the_pom_version(services: dict[str, Any]) -> None:
    assert services["kafka"]["image"] == f"apache/kafka:{pom_kafka_version()}"


def test_kafka_runs_kraft_broker_and_controller(services: dict[str, Any]) -> None:
    env = env_of(services["kafka"])
    roles = {role.strip() for role in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node_id}@kafka:9093"
    assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    assert not [name for name in env if "ZOOKEEPER" in name]
    assert not [name for name in services if "zookeeper" in name]


def test_kafka_advertises_the_compose_network_address(services: dict[str, Any]) -> None:
    env = env_of(services["kafka"])
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "PLAINTEXT://kafka:9092" in advertised
    assert "PLAINTEXT://:9092" in env["KAFKA_LISTENERS"].split(",")
    protocol_map = env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    protocols = {
        name: protocol for name, _, protocol in (item.partition(":") for item in protocol_map)
    }
    for listener in env["KAFKA_LISTENERS"].split(","):
        assert listener.split("://", 1)[0] in protocols, listener


def test_kafka_internal_topics_have_one_replica(services: dict[str, Any]) -> None:
    env = env_of(services["kafka"])
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == "1", name


def test_kafka_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    log_dir = env_of(kafka)["KAFKA_LOG_DIRS"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in kafka["volumes"]}
    assert mounts[log_dir] in compose["volumes"]


def test_kafka_has_a_broker_healthcheck(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    test = healthcheck_text(kafka)
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh", test)
    assert "--bootstrap-server localhost:9092" in test
    for key in ("interval", "retries", "start_period"):
        assert key in kafka["healthcheck"], key


# --- mongo ---------------------------------------------------------------


def test_mongo_is_the_official_image_as_a_replica_set(services: dict[str, Any]) -> None:
    mongo = services["mongo"]
    assert re.fullmatch(r"mongo:\d+(\.\d+)*", mongo["image"])
    command = words(mongo["command"])
    assert command[command.index("--replSet") + 1] == "rs0"
    assert "--bind_ip_all" in command
    assert "db.adminCommand('ping')" in healthcheck_text(mongo)
    assert mongo["volumes"]


def test_mongo_init_initiates_the_replica_set_once(services: dict[str, Any]) -> None:
    init = services["mongo-init"]
    script = " ".join(words(init["command"]))
    assert init["image"] == services["mongo"]["image"]
    assert init["restart"] == "no"
    assert depends_on(init) == {"mongo": "service_healthy"}
    assert "rs.status()" in script
    assert re.search(r"rs\.initiate\(\{\s*_id:\s*'rs0'", script)
    assert "host: 'mongo:27017'" in script


# --- one-shot topics -----------------------------------------------------


def test_topics_are_created_by_the_rapport_image(services: dict[str, Any]) -> None:
    topics = services["topics"]
    assert build_of(topics) == build_of(services["profiles"])
    assert words(topics["command"])[:3] == ["ops.cli", "topics", "create"]
    assert topics["restart"] == "no"
    assert depends_on(topics) == {"kafka": "service_healthy"}
    env = env_of(topics)
    assert env["RAPPORT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "RAPPORT_TOPIC_PREFIX" in env
    assert "RAPPORT_AUTH_SECRET" not in env


# --- the four services ---------------------------------------------------


def test_services_run_distinct_modules_of_one_image(services: dict[str, Any]) -> None:
    builds = {build_of(services[name]) for name in SERVICE_PORTS}
    assert builds == {(".", "Dockerfile")}
    commands = [tuple(words(services[name]["command"])) for name in SERVICE_PORTS]
    assert len(set(commands)) == len(SERVICE_PORTS)


@pytest.mark.parametrize(("name", "port"), SERVICE_PORTS.items())
def test_service_contract(services: dict[str, Any], name: str, port: int) -> None:
    service = services[name]
    assert f"services.{name}" in words(service["command"])
    assert f"{port}:{port}" in [str(mapping) for mapping in service["ports"]]
    assert f"http://127.0.0.1:{port}/readyz" in healthcheck_text(service)
    assert service["restart"] == "unless-stopped"

    env = env_of(service)
    prefix = f"RAPPORT_{name.upper()}"
    assert env[f"{prefix}_HTTP_PORT"] == str(port)
    assert env[f"{prefix}_HTTP_HOST"] == "0.0.0.0"
    assert env["RAPPORT_ENVIRONMENT"] == "production"
    assert env["RAPPORT_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["RAPPORT_MONGODB_URI"] == "mongodb://mongo:27017/?replicaSet=rs0"


@pytest.mark.parametrize("name", SERVICE_PORTS)
def test_service_waits_for_its_infrastructure(services: dict[str, Any], name: str) -> None:
    conditions = depends_on(services[name])
    assert conditions["kafka"] == "service_healthy"
    assert conditions["mongo"] == "service_healthy"
    assert conditions["mongo-init"] == "service_completed_successfully"
    assert conditions["topics"] == "service_completed_successfully"


def test_notifications_sends_mail_to_mailpit(services: dict[str, Any]) -> None:
    env = env_of(services["notifications"])
    assert env["RAPPORT_NOTIFICATIONS_SMTP_HOST"] == "mailpit"
    assert env["RAPPORT_NOTIFICATIONS_SMTP_PORT"] == "1025"
    assert services["mailpit"]["image"].startswith("axllent/mailpit")


def test_notifications_sends_sms_to_the_sms_sink(services: dict[str, Any]) -> None:
    env = env_of(services["notifications"])
    assert env["RAPPORT_NOTIFICATIONS_SMS_URL"] == "http://sms-sink:1026/messages"
    assert depends_on(services["notifications"])["sms-sink"] == "service_healthy"
    assert services["sms-sink"]["command"][0] == "devstack.sms"
    assert "healthcheck" in services["sms-sink"]
    # The provider's key is a secret: required, never defaulted, the same on both sides.
    required = "${RAPPORT_NOTIFICATIONS_SMS_API_KEY:?"
    assert env["RAPPORT_NOTIFICATIONS_SMS_API_KEY"].startswith(required)
    assert services["sms-sink"]["command"][-1] == env["RAPPORT_NOTIFICATIONS_SMS_API_KEY"]


# --- the customer portal ------------------------------------------------


SettingsOf = Callable[[str, dict[str, str]], Any]


@pytest.fixture
def settings_of(services: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> SettingsOf:
    """The settings a service loads from its compose environment, given the variables."""

    def load(name: str, variables: dict[str, str]) -> ServiceSettings:
        for variable in list(os.environ):
            if variable.startswith("RAPPORT_"):
                monkeypatch.delenv(variable)
        given = {"RAPPORT_AUTH_SECRET": "s" * 48, "RAPPORT_NOTIFICATIONS_SMS_API_KEY": "k" * 32}
        given |= variables
        for key, value in env_of(services[name]).items():
            monkeypatch.setenv(key, interpolate(value, given))
        return SETTINGS[name]()

    return load


PUBLIC_HOSTS = [({}, "localhost"), ({"RAPPORT_PUBLIC_HOST": "crm.example.com"}, "crm.example.com")]


@pytest.mark.parametrize(("variables", "host"), PUBLIC_HOSTS, ids=["default", "public-host"])
def test_every_service_lets_the_portal_in(
    settings_of: SettingsOf, variables: dict[str, str], host: str
) -> None:
    """The portal's page, on profiles' published port, may call every API (CORS)."""
    for name in SERVICE_PORTS:
        settings = settings_of(name, variables)
        assert settings.portal_origins == [f"http://{host}:{SERVICE_PORTS['profiles']}"], name


@pytest.mark.parametrize(("variables", "host"), PUBLIC_HOSTS, ids=["default", "public-host"])
def test_mails_and_the_portal_page_use_the_published_addresses(
    services: dict[str, Any], settings_of: SettingsOf, variables: dict[str, str], host: str
) -> None:
    def published(name: str) -> str:
        port = SERVICE_PORTS[name]
        assert f"{port}:{port}" in [str(mapping) for mapping in services[name]["ports"]]
        return f"http://{host}:{port}"

    profiles = settings_of("profiles", variables)
    notifications = settings_of("notifications", variables)
    # Sign-in links (profiles) and feedback links (notifications) lead to the portal.
    assert profiles.portal_url == f"{published('profiles')}/portal"
    assert notifications.portal_url == profiles.portal_url
    # The page's config.json: where the browser finds complaints and notifications.
    assert profiles.portal_complaints_url == published("complaints")
    assert profiles.portal_notifications_url == published("notifications")
    # The origin the links open the page on is the one the APIs let in.
    scheme, _, rest = profiles.portal_url.partition("://")
    assert f"{scheme}://{rest.split('/')[0]}" in settings_of("complaints", variables).portal_origins


def test_auth_secret_is_required_and_never_defaulted(services: dict[str, Any]) -> None:
    for name in SERVICE_PORTS:
        assert "RAPPORT_AUTH_SECRET" in env_of(services[name]), name
    for name, service in services.items():
        secret = env_of(service).get("RAPPORT_AUTH_SECRET")
        if secret is not None:
            assert REQUIRED_SECRET.match(secret), f"{name}: {secret!r}"
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not re.search(r"RAPPORT_AUTH_SECRET:?-", text)


# --- Dockerfile and build context ----------------------------------------


def test_dockerfile_uses_python_311_slim(dockerfile: str) -> None:
    bases = [line.split()[0] for line in dockerfile_instructions(dockerfile, "FROM")]
    assert bases
    assert all(base == "python:3.11-slim" for base in bases), bases


def test_dockerfile_installs_runtime_dependencies_only(dockerfile: str) -> None:
    runs = " ".join(dockerfile_instructions(dockerfile, "RUN"))
    assert re.search(r"pip install \.(\s|$)", runs)
    assert "[dev]" not in dockerfile
    assert "secantus" not in dockerfile.lower()


def test_dockerfile_runs_as_non_root(dockerfile: str) -> None:
    users = dockerfile_instructions(dockerfile, "USER")
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_exposes_the_service_ports(dockerfile: str) -> None:
    exposed = {
        int(port.split("/")[0])
        for line in dockerfile_instructions(dockerfile, "EXPOSE")
        for port in line.split()
    }
    assert set(SERVICE_PORTS.values()) <= exposed
    assert re.search(r"PYTHONUNBUFFERED=1", " ".join(dockerfile_instructions(dockerfile, "ENV")))


def test_dockerfile_entrypoint_leaves_the_module_to_compose(dockerfile: str) -> None:
    entrypoints = dockerfile_instructions(dockerfile, "ENTRYPOINT")
    assert entrypoints
    assert yaml.safe_load(entrypoints[-1]) == ["python", "-m"]


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".rapport", ".env"} <= patterns
