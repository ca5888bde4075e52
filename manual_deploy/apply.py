"""`apply`: plan what changes for each app, then hand the plan to the guarded release runner.

Phases (krane's model): target → image → config → plan → confirm → lock → upgrade+verify → record.
This module owns the first four (which env and cluster, which image, which values and replicas, what
changes); `manual_deploy.release.runner` owns the rest, the same for every verb that changes a release.
"""

from __future__ import annotations

import asyncio
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from manual_deploy import deployconfig, state, validate, yamlio
from manual_deploy.config import Config, ResolvedApp
from manual_deploy.console import Output
from manual_deploy.errors import Interrupted, ManualDeployError, OperationFailed, Refused, UsageError
from manual_deploy.helm import Revision, find_helm, helm_error, network_failure
from manual_deploy.images import ImageRef, chart_value, reference, split_repo
from manual_deploy.kube import Target, resolve_target
from manual_deploy.redact import redact
from manual_deploy.release import description as release_description
from manual_deploy.release.outcome import Phases
from manual_deploy.release.runner import MAX_PARALLEL_APPS, Change, Guard, ReleaseTransaction
from manual_deploy.release.speed import EarlyStatusReads, warm_up_kubernetes_client

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")


def helm_may_run_for(left_by, lock) -> float:
    """How long the helm of the run whose lock we took may still write its release (s).

    A displaced live run notices at its next renewal and stops helm within the watchdog's grace; a
    dead run's watchdog stopped its helm within that grace of the death, which came after its last
    renewal. Past both bounds nobody else's helm runs, and the release can be recovered at once."""
    import time
    from datetime import datetime, timezone

    from manual_deploy.lock import RENEW_EVERY_S
    from manual_deploy.watchdog import STOP_GRACE_S

    if left_by is None or lock is None:
        return 0.0
    margin = RENEW_EVERY_S + STOP_GRACE_S + 2
    since_beat = left_by.heartbeat_age(datetime.now(timezone.utc)) or 0.0
    since_take = time.monotonic() - (lock.taken_at or time.monotonic())
    return max(0.0, margin - since_beat, (margin - since_take) if left_by.state() == "live" else 0.0)


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
    source_ref: str | None = None  # the git tag the image was built from, when its image tag is not one (promote --retag)


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
    recover: bool = False  # pending-*: roll it back once our lock is taken (a dead run's, or --recover)


def validate_flags(request: ApplyRequest) -> None:
    """Bad input fails before the first network call, with nothing changed."""
    if request.config_ref:
        validate.git_rev(request.config_ref)
    if request.tag:
        validate.image_tag(request.tag)
    for app in request.apps:
        validate.app_name(app)
    if request.replicas is not None and request.replicas < 0:
        raise UsageError(f"invalid --replicas {request.replicas}: a replica count cannot be negative",
                         hint="pass --replicas N with N 0 or more, or leave it out to use the config repo's count")


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


# --- the plan ---------------------------------------------------------------------------------------


