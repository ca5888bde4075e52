"""The HTTP face of the emulator: a kmock KubernetesEmulator that speaks the apiserver's REST dialect.

kmock 0.8 provides the request model, the per-object storage with history and the bundled discovery
facts; its own routing cannot parse `/api/v1/namespaces/<ns>`, chokes on protobuf bodies and lacks
PUT, selectors, resourceVersions and watch resumption. So this handler takes over dispatch: it
parses the URL the way the apiserver does, decodes JSON / protobuf / YAML bodies, and hands the
semantics to Cluster (writes), Store (lists and watches) and Controller (everything that moves).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from manual_deploy_sandbox.kube import auth, errors, patching, protobuf, resources
from manual_deploy_sandbox.kube.cluster import Cluster
from manual_deploy_sandbox.kube.controller import Controller
from manual_deploy_sandbox.kube.ingresses import IngressFailures
from manual_deploy_sandbox.kube.kubelet import PODS, Failures
from manual_deploy_sandbox.kube.volumes import VolumeFailures
from manual_deploy_sandbox.kube.resources import ResourceType
from manual_deploy_sandbox.kube.selectors import SelectorError, field_selector, label_selector
from manual_deploy_sandbox.kube.store import Change, Store

log = logging.getLogger(__name__)

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0",
           "gitCommit": "9edcffcde5595e8a5b1a35f88c421764e575afce", "gitTreeState": "clean",
           "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5", "compiler": "gc", "platform": "linux/amd64"}
# The apiserver labels the protobuf document with the dotted form: Go's mime parser rejects the "@v1.0"
# form clients put in Accept ("mime: unexpected content after media subtype").
OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
DEFAULT_WATCH_SECONDS = 30
MAX_WATCH_SECONDS = 1800
BOOKMARK_PERIOD = 5.0
JOURNAL_LIMIT = 5000  # requests kept for /_emulator/requests (and kmock's own request list)
PUBLIC_PATHS = ("/_emulator/",)  # the harness's control plane, not part of the emulated API
# /version, /healthz, /readyz and /livez are readable anonymously too: see auth.ANONYMOUS_PATHS.


@dataclass(frozen=True)
class ApiPath:
    """A parsed /api or /apis URL; plural is None for discovery documents."""

    group: str
    version: str | None
    namespace: str | None
    plural: str | None
    name: str | None
    subresource: str | None


def parse_api_path(path: str) -> ApiPath | None:
    """Split a resource URL; `/api/v1/namespaces/x` is the Namespace x, not "scoped to namespace x"."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[0] not in ("api", "apis"):
        return None
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], (parts[2] if len(parts) > 2 else None), parts[3:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    return ApiPath(group, version, namespace, plural, name, "/".join(rest[2:]) or None)


@attrs.define(kw_only=True, eq=False)
class KubeApi(kmock.KubernetesEmulator):
    """An aiohttp low-level handler (request -> response) serving the emulated cluster."""

    authorizer: auth.Authorizer = attrs.field(factory=auth.Authorizer)
    pod_start_delay: float = 0.2
    progress_deadline: float = 2.0
    failures: Failures = attrs.field(factory=Failures)
    volume_failures: VolumeFailures = attrs.field(factory=VolumeFailures)
    ingress_failures: IngressFailures = attrs.field(factory=IngressFailures)
    journal: list[dict[str, Any]] = attrs.field(factory=list)
    store: Store = attrs.field(init=False)
    cluster: Cluster = attrs.field(init=False)
    controller: Controller = attrs.field(init=False)
    closing: asyncio.Event = attrs.field(init=False, factory=asyncio.Event)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = Store(self.objects)
        self.cluster = Cluster(self.store)
        self.controller = Controller(self.cluster, self.failures, pod_start_delay=self.pod_start_delay,
                                     progress_deadline=self.progress_deadline, volume_failures=self.volume_failures,
                                     ingress_failures=self.ingress_failures)
        for res in resources.served().values():
            self.resources[res.key] = kmock.ResourceInfo(
                namespaced=res.namespaced, kind=res.kind, singular=res.singular, verbs=res.verbs,
                shortnames=res.short_names, subresources=res.subresources)

    def close(self) -> None:
        """End open watch streams now instead of at their timeout."""
        self.closing.set()
        self.store.wake()

    # ---------------------------------------------------------------------------------------- entry

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """kmock's entry point, taken over: journal, authenticate, dispatch, answer failures as Status."""
        # Complete from the start (status filled in later): readers in other threads may serialise it.
        entry = {"method": raw.method, "path": raw.path, "query": dict(raw.query),
                 "content_type": raw.headers.get("Content-Type"), "status": None}
        _append_bounded(self.journal, entry)
        try:
            user = self._authenticate(raw)
            entry["user"] = user.name
            response = await self._dispatch(raw, await raw.read(), user)
        except errors.ApiError as exc:
            response = _status_response(exc)
        except aiohttp.web.HTTPException as exc:  # e.g. a body over the size limit
            reason = exc.reason.replace(" ", "")
            response = _status_response(errors.ApiError(exc.status, reason, exc.text or exc.reason))
        except Exception as exc:  # noqa: BLE001 - a bug here must answer 500, not drop the connection
            log.exception("kube emulator failed on %s %s", raw.method, raw.path)
            response = _status_response(errors.ApiError(
                500, "InternalError", f"an error on the server ({exc!r}) has prevented the request from succeeding"))
        entry["status"] = response.status
        return response

    def _authenticate(self, raw: aiohttp.web.BaseRequest) -> auth.User:
        if raw.path.startswith(PUBLIC_PATHS):
            return auth.User(auth.ANONYMOUS, ("system:unauthenticated",))
        return self.authorizer.authenticate(raw.headers.get("Authorization"), raw.path)

    async def _dispatch(self, raw: aiohttp.web.BaseRequest, body: bytes,
                        user: auth.User) -> aiohttp.web.StreamResponse:
        path = raw.path.rstrip("/") or "/"
        if path.startswith("/_emulator/"):
            return await self._control(raw, path, body)
        api = parse_api_path(path)
        if api is None:
            return _non_resource(raw, path)
        if api.plural is None or api.version is None:
            return _discovery(raw, api, path)
        self.authorizer.authorize(user, auth.request_attributes(
            raw.method, api.group, api.plural, api.namespace, api.name, api.subresource,
            raw.method == "GET" and raw.query.get("watch") in ("true", "1")))
        res = resources.lookup(api.group, api.version, api.plural)
        if res is None or (api.namespace is not None and not res.namespaced):
            raise errors.path_not_found(path)
        if (res.group, res.plural) == auth.SSAR:
            if raw.method != "POST" or api.name is not None:
                raise errors.method_not_allowed(f"{raw.method} is not allowed on {path}")
            return _json(self.authorizer.review(user, _decode_body(raw, body)), 201)
        request = self._remember(raw, body, api, res)
        response = await self._serve(raw, request, res, api)
        if raw.method != "GET" and not _dry_run(request):
            self.controller.sync()
        return response

    def _remember(self, raw: aiohttp.web.BaseRequest, body: bytes, api: ApiPath, res: ResourceType) -> kmock.Request:
        """Record the request in kmock's model (Authorization redacted) with its decoded body."""
        headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in raw.headers.items()}
        request = kmock.Request(
            id=len(self._requests), method=raw.method, url=raw.url, params=dict(raw.query), headers=headers,
            body=body, text=body.decode("utf-8", "replace"), data=_decode_body(raw, body),
            action=_action(raw, api), resource=res.key, namespace=api.namespace, name=api.name,
            subresource=api.subresource)  # no raw_request: kept requests must not pin connections
        _append_bounded(self._requests, request)
        return request

    # --------------------------------------------------------------------------------------- resources

    async def _serve(self, raw: aiohttp.web.BaseRequest, req: kmock.Request, res: ResourceType,
                     api: ApiPath) -> aiohttp.web.StreamResponse:
        method, ns, name, sub = raw.method, api.namespace, api.name, api.subresource
        if sub is not None and sub not in res.subresources:
            raise errors.path_not_found(raw.path)
        dry_run = _dry_run(req)
        if method == "GET":
            if req.params.get("watch") in ("true", "1"):
                return await self._watch(raw, req, res, ns, name)
            if name is None:
                return _json(self._list(req, res, ns))
            if sub == "log":
                return self._log(req, ns, name)
            if sub == "scale":
                return _json(self.cluster.scale(res, ns, name))
            return _json(self.cluster.get(res, ns, name))
        if method == "POST" and name is None:
            return _json(self.cluster.create(res, req.data, ns, dry_run=dry_run), 201)
        if method == "PUT" and name is not None:
            return _json(self.cluster.replace(res, ns, name, req.data, subresource=sub, dry_run=dry_run))
        if method == "PATCH" and name is not None:
            obj, created = self.cluster.patch(res, ns, name, req.body, _media_type(raw), subresource=sub,
                                              dry_run=dry_run, field_manager=req.params.get("fieldManager"))
            return _json(obj, 201 if created else 200)
        if method == "DELETE" and name is not None and sub is None:
            return _json(self._delete(req, res, ns, name, dry_run))
        if method == "DELETE" and name is None:
            return _json(self._delete_collection(req, res, ns, dry_run))
        raise errors.method_not_allowed(f"the server does not allow this method on the requested resource ({method})")

    def _list(self, req: kmock.Request, res: ResourceType, namespace: str | None) -> dict[str, Any]:
        items = self.cluster.list(res, namespace, _predicate(req))
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": self.store.resource_version}, "items": items}

    def _log(self, req: kmock.Request, namespace: str, name: str) -> aiohttp.web.Response:
        tail = req.params.get("tailLines")
        try:
            tail_lines = int(tail) if tail not in (None, "") else None
        except ValueError:
            raise errors.bad_request(f"tailLines must be an integer, got {tail!r}") from None
        text = self.controller.kubelet.pod_log(namespace, name, req.params.get("container"), tail_lines,
                                               req.params.get("previous") in ("true", "1"))
        return aiohttp.web.Response(text=text, content_type="text/plain", charset="utf-8")

    def _delete(self, req: kmock.Request, res: ResourceType, namespace: str | None, name: str,
                dry_run: bool) -> dict[str, Any]:
        options = req.data if isinstance(req.data, dict) else {}
        propagation = req.params.get("propagationPolicy") or options.get("propagationPolicy")
        if propagation is None and options.get("orphanDependents") is True:
            propagation = "Orphan"
        deleted = self.cluster.delete(res, namespace, name, propagation=propagation,
                                      preconditions=options.get("preconditions"), dry_run=dry_run)
        if res == PODS or deleted["metadata"].get("deletionTimestamp"):
            return deleted
        details = {"name": name, "group": res.group, "kind": res.plural, "uid": deleted["metadata"].get("uid")}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _delete_collection(self, req: kmock.Request, res: ResourceType, namespace: str | None,
                           dry_run: bool) -> dict[str, Any]:
        doomed = self.cluster.list(res, namespace, _predicate(req))
        for obj in doomed:
            meta = obj["metadata"]
            self.cluster.delete(res, meta.get("namespace"), meta["name"], dry_run=dry_run,
                                propagation=req.params.get("propagationPolicy"))
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": self.store.resource_version}, "items": doomed}

    # ------------------------------------------------------------------------------------------- watch

    async def _watch(self, raw: aiohttp.web.BaseRequest, req: kmock.Request, res: ResourceType,
                     namespace: str | None, name: str | None) -> aiohttp.web.StreamResponse:
        """A newline-delimited JSON event stream that resumes from resourceVersion and ends at timeoutSeconds."""
        params = req.params
        predicate = _predicate(req, name)
        timeout = _watch_timeout(params.get("timeoutSeconds"))
        since, initial = self._watch_start(params.get("resourceVersion"), params.get("sendInitialEvents") == "true")
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if since < self.store.oldest_resumable:
                await _send(response, {"type": "ERROR", "object": errors.ApiError(
                    410, "Expired", f"too old resource version: {since} ({self.store.oldest_resumable})").status()})
                return response
            if initial is not None:
                for obj in self.cluster.list(res, namespace, predicate):
                    await _send(response, {"type": "ADDED", "object": obj})
                if initial:
                    await _send(response, _bookmark(res, self.store.resource_version, initial_end=True))
            await self._stream_changes(raw, response, res, namespace, predicate, since, deadline,
                                       params.get("allowWatchBookmarks") in ("true", "1"))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-write
        return response

    def _watch_start(self, resource_version: str | None, send_initial: bool) -> tuple[int, bool | None]:
        """(resume point, initial-events mode): None = resume only, False = list first, True = list + bookmark."""
        if send_initial or resource_version in (None, "", "0"):
            return int(self.store.resource_version), send_initial
        try:
            return int(resource_version), None
        except ValueError:
            raise errors.bad_request(f"invalid resourceVersion {resource_version!r}") from None

    async def _stream_changes(self, raw: aiohttp.web.BaseRequest, response: aiohttp.web.StreamResponse,
                              res: ResourceType, namespace: str | None, predicate, since: int, deadline: float,
                              bookmarks: bool) -> None:
        """Send matching changes after `since` until the deadline, the server stops or the client leaves.

        aiohttp does not cancel handlers when clients disconnect, hence the transport check: helm asks
        for 5-10 minute watches and drops them as soon as it is done.
        """
        loop = asyncio.get_running_loop()
        last_bookmark = loop.time()
        while not self.closing.is_set() and loop.time() < deadline:
            if raw.transport is None or raw.transport.is_closing():
                return
            changed = self.store.changed
            for change in self.store.changes_since(since, res):
                since = change.rv
                event = _watch_event(change, namespace, predicate)
                if event is not None:
                    await _send(response, event)
            if bookmarks and loop.time() - last_bookmark >= BOOKMARK_PERIOD:
                await _send(response, _bookmark(res, str(since)))
                last_bookmark = loop.time()
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, min(deadline - loop.time(), BOOKMARK_PERIOD)))
            except asyncio.TimeoutError:
                pass

    # ----------------------------------------------------------------------------------------- control

    async def _control(self, raw: aiohttp.web.BaseRequest, path: str, body: bytes) -> aiohttp.web.Response:
        """`/_emulator/failures`, `/_emulator/ingress-failures` (inject/clear), `/_emulator/requests` (journal)."""
        method = raw.method
        injected = {"/_emulator/failures": (self.failures, _add_failure),
                    "/_emulator/ingress-failures": (self.ingress_failures, _add_ingress_failure)}.get(path)
        if injected is not None:
            failures, add = injected
            if method == "GET":
                return _json({"failures": failures.as_list()})
            if method == "DELETE":
                failures.clear()
                return _json({"failures": []})
            if method == "POST":
                return _json(add(failures, body), 201)
        if path == "/_emulator/requests":
            if method == "GET":
                return _json({"requests": list(self.journal)})
            if method == "DELETE":
                self.journal.clear()
                return _json({"requests": []})
        raise errors.path_not_found(path)


