"""A Deployment's live state, from the JSON the apiserver serves: the one place that reads it.

The rollout verdict follows kubectl's DeploymentStatusViewer (`kubectl rollout status`), with
missing counts read as 0 (the apiserver omits zero fields).
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
class DeploymentState:
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
    def from_dict(cls, deployment: dict[str, Any]) -> DeploymentState:
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

    def app_image(self) -> str | None:
        """The app's container image: the container named after the Deployment, else the first."""
        named = dict(zip(self.containers, self.images))
        return named.get(self.name) or (self.images[0] if self.images else None)

    def drift(self, image_value: str, replicas: int | None) -> str | None:
        """How the live spec differs from what helm deployed (kubectl set image/scale behind its back), or None."""
        from manual_deploy.images import same_image

        if not any(same_image(image, image_value) for image in self.images):
            return f"it runs {', '.join(self.images)}"
        if replicas is not None and self.desired != replicas:
            return f"{self.desired} replicas instead of {replicas}"
        return None

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
