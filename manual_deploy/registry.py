"""A small client for the two things we ask quay.io: the registry (v2) and the quay API (v1).

Shared by `wait-image` (poll), `apply` and `promote` (does the image exist, which digest: `verified_digest`)
and `promote --retag`.
Transport retries (connection errors, 5xx) come from urllib3's Retry; rate limits (429) and
longer outages are left to the caller's schedule, which knows its deadline and keeps the user
informed. Credentials never appear in messages or exceptions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from manual_deploy import __version__
from manual_deploy.errors import OperationFailed, Refused
from manual_deploy.images import split_repo
from manual_deploy.redact import redact

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
# Without all four, distribution answers 400/404 for tags that exist.
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
DEFAULT_TIMEOUT = (3.05, 5.0)  # (connect, read) seconds: one call never blocks a progress line for long


class TransientError(OperationFailed):
    """Worth retrying later: 429, 5xx, connection or read failures. `retry_after` from the server."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ApiUnavailable(OperationFailed):
    """The quay API will not tell us about this repository (private, missing, no token)."""


@dataclass(frozen=True, repr=False)
class Credentials:
    """QUAY_TOKEN (OAuth bearer for /api/v1), QUAY_USERNAME/QUAY_PASSWORD (registry token realm)."""

    quay_token: str | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Credentials":
        return cls(
            quay_token=environ.get("QUAY_TOKEN") or None,
            username=environ.get("QUAY_USERNAME") or None,
            password=environ.get("QUAY_PASSWORD") or None,
        )

    def secrets(self) -> tuple[str | None, ...]:
        return (self.quay_token, self.password)

    def __repr__(self) -> str:
        state = lambda value: "set" if value else "unset"  # noqa: E731
        return f"Credentials(quay_token={state(self.quay_token)}, username={state(self.username)}, password={state(self.password)})"


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str


