"""A quay.io API v1 stand-in whose builds play out in time and push real images into a LocalRegistry.

It lets `wait-image` style code be exercised end to end: builds move through quay's phases, the image lands in
the registry just before the build reports `complete` (as on quay), and faults (5xx, 429, private repo) can be
queued. JSON shapes follow quay's API for the fields our tooling reads. Build triggers (list, start for a ref)
live in `quay_triggers`; starting one needs the admin token (repo:admin), the API token only reads.
"""

from __future__ import annotations

import collections
import email.utils
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from manual_deploy_sandbox.ports import LOOPBACK, BackgroundHTTPServer, DispatchHandler, QuietHandler
from manual_deploy_sandbox.quay_errors import NOT_FOUND, UNAUTHORIZED, api_error
from manual_deploy_sandbox.quay_triggers import QuayTriggers
from manual_deploy_sandbox.registry import KINDS, publish_image

DEFAULT_PHASES: list[tuple[str, float]] = [
    ("waiting", 0.3), ("build-scheduled", 0.2), ("pulling", 0.2), ("building", 0.5), ("pushing", 0.3), ("complete", 0),
]
DEFAULT_ERROR = "build failed: step 3/7 RUN ./gradlew assemble returned a non-zero code: 1"
FINAL_PHASES = ("complete", "error", "cancelled", "expired")
TICK = 0.02  # seconds between ticker steps (≤ 50 ms as promised to callers)
MAX_LIFETIME = 4 * 3600.0  # the ticker gives up after this long even if nobody calls stop()

MAX_BODY = 64 * 1024  # a start request is a few dozen bytes


def rfc2822(ts: float) -> str:
    """Quay's timestamp format, e.g. "Thu, 26 Nov 2026 14:00:00 -0000"."""
    return email.utils.formatdate(ts, usegmt=False)


@dataclass
class _Build:
    """One build's script (phases over time) and where it has got to."""

    id: str
    app: str
    tag: str
    phases: list[tuple[str, float]]
    kind: str
    error: str
    commit: str | None
    added: float  # monotonic
    delay: float
    started: float  # wall clock when it becomes visible
    phase: str | None = None  # None: not listed yet
    index: int = -1
    digest: str | None = None
    history: list[str] = field(default_factory=list)

    def target_index(self, now: float) -> int:
        """Index of the phase the script says we should be in `now`; -1 while still hidden by `delay`."""
        elapsed = now - self.added - self.delay
        if elapsed < 0:
            return -1
        spent = 0.0
        for index, (_phase, seconds) in enumerate(self.phases[:-1]):
            spent += seconds
            if elapsed < spent:
                return index
        return len(self.phases) - 1

    def snapshot(self) -> dict:
        """What tests assert on: a plain dict copy of the build state."""
        return {
            "id": self.id, "app": self.app, "tag": self.tag, "phase": self.phase, "kind": self.kind,
            "commit": self.commit, "started": self.started, "digest": self.digest,
            "error": self.error if self.phase == "error" else None, "history": list(self.history),
        }


