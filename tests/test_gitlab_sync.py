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


def team_records(bed, app: str = "ingest-core") -> list[dict]:
    """The app's records in the prod cluster, as any engineer reads them."""
    from bed import NS

    from manual_deploy import deploy_records

    kube = bed.apps_api()[1].api_client
    return deploy_records.read_book(kube, NS, app).records


def forget_gitlab_answers(bed, app: str = "ingest-core") -> None:
    """Drop the GitLab answers stored in the app's cluster records (as if a sync died before storing them)."""
    from bed import NS

    from manual_deploy import deploy_records

    def drop(book) -> bool:
        for record in book.records:
            record.pop("gitlab", None)
        return True

    deploy_records.update(bed.apps_api()[1].api_client, NS, app, drop)


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
    """GitLab took the POST but the answer never arrived (here: the memory file is lost, and the answer was never
    stored in the team's record): the next run reads GitLab's latest deployments, finds the record and posts nothing."""
    from manual_deploy import paths

    monkeypatch.chdir(app_repo.checkout)
    ship(cli, bed, app_repo, config, "fix one")
    assert len(gitlab.deployments(PROJECT)) == 1
    (paths.state_dir() / "gitlab-sync.json").unlink()
    forget_gitlab_answers(bed)
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
    record_id = audit.read()[-1]["id"]
    assert result.stdout.startswith(record_id[:12]) and f"[record {record_id[:12]}]" in result.stderr
    assert not any("claim" in r for r in team_records(bed))  # a dry run claims nothing


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


# --- the team: any engineer syncs the team's records, from any machine ------------------------------------


def machine(tmp_path, user: str) -> dict[str, str]:
    """Another engineer on another machine: their login name, HOME and state directory."""
    home = tmp_path / user
    return {"USER": user, "LOGNAME": user, "HOME": str(home), "MANUAL_DEPLOY_STATE_DIR": str(home / "state"),
            "MANUAL_DEPLOY_CACHE_DIR": str(home / "cache")}


def be(monkeypatch, tmp_path, user: str) -> None:
    """From here on, the in-process CLI runs as `user` on their own machine."""
    for key, value in machine(tmp_path, user).items():
        monkeypatch.setenv(key, value)


def deployment_posts(gitlab) -> list[dict]:
    return [r for r in gitlab.requests if r["method"] == "POST" and r["path"].endswith("/deployments")]


