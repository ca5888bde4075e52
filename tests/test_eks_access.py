"""EKS access as an on-call meets it: an exec credential plugin (the stand-in behaves like `aws eks get-token`),
an expired SSO session, an old v1alpha1 kubeconfig, a role without a permission or not mapped at all.

The bed's emulated apiserver is started with the plugin's signing key, so real helm and the real kubernetes
client authenticate through the plugin exactly as they do against EKS (tests/test_kube_emulator_auth.py).
"""

from __future__ import annotations

import re

import pytest

from bed import NS, apply, history, publish, writes
from manual_deploy_sandbox.kube.exec_plugin import V1ALPHA1
from manual_deploy_sandbox.kube.kubeconfig import exec_user, ingest_contexts, write_kubeconfig

SSO_EXPIRED = "Error when retrieving token from sso: Token has expired and refresh failed"


def use_exec_kubeconfig(bed, tmp_path, monkeypatch, mode: str = "ok", **kwargs):
    path = write_kubeconfig(tmp_path / f"kubeconfig-{mode}", ingest_contexts(bed.kube.url),
                            exec_user=exec_user(bed.kube, mode, **kwargs))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def doctor(cli, bed):
    result = cli("--config", bed.config, "-o", "json", "doctor", "--env", "prod")
    return result, {check["name"]: check for check in result.json()["checks"]}


def test_doctor_proves_access_through_the_exec_plugin_and_says_when_the_token_expires(cli, bed, tmp_path, monkeypatch):
    use_exec_kubeconfig(bed, tmp_path, monkeypatch)
    result, checks = doctor(cli, bed)
    assert result.code == 0, result.stdout
    assert checks["credentials prod"]["status"] == "ok"
    assert "exec `" in checks["credentials prod"]["detail"] and "(AWS_PROFILE ingest)" in checks["credentials prod"]["detail"]
    assert re.search(r"token expires at \d\d:\d\d:\d\dZ \(in 1[45] min\)$", checks["credentials prod"]["detail"])
    assert checks["access prod"]["detail"] == "all 41 permissions apply, rollback and status need in prod-environment"
    assert "reachable" in checks["cluster prod"]["detail"]


def test_doctor_fails_on_an_expired_sso_session_and_says_how_to_log_in(cli, bed, tmp_path, monkeypatch):
    use_exec_kubeconfig(bed, tmp_path, monkeypatch, "sso-expired")
    result, checks = doctor(cli, bed)
    assert result.code == 1
    creds = checks["credentials prod"]
    assert creds["status"] == "fail"
    assert creds["detail"] == f"credentials for ingest-eks-prod could not be obtained: {SSO_EXPIRED}"
    assert creds["hint"] == "log in again: `aws sso login --profile ingest`, then re-run this command"
    assert checks["cluster prod"]["status"] == "ok"  # /version answers anyone: reachability, not access
    assert "access prod" not in checks


def test_doctor_fails_on_a_v1alpha1_kubeconfig_with_the_command_that_regenerates_it(cli, bed, tmp_path, monkeypatch):
    use_exec_kubeconfig(bed, tmp_path, monkeypatch, api_version=V1ALPHA1)
    result, checks = doctor(cli, bed)
    assert result.code == 1
    creds = checks["credentials prod"]
    assert "client.authentication.k8s.io/v1alpha1, which helm 3.9 and later refuse" in creds["detail"]
    assert "aws eks update-kubeconfig --name ingest-eks-prod --alias ingest-eks-prod --region us-east-1" in creds["hint"]


def test_doctor_names_each_missing_permission(cli, bed, tmp_path, monkeypatch):
    use_exec_kubeconfig(bed, tmp_path, monkeypatch)
    bed.kube.deny("patch", "deployments", group="apps", namespace=NS)
    bed.kube.deny("create", "leases", group="coordination.k8s.io", namespace=NS)
    result, checks = doctor(cli, bed)
    assert result.code == 1
    failed = {name: check for name, check in checks.items() if check["status"] == "fail"}
    assert set(failed) == {"access prod patch deployments.apps", "access prod create leases.coordination.k8s.io"}
    patch = failed["access prod patch deployments.apps"]
    assert patch["detail"] == "cannot patch deployments.apps in prod-environment (needed for the app (delete: --force-refresh))"
    assert "aws sts get-caller-identity" in patch["hint"] and "AWS_PROFILE" in patch["hint"]
    assert "the deploy lock" in failed["access prod create leases.coordination.k8s.io"]["detail"]


