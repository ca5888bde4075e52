"""A pretend kubelet + scheduler: pod status, Events and logs, with injectable per-image failures.

Healthy pods turn Running and Ready `pod_start_delay` seconds after creation. Pods whose container
image matches an injected failure show exactly what the product's diagnostics must recognise in EKS:
ImagePullBackOff, CrashLoopBackOff with a rising restartCount and a readable log, a readiness probe
that keeps failing (only for containers that have one), or a pod the scheduler cannot place (which
leads to the Deployment's ProgressDeadlineExceeded; placing is scheduler.py's job). Real failures
need no injection: a missing Secret / ConfigMap (key) keeps a container in CreateContainerConfigError
until it exists. Injected volume attach failures (volumes.py) keep the pod in ContainerCreating.

Only pods with spec.nodeName are the kubelet's: their start delay counts from when it first sees them.
Readiness probes: periodSeconds is honoured (at least 1 s), initialDelaySeconds as is -- charts
with long delays show their first Unhealthy Event as late as in a real cluster.

Status is derived from fixed facts (creation time, the failure chosen at creation), so recomputing
it yields the same document and the ticker writes only when something really changed.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from manual_deploy_sandbox.kube import errors
from manual_deploy_sandbox.kube.cluster import Cluster
from manual_deploy_sandbox.kube.containers import config_error, mount_error, probe_failures, probe_message
from manual_deploy_sandbox.kube.events import EventRecorder
from manual_deploy_sandbox.kube.resources import by_path
from manual_deploy_sandbox.kube.scheduler import qos_class
from manual_deploy_sandbox.kube.volumes import (ATTACH_RETRY, MOUNT_TIMEOUT, StuckVolume, VolumeFailures,
                                                attach_message, mount_message)

PODS = by_path("v1/pods")
IMAGE_PULL_BACKOFF = "ImagePullBackOff"
CRASH_LOOP_BACKOFF = "CrashLoopBackOff"
PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
READINESS_PROBE_FAILED = "ReadinessProbeFailed"
FAILURE_MODES = (IMAGE_PULL_BACKOFF, CRASH_LOOP_BACKOFF, PROGRESS_DEADLINE_EXCEEDED, READINESS_PROBE_FAILED)
RESTART_PERIOD = 1.0  # seconds between CrashLoopBackOff restarts (real back-off grows; tests cannot wait)
CONFIG_RETRY = 1.0  # seconds between the kubelet's attempts to create a container whose config fails
CONFIG_ERROR = "CreateContainerConfigError"
NODE_IP = "172.18.0.2"


@dataclass(frozen=True)
class Failure:
    """An injected failure: containers whose image matches `image` (fnmatch glob) fail as `mode`."""

    image: str
    mode: str
    log: str = "Error: something went wrong\n"

    def as_dict(self) -> dict[str, str]:
        return {"image": self.image, "mode": self.mode, "log": self.log}


class Failures:
    """The injected failures; replaced wholesale on change so another thread can add while pods read."""

    def __init__(self) -> None:
        self._items: tuple[Failure, ...] = ()

    def add(self, image: str, mode: str, log: str = Failure.log) -> Failure:
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; expected one of {', '.join(FAILURE_MODES)}")
        failure = Failure(image, mode, log)
        self._items = (*self._items, failure)
        return failure

    def clear(self) -> None:
        self._items = ()

    def match(self, image: str) -> Failure | None:
        """The most recently added failure whose glob matches the image."""
        return next((f for f in reversed(self._items) if fnmatch.fnmatchcase(image, f.image)), None)

    def as_list(self) -> list[dict[str, str]]:
        return [f.as_dict() for f in self._items]


@dataclass
class PodRuntime:
    """What the kubelet decided about a pod when it first saw it."""

    created: float  # monotonic
    created_wall: dt.datetime
    failures: dict[str, Failure | None]  # container name -> failure (None: healthy)
    stuck: tuple[StuckVolume, ...] = ()  # volumes whose attachment fails (injected)
    restarts_reported: int = 0
    announced: set[str] = field(default_factory=set)
    config_ok: dict[str, float] = field(default_factory=dict)  # container -> elapsed when it could be created
    config_errors: dict[str, str] = field(default_factory=dict)  # container -> the latest config error
    unmounted: tuple[str, str] | None = None  # (volume, message) of a Secret/ConfigMap volume that cannot be set up

    def stamp(self, offset: float = 0.0) -> str:
        return (self.created_wall + dt.timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelet:
    """Advances pod status over time and writes the Events a real node would."""

    def __init__(self, cluster: Cluster, events: EventRecorder, failures: Failures, *, start_delay: float,
                 clock=time.monotonic, volume_failures: VolumeFailures | None = None) -> None:
        self.cluster, self.events, self.failures = cluster, events, failures
        self.volume_failures = volume_failures if volume_failures is not None else VolumeFailures()
        self.start_delay = start_delay
        self.clock = clock
        self._pods: dict[str, PodRuntime] = {}

    def runtime(self, pod: dict[str, Any]) -> PodRuntime:
        """The runtime record of a pod, created (and the failures chosen) the first time it is seen."""
        uid = pod["metadata"]["uid"]
        if uid not in self._pods:
            containers = (pod.get("spec") or {}).get("containers") or []
            self._pods[uid] = PodRuntime(self.clock(), dt.datetime.now(dt.timezone.utc),
                                         {c["name"]: self.failures.match(c.get("image", "")) for c in containers},
                                         self.volume_failures.stuck(pod, self.cluster.store))
        return self._pods[uid]

    def sync(self, pods: list[dict[str, Any]]) -> None:
        """Bring every scheduled pod's status up to date; forget pods that are gone."""
        for pod in pods:
            if not pod["metadata"].get("deletionTimestamp") and (pod.get("spec") or {}).get("nodeName"):
                self._sync_pod(pod)
        live = {p["metadata"]["uid"] for p in pods}
        self._pods = {uid: rt for uid, rt in self._pods.items() if uid in live}

    def failing_mode(self, pod: dict[str, Any]) -> str | None:
        """The failure mode a pod shows, if any (used for the Deployment's progress deadline)."""
        rt = self._pods.get(pod["metadata"]["uid"])
        modes = [f.mode for f in (rt.failures.values() if rt else ()) if f is not None]
        return modes[0] if modes else None

    def pod_log(self, namespace: str, name: str, container: str | None, tail_lines: int | None,
                previous: bool) -> str:
        """What `kubectl logs` shows: the injected text for a crash-looping container."""
        pod = self.cluster.get(PODS, namespace, name)
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        if not container:
            if len(names) != 1:
                raise errors.bad_request(f"a container name must be specified for pod {name}, "
                                         f"choose one of: [{' '.join(names)}]")
            container = names[0]
        if container not in names:
            raise errors.bad_request(f"container {container} is not valid for pod {name}")
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                                     "ContainerCreating")
        rt = self.runtime(pod)
        failure = rt.failures.get(container)
        if container not in rt.config_ok and container in rt.config_errors:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {CONFIG_ERROR}')
        if failure is not None and failure.mode == CRASH_LOOP_BACKOFF:
            text = failure.log
        elif failure is not None and failure.mode == IMAGE_PULL_BACKOFF:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                                     "trying and failing to pull image")
        elif rt.stuck or self.clock() - rt.created < self.start_delay:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                                     "ContainerCreating")
        elif previous:
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        else:
            text = ""
        if tail_lines is not None:
            text = "".join(text.splitlines(keepends=True)[-tail_lines:]) if tail_lines > 0 else ""
        return text

    # ------------------------------------------------------------------------------------------ status

    def _sync_pod(self, pod: dict[str, Any]) -> None:
        rt = self.runtime(pod)
        elapsed = self.clock() - rt.created
        status = self._status(pod, rt, elapsed)
        if status != pod.get("status"):
            meta = pod["metadata"]
            self.cluster.replace(PODS, meta["namespace"], meta["name"], {**pod, "status": status},
                                 subresource="status")
        self._announce(pod, rt, elapsed)

    def _status(self, pod: dict[str, Any], rt: PodRuntime, elapsed: float) -> dict[str, Any]:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        rt.unmounted = mount_error(pod, self.cluster.store)
        started = elapsed >= self.start_delay and not rt.stuck and rt.unmounted is None
        statuses = [self._container_status(c, rt.failures.get(c["name"]), started, elapsed, rt, meta)
                    for c in spec.get("containers") or []]
        waiting = [s for s in statuses
                   if "waiting" in s["state"] and s["state"]["waiting"]["reason"] != CRASH_LOOP_BACKOFF]
        unready = [s["name"] for s in statuses if not s["ready"]]
        ready_at = rt.stamp(self.start_delay)
        ready = not unready
        status = {
            "phase": "Running" if started and not waiting else "Pending",
            "conditions": [
                _condition("PodReadyToStartContainers", started, ready_at if started else rt.stamp()),
                _condition("Initialized", True, rt.stamp()),
                _condition("Ready", ready, ready_at if ready else rt.stamp(), *_unready(unready)),
                _condition("ContainersReady", ready, ready_at if ready else rt.stamp(), *_unready(unready)),
                _condition("PodScheduled", True, rt.stamp()),
            ],
            "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
            "podIP": _pod_ip(meta["uid"]), "podIPs": [{"ip": _pod_ip(meta["uid"])}],
            "startTime": rt.stamp(), "qosClass": qos_class(spec), "containerStatuses": statuses,
        }
        if spec.get("initContainers"):
            status["initContainerStatuses"] = [_completed_init(c, rt) for c in spec["initContainers"]]
        return status

    def _container_status(self, container: dict[str, Any], failure: Failure | None, started: bool, elapsed: float,
                          rt: PodRuntime, meta: dict[str, Any]) -> dict[str, Any]:
        image = container.get("image", "")
        base = {"name": container["name"], "image": image, "imageID": "", "ready": False, "started": False,
                "restartCount": 0, "lastState": {}}
        if not started:
            return {**base, "state": {"waiting": {"reason": "ContainerCreating"}}}
        if failure is not None and failure.mode == IMAGE_PULL_BACKOFF:
            return {**base, "state": {"waiting": {"reason": IMAGE_PULL_BACKOFF,
                                                  "message": f'Back-off pulling image "{image}"'}}}
        begun = self._created_at(container, meta["namespace"], elapsed, rt)
        if begun is None:
            return {**base, "state": {"waiting": {"reason": CONFIG_ERROR,
                                                  "message": rt.config_errors[container["name"]]}}}
        running = {**base, "imageID": _image_id(image), "containerID": _container_id(meta["uid"], container["name"])}
        if failure is not None and failure.mode == CRASH_LOOP_BACKOFF:
            restarts = 1 + int((elapsed - begun) / RESTART_PERIOD)
            last_start = begun + (restarts - 1) * RESTART_PERIOD
            return {**running, "restartCount": restarts,
                    "state": {"waiting": {"reason": CRASH_LOOP_BACKOFF, "message": (
                        f"back-off 10s restarting failed container={container['name']} "
                        f"pod={meta['name']}_{meta['namespace']}({meta['uid']})")}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": rt.stamp(last_start),
                                                 "finishedAt": rt.stamp(last_start + 0.5),
                                                 "containerID": running["containerID"]}}}
        return {**running, "ready": not _probe_fails(container, failure), "started": True,
                "state": {"running": {"startedAt": rt.stamp(begun)}}}

    def _created_at(self, container: dict[str, Any], namespace: str, elapsed: float, rt: PodRuntime) -> float | None:
        """When (elapsed) the container could first be created; None while its env does not resolve."""
        name = container["name"]
        if name not in rt.config_ok:
            error = config_error(container, namespace, self.cluster.store)
            if error is not None:
                rt.config_errors[name] = error
                return None
            rt.config_ok[name] = elapsed if name in rt.config_errors else self.start_delay
        return rt.config_ok[name]

    # ------------------------------------------------------------------------------------------ events

    def _announce(self, pod: dict[str, Any], rt: PodRuntime, elapsed: float) -> None:
        """The Events of the pod's story so far, each once (BackOff counted per restart)."""
        meta = pod["metadata"]
        if rt.stuck:
            for stuck in rt.stuck:
                self.events.every(pod, "FailedAttachVolume", attach_message(stuck), int(elapsed / ATTACH_RETRY),
                                  warning=True, component="attachdetach-controller")
            if elapsed >= MOUNT_TIMEOUT:
                self.events.every(pod, "FailedMount", mount_message(pod, rt.stuck), int(elapsed / MOUNT_TIMEOUT),
                                  warning=True)
            return
        if elapsed < self.start_delay:
            return
        if rt.unmounted is not None:  # the kubelet retries the mount; its FailedMount repeats until it works
            self.events.every(pod, "FailedMount", rt.unmounted[1], int((elapsed - self.start_delay) / CONFIG_RETRY) + 1,
                              warning=True)
            return
        for container in (pod.get("spec") or {}).get("containers") or []:
            name, image = container["name"], container.get("image", "")
            path = f"spec.containers{{{name}}}"
            failure = rt.failures.get(name)
            if failure is not None and failure.mode == IMAGE_PULL_BACKOFF:
                self._once(rt, f"Pulling/{name}", pod, f'Pulling image "{image}"')
                self._once(rt, f"Failed/{name}", pod, f'Failed to pull image "{image}": rpc error: code = NotFound '
                           f'desc = failed to pull and unpack image "{image}": failed to resolve reference '
                           f'"{image}": {image}: not found', warning=True)
                self._once(rt, f"ErrImagePull/{name}", pod, "Error: ErrImagePull", warning=True, reason="Failed")
                self._once(rt, f"BackOff/{name}", pod, f'Back-off pulling image "{image}"')
                self._once(rt, f"ImagePullBackOff/{name}", pod, "Error: ImagePullBackOff", warning=True,
                           reason="Failed")
                continue
            self._once(rt, f"Pulled/{name}", pod, f'Container image "{image}" already present on machine')
            begun = rt.config_ok.get(name)
            if begun is None:
                if name in rt.config_errors:
                    self.events.every(pod, "Failed", f"Error: {rt.config_errors[name]}",
                                      int((elapsed - self.start_delay) / CONFIG_RETRY), warning=True, field_path=path)
                continue
            self._once(rt, f"Created/{name}", pod, f"Created container: {name}")
            self._once(rt, f"Started/{name}", pod, f"Started container {name}")
            if failure is not None and failure.mode == CRASH_LOOP_BACKOFF:
                restarts = 1 + int((elapsed - begun) / RESTART_PERIOD)
                if restarts > rt.restarts_reported:
                    rt.restarts_reported = restarts
                    self.events.record(pod, "BackOff", f"Back-off restarting failed container {name} in pod "
                                       f"{meta['name']}_{meta['namespace']}({meta['uid']})", warning=True, repeat=True,
                                       field_path=path)
            elif _probe_fails(container, failure) and (count := probe_failures(
                    container["readinessProbe"], elapsed - begun)):
                message = probe_message("Readiness", container["readinessProbe"], _pod_ip(meta["uid"]), failure.log)
                self.events.every(pod, "Unhealthy", message, count, warning=True, field_path=path)

    def _once(self, rt: PodRuntime, key: str, pod: dict[str, Any], message: str, *, warning: bool = False,
              component: str = "kubelet", reason: str | None = None) -> None:
        if key not in rt.announced:
            rt.announced.add(key)
            container = key.partition("/")[2]
            self.events.record(pod, reason or key.split("/")[0], message, warning=warning, component=component,
                               field_path=f"spec.containers{{{container}}}" if container else None)


