"""The NDJSON export writer on SQLite and PostgreSQL, the worker's job handling, and the CLI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sync_support import response, score, task

from hw_fhir.config import load_settings
from hw_fhir.errors import InvalidInput
from hw_fhir.models import validate
from hw_fhir.services import build_services
from hw_fhir.sync import export as bulk
from hw_fhir.sync.export import ExportAccess, parse_export_request, write_export


def _lines(folder: Path, files: Any) -> list[dict[str, Any]]:
    out = []
    for f in files:
        out.extend(orjson.loads(line) for line in (folder / f.name).read_text().splitlines())
    return out


def test_large_export_is_split_into_files_and_streamed(sql_store: Any, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": score(f"p{i % 7}", i), "request": {"method": "POST", "url": "Observation"}}
            for i in range(2500)
        ],
    }
    sql_store.transaction(bundle)
    request = parse_export_request([("_type", "Observation")])
    result = write_export(sql_store, request, tmp_path, max_lines=1000, batch=300)
    assert [(f.name, f.count) for f in result.output] == [
        ("Observation-1.ndjson", 1000),
        ("Observation-2.ndjson", 1000),
        ("Observation-3.ndjson", 500),
    ]
    resources = _lines(tmp_path, result.output)
    assert len({r["id"] for r in resources}) == 2500
    assert all(validate(r) == r for r in resources[::97])


def test_only_versions_up_to_the_transaction_time_are_exported(
    sql_store: Any, tmp_path: Path
) -> None:
    early = sql_store.create(task("p1")).stored
    before = bulk.barrier(sql_store).instant
    late = sql_store.create(task("p2")).stored
    result = write_export(
        sql_store,
        parse_export_request([("_type", "Task")]),
        tmp_path / "a",
        transaction_time=before,
    )
    assert [r["id"] for r in _lines(tmp_path / "a", result.output)] == [early.id]
    following = write_export(
        sql_store, parse_export_request([("_type", "Task"), ("_since", before)]), tmp_path / "b"
    )
    assert [r["id"] for r in _lines(tmp_path / "b", following.output)] == [late.id]


def test_group_export_lists_deleted_members_data_only(sql_store: Any, tmp_path: Path) -> None:
    sql_store.update(
        {
            "resourceType": "Group",
            "id": "g",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": "Patient/in"}}],
        }
    )
    mine = sql_store.create(response("in")).stored
    theirs = sql_store.create(response("out")).stored
    since = bulk.barrier(sql_store).instant
    sql_store.delete("QuestionnaireResponse", mine.id)
    sql_store.delete("QuestionnaireResponse", theirs.id)
    request = parse_export_request(
        [("_type", "QuestionnaireResponse"), ("_since", since)], level="group", group_id="g"
    )
    result = write_export(sql_store, request, tmp_path)
    deleted = _lines(tmp_path, result.deleted)
    assert [b["entry"][0]["request"]["url"] for b in deleted] == [
        f"QuestionnaireResponse/{mine.id}"
    ]


def test_patient_scopes_reach_only_their_compartment(sql_store: Any, tmp_path: Path) -> None:
    sql_store.create(response("ava"))
    sql_store.create(response("ben"))
    sql_store.create(response("ava", status="in-progress"))
    access = ExportAccess("patient/QuestionnaireResponse.rs", "portal", {"patient": "ava"})
    result = write_export(sql_store, parse_export_request([]), tmp_path, access=access)
    exported = _lines(tmp_path, result.output)
    assert {r["subject"]["reference"] for r in exported} == {"Patient/ava"}
    assert len(exported) == 2
    filtered = ExportAccess("system/QuestionnaireResponse.rs?status=completed", "etl", {})
    result = write_export(sql_store, parse_export_request([]), tmp_path / "f", access=filtered)
    assert {r["status"] for r in _lines(tmp_path / "f", result.output)} == {"completed"}


def test_type_filters_on_several_parameters_are_and_and_repeats_are_or(
    tmp_path: Path, sql_store: Any
) -> None:
    a = sql_store.create(task("x", "completed")).stored
    b = sql_store.create(task("y", "completed")).stored
    c = sql_store.create(task("y", "requested")).stored
    request = parse_export_request(
        [("_typeFilter", "Task?status=completed&patient=Patient/x,Task?status=requested")]
    )
    result = write_export(sql_store, request, tmp_path)
    assert sorted(r["id"] for r in _lines(tmp_path, result.output)) == sorted([a.id, c.id])
    assert b.id not in {r["id"] for r in _lines(tmp_path, result.output)}


@pytest.mark.parametrize(
    "params",
    [
        [("_outputFormat", "application/json")],
        [("_since", "2026-02-30T00:00:00Z")],
        [("_typeFilter", "Task")],
        [("_typeFilter", "Task?status=ok&_include=Task:patient")],
        [("_since", "2026-01-01T00:00:00Z"), ("_since", "2026-01-02T00:00:00Z")],
    ],
)
def test_bad_parameters(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput):
        parse_export_request(params)


def test_patient_level_refuses_types_outside_the_compartment() -> None:
    with pytest.raises(InvalidInput, match="compartment"):
        parse_export_request([("_type", "Questionnaire")], level="patient")


def _services(tmp_path: Path, url: str) -> Any:
    settings = load_settings(
        {}, database_url=url, instance_path=str(tmp_path / "instance"), secret_key="x"
    )
    return build_services(settings)


def test_worker_takes_over_an_export_whose_worker_died(tmp_path: Path, db_url: str) -> None:
    services = _services(tmp_path, db_url)
    try:
        services.store.create(task("p"))
        job = bulk.start_export(services, parse_export_request([("_type", "Task")]), client_id="c")
        stale = bulk._claim(services, time.time(), lease=0.0)  # a worker claims it, then dies
        assert stale.id == job.id
        assert bulk.get_export(services, job.id, "c").status == "in-progress"
        assert bulk.run_pending_exports(services, now=time.time() + 1) == 1
        done = bulk.get_export(services, job.id, "c")
        assert done.status == "completed"
        assert [f["count"] for f in done.manifest["output"]] == [1]
        with pytest.raises(bulk.NotFound):
            bulk.get_export(services, job.id, "someone-else")
    finally:
        services.close()


def test_cli_export(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services = _services(tmp_path, sqlite_url)
    created = [services.store.create(score("p", n)).stored.id for n in range(3)]
    services.store.create(task("p"))
    services.close()
    monkeypatch.setenv("HW_FHIR_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("HW_FHIR_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("HW_FHIR_SECRET_KEY", "x")
    from hw_fhir.cli import cli

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "--type", "Observation", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["output"] == [
        {"type": "Observation", "url": "Observation-1.ndjson", "count": 3}
    ]
    lines = (out / "Observation-1.ndjson").read_text().splitlines()
    assert sorted(orjson.loads(line)["id"] for line in lines) == sorted(created)
    again = CliRunner().invoke(
        cli, ["export", "--since", manifest["transactionTime"], "--out", str(tmp_path / "next")]
    )
    assert again.exit_code == 0, again.output
    assert orjson.loads((tmp_path / "next" / "manifest.json").read_bytes())["output"] == []
    refused = CliRunner().invoke(cli, ["export", "--type", "Nope", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "Nope" in refused.output
    busy = CliRunner().invoke(cli, ["export", "--out", str(out)])
    assert busy.exit_code == 1 and "not empty" in busy.output
    # a folder that cannot be made (under a file): one readable line, no traceback
    (tmp_path / "a-file").write_text("x")
    blocked = CliRunner().invoke(cli, ["export", "--out", str(tmp_path / "a-file" / "out")])
    assert blocked.exit_code == 1, blocked.output
    assert "Cannot write the export into" in blocked.output and "Traceback" not in blocked.output
    assert not isinstance(blocked.exception, OSError)