def make_session() -> requests.Session:
    """A session whose transport retries connection errors and 5xx a little, never 429."""
    retry = Retry(
        total=2,
        connect=2,
        read=1,
        status=2,
        backoff_factor=0.2,
        backoff_max=1.0,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"manual-deploy/{__version__}"
    return session


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Parse `Bearer realm="…",service="…",scope="repository:a/b:pull,push"` (quotes may hold commas)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,":
            i += 1
        key_start = i
        while i < n and rest[i] not in "=, ":
            i += 1
        key = rest[key_start:i].strip().lower()
        if i >= n or rest[i] != "=":
            if key:
                params[key] = ""
            continue
        i += 1
        if i < n and rest[i] == '"':
            i += 1
            value = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(rest[i])
                i += 1
            i += 1  # closing quote
            params[key] = "".join(value)
        else:
            value_start = i
            while i < n and rest[i] != ",":
                i += 1
            params[key] = rest[value_start:i].strip()
    return scheme.lower(), params


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _transient(what: str, response: requests.Response) -> TransientError:
    return TransientError(f"{what}: HTTP {response.status_code}", retry_after=_retry_after(response))


class RegistryClient:
    """Registry v2 reads for one registry, with the Bearer token dance when it asks for it."""

    def __init__(self, base_url: str, credentials: Credentials = Credentials(), session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.session = session or make_session()
        self._tokens: dict[str, str] = {}  # by repository

    def _secrets(self) -> tuple[str | None, ...]:
        return (*self.credentials.secrets(), *self._tokens.values())

    def _send(self, method: str, url: str, repository: str, *, body: bytes | None = None, content_type: str | None = None) -> requests.Response:
        headers = {"Accept": MANIFEST_ACCEPT}
        if content_type:
            headers["Content-Type"] = content_type
        token = self._tokens.get(repository)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self.session.request(method, url, headers=headers, data=body, timeout=DEFAULT_TIMEOUT, allow_redirects=True)
        except requests.RequestException as exc:
            raise TransientError(redact(f"registry {self.host} unreachable: {type(exc).__name__}", *self._secrets())) from None

    def _request(self, method: str, repository: str, reference: str, **kwargs) -> requests.Response:
        """One registry call; a 401 is answered once with a token for the scope the challenge names."""
        url = f"{self.base_url}/v2/{repository}/manifests/{reference}"
        response = self._send(method, url, repository, **kwargs)
        if response.status_code == 401:
            self._tokens.pop(repository, None)
            self._authorize(repository, response)
            response = self._send(method, url, repository, **kwargs)
            if response.status_code == 401:
                raise Refused(
                    f"no access to {self.host}/{repository}: the registry refused our token",
                    hint="for a private repository or a push set QUAY_USERNAME and QUAY_PASSWORD (a robot account works)",
                )
        if response.status_code == 403:
            raise Refused(f"no access to {self.host}/{repository} (HTTP 403)", hint="check QUAY_USERNAME/QUAY_PASSWORD")
        if response.status_code == 429 or response.status_code >= 500:
            raise _transient(f"registry {self.host}", response)
        return response

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    def head_manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest at `reference` (tag or digest), or None when the registry does not have it."""
        response = self._request("HEAD", repository, reference)
        if response.status_code == 200:
            return self._manifest(response, repository, reference)
        if response.status_code == 404:
            return None
        raise OperationFailed(f"registry {self.host} answered HTTP {response.status_code} for {repository}:{reference}")

    def get_manifest(self, repository: str, reference: str) -> tuple[Manifest, bytes]:
        """The manifest's exact bytes (a retag must PUT the same bytes to keep the digest)."""
        response = self._request("GET", repository, reference)
        if response.status_code != 200:
            raise OperationFailed(f"registry {self.host} answered HTTP {response.status_code} for {repository}@{reference}")
        return self._manifest(response, repository, reference), response.content

    def put_manifest(self, repository: str, tag: str, manifest: Manifest, body: bytes) -> str:
        """Tag existing content: PUT the same manifest bytes under `tag`; returns the digest the registry reports."""
        response = self._request("PUT", repository, tag, body=body, content_type=manifest.media_type)
        if response.status_code not in (200, 201):
            raise OperationFailed(f"registry {self.host} refused tag {tag} for {repository}: HTTP {response.status_code}")
        return response.headers.get("Docker-Content-Digest", manifest.digest)

    def _manifest(self, response: requests.Response, repository: str, reference: str) -> Manifest:
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest.startswith("sha256:"):
            raise OperationFailed(f"registry {self.host} sent no Docker-Content-Digest for {repository}:{reference}")
        return Manifest(digest=digest, media_type=response.headers.get("Content-Type", "").split(";")[0])

    def _authorize(self, repository: str, response: requests.Response) -> None:
        """Answer a Bearer challenge: fetch a token from its realm (Basic auth if we have credentials)."""
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme != "bearer" or not params.get("realm"):
            raise Refused(
                f"registry {self.host} wants authentication we cannot provide ({scheme or 'no challenge'})",
                hint="set QUAY_USERNAME and QUAY_PASSWORD",
            )
        query = {key: params[key] for key in ("service", "scope") if params.get(key)}
        query.setdefault("scope", f"repository:{repository}:pull")
        auth = None
        if self.credentials.username and self.credentials.password:
            auth = (self.credentials.username, self.credentials.password)
        try:
            answer = self.session.get(params["realm"], params=query, auth=auth, timeout=DEFAULT_TIMEOUT)
        except requests.RequestException as exc:
            raise TransientError(f"token service of {self.host} unreachable: {type(exc).__name__}") from None
        if answer.status_code in (401, 403):
            raise Refused(
                f"the token service of {self.host} refused {'our credentials' if auth else 'anonymous access'}",
                hint="check QUAY_USERNAME and QUAY_PASSWORD" if auth else "set QUAY_USERNAME and QUAY_PASSWORD",
            )
        if answer.status_code == 429 or answer.status_code >= 500:
            raise _transient(f"token service of {self.host}", answer)
        try:
            body = answer.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise OperationFailed(f"the token service of {self.host} returned no token (HTTP {answer.status_code})")
        self._tokens[repository] = token


class NeedsAdmin(Refused):
    """The quay API refused a repo:admin call (401/403): the token is missing, invalid or lacks the scope."""


class QuayRejected(Refused):
    """The quay API said no to a request it understood (400): `message` is quay's own words."""


# Starting a build makes quay ask the git host for the ref: allow it longer than a read.
START_TIMEOUT = (3.05, 30.0)


def _quay_error(response: requests.Response) -> str:
    """quay's own explanation from its error JSON (`detail`/`error_message`), else the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        text = body.get("detail") or body.get("error_message") or body.get("message")
        if isinstance(text, str) and text.strip():
            return text.strip()[:300]
    return f"HTTP {response.status_code}"


class QuayClient:
    """The quay API v1 calls we need: builds, tags and build triggers of one repository."""

    def __init__(self, api_url: str, credentials: Credentials = Credentials(), session: requests.Session | None = None):
        self.api_url = api_url.rstrip("/")
        self.credentials = credentials
        self.session = session or make_session()

    def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None,
              timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> requests.Response:
        """One call; transport failures, 429 and 5xx become TransientError, anything else is the caller's."""
        headers = {"Accept": "application/json"}
        if self.credentials.quay_token:
            headers["Authorization"] = f"Bearer {self.credentials.quay_token}"
        try:
            response = self.session.request(method, f"{self.api_url}{path}", params=params, json=body,
                                            headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise TransientError(f"quay API unreachable: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _transient("quay API", response)
        return response

    @staticmethod
    def _json(response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise TransientError("quay API sent a body that is not JSON") from None

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        response = self._send("GET", path, params=params)
        if response.status_code in (401, 403, 404):
            raise ApiUnavailable(f"quay API answered HTTP {response.status_code} for {path}")
        if response.status_code != 200:
            raise OperationFailed(f"quay API answered HTTP {response.status_code} for {path}")
        return self._json(response)

    def _admin(self, method: str, path: str, **kwargs) -> requests.Response:
        """A call that needs repo:admin: 401/403 become NeedsAdmin, 400 QuayRejected with quay's words."""
        response = self._send(method, path, **kwargs)
        if response.status_code in (401, 403):
            raise NeedsAdmin(f"quay API refused {method} {path} (HTTP {response.status_code}: {_quay_error(response)})")
        if response.status_code == 400:
            raise QuayRejected(_quay_error(response))
        return response

    def builds(self, repository: str, limit: int = 20) -> list[dict[str, Any]]:
        """Recent builds, newest first."""
        data = self._get(f"/repository/{repository}/build/", {"limit": limit})
        builds = data.get("builds") if isinstance(data, dict) else None
        return [b for b in builds or [] if isinstance(b, dict)]

    def active_tag(self, repository: str, tag: str) -> dict[str, Any] | None:
        data = self._get(f"/repository/{repository}/tag/", {"specificTag": tag, "onlyActiveTags": "true"})
        for entry in (data or {}).get("tags", []) if isinstance(data, dict) else []:
            if isinstance(entry, dict) and entry.get("name") == tag:
                return entry
        return None

    def triggers(self, repository: str) -> list[dict[str, Any]]:
        """The repository's build triggers (quay wants repo:admin even to list them)."""
        path = f"/repository/{repository}/trigger/"
        response = self._admin("GET", path)
        if response.status_code == 404:
            raise OperationFailed(f"quay API knows no repository {repository} (HTTP 404 for {path})")
        if response.status_code != 200:
            raise OperationFailed(f"quay API answered HTTP {response.status_code} for {path}")
        data = self._json(response)
        triggers = data.get("triggers") if isinstance(data, dict) else None
        return [t for t in triggers or [] if isinstance(t, dict)]

    def start_trigger(self, repository: str, trigger_id: str, tag: str, commit: str | None = None,
                      *, service: str = "github") -> dict[str, Any]:
        """Ask `trigger_id` to build `tag`; quay answers 201 with the new build.

        SCM triggers (GitHub, GitLab, Bitbucket) take the ref; custom-git triggers only a commit SHA.
        Sent once: a POST is never retried (a lost answer may still have started a build).
        """
        if service == "custom-git":
            if not commit:
                raise Refused(f"trigger {trigger_id[:8]} is a custom-git trigger: quay needs the commit SHA of {tag} to start it")
            body: dict[str, Any] = {"commit_sha": commit}
        else:
            body = {"refs": {"kind": "tag", "name": tag}}
        path = f"/repository/{repository}/trigger/{trigger_id}/start"
        response = self._admin("POST", path, body=body, timeout=START_TIMEOUT)
        if response.status_code == 404:
            raise OperationFailed(f"quay API knows no trigger {trigger_id} in {repository} (HTTP 404)")
        if response.status_code not in (200, 201):
            raise OperationFailed(f"quay API answered HTTP {response.status_code} to starting trigger {trigger_id[:8]}")
        build = self._json(response)
        if not isinstance(build, dict) or not build.get("id"):
            raise OperationFailed(f"quay started trigger {trigger_id[:8]} but sent no build id")
        return build

    def build_page(self, repository: str, build_id: str) -> str:
        """The human page of a build: https://quay.io/repository/<ns>/<app>/build/<id>."""
        parts = urlsplit(self.api_url)
        return f"{parts.scheme}://{parts.netloc}/repository/{repository}/build/{build_id}"

    def builds_page(self, repository: str) -> str:
        """The repository's builds tab, where its build triggers are set up, enabled and disabled."""
        parts = urlsplit(self.api_url)
        return f"{parts.scheme}://{parts.netloc}/repository/{repository}?tab=builds"


# --- what a deploy asks: which digest a tag has ---------------------------------------------------------


def verified_digest(registry_url: str, image_repo: str, tag: str, digest: str | None = None) -> str:
    """The registry's digest for `image_repo:tag`; refuses when the image is missing or the tag has moved
    off `digest` (a deploy must ship what the user named, not whatever the tag points at now)."""
    _, repository = split_repo(image_repo)
    client = RegistryClient(registry_url, Credentials.from_env())
    try:
        manifest = client.head_manifest(repository, tag)
    except TransientError as exc:
        raise OperationFailed(f"cannot check {image_repo}:{tag}: {exc.message}", hint="retry in a minute") from None
    if manifest is None:
        raise Refused(
            f"image {image_repo}:{tag} is not in the registry",
            hint="wait for the build: `manual-deploy wait-image`, or check the tag",
        )
    if digest and manifest.digest != digest:
        raise Refused(
            f"tag {tag} of {image_repo} now points at {manifest.digest[:19]}…, not the {digest[:19]}… you asked for",
            hint="someone re-pushed the tag; check which image you really want, then pass it explicitly",
        )
    return manifest.digest


def verified_digests(registry_url: str, wanted: list[tuple[str, str, str | None]], *, parallel: int) -> list[str]:
    """`verified_digest` of every (image_repo, tag, digest) at once: one registry round trip, not one per app.

    The first failure in the given order is raised, as a sequential loop would."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(wanted), parallel)), thread_name_prefix="image") as pool:
        return list(pool.map(lambda item: verified_digest(registry_url, *item), wanted))
