"""What the apiserver fills in and refuses before an object is stored.

Clients wait on server-filled fields: helm 3's `--wait` waits for a Service's clusterIP, watchers
compare `metadata.generation` with `status.observedGeneration`, owner references need a `uid`.
The refusals mirror the real server where products have been bitten by the difference (Lease
MicroTime format, immutable selectors), so code that passes here does not fail in EKS.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import random
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from manual_deploy_sandbox.kube import errors
from manual_deploy_sandbox.kube.resources import ResourceType
from manual_deploy_sandbox.kube.selectors import structured_selector

NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString
NODE_PORTS = range(30000, 32768)
MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
SERVER_OWNED_META = ("uid", "creationTimestamp", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


def now() -> str:
    """The current time as the apiserver writes metav1.Time (RFC 3339, seconds, UTC)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    """The random tail of generateName'd objects and of ReplicaSet pods."""
    return "".join(random.choices(NAME_SUFFIX_ALPHABET, k=length))


class Allocator:
    """Hands out Service cluster IPs (10.96.0.0/12) and node ports not already in use."""

    def __init__(self, services: Callable[[], Iterable[dict[str, Any]]]) -> None:
        self._services = services
        self._next_ip = 10  # 10.96.0.1 is the `kubernetes` Service in a real cluster

    def cluster_ip(self) -> str:
        used = {ip for svc in self._services() for ip in (svc.get("spec") or {}).get("clusterIPs") or []}
        while True:
            self._next_ip += 1
            ip = f"10.96.{self._next_ip // 254 % 256}.{self._next_ip % 254 + 1}"
            if ip not in used:
                return ip

    def node_port(self, taken: set[int]) -> int:
        used = taken | {port.get("nodePort") for svc in self._services()
                        for port in (svc.get("spec") or {}).get("ports") or []}
        free = [p for p in NODE_PORTS if p not in used]
        if not free:
            raise errors.ApiError(422, "Invalid", "provided port range is exhausted")
        return random.choice(free)


def prepare_create(res: ResourceType, obj: Any, namespace: str | None, allocator: Allocator) -> dict[str, Any]:
    """The object as it will be stored: identity and server fields set, defaults applied, validated."""
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be an object")
    obj = copy.deepcopy(obj)
    _check_type_meta(res, obj)
    meta = obj.setdefault("metadata", {}) or {}
    obj["metadata"] = meta
    if not meta.get("name"):
        if not meta.get("generateName"):
            raise errors.invalid(res, "", [("metadata.name", "", "name or generateName is required")])
        meta["name"] = meta["generateName"] + random_suffix()
    _set_namespace(res, meta, namespace)
    for key in SERVER_OWNED_META + ("resourceVersion", "managedFields"):
        meta.pop(key, None)
    meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
    if "status" in res.subresources:
        obj.pop("status", None)
    DEFAULTERS.get((res.group, res.kind), _no_defaults)(obj, allocator)
    validate(res, obj, None)
    return obj


DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
PVC_PROTECTION = "kubernetes.io/pvc-protection"


