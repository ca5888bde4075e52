"""`manual-deploy doctor` on the deploy bed: healthy, broken in one place at a time, and with things down."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bed import HELMS, KUBE_TOKEN, write_bed_config
from manual_deploy.doctor import Finding, checks_cluster, checks_remote, checks_tools, runner
from manual_deploy.config import parse_config
from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig

ENVS = ("dev", "staging", "prod")
SECRETS = {"QUAY_TOKEN": "fake-token-value-123", "QUAY_USERNAME": "ebi-ait+robot", "QUAY_PASSWORD": "fake-password-value-456"}


@pytest.fixture(autouse=True)
def no_quay_credentials(monkeypatch):
    for name in ("QUAY_TOKEN", "QUAY_USERNAME", "QUAY_PASSWORD", "MANUAL_DEPLOY_HELM"):
        monkeypatch.delenv(name, raising=False)


def lines(stdout: str) -> dict[str, str]:
    """{check name: its ✓/✗/! line} from the text report."""
    names = ["config", "helm", "git", "kubeconfig", "registry", "quay API", "deploy-config repo", "QUAY_TOKEN", "quay login",
             *(f"{kind} {env}" for kind in ("context", "cluster", "credentials", "access", "records", "config branch") for env in ENVS)]
    found = {}
    for line in stdout.splitlines():
        matching = [name for name in names if line[:1] in "✓✗!" and line[2:].startswith(name + " ")]
        if matching:
            found[max(matching, key=len)] = line
    return found


def by_name(result) -> dict[str, dict]:
    return {check["name"]: check for check in result.json()["checks"]}


def config_without_helm(bed, tmp_path: Path) -> Path:
    path = tmp_path / "no-helm.yaml"
    path.write_text("\n".join(line for line in bed.config.read_text().splitlines() if not line.startswith("helm:")))
    return path


def echoing_helm(tmp_path: Path) -> Path:
    """A helm (wrapper) that fails and prints its environment's secrets on the way out, as a `set -x` wrapper would."""
    script = tmp_path / "echoing-helm"
    script.write_text('#!/bin/sh\necho "helm: cannot start with QUAY_TOKEN=$QUAY_TOKEN QUAY_PASSWORD=$QUAY_PASSWORD '
                      'GITLAB_TOKEN=$GITLAB_TOKEN" >&2\nexit 1\n')
    script.chmod(0o755)
    return script


