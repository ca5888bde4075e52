"""A Deployment as it runs: the one place that reads Deployments from the API, and the one reading of their JSON.

Two ways to ask, for two kinds of caller: `read_deployment` and `list_deployments` use the typed client,
whose errors (ApiException) name what the API refused; `peek_deployment` GETs plain JSON, because a
deploy cannot spend the ≈ 0.3 s the typed Deployment models take to import. All three answer with a
`LiveDeployment`. The rollout verdict follows kubectl's DeploymentStatusViewer (`kubectl rollout
status`), with missing counts read as 0 (the apiserver omits zero fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Verdict:
    state: str  # "progressing" | "done" | "failed"
    message: str  # without the Deployment's name: callers say which one


@dataclass(frozen=True)
class LiveDeployment:
    """What a Deployment asks for (its spec) and has (its status), as read at one moment."""

    name: str
    uid: str
    generation: int
    observed_generation: int
    desired: int
    replicas: int
    updated: int
    ready: int
    available: int
    images: tuple[str, ...]  # of the pod template, i.e. what the rollout is rolling out
    containers: tuple[str, ...]  # their names, in the same order
    revision: str | None
    selector: dict[str, str]
    deadline_exceeded: str | None  # the Progressing condition's message once ProgressDeadlineExceeded

    @classmethod
    def from_dict(cls, deployment: dict[str, Any]) -> LiveDeployment:
        meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
        template = (spec.get("template") or {}).get("spec") or {}
        deadline = next((c for c in status.get("conditions") or []
                         if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"), None)
        return cls(
            name=meta.get("name") or "?", uid=meta.get("uid") or "",
            generation=meta.get("generation") or 0, observed_generation=status.get("observedGeneration") or 0,
            desired=spec["replicas"] if spec.get("replicas") is not None else 1,
            replicas=status.get("replicas") or 0, updated=status.get("updatedReplicas") or 0,
            ready=status.get("readyReplicas") or 0, available=status.get("availableReplicas") or 0,
            images=tuple(c.get("image") or "" for c in template.get("containers") or []),
            containers=tuple(c.get("name") or "" for c in template.get("containers") or []),
            revision=(meta.get("annotations") or {}).get(REVISION),
            selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
            deadline_exceeded=None if deadline is None else (deadline.get("message") or "").strip(),
        )

    def app_image(self, image_repo: str | None = None) -> str | None:
        """The app's container image, never a sidecar's: the container named after the Deployment, else the one
        running the app's image repo, else the first."""
        named = dict(zip(self.containers, self.images))
        if self.name in named:
            return named[self.name]
        from manual_deploy.images import ImageRef

        ours = [image for image in self.images if image_repo and ImageRef.parse(image).repo == image_repo]
        return ours[0] if ours else (self.images[0] if self.images else None)

    def verdict(self) -> Verdict:
        if self.generation > self.observed_generation:
            return Verdict("progressing", "spec update not yet observed by the deployment controller")
        if self.deadline_exceeded is not None:
            return Verdict("failed", f"exceeded its progress deadline: {self.deadline_exceeded}".strip())
        if self.updated < self.desired:
            return Verdict("progressing", f"{self.updated} of {self.desired} new replicas updated")
        if self.replicas > self.updated:
            return Verdict("progressing", f"{self.replicas - self.updated} old replicas pending termination")
        if self.available < self.updated:
            return Verdict("progressing", f"{self.available} of {self.updated} updated replicas available")
        return Verdict("done", f"rolled out: {self.available}/{self.desired} available")


def read_deployment(kube, namespace: str, name: str, *, timeout=None) -> LiveDeployment | None:
    """One Deployment through the typed client; None when it does not exist. Other errors are raised as
    the client raises them (ApiException; kube.refusal words a refused one at the CLI)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        found = client.AppsV1Api(kube).read_namespaced_deployment(name, namespace, _request_timeout=timeout)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return LiveDeployment.from_dict(kube.sanitize_for_serialization(found))


def list_deployments(kube, namespace: str, *, timeout=None) -> dict[str, LiveDeployment]:
    """Every Deployment of the namespace in one call, by name; errors raised as the typed client raises them."""
    from kubernetes import client

    found = client.AppsV1Api(kube).list_namespaced_deployment(namespace, _request_timeout=timeout).items
    return {d.metadata.name: LiveDeployment.from_dict(kube.sanitize_for_serialization(d)) for d in found}


def peek_deployment(kube, namespace: str, name: str) -> LiveDeployment | None:
    """One Deployment as plain JSON, cheap enough for a deploy's path; None when it does not exist.
    Raises ReadError (no API body: only the HTTP status or the transport error's type)."""
    from manual_deploy.readiness.api import Api
    from manual_deploy.readiness.reads import path

    found = Api(kube).get(path("Deployment", namespace, name))
    return None if found is None else LiveDeployment.from_dict(found)
