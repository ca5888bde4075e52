"""`manual-deploy history`: the team's records next to helm's history, on the bed (helm 3)."""

from __future__ import annotations

from bed import KUBE_TOKEN, apply, publish


def _history(cli, bed, *args):
    return cli("--config", bed.config, "history", *args)


def test_audit_and_helm_history_side_by_side(cli, bed):
    publish(bed, "ingest-core", "h1")
    publish(bed, "ontology", "h1")
    ok = apply(cli, bed, "--app", "ingest-core", "--app", "ontology", "--tag", "h1", "--yes", "--reason", "INC-9 first try")
    assert ok.code == 0, ok.stderr
    publish(bed, "ingest-core", "h2")
    bed.kube.add_failure("*:h2*", "CrashLoopBackOff")
    failed = apply(cli, bed, "--app", "ingest-core", "--tag", "h2", "--yes", "--grace", "3s", "--reason", "INC-9 second try")
    assert failed.code == 1, failed.stderr

    data = _history(cli, bed, "--env", "prod", "--app", "ingest-core", "-o", "json").json()
    assert set(data) == {"records", "helm"}
    assert [(r["app"], r["result"], r["reason"]) for r in data["records"]] == [
        ("ingest-core", "deployed", "INC-9 first try"), ("ingest-core", "failed", "INC-9 second try")]
    assert data["records"][0]["new_revision"] == 1 and data["records"][1]["old_revision"] == 1
    helm = data["helm"]
    assert [r["revision"] for r in helm] == [1, 2, 3] and helm[-1]["status"] == "deployed"
    assert helm[0]["reason"] == "INC-9 first try" and ":h1@" in helm[0]["image"] and helm[0]["deployed_by"]
    assert helm[1]["status"] == "failed" and helm[1]["description"]  # helm replaces a failed revision's description
    assert helm[2]["deployed_by"] is None and helm[2]["description"].lower().startswith("rollback")
    assert helm[0]["updated"].endswith("Z")

    text = _history(cli, bed, "--env", "prod", "--app", "ingest-core")
    assert text.code == 0, text.stderr
    audit_part, _, helm_part = text.stdout.partition("helm history of ingest-core in prod")
    assert "deployed" in audit_part and "failed" in audit_part and "CrashLoopBackOff" in audit_part
    assert "- → 1" in audit_part and "INC-9 second try" in audit_part and "ontology" not in audit_part
    assert "superseded" in helm_part and "failed" in helm_part and "Rollback to 1" in helm_part

    everything = _history(cli, bed, "-o", "json").json()
    assert [r["app"] for r in everything["records"]] == ["ingest-core", "ontology", "ingest-core"] or \
        [r["app"] for r in everything["records"]] == ["ontology", "ingest-core", "ingest-core"]
    assert everything["helm"] is None
    only_ontology = _history(cli, bed, "--app", "ontology", "-o", "json").json()
    assert [(r["app"], r["result"]) for r in only_ontology["records"]] == [("ontology", "deployed")]
    last = _history(cli, bed, "--limit", "1", "-o", "json").json()
    assert [(r["app"], r["result"]) for r in last["records"]] == [("ingest-core", "failed")]

    bed.kube.stop()
    offline = _history(cli, bed, "--env", "prod", "--app", "ingest-core")
    assert offline.code == 0, offline.stderr
    assert "helm history not shown" in offline.stderr and "INC-9 second try" in offline.stdout
    assert "helm history of" not in offline.stdout
    for result in (text, offline):
        assert KUBE_TOKEN not in result.stdout + result.stderr and "Traceback" not in result.stderr


def test_empty_log_is_a_friendly_line(cli, bed):
    empty = _history(cli, bed)
    assert empty.code == 0, empty.stderr
    assert "no deploys recorded" in empty.stdout and "audit.jsonl" in empty.stdout
    assert _history(cli, bed, "-o", "json").json() == {"records": [], "helm": None}
    filtered = _history(cli, bed, "--env", "staging", "--app", "ingest-core")
    assert filtered.code == 0, filtered.stderr
    assert "no deploys recorded for staging/ingest-core" in filtered.stdout and "helm has no release ingest-core in staging" in filtered.stdout
    unknown = _history(cli, bed, "--env", "qa")
    assert unknown.code == 2 and "unknown environment" in unknown.stderr
    assert _history(cli, bed, "--limit", "0").code == 2
