"""Which resources the emulator serves, and the discovery documents that announce them.

The per-resource facts (kind, scope, verbs, short names) come from kmock's bundled discovery dump of
a real cluster, so we only choose *which* resources to serve. helm and kubectl map a manifest's kind
to a URL through these documents, so a missing or malformed entry shows up as "no matches for kind".
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import kmock

# What a sandbox deploy of an ingest app (and its diagnostics) touches, plus the usual chart extras.
SERVED = (
    "v1/namespaces", "v1/nodes", "v1/pods", "v1/services", "v1/secrets", "v1/configmaps", "v1/events",
    "v1/serviceaccounts", "v1/endpoints", "v1/persistentvolumeclaims", "v1/persistentvolumes",
    "storage.k8s.io/v1/storageclasses",
    "apps/v1/deployments", "apps/v1/replicasets", "apps/v1/statefulsets", "apps/v1/daemonsets",
    "apps/v1/controllerrevisions", "batch/v1/jobs", "batch/v1/cronjobs", "coordination.k8s.io/v1/leases",
    "networking.k8s.io/v1/ingresses", "networking.k8s.io/v1/networkpolicies", "policy/v1/poddisruptionbudgets",
    "events.k8s.io/v1/events", "autoscaling/v2/horizontalpodautoscalers",
    "rbac.authorization.k8s.io/v1/roles", "rbac.authorization.k8s.io/v1/rolebindings",
    "rbac.authorization.k8s.io/v1/clusterroles", "rbac.authorization.k8s.io/v1/clusterrolebindings",
    "authorization.k8s.io/v1/selfsubjectaccessreviews",  # answered by auth.Authorizer, never stored
)
IMPLEMENTED_SUBRESOURCES = {"status", "scale", "log"}


@dataclass(frozen=True, eq=False)
class ResourceType:
    """One served resource (group/version/plural) with what discovery says about it.

    Instances are singletons (see served()), so identity is equality and hashing is cheap.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str
    verbs: tuple[str, ...]
    short_names: tuple[str, ...]
    subresources: tuple[str, ...]

    @property
    def api_version(self) -> str:
        """`v1` for the core group, `group/version` otherwise (as in an object's apiVersion)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`deployments.apps` / `pods`: how the apiserver names the resource in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> kmock.resource:
        """The kmock resource, the first part of every key in kmock's ObjectsArray."""
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def path(self) -> str:
        """`apps/v1/deployments`: the short name the Python API of the emulator uses."""
        return f"{self.api_version}/{self.plural}"


@functools.cache
def served() -> dict[tuple[str, str, str], ResourceType]:
    """(group, version, plural) -> ResourceType for everything in SERVED."""
    bundled = kmock.ResourcesArray()
    with warnings.catch_warnings():  # kmock 0.8 reads its bundle with the deprecated importlib.resources API
        warnings.simplefilter("ignore", DeprecationWarning)
        bundled.load_bundled()
    result = {}
    for name in SERVED:
        key = kmock.resource(name)
        info = bundled[key]
        result[key.group, key.version, key.plural] = ResourceType(
            group=key.group, version=key.version, plural=key.plural, kind=info.kind,
            namespaced=bool(info.namespaced), singular=info.singular or info.kind.lower(),
            verbs=tuple(sorted(info.verbs)), short_names=tuple(sorted(info.shortnames)),
            subresources=tuple(sorted(set(info.subresources) & IMPLEMENTED_SUBRESOURCES)),
        )
    return result


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    """The served resource at this URL segment, if any."""
    return served().get((group, version, plural))


def by_path(path: str) -> ResourceType:
    """The served resource for `apps/v1/deployments`-style names; KeyError when not served."""
    key = kmock.resource(path)
    found = lookup(key.group, key.version, key.plural)
    if found is None:
        raise KeyError(f"not a served resource: {path}")
    return found


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    """The served resource for an object's apiVersion + kind (owner references, events)."""
    group, _, version = api_version.rpartition("/")
    return next((r for r in served().values() if (r.group, r.version, r.kind) == (group, version, kind)), None)


def group_versions() -> dict[str, list[str]]:
    """Non-core groups and their versions, in SERVED order."""
    groups: dict[str, list[str]] = {}
    for res in served().values():
        if res.group and res.version not in groups.setdefault(res.group, []):
            groups[res.group].append(res.version)
    return groups


def api_versions(server_address: str) -> dict:
    """`/api`: the core group's versions (APIVersions)."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group(group: str) -> dict | None:
    """`/apis/<group>`: one APIGroup, None when the group is not served."""
    versions = group_versions().get(group)
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list() -> dict:
    """`/apis`: every served non-core group (APIGroupList)."""
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [api_group(group) for group in group_versions()]}


def api_resource_list(group: str, version: str) -> dict | None:
    """`/api/v1`, `/apis/<group>/<version>`: the resources with their verbs (APIResourceList)."""
    found = [r for r in served().values() if (r.group, r.version) == (group, version)]
    if not found:
        return None
    entries = []
    for res in found:
        entries.append({"name": res.plural, "singularName": res.singular, "namespaced": res.namespaced,
                        "kind": res.kind, "verbs": list(res.verbs), "shortNames": list(res.short_names)})
        entries.extend(_subresource_entry(res, sub) for sub in res.subresources)
    for entry in entries:
        if not entry.get("shortNames"):
            entry.pop("shortNames", None)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": entries}


def _subresource_entry(res: ResourceType, sub: str) -> dict:
    entry = {"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": res.namespaced, "kind": res.kind,
             "verbs": ["get", "patch", "update"]}
    if sub == "scale":
        entry.update(group="autoscaling", version="v1", kind="Scale")
    elif sub == "log":
        entry["verbs"] = ["get"]
    return entry
