"""The sandbox stand-ins themselves: the real local registry, the token realm, the quay API and the fault proxy."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from manual_deploy_sandbox import registry as registry_module
from manual_deploy_sandbox.faults import FaultProxy
from manual_deploy_sandbox.quay import UNAUTHORIZED, QuayStandIn
from manual_deploy_sandbox.ports import free_port
from manual_deploy_sandbox.registry import (
    MANIFEST_ACCEPT,
    LocalRegistry,
    TokenServer,
    delete_image,
    publish_image,
    registry_binary,
    start_registry,
)

pytestmark = pytest.mark.skipif(registry_binary() is None, reason="apt-get install docker-registry")

T = 5  # seconds: timeout for every request made by the tests
FAST = [("waiting", 0.05), ("build-scheduled", 0.05), ("building", 0.05), ("pushing", 0.05), ("complete", 0)]


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll `predicate` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def head_manifest(base_url: str, repository: str, reference: str, *, accept: str | None = MANIFEST_ACCEPT,
                  token: str | None = None) -> requests.Response:
    headers = {"Accept": accept} if accept else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.head(f"{base_url}/v2/{repository}/manifests/{reference}", headers=headers, timeout=T)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()
    assert not pid_alive(reg.pid)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    with TokenServer("sandbox-token") as tokens:
        reg = start_registry(tmp_path_factory.mktemp("auth-registry"), auth_realm=tokens.url, service="sandbox")
        try:
            yield reg, tokens
        finally:
            reg.stop()
        assert not pid_alive(reg.pid)


@pytest.fixture
def quay(registry):
    with QuayStandIn(registry.url, api_token="api-secret") as stand_in:
        yield stand_in


def quay_get(quay: QuayStandIn, path: str, token: str | None = None, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{quay.api_url}{path}", params=params, headers=headers, timeout=T)


# ------------------------------------------------------------------------------------------ registry


@pytest.mark.parametrize("kind", ["docker", "oci", "oci-index"])
def test_published_image_is_visible_with_manifest_accept(registry, kind):
    digest = publish_image(registry.url, "ebi-ait/ingest-core", f"v1-{kind}", kind=kind)
    response = head_manifest(registry.url, "ebi-ait/ingest-core", f"v1-{kind}")
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == digest


def test_oci_index_is_not_served_without_accept(registry):
    """Documented registry quirk: no Accept header, no OCI index (a client must send MANIFEST_ACCEPT)."""
    publish_image(registry.url, "ebi-ait/ingest-core", "bare-accept", kind="oci-index")
    assert head_manifest(registry.url, "ebi-ait/ingest-core", "bare-accept", accept=None).status_code != 200


def test_each_publish_gets_a_new_digest_and_delete_removes_it(registry):
    first = publish_image(registry.url, "ebi-ait/ingest-broker", "v2")
    second = publish_image(registry.url, "ebi-ait/ingest-broker", "v2")
    assert first != second
    assert head_manifest(registry.url, "ebi-ait/ingest-broker", "v2").headers["Docker-Content-Digest"] == second
    delete_image(registry.url, "ebi-ait/ingest-broker", second)
    assert head_manifest(registry.url, "ebi-ait/ingest-broker", "v2").status_code == 404


def test_registry_context_manager_stops_it_idempotently(tmp_path):
    with start_registry(tmp_path) as reg:
        assert requests.get(f"{reg.url}/v2/", timeout=T).status_code == 200
        assert "level: warn" in (tmp_path / "config.yml").read_text()
    assert not pid_alive(reg.pid)
    reg.stop()  # second stop is a no-op
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{reg.url}/v2/", timeout=T)


def test_registry_left_running_is_stopped_at_interpreter_exit(tmp_path):
    script = ("import sys; from pathlib import Path; from manual_deploy_sandbox.registry import start_registry; "
              "print(start_registry(Path(sys.argv[1])).pid)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.strip())
    wait_until(lambda: not pid_alive(pid), timeout=3)


def test_registry_can_be_stopped_from_a_recorded_pid(tmp_path):
    started = start_registry(tmp_path)
    try:
        by_pid = LocalRegistry(url=started.url, host=started.host, root=started.root, pid=started.pid)
        assert by_pid.running
        by_pid.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{started.url}/v2/", timeout=T)
        assert not by_pid.running
    finally:
        started.stop()
    assert not pid_alive(started.pid)


def test_missing_binary_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_module, "registry_binary", lambda: None)
    with pytest.raises(RuntimeError, match="apt-get install docker-registry"):
        start_registry(tmp_path)


def test_silly_auth_challenges_with_the_token_realm(auth_registry):
    reg, tokens = auth_registry
    response = head_manifest(reg.url, "ebi-ait/ingest-core", "v1")
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{tokens.url}"' in challenge
    assert 'service="sandbox"' in challenge
    assert 'scope="repository:ebi-ait/ingest-core:pull"' in challenge


def test_token_flow_against_silly_auth(auth_registry):
    reg, tokens = auth_registry
    answer = requests.get(tokens.url, params={"service": "sandbox", "scope": "repository:ebi-ait/x:pull"}, timeout=T)
    assert answer.status_code == 200
    token = answer.json()["token"]
    assert token == "sandbox-token"
    assert tokens.requests[-1]["query"] == {"service": "sandbox", "scope": "repository:ebi-ait/x:pull"}
    assert tokens.requests[-1]["authorization"] is None
    digest = publish_image(reg.url, "ebi-ait/x", "v1", token=token)
    response = head_manifest(reg.url, "ebi-ait/x", "v1", token=token)
    assert (response.status_code, response.headers["Docker-Content-Digest"]) == (200, digest)


def test_token_server_require_basic():
    with TokenServer("t", require_basic=("robot", "pw")) as tokens:
        assert requests.get(tokens.url, timeout=T).status_code == 401
        assert requests.get(tokens.url, auth=("robot", "wrong"), timeout=T).status_code == 401
        ok = requests.get(tokens.url, auth=("robot", "pw"), timeout=T)
        assert (ok.status_code, ok.json()["token"]) == (200, "t")
        assert tokens.requests[-1]["authorization"].startswith("Basic ")
    tokens.stop()  # idempotent


# ------------------------------------------------------------------------------------------ quay


def test_build_walks_phases_and_publishes_before_complete(quay, registry):
    build_id = quay.add_build("ingest-core", "v3.0.0", phases=FAST, commit="0123456789abcdef")
    seen: list[str] = []

    def complete():
        body = quay_get(quay, f"/repository/ebi-ait/ingest-core/build/{build_id}").json()
        if not seen or seen[-1] != body["phase"]:
            seen.append(body["phase"])
            if body["phase"] == "complete":  # the image must already be there
                assert head_manifest(registry.url, "ebi-ait/ingest-core", "v3.0.0").status_code == 200
        return body["phase"] == "complete" and body

    body = wait_until(complete)
    assert quay.builds[build_id]["history"] == [phase for phase, _ in FAST]
    assert set(seen) <= {phase for phase, _ in FAST} and seen[-1] == "complete"
    assert body["display_name"] == "0123456" and body["tags"] == ["v3.0.0"] and body["error"] is None
    published = quay.published[("ingest-core", "v3.0.0")]
    assert published["at"] <= time.time()
    landed = head_manifest(registry.url, "ebi-ait/ingest-core", "v3.0.0")
    assert landed.headers["Docker-Content-Digest"] == published["digest"]


def test_error_build_publishes_nothing(quay, registry):
    build_id = quay.add_build("ingest-archiver", "v9", phases=[("waiting", 0.02), ("building", 0.05), ("error", 0)],
                              error="boom at step 3")
    body = wait_until(lambda: (b := quay_get(quay, f"/repository/ebi-ait/ingest-archiver/build/{build_id}").json())
                      ["phase"] == "error" and b)
    assert body["error"] == "boom at step 3"
    assert ("ingest-archiver", "v9") not in quay.published
    assert head_manifest(registry.url, "ebi-ait/ingest-archiver", "v9").status_code == 404


def test_build_whose_push_fails_ends_in_error():
    with QuayStandIn(f"http://127.0.0.1:{free_port()}") as quay:  # nothing listens there
        build_id = quay.add_build("ingest-core", "v6", phases=[("pushing", 0.02), ("complete", 0)])
        body = wait_until(lambda: (b := quay_get(quay, f"/repository/ebi-ait/ingest-core/build/{build_id}").json())
                          ["phase"] == "error" and b)
    assert body["error"].startswith("push failed")
    assert quay.published == {} and quay.publish_errors


def test_delay_hides_the_build_until_then(quay):
    build_id = quay.add_build("ingest-exporter", "v1", phases=[("waiting", 5), ("complete", 0)], delay=0.5)
    assert quay_get(quay, "/repository/ebi-ait/ingest-exporter/build/").json() == {"builds": []}
    assert quay_get(quay, f"/repository/ebi-ait/ingest-exporter/build/{build_id}").status_code == 404
    listed = wait_until(lambda: quay_get(quay, "/repository/ebi-ait/ingest-exporter/build/").json()["builds"])
    assert [(b["id"], b["phase"]) for b in listed] == [(build_id, "waiting")]


def test_build_list_newest_first_with_limit_and_shape(quay):
    older = quay.add_build("ingest-ui", "v1", phases=[("waiting", 5), ("complete", 0)])
    newer = quay.add_build("ingest-ui", "v2", phases=[("waiting", 5), ("complete", 0)], delay=0.05)
    wait_until(lambda: len(quay_get(quay, "/repository/ebi-ait/ingest-ui/build/").json()["builds"]) == 2)
    builds = quay_get(quay, "/repository/ebi-ait/ingest-ui/build/", limit=5).json()["builds"]
    assert [b["id"] for b in builds] == [newer, older]
    limited = quay_get(quay, "/repository/ebi-ait/ingest-ui/build/", limit=1).json()["builds"]
    assert [b["id"] for b in limited] == [newer]
    build = builds[0]
    assert build["started"].endswith("-0000") and build["display_name"] == "v2"
    assert build["repository"] == {"namespace": "ebi-ait", "name": "ingest-ui"}
    assert build["trigger"]["service"] == "github" and build["trigger_metadata"] is None
    assert quay_get(quay, "/repository/ebi-ait/never-built/build/").json() == {"builds": []}
    since = int(quay.builds[newer]["started"]) + 1
    assert quay_get(quay, "/repository/ebi-ait/ingest-ui/build/", since=since).json() == {"builds": []}


def test_fail_next_answers_in_order_with_retry_after(quay):
    quay.fail_next(500, 429, retry_after=1)
    first, second, third = (quay_get(quay, "/repository/ebi-ait/ingest-core/build/") for _ in range(3))
    assert (first.status_code, first.json()) == (500, {"error_message": "internal"})
    assert (second.status_code, second.headers["Retry-After"]) == (429, "1")
    assert third.status_code == 200
    assert [r["path"] for r in quay.requests] == ["/api/v1/repository/ebi-ait/ingest-core/build/"] * 3


def test_private_repo_needs_the_api_token(quay):
    quay.private = True
    anonymous = quay_get(quay, "/repository/ebi-ait/ingest-core/build/")
    assert (anonymous.status_code, anonymous.json()) == (401, UNAUTHORIZED)
    assert quay_get(quay, "/repository/ebi-ait/ingest-core/build/", token="api-secret").status_code == 200


def test_other_namespace_is_unauthorized_and_unknown_paths_404(quay):
    assert quay_get(quay, "/repository/someone-else/app/build/").status_code == 401
    assert quay_get(quay, "/nope").json()["error_type"] == "not_found"


def test_tag_endpoint_after_publish(quay):
    digest = quay.publish_now("ingest-core", "v4", kind="oci-index")
    body = quay_get(quay, "/repository/ebi-ait/ingest-core/tag/", specificTag="v4", onlyActiveTags="true").json()
    assert body["page"] == 1 and body["has_additional"] is False
    (tag,) = body["tags"]
    assert tag["name"] == "v4" and tag["manifest_digest"] == digest and tag["is_manifest_list"] is True
    assert tag["reversion"] is False and isinstance(tag["start_ts"], int) and isinstance(tag["size"], int)
    assert tag["last_modified"].endswith("-0000")
    assert quay_get(quay, "/repository/ebi-ait/ingest-core/tag/", specificTag="nope").json()["tags"] == []


def test_trigger_metadata_only_with_the_api_token(quay):
    build_id = quay.add_build("ingest-core", "v5", phases=[("waiting", 5), ("complete", 0)], commit="f" * 40)
    path = f"/repository/ebi-ait/ingest-core/build/{build_id}"
    assert quay_get(quay, path).json()["trigger_metadata"] is None
    metadata = quay_get(quay, path, token="api-secret").json()["trigger_metadata"]
    assert metadata["commit"] == "f" * 40 and metadata["ref"] == "refs/tags/v5"
    assert quay_get(quay, path, token="wrong").status_code == 401
    assert quay.requests[-2]["authorization"] == "Bearer api-secret"


# ------------------------------------------------------------------------------------------ fault proxy


def test_proxy_forwards_publish_and_head(registry):
    with FaultProxy(registry.url) as proxy:
        start = requests.post(f"{proxy.url}/v2/ebi-ait/proxied/blobs/uploads/", timeout=T)
        location = start.headers["Location"]
        assert location.startswith(proxy.url) or location.startswith("/")
        digest = publish_image(proxy.url, "ebi-ait/proxied", "v1", kind="oci-index")
        response = head_manifest(proxy.url, "ebi-ait/proxied", "v1")
        assert response.status_code == 200
        assert response.headers["Docker-Content-Digest"] == digest
        assert int(response.headers["Content-Length"]) > 0 and response.content == b""
        assert response.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
        assert proxy.requests[-1]["method"] == "HEAD" and proxy.requests[-1]["status"] == 200


def test_proxy_fail_next_and_stall_next(registry):
    publish_image(registry.url, "ebi-ait/flaky", "v1")
    with FaultProxy(registry.url) as proxy:
        proxy.fail_next(503, 429, retry_after=2)
        first, second = (head_manifest(proxy.url, "ebi-ait/flaky", "v1") for _ in range(2))
        assert (first.status_code, first.headers["Retry-After"]) == (503, "2")
        assert (second.status_code, second.headers["Retry-After"]) == (429, "2")
        proxy.stall_next(1.0)
        with pytest.raises(requests.ReadTimeout):
            requests.head(f"{proxy.url}/v2/ebi-ait/flaky/manifests/v1", headers={"Accept": MANIFEST_ACCEPT},
                          timeout=(T, 0.2))
        assert head_manifest(proxy.url, "ebi-ait/flaky", "v1").status_code == 200


def test_proxy_stop_is_idempotent(registry):
    proxy = FaultProxy(registry.url).start()
    assert requests.get(f"{proxy.url}/v2/", timeout=T).status_code == 200
    proxy.stop()
    proxy.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.url}/v2/", timeout=T)
