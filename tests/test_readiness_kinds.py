"""The kind registry: each module of readiness/kinds/ says all about its kind, and the rest is derived."""

from __future__ import annotations

import pkgutil

import pytest

from manual_deploy.readiness import advice, kinds
from manual_deploy.readiness.resource_state import Failure

NS = "prod-environment"

# What doctor checked for the kinds before the registry (doctor.ACCESS_NEEDED): the registry must keep all of it.
DOCTOR_ROWS = (
    ("deployments", "apps", ("get", "list", "create", "patch", "delete")),
    ("replicasets", "apps", ("list",)),
    ("services", "", ("get", "create", "patch")),
    ("persistentvolumeclaims", "", ("get", "create", "patch")),
    ("pods", "", ("get", "list")),
    ("pods/log", "", ("get", "list")),
    ("events", "", ("list",)),
)


def test_every_module_of_the_package_is_one_kind():
    modules = {m.name for m in pkgutil.iter_modules(kinds.__path__)}
    assert {kind.name.lower() for kind in kinds.registry().values()} == modules
    assert kinds.get("Deployment").path(NS, "ingest-core") == f"/apis/apps/v1/namespaces/{NS}/deployments/ingest-core"
    assert kinds.get("PersistentVolumeClaim").path(NS) == f"/api/v1/namespaces/{NS}/persistentvolumeclaims"
    assert kinds.get("ConfigMap") is None  # no rule: ready once helm created it


def test_the_kinds_need_every_permission_doctor_checked():
    granted = {(need.resource, need.group, verb) for need in kinds.access() for verb in need.verbs}
    for resource, group, verbs in DOCTOR_ROWS:
        assert {(resource, group, verb) for verb in verbs} <= granted, resource
    assert all(need.why for need in kinds.access())


def test_the_root_cause_comes_first():
    rank = {name: kind.rank for name, kind in kinds.registry().items()}
    assert rank["PersistentVolumeClaim"] < rank["Pod"] < rank["Deployment"] == rank["StatefulSet"] == rank["DaemonSet"]


def test_only_the_pod_names_image_faults_and_they_have_no_remedy_in_the_cluster():
    faulty = {name for name, kind in kinds.registry().items() if kind.image_faults}
    assert faulty == {"Pod"}
    for reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff", "CreateContainerError",
                   "OOMKilled"):
        assert advice.remedy(Failure("Pod", "ingest-core-1", reason, ""), NS) is None
    config = advice.remedy(Failure("Pod", "ingest-core-1", "CreateContainerConfigError", ""), NS)
    assert config.startswith(f"create the Secret or ConfigMap key the pod needs in {NS}")


@pytest.mark.parametrize(("kind", "reason", "starts"), [
    ("PersistentVolumeClaim", "ProvisioningFailed", "create the StorageClass the claim names"),
    ("Pod", "FailedScheduling", "the cluster cannot place the pod"),
    ("Service", "SyncLoadBalancerFailed", "the cloud refused the load balancer"),
    ("Deployment", "ProgressDeadlineExceeded", "the Deployment stopped progressing"),
    ("Job", "BackoffLimitExceeded", f"the chart's Job failed: read its logs (`kubectl -n {NS} logs job/db-migrate`)"),
])
def test_a_remedy_comes_from_the_kind_that_names_the_reason(kind, reason, starts):
    assert advice.remedy(Failure(kind, "db-migrate", reason, ""), NS).startswith(starts)


def test_a_reason_without_its_own_remedy_points_at_the_events():
    assert advice.remedy(Failure("Job", "db-migrate", "DeadlineExceeded", ""), NS) == \
        "fix the Job's DeadlineExceeded (its events above say why)"
    assert advice.remedy(Failure("Widget", "w", "Broken", ""), NS) == "fix the Widget's Broken (its events above say why)"
