"""Ingress rule: ready once the load-balancer controller gave it an address; its Warning events say why not.

On EKS the AWS Load Balancer Controller builds an ALB for each Ingress and writes its hostname to
status.loadBalancer.ingress; when it cannot (a bad annotation, certificate or subnet) it says so in a
Warning Event on the Ingress (FailedBuildModel, FailedDeployModel) and no address ever comes. An
address can take minutes and helm does not wait for it, so one still missing at the end of the
deploy, with nothing said against it, is a warning.
"""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, event_time, name_of, state, times

DESCRIBE = "`kubectl -n {namespace} describe ingress {name}`"
REMEDIES = {
    "FailedBuildModel": "the load-balancer controller could not build the load balancer model: fix the Ingress's "
                        f"annotations, certificate or subnets in its chart in ingest-kube-deployment ({DESCRIBE})",
    "FailedDeployModel": "AWS refused the load balancer the controller built (permissions, quota, certificate, security "
                         f"groups: see the event): fix that, or the Ingress's annotations in its chart ({DESCRIBE})",
}


def assess(ingress: dict[str, Any], related: Related = Related()) -> ResourceState:
    name, events = name_of(ingress), list(related.events)
    addresses = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if addresses:
        return state("Ingress", name, True, f"at {addresses[0].get('hostname') or addresses[0].get('ip') or '?'}")
    warnings = [e for e in events if e.get("type") == "Warning"]
    if not warnings:
        return state("Ingress", name, False, "waiting for an address", events=events)
    newest = max(warnings, key=event_time)
    reason, message = newest.get("reason") or "Warning", (newest.get("message") or "").strip()
    return state("Ingress", name, False, f"no address — {message} ({reason}, {times(events, reason)}×)",
                 failing=reason, events=events, message=message)


KIND = Kind("Ingress", "/apis/networking.k8s.io/v1", "ingresses", assess, Read.EVENTS, rank=3,
            verbs=("get", "create", "patch"), why="the chart's Ingresses", remedies=REMEDIES, settles_after=True)
