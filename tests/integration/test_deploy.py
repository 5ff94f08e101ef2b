"""The deployment files under deploy/: YAML lint, Kubernetes schemas, security settings, the
Grafana dashboard and the Prometheus rules, and the metrics they name against a real server."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import grpc
import httpx
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from yamllint import linter
from yamllint.config import YamlLintConfig

from idservice.config import Settings
from idservice.config_values import parse_duration
from idservice.v1 import auth_pb2
from tests.support.client import Client
from tests.support.server_process import ServerProcess, free_loopback_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OBSERVABILITY = DEPLOY / "observability"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
RULES = OBSERVABILITY / "prometheus-rules.yaml"
# The oldest Kubernetes release the manifests are meant for; the schemas ship with
# kubernetes-validate (offline).
KUBERNETES_VERSION = "1.35.0"
GRPC_PORT = 50051
METRICS_PORT = 9464
HEALTH_PORT = 8081
APP_UID = 10001
# deployment.yaml's sizing: RSS of one server process, and the Argon2 threads it is sized for.
PROCESS_BASELINE_MIB = 140
ARGON2_THREADS_SIZED_FOR = 16
FAST_ARGON2 = {
    "IDSERVICE_ARGON2_TIME_COST": "1",
    "IDSERVICE_ARGON2_MEMORY_COST": "1024",
    "IDSERVICE_ARGON2_PARALLELISM": "1",
}
# Metric names Prometheus adds itself, not the service's /metrics.
PROMETHEUS_SERIES = frozenset({"up"})


# ------------------------------------------------------------------------------- loading


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())


def _manifest_files() -> list[Path]:
    return sorted(KUBERNETES.rglob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _resources() -> list[dict[str, Any]]:
    """Every Kubernetes object under deploy/kubernetes (kustomizations are not objects)."""
    return [
        doc
        for path in _manifest_files()
        for doc in _documents(path)
        if doc.get("kind") != "Kustomization"
    ]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        r
        for r in _resources()
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for resource in _resources():
        if resource["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield resource["metadata"]["name"], resource["spec"]["template"]["spec"]


def _server() -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment", "idservice")["spec"]["template"]["spec"]
    return spec


def _server_container() -> dict[str, Any]:
    containers = _server()["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _quantity_mib(text: str | int) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(text))
    assert match, text
    return float(match.group(1)) * units[match.group(2)] if match.group(2) else int(text) / 2**20


def _cpu(text: str | int) -> float:
    value = str(text)
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


# ------------------------------------------------------------------------------- lint, schemas


def test_yamllint_passes_on_everything_under_deploy() -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    files = _yaml_files()
    assert files
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.relative_to(ROOT)}:{p}" for p in linter.run(text, config, str(path))]
    assert problems == []


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(KUBERNETES)))
def test_manifest_is_valid_kubernetes_strictly(path: Path) -> None:
    documents = _documents(path)
    assert documents
    for doc in documents:
        if doc.get("kind") == "Kustomization":
            for entry in doc["resources"]:
                assert (path.parent / entry).is_file(), entry
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_an_unknown_field() -> None:
    deployment = json.loads(json.dumps(_one("Deployment", "idservice")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpcc"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_kind_the_service_needs_is_there() -> None:
    kinds = {(r["apiVersion"], r["kind"]) for r in _resources()}
    for wanted in [
        ("v1", "Namespace"),
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    ]:
        assert wanted in kinds


# ------------------------------------------------------------------------------- security


@pytest.mark.parametrize("name", [name for name, _ in _pod_specs()])
def test_pods_run_unprivileged_on_a_read_only_root(name: str) -> None:
    spec = dict(_pod_specs())[name]
    pod = spec.get("securityContext", {})
    assert spec.get("automountServiceAccountToken") is False
    assert spec.get("hostNetwork", False) is False
    assert spec.get("hostPID", False) is False
    for container in spec["containers"] + spec.get("initContainers", []):
        ctx = container.get("securityContext", {})
        assert ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is True
        assert ctx.get("runAsUser", pod.get("runAsUser")) == APP_UID
        assert ctx.get("readOnlyRootFilesystem") is True
        assert ctx.get("allowPrivilegeEscalation") is False
        assert ctx.get("privileged", False) is False
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"]
        assert not ctx.get("capabilities", {}).get("add")
        seccomp = ctx.get("seccompProfile", pod.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault"
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(bound, {})), (name, bound)
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], "a writable /tmp on emptyDir"


def test_service_accounts_mount_no_token() -> None:
    accounts = [r for r in _resources() if r["kind"] == "ServiceAccount"]
    assert accounts
    for account in accounts:
        assert account.get("automountServiceAccountToken") is False
    names = {a["metadata"]["name"] for a in accounts}
    for pod_name, spec in _pod_specs():
        assert spec.get("serviceAccountName") in names, pod_name


def test_namespace_enforces_the_restricted_pod_security_profile() -> None:
    labels = _one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_probes_are_native_grpc_on_the_plaintext_health_port() -> None:
    container = _server_container()
    env = _env(container)
    # The API port is TLS in production; the kubelet's gRPC probe speaks plaintext only.
    assert env["IDSERVICE_TLS_CERT_FILE"]["value"]
    assert env["IDSERVICE_HEALTH_LISTEN"]["value"].endswith(f":{HEALTH_PORT}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[probe]
        assert set(action) & {"exec", "httpGet", "tcpSocket"} == set(), probe
        assert action["grpc"]["port"] == HEALTH_PORT, probe
    # Ready: the overall status (""), NOT_SERVING while draining or without the database.
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["grpc"].get("service", "") == "", probe
    # Alive: `liveness`, which a database outage leaves SERVING (no restarts for it).
    assert container["livenessProbe"]["grpc"]["service"] == "liveness"
    # A drain (NOT_SERVING) never lasts long enough to look like a hang.
    liveness = container["livenessProbe"]
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"]
        > _server()["terminationGracePeriodSeconds"]
    )


def test_server_runs_in_production_with_processes_from_the_cpu_limit() -> None:
    container = _server_container()
    env = _env(container)
    assert env["IDSERVICE_ENV"]["value"] == "production"
    cpu_limit = _cpu(container["resources"]["limits"]["cpu"])
    processes = env["IDSERVICE_PROCESSES"]
    if "value" in processes:
        assert int(processes["value"]) == math.ceil(cpu_limit)
    else:
        ref = processes["valueFrom"]["resourceFieldRef"]
        assert (ref["resource"], str(ref.get("divisor", "1"))) == ("limits.cpu", "1")
        assert ref.get("containerName", container["name"]) == container["name"]
    assert env["IDSERVICE_LISTEN"]["value"].endswith(f":{GRPC_PORT}")
    assert env["IDSERVICE_METRICS_LISTEN"]["value"].endswith(f":{METRICS_PORT}")


def test_memory_follows_the_argon2_arithmetic() -> None:
    container = _server_container()
    config = _one("ConfigMap", "idservice-config")["data"]
    memory_cost_mib = int(config["IDSERVICE_ARGON2_MEMORY_COST"]) / 1024
    processes = math.ceil(_cpu(container["resources"]["limits"]["cpu"]))
    needed = (processes + 1) * PROCESS_BASELINE_MIB + ARGON2_THREADS_SIZED_FOR * memory_cost_mib
    for bound in ("requests", "limits"):
        assert _quantity_mib(container["resources"][bound]["memory"]) >= needed * 1.25, bound
    # Guaranteed QoS (requests equal limits): never evicted first, and eligible for pinned CPUs.
    for resource in ("cpu", "memory"):
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        assert requests[resource] == limits[resource], resource


def test_termination_grace_outlasts_the_drain() -> None:
    spec = _server()
    container = _server_container()
    grace = parse_duration(_env(container)["IDSERVICE_SHUTDOWN_GRACE"]["value"]).total_seconds()
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert spec["terminationGracePeriodSeconds"] > grace + pre_stop


def test_every_setting_named_is_one_the_service_reads() -> None:
    known = {"IDSERVICE_" + f.name.upper() for f in fields(Settings)}
    named: set[str] = set()
    for _, spec in _pod_specs():
        for container in spec["containers"]:
            named |= {n for n in _env(container) if n.startswith("IDSERVICE_")}
    named |= set(_one("ConfigMap", "idservice-config")["data"])
    assert named - known == set()


def test_secrets_come_from_secret_objects_never_from_literals() -> None:
    container = _server_container()
    env = _env(container)
    for name in (
        "IDSERVICE_DATABASE_URL",
        "IDSERVICE_DATA_KEYS",
        "IDSERVICE_PORTONE_API_SECRET",
        "IDSERVICE_NOTIFY_WEBHOOK_SECRET",
        "IDSERVICE_GOOGLE_CLIENT_SECRET",
        "IDSERVICE_KAKAO_CLIENT_SECRET",
    ):
        assert "value" not in env[name], name
        assert "secretKeyRef" in env[name]["valueFrom"], name
    config = _one("ConfigMap", "idservice-config")["data"]
    assert not {k for k in config if re.search("SECRET|KEYS|DATABASE_URL", k)}
    # The signing key and the TLS key are files from Secret volumes.
    volumes = {v["name"]: v for v in _server()["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for variable in ("IDSERVICE_SIGNING_KEY_FILE", "IDSERVICE_TLS_KEY_FILE"):
        path = env[variable]["value"]
        mount = next(m for p, m in mounts.items() if path.startswith(p + "/"))
        assert mount.get("readOnly") is True
        assert "secret" in volumes[mount["name"]], variable


def _looks_like_a_data_key(value: str) -> bool:
    for entry in value.split(","):
        _, _, material = entry.partition(":")
        try:
            if len(base64.b64decode(material.strip(), validate=True)) == 32:
                return True
        except (binascii.Error, ValueError):
            continue
    return False


def test_no_secret_holds_real_looking_data() -> None:
    secrets = [r for r in _resources() if r["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        name = secret["metadata"]["name"]
        assert "data" not in secret, f"{name}: base64 data hides what it holds"
        for key, value in secret.get("stringData", {}).items():
            assert value == "" or "REPLACE_ME" in value, (name, key)
            assert not _looks_like_a_data_key(value), (name, key)
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", text), path
            assert not re.search(r"postgresql\+psycopg://[^:\s]+:(?!REPLACE_ME)[^@\s]+@", text)


def test_only_the_example_secret_file_holds_secrets() -> None:
    for path in _manifest_files():
        kinds = {doc.get("kind") for doc in _documents(path)}
        if "Secret" in kinds:
            assert path.name.endswith(".example.yaml"), path
            for kustomization in KUBERNETES.rglob("kustomization.yaml"):
                assert path.name not in kustomization.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------- the other objects


def test_service_exposes_grpc_and_metrics_ports() -> None:
    service = _one("Service", "idservice")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["port"] == GRPC_PORT
    assert ports["metrics"]["port"] == METRICS_PORT
    container_ports = {p["name"]: p["containerPort"] for p in _server_container()["ports"]}
    assert container_ports == {"grpc": GRPC_PORT, "metrics": METRICS_PORT, "health": HEALTH_PORT}
    for port in ports.values():
        assert port["targetPort"] in container_ports
    # The health port is for the kubelet alone: no Service forwards to it.
    for each in (r for r in _resources() if r["kind"] == "Service"):
        for port in each["spec"]["ports"]:
            assert port["targetPort"] != "health" and port["port"] != HEALTH_PORT
    labels = _one("Deployment", "idservice")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_disruption_budget_and_autoscaler_target_the_server() -> None:
    deployment = _one("Deployment", "idservice")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "idservice",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource"
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2


def test_network_policy_lets_in_only_the_backend_and_prometheus() -> None:
    policies = [r for r in _resources() if r["kind"] == "NetworkPolicy"]
    deny = next(p for p in policies if p["spec"]["podSelector"] == {})
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    assert "egress" not in deny["spec"]
    server = _one("NetworkPolicy", "idservice-server")["spec"]
    labels = _one("Deployment", "idservice")["spec"]["template"]["metadata"]["labels"]
    assert server["podSelector"]["matchLabels"].items() <= labels.items()
    ingress_ports = []
    for rule in server["ingress"]:
        assert rule["from"], "every ingress rule names who may connect"
        for peer in rule["from"]:
            assert "namespaceSelector" in peer and "podSelector" in peer
        ingress_ports += [p["port"] for p in rule["ports"]]
    # No rule for the health port: only the node's kubelet connects, which is always allowed.
    assert sorted(ingress_ports) == sorted([GRPC_PORT, METRICS_PORT])
    egress_ports = {p["port"] for rule in server["egress"] for p in rule["ports"]}
    assert {53, 5432, 443} <= egress_ports


def test_migration_job_runs_migrate_with_the_server_image() -> None:
    job = _one("Job", "idservice-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert container["image"] == _server_container()["image"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    env = _env(container)
    assert "secretKeyRef" in env["IDSERVICE_DATABASE_URL"]["valueFrom"]
    # Migrating needs no key: the Job never sees the data keys or the signing key.
    assert "IDSERVICE_DATA_KEYS" not in env
    assert "IDSERVICE_SIGNING_KEY_FILE" not in env


# ------------------------------------------------------------------------------- observability


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])
    return [p for p in panels if p["type"] != "row"]


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def _expressions() -> list[str]:
    exprs = [t["expr"] for p in _dashboard_panels() for t in p["targets"]]
    return exprs + [rule["expr"] for rule in _rules()]


_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        word = match.group(0)
        following = text[match.end() :].lstrip()
        if following.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        if match.start() > 0 and (
            text[match.start() - 1].isdigit() or text[match.start() - 1] == "."
        ):
            continue  # a number's exponent or unit
        names.add(word)
    return names


def _named_metrics() -> list[str]:
    return sorted(set().union(*(metric_names(e) for e in _expressions())) - PROMETHEUS_SERIES)


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, method) (rate(idservice_rpc_seconds_bucket{job="x",'
        ' method!~"A|B"}[5m]))) > 0.5 or absent(up{job="idservice"} == 1) and on (instance) '
        "idservice_db_pool_in_use > 1e3"
    )
    assert metric_names(expr) == {"idservice_rpc_seconds_bucket", "up", "idservice_db_pool_in_use"}


def test_dashboard_has_the_grafana_shape_and_every_panel_asked_for() -> None:
    dashboard = _dashboard()
    assert isinstance(dashboard["title"], str)
    assert isinstance(dashboard["uid"], str)
    assert 0 < len(dashboard["uid"]) <= 40
    assert isinstance(dashboard["schemaVersion"], int)
    assert isinstance(dashboard["panels"], list)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    for panel in _dashboard_panels():
        assert panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["refId"]
            assert target["expr"].count("(") == target["expr"].count(")")
    named = " ".join(_expressions())
    for metric in [
        "idservice_rpcs_total",
        "idservice_rpc_seconds_bucket",
        "idservice_argon2_queue_depth",
        "idservice_argon2_wait_seconds_bucket",
        "idservice_outbox_pending",
        "idservice_outbox_oldest_pending_seconds",
        "idservice_outbox_dead_letters",
        "idservice_db_pool_in_use",
        "idservice_db_pool_wait_seconds_bucket",
        "idservice_rate_limited_total",
        "idservice_consent_requests",
    ]:
        assert metric in named


def test_rules_have_the_prometheus_rule_group_shape() -> None:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(data) == {"groups"}
    group_names = [g["name"] for g in data["groups"]]
    assert len(group_names) == len(set(group_names))
    alerts = []
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert isinstance(rule["expr"], str)
            assert rule["expr"].count("(") == rule["expr"].count(")")
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhdwy]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert rule["annotations"]["summary"]
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}

    def alert_on(*needles: str) -> bool:
        return any(all(n in e for n in needles) for e in exprs.values())

    assert alert_on("idservice_rpcs_total", '"INTERNAL"')
    assert alert_on("idservice_rpcs_total", "/ sum(rate(idservice_rpcs_total")
    assert alert_on("histogram_quantile(0.99", "idservice_rpc_seconds_bucket")
    assert alert_on("idservice_outbox_oldest_pending_seconds")
    assert alert_on("idservice_outbox_dead_letters", "> 0")
    assert alert_on("idservice_argon2_")
    assert alert_on("idservice_db_pool_wait_seconds")
    assert alert_on("up{")


# ------------------------------------------------------------------------------- against /metrics


@pytest.fixture(scope="module")
def served_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name `idservice serve` exposes on /metrics after a few calls."""
    tmp_path = tmp_path_factory.mktemp("deploy-metrics")
    workdir = tmp_path / "work"
    workdir.mkdir()
    metrics_port = free_loopback_port()
    env = {**FAST_ARGON2, "IDSERVICE_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"}
    with ServerProcess(env, workdir, log_dir=tmp_path) as proc, proc.channel() as channel:
        client = Client(channel)
        client.auth.GetJwks(auth_pb2.GetJwksRequest())
        client.sign_up()
        with pytest.raises(grpc.RpcError):
            client.login("nobody@example.com", "wrong password here")
        body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    names: set[str] = set()
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }
    for family in text_string_to_metric_families(body):
        # A labelled metric without samples yet is still declared (HELP and TYPE).
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


@pytest.mark.slow
@pytest.mark.parametrize("metric", _named_metrics())
def test_every_metric_named_is_served(metric: str, served_metrics: set[str]) -> None:
    assert metric in served_metrics
