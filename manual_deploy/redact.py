"""Keep secrets out of everything we print, log or raise."""

from __future__ import annotations

import os
import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+(?::[^/@\s]*)?@", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(?i)((?:authorization:\s*(?:bearer|basic)|private-token:)\s+)\S+")
SECRET_ENV = ("QUAY_TOKEN", "QUAY_PASSWORD", "GITLAB_TOKEN")


def redact(text: str, *secrets: str | None) -> str:
    """Mask URL credentials, Authorization headers and each known secret value in `text`."""
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    text = _AUTH_HEADER.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def env_secrets() -> tuple[str | None, ...]:
    """The secrets users hand us through the environment: masked in every error, whatever raised it."""
    return tuple(os.environ.get(name) for name in SECRET_ENV)