def _probe_fails(container: dict[str, Any], failure: Failure | None) -> bool:
    """An injected probe failure shows only on containers that have a readiness probe (as in reality)."""
    return failure is not None and failure.mode == READINESS_PROBE_FAILED and bool(container.get("readinessProbe"))


def _condition(kind: str, ok: bool, when: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                            "lastTransitionTime": when}
    if not ok and reason:
        cond.update(reason=reason, message=message)
    return cond


def _unready(names: list[str]) -> tuple[str | None, str | None]:
    return ("ContainersNotReady", f"containers with unready status: [{' '.join(names)}]") if names else (None, None)


def _completed_init(container: dict[str, Any], rt: PodRuntime) -> dict[str, Any]:
    image = container.get("image", "")
    return {"name": container["name"], "image": image, "imageID": _image_id(image),
            "ready": True, "started": False, "restartCount": 0, "lastState": {},
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": rt.stamp(),
                                     "finishedAt": rt.stamp()}}}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _image_id(image: str) -> str:
    """A stable fake digest, shaped like containerd's imageID."""
    return f"{image.rsplit(':', 1)[0] if ':' in image.rsplit('/', 1)[-1] else image}@sha256:{_digest(image)}"


def _container_id(uid: str, name: str) -> str:
    return f"containerd://{_digest(uid + name)}"


def _pod_ip(uid: str) -> str:
    value = int(_digest(uid)[:6], 16)
    return f"10.244.{value // 256 % 256}.{value % 254 + 1}"
