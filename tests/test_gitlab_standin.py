"""The GitLab API stand-in: GitLab's answers (codes, bodies, headers) where a deployment backfill depends on them."""

from __future__ import annotations

import pytest
import requests

from manual_deploy_sandbox.gitlab import GitLabStandIn, follow_outage_marker
from manual_deploy_sandbox.gitrepos import git, make_app_repo

T = 5  # seconds: timeout for every request
TOKEN, REPORTER = "glpat-deployer", "glpat-reporter"
PATH, ENC = "hca/ingest-core", "hca%2Fingest-core"


@pytest.fixture
def repo(tmp_path):
    return make_app_repo(tmp_path)


@pytest.fixture
def gl(repo):
    with GitLabStandIn(TOKEN, reporter_token=REPORTER) as standin:
        standin.add_project(PATH, repo.remote)
        yield standin


def api(gl, method, path, token=TOKEN, **kw):
    headers = {"PRIVATE-TOKEN": token} if token else {}
    return requests.request(method, f"{gl.url}/api/v4{path}", headers=headers, timeout=T, **kw)


def deploy(gl, repo, env="prod", status="success", token=TOKEN, **overrides):
    body = {"environment": env, "sha": repo.git("rev-parse", "master"), "ref": "master", "tag": False,
            "status": status, **overrides}
    return api(gl, "POST", f"/projects/{ENC}/deployments", token=token, json=body)


def test_auth_missing_wrong_and_reporter(gl, repo):
    assert api(gl, "GET", f"/projects/{ENC}/deployments", token=None).status_code == 401
    wrong = api(gl, "GET", f"/projects/{ENC}/deployments", token="nope")
    assert (wrong.status_code, wrong.json()) == (401, {"message": "401 Unauthorized"})
    bearer = requests.get(f"{gl.url}/api/v4/version", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=T)
    assert bearer.status_code == 200 and "version" in bearer.json()
    assert api(gl, "GET", f"/projects/{ENC}/deployments", token=REPORTER).status_code == 200
    refused = deploy(gl, repo, token=REPORTER)
    assert (refused.status_code, refused.json()) == (403, {"message": "403 Forbidden"})
    # a private project is "not found" to an anonymous caller, not "unauthorized"
    assert api(gl, "GET", f"/projects/{ENC}", token=None).json() == {"message": "404 Project Not Found"}
    assert "PRIVATE-TOKEN" not in str(gl.requests) and TOKEN not in str(gl.requests)


def test_unknown_project_and_route(gl):
    missing = api(gl, "GET", "/projects/hca%2Fnope/deployments")
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Project Not Found"})
    nowhere = api(gl, "GET", "/nowhere", token=None)
    assert (nowhere.status_code, nowhere.json()) == (404, {"error": "404 Not Found"})
    project = api(gl, "GET", f"/projects/{ENC}").json()
    assert project["path_with_namespace"] == PATH and project["default_branch"] == "master"
    assert api(gl, "GET", f"/projects/{project['id']}").json()["id"] == project["id"]


def test_post_creates_with_gitlab_fields(gl, repo):
    answer = deploy(gl, repo)
    assert answer.status_code == 201
    body = answer.json()
    assert body["iid"] == 1 and body["status"] == "success" and body["deployable"] is None
    assert body["sha"] == repo.git("rev-parse", "master") and body["ref"] == "master"
    assert body["environment"]["name"] == body["environment"]["slug"] == "prod"
    assert body["user"]["username"] == "sandbox-deployer"
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == len("2026-01-01T00:00:00.000Z")
    assert "deployed_at" not in body  # the API entity has none
    second = deploy(gl, repo, env="staging", status="running").json()
    assert second["iid"] == 2 and second["id"] > body["id"]
    assert git(repo.remote, "rev-parse", "refs/environments/prod/deployments/1") == body["sha"]


def test_post_is_form_encoded_too(gl, repo):
    data = {"environment": "dev", "sha": repo.git("rev-parse", "dev")[:8], "ref": "dev", "tag": "false",
            "status": "running"}
    answer = api(gl, "POST", f"/projects/{ENC}/deployments", data=data)
    assert answer.status_code == 201 and answer.json()["status"] == "running"


