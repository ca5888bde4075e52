"""`manual-deploy sandbox up|env|down`: the drill environment starts, builds pushed tags, and stops cleanly."""

from __future__ import annotations

import time

from manual_deploy_sandbox.drill import pid_alive, read_ready
from manual_deploy_sandbox.gitrepos import git


def test_up_twice_env_build_trigger_down_twice(cli, tmp_path):
    directory = tmp_path / "sb"
    first = cli("sandbox", "up", "--dir", directory)
    try:
        assert first.code == 0, first.stderr
        ready = read_ready(directory)
        assert pid_alive(ready["pid"]) and pid_alive(ready["registry_pid"])
        assert "export MANUAL_DEPLOY_CONFIG=" in first.stdout and "export KUBECONFIG=" in first.stdout

        again = cli("sandbox", "up", "--dir", directory)
        assert again.code == 0 and "already up" in again.stderr
        env = cli("sandbox", "env", "--dir", directory)
        assert env.code == 0 and f"export KUBECONFIG={ready['kubeconfig']}" in env.stdout
        assert f"export QUAY_TOKEN={ready['quay_token']}" in env.stdout  # repo:admin: drill `wait-image --start-build`
        assert ready["quay_token"] not in (directory / "sandbox.log").read_text()

        checkout = directory / "apps" / "ingest-core"
        git(checkout, "commit", "-q", "--allow-empty", "-m", "break it [fail build]")
        git(checkout, "tag", "drill-1")
        git(checkout, "push", "-q", "origin", "master", "refs/tags/drill-1")
        import requests

        deadline = time.monotonic() + 20
        phase = None
        while time.monotonic() < deadline and phase != "error":
            builds = requests.get(f"{ready['quay_api']}/repository/ebi-ait/ingest-core/build/", timeout=5).json()["builds"]
            phase = builds[0]["phase"] if builds else None
            time.sleep(0.3)
        assert phase == "error"
    finally:
        down = cli("sandbox", "down", "--dir", directory)
    assert down.code == 0 and "stopped" in down.stdout
    assert not pid_alive(ready["pid"]) and not pid_alive(ready["registry_pid"])
    twice = cli("sandbox", "down", "--dir", directory)
    assert twice.code == 0 and "not running" in twice.stdout
    assert cli("sandbox", "env", "--dir", directory).code == 2


def test_a_shell_pointed_at_the_sandbox_can_still_stop_it(cli, tmp_path, monkeypatch):
    """The RUNBOOK's drill: `sandbox up`, `eval "$(manual-deploy sandbox env)"`, …, `sandbox down`.
    The eval moves MANUAL_DEPLOY_STATE_DIR into the sandbox; `down` must still find it and stop it."""
    directory = tmp_path / "sb"
    monkeypatch.setenv("MANUAL_DEPLOY_STATE_DIR", str(tmp_path / "user-state"))
    first = cli("sandbox", "up", "--dir", directory)
    ready = read_ready(directory)
    try:
        assert first.code == 0, first.stderr
        for line in first.stdout.splitlines():  # what eval would do
            name, _, value = line.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, value)
        assert cli("sandbox", "env").code == 0
    finally:
        down = cli("sandbox", "down")
    assert down.code == 0 and down.stdout.strip() == "stopped", down.stdout + down.stderr
    assert not pid_alive(ready["pid"]) and not pid_alive(ready["registry_pid"])
    again = cli("sandbox", "down")
    assert again.code == 0 and f"not running (no sandbox in {directory.resolve()})" in again.stdout


