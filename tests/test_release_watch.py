"""helm under watch: what the runner's loop does when it cannot look, and the warm-up it relies on."""

from __future__ import annotations

import asyncio
import socket

from kubernetes import client

from manual_deploy.console import Output
from manual_deploy.release.watch import watch_helm
from manual_deploy.readiness.release_watch import ReleaseWatch


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreadable_api_never_stops_helm(capsys):
    """The pod check is only an early warning: when the API cannot be read, helm's own wait decides.

    Real kubernetes client against a port nobody listens on; the "helm" task is a plain coroutine
    (what matters is that watch_helm lets it finish rather than cancelling it).
    """
    config = client.Configuration(host=f"http://127.0.0.1:{_closed_port()}")
    config.retries = 0
    verifier = ReleaseWatch(client.ApiClient(config), "prod-environment", "ingest-core", after_revision=6, grace_s=1)

    async def scenario():
        helm = asyncio.create_task(asyncio.sleep(2.5, result="revision 7"))
        failure = await watch_helm(helm, verifier, Output(), "ingest-core")
        return failure, helm

    failure, helm = asyncio.run(scenario())

    assert failure is None
    assert not helm.cancelled() and helm.result() == "revision 7"
    err = capsys.readouterr().err
    assert err.count("cannot read helm's release Secrets (no answer") == 1, err
    assert "helm's own wait still applies" in err


SNAPSHOT = """
import json, sys, threading
threading.Thread.start = lambda self: None  # the warm-up's own thread is not the point here
from manual_deploy import cli, apply
from manual_deploy.release import speed
speed.warm_up_kubernetes_client()
ready = set(sys.modules)
if sys.argv[1] == "early":
    for name in speed.EARLY_PHASE_MODULES:
        __import__(name)
else:
    speed.import_lock_client()
print(json.dumps(sorted(set(sys.modules) - ready)))
"""


def test_the_kubernetes_warm_up_shares_no_half_imported_package_with_the_main_thread():
    """apply imports kubernetes in a background thread while the main thread imports the early phases'
    modules. A module both import at once can come out half-initialised (an ImportError at random),
    so every module both need must already be imported when the warm-up starts."""
    import json
    import subprocess
    import sys

    def imported(which: str) -> set[str]:
        out = subprocess.run([sys.executable, "-c", SNAPSHOT, which], capture_output=True, text=True, check=True).stdout
        return set(json.loads(out))

    early, warm_up = imported("early"), imported("kubernetes")
    assert "kubernetes.client" in warm_up and "manual_deploy.registry" in early
    assert early & warm_up == set()
