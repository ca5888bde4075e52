"""The real OCI registry (Debian's `docker-registry`, distribution 2.8) run locally, plus plain-HTTP publishing.

Tests and drills talk to the genuine registry code, so digests, Accept negotiation and auth challenges are the
real thing rather than our idea of them. Publishing uses the bare registry HTTP API (no docker daemon needed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from manual_deploy_sandbox.ports import LOOPBACK, BackgroundHTTPServer, QuietHandler, free_port, pid_alive

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
KINDS = ("docker", "oci", "oci-index")

HTTP_TIMEOUT = (3.0, 15.0)  # (connect, read) seconds for every request to the registry
_DEFAULT_BINARY = "/usr/bin/docker-registry"
_POLL_INTERVAL = 0.05
_STOP_GRACE = 5.0
_START_ATTEMPTS = 3  # only retried when the process dies at once (e.g. the picked port got taken)


# --------------------------------------------------------------------------------------------- the process


@dataclass
class LocalRegistry:
    """A running `docker-registry serve` process; stop() ends it (SIGTERM, then SIGKILL).

    Registries from start_registry() are also stopped at interpreter exit if nobody called stop().
    """

    url: str
    host: str
    root: Path
    pid: int
    _process: subprocess.Popen | None = field(default=None, repr=False, compare=False)
    _finalizer: weakref.finalize | None = field(default=None, init=False, repr=False, compare=False)
    _stopped: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._process is not None:
            self._finalizer = weakref.finalize(self, _stop_child, self._process)

    def stop(self) -> None:
        """SIGTERM, wait up to ~5 s, then SIGKILL. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        if self._finalizer is not None:
            self._finalizer()  # a finalize object runs at most once
        else:
            _stop_pid(self.pid)  # built by hand from a recorded PID: not our child, so poll instead of wait

    @property
    def running(self) -> bool:
        """True while the process is alive and not stopped by us."""
        if self._stopped:
            return False
        return self._process.poll() is None if self._process is not None else pid_alive(self.pid)

    def __enter__(self) -> LocalRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_child(process: subprocess.Popen) -> None:
    """Terminate and reap our child: SIGTERM, bounded wait, SIGKILL."""
    if process.poll() is not None:
        return
    _signal(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_GRACE)
    except subprocess.TimeoutExpired:
        _signal(process.pid, signal.SIGKILL)
        process.wait(timeout=_STOP_GRACE)


def _stop_pid(pid: int) -> None:
    """Terminate a process we cannot wait() for: SIGTERM, poll (bounded), SIGKILL."""
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE
    for _ in range(int(_STOP_GRACE / _POLL_INTERVAL) + 1):
        if not pid_alive(pid) or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_INTERVAL)
    if pid_alive(pid):
        _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to a process that may already be gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def registry_binary() -> str | None:
    """Where `docker-registry` lives, or None when the Debian package is not installed."""
    found = shutil.which("docker-registry")
    if found:
        return found
    return _DEFAULT_BINARY if os.access(_DEFAULT_BINARY, os.X_OK) else None


def registry_config(root: Path, port: int, *, auth_realm: str | None = None, service: str = "test-registry") -> str:
    """The registry's YAML config. Values are JSON-quoted, which YAML reads as double-quoted strings."""
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {json.dumps(str(root / 'data'))}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: {LOOPBACK}:{port}",
    ]
    if auth_realm is not None:
        lines += ["auth:", "  silly:", f"    realm: {json.dumps(auth_realm)}", f"    service: {json.dumps(service)}"]
    return "\n".join(lines) + "\n"


def start_registry(root: Path, *, auth_realm: str | None = None, service: str = "test-registry",
                   timeout: float = 10.0) -> LocalRegistry:
    """Start a registry storing under `root` on a free loopback port; return once `/v2/` answers.

    With `auth_realm`, the registry uses "silly" auth: requests without Authorization get a Bearer challenge
    naming that realm, and any Authorization header is accepted.
    """
    binary = registry_binary()
    if binary is None:
        raise RuntimeError("docker-registry not found; install it with `apt-get install docker-registry`")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _attempt in range(_START_ATTEMPTS):
        registry, died_early, last_error = _start_once(binary, root, auth_realm, service, timeout)
        if registry is not None:
            return registry
        if not died_early:
            break
    raise RuntimeError(last_error)


