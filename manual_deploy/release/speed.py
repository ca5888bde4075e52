"""What lets helm start sooner: start-up tricks of the release runner, kept out of the verbs.

- The kubernetes client the deploy lock needs is imported in the background while the early phases
  talk to git and the registry.
- Every app's `helm status` starts as soon as the target is checked, while the image and config phases
  run (a helm process and a cluster round trip the plan would otherwise wait for).
- helm gets a head start before the watch's first look: until helm has written the new revision there is
  nothing to watch, and on two cores the watch's reads would compete with helm rendering the chart.
"""

from __future__ import annotations

import threading

from manual_deploy.helm import StatusRead
from manual_deploy.kube import import_lock_client

HELM_HEAD_START_S = 0.5  # helm's own start of an upgrade, before the watch looks
MAX_EARLY_READS = 8

EARLY_PHASE_MODULES = (  # what the main thread imports while the warm-up runs (target, image, config, plan)
    "manual_deploy.registry", "manual_deploy.wait_image", "manual_deploy.deployconfig", "manual_deploy.helm",
    "manual_deploy.kube", "manual_deploy.gitops", "manual_deploy.lock", "manual_deploy.audit", "manual_deploy.notify",
    "manual_deploy.gitlab",
    "pyhelm3.client",
)


def warm_up_kubernetes_client() -> None:
    """Import what the deploy lock needs (kubeconfig loading, the Lease API) in the background.

    Only that: the watch of the release reads plain JSON and needs no model classes; importing more
    here (the Deployment and Pod APIs, ≈ 0.6 s of them) competed for the GIL with the main thread's
    own imports and held up the lock, and so helm.

    Packages both threads need are imported here first, in this thread: two threads importing the
    same package (requests, whose modules import each other) in different orders can trip Python's
    import deadlock breaker, which hands one of them a half-initialised module (seen as
    "cannot import name 'parse_dict_header' from partially initialized module 'requests.utils'").
    tests/test_release_watch.py checks that nothing else is shared.
    """
    import requests  # noqa: F401
    import urllib3.util.retry  # noqa: F401

    threading.Thread(target=import_lock_client, name="kubernetes-import", daemon=True).start()


class EarlyStatusReads:
    """`helm status` of each release, started early and handed to the plan (read-only)."""

    def __init__(self, executable: str, namespace: str, *, kubeconfig: str | None, context: str, releases: list[tuple[str, str]]):
        self._reads = {app: StatusRead(executable, release, namespace, kubeconfig=kubeconfig, context=context)
                       for app, release in releases[:MAX_EARLY_READS]}

    def take(self, app: str) -> StatusRead | None:
        """The app's read, if one was started (each is handed out once)."""
        return self._reads.pop(app, None)

    def close(self) -> None:
        """Stop the reads nobody took (a failed or interrupted run); safe to call twice."""
        while self._reads:
            self._reads.popitem()[1].stop()
