"""The team's record of deploys in the cluster (`manual-deploy-records-<app>` ConfigMaps) on the bed: real helm,
registry and git; the emulated apiserver, which checks resourceVersion preconditions as a real one does."""

from __future__ import annotations

import getpass
import json
import shutil
import socket

import pytest

from bed import NS, apply, publish
from manual_deploy import audit, deploy_records, record_queue


def cluster_records(bed, app: str) -> list[dict]:
    _, core, _ = bed.apps_api()
    found = core.read_namespaced_config_map(deploy_records.configmap_name(app), NS)
    assert found.metadata.labels == {"app.kubernetes.io/managed-by": "manual-deploy"}
    return json.loads(found.data[deploy_records.DATA_KEY])


def test_a_deploy_leaves_its_complete_record_in_the_cluster(cli, bed, monkeypatch):
    monkeypatch.setenv("QUAY_TOKEN", "quay-secret-token-1234")
    publish(bed, "ingest-core", "rec1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "rec1", "--yes", "--reason", "INC-7 quay-secret-token-1234 upload")
    assert result.code == 0, result.stderr
    [record] = [r for r in cluster_records(bed, "ingest-core") if r.get("image", "").endswith(":rec1") or ":rec1@" in r.get("image", "")]
    local = audit.read()[-1]
    assert record["id"] == local["id"] and record["result"] == "deployed" and record["started"] <= record["at"]
    assert record["reason"] == "INC-7 *** upload"  # a secret the user pasted is not kept for the team
    assert (record["env"], record["app"], record["new_revision"], record["digest"]) == ("prod", "ingest-core", local["new_revision"], local["digest"])
    assert record["user"] and record["host"] and record["timings"]
    assert record_queue.queued("prod") == []


def test_a_record_the_cluster_could_not_take_waits_and_is_pushed_once_by_the_next_command(cli, bed):
    publish(bed, "ingest-core", "rec2")
    _, core, _ = bed.apps_api()
    name = deploy_records.configmap_name("ingest-core")
    before = json.loads(core.read_namespaced_config_map(name, NS).data[deploy_records.DATA_KEY]) if _exists(core, name) else []
    # someone broke the records object by hand: it is reported and left alone; the deploy goes on
    _put_raw(core, name, "not json {")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "rec2", "--yes")
    assert result.code == 0, result.stderr
    assert "left alone" in result.stderr and "waits in this machine's audit log" in result.stderr
    assert core.read_namespaced_config_map(name, NS).data[deploy_records.DATA_KEY] == "not json {"
    [waiting] = record_queue.queued("prod")
    # repaired: the next command pushes it, and a second push changes nothing
    _put_raw(core, name, json.dumps(before))
    status = cli("--config", bed.config, "status", "--env", "prod")
    assert status.code == 0, status.stderr
    after = cluster_records(bed, "ingest-core")
    assert [r["id"] for r in after].count(waiting["id"]) == 1
    assert record_queue.queued("prod") == []


def _exists(core, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core.read_namespaced_config_map(name, NS)
        return True
    except ApiException:
        return False


def _put_raw(core, name: str, text: str) -> None:
    body = {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "manual-deploy"}},
            "data": {deploy_records.DATA_KEY: text}}
    if _exists(core, name):
        core.replace_namespaced_config_map(name, NS, body)
    else:
        core.create_namespaced_config_map(NS, body)


def test_history_from_another_machine_shows_the_teams_records_with_their_ids(cli, bed, tmp_path, monkeypatch):
    """Alice's laptop is gone (its state directory deleted); Bob's history still shows what she deployed and why."""
    publish(bed, "ontology", "rec3")
    done = apply(cli, bed, "--app", "ontology", "--tag", "rec3", "--yes", "--reason", "INC-8 ontology fix")
    assert done.code == 0, done.stderr
    mine = audit.read()[-1]
    shutil.rmtree(tmp_path / "state")
    monkeypatch.setenv("MANUAL_DEPLOY_STATE_DIR", str(tmp_path / "bob-state"))
    seen = cli("--config", bed.config, "-o", "json", "history", "--env", "prod", "--app", "ontology")
    assert seen.code == 0, seen.stderr
    [record] = [r for r in seen.json()["records"] if r["id"] == mine["id"]]
    assert (record["result"], record["reason"], record["user"]) == ("deployed", "INC-8 ontology fix", mine["user"])
    assert "queued" not in record
    text = cli("--config", bed.config, "history", "--env", "prod", "--app", "ontology")
    assert mine["id"][:12] in text.stdout and "INC-8 ontology fix" in text.stdout


def test_status_says_who_rolled_back_and_why_from_the_teams_record(cli, bed, tmp_path, monkeypatch):
    """helm's description of a rollback is only "Rollback to N"; the team's record says who and why, on any machine."""
    for tag in ("rec4", "rec5"):
        publish(bed, "ingest-archiver", tag)
        assert apply(cli, bed, "--app", "ingest-archiver", "--tag", tag, "--yes").code == 0
    back = cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-archiver", "--yes", "--reason", "INC-9 rec5 leaks")
    assert back.code == 0, back.stderr
    monkeypatch.setenv("MANUAL_DEPLOY_STATE_DIR", str(tmp_path / "other-machine"))
    status = cli("--config", bed.config, "-o", "json", "status", "--env", "prod", "--app", "ingest-archiver")
    assert status.code == 0, status.stderr
    row = status.json()["envs"]["prod"]["apps"]["ingest-archiver"]
    assert row["description"].startswith("Rollback to") and row["reason"] == "INC-9 rec5 leaks"
    assert row["deployed_by"] == f"{getpass.getuser()}@{socket.gethostname()}"


