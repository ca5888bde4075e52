"""Every chart of the generated ingest-kube-deployment deploys through `manual-deploy apply`, on helm 3 and 4.

The bed (tests/conftest.py) deploys four apps whose charts need nothing but a namespace. Here the config
lists all eleven fixture apps, as configs/ingest.yaml does, so the broker's claim, Secret env, Secret
volume and liveness probe and the UI's readiness probe go through the real helm and the emulated cluster.
What the charts reference is seeded the way the sandbox does it: each chart rendered for prod with the
real helm, read by `manual_deploy_sandbox.prerequisites`, and created with dummy values.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

from bed import NS, history, write_bed_config
from manual_deploy_sandbox import prerequisites
from manual_deploy_sandbox.deployrepo import (
    DEFAULT_REPLICAS,
    FASTQ_VALIDATOR_IMAGES,
    INGEST_APPS,
    claim_of,
    replicas_var,
    secrets_of,
)
from manual_deploy_sandbox.registry import publish_image

TAG = "fx1"
CLAIM, STORAGE_CLASS = claim_of("ingest-broker")
# The apps whose chart hard-codes `replicas: 1` (configs/ingest.yaml: replicas_variable: null).
FIXED_REPLICAS = ("ingest-archiver", "ontology", "ingest-node-accessioner")
TAG_STYLE = ("ontology", "ingest-node-accessioner")  # image_style: tag
ACCESSIONER_REPO = "humancellatlas/ingest-node-accessioner"  # another quay org than the registry namespace


def write_all_apps_config(path: Path, *, registry_url: str, registry_host: str, deploy_url: str, helm: Path) -> Path:
    """The bed's config with every fixture app (settings as in configs/ingest.yaml)."""
    apps = "".join(f"  {app}: {{}}\n" for app in INGEST_APPS if app not in FIXED_REPLICAS) + (
        "  ingest-archiver: {replicas_variable: null}\n"
        "  ontology: {image_style: tag, replicas_variable: null}\n"
        f'  ingest-node-accessioner: {{image_style: tag, image_repo: "{registry_host}/{ACCESSIONER_REPO}", '
        "replicas_variable: null}\n")
    return write_bed_config(path, registry_url=registry_url, deploy_url=deploy_url, helm=helm, apps=apps)


def all_apps(bed, tmp_path: Path, apps: tuple[str, ...] = INGEST_APPS):
    """The bed with a config that lists every fixture app; an image `fx1` published for each of `apps`."""
    config = write_all_apps_config(tmp_path / "all-apps.yaml", registry_url=bed.registry.url,
                                   registry_host=bed.registry.host, deploy_url=bed.deploy_repo.url, helm=bed.helm)
    for app in apps:
        publish_image(bed.registry.url, ACCESSIONER_REPO if app == "ingest-node-accessioner" else f"ebi-ait/{app}", TAG)
    return dataclasses.replace(bed, config=config)


def overrides(app: str) -> dict[str, str]:
    """The --set-string values apply passes for prod (the image value's exact form does not matter here)."""
    replicas = str(DEFAULT_REPLICAS["prod"].get(replicas_var(app), 1))
    return {"environment": "prod", "image": TAG, "replicas": replicas, "gitlab_app": f"hca-{app}",
            "gitlab_env": "prod", "fastqImage": FASTQ_VALIDATOR_IMAGES["prod"]}


def seed_prerequisites(bed) -> tuple[prerequisites.Needs, list[str]]:
    """Render every chart for prod with the bed's helm, read what they reference, create it in the cluster."""
    apps_dir = bed.deploy_repo.work / "apps"
    needs = prerequisites.Needs()
    for app in INGEST_APPS:
        manifests = prerequisites.render(str(bed.helm), apps_dir / app, apps_dir / "prod.yaml", overrides(app), NS)
        prerequisites.read(manifests, NS, needs)
    return needs, prerequisites.seed(bed.kube, needs)


def apply(cli, bed, apps: tuple[str, ...], *extra: str):
    argv = ["--config", bed.config, "apply", "--env", "prod"]
    for app in apps:
        argv += ["--app", app]
    return cli(*argv, "--tag", TAG, "--yes", *extra)


