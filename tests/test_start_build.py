"""`wait-image --start-build`: when quay's build trigger never fired for a pushed tag, start it and follow that build.

Against the real registry and the quay stand-in with build triggers (`manual_deploy_sandbox.quay_triggers`):
the stand-in's trigger start queues a build that plays its phases and pushes the real image.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from manual_deploy_sandbox.faults import FaultProxy
from manual_deploy_sandbox.quay import QuayStandIn
from manual_deploy_sandbox.registry import publish_image
from test_wait_image import APP, REPO, unique_tag, wait, write_config

ADMIN = "quay-admin-token-0123456789"  # has repo:admin
READ_ONLY = "quay-read-token-9876543210"
BUILD = [("waiting", 0.3), ("building", 1.0), ("pushing", 0.3), ("complete", 0)]
SLOW_BUILD = [("waiting", 0.3), ("building", 3.0), ("pushing", 0.5), ("complete", 0)]
FAIL = [("building", 0.2), ("error", 0)]


@pytest.fixture
def quay(registry):
    with QuayStandIn(registry.url, api_token=READ_ONLY, admin_token=ADMIN) as stand_in:
        yield stand_in


@pytest.fixture
def config(tmp_path, registry, quay):
    return write_config(tmp_path / "config.yaml", registry.url, quay.api_url)


@pytest.fixture
def admin(monkeypatch):
    monkeypatch.setenv("QUAY_TOKEN", ADMIN)


def starts(quay: QuayStandIn) -> list[dict]:
    return [r for r in quay.requests if r["method"] == "POST"]


def error_and_next(stderr: str) -> tuple[str, str]:
    lines = stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("error: "))
    assert at + 1 < len(lines) and lines[at + 1].startswith("  next: "), stderr
    return lines[at], lines[at + 1]


# --- the CLI, end to end ------------------------------------------------------------------------------


def test_a_tag_whose_trigger_never_fired_is_started_followed_and_printed(cli, config, registry, quay, admin, request):
    tag = unique_tag(request)
    trigger = quay.add_trigger(APP, phases=BUILD)

    result = wait(cli, config, "--tag", tag, "--start-build")

    assert result.code == 0, result.stderr
    digest = quay.published[(APP, tag)]["digest"]
    assert result.stdout == f"{registry.host}/{REPO}:{tag}@{digest}\n"
    (post,) = starts(quay)
    assert post["path"] == f"/api/v1/repository/{REPO}/trigger/{trigger}/start"
    assert post["body"] == {"refs": {"kind": "tag", "name": tag}}
    (build_id,) = quay.builds
    assert f"started build {build_id[:8]} of {registry.host}/{REPO}:{tag} with trigger {trigger[:8]} (github)" in result.stderr
    # one look first: the build list was read before anything was started
    first_list = next(i for i, r in enumerate(quay.requests) if r["path"].endswith("/build/"))
    assert first_list < quay.requests.index(post)
    assert ADMIN not in result.stdout + result.stderr


def test_json_result_says_the_build_was_started(cli, config, quay, admin, request):
    tag = unique_tag(request)
    quay.add_trigger(APP, phases=BUILD)
    result = wait(cli, config, "--tag", tag, "--start-build", "-o", "json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["started_build"] is True and data["build_id"] == next(iter(quay.builds))
    assert data["already_present"] is False


def test_image_already_in_the_registry_starts_nothing(cli, config, registry, quay, admin, request):
    tag = unique_tag(request)
    digest = publish_image(registry.url, REPO, tag)
    quay.add_trigger(APP)

    result = wait(cli, config, "--tag", tag, "--start-build", "-o", "json")

    assert result.code == 0, result.stderr
    assert result.json()["digest"] == digest and result.json()["started_build"] is False
    assert starts(quay) == [] and quay.builds == {}
    assert not any("/trigger/" in r["path"] for r in quay.requests)


def test_nothing_is_started_before_the_registry_could_be_read(cli, tmp_path, registry, quay, admin, request):
    """The first registry look fails (500s past the transport's retries): wait for an answer, don't start blind."""
    tag = unique_tag(request)
    quay.add_trigger(APP)
    with FaultProxy(registry.url) as proxy:
        digest = publish_image(registry.url, REPO, tag)
        proxy.fail_next(500, 500, 500)
        config = write_config(tmp_path / "c.yaml", proxy.url, quay.api_url)

        result = wait(cli, config, "--tag", tag, "--start-build")

    assert result.code == 0, result.stderr
    assert result.stdout.strip().endswith(digest)
    assert starts(quay) == [] and quay.builds == {}


def test_a_build_quay_already_lists_is_followed_not_doubled(cli, config, quay, admin, request):
    tag = unique_tag(request)
    quay.add_trigger(APP)
    build_id = quay.add_build(APP, tag, phases=SLOW_BUILD)

    result = wait(cli, config, "--tag", tag, "--start-build")

    assert result.code == 0, result.stderr
    assert f"quay already has build {build_id[:8]} for {tag}: following it, not starting another" in result.stderr
    assert starts(quay) == [] and list(quay.builds) == [build_id]
    assert result.stdout.strip().endswith(quay.published[(APP, tag)]["digest"])


def test_it_follows_the_build_it_started_not_a_newer_one_of_the_same_tag(cli, config, quay, admin, request):
    """A late webhook adds another (failing) build of the tag after ours: we keep following ours."""
    tag = unique_tag(request)
    quay.add_trigger(APP, phases=SLOW_BUILD)
    stop = threading.Event()

    def late_webhook():
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            if starts(quay):
                time.sleep(0.2)
                quay.add_build(APP, tag, phases=FAIL)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=late_webhook, daemon=True)
    thread.start()
    try:
        result = wait(cli, config, "--tag", tag, "--start-build", "-o", "json")
    finally:
        stop.set()
        thread.join(timeout=5)

    assert result.code == 0, result.stderr
    assert len(quay.builds) == 2 and sorted(b["phase"] for b in quay.builds.values()) == ["complete", "error"]
    ours = next(b for b in quay.builds.values() if b["phase"] == "complete")
    assert result.json()["build_id"] == ours["id"]
    assert "ended in phase error" not in result.stderr


@pytest.mark.parametrize("reason, words", [
    ("successive_build_failures", "disabled after successive build failures"),
    ("user_toggled", "disabled by a user"),
])
def test_a_disabled_trigger_is_refused_with_quays_reason(cli, config, quay, admin, request, reason, words):
    tag = unique_tag(request)
    trigger = quay.add_trigger(APP)
    quay.disable_trigger(APP, reason)

    result = wait(cli, config, "--tag", tag, "--start-build")

    assert result.code == 3, result.stderr
    error, hint = error_and_next(result.stderr)
    assert words in error and trigger[:8] in error
    assert f"/repository/{REPO}?tab=builds" in hint and "--start-build" in hint
    assert starts(quay) == [] and quay.builds == {}
    assert result.stdout == ""


def test_no_trigger_is_refused(cli, config, quay, admin, request):
    result = wait(cli, config, "--tag", unique_tag(request), "--start-build")
    assert result.code == 3, result.stderr
    error, hint = error_and_next(result.stderr)
    assert f"{REPO} has no build trigger; set one up on quay.io or push the image yourself" in error
    assert "?tab=builds" in hint
    assert starts(quay) == []


def test_a_read_only_token_is_refused_naming_repo_admin(cli, config, quay, monkeypatch, request):
    monkeypatch.setenv("QUAY_TOKEN", READ_ONLY)
    quay.add_trigger(APP)
    tag = unique_tag(request)

    result = wait(cli, config, "--tag", tag, "--start-build")

    assert result.code == 3, result.stderr
    error, hint = error_and_next(result.stderr)
    assert "repo:admin" in error and "repo:admin" in hint
    assert f"manual-deploy wait-image --app {APP} --tag {tag} --start-build" in hint
    assert starts(quay) == [] and quay.builds == {}
    assert READ_ONLY not in result.stdout + result.stderr


def test_no_quay_token_is_refused_before_asking_quay_for_triggers(cli, config, quay, monkeypatch, request):
    monkeypatch.delenv("QUAY_TOKEN", raising=False)
    quay.add_trigger(APP)

    result = wait(cli, config, "--tag", unique_tag(request), "--start-build")

    assert result.code == 3, result.stderr
    error, hint = error_and_next(result.stderr)
    assert "--start-build needs QUAY_TOKEN, an OAuth token with repo:admin" in error
    assert "export QUAY_TOKEN" in hint
    assert not any("/trigger/" in r["path"] for r in quay.requests)


def test_the_no_build_timeout_names_start_build_and_that_command_works(cli, config, registry, quay, monkeypatch, request):
    tag = unique_tag(request)
    quay.add_trigger(APP, phases=BUILD)
    monkeypatch.delenv("QUAY_TOKEN", raising=False)

    timed_out = wait(cli, config, "--tag", tag, "--no-build-timeout", "2s")

    assert timed_out.code == 4, timed_out.stderr
    command = f"manual-deploy wait-image --app {APP} --tag {tag} --start-build"
    assert f"start it yourself: `{command}`" in error_and_next(timed_out.stderr)[1]
    assert starts(quay) == []

    monkeypatch.setenv("QUAY_TOKEN", ADMIN)
    again = cli("--config", config, *command.split()[1:])
    assert again.code == 0, again.stderr
    assert again.stdout.strip() == f"{registry.host}/{REPO}:{tag}@{quay.published[(APP, tag)]['digest']}"


# --- the domain and the client ---------------------------------------------------------------------------


def test_pick_trigger_prefers_an_enabled_scm_trigger():
    from manual_deploy.build_trigger import pick_trigger

    custom = {"id": "c" * 36, "service": "custom-git", "enabled": True}
    github = {"id": "g" * 36, "service": "github", "enabled": True}
    disabled = {"id": "d" * 36, "service": "github", "enabled": False, "disabled_reason": "user_toggled"}
    inactive = {"id": "i" * 36, "service": "gitlab", "enabled": True, "is_active": False}
    assert pick_trigger([custom, disabled, github]) is github
    assert pick_trigger([custom, inactive]) is custom
    assert pick_trigger([disabled, inactive]) is None


def test_several_enabled_triggers_say_which_was_used(quay, capsys, request):
    from manual_deploy.build_trigger import start_build
    from manual_deploy.console import Output
    from manual_deploy.registry import Credentials, QuayClient

    custom = quay.add_trigger(APP, service="custom-git")
    github = quay.add_trigger(APP, phases=BUILD)
    client = QuayClient(quay.api_url, Credentials(quay_token=ADMIN))

    build = start_build(client, REPO, unique_tag(request), Output())

    err = capsys.readouterr().err
    assert f"2 enabled triggers; using {github[:8]} (github), not {custom[:8]} (custom-git)" in err
    assert starts(quay)[0]["path"].endswith(f"/trigger/{github}/start") and build["id"] in quay.builds


def test_a_custom_git_trigger_needs_the_commit(quay, request):
    from manual_deploy.build_trigger import start_build
    from manual_deploy.console import Output
    from manual_deploy.errors import Refused
    from manual_deploy.registry import Credentials, QuayClient

    quay.add_trigger(APP, service="custom-git")
    client = QuayClient(quay.api_url, Credentials(quay_token=ADMIN))
    tag = unique_tag(request)

    with pytest.raises(Refused, match="custom-git trigger: quay needs the commit SHA") as refused:
        start_build(client, REPO, tag, Output())
    assert refused.value.hint and starts(quay) == []

    commit = "0ec3e066" + "0" * 32
    start_build(client, REPO, tag, Output(), commit)
    assert [p["body"] for p in starts(quay)] == [{"commit_sha": commit}]


def test_a_start_that_fails_in_transit_is_sent_once_and_says_so(quay, request):
    from manual_deploy.build_trigger import start_build
    from manual_deploy.console import Output
    from manual_deploy.errors import OperationFailed
    from manual_deploy.registry import Credentials, QuayClient, TransientError

    trigger = quay.add_trigger(APP)
    client = QuayClient(quay.api_url, Credentials(quay_token=ADMIN))
    quay.fail_next(503)
    with pytest.raises(TransientError):
        client.start_trigger(REPO, trigger, "t1")
    assert len(starts(quay)) == 1  # a POST is never retried by the transport

    listed = client.triggers(REPO)  # what quay answered, kept so only the start meets the fault
    client.triggers = lambda repository: listed
    quay.fail_next(503)
    with pytest.raises(OperationFailed) as failed:
        start_build(client, REPO, unique_tag(request), Output())
    assert "could not reach quay" in failed.value.message and "a build may have started" in failed.value.message
    assert "--start-build" in failed.value.hint
    assert len(starts(quay)) == 2


# --- the stand-in's trigger routes, as quay answers them ------------------------------------------------


def api(quay: QuayStandIn, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"{quay.api_url}/repository/{REPO}{path}", headers=headers, timeout=5, **kwargs)


def test_standin_trigger_routes_want_repo_admin(quay):
    trigger = quay.add_trigger(APP)
    body = {"refs": {"kind": "tag", "name": "t1"}}

    anonymous = api(quay, "POST", f"/trigger/{trigger}/start", json=body)
    read_only = api(quay, "POST", f"/trigger/{trigger}/start", READ_ONLY, json=body)
    listed_read_only = api(quay, "GET", "/trigger/", READ_ONLY)

    assert anonymous.status_code == 401 and anonymous.json()["error_type"] == "invalid_token"
    assert read_only.status_code == 403 and read_only.json()["error_type"] == "insufficient_scope"
    assert listed_read_only.status_code == 403
    assert quay.builds == {}


def test_standin_trigger_list_and_start(quay, registry):
    trigger = quay.add_trigger(APP, phases=BUILD)

    listed = api(quay, "GET", "/trigger/", ADMIN).json()["triggers"]
    started = api(quay, "POST", f"/trigger/{trigger}/start", ADMIN, json={"refs": {"kind": "tag", "name": "t-list1"}})

    assert [(t["id"], t["service"], t["enabled"], t["disabled_reason"]) for t in listed] == [(trigger, "github", True, None)]
    assert started.status_code == 201
    build = started.json()
    assert build["tags"] == ["t-list1"] and build["trigger"]["id"] == trigger and build["id"] in quay.builds
    seen = api(quay, "GET", "/build/", READ_ONLY).json()["builds"]
    assert seen[0]["id"] == build["id"] and seen[0]["trigger"]["id"] == trigger  # builds name their real trigger


@pytest.mark.parametrize("body, status, words", [
    ({"refs": {"kind": "tag", "name": "x"}, "force": True}, 400, "Additional properties"),
    ("[1]", 400, "not of type 'object'"),
    ("{not json", 400, "Invalid JSON"),
])
def test_standin_start_rejects_a_bad_body(quay, body, status, words):
    trigger = quay.add_trigger(APP)
    kwargs = {"json": body} if isinstance(body, dict) else {"data": body, "headers": {"Content-Type": "application/json"}}
    headers = {"Authorization": f"Bearer {ADMIN}", **kwargs.pop("headers", {})}
    answer = requests.post(f"{quay.api_url}/repository/{REPO}/trigger/{trigger}/start", headers=headers, timeout=5, **kwargs)
    assert answer.status_code == status and words in answer.json()["detail"]
    assert quay.builds == {}


def test_standin_start_refuses_disabled_and_unknown_triggers(quay):
    trigger = quay.add_trigger(APP, enabled=False, disabled_reason="successive_build_internal_errors")
    body = {"refs": {"kind": "tag", "name": "t1"}}

    disabled = api(quay, "POST", f"/trigger/{trigger}/start", ADMIN, json=body)
    unknown = api(quay, "POST", "/trigger/00000000-0000-0000-0000-000000000000/start", ADMIN, json=body)
    other_post = api(quay, "POST", "/build/", ADMIN, json={})

    assert disabled.status_code == 400 and disabled.json()["detail"] == "Trigger is not enabled."
    assert unknown.status_code == 404 and unknown.json()["error_type"] == "not_found"
    assert other_post.status_code == 405
    assert quay.builds == {}
