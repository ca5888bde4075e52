"""`manual-deploy promote` on the bed: the exact digest from staging to prod, optionally retagged."""

from __future__ import annotations

import re

import requests

from bed import NS, apply, history, publish, writes
from manual_deploy import audit
from manual_deploy.registry import MANIFEST_ACCEPT


def _deployed_image(bed, namespace=NS, context="ingest-eks-prod"):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(bed.kubeconfig), context=context, persist_config=False)
    deployment = client.AppsV1Api(api).read_namespaced_deployment("ingest-exporter", namespace)
    return deployment.spec.template.spec.containers[0].image, deployment.spec.replicas


STAGING = "staging-environment"


def _apps_api(bed, context):
    from kubernetes import client, config

    return client.AppsV1Api(config.new_client_from_config(config_file=str(bed.kubeconfig), context=context, persist_config=False))


def _writes_in(bed, namespace):
    return [r for r in writes(bed) if f"/namespaces/{namespace}/" in r["path"]]


def test_promote_refuses_when_the_tag_moved_off_the_running_digest(cli, bed):
    publish(bed, "ingest-exporter", "prom1")
    assert apply(cli, bed, "--app", "ingest-exporter", "--tag", "prom1", "--yes", env="staging").code == 0
    staging_image, staging_replicas = _deployed_image(bed, "staging-environment", "ingest-eks-staging")
    assert staging_replicas == 1
    publish(bed, "ingest-exporter", "prom1")  # the tag moves on: promote must still ship the digest staging runs
    result = cli("--config", bed.config, "promote", "--from", "staging", "--to", "prod", "--app", "ingest-exporter", "--yes")
    assert result.code == 3, result.stderr  # the tag moved away from the digest staging runs: refuse, don't guess
    assert "now points at" in result.stderr


def test_promote_deploys_what_staging_runs(cli, bed):
    digest = publish(bed, "ingest-exporter", "prom2")
    assert apply(cli, bed, "--app", "ingest-exporter", "--tag", "prom2", "--yes", env="staging").code == 0

    result = cli("--config", bed.config, "promote", "--from", "staging", "--to", "prod", "--app", "ingest-exporter", "--yes", "-o", "json")

    assert result.code == 0, result.stderr
    image, replicas = _deployed_image(bed)
    assert image.endswith(f":prom2@{digest}")
    assert replicas == 10  # prod's own replica count from the config repo
    assert result.json()["promoted_from"] == "staging"
    assert audit.read()[-1]["command"] == "promote"


def test_promote_refuses_when_the_source_is_not_deployed(cli, bed):
    publish(bed, "ingest-exporter", "prom3")
    missing = cli("--config", bed.config, "promote", "--from", "staging", "--to", "prod", "--app", "ingest-exporter", "--yes")
    assert missing.code == 3, missing.stderr
    assert "ingest-exporter in staging is not deployed: only a healthy release can be promoted" in missing.stderr
    bed.kube.add_failure("*:prom3*", "ImagePullBackOff")
    failed = apply(cli, bed, "--app", "ingest-exporter", "--tag", "prom3", "--yes", "--grace", "2s", env="staging")
    assert failed.code == 1, failed.stderr  # a first install that fails is removed again: nothing to promote
    again = cli("--config", bed.config, "promote", "--from", "staging", "--to", "prod", "--app", "ingest-exporter", "--yes")
    assert again.code == 3, again.stderr
    assert "ingest-exporter in staging is not deployed" in again.stderr
    assert history(bed, "ingest-exporter") == []  # prod-environment


def test_promote_refuses_when_the_source_is_not_healthy(cli, bed):
    """helm says `deployed`, but the Deployment was changed behind helm's back and does not roll out."""
    publish(bed, "ingest-exporter", "prom4")
    assert apply(cli, bed, "--app", "ingest-exporter", "--tag", "prom4", "--yes", env="staging").code == 0
    bed.kube.add_failure("*:broken*", "ImagePullBackOff")
    apps_api = _apps_api(bed, "ingest-eks-staging")
    broken = f"{bed.registry.host}/ebi-ait/ingest-exporter:broken1"
    apps_api.patch_namespaced_deployment("ingest-exporter", STAGING, {"spec": {"template": {"spec": {"containers": [
        {"name": "ingest-exporter", "image": broken}]}}}})
    assert [r["status"] for r in history(bed, "ingest-exporter", STAGING, "ingest-eks-staging")] == ["deployed"]
    assert _writes_in(bed, STAGING)  # the filter sees the staging deploy's writes
    prod_writes = len(_writes_in(bed, NS))

    result = cli("--config", bed.config, "promote", "--from", "staging", "--to", "prod", "--app", "ingest-exporter", "--yes")

    assert result.code == 3, result.stderr
    assert "ingest-exporter in staging is not healthy: " in result.stderr, result.stderr
    assert "not deployed" not in result.stderr
    assert history(bed, "ingest-exporter") == []  # nothing in prod-environment
    assert len(_writes_in(bed, NS)) == prod_writes == 0
    assert apps_api.read_namespaced_deployment("ingest-exporter", STAGING).spec.template.spec.containers[0].image == broken


def test_retag_writes_the_release_tag_on_the_same_digest(cli, bed):
    digest = publish(bed, "ingest-exporter", "0ec3e066")
    assert apply(cli, bed, "--app", "ingest-exporter", "--tag", "0ec3e066", "--yes", env="staging").code == 0

    result = cli("--config", bed.config, "promote", "--from", "staging", "--to", "prod", "--app", "ingest-exporter", "--yes", "--retag")

    assert result.code == 0, result.stderr
    tags = requests.get(f"{bed.registry.url}/v2/ebi-ait/ingest-exporter/tags/list", timeout=10).json()["tags"]
    new = [t for t in tags if re.fullmatch(r"prod-0ec3e066-\d{2}-\d{2}-\d{4}\.\d+", t)]
    assert len(new) == 1
    head = requests.head(f"{bed.registry.url}/v2/ebi-ait/ingest-exporter/manifests/{new[0]}", headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert head.headers["Docker-Content-Digest"] == digest
    image, _ = _deployed_image(bed)
    assert image == f"{bed.registry.host}/ebi-ait/ingest-exporter:{new[0]}@{digest}"
    record = audit.read()[-1]  # GitLab knows the git tag the image was built from, not the registry-only retag
    assert (record["command"], record["ref"], record["gitlab_project"]) == ("promote", "0ec3e066", "hca/ingest-exporter")


def test_same_env_twice_is_a_usage_error(cli, bed):
    result = cli("--config", bed.config, "promote", "--from", "prod", "--to", "prod", "--app", "ingest-exporter", "--yes")
    assert result.code == 2
