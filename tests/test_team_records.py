"""The team's record of deploys in the cluster (`manual-deploy-records-<app>` ConfigMaps) on the bed: real helm,
registry and git; the emulated apiserver, which checks resourceVersion preconditions as a real one does."""

from __future__ import annotations

import json
import shutil

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
