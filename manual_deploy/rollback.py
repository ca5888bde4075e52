"""`rollback`: go back to an earlier helm revision with the same care as `apply`.

GitLab's answer to a bad deploy was "re-run the old job"; here it is the previous successfully
deployed revision (or --revision N), shown before anything changes, then the same target check,
confirmation, lock, wait, fail-fast verification, audit record and team message as a deploy.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from manual_deploy.config import Config
from manual_deploy.console import Output
from manual_deploy.errors import Interrupted, ManualDeployError, Refused, UsageError
from manual_deploy.helm import Revision, helm_error
from manual_deploy.images import ImageRef
from manual_deploy.kube import resolve_target
from manual_deploy.release.description import deployed_by
from manual_deploy.release.outcome import Phases
from manual_deploy.release.runner import Change, Guard, ReleaseTransaction


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
            raise Refused(
                f"revision {wanted} is not in the release history (revisions: {known})",
                hint="pass --revision N with one of those (see `manual-deploy history --env ENV --app APP`), "
                "or leave it out for the previous good one",
            )
        if match.number == current.number:
            raise Refused(f"revision {wanted} is already the current revision; nothing to roll back to")
        return match
    good = [r for r in earlier if r.status in ("superseded", "deployed")]
    if not good:
        raise Refused(f"no earlier successfully deployed revision before {current.number}", hint="pass --revision N (see `helm history`)")
    return max(good, key=lambda r: r.number)


def run_rollback(config: Config, request: RollbackRequest, out: Output) -> dict[str, Any]:
    if request.revision is not None and request.revision < 1:
        raise UsageError(
            f"invalid --revision {request.revision}: helm revisions are numbered from 1",
            hint="pass --revision N with N 1 or more (see `helm history` or `manual-deploy history`), "
            "or leave it out for the previous good one",
        )
    transaction: list[ReleaseTransaction] = []
    try:
        return asyncio.run(_rollback(config, request, out, transaction))
    except KeyboardInterrupt:
        raise (transaction[0].interrupted() if transaction else Interrupted("interrupted before the rollback started")) from None


async def _rollback(config: Config, request: RollbackRequest, out: Output, transaction: list) -> dict[str, Any]:
    app = config.app(request.app)
    env = config.environment(request.env)
    phases = Phases(out)
    with phases("target"):
        target = resolve_target(config, request.env, kubeconfig=request.kubeconfig, context=request.kube_context, out=out)
        out.info(f"  {target.banner()}")
    guard = Guard(command="rollback", env=request.env, reason=request.reason, timeout_s=request.timeout_s,
                  grace_s=request.grace_s, yes=request.yes, break_lock=request.break_lock, kubeconfig=request.kubeconfig,
                  confirm=env.confirm)
    release = ReleaseTransaction(config, guard, target, out, phases)
    transaction.append(release)
    planned: dict[str, Any] = {}

    async def plan() -> list[Change]:
        change = await _plan(release, app, request, out)
        planned.update(image=change.image_ref, to_revision=change.record["to_revision"])
        return [change]

    try:
        [result] = await release.run([app.name], plan)
    except ManualDeployError as exc:
        [result] = exc.details.get("results") or [{"result": "failed", "message": exc.message}]
        raise
    return {"command": "rollback", "env": request.env, "app": app.name, "reason": request.reason,
            "context": target.context, "namespace": target.namespace, **planned, **result}


async def _plan(release: ReleaseTransaction, app, request: RollbackRequest, out: Output) -> Change:
    """Which revision to go back to, shown before anything changes."""
    helm, ns, target = release.helm(), release.target.namespace, release.target
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
        f"({back_image}, deployed {chosen.updated} by {deployed_by(chosen.description)})"
    )

    async def roll_back(driver):
        await driver.rollback(app.release, ns, chosen.number, timeout_s=request.timeout_s)

    return Change(
        app=app, action="rollback", start=roll_back, image_ref=back_image, expected_image=back_image, old=current,
        old_image=now_image, undo_to=current.number,
        retry_hint=(f"pick another revision: `helm history {app.release} -n {ns}` then "
                    f"`manual-deploy rollback --env {request.env} --app {app.name} --revision N`"),
        rerun=f"manual-deploy rollback --env {request.env} --app {app.name} --revision {chosen.number}",
        record={"to_revision": chosen.number, "ref": ImageRef.parse(back_image).tag},
    )
