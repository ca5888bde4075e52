"""Drift: the cluster running something other than what helm deployed and the config repo says.

One rule for every command that asks (apply re-applies on it, promote and status report it), so they
can never disagree: the app's own container (a sidecar never counts) must run the release's `image`
value, and the Deployment must want the replicas expected of it. Someone who ran `kubectl set image`
or `kubectl scale` behind helm's back is what this finds.
"""

from __future__ import annotations

from dataclasses import dataclass

from manual_deploy.images import same_image
from manual_deploy.live_deployment import LiveDeployment

MISSING, IMAGE, REPLICAS = "deployment", "image", "replicas"


@dataclass(frozen=True)
class Drift:
    """One difference: what the cluster has (`live`) against what it should (`expected`)."""

    kind: str  # MISSING | IMAGE | REPLICAS
    expected: str | int | None
    live: str | int | None

    def __str__(self) -> str:
        if self.kind == MISSING:
            return "its Deployment is missing"
        if self.kind == IMAGE:
            return f"it runs {self.live}"
        return f"{self.live} replicas instead of {self.expected}"


def find_drift(live: LiveDeployment | None, image_value: str | None, replicas: int | None,
               image_repo: str | None = None) -> list[Drift]:
    """How a deployed release's Deployment differs from its `image` value and the expected replicas.

    A missing Deployment is the one difference there is; None for `image_value` or `replicas` means
    that part is not known, so not checked."""
    if live is None:
        return [Drift(MISSING, None, None)]
    found = []
    running = live.app_image(image_repo)
    if image_value is not None and not same_image(running or "", image_value):
        found.append(Drift(IMAGE, image_value, running))
    if replicas is not None and live.desired != replicas:
        found.append(Drift(REPLICAS, replicas, live.desired))
    return found