# ------------------------------------------------------------------------------------------- helpers


def _non_resource(raw: aiohttp.web.BaseRequest, path: str) -> aiohttp.web.Response:
    """/version, /api, /apis, /openapi/v2, the health paths and the root listing."""
    if raw.method != "GET":
        raise errors.path_not_found(path)
    if path == "/version":
        return _json(VERSION)
    if path == "/api":
        return _json(resources.api_versions(raw.host))
    if path == "/apis":
        return _json(resources.api_group_list())
    if path == "/openapi/v2":
        return _openapi_v2(raw.headers.get("Accept", ""))
    if path in ("/healthz", "/livez", "/readyz"):
        return aiohttp.web.Response(text="ok", content_type="text/plain")
    if path == "/":
        return _json({"paths": ["/api", "/api/v1", "/apis", *(f"/apis/{g}" for g in resources.group_versions()),
                                "/healthz", "/livez", "/openapi/v2", "/readyz", "/version"]})
    raise errors.path_not_found(path)


def _discovery(raw: aiohttp.web.BaseRequest, api: ApiPath, path: str) -> aiohttp.web.Response:
    """Legacy discovery; the aggregated kind is never offered, so clients fall back to this."""
    if raw.method != "GET":
        raise errors.method_not_allowed(f"{raw.method} is not allowed on {path}")
    document = (resources.api_group(api.group) if api.version is None
                else resources.api_resource_list(api.group, api.version))
    if document is None:
        raise errors.path_not_found(path)
    if api.version is None:
        document = {"kind": "APIGroup", "apiVersion": "v1", **document}
    return _json(document)