@pytest.fixture
def echoing_apiserver():
    """An apiserver (or a proxy in front of it) that answers /version and repeats the caller's bearer token in the
    reason of every other answer: the one line doctor shows of a failed cluster request."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.startswith("/version"):
                self._send(200, "OK", {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "gitCommit": "x",
                                       "gitTreeState": "clean", "buildDate": "x", "goVersion": "go1.22",
                                       "compiler": "gc", "platform": "linux/amd64"})
            else:
                self._echo()

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._echo()

        def _echo(self):
            said = f"cannot check {self.headers.get('Authorization')}"
            self._send(500, said, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": said, "code": 500})

        def _send(self, code: int, reason: str, body: dict):
            data = json.dumps(body).encode()
            self.send_response(code, reason)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def assert_never_shown(secrets, *outputs: str) -> None:
    for output in outputs:
        for secret in secrets:
            assert secret not in output


# --- healthy -----------------------------------------------------------------------------------------


def test_healthy_bed_every_check_passes(cli, bed, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    result = cli("--config", bed.config, "doctor")
    assert result.code == 0, result.stdout + result.stderr
    report = result.stdout.splitlines()
    assert all(line.startswith("✓ ") for line in report[:-1]), result.stdout
    expected = {"config", "helm", "git", "kubeconfig", "registry", "quay API", "deploy-config repo", "QUAY_TOKEN", "quay login",
                *(f"{kind} {env}" for kind in ("context", "cluster", "credentials", "access", "records", "config branch") for env in ENVS)}
    assert set(lines(result.stdout)) == expected
    assert report[-1] == f"{len(expected)} checks, 0 failed"
    found = lines(result.stdout)
    assert "(from --config)" in found["config"]
    assert "v3." in found["helm"] and "config helm.executable" in found["helm"]
    assert "ingest-eks-prod → " in found["context prod"] and "kubernetes v" in found["cluster prod"]
    assert "reachable" in found["cluster prod"] and "has a bearer token" in found["credentials prod"]
    assert "all 41 permissions apply, rollback and status need in prod-environment" in found["access prod"]
    assert "HTTP 200" in found["registry"] and "HTTP 404" in found["quay API"]  # the bed's api_url: any answer will do
    assert "dev at " in found["config branch dev"] and "master at " in found["config branch prod"]


def test_healthy_bed_json_and_secrets_never_printed(cli, bed, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MANUAL_DEPLOY_CONFIG", str(bed.config))
    result = cli("doctor", "-o", "json", "--env", "prod")
    assert result.code == 0, result.stdout + result.stderr
    data = result.json()
    assert data["ok"] is True
    assert {check["status"] for check in data["checks"]} == {"ok"}
    assert all(set(check) == {"name", "status", "detail", "hint"} for check in data["checks"])
    checks = by_name(result)
    assert "context dev" not in checks and "cluster prod" in checks  # --env narrows the per-env checks
    assert "($MANUAL_DEPLOY_CONFIG)" in checks["config"]["detail"].replace("from ", "")
    assert checks["QUAY_TOKEN"]["detail"] == "set"
    text = cli("doctor").stdout
    secrets = [secret for secret in (*SECRETS.values(), KUBE_TOKEN) if secret != SECRETS["QUAY_USERNAME"]]
    assert_never_shown(secrets, result.stdout, result.stderr, text)


def test_secrets_echoed_back_by_a_failing_tool_or_cluster_are_never_printed(cli, bed, tmp_path, monkeypatch,
                                                                            echoing_apiserver):
    """The same secrets, now carried into doctor's words: a helm that prints its environment when it fails, and a
    cluster that repeats the kubeconfig's bearer token in its answer. Both reach the report, masked."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MANUAL_DEPLOY_HELM", str(echoing_helm(tmp_path)))
    kubeconfig = write_kubeconfig(tmp_path / "echoing", ingest_contexts(echoing_apiserver), token=KUBE_TOKEN)
    config = config_without_helm(bed, tmp_path)
    text = cli("--config", config, "doctor", "--env", "prod", "--kubeconfig", kubeconfig)
    result = cli("--config", config, "-o", "json", "doctor", "--env", "prod", "--kubeconfig", kubeconfig)
    assert result.code == text.code == 1, result.stdout + result.stderr
    checks = by_name(result)
    assert "QUAY_TOKEN=*** QUAY_PASSWORD=***" in checks["helm"]["detail"]  # the echo did reach the report
    assert checks["access prod"]["detail"] == "cannot ask what you may do: HTTP 500 cannot check Bearer ***"
    secrets = [secret for secret in (*SECRETS.values(), KUBE_TOKEN) if secret != SECRETS["QUAY_USERNAME"]]
    assert_never_shown(secrets, result.stdout, result.stderr, text.stdout, text.stderr)


def test_missing_credentials_warn_but_do_not_fail(cli, bed):
    result = cli("--config", bed.config, "doctor", "--env", "dev")
    assert result.code == 0, result.stdout + result.stderr
    found = lines(result.stdout)
    assert found["QUAY_TOKEN"].startswith("! QUAY_TOKEN") and "not set" in found["QUAY_TOKEN"]
    assert found["quay login"].startswith("! ")
    assert "next: export QUAY_TOKEN=" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("0 failed, 2 warnings")


# --- one thing broken --------------------------------------------------------------------------------


def test_missing_context_fails_with_how_to_get_it(cli, bed, tmp_path):
    contexts = {name: spec for name, spec in ingest_contexts(bed.kube.url).items() if name != "ingest-eks-prod"}
    kubeconfig = write_kubeconfig(tmp_path / "no-prod", contexts, token=KUBE_TOKEN)
    result = cli("--config", bed.config, "-o", "json", "doctor", "--kubeconfig", kubeconfig)
    assert result.code == 1
    data = result.json()
    assert data["ok"] is False
    checks = by_name(result)
    prod = checks["context prod"]
    assert prod["status"] == "fail" and "'ingest-eks-prod' is not in" in prod["detail"]
    assert "make retrieve-kubeconfig-prod" in prod["hint"] and "aws eks update-kubeconfig --name ingest-eks-prod" in prod["hint"]
    assert "cluster prod" not in checks  # no context, nothing to ask
    assert checks["cluster dev"]["status"] == "ok" and checks["context staging"]["status"] == "ok"
    assert [c["name"] for c in data["checks"] if c["status"] == "fail"] == ["context prod"]
    assert "error: doctor: " in result.stderr  # stdout holds only the JSON report


