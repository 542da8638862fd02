"""ops/ for the ELK stack (compose profile `elk`): what can be checked without Elasticsearch,
Kibana or Filebeat. The files are parsed, and every field they name is held to a log captured
here: the ECS lines of a flow through the real app and the ECS trail export of the same store.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from application.views import Client
from interfaces import ecs_trail
from interfaces.container import Container
from interfaces.ecs import CATEGORIES
from interfaces.ecs_logs import EcsFormatter
from interfaces.http.problems import DOMAIN_PROBLEMS, HTTP_CODES
from tests.application.test_use_cases import PASSWORD
from tests.conftest import run_projections
from tests.ecs_schema import FIELD_TYPES, OBJECTS, flatten
from tests.http.test_api import bearer, log_in, register_and_verify
from tests.test_ops_files import load_yaml

OPS = Path(__file__).resolve().parent.parent / "ops"
ELK = OPS / "elk"
ELK_SERVICES = {"elasticsearch", "kibana", "filebeat", "elk-setup"}
KQL_FIELD = re.compile(r"([@A-Za-z_][\w.@]*)\s*:")


@pytest.fixture(scope="module")
def filebeat() -> dict[str, Any]:
    document = load_yaml(ELK / "filebeat.yml")
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    document = json.loads((ELK / "index-template.json").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def saved_objects() -> dict[str, dict[str, Any]]:
    lines = (ELK / "kibana" / "tessera.ndjson").read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    return {obj["id"]: obj for obj in objects}


@pytest.fixture
def captured(client: TestClient[Any], container: Container, spans: Any) -> Iterator[dict[str, Any]]:
    """Field name -> a value, from every ECS line a flow wrote and every trail document."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EcsFormatter("tessera"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        register_and_verify(client, container)
        client.post("/api/auth/login", json={"login": "ada", "password": "wrong password!"})
        tokens = log_in(client)
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        client.get("/api/users/me", headers=bearer(log_in(client)))
        # The test client's peer is "testclient", no IP address: a sign-in from a real one.
        container.login.log_in("ada", PASSWORD, Client(ip="203.0.113.7", user_agent="curl/8"))
        try:
            raise RuntimeError("a failure, logged with its traceback")
        except RuntimeError:
            logging.getLogger("tessera").exception("an error line")
        run_projections(container)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    fields: dict[str, Any] = {}
    for line in out.getvalue().splitlines():
        fields.update(flatten(json.loads(line)))
    for line in container.history.export():
        fields.update(flatten(json.loads(ecs_trail.document(line))))
    yield fields


