"""`manual-deploy deploy`: the whole chain in one command, resumable after a failure."""

from __future__ import annotations

from bed import NS, history, write_bed_config
from manual_deploy import audit
from helpers import tags
from manual_deploy_sandbox.quay import QuayStandIn

FAIL = [("waiting", 0.2), ("building", 0.3), ("error", 0)]


def test_fails_at_wait_image_then_resumes_there_without_retagging(cli, bed, app_repo, monkeypatch, tmp_path):
    with QuayStandIn(bed.registry.url) as quay:
        config = write_bed_config(tmp_path / "c.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                                  helm=bed.helm, api_url=quay.api_url)
        monkeypatch.chdir(app_repo.checkout)
        head = app_repo.git("rev-parse", "HEAD")
        tag_prefix = f"prod-{head[:8]}-"
        # quay's trigger: the first build of the tag fails
        first = cli("--config", config, "deploy", "--env", "prod", "--yes", "--no-build-timeout", "3s", "--image-timeout", "30s",
                    "--reason", "INC-2")
        assert first.code == 4, first.stderr  # no build appeared in time
        pushed = [t for t in tags(app_repo.remote) if t.startswith(tag_prefix)]
        assert len(pushed) == 1
        tag = pushed[0]

        quay.add_build("ingest-core", tag)  # the build is fixed and re-run on quay
        second = cli("--config", config, "deploy", "--env", "prod", "--yes", "-o", "json")

        assert second.code == 0, second.stderr
        assert "resuming: tag already done" in second.stderr and "continuing at wait-image" in second.stderr
        assert [t for t in tags(app_repo.remote) if t.startswith(tag_prefix)] == [tag]  # not re-tagged
        assert second.json()["resumed_from"] == "wait-image"
        assert [r["status"] for r in history(bed, "ingest-core")] == ["deployed"]
        assert audit.read()[-1]["command"] == "deploy"  # the record names the command that was run

        third = cli("--config", config, "deploy", "--env", "prod", "--yes")
        assert third.code == 0, third.stderr
        assert "continuing at apply" in third.stderr and "no change" in third.stderr


def test_failed_build_stops_the_chain_with_the_build_url(cli, bed, app_repo, monkeypatch, tmp_path):
    with QuayStandIn(bed.registry.url) as quay:
        config = write_bed_config(tmp_path / "c.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                                  helm=bed.helm, api_url=quay.api_url)
        monkeypatch.chdir(app_repo.checkout)
        head = app_repo.git("rev-parse", "HEAD")

        # play quay's trigger: a failing build for whatever tag appears
        import threading, time

        stop = threading.Event()

        def trigger():
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                for name in tags(app_repo.remote):
                    if name.startswith(f"prod-{head[:8]}-") and not quay.builds:
                        quay.add_build("ingest-core", name, phases=FAIL)
                time.sleep(0.1)

        thread = threading.Thread(target=trigger, daemon=True)
        thread.start()
        try:
            result = cli("--config", config, "deploy", "--env", "prod", "--yes")
        finally:
            stop.set()
            thread.join(timeout=5)
        assert result.code == 1, result.stderr
        assert "ended in phase error" in result.stderr and "/build/" in result.stderr
        assert history(bed, "ingest-core") == []


def _pushed(app_repo, sha: str) -> dict[str, str]:
    """The release tags on the remote for prod and this commit: {name: commit it points at}."""
    return {name: commit for name, commit in tags(app_repo.remote).items() if name.startswith(f"prod-{sha[:8]}-")}


def test_restart_starts_over_at_the_tag_step(cli, bed, app_repo, monkeypatch, tmp_path):
    """Progress is recorded (tag done, wait-image failed): a plain re-run resumes at wait-image,
    `--restart` runs every step again from the tag."""
    with QuayStandIn(bed.registry.url) as quay:  # no build ever appears: wait-image exits 4 after the tag
        config = write_bed_config(tmp_path / "c.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                                  helm=bed.helm, api_url=quay.api_url)
        monkeypatch.chdir(app_repo.checkout)
        head = app_repo.git("rev-parse", "HEAD")
        args = ("--config", config, "deploy", "--env", "prod", "--yes", "--no-build-timeout", "1s", "--image-timeout", "20s")

        first = cli(*args)
        assert first.code == 4, first.stderr
        assert "── step 1/3: tag" in first.stderr and "── step 2/3: wait-image" in first.stderr
        pushed = _pushed(app_repo, head)
        assert list(pushed.values()) == [head]
        (tag,) = pushed

        resumed = cli(*args)  # the progress was recorded: a plain re-run skips the tag
        assert resumed.code == 4, resumed.stderr
        assert f"resuming: tag already done for {head[:8]}; continuing at wait-image" in resumed.stderr
        assert "── step 1/3: tag" not in resumed.stderr and "── step 2/3: wait-image" in resumed.stderr

        restarted = cli(*args, "--restart")
        assert restarted.code == 4, restarted.stderr
        assert "resuming" not in restarted.stderr and "already done for" not in restarted.stderr  # nothing skipped
        assert "── step 1/3: tag" in restarted.stderr
        assert restarted.stderr.index("── step 1/3: tag") < restarted.stderr.index("── step 2/3: wait-image")
        assert f"tag {tag} already on origin at {head[:8]}: reused" in restarted.stderr  # the tag step really ran
        assert _pushed(app_repo, head) == {tag: head}  # same commit, so the same tag: re-run, not re-tagged
        assert history(bed, "ingest-core") == []

        after = cli(*args)  # --restart recorded its own progress again
        assert after.code == 4, after.stderr
        assert "continuing at wait-image" in after.stderr and "── step 1/3: tag" not in after.stderr


def test_a_new_commit_starts_a_new_deploy_with_its_own_tag(cli, bed, app_repo, monkeypatch, tmp_path):
    with QuayStandIn(bed.registry.url) as quay:
        config = write_bed_config(tmp_path / "c.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                                  helm=bed.helm, api_url=quay.api_url)
        monkeypatch.chdir(app_repo.checkout)
        commit_a = app_repo.git("rev-parse", "HEAD")
        args = ("--config", config, "deploy", "--env", "prod", "--yes", "--no-build-timeout", "1s", "--image-timeout", "20s")

        first = cli(*args)
        assert first.code == 4, first.stderr  # tag done and recorded for A, wait-image failed
        (tag_a,) = _pushed(app_repo, commit_a)

        commit_b = app_repo.commit("fix the endpoint")
        app_repo.git("push", "-q", "origin", "master")  # on the source branch: the merged check passes
        second = cli(*args)

        assert second.code == 4, second.stderr
        assert "starting a new deploy (the recorded one was for another commit or env)" in second.stderr
        assert "resuming" not in second.stderr
        assert "── step 1/3: tag" in second.stderr
        pushed_b = _pushed(app_repo, commit_b)
        assert list(pushed_b.values()) == [commit_b]
        (tag_b,) = pushed_b
        assert f"  tag {tag_b}" in second.stderr and tag_b != tag_a
        assert _pushed(app_repo, commit_a) == {tag_a: commit_a}  # A's tag is left as it was


def test_start_build_is_passed_to_the_wait_step(cli, bed, app_repo, monkeypatch, tmp_path):
    """No trigger fires for the new tag: `deploy --start-build` starts quay's build and deploys its image."""
    admin = "quay-admin-token-deploy-0123"
    with QuayStandIn(bed.registry.url, admin_token=admin) as quay:
        trigger = quay.add_trigger("ingest-core", phases=[("waiting", 0.2), ("building", 0.5), ("complete", 0)])
        config = write_bed_config(tmp_path / "c.yaml", registry_url=bed.registry.url, deploy_url=bed.deploy_repo.url,
                                  helm=bed.helm, api_url=quay.api_url)
        monkeypatch.chdir(app_repo.checkout)
        monkeypatch.setenv("QUAY_TOKEN", admin)

        result = cli("--config", config, "deploy", "--env", "prod", "--yes", "--start-build", "--no-build-timeout", "20s")

        assert result.code == 0, result.stderr
        (tag,) = [t for t in tags(app_repo.remote) if t.startswith("prod-")]
        starts = [r for r in quay.requests if r["method"] == "POST"]
        assert [(r["path"].rsplit("/trigger/", 1)[1], r["body"]) for r in starts] == [
            (f"{trigger}/start", {"refs": {"kind": "tag", "name": tag}})]
        assert "started build" in result.stderr
        assert [r["status"] for r in history(bed, "ingest-core")] == ["deployed"]
        assert admin not in result.stdout + result.stderr
