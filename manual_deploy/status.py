"""`status`: what runs where — GitLab's Environments page, rebuilt from helm and the cluster.

Read-only. Per app and env it joins four sources: the helm release (revision, the `image` value,
the description `apply` writes: who, why, config SHA), the Deployment (the image really running,
ready/desired replicas), the deploy lock (a deploy running now, or one that died) and the
deploy-config repo (the replicas GitLab would set). Where the cluster disagrees with helm or the
config repo, that is drift: reported with a ⚠, never fixed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from manual_deploy import deployconfig
from manual_deploy.config import Config, ResolvedApp
from manual_deploy.console import Output
from manual_deploy.deployment_state import DeploymentState
from manual_deploy.errors import ManualDeployError, OperationFailed, Refused
from manual_deploy.helm import HelmDriver, Revision, find_helm, helm_error
from manual_deploy.kube import Target, api_client, api_message, error_line, is_refusal, refusal, resolve_target
from manual_deploy.lock import Holder, holder_of, lease_name
from manual_deploy.redact import redact
from manual_deploy.images import ImageRef, same_image
from manual_deploy.timestamps import parse_time

MAX_PARALLEL_READS = 8  # helm subprocesses at once, across all envs and apps
HELM_READ_TIMEOUT_S = 60.0
KUBE_TIMEOUT_S = (10, 30)  # (connect, read): an unreachable EKS endpoint must not hang a 3am check
NOT_DEPLOYED = "not deployed"
LOCK_SELECTOR = "app.kubernetes.io/managed-by=manual-deploy"  # the label every deploy lock carries

_APPLY_DESCRIPTION = re.compile(
    r"^manual-deploy by (?P<by>\S+); reason: (?P<reason>.*); image: (?P<image>\S+); config: (?P<config>[0-9a-f]{4,40})$"
)


# --- parsing what helm and apply left behind -------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """Who deployed a revision and why, from the description `manual_deploy.apply.description` writes."""

    by: str | None
    reason: str | None
    image: str | None
    config_sha: str | None


def parse_description(text: str) -> Provenance | None:
    """The parts of an apply-made description; None for any other (GitLab's, helm's 'Rollback to 2')."""
    match = _APPLY_DESCRIPTION.match((text or "").strip())
    if not match:
        return None
    reason = match.group("reason").strip()
    return Provenance(match.group("by"), None if reason in ("", "-") else reason, match.group("image"), match.group("config"))


def who(by: str | None) -> str:
    """user@host without the process id: what a human needs to know whom to ask."""
    return (by or "").split("#", 1)[0]


def iso(stamp: datetime | None) -> str | None:
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ") if stamp else None


def age(stamp: datetime | None, now: datetime | None = None) -> str:
    """'3h ago' — at 3am, how long ago matters more than the date."""
    if stamp is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - stamp).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def when(stamp: datetime | None) -> str:
    """'2024-05-01 12:34Z (3h ago)'."""
    return f"{stamp.strftime('%Y-%m-%d %H:%MZ')} ({age(stamp)})" if stamp else "-"


# --- the report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusRequest:
    envs: tuple[str, ...]
    apps: tuple[str, ...] = ()
    kubeconfig: str | None = None


@dataclass
class Drift:
    kind: str  # image | replicas | deployment
    summary: str  # a few words for the table
    message: str  # the whole story, for stderr and JSON
    hint: str


@dataclass(frozen=True)
class LockStatus:
    """An app's deploy lock as status read it: the holder, and its state at that moment (text and JSON agree)."""

    holder: Holder
    state: str  # live | stale | expired | dead (see Holder.state)
    read_at: datetime

    @classmethod
    def of(cls, holder: Holder, read_at: datetime) -> "LockStatus":
        return cls(holder, holder.state(read_at), read_at)

    @property
    def running(self) -> bool:
        """A deploy still at work (stale: not answering, but its lock not expired yet)."""
        return self.state in ("live", "stale")

    def as_dict(self) -> dict[str, Any]:
        holder, heartbeat = self.holder, self.holder.heartbeat_age(self.read_at)
        return {
            "holder": holder.identity, "reason": holder.reason or None, "command": holder.command or None,
            "phase": holder.phase or None, "state": self.state, "started": iso(holder.started or holder.acquired),
            "heartbeat_age_s": round(heartbeat, 1) if heartbeat is not None else None, "image": holder.image or None,
        }