def _add_failure(failures: Failures, body: bytes) -> dict[str, Any]:
    try:
        spec = json.loads(body or b"{}")
        kwargs = {"log": spec["log"]} if "log" in spec else {}
        return failures.add(str(spec["image"]), str(spec["mode"]), **kwargs).as_dict()
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request(f"expected {{'image': glob, 'mode': mode, 'log'?: text}}: {exc}") from None


def _add_ingress_failure(failures: IngressFailures, body: bytes) -> dict[str, Any]:
    try:
        spec = json.loads(body or b"{}")
        extra = {key: str(spec[key]) for key in ("reason", "message") if key in spec}
        return failures.add(str(spec["name"]), **extra).as_dict()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise errors.bad_request(f"expected {{'name': glob, 'reason'?: text, 'message'?: text}}: {exc}") from None


def _json(payload: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(payload).encode(), status=status, content_type="application/json")


def _status_response(exc: errors.ApiError) -> aiohttp.web.Response:
    return _json(exc.status(), exc.code)


async def _send(response: aiohttp.web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def _append_bounded(items: list[Any], item: Any) -> None:
    items.append(item)
    if len(items) > JOURNAL_LIMIT:
        del items[: len(items) - JOURNAL_LIMIT]


def _media_type(raw: aiohttp.web.BaseRequest) -> str:
    return (raw.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _decode_body(raw: aiohttp.web.BaseRequest, body: bytes) -> Any:
    """JSON or protobuf bodies as dicts; PATCH bodies stay raw (their media type says how to read them)."""
    media = _media_type(raw)
    if not body.strip() or media in patching.PATCH_TYPES:
        return None
    if protobuf.is_protobuf(media):
        try:
            return protobuf.decode(body)
        except protobuf.UnsupportedProtobuf as exc:
            raise errors.unsupported_media_type(str(exc)) from None
    if media not in ("", "application/json", "application/yaml", "*/*"):
        raise errors.unsupported_media_type(f"the body of the request was in an unknown format - accepted media "
                                            f"types include: application/json, application/yaml, "
                                            f"{protobuf.CONTENT_TYPE}")
    try:
        return yaml.safe_load(body) if media == "application/yaml" else json.loads(body)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the request body could not be decoded: {exc}") from None


def _action(raw: aiohttp.web.BaseRequest, api: ApiPath) -> kmock.action | None:
    if raw.method == "GET":
        if raw.query.get("watch") in ("true", "1"):
            return kmock.action.WATCH
        return kmock.action.LIST if api.name is None else kmock.action.FETCH
    return {"POST": kmock.action.CREATE, "PUT": kmock.action.UPDATE, "PATCH": kmock.action.UPDATE,
            "DELETE": kmock.action.DELETE}.get(raw.method)


def _dry_run(req: kmock.Request) -> bool:
    options = req.data if isinstance(req.data, dict) and req.data.get("kind") == "DeleteOptions" else {}
    return req.params.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])


