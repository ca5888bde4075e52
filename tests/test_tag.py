"""`manual-deploy tag` against real git: a local bare remote with master and dev branches."""

from __future__ import annotations

import json
import re
import stat
import time
from datetime import datetime, timezone

import pytest

from helpers import tags
from manual_deploy import state


def test_default_tag_is_git_short_sha_pushed_and_confirmed(cli, app_repo):
    head = app_repo.git("rev-parse", "HEAD")
    short = app_repo.git("rev-parse", "--short", head)

    result = cli("tag", "--repo", app_repo.checkout)

    assert result.code == 0, result.stderr
    assert result.stdout == f"{short}\n"
    assert tags(app_repo.remote) == {short: head}
    assert tags(app_repo.checkout) == {short: head}
    ls_remote = app_repo.git("ls-remote", "--tags", "origin")
    assert f"refs/tags/{short}^{{}}" in ls_remote and head in ls_remote
    assert "pushed" in result.stderr
    message = app_repo.git("tag", "-l", "--format=%(contents)", short)
    assert "manual-deploy" in message and head in message


def test_second_run_reuses_the_tag_and_creates_nothing(cli, app_repo):
    first = cli("tag", "--repo", app_repo.checkout)
    tag_object = app_repo.remote_git("rev-parse", f"refs/tags/{first.stdout.strip()}")

    second = cli("tag", "--repo", app_repo.checkout, "--output", "json")

    assert second.code == 0, second.stderr
    data = second.json()
    assert data["tag"] == first.stdout.strip()
    assert data["reused"] is True and data["pushed"] is False
    assert "reused" in second.stderr
    assert len(tags(app_repo.remote)) == 1
    assert app_repo.remote_git("rev-parse", f"refs/tags/{data['tag']}") == tag_object


def test_runs_in_the_current_directory_and_records_state(cli, app_repo, monkeypatch):
    monkeypatch.chdir(app_repo.checkout)
    result = cli("tag", "--reason", "fix broken upload")
    assert result.code == 0, result.stderr

    recorded = state.load(app_repo.checkout / ".git")["tag"]
    assert recorded["tag"] == result.stdout.strip()
    assert recorded["commit"] == app_repo.git("rev-parse", "HEAD")
    assert recorded["app"] == "ingest-core" and recorded["reason"] == "fix broken upload"
    assert app_repo.git("status", "--porcelain") == "", "state must not dirty the work tree"


def test_env_prod_uses_gitlab_release_format_with_today_utc(cli, app_repo):
    head = app_repo.git("rev-parse", "HEAD")
    before = int(time.time())

    result = cli("tag", "--repo", app_repo.checkout, "--env", "prod")

    after = int(time.time())
    assert result.code == 0, result.stderr
    name = result.stdout.strip()
    match = re.fullmatch(r"prod-([0-9a-f]{8})-(\d{2}-\d{2}-\d{4})\.(\d+)", name)
    assert match, name
    assert match.group(1) == head[:8]
    epoch = int(match.group(3))
    assert before <= epoch <= after
    assert match.group(2) == datetime.fromtimestamp(epoch, timezone.utc).strftime("%d-%m-%Y")
    assert match.group(2) == datetime.now(timezone.utc).strftime("%d-%m-%Y")
    assert tags(app_repo.remote) == {name: head}


def test_env_release_tag_is_reused_on_a_later_run(cli, app_repo):
    first = cli("tag", "--repo", app_repo.checkout, "--env", "prod").stdout.strip()
    time.sleep(1.1)  # a new run would otherwise get a new epoch suffix
    second = cli("tag", "--repo", app_repo.checkout, "--env", "prod", "-o", "json")
    assert second.code == 0
    assert second.json()["tag"] == first and second.json()["reused"] is True
    assert list(tags(app_repo.remote)) == [first]


def test_local_only_tag_at_the_commit_is_reused_and_pushed(cli, app_repo):
    head = app_repo.git("rev-parse", "HEAD")
    short = app_repo.git("rev-parse", "--short", head)
    app_repo.git("tag", short, head)  # lightweight, like the old `git tag-for-build` alias

    result = cli("tag", "--repo", app_repo.checkout, "-o", "json")

    assert result.code == 0, result.stderr
    assert result.json() == {"app": "ingest-core", "commit": head, "tag": short, "remote": "origin", "env": None,
                             "reused": True, "pushed": True, "unmerged": False}
    assert tags(app_repo.remote) == {short: head}