@dataclass
class AppStatus:
    app: str
    release: str
    deployed: bool = False
    revision: int | None = None
    status: str = NOT_DEPLOYED
    image: str | None = None  # the release's `image` value
    repo: str | None = None
    tag: str | None = None
    digest: str | None = None
    live_image: str | None = None  # what the Deployment's container runs
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    config_replicas: int | None = None  # what the deploy-config repo says
    release_replicas: int | None = None  # what the release's values say
    deployed_at: str | None = None
    deployed_by: str | None = None
    reason: str | None = None
    description: str | None = None
    config_sha: str | None = None
    drift: list[Drift] = field(default_factory=list)
    error: str | None = None
    gitlab: str | None = None  # whether GitLab has a record of the last deploy made from this machine
    lock: LockStatus | None = None  # a deploy running now, or one that died holding the lock

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("app")
        data["lock"] = self.lock.as_dict() if self.lock else None
        return data


@dataclass
class EnvStatus:
    env: str
    context: str
    namespace: str
    server: str
    config_branch: str
    config_sha: str | None = None
    apps: dict[str, AppStatus] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "namespace": self.namespace,
            "server": self.server,
            "config": {"branch": self.config_branch, "sha": self.config_sha},
            "warnings": self.warnings,
            "error": self.error,
            "apps": {name: app.as_dict() for name, app in self.apps.items()},
        }


@dataclass
class StatusReport:
    envs: list[EnvStatus]

    def as_dict(self) -> dict[str, Any]:
        return {"envs": {env.env: env.as_dict() for env in self.envs}}

    @property
    def failed(self) -> bool:
        """A cluster or a release could not be read: the answer is incomplete (exit 1). Drift alone is not."""
        return any(env.error or any(app.error for app in env.apps.values()) for env in self.envs)

    @property
    def drift_count(self) -> int:
        return sum(len(app.drift) for env in self.envs for app in env.apps.values())


# --- reading the cluster ----------------------------------------------------------------------------


def connect(target: Target):
    """The env's ApiClient, made once and shared by its reads: on EKS each one runs `aws eks get-token`."""
    try:
        return api_client(target)
    except Exception as exc:  # kubeconfig/auth plugin errors
        raise _unreachable(target, exc) from None


def _unreachable(target: Target, exc: BaseException) -> OperationFailed:
    return OperationFailed(
        redact(f"cluster {target.context} ({target.server}) is unreachable: {error_line(exc)}"),
        hint=f"check the VPN/network and your credentials, then `kubectl --context {target.context} get ns`",
    )


