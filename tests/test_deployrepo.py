"""The local ingest-kube-deployment fixture: layout, contents, git plumbing, and the charts under real helm."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from manual_deploy_sandbox.deployrepo import (
    AWS_STS_LINE,
    DEFAULT_REPLICAS,
    DEV_ONLY_COMMENT,
    ENVS,
    INGEST_APPS,
    REPLICA_VARS,
    DeployRepo,
    add_history,
    make_deploy_repo,
    claim_of,
    render_files,
    secrets_of,
    service_of,
)
from manual_deploy_sandbox.gitrepos import git

REPO_ROOT = Path(__file__).resolve().parents[1]
T = 30  # seconds: timeout for every subprocess the tests run themselves


def parse_replicas(text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^([A-Z0-9_]+_REPLICAS)=(\d+)\s*$", text, re.M)}


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory) -> DeployRepo:
    """Read-only tests share one repository."""
    return make_deploy_repo(tmp_path_factory.mktemp("deploy"))


@pytest.fixture
def repo(tmp_path) -> DeployRepo:
    return make_deploy_repo(tmp_path)


# ------------------------------------------------------------------------------------------- pure rendering


def test_render_files_layout():
    files = render_files()
    assert "apps/Makefile" in files
    for env in ENVS:
        assert f"apps/{env}.yaml" in files
        assert f"config/environment_{env}" in files
        assert f"config/replicas/environment_{env}" in files
    for app in INGEST_APPS:
        for part in ("Chart.yaml", "values.yaml", "templates/deployment.yaml"):
            assert f"apps/{app}/{part}" in files, (app, part)
        chart = yaml.safe_load(files[f"apps/{app}/Chart.yaml"])
        assert chart["name"] == app
        assert chart["apiVersion"] in ("v1", "v2")
        values = yaml.safe_load(files[f"apps/{app}/values.yaml"])
        assert values["environment"] == values["image"] == "provide_through_set_flag"
    assert yaml.safe_load(files["apps/ingest-core/Chart.yaml"])["version"] == "1.0.0"
    assert yaml.safe_load(files["apps/ingest-core/Chart.yaml"])["apiVersion"] == "v2"
    assert yaml.safe_load(files["apps/ingest-core/values.yaml"])["replicas"] == "provide_through_set_flag"
    for validator in ("ingest-validator", "ingest-graph-validator"):
        assert yaml.safe_load(files[f"apps/{validator}/values.yaml"])["fastqImage"] == "provide_through_set_flag"
    assert "replicas: 1\n" in files["apps/ingest-archiver/templates/deployment.yaml"]
    assert "image: quay.io/ebi-ait/ontology:{{ .Values.image }}" in files["apps/ontology/templates/deployment.yaml"]
    accessioner = files["apps/ingest-node-accessioner/templates/deployment.yaml"]
    assert "image: quay.io/humancellatlas/ingest-node-accessioner:{{ .Values.image }}" in accessioner
    assert "replicas: 1\n" in accessioner
    # Only ingest-broker's chart needs objects an empty cluster lacks (Secrets, a StorageClass); the apps the
    # deploy bed installs (tests/bed.py) need none, and only the broker and the UI have probes.
    for rel, text in files.items():
        if "/templates/" in rel and not rel.startswith("apps/ingest-broker/"):
            for needle in ("secretKeyRef", "configMapKeyRef", "persistentVolumeClaim", "PersistentVolumeClaim",
                           "volumes:", "secretName"):
                assert needle not in text, (rel, needle)
            if not rel.startswith("apps/ingest-ui/"):
                assert "Probe:" not in text, rel
    assert "readinessProbe:" in files["apps/ingest-ui/templates/deployment.yaml"]
    assert [a for a in INGEST_APPS if claim_of(a) or secrets_of(a)] == ["ingest-broker"]
    assert render_files(("ingest-core",)).keys() >= {"apps/ingest-core/Chart.yaml", "config/environment_prod"}
    assert "apps/ontology/Chart.yaml" not in render_files(("ingest-core",))
    with pytest.raises(ValueError):
        render_files(("no-such-app",))


def test_replicas_files():
    files = render_files()
    for env in ENVS:
        text = files[f"config/replicas/environment_{env}"]
        lines = text.splitlines()
        assert lines[:4] == ["#!/usr/bin/env bash", "set -a", "", "# REPLICAS"]
        assert lines[-1] == "set +a" and lines[-2] == ""
        parsed = parse_replicas(text)
        assert parsed == DEFAULT_REPLICAS[env]
        assert list(parsed) == list(REPLICA_VARS)
        assert "INGEST_ARCHIVER_REPLICAS" not in text and "ONTOLOGY" not in text
    assert parse_replicas(files["config/replicas/environment_prod"])["INGEST_EXPORTER_REPLICAS"] == 10
    assert parse_replicas(files["config/replicas/environment_dev"])["INGEST_EXPORTER_REPLICAS"] == 1


def test_environment_files():
    files = render_files()
    for env in ENVS:
        text = files[f"config/environment_{env}"]
        lines = text.splitlines()
        assert lines[:2] == ["#!/usr/bin/env bash", "set -a"]
        assert lines[-1] == "set +a"
        for line in (
            "FORCE_REFRESH=TRUE",
            "ONTOLOGY_REF=1.0.50",
            "AWS_PROFILE=embl-ebi",
            "DEPLOYMENT_STAGE=${FILE_NAME#*_}",
            "KUBECONFIG_PATH=$PROJECT_ROOT/config/cluster-secrets/kubeconfig_${DEPLOYMENT_STAGE}",
            AWS_STS_LINE,
            "source $PROJECT_ROOT/config/replicas/environment_${DEPLOYMENT_STAGE}",
        ):
            assert line in lines, (env, line)
        assert "$(aws sts get-caller-identity" in text
        assert any(line.startswith("TF_VAR_") for line in lines)
        fastq = "d2020-09-07.1" if env == "prod" else "54bcf9f"
        assert f"FASTQ_VALIDATOR_IMAGE=quay.io/ebi-ait/fastq_utils:{fastq}" in lines
        assert f"fastqImage: quay.io/ebi-ait/fastq_utils:{fastq}" in files[f"apps/{env}.yaml"]


def test_environment_file_is_live_when_sourced(tmp_path):
    """The fixture's `aws sts` line really runs if someone sources the file: a product that did would be caught."""
    for rel, content in render_files(("ingest-core",)).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content)
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    marker = tmp_path / "aws-was-called"
    (fakebin / "aws").write_text(f'#!/bin/sh\necho "$@" > {marker}\necho \'{{"Account": "123456789012"}}\'\n')
    (fakebin / "aws").chmod(0o755)
    proc = subprocess.run(
        ["bash", "-c", 'source config/environment_prod && echo "$DEPLOYMENT_STAGE $INGEST_EXPORTER_REPLICAS"'],
        cwd=tmp_path, env={"PATH": f"{fakebin}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=T,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["prod", "10"]
    assert marker.read_text().split() == ["sts", "get-caller-identity", "--profile", "embl-ebi"]


def test_env_values_cover_every_template_key():
    files = render_files()
    set_flags = {"environment", "image", "replicas", "fastqImage", "gitlab_app", "gitlab_env"}
    used = set()
    for rel, text in files.items():
        if rel.endswith("templates/deployment.yaml") or rel.endswith("templates/service.yaml"):
            used |= {m.split(".")[0] for m in re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text)}
    for env in ENVS:
        values = yaml.safe_load(files[f"apps/{env}.yaml"])
        assert not (used - set_flags - set(values)), env
        assert values["upload"].startswith("upload.")
        assert values["notifications"]["smtp"]["host"]


# ---------------------------------------------------------------------------------------------------- git


def test_remote_has_master_and_dev(shared_repo):
    refs = dict(
        reversed(line.split("\t")) for line in git(shared_repo.work, "ls-remote", str(shared_repo.remote)).splitlines()
    )
    assert {"refs/heads/master", "refs/heads/dev", "HEAD"} <= set(refs)
    assert refs["HEAD"] == refs["refs/heads/master"] == shared_repo.head("master")
    assert refs["refs/heads/dev"] == shared_repo.head("dev")
    remote = shared_repo.remote
    assert git(remote, "rev-parse", "--is-bare-repository") == "true"
    assert git(remote, "rev-list", "--count", "master") == "4"  # first commit + history=3
    assert git(remote, "rev-list", "--count", "master..dev") == "1"
    assert git(remote, "rev-list", "--count", "dev..master") == "0"
    assert git(shared_repo.work, "rev-parse", "--abbrev-ref", "HEAD") == "master"
    assert shared_repo.head("no-such-branch") == ""


def test_remote_content_matches_render(shared_repo):
    files = render_files()
    tracked = set(git(shared_repo.remote, "ls-tree", "-r", "--name-only", "master").splitlines())
    assert tracked == set(files)
    for rel, content in files.items():
        if rel != "CHANGELOG.md":
            assert shared_repo.show(rel) == content.strip(), rel  # git() strips its output
    assert "change 3" in shared_repo.show("CHANGELOG.md")
    dev_replicas = shared_repo.show("config/replicas/environment_dev", "dev")
    assert DEV_ONLY_COMMENT in dev_replicas
    assert parse_replicas(dev_replicas) == DEFAULT_REPLICAS["dev"]
    clone = shared_repo.remote.parent.parent / "clone"
    git(shared_repo.remote.parent.parent, "clone", "-q", "-b", "dev", str(shared_repo.remote), str(clone))
    assert (clone / "apps/ingest-core/templates/service.yaml").is_file()


def test_set_replicas_commits_and_pushes(repo):
    before_master, before_dev = repo.head("master"), repo.head("dev")
    sha = repo.set_replicas("prod", "INGEST_CORE_REPLICAS", 3)
    assert repo.head("master") == sha != before_master
    assert git(repo.remote, "rev-parse", f"{sha}^") == before_master
    assert parse_replicas(repo.show("config/replicas/environment_prod"))["INGEST_CORE_REPLICAS"] == 3
    assert parse_replicas(repo.show("config/replicas/environment_prod"))["INGEST_EXPORTER_REPLICAS"] == 10
    assert repo.head("dev") == before_dev

    dev_sha = repo.set_replicas("dev", "INGEST_UI_REPLICAS", 2)  # dev environment -> dev branch
    assert repo.head("dev") == dev_sha and repo.head("master") == sha
    assert parse_replicas(repo.show("config/replicas/environment_dev", "dev"))["INGEST_UI_REPLICAS"] == 2
    assert parse_replicas(repo.show("config/replicas/environment_dev", "master"))["INGEST_UI_REPLICAS"] == 1

    added = repo.set_replicas("staging", "INGEST_ARCHIVER_REPLICAS", 2, branch="dev")
    text = repo.show("config/replicas/environment_staging", "dev")
    assert repo.head("dev") == added
    assert parse_replicas(text)["INGEST_ARCHIVER_REPLICAS"] == 2
    assert text.splitlines()[-1] == "set +a"
    assert "INGEST_ARCHIVER_REPLICAS" not in repo.show("config/replicas/environment_staging", "master")


def test_commit_file_on_new_branch(repo):
    sha = repo.commit_file("apps/ingest-core/NOTES.md", "hotfix\n", "hotfix notes", branch="hotfix")
    assert repo.head("hotfix") == sha
    assert git(repo.remote, "rev-parse", f"{sha}^") == repo.head("master")
    assert repo.show("apps/ingest-core/NOTES.md", "hotfix") == "hotfix"


def test_add_history_is_fast_and_deep(repo):
    start = time.monotonic()
    add_history(repo, 2000)
    elapsed = time.monotonic() - start
    assert elapsed < 8, f"add_history(2000) took {elapsed:.1f}s"
    assert int(git(repo.remote, "rev-list", "--count", "master")) >= 2000
    git(repo.remote, "fsck", "--no-progress", "--connectivity-only")  # raises if the import left holes
    assert repo.git("rev-parse", "HEAD") == repo.head("master")  # work clone is in sync
    sha = repo.set_replicas("prod", "INGEST_CORE_REPLICAS", 4)  # and usable on top of the bulk history
    assert git(repo.remote, "rev-list", "--count", "master") == str(4 + 2000 + 1)
    assert repo.head("master") == sha
    add_history(repo, 5, branch="dev")
    assert git(repo.remote, "rev-list", "--count", "master..dev") == "6"


# --------------------------------------------------------------------------------------------------- helm


def helm_binary() -> str | None:
    env = os.environ.get("MANUAL_DEPLOY_HELM3")
    if env:
        return env
    local = REPO_ROOT / ".tools" / "helm3"
    return str(local) if local.is_file() else None


HELM = helm_binary()
needs_helm = pytest.mark.skipif(
    HELM is None, reason="no helm 3 binary: set MANUAL_DEPLOY_HELM3 or install it to .tools/helm3"
)


def helm(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [HELM, *args], cwd=cwd, capture_output=True, text=True, timeout=T,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "HELM_CACHE_HOME": str(cwd / ".helm-cache"),
             "HELM_CONFIG_HOME": str(cwd / ".helm-config"), "HELM_DATA_HOME": str(cwd / ".helm-data")},
    )
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def set_string(app: str, env: str, image: str, replicas: str = "2") -> str:
    return f"environment={env},image={image},replicas={replicas},gitlab_app=hca-{app},gitlab_env={env}"


