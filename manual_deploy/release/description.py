"""The helm release description a manual deploy leaves behind: written and read here, and nowhere else.

`apply` records who deployed, why, which image and which deploy-config commit in the revision's
description (`helm history` shows it); `status`, `history` and `rollback` read those parts back, and
`apply` reads the config commit to tell an unchanged release from one the config repo moved on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REASON_MAX = 200  # helm keeps the description in the release secret; a pasted log must not bloat it

_WRITTEN = re.compile(
    r"^manual-deploy by (?P<by>\S+); reason: (?P<reason>.*); image: (?P<image>\S+); config: (?P<config>[0-9a-f]{4,40})$"
)


@dataclass(frozen=True)
class Provenance:
    """Who deployed a revision and why, as `write` recorded it."""

    by: str | None
    reason: str | None
    image: str | None
    config_sha: str | None


def write(by: str, reason: str, image_ref: str, config_sha: str) -> str:
    """The description of a revision `by` (user@host#pid) deploys: one line, so `helm history` stays a table."""
    one_line = re.sub(r"\s+", " ", reason).strip()[:REASON_MAX] or "-"
    return f"manual-deploy by {by}; reason: {one_line}; image: {image_ref}; config: {config_sha[:8]}"


def parse(text: str | None) -> Provenance | None:
    """The parts of a description `write` made; None for any other (GitLab's, helm's 'Rollback to 2')."""
    match = _WRITTEN.match((text or "").strip())
    if not match:
        return None
    reason = match.group("reason").strip()
    return Provenance(match.group("by"), None if reason in ("", "-") else reason, match.group("image"), match.group("config"))


def from_config(text: str | None, config_sha: str) -> bool:
    """Was the revision deployed from this deploy-config commit? Only a description `write` made can say so."""
    made = parse(text)
    return made is not None and made.config_sha == config_sha[:8]


def who(by: str | None) -> str:
    """user@host without the process id: what a human needs to know whom to ask."""
    return (by or "").split("#", 1)[0]


def deployed_by(text: str | None) -> str:
    """user@host of a description `write` made; any other description as it is (it is all there is to say)."""
    made = parse(text)
    return who(made.by) if made else (text or "unknown")
