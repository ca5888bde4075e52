"""Cluster credentials: what the context's user is, and for an `exec` plugin (EKS) a token obtained
before anything talks to the cluster — or one clear error naming the fix.

On EKS the kubeconfig's user runs `aws eks get-token` (or the older `aws-iam-authenticator token`).
When that fails (an expired SSO session, a wrong AWS_PROFILE), the kubernetes client logs the plugin's
error and sends its request without a token, and helm prints "getting credentials: exec: … exit code
255": neither says "log in again". Running the plugin once ourselves, first, turns all of that into one
refusal with the plugin's own words and the command that fixes it. The token itself is never shown.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from manual_deploy.errors import Refused
from manual_deploy.redact import redact

EXEC_TIMEOUT_S = 30.0  # `aws eks get-token` answers in about a second; a hang is an interactive login waiting
HELM_EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1beta1", "client.authentication.k8s.io/v1")
V1ALPHA1 = "client.authentication.k8s.io/v1alpha1"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class ExecPlugin:
    """The `exec` section of a kubeconfig user."""

    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    api_version: str = ""
    base_dir: Path | None = None  # the kubeconfig's directory: a relative command with a '/' is relative to it

    @property
    def profile(self) -> str | None:
        return self.env.get("AWS_PROFILE") or os.environ.get("AWS_PROFILE")

    def _arg(self, *names: str) -> str | None:
        for i, arg in enumerate(self.args):
            for name in names:
                if arg == name and i + 1 < len(self.args):
                    return self.args[i + 1]
                if arg.startswith(name + "="):
                    return arg.split("=", 1)[1]
        return None

    def cluster_name(self, default: str) -> str:
        """The EKS cluster: `aws eks get-token --cluster-name X` or `aws-iam-authenticator token -i X`."""
        return self._arg("--cluster-name", "-i", "--cluster-id") or default

    def region(self) -> str:
        return (self._arg("--region") or self.env.get("AWS_REGION") or self.env.get("AWS_DEFAULT_REGION")
                or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)

    def executable(self) -> str | None:
        """The command as the kubernetes clients resolve it: on PATH, or a path (relative to the kubeconfig)."""
        if os.sep not in self.command:
            return shutil.which(self.command)
        path = Path(self.command)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None

    def display(self) -> str:
        return shlex.join([self.command, *self.args])


@dataclass(frozen=True)
class User:
    """The context's user, by the kind of credential it holds."""

    context: str
    name: str
    kind: str  # exec | token | client-certificate | basic | auth-provider | none
    exec: ExecPlugin | None = None


@dataclass(frozen=True)
class Token:
    """What an exec plugin answered (the token stays inside; only its expiry is ever shown)."""

    value: str = field(repr=False)
    expires: datetime | None

    def expiry(self, now: datetime | None = None) -> str:
        if self.expires is None:
            return "does not say when it expires"
        left = int((self.expires - (now or datetime.now(timezone.utc))).total_seconds())
        when = self.expires.strftime("%H:%M:%SZ")
        return f"expires at {when} (in {left // 60} min)" if left > 0 else f"expired at {when}"


def user_of(kubeconfig: dict, context: str, base_dir: Path | None = None) -> User:
    """The user of `context` in a merged kubeconfig (see kube.merged_kubeconfig)."""
    ctx = next((c for c in kubeconfig.get("contexts") or [] if c.get("name") == context), None) or {}
    name = (ctx.get("context") or {}).get("user") or ""
    entry = next((u for u in kubeconfig.get("users") or [] if u.get("name") == name), None) or {}
    user = entry.get("user") or {}
    if isinstance(user.get("exec"), dict):
        spec = user["exec"]
        env = {e.get("name", ""): str(e.get("value", "")) for e in spec.get("env") or [] if isinstance(e, dict)}
        plugin = ExecPlugin(str(spec.get("command") or ""), tuple(str(a) for a in spec.get("args") or []), env,
                            str(spec.get("apiVersion") or ""), base_dir)
        return User(context, name, "exec", plugin)
    if user.get("token") or user.get("tokenFile"):
        return User(context, name, "token")
    if user.get("client-certificate") or user.get("client-certificate-data"):
        return User(context, name, "client-certificate")
    if user.get("username"):
        return User(context, name, "basic")
    if user.get("auth-provider"):
        return User(context, name, "auth-provider")
    return User(context, name, "none")


