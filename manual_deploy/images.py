"""Image references and release tags: the one place their grammar lives.

An image reference is `host/namespace/app:tag@sha256:…`; a chart either takes it whole or, for charts
that render their own repository (ontology, ingest-node-accessioner: `image_style: tag`), the bare
tag. A release tag is GitLab's `<env>-<sha8>-<dd-mm-YYYY>.<epoch>`. Parsing, comparing and rendering
both live here so that apply, promote, status, wait-image and the rollout check agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from manual_deploy.validate import IMAGE_TAG

_TAG = IMAGE_TAG.pattern.strip("^$")
_DIGEST = r"sha256:[0-9a-f]{64}"
# What a user may type for --image: lower-case repository path with at least one '/', tag, digest.
_STRICT = re.compile(rf"^(?P<repo>[a-z0-9.:-]+(?:/[a-z0-9._-]+)+)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_RELEASE_TAG = re.compile(r"^(?P<env>[a-z][a-z0-9-]*)-(?P<sha>[0-9a-f]{8})-\d{2}-\d{2}-\d{4}\.(?P<epoch>\d+)$")


@dataclass(frozen=True)
class ImageRef:
    """(repo, tag, digest); any part may be None. A bare tag (what ontology's chart takes) has no repo."""

    repo: str | None
    tag: str | None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> ImageRef:
        """Whatever a release or a pod holds, leniently: `repo:tag@digest`, `repo@digest`, a bare tag."""
        if not text:
            return cls(None, None, None)
        rest, _, digest = text.partition("@")
        slash, colon = rest.rfind("/"), rest.rfind(":")
        repo, tag = (rest[:colon], rest[colon + 1:]) if colon > slash else (rest, None)
        if slash < 0 and tag is None:  # no '/' and no ':': a bare tag
            repo, tag = None, rest
        return cls(repo or None, tag or None, digest or None)

    @classmethod
    def parse_strict(cls, text: str) -> ImageRef | None:
        """A user's `--image`: None unless it is a well-formed `repo[:tag][@sha256:…]`."""
        match = _STRICT.match(text)
        return cls(match["repo"], match["tag"], match["digest"]) if match else None

    def __str__(self) -> str:
        text = f"{self.repo}:{self.tag}" if self.repo and self.tag else (self.repo or self.tag or "")
        return f"{text}@{self.digest}" if self.digest else text

    def short(self) -> str:
        """tag@sha256:123456789abc: what tells two images apart at a glance."""
        text = self.tag or str(self)
        return f"{text}@{self.digest[:19]}" if self.digest else (text or "-")


def reference(repo: str, tag: str, digest: str | None) -> str:
    """What apply deploys: `repo:tag`, pinned `@digest` when there is one."""
    return str(ImageRef(repo, tag, digest))


def chart_value(image_style: str, repo: str, tag: str, digest: str | None) -> str:
    """The chart's `image` value: the whole reference, or the bare tag for `image_style: tag` charts."""
    return tag if image_style == "tag" else reference(repo, tag, digest)


def same_image(live: str, value: str) -> bool:
    """Does a container run what the chart's `image` value asked for?

    Exact match; or, for charts that take a bare tag (no '/') and render their own `repo:tag`, the tag.
    """
    if live == value:
        return True
    return "/" not in value and live.split("@", 1)[0].endswith(f":{value}")


def split_repo(image_repo: str) -> tuple[str, str]:
    """`quay.io/ebi-ait/ingest-core` -> (`quay.io`, `ebi-ait/ingest-core`): registry host and repository."""
    host, _, repository = image_repo.partition("/")
    return host, repository


# --- release tags ------------------------------------------------------------------------------------


def release_tag(env: str, sha: str, now: datetime) -> str:
    """GitLab's `<env>-<sha8>-<dd-mm-YYYY>.<epoch>`, with the date taken in UTC."""
    utc = now.astimezone(timezone.utc)
    return f"{env}-{sha[:8]}-{utc:%d-%m-%Y}.{int(utc.timestamp())}"


def release_tag_epoch(tag: str, env: str, sha: str) -> int | None:
    """The epoch of a release tag of this env and commit; None for any other name."""
    match = re.fullmatch(rf"{re.escape(env)}-{re.escape(sha[:8])}-\d{{2}}-\d{{2}}-\d{{4}}\.(\d+)", tag)
    return int(match[1]) if match else None


def release_tag_sha(tag: str) -> str | None:
    """The 8-character commit SHA a release tag names; None when it is not one."""
    match = _RELEASE_TAG.match(tag)
    return match["sha"] if match else None
