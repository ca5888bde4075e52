"""Ingress readiness on apiserver JSON: an address is ready; the AWS load-balancer controller's Warning
events are the failure when none comes; nothing said yet is waiting (a warning at the end, not a failure)."""

from __future__ import annotations

from manual_deploy.readiness import advice, kinds
from manual_deploy.readiness.kinds import Related, ingress
from manual_deploy.readiness.resource_state import Failure

NS = "prod-environment"
NAME = "ingest-ui"
BUILD = ("Failed build model due to ingress: prod-environment/ingest-ui: none certificate found for host: "
         "ui.ingest.archive.data.humancellatlas.org")


def an_ingress(address: dict | None = None) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": NAME, "namespace": NS, "annotations": {
                "alb.ingress.kubernetes.io/scheme": "internet-facing",
                "alb.ingress.kubernetes.io/certificate-arn": "arn:aws:acm:eu-west-2:1:certificate/gone"}},
            "spec": {"ingressClassName": "alb", "rules": [{"host": "ui.ingest.archive.data.humancellatlas.org", "http": {
                "paths": [{"path": "/", "pathType": "Prefix",
                           "backend": {"service": {"name": "ingest-ui-service", "port": {"number": 80}}}}]}}]},
            "status": {"loadBalancer": {"ingress": [address]} if address else {}}}


def event(reason: str, message: str, *, warning: bool = True, count: int = 1, at: str = "2026-11-26T18:01:00Z") -> dict:
    return {"kind": "Event", "metadata": {"name": f"{NAME}.{reason.lower()}"}, "reason": reason, "message": message,
            "type": "Warning" if warning else "Normal", "count": count, "lastTimestamp": at,
            "involvedObject": {"kind": "Ingress", "name": NAME, "namespace": NS},
            "source": {"component": "ingress"}}


def test_an_address_is_ready():
    found = ingress.assess(an_ingress({"hostname": "k8s-prod-ingestui-1a2b.eu-west-2.elb.amazonaws.com"}))
    assert (found.ready, found.summary) == (True, "at k8s-prod-ingestui-1a2b.eu-west-2.elb.amazonaws.com")


def test_no_address_and_nothing_said_is_waiting_not_failing():
    found = ingress.assess(an_ingress(), Related(()))
    assert (found.ready, found.failing, found.summary) == (False, None, "waiting for an address")
    assert kinds.get("Ingress").settles_after  # a warning at the end of the final check, not a failure
    normal = ingress.assess(an_ingress(), Related((event("SuccessfullyReconciled", "Successfully reconciled", warning=False),)))
    assert (normal.ready, normal.failing) == (False, None)


def test_the_controllers_warning_is_the_failure_with_its_message_and_remedy():
    found = ingress.assess(an_ingress(), Related((event("FailedBuildModel", BUILD, count=3),)))
    assert (found.ready, found.failing, found.message) == (False, "FailedBuildModel", BUILD)
    assert found.summary == f"no address — {BUILD} (FailedBuildModel, 3×)"
    assert found.events == (f"Warning FailedBuildModel: {BUILD} (3×)",)
    fix = advice.remedy(Failure("Ingress", NAME, "FailedBuildModel", BUILD), NS)
    assert fix.startswith("the load-balancer controller could not build the load balancer model: fix the Ingress's "
                          "annotations, certificate or subnets")
    assert f"`kubectl -n {NS} describe ingress {NAME}`" in fix


def test_the_newest_warning_names_the_failure():
    older = event("FailedBuildModel", BUILD, at="2026-11-26T18:01:00Z")
    newer = event("FailedDeployModel", "Failed deploy model due to AccessDenied", at="2026-11-26T18:02:00Z")
    found = ingress.assess(an_ingress(), Related((newer, older)))
    assert found.failing == "FailedDeployModel"
    assert advice.remedy(Failure("Ingress", NAME, "FailedDeployModel", ""), NS).startswith("AWS refused the load balancer")


def test_the_registry_knows_ingresses():
    assert kinds.get("Ingress").path(NS, NAME) == f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{NAME}"
    granted = {(need.resource, need.group, verb) for need in kinds.access() for verb in need.verbs}
    assert ("ingresses", "networking.k8s.io", "get") in granted
