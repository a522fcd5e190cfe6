"""The Helm chart (deploy/helm/rapport), rendered with `helm template`, against the code.

No cluster is needed: each example values file is rendered and the objects are read
as a cluster would get them. Names that the code decides (consumer groups, topics,
ports, settings) are taken from the Python sources, so the chart cannot drift from
them unnoticed. `make test` builds the pinned Helm first (`make helm-check`, which
also validates the core objects against the Kubernetes schemas); without a helm
binary these tests are skipped.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.analytics import worker as analytics_worker
from services.analytics.settings import AnalyticsSettings
from services.complaints import worker as complaints_worker
from services.complaints.settings import ComplaintsSettings
from services.notifications import worker as notifications_worker
from services.notifications.settings import NotificationsSettings
from services.profiles import worker as profiles_worker
from services.profiles.settings import ProfilesSettings
from shared.settings import ServiceSettings
from shared.stream import StreamWorker
from shared.topics import CONTRACT_PARTITIONS, DLQ_PARTITIONS, TopicNames

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "rapport"
EXAMPLES = {path.stem: path for path in sorted((CHART / "examples").glob("*.yaml"))}
KUBERNETES_VERSION = "1.33.0"

# Each service: its settings class (port, consumer group) and the topics it consumes.
SERVICES: dict[str, tuple[type[ServiceSettings], list[str]]] = {
    "profiles": (ProfilesSettings, profiles_worker.SUBSCRIPTIONS),
    "complaints": (ComplaintsSettings, complaints_worker.SUBSCRIPTIONS),
    "notifications": (NotificationsSettings, notifications_worker.SUBSCRIPTIONS),
    "analytics": (AnalyticsSettings, analytics_worker.SUBSCRIPTIONS),
}
# shared/serve.py gives uvicorn this long to finish the HTTP requests in hand.
HTTP_DRAIN_SECONDS = 10
SECRET_LIKE = ("SECRET", "TOKEN", "PASSWORD", "API_KEY", "MONGODB_URI", "USERNAME")


def find_helm() -> str | None:
    candidates = [os.environ.get("RAPPORT_HELM"), str(ROOT / ".tools" / "bin" / "helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("helm")


HELM = find_helm()
pytestmark = pytest.mark.skipif(
    HELM is None,
    reason="no helm binary: `make helm-check` builds the pinned one into .tools/bin",
)

Manifest = dict[str, Any]


class RenderFailed(Exception):
    pass


def render(*values: Path) -> list[Manifest]:
    assert HELM is not None
    command = [HELM, "template", "rapport", str(CHART), "--namespace", "rapport"]
    command += ["--kube-version", KUBERNETES_VERSION]
    for path in values:
        command += ["-f", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RenderFailed(result.stderr)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(tmp_path: Path, base: Path, overrides: dict[str, Any]) -> str:
    """Render ``base`` with ``overrides`` on top, expecting Helm to refuse; its message."""
    extra = tmp_path / "overrides.yaml"
    extra.write_text(yaml.safe_dump(overrides), encoding="utf-8")
    with pytest.raises(RenderFailed) as refused:
        render(base, extra)
    return str(refused.value)


def values_of(example: str) -> dict[str, Any]:
    """The chart's defaults with the example's values over them (enough for these tests)."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    own = yaml.safe_load(EXAMPLES[example].read_text(encoding="utf-8"))
    return merge(defaults, own)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [manifest for manifest in manifests if manifest["kind"] == kind]


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"]["app.kubernetes.io/component"])


def by_service(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {component(manifest): manifest for manifest in of_kind(manifests, kind)}


def container_of(deployment: Manifest) -> Manifest:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: Manifest = containers[0]
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render(path) for name, path in EXAMPLES.items()}


