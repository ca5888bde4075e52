"""The four PATCH flavours the apiserver accepts, applied to plain JSON dicts.

helm 3 upgrades built-in kinds with three-way *strategic merge* patches (with `$setElementOrder`,
`$patch: delete` and `$retainKeys` directives), helm 4 uses *server-side apply*, kubectl and the
Python client use merge and JSON patches. Strategic merge differs from merge patch in one way that
matters here: lists of named things (containers, env, volumes, ports...) merge item by item.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import yaml

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH, APPLY)

# List fields that strategic merge treats as maps keyed by a field (from k8s.io/api struct tags).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "conditions": "type", "ownerReferences": "uid", "tolerations": "key", "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey", "resourceClaims": "name",
}
PORT_LISTS = {"ports"}  # container ports merge by containerPort, service ports by port


class PatchError(ValueError):
    """A patch that cannot be parsed or applied; the server answers 422/400 with this message."""


def parse_body(body: bytes, patch_type: str) -> Any:
    """The patch document: JSON for the JSON flavours, YAML (a JSON superset) for apply."""
    try:
        if patch_type == APPLY:
            return yaml.safe_load(body.decode("utf-8")) or {}
        return json.loads(body.decode("utf-8") or "null")
    except (ValueError, yaml.YAMLError) as exc:
        raise PatchError(f"error decoding patch: {exc}") from None


def apply_patch(current: dict[str, Any], patch: Any, patch_type: str,
                previously_applied: dict[str, Any] | None = None) -> dict[str, Any]:
    """`current` with `patch` applied per `patch_type`; `current` itself is left untouched.

    For server-side apply, `previously_applied` is the same field manager's last applied configuration:
    what it set then and leaves out now is removed (the gist of managedFields ownership).
    """
    if patch_type == JSON_PATCH:
        try:
            return jsonpatch.apply_patch(current, patch, in_place=False)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            raise PatchError(f"the JSON patch could not be applied: {exc}") from None
    if not isinstance(patch, dict):
        raise PatchError("a merge patch must be a JSON object")
    if patch_type == MERGE:
        return merge_patch(current, patch)
    if patch_type == APPLY and previously_applied is not None:
        current = prune_unapplied(current, previously_applied, patch)
    return strategic_merge(current, patch)


def prune_unapplied(current: Any, before: Any, after: Any, field: str = "") -> Any:
    """`current` without what a manager applied `before` but no longer applies `after`."""
    if isinstance(current, dict) and isinstance(before, dict):
        after = after if isinstance(after, dict) else {}
        result = dict(current)
        for key, old in before.items():
            if key not in after:
                result.pop(key, None)
            elif key in result:
                result[key] = prune_unapplied(result[key], old, after[key], key)
        return result
    if isinstance(current, list) and isinstance(before, list) and isinstance(after, list):
        key = _merge_key(field, before + after, current)
        if key is None:
            return current  # atomic lists are replaced by the merge anyway
        kept = {item.get(key) for item in after if isinstance(item, dict)}
        dropped = {item.get(key) for item in before if isinstance(item, dict)} - kept
        previous = {item.get(key): item for item in before if isinstance(item, dict)}
        later = {item.get(key): item for item in after if isinstance(item, dict)}
        return [prune_unapplied(item, previous[item[key]], later[item[key]], field)
                if isinstance(item, dict) and item.get(key) in previous and item.get(key) in later else item
                for item in current if not (isinstance(item, dict) and item.get(key) in dropped)]
    return current


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic merge patch: merge patch, plus keyed list merging and the `$` directives."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"] or [])
        result = {k: v for k, v in result.items() if k in keep}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and _merge_key(key, value, result.get(key)):
            result[key] = _merge_list(result.get(key) or [], value, _merge_key(key, value, result.get(key)))
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = _strip_directives(value)
    return result


def _merge_key(field: str, items: list[Any], existing: Any) -> str | None:
    """The key a list field merges by, or None when the list is replaced wholesale."""
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field in PORT_LISTS:
        sample = [i for i in list(items) + list(existing or []) if isinstance(i, dict)]
        return "containerPort" if any("containerPort" in i for i in sample) else "port"
    return None


def _merge_list(current: list[Any], patch: list[Any], key: str) -> list[Any]:
    """Merge two lists of dicts item by item on `key`; `$patch: delete` items remove theirs."""
    result = [copy.deepcopy(item) for item in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def _strip_directives(value: Any) -> Any:
    """A deep copy without `$`-prefixed directive keys."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)
