"""Who is asking, and may they: bearer tokens and a deny-only RBAC, answered the way EKS answers.

On-call engineers reach EKS through an exec plugin (`aws eks get-token`) whose token the cluster
maps to a user via aws-auth; the 3 a.m. failures are a token the cluster refuses (401: expired, or a
role missing from aws-auth) and a verb RBAC does not grant (403). The emulator reproduces both:
exec tokens are HMAC-signed by the stand-in plugin (exec_plugin.py) with a key shared through the
kubeconfig's exec `env`, and authorization allows everything except what a test denies.

Only the standard library here: the exec plugin imports this module and must start fast.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

from manual_deploy_sandbox.kube import errors

TOKEN_PREFIX = "k8s-aws-v1."  # what `aws eks get-token` tokens start with
ADMIN = "kubernetes-admin"  # who the static token is (the cluster creator, as on EKS)
ANONYMOUS = "system:anonymous"  # who asks when the emulator checks no tokens at all
DEFAULT_EXEC_USER = "arn:aws:sts::123456789012:assumed-role/ingest-deployer/on-call"
# Readable without credentials, like EKS (system:public-info-viewer); the emulator's own control plane too.
ANONYMOUS_PATHS = frozenset({"/version", "/healthz", "/readyz", "/livez"})
SSAR = ("authorization.k8s.io", "selfsubjectaccessreviews")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ("system:authenticated",)


# -------------------------------------------------------------------------------------------- tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _signature(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def sign_token(key: str, user: str, expires: float, *, groups: list[str] | None = None,
               cluster: str | None = None) -> str:
    """`k8s-aws-v1.<payload>.<hmac>`: shaped like an EKS token, checkable without AWS."""
    claims: dict[str, Any] = {"user": user, "exp": int(expires), "iat": int(time.time())}
    if groups:
        claims["groups"] = list(groups)
    if cluster:
        claims["cluster"] = cluster
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{TOKEN_PREFIX}{payload}.{_signature(key, payload)}"


def verify_token(key: str, token: str, now: float | None = None) -> User | None:
    """The user of a well-signed, unexpired exec token; None for anything else."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    payload, _, signature = token[len(TOKEN_PREFIX):].partition(".")
    if not hmac.compare_digest(signature.encode(), _signature(key, payload).encode()):
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        user, expires = str(claims["user"]), float(claims["exp"])
        groups = tuple(str(g) for g in claims.get("groups") or ())
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if expires <= (time.time() if now is None else now):
        return None
    return User(user, (*groups, "system:authenticated"))


# ---------------------------------------------------------------------------------------- attributes


@dataclass(frozen=True)
class Attributes:
    """What RBAC decides on: the apiserver's authorizer.Attributes for a resource request."""

    verb: str
    group: str
    resource: str
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None

    @property
    def full_resource(self) -> str:
        """`pods/log`: how RBAC rules and messages name a subresource."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_attributes(method: str, group: str, plural: str, namespace: str | None, name: str | None,
                       subresource: str | None, watch: bool) -> Attributes:
    """Map an HTTP request to a verb as the apiserver's RequestInfoFactory does."""
    if method == "GET":
        verb = "watch" if watch else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    if plural == "namespaces" and name and namespace is None:
        namespace = name  # a Namespace is "in" itself for RBAC, as in the apiserver
    return Attributes(verb, group, plural, subresource, namespace, name)


def forbidden(user: User, attrs: Attributes) -> errors.ApiError:
    """The 403 Status RBAC produces, word for word."""
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    why = (f'User "{user.name}" cannot {attrs.verb} resource "{attrs.full_resource}" '
           f'in API group "{attrs.group}" {scope}')
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    details = {k: v for k, v in {"name": attrs.name, "group": attrs.group, "kind": attrs.resource}.items() if v}
    return errors.ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details)


# -------------------------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class Denial:
    """One verb on one resource that RBAC does not grant; globs allowed, None/`*` = any.

    `times`: refuse only the next that many matching requests, then let them through (a refusal
    that passes, such as a webhook or an RBAC binding flapping); None: refuse every one."""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    user: str | None = None
    times: int | None = None

    def matches(self, user: User, attrs: Attributes) -> bool:
        def hit(pattern: str | None, value: str | None) -> bool:
            return pattern is None or fnmatch.fnmatchcase(value or "", pattern)
        return (hit(self.verb, attrs.verb) and hit(self.resource, attrs.full_resource)
                and hit(self.group, attrs.group) and hit(self.namespace, attrs.namespace)
                and hit(self.user, user.name))