def rendered(apps_dir: Path, app: str, env: str, image: str, replicas: str = "2") -> dict[str, dict]:
    out = helm(apps_dir, "template", app, app, "-f", f"{env}.yaml", "--set-string", set_string(app, env, image, replicas))
    return {doc["kind"]: doc for doc in yaml.safe_load_all(out) if doc}


@needs_helm
def test_helm_template_ingest_core(shared_repo):
    apps = shared_repo.work / "apps"
    docs = rendered(apps, "ingest-core", "prod", "quay.io/ebi-ait/ingest-core:abc1234")
    dep, svc = docs["Deployment"], docs["Service"]
    assert dep["metadata"]["name"] == "ingest-core"
    assert dep["metadata"]["namespace"] == "prod-environment"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "ingest-core"}
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"] == {"app": "ingest-core"}
    assert pod["metadata"]["annotations"]["app.gitlab.com/app"] == "hca-ingest-core"
    assert pod["metadata"]["annotations"]["app.gitlab.com/env"] == "prod"
    assert len(pod["metadata"]["annotations"]["rollme"]) == 5
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "quay.io/ebi-ait/ingest-core:abc1234"
    assert container["imagePullPolicy"] == "Always"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["INGEST_UI"] == "https://contribute.data.humancellatlas.org"
    assert svc["metadata"] == {"labels": {"role": "ingestion"}, "name": "ingest-core-service",
                               "namespace": "prod-environment"}
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert svc["spec"]["selector"] == {"app": "ingest-core"}


