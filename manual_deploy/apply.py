"""`apply` as named phases (krane's model): target → image → config → plan → confirm → lock →
upgrade → verify → record (with nothing to confirm, the lock is taken during the plan). Each phase
prints its duration; a failure names the phase, the reason and the next command; nothing is left
half-done (helm rolls back, the lock is released).
"""

from __future__ import annotations

import asyncio
import difflib
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from manual_deploy import audit, deployconfig, state, validate, yamlio
from manual_deploy.config import Config, ResolvedApp
from manual_deploy.console import Output
from manual_deploy.durations import format_duration
from manual_deploy.errors import Interrupted, ManualDeployError, OperationFailed, Refused, UsageError
from manual_deploy.helm import HelmDriver, Revision, StatusRead, find_helm, helm_error
from manual_deploy.kube import Target, api_client, import_lock_client, resolve_target, rollout_apis
from manual_deploy.lock import DeployLock
from manual_deploy.redact import redact
from manual_deploy.images import ImageRef, chart_value, reference, same_image, split_repo
from manual_deploy.verify import RolloutVerifier

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
MAX_PARALLEL_APPS = 8
HELM_HEAD_START_S = 0.5  # helm's own start of an upgrade, before the rollout verifier is built


def gitlab_slug(text: str) -> str:
    """GitLab's *_SLUG: lower-case, everything but a-z0-9 → '-', at most 63 chars, no '-' at the ends."""
    slug = re.sub(r"[^a-z0-9]", "-", text.lower())[:63]
    return slug.strip("-")


@dataclass(frozen=True)
class ApplyRequest:
    env: str
    apps: tuple[str, ...] = ()
    image: str | None = None
    tag: str | None = None
    config_ref: str | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    timeout_s: float = 600.0
    reason: str = ""
    dry_run: bool = False
    yes: bool = False
    break_lock: bool = False
    force_refresh: bool = False
    replicas: int | None = None
    no_digest: bool = False
    recover: bool = False
    grace_s: float = 60.0
    repo: str = "."
    post_check: tuple[str, ...] | None = None
    rollback_on_check_failure: bool = False
    command: str = "apply"  # what the audit record and the team's messages call it (promote, deploy run apply too)


@dataclass
class AppPlan:
    app: ResolvedApp
    tag: str
    image_ref: str  # what we deploy: repo:tag[@digest]
    image_value: str  # what the chart's `image` value gets
    digest: str | None
    replicas: int | None
    values: list[dict]
    current: Revision | None = None
    current_values: dict = field(default_factory=dict)
    chart: Any = None  # pyhelm3 Chart, loaded by the plan
    unchanged: bool = False


@dataclass
class AppResult:
    app: str
    env: str
    result: str  # deployed | unchanged | dry-run | failed | interrupted
    image: str
    digest: str | None
    replicas: int | None
    old_revision: int | None
    new_revision: int | None
    config_sha: str
    message: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Phases:
    """Named phases with their durations, printed as they finish."""

    def __init__(self, out: Output, prefix: str = ""):
        self.out = out
        self.prefix = prefix
        self.timings: dict[str, float] = {}
        self.current: str | None = None

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.current = name
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            self.timings[name] = round(took, 3)
        self.out.info(f"{self.prefix}✓ {name} ({took:.1f}s)")


# --- phase helpers --------------------------------------------------------------------------------


EARLY_PHASE_MODULES = (  # what the main thread imports while the warm-up runs (target, image, config, plan)
    "manual_deploy.registry", "manual_deploy.wait_image", "manual_deploy.deployconfig", "manual_deploy.helm",
    "manual_deploy.kube", "manual_deploy.gitops", "manual_deploy.lock", "manual_deploy.audit", "manual_deploy.notify",
    "pyhelm3.client",
)


def _warm_up_kubernetes_client() -> None:
    """Import what the deploy lock needs (kubeconfig loading, the Lease API) in the background while
    the early phases talk to git and the registry.

    Only that: the Deployment and Pod APIs (≈ 0.6 s of pydantic model classes) are first needed by
    the rollout verifier, which is built while helm is already running. Imported here as well, they
    competed for the GIL with the main thread's own imports and held up the lock, and so helm.

    Packages both threads need are imported here first, in this thread: two threads importing the
    same package (requests, whose modules import each other) in different orders can trip Python's
    import deadlock breaker, which hands one of them a half-initialised module (seen as
    "cannot import name 'parse_dict_header' from partially initialized module 'requests.utils'").
    tests/test_verify.py checks that nothing else is shared.
    """
    import requests  # noqa: F401
    import urllib3.util.retry  # noqa: F401

    threading.Thread(target=import_lock_client, name="kubernetes-import", daemon=True).start()


