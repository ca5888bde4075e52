"""EKS-style authentication and authorization in the kube emulator, through the real clients.

The on-call path to EKS is an exec credential plugin (`aws eks get-token`); its failures (expired SSO
session, wrong profile, a role missing from aws-auth, a verb RBAC does not grant) are what the
product must explain at 3 a.m. These tests drive the stand-in plugin through the kubernetes Python
client and helm 3 / 4, and pin the exact words each layer produces. One emulator serves the module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from manual_deploy_sandbox.kube import KubeEmulator, exec_user, ingest_contexts, write_kubeconfig
from manual_deploy_sandbox.kube import auth, exec_plugin
from manual_deploy_sandbox.kube.exec_plugin import LOG_ENV, V1, V1ALPHA1, V1BETA1

REPO = Path(__file__).resolve().parents[1]
TOKEN, KEY = "static-admin-token", "sandbox-hmac-key-3c9d"
CONTEXT, NS = "ingest-eks-prod", "prod-environment"
ON_CALL = auth.DEFAULT_EXEC_USER
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized",
                "reason": "Unauthorized", "code": 401}
CHART = {
    "Chart.yaml": "apiVersion: v2\nname: slow\nversion: 0.1.0\n",
    "templates/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata: {name: {{ .Release.Name }}}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{ .Release.Name }}}}
  template:
    metadata: {labels: {app: {{ .Release.Name }}}}
    spec: {containers: [{name: app, image: example.org/slow:1}]}
""",
}


@pytest.fixture(scope="module")
def kube():
    # Pods take 2.5 s to become Ready: long enough for a 1-second token to expire inside one `helm --wait`.
    emulator = KubeEmulator(token=TOKEN, token_key=KEY, pod_start_delay=2.5, progress_deadline=30.0).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(autouse=True)
def fresh_policy(kube):
    yield
    kube.allow_all()


@pytest.fixture
def plugin_log(tmp_path) -> Path:
    return tmp_path / "plugin.jsonl"


@pytest.fixture
def kubeconfig(kube, tmp_path, plugin_log):
    """write(mode=..., api_version=..., ttl=...) -> a kubeconfig whose user runs the stand-in plugin."""
    def write(mode: str = "ok", **kwargs) -> Path:
        plugin = exec_user(kube, mode, extra_env=[(LOG_ENV, str(plugin_log))], **kwargs)
        return write_kubeconfig(tmp_path / f"kubeconfig-{mode}", ingest_contexts(kube.url), exec_user=plugin)
    return write


def runs(plugin_log: Path) -> list[dict]:
    return [json.loads(line) for line in plugin_log.read_text().splitlines()] if plugin_log.exists() else []


def python_client(path: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(path), context=CONTEXT, persist_config=False)


def admin_client(kube, tmp_path) -> client.ApiClient:
    return python_client(write_kubeconfig(tmp_path / "admin", ingest_contexts(kube.url), token=TOKEN))


def helm_binary(major: int) -> Path:
    env = os.environ.get(f"MANUAL_DEPLOY_HELM{major}")
    candidate = Path(env) if env else REPO / ".tools" / f"helm{major}"
    if not (candidate.is_file() and os.access(candidate, os.X_OK)):
        pytest.skip(f"helm {major} not found: set MANUAL_DEPLOY_HELM{major} or run "
                    f"`python -m manual_deploy_sandbox.helmbin .tools` (looked at {candidate})")
    return candidate


def helm(major: int, kubeconfig: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config"),
           "HELM_DATA_HOME": str(tmp_path / "data")}
    argv = [str(helm_binary(major)), *args, "-n", NS, "--kube-context", CONTEXT, "--kubeconfig", str(kubeconfig)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)


def bare_session(kube, tmp_path) -> requests.Session:
    (tmp_path / "ca.pem").write_bytes(kube.ca_pem)
    session = requests.Session()
    session.trust_env = False
    session.verify = str(tmp_path / "ca.pem")
    return session


# ------------------------------------------------------------------------------------- the plugin


