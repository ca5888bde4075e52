"""The preflight behind `manual-deploy doctor`: is this machine ready to deploy, and if not, what next?

Run before an incident gets worse, so every check is bounded (≤ 5 s each), the independent ones
run at once, and a check that hangs anyway (DNS, an EKS exec plugin) is abandoned at a hard
deadline instead of holding the engineer up. Each failed check carries the command that fixes
it. Secrets are reported only as "set"/"not set", and every line is redacted once more before it
leaves this module.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

from manual_deploy import kube
from manual_deploy.config import CONFIG_ENV_VAR, Config, load_config
from manual_deploy.errors import ManualDeployError
from manual_deploy.helm import HELM_ENV_VAR, find_helm
from manual_deploy.redact import redact

OK, FAIL, WARN = "ok", "fail", "warn"
MARKS = {OK: "✓", FAIL: "✗", WARN: "!"}

CHECK_TIMEOUT_S = 5.0  # one subprocess or cluster request
HTTP_TIMEOUT = (2.5, 2.5)  # (connect, read) for requests: one HTTP check stays within ~5 s
DEADLINE_S = 8.0  # backstop for what no timeout covers (DNS, exec plugins); doctor never waits longer
MIN_HELM = (3, 8)

CONFIG_ORIGINS = {"option": "--config", "env": f"${CONFIG_ENV_VAR}", "bundled": "bundled"}


@dataclass(frozen=True)
class Check:
    """One line of the report; `hint` is the next command for a failed or warning check."""

    name: str
    status: str
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class DoctorRequest:
    config_path: str | None
    config_origin: str  # a key of CONFIG_ORIGINS
    envs: tuple[str, ...] = ()  # empty: every configured env
    kubeconfig: str | None = None


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Warnings (optional things) never make doctor fail; a failed required check does."""
        return not self.failed

    @property
    def failed(self) -> int:
        return sum(check.status == FAIL for check in self.checks)

    @property
    def warnings(self) -> int:
        return sum(check.status == WARN for check in self.checks)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}

    def text(self) -> str:
        width = max((len(check.name) for check in self.checks), default=0)
        lines = []
        for check in self.checks:
            lines.append(f"{MARKS[check.status]} {check.name.ljust(width)}  {check.detail}")
            if check.hint and check.status != OK:
                lines.append(f"  {' ' * width}  next: {check.hint}")
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        warnings = f", {self.warnings} warning{'s' if self.warnings != 1 else ''}" if self.warnings else ""
        return f"{len(self.checks)} checks, {self.failed} failed{warnings}"


@dataclass(frozen=True)
class Probe:
    """A check (or a few that share one network call) to run concurrently with the others."""

    name: str
    run: Callable[[], list[Check]]
    hint: str | None = None  # for the line reported when it misses the deadline


def run_doctor(request: DoctorRequest, out=None, environ: Mapping[str, str] = os.environ) -> Report:
    """All checks: local ones first (fast; the rest depend on them), then tools and network at once."""
    config, config_check = _config_check(request)
    envs = _selected_envs(config, request.envs) if config is not None else []  # unknown --env: exit 2
    contexts = {env: _context_check(config, env, request.kubeconfig) for env in envs}
    probes = [Probe("helm", lambda: [helm_check(config, environ)], HELM_INSTALL_HINT), Probe("git", lambda: [git_check()])]
    probes += [_cluster_probe(target) for _, target in contexts.values() if target is not None]
    if config is not None:
        probes += _network_probes(config, envs, environ)
    if out is not None:
        out.step(f"checking {len(probes)} things at once (each ≤ {CHECK_TIMEOUT_S:g} s)")
    found = _run_probes(probes, DEADLINE_S)
    checks = [config_check, *found["helm"], *found["git"], _kubeconfig_check(request.kubeconfig)]
    for env, (context_check, _) in contexts.items():
        checks += [context_check, *found.get(f"cluster {env}", [])]
    for name in ("registry", "quay API", "deploy-config repo"):
        checks += found.get(name, [])
    checks += credential_checks(environ)
    if config is not None and config.gitlab.url:
        checks.append(gitlab_token_check(config.gitlab.url, environ))
    secrets = (environ.get("QUAY_TOKEN"), environ.get("QUAY_PASSWORD"), environ.get("GITLAB_TOKEN"))
    return Report(tuple(_redacted(check, secrets) for check in checks))