def live_deployments(target: Target, kube) -> dict[str, DeploymentState]:
    """Every Deployment of the env's namespace in one call — which also proves the cluster answers."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    where = f"{target.context}/{target.namespace}"
    try:
        apps = client.AppsV1Api(kube)
        items = apps.list_namespaced_deployment(target.namespace, _request_timeout=KUBE_TIMEOUT_S).items
    except ApiException as exc:
        if is_refusal(exc):
            raise refusal(exc, env=target.env, message=f"not allowed to list deployments in {where}",
                          need=f"`list` on deployments in {target.namespace}") from None
        raise OperationFailed(f"cannot read deployments in {where}: HTTP {exc.status} {exc.reason}") from None
    except Exception as exc:  # urllib3 connection errors, auth plugin errors
        raise _unreachable(target, exc) from None
    return {d.metadata.name: DeploymentState.from_dict(kube.sanitize_for_serialization(d)) for d in items}


def live_locks(target: Target, kube) -> dict[str, LockStatus]:
    """Every deploy lock of the namespace, by Lease name, in one LIST (cheaper than a GET per app).

    Any failure is an OperationFailed whose message is one warning line: the locks are extra
    information, and a role without `list` on leases must still see what runs."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        items = client.CoordinationV1Api(kube).list_namespaced_lease(
            target.namespace, label_selector=LOCK_SELECTOR, _request_timeout=KUBE_TIMEOUT_S).items
    except ApiException as exc:
        why = f"{api_message(exc)} (HTTP {exc.status})"
    except Exception as exc:  # urllib3 connection errors
        why = error_line(exc)
    else:
        read_at = datetime.now(timezone.utc)
        return {lease.metadata.name: LockStatus.of(holder_of(lease), read_at) for lease in items}
    raise OperationFailed(redact(f"deploy locks not read, so a deploy in progress is not shown: {why}"))


async def read_release(helm: HelmDriver, release: str, namespace: str) -> tuple[Revision | None, dict]:
    """The current revision and its user-supplied values (where `image` and `replicas` live)."""
    return await asyncio.wait_for(helm.current_and_values(release, namespace), HELM_READ_TIMEOUT_S)


def app_status(app: ResolvedApp, current: Revision | None, values: dict, live: DeploymentState | None) -> AppStatus:
    """One row: the release as helm recorded it, next to the Deployment as it runs."""
    row = AppStatus(app=app.name, release=app.release)
    if live is not None:
        row.live_image, row.ready_replicas, row.desired_replicas = live.app_image(), live.ready, live.desired
    if current is None:
        return row
    row.deployed, row.revision, row.status = True, current.number, current.status
    row.image = str(values["image"]) if values.get("image") is not None else None
    ref = ImageRef.parse(row.image)
    repo, row.tag, row.digest = ref.repo, ref.tag, ref.digest
    row.repo = repo or (app.image_repo if row.tag else None)
    replicas = values.get("replicas")
    row.release_replicas = int(replicas) if str(replicas or "").isdigit() else None
    row.deployed_at = iso(parse_time(current.updated))
    row.description = current.description
    made_by = parse_description(current.description)
    if made_by:
        row.deployed_by, row.reason, row.config_sha = made_by.by, made_by.reason, made_by.config_sha
    return row


# --- drift --------------------------------------------------------------------------------------------


def _rollback_hint(env: EnvStatus, row: AppStatus) -> str:
    tag = f" --tag {row.tag}" if row.tag else ""
    return (
        f"restore what helm deployed: `manual-deploy apply --env {env.env} --app {row.release}{tag}` "
        f"(it notices the drift and re-applies), or `helm rollback {row.release} {row.revision} "
        f"--namespace {env.namespace} --kube-context {env.context}`"
    )


def image_drift(env: EnvStatus, app: ResolvedApp, row: AppStatus) -> Drift | None:
    """(a) someone ran `kubectl set image` (or edited the Deployment) behind helm's back."""
    if not row.deployed:
        return None
    if row.live_image is None:
        return Drift(
            "deployment", "Deployment missing",
            f"{env.env}/{app.name}: helm revision {row.revision} exists but Deployment {row.release} does not "
            "(deleted behind helm's back?)",
            _rollback_hint(env, row),
        )
    if row.image is None or same_image(row.live_image, row.image):
        return None
    return Drift(
        "image", f"image: runs {ImageRef.parse(row.live_image).short()}",
        f"{env.env}/{app.name}: the Deployment runs {row.live_image}, but helm revision {row.revision} deployed "
        f"{row.image} (changed behind helm's back, e.g. `kubectl set image`)",
        _rollback_hint(env, row),
    )


