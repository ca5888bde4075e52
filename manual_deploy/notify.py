"""Tell the team: a Slack-compatible webhook message on start, success and failure.

With GitLab down nobody sees pipeline messages, so the tool says what it did, by whom and that CI
was bypassed. A dead webhook must never fail or stall a deploy: one short attempt, then a warning.
The URL itself is a secret (Slack puts the token in it) and is never printed.
"""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any

WEBHOOK_ENV_VAR = "MANUAL_DEPLOY_WEBHOOK_URL"
TIMEOUT_S = (3.05, 5.0)
ICONS = {"start": "🚀", "success": "✅", "failure": "❌", "unchanged": "➖"}


class Notifier:
    def __init__(self, url: str | None, out):
        self.url = url
        self.out = out

    @classmethod
    def from_config(cls, config, out) -> "Notifier":
        configured = config.notify.webhook_url if config.notify else None
        return cls(os.environ.get(WEBHOOK_ENV_VAR) or configured, out)

    def send(self, event: str, *, command: str, env: str, apps: list[dict[str, Any]], reason: str = "", detail: str = "") -> bool:
        """POST one message; returns whether it was delivered. Never raises."""
        if not self.url:
            return False
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        names = ", ".join(f"{a['app']} {a.get('image', '')}".strip() for a in apps)
        text = f"{ICONS.get(event, '')} manual-deploy {command} {event} on {env} by {who} (GitLab CI bypassed): {names}"
        if reason:
            text += f" — reason: {reason}"
        if detail:
            text += f" — {detail}"
        payload = {
            "text": text,
            "event": event,
            "command": command,
            "env": env,
            "user": who,
            "reason": reason,
            "ci_bypassed": True,
            "apps": apps,
        }
        import requests

        try:
            response = requests.post(self.url, json=payload, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            self.out.warn(f"team notification not sent ({type(exc).__name__}); tell the team yourself")
            return False
        if response.status_code >= 300:
            self.out.warn(f"team notification not sent (webhook answered HTTP {response.status_code}); tell the team yourself")
            return False
        return True
