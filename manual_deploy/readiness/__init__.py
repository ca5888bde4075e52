"""Is the release live? Every resource of a helm release, each judged by its kind's rule.

    watch = ReleaseWatch(api_client, namespace, release, after_revision=current, grace_s=60)
    look = watch.check()             # about once a second while helm waits
    look.failure                     # a Failure (report()) once something stayed failing for grace_s
    watch.progress(), watch.waited_for(), watch.pods_not_running(image)

Modules: kinds/ (the kind registry: one module per kind, owning its path, RBAC, rank, reads, rule and
remedies), resource_state (ResourceState, Failure, events), manifest (helm's stored release), api (raw
GETs), reads (Events, owned pods and Jobs, log tails), advice (the remedy of a failure, from its kind),
release_watch (the watch of one release, derived from the registry).
kubernetes is never imported here: the caller's ApiClient is used as is.
"""

from manual_deploy.readiness.release_watch import Look, ReleaseWatch
from manual_deploy.readiness.resource_state import Failure, ResourceState

__all__ = ["Failure", "Look", "ReleaseWatch", "ResourceState"]