def test_repost_of_last_success_returns_it(gl, repo):
    first = deploy(gl, repo).json()
    again = deploy(gl, repo)
    assert again.status_code == 201 and again.json()["id"] == first["id"]
    assert len(gl.deployments(PATH)) == 1


def test_post_validation_errors(gl, repo):
    missing = api(gl, "POST", f"/projects/{ENC}/deployments", json={"environment": "prod", "tag": True,
                                                                    "status": "success"})
    assert (missing.status_code, missing.json()) == (400, {"error": "sha is missing, ref is missing"})
    assert deploy(gl, repo, status="done").json() == {"error": "status does not have a valid value"}
    unknown_sha = deploy(gl, repo, sha="0" * 40)
    assert (unknown_sha.status_code, unknown_sha.json()) == (400, {"message": {"sha": ["The commit does not exist"]}})
    unknown_tag = deploy(gl, repo, ref="v9.9.9", tag=True)
    assert unknown_tag.json() == {"message": {"ref": ["The branch or tag does not exist"]}}
    assert gl.deployments(PATH) == []


def test_list_filter_order_and_pagination(gl, repo):
    for env, status in [("prod", "success"), ("dev", "running"), ("prod", "failed"), ("prod", "running")]:
        assert deploy(gl, repo, env=env, status=status).status_code == 201
    page = api(gl, "GET", f"/projects/{ENC}/deployments",
               params={"environment": "prod", "order_by": "created_at", "sort": "desc", "per_page": 2})
    assert [d["iid"] for d in page.json()] == [4, 3]
    assert (page.headers["X-Total"], page.headers["X-Page"], page.headers["X-Per-Page"],
            page.headers["X-Next-Page"]) == ("3", "1", "2", "2")
    last = api(gl, "GET", f"/projects/{ENC}/deployments",
               params={"environment": "prod", "sort": "desc", "per_page": 2, "page": 2})
    assert [d["iid"] for d in last.json()] == [1] and last.headers["X-Next-Page"] == ""
    running = api(gl, "GET", f"/projects/{ENC}/deployments", params={"status": "running"}).json()
    assert [d["iid"] for d in running] == [2, 4]
    assert api(gl, "GET", f"/projects/{ENC}/deployments", params={"order_by": "finished_at"}).status_code == 400
    assert api(gl, "GET", f"/projects/{ENC}/deployments", params={"sort": "up"}).json() == {
        "error": "sort does not have a valid value"}


def test_put_updates_api_made_refuses_ci_made(gl, repo):
    made = deploy(gl, repo, status="running").json()
    done = api(gl, "PUT", f"/projects/{ENC}/deployments/{made['id']}", json={"status": "success"})
    assert done.status_code == 200 and done.json()["status"] == "success"
    assert api(gl, "GET", f"/projects/{ENC}/deployments/{made['id']}").json()["status"] == "success"
    ci = gl.add_ci_deployment(PATH, "prod", repo.git("rev-parse", "master"), "master")
    assert ci["deployable"]["stage"] == "deploy"
    refused = api(gl, "PUT", f"/projects/{ENC}/deployments/{ci['id']}", json={"status": "failed"})
    assert (refused.status_code, refused.json()) == (403, {
        "message": "403 Forbidden - Deployments created using GitLab CI can not be updated using the API"})
    gone = api(gl, "PUT", f"/projects/{ENC}/deployments/999", json={"status": "failed"})
    assert (gone.status_code, gone.json()) == (404, {"message": "404 Not found"})
    assert api(gl, "GET", f"/projects/{ENC}/deployments/999").status_code == 404


def test_protected_environment(gl, repo):
    made = deploy(gl, repo, status="running").json()
    gl.protect(PATH, "prod")
    assert deploy(gl, repo).json() == {"message": "403 Forbidden"}
    assert api(gl, "PUT", f"/projects/{ENC}/deployments/{made['id']}", json={"status": "success"}).status_code == 403
    assert deploy(gl, repo, env="staging").status_code == 201