def replicas_drift(env: EnvStatus, app: ResolvedApp, row: AppStatus) -> Drift | None:
    """(b) the Deployment's replicas are not what the deploy-config repo says."""
    expected, desired = row.config_replicas, row.desired_replicas
    if not row.deployed or expected is None or desired is None or expected == desired:
        return None
    where = f"config/replicas/environment_{env.env} at {env.config_branch}@{(env.config_sha or '')[:8]}"
    if row.release_replicas == expected:
        cause, hint = "scaled behind helm's back (e.g. `kubectl scale`)", _rollback_hint(env, row)
    else:
        cause = "the config repo changed since this revision was deployed"
        hint = f"`manual-deploy apply --env {env.env} --app {app.name} --tag {row.tag or '<tag>'}` applies it"
    return Drift(
        "replicas", f"replicas: config {expected} ≠ {desired}",
        f"{env.env}/{app.name}: {where} says {expected} replicas, the Deployment wants {desired}: {cause}",
        hint,
    )


# --- the deploy-config repo ------------------------------------------------------------------------


@dataclass
class ConfigReading:
    sha: str | None = None
    replicas: dict[str, int | None] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def expected_replicas(config: Config, envs: list[str], apps: list[ResolvedApp]) -> dict[str, ConfigReading]:
    """Per env, the replicas the config repo sets; a repo that cannot be read is a warning, not a failure.

    Branches are checked out one after the other into the one cache clone, and each env's file is read
    before the next checkout replaces it.
    """
    readings: dict[str, ConfigReading] = {env: ConfigReading() for env in envs}
    by_branch: dict[str, list[str]] = {}
    for env in envs:
        by_branch.setdefault(config.environment(env).config_branch, []).append(env)
    for branch, branch_envs in by_branch.items():
        try:
            checkout = deployconfig.checkout(config.deployment_repo.url, branch)
        except Exception as exc:  # network, auth, git missing: the replicas check is optional
            message = exc.message if isinstance(exc, ManualDeployError) else error_line(exc)
            for env in branch_envs:
                readings[env].warnings.append(redact(f"deploy config not read ({message}); replicas not checked against it"))
            continue
        for env in branch_envs:
            readings[env].sha = checkout.sha
            readings[env].replicas = _replicas_of(checkout, env, apps, readings[env].warnings)
    return readings


def _replicas_of(checkout, env: str, apps: list[ResolvedApp], warnings: list[str]) -> dict[str, int | None]:
    counts: dict[str, int | None] = {}
    for app in apps:
        if app.replicas_variable is None:
            counts[app.name] = None  # the chart hard-codes its replicas
            continue
        try:
            counts[app.name] = deployconfig.replica_count(checkout, env, app.replicas_variable, None)
        except ManualDeployError as exc:
            counts[app.name] = None
            warnings.append(f"{app.name}: {exc.message}; replicas not checked")
    return counts


# --- orchestration -----------------------------------------------------------------------------------


