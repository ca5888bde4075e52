"""`promote`: ship to one env exactly the image (by digest) that runs healthy in another.

GitLab promoted staging → prod by re-running the release job on the same commit. Here the source
of truth is what actually runs: the source release must be deployed and its Deployment rolled out;
its image is pinned by digest and deployed through the normal `apply` path, with the target env's
own replicas and values. `--retag` also writes GitLab's release tag for the target env.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from manual_deploy import images
from manual_deploy.config import Config, ResolvedApp
from manual_deploy.images import ImageRef
from manual_deploy.console import Output
from manual_deploy.apply import ApplyRequest, run_apply
from manual_deploy.errors import Refused, UsageError
from manual_deploy.helm import HelmDriver, find_helm, helm_error
from manual_deploy.kube import api_client, is_refusal, refusal, resolve_target



@dataclass(frozen=True)
class PromoteRequest:
    source: str
    target: str
    app: str
    yes: bool = False
    retag: bool = False
    reason: str = ""
    kubeconfig: str | None = None
    timeout_s: float = 600.0
    grace_s: float = 60.0


def running_image(config: Config, app: ResolvedApp, env: str, kubeconfig: str | None, out: Output) -> tuple[str, str | None]:
    """(tag, digest or None) of the healthy release in `env`; refuses when it is not deployed and rolled out."""
    target = resolve_target(config, env, kubeconfig=kubeconfig)
    helm = HelmDriver(find_helm(config.helm.executable), kubeconfig=kubeconfig, context=target.context, timeout_s=60)

    try:
        current, values = asyncio.run(helm.current_and_values(app.release, target.namespace))
    except Exception as exc:
        raise helm_error(exc, f"cannot read {app.release} in {target.context}/{target.namespace}") from None
    if current is None or current.status != "deployed":
        state = current.status if current else "not deployed"
        raise Refused(f"{app.name} in {env} is {state}: only a healthy release can be promoted", hint=f"check `manual-deploy status --env {env}`")
    from kubernetes import client

    from manual_deploy.deployment_state import DeploymentState

    from kubernetes.client.exceptions import ApiException

    kube = api_client(target)
    try:
        deployment = client.AppsV1Api(kube).read_namespaced_deployment(app.release, target.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise Refused(f"{app.name} in {env} has a release but no Deployment {app.release}: only a healthy release "
                          "can be promoted", hint=f"check `manual-deploy status --env {env} --app {app.name}`") from None
        if is_refusal(exc):
            raise refusal(exc, env=env, message=f"cannot read Deployment {app.release} in {env}",
                          need=f"`get` on deployments in {target.namespace}") from None
        raise
    verdict = DeploymentState.from_dict(kube.sanitize_for_serialization(deployment)).verdict()
    if verdict.state != "done":
        raise Refused(f"{app.name} in {env} is not healthy: {verdict.message}", hint="promote only what runs well")
    image = str(values.get("image", ""))
    if app.image_style == "tag":
        return image, None
    ref = ImageRef.parse(image)
    if ref.repo != app.image_repo or not ref.tag:
        raise Refused(f"{app.name} in {env} runs {image!r}, which is not a tag of {app.image_repo}")
    out.info(f"  {env} runs {app.name} revision {current.number}: {image}")
    return ref.tag, ref.digest


def release_tag(env: str, source_tag: str, now: datetime) -> str:
    """GitLab's `<env>-<sha8>-<dd-mm-YYYY>.<epoch>`; the sha comes from the source tag's name."""
    sha = images.release_tag_sha(source_tag) or source_tag[:8]
    if not re.fullmatch(r"[0-9a-f]{7,8}", sha):
        raise UsageError(f"cannot derive a commit SHA from tag {source_tag!r} for --retag", hint="promote without --retag")
    return images.release_tag(env, sha, now)


def retag(config: Config, app: ResolvedApp, tag: str, digest: str, new_tag: str, out: Output) -> str:
    """Point `new_tag` at the same manifest (same bytes, same digest) in the registry."""
    from manual_deploy.registry import Credentials, RegistryClient

    _, repository = images.split_repo(app.image_repo)
    client = RegistryClient(config.registry.url, Credentials.from_env())
    manifest, body = client.get_manifest(repository, digest)
    written = client.put_manifest(repository, new_tag, manifest, body)
    if written != digest:
        raise Refused(f"the registry stored {new_tag} as {written}, not {digest}", hint="check the registry; nothing was deployed")
    out.success(f"tagged {app.image_repo}:{new_tag} → {digest[:19]}…")
    return new_tag


def run_promote(config: Config, request: PromoteRequest, out: Output) -> dict[str, Any]:
    if request.source == request.target:
        raise UsageError(f"--from {request.source} and --to {request.target} must be different environments",
                         hint=f"promote from one env to another, e.g. --from staging --to prod (configured: {', '.join(config.environments)})")
    config.environment(request.source)
    config.environment(request.target)
    app = config.app(request.app)
    out.step(f"promote {app.name}: {request.source} → {request.target}")
    tag, digest = running_image(config, app, request.source, request.kubeconfig, out)
    if digest is None and app.image_style != "tag":
        from manual_deploy.apply import resolve_image

        digest = resolve_image(config, app, tag, None, out)
    source_ref = tag  # the git tag GitLab knows; a --retag tag exists only in the registry
    if request.retag:
        if digest is None:
            raise UsageError(f"{app.name}'s chart takes a bare tag; --retag needs a digest")
        tag = retag(config, app, tag, digest, release_tag(request.target, tag, datetime.now(timezone.utc)), out)
    image = images.reference(app.image_repo, tag, digest)
    apply_request = ApplyRequest(
        env=request.target, apps=(app.name,), image=image if app.image_style != "tag" else None,
        tag=tag if app.image_style == "tag" else None, kubeconfig=request.kubeconfig, yes=request.yes,
        reason=request.reason or f"promote from {request.source}", timeout_s=request.timeout_s, grace_s=request.grace_s,
        command="promote", source_ref=source_ref,
    )
    summary = run_apply(config, apply_request, out)
    return {**summary, "promoted_from": request.source, "image": image}