def test_fail_next_then_normal(gl, repo):
    gl.fail_next(500, 502, 503)
    first = api(gl, "GET", "/version")
    assert (first.status_code, first.json()) == (500, {"message": "500 Internal Server Error"})
    assert [api(gl, "GET", "/version").status_code for _ in range(2)] == [502, 503]
    assert api(gl, "GET", "/version").status_code == 200


def test_answer_next_answers_one_matching_request_then_gitlab_again(gl, repo):
    """A scripted body (JSON or an HTML page) for the next matching method and path only; a POST it answers
    records nothing, since the answer stands in for a proxy in front of GitLab."""
    gl.answer_next("GET", r"/repository/commits/", 200, {"id": 4242})
    gl.answer_next("POST", r"/deployments$", 200, "<html><body>Sign in to the proxy</body></html>")
    assert api(gl, "GET", f"/projects/{ENC}/deployments").json() == []  # other paths are not affected
    odd = api(gl, "GET", f"/projects/{ENC}/repository/commits/master")
    assert (odd.status_code, odd.json()) == (200, {"id": 4242})
    assert api(gl, "GET", f"/projects/{ENC}/repository/commits/master").json()["id"] == repo.git("rev-parse", "master")
    page = deploy(gl, repo)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html") and "proxy" in page.text
    assert gl.deployments(PATH) == [] and deploy(gl, repo).status_code == 201
    assert [r["method"] for r in gl.requests].count("POST") == 2  # both requests are still recorded


def test_down_and_up_keep_url_and_state(gl, repo):
    made = deploy(gl, repo).json()
    url = gl.url
    gl.down()
    with pytest.raises(requests.ConnectionError):
        api(gl, "GET", "/version")
    gl.up()
    assert gl.url == url
    assert api(gl, "GET", f"/projects/{ENC}/deployments/{made['id']}").json()["id"] == made["id"]


def test_outage_marker(gl, tmp_path):
    marker = tmp_path / "gitlab.down"
    assert follow_outage_marker(gl, marker) is True
    marker.touch()
    assert follow_outage_marker(gl, marker) is False
    with pytest.raises(requests.ConnectionError):
        api(gl, "GET", "/version")
    assert follow_outage_marker(gl, marker) is False  # idempotent while the marker stays
    marker.unlink()
    assert follow_outage_marker(gl, marker) is True
    assert api(gl, "GET", "/version").status_code == 200


def test_tags_and_commits_follow_gitlabs_copy(gl, repo, tmp_path):
    repo.git("tag", "-a", "v1.0.0", "-m", "Release 1.0.0")
    repo.git("push", "-q", "origin", "v1.0.0")
    tag = api(gl, "GET", f"/projects/{ENC}/repository/tags/v1.0.0").json()
    assert tag["name"] == "v1.0.0" and tag["message"] == "Release 1.0.0"
    assert tag["commit"]["id"] == repo.git("rev-parse", "master") and tag["target"] != tag["commit"]["id"]
    assert api(gl, "GET", f"/projects/{ENC}/repository/tags/v2").json() == {"message": "404 Tag Not Found"}
    # pushed to GitHub, but GitLab's mirror has not caught up yet
    github = tmp_path / "github.git"
    git(tmp_path, "init", "-q", "--bare", str(github))
    sha = repo.commit("hotfix during the outage")
    repo.git("push", "-q", str(github), "master")
    assert api(gl, "GET", f"/projects/{ENC}/repository/commits/{sha}").json() == {"message": "404 Commit Not Found"}
    assert deploy(gl, repo, sha=sha).json() == {"message": {"sha": ["The commit does not exist"]}}
    repo.git("push", "-q", "origin", "master")
    commit = api(gl, "GET", f"/projects/{ENC}/repository/commits/{sha[:8]}").json()
    assert commit["id"] == sha and commit["title"] == "hotfix during the outage"
    assert api(gl, "GET", f"/projects/{ENC}/repository/commits/master").json()["id"] == sha
    assert deploy(gl, repo, sha=sha).status_code == 201


def test_stop_is_idempotent(repo):
    standin = GitLabStandIn(TOKEN).start()
    url = standin.url
    standin.stop()
    standin.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/api/v4/version", timeout=T)
    assert follow_outage_marker(standin, repo.remote / "no-marker") is False  # a stopped stand-in stays stopped