def test_plugin_prints_an_exec_credential_in_the_requested_api_version(capsys):
    info = json.dumps({"kind": "ExecCredential", "apiVersion": V1, "spec": {"interactive": False}})
    before = time.time()
    code = exec_plugin.main(["--cluster-name", CONTEXT, "--region", "us-east-1", "--ttl", "60", "--user", "alice"],
                            {exec_plugin.KEY_ENV: KEY, "KUBERNETES_EXEC_INFO": info})
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["kind"] == "ExecCredential" and out["apiVersion"] == V1 and out["spec"] == {}
    token, stamp = out["status"]["token"], out["status"]["expirationTimestamp"]
    assert token.startswith("k8s-aws-v1.") and stamp.endswith("Z")
    expires = time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert before + 59 <= expires <= time.time() + 61
    assert auth.verify_token(KEY, token) == auth.User("alice", ("system:authenticated",))
    assert auth.verify_token("another-key", token) is None
    assert auth.verify_token(KEY, token, now=expires + 5) is None  # expired (past the 1 s grace)

    assert exec_plugin.main(["--cluster-name", CONTEXT], {exec_plugin.KEY_ENV: KEY}) == 0
    assert json.loads(capsys.readouterr().out)["apiVersion"] == V1BETA1  # no KUBERNETES_EXEC_INFO: v1beta1