def _validate_flags(request: ApplyRequest) -> None:
    """Bad input fails before the first network call, with nothing changed."""
    if request.config_ref:
        validate.git_rev(request.config_ref)
    if request.tag:
        validate.image_tag(request.tag)
    for app in request.apps:
        validate.app_name(app)
    if request.replicas is not None and request.replicas < 0:
        raise UsageError(f"--replicas must be 0 or more, got {request.replicas}")


def choose_apps(request: ApplyRequest, recorded: dict) -> tuple[str, ...]:
    if request.apps:
        return request.apps
    app = (recorded.get("image") or {}).get("app") or (recorded.get("tag") or {}).get("app")
    if not app:
        raise UsageError(
            "no --app given and no app recorded in this checkout",
            hint="run `manual-deploy tag` and `wait-image` in the app checkout first, or pass --app APP",
        )
    return (app,)


def image_for(app: ResolvedApp, request: ApplyRequest, recorded: dict, single: bool) -> tuple[str, str | None]:
    """(tag, digest or None) from --image, --tag or the state left by wait-image/tag."""
    if request.image:
        if not single:
            raise UsageError("--image names one image; with several --app use --tag")
        ref = ImageRef.parse_strict(request.image)
        if not ref or not ref.tag:
            raise UsageError(f"invalid --image {request.image!r}", hint=f"use {app.image_repo}:<tag>[@sha256:…]")
        if ref.repo != app.image_repo:
            raise UsageError(
                f"--image {request.image} is not an image of {app.name} ({app.image_repo})",
                hint="check the app and the image; use --tag to pick a tag of the app's own repository",
            )
        return validate.image_tag(ref.tag), ref.digest
    if request.tag:
        return validate.image_tag(request.tag), None
    for step in ("image", "tag"):
        entry = recorded.get(step) or {}
        if entry.get("app") == app.name and entry.get("tag"):
            return entry["tag"], entry.get("digest")
    raise UsageError(
        f"no image given for {app.name} and none recorded in this checkout",
        hint="pass --image REF or --tag TAG, or run `manual-deploy tag` and `wait-image` first",
    )


def resolve_images(config: Config, wanted: list[tuple[ResolvedApp, str, str | None]], out: Output) -> list[str]:
    """`resolve_image` for every app at once (one registry round trip instead of one per app).

    The first failure in app order is raised, as a sequential loop would.
    """
    from concurrent.futures import ThreadPoolExecutor

    import manual_deploy.wait_image  # noqa: F401 - imported here, not by several threads at once
    import manual_deploy.registry  # noqa: F401

    with ThreadPoolExecutor(max_workers=min(len(wanted), MAX_PARALLEL_APPS), thread_name_prefix="image") as pool:
        return list(pool.map(lambda item: resolve_image(config, *item, out), wanted))


def resolve_image(config: Config, app: ResolvedApp, tag: str, digest: str | None, out: Output) -> str:
    """The registry's digest for the tag; refuses when the image is missing or moved."""
    from manual_deploy.registry import Credentials, RegistryClient, TransientError

    _, repository = split_repo(app.image_repo)
    client = RegistryClient(config.registry.url, Credentials.from_env())
    try:
        manifest = client.head_manifest(repository, tag)
    except TransientError as exc:
        raise OperationFailed(f"cannot check {app.image_repo}:{tag}: {exc.message}", hint="retry in a minute") from None
    if manifest is None:
        raise Refused(
            f"image {app.image_repo}:{tag} is not in the registry",
            hint="wait for the build: `manual-deploy wait-image`, or check the tag",
        )
    if digest and manifest.digest != digest:
        raise Refused(
            f"tag {tag} of {app.image_repo} now points at {manifest.digest[:19]}…, not the {digest[:19]}… you asked for",
            hint="someone re-pushed the tag; check which image you really want, then pass it explicitly",
        )
    return manifest.digest


def helm_values(deploy: deployconfig.DeployConfig, app: ResolvedApp, env: str, image_value: str, replicas: int | None) -> list[dict]:
    """What GitLab's deploy job passes: -f apps/<env>.yaml plus --set-string overrides."""
    base = yamlio.safe_load(deploy.values_file(env).read_text()) or {}
    overrides = {
        "environment": env,
        "image": image_value,
        "gitlab_app": gitlab_slug(app.gitlab_project),
        "gitlab_env": gitlab_slug(env),
    }
    if replicas is not None:
        overrides["replicas"] = str(replicas)
    fastq = deploy.environment(env).get("FASTQ_VALIDATOR_IMAGE")
    if fastq:
        overrides["fastqImage"] = fastq
    return [base, overrides]


