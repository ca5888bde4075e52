"""Rehearse with a real config repo: serve it, give the cluster what its charts expect, publish every image.

`sandbox up --deploy-repo PATH_OR_URL` mirrors that repository (all its branches) as the sandbox's
ingest-kube-deployment; for each env the charts of its config branch are rendered as apply renders them
and the Secrets and StorageClasses they name are created with dummy values; every configured app gets an
image under DRILL_TAG in the sandbox registry, so `apply --tag sandbox` (and `sandbox check`) can deploy
any of them.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from manual_deploy_sandbox import prerequisites

DRILL_TAG = "sandbox"
GIT_TIMEOUT_S = 600


def mirror(source: str, bare: Path) -> None:
    """A bare mirror of `source` (a local checkout or any git URL the machine reaches), all branches."""
    bare.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["git", "clone", "--mirror", "-q", "--", source, str(bare)], capture_output=True, text=True,
                          timeout=GIT_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot mirror {source}: {proc.stderr.strip()}")


def export(bare: Path, branch: str, into: Path) -> Path:
    """apps/ and config/ of `branch`, as files (what apply's config checkout holds)."""
    proc = subprocess.run(["git", "--git-dir", str(bare), "archive", "--format=tar", branch, "apps", "config"],
                          capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot read {branch} of {bare}: {proc.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into


def chart_needs(config, bare: Path, helm: str, log) -> prerequisites.Needs:
    """Everything the configured apps' charts reference, in every env, from each env's config branch."""
    from manual_deploy.gitlab import gitlab_slug

    needs = prerequisites.Needs()
    with tempfile.TemporaryDirectory(prefix="sandbox-charts-") as tmp:
        for env_name, env in config.environments.items():
            root = export(bare, env.config_branch, Path(tmp) / env_name)
            values = root / "apps" / f"{env_name}.yaml"
            for app in (config.app(name) for name in config.apps):
                chart = root / app.chart
                if not (chart / "Chart.yaml").is_file() or not values.is_file():
                    log(f"  {env_name}/{app.name}: no chart at {app.chart} or no apps/{env_name}.yaml on {env.config_branch}")
                    continue
                overrides = {"environment": env_name, "image": DRILL_TAG, "replicas": "1",
                             "gitlab_app": gitlab_slug(app.gitlab_project), "gitlab_env": env_name, "fastqImage": DRILL_TAG}
                try:
                    manifests = prerequisites.render(helm, chart, values, overrides, env.namespace)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    log(f"  {env_name}/{app.name}: cannot render ({exc})")
                    continue
                prerequisites.read(manifests, env.namespace, needs)
    return needs


def publish_all(config, registry_url: str) -> list[str]:
    """Every configured app's image under DRILL_TAG, in the repository the sandbox config names for it."""
    from manual_deploy.images import split_repo
    from manual_deploy_sandbox.registry import publish_image

    published = []
    for name in config.apps:
        _, repository = split_repo(config.app(name).image_repo)
        publish_image(registry_url, repository, DRILL_TAG)
        published.append(f"{repository}:{DRILL_TAG}")
    return published


def prepare(config_path: Path, bare: Path, kube, registry_url: str, helm: str, log) -> None:
    """Seed the cluster for the charts and publish the images (logged to the sandbox's log)."""
    from manual_deploy.config import load_config

    config = load_config(str(config_path))
    for line in prerequisites.seed(kube, chart_needs(config, bare, helm, log)):
        log(f"  created {line}")
    log(f"  published {len(publish_all(config, registry_url))} images under the tag {DRILL_TAG}")
