"""`manual-deploy wait-image` against the real registry (Debian's docker-registry) and the quay stand-in.

The quay API is not reachable here, so `manual_deploy_sandbox.quay.QuayStandIn` plays it with quay's
JSON shapes; registry faults (500/429) come from a small proxy in front of the real registry.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import interrupt_when
from manual_deploy import state
from manual_deploy_sandbox.faults import FaultProxy
from manual_deploy_sandbox.quay import QuayStandIn
from manual_deploy_sandbox.registry import TokenServer, publish_image, start_registry

APP = "ingest-core"
REPO = f"ebi-ait/{APP}"
FAST_FAIL_BUILD = [("waiting", 0.2), ("building", 0.4), ("error", 0)]


def write_config(path: Path, registry_url: str, api_url: str) -> Path:
    path.write_text(
        f"""
registry: {{url: "{registry_url}", api_url: "{api_url}", namespace: ebi-ait}}
deployment_repo: {{url: /nonexistent/ingest-kube-deployment.git}}
environments:
  dev: {{kube_context: ingest-eks-dev, namespace: dev-environment, config_branch: dev, source_branch: dev}}
  prod: {{kube_context: ingest-eks-prod, namespace: prod-environment, config_branch: master, source_branch: master, confirm: true}}
apps:
  ingest-core: {{}}
