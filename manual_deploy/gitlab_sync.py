"""`gitlab-sync`: post the deployment records that manual deploys could not leave while GitLab was down.

It reads the team's records (every engineer's deploys, kept in each env's cluster, plus this machine's
queue), so anyone on the team can run it, from any machine. Oldest first per project and environment, so
the Environments page ends on what really runs. Each record is posted once across machines: it is
claimed in the cluster before the POST (gitlab_claims.py; the engineer whose claim loses leaves it and
the newer records of its stream to the winner), and GitLab's answer is stored back into the record.
GitLab's own latest records are read before posting, so a POST whose answer was lost is found, not
repeated. A record GitLab cannot take yet (its mirror lacks the commit) is kept, and so is every newer
one of the same stream, so the order on the page stays true; one that can never be posted (its tag is
no git ref) is skipped by a person (`--skip`, gitlab_skip.py). A manual deploy older than a CI deploy
GitLab already shows is not posted: it would show as the newest and the page would lie.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from manual_deploy.config import Config
from manual_deploy.errors import ManualDeployError, OperationFailed, Refused
from manual_deploy.gitlab import (TIMEOUT, TOKEN_ENV, TOKEN_HINT, GitLabAnswerInvalid, GitLabClient, GitLabRefused, GitLabRejected,
                                  GitLabUnreachable, project_id)
from manual_deploy.gitlab_claims import ClaimAnswer
from manual_deploy.gitlab_ledger import Ledger
from manual_deploy.record_queue import TeamEnv
from manual_deploy.gitlab_records import CLOCK_SLACK, SYNC, ManualDeploy
from manual_deploy.timestamps import parse_time

BACK = f"run `{SYNC}` again when GitLab is back"


@dataclass(frozen=True)
class SyncRequest:
    env: str | None = None
    app: str | None = None
    dry_run: bool = False
    kubeconfig: str | None = None


@dataclass
class SyncReport:
    recorded: list[dict[str, Any]] = field(default_factory=list)
    already: list[dict[str, Any]] = field(default_factory=list)
    superseded: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    busy: list[dict[str, Any]] = field(default_factory=list)  # another engineer's sync is recording them now
    would: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[GitLabRefused] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "already_known": self.already, "superseded": self.superseded,
                "kept": self.kept, "being_recorded": self.busy, "would_record": self.would}

    def line(self) -> str:
        parts = [f"{len(self.recorded)} recorded", f"{len(self.already)} already known"]
        parts += [f"{len(self.superseded)} superseded by later CI deploys"] if self.superseded else []
        parts += [f"{len(self.busy)} being recorded by another engineer's gitlab-sync"] if self.busy else []
        parts += [f"{len(self.would)} would be recorded"] if self.would else []
        return ", ".join(parts) + f", {len(self.kept)} kept for the next run"


@dataclass(frozen=True)
class Hold:
    """Why a record must wait; `skippable`: it may never be postable (its tag is no git ref GitLab has)."""

    reason: str
    skippable: bool = False


def _row(deploy: ManualDeploy, **more: Any) -> dict[str, Any]:
    return {"env": deploy.env, "app": deploy.app, "project": deploy.project, "ref": deploy.ref, "sha": deploy.commit,
            "status": deploy.status, "command": deploy.command, "at": deploy.at.isoformat(), "record": deploy.key, **more}


def skip_step(deploy: ManualDeploy) -> str:
    return f'{SYNC} --skip {deploy.key[:12]} --reason "…"'


class Syncer:
    """Posts one stream (project × environment) after another, oldest record first, each claimed first."""

    def __init__(self, client: GitLabClient, ledger: Ledger, out, *, dry_run: bool = False):
        self.client, self.ledger, self.out, self.dry_run = client, ledger, out, dry_run
        self.report = SyncReport()

    def run(self, deploys: list[ManualDeploy]) -> SyncReport:
        """401 and an unreachable GitLab stop everything; a 403/404 keeps only its own stream."""
        streams: dict[tuple[str, str], list[ManualDeploy]] = {}
        for deploy in deploys:
            streams.setdefault((deploy.project, deploy.env), []).append(deploy)
        for items in streams.values():
            try:
                self._stream(items)
            except GitLabRefused as exc:
                if exc.status == 401:
                    raise
                self.report.refusals.append(exc)
                self._keep([d for d in items if self.ledger.outcome(d.key) is None], Hold(exc.message))
        return self.report

    def _stream(self, items: list[ManualDeploy]) -> None:
        existing = self.client.deployments(items[0].project, items[0].env)
        for index, deploy in enumerate(items):
            if self.ledger.outcome(deploy.key):
                continue
            answer = self._claim(deploy)
            if answer.settled is not None or answer.gone:
                self._settled_elsewhere(deploy, answer)
                continue
            if answer.holder is not None:
                self._busy(items[index:], answer.holder)
                return
            if answer.took_over:  # its claimant died: maybe after its POST, so GitLab's list is read again
                self.out.info(f"{deploy.describe()}: {answer.took_over}'s claim is stale; taken over")
                existing = self.client.deployments(deploy.project, deploy.env)
            hold = self._guarded(deploy, existing)
            if hold is not None:
                self._release(deploy)
                self._keep([deploy], hold)
                self._keep(items[index + 1:], Hold(f"waits for the older record of {deploy.ref}, so GitLab's order stays true"))
                return

    def _claim(self, deploy: ManualDeploy) -> ClaimAnswer:
        """The record ours to post; a dry run claims nothing and only reads who holds it."""
        if self.dry_run:
            holder = self.ledger.holder(deploy)
            return ClaimAnswer(holder=holder) if holder else ClaimAnswer(mine=True)
        return self.ledger.claim(deploy)

    def _release(self, deploy: ManualDeploy) -> None:
        if not self.dry_run:
            self.ledger.release(deploy)

    def _guarded(self, deploy: ManualDeploy, existing: list[dict[str, Any]]) -> Hold | None:
        """`_one`, giving the claim back whatever stops it (GitLab gone, a refusal, a signal)."""
        try:
            return self._one(deploy, existing)
        except BaseException:
            self._release(deploy)
            raise

    def _one(self, deploy: ManualDeploy, existing: list[dict[str, Any]]) -> Hold | None:
        """Record one deploy; why it must wait, or None when GitLab now knows it (or must not)."""
        newer = newer_ci_deploy(deploy, existing)
        if newer is not None:
            self._superseded(deploy, newer)
            return None
        sha = deploy.commit or self.client.commit_of(deploy.project, deploy.ref)
        if sha is None:
            return Hold(f"GitLab's copy of {deploy.project} has no tag {deploy.ref} yet: its mirror has not caught up, "
                        f"or {deploy.ref} is an image tag only the registry has, which GitLab cannot record "
                        f"(then: `{skip_step(deploy)}`)", skippable=True)
        found = self._match(deploy, sha, existing)
        if found is not None:
            self._adopt(deploy, found)
            return None
        if self.dry_run:
            self.report.would.append(_row(deploy, sha=sha, post=f"POST /api/v4/projects/{project_id(deploy.project)}/deployments",
                                          body=deploy.payload(sha)))
            self.out.info(f"would record {deploy.describe()}: POST {json.dumps(deploy.payload(sha))}")
            return None
        try:
            created = self.client.create_deployment(deploy.project, **deploy.payload(sha))
        except GitLabRejected as exc:
            return _rejection(deploy, sha, exc)
        existing.insert(0, created)
        self._remember(deploy, outcome="recorded", deployment_id=created.get("id"), iid=created.get("iid"), status=deploy.status)
        self.report.recorded.append(_row(deploy, sha=sha, deployment_id=created.get("id"), iid=created.get("iid")))
        self.out.success(f"recorded {deploy.describe()} as deployment #{created.get('iid')}")
        return None

    def _remember(self, deploy: ManualDeploy, **info: Any) -> None:
        problem = self.ledger.remember(deploy, **info)
        if problem:
            self.out.warn(problem)

    def _match(self, deploy: ManualDeploy, sha: str, existing: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A record made through the API for this deploy, found when an earlier run's answer was lost."""
        claimed = self.ledger.claimed_ids()
        for item in reversed(existing):  # oldest first: two identical deploys claim one record each
            made = parse_time(item.get("created_at"))
            if (item.get("deployable") is None and item.get("id") not in claimed and item.get("sha") == sha
                    and item.get("ref") == deploy.ref and made is not None and made >= deploy.at - CLOCK_SLACK):
                return item
        return None

    def _adopt(self, deploy: ManualDeploy, found: dict[str, Any]) -> None:
        if found.get("status") != deploy.status and not self.dry_run:
            found = self.client.update_deployment(deploy.project, found["id"], deploy.status)
        if not self.dry_run:
            self._remember(deploy, outcome="already known", deployment_id=found.get("id"), iid=found.get("iid"),
                           status=deploy.status)
        self.report.already.append(_row(deploy, deployment_id=found.get("id"), iid=found.get("iid")))
        self.out.info(f"already in GitLab: {deploy.describe()} (deployment #{found.get('iid')})")

    def _superseded(self, deploy: ManualDeploy, newer: dict[str, Any]) -> None:
        said = f"GitLab already shows CI deployment #{newer.get('iid')} of {newer.get('ref')}, made after it"
        if not self.dry_run:
            self._remember(deploy, outcome="superseded", deployment_id=None, iid=newer.get("iid"), status=deploy.status)
        self.report.superseded.append(_row(deploy, by=newer.get("iid")))
        self.out.info(f"not posted: {deploy.describe()}: {said}")

    def _settled_elsewhere(self, deploy: ManualDeploy, answer: ClaimAnswer) -> None:
        """Another engineer's sync recorded it (or someone skipped it) since the records were read."""
        settled = answer.settled or {}
        if answer.gone:
            self.out.warn(f"not posted: {deploy.describe()}: no longer in the team's records (only the newest are kept)")
        elif settled.get("kind") == "skipped":
            self.out.info(f"not posted: {deploy.describe()}: skipped by {settled.get('by')}: {settled.get('why')}")
        else:
            self.report.already.append(_row(deploy, deployment_id=settled.get("deployment_id"), iid=settled.get("iid")))
            self.out.info(f"already in GitLab: {deploy.describe()} (recorded by {settled.get('by')}'s gitlab-sync)")

    def _busy(self, deploys: list[ManualDeploy], holder: str) -> None:
        for deploy in deploys:
            if self.ledger.outcome(deploy.key) is None:
                self.report.busy.append(_row(deploy, by=holder))
                self.out.warn(f"not posted here: {deploy.describe()}: being recorded by {holder}'s gitlab-sync")

    def _keep(self, deploys: list[ManualDeploy], hold: Hold) -> None:
        for deploy in deploys:
            self.report.kept.append(_row(deploy, reason=hold.reason, **({"skip": skip_step(deploy)} if hold.skippable else {})))
            self.out.warn(f"kept for the next run: {deploy.describe()}: {hold.reason}")