def regenerate_command(user: User) -> str:
    """How the team makes a working EKS kubeconfig entry for this context."""
    plugin = user.exec
    cluster = plugin.cluster_name(user.context) if plugin else user.context
    region = plugin.region() if plugin else DEFAULT_REGION
    profile = f" --profile {plugin.profile}" if plugin and plugin.profile else ""
    return f"aws eks update-kubeconfig --name {cluster} --alias {user.context} --region {region}{profile}"


def check_exec_config(user: User) -> None:
    """What can be said without running the plugin: it exists, and helm accepts its apiVersion."""
    plugin = user.exec
    assert plugin is not None
    if plugin.api_version == V1ALPHA1:
        raise Refused(
            f"the kubeconfig's exec plugin for {user.context} uses {V1ALPHA1}, which helm 3.9 and later refuse "
            "(it was removed in Kubernetes 1.24)",
            hint=f"regenerate the entry: `{regenerate_command(user)}`",
        )
    if plugin.api_version not in HELM_EXEC_API_VERSIONS:
        raise Refused(
            f"the kubeconfig's exec plugin for {user.context} has apiVersion {plugin.api_version or '(none)'!r}; "
            f"helm accepts {' or '.join(HELM_EXEC_API_VERSIONS)}",
            hint=f"regenerate the entry: `{regenerate_command(user)}`",
        )
    if plugin.executable() is None:
        raise Refused(
            f"credentials for {user.context} could not be obtained: the exec plugin {plugin.command!r} is not on PATH",
            hint=f"install it (for `aws`: the AWS CLI v2), or regenerate the entry: `{regenerate_command(user)}`",
        )


def obtain(user: User, *, timeout_s: float = EXEC_TIMEOUT_S) -> Token:
    """Run the exec plugin as kubectl would (non-interactive, bounded) and return its token."""
    check_exec_config(user)
    plugin = user.exec
    info = {"kind": "ExecCredential", "apiVersion": plugin.api_version, "spec": {"interactive": False}}
    env = {**os.environ, **plugin.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
    try:
        proc = subprocess.run([plugin.executable(), *plugin.args], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise Refused(
            f"credentials for {user.context} could not be obtained: `{plugin.display()}` did not answer within "
            f"{timeout_s:.0f} s",
            hint=f"it may be waiting for a login; run it yourself to see: `{plugin.display()}`",
        ) from None
    except OSError as exc:
        raise Refused(f"credentials for {user.context} could not be obtained: {plugin.command}: {exc.strerror}",
                      hint=f"regenerate the entry: `{regenerate_command(user)}`") from None
    if proc.returncode != 0:
        said = _last_line(proc.stderr) or f"exit code {proc.returncode}"
        raise Refused(f"credentials for {user.context} could not be obtained: {redact(said)}",
                      hint=login_hint(said, user))
    token = _parse(proc.stdout)
    if token is None:
        raise Refused(f"credentials for {user.context} could not be obtained: `{plugin.display()}` printed no token",
                      hint=f"run it yourself to see what it prints: `{plugin.display()}`")
    return token


def login_hint(said: str, user: User) -> str:
    """The next command for what the plugin said: SSO login, the right profile, or run it yourself."""
    plugin = user.exec
    profile = plugin.profile if plugin else None
    with_profile = f" --profile {profile}" if profile else ""
    text = said.lower()
    if "sso" in text or "expired" in text:
        return f"log in again: `aws sso login{with_profile}`, then re-run this command"
    if "could not be found" in text and "profile" in text:
        return (f"the AWS profile {profile or '(AWS_PROFILE)'} is not in ~/.aws/config: pick one from "
                "`aws configure list-profiles` (export AWS_PROFILE=…), then re-run")
    if "unable to locate credentials" in text:
        return f"log in: `aws sso login{with_profile}` (or export AWS_PROFILE=<a profile that can>), then re-run"
    shown = plugin.display() if plugin else "the exec plugin"
    return f"run it yourself to see why: `{shown}`"


def _parse(stdout: bytes) -> Token | None:
    try:
        status = json.loads(stdout).get("status") or {}
    except (ValueError, AttributeError):
        return None
    value = status.get("token")
    if not value or not isinstance(value, str):
        return None
    expires = None
    if status.get("expirationTimestamp"):
        try:
            expires = datetime.fromisoformat(str(status["expirationTimestamp"]).replace("Z", "+00:00"))
        except ValueError:
            expires = None
    return Token(value, expires)


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