def test_unreachable_registry_fails(cli, deploy_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    config = write_bed_config(tmp_path / "c.yaml", registry_url="http://127.0.0.1:9", deploy_url=deploy_repo.url, helm=HELMS["helm3"])
    result = cli("--config", config, "doctor", "--env", "dev")
    assert result.code == 1
    found = lines(result.stdout)
    assert found["registry"].startswith("✗ ") and "http://127.0.0.1:9/v2/ unreachable" in found["registry"]
    assert found["quay API"].startswith("✗ ") and "Connection refused" in found["quay API"]
    assert "next: check the network/VPN" in result.stdout and "curl -sS" in result.stdout
    assert found["deploy-config repo"].startswith("✓ ") and found["helm"].startswith("✓ ")
    assert "✗ kubeconfig" in result.stdout and "✗ context dev" in result.stdout
    assert "cluster dev" not in found
    assert result.stdout.splitlines()[-1].startswith(f"{len(found)} checks, 4 failed")


def test_config_branch_missing_fails(cli, bed, tmp_path):
    config = tmp_path / "branch.yaml"
    config.write_text(bed.config.read_text().replace("config_branch: dev", "config_branch: no-such-branch"))
    result = cli("--config", config, "-o", "json", "doctor", "--env", "dev")
    assert result.code == 1
    branch = by_name(result)["config branch dev"]
    assert branch["status"] == "fail" and "'no-such-branch'" in branch["detail"] and "master" in branch["detail"]
    assert "environments.dev.config_branch" in branch["hint"]


def test_helm_not_executable_fails(cli, bed, tmp_path, monkeypatch):
    not_executable = tmp_path / "helm"
    not_executable.write_text("not a program")
    monkeypatch.setenv("MANUAL_DEPLOY_HELM", str(not_executable))
    result = cli("--config", config_without_helm(bed, tmp_path), "doctor", "--env", "dev")
    assert result.code == 1
    helm = lines(result.stdout)["helm"]
    assert helm.startswith("✗ ") and "not an executable file" in helm and "$MANUAL_DEPLOY_HELM" in helm
    assert "next: install helm ≥ 3.8" in result.stdout


def test_helm_not_on_path_fails(cli, bed, tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "git").symlink_to("/usr/bin/git" if Path("/usr/bin/git").exists() else os.popen("command -v git").read().strip())
    monkeypatch.setenv("PATH", str(tools))
    result = cli("--config", config_without_helm(bed, tmp_path), "-o", "json", "doctor", "--env", "dev")
    assert result.code == 1
    helm = by_name(result)["helm"]
    assert helm["status"] == "fail" and "helm was not found on PATH" in helm["detail"]
    assert "MANUAL_DEPLOY_HELM" in helm["hint"]
    assert by_name(result)["git"]["status"] == "ok"


def test_helm_version_checked(tmp_path):
    """Below 3.8 is a failure; helm 4 is fine. Version from `helm version --template`, an argument list."""
    old = tmp_path / "old-helm"
    old.write_text('#!/bin/sh\n[ "$1 $2 $3" = "version --template {{.Version}}" ] && printf v3.7.2\n')
    old.chmod(0o755)
    env = {"MANUAL_DEPLOY_HELM": str(old)}
    check = checks_tools.helm_check(None, env)
    assert check.status == "fail" and "v3.7.2" in check.detail and "older than 3.8" in check.detail
    assert check.hint.startswith("install helm ≥ 3.8")
    check = checks_tools.helm_check(None, {"MANUAL_DEPLOY_HELM": str(HELMS["helm4"])})
    assert check.status == "ok" and check.detail.startswith("v4.") and "$MANUAL_DEPLOY_HELM" in check.detail


def test_invalid_config_is_reported_and_the_rest_still_checked(cli, tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("registry: {url: http://x, api_url: http://x/api, namespace: n, nmespace: typo}\n")
    monkeypatch.setenv("MANUAL_DEPLOY_CONFIG", str(bad))
    result = cli("-o", "json", "doctor")
    assert result.code == 1
    checks = by_name(result)
    assert checks["config"]["status"] == "fail" and "registry.nmespace: unknown key" in checks["config"]["detail"]
    assert "$MANUAL_DEPLOY_CONFIG" in checks["config"]["detail"]
    assert {"helm", "git", "kubeconfig", "QUAY_TOKEN", "quay login"} <= set(checks)


def test_unknown_env_is_a_usage_error(cli, bed):
    result = cli("--config", bed.config, "doctor", "--env", "qa")
    assert result.code == 2
    assert "unknown environment 'qa'" in result.stderr


# --- bounded in time ---------------------------------------------------------------------------------


@pytest.fixture
def black_hole():
    """A loopback port that accepts connections (the kernel does) and never answers: every read hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


HANGING = ("registry", "quay API", "deploy-config repo", "cluster dev", "cluster staging", "cluster prod")


def record_starts(monkeypatch) -> dict[str, float]:
    """When each network check began, by its name in the report."""
    started: dict[str, float] = {}

    def timed(module, function: str, name):
        real = getattr(module, function)

        def run(*args, **kwargs):
            started[name(*args)] = time.monotonic()
            return real(*args, **kwargs)

        monkeypatch.setattr(module, function, run)

    timed(checks_cluster, "cluster_checks", lambda target: f"cluster {target.env}")
    timed(checks_remote, "registry_check", lambda *_: "registry")
    timed(checks_remote, "quay_api_check", lambda *_: "quay API")
    timed(checks_remote, "deploy_repo_checks", lambda *_: "deploy-config repo")
    return started


def test_doctor_is_quick_when_everything_hangs(cli, tmp_path, black_hole, monkeypatch):
    """Registry, quay API, three clusters and the deploy repo all hang, each until its own timeout (2.5-5 s):
    serially ≥ 25 s, concurrently ~5 s. Doctor's deadline (8 s) caps the time either way, so what tells the two
    apart is that all six start together and each ends by its own timeout, never by the deadline."""
    started = record_starts(monkeypatch)
    hole = f"http://{black_hole}"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", ingest_contexts(hole), token=KUBE_TOKEN)
    config = write_bed_config(tmp_path / "c.yaml", registry_url=hole, deploy_url=f"{hole}/ingest-kube-deployment.git", helm=HELMS["helm3"])
    began = time.monotonic()
    result = cli("--config", config, "-o", "json", "doctor", "--kubeconfig", kubeconfig)
    elapsed = time.monotonic() - began
    assert result.code == 1
    checks = by_name(result)
    for name in HANGING:
        assert checks[name]["status"] == "fail", checks[name]
        assert checks[name]["hint"]
        assert f"no answer within {runner.DEADLINE_S:g} s" not in checks[name]["detail"], checks[name]  # its own timeout
    for name in ("registry", "quay API", "cluster dev", "cluster staging", "cluster prod"):
        assert "timed out" in checks[name]["detail"], checks[name]
    assert "no answer within 5 s" in checks["deploy-config repo"]["detail"]
    assert set(started) == set(HANGING)
    assert max(started.values()) - min(started.values()) < 1.5, started  # serially, each waits ≥ 2.5 s for the last
    assert elapsed < runner.DEADLINE_S + 2, elapsed


def test_probes_run_at_once():
    """Six probes of 1 s each: at once ~1 s; one after another 6 s, cut off at the 4 s deadline."""
    started: list[float] = []

    def slow(name: str):
        def run():
            started.append(time.monotonic())
            time.sleep(1.0)
            return [Finding(name, "ok", "slept")]
        return runner.Probe(name, run)

    began = time.monotonic()
    found = runner.run_probes([slow(f"p{i}") for i in range(6)], deadline_s=4.0)
    elapsed = time.monotonic() - began
    assert [f.detail for name in sorted(found) for f in found[name]] == ["slept"] * 6
    assert max(started) - min(started) < 0.5, started
    assert elapsed < 2.0, elapsed


def test_every_network_call_gets_a_short_timeout(monkeypatch, tmp_path):
    """What each check passes down, without waiting for anything: ≤ 5 s per call, no transport retries."""
    import requests
    from kubernetes import client

    seen = {}

    class Answer:
        status_code = 401

        def close(self):
            pass

    def fake_get(url, **kwargs):
        seen[url] = kwargs["timeout"]
        return Answer()

    def fake_get_code(self, **kwargs):
        seen["cluster"] = kwargs["_request_timeout"]
        seen["retries"] = self.api_client.configuration.retries
        return client.VersionInfo(git_version="v1.30.0", build_date="", compiler="", git_commit="", git_tree_state="",
                                  go_version="", major="1", minor="30", platform="")

    monkeypatch.setattr(requests, "get", fake_get)
    monkeypatch.setattr(client.VersionApi, "get_code", fake_get_code)
    assert checks_remote.registry_check("http://r", "c.yaml").status == "ok"
    assert checks_remote.quay_api_check("http://r/api/v1", "c.yaml").status == "ok"
    kubeconfig = write_kubeconfig(tmp_path / "kc", ingest_contexts("http://127.0.0.1:9"), token=KUBE_TOKEN)
    config = parse_config(write_bed_config(tmp_path / "c.yaml", registry_url="http://r", deploy_url="x", helm=HELMS["helm3"]).read_text(), "c")
    from manual_deploy.kube import resolve_target

    assert checks_cluster.cluster_check(resolve_target(config, "prod", kubeconfig=str(kubeconfig))).status == "ok"
    assert seen["http://r/v2/"] == seen["http://r/api/v1/discovery"] == checks_remote.HTTP_TIMEOUT
    assert sum(checks_remote.HTTP_TIMEOUT) <= 5 and seen["cluster"] == runner.CHECK_TIMEOUT_S <= 5
    assert seen["retries"] is False


def test_gitlab_token_is_checked_when_gitlab_is_configured_and_never_shown(cli, bed, tmp_path, monkeypatch):
    """The GitLab record comes after the outage, so a missing GITLAB_TOKEN warns and does not fail."""
    from bed import write_bed_config

    monkeypatch.delenv("GITLAB_TOKEN", raising=False)  # an engineer's own shell may export one
    config = write_bed_config(tmp_path / "gl.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                              helm=bed.helm, gitlab_url="https://gitlab.example.org")
    missing = cli("--config", config, "-o", "json", "doctor", "--env", "prod")
    assert missing.code == 0, missing.stdout + missing.stderr
    check = by_name(missing)["GITLAB_TOKEN"]
    assert check["status"] == "warn" and "https://gitlab.example.org" in check["detail"] and "gitlab-sync" in check["hint"]
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-doctor-secret-0123456789")
    present = cli("--config", config, "-o", "json", "doctor", "--env", "prod")
    assert by_name(present)["GITLAB_TOKEN"]["status"] == "ok"
    assert "glpat-doctor-secret" not in present.stdout + present.stderr
    # the token in what doctor reports on: a deploy-repo URL that carries it (git repeats the URL when it cannot
    # connect) and a helm that prints its environment when it fails
    leaky = write_bed_config(tmp_path / "leaky.yaml", registry_url=bed.registry.url, helm=echoing_helm(tmp_path),
                             deploy_url="http://127.0.0.1:9/ingest.git?private_token=glpat-doctor-secret-0123456789",
                             gitlab_url="https://gitlab.example.org")
    for output in ("text", "json"):
        echoed = cli("--config", leaky, "-o", output, "doctor", "--env", "prod")
        assert echoed.code == 1
        assert "GITLAB_TOKEN=***" in echoed.stdout and "private_token=***" in echoed.stdout  # it did reach the report
        assert "glpat-doctor-secret" not in echoed.stdout + echoed.stderr
    assert "GITLAB_TOKEN" not in by_name(cli("--config", bed.config, "-o", "json", "doctor", "--env", "prod"))
