"""Just enough of the Kubernetes protobuf wire format to read what helm sends.

client-go's typed clients (which helm uses for its release Secrets) write core objects as
`application/vnd.kubernetes.protobuf`: the magic `k8s\\x00`, then a `runtime.Unknown` envelope whose
`raw` holds the object's own message. Pulling in the generated Go-schema bindings for a sandbox
would be far heavier than decoding the handful of messages involved, so we read the wire format
(varints and length-delimited fields) against small field tables taken from k8s.io/api's
generated.proto, and turn the result into the JSON the rest of the emulator speaks. Other kinds
(e.g. `kubectl create deployment`, which also writes protobuf) get a clear 415.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class UnsupportedProtobuf(ValueError):
    """A protobuf body we cannot (or will not) decode; the server answers 415 with this message."""


# A field table maps field number -> (json name, kind); kind is a scalar name, ("map", value kind),
# ("repeated", kind), or a nested table.
TYPE_META = {1: ("apiVersion", "string"), 2: ("kind", "string")}
UNKNOWN = {1: ("typeMeta", TYPE_META), 2: ("raw", "bytes"), 3: ("contentEncoding", "string"),
           4: ("contentType", "string")}
TIME = {1: ("seconds", "int"), 2: ("nanos", "int")}
OWNER_REFERENCE = {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                   5: ("apiVersion", "string"), 6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")}
OBJECT_META = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"), 4: ("selfLink", "string"),
    5: ("uid", "string"), 6: ("resourceVersion", "string"), 7: ("generation", "int"),
    8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", ("map", "string")), 12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("repeated", OWNER_REFERENCE)), 14: ("finalizers", ("repeated", "string")),
}
SECRET = {1: ("metadata", OBJECT_META), 2: ("data", ("map", "bytes")), 3: ("type", "string"),
          4: ("stringData", ("map", "string")), 5: ("immutable", "bool")}
CONFIG_MAP = {1: ("metadata", OBJECT_META), 2: ("data", ("map", "string")), 3: ("binaryData", ("map", "bytes")),
              4: ("immutable", "bool")}
NAMESPACE = {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
             3: ("status", {1: ("phase", "string")})}
PRECONDITIONS = {1: ("uid", "string"), 2: ("resourceVersion", "string")}
DELETE_OPTIONS = {1: ("gracePeriodSeconds", "int"), 2: ("preconditions", PRECONDITIONS),
                  3: ("orphanDependents", "bool"), 4: ("propagationPolicy", "string"),
                  5: ("dryRun", ("repeated", "string"))}

# (apiVersion, kind) -> table of the objects we accept.
MESSAGES = {("v1", "Secret"): SECRET, ("v1", "ConfigMap"): CONFIG_MAP, ("v1", "Namespace"): NAMESPACE,
            ("v1", "DeleteOptions"): DELETE_OPTIONS, ("meta.k8s.io/v1", "DeleteOptions"): DELETE_OPTIONS}


def is_protobuf(content_type: str | None) -> bool:
    """Whether a Content-Type header announces the Kubernetes protobuf encoding."""
    return (content_type or "").split(";")[0].strip().lower() == CONTENT_TYPE


def decode(body: bytes) -> dict[str, Any]:
    """A k8s protobuf body (magic + runtime.Unknown) as the JSON-shaped dict of the object inside."""
    if not body.startswith(MAGIC):
        raise UnsupportedProtobuf("protobuf body lacks the 'k8s\\x00' magic prefix")
    envelope = _message(body[len(MAGIC):], UNKNOWN)
    type_meta = envelope.get("typeMeta", {})
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if envelope.get("contentEncoding"):
        raise UnsupportedProtobuf(f"protobuf contentEncoding {envelope['contentEncoding']!r} is not supported")
    table = MESSAGES.get((api_version, kind))
    if table is None:
        raise UnsupportedProtobuf(f"protobuf decoding of {kind or '?'} ({api_version or '?'}) is not supported; "
                                  "send JSON instead")
    obj = _message(base64.b64decode(envelope.get("raw", "")), table)
    return {"apiVersion": api_version, "kind": kind, **obj}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Read a base-128 varint at `pos`; returns (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise UnsupportedProtobuf("truncated or oversized varint in protobuf body")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _fields(buf: bytes):
    """Yield (field number, value) for every field; length-delimited values come back as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise UnsupportedProtobuf("truncated length-delimited field in protobuf body")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (1, 5):  # fixed64 / fixed32: none in our tables, skip over
            value, pos = None, pos + (8 if wire == 1 else 4)
        else:
            raise UnsupportedProtobuf(f"unsupported protobuf wire type {wire}")
        yield number, value


def _message(buf: bytes, table: dict) -> dict[str, Any]:
    """Decode one message against its field table; fields not in the table are skipped."""
    out: dict[str, Any] = {}
    for number, raw in _fields(buf):
        if number not in table or raw is None:
            continue
        name, kind = table[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            key, value = _map_entry(raw, kind[1])
            out.setdefault(name, {})[key] = value
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            out.setdefault(name, []).append(_scalar(raw, kind[1]))
        else:
            out[name] = _scalar(raw, kind)
    return out


def _map_entry(raw: bytes, value_kind: Any) -> tuple[str, Any]:
    """A map<string, X> entry: a tiny message with key=1, value=2."""
    key, value = "", _scalar(b"", value_kind)
    for number, item in _fields(raw):
        if number == 1:
            key = _scalar(item, "string")
        elif number == 2:
            value = _scalar(item, value_kind)
    return key, value


def _scalar(raw: Any, kind: Any) -> Any:
    """One field value in its JSON form (bytes become base64, Time becomes RFC 3339)."""
    if isinstance(kind, dict):
        return _message(raw, kind)
    if kind == "string":
        return raw.decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(raw).decode("ascii")
    if kind == "bool":
        return bool(raw)
    if kind == "int":
        return raw - (1 << 64) if raw >= 1 << 63 else raw  # int64 negatives are 10-byte two's complement
    if kind == "time":
        seconds = _message(raw, TIME).get("seconds", 0)
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise UnsupportedProtobuf(f"unknown field kind {kind!r}")
