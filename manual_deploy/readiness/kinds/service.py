"""Service rule: only a LoadBalancer has something to wait for (its cloud load balancer's address)."""

from __future__ import annotations

from typing import Any

from manual_deploy.readiness.kinds import Kind, Read, Related
from manual_deploy.readiness.resource_state import ResourceState, because, name_of, state


def assess(service: dict[str, Any], related: Related = Related()) -> ResourceState:
    name, events = name_of(service), list(related.events)
    spec = service.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    if kind != "LoadBalancer":
        ports = ", ".join(str(p.get("nodePort") or p.get("port")) for p in spec.get("ports") or [])
        return state("Service", name, True, f"{kind}" + (f" {ports}" if ports else ""))
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        address = ingress[0].get("hostname") or ingress[0].get("ip") or "?"
        return state("Service", name, True, f"LoadBalancer at {address}")
    failed = because(events, "SyncLoadBalancerFailed")
    if failed is not None:
        reason, message, count = failed
        return state("Service", name, False, f"no load balancer address — {message} ({reason}, {count}×)",
                     failing=reason, events=events, message=message)
    return state("Service", name, False, "no load balancer address yet", events=events)


KIND = Kind("Service", "/api/v1", "services", assess, Read.EVENTS, verbs=("get", "create", "patch"),
            why="the chart's Services",
            remedies={"SyncLoadBalancerFailed": "the cloud refused the load balancer (quota, subnets: see the event); fix that"})
