"""Shared fixtures: an isolated git environment and an in-process CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from manual_deploy.cli import main
from manual_deploy_sandbox.gitrepos import AppRepo, make_app_repo


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No user/system git config, no user config file: every test sees the same world."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("MANUAL_DEPLOY_CONFIG", raising=False)
    monkeypatch.delenv("MANUAL_DEPLOY_SANDBOX_DIR", raising=False)  # a shell `sandbox env` pointed at a sandbox
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys):
    """Run `manual-deploy ARGS...` in-process through the real entry point; capture both streams."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def app_repo(tmp_path) -> AppRepo:
    """ingest-core: a bare remote with master and dev, and a checkout on master."""
    return make_app_repo(tmp_path)



# --- the deploy bed (see tests/bed.py) -------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The real Debian docker-registry on 127.0.0.1, one per test module."""
    from manual_deploy_sandbox.registry import start_registry

    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def deploy_repo(tmp_path_factory):
    """An ingest-kube-deployment fixture repo (bare remote with master and dev)."""
    from manual_deploy_sandbox.deployrepo import make_deploy_repo

    return make_deploy_repo(tmp_path_factory.mktemp("deploy-config"))


@pytest.fixture(params=["helm3", "helm4"])
def helm(request):
    """Run the test once with each real helm binary."""
    from bed import HELMS

    return HELMS[request.param]


@pytest.fixture
def bed(tmp_path, registry, deploy_repo, monkeypatch, request):
    """Registry + deploy-config repo + emulated cluster + kubeconfig + config file; helm 3 unless `helm` is used."""
    from bed import EXEC_TOKEN_KEY, HELMS, KUBE_TOKEN, Bed, write_bed_config
    from manual_deploy_sandbox.kube import KubeEmulator
    from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

    helm = request.getfixturevalue("helm") if "helm" in request.fixturenames else HELMS["helm3"]
    monkeypatch.setenv("MANUAL_DEPLOY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MANUAL_DEPLOY_STATE_DIR", str(tmp_path / "state"))
    kube = KubeEmulator(token=KUBE_TOKEN, token_key=EXEC_TOKEN_KEY, pod_start_delay=0.2, progress_deadline=2.0).start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", ingest_contexts(kube.url), token=KUBE_TOKEN)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    config = write_bed_config(tmp_path / "config.yaml", registry_url=registry.url, deploy_url=deploy_repo.url, helm=helm)
    yield Bed(config=config, kubeconfig=kubeconfig, kube=kube, registry=registry, deploy_repo=deploy_repo, helm=helm)
    kube.stop()


@pytest.fixture
def crash_bed(tmp_path, registry, deploy_repo, request):
    """The bed with the apiserver in a process of its own (tests/crashbed.py), so it can be frozen; helm 3
    unless the `helm` fixture is used. Every process a test starts there is stopped at teardown."""
    from bed import HELMS
    from crashbed import make_crash_bed, stop_emulator

    helm = request.getfixturevalue("helm") if "helm" in request.fixturenames else HELMS["helm3"]
    proc, bed = make_crash_bed(tmp_path, registry, deploy_repo, helm)
    yield bed
    bed.close()
    stop_emulator(proc)