@dataclass
class _Reader:
    """Reads every env's cluster at once; `gate` bounds the helm subprocesses across all of them."""

    apps: list[ResolvedApp]
    helm_path: str
    kubeconfig: str | None
    gate: asyncio.Semaphore

    async def read_env(self, target: Target, env: EnvStatus) -> None:
        """Fill `env` with one row per app; a cluster that cannot be read sets `env.error`.

        The locks are read alongside the Deployments and the releases, never after them."""
        try:
            kube = await asyncio.to_thread(connect, target)
            locks = asyncio.create_task(self.read_locks(target, kube))
            deployments = await asyncio.to_thread(live_deployments, target, kube)
        except OperationFailed as exc:
            env.error, env.hint = exc.message, exc.hint
            return
        helm = await asyncio.to_thread(
            HelmDriver, self.helm_path, kubeconfig=self.kubeconfig, context=target.context, timeout_s=HELM_READ_TIMEOUT_S
        )
        rows = await asyncio.gather(*(self.read_app(helm, target, app, deployments.get(app.release)) for app in self.apps))
        held, warning = await locks
        for row in rows:
            row.lock = held.get(lease_name(row.app))
        env.apps = {row.app: row for row in rows}
        if warning:
            env.warnings.append(warning)

    @staticmethod
    async def read_locks(target: Target, kube) -> tuple[dict[str, LockStatus], str | None]:
        """The env's locks, or none and why: never raises, so an unreadable lock never fails status."""
        try:
            return await asyncio.to_thread(live_locks, target, kube), None
        except OperationFailed as exc:
            return {}, exc.message

    async def read_app(self, helm: HelmDriver, target: Target, app: ResolvedApp, live: DeploymentState | None) -> AppStatus:
        """One release; a release that cannot be read is a row with an error, not a failed command."""
        async with self.gate:
            try:
                current, values = await read_release(helm, app.release, target.namespace)
            except asyncio.TimeoutError:
                error = f"helm did not answer within {HELM_READ_TIMEOUT_S:.0f}s"
            except Exception as exc:  # pyhelm3 errors: no access to the release secrets, a corrupt release
                error = helm_error(exc, f"cannot read release {app.release}").message
            else:
                return app_status(app, current, values, live)
        row = app_status(app, None, {}, live)
        row.status, row.error = "unknown", error
        return row


async def _read_all(config: Config, targets: list[Target], reader: _Reader) -> tuple[list[EnvStatus], dict[str, ConfigReading]]:
    """Clusters and the config repo in parallel: the git fetch must not add to the cluster reads."""
    envs = [
        EnvStatus(t.env, t.context, t.namespace, t.server, config_branch=config.environment(t.env).config_branch)
        for t in targets
    ]
    config_reading = asyncio.create_task(asyncio.to_thread(expected_replicas, config, [t.env for t in targets], reader.apps))
    await asyncio.gather(*(reader.read_env(target, env) for target, env in zip(targets, envs)))
    return envs, await config_reading


def _add_drift(env: EnvStatus, apps: list[ResolvedApp], reading: ConfigReading) -> None:
    env.config_sha = reading.sha
    env.warnings.extend(reading.warnings)
    for app in apps:
        row = env.apps.get(app.name)
        if row is None or row.error:
            continue
        row.config_replicas = reading.replicas.get(app.name)
        row.drift = [d for d in (image_drift(env, app, row), replicas_drift(env, app, row)) if d]


def _report_problems(report: StatusReport, out: Output) -> None:
    """Warnings, drift and unreadable clusters on stderr; the table itself stays on stdout."""
    for env in report.envs:
        for warning in env.warnings:
            out.warn(f"{env.env}: {warning}")
        if env.error:
            out.error(f"{env.env}: {env.error}", env.hint)
        for row in env.apps.values():
            if row.error:
                out.error(f"{env.env}/{row.app}: {row.error}")
            for drift in row.drift:
                out.warn(f"⚠ {drift.message}")
                out.info(f"  next: {drift.hint}")


def run_status(config: Config, request: StatusRequest, out: Output) -> StatusReport:
    """Resolve every env's target first (exit 3 before any network), then read all of them concurrently."""
    env_names = list(dict.fromkeys(request.envs))
    for name in env_names:
        config.environment(name)
    apps = [config.app(name) for name in dict.fromkeys(request.apps or tuple(config.apps))]
    targets = [resolve_target(config, name, kubeconfig=request.kubeconfig, out=out) for name in env_names]
    reader = _Reader(apps, find_helm(config.helm.executable), request.kubeconfig, asyncio.Semaphore(MAX_PARALLEL_READS))
    for target in targets:
        out.step(f"reading {target.banner()}")
    envs, readings = asyncio.run(_read_all(config, targets, reader))
    for env in envs:
        if not env.error:
            _add_drift(env, apps, readings[env.env])
    _add_gitlab(config, envs, out)
    report = StatusReport(envs)
    if all(env.error for env in envs):
        first = envs[0]
        raise OperationFailed(f"{first.env}: {first.error}", hint=first.hint)
    _report_problems(report, out)
    if report.drift_count:
        out.warn(f"{report.drift_count} drift(s) found: the cluster is not what helm / the config repo says")
    return report