def test_doctor_says_when_the_cluster_does_not_know_the_role(cli, bed, tmp_path, monkeypatch):
    use_exec_kubeconfig(bed, tmp_path, monkeypatch)
    bed.kube.unmap_user("*")
    result, checks = doctor(cli, bed)
    assert result.code == 1
    assert checks["credentials prod"]["status"] == "ok"  # the plugin gives a token; the cluster does not take it
    assert checks["access prod"]["detail"].startswith("the cluster refuses your credentials (HTTP 401")
    assert "aws-auth" in checks["access prod"]["hint"]


@pytest.mark.parametrize("command, context", [
    (("apply", "--env", "prod", "--app", "ingest-core", "--tag", "creds2", "--yes"), "ingest-eks-prod"),
    (("rollback", "--env", "prod", "--app", "ingest-core", "--yes"), "ingest-eks-prod"),
    (("status", "--env", "prod"), "ingest-eks-prod"),
    (("promote", "--from", "staging", "--to", "prod", "--app", "ingest-core", "--yes"), "ingest-eks-staging"),  # reads staging first
    (("deploy", "--env", "prod", "--yes"), "ingest-eks-prod"),
])
def test_every_cluster_command_refuses_on_an_expired_login_before_any_change(cli, bed, tmp_path, monkeypatch, app_repo,
                                                                             command, context):
    for tag in ("creds0", "creds1"):
        publish(bed, "ingest-core", tag)
        assert apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes").code == 0
    publish(bed, "ingest-core", "creds2")
    before, revisions = len(bed.kube.requests), history(bed, "ingest-core")
    remote_tags = app_repo.remote_git("tag")
    use_exec_kubeconfig(bed, tmp_path, monkeypatch, "sso-expired")
    monkeypatch.chdir(app_repo.checkout)

    result = cli("--config", bed.config, *command)

    assert result.code == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: credentials for {context} could not be obtained: {SSO_EXPIRED}"], result.stderr
    assert "  next: log in again: `aws sso login --profile ingest`, then re-run this command" in result.stderr
    assert "Traceback" not in result.stderr and "ERROR:root" not in result.stderr
    assert [r for r in bed.kube.requests[before:] if r["method"] != "GET"] == []
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("KUBECONFIG", str(bed.kubeconfig))
    assert history(bed, "ingest-core") == revisions
    assert app_repo.remote_git("tag") == remote_tags  # deploy: nothing tagged


def test_an_apply_through_the_exec_plugin_deploys(cli, bed, tmp_path, monkeypatch):
    use_exec_kubeconfig(bed, tmp_path, monkeypatch)
    publish(bed, "ingest-core", "exec1")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "exec1", "--yes")
    assert result.code == 0, result.stderr
    assert history(bed, "ingest-core")[-1]["status"] == "deployed"
    assert {r.get("user") for r in bed.kube.requests if r["method"] != "GET"} == {
        "arn:aws:sts::123456789012:assumed-role/ingest-deployer/on-call"}


