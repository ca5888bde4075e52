"""The bed itself, through stock pyhelm3 and the ingest-kube-deployment fixture chart (helm 3 and 4).

Everything is real (helm binary, pyhelm3, kubernetes client, git) except the kube-apiserver, which is
the emulator: no apiserver binary can be installed here.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest
import pyhelm3
import yaml
from kubernetes import client, config

from bed import HELMS
from manual_deploy_sandbox.deployrepo import make_deploy_repo
from manual_deploy_sandbox.kube import KubeEmulator
from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

NS = "prod-environment"


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory):
    return make_deploy_repo(tmp_path_factory.mktemp("ikd"))


@pytest.fixture
def cluster(tmp_path):
    with KubeEmulator(token="bed-token") as kube:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", ingest_contexts(kube.url), token="bed-token")
        yield kube, kubeconfig


def values(image: str, replicas: int) -> dict:
    return {"environment": "prod", "image": image, "replicas": str(replicas), "gitlab_app": "hca-ingest-core", "gitlab_env": "prod"}


@pytest.mark.parametrize("name", ["helm3", "helm4"])
def test_install_upgrade_history_rollback_atomic_through_pyhelm3(name, cluster, fixture_repo):
    kube, kubeconfig = cluster
    helm = pyhelm3.Client(executable=str(HELMS[name]), kubeconfig=kubeconfig, kubecontext="ingest-eks-prod")
    apps = client.AppsV1Api(config.new_client_from_config(config_file=str(kubeconfig), context="ingest-eks-prod", persist_config=False))
    env_values = yaml.safe_load((fixture_repo.work / "apps" / "prod.yaml").read_text())
    on_failure = {"atomic": True} if helm.version.major < 4 else {"rollback_on_failure": True}

    async def scenario():
        chart = await helm.get_chart(fixture_repo.work / "apps" / "ingest-core")
        first = await helm.install_or_upgrade_release(
            "ingest-core", chart, env_values, values("quay.io/ebi-ait/ingest-core:aaa1111", 1),
            namespace=NS, create_namespace=False, wait=True, timeout="60s",
        )
        assert (first.revision, first.status.value) == (1, "deployed")

        second = await helm.install_or_upgrade_release(
            "ingest-core", chart, env_values, values("quay.io/ebi-ait/ingest-core:bbb2222", 3),
            namespace=NS, create_namespace=False, wait=True, timeout="60s",
        )
        deployment = apps.read_namespaced_deployment("ingest-core", NS)
        assert deployment.spec.template.spec.containers[0].image == "quay.io/ebi-ait/ingest-core:bbb2222"
        assert deployment.spec.replicas == 3

        revisions = list(await second.release.history())
        assert [(r.revision, r.status.value) for r in revisions] == [(1, "superseded"), (2, "deployed")]

        await second.release.rollback(1, wait=True, timeout="60s")
        deployment = apps.read_namespaced_deployment("ingest-core", NS)
        assert deployment.spec.template.spec.containers[0].image == "quay.io/ebi-ait/ingest-core:aaa1111"

        kube.add_failure("*:broken9", "ImagePullBackOff")
        with pytest.raises(pyhelm3.errors.Error):
            await helm.install_or_upgrade_release(
                "ingest-core", chart, env_values, values("quay.io/ebi-ait/ingest-core:broken9", 1),
                namespace=NS, create_namespace=False, wait=True, timeout="4s", **on_failure,
            )
        statuses = [(r.status.value, r.description or "") for r in await second.release.history()]
        assert statuses[-2][0] == "failed"
        assert statuses[-1][0] == "deployed" and statuses[-1][1].lower().startswith("rollback")
        deployment = apps.read_namespaced_deployment("ingest-core", NS)
        assert deployment.spec.template.spec.containers[0].image == "quay.io/ebi-ait/ingest-core:aaa1111"

    asyncio.run(scenario())


def test_helm_template_of_the_fixture_chart_for_prod(fixture_repo):
    out = subprocess.run(
        [str(HELMS["helm3"]), "template", "ingest-core", str(fixture_repo.work / "apps" / "ingest-core"),
         "-f", str(fixture_repo.work / "apps" / "prod.yaml"),
         "--set-string", "environment=prod,image=quay.io/ebi-ait/ingest-core:abc1234,replicas=2,gitlab_app=hca-ingest-core,gitlab_env=prod"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert {d["metadata"]["namespace"] for d in docs} == {NS}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2


@pytest.mark.parametrize("name", ["helm3", "helm4"])
def test_the_drivers_shortcuts_agree_with_what_pyhelm3_and_helm_say(name, cluster, fixture_repo):
    """apply's plan reads revision + values from one `helm status` (started early, outside pyhelm3) and
    the chart from its Chart.yaml; both must give exactly what the longer way (pyhelm3's revision,
    `helm get values`, `helm show chart`) gives."""
    from manual_deploy.helm import HelmDriver, StatusRead

    _, kubeconfig = cluster
    driver = HelmDriver(str(HELMS[name]), kubeconfig=str(kubeconfig), context="ingest-eks-prod", timeout_s=60)

    def early(release: str):
        return StatusRead(str(HELMS[name]), release, NS, kubeconfig=str(kubeconfig), context="ingest-eks-prod").result()
    chart_dir = fixture_repo.work / "apps" / "ingest-core"
    env_values = yaml.safe_load((fixture_repo.work / "apps" / "prod.yaml").read_text())

    async def scenario():
        assert await driver.current_and_values("ingest-core", NS) == (None, {})
        assert early("ingest-core") == (None, {})
        chart = await driver.chart(chart_dir)
        assert chart.metadata == (await driver.client.get_chart(chart_dir)).metadata
        await driver.upgrade("ingest-core", chart, [env_values, values("quay.io/ebi-ait/ingest-core:aaa1111", 2)],
                             namespace=NS, description="first", timeout_s=60)
        revision, current_values = await driver.current_and_values("ingest-core", NS)
        assert revision == await driver.current("ingest-core", NS)
        assert revision.number == 1 and revision.description == "first"
        assert current_values == await driver.values("ingest-core", NS, 1)
        assert current_values["image"] == "quay.io/ebi-ait/ingest-core:aaa1111"
        assert early("ingest-core") == (revision, current_values)

    asyncio.run(scenario())


def test_the_history_helper_reads_only_release_not_found_as_nothing_deployed(bed, helm, tmp_path):
    """tests/bed.py `history`: [] for a release helm says is not there; an unreadable cluster raises."""
    import dataclasses

    from bed import KUBE_TOKEN, history

    assert history(bed, "ingest-core") == []
    wrong_token = write_kubeconfig(tmp_path / "wrong-token", ingest_contexts(bed.kube.url), token=KUBE_TOKEN[::-1])
    with pytest.raises(RuntimeError, match="provide credentials"):
        history(dataclasses.replace(bed, kubeconfig=wrong_token), "ingest-core")
    with pytest.raises(RuntimeError, match='context "ingest-eks-nope" does not exist'):
        history(bed, "ingest-core", context="ingest-eks-nope")
