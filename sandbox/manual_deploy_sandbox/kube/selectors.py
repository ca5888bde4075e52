"""Label and field selectors, as the apiserver applies them to lists and watches.

helm finds its release Secrets by `owner=helm,name=<release>`, helm 3 finds a Deployment's
ReplicaSets by the Deployment's selector, and diagnostics find a pod's Events by
`involvedObject.name=<pod>`: a server that ignores selectors answers all of them wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

# One requirement of a label selector: `!key`, `key`, `key in (a,b)`, `key notin (a,b)`, `key=v`, `key==v`, `key!=v`.
_REQUIREMENT = re.compile(
    r"""^\s*(?:
        !\s*(?P<absent>[^\s=!,()]+)
      | (?P<setkey>[^\s=!,()]+)\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)
      | (?P<key>[^\s=!,()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s=!,()]*))?
    )\s*$""",
    re.VERBOSE,
)
_TOP_LEVEL_COMMA = re.compile(r",(?![^()]*\))")  # commas outside `in (...)` lists
_FIELD_REQUIREMENT = re.compile(r"^\s*(?P<key>[^\s=!,]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^,]*?)\s*$")

# The union of the fields the real apiserver lets clients select on (per resource it allows fewer).
FIELD_SELECTABLE = {"metadata.name", "metadata.namespace", "involvedObject.name", "involvedObject.kind",
                    "involvedObject.uid", "involvedObject.namespace", "involvedObject.apiVersion",
                    "involvedObject.fieldPath", "involvedObject.resourceVersion", "reason", "type",
                    "status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                    "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"}


class SelectorError(ValueError):
    """An unparsable selector; the server answers 400 BadRequest with this message."""


def label_selector(text: str | None) -> Predicate:
    """A predicate over objects for a `labelSelector=` query value (empty selects everything)."""
    tests = [_label_requirement(part) for part in _TOP_LEVEL_COMMA.split(text or "") if part.strip()]
    return lambda obj: all(test(labels_of(obj)) for test in tests)


def field_selector(text: str | None) -> Predicate:
    """A predicate over objects for a `fieldSelector=` query value (equality-based only, as in k8s)."""
    tests = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        match = _FIELD_REQUIREMENT.match(part)
        if match is None:
            raise SelectorError(f"invalid field selector requirement {part!r}")
        key, op, value = match["key"], match["op"], match["value"]
        if key not in FIELD_SELECTABLE:
            raise SelectorError(f'field label not supported: {key}')
        tests.append(_field_test(key, op != "!=", value))
    return lambda obj: all(test(obj) for test in tests)


def structured_selector(selector: Mapping[str, Any] | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over label dicts for a LabelSelector object (matchLabels + matchExpressions)."""
    selector = selector or {}
    wanted = dict(selector.get("matchLabels") or {})
    expressions = list(selector.get("matchExpressions") or [])

    def matches(labels: Mapping[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in wanted.items()):
            return False
        return all(_expression_matches(expr, labels) for expr in expressions)

    return matches


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """The query form of a LabelSelector object, as kubectl and the Scale subresource show it."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), ",".join(expr.get("values") or [])
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                      "Exists": f"{key}", "DoesNotExist": f"!{key}"}.get(op, ""))
    return ",".join(p for p in parts if p)


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """An object's labels, never None."""
    return (obj.get("metadata") or {}).get("labels") or {}


def field_value(obj: Mapping[str, Any], dotted: str) -> str:
    """The string value at a dotted path, "" when absent (how the apiserver compares fields)."""
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _label_requirement(text: str) -> Callable[[Mapping[str, str]], bool]:
    match = _REQUIREMENT.match(text)
    if match is None:
        raise SelectorError(f"unable to parse requirement: {text.strip()!r}")
    if match["absent"]:
        key = match["absent"]
        return lambda labels: key not in labels
    if match["setkey"]:
        key, values = match["setkey"], {v.strip() for v in match["values"].split(",") if v.strip()}
        if match["setop"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    key, op, value = match["key"], match["op"], match["value"]
    if op is None:
        return lambda labels: key in labels
    if op == "!=":
        return lambda labels: labels.get(key) != value
    return lambda labels: labels.get(key) == value


def _field_test(key: str, equal: bool, value: str) -> Predicate:
    return lambda obj: (field_value(obj, key) == value) is equal


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False
