"""Loopback plumbing shared by the stand-ins: free ports and threaded HTTP servers that stop cleanly.

Everything binds 127.0.0.1 only, so a sandbox never exposes anything beyond this machine.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from manual_deploy.processes import pid_alive  # noqa: F401 - the sandbox's supervisors ask it too

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port that was free a moment ago, for processes that need the port in their config up front.

    Racy by nature (someone may grab it before the process binds); callers that can bind port 0 should.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler without per-request stderr logging, with small helpers for answers.

    HTTP/1.0 on purpose: every connection closes after one answer, so a stopped server cannot keep
    serving a client through a pooled keep-alive connection.
    """

    server_version = "sandbox"
    sys_version = ""

    @property
    def owner(self) -> Any:
        """The stand-in object that started this server (see BackgroundHTTPServer)."""
        return self.server.owner  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the stdlib
        """Silence the default access log; the stand-ins record requests themselves."""

    def send_body(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                  content_type: str = "application/octet-stream") -> None:
        """Answer with `body` (omitted for HEAD) and an exact Content-Length."""
        self.send_response(status)
        merged = {"Content-Type": content_type, **(headers or {})}
        for name, value in merged.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Answer with a JSON document."""
        self.send_body(status, json.dumps(payload).encode(), headers, content_type="application/json")


class DispatchHandler(QuietHandler):
    """Hands every HTTP method to the owning stand-in's `_handle(handler)`, which routes and records."""

    def _dispatch(self) -> None:
        self.owner._handle(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _dispatch  # noqa: N815 - stdlib naming


class BackgroundHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> served by a daemon thread; stop() is idempotent."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        self._handler = handler
        self._owner = owner
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, port: int = 0) -> int:
        """Bind `port` (default 0: a free one, no race), start serving, return the port.

        A fixed port is for coming back after stop() on the same URL (an outage that ends); the stdlib server
        sets SO_REUSEADDR, so connections of the previous socket left in TIME_WAIT do not block the rebind.
        """
        if self._server is not None:
            return self.port
        server = ThreadingHTTPServer((LOOPBACK, port), self._handler)
        server.daemon_threads = True
        server.owner = self._owner  # type: ignore[attr-defined]
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-http-{self.port}", daemon=True
        )
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop accepting, close the socket, join the serving thread (bounded). Safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