class QuayStandIn:
    """quay.io's API for one namespace, backed by a real registry for the images its builds push."""

    def __init__(self, registry_url: str, namespace: str = "ebi-ait", *, registry_token: str | None = None,
                 api_token: str | None = None, admin_token: str | None = None) -> None:
        """`api_token` reads (a robot or an OAuth token without repo:admin); `admin_token` has repo:admin too."""
        self.registry_url = registry_url.rstrip("/")
        self.namespace = namespace
        self.registry_token = registry_token
        self.api_token = api_token
        self.admin_token = admin_token
        self.private = False
        self.api_url = ""
        self.builds: dict[str, dict] = {}
        self.published: dict[tuple[str, str], dict] = {}
        self.requests: list[dict] = []
        self.publish_errors: list[str] = []
        self._scripts: dict[str, _Build] = {}
        self._faults: collections.deque[tuple[int, float | None]] = collections.deque()
        self._lock = threading.RLock()  # guards the dicts/lists/queue; never held across a registry push
        self._advance_lock = threading.Lock()  # one advancer at a time, so a build publishes exactly once
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._http = BackgroundHTTPServer(DispatchHandler, self)
        self.triggers = QuayTriggers(self.add_build, self._started_view)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> QuayStandIn:
        """Serve the API on 127.0.0.1:<free port> and start the build ticker."""
        port = self._http.start()
        self.api_url = f"http://{LOOPBACK}:{port}/api/v1"
        if self._ticker is None:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick_loop, name="quay-standin-ticker", daemon=True)
            self._ticker.start()
        return self

    def stop(self) -> None:
        """Stop the ticker and the HTTP server; idempotent."""
        self._stop.set()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.join(timeout=20)  # a tick may be mid-publish (bounded by the registry request timeouts)
        self._http.stop()

    def __enter__(self) -> QuayStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def add_build(self, app: str, tag: str, *, phases: list[tuple[str, float]] | None = None, kind: str = "docker",
                  error: str | None = None, commit: str | None = None, delay: float = 0.0) -> str:
        """Queue a build of `app` for `tag` that plays `phases` (each: phase, seconds in it; last is final).

        It is not listed until `delay` seconds have passed. Entering a final `complete` publishes the image first.
        """
        script = list(phases if phases is not None else DEFAULT_PHASES)
        if not script:
            raise ValueError("phases must not be empty")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        build_id = str(uuid.uuid4())
        build = _Build(id=build_id, app=app, tag=tag, phases=script, kind=kind, error=error or DEFAULT_ERROR,
                       commit=commit, added=time.monotonic(), delay=delay, started=time.time() + delay)
        with self._lock:
            self._scripts[build_id] = build
            self.builds[build_id] = build.snapshot()
        self._advance(build)  # a zero-delay build is listed at once, not one tick later
        return build_id

    def publish_now(self, app: str, tag: str, *, kind: str = "docker") -> str:
        """Push `app:tag` into the registry right away (an already-built tag); returns its digest."""
        return self._publish(app, tag, kind)

    def add_trigger(self, app: str, *, service: str = "github", enabled: bool = True,
                    disabled_reason: str | None = None, phases: list[tuple[str, float]] | None = None) -> str:
        """Give `app` a build trigger (its builds then name it); returns its uuid. `phases`: of the builds it starts."""
        return self.triggers.add(app, service=service, enabled=enabled, disabled_reason=disabled_reason, phases=phases)

    def disable_trigger(self, app: str, reason: str = "user_toggled") -> None:
        """Disable `app`'s triggers with quay's `disabled_reason` (user_toggled, successive_build_failures, …)."""
        self.triggers.disable(app, reason)

    def fail_next(self, *statuses: int, retry_after: float | None = None) -> None:
        """The next len(statuses) API requests answer these codes, in order (429/503 carry Retry-After if given)."""
        with self._lock:
            self._faults.extend((status, retry_after) for status in statuses)

    # ------------------------------------------------------------------ the ticker

    def _tick_loop(self) -> None:
        """Advance every unfinished build every TICK seconds until stop() (or MAX_LIFETIME)."""
        deadline = time.monotonic() + MAX_LIFETIME
        for _ in range(int(MAX_LIFETIME / TICK) + 1):
            if self._stop.wait(TICK) or time.monotonic() >= deadline:
                return
            with self._lock:
                pending = [b for b in self._scripts.values() if b.phase not in FINAL_PHASES]
            for build in pending:
                if self._stop.is_set():
                    return
                self._advance(build)

    def _advance(self, build: _Build) -> None:
        """Step `build` phase by phase up to where its script says it should be now."""
        with self._advance_lock:
            target = build.target_index(time.monotonic())
            for index in range(build.index + 1, target + 1):
                phase = build.phases[index][0]
                if phase == "complete" and not self._publish_for(build):
                    self._set_phase(build, len(build.phases) - 1, "error")
                    return
                self._set_phase(build, index, phase)

    def _publish_for(self, build: _Build) -> bool:
        """Push the build's image before it may show `complete`; False (build errors) if the push fails."""
        try:
            build.digest = self._publish(build.app, build.tag, build.kind)
            return True
        except Exception as exc:  # noqa: BLE001 - any push failure becomes a failed build, like on quay
            build.error = f"push failed: {exc}"
            with self._lock:
                self.publish_errors.append(f"{build.app}:{build.tag}: {exc}")
            return False

    def _publish(self, app: str, tag: str, kind: str) -> str:
        digest = publish_image(self.registry_url, f"{self.namespace}/{app}", tag, kind=kind,
                               token=self.registry_token)
        with self._lock:
            self.published[(app, tag)] = {"digest": digest, "at": time.time(), "kind": kind}
        return digest

    def _set_phase(self, build: _Build, index: int, phase: str) -> None:
        with self._lock:
            build.index, build.phase = index, phase
            build.history.append(phase)
            self.builds[build.id] = build.snapshot()

    # ------------------------------------------------------------------ HTTP

    def _handle(self, handler: QuietHandler) -> None:
        """Record, then: queued fault > private/auth > routing."""
        parts = urlsplit(handler.path)
        query = dict(parse_qsl(parts.query))
        authorization = handler.headers.get("Authorization")
        body = _read_body(handler)
        with self._lock:
            self.requests.append({"t": time.monotonic(), "method": handler.command, "path": parts.path,
                                  "query": query, "authorization": authorization, "body": _decoded(body)})
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            _answer_fault(handler, *fault)
            return
        authed = self._authenticated(authorization)
        if authed is None or (self.private and not authed):
            handler.send_json(401, UNAUTHORIZED)
            return
        if handler.command not in ("GET", "HEAD") and not (handler.command == "POST" and self._is_trigger_start(parts.path)):
            handler.send_json(405, api_error(405, "not_found", "Method Not Allowed"))
            return
        status, payload = self._route(parts.path, query, authed, handler.command, self._scope(authorization), body)
        handler.send_json(status, payload)

    def _is_trigger_start(self, path: str) -> bool:
        segments = [s for s in path.split("/") if s]
        return segments[:3] == ["api", "v1", "repository"] and segments[5:6] == ["trigger"] and \
            self.triggers.is_start(segments[6:])

    def _scope(self, authorization: str | None) -> str | None:
        """"admin" (repo:admin), "read" (the API token) or None (anonymous or unknown)."""
        if self.admin_token and authorization == f"Bearer {self.admin_token}":
            return "admin"
        if self.api_token and authorization == f"Bearer {self.api_token}":
            return "read"
        return None

    def _authenticated(self, authorization: str | None) -> bool | None:
        """True: one of our tokens; False: anonymous; None: a bearer token quay would reject."""
        if (self.api_token is None and self.admin_token is None) or not authorization:
            return False
        if self._scope(authorization) is not None:
            return True
        return None if authorization.startswith("Bearer ") else False

    def _route(self, path: str, query: dict[str, str], authed: bool, method: str = "GET", scope: str | None = None,
               body: bytes = b"") -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        if segments[:3] != ["api", "v1", "repository"] or len(segments) < 5:
            return 404, NOT_FOUND
        if segments[3] != self.namespace:
            return 401, UNAUTHORIZED
        if len(segments) < 6:
            return 404, NOT_FOUND
        repo, resource, rest = segments[4], segments[5], segments[6:]
        try:
            if resource == "build" and not rest:
                return 200, self._list_builds(repo, query, authed)
            if resource == "build" and len(rest) == 1:
                return self._one_build(repo, rest[0], authed)
            if resource == "tag" and not rest:
                with self._lock:
                    published = [(tag, dict(info)) for (app, tag), info in self.published.items() if app == repo]
                return 200, tag_listing(published, query)
            if resource == "trigger":
                return self.triggers.route(method, repo, rest, scope, body)
        except ValueError:
            return 400, api_error(400, "invalid_request", "Invalid query")
        return 404, NOT_FOUND

    def _visible(self, repo: str) -> list[_Build]:
        with self._lock:
            return [b for b in self._scripts.values() if b.app == repo and b.phase is not None]

    def _list_builds(self, repo: str, query: dict[str, str], authed: bool) -> dict:
        limit = int(query.get("limit", 5))
        since = float(query["since"]) if "since" in query else None
        builds = [b for b in self._visible(repo) if since is None or b.started >= since]
        builds.sort(key=lambda b: b.started, reverse=True)
        return {"builds": [self._build_view(b, authed) for b in builds[:max(limit, 0)]]}

    def _one_build(self, repo: str, build_id: str, authed: bool) -> tuple[int, Any]:
        for build in self._visible(repo):
            if build.id == build_id:
                return 200, self._build_view(build, authed)
        return 404, NOT_FOUND

    def _build_view(self, build: _Build, authed: bool) -> dict:
        with self._lock:
            phase = build.phase
        return build_view(build, phase, self.namespace, self.triggers.for_build(build.app), authed)

    def _started_view(self, build_id: str) -> dict:
        """What the trigger start route answers: the new build, as its admin sees it."""
        with self._lock:
            build = self._scripts[build_id]
        return self._build_view(build, True)