def _redacted(check: Check, secrets: tuple[str | None, ...]) -> Check:
    return Check(check.name, check.status, redact(check.detail, *secrets), redact(check.hint, *secrets) if check.hint else None)


# --- local checks ------------------------------------------------------------------------------------


def _config_check(request: DoctorRequest) -> tuple[Config | None, Check]:
    """Everything else reads the config, so a broken one is the first thing to say."""
    origin = CONFIG_ORIGINS.get(request.config_origin, request.config_origin)
    try:
        config = load_config(request.config_path)
    except ManualDeployError as exc:
        hint = f"{exc.hint}; the other checks need a valid config" if exc.hint else "fix the config file"
        return None, Check("config", FAIL, f"{exc.message} (from {origin})", hint)
    where = config.source if request.config_origin == "bundled" else f"{config.source} (from {origin})"
    detail = f"{where}: {len(config.environments)} envs, {len(config.apps)} apps"
    return config, Check("config", OK, detail)


def _selected_envs(config: Config, wanted: tuple[str, ...]) -> list[str]:
    if not wanted:
        return list(config.environments)
    for env in wanted:
        config.environment(env)
    return list(dict.fromkeys(wanted))


def _kubeconfig_files(explicit: str | None) -> tuple[str, list[str]]:
    path = kube.kubeconfig_path(explicit)
    files = [p for p in path.split(os.pathsep) if p and os.path.isfile(os.path.expanduser(p))]
    return path, files


def _kubeconfig_check(explicit: str | None) -> Check:
    path, files = _kubeconfig_files(explicit)
    if not files:
        return Check("kubeconfig", FAIL, f"no kubeconfig at {path}", f"pass --kubeconfig PATH or set KUBECONFIG; {kube.context_hint(None)}")
    return Check("kubeconfig", OK, ", ".join(files))


def _context_check(config: Config, env: str, explicit: str | None) -> tuple[Check, kube.Target | None]:
    """The env's context exists (and points at cluster_server when configured): what `apply` insists on."""
    name = f"context {env}"
    path, files = _kubeconfig_files(explicit)
    if not files:
        return Check(name, FAIL, f"no kubeconfig at {path}", kube.context_hint(env)), None
    try:
        target = kube.resolve_target(config, env, kubeconfig=explicit, credentials=False)
    except ManualDeployError as exc:
        return Check(name, FAIL, exc.message, exc.hint or kube.context_hint(env)), None
    return Check(name, OK, f"{target.context} → {target.server} (namespace {target.namespace})"), target


def gitlab_token_check(url: str, environ: Mapping[str, str]) -> Check:
    """Optional during the outage; needed afterwards, when `gitlab-sync` records the deploys in GitLab."""
    if environ.get("GITLAB_TOKEN"):
        return Check("GITLAB_TOKEN", OK, "set")
    return Check("GITLAB_TOKEN", WARN, f"not set: deploys cannot be recorded in GitLab ({url}) until it is",
                 "export GITLAB_TOKEN=<personal access token with the api scope>, then `manual-deploy gitlab-sync`")


def credential_checks(environ: Mapping[str, str]) -> list[Check]:
    """Optional: anonymous access works for public repositories. Values are never shown."""
    token = Check("QUAY_TOKEN", OK, "set") if environ.get("QUAY_TOKEN") else Check(
        "QUAY_TOKEN", WARN, "not set: wait-image cannot follow builds of a private repository",
        "export QUAY_TOKEN=<quay OAuth token with repo:read> (only for private repositories)",
    )
    user, password = bool(environ.get("QUAY_USERNAME")), bool(environ.get("QUAY_PASSWORD"))
    name = "quay login"
    if user and password:
        login = Check(name, OK, "QUAY_USERNAME and QUAY_PASSWORD set")
    else:
        state = lambda flag: "set" if flag else "not set"  # noqa: E731
        login = Check(
            name, WARN, f"QUAY_USERNAME {state(user)}, QUAY_PASSWORD {state(password)}: anonymous registry reads only",
            "export QUAY_USERNAME=<robot account> QUAY_PASSWORD=<robot token> (only for private repositories)",
        )
    return [token, login]


