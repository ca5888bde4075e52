"""`manual-deploy rollback` on the bed."""

from __future__ import annotations

from bed import NS, apply, history, publish
from manual_deploy import audit


def _image(bed):
    apps_api, _, _ = bed.apps_api()
    return apps_api.read_namespaced_deployment("ingest-core", NS).spec.template.spec.containers[0].image


def test_rollback_restores_the_previous_image_and_records_it(cli, bed):
    for tag in ("rb1", "rb2"):
        publish(bed, "ingest-core", tag)
        assert apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes").code == 0
    assert ":rb2@" in _image(bed)

    result = cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-core", "--yes", "--reason", "rb2 broke uploads")

    assert result.code == 0, result.stderr
    assert "revision 2" in result.stderr and "→ revision 1" in result.stderr and ":rb1@" in result.stderr
    assert ":rb1@" in _image(bed)
    assert [r["status"] for r in history(bed, "ingest-core")] == ["superseded", "superseded", "deployed"]
    record = audit.read()[-1]
    assert record["command"] == "rollback" and record["result"] == "rolled back" and record["to_revision"] == 1
    assert record["reason"] == "rb2 broke uploads"


def test_rollback_to_an_explicit_revision_and_bad_revisions(cli, bed):
    for tag in ("rv1", "rv2", "rv3"):
        publish(bed, "ingest-core", tag)
        assert apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes").code == 0
    assert cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-core", "--revision", "1", "--yes").code == 0
    assert ":rv1@" in _image(bed)
    missing = cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-core", "--revision", "99", "--yes")
    assert missing.code == 3 and "revision 99 is not in the release history" in missing.stderr


def test_nothing_to_roll_back(cli, bed):
    result = cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-core", "--yes")
    assert result.code == 3 and "has no release" in result.stderr
    publish(bed, "ingest-core", "only1")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "only1", "--yes").code == 0
    result = cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-core", "--yes")
    assert result.code == 3 and "no earlier successfully deployed revision" in result.stderr