def _add_gitlab(config: Config, envs: list[EnvStatus], out: Output) -> None:
    """From the audit log and what `gitlab-sync` remembers: no GitLab call, so it works while GitLab is down."""
    from manual_deploy.gitlab_records import SyncMemory, gitlab_state, manual_deploys

    if not config.gitlab.url:
        return
    memory, last = SyncMemory(), {}
    for deploy in manual_deploys(config):
        last[(deploy.env, deploy.app)] = deploy
    for env in envs:
        for name, row in env.apps.items():
            deploy = last.get((env.env, name))
            row.gitlab = gitlab_state(deploy, memory) if deploy else ("not from this machine" if row.deployed_by else "-")
    missing = [f"{env.env}/{name}" for env in envs for name, row in env.apps.items() if row.gitlab == "not recorded"]
    if missing:
        out.warn(f"GitLab has no record of the last deploy of {', '.join(missing)}: run `manual-deploy gitlab-sync` "
                 "(once GitLab is back)")


# --- text ----------------------------------------------------------------------------------------------


def render_text(report: StatusReport, *, width: int = 200, color: bool = False) -> str:
    """One table: every detail for one env; a compact column per env when several are compared.
    Under it, one line per app a deploy is running on or died on."""
    table = _single_env_table(report.envs[0]) if len(report.envs) == 1 else _multi_env_table(report.envs)
    text = render(table, width=width, color=color)
    locks = _lock_lines(report)
    return f"{text.rstrip(chr(10))}\n\n{render(*locks, width=width, color=color, soft_wrap=True)}" if locks else text


def terminal_style() -> dict[str, Any]:
    """Colour and width of a terminal on stdout; wide and plain when piped, so nothing wraps in a log."""
    import shutil
    import sys

    if sys.stdout.isatty():
        return {"width": shutil.get_terminal_size((200, 24)).columns, "color": True}
    return {"width": 200, "color": False}


def render(*renderables, width: int, color: bool, soft_wrap: bool = False) -> str:
    """Rich renderables as a string, ANSI-coloured only when stdout is a terminal.

    `soft_wrap`: a long line stays one line (the terminal wraps it; grep still finds it whole)."""
    import io

    from rich.console import Console
    from rich.text import Text

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=color, no_color=not color, highlight=False, soft_wrap=soft_wrap)
    for item in renderables:
        console.print(Text(item) if isinstance(item, str) else item)  # plain strings: never parsed as markup
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").splitlines())


def _status_style(row: AppStatus) -> str:
    if row.error or row.status.startswith(("failed", "pending")) or row.status == "unknown":
        return "bold red"
    if not row.deployed:
        return "dim"
    return "green" if row.status == "deployed" else "yellow"


def _lock_mark(row: AppStatus) -> tuple[str, str]:
    """⟳ a deploy is running, ✗ one died holding the lock: ties the row to its line under the table."""
    if row.lock is None:
        return "", ""
    return ("⟳ ", "yellow") if row.lock.running else ("✗ ", "bold red")


def _lock_lines(report: StatusReport) -> list:
    return [_lock_line(env, row) for env in report.envs for row in env.apps.values() if row.lock is not None]


def _lock_line(env: EnvStatus, row: AppStatus):
    """`⟳ prod/app: being deployed by …: old → new`, or `✗ prod/app: …'s apply stopped answering …`: a dead run's
    lock and pending release are taken over by the next deploy (see apply._check_pending), so it says so."""
    from rich.text import Text

    lock, where = row.lock, f"{env.env}/{row.app}"
    if lock.running:
        image = f": {lock.holder.image}" if lock.holder.image else ""
        return Text(f"⟳ {where}: being deployed by {lock.holder.describe(lock.read_at)}{image}", style="yellow")
    stuck = f"; release {row.release} is {row.status} (revision {row.revision})" if row.status.startswith("pending") else ""
    return Text(f"✗ {where}: {lock.holder.obituary(lock.read_at)}{stuck}; the next deploy recovers it (no flag needed)",
                style="bold red")