def test_rehearse_with_a_config_repo_checkout_every_app_deploys_everywhere(cli, tmp_path, monkeypatch):
    """`sandbox up --deploy-repo <a checkout of the team's repo>` then `sandbox check`: here the checkout is a
    clone of the generated fixture (the tests have no network); by hand it was a clone of the public one."""
    from manual_deploy.config import load_config
    from manual_deploy_sandbox.deployrepo import make_deploy_repo

    fixture = make_deploy_repo(tmp_path / "fixture")
    checkout = tmp_path / "my-ingest-kube-deployment"
    git(tmp_path, "clone", "-q", fixture.url, str(checkout))
    git(checkout, "branch", "-q", "dev", "origin/dev")  # a checkout has the branches it has; the sandbox takes them all
    directory = tmp_path / "sb"
    first = cli("sandbox", "up", "--dir", directory, "--deploy-repo", checkout)
    ready = read_ready(directory)
    try:
        assert first.code == 0, first.stderr
        assert ready["deploy_repo_source"] == str(checkout.resolve())
        for line in first.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, value)
        other = cli("sandbox", "up", "--dir", directory, "--deploy-repo", tmp_path / "fixture")
        assert other.code == 3 and "already serves" in other.stderr  # never a silent switch of config repo

        result = cli("sandbox", "check")

        apps = list(load_config(ready["config"]).apps)
        assert result.code == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 3 * len(apps) and all(" deployed " in line for line in lines), result.stdout
        assert any(line.split()[:2] == ["prod", "ingest-exporter"] and "replicas 10" in line for line in lines)
        assert any(line.split()[:2] == ["dev", "ingest-exporter"] and "replicas 1" in line for line in lines)
    finally:
        down = cli("sandbox", "down", "--dir", directory)
    assert down.code == 0 and not pid_alive(ready["pid"])


def test_gitlab_outage_drill_two_deploys_and_a_rollback_are_backfilled_in_order(cli, tmp_path, monkeypatch):
    """The acceptance drill on the real sandbox: GitLab down, two manual deploys and a rollback; `gitlab-sync`
    fails and keeps everything; GitLab back: three deployments in order, with env, full SHA, tag and status;
    a second run posts nothing."""
    import requests

    directory = tmp_path / "sb"
    first = cli("sandbox", "up", "--dir", directory)
    ready = read_ready(directory)
    try:
        assert first.code == 0, first.stderr
        for line in first.stdout.splitlines():  # what eval "$(manual-deploy sandbox env)" does
            name, _, value = line.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, value)
        checkout = directory / "apps" / "ingest-core"
        monkeypatch.chdir(checkout)
        assert cli("sandbox", "gitlab", "down").code == 0
        shipped = []
        for message in ("fix upload", "fix upload again"):
            git(checkout, "commit", "-q", "--allow-empty", "-m", message)
            git(checkout, "push", "-q", "origin", "master")
            tagged = cli("-o", "json", "tag", "--env", "prod")
            assert tagged.code == 0, tagged.stderr
            shipped.append((tagged.json()["commit"], tagged.json()["tag"]))
            assert cli("wait-image").code == 0
            applied = cli("apply", "--env", "prod", "--yes", "--reason", message)
            assert applied.code == 0 and "run `manual-deploy gitlab-sync` once GitLab is back" in applied.stderr
        assert cli("rollback", "--env", "prod", "--app", "ingest-core", "--yes").code == 0

        down = cli("gitlab-sync")
        assert down.code == 1 and "nothing is lost" in down.stderr, down.stderr
        assert cli("sandbox", "gitlab", "up").code == 0
        synced = cli("gitlab-sync")
        assert synced.code == 0 and "3 recorded" in synced.stderr, synced.stderr
        again = cli("gitlab-sync")
        assert again.code == 0 and "nothing to record" in again.stderr

        made = requests.get(f"{ready['gitlab']}/api/v4/projects/hca%2Fingest-core/deployments",
                            params={"environment": "prod", "order_by": "id", "sort": "asc"},
                            headers={"PRIVATE-TOKEN": ready["gitlab_token"]}, timeout=5).json()
        manual = [(d["sha"], d["ref"], d["status"], d["environment"]["name"]) for d in made if d["deployable"] is None]
        (sha1, tag1), (sha2, tag2) = shipped
        assert manual == [(sha1, tag1, "success", "prod"), (sha2, tag2, "success", "prod"), (sha1, tag1, "success", "prod")]
    finally:
        cli("sandbox", "down", "--dir", directory)
    assert not pid_alive(ready["pid"])
