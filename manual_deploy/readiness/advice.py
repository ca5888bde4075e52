"""What to do about a failure: the `next:` line a person on call can act on, from the kind that named it.

An image that does not pull or start is fixed by a new image (the verb says how). Everything else is
fixed in the cluster or in ingest-kube-deployment, and then the same command is run again.
"""

from __future__ import annotations

from manual_deploy.readiness import kinds
from manual_deploy.readiness.resource_state import Failure


def remedy(failure: Failure, namespace: str) -> str | None:
    """The fix for a failure that no new image would fix; None when the image is at fault."""
    kind = kinds.get(failure.kind) or kinds.Kind(failure.kind, "", "")
    return kind.remedy(failure.reason, namespace, failure.name, failure.owned)