@needs_helm
def test_helm_template_ontology(shared_repo):
    docs = rendered(shared_repo.work / "apps", "ontology", "prod", "1.0.50", replicas="7")
    dep = docs["Deployment"]
    assert dep["metadata"]["namespace"] == "prod-environment"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "quay.io/ebi-ait/ontology:1.0.50"
    assert docs["Service"]["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 8080}]


@needs_helm
@pytest.mark.parametrize("env", ENVS)
def test_helm_template_every_app(shared_repo, env):
    apps = shared_repo.work / "apps"
    for app in INGEST_APPS:
        image = f"quay.io/ebi-ait/{app}:abc1234"
        docs = rendered(apps, app, env, image)
        dep = docs["Deployment"]
        assert dep["metadata"]["name"] == app
        assert dep["metadata"]["namespace"] == f"{env}-environment"
        fixed = app in ("ingest-archiver", "ontology", "ingest-node-accessioner")
        assert dep["spec"]["replicas"] == (1 if fixed else 2), app
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        if app == "ontology":
            assert container["image"] == f"quay.io/ebi-ait/ontology:{image}"
        elif app == "ingest-node-accessioner":
            assert container["image"] == f"quay.io/humancellatlas/ingest-node-accessioner:{image}"
        else:
            assert container["image"] == image
        assert container["imagePullPolicy"] == "Always"
        if app == "ingest-broker":
            assert "PersistentVolumeClaim" in docs and container["volumeMounts"]
        expected = service_of(app)
        if expected is None:
            assert "Service" not in docs, app
        else:
            svc = docs["Service"]
            assert svc["metadata"]["name"] == f"{app}-service"
            assert svc["metadata"]["namespace"] == f"{env}-environment"
            port, target, kind = expected
            assert (svc["spec"]["ports"][0]["port"], svc["spec"]["ports"][0]["targetPort"], svc["spec"]["type"]) == (
                port, target, kind)
        if app == "ingest-validator":
            env_vars = {e["name"]: e.get("value") for e in container["env"]}
            fastq = "d2020-09-07.1" if env == "prod" else "54bcf9f"
            assert env_vars["FASTQ_VALIDATION_IMAGE"] == f"quay.io/ebi-ait/fastq_utils:{fastq}"


@needs_helm
@pytest.mark.parametrize("env", ENVS)
def test_helm_lint_every_chart(shared_repo, env):
    """Lint the way the Makefile deploys: the environment's values file plus the --set-string flags."""
    apps = shared_repo.work / "apps"
    out = helm(apps, "lint", *INGEST_APPS, "-f", f"{env}.yaml", "--set-string",
               set_string("app", env, "quay.io/ebi-ait/app:abc1234") + ",fastqImage=quay.io/ebi-ait/fastq_utils:x")
    assert f"{len(INGEST_APPS)} chart(s) linted, 0 chart(s) failed" in out


# ------------------------------------------------------------------- the broker's features, on both helms


HELM_BINARIES = {name: REPO_ROOT / ".tools" / name for name in ("helm3", "helm4")}
BROKER_SET = set_string("ingest-broker", "prod", "quay.io/ebi-ait/ingest-broker:abc1234") + ",fastqImage=x"


def test_broker_chart_has_the_real_charts_features():
    assert claim_of("ingest-broker") == ("spreadsheet-storage-claim", "retained-gp2")
    assert secrets_of("ingest-broker") == {
        "aws-keys": {"exporter-access-key-id", "exporter-access-key-secret"},
        "api-keys": {"ingest-service-account-auth-info"},
    }
    for app in ("ingest-core", "ingest-exporter", "ingest-archiver", "ontology"):  # the bed's apps
        assert claim_of(app) is None and secrets_of(app) == {}, app


@pytest.mark.parametrize("name", sorted(HELM_BINARIES))
def test_helm_template_and_lint_broker_on_both_helms(shared_repo, name, tmp_path):
    binary = HELM_BINARIES[name]
    if not binary.is_file():
        pytest.skip(f"no {binary}")
    apps = shared_repo.work / "apps"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path / "cache"),
           "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_DATA_HOME": str(tmp_path / "data")}

    def run(*args: str) -> str:
        proc = subprocess.run([str(binary), *args], cwd=apps, capture_output=True, text=True, timeout=T, env=env)
        assert proc.returncode == 0, f"{name} {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    out = run("template", "ingest-broker", "ingest-broker", "-f", "prod.yaml", "--set-string", BROKER_SET)
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(out) if doc}
    assert set(docs) == {"Deployment", "Service", "PersistentVolumeClaim"}
    claim = docs["PersistentVolumeClaim"]
    assert claim["metadata"] == {"name": "spreadsheet-storage-claim", "namespace": "prod-environment"}
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "retained-gp2",
                             "resources": {"requests": {"storage": "1Gi"}}}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_env == {
        "AWS_ACCESS_KEY_ID": {"name": "aws-keys", "key": "exporter-access-key-id"},
        "AWS_SECRET_ACCESS_KEY": {"name": "aws-keys", "key": "exporter-access-key-secret"},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/data/spreadsheets"]]["persistentVolumeClaim"] == {"claimName": "spreadsheet-storage-claim"}
    secret = volumes[mounts["/etc/secrets"]]["secret"]
    assert secret["secretName"] == "api-keys"
    assert [i["key"] for i in secret["items"]] == ["ingest-service-account-auth-info"]
    assert container["livenessProbe"] == {"httpGet": {"path": "/", "port": "http"}, "initialDelaySeconds": 60,
                                          "periodSeconds": 3}
    assert container["ports"] == [{"name": "http", "containerPort": 5000}]
    assert "readinessProbe" not in container

    ui = run("template", "ingest-ui", "ingest-ui", "-f", "prod.yaml", "--set-string", BROKER_SET)
    (ui_container,) = [d for d in yaml.safe_load_all(ui) if d and d["kind"] == "Deployment"][0]["spec"]["template"][
        "spec"]["containers"]
    assert ui_container["readinessProbe"]["httpGet"] == {"path": "/", "port": 4200}

    linted = run("lint", "ingest-broker", "ingest-ui", "-f", "prod.yaml", "--set-string", BROKER_SET)
    assert "2 chart(s) linted, 0 chart(s) failed" in linted
