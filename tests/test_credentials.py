"""Cluster credentials: the context's user, an exec plugin run as kubectl runs it, and what each failure says.

The plugins here are small scripts in tmp_path that behave as `aws eks get-token` does (real processes,
real exit codes and stderr); the end-to-end cases against the emulated EKS are in test_eks_access.py.
"""

from __future__ import annotations

import json
import stat
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from manual_deploy import credentials
from manual_deploy.errors import Refused

CONTEXT = "ingest-eks-prod"


def plugin(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-aws"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys, time\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def kubeconfig(command: str, *, api_version: str = "client.authentication.k8s.io/v1beta1", profile: str | None = "ingest",
               args: tuple[str, ...] = ("eks", "get-token", "--cluster-name", CONTEXT, "--region", "eu-west-2")) -> dict:
    env = [{"name": "AWS_PROFILE", "value": profile}] if profile else []
    return {"contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "oncall"}}],
            "users": [{"name": "oncall", "user": {"exec": {"apiVersion": api_version, "command": command,
                                                           "args": list(args), "env": env}}}]}


def user(command: str, **kwargs) -> credentials.User:
    return credentials.user_of(kubeconfig(command, **kwargs), CONTEXT)


def test_the_user_kinds_of_a_kubeconfig():
    data = {"contexts": [{"name": n, "context": {"user": n}} for n in ("t", "c", "none")],
            "users": [{"name": "t", "user": {"token": "s3cr3t"}}, {"name": "c", "user": {"client-certificate-data": "x"}},
                      {"name": "none", "user": {}}]}
    assert [credentials.user_of(data, n).kind for n in ("t", "c", "none", "missing")] == ["token", "client-certificate",
                                                                                          "none", "none"]
    found = user("aws")
    assert found.kind == "exec" and found.exec.profile == "ingest" and found.exec.cluster_name("x") == CONTEXT
    assert credentials.regenerate_command(found) == (
        f"aws eks update-kubeconfig --name {CONTEXT} --alias {CONTEXT} --region eu-west-2 --profile ingest")
    old = user("aws-iam-authenticator", args=("token", "-i", "ingest-eks-dev"), profile=None)
    assert credentials.regenerate_command(old).startswith("aws eks update-kubeconfig --name ingest-eks-dev ")


def test_a_working_plugin_gives_a_token_and_its_expiry(tmp_path):
    expires = (datetime.now(timezone.utc) + timedelta(minutes=14, seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    script = plugin(tmp_path, f"""
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
assert info["spec"]["interactive"] is False and os.environ["AWS_PROFILE"] == "ingest"
print(json.dumps({{"kind": "ExecCredential", "apiVersion": info["apiVersion"],
                   "status": {{"token": "k8s-aws-v1.secret", "expirationTimestamp": "{expires}"}}}}))""")
    token = credentials.obtain(user(str(script)))
    assert token.value == "k8s-aws-v1.secret" and "secret" not in repr(token)
    assert token.expiry().startswith("expires at ") and "(in 14 min)" in token.expiry()


@pytest.mark.parametrize("stderr, said, next_step", [
    ("\nError when retrieving token from sso: Token has expired and refresh failed\n",
     "Error when retrieving token from sso: Token has expired and refresh failed", "`aws sso login --profile ingest`"),
    ("\nThe config profile (ingest) could not be found\n", "The config profile (ingest) could not be found",
     "aws configure list-profiles"),
    ('\nUnable to locate credentials. You can configure credentials by running "aws configure".\n',
     "Unable to locate credentials", "`aws sso login --profile ingest`"),
    ("\nAn error occurred (AccessDenied) when calling the AssumeRole operation\n", "AccessDenied",
     "run it yourself to see why: `"),
])
def test_a_failing_plugin_is_one_refusal_with_its_words_and_the_fix(tmp_path, stderr, said, next_step):
    script = plugin(tmp_path, f"sys.stderr.write({stderr!r}); sys.exit(255)")
    with pytest.raises(Refused) as caught:
        credentials.obtain(user(str(script)))
    assert caught.value.message.startswith(f"credentials for {CONTEXT} could not be obtained: ")
    assert said in caught.value.message and next_step in caught.value.hint
    assert caught.value.exit_code == 3


def test_a_plugin_that_hangs_is_cut_off_and_one_that_prints_nonsense_is_named(tmp_path):
    hang = plugin(tmp_path, "time.sleep(30)")
    with pytest.raises(Refused) as caught:
        credentials.obtain(user(str(hang)), timeout_s=0.5)
    assert "did not answer within" in caught.value.message and "run it yourself" in caught.value.hint
    garbage = plugin(tmp_path, 'print("<html>login</html>")')
    with pytest.raises(Refused) as caught:
        credentials.obtain(user(str(garbage)))
    assert "printed no token" in caught.value.message


def test_v1alpha1_and_a_missing_command_are_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "ran"
    script = plugin(tmp_path, f'open("{marker}", "w").close()')
    with pytest.raises(Refused) as caught:
        credentials.obtain(user(str(script), api_version=credentials.V1ALPHA1))
    assert "client.authentication.k8s.io/v1alpha1, which helm 3.9 and later refuse" in caught.value.message
    assert f"aws eks update-kubeconfig --name {CONTEXT} --alias {CONTEXT}" in caught.value.hint
    with pytest.raises(Refused) as caught:
        credentials.obtain(user("aws-cli-that-is-not-installed"))
    assert "'aws-cli-that-is-not-installed' is not on PATH" in caught.value.message
    assert not marker.exists()


def test_a_relative_command_is_found_next_to_its_kubeconfig(tmp_path):
    script = plugin(tmp_path, 'print(json.dumps({"status": {"token": "t"}}))')
    data = kubeconfig(f"./{script.name}")
    assert credentials.obtain(credentials.user_of(data, CONTEXT, base_dir=tmp_path)).expiry() == "does not say when it expires"
    json.dumps(data)  # the kubeconfig under test is plain data
