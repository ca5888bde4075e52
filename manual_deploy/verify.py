"""Is the new version live? Readiness checks per resource kind, and the reason when it is not.

Modelled on `kubectl rollout status` for Deployments (krane's idea: each kind owns its check and
always says why it failed), plus pod-level fail-fast: a pod stuck in ImagePullBackOff or
CrashLoopBackOff past a grace period will not recover by waiting, so we stop and say why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from manual_deploy.images import same_image
from manual_deploy.kube import rollout_apis

FAILING_WAITING_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "InvalidImageName"}
)
FAILING_TERMINATED_REASONS = frozenset({"OOMKilled"})
LOG_LINES = 20
REVISION = "deployment.kubernetes.io/revision"
REQUEST_TIMEOUT = (3, 8)  # (connect, read) seconds: one slow answer must not stall the watch or its progress lines


@dataclass(frozen=True)
class Verdict:
    state: str  # "progressing" | "done" | "failed"
    message: str

    @property
    def finished(self) -> bool:
        return self.state != "progressing"


def deployment_verdict(deployment) -> Verdict:
    """kubectl's DeploymentStatusViewer, with None counts read as 0."""
    spec_replicas = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    status = deployment.status
    name = deployment.metadata.name
    if (deployment.metadata.generation or 0) > (status.observed_generation or 0 if status else 0):
        return Verdict("progressing", f"waiting for deployment {name} spec update to be observed")
    for condition in (status.conditions or []) if status else []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return Verdict("failed", f"deployment {name} exceeded its progress deadline: {condition.message or ''}".strip())
    updated = status.updated_replicas or 0
    replicas = status.replicas or 0
    available = status.available_replicas or 0
    if updated < spec_replicas:
        return Verdict("progressing", f"{updated} of {spec_replicas} new replicas of {name} updated")
    if replicas > updated:
        return Verdict("progressing", f"{replicas - updated} old replicas of {name} pending termination")
    if available < updated:
        return Verdict("progressing", f"{available} of {updated} updated replicas of {name} available")
    return Verdict("done", f"deployment {name} rolled out: {available}/{spec_replicas} available")


def pod_problem(pod) -> tuple[str, str, str] | None:
    """(reason, container, message) when a container is in a state that waiting will not fix."""
    statuses = (pod.status.container_statuses or []) + (pod.status.init_container_statuses or []) if pod.status else []
    for status in statuses:
        state = status.state
        if state and state.waiting and state.waiting.reason in FAILING_WAITING_REASONS:
            return state.waiting.reason, status.name, state.waiting.message or ""
        last = status.last_state.terminated if status.last_state else None
        current = state.terminated if state else None
        for terminated in (current, last):
            if terminated and terminated.reason in FAILING_TERMINATED_REASONS:
                return terminated.reason, status.name, terminated.message or f"exit code {terminated.exit_code}"
    return None


@dataclass
class PodFailure:
    pod: str
    container: str
    reason: str
    message: str
    events: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"pod {self.pod} container {self.container}: {self.reason} {self.message}".rstrip()]
        if self.events:
            lines.append("  recent events:")
            lines.extend(f"    {line}" for line in self.events)
        if self.logs:
            lines.append(f"  last {len(self.logs)} log lines of {self.container}:")
            lines.extend(f"    {line}" for line in self.logs)
        return "\n".join(lines)


def _selector(match_labels: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((match_labels or {}).items()))