"""
    )
    return path


@pytest.fixture
def quay(registry):
    with QuayStandIn(registry.url) as stand_in:
        yield stand_in


@pytest.fixture
def config(tmp_path, registry, quay):
    return write_config(tmp_path / "config.yaml", registry.url, quay.api_url)


def unique_tag(request) -> str:
    return f"t{abs(hash(request.node.name)) % 10**7:07d}{int(time.time() * 1000) % 100000:05d}"


def wait(cli, config, *args):
    return cli("--config", config, "wait-image", "--app", APP, *args)


def test_image_already_there_returns_at_once(cli, config, registry, quay, request):
    tag = unique_tag(request)
    digest = publish_image(registry.url, REPO, tag)

    result = wait(cli, config, "--tag", tag, "-o", "json")

    assert result.code == 0, result.stderr
    data = result.json()
    assert data["digest"] == digest
    assert data["reference"] == f"{registry.host}/{REPO}:{tag}@{digest}"
    assert data["already_present"] is True


def test_build_runs_to_complete_and_prints_the_pinned_image(cli, config, registry, quay, request):
    tag = unique_tag(request)
    phases = [("waiting", 0.3), ("building", 2.5), ("pushing", 2.5), ("complete", 0)]  # each > one API poll
    quay.add_build(APP, tag, phases=phases, commit="0ec3e066" + "0" * 32)

    result = wait(cli, config, "--tag", tag)

    assert result.code == 0, result.stderr
    digest = quay.published[(APP, tag)]["digest"]
    assert result.stdout == f"{registry.host}/{REPO}:{tag}@{digest}\n"
    assert "building" in result.stderr and "pushing" in result.stderr
    assert "0ec3e06" in result.stderr  # the build's display name (short sha)


def test_failed_build_stops_at_once_with_id_reason_and_url(cli, config, quay, request):
    tag = unique_tag(request)
    build_id = quay.add_build(APP, tag, phases=FAST_FAIL_BUILD, error="step 3/7: ./gradlew assemble failed")

    started = time.monotonic()
    result = wait(cli, config, "--tag", tag, "--timeout", "5m", "--no-build-timeout", "5m")
    took = time.monotonic() - started

    assert result.code == 1, result.stderr
    assert build_id in result.stderr
    assert "phase error" in result.stderr and "./gradlew assemble failed" in result.stderr
    assert f"{quay.api_url.removesuffix('/api/v1')}/repository/{REPO}/build/{build_id}" in result.stderr
    assert result.stdout == ""
    # Fail fast: the error showed after ~0.6 s; one API poll interval (2 s) later we must be out.
    assert took < 5, took
    assert (APP, tag) not in quay.published


def test_internalerror_is_not_final(cli, config, quay, request):
    tag = unique_tag(request)
    phases = [("building", 0.3), ("internalerror", 2.5), ("building", 0.3), ("pushing", 0.2), ("complete", 0)]
    quay.add_build(APP, tag, phases=phases)

    result = wait(cli, config, "--tag", tag)

    assert result.code == 0, result.stderr
    assert "internalerror" in result.stderr
    assert result.stdout.strip().endswith(quay.published[(APP, tag)]["digest"])


def test_no_build_ever_times_out_with_likely_causes(cli, config, quay, request):
    tag = unique_tag(request)
    result = wait(cli, config, "--tag", tag, "--no-build-timeout", "3s")
    assert result.code == 4, result.stderr
    assert f"no quay build for tag {tag}" in result.stderr
    for cause in ("trigger", "regex", "[skip build]"):
        assert cause in result.stderr


def test_overall_timeout_names_the_phase(cli, config, quay, request):
    tag = unique_tag(request)
    quay.add_build(APP, tag, phases=[("building", 600), ("complete", 0)])
    result = wait(cli, config, "--tag", tag, "--timeout", "3s")
    assert result.code == 4, result.stderr
    assert "gave up after 3s" in result.stderr and "building" in result.stderr
    # Polite to quay: the build list is read every 2 s, so 3 s of waiting costs at most 2-3 API calls.
    assert 1 <= len([r for r in quay.requests if r["path"].endswith("/build/")]) <= 3


def test_registry_500s_and_429_then_ok(cli, tmp_path, registry, quay, request):
    tag = unique_tag(request)
    with FaultProxy(registry.url) as proxy:
        digest = publish_image(registry.url, REPO, tag)
        proxy.fail_next(500, 503, 500, 429, retry_after=1)
        config = write_config(tmp_path / "c.yaml", proxy.url, quay.api_url)

        result = wait(cli, config, "--tag", tag)

        assert result.code == 0, result.stderr
        assert result.stdout.strip() == f"{proxy.host}/{REPO}:{tag}@{digest}"
        statuses = [r["status"] for r in proxy.requests]
        assert statuses[:4] == [500, 503, 500, 429] and statuses[-1] == 200
        assert "Traceback" not in result.stderr


def test_api_429_and_500_are_ridden_out(cli, config, quay, request):
    tag = unique_tag(request)
    quay.fail_next(429, 500, 500, 500, retry_after=1)
    quay.add_build(APP, tag)
    result = wait(cli, config, "--tag", tag)
    assert result.code == 0, result.stderr
    assert result.stdout.strip().endswith(quay.published[(APP, tag)]["digest"])


def test_private_repo_api_refused_still_succeeds_via_manifest(cli, config, quay, request):
    tag = unique_tag(request)
    quay.private = True
    quay.add_build(APP, tag)

    result = wait(cli, config, "--tag", tag)

    assert result.code == 0, result.stderr
    assert result.stderr.count("warning:") == 1
    assert "QUAY_TOKEN" in result.stderr
    assert result.stdout.strip().endswith(quay.published[(APP, tag)]["digest"])


@pytest.mark.parametrize("kind", ["docker", "oci", "oci-index"])
def test_manifest_kinds_resolve_to_their_digest(cli, config, registry, request, kind):
    tag = unique_tag(request)
    digest = publish_image(registry.url, REPO, tag, kind=kind)
    result = wait(cli, config, "--tag", tag, "-o", "json")
    assert result.code == 0, result.stderr
    assert result.json()["digest"] == digest


@pytest.fixture
def authed_registry(tmp_path_factory):
    """A registry behind the Bearer challenge; its token realm wants Basic credentials."""
    with TokenServer("registry-token-xyz", require_basic=("robot+ci", "robot-password-789")) as tokens:
        reg = start_registry(tmp_path_factory.mktemp("authreg"), auth_realm=tokens.url, service="test-registry")
        try:
            yield reg, tokens
        finally:
            reg.stop()


def test_token_flow_with_credentials(cli, tmp_path, authed_registry, quay, monkeypatch, request):
    reg, tokens = authed_registry
    tag = unique_tag(request)
    digest = publish_image(reg.url, REPO, tag, token="any")
    monkeypatch.setenv("QUAY_USERNAME", "robot+ci")
    monkeypatch.setenv("QUAY_PASSWORD", "robot-password-789")
    config = write_config(tmp_path / "c.yaml", reg.url, quay.api_url)

    result = wait(cli, config, "--tag", tag, "-v")

    assert result.code == 0, result.stderr
    assert result.stdout.strip().endswith(digest)
    assert tokens.requests, "the client must have asked the realm for a token"
    query = tokens.requests[0]["query"]
    assert query.get("service") == "test-registry" and query.get("scope") == f"repository:{REPO}:pull"
    assert (tokens.requests[0]["authorization"] or "").startswith("Basic ")
    for secret in ("robot-password-789", "registry-token-xyz"):
        assert secret not in result.stdout + result.stderr


def test_token_flow_refused_without_credentials_is_exit_3(cli, tmp_path, authed_registry, quay, request):
    reg, _ = authed_registry
    config = write_config(tmp_path / "c.yaml", reg.url, quay.api_url)
    result = wait(cli, config, "--tag", unique_tag(request))
    assert result.code == 3, result.stderr
    assert "QUAY_USERNAME" in result.stderr


def test_no_secret_in_any_output(cli, config, quay, monkeypatch, request):
    secrets = {"QUAY_TOKEN": "fake-quay-token-123456", "QUAY_PASSWORD": "fake-pass-456789", "QUAY_USERNAME": "robot"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    ok_tag, bad_tag = unique_tag(request) + "a", unique_tag(request) + "b"
    quay.add_build(APP, ok_tag)
    quay.add_build(APP, bad_tag, phases=FAST_FAIL_BUILD)

    runs = [wait(cli, config, "--tag", ok_tag, "-v"), wait(cli, config, "--tag", bad_tag, "-v", "-o", "json")]

    assert [r.code for r in runs] == [0, 1]
    everything = "".join(r.stdout + r.stderr for r in runs)
    for value in ("fake-quay-token-123456", "fake-pass-456789"):
        assert value not in everything
    # The token was really sent to the API: quay showed trigger metadata only to authenticated callers.
    assert any(r["authorization"] == "Bearer fake-quay-token-123456" for r in quay.requests)


def test_chains_after_tag_with_no_arguments(cli, config, quay, app_repo, monkeypatch):
    monkeypatch.chdir(app_repo.checkout)
    tagged = cli("--config", config, "tag")
    assert tagged.code == 0, tagged.stderr
    tag = tagged.stdout.strip()
    quay.add_build(APP, tag)

    result = cli("--config", config, "wait-image")

    assert result.code == 0, result.stderr
    assert "recorded by `manual-deploy tag`" in result.stderr
    recorded = state.load(app_repo.checkout / ".git")
    assert recorded["tag"]["tag"] == tag
    assert recorded["image"]["reference"] == result.stdout.strip()
    assert recorded["image"]["digest"] == quay.published[(APP, tag)]["digest"]


def test_nothing_recorded_and_no_flags_is_exit_2(cli, config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("--config", config, "wait-image")
    assert result.code == 2
    assert "manual-deploy tag" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tag", "bad..tag"], "invalid tag"),
        (["--tag", "ok", "--timeout", "soon"], "invalid --timeout"),
        (["--tag", "ok", "--app", "ingest-nope"], "unknown app"),
    ],
)
def test_bad_input(cli, config, args, message):
    result = cli("--config", config, "wait-image", *(["--app", APP] if "--app" not in args else []), *args)
    assert result.code == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_exits_130_with_a_summary(config, quay, request):
    """A real process and a real SIGINT: the only way to see what the user sees on Ctrl-C."""
    tag = unique_tag(request)
    quay.add_build(APP, tag, phases=[("building", 600), ("complete", 0)])
    code, out, err = interrupt_when(
        ["--config", config, "wait-image", "--app", APP, "--tag", tag],
        lambda: any(r["path"].endswith("/build/") for r in quay.requests),
        settle=2.5,  # let it see the build's phase
    )
    assert code == 130, err
    assert "interrupted" in err and "building" in err and "Traceback" not in err
    assert out == ""


def test_progress_lines_keep_coming_while_waiting(registry, quay, request, capsys, tmp_path):
    """Domain level with a short progress interval, so the '≥ every N s' promise is seen in seconds."""
    from manual_deploy.config import parse_config
    from manual_deploy.console import Output
    from manual_deploy.errors import TimedOut
    from manual_deploy.wait_image import ImageWaiter, Schedule
    from manual_deploy.registry import QuayClient, RegistryClient

    tag = unique_tag(request)
    quay.add_build(APP, tag, phases=[("building", 600), ("complete", 0)])
    config = parse_config(write_config(tmp_path / "c.yaml", registry.url, quay.api_url).read_text(), "t")
    waiter = ImageWaiter(RegistryClient(registry.url), QuayClient(quay.api_url), Output(), Schedule(progress=0.5))

    with pytest.raises(TimedOut):
        waiter.wait(config.app(APP), tag, timeout=3.2, no_build_timeout=60)

    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("still waiting")]
    assert len(lines) >= 5, lines
    assert "building" in lines[-1] and "elapsed" in lines[-1]
