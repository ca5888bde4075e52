"""The AWS Load Balancer Controller, as far as an Ingress's readiness shows it: an address, or Events.

On EKS an Ingress has no address until the controller has built its ALB; then
status.loadBalancer.ingress holds the ALB's hostname. When it cannot build one (no tagged subnets,
no certificate for a host, a bad annotation) the Ingress never gets an address and the controller
keeps retrying, re-emitting its Warning Event (source component `ingress`) with a rising count.

Here an Ingress gets its hostname `delay` seconds after the controller first sees it, unless a
backend Service does not exist (a real failure, no injection needed: FailedBuildModel, `services "x"
not found`) or an injected failure matches its name: then the Warning repeats every RETRY seconds
while the cause stands (creating the Service or clearing the rule lets the next attempt succeed). Every Ingress
is taken to be the ALB controller's (the emulated cluster has no other ingress class). An address
once assigned stays, as an ALB stays when a later reconcile fails. The controller puts its finalizer
on every Ingress it sees and takes it off once a deleted one's ALB is gone (here: DELETE_TIME later),
so a deletion is seen as Terminating first, as `helm uninstall --wait` sees it on EKS.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from manual_deploy_sandbox.kube.cluster import Cluster
from manual_deploy_sandbox.kube.events import EventRecorder
from manual_deploy_sandbox.kube.resources import by_path
from manual_deploy_sandbox.kube.store import Store

INGRESSES = by_path("networking.k8s.io/v1/ingresses")
SERVICES = by_path("v1/services")
REGION = "eu-west-2"
COMPONENT = "ingress"  # the controller's event source for Ingresses
FINALIZER = "ingress.k8s.aws/resources"
DELETE_TIME = 1.0  # seconds the ALB takes to go once its Ingress is deleted (real ones: several)
RETRY = 1.0  # seconds between reconcile attempts of a failing Ingress (the real back-off grows; tests cannot wait)
FAILED_BUILD_MODEL = "FailedBuildModel"
NO_SUBNETS = ("Failed build model due to couldn't auto-discover subnets: unable to resolve at least one subnet "
              "(0 match VPC and tags: [kubernetes.io/role/elb])")


@dataclass(frozen=True)
class IngressFailure:
    """Ingresses whose name matches `name` (fnmatch glob) get no address, only `reason`/`message` Events."""

    name: str
    reason: str = FAILED_BUILD_MODEL
    message: str = NO_SUBNETS

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "reason": self.reason, "message": self.message}


class IngressFailures:
    """The injected failures; replaced wholesale on change so another thread can add while the loop reads."""

    def __init__(self) -> None:
        self._items: tuple[IngressFailure, ...] = ()

    def add(self, name_glob: str, reason: str = FAILED_BUILD_MODEL, message: str = NO_SUBNETS) -> IngressFailure:
        failure = IngressFailure(name_glob, reason, message)
        self._items = (*self._items, failure)
        return failure

    def clear(self) -> None:
        self._items = ()

    def match(self, name: str) -> IngressFailure | None:
        """The most recently added failure whose glob matches the Ingress name."""
        return next((f for f in reversed(self._items) if fnmatch.fnmatchcase(name, f.name)), None)

    def as_list(self) -> list[dict[str, str]]:
        return [f.as_dict() for f in self._items]


class LoadBalancerController:
    """Gives each Ingress its ALB hostname after `delay`, or the injected failure's Warning Events."""

    def __init__(self, cluster: Cluster, events: EventRecorder, failures: IngressFailures, *, delay: float,
                 clock) -> None:
        self.cluster, self.events, self.failures, self.delay, self.clock = cluster, events, failures, delay, clock
        self._first_seen: dict[str, float] = {}
        self._deleting: dict[str, float] = {}  # uid -> when its deletion was first seen

    def sync(self) -> None:
        ingresses = self.cluster.store.list(INGRESSES, copy=False)
        for ingress in ingresses:
            if ingress["metadata"].get("deletionTimestamp"):
                since = self._deleting.setdefault(ingress["metadata"]["uid"], self.clock())
                if self.clock() - since >= DELETE_TIME:
                    self._set_finalizer(ingress, present=False)
            elif self._set_finalizer(ingress, present=True) and not _addresses(ingress):
                self._reconcile(ingress)
        live = {i["metadata"]["uid"] for i in ingresses}
        self._first_seen = {uid: t for uid, t in self._first_seen.items() if uid in live}
        self._deleting = {uid: t for uid, t in self._deleting.items() if uid in live}

    def _set_finalizer(self, ingress: dict[str, Any], *, present: bool) -> bool:
        """Add or remove the controller's finalizer; True when it was already as wanted."""
        meta = ingress["metadata"]
        finalizers = meta.get("finalizers") or []
        if (FINALIZER in finalizers) == present:
            return True
        wanted = [*finalizers, FINALIZER] if present else [f for f in finalizers if f != FINALIZER]
        self.cluster.replace(INGRESSES, meta["namespace"], meta["name"],
                             {**ingress, "metadata": {**meta, "finalizers": wanted}})
        return False

    def _reconcile(self, ingress: dict[str, Any]) -> None:
        meta = ingress["metadata"]
        elapsed = self.clock() - self._first_seen.setdefault(meta["uid"], self.clock())
        if elapsed < self.delay:
            return
        failure = self.failures.match(meta["name"]) or missing_backend(ingress, self.cluster.store)
        if failure is not None:
            self.events.every(ingress, failure.reason, failure.message, int((elapsed - self.delay) / RETRY),
                              warning=True, component=COMPONENT)
            return
        status = {**(ingress.get("status") or {}), "loadBalancer": {"ingress": [{"hostname": hostname(ingress)}]}}
        self.cluster.replace(INGRESSES, meta["namespace"], meta["name"], {**ingress, "status": status},
                             subresource="status")
        self.events.record(ingress, "SuccessfullyReconciled", "Successfully reconciled", component=COMPONENT)


def missing_backend(ingress: dict[str, Any], store: Store) -> IngressFailure | None:
    """The controller's model-build failure for a backend Service that does not exist, if any."""
    meta, spec = ingress["metadata"], ingress.get("spec") or {}
    backends = [spec.get("defaultBackend") or {}] + [
        (path or {}).get("backend") or {} for rule in spec.get("rules") or []
        for path in ((rule or {}).get("http") or {}).get("paths") or []]
    for backend in backends:
        name = (backend.get("service") or {}).get("name")
        if name and store.get(SERVICES, meta["namespace"], name, copy=False) is None:
            return IngressFailure(meta["name"], FAILED_BUILD_MODEL, f"Failed build model due to ingress: "
                                  f'{meta["namespace"]}/{meta["name"]}: services "{name}" not found')
    return None


def hostname(ingress: dict[str, Any]) -> str:
    """The ALB's DNS name, shaped like the controller's: k8s-<namespace>-<name>-<hash>-<id>.<region>.elb...."""
    meta = ingress["metadata"]
    digest = hashlib.sha256(f"{meta['namespace']}/{meta['name']}/{meta['uid']}".encode()).hexdigest()
    parts = [re.sub(r"[^0-9a-zA-Z]", "", part)[:8] for part in (meta["namespace"], meta["name"])]
    balancer = f"k8s-{parts[0]}-{parts[1]}-{digest[:10]}".lower()
    return f"{balancer}-{int(digest[10:18], 16) % 10**10:010d}.{REGION}.elb.amazonaws.com"


def _addresses(ingress: dict[str, Any]) -> list[dict[str, Any]]:
    return (((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []
