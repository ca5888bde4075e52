"""CronJob readiness on apiserver JSON: created and not suspended is ready; a Job the revision started that
failed is named with its reason and the way to its logs. Shaped like ingest-kube-deployment's
`cron-jobs/update-project-catalogue` chart as EKS serves it."""

from __future__ import annotations

import datetime as dt

import pytest

from manual_deploy.readiness import advice, kinds
from manual_deploy.readiness.kinds import Related, cronjob
from manual_deploy.readiness.resource_state import Failure

NS = "prod-environment"
NAME = "update-project-catalogue"
WRITTEN = dt.datetime(2026, 11, 26, 18, 0, 0, tzinfo=dt.timezone.utc)  # when helm wrote the revision


def a_cronjob(*, suspend: bool = False) -> dict:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": NAME, "namespace": NS, "uid": "cj-1"},
            "spec": {"schedule": "0 3 * * *", "suspend": suspend, "concurrencyPolicy": "Forbid",
                     "jobTemplate": {"spec": {"backoffLimit": 2, "template": {"spec": {
                         "restartPolicy": "Never",
                         "containers": [{"name": "update", "image": "quay.io/ebi-ait/ingest-catalogue:c1"}]}}}}},
            "status": {}}


def a_job(name: str, minutes_after: float, condition: str | None = None, reason: str = "", message: str = "") -> dict:
    created = (WRITTEN + dt.timedelta(minutes=minutes_after)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"startTime": created, "active": 1}
    if condition:
        status = {"startTime": created, "conditions": [{"type": condition, "status": "True", "reason": reason,
                                                          "message": message}]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": created,
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": NAME, "uid": "cj-1",
                                              "controller": True}]},
            "status": status}


BACKOFF = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")


def seen(*jobs: dict) -> Related:
    return Related(jobs=jobs, since=WRITTEN)


def test_created_and_not_suspended_is_ready():
    found = cronjob.assess(a_cronjob(), seen())
    assert (found.ready, found.failing, found.summary) == (True, None, "scheduled 0 3 * * *")


def test_a_suspended_cronjob_fails_with_a_remedy():
    found = cronjob.assess(a_cronjob(suspend=True), seen())
    assert (found.ready, found.failing) == (False, "Suspended")
    assert found.summary == "suspended (spec.suspend: true): it starts no Job"
    fix = advice.remedy(Failure("CronJob", NAME, "Suspended", found.message), NS)
    assert fix.startswith("the CronJob is suspended (spec.suspend: true) and starts no Job: set `suspend: false`")
    assert f"`kubectl -n {NS} patch cronjob {NAME} --type merge -p '{{\"spec\":{{\"suspend\":false}}}}'`" in fix


@pytest.mark.parametrize(("reason", "message"), [
    ("BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    ("DeadlineExceeded", "Job was active longer than specified deadline"),
])
def test_a_failed_job_it_started_is_named_with_its_reason_and_its_logs(reason, message):
    job = f"{NAME}-29012345"
    found = cronjob.assess(a_cronjob(), seen(a_job(job, 1, "Failed", reason, message)))
    assert (found.ready, found.failing, found.owned) == (False, reason, f"job/{job}")
    assert found.summary == f"job {job} failed — {reason}: {message}"
    assert found.message == message
    fix = advice.remedy(Failure("CronJob", NAME, reason, message, owned=found.owned), NS)
    assert f"read its logs (`kubectl -n {NS} logs job/{job}`)" in fix


def test_only_the_newest_job_counts():
    failed, complete = a_job(f"{NAME}-1", 1, *BACKOFF), a_job(f"{NAME}-2", 2, "Complete")
    found = cronjob.assess(a_cronjob(), seen(complete, failed))
    assert (found.ready, found.summary) == (True, f"scheduled 0 3 * * *; job {NAME}-2 complete")


def test_a_job_that_failed_before_the_revision_is_not_this_deploys_doing():
    yesterday = a_job(f"{NAME}-0", -24 * 60, *BACKOFF)
    assert cronjob.assess(a_cronjob(), seen(yesterday)).ready


def test_a_job_the_revision_started_is_waited_for_and_may_outlast_the_deploy():
    found = cronjob.assess(a_cronjob(), seen(a_job(f"{NAME}-3", 0)))
    assert (found.ready, found.failing, found.summary) == (False, None, f"job {NAME}-3 running")
    assert kinds.get("CronJob").settles_after  # a warning at the end of the final check, not a failure


def test_the_registry_knows_cronjobs_and_their_jobs():
    kind = kinds.get("CronJob")
    assert kind.path(NS, NAME) == f"/apis/batch/v1/namespaces/{NS}/cronjobs/{NAME}"
    granted = {(need.resource, need.group, verb) for need in kinds.access() for verb in need.verbs}
    assert {("cronjobs", "batch", "get"), ("cronjobs", "batch", "list"), ("jobs", "batch", "list")} <= granted
