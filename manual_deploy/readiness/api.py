"""Raw requests to the apiserver, answered as the plain JSON dicts it serves.

No typed model classes: importing them costs ≈ 0.5 s of CPU that a deploy's speed budget does not
have, and the readiness rules only need a few fields anyway. Errors carry the HTTP status or the
transport error's type, never the response body or headers (they can carry tokens).
"""

from __future__ import annotations

import json
from typing import Any

REQUEST_TIMEOUT = (3, 8)  # (connect, read) seconds: one slow answer must not stall the watch or its progress lines


class ReadError(Exception):
    """A read that failed; `status` is the HTTP status, or None when no answer came (transport error)."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def unreachable(self) -> bool:
        return self.status is None

    def __str__(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else self.reason


class Api:
    """GET a path and return its JSON (None on 404, "not created yet"), or the text of a log."""

    def __init__(self, api_client) -> None:
        self.client = api_client

    def get(self, path: str, **query: str) -> dict[str, Any] | None:
        status, data = self._get(path, query)
        if status == 404:
            return None
        return json.loads(data)

    def items(self, path: str, *, labels: str | None = None, fields: str | None = None) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("labelSelector", labels), ("fieldSelector", fields)) if v}
        found = self.get(path, **query)
        return list((found or {}).get("items") or [])

    def text(self, path: str, **query: str) -> str:
        status, data = self._get(path, query)
        return "" if status == 404 else data.decode("utf-8", "replace")

    def write(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST or PUT `body`; the object the apiserver stored. A refusal (409 on a stale resourceVersion,
        403, …) is a ReadError with its status, as for a read."""
        status, data = self._get(path, {}, method=method, body=body)
        if status == 404:
            raise ReadError(404, "HTTP 404")
        return json.loads(data)

    def _get(self, path: str, query: dict[str, str], *, method: str = "GET", body: Any = None) -> tuple[int, bytes]:
        params = list(query.items())
        headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if body is not None else {})}
        try:
            if hasattr(self.client, "param_serialize"):  # kubernetes >= 35: call_api takes a serialized request
                method, url, headers, body, post = self.client.param_serialize(
                    method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"])
                resp = self.client.call_api(method, url, headers, body, post, _request_timeout=REQUEST_TIMEOUT)
                status, data = resp.status, resp.read()
            else:  # older clients: the classic signature, raising ApiException on non-2xx
                resp = self.client.call_api(path, method, query_params=params, header_params=headers, body=body,
                                            auth_settings=["BearerToken"], response_type=None, _preload_content=False,
                                            _return_http_data_only=True, _request_timeout=REQUEST_TIMEOUT)
                status, data = resp.status, resp.data
        except Exception as exc:  # noqa: BLE001 - ApiException (old clients), urllib3 errors, timeouts
            status = getattr(exc, "status", None)
            if status == 404:
                return 404, b""
            cause = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps what really happened
            what = type(cause if isinstance(cause, BaseException) else exc).__name__
            raise ReadError(status or None, f"no answer: {what}" if not status else f"HTTP {status}") from None
        if status == 404 or 200 <= status <= 299:
            return status, data
        raise ReadError(status, f"HTTP {status}")
