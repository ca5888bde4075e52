"""`manual-deploy gitlab-sync`, and apply's own record in GitLab, on the bed.

Real deploys (real helm, registry, git; the emulated apiserver) write the audit log; GitLab is the
stand-in in `sandbox/manual_deploy_sandbox/gitlab.py` (no GitLab can run here), whose copy of the app's
repository is the app's real bare remote, so SHAs and tags are checked by real git.
"""

from __future__ import annotations

import json

import pytest

from bed import publish, write_bed_config
from manual_deploy import audit
from manual_deploy_sandbox.gitlab import GitLabStandIn

TOKEN = "glpat-sandbox-0123456789abcdef"
PROJECT = "hca/ingest-core"


@pytest.fixture
def gitlab(app_repo, monkeypatch):
    with GitLabStandIn(TOKEN, reporter_token="glpat-reporter-0123456789") as standin:
        standin.add_project(PROJECT, app_repo.remote)
        monkeypatch.setenv("GITLAB_TOKEN", TOKEN)
        yield standin


@pytest.fixture
def config(bed, gitlab, tmp_path):
    return write_bed_config(tmp_path / "gitlab.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                            helm=bed.helm, gitlab_url=gitlab.url)


def ship(cli, bed, app_repo, config, message: str, *extra: str):
    """A new commit, tagged by `manual-deploy tag`, its image published, then `apply` from the checkout."""
    app_repo.git("commit", "--allow-empty", "-q", "-m", message)
    app_repo.git("push", "-q", "origin", "HEAD:master")
    tagged = cli("--config", config, "-o", "json", "tag", "--env", "prod")
    assert tagged.code == 0, tagged.stderr
    tag, commit = tagged.json()["tag"], tagged.json()["commit"]
    publish(bed, "ingest-core", tag)
    applied = cli("--config", config, "apply", "--env", "prod", "--yes", "--reason", message, *extra)
    return tag, commit, applied


def posts(gitlab) -> list[dict]:
    return [r for r in gitlab.requests if r["method"] in ("POST", "PUT")]


def test_deploys_made_while_gitlab_is_down_are_recorded_in_order_once_it_is_back(cli, bed, app_repo, gitlab, config, monkeypatch):
    """The acceptance case: two deploys and a rollback with GitLab down; sync fails and keeps all; then
    three deployments in order (env, full SHA, tag, status); a second run posts nothing."""
    monkeypatch.chdir(app_repo.checkout)
    gitlab.down()
    tag1, sha1, first = ship(cli, bed, app_repo, config, "fix upload")
    assert first.code == 0, first.stderr
    assert "not recorded in GitLab" in first.stderr and "run `manual-deploy gitlab-sync` once GitLab is back" in first.stderr
    assert "not recorded in GitLab" in first.stdout
    tag2, sha2, second = ship(cli, bed, app_repo, config, "fix upload again")
    assert second.code == 0, second.stderr
    back = cli("--config", config, "rollback", "--env", "prod", "--app", "ingest-core", "--yes", "--reason", "fix broke search")
    assert back.code == 0, back.stderr
    assert "gitlab-sync" in back.stderr

    records = audit.read()
    assert [(r["command"], r["ref"], r["commit"], r["gitlab_project"]) for r in records] == [
        ("apply", tag1, sha1, PROJECT), ("apply", tag2, sha2, PROJECT), ("rollback", tag1, sha1, PROJECT)]

    down = cli("--config", config, "gitlab-sync")
    assert down.code == 1, down.stderr
    assert "unreachable" in down.stderr and "nothing is lost" in down.stderr
    assert "next: run `manual-deploy gitlab-sync` again when GitLab is back" in down.stderr
    status = cli("--config", config, "-o", "json", "status", "--env", "prod", "--app", "ingest-core")
    assert status.json()["envs"]["prod"]["apps"]["ingest-core"]["gitlab"] == "not recorded"
    assert "GitLab has no record of the last deploy of prod/ingest-core: run `manual-deploy gitlab-sync`" in status.stderr

    gitlab.up()
    synced = cli("--config", config, "gitlab-sync")
    assert synced.code == 0, synced.stderr
    made = gitlab.deployments(PROJECT)
    assert [(d["environment"]["name"], d["sha"], d["ref"], d["status"]) for d in made] == [
        ("prod", sha1, tag1, "success"), ("prod", sha2, tag2, "success"), ("prod", sha1, tag1, "success")]
    assert all(d["deployable"] is None for d in made)
    assert "3 recorded" in synced.stdout

    before = len(gitlab.requests)
    again = cli("--config", config, "gitlab-sync")
    assert again.code == 0 and "nothing to record" in again.stderr
    assert len(gitlab.deployments(PROJECT)) == 3 and not posts(gitlab)[3:]
    assert len(gitlab.requests) == before  # not even a read: the memory says GitLab has them all
    status = cli("--config", config, "-o", "json", "status", "--env", "prod", "--app", "ingest-core")
    assert status.json()["envs"]["prod"]["apps"]["ingest-core"]["gitlab"] == f"recorded (#{made[-1]['iid']})"
    assert TOKEN not in down.stderr + synced.stderr + synced.stdout + first.stderr


def test_apply_records_its_deploy_while_gitlab_answers(cli, bed, app_repo, gitlab, config, monkeypatch):
    monkeypatch.chdir(app_repo.checkout)
    tag, sha, applied = ship(cli, bed, app_repo, config, "quick fix")
    assert applied.code == 0, applied.stderr
    [made] = gitlab.deployments(PROJECT)
    assert (made["sha"], made["ref"], made["status"], made["environment"]["name"]) == (sha, tag, "success", "prod")
    assert f"recorded in GitLab as deployment #{made['iid']}" in applied.stdout
    again = cli("--config", config, "gitlab-sync")
    assert again.code == 0 and "nothing to record" in again.stderr and len(gitlab.deployments(PROJECT)) == 1


def test_a_lost_answer_is_found_in_gitlab_not_posted_twice(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """GitLab took the POST but the answer never arrived (here: the memory file is lost): the next run reads
    GitLab's latest deployments, finds the record and posts nothing."""
    from manual_deploy import paths

    monkeypatch.chdir(app_repo.checkout)
    ship(cli, bed, app_repo, config, "fix one")
    assert len(gitlab.deployments(PROJECT)) == 1
    (paths.state_dir() / "gitlab-sync.json").unlink()
    result = cli("--config", config, "-o", "json", "gitlab-sync")
    assert result.code == 0, result.stderr
    assert len(result.json()["already_known"]) == 1 and not result.json()["recorded"]
    assert len(gitlab.deployments(PROJECT)) == 1


def test_a_commit_gitlab_does_not_have_yet_is_kept_with_every_newer_record(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """GitLab's copy of the repository is a mirror that has not caught up: the record waits, and so does the
    newer one behind it (posting it first would leave the page on the older deploy)."""
    from manual_deploy_sandbox.gitrepos import git

    monkeypatch.chdir(app_repo.checkout)
    mirror = tmp_path / "mirror.git"
    git(tmp_path, "clone", "-q", "--mirror", str(app_repo.remote), str(mirror))
    with GitLabStandIn(TOKEN) as lagging:
        lagging.add_project(PROJECT, mirror)
        config = write_bed_config(tmp_path / "lag.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                                  helm=bed.helm, gitlab_url=lagging.url)
        lagging.down()
        tag1, sha1, _ = ship(cli, bed, app_repo, config, "fix one")
        tag2, sha2, _ = ship(cli, bed, app_repo, config, "fix two")
        lagging.up()

        kept = cli("--config", config, "-o", "json", "gitlab-sync")
        assert kept.code == 1, kept.stderr
        assert f"GitLab's copy of hca/ingest-core has no tag {tag1} yet" in kept.stderr and "mirror has not caught up" in kept.stderr
        assert "next: run `manual-deploy gitlab-sync` again once GitLab's copy of hca/ingest-core has caught up" in kept.stderr
        assert kept.stderr.count("warning: kept for the next run") == 2 and f"waits for the older record of {tag1}" in kept.stderr
        assert lagging.deployments(PROJECT) == []

        git(app_repo.remote, "push", "-q", "--mirror", str(mirror))  # the mirror catches up
        done = cli("--config", config, "gitlab-sync")
        assert done.code == 0, done.stderr
        assert [(d["sha"], d["ref"]) for d in lagging.deployments(PROJECT)] == [(sha1, tag1), (sha2, tag2)]


@pytest.mark.parametrize("case", ["no-token", "bad-token", "reporter", "protected", "no-project"])
def test_refusals_say_what_to_fix_and_lose_nothing(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path, case):
    monkeypatch.chdir(app_repo.checkout)
    gitlab.down()
    ship(cli, bed, app_repo, config, "fix")
    gitlab.up()
    expected = {
        "no-token": ("GITLAB_TOKEN is not set", "export GITLAB_TOKEN="),
        "bad-token": ("401 Unauthorized", "export GITLAB_TOKEN="),
        "reporter": ("needs the Developer role", "Protected environments"),
        "protected": ("prod may be a protected environment", "Protected environments"),
        "no-project": ("GitLab has no project hca/ingest-core-typo (404)", "gitlab_project:"),
    }[case]
    if case == "no-token":
        monkeypatch.delenv("GITLAB_TOKEN")
    elif case == "bad-token":
        monkeypatch.setenv("GITLAB_TOKEN", "glpat-wrong-token-000000000")
    elif case == "reporter":
        monkeypatch.setenv("GITLAB_TOKEN", "glpat-reporter-0123456789")
    elif case == "protected":
        gitlab.protect(PROJECT, "prod")
    else:
        config.write_text(config.read_text().replace("  ingest-core: {}", "  ingest-core: {gitlab_project: hca/ingest-core-typo}"))
    memory_before = _memory()

    result = cli("--config", config, "gitlab-sync")

    assert result.code == 3, result.stderr
    assert expected[0] in result.stderr and f"next: " in result.stderr and expected[1] in result.stderr
    assert "Traceback" not in result.stderr and "glpat-" not in result.stderr + result.stdout
    assert gitlab.deployments(PROJECT) == [] and _memory() == memory_before


def _memory() -> dict:
    from manual_deploy import paths

    try:
        return json.loads((paths.state_dir() / "gitlab-sync.json").read_text())
    except FileNotFoundError:
        return {}


def test_dry_run_shows_the_posts_and_posts_nothing(cli, bed, app_repo, gitlab, config, monkeypatch):
    monkeypatch.chdir(app_repo.checkout)
    gitlab.down()
    tag, sha, _ = ship(cli, bed, app_repo, config, "fix")
    gitlab.up()
    result = cli("--config", config, "gitlab-sync", "--dry-run")
    assert result.code == 0, result.stderr
    assert f"would record prod ingest-core: apply of {tag} (success)" in result.stderr
    assert f'"sha": "{sha}"' in result.stderr and '"tag": true' in result.stderr and "POST /api/v4/projects/hca%2Fingest-core/deployments" in result.stdout
    assert gitlab.deployments(PROJECT) == [] and not posts(gitlab) and _memory() == {}


def test_a_manual_deploy_older_than_a_later_ci_deploy_is_not_posted(cli, bed, app_repo, gitlab, config, monkeypatch):
    """GitLab came back and CI deployed again before anyone ran gitlab-sync: posting the older manual deploy
    would make the page show it as the newest, so it is remembered as superseded instead."""
    monkeypatch.chdir(app_repo.checkout)
    gitlab.down()
    tag, sha, _ = ship(cli, bed, app_repo, config, "fix")
    gitlab.up()
    ci = gitlab.add_ci_deployment(PROJECT, "prod", sha, "master")
    result = cli("--config", config, "-o", "json", "gitlab-sync")
    assert result.code == 0, result.stderr
    assert [r["ref"] for r in result.json()["superseded"]] == [tag]
    assert f"GitLab already shows CI deployment #{ci['iid']}" in result.stderr
    assert [d["id"] for d in gitlab.deployments(PROJECT)] == [ci["id"]]


def test_a_record_without_its_commit_gets_the_full_sha_from_gitlabs_tag(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """`apply --tag T` run outside the checkout knows no commit (nor does any earlier record of T): the
    sync asks GitLab which commit the tag T names and posts that full SHA."""
    app_repo.git("tag", "v1-hotfix")
    app_repo.git("push", "-q", "origin", "refs/tags/v1-hotfix")
    sha = app_repo.git("rev-parse", "HEAD")
    publish(bed, "ingest-core", "v1-hotfix")
    monkeypatch.chdir(tmp_path)
    gitlab.down()
    applied = cli("--config", config, "apply", "--env", "prod", "--app", "ingest-core", "--tag", "v1-hotfix", "--yes")
    assert applied.code == 0, applied.stderr
    assert audit.read()[-1]["commit"] is None and audit.read()[-1]["ref"] == "v1-hotfix"
    gitlab.up()
    assert cli("--config", config, "gitlab-sync").code == 0
    assert [(d["sha"], d["ref"]) for d in gitlab.deployments(PROJECT)] == [(sha, "v1-hotfix")]


def test_an_image_tagged_with_a_short_sha_is_recorded_with_the_full_one(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """quay builds branch commits as `<sha8>` images; no git tag has that name, but GitLab's copy resolves it."""
    sha = app_repo.git("rev-parse", "HEAD")
    publish(bed, "ingest-core", sha[:8])
    monkeypatch.chdir(tmp_path)
    gitlab.down()
    assert cli("--config", config, "apply", "--env", "prod", "--app", "ingest-core", "--tag", sha[:8], "--yes").code == 0
    gitlab.up()
    assert cli("--config", config, "gitlab-sync").code == 0
    assert [(d["sha"], d["ref"]) for d in gitlab.deployments(PROJECT)] == [(sha, sha[:8])]


def test_apply_of_several_apps_says_each_apps_own_reason(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """ingest-core's record goes in; GitLab has no project for ingest-exporter, and its copy of ingest-archiver
    (an empty repository) has no such tag: each warning names its own app's reason and next step."""
    from manual_deploy_sandbox.gitrepos import git

    empty = tmp_path / "archiver.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    gitlab.add_project("hca/ingest-archiver", empty)
    app_repo.git("tag", "v2-both")
    app_repo.git("push", "-q", "origin", "refs/tags/v2-both")
    apps = ("ingest-core", "ingest-exporter", "ingest-archiver")
    for app in apps:
        publish(bed, app, "v2-both")
    monkeypatch.chdir(tmp_path)
    applied = cli("--config", config, "apply", "--env", "prod", *(f"--app={app}" for app in apps), "--tag", "v2-both", "--yes")
    assert applied.code == 0, applied.stderr
    [made] = gitlab.deployments(PROJECT)
    assert made["ref"] == "v2-both" and f"recorded in GitLab as deployment #{made['iid']}" in applied.stdout
    warnings = {line.split(":")[1].strip(): line for line in applied.stderr.splitlines() if "not recorded in GitLab" in line}
    assert set(warnings) == {"ingest-exporter", "ingest-archiver"}
    assert "404 Project Not Found for hca/ingest-exporter" in warnings["ingest-exporter"]
    assert "has no tag v2-both yet" in warnings["ingest-archiver"] and "ingest-exporter" not in warnings["ingest-archiver"]


# What a proxy in front of GitLab (or a GitLab having a bad day) might answer instead: GitLab's own API never
# answers these, so the stand-in is told to, once, with answer_next.
BAD_ANSWERS = {
    "commit-not-a-commit": ("GET", r"/repository/commits/", 200, {"id": 4242},
                            "/repository/commits/v1-hotfix", "not a commit: its id is 4242, not a 40-hex SHA"),
    "list-not-a-list": ("GET", r"/deployments$", 200, {"message": "200 OK"},
                        "/deployments", "not a list of deployments: it is a JSON object, not a list"),
    "list-an-html-page": ("GET", r"/deployments$", 200, "<!DOCTYPE html><html><body>Sign in</body></html>",
                          "/deployments", "not a list of deployments: it is not JSON (text/html"),
    "post-without-id": ("POST", r"/deployments$", 201, {"status": "success", "ref": "v1-hotfix"},
                        "/deployments", "not a deployment: it has no id"),
}


def _deploy_without_its_commit(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path) -> str:
    """`apply --tag v1-hotfix` outside the checkout while GitLab is down: the sync must ask GitLab for the commit."""
    app_repo.git("tag", "v1-hotfix")
    app_repo.git("push", "-q", "origin", "refs/tags/v1-hotfix")
    publish(bed, "ingest-core", "v1-hotfix")
    monkeypatch.chdir(tmp_path)
    gitlab.down()
    applied = cli("--config", config, "apply", "--env", "prod", "--app", "ingest-core", "--tag", "v1-hotfix", "--yes")
    assert applied.code == 0, applied.stderr
    gitlab.up()
    return app_repo.git("rev-parse", "HEAD")


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_an_answer_that_is_not_what_was_asked_stops_the_sync_and_posts_nothing(cli, bed, app_repo, gitlab, config,
                                                                               monkeypatch, tmp_path, case):
    """Once GitLab answered a commit lookup with a body that was not a commit and `sha: 4242` was posted: every
    answer is checked before use; a bad one is exit 1 naming the URL, and nothing is posted after it. The next
    run, with GitLab answering normally again, records the deploy exactly once."""
    import re

    method, path_regex, status, body, path, said = BAD_ANSWERS[case]
    sha = _deploy_without_its_commit(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path)
    gitlab.answer_next(method, path_regex, status, body)
    posted_before = len(posts(gitlab))

    result = cli("--config", config, "gitlab-sync")

    assert result.code == 1, result.stderr
    url = f"{gitlab.url}/api/v4/projects/hca%2Fingest-core{path}"
    assert f"GitLab answered {method} {url} with a body that is {said}" in result.stderr
    assert "nothing is lost" in result.stderr and "next: GitLab, or a proxy in front of it" in result.stderr
    answered = next(i for i, r in enumerate(gitlab.requests) if r["method"] == method and re.search(path_regex, r["path"]))
    assert not [r for r in gitlab.requests[answered + 1:] if r["method"] in ("POST", "PUT")]
    assert len(posts(gitlab)) - posted_before == (1 if method == "POST" else 0)  # only the POST that was answered
    assert gitlab.deployments(PROJECT) == [] and _memory() == {}
    assert "Traceback" not in result.stderr and TOKEN not in result.stdout + result.stderr

    again = cli("--config", config, "gitlab-sync")
    assert again.code == 0, again.stderr
    assert [(d["sha"], d["ref"]) for d in gitlab.deployments(PROJECT)] == [(sha, "v1-hotfix")]


def test_apply_warns_when_gitlabs_answer_cannot_be_used_and_sync_records_it_later(cli, bed, app_repo, gitlab, config, monkeypatch):
    """Apply's own record never fails the deploy: a deployments list answered with an HTML page becomes the
    "not recorded in GitLab (…)" warning, nothing is posted, and `gitlab-sync` records the deploy later."""
    monkeypatch.chdir(app_repo.checkout)
    gitlab.answer_next("GET", r"/deployments$", 200, "<!DOCTYPE html><html><body>Sign in</body></html>")
    tag, sha, applied = ship(cli, bed, app_repo, config, "fix behind a proxy")
    assert applied.code == 0, applied.stderr
    url = f"{gitlab.url}/api/v4/projects/hca%2Fingest-core/deployments"
    assert f"ingest-core: not recorded in GitLab (GitLab answered GET {url} with a body that is not a list" in applied.stderr
    assert "run `manual-deploy gitlab-sync` again later" in applied.stderr and TOKEN not in applied.stderr + applied.stdout
    assert not posts(gitlab) and gitlab.deployments(PROJECT) == []
    synced = cli("--config", config, "gitlab-sync")
    assert synced.code == 0, synced.stderr
    assert [(d["sha"], d["ref"]) for d in gitlab.deployments(PROJECT)] == [(sha, tag)]
