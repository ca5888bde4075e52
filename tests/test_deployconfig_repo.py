"""The deploy-config checkout: shallow, cached, fetched again next time, read without executing."""

from __future__ import annotations

import pytest

from manual_deploy import deployconfig
from manual_deploy.gitlab import gitlab_slug
from manual_deploy.errors import OperationFailed, Refused, UsageError
from manual_deploy_sandbox.deployrepo import make_deploy_repo


@pytest.fixture
def deploy_repo(tmp_path):
    return make_deploy_repo(tmp_path / "fixture")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MANUAL_DEPLOY_CACHE_DIR", str(tmp_path / "cache"))


def test_checkout_reads_replicas_and_environment_per_branch(deploy_repo):
    master = deployconfig.checkout(deploy_repo.url, "master")
    assert master.sha == deploy_repo.head("master")
    assert master.replicas("prod")["INGEST_EXPORTER_REPLICAS"] == "10"
    assert deployconfig.replica_count(master, "prod", "INGEST_CORE_REPLICAS", None) == 1
    env = master.environment("prod")
    assert env["FASTQ_VALIDATOR_IMAGE"].startswith("quay.io/ebi-ait/fastq_utils:")
    assert "TF_VAR_account_id" not in env
    assert (master.chart_dir("apps/ingest-core") / "Chart.yaml").is_file()

    dev = deployconfig.checkout(deploy_repo.url, "dev")
    assert dev.sha == deploy_repo.head("dev") != master.sha


def test_shallow_and_cached_then_fetches_new_commits(deploy_repo):
    first = deployconfig.checkout(deploy_repo.url, "master")
    from manual_deploy_sandbox.gitrepos import git

    assert git(first.path, "rev-parse", "--is-shallow-repository") == "true"
    new_sha = deploy_repo.set_replicas("prod", "INGEST_CORE_REPLICAS", 3)
    second = deployconfig.checkout(deploy_repo.url, "master")
    assert second.path == first.path and second.sha == new_sha
    assert deployconfig.replica_count(second, "prod", "INGEST_CORE_REPLICAS", None) == 3


def test_config_ref_by_sha_and_local_edits_are_discarded(deploy_repo):
    old = deploy_repo.head("master")
    deploy_repo.set_replicas("prod", "INGEST_CORE_REPLICAS", 5)
    latest = deployconfig.checkout(deploy_repo.url, "master")
    (latest.path / "config/replicas/environment_prod").write_text("tampered\n")
    pinned = deployconfig.checkout(deploy_repo.url, old)
    assert pinned.sha == old
    assert deployconfig.replica_count(pinned, "prod", "INGEST_CORE_REPLICAS", None) == 1


def test_missing_variable_needs_replicas_flag(deploy_repo):
    config = deployconfig.checkout(deploy_repo.url, "master")
    with pytest.raises(Refused, match="INGEST_ARCHIVER_REPLICAS is not set") as caught:
        deployconfig.replica_count(config, "prod", "INGEST_ARCHIVER_REPLICAS", None)
    assert "--replicas" in caught.value.hint
    assert deployconfig.replica_count(config, "prod", "INGEST_ARCHIVER_REPLICAS", 2) == 2


def test_unknown_ref_and_unreachable_repo(deploy_repo, tmp_path):
    with pytest.raises(UsageError, match="'no-such-branch' is not a branch, tag or commit of the deploy config repository") as caught:
        deployconfig.checkout(deploy_repo.url, "no-such-branch")
    assert deploy_repo.url in caught.value.message and "--config-ref" in caught.value.hint
    with pytest.raises(UsageError, match="'deadbeef' is not a branch, tag or commit"):
        deployconfig.checkout(deploy_repo.url, "deadbeef")
    with pytest.raises(OperationFailed):
        deployconfig.checkout(str(tmp_path / "missing.git"), "master")
    with pytest.raises(UsageError):
        deployconfig.checkout(deploy_repo.url, "--upload-pack=touch /tmp/x")


def test_missing_files_are_refusals(deploy_repo):
    config = deployconfig.checkout(deploy_repo.url, "master")
    with pytest.raises(Refused, match="environment_qa"):
        config.replicas("qa")
    with pytest.raises(Refused, match="apps/no-such-app/Chart.yaml"):
        config.chart_dir("apps/no-such-app")
    with pytest.raises(Refused):
        config.chart_dir("../../etc")


def test_gitlab_slugs():
    assert gitlab_slug("hca/ingest-core") == "hca-ingest-core"
    assert gitlab_slug("prod") == "prod"
    assert gitlab_slug("HCA/Ingest_Core.v2/") == "hca-ingest-core-v2"
    assert len(gitlab_slug("x" * 100)) == 63


def _fetched_at(config) -> int:
    """git rewrites FETCH_HEAD on every fetch."""
    return (config.path / ".git" / "FETCH_HEAD").stat().st_mtime_ns


def test_an_unchanged_clean_cache_is_used_without_fetching(deploy_repo):
    first = deployconfig.checkout(deploy_repo.url, "master")
    fetched = _fetched_at(first)

    again = deployconfig.checkout(deploy_repo.url, "master")

    assert again.sha == first.sha and _fetched_at(again) == fetched
    pinned = deployconfig.checkout(deploy_repo.url, first.sha)  # a full SHA never moves: not even ls-remote
    assert pinned.sha == first.sha and _fetched_at(pinned) == fetched


@pytest.mark.parametrize("damage", ["edit", "add", "delete"])
def test_a_changed_cache_is_restored_even_when_the_remote_did_not_move(deploy_repo, damage):
    """Whatever is deployed is exactly the remote's commit: hand edits in the cache never survive."""
    first = deployconfig.checkout(deploy_repo.url, "master")
    replicas = first.path / "config/replicas/environment_prod"
    if damage == "edit":
        replicas.write_text(replicas.read_text() + "\nINGEST_CORE_REPLICAS=9\n")
        assert deployconfig.replica_count(first, "prod", "INGEST_CORE_REPLICAS", None) == 9
    elif damage == "add":
        (first.path / "apps" / "ingest-core" / "templates" / "extra.yaml").write_text("kind: Secret\n")
    else:
        replicas.unlink()

    again = deployconfig.checkout(deploy_repo.url, "master")

    assert again.sha == first.sha
    assert deployconfig.replica_count(again, "prod", "INGEST_CORE_REPLICAS", None) == 1
    assert not (again.path / "apps" / "ingest-core" / "templates" / "extra.yaml").exists()


def test_an_annotated_tag_is_followed_through_the_cache(deploy_repo):
    deploy_repo.remote_git("tag", "-a", "config-v1", "-m", "release", "master")
    first = deployconfig.checkout(deploy_repo.url, "config-v1")
    assert first.sha == deploy_repo.head("master")
    fetched = _fetched_at(first)
    assert deployconfig.checkout(deploy_repo.url, "config-v1").sha == first.sha
    assert _fetched_at(first) == fetched


def test_unknown_ref_message_hides_url_credentials():
    error = deployconfig._unknown_ref("https://bot:s3cret-token@github.com/ebi-ait/ingest-kube-deployment.git", "nope", "git: couldn't find remote ref")
    assert "s3cret-token" not in error.message + error.hint
    assert "https://***@github.com/ebi-ait/ingest-kube-deployment.git" in error.message and "'nope'" in error.message
