"""CronJob and Ingress on the release path, against the emulator: a failing one is named in the progress
lines and in the failure, with its remedy, and the release is rolled back; an Ingress that gets its
address deploys. The chart is ingest-core's with a CronJob shaped like ingest-kube-deployment's
`cron-jobs/update-project-catalogue`, or an Ingress for its Service, as extra templates.
"""

from __future__ import annotations

import threading
import time

import pytest

from bed import NS, apply, history, publish
from manual_deploy.release import operation
from manual_deploy.release import watch as release_watch
from manual_deploy_sandbox.kube import KubeEmulator

CHART = "apps/ingest-core/templates"
CRON = "update-project-catalogue"
GRACE = "3s"

needs_the_emulators_controllers = pytest.mark.skipif(
    not (hasattr(KubeEmulator, "run_cronjob") and hasattr(KubeEmulator, "add_ingress_failure")),
    reason="the kube emulator runs no CronJobs and has no Ingress controller (the `emulator` branch adds them)")
pytestmark = needs_the_emulators_controllers


def cronjob(image: str, *, suspend: bool = False) -> str:
    return (f"apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {CRON}\n"
            f"spec:\n  schedule: \"0 3 * * *\"\n  suspend: {str(suspend).lower()}\n  concurrencyPolicy: Forbid\n"
            f"  jobTemplate:\n    spec:\n      backoffLimit: 1\n      template:\n        spec:\n"
            f"          restartPolicy: Never\n          containers:\n          - name: update\n"
            f"            image: {image}\n")


INGRESS = ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ingest-core\n  annotations:\n"
           "    alb.ingress.kubernetes.io/scheme: internet-facing\nspec:\n  ingressClassName: alb\n  rules:\n"
           "  - http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          service:\n"
           "            name: ingest-core-service\n            port:\n              number: 80\n")


def extra(deploy_repo, templates: str) -> None:
    deploy_repo.commit_file(f"{CHART}/extra.yaml", templates or "# nothing extra\n", "ingest-core: extra templates")


@pytest.fixture(autouse=True)
def frequent_progress(monkeypatch):
    """A progress line every half second (10 s in real use), so one shows within a short grace."""
    monkeypatch.setattr(release_watch, "PROGRESS_EVERY_S", 0.5)
    monkeypatch.setattr(operation, "PROGRESS_EVERY_S", 0.5)


def good_revision(cli, bed, deploy_repo, tag: str) -> None:
    extra(deploy_repo, "")
    publish(bed, "ingest-core", tag)
    result = apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes")
    assert result.code == 0, result.stderr


def bad_apply(cli, bed, tag: str):
    publish(bed, "ingest-core", tag)
    return apply(cli, bed, "--app", "ingest-core", "--tag", tag, "--yes", "--grace", GRACE, "--timeout", "120s")


def assert_rolled_back(bed, result) -> None:
    assert result.code == 1, result.stderr
    assert "rolled back" in result.stderr, result.stderr
    assert history(bed, "ingest-core")[-1]["status"] == "deployed"


def progress_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("  ingest-core: waiting for")]


def run_when_created(kube: KubeEmulator) -> threading.Thread:
    """Fire the CronJob's schedule as soon as helm has created it (the emulator has no cron timer)."""
    def fire() -> None:
        deadline = time.monotonic() + 60
        while kube.get("batch/v1/cronjobs", NS, CRON) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        kube.run_cronjob(NS, CRON)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def test_a_failed_job_of_a_cronjob_is_named_in_progress_and_in_the_failure_with_its_remedy(cli, bed, deploy_repo):
    good_revision(cli, bed, deploy_repo, "cron-good")
    bed.kube.add_failure("quay.io/ebi-ait/ingest-catalogue:broken*", "CrashLoopBackOff")
    extra(deploy_repo, cronjob("quay.io/ebi-ait/ingest-catalogue:broken"))
    fired = run_when_created(bed.kube)

    result = bad_apply(cli, bed, "cron-bad")
    fired.join(timeout=10)

    assert_rolled_back(bed, result)
    assert any(f"CronJob {CRON}: job {CRON}-" in line and "failed — BackoffLimitExceeded" in line
               for line in progress_lines(result)), result.stderr
    error = result.stderr.split("error: ", 1)[1]
    assert f"BackoffLimitExceeded in CronJob {CRON}" in error, result.stderr
    assert f"next: a Job the CronJob started failed: read its logs (`kubectl -n {NS} logs job/{CRON}-" in result.stderr
    assert "`manual-deploy apply --env prod --app ingest-core --tag cron-bad`" in result.stderr
    assert bed.kube.get("batch/v1/cronjobs", NS, CRON) is None  # the good revision had none


def test_a_suspended_cronjob_is_named_with_how_to_resume_it(cli, bed, deploy_repo):
    good_revision(cli, bed, deploy_repo, "paused-good")
    extra(deploy_repo, cronjob("quay.io/ebi-ait/ingest-catalogue:c1", suspend=True))

    result = bad_apply(cli, bed, "paused-bad")

    assert_rolled_back(bed, result)
    assert any(f"CronJob {CRON}: suspended (spec.suspend: true)" in line for line in progress_lines(result)), result.stderr
    assert f"Suspended in CronJob {CRON}" in result.stderr.split("error: ", 1)[1], result.stderr
    assert "next: the CronJob is suspended (spec.suspend: true) and starts no Job: set `suspend: false`" in result.stderr


def test_an_ingress_the_controller_cannot_build_is_named_with_the_controllers_words(cli, bed, deploy_repo):
    good_revision(cli, bed, deploy_repo, "alb-good")
    words = "Failed build model due to ingress: prod-environment/ingest-core: none certificate found for host"
    bed.kube.add_ingress_failure("ingest-core", "FailedBuildModel", words)
    extra(deploy_repo, INGRESS)

    result = bad_apply(cli, bed, "alb-bad")

    assert_rolled_back(bed, result)
    assert any(f"Ingress ingest-core: no address — {words} (FailedBuildModel" in line
               for line in progress_lines(result)), result.stderr
    error = result.stderr.split("error: ", 1)[1]
    assert "FailedBuildModel in Ingress ingest-core" in error and words in error, result.stderr
    assert "next: the load-balancer controller could not build the load balancer model" in result.stderr
    assert f"`kubectl -n {NS} describe ingress ingest-core`" in result.stderr


def test_an_ingress_that_gets_its_address_deploys(cli, bed, deploy_repo):
    extra(deploy_repo, INGRESS)
    publish(bed, "ingest-core", "alb-ok")

    result = apply(cli, bed, "--app", "ingest-core", "--tag", "alb-ok", "--yes", "--grace", GRACE)

    assert result.code == 0, result.stderr
    assert "warning:" not in result.stderr, result.stderr
    ingress = bed.kube.get("networking.k8s.io/v1/ingresses", NS, "ingest-core")
    assert ingress["status"]["loadBalancer"]["ingress"][0]["hostname"].endswith(".elb.amazonaws.com")