def admit_claim(claim: dict[str, Any], classes: Iterable[dict[str, Any]]) -> None:
    """DefaultStorageClass and StorageObjectInUseProtection, the admission plugins every EKS runs.

    A claim without storageClassName (absent, not "") gets the default class (the newest if several);
    every claim gets the pvc-protection finalizer, so deleting it waits until no pod uses it.
    """
    spec = claim.setdefault("spec", {})
    defaults = [c for c in classes if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS) == "true"]
    if spec.get("storageClassName") is None and defaults:
        newest = max(defaults, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"]))
        spec["storageClassName"] = newest["metadata"]["name"]
    finalizers = claim["metadata"].setdefault("finalizers", [])
    if PVC_PROTECTION not in finalizers:
        finalizers.append(PVC_PROTECTION)


def prepare_update(res: ResourceType, old: dict[str, Any], new: Any, subresource: str | None,
                   allocator: Allocator) -> dict[str, Any]:
    """A replacement for `old`: server-owned fields kept, status/spec split by subresource, validated."""
    if not isinstance(new, dict):
        raise errors.bad_request("the request body must be an object")
    new = copy.deepcopy(new)
    _check_type_meta(res, new)
    name = old["metadata"]["name"]
    meta = new.setdefault("metadata", {}) or {}
    new["metadata"] = meta
    if meta.get("name", name) != name:
        raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the "
                                 f"URL ({name})")
    meta["name"] = name
    _set_namespace(res, meta, old["metadata"].get("namespace"))
    for key in SERVER_OWNED_META + ("generation",):
        if key in old["metadata"]:
            meta[key] = old["metadata"][key]
        else:
            meta.pop(key, None)
    meta.pop("managedFields", None)
    if subresource == "status":
        new = {**copy.deepcopy(old), "status": new.get("status")}
    elif "status" in res.subresources:
        new["status"] = copy.deepcopy(old.get("status"))
        if new["status"] is None:
            new.pop("status")
    KEEPERS.get((res.group, res.kind), _no_defaults)(old, new)
    DEFAULTERS.get((res.group, res.kind), _no_defaults)(new, allocator)
    if subresource != "status" and new.get("spec") != old.get("spec"):  # after defaulting, like the apiserver
        new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
    validate(res, new, old)
    return new