class Apply:
    """One `apply` run's plan: target, image and config phases, then what changes for each app."""

    def __init__(self, config: Config, request: ApplyRequest, out: Output):
        self.config = config
        self.request = request
        self.out = out
        self.phases = Phases(out)
        self.env = config.environment(request.env)
        self.target: Target | None = None
        self.deploy: deployconfig.DeployConfig | None = None
        self.release: ReleaseTransaction | None = None
        self.early_reads: EarlyStatusReads | None = None
        self.git_dir = state.find_git_dir(request.repo)
        self.recorded = state.load(self.git_dir) if self.git_dir else {}

    def prepare(self) -> list[AppPlan]:
        request, config = self.request, self.config
        validate_flags(request)
        warm_up_kubernetes_client()
        names = choose_apps(request, self.recorded)
        apps = [config.app(name) for name in dict.fromkeys(names)]
        with self.phases("target"):
            self.target = resolve_target(config, request.env, kubeconfig=request.kubeconfig, context=request.kube_context, out=self.out)
            self.out.info(f"  {self.target.banner()}")
        guard = Guard(command=request.command, env=request.env, reason=request.reason, timeout_s=request.timeout_s,
                      grace_s=request.grace_s, yes=request.yes, break_lock=request.break_lock,
                      kubeconfig=request.kubeconfig, confirm=self.env.confirm)
        self.release = ReleaseTransaction(config, guard, self.target, self.out, self.phases)
        self.early_reads = EarlyStatusReads(find_helm(config.helm.executable), self.target.namespace, kubeconfig=request.kubeconfig,
                                            context=self.target.context, releases=[(a.name, a.release) for a in apps])
        try:
            return self._image_and_config(apps)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the early status reads a failed or interrupted run did not use (safe to call twice)."""
        if self.early_reads:
            self.early_reads.close()

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
        helm, namespace = self.release.helm(), self.target.namespace
        release = plan.app.release
        chart_dir = self.deploy.chart_dir(plan.app.chart)
        chart = asyncio.create_task(helm.chart(chart_dir))  # meanwhile: the upgrade then starts at once
        started = self.early_reads.take(plan.app.name)
        read_again = lambda: self.release.read_retrying(lambda: helm.current_and_values(release, namespace), plan.app.name)  # noqa: E731
        try:
            try:
                plan.current, values = await (asyncio.to_thread(started.result) if started else read_again())
            except Exception as exc:  # noqa: BLE001 - a blip while the early read ran: ask again
                if started is None or network_failure(exc) is None:
                    raise
                plan.current, values = await read_again()
            if plan.current:
                plan.current_values = values
        except Exception as exc:  # pyhelm3 errors: cluster unreachable, auth
            await asyncio.gather(chart, return_exceptions=True)
            raise helm_error(exc, f"cannot read release {release} in {self.target.context}/{namespace}") from None
        try:
            plan.chart = await chart
        except Exception as exc:
            raise helm_error(exc, f"helm cannot read the chart {chart_dir}") from None
        await asyncio.to_thread(self._check_pending, plan)
        plan.unchanged = bool(
            plan.current
            and plan.current.status == "deployed"
            and plan.current_values == _merged(plan.values)
            and release_description.from_config(plan.current.description, self.deploy.sha)
        )
        if plan.unchanged:
            drift = await asyncio.to_thread(self._changed_behind_helm, plan)
            if drift:
                plan.unchanged = False
                self.out.warn(f"{plan.app.name}: the cluster differs from revision {plan.current.number} ({drift}); re-applying it")

    def _changed_behind_helm(self, plan: AppPlan) -> str | None:
        """What someone changed behind helm's back (kubectl set image/scale), or None."""
        from manual_deploy.drift import find_drift
        from manual_deploy.live_deployment import peek_deployment
        from manual_deploy.readiness.api import ReadError

        try:
            live = peek_deployment(self.release.kube_client(), self.target.namespace, plan.app.release)
        except ReadError:
            return None  # the drift check only adds a re-apply; helm's own plan stands
        found = find_drift(live, plan.image_value, plan.replicas, plan.app.image_repo)
        return str(found[0]) if found else None

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

    def _check_pending(self, plan: AppPlan) -> None:
        """A release in pending-*: busy while a live run holds its lock (refused); left by a dead run (its
        lock expired or stopped answering, its PID gone) or taken with --break-lock: recovered once our lock
        is taken; stuck with no lock at all (plain helm died): --recover."""
        current = plan.current
        if not current or current.status not in PENDING:
            return
        from manual_deploy.lock import read_holder

        app = plan.app.name
        holder = read_holder(self.release.kube_client(), self.target.namespace, app)
        ours = self.release.locks.get(app)
        if holder is not None and ours is not None and holder.run_id == ours.run.run_id:
            holder = ours.taken_from  # ours already (the lock is taken while the plan reads): whose was it?
        elif holder is not None and holder.state() == "live" and not self.request.break_lock:
            raise Refused(
                f"{app} is being deployed right now by {holder.describe()} "
                f"(release {plan.app.release} is {current.status}, revision {current.number})",
                hint=f"wait for that deploy to finish (`manual-deploy status --env {self.request.env} --app {app}`); "
                f"if you know that run is dead or hung, take it over: `manual-deploy apply --env {self.request.env} --app {app} "
                f"--tag {plan.tag} --break-lock`",
                details={"lock_holder": holder.identity},
            )
        if holder is None and not self.request.recover:
            raise self._stuck(plan)
        plan.recover = True

    def _stuck(self, plan: AppPlan) -> Refused:
        release, ns, ctx, current = plan.app.release, self.target.namespace, self.target.context, plan.current
        return Refused(
            f"release {release} is stuck in {current.status} (revision {current.number}) and no deploy holds its lock",
            hint=(
                f"`manual-deploy apply --env {self.request.env} --app {plan.app.name} --recover` "
                f"(rolls it back first), or by hand `helm rollback {release} --namespace {ns} --kube-context {ctx}`"
            ),
        )

    # what the runner gets ------------------------------------------------------------------------

    def change(self, plan: AppPlan) -> Change:
        """The plan of one app as the runner's Change: upgrade, with recover/force-refresh before and the post-check after."""
        from manual_deploy.lock import holder_identity

        request, app = self.request, plan.app
        ns = self.target.namespace

        async def upgrade(helm):
            return await helm.upgrade(app.release, plan.chart, plan.values, namespace=ns, timeout_s=request.timeout_s,
                                      description=release_description.write(holder_identity(), request.reason, plan.image_ref,
                                                                                    self.deploy.sha))

        before = []
        if plan.recover:
            async def recover() -> None:
                lock = self.release.locks.get(app.name)
                left_by = lock.taken_from if lock is not None else None
                if left_by is None and not request.recover:
                    raise self._stuck(plan)
                await self._recover(plan, left_by)
                change.old = plan.current  # the upgrade now follows the recovered revision

            before.append(("recover", recover))
        if request.force_refresh:
            before.append(("force-refresh", lambda: asyncio.to_thread(delete_deployment, self.release.kube_client(),
                                                                      self.target.namespace, app.release, self.out)))
        check = list(request.post_check) if request.post_check else self.env.post_check
        change = Change(
            app=app, action="upgrade", start=upgrade, image_ref=plan.image_ref, expected_image=plan.image_value,
            old=plan.current, old_image=(plan.current_values or {}).get("image", "the previous image"), unchanged=plan.unchanged,
            retry_hint=f"fix the image, then `manual-deploy apply --env {request.env} --app {app.name} --tag <fixed tag>`",
            rerun=f"manual-deploy apply --env {request.env} --app {app.name} --tag {plan.tag}",
            before=before,
            record={"digest": plan.digest, "replicas": plan.replicas, "config_sha": self.deploy.sha,
                    "ref": request.source_ref or plan.tag, "commit": self._commit_of(plan)},
        )
        if check:
            change.after.append(("post-check", lambda revision: self._post_check(change, plan, check, revision)))
        return change

    def _commit_of(self, plan: AppPlan) -> str | None:
        """The full SHA `tag` recorded for this very image tag in this checkout; else the runner asks the audit log."""
        tagged = self.recorded.get("tag") or {}
        if tagged.get("app") == plan.app.name and tagged.get("tag") == (self.request.source_ref or plan.tag):
            return tagged.get("commit")
        return None

    async def _recover(self, plan: AppPlan, left_by=None) -> None:
        """Bring a pending-* release back to its newest good revision. When another run left it (dead, or
        its lock just taken over), first give that run's helm time to stop (bounded): helm cancels and
        rolls back by itself, and two helms must not write one release."""
        helm, ns, release = self.release.helm(), self.target.namespace, plan.app.release
        wait = helm_may_run_for(left_by, self.release.locks.get(plan.app.name))
        if wait > 0:
            self.out.step(f"{release}: {plan.current.status} was left by {left_by.identity}; "
                          f"waiting up to {wait:.0f} s for its helm to stop")
            settled = await self._settled(release, wait)
            if settled is not None and settled.status not in PENDING:
                plan.current = settled
                self.out.info(f"  {release}: its helm stopped; revision {settled.number} is {settled.status}")
                return
        previous = await self.release.last_good(release)
        if previous is None:
            self.out.warn(f"{release}: no good revision to go back to; uninstalling the stuck install")
            await helm.uninstall(release, ns, timeout_s=120)
            plan.current = None
        else:
            self.out.step(f"{release}: rolling back the stuck {plan.current.status} to revision {previous}")
            await helm.rollback(release, ns, previous, timeout_s=min(self.request.timeout_s, 300))
            plan.current = await helm.current(release, ns)

    async def _settled(self, release: str, wait_s: float) -> Revision | None:
        """The release once it is the same in two reads a second apart and no longer pending, or as it is
        after `wait_s` (progress at least every 10 s)."""
        import time

        helm, ns = self.release.helm(), self.target.namespace
        end = started = time.monotonic()
        end += wait_s
        said, last = started, None
        while True:
            current = await helm.current(release, ns)
            if current is not None and current == last and current.status not in PENDING:
                return current
            if time.monotonic() >= end:
                return current
            if time.monotonic() - said >= 9:
                said = time.monotonic()
                self.out.info(f"  {release}: still {current.status if current else 'gone'} "
                              f"({int(said - started)} s of {wait_s:.0f} s)")
            last = current
            await asyncio.sleep(1.0)

    async def _post_check(self, change: Change, plan: AppPlan, argv: list[str], revision: Revision) -> None:
        from manual_deploy.postcheck import run_post_check

        try:
            await asyncio.to_thread(
                run_post_check, argv, env=self.request.env, app=plan.app.name, image=plan.image_value,
                namespace=self.target.namespace, timeout_s=self.request.timeout_s, out=self.out,
            )
        except OperationFailed as exc:
            rollback = f"manual-deploy rollback --env {self.request.env} --app {plan.app.name}"
            if self.request.rollback_on_check_failure and plan.current:
                back = await self.release.undo(change)
                raise OperationFailed(f"{plan.app.name}: revision {revision.number} deployed but {exc.message}; {back}") from None
            raise OperationFailed(
                f"{plan.app.name}: revision {revision.number} is live but {exc.message}",
                hint=f"if the new version is at fault: `{rollback}` (or re-run apply with --rollback-on-check-failure)",
            ) from None