def description(request: ApplyRequest, plan: AppPlan, config_sha: str, who: str) -> str:
    reason = re.sub(r"\s+", " ", request.reason).strip()[:200] or "-"
    return f"manual-deploy by {who}; reason: {reason}; image: {plan.image_ref}; config: {config_sha[:8]}"


# --- orchestration ---------------------------------------------------------------------------------


class Apply:
    """One `apply` run: shared phases first, then each app's lock → upgrade → verify → record."""

    def __init__(self, config: Config, request: ApplyRequest, out: Output):
        self.config = config
        self.request = request
        self.out = out
        self.phases = Phases(out)
        self.env = config.environment(request.env)
        self.target: Target | None = None
        self.deploy: deployconfig.DeployConfig | None = None
        self.helm: HelmDriver | None = None
        self.kube = None
        self._kube_guard = threading.Lock()
        self.locks: dict[str, DeployLock] = {}
        self.status_reads: dict[str, StatusRead] = {}
        self.git_dir = state.find_git_dir(request.repo)
        self.recorded = state.load(self.git_dir) if self.git_dir else {}

    # shared phases -------------------------------------------------------------------------------

    def prepare(self) -> list[AppPlan]:
        request, config = self.request, self.config
        _validate_flags(request)
        _warm_up_kubernetes_client()
        names = choose_apps(request, self.recorded)
        apps = [config.app(name) for name in dict.fromkeys(names)]
        with self.phases("target"):
            self.target = resolve_target(config, request.env, kubeconfig=request.kubeconfig, context=request.kube_context, out=self.out)
            self.out.info(f"  {self.target.banner()}")
        self._start_status_reads(apps)
        try:
            return self._image_and_config(apps)
        except BaseException:
            self.close()
            raise

    def _start_status_reads(self, apps: list[ResolvedApp]) -> None:
        """Every app's `helm status` (up to MAX_PARALLEL_APPS) runs in the background from here on:
        the plan needs it, and it costs helm a cluster round trip that the image and config phases
        would otherwise wait in front of. Read-only, and only once the target is checked."""
        executable = find_helm(self.config.helm.executable)
        for app in apps[:MAX_PARALLEL_APPS]:
            self.status_reads[app.name] = StatusRead(executable, app.release, self.target.namespace,
                                                     kubeconfig=self.request.kubeconfig, context=self.target.context)

    def close(self) -> None:
        """Stop the status reads a failed or interrupted run did not use (safe to call twice)."""
        while self.status_reads:
            self.status_reads.popitem()[1].stop()

    def _image_and_config(self, apps: list[ResolvedApp]) -> list[AppPlan]:
        request, config = self.request, self.config
        plans = []
        with self.phases("image"):
            wanted = [(app, *image_for(app, request, self.recorded, single=len(apps) == 1)) for app in apps]
            digests = resolve_images(config, wanted, self.out)
            for (app, tag, _), digest in zip(wanted, digests):
                pinned = None if request.no_digest else digest
                image_ref = reference(app.image_repo, tag, pinned)
                image_value = chart_value(app.image_style, app.image_repo, tag, pinned)
                if app.image_style == "tag":
                    self.out.warn(f"{app.name}'s chart takes a bare tag: the image cannot be pinned by digest")
                plans.append(AppPlan(app=app, tag=tag, image_ref=image_ref, image_value=image_value, digest=digest, replicas=None, values=[]))
                self.out.info(f"  {app.name}: {image_ref}")
        with self.phases("config"):
            ref = request.config_ref or self.env.config_branch
            self.out.step(f"fetching {ref} of {redact(config.deployment_repo.url)}")
            self.deploy = deployconfig.checkout(config.deployment_repo.url, ref)
            self.out.info(f"  config {ref} at {self.deploy.sha[:12]}")
            for plan in plans:
                plan.replicas = self._replicas(plan.app)
                plan.values = helm_values(self.deploy, plan.app, request.env, plan.image_value, plan.replicas)
        return plans

    def _replicas(self, app: ResolvedApp) -> int | None:
        if app.replicas_variable is None:
            if self.request.replicas is not None:
                self.out.warn(f"{app.name}'s chart hard-codes its replicas: --replicas has no effect on it")
            return None
        return deployconfig.replica_count(self.deploy, self.request.env, app.replicas_variable, self.request.replicas)

    def _helm(self) -> HelmDriver:
        if self.helm is None:
            self.helm = HelmDriver(
                find_helm(self.config.helm.executable),
                kubeconfig=self.request.kubeconfig,
                context=self.target.context,
                timeout_s=self.request.timeout_s,
            )
            self.out.debug(f"helm {self.helm.version} at {self.helm.executable}")
        return self.helm

    async def plan(self, plans: list[AppPlan]) -> None:
        """Read every app's live release at once; each helm read is a process of its own."""
        semaphore = asyncio.Semaphore(MAX_PARALLEL_APPS)

        async def one(plan: AppPlan) -> None:
            async with semaphore:
                await self._plan_one(plan)

        await asyncio.gather(*(one(plan) for plan in plans))
        for plan in plans:
            self.out.info(f"  {self._plan_line(plan)}")

    async def _plan_one(self, plan: AppPlan) -> None:
        helm, namespace = self._helm(), self.target.namespace
        release = plan.app.release
        chart_dir = self.deploy.chart_dir(plan.app.chart)
        chart = asyncio.create_task(helm.chart(chart_dir))  # meanwhile: the upgrade then starts at once
        started = self.status_reads.pop(plan.app.name, None)
        try:
            if started:
                plan.current, values = await asyncio.to_thread(started.result)
            else:
                plan.current, values = await helm.current_and_values(release, namespace)
            if plan.current:
                plan.current_values = values
        except Exception as exc:  # pyhelm3 errors: cluster unreachable, auth
            await asyncio.gather(chart, return_exceptions=True)
            raise helm_error(exc, f"cannot read release {release} in {self.target.context}/{namespace}") from None
        try:
            plan.chart = await chart
        except Exception as exc:
            raise helm_error(exc, f"helm cannot read the chart {chart_dir}") from None
        self._refuse_pending(plan)
        new_values = _merged(plan.values)
        plan.unchanged = bool(
            plan.current
            and plan.current.status == "deployed"
            and plan.current_values == new_values
            and f"config: {self.deploy.sha[:8]}" in plan.current.description
        )
        if plan.unchanged:
            drift = await asyncio.to_thread(self._live_drift, plan)
            if drift:
                plan.unchanged = False
                self.out.warn(f"{plan.app.name}: the cluster differs from revision {plan.current.number} ({drift}); re-applying it")

    def _live_drift(self, plan: AppPlan) -> str | None:
        """What someone changed behind helm's back (kubectl set image/scale), or None."""
        from kubernetes.client.exceptions import ApiException

        apps_api, _ = rollout_apis()
        try:
            deployment = apps_api(self.kube_client()).read_namespaced_deployment(plan.app.release, self.target.namespace)
        except ApiException as exc:
            return "its Deployment is missing" if exc.status == 404 else None
        images = [c.image for c in deployment.spec.template.spec.containers]
        if not any(same_image(image, plan.image_value) for image in images):
            return f"it runs {', '.join(images)}"
        if plan.replicas is not None and deployment.spec.replicas != plan.replicas:
            return f"{deployment.spec.replicas} replicas instead of {plan.replicas}"
        return None

    def _plan_line(self, plan: AppPlan) -> str:
        new = f"image {plan.image_value}" + (f", replicas {plan.replicas}" if plan.replicas is not None else "")
        if plan.current is None:
            return f"{plan.app.name}: first install → {new}"
        old_image = plan.current_values.get("image", "?")
        old_replicas = plan.current_values.get("replicas")
        old = f"revision {plan.current.number} ({plan.current.status}), image {old_image}" + (
            f", replicas {old_replicas}" if old_replicas is not None else ""
        )
        if plan.unchanged:
            return f"{plan.app.name}: no change — {old}"
        return f"{plan.app.name}: {old} → {new}"

    def _refuse_pending(self, plan: AppPlan) -> None:
        current = plan.current
        if not current or current.status not in PENDING or self.request.recover:
            return
        release, ns, ctx = plan.app.release, self.target.namespace, self.target.context
        raise Refused(
            f"release {release} is stuck in {current.status} (revision {current.number}); another deploy may be running or died",
            hint=(
                f"if nobody is deploying: `manual-deploy apply --env {self.request.env} --app {plan.app.name} --recover` "
                f"(rolls it back first), or by hand `helm rollback {release} --namespace {ns} --kube-context {ctx}`"
            ),
        )

    async def diff(self, plan: AppPlan) -> str:
        helm, ns = self._helm(), self.target.namespace
        chart = self.deploy.chart_dir(plan.app.chart)
        new = await helm.template(plan.app.release, chart, plan.values, ns)
        old = await helm.manifest(plan.app.release, ns) if plan.current else ""
        lines = difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True),
            fromfile=f"{plan.app.release} (live revision {plan.current.number if plan.current else '-'})",
            tofile=f"{plan.app.release} (new)",
        )
        return "".join(lines)

    def confirm(self, plans: list[AppPlan]) -> None:
        if all(p.unchanged for p in plans):
            return
        confirm_env(self.request.env, self.env.confirm, self.request.yes, self.out, self.target.context)

    # per app -------------------------------------------------------------------------------------

    def kube_client(self):
        with self._kube_guard:  # the lock threads and the plan's drift check may ask at the same time
            if self.kube is None:
                self.kube = api_client(self.target)
            return self.kube

    async def lock_all(self, plans: list[AppPlan]) -> None:
        """Every app's deploy lock, or none: a refusal for one app leaves all of them untouched.

        Always before anything is written: during the plan when nobody is asked (so it costs no time
        of its own), else right after the confirmation (see `_run_async`).
        """

        def take(plan: AppPlan) -> DeployLock:
            lock = DeployLock(self.kube_client(), self.target.namespace, plan.app.name, reason=self.request.reason,
                              duration_s=int(self.request.timeout_s) + 300)
            self.locks[plan.app.name] = lock
            lock.acquire(break_lock=self.request.break_lock)
            return lock

        outcomes = await asyncio.gather(*(asyncio.to_thread(take, plan) for plan in plans), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            await self.release_locks()
            refusals = [f for f in failures if isinstance(f, ManualDeployError)]
            if refusals:
                raise max(refusals, key=lambda e: e.exit_code == 3)
            raise failures[0]
        for lock in outcomes:
            if lock.broken:
                self.out.warn(f"took over the deploy lock {lock.name} from {lock.broken.identity}")

    async def release_locks(self, apps: list[str] | None = None) -> None:
        """Give back the locks of `apps` (default: all); safe to call twice."""
        names = list(self.locks) if apps is None else [a for a in apps if a in self.locks]
        await asyncio.gather(*(asyncio.to_thread(self.locks[name].release) for name in names))

    async def deploy_one(self, plan: AppPlan) -> AppResult:
        phases = Phases(self.out, prefix=f"[{plan.app.name}] ")
        result = AppResult(
            app=plan.app.name, env=self.request.env, result="failed", image=plan.image_ref, digest=plan.digest,
            replicas=plan.replicas, old_revision=plan.current.number if plan.current else None, new_revision=None,
            config_sha=self.deploy.sha,
        )
        if plan.unchanged:
            result.result, result.new_revision, result.message = "unchanged", result.old_revision, "already live; nothing to do"
            return result
        lock = self.locks[plan.app.name]
        try:
            if self.request.recover and plan.current and plan.current.status in PENDING:
                with phases("recover"):
                    await self._recover(plan)
            if self.request.force_refresh:
                with phases("force-refresh"):
                    await asyncio.to_thread(self._delete_deployment, plan)
            with phases("upgrade+verify"):
                revision = await self._upgrade_and_verify(plan)
            result.new_revision = revision.number
            check = self._post_check_argv()
            if check:
                with phases("post-check"):
                    await self._post_check(plan, check, revision)
            result.result = "deployed"
            result.message = f"revision {revision.number} is live with {plan.image_ref}"
        except ManualDeployError as exc:
            result.message = exc.message
            raise
        finally:
            await asyncio.to_thread(lock.release)
            result.timings = {**self.phases.timings, **phases.timings}
            self._audit(plan, result, lock)
        return result

    def _post_check_argv(self) -> list[str] | None:
        return list(self.request.post_check) if self.request.post_check else self.env.post_check

    async def _post_check(self, plan: AppPlan, argv: list[str], revision: Revision) -> None:
        from manual_deploy.postcheck import run_post_check

        try:
            await asyncio.to_thread(
                run_post_check, argv, env=self.request.env, app=plan.app.name, image=plan.image_value,
                namespace=self.target.namespace, timeout_s=self.request.timeout_s, out=self.out,
            )
        except OperationFailed as exc:
            rollback = f"manual-deploy rollback --env {self.request.env} --app {plan.app.name}"
            if self.request.rollback_on_check_failure and plan.current:
                back = await self._roll_back_after_failure(plan)
                raise OperationFailed(f"{plan.app.name}: revision {revision.number} deployed but {exc.message}; {back}") from None
            raise OperationFailed(
                f"{plan.app.name}: revision {revision.number} is live but {exc.message}",
                hint=f"if the new version is at fault: `{rollback}` (or re-run apply with --rollback-on-check-failure)",
            ) from None

    def _delete_deployment(self, plan: AppPlan) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        self.out.warn(f"--force-refresh: deleting deployment {plan.app.release} first, as the Makefile does — expect downtime")
        try:
            client.AppsV1Api(self.kube_client()).delete_namespaced_deployment(plan.app.release, self.target.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise OperationFailed(f"cannot delete deployment {plan.app.release}: HTTP {exc.status}") from None

    async def _recover(self, plan: AppPlan) -> None:
        helm, ns = self._helm(), self.target.namespace
        previous = await self._last_good(plan)
        if previous is None:
            self.out.warn(f"{plan.app.release}: no good revision to go back to; uninstalling the stuck install")
            await helm.uninstall(plan.app.release, ns, timeout_s=120)
            plan.current = None
        else:
            self.out.step(f"{plan.app.release}: rolling back the stuck {plan.current.status} to revision {previous}")
            await helm.rollback(plan.app.release, ns, previous, timeout_s=min(self.request.timeout_s, 300))
            plan.current = await helm.current(plan.app.release, ns)

    async def _last_good(self, plan: AppPlan, before: int | None = None) -> int | None:
        history = await self._helm().history(plan.app.release, self.target.namespace)
        good = [r.number for r in history if r.status in ("deployed", "superseded") and (before is None or r.number < before)]
        return max(good) if good else None

    async def _upgrade_and_verify(self, plan: AppPlan) -> Revision:
        helm, ns = self._helm(), self.target.namespace
        from manual_deploy.lock import holder_identity

        upgrade = asyncio.create_task(
            helm.upgrade(
                plan.app.release, plan.chart, plan.values, namespace=ns,
                description=description(self.request, plan, self.deploy.sha, holder_identity()),
                timeout_s=self.request.timeout_s,
            )
        )
        # helm first: while it renders the chart and writes the release, the API server and helm have
        # the CPU to themselves; then the verifier is built in a thread (its kubernetes API modules
        # take ≈ 0.5 s of CPU to import). Its first look is due a second later anyway.
        await asyncio.wait({upgrade}, timeout=HELM_HEAD_START_S)
        verifier = await asyncio.to_thread(RolloutVerifier, self.kube_client(), ns, plan.app.release, grace_s=self.request.grace_s)
        failure = await watch_helm(upgrade, verifier, self.out, plan.app.name)
        if failure is not None:
            self.out.error(f"{plan.app.name}: rollout failed, stopping helm and rolling back")
            self.out.info(failure.report())
            back = await self._roll_back_after_failure(plan)
            raise OperationFailed(
                f"{plan.app.name}: {failure.reason} in pod {failure.pod} for {format_duration(self.request.grace_s)}; {back}",
                hint=f"fix the image, then `manual-deploy apply --env {self.request.env} --app {plan.app.name} --tag <fixed tag>`",
            )
        try:
            revision = upgrade.result()
        except Exception as exc:
            back = await self._describe_after_helm_failure(plan)
            seen = verifier.waited_for()
            waited = f"; while helm waited: {seen}" if seen else ""
            error = helm_error(exc, f"{plan.app.name}: helm upgrade failed ({back}{waited})")
            error.hint = (f"see what runs now: `manual-deploy status --env {self.request.env} --app {plan.app.name}`; "
                          f"fix the cause, or give it longer with --timeout, then re-run apply")
            raise error from None
        await self._final_check(plan, verifier)
        return revision

    async def _roll_back_after_failure(self, plan: AppPlan) -> str:
        """What the roll back left live, as the tail of the failure's message.

        Never raises for helm's errors: the failure that made us roll back must stay the message,
        with the roll back's own failure and where to look added to it.
        """
        try:
            return await self._roll_back(plan)
        except Exception as exc:  # noqa: BLE001 - pyhelm3 errors: cluster unreachable, auth, timeout
            why = helm_error(exc, "rolling back failed too").message
            return f"{why}; see what runs now: `manual-deploy status --env {self.request.env} --app {plan.app.name}`"

    async def _roll_back(self, plan: AppPlan) -> str:
        """After we stopped helm: make sure the previous revision is what runs."""
        helm, ns = self._helm(), self.target.namespace
        current = await helm.current(plan.app.release, ns)
        old = plan.current.number if plan.current else None
        image = (plan.current_values or {}).get("image", "the previous image")
        if current and old and current.number > old and current.status == "deployed" and current.description.lower().startswith("rollback"):
            return f"rolled back: revision {current.number} is live again with {image}"
        if old is None:
            await helm.uninstall(plan.app.release, ns, timeout_s=120)
            return "the first install was removed again; nothing of it is left"
        previous = await self._last_good(plan, before=old + 1) or old  # never the revision this run made
        await helm.rollback(plan.app.release, ns, previous, timeout_s=min(self.request.timeout_s, 300))
        now = await helm.current(plan.app.release, ns)
        return f"rolled back to revision {previous}: revision {now.number if now else '?'} is live again with {image}"

    async def _describe_after_helm_failure(self, plan: AppPlan) -> str:
        try:
            current = await self._helm().current(plan.app.release, self.target.namespace)
        except Exception:
            return "release state unknown"
        if current is None:
            return "nothing installed"
        return f"release now at revision {current.number}, {current.status}: {current.description}"

    async def _final_check(self, plan: AppPlan, verifier: RolloutVerifier) -> None:
        """helm says ready; prove the Deployment rolled out and every new pod runs the new image."""
        deadline = time.monotonic() + 30
        while True:
            verdict, failure = await asyncio.to_thread(verifier.check)
            if verdict.state == "done" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if verdict.state != "done":
            raise OperationFailed(f"{plan.app.name}: helm reported success but {verdict.message}")
        wrong = verifier.images_live(plan.image_value)
        if wrong:
            raise OperationFailed(f"{plan.app.name}: pods not running {plan.image_value}: {'; '.join(wrong)}")
        self.out.success(f"{plan.app.name}: {verdict.message}, all on {plan.image_value}")

    def _audit(self, plan: AppPlan, result: AppResult, lock: DeployLock) -> None:
        entry = {
            "command": self.request.command,
            "reason": self.request.reason,
            "env": self.request.env,
            "context": self.target.context if self.target else None,
            "namespace": self.target.namespace if self.target else None,
            "app": plan.app.name,
            "image": plan.image_ref,
            "digest": plan.digest,
            "replicas": plan.replicas,
            "config_sha": self.deploy.sha if self.deploy else None,
            "old_revision": result.old_revision,
            "new_revision": result.new_revision,
            "result": result.result,
            "message": result.message,
            "timings": result.timings,
            "lock_broken_from": lock.broken.identity if lock.broken else None,
        }
        audit.record(entry)


async def watch_helm(task: asyncio.Task, verifier: RolloutVerifier, out: Output, label: str):
    """Poll the rollout while helm waits; on a pod failure past grace stop helm and return the failure.

    helm's own --wait cannot tell a crash-looping pod from a slow one (helm 3 waits out --timeout);
    this can. Whatever happens (also Ctrl-C), helm is not left running.
    """
    started = last_line = time.monotonic()
    failure = None
    message = "waiting for helm"
    unreadable = False
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if done:
                break
            try:
                verdict, failure = await asyncio.to_thread(verifier.check)
                message, unreadable = verdict.message, False
            except Exception as exc:  # noqa: BLE001 - the pod check only speeds up a failure; helm's --wait still decides
                if not unreadable:
                    out.warn(f"  {label}: cannot read the rollout ({_why(exc)}); helm's own wait still applies")
                message, unreadable = "waiting for helm (rollout unreadable)", True
            if failure is not None:
                break
            if time.monotonic() - last_line >= 9:
                last_line = time.monotonic()
                out.info(f"  {label}: {message} ({format_duration(last_line - started)} elapsed)")
    except BaseException:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
    if failure is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return failure


def _why(exc: Exception) -> str:
    """A one-line cause without the response body or headers an ApiException would print."""
    status = getattr(exc, "status", None)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    return type(exc).__name__


def confirm_env(env: str, needs_confirmation: bool, yes: bool, out: Output, context: str, action: str = "deploy to") -> None:
    """prod-like envs: the engineer types the env name; no terminal and no --yes → refuse, never hang."""
    if not needs_confirmation or yes:
        return
    if not sys.stdin.isatty():
        raise Refused(f"{action} {env} needs confirmation and there is no terminal to ask on", hint="re-run with --yes")
    out.info(f"About to {action} {env} ({context}). Type the environment name to continue:")
    try:
        answer = input("> ").strip()
    except EOFError:
        answer = ""
    if answer != env:
        raise Refused(f"confirmation did not match {env!r}; nothing was changed", hint="re-run and type the env name, or pass --yes")


def _merged(values: list[dict]) -> dict:
    """The values helm stores for these layers: pyhelm3 merges them (mergeconcat) before sending them."""
    from pyhelm3.client import mergeconcat

    return mergeconcat({}, *values)


def run_apply(config: Config, request: ApplyRequest, out: Output) -> dict[str, Any]:
    """The whole command; returns the JSON-able result, raises a ManualDeployError on failure."""
    run = Apply(config, request, out)
    plans = run.prepare()
    try:
        return asyncio.run(_run_async(run, plans))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted during {run.phases.current or 'apply'}; the deploy lock was released",
            hint=f"check the release: `manual-deploy status --env {request.env}` or `helm status <app> -n {run.env.namespace}`; "
            f"if it is stuck in pending-*, re-run apply with --recover",
        ) from None
    finally:
        run.close()


async def _run_async(run: Apply, plans: list[AppPlan]) -> dict[str, Any]:
    request = run.request
    if request.dry_run:
        with run.phases("plan"):
            await run.plan(plans)
        diffs = {plan.app.name: await run.diff(plan) for plan in plans}
        return {"env": request.env, "dry_run": True, "results": [
            {"app": p.app.name, "result": "dry-run", "unchanged": p.unchanged, "plan": run._plan_line(p), "diff": diffs[p.app.name]}
            for p in plans
        ]}
    # Nobody to ask (--yes, or an env without confirm): the locks are taken while the plan reads the
    # releases. Someone to ask: only after they said yes, so a prompt left open blocks nobody.
    prompt = run.env.confirm and not request.yes
    locking = None if prompt else asyncio.create_task(run.lock_all(plans))
    try:
        with run.phases("plan"):
            await run.plan(plans)
        if prompt:
            with run.phases("confirm"):
                run.confirm(plans)
            locking = asyncio.create_task(run.lock_all([p for p in plans if not p.unchanged]))
        with run.phases("lock"):
            await locking
        if not prompt:
            with run.phases("confirm"):
                run.confirm(plans)  # nothing to ask: --yes, or an env without confirm
        await run.release_locks([p.app.name for p in plans if p.unchanged])
        return await _deploy_all(run, plans)
    finally:
        if locking is not None:
            await asyncio.gather(locking, return_exceptions=True)
        await run.release_locks()


async def _deploy_all(run: Apply, plans: list[AppPlan]) -> dict[str, Any]:
    request = run.request
    from manual_deploy.notify import Notifier

    notifier = Notifier.from_config(run.config, run.out)
    announced = [{"app": p.app.name, "image": p.image_ref} for p in plans if not p.unchanged]
    if announced:
        await asyncio.to_thread(notifier.send, "start", command=request.command, env=request.env, apps=announced, reason=request.reason)
    semaphore = asyncio.Semaphore(MAX_PARALLEL_APPS)

    async def bounded(plan: AppPlan):
        async with semaphore:
            return await run.deploy_one(plan)

    outcomes = await asyncio.gather(*(bounded(p) for p in plans), return_exceptions=True)
    results, errors = [], []
    for plan, outcome in zip(plans, outcomes):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, ManualDeployError):
                outcome = OperationFailed(f"{plan.app.name}: {type(outcome).__name__}: {outcome}")
            errors.append(outcome)
            results.append({"app": plan.app.name, "result": "failed", "message": outcome.message, "exit_code": outcome.exit_code})
        else:
            results.append(outcome.as_dict())
    summary = {"env": request.env, "context": run.target.context, "config_sha": run.deploy.sha, "results": results}
    if announced:
        event = "failure" if errors else "success"
        detail = "; ".join(f"{r['app']}: {r['result']}" + (f" ({r['message']})" if r.get("message") and r["result"] == "failed" else "") for r in results)
        await asyncio.to_thread(notifier.send, event, command=request.command, env=request.env, apps=announced, reason=request.reason, detail=detail)
    if run.git_dir:
        state.record(run.git_dir, "apply", summary)
    if errors:
        worst = max(errors, key=lambda e: (e.exit_code == 1, e.exit_code))
        if len(errors) == 1 and len(plans) == 1:
            worst.details = {**worst.details, "results": results}
            raise worst
        failed = ", ".join(r["app"] for r in results if r["result"] == "failed")
        raise type(worst)(f"{len(errors)} of {len(plans)} apps failed: {failed}", hint=worst.hint, details={"results": results})
    return summary