def _decoded(body: bytes) -> Any:
    """A request body as tests want to assert on it: JSON when it is JSON, else text (None when empty)."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def build_view(build: _Build, phase: str | None, namespace: str, trigger: dict, authed: bool) -> dict:
    """One build as quay's API renders it (trigger metadata only for authenticated callers, as on quay)."""
    return {
        "id": build.id,
        "phase": phase,
        "started": rfc2822(build.started),
        "display_name": (build.commit or build.tag)[:7],
        "tags": [build.tag],
        "error": build.error if phase == "error" else None,
        "status": {},
        "subdirectory": "/",
        "dockerfile_path": "/Dockerfile",
        "context": "/",
        "is_writer": False,
        "manual_user": None,
        "trigger": trigger,
        "trigger_metadata": _trigger_metadata(build, namespace) if authed else None,
        "resource_key": None,
        "pull_robot": None,
        "repository": {"namespace": namespace, "name": build.app},
    }


def _trigger_metadata(build: _Build, namespace: str) -> dict:
    return {
        "commit": build.commit,
        "ref": f"refs/tags/{build.tag}",
        "default_branch": "master",
        "git_url": f"git@github.com:{namespace}/{build.app}.git",
        "commit_info": {
            "message": f"Release {build.tag}",
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(build.started)),
        },
    }


