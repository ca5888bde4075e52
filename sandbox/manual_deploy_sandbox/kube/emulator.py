"""KubeEmulator: the emulated apiserver on a loopback port, run by a daemon thread with its own loop.

Tests and the sandbox drive it from ordinary synchronous code (the kubernetes client, helm in a
subprocess), so the aiohttp server and the controller ticker live on a private event loop in a
background thread; start() returns once the port is bound and stop() is idempotent and bounded.

We serve with aiohttp's ServerRunner rather than kmock.Server: kmock.Server also patches aiohttp's
resolver process-wide and requires LIFO shutdown, which several emulators in threads cannot promise.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import aiohttp.web

from manual_deploy_sandbox.kube import auth, certs, resources, storage
from manual_deploy_sandbox.kube.api import KubeApi
from manual_deploy_sandbox.kube.cluster import NAMESPACES
from manual_deploy_sandbox.kube.ingresses import FAILED_BUILD_MODEL, NO_SUBNETS, IngressFailures
from manual_deploy_sandbox.kube.events import NODE_NAME
from manual_deploy_sandbox.kube.kubeconfig import INGEST_CONTEXTS
from manual_deploy_sandbox.kube.kubelet import NODE_IP, Failure, Failures
from manual_deploy_sandbox.kube.scheduler import NODES
from manual_deploy_sandbox.kube.volumes import VolumeFailures

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
CALL_TIMEOUT = 10.0
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NODE_CAPACITY = {"cpu": "8", "memory": "32408452Ki", "pods": "58", "ephemeral-storage": "83873772Ki"}
NODE_ALLOCATABLE = {"cpu": "7910m", "memory": "31482756Ki", "pods": "58", "ephemeral-storage": "76224326324"}
MAX_BODY = 3 * 1024 * 1024  # the apiserver's request limit; aiohttp's default (1 MiB) is below big helm releases
T = TypeVar("T")


class KubeEmulator:
    """An emulated kube-apiserver (with a Deployment controller and a pretend kubelet) on 127.0.0.1.

    `namespaces` exist from the start (besides the system ones) because a real cluster has them and
    the apiserver refuses objects in a missing namespace. With a `token` the emulator serves HTTPS
    (`tls=None` means "iff token"): client-go sends bearer tokens over TLS only. `ca_pem` is then the
    CA to trust; write_kubeconfig embeds it by itself.

    Authentication is EKS's: the static `token` is the cluster creator ("kubernetes-admin"); with a
    `token_key`, tokens from the exec plugin stand-in (exec_plugin.py, keyed by the same value) are
    accepted until they expire, each as its IAM identity. Without either, nothing is checked.
    /version and the health paths are readable anonymously. deny() / unmap_user() make RBAC and
    aws-auth refuse what a test needs refused (403 / 401); SelfSubjectAccessReview reports the same.

    `storage_classes` are seeded like EKS's (default: its `gp2`, WaitForFirstConsumer, the default
    class); entries are names or partial StorageClass dicts (see storage.storage_class), e.g.
    `["gp2", {"name": "retained-gp2", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}]`.
    The node is an m5.2xlarge (allocatable 7910m cpu, ~30Gi memory); set_node_allocatable shrinks it.
    """

    def __init__(self, *, token: str | None = None, token_key: str | None = None, pod_start_delay: float = 0.2,
                 progress_deadline: float = 2.0,
                 name: str = "sandbox", namespaces: Iterable[str] = tuple(INGEST_CONTEXTS.values()),
                 tls: bool | None = None, storage_classes: Iterable[str | dict[str, Any]] = ("gp2",)) -> None:
        self.token = token
        self.token_key = token_key
        self.tls = bool(token or token_key) if tls is None else tls
        self._authorizer = auth.Authorizer(token, token_key)
        self.ca_pem: bytes | None = None
        self.pod_start_delay = pod_start_delay
        self.progress_deadline = progress_deadline
        self.name = name
        self.namespaces = tuple(namespaces)
        self.url = ""
        self.requests: list[dict[str, Any]] = []
        self._failures = Failures()
        self._volume_failures = VolumeFailures()
        self._ingress_failures = IngressFailures()
        self.storage_classes = [storage.storage_class(spec) for spec in storage_classes]
        self._api: KubeApi | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # ---------------------------------------------------------------------------------------- lifecycle

    def start(self) -> KubeEmulator:
        """Bind a free loopback port and serve; returns once requests can be answered."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"kube-emulator-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"kube emulator {self.name!r} did not start within {START_TIMEOUT:.0f}s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            raise RuntimeError(f"kube emulator {self.name!r} failed to start: {self._error!r}") from self._error
        if self.ca_pem is not None:
            certs.register(self.url, self.ca_pem)
        return self

    def stop(self) -> None:
        """Close watches, stop the ticker and the server, join the thread. Safe to call twice."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        self._thread = None
        if thread is None:
            return
        certs.unregister(self.url)
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed between the check and the call
                pass
        thread.join(STOP_TIMEOUT)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------------- injection

    def add_failure(self, image_glob: str, mode: str, *, log: str = Failure.log) -> None:
        """Make containers whose image matches the glob fail as `mode` (pods created from now on)."""
        self._failures.add(image_glob, mode, log)

    def clear_failures(self) -> None:
        self._failures.clear()
        self._volume_failures.clear()
        self._ingress_failures.clear()

    def add_volume_failure(self, claim_glob: str, mode: str) -> None:
        """Make volumes of claims matching the glob fail to attach ("FailedAttachVolume" or "Multi-Attach")
        for pods scheduled from now on: they stay ContainerCreating with the attach/mount Events."""
        self._volume_failures.add(claim_glob, mode)

    def add_ingress_failure(self, name_glob: str, reason: str = FAILED_BUILD_MODEL, message: str = NO_SUBNETS) -> None:
        """Make the load balancer controller fail for Ingresses whose name matches the glob: no address,
        only its Warning Event (reason, message), repeated while the rule stands (clear_failures ends it)."""
        self._ingress_failures.add(name_glob, reason, message)

    def set_node_allocatable(self, cpu: str | None = None, memory: str | None = None) -> None:
        """Resize the node for the scheduler (e.g. memory="1Gi"); capacity grows along if needed."""
        def resize(api: KubeApi) -> None:
            node = api.cluster.get(NODES, None, NODE_NAME)
            status = node.setdefault("status", {})
            for key, value in (("cpu", cpu), ("memory", memory)):
                if value is not None:
                    status.setdefault("allocatable", {})[key] = str(value)
                    status.setdefault("capacity", {})[key] = str(value)
            api.cluster.replace(NODES, None, NODE_NAME, node, subresource="status")
        if self._api is None:
            raise RuntimeError("start the emulator before resizing its node")
        self._call(resize)

    def deny(self, verb: str, resource: str, *, group: str = "", namespace: str | None = None,
             user: str | None = None, times: int | None = None) -> None:
        """Refuse `verb` on `resource` (`pods/log` for a subresource) with RBAC's 403, e.g.
        deny("patch", "deployments", group="apps", namespace="prod-environment"). Globs allowed;
        namespace/user None = all (the static admin included, unlike a real system:masters).
        `times`: only the next that many matching requests are refused; None: all of them."""
        self._authorizer.deny(auth.Denial(verb, resource, group, namespace, user, times))

    def unmap_user(self, user_glob: str) -> None:
        """Answer 401 to every request of matching users, as EKS does for a role missing from aws-auth."""
        self._authorizer.unmap(user_glob)

    def clear_denials(self) -> None:
        self._authorizer.clear(unmapped=False)

    def allow_all(self) -> None:
        """Forget every deny() and unmap_user()."""
        self._authorizer.clear()

    def run_cronjob(self, namespace: str, name: str) -> str | None:
        """Start the CronJob's Job now, as its schedule firing would (the emulator has no cron timer).

        Returns the Job's name (`<cronjob>-<scheduled minute>`), or None when a real controller would
        start nothing: the CronJob is suspended, or its concurrencyPolicy is Forbid and a Job still runs.
        The Job completes or fails like any other (add_failure on its image: BackoffLimitExceeded).
        """
        if self._api is None:
            raise RuntimeError("start the emulator before running a CronJob")
        return self._call(lambda api: _run_and_settle(api, namespace, name))

    @property
    def failures(self) -> list[dict[str, str]]:
        return self._failures.as_list()

    @property
    def ingress_failures(self) -> list[dict[str, str]]:
        return self._ingress_failures.as_list()

    # ------------------------------------------------------------------------------------- inspection

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One stored object, e.g. get("apps/v1/deployments", "prod-environment", "ingest-core")."""
        res = resources.by_path(resource)
        return self._call(lambda api: api.cluster.find(res, namespace, name))

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """All stored objects of a resource, in one namespace or all."""
        res = resources.by_path(resource)
        return self._call(lambda api: api.cluster.list(res, namespace)) or []

    def create(self, resource: str, namespace: str | None, body: dict[str, Any]) -> dict[str, Any] | None:
        """Store a new object with the apiserver's create semantics (what a sandbox seeds the cluster with)."""
        res = resources.by_path(resource)
        return self._call(lambda api: api.cluster.create(res, body, namespace))

    def replace(self, resource: str, namespace: str | None, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        res = resources.by_path(resource)
        return self._call(lambda api: api.cluster.replace(res, namespace, name, body))

    def _call(self, fn: Callable[[KubeApi], T]) -> T | None:
        """Run `fn` on the emulator's loop (where all state lives); directly once it has stopped."""
        api, loop = self._api, self._loop
        if api is None:
            return None
        if loop is None or loop.is_closed() or self._thread is None:
            return fn(api)

        async def call() -> T:
            return fn(api)

        return asyncio.run_coroutine_threadsafe(call(), loop).result(CALL_TIMEOUT)

    # ------------------------------------------------------------------------------------------ thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), which raises it
            self._error = exc
        finally:
            self._ready.set()
            loop.run_until_complete(loop.shutdown_default_executor())  # the openssl helper thread
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        api = KubeApi(authorizer=self._authorizer, pod_start_delay=self.pod_start_delay,
                      progress_deadline=self.progress_deadline, failures=self._failures, journal=self.requests,
                      volume_failures=self._volume_failures, ingress_failures=self._ingress_failures)
        self._api = api
        _seed(api, self.namespaces, self.storage_classes)
        ssl_context = None
        if self.tls:
            ssl_context, self.ca_pem = await asyncio.get_running_loop().run_in_executor(None, certs.server_context)
        server = aiohttp.web.Server(api, request_factory=_request_factory(asyncio.get_running_loop()))
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = aiohttp.web.TCPSite(runner, LOOPBACK, 0, ssl_context=ssl_context)
            await site.start()
            scheme = "https" if ssl_context else "http"
            self.url = f"{scheme}://{LOOPBACK}:{runner.addresses[0][1]}"
            async with api:
                ticker = asyncio.create_task(api.controller.run(api.closing))
                self._ready.set()
                await self._stopping.wait()
                api.close()
                await asyncio.wait_for(ticker, STOP_TIMEOUT)
        finally:
            await runner.cleanup()


def _run_and_settle(api: KubeApi, namespace: str, name: str) -> str | None:
    """Start a CronJob's Job and let the controllers react at once, as after any API write."""
    started = api.controller.cronjobs.run(namespace, name)
    api.controller.sync()
    return started


def _request_factory(loop: asyncio.AbstractEventLoop) -> Callable[..., aiohttp.web.BaseRequest]:
    """aiohttp's request factory, with the apiserver's body size limit instead of aiohttp's."""
    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> aiohttp.web.BaseRequest:
        return aiohttp.web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY)
    return make