async def manifest_diff(helm, plan: AppPlan, deploy: deployconfig.DeployConfig, namespace: str) -> str:
    """A unified diff of the live manifest vs `helm template` of the new values: what a dry run shows."""
    new = await helm.template(plan.app.release, deploy.chart_dir(plan.app.chart), plan.values, namespace)
    old = await helm.manifest(plan.app.release, namespace) if plan.current else ""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{plan.app.release} (live revision {plan.current.number if plan.current else '-'})",
        tofile=f"{plan.app.release} (new)",
    )
    return "".join(lines)


def delete_deployment(kube_client, namespace: str, release: str, out: Output) -> None:
    """--force-refresh: what the team's Makefile does before an upgrade (downtime)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    out.warn(f"--force-refresh: deleting deployment {release} first, as the Makefile does — expect downtime")
    try:
        client.AppsV1Api(kube_client).delete_namespaced_deployment(release, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise OperationFailed(f"cannot delete deployment {release}: HTTP {exc.status}") from None


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
        raise run.release.interrupted() if run.release else Interrupted("interrupted before the deploy started") from None
    finally:
        run.close()


async def _run_async(run: Apply, plans: list[AppPlan]) -> dict[str, Any]:
    request = run.request
    if request.dry_run:
        with run.phases("plan"):
            await run.plan(plans)
        diffs = {plan.app.name: await manifest_diff(run.release.helm(), plan, run.deploy, run.target.namespace) for plan in plans}
        return {"env": request.env, "dry_run": True, "results": [
            {"app": p.app.name, "result": "dry-run", "unchanged": p.unchanged, "plan": run._plan_line(p), "diff": diffs[p.app.name]}
            for p in plans
        ]}

    async def plan() -> list[Change]:
        await run.plan(plans)
        return [run.change(p) for p in plans]

    summary = {"env": request.env, "context": run.target.context, "config_sha": None, "results": []}
    try:
        summary["results"] = await run.release.run([p.app.name for p in plans], plan)
    except ManualDeployError as exc:
        summary["results"] = exc.details.get("results", [])
        raise
    finally:
        summary["config_sha"] = run.deploy.sha
        if run.git_dir and summary["results"]:
            state.record(run.git_dir, "apply", summary)
    return summary
