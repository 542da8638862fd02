"""The ops/ folder: what can be checked without a Docker engine, checked with the real tools.

promtool (Debian's prometheus package, installed by ops/install-test-servers.sh) checks the
Prometheus config, the alert rules, their unit tests and every PromQL query of the dashboard. The
compose file, the Grafana provisioning and the Dockerfile are parsed and held to what the
service really runs and exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

OPS = Path(__file__).resolve().parent.parent / "ops"
ROOT = OPS.parent
PROMETHEUS = OPS / "prometheus"
GRAFANA = OPS / "grafana"

# What the service exports on /metrics (the api) and on WORKER_METRICS_PORT (the workers), as
# Prometheus exposes them. Every metric a panel or an alert names must be one of these.
EXPORTED = frozenset(
    {
        "tessera_requests_total",
        "tessera_request_duration_seconds_bucket",
        "tessera_request_duration_seconds_sum",
        "tessera_request_duration_seconds_count",
        "tessera_logins_total",
        "tessera_registrations_total",
        "tessera_email_verifications_total",
        "tessera_password_changes_total",
        "tessera_password_reset_requests_total",
        "tessera_lockouts_total",
        "tessera_tokens_total",
        "tessera_event_store_append_seconds_bucket",
        "tessera_event_store_append_seconds_sum",
        "tessera_event_store_append_seconds_count",
        "tessera_emails_sent_total",
        "tessera_email_attempts_failed_total",
        "tessera_emails_dead_total",
        "tessera_email_queue_depth",
        "tessera_projection_lag_events",
        "tessera_projection_lag_seconds",
    }
)
METRIC = re.compile(r"tessera_[a-z_]+")
SERVICES = {"postgres", "redis", "api", "projector", "worker", "prometheus", "grafana"}
TESSERA_PROCESSES = ("api", "projector", "worker")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document = json.loads((GRAFANA / "dashboards" / "tessera.json").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `make system-deps` installs Debian's prometheus package")
    return found


def run_promtool(promtool: str, *args: str) -> None:
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def alert_rules() -> list[dict[str, Any]]:
    groups = load_yaml(PROMETHEUS / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included, rows themselves excluded."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query" and query:
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def as_plain_promql(query: str) -> str:
    """Grafana's interval variables replaced by durations, so that promtool can parse the query."""
    for variable, duration in {
        "$__rate_interval": "1m",
        "$__interval": "15s",
        "$__range": "6h",
    }.items():
        query = query.replace(variable, duration)
    return query


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to ops/) of the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = source
    return mounts


# --- docker-compose.yml ------------------------------------------------------------------------


def test_the_compose_file_runs_every_process_and_several_api_replicas(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) >= SERVICES
    assert services["api"]["deploy"]["replicas"] > 1
    assert services["projector"]["deploy"]["replicas"] > 1
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    for name, command in {"api": "serve", "projector": "projector", "worker": "worker"}.items():
        assert services[name]["command"] == [command]
        assert services[name]["build"]["dockerfile"] == "ops/Dockerfile"
        assert (OPS / services[name]["build"]["context"] / "ops" / "Dockerfile").is_file()
    assert environment(services["worker"])["WORKER_METRICS_PORT"] == "9191"
    assert "healthcheck" in services["api"]


def test_every_tessera_process_gets_the_production_settings_and_no_secret_in_clear(
    compose: dict[str, Any],
) -> None:
    declared_secrets = compose["secrets"]
    for name in TESSERA_PROCESSES:
        service = compose["services"][name]
        env = environment(service)
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert env["REDIS_URL"].startswith("redis://")
        assert env["PUBLIC_URL"]
        # Required from ops/.env: compose refuses to start while it is empty, so no replica ever
        # falls back to a key of its own (each would seal and sign with a different one).
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]*\}", env["SECRET_KEY"])
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
        for setting in (
            "JWT_PRIVATE_KEY_FILE",
            "JWT_RSA_PRIVATE_KEY_FILE",
            "JWT_EC_PRIVATE_KEY_FILE",
        ):
            key_file = env[setting]
            assert key_file.startswith("/run/secrets/"), setting
            assert key_file.removeprefix("/run/secrets/") in declared_secrets, setting
            assert key_file.removeprefix("/run/secrets/") in service["secrets"], setting


