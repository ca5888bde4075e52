"""Keep secrets out of everything we print, log or raise."""

from __future__ import annotations

import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+(?::[^/@\s]*)?@", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*(?:bearer|basic)\s+)\S+")


def redact(text: str, *secrets: str | None) -> str:
    """Mask URL credentials, Authorization headers and each known secret value in `text`."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _AUTH_HEADER.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