def _start_once(binary: str, root: Path, auth_realm: str | None, service: str,
                timeout: float) -> tuple[LocalRegistry | None, bool, str]:
    """One start attempt: (registry, False, "") or (None, died_early, error message)."""
    port = free_port()
    config = root / "config.yml"
    config.write_text(registry_config(root, port, auth_realm=auth_realm, service=service))
    log_path = root / "registry.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=root, close_fds=True,
        )
    url = f"http://{LOOPBACK}:{port}"
    registry = LocalRegistry(url=url, host=f"{LOOPBACK}:{port}", root=root, pid=process.pid, _process=process)
    ready = {200, 401} if auth_realm is not None else {200}
    if _wait_ready(url, process, ready, timeout):
        return registry, False, ""
    died_early = process.poll() is not None
    registry.stop()
    message = f"docker-registry did not become ready on {url} within {timeout:.0f}s; log tail:\n{_tail(log_path)}"
    return None, died_early, message


def _wait_ready(url: str, process: subprocess.Popen, ready: set[int], timeout: float) -> bool:
    """Poll GET /v2/ until it answers a `ready` status; False on timeout or when the process exits."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / _POLL_INTERVAL) + 1):
        if process.poll() is not None:
            return False
        try:
            if requests.get(f"{url}/v2/", timeout=(0.5, 2.0)).status_code in ready:
                return True
        except requests.RequestException:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return False


def _tail(path: Path, lines: int = 20) -> str:
    """Last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


# --------------------------------------------------------------------------------------------- publishing


def sha256_digest(data: bytes) -> str:
    """The registry's content address for `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(document: dict[str, Any]) -> bytes:
    """Compact JSON; the digest is of these exact bytes."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _headers(token: str | None, **extra: str) -> dict[str, str]:
    headers = dict(extra)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _expect(response: requests.Response, status: int, what: str) -> requests.Response:
    """Raise RuntimeError (status + body) unless the registry answered `status`."""
    if response.status_code != status:
        raise RuntimeError(f"{what}: expected HTTP {status}, got {response.status_code}: {response.text[:500]}")
    return response


def push_blob(registry_url: str, repository: str, data: bytes, *, token: str | None = None) -> str:
    """Monolithic blob upload (POST then PUT ?digest=); returns the blob digest."""
    base = registry_url.rstrip("/")
    digest = sha256_digest(data)
    started = _expect(
        requests.post(f"{base}/v2/{repository}/blobs/uploads/", headers=_headers(token), timeout=HTTP_TIMEOUT),
        202, f"start blob upload to {repository}",
    )
    location = started.headers.get("Location")
    if not location:
        raise RuntimeError(f"start blob upload to {repository}: 202 without a Location header")
    location = urljoin(base + "/", location)
    separator = "&" if "?" in location else "?"
    _expect(
        requests.put(f"{location}{separator}digest={digest}", data=data, timeout=HTTP_TIMEOUT,
                     headers=_headers(token, **{"Content-Type": "application/octet-stream"})),
        201, f"finish blob upload {digest} to {repository}",
    )
    return digest


def put_manifest(registry_url: str, repository: str, reference: str, manifest: bytes, media_type: str, *,
                 token: str | None = None) -> str:
    """PUT a manifest under a tag or digest; returns its digest after checking the registry agrees."""
    response = _expect(
        requests.put(f"{registry_url.rstrip('/')}/v2/{repository}/manifests/{reference}", data=manifest,
                     headers=_headers(token, **{"Content-Type": media_type}), timeout=HTTP_TIMEOUT),
        201, f"put manifest {repository}:{reference}",
    )
    digest = sha256_digest(manifest)
    answered = response.headers.get("Docker-Content-Digest")
    if answered and answered != digest:
        raise RuntimeError(f"put manifest {repository}:{reference}: registry says {answered}, we sent {digest}")
    return digest