def test_doctor_names_a_records_object_edited_into_something_not_ours(cli, bed):
    _, core, _ = bed.apps_api()
    name = deploy_records.configmap_name("ontology")
    _put_raw(core, name, json.dumps({"not": "a list"}))
    result = cli("--config", bed.config, "doctor", "--env", "prod")
    line = next(l for l in result.stdout.splitlines() if l[2:].startswith("records prod"))
    assert line.startswith("! ") and name in line and "left alone" in line
    assert core.read_namespaced_config_map(name, NS).data[deploy_records.DATA_KEY] == json.dumps({"not": "a list"})


def test_status_names_the_undo_of_a_failed_deploy_as_ours_not_a_strangers(cli, bed, tmp_path, monkeypatch):
    """A failed deploy is rolled back by manual-deploy itself; helm calls that revision "Rollback to N". The team's
    record says which revision the undo made live, so status on any machine says who and why, not "not manual-deploy"."""
    publish(bed, "ingest-core", "rec6")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "rec6", "--yes").code == 0
    publish(bed, "ingest-core", "rec7")
    bed.kube.add_failure("*:rec7*", "CrashLoopBackOff")
    failed = apply(cli, bed, "--app", "ingest-core", "--tag", "rec7", "--yes", "--grace", "3s", "--reason", "INC-10 try rec7")
    assert failed.code == 1, failed.stderr
    undone = audit.read()[-1]["undone_to"]
    monkeypatch.setenv("MANUAL_DEPLOY_STATE_DIR", str(tmp_path / "other-machine"))
    row = cli("--config", bed.config, "-o", "json", "status", "--env", "prod", "--app", "ingest-core").json()["envs"]["prod"]["apps"]["ingest-core"]
    assert row["revision"] == undone and row["description"].startswith("Rollback to")
    assert row["deployed_by"] == f"{getpass.getuser()}@{socket.gethostname()}"
    assert row["reason"] == "undo of a failed apply: INC-10 try rec7"


def test_writers_at_the_same_moment_lose_nothing_and_the_newest_200_are_kept(bed):
    """Four writers, 55 records each, at once on one app's ConfigMap: every write is conditional on the
    resourceVersion it read (the emulator answers a stale one with 409, as an apiserver does), so none is lost;
    past KEEP the oldest go."""
    from concurrent.futures import ThreadPoolExecutor

    _, core, _ = bed.apps_api()
    kube = core.api_client
    app = "ingest-exporter"

    def writer(n: int) -> None:
        for i in range(55):
            deploy_records.upsert(kube, NS, {"id": f"w{n}-{i:03d}", "at": f"2026-01-01T00:{i:02d}:{n:02d}+00:00", "app": app,
                                             "env": "prod", "result": "deployed"})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(writer, range(4)))
    kept = cluster_records(bed, app)
    assert len(kept) == deploy_records.KEEP == 200
    written = sorted((f"2026-01-01T00:{i:02d}:{n:02d}+00:00", f"w{n}-{i:03d}") for n in range(4) for i in range(55))
    assert [r["id"] for r in kept] == [rid for _, rid in written[-200:]]  # oldest first, the 20 oldest gone


def test_a_records_object_deleted_between_read_and_write_is_written_again(bed):
    """Deleting a broken records ConfigMap is what doctor advises; a writer that read it just before gets 404 on
    its conditional PUT (the apiserver never creates on update), reads again and creates it."""
    _, core, _ = bed.apps_api()
    kube, app = core.api_client, "ontology"
    name = deploy_records.configmap_name(app)
    deploy_records.upsert(kube, NS, {"id": "first", "at": "2026-01-01T00:00:00+00:00", "app": app, "result": "deployed"})
    deleted = []

    def change(book: deploy_records.RecordBook) -> bool:
        if not deleted:
            core.delete_namespaced_config_map(name, NS)
            deleted.append(book.resource_version)
        book.records.append({"id": "second", "at": "2026-01-02T00:00:00+00:00", "app": app, "result": "deployed"})
        return True

    deploy_records.update(kube, NS, app, change)
    assert deleted and [r["id"] for r in cluster_records(bed, app)] == ["second"]


def test_a_records_write_into_a_namespace_that_is_not_there_fails_at_once(bed):
    """A 404 on the create is the namespace missing (the apiserver's "namespaces … not found"), not a colleague's
    delete: it is said as it is, after one write, not retried for seconds and then blamed on other writers."""
    from manual_deploy.readiness.api import ReadError

    _, core, _ = bed.apps_api()
    calls = []

    def change(book: deploy_records.RecordBook) -> bool:
        calls.append(book.resource_version)
        book.records.append({"id": "lost", "at": "2026-01-01T00:00:00+00:00", "app": "ontology", "result": "deployed"})
        return True

    with pytest.raises(ReadError) as failed:
        deploy_records.update(core.api_client, "no-such-environment", "ontology", change)
    assert failed.value.status == 404 and calls == [None]