def _rejection(deploy: ManualDeploy, sha: str, exc: GitLabRejected) -> Hold:
    """GitLab checks the commit and the tag in its own copy of the repository: missing there means a lagging
    mirror, or (a tag only) an image tagged by hand that no git tag names."""
    missing = [what for key, what in (("ref", f"tag {deploy.ref}"), ("sha", f"commit {sha[:8]}")) if key in exc.problems]
    if not missing:
        return Hold(exc.message)
    said = "; ".join(text for key in ("ref", "sha") for text in exc.problems.get(key, []))
    reason = f"GitLab's copy of {deploy.project} has no {' and no '.join(missing)} yet ({said}): its mirror has not caught up"
    if "sha" in exc.problems:
        return Hold(reason)
    return Hold(f"{reason}, or {deploy.ref} is an image tag no git tag names (then: `{skip_step(deploy)}`)", skippable=True)


def newer_ci_deploy(deploy: ManualDeploy, existing: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A successful CI deployment GitLab made after this manual deploy: the page already shows a later truth."""
    for item in existing:
        made = parse_time(item.get("created_at"))
        if item.get("deployable") is not None and item.get("status") == "success" and made and made > deploy.at:
            return item
    return None


def client_for(config: Config, *, token: str | None, session=None, timeout: tuple[float, float] = TIMEOUT) -> GitLabClient:
    if not config.gitlab.url:
        raise Refused(f"no GitLab is configured (gitlab.url in {config.source})",
                      hint="add `gitlab: {url: https://gitlab.ebi.ac.uk}` to the config, then run `manual-deploy gitlab-sync`")
    if not token:
        raise Refused(f"{TOKEN_ENV} is not set: GitLab's deployment records cannot be written", hint=TOKEN_HINT)
    return GitLabClient(config.gitlab.url, token, session=session, timeout=timeout)


def envs_of(config: Config, env: str | None, app: str | None) -> list[str]:
    """The envs whose records are read (one, or every configured env); a name not in the config is refused."""
    if app:
        config.app(app)
    if env:
        config.environment(env)
        return [env]
    return list(config.environments)


def read_ledger(config: Config, envs: list[str], kubeconfig: str | None, out) -> Ledger:
    """The team's records of `envs`, each env's cluster read at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    from manual_deploy.gitlab_ledger import connect

    ledger = Ledger()
    with ThreadPoolExecutor(max_workers=max(1, len(envs))) as pool:
        teams = list(pool.map(lambda env: connect(config, env, kubeconfig, out), envs))
    ledger.read_all(teams, out)
    return ledger


def run_sync(config: Config, request: SyncRequest, out) -> dict[str, Any]:
    """The command: every team deploy GitLab lacks, or one error that says what is kept and why."""
    from manual_deploy.gitlab import token_from_env

    ledger = read_ledger(config, envs_of(config, request.env, request.app), request.kubeconfig, out)
    if not request.dry_run:
        ledger.share_memory(out)
    todo = ledger.pending(ledger.deploys(config, request.env, request.app))
    if not todo:
        out.success("GitLab knows every manual deploy in the team's records; nothing to record")
        return {**SyncReport().as_dict(), "summary": "nothing to record"}
    out.step(f"{len(todo)} manual deploy(s) to give GitLab ({config.gitlab.url or 'no gitlab.url'}), oldest first")
    syncer = Syncer(client_for(config, token=token_from_env()), ledger, out, dry_run=request.dry_run)
    try:
        report = syncer.run(todo)
    except GitLabUnreachable as exc:
        raise _stopped(exc, len(todo), syncer.report, BACK) from None
    except GitLabAnswerInvalid as exc:
        raise _stopped(exc, len(todo), syncer.report, exc.hint) from None
    except GitLabRefused as exc:
        raise type(exc)(f"{exc.message}; nothing is lost, {len(todo)} manual deploy(s) wait in the team's records",
                        status=exc.status, hint=exc.hint) from None
    result = {**report.as_dict(), "summary": report.line()}
    if report.kept:
        raise _kept_error(report, result)
    out.success(report.line())
    return result


def _stopped(exc: OperationFailed, todo: int, report: SyncReport, hint: str | None) -> OperationFailed:
    """GitLab down, or an answer that cannot be used: the run stops there, and says what it did before."""
    done = len(report.recorded) + len(report.already)
    return OperationFailed(f"{exc.message}: {todo - done} manual deploy(s) not recorded yet ({done} done before); "
                           f"nothing is lost, the team's records keep them", hint=hint, details=report.as_dict())


def _kept_error(report: SyncReport, result: dict[str, Any]) -> ManualDeployError:
    """403 and 404 need a person (exit 3); a mirror that lags only needs time (exit 1), and a tag that is no
    git ref needs a person's --skip."""
    if report.refusals:
        exc = report.refusals[0]
        row = next(r for r in report.kept if r["reason"] == exc.message)
        if exc.status == 404:
            hint = (f"set `gitlab_project:` for {row['app']} in the config to its path as in its GitLab URL "
                    f"(now {row['project']}), then `{SYNC}`")
            message = f"GitLab has no project {row['project']} (404)"
        else:
            hint = (f"ask a Maintainer of {row['project']} for the Developer role, or to be allowed to deploy to "
                    f"{row['env']} (Settings → CI/CD → Protected environments); then `{SYNC}`")
            message = (f"GitLab refused to record a deployment to {row['env']} in {row['project']} (403): the token's user "
                       f"needs the Developer role, and {row['env']} may be a protected environment")
        return Refused(f"{message}; {report.line()}", hint=hint, details=result)
    first = report.kept[0]
    hint = (f"run `{SYNC}` again once GitLab's copy of {first['project']} has caught up (a pull mirror "
            f"does after the outage; Settings → Repository → Mirroring repositories → Update now)")
    if first.get("skip"):
        hint += f"; if {first['ref']} is an image tag no git tag names, GitLab can never record it: `{first['skip']}`"
    return OperationFailed(f"{first['reason']}; {report.line()}", hint=hint, details=result)


def record_now(config: Config, entries: list[dict[str, Any]], out, team: TeamEnv | None = None) -> dict[str, str]:
    """After a deploy: record it (and anything older of its streams) while GitLab answers; a note per app.

    The same path as `gitlab-sync`: the team's records of the env (`team`: its cluster, when reached),
    each claimed before its POST. Never fails the deploy. A GitLab that is down costs one refused
    connection or a short connect timeout, and the summary says to run `gitlab-sync` later."""
    import requests

    from manual_deploy.gitlab import token_from_env

    mine = [d for d in (ManualDeploy.from_record(e, config) for e in entries) if d]
    if not mine or not config.gitlab.url:
        return {}
    env = mine[0].env
    ledger = Ledger()
    kept: dict[str, tuple[str, str]] = {}  # app → why its record is kept and what to do, when the sync ran
    reason, then = "superseded by a later CI deploy", f"run `{SYNC}` once GitLab is back"
    try:
        # No retries and short timeouts: a deploy's summary must not wait on a GitLab that is down.
        client = client_for(config, token=token_from_env(), session=requests.Session(), timeout=(2.0, 5.0))
        ledger.read(team or TeamEnv(env, config.environment(env).namespace), _Quiet(out))
        apps = {d.app for d in mine}
        report = Syncer(client, ledger, _Quiet(out)).run(ledger.pending([d for d in ledger.deploys(config, env) if d.app in apps]))
        for row in report.kept:
            kept.setdefault(row["app"], (row["reason"], _next_step(report, row["app"])))
        for row in report.busy:
            kept.setdefault(row["app"], (f"being recorded by {row['by']}'s gitlab-sync", "nothing to do: that sync records it"))
    except GitLabUnreachable as exc:
        reason = exc.message
    except ManualDeployError as exc:
        reason, then = exc.message, exc.hint or then
    return _notes(mine, ledger, kept, (reason, then), out)


def _notes(mine: list[ManualDeploy], ledger: Ledger, kept: dict[str, tuple[str, str]], default: tuple[str, str], out) -> dict[str, str]:
    """Per app of the run: its GitLab deployment, or why not and the next step (warned)."""
    notes = {}
    for deploy in mine:
        entry = ledger.outcome(deploy.key)
        if entry is not None and entry.get("kind") == "gitlab" and entry.get("outcome") != "superseded":
            notes[deploy.app] = f"recorded in GitLab as deployment #{entry.get('iid')}"
        else:
            notes[deploy.app] = "not recorded in GitLab"
            why, step = kept.get(deploy.app, default)
            out.warn(f"{deploy.app}: not recorded in GitLab ({why}); {step}")
    return notes


def _next_step(report: SyncReport, app: str) -> str:
    """The `next:` that `gitlab-sync` would give for this app's kept records alone."""
    rows = [row for row in report.kept if row["app"] == app]
    reasons = {row["reason"] for row in rows}
    mine = SyncReport(kept=rows, refusals=[exc for exc in report.refusals if exc.message in reasons])
    return _kept_error(mine, {}).hint


class _Quiet:
    """The sync's per-record lines, shown only with -v while apply's own summary has the word."""

    def __init__(self, out):
        self.out = out

    def __getattr__(self, name):
        return self.out.debug