def test_alices_deploys_are_recorded_by_bob_after_her_laptop_is_lost(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """Alice deploys twice while GitLab is down, then her state directory is lost. Bob sees both in `history`, and
    his gitlab-sync posts both in order with the full SHA and tag; Alice's sync from a new machine posts nothing."""
    import shutil

    monkeypatch.chdir(app_repo.checkout)
    be(monkeypatch, tmp_path, "alice")
    gitlab.down()
    tag1, sha1, first = ship(cli, bed, app_repo, config, "INC-1 fix upload")
    tag2, sha2, second = ship(cli, bed, app_repo, config, "INC-2 fix upload again")
    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    shutil.rmtree(tmp_path / "alice" / "state")
    gitlab.up()

    be(monkeypatch, tmp_path, "bob")
    seen = cli("--config", config, "-o", "json", "history", "--env", "prod", "--app", "ingest-core")
    assert seen.code == 0, seen.stderr
    assert [(r["user"], r["reason"], r["ref"], r["result"]) for r in seen.json()["records"]] == [
        ("alice", "INC-1 fix upload", tag1, "deployed"), ("alice", "INC-2 fix upload again", tag2, "deployed")]
    looked = cli("--config", config, "-o", "json", "status", "--env", "prod", "--app", "ingest-core")
    row = looked.json()["envs"]["prod"]["apps"]["ingest-core"]
    assert (row["reason"], row["gitlab"]) == ("INC-2 fix upload again", "not recorded")  # Alice's, seen from Bob's machine
    synced = cli("--config", config, "-o", "json", "gitlab-sync")
    assert synced.code == 0, synced.stderr
    assert [(d["environment"]["name"], d["sha"], d["ref"], d["status"]) for d in gitlab.deployments(PROJECT)] == [
        ("prod", sha1, tag1, "success"), ("prod", sha2, tag2, "success")]
    stored = {r["ref"]: r["gitlab"] for r in team_records(bed)}
    assert [stored[tag]["deployment_id"] for tag in (tag1, tag2)] == [d["id"] for d in gitlab.deployments(PROJECT)]
    assert all(entry["by"].startswith("bob@") and entry["outcome"] == "recorded" for entry in stored.values())
    assert not any("claim" in r for r in team_records(bed))
    row = cli("--config", config, "-o", "json", "status", "--env", "prod", "--app", "ingest-core").json()["envs"]["prod"]["apps"]["ingest-core"]
    assert row["gitlab"] == f"recorded (#{gitlab.deployments(PROJECT)[-1]['iid']})"

    be(monkeypatch, tmp_path, "alice")  # her new laptop: an empty state directory
    before = len(gitlab.requests)
    again = cli("--config", config, "gitlab-sync")
    assert again.code == 0 and "nothing to record" in again.stderr, again.stderr
    assert len(gitlab.requests) == before and len(gitlab.deployments(PROJECT)) == 2


def test_two_engineers_syncing_at_the_same_moment_post_a_rollback_once(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """Bob rolls back while GitLab is down; once it is back, Alice's and Bob's gitlab-sync run at once, as two
    processes: the claim in the cluster lets one of them post it, exactly once."""
    import os
    import subprocess
    import sys

    monkeypatch.chdir(app_repo.checkout)
    be(monkeypatch, tmp_path, "alice")
    tag1, sha1, _ = ship(cli, bed, app_repo, config, "fix one")
    ship(cli, bed, app_repo, config, "fix two")
    assert len(gitlab.deployments(PROJECT)) == 2  # GitLab answered: each deploy recorded itself
    be(monkeypatch, tmp_path, "bob")
    gitlab.down()
    back = cli("--config", config, "rollback", "--env", "prod", "--app", "ingest-core", "--yes", "--reason", "INC-3 search broke")
    assert back.code == 0, back.stderr
    gitlab.up()

    procs = [subprocess.Popen([sys.executable, "-m", "manual_deploy", "--config", str(config), "-o", "json", "gitlab-sync"],
                              env={**os.environ, **machine(tmp_path, user)}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for user in ("alice", "bob")]
    answers = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], answers
    assert len(deployment_posts(gitlab)) == 3
    assert [(d["sha"], d["ref"]) for d in gitlab.deployments(PROJECT)][-1] == (sha1, tag1)
    reports = [json.loads(out) for out, _ in answers]
    assert sum(len(r["recorded"]) for r in reports) == 1
    [rollback] = [r for r in team_records(bed) if r["command"] == "rollback"]
    assert rollback["gitlab"]["deployment_id"] == gitlab.deployments(PROJECT)[-1]["id"] and "claim" not in rollback


def test_a_claim_held_by_a_colleague_waits_and_a_stale_one_is_taken_over(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """Carol's sync claimed the record, posted it and died before storing the answer. While her claim is fresh,
    Bob's sync leaves the record to her; once it is stale (CLAIM_STALE_S) Bob takes it over, reads GitLab's list
    again and finds her deployment: nothing is posted twice."""
    import requests

    from bed import NS
    from manual_deploy import deploy_records, gitlab_claims, gitlab_records

    monkeypatch.chdir(app_repo.checkout)
    gitlab.down()
    tag, sha, _ = ship(cli, bed, app_repo, config, "fix")
    gitlab.up()
    [record] = team_records(bed)
    made = requests.post(f"{gitlab.url}/api/v4/projects/hca%2Fingest-core/deployments", headers={"PRIVATE-TOKEN": TOKEN},
                         json={"environment": "prod", "sha": sha, "ref": tag, "tag": True, "status": "success"}, timeout=10).json()

    def claim_by_carol(age_s: int):
        from datetime import datetime, timedelta, timezone

        at = (datetime.now(timezone.utc) - timedelta(seconds=age_s)).isoformat(timespec="seconds")

        def put(book) -> bool:
            book.find(record["id"])["claim"] = {"by": "carol@laptop", "at": at, "run": "carols-run"}
            return True

        deploy_records.update(bed.apps_api()[1].api_client, NS, "ingest-core", put)

    be(monkeypatch, tmp_path, "bob")
    claim_by_carol(5)
    busy = cli("--config", config, "-o", "json", "gitlab-sync", "--env", "prod")
    assert busy.code == 0, busy.stderr
    assert "being recorded by carol@laptop's gitlab-sync" in busy.stderr and len(busy.json()["being_recorded"]) == 1
    assert gitlab_records.gitlab_state(team_records(bed)[0]) == "being recorded by carol@laptop"

    claim_by_carol(gitlab_claims.CLAIM_STALE_S + 5)
    taken = cli("--config", config, "-o", "json", "gitlab-sync", "--env", "prod")
    assert taken.code == 0, taken.stderr
    assert "carol@laptop's claim is stale; taken over" in taken.stderr
    assert [r["deployment_id"] for r in taken.json()["already_known"]] == [made["id"]] and not taken.json()["recorded"]
    assert len(deployment_posts(gitlab)) == 1
    [record] = team_records(bed)
    assert record["gitlab"]["deployment_id"] == made["id"] and "claim" not in record


def test_a_record_the_cluster_could_not_take_is_posted_once_from_any_machine(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """The cluster refuses the records' writes at the end of Alice's deploy (GitLab down too): the record waits in
    her queue. Her gitlab-sync posts it from the queue (the answer in her memory); the next command pushes it.
    Bob's gitlab-sync and hers, run after, never post it again."""
    from bed import NS
    from manual_deploy import record_queue

    monkeypatch.chdir(app_repo.checkout)
    be(monkeypatch, tmp_path, "alice")
    gitlab.down()
    for verb in ("create", "update"):
        bed.kube.deny(verb, "configmaps", namespace=NS)
    tag, sha, applied = ship(cli, bed, app_repo, config, "fix while the cluster refuses")
    assert applied.code == 0, applied.stderr
    assert "waits in this machine's audit log" in applied.stderr
    [waiting] = record_queue.queued("prod")
    gitlab.up()

    synced = cli("--config", config, "-o", "json", "gitlab-sync", "--env", "prod")
    assert synced.code == 0, synced.stderr
    assert [r["record"] for r in synced.json()["recorded"]] == [waiting["id"]] and len(deployment_posts(gitlab)) == 1
    assert record_queue.queued("prod") == [waiting]

    bed.kube.clear_denials()
    assert cli("--config", config, "status", "--env", "prod").code == 0  # the next command pushes the queue
    assert record_queue.queued("prod") == []
    assert [r["id"] for r in team_records(bed)] == [waiting["id"]]

    for user in ("bob", "alice", "bob"):
        be(monkeypatch, tmp_path, user)
        again = cli("--config", config, "-o", "json", "gitlab-sync", "--env", "prod")
        assert again.code == 0, again.stderr
        assert not again.json()["recorded"]
    assert len(deployment_posts(gitlab)) == 1
    [record] = team_records(bed)
    assert record["gitlab"]["deployment_id"] == gitlab.deployments(PROJECT)[0]["id"]


def test_skip_unblocks_a_stream_held_by_a_tag_that_is_no_git_ref(cli, bed, app_repo, gitlab, config, monkeypatch, tmp_path):
    """An image tagged by hand (no git tag names it) can never be posted and holds the newer deploy behind it;
    the sync says how to skip it; --skip marks it with who and why, and the next sync posts the newer one."""
    from manual_deploy import gitlab_records
    from manual_deploy.config import load_config

    publish(bed, "ingest-core", "hand-tagged-1")
    monkeypatch.chdir(tmp_path)
    gitlab.down()
    by_hand = cli("--config", config, "apply", "--env", "prod", "--app", "ingest-core", "--tag", "hand-tagged-1", "--yes",
                  "--reason", "hotfix image built by hand")
    assert by_hand.code == 0, by_hand.stderr
    held = audit.read()[-1]["id"]
    monkeypatch.chdir(app_repo.checkout)
    tag, sha, _ = ship(cli, bed, app_repo, config, "the real fix")
    gitlab.up()

    step = f'manual-deploy gitlab-sync --skip {held[:12]} --reason "…"'
    dry = cli("--config", config, "gitlab-sync", "--dry-run")
    assert dry.code == 1 and held[:12] in dry.stdout + dry.stderr
    kept = cli("--config", config, "gitlab-sync")
    assert kept.code == 1, kept.stderr
    assert "has no tag hand-tagged-1" in kept.stderr and step in kept.stderr
    assert f"waits for the older record of hand-tagged-1" in kept.stderr and gitlab.deployments(PROJECT) == []

    before = team_records(bed)
    for bad, said in ((["--skip", held[:12]], "needs --reason"),
                      (["--skip", held[:12], "--reason", "  "], "needs --reason"),
                      (["--reason", "why"], "--reason goes with --skip"),
                      (["--skip", held[:6], "--reason", "why"], "is not a record id"),
                      (["--skip", "0123456789abcdef", "--reason", "why"], "no record 0123456789abcdef"),
                      (["--skip", held[:12], "--reason", "why", "--dry-run"], "do not go together")):
        refused = cli("--config", config, "gitlab-sync", *bad)
        assert refused.code == 2 and said in refused.stderr, (bad, refused.stderr)
    assert team_records(bed) == before

    skipped = cli("--config", config, "-o", "json", "gitlab-sync", "--skip", held[:12], "--reason", "image built by hand, no git tag")
    assert skipped.code == 0, skipped.stderr
    assert skipped.json()["skipped"]["record"] == held
    [record] = [r for r in team_records(bed) if r["id"] == held]
    assert record["skipped"]["why"] == "image built by hand, no git tag" and record["skipped"]["by"]
    done = cli("--config", config, "-o", "json", "gitlab-sync")
    assert done.code == 0, done.stderr
    assert [(d["sha"], d["ref"]) for d in gitlab.deployments(PROJECT)] == [(sha, tag)]
    records = team_records(bed)
    by = records[0]["skipped"]["by"]
    assert [gitlab_records.gitlab_state(r) for r in records] == [
        f"skipped by {by}: image built by hand, no git tag", f"recorded (#{gitlab.deployments(PROJECT)[0]['iid']})"]
    states = gitlab_records.last_deploy_states(load_config(config), {("prod", "ingest-core"): True, ("prod", "ontology"): True},
                                               records)
    assert states == {("prod", "ingest-core"): f"recorded (#{gitlab.deployments(PROJECT)[0]['iid']})",
                      ("prod", "ontology"): "no team record"}
    again = cli("--config", config, "gitlab-sync", "--skip", held[:12], "--reason", "once more")
    assert again.code == 0 and "already skipped by" in again.stderr


def test_an_ambiguous_id_prefix_is_refused_and_changes_nothing(cli, bed, gitlab, config):
    from bed import NS
    from manual_deploy import deploy_records

    base = {"at": "2026-01-01T00:00:00+00:00", "user": "dana", "host": "box", "command": "apply", "env": "prod",
            "app": "ontology", "ref": "v1", "image": "x/ontology:v1", "result": "deployed"}
    records = [{**base, "id": "abcdef00" + "1" * 24}, {**base, "id": "abcdef00" + "2" * 24}]
    deploy_records.update(bed.apps_api()[1].api_client, NS, "ontology",
                          lambda book: book.records.extend(records) is None)
    refused = cli("--config", config, "gitlab-sync", "--env", "prod", "--skip", "abcdef00", "--reason", "why")
    assert refused.code == 2 and "matches 2 records" in refused.stderr, refused.stderr
    assert team_records(bed, "ontology") == records


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