def test_commit_only_on_a_feature_branch_is_refused_for_prod(cli, app_repo):
    app_repo.git("checkout", "-q", "-b", "feature/new-thing")
    app_repo.commit("feature work")
    app_repo.git("push", "-q", "origin", "feature/new-thing")

    result = cli("tag", "--repo", app_repo.checkout, "--env", "prod")

    assert result.code == 3
    assert "not on origin/master" in result.stderr
    assert "--allow-unmerged" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert tags(app_repo.checkout) == {} and tags(app_repo.remote) == {}


def test_dev_commit_is_accepted_for_dev_and_refused_for_staging(cli, app_repo):
    app_repo.git("checkout", "-q", "dev")
    assert cli("tag", "--repo", app_repo.checkout, "--env", "staging").code == 3
    result = cli("tag", "--repo", app_repo.checkout, "--env", "dev")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("dev-")


def test_pushed_feature_branch_is_enough_without_env(cli, app_repo):
    app_repo.git("checkout", "-q", "-b", "feature/x")
    head = app_repo.commit("feature work")
    app_repo.git("push", "-q", "origin", "feature/x")
    result = cli("tag", "--repo", app_repo.checkout)
    assert result.code == 0, result.stderr
    assert set(tags(app_repo.remote).values()) == {head}


def test_unpushed_commit_is_refused_unless_allow_unmerged(cli, app_repo):
    head = app_repo.commit("local only")

    refused = cli("tag", "--repo", app_repo.checkout)
    assert refused.code == 3 and "on no branch of origin" in refused.stderr
    assert tags(app_repo.checkout) == {} and tags(app_repo.remote) == {}

    forced = cli("tag", "--repo", app_repo.checkout, "--allow-unmerged", "-o", "json")
    assert forced.code == 0, forced.stderr
    assert "warning:" in forced.stderr
    assert forced.json()["unmerged"] is True
    name = forced.json()["tag"]
    assert tags(app_repo.remote) == {name: head}
    assert "WARNING" in app_repo.git("tag", "-l", "--format=%(contents)", name)
    assert state.load(app_repo.checkout / ".git")["tag"]["unmerged"] is True


def test_explicit_commit_and_app(cli, app_repo):
    first = app_repo.git("rev-parse", "HEAD~1")
    result = cli("tag", "--repo", app_repo.checkout, "--commit", "HEAD~1", "--app", "ingest-core", "-o", "json")
    assert result.code == 0, result.stderr
    assert result.json()["commit"] == first


# --- bad input: a clear one-line error, the documented exit code, and no tag anywhere ---------------