@pytest.fixture(params=sorted(EXAMPLES))
def example(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def manifests(rendered: dict[str, list[Manifest]], example: str) -> list[Manifest]:
    return rendered[example]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RAPPORT_* of the machine running the tests (the shared broker's, say)."""
    for name in list(os.environ):
        if name.startswith("RAPPORT_"):
            monkeypatch.delenv(name)
    return monkeypatch


def load_settings(
    manifests: list[Manifest], environment: pytest.MonkeyPatch
) -> dict[str, ServiceSettings]:
    """Each service's settings as its pods load them: the ConfigMap the Deployment reads,
    plus the Secret's keys (stand-ins)."""
    (config,) = of_kind(manifests, "ConfigMap")
    for name, value in config["data"].items():
        environment.setenv(name, value)
    environment.setenv("RAPPORT_AUTH_SECRET", "s" * 48)
    environment.setenv("RAPPORT_MONGODB_URI", "mongodb://mongo:27017/?replicaSet=rs0")
    loaded: dict[str, ServiceSettings] = {}
    for name, deployment in by_service(manifests, "Deployment").items():
        sources = container_of(deployment)["envFrom"]
        assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources, name
        settings_class, _ = SERVICES[name]
        loaded[name] = settings_class()
    return loaded


def test_the_three_documented_examples_exist() -> None:
    assert {"minimal", "keda-ingress", "strimzi"} <= set(EXAMPLES)


def test_one_deployment_and_service_per_service_from_one_image(
    manifests: list[Manifest],
) -> None:
    deployments = by_service(manifests, "Deployment")
    services = by_service(manifests, "Service")
    assert set(deployments) == set(SERVICES)
    assert set(services) == set(SERVICES)
    images = {container_of(deployment)["image"] for deployment in deployments.values()}
    assert len(images) == 1
    for name, deployment in deployments.items():
        settings_class, _ = SERVICES[name]
        container = container_of(deployment)
        assert container["command"] == ["python", "-m", f"services.{name}"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"http": settings_class.default_http_port}
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        service = services[name]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_every_deployment_probes_readyz_and_healthz(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        container = container_of(deployment)
        paths = {
            probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
            for probe in ("readinessProbe", "livenessProbe", "startupProbe")
        }
        assert paths == {
            "readinessProbe": ("/readyz", "http"),
            "livenessProbe": ("/healthz", "http"),
            "startupProbe": ("/healthz", "http"),
        }


def test_pods_run_as_non_root_with_nothing_extra(manifests: list[Manifest]) -> None:
    pods = [deployment["spec"]["template"] for deployment in of_kind(manifests, "Deployment")]
    pods += [job["spec"]["template"] for job in of_kind(manifests, "Job")]
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_services_get_a_writable_tmp_on_a_read_only_root(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        mounts = {mount["mountPath"] for mount in container_of(deployment)["volumeMounts"]}
        assert "/tmp" in mounts


def test_the_grace_period_covers_finishing_the_batch_and_leaving_the_group(
    manifests: list[Manifest],
) -> None:
    stop_timeout = inspect.signature(StreamWorker).parameters["stop_timeout"].default
    assert isinstance(stop_timeout, float)
    for deployment in of_kind(manifests, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        pause = container_of(deployment)["lifecycle"]["preStop"]["exec"]["command"]
        assert pause[0] == "sleep"
        needed = int(pause[1]) + HTTP_DRAIN_SECONDS + stop_timeout
        assert pod["terminationGracePeriodSeconds"] > needed


def test_a_grace_period_too_short_for_a_batch_is_refused(tmp_path: Path) -> None:
    message = render_error(tmp_path, EXAMPLES["minimal"], {"terminationGracePeriodSeconds": 30})
    assert "terminationGracePeriodSeconds" in message


def test_every_service_has_a_disruption_budget(manifests: list[Manifest]) -> None:
    deployments = by_service(manifests, "Deployment")
    budgets = by_service(manifests, "PodDisruptionBudget")
    assert set(budgets) == set(SERVICES)
    for name, budget in budgets.items():
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_chart_renders_no_secret(manifests: list[Manifest]) -> None:
    assert of_kind(manifests, "Secret") == []
    for config in of_kind(manifests, "ConfigMap"):
        leaked = [key for key in config["data"] if any(word in key for word in SECRET_LIKE)]
        assert leaked == []
    for deployment in of_kind(manifests, "Deployment"):
        for variable in container_of(deployment)["env"]:
            if any(word in variable["name"] for word in SECRET_LIKE):
                assert "value" not in variable, variable["name"]
                assert "secretKeyRef" in variable["valueFrom"], variable["name"]


def test_secrets_come_from_the_existing_secret(example: str, manifests: list[Manifest]) -> None:
    values = values_of(example)
    for deployment in of_kind(manifests, "Deployment"):
        references = {
            variable["name"]: variable["valueFrom"]["secretKeyRef"]
            for variable in container_of(deployment)["env"]
            if "secretKeyRef" in variable.get("valueFrom", {})
        }
        auth = references["RAPPORT_AUTH_SECRET"]
        assert auth["name"] == values["existingSecret"]
        assert not auth.get("optional", False)
        uri = references["RAPPORT_MONGODB_URI"]
        assert uri["name"] == (values["mongodb"]["uriSecret"]["name"] or values["existingSecret"])
        assert uri["key"] == values["mongodb"]["uriSecret"]["key"]


def test_rendering_without_existing_secret_fails(tmp_path: Path) -> None:
    message = render_error(tmp_path, EXAMPLES["minimal"], {"existingSecret": ""})
    assert "existingSecret is required" in message
    with pytest.raises(RenderFailed, match="existingSecret is required"):
        render()  # the chart's own defaults


def test_services_accept_the_settings_the_chart_gives_them(
    example: str, manifests: list[Manifest], clean_environment: pytest.MonkeyPatch
) -> None:
    """The ConfigMap plus the Secret's keys, as the pods get them, load in each service's
    settings (environment production: a real secret is demanded)."""
    values = values_of(example)
    (config,) = of_kind(manifests, "ConfigMap")
    for name, value in config["data"].items():
        clean_environment.setenv(name, value)
    clean_environment.setenv("RAPPORT_AUTH_SECRET", "s" * 48)
    clean_environment.setenv("RAPPORT_MONGODB_URI", "mongodb://mongo:27017/?replicaSet=rs0")
    prefix = values["topics"]["prefix"]
    for name, deployment in by_service(manifests, "Deployment").items():
        settings_class, _ = SERVICES[name]
        settings = settings_class()
        assert settings.environment == "production"
        assert settings.http_host == "0.0.0.0"
        assert settings.http_port == container_of(deployment)["ports"][0]["containerPort"]
        assert settings.kafka_bootstrap == values["kafka"]["bootstrapServers"]
        assert settings.topic_prefix == prefix


def test_replicas_never_above_the_partitions(example: str, manifests: list[Manifest]) -> None:
    partitions = values_of(example)["topics"]["partitions"]
    ceilings = [d["spec"].get("replicas", 1) for d in of_kind(manifests, "Deployment")]
    ceilings += [
        hpa["spec"]["maxReplicas"] for hpa in of_kind(manifests, "HorizontalPodAutoscaler")
    ]
    ceilings += [so["spec"]["maxReplicaCount"] for so in of_kind(manifests, "ScaledObject")]
    assert ceilings
    assert max(ceilings) <= partitions


def test_topics_made_by_the_job_have_the_partitions_the_chart_assumes() -> None:
    """`rapport topics create` creates every contract topic with CONTRACT_PARTITIONS."""
    for example in EXAMPLES:
        values = values_of(example)
        if not values["strimzi"]["enabled"]:
            assert values["topics"]["partitions"] <= min(CONTRACT_PARTITIONS.values())
    defaults = values_of("minimal")["topics"]
    assert defaults["partitions"] == min(CONTRACT_PARTITIONS.values())
    assert defaults["dlqPartitions"] == DLQ_PARTITIONS


@pytest.mark.parametrize(
    "overrides",
    [
        {"keda": {"enabled": True, "maxReplicaCount": 7}},
        {"keda": {"enabled": True}, "services": {"profiles": {"maxReplicas": 9}}},
        {"autoscaling": {"enabled": True, "maxReplicas": 7}},
        {"replicaCount": 7},
        {"services": {"notifications": {"replicaCount": 12}}},
    ],
    ids=["keda", "keda-one-service", "hpa", "fixed", "fixed-one-service"],
)
def test_more_replicas_than_partitions_fail_to_render(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    message = render_error(tmp_path, EXAMPLES["minimal"], overrides)
    assert "partitions" in message


def test_keda_and_the_cpu_autoscaler_are_exclusive(tmp_path: Path) -> None:
    message = render_error(tmp_path, EXAMPLES["keda-ingress"], {"autoscaling": {"enabled": True}})
    assert "exclusive" in message


def test_keda_scales_each_service_on_its_own_consumer_group_and_topics(
    rendered: dict[str, list[Manifest]], clean_environment: pytest.MonkeyPatch
) -> None:
    values = values_of("keda-ingress")
    prefix = values["topics"]["prefix"]
    assert prefix, "the example should show a topic prefix"
    names = TopicNames(prefix)
    manifests = rendered["keda-ingress"]
    deployments = by_service(manifests, "Deployment")
    scaled = by_service(manifests, "ScaledObject")
    assert set(scaled) == set(SERVICES)
    assert of_kind(manifests, "HorizontalPodAutoscaler") == []
    for name, scaled_object in scaled.items():
        settings_class, subscriptions = SERVICES[name]
        group = settings_class(topic_prefix=prefix).consumer_group
        spec = scaled_object["spec"]
        assert spec["scaleTargetRef"]["name"] == deployments[name]["metadata"]["name"]
        assert "replicas" not in deployments[name]["spec"]  # KEDA owns the count
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["maxReplicaCount"] <= values["topics"]["partitions"]
        triggers = spec["triggers"]
        assert {trigger["type"] for trigger in triggers} == {"kafka"}
        metadata = [trigger["metadata"] for trigger in triggers]
        assert {m["consumerGroup"] for m in metadata} == {group}
        assert sorted(m["topic"] for m in metadata) == sorted(names(t) for t in subscriptions)
        for m in metadata:
            assert m["bootstrapServers"] == values["kafka"]["bootstrapServers"]
            assert m["offsetResetPolicy"] == "earliest"
            assert m["allowIdleConsumers"] == "false"
            assert int(m["lagThreshold"]) >= 1


def test_the_cpu_autoscaler_targets_each_deployment(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["strimzi"]
    deployments = by_service(manifests, "Deployment")
    autoscalers = by_service(manifests, "HorizontalPodAutoscaler")
    assert set(autoscalers) == set(SERVICES)
    for name, autoscaler in autoscalers.items():
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == (
            "Deployment",
            deployments[name]["metadata"]["name"],
        )
        assert "replicas" not in deployments[name]["spec"]
        (metric,) = autoscaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_the_topics_job_creates_the_contract_topics_before_the_services(
    rendered: dict[str, list[Manifest]],
) -> None:
    values = values_of("keda-ingress")
    (job,) = of_kind(rendered["keda-ingress"], "Job")
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "ops.cli", "topics", "create"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env["RAPPORT_KAFKA_BOOTSTRAP"] == values["kafka"]["bootstrapServers"]
    assert env["RAPPORT_TOPIC_PREFIX"] == values["topics"]["prefix"]
    assert of_kind(rendered["keda-ingress"], "KafkaTopic") == []


def test_strimzi_topics_are_the_contract_topics(rendered: dict[str, list[Manifest]]) -> None:
    values = values_of("strimzi")
    manifests = rendered["strimzi"]
    assert of_kind(manifests, "Job") == []
    topics = {topic["spec"]["topicName"]: topic for topic in of_kind(manifests, "KafkaTopic")}
    expected = TopicNames(values["topics"]["prefix"]).all()
    assert set(topics) == set(expected)
    for name, topic in topics.items():
        assert topic["apiVersion"] == values["strimzi"]["apiVersion"]
        labels = topic["metadata"]["labels"]
        assert labels["strimzi.io/cluster"] == values["strimzi"]["clusterName"]
        partitions = values["topics"]["dlqPartitions" if name.endswith(".dlq") else "partitions"]
        assert topic["spec"]["partitions"] == partitions
        assert topic["spec"]["replicas"] == values["topics"]["replicationFactor"]
        assert topic["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_the_strimzi_example_reads_the_mongodb_operator_secret(
    rendered: dict[str, list[Manifest]],
) -> None:
    for deployment in of_kind(rendered["strimzi"], "Deployment"):
        (uri,) = [v for v in container_of(deployment)["env"] if v["name"] == "RAPPORT_MONGODB_URI"]
        reference = uri["valueFrom"]["secretKeyRef"]
        assert reference["key"] == "connectionString.standard"
        assert reference["name"].endswith("-admin-rapport")


def test_the_ingress_serves_the_apis_and_the_dashboard_but_not_operations(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["keda-ingress"]
    (ingress,) = of_kind(manifests, "Ingress")
    services = {service["metadata"]["name"]: service for service in of_kind(manifests, "Service")}
    hosts = values_of("keda-ingress")["ingress"]["hosts"]
    routes: dict[str, set[str]] = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = services[backend["name"]]
            assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
            assert component(service) == next(n for n, h in hosts.items() if h == rule["host"])
            routes.setdefault(component(service), set()).add(path["path"])
    assert set(routes) == set(SERVICES)
    assert all("/api" in paths for paths in routes.values())
    assert "/" in routes["analytics"]
    # The customer portal is served by profiles, on its host only.
    assert [name for name, paths in routes.items() if "/portal" in paths] == ["profiles"]
    every_path = set().union(*routes.values())
    assert not every_path & {"/metrics", "/healthz", "/readyz"}


def test_prometheus_scrapes_every_service(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["keda-ingress"]
    (monitor,) = of_kind(manifests, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    wanted = monitor["spec"]["selector"]["matchLabels"]
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    for service in of_kind(manifests, "Service"):
        labels = service["metadata"]["labels"]
        assert wanted.items() <= labels.items()
        assert labels[expression["key"]] in expression["values"]


def test_the_network_policy_lets_the_release_and_the_listed_peers_in(
    rendered: dict[str, list[Manifest]],
) -> None:
    (policy,) = of_kind(rendered["keda-ingress"], "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    peers = values_of("keda-ingress")["networkPolicy"]["ingressFrom"]
    assert rule["from"][1:] == peers
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    for deployment in of_kind(rendered["keda-ingress"], "Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


# --- the customer portal (docs/portal.md) ----------------------------------------------


def test_every_service_lets_the_portal_on_the_profiles_host_in(
    rendered: dict[str, list[Manifest]], clean_environment: pytest.MonkeyPatch
) -> None:
    """The portal's page calls every API from the browser: its origin (the profiles
    Ingress host, https as the host is under tls) is allowed through CORS everywhere."""
    values = values_of("keda-ingress")
    host = values["ingress"]["hosts"]["profiles"]
    assert any(host in entry["hosts"] for entry in values["ingress"]["tls"])
    loaded = load_settings(rendered["keda-ingress"], clean_environment)
    assert set(loaded) == set(SERVICES)
    for name, settings in loaded.items():
        assert settings.portal_origins == [f"https://{host}"], name


def test_mails_and_the_portal_page_point_at_the_ingress_hosts(
    rendered: dict[str, list[Manifest]], clean_environment: pytest.MonkeyPatch
) -> None:
    hosts = values_of("keda-ingress")["ingress"]["hosts"]
    loaded = load_settings(rendered["keda-ingress"], clean_environment)
    profiles = loaded["profiles"]
    notifications = loaded["notifications"]
    assert isinstance(profiles, ProfilesSettings)
    assert isinstance(notifications, NotificationsSettings)
    # Sign-in links (profiles) and feedback links (notifications) open the portal on the
    # profiles host, where the Ingress routes /portal.
    assert profiles.portal_url == f"https://{hosts['profiles']}/portal"
    assert notifications.portal_url == profiles.portal_url
    # The page's config.json sends the browser to the other two APIs' hosts.
    assert profiles.portal_complaints_url == f"https://{hosts['complaints']}"
    assert profiles.portal_notifications_url == f"https://{hosts['notifications']}"


def test_without_an_ingress_the_portal_urls_are_the_ones_given(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    portal = {
        "publicUrls": {
            "profiles": "https://portal.example.com/",
            "complaints": "https://api.example.com:8443",
            "notifications": "http://inbox.example.com",
        },
        "extraOrigins": ["https://www.example.com", "https://portal.example.com"],
    }
    extra = tmp_path / "portal.yaml"
    extra.write_text(yaml.safe_dump({"portal": portal}), encoding="utf-8")
    loaded = load_settings(render(EXAMPLES["minimal"], extra), clean_environment)
    for name, settings in loaded.items():
        assert settings.portal_origins == [
            "https://portal.example.com",
            "https://www.example.com",
        ], name
    profiles = loaded["profiles"]
    assert isinstance(profiles, ProfilesSettings)
    assert profiles.portal_url == "https://portal.example.com/portal"
    assert profiles.portal_complaints_url == "https://api.example.com:8443"
    assert profiles.portal_notifications_url == "http://inbox.example.com"
    notifications = loaded["notifications"]
    assert isinstance(notifications, NotificationsSettings)
    assert notifications.portal_url == "https://portal.example.com/portal"


def test_portal_settings_given_in_values_win(
    tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    overrides = {
        "settings": {"portal_url": "https://crm.example.com/customers"},
        "services": {
            "notifications": {"settings": {"portal_url": "https://mail.example.com/portal"}},
            "profiles": {"settings": {"portal_complaints_url": "https://help.example.com"}},
        },
    }
    extra = tmp_path / "own.yaml"
    extra.write_text(yaml.safe_dump(overrides), encoding="utf-8")
    loaded = load_settings(render(EXAMPLES["keda-ingress"], extra), clean_environment)
    profiles = loaded["profiles"]
    notifications = loaded["notifications"]
    assert isinstance(profiles, ProfilesSettings)
    assert isinstance(notifications, NotificationsSettings)
    assert profiles.portal_url == "https://crm.example.com/customers"
    assert notifications.portal_url == "https://mail.example.com/portal"
    assert profiles.portal_complaints_url == "https://help.example.com"
    assert profiles.portal_notifications_url == "https://notifications.crm.example.com"


@pytest.mark.parametrize(
    "portal",
    [
        {"publicUrls": {"profiles": "https://crm.example.com/portal"}},
        {"publicUrls": {"complaints": "complaints.example.com"}},
        {"extraOrigins": ["*"]},
    ],
    ids=["path", "no-scheme", "wildcard"],
)
def test_portal_addresses_that_are_not_origins_are_refused(
    tmp_path: Path, portal: dict[str, Any]
) -> None:
    message = render_error(tmp_path, EXAMPLES["minimal"], {"portal": portal})
    assert re.search(r"at '/portal/\w+/\w+'.* does not match pattern", message), message
