"""`apply`: plan what changes for each app, then hand the plan to the guarded release runner.

Phases (krane's model): target → image → config → plan → confirm → lock → upgrade+verify → record.
This module owns the first four (which env and cluster, which image, which values and replicas, what
changes); `manual_deploy.release.runner` owns the rest, the same for every verb that changes a release.
The plan's data and pure rules are `manual_deploy.apply_plan`; what the planner asks goes to the module
that owns it: the registry, the config repo, helm, the cluster, `release.recovery` for a pending release.
"""

from __future__ import annotations

import asyncio
from typing import Any

from manual_deploy import deployconfig, state
from manual_deploy.apply_plan import AppPlan, ApplyRequest, choose_apps, helm_values, image_for, validate_flags
from manual_deploy.config import Config, ResolvedApp
from manual_deploy.console import Output
from manual_deploy.errors import Interrupted, ManualDeployError
from manual_deploy.helm import Revision, find_helm, helm_error, manifest_diff, stored_values
from manual_deploy.images import chart_value, reference
from manual_deploy.kube import Target, resolve_target
from manual_deploy.redact import redact
from manual_deploy.release import description as release_description
from manual_deploy.release.outcome import Phases
from manual_deploy.release.recovery import PendingRecovery
from manual_deploy.release.runner import MAX_PARALLEL_APPS, Change, Guard, ReleaseTransaction
from manual_deploy.release.speed import EarlyStatusReads, warm_up_kubernetes_client



# --- the plan ---------------------------------------------------------------------------------------


class ApplyPlanner:
    """One `apply` run's plan: target, image and config phases, then what changes for each app (the
    guarded release runner does the rest)."""

    def __init__(self, config: Config, request: ApplyRequest, out: Output):
        self.config = config
        self.request = request
        self.out = out
        self.phases = Phases(out)
        self.env = config.environment(request.env)
        self.target: Target | None = None
        self.deploy: deployconfig.DeployConfig | None = None
        self.release: ReleaseTransaction | None = None
        self.recovery: PendingRecovery | None = None
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
        self.recovery = PendingRecovery(self.release, env=request.env, break_lock=request.break_lock,
                                        recover=request.recover, timeout_s=request.timeout_s, out=self.out)
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
            digests = self._verified_digests(wanted)
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

    def _verified_digests(self, wanted: list[tuple[ResolvedApp, str, str | None]]) -> list[str]:
        """The registry's digest of every wanted image, checked against the digest asked for (if any)."""
        from manual_deploy.registry import verified_digests

        return verified_digests(self.config.registry.url, [(app.image_repo, tag, digest) for app, tag, digest in wanted],
                                parallel=MAX_PARALLEL_APPS)

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
            self.out.info(f"  {plan.describe()}")

    async def _plan_one(self, plan: AppPlan) -> None:
        helm, namespace = self.release.helm(), self.target.namespace
        release = plan.app.release
        chart_dir = self.deploy.chart_dir(plan.app.chart)
        chart = asyncio.create_task(helm.chart(chart_dir))  # meanwhile: the upgrade then starts at once
        try:
            plan.current, values = await self.release.read_release(plan.app, self.early_reads.take(plan.app.name))
            if plan.current:
                plan.current_values = values
        except Exception as exc:  # pyhelm3 errors: cluster unreachable, auth
            await asyncio.gather(chart, return_exceptions=True)
            raise helm_error(exc, f"cannot read release {release} in {self.target.context}/{namespace}") from None
        try:
            plan.chart = await chart
        except Exception as exc:
            raise helm_error(exc, f"helm cannot read the chart {chart_dir}") from None
        plan.recover = await asyncio.to_thread(self.recovery.must_recover, plan.app, plan.tag, plan.current)
        plan.unchanged = bool(
            plan.current
            and plan.current.status == "deployed"
            and plan.current_values == stored_values(plan.values)
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
                plan.current = await self.recovery.recover(app, plan.current)
                change.old = plan.current  # the upgrade now follows the recovered revision

            before.append(("recover", recover))
        if request.force_refresh:
            before.append(("force-refresh", lambda: self._force_refresh(app)))
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

    async def _force_refresh(self, app: ResolvedApp) -> None:
        from manual_deploy.deployment_delete import delete_deployment

        self.out.warn(f"--force-refresh: deleting deployment {app.release} first, as the Makefile does — expect downtime")
        await asyncio.to_thread(delete_deployment, self.release.kube_client(), self.target.namespace, app.release)

    async def _post_check(self, change: Change, plan: AppPlan, argv: list[str], revision: Revision) -> None:
        from manual_deploy.postcheck import check_deployed

        request = self.request
        undo = (lambda: self.release.undo(change)) if request.rollback_on_check_failure and plan.current else None
        await check_deployed(argv, env=request.env, app=plan.app.name, image=plan.image_value, namespace=self.target.namespace,
                             timeout_s=request.timeout_s, out=self.out, revision=revision.number, undo=undo)

    async def diff(self, plan: AppPlan) -> str:
        """What the dry run shows of one app: its live manifest against the new one."""
        return await manifest_diff(self.release.helm(), plan.app.release, self.deploy.chart_dir(plan.app.chart), plan.values,
                                   self.target.namespace, live_revision=plan.current.number if plan.current else None)


def run_apply(config: Config, request: ApplyRequest, out: Output) -> dict[str, Any]:
    """The whole command; returns the JSON-able result, raises a ManualDeployError on failure."""
    run = ApplyPlanner(config, request, out)
    plans = run.prepare()
    try:
        return asyncio.run(_run_async(run, plans))
    except KeyboardInterrupt:
        raise run.release.interrupted() if run.release else Interrupted("interrupted before the deploy started") from None
    finally:
        run.close()


async def _run_async(run: ApplyPlanner, plans: list[AppPlan]) -> dict[str, Any]:
    request = run.request
    if request.dry_run:
        with run.phases("plan"):
            await run.plan(plans)
        diffs = {plan.app.name: await run.diff(plan) for plan in plans}
        return {"env": request.env, "dry_run": True, "results": [
            {"app": p.app.name, "result": "dry-run", "unchanged": p.unchanged, "plan": p.describe(), "diff": diffs[p.app.name]}
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