def image_config(label: str) -> bytes:
    """A minimal zero-layer image config; `label` makes its bytes (and every digest above it) unique."""
    return _canonical({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {"Labels": {"label": label}},
    })


def image_manifest(media_type: str, config_media_type: str, config: bytes) -> bytes:
    """A schema-2 image manifest (Docker or OCI flavour) with no layers."""
    return _canonical({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_media_type, "size": len(config), "digest": sha256_digest(config)},
        "layers": [],
    })


def image_index(child: bytes) -> bytes:
    """An OCI index pointing at one linux/amd64 OCI manifest."""
    return _canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": sha256_digest(child),
            "size": len(child),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })


def publish_image(registry_url: str, repository: str, tag: str, *, kind: str = "docker", label: str | None = None,
                  token: str | None = None) -> str:
    """Push a tiny image as `repository:tag`; returns the digest now at the tag.

    kind: "docker" (v2 schema 2), "oci" (OCI manifest) or "oci-index" (OCI index over one OCI manifest —
    what buildx pushes, and the case that needs the right Accept header to be visible).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    config = image_config(label if label is not None else f"{tag}-{time.time_ns()}")
    if kind == "docker":
        push_blob(registry_url, repository, config, token=token)
        manifest = image_manifest(DOCKER_MANIFEST, DOCKER_CONFIG, config)
        return put_manifest(registry_url, repository, tag, manifest, DOCKER_MANIFEST, token=token)
    push_blob(registry_url, repository, config, token=token)
    manifest = image_manifest(OCI_MANIFEST, OCI_CONFIG, config)
    if kind == "oci":
        return put_manifest(registry_url, repository, tag, manifest, OCI_MANIFEST, token=token)
    # The child goes in by digest first: the registry refuses an index pointing at an unknown manifest.
    put_manifest(registry_url, repository, sha256_digest(manifest), manifest, OCI_MANIFEST, token=token)
    return put_manifest(registry_url, repository, tag, image_index(manifest), OCI_INDEX, token=token)


def delete_image(registry_url: str, repository: str, digest: str, *, token: str | None = None) -> None:
    """Delete a manifest by digest (the registry has delete enabled); every tag pointing at it goes too."""
    _expect(
        requests.delete(f"{registry_url.rstrip('/')}/v2/{repository}/manifests/{digest}", headers=_headers(token),
                        timeout=HTTP_TIMEOUT),
        202, f"delete {repository}@{digest}",
    )


# --------------------------------------------------------------------------------------------- token endpoint


class _TokenHandler(QuietHandler):
    """GET /token?service=…&scope=… → {"token": …}; optional Basic auth check."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        owner: TokenServer = self.owner
        parts = urlsplit(self.path)
        authorization = self.headers.get("Authorization")
        owner._record({"path": parts.path, "query": dict(parse_qsl(parts.query)), "authorization": authorization})
        if parts.path.rstrip("/") != "/token":
            self.send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        elif not owner._authorized(authorization):
            self.send_json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                           headers={"WWW-Authenticate": 'Basic realm="sandbox-token"'})
        else:
            self.send_json(200, {"token": owner.token, "access_token": owner.token, "expires_in": 300})


class TokenServer:
    """The registry's bearer-token realm: hands out a fixed token, optionally only to Basic-auth callers."""

    def __init__(self, token: str = "anon-token", *, require_basic: tuple[str, str] | None = None) -> None:
        self.token = token
        self.require_basic = require_basic
        self.requests: list[dict] = []
        self.url = ""
        self._lock = threading.Lock()
        self._http = BackgroundHTTPServer(_TokenHandler, self)

    def start(self) -> TokenServer:
        """Serve on 127.0.0.1:<free port>; sets `url` to the /token endpoint."""
        port = self._http.start()
        self.url = f"http://{LOOPBACK}:{port}/token"
        return self

    def stop(self) -> None:
        """Stop serving; idempotent."""
        self._http.stop()

    def _record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def _authorized(self, authorization: str | None) -> bool:
        if self.require_basic is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.require_basic).encode()).decode()
        return authorization == expected

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