def _predicate(req: kmock.Request, name: str | None = None):
    """Label and field selectors of the request (and a name, for watches of one object)."""
    try:
        labels = label_selector(req.params.get("labelSelector"))
        fields = field_selector(req.params.get("fieldSelector"))
    except SelectorError as exc:
        raise errors.bad_request(str(exc)) from None
    return lambda obj: (name is None or obj["metadata"]["name"] == name) and labels(obj) and fields(obj)


def _watch_event(change: Change, namespace: str | None, predicate) -> dict[str, Any] | None:
    """The event a watcher sees: selector membership turns MODIFIED into ADDED/DELETED at the edges."""
    def matches(obj: dict[str, Any] | None) -> bool:
        in_ns = obj is not None and (namespace is None or obj["metadata"].get("namespace") == namespace)
        return in_ns and predicate(obj)

    now, before = matches(change.obj), change.old is not None and matches(change.old)
    if change.type == "DELETED":
        kind = "DELETED" if before else None
    elif now:
        kind = "MODIFIED" if before else "ADDED"
    else:
        kind = "DELETED" if before else None
    return None if kind is None else {"type": kind, "object": change.obj}


def _bookmark(res: ResourceType, resource_version: str, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}}


def _watch_timeout(value: str | None) -> float:
    try:
        seconds = float(value) if value not in (None, "") else DEFAULT_WATCH_SECONDS
    except ValueError:
        raise errors.bad_request(f"timeoutSeconds must be a number, got {value!r}") from None
    return min(max(seconds, 0.0), MAX_WATCH_SECONDS)


def _openapi_v2(accept: str) -> aiohttp.web.Response:
    """An empty OpenAPI document: client-side schema validation then has nothing to object to."""
    if "json" in accept and "protobuf" not in accept:
        return _json({"swagger": "2.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
                      "paths": {}, "definitions": {}})
    return aiohttp.web.Response(body=b"", headers={"Content-Type": OPENAPI_V2_PROTOBUF})
