"""A local stand-in for the team's Slack incoming webhook: records every message it is sent."""

from __future__ import annotations

import json
import threading

from manual_deploy_sandbox.ports import LOOPBACK, BackgroundHTTPServer, DispatchHandler


class WebhookSink:
    """POST /hook → 200 and the JSON body kept in `messages`; `status` lets a test play a broken webhook."""

    def __init__(self, status: int = 200):
        self.status = status
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self._http = BackgroundHTTPServer(DispatchHandler, self)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._http.port}/hook"

    def start(self) -> "WebhookSink":
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> "WebhookSink":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        try:
            message = json.loads(body or b"null")
        except ValueError:
            message = {"raw": body.decode(errors="replace")}
        with self._lock:
            self.messages.append(message)
        handler.send_json(self.status, {"ok": self.status < 300})
