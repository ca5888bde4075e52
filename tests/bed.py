"""The deploy bed shared by the deploy-path tests: real helm, real registry, real git, emulated apiserver.

The kube-apiserver is the one stand-in (no apiserver binary can be installed here); everything
else is the real component on 127.0.0.1.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELMS = {"helm3": ROOT / ".tools" / "helm3", "helm4": ROOT / ".tools" / "helm4"}
KUBE_TOKEN = "kube-token-s3cr3t-0123456789"
EXEC_TOKEN_KEY = "exec-token-key-0123456789"  # what the exec plugin stand-in signs its tokens with (tests/test_eks_access.py)


@dataclass
class Bed:
    config: Path
    kubeconfig: Path
    kube: object  # KubeEmulator
    registry: object  # LocalRegistry
    deploy_repo: object  # DeployRepo
    helm: Path

    def apps_api(self):
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(self.kubeconfig), context="ingest-eks-prod", persist_config=False)
        return client.AppsV1Api(api), client.CoreV1Api(api), client.CoordinationV1Api(api)


BED_APPS = """  ingest-core: {}
  ingest-exporter: {}
  ingest-archiver: {replicas_variable: null}
  ontology: {image_style: tag, replicas_variable: null}
"""


def write_bed_config(path: Path, *, registry_url: str, deploy_url: str, helm: Path, cluster_server: str | None = None,
                     api_url: str | None = None, apps: str = BED_APPS, gitlab_url: str | None = None) -> Path:
    """The bed's config file; `apps`: the YAML lines under `apps:` (default: the four apps the bed deploys)."""
    server = f", cluster_server: '{cluster_server}'" if cluster_server else ""
    api_url = api_url or f"{registry_url}/api/v1"
    gitlab = f'gitlab: {{url: "{gitlab_url}"}}' if gitlab_url else ""
    path.write_text(
        f"""{gitlab}
registry: {{url: "{registry_url}", api_url: "{api_url}", namespace: ebi-ait}}
deployment_repo: {{url: "{deploy_url}"}}
helm: {{executable: "{helm}"}}
environments:
  dev: {{kube_context: ingest-eks-dev, namespace: dev-environment, config_branch: dev, source_branch: dev}}
  staging: {{kube_context: ingest-eks-staging, namespace: staging-environment, config_branch: master, source_branch: master}}
  prod: {{kube_context: ingest-eks-prod, namespace: prod-environment, config_branch: master, source_branch: master, confirm: true{server}}}
apps:
{apps}"""
    )
    return path


def release_secret_status(kube, namespace: str, release: str, revision: int, status: str) -> None:
    """Rewrite a stored helm release's status, to stage a release stuck in pending-* (as a killed helm leaves it)."""
    from kubernetes import client

    name = f"sh.helm.release.v1.{release}.v{revision}"
    api = client.CoreV1Api(kube)
    secret = api.read_namespaced_secret(name, namespace)
    raw = gzip.decompress(base64.b64decode(base64.b64decode(secret.data["release"])))
    body = json.loads(raw)
    body["info"]["status"] = status
    encoded = base64.b64encode(gzip.compress(json.dumps(body).encode())).decode()
    secret.data["release"] = base64.b64encode(encoded.encode()).decode()
    secret.metadata.labels["status"] = status
    api.replace_namespaced_secret(name, namespace, secret)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MANUAL_DEPLOY_", "QUAY_"))}


NS = "prod-environment"
RELEASE_NOT_FOUND = "Error: release: not found"  # helm 3.17 and helm 4.1 word it the same


def publish(bed: Bed, app: str, tag: str) -> str:
    """Put an image for `app:tag` in the bed's registry, as quay's build would; returns its digest."""
    from manual_deploy_sandbox.registry import publish_image

    return publish_image(bed.registry.url, f"ebi-ait/{app}", tag)


def apply(cli, bed: Bed, *args, env: str = "prod"):
    return cli("--config", bed.config, "apply", "--env", env, *args)


def history(bed: Bed, release: str, namespace: str = NS, context: str = "ingest-eks-prod") -> list:
    """helm history as JSON, read with the real helm binary; [] only when helm says the release does not exist.

    Helm 3 and helm 4 both say `Error: release: not found`; any other failure (cluster unreachable,
    refused credentials, a broken kubeconfig) raises with helm's stderr, so "nothing deployed" can
    never be read from a cluster helm could not read.
    """
    import subprocess

    proc = subprocess.run(
        [str(bed.helm), "history", release, "-n", namespace, "--kube-context", context, "--kubeconfig", str(bed.kubeconfig), "-o", "json"],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode == 0:
        return json.loads(proc.stdout)
    lines = proc.stderr.strip().splitlines()
    if lines and lines[-1].strip() == RELEASE_NOT_FOUND:
        return []
    raise RuntimeError(f"helm history {release} -n {namespace} --kube-context {context} failed (exit {proc.returncode}): {proc.stderr.strip()}")


def writes(bed: Bed) -> list:
    """Every request that could have changed the cluster."""
    return [r for r in bed.kube.requests if r["method"] in ("POST", "PUT", "PATCH", "DELETE")]
