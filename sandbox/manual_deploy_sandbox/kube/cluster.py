"""The apiserver's write semantics, independent of HTTP: the API layer and the controller share it.

Create / replace / patch / delete here enforce what clients rely on: AlreadyExists on a second create,
optimistic concurrency on resourceVersion (helm's and the product's locks depend on the 409),
status vs spec subresources, dry runs that persist nothing, and cascading deletion through
ownerReferences (what `helm uninstall` and `kubectl delete deployment` count on).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from manual_deploy_sandbox.kube import admission, errors, patching
from manual_deploy_sandbox.kube.resources import ResourceType, by_path, served
from manual_deploy_sandbox.kube.selectors import selector_string
from manual_deploy_sandbox.kube.store import Store

NAMESPACES = by_path("v1/namespaces")
SERVICES = by_path("v1/services")
CLAIMS = by_path("v1/persistentvolumeclaims")
STORAGE_CLASSES = by_path("storage.k8s.io/v1/storageclasses")
PROPAGATION_POLICIES = ("Background", "Foreground", "Orphan")


class Cluster:
    """CRUD with apiserver semantics over a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.allocator = admission.Allocator(lambda: store.list(SERVICES, copy=False))
        self._applied: dict[tuple[str, str], Any] = {}  # (uid, field manager) -> last applied configuration

    # ------------------------------------------------------------------------------------------ reads

    def find(self, res: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.store.get(res, namespace, name)

    def get(self, res: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        found = self.store.get(res, namespace, name)
        if found is None:
            raise errors.not_found(res, name)
        return found

    def list(self, res: ResourceType, namespace: str | None = None,
             predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        return self.store.list(res, namespace, predicate)

    def scale(self, res: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """The autoscaling/v1 Scale view of a Deployment / ReplicaSet / StatefulSet."""
        obj = self.get(res, namespace, name)
        meta = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in meta},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": selector_string((obj.get("spec") or {}).get("selector"))}}

    # ----------------------------------------------------------------------------------------- writes

    def create(self, res: ResourceType, obj: Any, namespace: str | None = None, *,
               dry_run: bool = False) -> dict[str, Any]:
        """POST: a new object; 409 AlreadyExists if the name is taken, 404 if the namespace is missing."""
        new = admission.prepare_create(res, obj, namespace, self.allocator)
        if res is CLAIMS:
            admission.admit_claim(new, self.store.list(STORAGE_CLASSES, copy=False))
        meta = new["metadata"]
        if res.namespaced and self.store.get(NAMESPACES, None, meta["namespace"], copy=False) is None:
            raise errors.namespace_not_found(meta["namespace"])
        if self.store.get(res, meta.get("namespace"), meta["name"], copy=False) is not None:
            raise errors.already_exists(res, meta["name"])
        if dry_run:
            return new
        return self.store.put(res, new)

    def replace(self, res: ResourceType, namespace: str | None, name: str, obj: Any, *,
                subresource: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        """PUT: the whole object (or its status / scale); 409 Conflict on a stale resourceVersion."""
        old = self.get(res, namespace, name)
        if subresource == "scale":
            return self._set_replicas(res, old, obj, dry_run)
        _check_resource_version(res, old, _resource_version_of(obj))
        return self._update(res, old, obj, subresource, dry_run)

    def patch(self, res: ResourceType, namespace: str | None, name: str, body: bytes, patch_type: str, *,
              subresource: str | None = None, dry_run: bool = False,
              field_manager: str | None = None) -> tuple[dict[str, Any], bool]:
        """PATCH in any of the four flavours; server-side apply creates a missing object.

        Returns (object, created).
        """
        if patch_type not in patching.PATCH_TYPES:
            raise errors.unsupported_media_type(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(patching.PATCH_TYPES)}")
        try:
            patch = patching.parse_body(body, patch_type)
        except patching.PatchError as exc:
            raise errors.bad_request(str(exc)) from None
        old = self.find(res, namespace, name)
        applying = patch_type == patching.APPLY and subresource is None and isinstance(patch, dict)
        if old is None:
            if not applying:
                raise errors.not_found(res, name)
            patch.setdefault("metadata", {})["name"] = name
            created = self.create(res, patch, namespace, dry_run=dry_run)
            self._remember_applied(created, field_manager, patch, dry_run)
            return created, True
        if isinstance(patch, dict):
            _check_resource_version(res, old, _resource_version_of(patch))
        base = self.scale(res, namespace, name) if subresource == "scale" else old
        before = self._applied.get((old["metadata"]["uid"], field_manager or "")) if applying else None
        try:
            patched = patching.apply_patch(base, patch, patch_type, before)
        except patching.PatchError as exc:
            raise errors.ApiError(422, "Invalid", str(exc)) from None
        if subresource == "scale":
            return self._set_replicas(res, old, patched, dry_run), False
        if patch_type == patching.JSON_PATCH:
            _check_resource_version(res, old, _resource_version_of(patched))
        updated = self._update(res, old, patched, subresource, dry_run)
        if applying:
            self._remember_applied(updated, field_manager, patch, dry_run)
        return updated, False

    def delete(self, res: ResourceType, namespace: str | None, name: str, *, propagation: str | None = None,
               preconditions: dict[str, Any] | None = None, dry_run: bool = False) -> dict[str, Any]:
        """DELETE: dependents go too (unless Orphan); objects with finalizers only get deletionTimestamp."""
        old = self.get(res, namespace, name)
        _check_preconditions(res, old, preconditions or {})
        if propagation not in (None, *PROPAGATION_POLICIES):
            raise errors.bad_request(f"propagationPolicy {propagation!r} is not one of {PROPAGATION_POLICIES}")
        if dry_run:
            return old
        if old["metadata"].get("finalizers"):
            if not old["metadata"].get("deletionTimestamp"):
                old["metadata"]["deletionTimestamp"] = admission.now()
                return self.store.put(res, old)
            return old
        return self._remove(res, old, propagation or "Background")

    # ---------------------------------------------------------------------------------------- helpers

    def _remember_applied(self, obj: dict[str, Any], manager: str | None, applied: dict[str, Any],
                          dry_run: bool) -> None:
        """Keep what a field manager applied, so its next apply can drop what it no longer sets."""
        if not dry_run:
            self._applied[obj["metadata"]["uid"], manager or ""] = copy.deepcopy(applied)

    def _update(self, res: ResourceType, old: dict[str, Any], obj: Any, subresource: str | None,
                dry_run: bool) -> dict[str, Any]:
        new = admission.prepare_update(res, old, obj, subresource, self.allocator)
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old or dry_run:
            return new  # a no-op write keeps the resourceVersion, as in the apiserver
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(res, new, "Background")
        return self.store.put(res, new)

    def _set_replicas(self, res: ResourceType, old: dict[str, Any], scale: Any, dry_run: bool) -> dict[str, Any]:
        if not isinstance(scale, dict):
            raise errors.bad_request("the request body must be a Scale object")
        _check_resource_version(res, old, _resource_version_of(scale))
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(res, old["metadata"]["name"],
                                 [("spec.replicas", replicas, "must be a non-negative integer")])
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["replicas"] = replicas
        self._update(res, old, new, None, dry_run)
        return self.scale(res, old["metadata"].get("namespace"), old["metadata"]["name"]) if not dry_run else scale

    def _remove(self, res: ResourceType, obj: dict[str, Any], propagation: str) -> dict[str, Any]:
        meta = obj["metadata"]
        for dep_res, dependent in self._dependents(res, obj):
            dep_meta = dependent["metadata"]
            if propagation == "Orphan":
                orphan = copy.deepcopy(dependent)
                orphan["metadata"]["ownerReferences"] = [
                    ref for ref in dep_meta.get("ownerReferences") or [] if ref.get("uid") != meta.get("uid")]
                self.store.put(dep_res, orphan)
            elif self.store.get(dep_res, dep_meta.get("namespace"), dep_meta["name"], copy=False) is not None:
                self._remove(dep_res, dependent, propagation)
        removed = self.store.remove(res, meta.get("namespace"), meta["name"])
        self._applied = {key: value for key, value in self._applied.items() if key[0] != meta.get("uid")}
        return removed if removed is not None else obj

    def _dependents(self, res: ResourceType, obj: dict[str, Any]) -> list[tuple[ResourceType, dict[str, Any]]]:
        """Objects owned by `obj` (ownerReferences), or everything in it for a Namespace (not copied)."""
        meta = obj["metadata"]
        if res is NAMESPACES:
            return [(r, o) for r in served().values() if r.namespaced
                    for o in self.store.list(r, meta["name"], copy=False)]
        uid = meta.get("uid")
        namespace = meta.get("namespace") if res.namespaced else None
        owned = []
        for dep_res in served().values():
            if namespace is not None and not dep_res.namespaced:
                continue
            for dependent in self.store.list(dep_res, namespace, copy=False):
                if any(ref.get("uid") == uid for ref in dependent["metadata"].get("ownerReferences") or []):
                    owned.append((dep_res, dependent))
        return owned


def _resource_version_of(obj: Any) -> str | None:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return (meta or {}).get("resourceVersion") or None


def _check_resource_version(res: ResourceType, current: dict[str, Any], wanted: str | None) -> None:
    """Optimistic concurrency: a write naming a resourceVersion must name the current one."""
    if wanted is not None and str(wanted) != current["metadata"]["resourceVersion"]:
        raise errors.conflict(res, current["metadata"]["name"])


def _check_preconditions(res: ResourceType, current: dict[str, Any], preconditions: dict[str, Any]) -> None:
    meta = current["metadata"]
    if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
        raise errors.conflict(res, meta["name"], f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                                 f"UID in object meta: {meta.get('uid')}")
    if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta.get("resourceVersion"):
        raise errors.conflict(res, meta["name"], "Precondition failed: ResourceVersion in precondition: "
                                                 f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                                                 f"{meta.get('resourceVersion')}")
