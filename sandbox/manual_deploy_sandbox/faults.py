"""A reverse proxy in front of the local registry that can answer errors or stall on cue.

The real registry never misbehaves on demand; this lets tests show how the client copes with 5xx, 429 and
read timeouts while everything else is the genuine registry answer passed through unchanged.
"""

from __future__ import annotations

import collections
import threading
import time
from urllib.parse import urlsplit

import requests

from manual_deploy_sandbox.ports import LOOPBACK, BackgroundHTTPServer, DispatchHandler, QuietHandler

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade",
}
UPSTREAM_TIMEOUT = (3.0, 30.0)
MAX_BODY = 64 * 1024 * 1024  # refuse to buffer more than this from a client
MAX_CHUNKS = 100_000


def read_request_body(handler: QuietHandler) -> bytes:
    """The client's body: by Content-Length, or de-chunked (bounded) for Transfer-Encoding: chunked."""
    length = handler.headers.get("Content-Length")
    if length is not None:
        size = int(length)
        if size > MAX_BODY:
            raise ValueError(f"request body too large ({size} bytes)")
        return handler.rfile.read(size)
    if "chunked" not in handler.headers.get("Transfer-Encoding", "").lower():
        return b""
    body = bytearray()
    for _ in range(MAX_CHUNKS):
        size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            handler.rfile.readline()  # the blank line after the last chunk (no trailers expected)
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise ValueError("request body too large")
        body += handler.rfile.read(size)
        handler.rfile.readline()
    raise ValueError("too many chunks")


class FaultProxy:
    """Forwards to `upstream_url`; queued faults (fail/stall) apply to the next requests in order."""

    def __init__(self, upstream_url: str) -> None:
        self.upstream_url = upstream_url.rstrip("/")
        self.url = ""
        self.host = ""
        self.requests: list[dict] = []
        self._faults: collections.deque[tuple[str, float | int, float | None]] = collections.deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = BackgroundHTTPServer(DispatchHandler, self)

    def start(self) -> FaultProxy:
        """Listen on 127.0.0.1:<free port>."""
        port = self._http.start()
        self._stopping.clear()
        self.host = f"{LOOPBACK}:{port}"
        self.url = f"http://{self.host}"
        return self

    def stop(self) -> None:
        """Stop listening and cut short any stall; idempotent."""
        self._stopping.set()
        self._http.stop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, *statuses: int, retry_after: float | None = None) -> None:
        """The next len(statuses) requests get these codes instead of the registry (429/503 with Retry-After)."""
        with self._lock:
            self._faults.extend(("fail", status, retry_after) for status in statuses)

    def stall_next(self, seconds: float) -> None:
        """The next request waits `seconds` before being forwarded, to provoke client read timeouts."""
        with self._lock:
            self._faults.append(("stall", seconds, None))

    # ------------------------------------------------------------------ per request

    def _handle(self, handler: QuietHandler) -> None:
        """Apply the next queued fault, if any, else forward. The request is recorded before the answer goes out,
        so a client that has its answer can rely on `requests` already holding it."""
        arrived = time.monotonic()
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        note = (arrived, fault[0] if fault else None)
        try:
            body = read_request_body(handler)
        except ValueError as exc:
            self._record(handler, 400, note)
            handler.send_json(400, {"errors": [{"code": "BAD_REQUEST", "message": str(exc)}]})
            return
        try:
            if fault is not None and fault[0] == "fail":
                self._record(handler, int(fault[1]), note)
                self._answer_fault(handler, int(fault[1]), fault[2])
                return
            if fault is not None and fault[0] == "stall":
                self._stopping.wait(float(fault[1]))
            self._forward(handler, body, note)
        except (ConnectionError, TimeoutError):
            pass  # the client went away (e.g. it timed out during a stall)

    def _record(self, handler: QuietHandler, status: int, note: tuple[float, str | None]) -> None:
        """Log one request: arrival time, what we answer, and which fault (if any) applied."""
        arrived, fault = note
        with self._lock:
            self.requests.append({"t": arrived, "method": handler.command, "path": urlsplit(handler.path).path,
                                  "status": status, "fault": fault})

    @staticmethod
    def _answer_fault(handler: QuietHandler, status: int, retry_after: float | None) -> None:
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None and status in (429, 503) else {}
        code = {429: "TOOMANYREQUESTS", 401: "UNAUTHORIZED", 404: "NOT_FOUND"}.get(status, "UNAVAILABLE")
        handler.send_json(status, {"errors": [{"code": code, "message": "injected fault", "detail": None}]}, headers)

    def _forward(self, handler: QuietHandler, body: bytes, note: tuple[float, str | None]) -> None:
        """Replay the request upstream; pass the answer back byte for byte (Location rewritten to us)."""
        headers = {k: v for k, v in handler.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() not in ("host", "content-length")}
        with requests.Session() as session:
            session.headers.clear()  # no requests defaults (Accept, Accept-Encoding…): the client's headers only
            try:
                upstream = session.request(handler.command, self.upstream_url + handler.path, headers=headers,
                                           data=body if body else None, allow_redirects=False, stream=True,
                                           timeout=UPSTREAM_TIMEOUT)
            except requests.RequestException as exc:
                self._record(handler, 502, note)
                handler.send_json(502, {"errors": [{"code": "UNAVAILABLE", "message": f"upstream: {exc}"}]})
                return
            with upstream:
                content = b"" if handler.command == "HEAD" else upstream.raw.read(decode_content=False)
                self._record(handler, upstream.status_code, note)
                self._relay(handler, upstream, content)

    def _relay(self, handler: QuietHandler, upstream: requests.Response, content: bytes) -> None:
        handler.send_response_only(upstream.status_code)  # upstream's own Date/Server, not ours as well
        for name, value in upstream.headers.items():
            lowered = name.lower()
            if lowered in HOP_BY_HOP or (lowered == "content-length" and handler.command != "HEAD"):
                continue
            if lowered == "location" and value.startswith(self.upstream_url):
                value = self.url + value[len(self.upstream_url):]
            handler.send_header(name, value)
        if handler.command != "HEAD":
            handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        if content:
            handler.wfile.write(content)