# --- tools -------------------------------------------------------------------------------------------

HELM_INSTALL_HINT = (
    f"install helm ≥ {MIN_HELM[0]}.{MIN_HELM[1]} (https://helm.sh/docs/intro/install/), "
    f"or point {HELM_ENV_VAR} (or config helm.executable) at it"
)


def _helm_origin(config: Config | None, environ: Mapping[str, str]) -> str:
    if config is not None and config.helm.executable:
        return "config helm.executable"
    return f"${HELM_ENV_VAR}" if environ.get(HELM_ENV_VAR) else "PATH"


def helm_check(config: Config | None, environ: Mapping[str, str]) -> Check:
    """apply needs helm ≥ 3.8 (OCI support went GA there); older ones are refused rather than half-working."""
    origin = _helm_origin(config, environ)
    try:
        path = find_helm(config.helm.executable if config is not None else None, environ)
    except ManualDeployError as exc:
        return Check("helm", FAIL, f"{exc.message} (from {origin})", HELM_INSTALL_HINT)
    try:
        proc = run_bounded([path, "version", "--template", "{{.Version}}"], timeout=CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("helm", FAIL, f"{path} did not run: {_short(exc)}", HELM_INSTALL_HINT)
    version = parse_version(proc.stdout)
    if proc.returncode != 0 or version is None:
        said = _last_line(proc.stderr or proc.stdout) or f"exit status {proc.returncode}"
        return Check("helm", FAIL, f"`{path} version` gave no version: {said}", HELM_INSTALL_HINT)
    shown = proc.stdout.strip()
    if version[:2] < MIN_HELM:
        return Check("helm", FAIL, f"{shown} at {path} (from {origin}) is older than {MIN_HELM[0]}.{MIN_HELM[1]}", HELM_INSTALL_HINT)
    return Check("helm", OK, f"{shown} at {path} (from {origin})")


def git_check() -> Check:
    """tag and apply shell out to git; without it nothing works."""
    hint = "install git (`sudo apt-get install git` or `brew install git`)"
    path = shutil.which("git")
    if path is None:
        return Check("git", FAIL, "git was not found on PATH", hint)
    try:
        proc = run_bounded([path, "--version"], timeout=CHECK_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("git", FAIL, f"{path} did not run: {_short(exc)}", hint)
    if proc.returncode != 0:
        return Check("git", FAIL, f"`{path} --version` failed: {_last_line(proc.stderr)}", hint)
    return Check("git", OK, f"{proc.stdout.strip().removeprefix('git version ')} at {path}")


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return (int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


# --- network checks ----------------------------------------------------------------------------------


def _network_probes(config: Config, envs: list[str], environ: Mapping[str, str]) -> list[Probe]:
    registry, repo = config.registry, config.deployment_repo
    return [
        Probe("registry", lambda: [registry_check(registry.url, config.source)], _reach_hint(registry.url + "/v2/", config.source)),
        Probe("quay API", lambda: [quay_api_check(registry.api_url, config.source)], _reach_hint(registry.api_url + "/discovery", config.source)),
        Probe("deploy-config repo", lambda: deploy_repo_checks(config, envs, environ), _ls_remote_hint(repo.url, config.source)),
    ]


def _cluster_probe(target: kube.Target) -> Probe:
    return Probe(f"cluster {target.env}", lambda: cluster_checks(target), _cluster_hint(target))


def _cluster_hint(target: kube.Target) -> str:
    return (
        f"check the VPN and your AWS credentials (`aws sts get-caller-identity`), "
        f"then `kubectl --context {target.context} version`"
    )


def cluster_checks(target: kube.Target) -> list[Check]:
    """Reachable (anonymous /version), credentials obtained (exec plugin run, bounded), and authorized
    for every verb apply, rollback and status need (SelfSubjectAccessReview): only all three prove access."""
    creds = credentials_check(target)  # first: a plugin that hangs is cut off here, not in the client
    reach = cluster_check(target)
    if reach.status == FAIL or creds.status == FAIL:
        return [reach, creds]
    return [reach, creds, *access_checks(target)]


def cluster_check(target: kube.Target) -> Check:
    """The cluster answers /version, asked without credentials: network and TLS, nothing about access
    (EKS answers /version to anyone)."""
    from kubernetes import client

    name = f"cluster {target.env}"
    try:
        api = one_shot_client(target, anonymous=True)
        try:
            info = client.VersionApi(api).get_code(_request_timeout=CHECK_TIMEOUT_S)
        finally:
            api.close()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer this check reports
        return Check(name, FAIL, f"{target.server} did not answer /version: {_kube_error(exc)}", _cluster_hint(target))
    return Check(name, OK, f"{target.server} answers: kubernetes {info.git_version} (reachable; access is checked below)")


def credentials_check(target: kube.Target) -> Check:
    """What the context's user is, and for an exec plugin: it runs and gives a token (and when it expires)."""
    from manual_deploy import credentials

    name = f"credentials {target.env}"
    user = kube.context_user(target)
    if user.kind != "exec":
        kinds = {"token": "a bearer token", "client-certificate": "a client certificate", "basic": "a user name and password",
                 "auth-provider": "an auth-provider (deprecated)", "none": "no credentials"}
        status = WARN if user.kind in ("none", "auth-provider") else OK
        return Check(name, status, f"user {user.name or '?'} has {kinds.get(user.kind, user.kind)}",
                     f"regenerate it: `{credentials.regenerate_command(user)}`")
    try:
        token = credentials.obtain(user, timeout_s=CHECK_TIMEOUT_S)
    except ManualDeployError as exc:
        return Check(name, FAIL, exc.message, exc.hint)
    profile = f" (AWS_PROFILE {user.exec.profile})" if user.exec.profile else ""
    return Check(name, OK, f"exec `{user.exec.display()}`{profile}: token {token.expiry()}")


# What apply, rollback and status do in the env's namespace: (resource, API group, verbs, what for).
ACCESS_NEEDED = (
    ("secrets", "", ("get", "list", "create", "update", "delete"), "helm's release records"),
    ("deployments", "apps", ("get", "list", "create", "patch", "delete"), "the app (delete: --force-refresh)"),
    ("replicasets", "apps", ("list",), "the rollout watch"),
    ("services", "", ("get", "create", "patch"), "the chart's Services"),
    ("persistentvolumeclaims", "", ("get", "create", "patch"), "the chart's claims"),
    ("pods", "", ("get", "list"), "the rollout watch"),
    ("pods/log", "", ("get", "list"), "a failed pod's last log lines"),
    ("events", "", ("list",), "why a resource is not ready"),
    ("leases", "coordination.k8s.io", ("get", "create", "update", "delete"), "the deploy lock"),
)


def access_checks(target: kube.Target) -> list[Check]:
    """One SelfSubjectAccessReview per verb and resource: ✓ once, or ✗ per missing permission."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name, ns = f"access {target.env}", target.namespace
    missing, asked = [], 0
    api = one_shot_client(target)
    try:
        reviews = client.AuthorizationV1Api(api)
        for resource, group, verbs, why in ACCESS_NEEDED:
            plural, _, sub = resource.partition("/")
            for verb in verbs:
                body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(namespace=ns, verb=verb, group=group, resource=plural,
                                                                    subresource=sub or None)))
                asked += 1
                review = reviews.create_self_subject_access_review(body, _request_timeout=CHECK_TIMEOUT_S)
                if not review.status.allowed:
                    missing.append((verb, f"{resource}.{group}" if group else resource, why))
    except ApiException as exc:
        if exc.status in (401, 403):
            return [Check(name, FAIL, f"the cluster refuses your credentials (HTTP {exc.status} {exc.reason})",
                          _unmapped_hint())]
        return [Check(name, FAIL, f"cannot ask what you may do: {_kube_error(exc)}", _cluster_hint(target))]
    except Exception as exc:  # noqa: BLE001 - any failure is the answer this check reports
        return [Check(name, FAIL, f"cannot ask what you may do: {_kube_error(exc)}", _cluster_hint(target))]
    finally:
        api.close()
    if not missing:
        return [Check(name, OK, f"all {asked} permissions apply, rollback and status need in {ns}")]
    return [Check(f"{name} {verb} {resource}", FAIL, f"cannot {verb} {resource} in {ns} (needed for {why})",
                  _missing_hint(target, verb, resource)) for verb, resource, why in missing]


def _unmapped_hint() -> str:
    return ("your role is probably not mapped in the cluster's aws-auth ConfigMap, or AWS_PROFILE points at another "
            "account: `aws sts get-caller-identity` shows who you are; ask a cluster admin to map that role")


def _missing_hint(target: kube.Target, verb: str, resource: str) -> str:
    return (f"the role your credentials map to lacks it: ask a cluster admin to grant `{verb}` on {resource} in "
            f"{target.namespace}; if you expected to have it, check who you are (`aws sts get-caller-identity`) — "
            "a wrong AWS_PROFILE gives another role")


def one_shot_client(target: kube.Target, *, anonymous: bool = False):
    """`kube.api_client` without urllib3's default 3 retries, so one request really ends within its timeout.

    `anonymous`: the context's cluster (server, CA) with no user at all, so no exec plugin runs and no
    credential is sent — what proves reachability and nothing more.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    if anonymous:
        data = kube.merged_kubeconfig(target.kubeconfig)
        context = kube.named(data.get("contexts"), target.context) or {}
        cluster_name = (context.get("context") or {}).get("cluster")
        cluster = kube.named(data.get("clusters"), cluster_name) or {"name": cluster_name, "cluster": {"server": target.server}}
        loaded = kube_config.new_client_from_config_dict({
            "clusters": [cluster], "users": [{"name": "anonymous", "user": {}}],
            "contexts": [{"name": target.context, "context": {"cluster": cluster_name, "user": "anonymous"}}],
            "current-context": target.context,
        }, context=target.context, persist_config=False)
    else:
        loaded = kube.api_client(target)
    configuration = loaded.configuration
    loaded.close()
    configuration.retries = False
    return client.ApiClient(configuration)


def _kube_error(exc: Exception) -> str:
    """The reason without headers or bodies (they may echo a request)."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return _short(exc)


def _reach_hint(url: str, source: str) -> str:
    return f"check the network/VPN and the URL in {source}: `curl -sS -o /dev/null -w '%{{http_code}}\\n' {url}`"


def http_status(url: str) -> int:
    """One GET, no retries, no credentials (reachability needs none), bounded by HTTP_TIMEOUT."""
    import requests

    response = requests.get(url, timeout=HTTP_TIMEOUT, allow_redirects=False, headers={"User-Agent": "manual-deploy doctor"})
    response.close()
    return response.status_code


def registry_check(url: str, source: str) -> Check:
    """GET /v2/: 200 (open) and 401 (asks for a token) both mean a registry is answering."""
    import requests

    probe = f"{url}/v2/"
    try:
        status = http_status(probe)
    except requests.RequestException as exc:
        return Check("registry", FAIL, f"{probe} unreachable: {_short(exc)}", _reach_hint(probe, source))
    if status in (200, 401):
        return Check("registry", OK, f"{probe} answers (HTTP {status})")
    return Check("registry", FAIL, f"{probe} answered HTTP {status}, not a registry v2 API", _reach_hint(probe, source))


def quay_api_check(api_url: str, source: str) -> Check:
    """Any HTTP answer will do: wait-image copes with 401/403/404 there, not with no answer at all."""
    import requests

    probe = f"{api_url}/discovery"
    try:
        status = http_status(probe)
    except requests.RequestException as exc:
        return Check("quay API", FAIL, f"{probe} unreachable: {_short(exc)}", _reach_hint(probe, source))
    return Check("quay API", OK, f"{probe} answers (HTTP {status})")


def _ls_remote_hint(url: str, source: str) -> str:
    return f"check the network/VPN and deployment_repo.url in {source}: `git ls-remote --heads {redact(url)}`"


def _git_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Never let git (or ssh under it) wait for a password or a host-key answer nobody will type."""
    env = dict(environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", f"ssh -o BatchMode=yes -o ConnectTimeout={int(CHECK_TIMEOUT_S)}")
    return env


def deploy_repo_checks(config: Config, envs: list[str], environ: Mapping[str, str]) -> list[Check]:
    """The deploy-config repo answers, and each env's config_branch is there (one ls-remote for all)."""
    url, source = config.deployment_repo.url, config.source
    name, hint = "deploy-config repo", _ls_remote_hint(url, source)
    if url.startswith("-"):
        return [Check(name, FAIL, f"deployment_repo.url {url!r} looks like an option", f"fix deployment_repo.url in {source}")]
    git = shutil.which("git")
    if git is None:
        return [Check(name, FAIL, "cannot ask: git was not found on PATH", "install git, then run doctor again")]
    try:
        proc = run_bounded([git, "ls-remote", "--heads", url], timeout=CHECK_TIMEOUT_S, env=_git_env(environ))
    except subprocess.TimeoutExpired:
        return [Check(name, FAIL, f"{redact(url)} gave no answer within {CHECK_TIMEOUT_S:g} s", hint)]
    if proc.returncode != 0:
        reason = _last_line(proc.stderr) or f"git exited with status {proc.returncode}"
        return [Check(name, FAIL, f"{redact(url)}: {redact(reason)}", hint)]
    heads = _heads(proc.stdout)
    checks = [Check(name, OK, f"{redact(url)} answers ({len(heads)} branches)")]
    return checks + [_branch_check(env, config.environments[env].config_branch, heads, source) for env in envs]


def _heads(ls_remote: str) -> dict[str, str]:
    heads = {}
    for line in ls_remote.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = sha
    return heads


def _branch_check(env: str, branch: str, heads: dict[str, str], source: str) -> Check:
    name = f"config branch {env}"
    if branch in heads:
        return Check(name, OK, f"{branch} at {heads[branch][:8]}")
    known = ", ".join(sorted(heads)[:10]) or "none"
    return Check(name, FAIL, f"branch {branch!r} is not in the deploy-config repo (branches: {known})",
                 f"fix environments.{env}.config_branch in {source}, or pass --config-ref to apply")


# --- running -----------------------------------------------------------------------------------------

_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


def run_bounded(argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run an argument list; on timeout kill its whole process group (git's helpers hold our pipes open)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", env=dict(env) if env is not None else None, start_new_session=True)
    with _live_lock:
        _live.add(proc)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        raise
    finally:
        with _live_lock:
            _live.discard(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_leftovers() -> None:
    """Processes of probes abandoned at the deadline (or on Ctrl-C) must not outlive doctor."""
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        _kill_group(proc)


def _run_probes(probes: list[Probe], deadline_s: float) -> dict[str, list[Check]]:
    """Each probe in a daemon thread, so one that hangs past the deadline cannot keep doctor from exiting."""
    results: list[list[Check] | None] = [None] * len(probes)

    def work(index: int, probe: Probe) -> None:
        try:
            results[index] = probe.run()
        except Exception as exc:  # noqa: BLE001 - a bug in one check must not hide the others
            results[index] = [Check(probe.name, FAIL, f"check crashed: {_short(exc)}", "re-run with -v and report it")]

    _import_probe_dependencies()
    threads = [threading.Thread(target=work, args=(i, p), daemon=True, name=f"doctor-{p.name}") for i, p in enumerate(probes)]
    end = time.monotonic() + deadline_s
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))
    finally:
        _kill_leftovers()
    late = lambda p: [Check(p.name, FAIL, f"no answer within {deadline_s:g} s", p.hint)]  # noqa: E731
    return {probe.name: (result if result is not None else late(probe)) for probe, result in zip(probes, results)}


def _import_probe_dependencies() -> None:
    """Import what the probes share before they run in parallel.

    Threads importing the same package at once (several cluster probes → kubernetes, registry
    probes → requests) can get a half-initialised module from Python's import deadlock breaker.
    """
    import requests  # noqa: F401
    from kubernetes import client, config  # noqa: F401

    client.VersionApi, client.AuthorizationV1Api  # noqa: B018 - kubernetes.client imports its API classes on first access


def _short(exc: BaseException) -> str:
    """`ConnectionError: … Connection refused` in one line, without the noise urllib3 wraps around it."""
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "No route to host",
                   "Temporary failure in name resolution", "Network is unreachable", "certificate verify failed"):
        if marker in text:
            return f"{type(exc).__name__}: {marker}"
    line = _last_line(text) or type(exc).__name__
    return f"{type(exc).__name__}: {line[:200]}"


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