class Authorizer:
    """Authentication (static token, signed exec tokens, unmapped users) and deny rules.

    Rules are replaced, never mutated, so tests change them from their thread while the emulator's
    loop reads them. Deny rules apply to every user, the static admin included: tests of the
    product's 403 handling use the fast static-token setup.
    """

    def __init__(self, token: str | None = None, token_key: str | None = None) -> None:
        self.token, self.token_key = token, token_key
        self.denials: tuple[Denial, ...] = ()
        self.unmapped: tuple[str, ...] = ()
        self._changing = threading.Lock()  # a test's deny() and a counted refusal used up, from two threads

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.token_key)

    def authenticate(self, authorization: str | None, path: str) -> User:
        """The requesting user, or 401 Unauthorized as EKS answers a refused token."""
        if not self.enabled:
            return User(ANONYMOUS, ("system:unauthenticated",))
        if not authorization:
            if path.rstrip("/") in ANONYMOUS_PATHS:
                return User(ANONYMOUS, ("system:unauthenticated",))
            raise errors.unauthorized()
        user = self._user_of(authorization)
        if user is None or any(fnmatch.fnmatchcase(user.name, glob) for glob in self.unmapped):
            raise errors.unauthorized()
        return user

    def _user_of(self, authorization: str) -> User | None:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self.token and hmac.compare_digest(token.encode(), self.token.encode()):
            return User(ADMIN, ("system:masters", "system:authenticated"))
        if self.token_key:
            return verify_token(self.token_key, token)
        return None

    def allowed(self, user: User, attrs: Attributes) -> bool:
        return not any(denial.matches(user, attrs) for denial in self.denials)

    def authorize(self, user: User, attrs: Attributes) -> None:
        denial = next((d for d in self.denials if d.matches(user, attrs)), None)
        if denial is None:
            return
        if denial.times is not None:  # one of its refusals used up
            with self._changing:
                left = replace(denial, times=denial.times - 1)
                kept = (left,) if left.times > 0 else ()
                self.denials = tuple(k for d in self.denials for k in (kept if d is denial else (d,)))
        raise forbidden(user, attrs)

    def deny(self, denial: Denial) -> None:
        with self._changing:
            self.denials = (*self.denials, denial)

    def unmap(self, user_glob: str) -> None:
        self.unmapped = (*self.unmapped, user_glob)

    def clear(self, *, denials: bool = True, unmapped: bool = True) -> None:
        if denials:
            with self._changing:
                self.denials = ()
        if unmapped:
            self.unmapped = ()

    def review(self, user: User, body: Any) -> dict[str, Any]:
        """A SelfSubjectAccessReview answered for `user` (status.allowed, as RBAC would)."""
        spec = body.get("spec") if isinstance(body, dict) else None
        if not isinstance(spec, dict) or not (spec.get("resourceAttributes") or spec.get("nonResourceAttributes")):
            raise errors.ApiError(422, "Invalid", 'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: '
                                  "[spec.resourceAttributes: Invalid value: \"null\": exactly one of "
                                  "nonResourceAttributes or resourceAttributes must be specified]",
                                  {"group": SSAR[0], "kind": "SelfSubjectAccessReview"})
        status: dict[str, Any] = {"allowed": True}
        wanted = spec.get("resourceAttributes")
        if wanted:
            attrs = Attributes(str(wanted.get("verb") or ""), str(wanted.get("group") or ""),
                               str(wanted.get("resource") or ""), wanted.get("subresource") or None,
                               wanted.get("namespace") or None, wanted.get("name") or None)
            status["allowed"] = self.allowed(user, attrs)
        if status["allowed"]:
            status["reason"] = _allowed_reason(user)
        return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


def _allowed_reason(user: User) -> str:
    binding = 'RBAC: allowed by ClusterRoleBinding "{}" of ClusterRole "cluster-admin" to {}'
    if "system:masters" in user.groups:
        return binding.format("cluster-admin", 'Group "system:masters"')
    return binding.format("ingest-deployers", f'User "{user.name}"')
