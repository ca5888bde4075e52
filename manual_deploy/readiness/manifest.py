"""The release's resources, read from the revision helm stored (not re-rendered from the chart).

What helm applies is exactly what its release Secret holds: `data.release` is base64 of helm's
own base64 of gzip of a JSON document whose `manifest` is the multi-document YAML, and whose
`hooks[].manifest` are the hooks. Reading it back means no chart, values or helm binary needed.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
from dataclasses import dataclass
from typing import Any

from manual_deploy.timestamps import parse_time
from manual_deploy.yamlio import safe_load_all

GZIP_MAGIC = b"\x1f\x8b\x08"


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    namespace: str
    body: dict[str, Any]
    hook: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Release:
    revision: int
    resources: tuple[Resource, ...]
    written: dt.datetime | None = None  # when helm wrote the revision (its Secret's creation, the cluster's clock)


def secrets_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets"


def selector(release: str) -> str:
    return f"owner=helm,name={release}"


def newest(secrets: list[dict[str, Any]], after: int | None) -> dict[str, Any] | None:
    """The release Secret of the highest revision above `after` (any, when None)."""
    found = []
    for secret in secrets:
        if secret.get("type") != "helm.sh/release.v1":
            continue
        try:
            version = int(((secret.get("metadata") or {}).get("labels") or {}).get("version", ""))
        except ValueError:
            continue
        if after is None or version > after:
            found.append((version, secret))
    return max(found, key=lambda pair: pair[0])[1] if found else None


def decode(secret: dict[str, Any], namespace: str, *, hooks: bool = True) -> Release:
    """The revision number and resources of one release Secret (ValueError if it is not one)."""
    raw = base64.b64decode(base64.b64decode((secret.get("data") or {})["release"]))
    if raw[:3] == GZIP_MAGIC:
        raw = gzip.decompress(raw)
    body = json.loads(raw)
    docs = [(doc, False) for doc in safe_load_all(body.get("manifest") or "")]
    if hooks:
        for hook in body.get("hooks") or []:
            docs.extend((doc, True) for doc in safe_load_all(hook.get("manifest") or ""))
    resources = []
    for doc, is_hook in docs:
        if not isinstance(doc, dict) or not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            continue
        meta = doc["metadata"]
        resources.append(Resource(doc["kind"], str(meta["name"]), meta.get("namespace") or namespace, doc, is_hook))
    written = parse_time((secret.get("metadata") or {}).get("creationTimestamp"))
    return Release(int(body.get("version") or secret["metadata"]["labels"]["version"]), tuple(resources), written)