def test_every_fixture_chart_deploys_with_its_prerequisites_seeded(cli, bed, helm, tmp_path):
    bed = all_apps(bed, tmp_path)
    needs, made = seed_prerequisites(bed)
    # What the charts reference is exactly the broker's (the only chart with Secrets and a claim).
    assert needs.storage_classes == {STORAGE_CLASS}
    assert needs.secrets == {NS: secrets_of("ingest-broker")}
    assert sorted(made) == sorted([f"StorageClass {STORAGE_CLASS}",
                                   f"Secret {NS}/api-keys (ingest-service-account-auth-info)",
                                   f"Secret {NS}/aws-keys (exporter-access-key-id, exporter-access-key-secret)"])

    result = apply(cli, bed, INGEST_APPS, "-o", "json")

    assert result.code == 0, result.stderr
    data = result.json()
    assert {r["app"]: r["result"] for r in data["results"]} == {app: "deployed" for app in INGEST_APPS}
    replicas = {r["app"]: r["replicas"] for r in data["results"]}
    apps_api, core, _ = bed.apps_api()
    for app in INGEST_APPS:
        # No replicas value for a chart that hard-codes `replicas: 1`: the JSON says None, the cluster 1.
        assert replicas[app] == (None if app in FIXED_REPLICAS else DEFAULT_REPLICAS["prod"][replicas_var(app)]), app
        live = apps_api.read_namespaced_deployment(app, NS).spec.replicas
        assert live == (1 if app in FIXED_REPLICAS else replicas[app]), app
        assert [r["status"] for r in history(bed, app)] == ["deployed"], app
    assert replicas["ingest-exporter"] == 10

    claim = bed.kube.get("v1/persistentvolumeclaims", NS, CLAIM)
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == STORAGE_CLASS

    assert apps_api.read_namespaced_deployment("ingest-exporter", NS).spec.replicas == 10
    broker = apps_api.read_namespaced_deployment("ingest-broker", NS).spec.template.spec
    assert {v.name for v in broker.volumes} == {"spreadsheets", "service-account"}
    assert broker.containers[0].liveness_probe.http_get.port == "http"
    assert core.list_namespaced_pod(NS, label_selector="app=ingest-broker").items[0].status.phase == "Running"
    ui = apps_api.read_namespaced_deployment("ingest-ui", NS).spec.template.spec.containers[0]
    assert ui.readiness_probe.http_get.path == "/"
    for app in TAG_STYLE:
        image = apps_api.read_namespaced_deployment(app, NS).spec.template.spec.containers[0].image
        assert image.endswith(f":{TAG}"), (app, image)
    accessioner = apps_api.read_namespaced_deployment("ingest-node-accessioner", NS).spec.template.spec
    assert accessioner.containers[0].image == f"quay.io/{ACCESSIONER_REPO}:{TAG}"  # the chart hard-codes its repo

    values = subprocess.run(
        [str(bed.helm), "get", "values", "ingest-validator", "-n", NS, "--kube-context", "ingest-eks-prod",
         "--kubeconfig", str(bed.kubeconfig), "-o", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert values.returncode == 0, values.stderr
    assert json.loads(values.stdout)["fastqImage"] == FASTQ_VALIDATOR_IMAGES["prod"]
    assert FASTQ_VALIDATOR_IMAGES["prod"] in bed.deploy_repo.show("config/environment_prod")


def test_the_broker_without_its_prerequisites_fails_within_grace_naming_the_claim(cli, bed, helm, tmp_path):
    """Nothing seeded: no StorageClass, no Secrets. The claim's ProvisioningFailed is what apply reports: the
    pod waits unscheduled for its unbound claim, so the kubelet never gets as far as the missing Secrets."""
    bed = all_apps(bed, tmp_path, apps=("ingest-broker",))
    assert bed.kube.get("storage.k8s.io/v1/storageclasses", None, STORAGE_CLASS) is None
    assert bed.kube.get("v1/secrets", NS, "aws-keys") is None

    started = time.monotonic()
    result = apply(cli, bed, ("ingest-broker",), "--grace", "3s", "--timeout", "120s")
    took = time.monotonic() - started

    assert result.code == 1, result.stderr
    error = result.stderr.split("error: ", 1)[1]
    assert f"ProvisioningFailed in PersistentVolumeClaim {CLAIM}" in error, result.stderr
    assert f'storageclass "{STORAGE_CLASS}" not found' in error, result.stderr
    assert "next: create the StorageClass the claim names" in result.stderr
    assert "aws-keys" not in result.stderr and "api-keys" not in result.stderr  # not reached: see the docstring
    assert took < 3 + 25, f"took {took:.0f}s, not grace + a few seconds: {result.stderr}"
    assert history(bed, "ingest-broker") == []  # a failed first install is removed
    assert bed.kube.get("v1/persistentvolumeclaims", NS, CLAIM) is None