def mapped(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Field name -> Elasticsearch type, from a mapping's properties."""
    found: dict[str, str] = {}
    for name, mapping in properties.items():
        if "properties" in mapping:
            found.update(mapped(mapping["properties"], f"{prefix}{name}."))
        else:
            found[f"{prefix}{name}"] = mapping["type"]
    return found


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert isinstance(source, dict)
    return source


def kql(obj: dict[str, Any]) -> str:
    query = search_source(obj)["query"]
    assert query["language"] == "kuery"
    return str(query["query"])


def named_fields(obj: dict[str, Any]) -> set[str]:
    """Every field a saved object names: in its query, columns, sort and aggregations."""
    names = set(KQL_FIELD.findall(kql(obj)))
    attributes = obj["attributes"]
    names |= set(attributes.get("columns", []))
    names |= {field for field, _order in attributes.get("sort", [])}
    if "visState" in attributes:
        for agg in json.loads(attributes["visState"])["aggs"]:
            if "field" in agg["params"]:
                names.add(agg["params"]["field"])
    return names


def problem_codes() -> set[str]:
    """Every `code` the service can answer with."""
    source = (OPS.parent / "interfaces" / "http" / "problems.py").read_text(encoding="utf-8")
    codes = {row[1] for row in DOMAIN_PROBLEMS.values()} | set(HTTP_CODES.values())
    return codes | set(re.findall(r'problem\(\s*\d+,\s*"([a-z_]+)"', source))


# --- the index template ------------------------------------------------------------------------

sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


@sqlite_only
def test_the_index_template_maps_exactly_the_fields_the_service_writes(
    template: dict[str, Any], captured: dict[str, Any]
) -> None:
    fields = mapped(template["template"]["mappings"]["properties"])
    assert set(fields) == set(captured)
    for name, kind in fields.items():
        if name in FIELD_TYPES:
            assert kind == FIELD_TYPES[name], name  # as ECS's reference types it
        elif name in OBJECTS:
            assert kind == "flattened", name
        else:
            assert name.startswith("tessera."), name


def test_the_index_template_is_a_data_stream_for_both_datasets(
    template: dict[str, Any], filebeat: dict[str, Any]
) -> None:
    assert template["data_stream"] == {}
    assert template["priority"] > 100  # above Elasticsearch's built-in logs-*-*
    assert template["template"]["mappings"]["date_detection"] is False
    indices = [source["index"] for source in filebeat["filebeat.inputs"]]
    assert indices == ["logs-tessera.log-default", f"logs-{ecs_trail.DATASET}-default"]
    for index in indices:
        assert any(fnmatch.fnmatch(index, p) for p in template["index_patterns"]), index


# --- Filebeat -------------------------------------------------------------------------------


def test_filebeat_reads_the_log_file_and_the_trail_exports_as_ecs(
    filebeat: dict[str, Any], compose: dict[str, Any]
) -> None:
    services = compose["services"]
    log_file = Path(services["api"]["environment"]["LOG_FILE"])
    logs, audit = filebeat["filebeat.inputs"]
    assert logs["type"] == audit["type"] == "filestream"
    assert any(fnmatch.fnmatch(str(log_file), path) for path in logs["paths"])
    assert not fnmatch.fnmatch(
        str(log_file.parent / "audit" / "x.ndjson.partial"), audit["paths"][0]
    )
    for source in (logs, audit):
        (parser,) = source["parsers"]
        assert parser["ndjson"]["target"] == ""
        assert parser["ndjson"]["expand_keys"] is True  # "log.level" becomes log.level
        assert parser["ndjson"]["overwrite_keys"] is True
    (fingerprint,) = audit["processors"]
    assert fingerprint["fingerprint"]["fields"] == ["event.sequence"]
    assert fingerprint["fingerprint"]["target_field"] == "@metadata._id"
    assert filebeat["setup.template.enabled"] is False
    assert "${ELASTICSEARCH_HOSTS" in filebeat["output.elasticsearch"]["hosts"][0]


@sqlite_only
def test_the_fields_filebeat_and_kibana_name_are_fields_the_service_writes(
    filebeat: dict[str, Any], saved_objects: dict[str, dict[str, Any]], captured: dict[str, Any]
) -> None:
    named = {"@timestamp"}  # the data view's time field
    for source in filebeat["filebeat.inputs"]:
        for processor in source.get("processors", []):
            named |= set(processor["fingerprint"]["fields"])
    for obj in saved_objects.values():
        if obj["type"] in {"search", "visualization"}:
            named |= named_fields(obj)
    assert named <= set(captured), named - set(captured)
    assert captured["event.dataset"] in {"tessera.log", ecs_trail.DATASET}


# --- Kibana saved objects ----------------------------------------------------------------------


def test_every_saved_object_reference_resolves(saved_objects: dict[str, dict[str, Any]]) -> None:
    (view,) = [obj for obj in saved_objects.values() if obj["type"] == "index-pattern"]
    assert view["attributes"]["timeFieldName"] == "@timestamp"
    assert fnmatch.fnmatch("logs-tessera.log-default", view["attributes"]["title"])
    for obj in saved_objects.values():
        for reference in obj["references"]:
            target = saved_objects[reference["id"]]
            assert target["type"] == reference["type"], reference
        if obj["type"] in {"search", "visualization"}:
            assert search_source(obj)["indexRefName"] in {r["name"] for r in obj["references"]}


def test_a_saved_search_per_problem_code(saved_objects: dict[str, dict[str, Any]]) -> None:
    searched = {
        match.group(1)
        for obj in saved_objects.values()
        if obj["type"] == "search" and (match := re.search(r'event\.reason:"([a-z_]+)"$', kql(obj)))
    }
    assert searched == problem_codes()


@sqlite_only
def test_the_dashboard_shows_sign_ins_lockouts_resets_mfa_and_token_reuse(
    saved_objects: dict[str, dict[str, Any]], client: TestClient[Any]
) -> None:
    dashboard = saved_objects["tessera-security"]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dashboard["references"]}
    shown = [saved_objects[refs[panel["panelRefName"]]["id"]] for panel in panels]
    titles = " | ".join(obj["attributes"]["title"] for obj in shown)
    for topic in (
        "Sign-ins by outcome",
        "Lockouts",
        "Password resets",
        "MFA",
        "Refresh-token reuse",
    ):
        assert topic in titles
    queries = " ".join(kql(obj) for obj in shown)
    actions = set(re.findall(r'"([A-Z][A-Za-z]+)"', queries))
    assert actions and actions <= set(CATEGORIES)  # real event class names
    routes = {route.path for route in client.app.routes}
    paths = set(re.findall(r'"(/api/[^"]*)"', queries))
    assert paths and paths <= routes
    reasons = set(re.findall(r'"([a-z]+_[a-z_]+)"', queries))
    assert reasons <= problem_codes()


# --- compose and the setup script ---------------------------------------------------------------


def test_the_elk_profile_runs_elasticsearch_kibana_filebeat_and_the_setup(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert (name in ELK_SERVICES) == (service.get("profiles") == ["elk"]), name
    filebeat = services["filebeat"]
    assert "tessera-logs:/var/log/tessera:ro" in filebeat["volumes"]
    assert "./elk/filebeat.yml:/usr/share/filebeat/filebeat.yml:ro" in filebeat["volumes"]
    assert filebeat["depends_on"]["elk-setup"]["condition"] == "service_completed_successfully"
    for name in ("api", "projector", "worker"):
        assert "tessera-logs:/var/log/tessera" in services[name]["volumes"]
        assert services[name]["environment"]["LOG_FILE"].startswith("/var/log/tessera/")
    for name in ("elasticsearch", "kibana"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])
    assert services["elk-setup"]["entrypoint"] == ["sh", "/elk/setup.sh"]
    assert "./elk:/elk:ro" in services["elk-setup"]["volumes"]
    dockerfile = (OPS / "Dockerfile").read_text(encoding="utf-8")
    assert "chown -R tessera:tessera /var/log/tessera" in dockerfile  # a fresh volume's owner


def test_the_setup_script_parses_and_loads_the_files_of_this_folder() -> None:
    script = ELK / "setup.sh"
    subprocess.run(["sh", "-n", str(script)], check=True, timeout=10)
    text = script.read_text(encoding="utf-8")
    loaded = re.findall(r'@\$here/([\w./-]+)"', text)
    assert sorted(loaded) == ["index-template.json", "kibana/tessera.ndjson"]
    assert "/_index_template/tessera" in text
    assert "/api/saved_objects/_import?overwrite=true" in text
