"""Wait for quay.io to build a tag and publish its image; fail fast when the build fails.

Two signals, polled on separate schedules: the registry manifest (cheap, polled often so a
published image is noticed within about a second) and the quay build list (polite: every few
seconds; tells us the phase and fails fast on `error`, `cancelled`, `expired`). `internalerror`
and `cannot_load` are not final: quay re-queues such builds.

With `start_build`, a tag whose build trigger never fired gets its build started by hand (see
`manual_deploy.build_trigger`) after one look at both signals: not when the image is already
there, not when quay already lists a build for the tag. The started build is then followed by id.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from manual_deploy.config import ResolvedApp
from manual_deploy.console import Output, Ticker
from manual_deploy.durations import format_duration
from manual_deploy.errors import Interrupted, OperationFailed, TimedOut
from manual_deploy.images import split_repo
from manual_deploy.registry import ApiUnavailable, Manifest, QuayClient, RegistryClient, TransientError

FAILED_PHASES = frozenset({"error", "cancelled", "expired"})
NEARLY_DONE_PHASES = frozenset({"pushing", "complete"})
# quay says `complete` but the registry has no tag: give replication this long before failing.
COMPLETE_GRACE_S = 60.0


@dataclass(frozen=True)
class Schedule:
    manifest: float = 1.0  # registry HEAD while the build runs
    manifest_fast: float = 0.25  # while the build is pushing/complete: the image is about to land
    api: float = 2.0  # quay API: at most 0.5 request/s
    progress: float = 9.0  # a plain "still waiting" line at least this often
    max_backoff: float = 30.0


@dataclass(frozen=True)
class WaitResult:
    app: str
    tag: str
    image: str
    digest: str
    reference: str
    media_type: str
    build_id: str | None
    phase: str | None
    waited_s: float
    already_present: bool
    started_build: bool = False  # we asked quay's trigger for this build (--start-build)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pick_build(builds: list[dict[str, Any]], tag: str, build_id: str | None = None) -> dict[str, Any] | None:
    """The newest build that pushes `tag` (by its tag list, or by the git ref when quay shows it).

    With `build_id`, that build only: the one we started is followed even if another build of the tag
    (a late webhook) is newer.
    """
    if build_id is not None:
        return next((build for build in builds if build.get("id") == build_id), None)
    for build in builds:
        metadata = build.get("trigger_metadata") or {}
        if tag in (build.get("tags") or []) or metadata.get("ref") == f"refs/tags/{tag}":
            return build
    return None


@dataclass
class _Backoff:
    """Exponential delay after failures, honouring Retry-After, capped."""

    base: float
    cap: float
    failures: int = 0

    def next(self, retry_after: float | None) -> float:
        self.failures += 1
        delay = min(self.cap, self.base * (2 ** (self.failures - 1)))
        return min(self.cap, max(delay, retry_after or 0.0))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class _Watch:
    """What we know so far; also the summary when interrupted or timed out."""

    build: dict[str, Any] | None = None
    phase: str | None = None
    complete_at: float | None = None
    api_ok: bool = True
    last_problem: str | None = None
    started: float = 0.0
    manifest_polls: int = 0
    api_reads: int = 0  # build lists read
    app: str = ""
    start_pending: bool = False  # --start-build: start one after the first look, unless not needed
    follow_id: str | None = None  # the build we started
    commit: str | None = None  # the tag's commit, for a custom-git trigger

    def looked(self) -> bool:
        """Both signals read once: the registry said "not there" and quay's build list was read (or unreadable)."""
        return self.manifest_polls >= 1 and (self.api_reads >= 1 or not self.api_ok)

    def rerun(self, tag: str) -> str:
        return f"manual-deploy wait-image --app {self.app} --tag {tag} --start-build"

    def describe(self) -> str:
        if self.build is None:
            return "no build seen yet" if self.api_ok else "build status unknown (quay API not readable)"
        return f"build {self.build.get('id', '?')[:8]} was {self.phase}"