def _assert_clean_failure(result, code, *needles, app_repo=None):
    assert result.code == code, (result.code, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    if app_repo is not None:
        assert tags(app_repo.checkout) == {} and tags(app_repo.remote) == {}


def test_not_a_git_repository(cli, tmp_path):
    empty = tmp_path / "not-a-repo"
    empty.mkdir()
    result = cli("tag", "--repo", empty)
    _assert_clean_failure(result, 2, "not a git repository", "--repo")
    assert list(empty.iterdir()) == []


def test_unknown_commit(cli, app_repo):
    result = cli("tag", "--repo", app_repo.checkout, "--commit", "deadbeefcafe")
    _assert_clean_failure(result, 2, "unknown commit 'deadbeefcafe'", app_repo=app_repo)


def test_option_like_commit_is_rejected_before_git_sees_it(cli, app_repo):
    result = cli("tag", "--repo", app_repo.checkout, "--commit=--output=/tmp/pwned")
    _assert_clean_failure(result, 2, "invalid git revision", app_repo=app_repo)


def test_unknown_app_lists_configured_apps(cli, app_repo):
    result = cli("tag", "--repo", app_repo.checkout, "--app", "ingest-nope")
    _assert_clean_failure(result, 2, "unknown app 'ingest-nope'", "ingest-core", "ingest-broker", app_repo=app_repo)


def test_app_inferred_from_an_unconfigured_remote_name(cli, tmp_path):
    from manual_deploy_sandbox.gitrepos import make_app_repo

    repo = make_app_repo(tmp_path, name="some-other-service")
    result = cli("tag", "--repo", repo.checkout)
    _assert_clean_failure(result, 2, "'some-other-service' (from the remote URL)", "--app", app_repo=repo)


def test_unknown_env(cli, app_repo):
    result = cli("tag", "--repo", app_repo.checkout, "--env", "production")
    _assert_clean_failure(result, 2, "unknown environment 'production'", "dev, staging, prod", app_repo=app_repo)


def test_remote_missing(cli, app_repo):
    result = cli("tag", "--repo", app_repo.checkout, "--remote", "upstream")
    _assert_clean_failure(result, 2, "remote 'upstream' is not configured", "origin", app_repo=app_repo)


class EchoingGitServer:
    """A git smart-HTTP server that refuses every repository, quoting back the URL it was asked for with the
    credentials it was given (as some proxies and mirrors do): git prints that line as it is, so only our
    own masking keeps the token off the screen."""

    def __init__(self):
        import base64
        import http.server
        import threading

        def pkt(text: str) -> bytes:
            return f"{len(text.encode()) + 4:04x}".encode() + text.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                auth = self.headers.get("Authorization")
                if not auth:  # git sends the URL's credentials only when asked
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                given = base64.b64decode(auth.split()[1]).decode()
                where = f"http://{given}@{self.headers['Host']}{self.path.split('?')[0]}"
                body = pkt("# service=git-upload-pack\n") + b"0000" + pkt(f"ERR no repository at {where}\n")
                self.send_response(200)
                self.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echoing_git_server():
    server = EchoingGitServer()
    yield server
    server.close()


@pytest.mark.parametrize("remote", ["refusing", "echoing"])
def test_unreachable_remote_fails_without_leaking_credentials(cli, app_repo, echoing_git_server, remote):
    """The token in the remote URL is never printed, not even with -v: not when the connection is refused
    (git itself leaves it out) and not when the server quotes it back in its error (only our masking
    removes it: where the git error is read, and again where any error is reported)."""
    scheme, host = ("https", "127.0.0.1:9") if remote == "refusing" else ("http", echoing_git_server.host)
    app_repo.git("remote", "set-url", "origin", f"{scheme}://robot:s3cr3t-t0ken@{host}/ebi-ait/ingest-core.git")
    result = cli("tag", "--repo", app_repo.checkout, "-o", "json", "-v")  # -v: the traceback shows the raw error too
    assert result.code == 1, result.stderr
    assert "cannot fetch from origin" in result.stderr
    if remote == "echoing":  # the server's own words reached the user, with the token masked
        assert f"no repository at http://***@{host}/ebi-ait/ingest-core.git" in result.stderr, result.stderr
    assert "s3cr3t-t0ken" not in result.stderr + result.stdout
    assert json.loads(result.stdout)["ok"] is False
    assert tags(app_repo.checkout) == {}


def test_name_collision_on_the_remote_is_refused(cli, app_repo):
    head = app_repo.git("rev-parse", "HEAD")
    short = app_repo.git("rev-parse", "--short", head)
    older = app_repo.git("rev-parse", "HEAD~1")
    app_repo.git("tag", short, older)
    app_repo.git("push", "-q", "origin", f"refs/tags/{short}")
    app_repo.git("tag", "-d", short)

    result = cli("tag", "--repo", app_repo.checkout)

    _assert_clean_failure(result, 3, f"tag {short} already exists in origin", older[:8])
    assert tags(app_repo.remote) == {short: older}
    assert tags(app_repo.checkout) == {}


def test_name_collision_in_the_local_repo_is_refused(cli, app_repo):
    head = app_repo.git("rev-parse", "HEAD")
    short = app_repo.git("rev-parse", "--short", head)
    app_repo.git("tag", short, "HEAD~1")
    result = cli("tag", "--repo", app_repo.checkout)
    _assert_clean_failure(result, 3, "already exists in the local repository")
    assert tags(app_repo.remote) == {}


def test_push_rejected_by_pre_receive_hook_leaves_no_tag(cli, app_repo):
    hook = app_repo.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'tags are frozen during the incident review' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IEXEC)

    result = cli("tag", "--repo", app_repo.checkout)

    _assert_clean_failure(result, 1, "rejected", "tags are frozen during the incident review", app_repo=app_repo)
    assert "removed again" in result.stderr
    assert "tag" not in state.load(app_repo.checkout / ".git")


def test_refusal_as_json_is_one_object(cli, app_repo):
    app_repo.commit("local only")
    result = cli("tag", "--repo", app_repo.checkout, "--output", "json")
    assert result.code == 3
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["exit_code"] == 3 and "hint" in data
