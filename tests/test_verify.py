"""The rollout verifier: which pods are "the new version", and what happens when it cannot look."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket

from kubernetes import client

from manual_deploy.console import Output
from manual_deploy.release.watch import watch_helm
from manual_deploy.verify import REVISION, RolloutVerifier, current_replica_set

UID = "d-uid"
SELECTOR = client.V1LabelSelector(match_labels={"app": "ingest-core"})
SECOND = dt.datetime(2026, 11, 26, 18, 0, 0, tzinfo=dt.timezone.utc)


def deployment(revision: str | None) -> client.V1Deployment:
    annotations = {REVISION: revision} if revision else None
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="ingest-core", uid=UID, annotations=annotations),
        spec=client.V1DeploymentSpec(selector=SELECTOR, template=client.V1PodTemplateSpec()),
    )


def replica_set(name: str, revision: int, created: dt.datetime, owner: str = UID) -> client.V1ReplicaSet:
    return client.V1ReplicaSet(metadata=client.V1ObjectMeta(
        name=name, creation_timestamp=created, annotations={REVISION: str(revision)},
        owner_references=[client.V1OwnerReference(api_version="apps/v1", kind="Deployment", name="ingest-core", uid=owner)],
    ), spec=client.V1ReplicaSetSpec(selector=SELECTOR))


def test_two_replica_sets_created_in_the_same_second_are_told_apart_by_revision():
    """Creation times have one-second resolution; the name (a hash) says nothing about order."""
    old = replica_set("ingest-core-zzzz", 1, SECOND)
    new = replica_set("ingest-core-aaaa", 2, SECOND)
    assert current_replica_set(deployment("2"), [old, new]) is new
    assert current_replica_set(deployment(None), [new, old]) is new


def test_after_a_rollback_the_reactivated_older_replica_set_is_the_current_one():
    reactivated = replica_set("ingest-core-good", 3, SECOND)
    abandoned = replica_set("ingest-core-bad", 2, SECOND + dt.timedelta(minutes=5))
    assert current_replica_set(deployment("3"), [abandoned, reactivated]) is reactivated


def test_replica_sets_of_other_owners_are_ignored():
    foreign = replica_set("ingest-core-other", 9, SECOND, owner="someone-else")
    mine = replica_set("ingest-core-mine", 1, SECOND)
    assert current_replica_set(deployment("1"), [foreign, mine]) is mine
    assert current_replica_set(deployment("1"), [foreign]) is None


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
    verifier = RolloutVerifier(client.ApiClient(config), "prod-environment", "ingest-core", grace_s=1)

    async def scenario():
        helm = asyncio.create_task(asyncio.sleep(2.5, result="revision 7"))
        failure = await watch_helm(helm, verifier, Output(), "ingest-core")
        return failure, helm

    failure, helm = asyncio.run(scenario())

    assert failure is None
    assert not helm.cancelled() and helm.result() == "revision 7"
    err = capsys.readouterr().err
    assert err.count("cannot read the rollout") == 1, err
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


def test_the_image_check_names_pods_that_run_something_else(tmp_path):
    """After helm's success, apply proves the new pods run the requested image; on the emulated
    cluster, with the real kubernetes client, from the same snapshot that showed the rollout done."""
    import time

    from kubernetes import config as kconfig

    from manual_deploy.sandbox.kube import KubeEmulator
    from manual_deploy.sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

    with KubeEmulator(token="verify-token-0123456789") as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", ingest_contexts(kube.url), token="verify-token-0123456789")
        api = kconfig.new_client_from_config(config_file=str(kubeconfig), context="ingest-eks-prod", persist_config=False)
        labels = {"app": "ingest-core"}
        client.AppsV1Api(api).create_namespaced_deployment("prod-environment", client.V1Deployment(
            metadata=client.V1ObjectMeta(name="ingest-core"),
            spec=client.V1DeploymentSpec(
                replicas=2, selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="core", image="quay.io/ebi-ait/ingest-core:aaa1111")]),
                ),
            ),
        ))
        verifier = RolloutVerifier(api, "prod-environment", "ingest-core", grace_s=60)
        deadline = time.monotonic() + 20
        while verifier.check()[0].state != "done":
            assert time.monotonic() < deadline, "the emulated rollout never finished"
            time.sleep(0.2)

        assert verifier.images_live("quay.io/ebi-ait/ingest-core:aaa1111") == []
        assert verifier.images_live("aaa1111") == []  # charts that take a bare tag
        wrong = verifier.images_live("quay.io/ebi-ait/ingest-core:bbb2222")
        assert len(wrong) == 2 and all(w.startswith("ingest-core-") and w.endswith("runs quay.io/ebi-ait/ingest-core:aaa1111") for w in wrong)


def test_what_helm_waited_for_is_the_last_look_even_when_the_deployment_is_gone(tmp_path):
    """Said when helm's timeout ends first: it must describe the last check, not an older one."""
    from kubernetes import config as kconfig

    from manual_deploy.sandbox.kube import KubeEmulator
    from manual_deploy.sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

    with KubeEmulator(token="verify-token-0123456789") as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", ingest_contexts(kube.url), token="verify-token-0123456789")
        api = kconfig.new_client_from_config(config_file=str(kubeconfig), context="ingest-eks-prod", persist_config=False)
        verifier = RolloutVerifier(api, "prod-environment", "ingest-core", grace_s=60)
        assert verifier.waited_for() is None
        verifier.check()
        assert verifier.waited_for() == "deployment ingest-core not created yet"