@dataclass
class ImageWaiter:
    registry: RegistryClient
    quay: QuayClient
    out: Output
    schedule: Schedule = field(default_factory=Schedule)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def wait(self, app: ResolvedApp, tag: str, *, timeout: float, no_build_timeout: float,
             start_build: bool = False, commit: str | None = None) -> WaitResult:
        host, repository = split_repo(app.image_repo)
        image = f"{app.image_repo}:{tag}"
        watch = _Watch(started=self.clock(), app=app.name, start_pending=start_build, commit=commit)
        self.out.step(f"waiting for {image} (timeout {format_duration(timeout)})")
        try:
            with Ticker(self.out, self.schedule.progress, self.clock) as ticker:
                manifest = self._loop(repository, tag, image, watch, ticker, timeout, no_build_timeout)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted after {format_duration(self.clock() - watch.started)} waiting for {image}; {watch.describe()}",
                hint="nothing was changed; re-run `manual-deploy wait-image` to keep waiting",
            ) from None
        waited = self.clock() - watch.started
        build_id = watch.build.get("id") if watch.build else None
        return WaitResult(
            app=app.name,
            tag=tag,
            image=image,
            digest=manifest.digest,
            reference=f"{image}@{manifest.digest}",
            media_type=manifest.media_type,
            build_id=build_id,
            phase=watch.phase,
            waited_s=round(waited, 3),
            already_present=watch.manifest_polls == 1,
            started_build=watch.follow_id is not None,
        )

    def _loop(self, repository, tag, image, watch: _Watch, ticker: Ticker, timeout, no_build_timeout) -> Manifest:
        start = watch.started
        next_manifest = next_api = start
        manifest_backoff = _Backoff(self.schedule.manifest, self.schedule.max_backoff)
        api_backoff = _Backoff(self.schedule.api, self.schedule.max_backoff)
        for _ in range(10_000_000):  # bounded: ends far beyond any --timeout at 4 polls/s
            now = self.clock()
            if now >= next_manifest:
                try:
                    manifest = self.registry.head_manifest(repository, tag)
                except TransientError as exc:
                    watch.last_problem = exc.message
                    next_manifest = now + manifest_backoff.next(exc.retry_after)
                else:
                    manifest_backoff.reset()
                    watch.manifest_polls += 1
                    if manifest is not None:
                        waited = format_duration(self.clock() - start)
                        ticker.note(f"✓ {image} is in the registry ({manifest.digest[:19]}…) after {waited}")
                        return manifest
                    fast = watch.phase in NEARLY_DONE_PHASES
                    next_manifest = now + (self.schedule.manifest_fast if fast else self.schedule.manifest)
            if watch.api_ok and now >= next_api:
                next_api = now + self._poll_api(repository, tag, image, watch, ticker, api_backoff)
            if watch.start_pending and watch.looked():
                self._start_or_follow(repository, tag, image, watch, ticker)
                next_api = self.clock() + self.schedule.api
            now = self.clock()
            self._check_deadlines(now, repository, tag, image, watch, timeout, no_build_timeout)
            ticker.update(self._progress(image, watch, now - start))
            wake = min(next_manifest, next_api if watch.api_ok else next_manifest, ticker.due(), start + timeout)
            self.sleep(max(0.02, wake - self.clock()))
        raise TimedOut(f"gave up waiting for {image}")  # pragma: no cover - the deadline fires first

    def _poll_api(self, repository, tag, image, watch: _Watch, ticker: Ticker, backoff: _Backoff) -> float:
        """Read the build list once; return the delay before the next read."""
        try:
            builds = self.quay.builds(repository)
        except ApiUnavailable as exc:
            watch.api_ok = False
            self.out.warn(
                f"{exc.message}: cannot see quay builds (private repository? set QUAY_TOKEN); "
                "waiting on the registry alone, so a failed build is only noticed at --timeout"
            )
            return self.schedule.api
        except TransientError as exc:
            watch.last_problem = exc.message
            return backoff.next(exc.retry_after)
        backoff.reset()
        watch.api_reads += 1
        build = pick_build(builds, tag, watch.follow_id)
        if build is None:
            return self.schedule.api
        phase = str(build.get("phase") or "unknown")
        if watch.build is None or build.get("id") != watch.build.get("id") or phase != watch.phase:
            who = build.get("display_name") or "?"
            ticker.note(f"• build {str(build.get('id', '?'))[:8]} ({who}): {phase}")
        watch.build, watch.phase = build, phase
        if phase == "complete" and watch.complete_at is None:
            watch.complete_at = self.clock()
        if phase in FAILED_PHASES:
            url = self.quay.build_page(repository, str(build.get("id")))
            reason = build.get("error") or "no error text from quay"
            raise OperationFailed(
                f"quay build {build.get('id')} of {image} ended in phase {phase}: {reason}",
                hint=f"see {url}; fix the cause, push a new commit, `manual-deploy tag` it and wait again",
                details={"build_id": build.get("id"), "phase": phase, "build_url": url},
            )
        return self.schedule.api

    def _start_or_follow(self, repository, tag, image, watch: _Watch, ticker: Ticker) -> None:
        """--start-build after the first look: follow a build quay already has, else start one."""
        from manual_deploy.build_trigger import start_build

        watch.start_pending = False
        if watch.build is not None:
            ticker.note(f"• quay already has build {str(watch.build.get('id', '?'))[:8]} for {tag}: following it, not starting another")
            return
        build = start_build(self.quay, repository, tag, self.out, watch.commit, image=image, rerun=watch.rerun(tag))
        watch.follow_id = str(build["id"])
        watch.build, watch.phase = build, str(build.get("phase") or "waiting")

    def _check_deadlines(self, now, repository, tag, image, watch: _Watch, timeout, no_build_timeout) -> None:
        elapsed = now - watch.started
        if elapsed >= timeout:
            problem = f"; last problem: {watch.last_problem}" if watch.last_problem else ""
            raise TimedOut(
                f"gave up after {format_duration(timeout)}: {image} is not in the registry; {watch.describe()}{problem}",
                hint="re-run `manual-deploy wait-image --timeout 1h` to keep waiting, or check the build on quay.io",
            )
        if watch.api_ok and watch.build is None and elapsed >= no_build_timeout:
            builds_page = self.quay.builds_page(repository)
            raise TimedOut(
                f"no quay build for tag {tag} appeared within {format_duration(no_build_timeout)} "
                f"and {image} is not in the registry",
                hint=(
                    "likely causes: the repository's build trigger is disabled; the tag does not match the "
                    f"trigger's tag regex; the commit message contains [skip build]. Check {builds_page}, "
                    f"or start it yourself: `{watch.rerun(tag)}`"
                ),
            )
        if watch.complete_at is not None and now - watch.complete_at >= COMPLETE_GRACE_S:
            raise OperationFailed(
                f"quay says build {watch.build.get('id')} is complete but the registry has no {image} "
                f"after {format_duration(COMPLETE_GRACE_S)}",
                hint="check the tags on quay.io: the build may push other tags than the git tag name",
            )

    @staticmethod
    def _progress(image: str, watch: _Watch, elapsed: float) -> str:
        phase = watch.phase or ("no build yet" if watch.api_ok else "build status unknown")
        return f"still waiting for {image} ({phase}, {format_duration(elapsed)} elapsed)"


