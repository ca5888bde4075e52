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


def test_a_rollback_whose_pods_do_not_run_the_old_image_fails_and_goes_back(cli, bed, monkeypatch):
    """The final check of the one release path also guards a rollback: every new pod must run the image
    of the revision rolled back to. The emulator has no mutating admission (an image policy that rewrites
    images), so a wrapper around helm's rollback plays one: right after the real rollback, it changes the
    Deployment's image as such a policy would."""
    from manual_deploy.helm import HelmDriver

    for tag in ("fc1", "fc2"):
        publish(bed, "ingest-core", tag)
        assert apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes").code == 0
    intruder = f"{bed.registry.host}/ebi-ait/ingest-core:intruder"
    real_rollback = HelmDriver.rollback
    calls = []

    async def rollback_then_rewrite(self, release, namespace, number, *, timeout_s):
        await real_rollback(self, release, namespace, number, timeout_s=timeout_s)
        calls.append(number)
        if len(calls) == 1:
            apps_api, _, _ = bed.apps_api()
            patch = {"spec": {"template": {"spec": {"containers": [{"name": "ingest-core", "image": intruder}]}}}}
            apps_api.patch_namespaced_deployment("ingest-core", NS, patch)

    monkeypatch.setattr(HelmDriver, "rollback", rollback_then_rewrite)

    result = cli("--config", bed.config, "rollback", "--env", "prod", "--app", "ingest-core", "--yes")

    assert result.code == 1, result.stderr
    error = result.stderr.split("error: ", 1)[1]
    assert "pods not running" in error and ":fc1@" in error and f"runs {intruder}" in error, result.stderr
    assert "rolled back to revision 2" in error, result.stderr
    assert calls == [1, 2]  # to revision 1, then back to what ran before
    assert audit.read()[-1]["result"] == "failed" and audit.read()[-1]["command"] == "rollback"
