"""Shared fixtures: an isolated git environment and an in-process CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from manual_deploy.cli import main
from manual_deploy.sandbox.gitrepos import AppRepo, make_app_repo


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No user/system git config, no user config file: every test sees the same world."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("MANUAL_DEPLOY_CONFIG", raising=False)
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