def test_the_compose_env_example_lists_every_required_variable_empty(
    compose: dict[str, Any],
) -> None:
    text = (OPS / "docker-compose.yml").read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert {"SECRET_KEY", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= required
    example = dict(
        line.split("=", 1)
        for line in (OPS / "compose.env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    for name in required:
        assert example[name] == "", f"{name} must be left for the operator to fill in"


def test_compose_mounts_the_prometheus_and_grafana_files_of_this_folder(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for service in services.values():
        for source in bind_mounts(service).values():
            assert (OPS / source).exists(), source
    prometheus = bind_mounts(services["prometheus"])
    assert (OPS / prometheus["/etc/prometheus"] / "prometheus.yml").is_file()
    assert (OPS / prometheus["/etc/prometheus"] / "alerts.yml").is_file()
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    grafana = bind_mounts(services["grafana"])
    assert (OPS / grafana["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "tessera.yml")["providers"][0]
    dashboards_in_container = provider["options"]["path"]
    assert (OPS / grafana[dashboards_in_container] / "tessera.json").is_file()


# --- Prometheus ------------------------------------------------------------------------------


def test_prometheus_scrapes_the_api_replicas_and_the_workers() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, (service, port) in {
        "tessera-api": ("api", 8000),
        "tessera-worker": ("worker", 9191),
    }.items():
        assert jobs[job]["metrics_path"] == "/metrics"
        discovery = jobs[job]["dns_sd_configs"][0]
        assert discovery["names"] == [service]
        assert discovery["port"] == port


def test_promtool_accepts_the_prometheus_config(promtool: str) -> None:
    run_promtool(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    run_promtool(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))


def test_the_alert_rules_pass_their_promtool_unit_tests(promtool: str) -> None:
    run_promtool(promtool, "test", "rules", str(PROMETHEUS / "alerts_test.yml"))


def test_the_unit_tests_see_login_failure_and_token_reuse_alerts_fire() -> None:
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {"TesseraHighLoginFailureRate", "TesseraRefreshTokenReuse"} <= firing


def test_the_alerts_watch_what_the_issue_asks_for() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    watched = {
        "TesseraHighLoginFailureRate": "tessera_logins_total",
        "TesseraLockoutSpike": "tessera_lockouts_total",
        "TesseraRefreshTokenReuse": 'operation="reuse_detected"',
        "TesseraProjectionLagging": "tessera_projection_lag_seconds",
        "TesseraEmailsDeadLettered": "tessera_emails_dead_total",
        "TesseraEmailDeliveryFailing": "tessera_email_attempts_failed_total",
        "TesseraApiHighErrorRate": 'status_code=~"5.."',
        "TesseraInstanceDown": "up{",
    }
    for alert, needle in watched.items():
        assert needle in exprs[alert], alert
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_every_metric_in_the_alerts_is_exported() -> None:
    named = {metric for rule in alert_rules() for metric in METRIC.findall(rule["expr"])}
    assert named
    assert named <= EXPORTED, sorted(named - EXPORTED)


# --- Grafana -----------------------------------------------------------------------------------


def test_every_metric_on_the_dashboard_is_exported(dashboard: dict[str, Any]) -> None:
    named = {metric for query in dashboard_queries(dashboard) for metric in METRIC.findall(query)}
    assert named <= EXPORTED, sorted(named - EXPORTED)
    # And the dashboard shows every one of them (histograms by their buckets).
    shown = EXPORTED - {
        "tessera_request_duration_seconds_sum",
        "tessera_request_duration_seconds_count",
        "tessera_event_store_append_seconds_sum",
        "tessera_event_store_append_seconds_count",
    }
    assert shown <= named, sorted(shown - named)


def test_every_dashboard_query_is_valid_promql(
    promtool: str, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    queries = dashboard_queries(dashboard)
    assert queries
    # promtool has no "check expression"; as recording rules, each query is parsed in full.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": as_plain_promql(query)}
                    for n, query in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    run_promtool(promtool, "check", "rules", str(path))


def test_the_dashboard_panels_use_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (prometheus,) = datasource["datasources"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": prometheus["uid"]}
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    assert dashboard["uid"]


# --- Dockerfile --------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions, one logical line each (as Docker reads them), by stage."""
    instructions: list[str] = []
    pending = ""
    for line in (OPS / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        instructions.append(re.sub(r"\s+", " ", pending + stripped))
        pending = ""
    stages: list[list[str]] = []
    for instruction in instructions:
        if instruction.startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_the_final_image_runs_tessera_as_a_user_without_build_tools() -> None:
    builder, final = dockerfile_stages()
    assert builder[0].endswith("AS builder")
    assert any("pip install ." in step for step in builder if step.startswith("RUN "))
    for step in builder:
        if step.startswith("COPY "):
            for source in step.split()[1:-1]:
                assert (ROOT / source).exists(), source
    users = [step.split()[1] for step in final if step.startswith("USER ")]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    text = " ".join(final).lower()
    for tool in ("gcc", "build-essential", "g++", "clang", "libffi-dev"):
        assert tool not in text, tool
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert 'ENTRYPOINT ["tessera"]' in final
    assert 'CMD ["serve"]' in final
    assert "EXPOSE 8000" in final
    env = " ".join(step for step in final if step.startswith("ENV "))
    assert "HOST=0.0.0.0" in env
    assert "DATA_DIR=/var/lib/tessera" in env
    (healthcheck,) = (step for step in final if step.startswith("HEALTHCHECK "))
    assert "/health/live" in healthcheck
    assert "urllib" in healthcheck


def test_every_metric_the_ops_files_name_is_in_a_live_metrics_exposition(
    sqlite_settings: Any,
) -> None:
    """EXPORTED above is checked against the service itself, not just against the files."""
    from litestar.testing import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from interfaces.container import build
    from interfaces.http.app import create_app

    container = build(sqlite_settings)
    try:
        with TestClient(create_app(container, run_background=False)) as client:
            client.get("/health/live")
            container.projection_lag()
            text = client.get("/metrics").text
    finally:
        container.close()
    samples = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert samples >= EXPORTED, sorted(EXPORTED - samples)
    lagging = {
        sample.labels["projection"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tessera_projection_lag_seconds"
    }
    assert lagging == {
        "mail_outbox",
        "webhook_outbox",
        "accounts",
        "sessions",
        "audit_log",
        "erasures",
    }
