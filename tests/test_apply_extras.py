"""apply's cross-cutting pieces on the bed: team notifications and the post-deploy check."""

from __future__ import annotations

import sys

import pytest

from bed import KUBE_TOKEN, NS, apply, history, publish
from manual_deploy_sandbox.webhook import WebhookSink


@pytest.fixture
def hook(monkeypatch):
    with WebhookSink() as sink:
        monkeypatch.setenv("MANUAL_DEPLOY_WEBHOOK_URL", sink.url)
        yield sink


def test_webhook_gets_start_and_success(cli, bed, hook):
    publish(bed, "ingest-core", "hook1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "hook1", "--yes", "--reason", "INC-7")
    assert result.code == 0, result.stderr
    assert [m["event"] for m in hook.messages] == ["start", "success"]
    start = hook.messages[0]
    assert start["env"] == "prod" and start["reason"] == "INC-7" and start["ci_bypassed"] is True
    assert start["apps"][0]["app"] == "ingest-core" and "hook1" in start["apps"][0]["image"]
    assert "GitLab CI bypassed" in start["text"] and start["command"] == "apply"
    assert hook.url not in result.stdout + result.stderr


def test_webhook_gets_failure(cli, bed, hook):
    publish(bed, "ingest-core", "hookok")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "hookok", "--yes").code == 0
    publish(bed, "ingest-core", "hookbad")
    bed.kube.add_failure("*:hookbad*", "ImagePullBackOff")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "hookbad", "--yes", "--grace", "2s")
    assert result.code == 1
    assert hook.messages[-1]["event"] == "failure"
    assert "ImagePullBackOff" in hook.messages[-1]["text"]


@pytest.mark.parametrize("status", [500, None])
def test_a_dead_webhook_never_fails_the_deploy(cli, bed, monkeypatch, status):
    publish(bed, "ingest-core", "dead1")
    if status is None:
        monkeypatch.setenv("MANUAL_DEPLOY_WEBHOOK_URL", "http://127.0.0.1:9/hook")  # nothing listens on port 9
        result = apply(cli, bed, "--app", "ingest-core", "--tag", "dead1", "--yes")
    else:
        with WebhookSink(status=status) as sink:
            monkeypatch.setenv("MANUAL_DEPLOY_WEBHOOK_URL", sink.url)
            result = apply(cli, bed, "--app", "ingest-core", "--tag", "dead1", "--yes")
    assert result.code == 0, result.stderr
    assert "team notification not sent" in result.stderr


def _check_script(tmp_path, exit_code: int):
    script = tmp_path / "check.py"
    script.write_text(
        "import os, sys\n"
        "print('checking', os.environ['MD_ENV'], os.environ['MD_APP'], os.environ['MD_NAMESPACE'], os.environ['MD_IMAGE'])\n"
        f"print('integration test says: {'ok' if exit_code == 0 else 'submission endpoint returned 500'}')\n"
        f"sys.exit({exit_code})\n"
    )
    return f"{sys.executable} {script}"


def test_post_check_passes_with_the_deploy_facts(cli, bed, tmp_path):
    publish(bed, "ingest-core", "pc1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "pc1", "--yes", "--post-check", _check_script(tmp_path, 0))
    assert result.code == 0, result.stderr
    assert "post-check passed" in result.stderr


def test_post_check_failure_is_exit_1_with_its_output_and_the_rollback_command(cli, bed, tmp_path):
    publish(bed, "ingest-core", "pc2")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "pc2", "--yes", "--post-check", _check_script(tmp_path, 3))
    assert result.code == 1, result.stderr
    assert "post-check failed with exit code 3" in result.stderr
    assert "submission endpoint returned 500" in result.stderr
    assert f"checking prod ingest-core {NS}" in result.stderr
    assert "manual-deploy rollback --env prod --app ingest-core" in result.stderr
    assert history(bed, "ingest-core")[-1]["status"] == "deployed"  # left live: the engineer decides


def test_post_check_failure_with_the_flag_rolls_back(cli, bed, tmp_path):
    publish(bed, "ingest-core", "pc3")
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "pc3", "--yes").code == 0
    publish(bed, "ingest-core", "pc4")
    result = apply(
        cli, bed, "--app", "ingest-core", "--tag", "pc4", "--yes",
        "--post-check", _check_script(tmp_path, 1), "--rollback-on-check-failure",
    )
    assert result.code == 1, result.stderr
    assert "rolled back to revision 1" in result.stderr
    apps_api, _, _ = bed.apps_api()
    assert ":pc3@" in apps_api.read_namespaced_deployment("ingest-core", NS).spec.template.spec.containers[0].image
    assert KUBE_TOKEN not in result.stderr