def _seed(api: KubeApi, namespaces: Iterable[str], storage_classes: Iterable[dict[str, Any]]) -> None:
    """What every cluster has before anyone deploys: system namespaces, a Ready node, StorageClasses."""
    for namespace in dict.fromkeys((*SYSTEM_NAMESPACES, *namespaces)):
        api.cluster.create(NAMESPACES, {"metadata": {"name": namespace}})
    nodes = resources.by_path("v1/nodes")
    node = api.cluster.create(nodes, {"metadata": {"name": NODE_NAME, "labels": {
        "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": storage.ZONE, "node.kubernetes.io/instance-type": "m5.2xlarge"}}})
    node["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status"}],
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
        "capacity": dict(NODE_CAPACITY), "allocatable": dict(NODE_ALLOCATABLE),
        "nodeInfo": {"kubeletVersion": "v1.31.0-eks-a737599", "kubeProxyVersion": "v1.31.0-eks-a737599",
                     "containerRuntimeVersion": "containerd://1.7.20", "operatingSystem": "linux",
                     "architecture": "amd64", "osImage": "Amazon Linux 2",
                     "kernelVersion": "5.10.225-213.878.amzn2.x86_64", "machineID": "ec2a0c6a3f4e4f8d9b1c2d3e4f5a6b7c",
                     "systemUUID": "ec2a0c6a-3f4e-4f8d-9b1c-2d3e4f5a6b7c",
                     "bootID": "4f1c9a52-8d3e-4b6a-9c2f-7e5d1a3b8c90"},
    }
    api.cluster.replace(nodes, None, NODE_NAME, node, subresource="status")
    for storage_class in storage_classes:
        api.cluster.create(storage.STORAGE_CLASSES, storage_class)