def _ready(row: AppStatus) -> str:
    if row.desired_replicas is None:
        return "-"
    return f"{row.ready_replicas}/{row.desired_replicas}"


def _drift_cell(row: AppStatus) -> str:
    if row.error:
        return f"✗ {row.error}"
    return "\n".join(f"⚠ {d.summary}" for d in row.drift) or ""


def _title(env: EnvStatus) -> str:
    config = f"{env.config_branch}@{env.config_sha[:8]}" if env.config_sha else f"{env.config_branch} (not read)"
    return f"{env.env} · context {env.context} · namespace {env.namespace} · config {config}"


def _single_env_table(env: EnvStatus):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=_title(env), title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("APP", "REV", "STATUS", "TAG", "DIGEST", "READY", "DEPLOYED", "BY", "REASON", "CONFIG", "GITLAB", "DRIFT"):
        table.add_column(name, overflow="fold", max_width=48 if name in ("REASON", "DRIFT") else None)
    for row in env.apps.values():
        drifted = bool(row.drift or row.error)
        stamp = parse_time(row.deployed_at)
        by = who(row.deployed_by) if row.deployed_by else ("-" if not row.description else "(not manual-deploy)")
        reason = row.reason or ("" if row.deployed_by else (row.description or ""))
        ready_style = "yellow" if row.desired_replicas is not None and row.ready_replicas != row.desired_replicas else ""
        table.add_row(
            Text(("⚠ " if drifted else "") + row.app, style="bold yellow" if drifted else ""),
            str(row.revision) if row.revision is not None else "-",
            Text.assemble(_lock_mark(row), (row.status, _status_style(row))),
            row.tag or "-",
            row.digest[:19] if row.digest else "-",
            Text(_ready(row), style=ready_style),
            when(stamp),
            by,
            reason,
            row.config_sha or "-",
            Text(row.gitlab or "-", style="yellow" if row.gitlab == "not recorded" else ""),
            Text(_drift_cell(row), style="bold yellow" if drifted else ""),
        )
    return table


def _multi_env_cell(env: EnvStatus, row: AppStatus | None):
    from rich.text import Text

    if env.error:
        return Text("✗ cluster not read", style="bold red")
    if row is None:
        return Text("-")
    text = Text.assemble(_lock_mark(row))
    if not row.deployed:
        text.append(row.status if row.error else NOT_DEPLOYED, style=_status_style(row))
    else:
        text.append(f"r{row.revision} ", style="bold")
        text.append(row.status, style=_status_style(row))
        text.append(f" · {_ready(row)}\n{ImageRef.parse(row.image).short()}\n{age(parse_time(row.deployed_at))}")
        if row.deployed_by:
            text.append(f" · {who(row.deployed_by)}")
        if row.gitlab == "not recorded":
            text.append("\nGitLab: not recorded", style="yellow")
    drift = _drift_cell(row)
    if drift:
        text.append(f"\n{drift}", style="bold yellow")
    return text


def _multi_env_table(envs: list[EnvStatus]):
    from rich import box
    from rich.table import Table

    names = list(dict.fromkeys(name for env in envs for name in env.apps))
    table = Table(show_lines=True, box=box.SQUARE)
    table.add_column("APP", style="bold")
    for env in envs:
        config = f"{env.config_branch}@{env.config_sha[:8]}" if env.config_sha else f"{env.config_branch} (not read)"
        table.add_column(f"{env.env} ({env.context})\nconfig {config}", overflow="fold", max_width=44)
    for name in names:
        table.add_row(name, *(_multi_env_cell(env, env.apps.get(name)) for env in envs))
    return table