def validate(res: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Raise 422 Invalid for what the real apiserver refuses and products have tripped over."""
    causes: list[tuple[str, Any, str]] = []
    if res.kind == "Lease":
        causes += _lease_causes(obj)
    if res.kind in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"):
        causes += _workload_causes(obj, old)
    if res.kind == "PersistentVolumeClaim" and old is not None:
        causes += _claim_causes(obj, old)
    if (res.group, res.kind) == ("batch", "CronJob"):
        causes += _cronjob_causes(obj)
    if (res.group, res.kind) == ("batch", "Job"):
        causes += _restart_policy_causes(obj.get("spec") or {}, "spec") + _job_causes(obj, old)
    if (res.group, res.kind) == ("networking.k8s.io", "Ingress"):
        causes += _ingress_causes(obj)
    if causes:
        raise errors.invalid(res, obj["metadata"]["name"], causes)


def _check_type_meta(res: ResourceType, obj: dict[str, Any]) -> None:
    """Fill apiVersion/kind when absent; refuse a body of another kind (as the apiserver does)."""
    kind, api_version = obj.get("kind") or res.kind, obj.get("apiVersion") or res.api_version
    if kind != res.kind or api_version != res.api_version:
        raise errors.bad_request(f"the body ({api_version}, Kind={kind}) does not match the resource "
                                 f"{res.api_version}/{res.plural} (Kind={res.kind})")
    obj["apiVersion"], obj["kind"] = api_version, kind


def _set_namespace(res: ResourceType, meta: dict[str, Any], namespace: str | None) -> None:
    if not res.namespaced:
        meta.pop("namespace", None)
        return
    if namespace and meta.get("namespace") not in (None, "", namespace):
        raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                 "on the request")
    meta["namespace"] = namespace or meta.get("namespace") or "default"


def _lease_causes(obj: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """Lease times are MicroTime: the apiserver accepts only RFC 3339 with exactly six fractional digits."""
    spec = obj.get("spec") or {}
    return [(f"spec.{field}", spec[field], "must be RFC 3339 with microseconds (e.g. 2026-11-26T10:00:00.000000Z)")
            for field in ("acquireTime", "renewTime")
            if spec.get(field) is not None and not (isinstance(spec[field], str) and MICRO_TIME.match(spec[field]))]


def _workload_causes(obj: dict[str, Any], old: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        return [("spec.selector", None, "Required value")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    causes = []
    if not structured_selector(selector)(labels):
        causes.append(("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        causes.append(("spec.selector", selector, "field is immutable"))
    return causes


def _cronjob_causes(obj: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """A schedule (five cron fields or an @macro) and a jobTemplate whose pods may end, as batch/v1 requires."""
    spec = obj.get("spec") or {}
    schedule = spec.get("schedule")
    causes = []
    if not isinstance(schedule, str) or not (schedule.startswith("@") or len(schedule.split()) == 5):
        causes.append(("spec.schedule", schedule, "Required value: a cron schedule such as \"0 3 * * *\""))
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return causes + _restart_policy_causes(job_spec, "spec.jobTemplate.spec")


def _restart_policy_causes(job_spec: dict[str, Any], path: str) -> list[tuple[str, Any, str]]:
    """A Job's pods must not restart forever: the apiserver refuses restartPolicy Always (also the default)."""
    policy = ((job_spec.get("template") or {}).get("spec") or {}).get("restartPolicy", "Always")
    if policy in ("OnFailure", "Never"):
        return []
    return [(f"{path}.template.spec.restartPolicy", policy, 'supported values: "OnFailure", "Never"')]


def _ingress_causes(obj: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """networking.k8s.io/v1 wants a pathType on every path (extensions/v1beta1 charts often lack it)."""
    return [(f"spec.rules[{r}].http.paths[{p}].pathType", path.get("pathType"),
             'Required value: supported values: "Exact", "ImplementationSpecific", "Prefix"')
            for r, rule in enumerate((obj.get("spec") or {}).get("rules") or [])
            for p, path in enumerate(((rule or {}).get("http") or {}).get("paths") or [])
            if (path or {}).get("pathType") not in ("Exact", "ImplementationSpecific", "Prefix")]


def _job_causes(obj: dict[str, Any], old: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    """A Job's pod template and selector cannot change (why a chart's plain Job breaks `helm upgrade`)."""
    if old is None:
        return []
    spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
    return [(f"spec.{field}", spec.get(field), "field is immutable") for field in ("selector", "template")
            if spec.get(field) != old_spec.get(field)]


def _default_job(job: dict[str, Any], _: Allocator) -> None:
    """batch/v1 defaults, and the selector the apiserver generates from the Job's uid (on create).

    The Job's own labels, when it has none, are its template's -- including the generated ones, since
    the apiserver's defaulting shares one map between the two.
    """
    meta, spec = job["metadata"], job.setdefault("spec", {})
    for field, value in (("parallelism", 1), ("completions", 1), ("backoffLimit", 6),
                         ("completionMode", "NonIndexed"), ("suspend", False),
                         ("podReplacementPolicy", "TerminatingOrFailed")):
        spec.setdefault(field, value)
    job["status"] = job.get("status") or {}
    if spec.get("selector") or spec.get("manualSelector"):
        return
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    labels.update({"batch.kubernetes.io/controller-uid": meta["uid"], "batch.kubernetes.io/job-name": meta["name"],
                   "controller-uid": meta["uid"], "job-name": meta["name"]})
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}}
    if not meta.get("labels"):
        meta["labels"] = dict(labels)


def _default_ingress(ingress: dict[str, Any], _: Allocator) -> None:
    ingress["status"] = ingress.get("status") or {"loadBalancer": {}}  # what the apiserver stores on create


def _default_cronjob(cronjob: dict[str, Any], _: Allocator) -> None:
    spec = cronjob.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    cronjob["status"] = cronjob.get("status") or {}  # the apiserver stores an empty status on create


def _claim_causes(obj: dict[str, Any], old: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """A claim's spec is immutable but for its size; binding may fill an empty volumeName once."""
    def frozen(spec: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(spec)
        spec.get("resources", {}).pop("requests", None)
        if not other.get("volumeName"):
            spec.pop("volumeName", None)
        return spec
    new_spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
    if frozen(new_spec, old_spec) == frozen(old_spec, old_spec):
        return []
    return [("spec", "", "spec is immutable after creation except resources.requests and "
                         "volumeAttributesClassName for bound claims")]


def _no_defaults(*_: Any) -> None:
    """Most kinds need nothing filled in."""


def _default_service(svc: dict[str, Any], allocator: Allocator) -> None:
    """clusterIP(s), node ports and the other fields the apiserver fills for Services."""
    spec = svc.setdefault("spec", {})
    kind = spec.setdefault("type", "ClusterIP")
    if kind != "ExternalName":
        if not spec.get("clusterIP"):
            spec["clusterIP"] = allocator.cluster_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec["clusterIP"] != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("sessionAffinity", "None")
    taken: set[int] = set()
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if kind in ("NodePort", "LoadBalancer"):
            if not port.get("nodePort"):
                port["nodePort"] = allocator.node_port(taken)
            taken.add(port["nodePort"])
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    svc.setdefault("status", {"loadBalancer": {}})


def _keep_service_allocations(old: dict[str, Any], new: dict[str, Any]) -> None:
    """An update that omits clusterIP or nodePorts keeps the allocated ones (they are immutable)."""
    old_spec, spec = old.get("spec") or {}, new.setdefault("spec", {})
    for field in ("clusterIP", "clusterIPs"):
        if not spec.get(field) and old_spec.get(field):
            spec[field] = copy.deepcopy(old_spec[field])
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
    for port in spec.get("ports") or []:
        previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
        if previous and not port.get("nodePort") and spec.get("type") in ("NodePort", "LoadBalancer"):
            port["nodePort"] = previous


def _default_deployment(dep: dict[str, Any], _: Allocator) -> None:
    spec = dep.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("maxSurge", "25%")
        strategy["rollingUpdate"].setdefault("maxUnavailable", "25%")


def _default_replicaset(rs: dict[str, Any], _: Allocator) -> None:
    rs.setdefault("spec", {}).setdefault("replicas", 1)


def _default_pod(pod: dict[str, Any], _: Allocator) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("status", {"phase": "Pending", "qosClass": "BestEffort"})


def _default_secret(secret: dict[str, Any], _: Allocator) -> None:
    """type Opaque; stringData folded into data, as the apiserver does on write."""
    secret.setdefault("type", "Opaque")
    for key, value in (secret.pop("stringData", None) or {}).items():
        secret.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()


def _default_claim(pvc: dict[str, Any], _: Allocator) -> None:
    pvc.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    pvc["status"] = pvc.get("status") or {"phase": "Pending"}


def _default_volume(pv: dict[str, Any], _: Allocator) -> None:
    spec = pv.setdefault("spec", {})
    spec.setdefault("volumeMode", "Filesystem")
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    pv["status"] = pv.get("status") or {"phase": "Pending"}


def _default_storage_class(sc: dict[str, Any], _: Allocator) -> None:
    sc.setdefault("reclaimPolicy", "Delete")
    sc.setdefault("volumeBindingMode", "Immediate")


def _default_namespace(ns: dict[str, Any], _: Allocator) -> None:
    ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns["metadata"]["name"]
    ns.setdefault("spec", {})
    ns["status"] = ns.get("status") or {"phase": "Active"}


def _default_event(event: dict[str, Any], _: Allocator) -> None:
    event.setdefault("count", 1)
    event.setdefault("type", "Normal")


# Keyed by (group, kind): core Events and events.k8s.io Events have different fields.
DEFAULTERS: dict[tuple[str, str], Callable[[dict[str, Any], Allocator], None]] = {
    ("", "Service"): _default_service, ("apps", "Deployment"): _default_deployment,
    ("apps", "ReplicaSet"): _default_replicaset, ("", "Pod"): _default_pod, ("", "Secret"): _default_secret,
    ("", "Namespace"): _default_namespace, ("", "Event"): _default_event,
    ("", "PersistentVolumeClaim"): _default_claim, ("", "PersistentVolume"): _default_volume,
    ("storage.k8s.io", "StorageClass"): _default_storage_class, ("batch", "CronJob"): _default_cronjob,
    ("networking.k8s.io", "Ingress"): _default_ingress, ("batch", "Job"): _default_job,
}
KEEPERS: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, Any]], None]] = {
    ("", "Service"): _keep_service_allocations}