@pytest.mark.parametrize(("mode", "stderr"), [
    ("sso-expired", "\nError when retrieving token from sso: Token has expired and refresh failed\n"),
    ("no-credentials", '\nUnable to locate credentials. You can configure credentials by running "aws configure".\n'),
    ("profile-not-found", "\nThe config profile (ingest-typo) could not be found\n"),
])
def test_plugin_fails_in_the_aws_cli_words(mode, stderr):
    env = {**os.environ, exec_plugin.KEY_ENV: KEY, exec_plugin.MODE_ENV: mode, "AWS_PROFILE": "ingest-typo"}
    proc = subprocess.run([sys.executable, "-m", "manual_deploy_sandbox.kube.exec_plugin", "--cluster-name", CONTEXT],
                          capture_output=True, text=True, timeout=30, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (255, "", stderr)


def test_plugin_without_a_key_has_no_credentials_and_garbage_and_hang_modes(capsys):
    assert exec_plugin.main(["--cluster-name", CONTEXT], {}) == 255
    assert capsys.readouterr().err == exec_plugin.NO_CREDENTIALS
    assert exec_plugin.main(["--cluster-name", CONTEXT], {exec_plugin.MODE_ENV: "garbage"}) == 0
    with pytest.raises(ValueError):
        json.loads(capsys.readouterr().out)
    started = time.monotonic()
    exec_plugin.main(["--cluster-name", CONTEXT], {exec_plugin.MODE_ENV: "hang", exec_plugin.HANG_ENV: "0.3"})
    assert time.monotonic() - started >= 0.3


# ------------------------------------------------------------------------------------ authentication


def test_anonymous_version_but_not_resources_and_bad_tokens_are_401(kube, tmp_path):
    with bare_session(kube, tmp_path) as http:
        assert http.get(kube.url + "/version", timeout=10).json()["gitVersion"] == "v1.31.0"
        assert all(http.get(kube.url + p, timeout=10).status_code == 200 for p in ("/healthz", "/readyz", "/livez"))
        anonymous = http.get(kube.url + "/api/v1/namespaces", timeout=10)
        assert anonymous.status_code == 401 and anonymous.json() == UNAUTHORIZED

        def status(token: str, path: str = "/api/v1/namespaces") -> int:
            return http.get(kube.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code

        assert status(TOKEN) == 200
        assert status(auth.sign_token(KEY, ON_CALL, time.time() + 60)) == 200
        assert status(auth.sign_token(KEY, ON_CALL, time.time() - 1)) == 401  # expired
        assert status(auth.sign_token("not-the-key", ON_CALL, time.time() + 60)) == 401
        assert status("k8s-aws-v1.garbage") == 401
        assert status("wrong", "/version") == 401  # a refused token is refused everywhere, as on EKS
    assert [r.get("user") for r in kube.requests[-6:]] == ["kubernetes-admin", ON_CALL, None, None, None, None]


def test_python_client_runs_the_plugin_and_caches_the_token(kube, kubeconfig, plugin_log):
    api = python_client(kubeconfig())
    try:
        core = client.CoreV1Api(api)
        for _ in range(3):
            assert NS in [n.metadata.name for n in core.list_namespace().items]
    finally:
        api.close()
    assert kube.requests[-1]["user"] == ON_CALL
    (run,) = runs(plugin_log)  # a 15-minute token: one run serves every request
    assert run["exec_info"] == {"kind": "ExecCredential", "apiVersion": V1BETA1, "spec": {"interactive": False}}


def test_python_client_reruns_the_plugin_for_short_lived_tokens(kube, kubeconfig, plugin_log):
    """True of kubernetes 37: a token expiring within 5 minutes counts as expired, so each request re-runs it."""
    api = python_client(kubeconfig(ttl=1))
    try:
        for _ in range(3):
            client.CoreV1Api(api).list_namespace()
    finally:
        api.close()
    assert len(runs(plugin_log)) >= 4


@pytest.mark.parametrize("major", [3, 4])
def test_helm_with_an_exec_user_caches_then_refreshes_the_token(major, kube, kubeconfig, plugin_log, tmp_path):
    listed = helm(major, kubeconfig(), tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert len(runs(plugin_log)) == 1  # cached across helm's discovery and list requests
    assert kube.requests[-1]["user"] == ON_CALL

    for name, text in CHART.items():
        (tmp_path / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "chart" / name).write_text(text)
    plugin_log.unlink()
    mark = len(kube.requests)
    release = f"slow{major}"
    try:
        installed = helm(major, kubeconfig(ttl=1), tmp_path, "upgrade", "--install", release, str(tmp_path / "chart"),
                         "--wait", "--timeout", "60s")
        assert installed.returncode == 0, installed.stderr
        by_helm = runs(plugin_log)
        assert len({r["ppid"] for r in by_helm}) == 1 and len(by_helm) >= 2  # one helm process, refreshed
        assert all(r["status"] != 401 and r["user"] == ON_CALL for r in kube.requests[mark:] if "user" in r)
    finally:
        helm(major, kubeconfig(), tmp_path, "uninstall", release)


@pytest.mark.parametrize("major", [3, 4])
def test_helm_shows_the_plugins_sso_error_and_refuses_v1alpha1(major, kubeconfig, tmp_path):
    expired = helm(major, kubeconfig("sso-expired"), tmp_path, "list")
    assert expired.returncode == 1
    assert "\nError when retrieving token from sso: Token has expired and refresh failed\n" in expired.stderr
    assert "getting credentials: exec: executable" in expired.stderr and "failed with exit code 255" in expired.stderr

    alpha = helm(major, kubeconfig(api_version=V1ALPHA1), tmp_path, "list")
    assert alpha.returncode == 1
    assert 'exec plugin: invalid apiVersion "client.authentication.k8s.io/v1alpha1"' in alpha.stderr


def test_python_client_accepts_v1alpha1_and_sends_no_token_when_the_plugin_fails(kube, kubeconfig, plugin_log):
    """True of kubernetes 37: any plugin apiVersion is accepted; a failing plugin is only logged and the
    requests go out without credentials, so the caller sees 401 rather than the plugin's stderr."""
    alpha = python_client(kubeconfig(api_version=V1ALPHA1))
    try:
        assert client.CoreV1Api(alpha).list_namespace().items
    finally:
        alpha.close()
    assert runs(plugin_log)[-1]["exec_info"]["apiVersion"] == V1ALPHA1

    expired = python_client(kubeconfig("sso-expired"))
    try:
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(expired).list_namespace()
    finally:
        expired.close()
    assert caught.value.status == 401 and json.loads(caught.value.body) == UNAUTHORIZED


@pytest.mark.parametrize("major", [3, 4])
def test_an_unmapped_role_is_401_everywhere(major, kube, kubeconfig, tmp_path):
    kube.unmap_user("arn:aws:sts::*:assumed-role/ingest-deployer/*")
    refused = helm(major, kubeconfig(), tmp_path, "list")
    assert refused.returncode == 1
    assert "the server has asked for the client to provide credentials" in refused.stderr
    api = python_client(kubeconfig())
    try:
        with pytest.raises(ApiException) as caught:
            client.CoreV1Api(api).list_namespaced_pod(NS)
    finally:
        api.close()
    assert caught.value.status == 401 and json.loads(caught.value.body) == UNAUTHORIZED
    admin = admin_client(kube, tmp_path)  # the static token is another user: still mapped
    try:
        listed = client.CoreV1Api(admin).list_namespaced_pod(NS)
        assert listed.kind == "PodList" and all(pod.metadata.namespace == NS for pod in listed.items)
    finally:
        admin.close()


# ------------------------------------------------------------------------------------- authorization


def _forbidden(call) -> dict:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403
    return json.loads(caught.value.body)


def test_denied_verbs_answer_rbacs_403(kube, kubeconfig, tmp_path):
    admin, api = admin_client(kube, tmp_path), python_client(kubeconfig())
    try:
        body = {"metadata": {"name": "ingest-core"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {
            "metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "example.org/x:1"}]}}}}
        client.AppsV1Api(admin).create_namespaced_deployment(NS, body)
        kube.deny("patch", "deployments", group="apps", namespace=NS)
        kube.deny("list", "deployments", group="apps", namespace=NS, user="arn:aws:sts::*")
        apps = client.AppsV1Api(api)
        named = _forbidden(lambda: apps.patch_namespaced_deployment("ingest-core", NS, {"spec": {"replicas": 2}}))
        assert named == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message":
                         f'deployments.apps "ingest-core" is forbidden: User "{ON_CALL}" cannot patch resource '
                         f'"deployments" in API group "apps" in the namespace "{NS}"',
                         "reason": "Forbidden", "details": {"name": "ingest-core", "group": "apps",
                                                            "kind": "deployments"}, "code": 403}
        collection = _forbidden(lambda: apps.list_namespaced_deployment(NS))
        assert collection["message"] == (f'deployments.apps is forbidden: User "{ON_CALL}" cannot list resource '
                                         f'"deployments" in API group "apps" in the namespace "{NS}"')
        assert collection["details"] == {"group": "apps", "kind": "deployments"}
        assert apps.read_namespaced_deployment("ingest-core", NS).metadata.name == "ingest-core"  # get: allowed
        assert client.AppsV1Api(admin).list_namespaced_deployment(NS).items  # the rule names other users
        assert _forbidden(lambda: client.AppsV1Api(admin).patch_namespaced_deployment(
            "ingest-core", NS, {"spec": {"replicas": 2}}))["message"].startswith(
            'deployments.apps "ingest-core" is forbidden: User "kubernetes-admin" cannot patch')

        kube.deny("get", "pods/log", namespace=NS)
        kube.deny("watch", "pods", namespace=NS)
        core = client.CoreV1Api(api)
        logs = _forbidden(lambda: core.read_namespaced_pod_log("p-1", NS))
        assert logs["message"] == (f'pods "p-1" is forbidden: User "{ON_CALL}" cannot get resource "pods/log" '
                                   f'in API group "" in the namespace "{NS}"')
        assert logs["details"] == {"name": "p-1", "kind": "pods"}
        listed = core.list_namespaced_pod(NS)  # list is not watch: the same pods the admin sees
        assert listed.kind == "PodList"
        assert [p.metadata.name for p in listed.items] == [p.metadata.name for p in client.CoreV1Api(admin).list_namespaced_pod(NS).items]
        assert _forbidden(lambda: core.list_namespaced_pod(NS, watch=True, timeout_seconds=1,
                                                           _preload_content=False))["message"].startswith(
            f'pods is forbidden: User "{ON_CALL}" cannot watch resource "pods"')
        kube.deny("get", "nodes")
        assert _forbidden(lambda: core.read_node("ip-10-0-1-23"))["message"].endswith(
            'cannot get resource "nodes" in API group "" at the cluster scope')
        kube.clear_denials()
        apps.patch_namespaced_deployment("ingest-core", NS, {"spec": {"replicas": 2}})
    finally:
        client.AppsV1Api(admin).delete_namespaced_deployment("ingest-core", NS)
        admin.close()
        api.close()


def test_a_counted_denial_refuses_only_that_many_requests(kube, kubeconfig, tmp_path):
    """A refusal that passes (a flapping webhook or binding): the undo tests refuse helm's own roll back
    this way and let the tool's roll back through; other rules and other verbs are untouched."""
    admin = admin_client(kube, tmp_path)
    try:
        apps = client.AppsV1Api(admin)
        body = {"metadata": {"name": "ingest-core"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {
            "metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "x", "image": "example.org/x:1"}]}}}}
        apps.create_namespaced_deployment(NS, body)
        kube.deny("patch", "deployments", group="apps", namespace=NS, times=2)
        kube.deny("delete", "deployments", group="apps", namespace=NS)
        scale = {"spec": {"replicas": 2}}
        for _ in range(2):
            refusal = _forbidden(lambda: apps.patch_namespaced_deployment("ingest-core", NS, scale))
            assert "cannot patch" in refusal["message"]
        assert apps.read_namespaced_deployment("ingest-core", NS).spec.replicas == 1  # get: never refused
        assert apps.patch_namespaced_deployment("ingest-core", NS, scale).spec.replicas == 2  # the third goes through
        assert "cannot delete" in _forbidden(lambda: apps.delete_namespaced_deployment("ingest-core", NS))["message"]
        kube.clear_denials()
    finally:
        client.AppsV1Api(admin).delete_namespaced_deployment("ingest-core", NS)
        admin.close()


@pytest.mark.parametrize("major", [3, 4])
def test_helm_reports_the_403_of_a_denied_list(major, kube, kubeconfig, tmp_path):
    kube.deny("list", "secrets", namespace=NS)
    denied = helm(major, kubeconfig(), tmp_path, "list")
    assert denied.returncode == 1
    assert (f'secrets is forbidden: User "{ON_CALL}" cannot list resource "secrets" in API group "" '
            f'in the namespace "{NS}"') in denied.stderr


def test_self_subject_access_review(kube, kubeconfig, tmp_path):
    api = python_client(kubeconfig())
    try:
        groups = client.ApisApi(api).get_api_versions().groups
        assert "authorization.k8s.io" in [g.name for g in groups]
        listed = client.AuthorizationV1Api(api).get_api_resources().resources
        (ssar,) = [r for r in listed if r.name == "selfsubjectaccessreviews"]
        assert (ssar.verbs, ssar.namespaced, ssar.kind) == (["create"], False, "SelfSubjectAccessReview")

        def review(verb: str, resource: str, group: str = "", name: str | None = None):
            attributes = client.V1ResourceAttributes(namespace=NS, verb=verb, group=group, resource=resource, name=name)
            body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=attributes))
            return client.AuthorizationV1Api(api).create_self_subject_access_review(body).status

        allowed = review("patch", "deployments", "apps", "ingest-core")
        assert allowed.allowed is True and ON_CALL in allowed.reason
        kube.deny("patch", "deployments", group="apps", namespace=NS)
        denied = review("patch", "deployments", "apps", "ingest-core")
        assert denied.allowed is False and not denied.denied  # RBAC never denies explicitly: it just does not allow
        assert review("get", "deployments", "apps").allowed is True
        assert kube.requests[-1]["path"] == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        assert kube.requests[-1]["status"] == 201
    finally:
        api.close()
    with bare_session(kube, tmp_path) as http:
        url = kube.url + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        assert http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 405
        assert http.post(url, json={}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 422
