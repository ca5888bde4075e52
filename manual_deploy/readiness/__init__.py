"""Is the release live? Every resource of a helm release, each judged by its kind's rule.

    watch = ReleaseWatch(api_client, namespace, release, after_revision=current, grace_s=60)
    result = watch.check()           # about once a second while helm waits
    result.failure                   # a Failure (report()) once something stayed failing for grace_s
    watch.progress(), watch.waited_for(), watch.images_live(image)

Modules: state (ResourceState, Failure, events), one module per kind (pod, deployment, statefulset,
daemonset, job, pvc, service), manifest (helm's stored release), api (raw GETs), watch.
kubernetes is never imported here: the caller's ApiClient is used as is.
"""

from manual_deploy.readiness.state import Failure, ResourceState
from manual_deploy.readiness.watch import Check, ReleaseWatch

__all__ = ["Check", "Failure", "ReleaseWatch", "ResourceState"]