def _answer_fault(handler: QuietHandler, status: int, retry_after: float | None) -> None:
    headers = {}
    if retry_after is not None and status in (429, 503):
        headers["Retry-After"] = f"{retry_after:g}"
    message = "internal" if status == 500 else "injected fault"
    handler.send_json(status, {"error_message": message}, headers=headers)


def _read_body(handler: QuietHandler) -> bytes:
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(min(length, MAX_BODY)) if length > 0 else b""


def tag_listing(published: list[tuple[str, dict]], query: dict[str, str]) -> dict:
    """quay's tag listing from what actually landed in the registry (`published`: (tag, info)), newest first."""
    limit = max(1, min(int(query.get("limit", 50)), 100))
    page = max(1, int(query.get("page", 1)))
    wanted = query.get("specificTag")
    rows = [(tag, info) for tag, info in published if wanted is None or tag == wanted]
    rows.sort(key=lambda row: row[1]["at"], reverse=True)
    chosen = rows[(page - 1) * limit: page * limit]
    tags = [{
        "name": tag,
        "reversion": False,
        "start_ts": int(info["at"]),
        "manifest_digest": info["digest"],
        "is_manifest_list": info.get("kind") == "oci-index",
        "size": 0,  # zero-layer images
        "last_modified": rfc2822(info["at"]),
    } for tag, info in chosen]
    return {"tags": tags, "page": page, "has_additional": len(rows) > page * limit}
