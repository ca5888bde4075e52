"""`manual-deploy deploy`: the whole chain in one command, resumable after a failure."""

from __future__ import annotations

from bed import NS, history, write_bed_config
from manual_deploy import audit
from helpers import tags
from manual_deploy.sandbox.quay import QuayStandIn

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


def test_restart_and_new_commit_start_over(cli, bed, app_repo, monkeypatch):
    monkeypatch.chdir(app_repo.checkout)
    result = cli("--config", bed.config, "deploy", "--env", "prod", "--yes", "--restart", "--no-build-timeout", "1s", "--image-timeout", "2s")
    assert result.code == 4
    assert "resuming" not in result.stderr