class RolloutVerifier:
    """Polled while helm waits: the Deployment's rollout state and its new pods' health."""

    def __init__(self, api_client, namespace: str, deployment: str, *, grace_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        apps_api, core_api = rollout_apis()
        self.apps = apps_api(api_client)
        self.core = core_api(api_client)
        self.namespace = namespace
        self.name = deployment
        self.grace_s = grace_s
        self.clock = clock
        self._first_seen: dict[tuple[str, str], float] = {}
        self.last_pods: list | None = None  # the current ReplicaSet's pods at the last check()
        self.last_verdict: Verdict | None = None
        self.last_problem: str | None = None  # "pod X: ImagePullBackOff …", seen at the last check()

    def _read_deployment(self):
        from kubernetes.client.exceptions import ApiException

        try:
            return self.apps.read_namespaced_deployment(self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def new_pods(self, deployment) -> list:
        """Pods of the Deployment's current ReplicaSet (see `current_replica_set`)."""
        selector = _selector(deployment.spec.selector.match_labels if deployment.spec.selector else None)
        sets = self.apps.list_namespaced_replica_set(self.namespace, label_selector=selector, _request_timeout=REQUEST_TIMEOUT).items
        current = current_replica_set(deployment, sets)
        if current is None:
            return []
        template_hash = (current.metadata.labels or {}).get("pod-template-hash")
        pod_selector = f"{selector},pod-template-hash={template_hash}" if template_hash else selector
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=pod_selector, _request_timeout=REQUEST_TIMEOUT).items
        return [p for p in pods if not p.metadata.deletion_timestamp]

    def check(self) -> tuple[Verdict, PodFailure | None]:
        """One look. A pod problem seen continuously for `grace_s` is a failure with its diagnosis."""
        deployment = self._read_deployment()
        if deployment is None:
            self.last_pods, self.last_problem = None, None
            self.last_verdict = Verdict("progressing", f"deployment {self.name} not created yet")
            return self.last_verdict, None
        verdict = deployment_verdict(deployment)
        now = self.clock()
        seen_now = set()
        self.last_pods = self.new_pods(deployment)
        self.last_problem = None
        for pod in self.last_pods:
            problem = pod_problem(pod)
            if problem is None:
                continue
            reason, container, message = problem
            key = (pod.metadata.name, reason)
            seen_now.add(key)
            first = self._first_seen.setdefault(key, now)
            self.last_problem = f"pod {pod.metadata.name}: {reason} {message}".rstrip() + f" (for {now - first:.0f}s)"
            if now - first >= self.grace_s:
                return Verdict("failed", f"pod {pod.metadata.name}: {reason}"), self.diagnose(pod.metadata.name, container, reason, message)
        self._first_seen = {k: v for k, v in self._first_seen.items() if k in seen_now}
        self.last_verdict = verdict
        return verdict, None

    def waited_for(self) -> str | None:
        """What the rollout looked like at the last check: said when helm gives up first (its own
        timeout ended before a pod problem outlasted the grace period), so the failure has a reason."""
        if self.last_verdict is None:
            return None
        return "; ".join(part for part in (self.last_verdict.message, self.last_problem) if part)

    def diagnose(self, pod: str, container: str, reason: str, message: str) -> PodFailure:
        """The pod's recent events and its container's last log lines, whatever of them can be read."""
        from kubernetes.client.exceptions import ApiException

        failure = PodFailure(pod=pod, container=container, reason=reason, message=message)
        try:
            events = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={pod}",
                                                   _request_timeout=REQUEST_TIMEOUT).items
            events.sort(key=lambda e: (e.last_timestamp or e.first_timestamp or e.metadata.creation_timestamp or 0))
            failure.events = [f"{e.type or ''} {e.reason or ''}: {e.message or ''}".strip() for e in events[-8:]]
        except ApiException:
            failure.events = ["(events could not be read)"]
        for previous in (False, True):
            try:
                text = self.core.read_namespaced_pod_log(pod, self.namespace, container=container, tail_lines=LOG_LINES,
                                                     previous=previous, _request_timeout=REQUEST_TIMEOUT)
            except ApiException:
                continue
            if text and text.strip():
                failure.logs = text.rstrip("\n").splitlines()[-LOG_LINES:]
                break
        return failure

    def images_live(self, expected: str) -> list[str]:
        """New pods NOT running `expected`, as of the last `check()` (empty list = all good).

        The same snapshot that showed the rollout done: no second round of reads, and no gap
        between "done" and "on the right image".
        """
        if self.last_pods is None:
            return [f"deployment {self.name} is missing"]
        wrong = []
        for pod in self.last_pods:
            for container in pod.spec.containers:
                if not same_image(container.image, expected):
                    wrong.append(f"{pod.metadata.name} runs {container.image}")
        return wrong


def _revision(replica_set) -> int:
    try:
        return int((replica_set.metadata.annotations or {}).get(REVISION, 0))
    except ValueError:
        return 0


def current_replica_set(deployment, replica_sets: list):
    """The ReplicaSet the Deployment is rolling out to, among those it owns.

    By revision, as the Deployment controller numbers them, not by age: a rollback re-activates an
    old ReplicaSet (giving it the highest revision), and creation times only have one-second
    resolution. The Deployment's own revision annotation names it once the controller has seen the
    change; before that the highest revision is the best guess.
    """
    owned = [rs for rs in replica_sets
             if any(ref.uid == deployment.metadata.uid for ref in rs.metadata.owner_references or [])]
    if not owned:
        return None
    wanted = (deployment.metadata.annotations or {}).get(REVISION)
    named = [rs for rs in owned if wanted is not None and str(_revision(rs)) == wanted]
    if named:
        return named[0]
    return max(owned, key=lambda rs: (_revision(rs), rs.metadata.creation_timestamp or 0, rs.metadata.name))
