"""`rollback`: go back to an earlier helm revision with the same care as `apply`.

GitLab's answer to a bad deploy was "re-run the old job"; here it is the previous successfully
deployed revision (or --revision N), shown before anything changes, then the same target check,
confirmation, lock, wait, fail-fast verification, audit record and team message as a deploy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from manual_deploy import audit
from manual_deploy.config import Config
from manual_deploy.console import Output
from manual_deploy.apply import Phases, confirm_env, watch_helm
from manual_deploy.errors import Interrupted, ManualDeployError, OperationFailed, Refused
from manual_deploy.helm import HelmDriver, Revision, find_helm, helm_error
from manual_deploy.kube import api_client, resolve_target
from manual_deploy.lock import DeployLock
from manual_deploy.verify import RolloutVerifier

@dataclass(frozen=True)
class RollbackRequest:
    env: str
    app: str
    revision: int | None = None
    yes: bool = False
    reason: str = ""
    kubeconfig: str | None = None
    kube_context: str | None = None
    timeout_s: float = 600.0
    grace_s: float = 60.0
    break_lock: bool = False


def choose_revision(history: list[Revision], current: Revision, wanted: int | None) -> Revision:
    """--revision N, else the newest earlier revision that was successfully deployed (now superseded)."""
    earlier = [r for r in history if r.number < current.number]
    if wanted is not None:
        match = next((r for r in history if r.number == wanted), None)
        if match is None:
            known = ", ".join(str(r.number) for r in history)
            raise Refused(f"revision {wanted} is not in the release history (revisions: {known})")
        if match.number == current.number:
            raise Refused(f"revision {wanted} is already the current revision; nothing to roll back to")
        return match
    good = [r for r in earlier if r.status in ("superseded", "deployed")]
    if not good:
        raise Refused(f"no earlier successfully deployed revision before {current.number}", hint="pass --revision N (see `helm history`)")
    return max(good, key=lambda r: r.number)


def who_deployed(description: str) -> str:
    """user@host from an apply-made description; any other description as it is."""
    from manual_deploy.status import parse_description, who

    made = parse_description(description)
    return who(made.by) if made else (description or "unknown")


def run_rollback(config: Config, request: RollbackRequest, out: Output) -> dict[str, Any]:
    try:
        return asyncio.run(_rollback(config, request, out))
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted during the rollback; the deploy lock was released",
            hint=f"check `helm status {request.app} -n {config.environment(request.env).namespace}`; if pending-*, "
            f"run `manual-deploy apply --env {request.env} --app {request.app} --recover`",
        ) from None


async def _rollback(config: Config, request: RollbackRequest, out: Output) -> dict[str, Any]:
    app = config.app(request.app)
    env = config.environment(request.env)
    phases = Phases(out)
    with phases("target"):
        target = resolve_target(config, request.env, kubeconfig=request.kubeconfig, context=request.kube_context, out=out)
        out.info(f"  {target.banner()}")
    helm = HelmDriver(find_helm(config.helm.executable), kubeconfig=request.kubeconfig, context=target.context, timeout_s=request.timeout_s)
    ns = target.namespace
    with phases("plan"):
        try:
            current = await helm.current(app.release, ns)
            history = await helm.history(app.release, ns) if current else []
        except Exception as exc:
            raise helm_error(exc, f"cannot read release {app.release} in {target.context}/{ns}") from None
        if current is None:
            raise Refused(f"{app.name} has no release in {target.context}/{ns}; nothing to roll back")
        chosen = choose_revision(history, current, request.revision)
        now_image = (await helm.values(app.release, ns, current.number)).get("image", "?")
        back_image = (await helm.values(app.release, ns, chosen.number)).get("image", "?")
        out.info(
            f"  {app.name}: revision {current.number} ({current.status}, {now_image}) → revision {chosen.number} "
            f"({back_image}, deployed {chosen.updated} by {who_deployed(chosen.description)})"
        )
    with phases("confirm"):
        confirm_env(request.env, env.confirm, request.yes, out, target.context, action="roll back")
    from manual_deploy.notify import Notifier

    notifier = Notifier.from_config(config, out)
    apps = [{"app": app.name, "image": back_image}]
    await asyncio.to_thread(notifier.send, "start", command="rollback", env=request.env, apps=apps, reason=request.reason)
    kube = api_client(target)
    lock = DeployLock(kube, ns, app.name, reason=f"rollback: {request.reason}", duration_s=int(request.timeout_s) + 300)
    result: dict[str, Any] = {
        "command": "rollback", "env": request.env, "app": app.name, "reason": request.reason, "context": target.context,
        "namespace": ns, "image": back_image, "old_revision": current.number, "to_revision": chosen.number,
        "new_revision": None, "result": "failed", "message": "",
    }
    try:
        with phases("lock"):
            await asyncio.to_thread(lock.acquire, break_lock=request.break_lock)
        with phases("rollback+verify"):
            task = asyncio.create_task(helm.rollback(app.release, ns, chosen.number, timeout_s=request.timeout_s))
            verifier = RolloutVerifier(kube, ns, app.release, grace_s=request.grace_s)
            failure = await watch_helm(task, verifier, out, app.name)
            if failure is not None:
                out.info(failure.report())
                raise OperationFailed(
                    f"{app.name}: revision {chosen.number}'s pods fail too ({failure.reason} in {failure.pod})",
                    hint=f"pick another revision: `helm history {app.release} -n {ns}` then `manual-deploy rollback --env {request.env} --app {app.name} --revision N`",
                )
            try:
                task.result()
            except Exception as exc:
                seen = verifier.waited_for()
                raise helm_error(exc, f"{app.name}: helm rollback failed" + (f" (while helm waited: {seen})" if seen else "")) from None
            after = await helm.current(app.release, ns)
        result.update(result="rolled back", new_revision=after.number if after else None,
                      message=f"revision {after.number if after else '?'} is live with {back_image}")
        out.success(f"{app.name}: {result['message']}")
        return result
    except ManualDeployError as exc:
        result["message"] = exc.message
        raise
    finally:
        await asyncio.to_thread(lock.release)
        result["timings"] = phases.timings
        result["lock_broken_from"] = lock.broken.identity if lock.broken else None
        audit.record({k: v for k, v in result.items() if k != "command"} | {"command": "rollback"})
        event = "success" if result["result"] == "rolled back" else "failure"
        await asyncio.to_thread(notifier.send, event, command="rollback", env=request.env, apps=apps, reason=request.reason, detail=result["message"])
