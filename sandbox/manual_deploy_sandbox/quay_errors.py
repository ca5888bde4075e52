"""quay's API error JSON (RFC 7807 plus its legacy `error_message`/`error_type`), shared by the stand-in's routes."""

from __future__ import annotations

from typing import Any


def api_error(status: int, error_type: str, detail: str) -> dict[str, Any]:
    """One error document as quay's ApiException renders it."""
    return {
        "status": status,
        "error_message": detail,
        "title": error_type,
        "error_type": error_type,
        "detail": detail,
        "type": f"https://quay.io/api/v1/error/{error_type}",
    }


UNAUTHORIZED = api_error(401, "invalid_token", "Requires authentication")
NOT_FOUND = api_error(404, "not_found", "Not Found")
INSUFFICIENT_SCOPE = api_error(403, "insufficient_scope", "Unauthorized")  # a token without the scope the route needs