def test_a_permission_missing_mid_run_is_named_with_the_verb_and_the_resource(cli, bed):
    publish(bed, "ingest-core", "deny1")
    bed.kube.deny("list", "deployments", group="apps", namespace=NS)
    result = cli("--config", bed.config, "status", "--env", "prod")
    assert result.code == 3, result.stderr
    assert ('error: not allowed to list deployments in ingest-eks-prod/prod-environment: deployments.apps is '
            'forbidden: User "kubernetes-admin" cannot list resource "deployments" in API group "apps"') in result.stderr
    assert "next: ask a cluster admin for `list` on deployments in prod-environment" in result.stderr
    assert "Traceback" not in result.stderr
    bed.kube.clear_denials()
    bed.kube.deny("patch", "deployments", group="apps", namespace=NS)
    assert apply(cli, bed, "--app", "ingest-core", "--tag", "deny1", "--yes").code == 0  # a first install creates, not patches
    publish(bed, "ingest-core", "deny2")
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "deny2", "--yes")
    assert result.code == 1, result.stderr
    assert 'cannot patch resource "deployments" in API group "apps" in the namespace "prod-environment"' in result.stderr
    assert "Traceback" not in result.stderr
    assert writes(bed)  # the first install did write; the failed upgrade is helm's, rolled back by helm


def test_a_lock_the_role_may_not_take_is_named_with_the_verb_and_the_resource(cli, bed):
    publish(bed, "ingest-core", "deny3")
    bed.kube.deny("create", "leases", group="coordination.k8s.io", namespace=NS)
    result = apply(cli, bed, "--app", "ingest-core", "--tag", "deny3", "--yes")
    assert result.code == 3, result.stderr
    assert ('cannot take the deploy lock prod-environment/manual-deploy-ingest-core: leases.coordination.k8s.io is forbidden: '
            'User "kubernetes-admin" cannot create resource "leases" in API group "coordination.k8s.io"') in result.stderr
    assert "next: `manual-deploy doctor --env <env>`" in result.stderr
    assert history(bed, "ingest-core") == []


def test_an_api_refusal_is_worded_once_whichever_command_meets_it():
    """kube.refusal: a 401 says the credentials were refused and how doctor finds out why; a 403 quotes the apiserver
    (it names the verb and the resource) and says what to ask for; neither shows headers or the rest of the body."""
    from kubernetes.client.exceptions import ApiException, ForbiddenException, UnauthorizedException

    from manual_deploy import kube
    from manual_deploy.errors import Refused

    status = '{"kind": "Status", "message": "leases.coordination.k8s.io is forbidden: User \\"u\\" cannot create", "code": 403}'
    forbidden = ForbiddenException(status=403, reason="Forbidden", body=status)
    unauthorized = UnauthorizedException(status=401, reason="Unauthorized", body='{"message": "Unauthorized"}')
    assert [kube.is_refusal(e) for e in (forbidden, unauthorized, ApiException(status=404), ApiException(status=500),
                                         ValueError("403"))] == [True, True, False, False, False]
    refused = kube.refusal(unauthorized, env="prod")
    assert isinstance(refused, Refused) and refused.exit_code == 3
    assert refused.message == "the cluster refused the credentials (HTTP 401 Unauthorized)"
    assert refused.hint.startswith("`manual-deploy doctor --env prod` says why") and "aws-auth" in refused.hint
    denied = kube.refusal(forbidden, message="not allowed to take the lock", need="`create` on leases")
    assert denied.message == ('not allowed to take the lock: leases.coordination.k8s.io is forbidden: User "u" cannot '
                              'create (HTTP 403)')
    assert denied.hint == ("ask a cluster admin for `create` on leases; `manual-deploy doctor --env <env>` lists every "
                           "permission a deploy needs")
    assert kube.refusal(forbidden, hint="do this").hint == "do this"


def test_a_failure_in_one_line():
    """kube.error_line: an API error as its status line (never the body, which may echo the request), a network error
    as the few words that matter, anything else as its type and last line."""
    from kubernetes.client.exceptions import ApiException

    from manual_deploy import kube

    assert kube.error_line(ApiException(status=503, reason="Service Unavailable")) == "HTTP 503 Service Unavailable"
    wrapped = ConnectionError("HTTPConnectionPool(host='x', port=9): Max retries exceeded (Caused by NewConnectionError("
                              "'...: Failed to establish a new connection: [Errno 111] Connection refused'))")
    assert kube.error_line(wrapped) == "ConnectionError: Connection refused"
    assert kube.error_line(RuntimeError("first\n\n  last words  \n")) == "RuntimeError: last words"
    assert kube.error_line(TimeoutError()) == "TimeoutError"
