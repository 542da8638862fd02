"""End to end: `tessera audit export --format ecs` as a real process: valid ECS documents on the
very hash chain of the JSON Lines export, verified by `tessera audit verify`, also as a copy a
shipper added its own fields to."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from interfaces import audit_cli
from tests.e2e.test_audit_cli import Store, store  # noqa: F401 (the fixture)
from tests.ecs_schema import TRAIL_REQUIRED, flatten, problems


def verify(path: Path, documents: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> str:
    """`tessera audit verify`'s own function, in this process: its exit code and first line."""
    path.write_text("".join(json.dumps(d) + "\n" for d in documents), encoding="utf-8")
    code = audit_cli.verify(str(path))
    return f"{code} {capsys.readouterr().out}"


def test_the_ecs_export_is_valid_ecs_on_the_jsonl_chain(store: Store, tmp_path: Path) -> None:  # noqa: F811
    jsonl = [json.loads(line) for line in store.audit("export", check=True).stdout.splitlines()]
    exported = store.audit("export", "--format", "ecs", check=True)
    assert exported.stderr == ""
    documents = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(documents) == len(jsonl) >= 6
    for line, document in zip(jsonl, documents, strict=True):
        assert problems(document, TRAIL_REQUIRED) == [], document
        flat = flatten(document)
        assert flat["event.kind"] == "event"
        assert flat["event.sequence"] == line["position"]
        assert flat["event.action"] == line["type"]
        assert flat["event.hash"] == line["hash"]
        assert flat["@timestamp"] == line["time"]
        assert flat.get("user.id") == line["account_id"]
    by_action = {document["event"]["action"]: flatten(document) for document in documents}
    assert by_action["LoginFailed"]["event.outcome"] == "failure"
    assert by_action["LoginFailed"]["event.category"] == ["authentication"]
    assert by_action["SessionStarted"]["client.ip"] == "203.0.113.7"
    assert by_action["SessionStarted"]["user_agent.original"] == "curl/8"
    assert by_action["ProfileUpdated"]["tessera.details"] == {"display_name": "Ada Lovelace"}
    for secret in store.secrets:
        assert secret not in exported.stdout

    output = tmp_path / "trail.ecs.ndjson"
    store.audit("export", "--format", "ecs", "--output", str(output), check=True)
    assert output.read_text(encoding="utf-8") == exported.stdout
    checked = store.audit("verify", str(output))
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.splitlines() == [
        f"ok: {len(documents)} lines",
        f"last hash: {jsonl[-1]['hash']}",  # the JSON Lines export's own last hash
    ]


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_a_copy_fetched_back_from_elasticsearch_verifies_and_an_edit_is_found(
    store: Store,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exported = store.audit("export", "--format", "ecs", check=True).stdout.splitlines()
    shipped = []
    for line in exported:
        document = json.loads(line)
        # What Filebeat adds, in another key order, as Elasticsearch's _source returns it.
        document.update(
            agent={"type": "filebeat", "version": "8.15.0"},
            host={"name": "ops-1"},
            log={"file": {"path": "/var/log/tessera/audit/trail.ndjson"}, "offset": 0},
            data_stream={"type": "logs", "dataset": "tessera.audit", "namespace": "default"},
        )
        keys = list(document)
        random.Random(0).shuffle(keys)
        shipped.append({key: document[key] for key in keys})
    assert verify(tmp_path / "copy", shipped, capsys).startswith(f"0 ok: {len(shipped)} lines")

    edits = {
        "user.id": lambda d: d.update(user={"id": "00000000-0000-0000-0000-000000000000"}),
        "event.outcome": lambda d: d["event"].update(outcome="failure"),
        "client.ip": lambda d: d.update(client={"address": "203.0.113.7", "ip": "198.51.100.1"}),
        "event.sequence": lambda d: d["event"].update(sequence=d["event"]["sequence"] + 100),
        "tessera.details": lambda d: d["tessera"].update(details={"display_name": "Eve"}),
    }
    started = next(i for i, d in enumerate(shipped) if d["event"]["action"] == "SessionStarted")
    for field, edit in edits.items():
        copy = json.loads(json.dumps(shipped))
        edit(copy[started])
        refused = verify(tmp_path / "edited", copy, capsys)
        assert refused.startswith(f"1 bad line {started + 1}: "), (field, refused)

    reordered = shipped[:1] + shipped[2:3] + shipped[1:2] + shipped[3:]
    assert verify(tmp_path / "reordered", reordered, capsys).startswith("1 bad line 2: ")