@dataclass(frozen=True)
class WaitRequest:
    repo: str = "."
    app: str | None = None
    tag: str | None = None
    timeout: float = 45 * 60
    no_build_timeout: float = 10 * 60
    start_build: bool = False  # start quay's build trigger for the tag if no build is there (needs repo:admin)


def wait_for_image(config, request: WaitRequest, out: Output, *, schedule: Schedule | None = None) -> WaitResult:
    """Resolve app and tag (flags, else what `tag` recorded), wait, and record the image for `apply`."""
    from manual_deploy import state, validate
    from manual_deploy.errors import UsageError
    from manual_deploy.registry import Credentials

    git_dir = state.find_git_dir(request.repo)
    recorded = state.load(git_dir).get("tag", {}) if git_dir else {}
    app_name = request.app or recorded.get("app")
    tag = request.tag or recorded.get("tag")
    if not app_name or not tag:
        missing = " and ".join(name for name, value in (("--app", app_name), ("--tag", tag)) if not value)
        raise UsageError(
            f"no tag recorded in {request.repo} and no {missing} given",
            hint="run `manual-deploy tag` in the app checkout first, or pass --app APP --tag TAG",
        )
    if recorded and not request.tag and not request.app:
        out.step(f"using the tag recorded by `manual-deploy tag`: {app_name} {tag}")
    app = config.app(app_name)
    validate.image_tag(tag)
    credentials = Credentials.from_env()
    waiter = ImageWaiter(
        registry=RegistryClient(config.registry.url, credentials),
        quay=QuayClient(config.registry.api_url, credentials),
        out=out,
        schedule=schedule or Schedule(),
    )
    commit = recorded.get("commit") if recorded.get("tag") == tag else None  # for a custom-git trigger
    result = waiter.wait(app, tag, timeout=request.timeout, no_build_timeout=request.no_build_timeout,
                         start_build=request.start_build, commit=commit)
    if git_dir:
        state.record(git_dir, "image", {k: v for k, v in result.as_dict().items() if k != "waited_s"})
    return result
