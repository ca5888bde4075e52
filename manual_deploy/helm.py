"""The helm driver: which helm binary to run, and pyhelm3 calls wrapped in our own small types.

Found in this order so a drill or CI can pin one without touching PATH: config `helm.executable`,
then $MANUAL_DEPLOY_HELM, then `helm` on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from manual_deploy import watchdog
from manual_deploy.errors import OperationFailed, UsageError
from manual_deploy.redact import redact

HELM_ENV_VAR = "MANUAL_DEPLOY_HELM"


def find_helm(configured: str | None = None, environ: dict[str, str] | os._Environ = os.environ) -> str:
    """Absolute path of the helm binary to use, or a usage error that says how to provide one."""
    for source, candidate in (("config helm.executable", configured), (f"${HELM_ENV_VAR}", environ.get(HELM_ENV_VAR))):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path.resolve())
            raise UsageError(f"{source} points at {candidate}, which is not an executable file", hint="fix the path")
    found = shutil.which("helm")
    if found:
        return found
    raise UsageError(
        "helm was not found on PATH",
        hint=f"install helm ≥ 3.8, or point {HELM_ENV_VAR} (or config helm.executable) at the binary",
    )


@dataclass(frozen=True)
class Revision:
    number: int
    status: str
    updated: str
    description: str


def helm_error(exc: Exception, action: str, *secrets: str | None) -> OperationFailed:
    """One line from helm's stderr (its `Error:` line when there is one), secrets masked."""
    stderr = getattr(exc, "stderr", b"") or b""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors_only = [line for line in lines if line.lower().startswith("error")]
    reason = (errors_only or lines or [type(exc).__name__])[-1]
    return OperationFailed(redact(f"{action}: {reason}", *secrets))


STOP_GRACE_S = 5.0
# helm's words when it could not talk to the cluster (client-go and Go's net/http); a blip, not a verdict
NETWORK_ERRORS = re.compile(
    r"kubernetes cluster unreachable|tls handshake timeout|connection refused|connection reset|i/o timeout|"
    r"no route to host|network is unreachable|client connection lost|unexpected eof|broken pipe|"
    r"server is currently unable to handle the request|too many requests|etcdserver: request timed out|"
    r"http2: server sent goaway|dial tcp", re.IGNORECASE)


def network_failure(exc: BaseException) -> str | None:
    """The network words of a failed helm command (`TLS handshake timeout`), or None when it failed for another reason."""
    stderr = getattr(exc, "stderr", b"") or b""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr)
    found = list(dict.fromkeys(m.group(0).lower() for m in NETWORK_ERRORS.finditer(text)))
    if not found:
        return None
    specific = [w for w in found if w not in ("kubernetes cluster unreachable", "dial tcp")]
    if not specific:
        return "cluster unreachable"
    return f"cluster unreachable ({specific[0].replace('tls', 'TLS')})"


STATUS_TIMEOUT_S = 120.0  # a `helm status` that hangs longer than this will not answer
NOT_FOUND = "release: not found"  # in helm's stderr when the release does not exist


def helm_argv(executable: str, command: list, *, kubeconfig: str | Path | None, context: str | None) -> list[str]:
    """helm's argument list for one command, bound to a kubeconfig file and a context."""
    argv = [executable, *(str(part) for part in command)]
    if kubeconfig:
        argv += ["--kubeconfig", str(kubeconfig)]
    if context:
        argv += ["--kube-context", context]
    return argv


def single_kubeconfig(kubeconfig: str | None) -> Path | None:
    """helm's --kubeconfig takes one file; a ':'-separated KUBECONFIG is left to helm's own env handling."""
    return Path(kubeconfig).expanduser() if kubeconfig and os.pathsep not in kubeconfig else None


class HelmCommandError(Exception):
    """A helm process that failed; `stderr` is what `helm_error` reports."""

    def __init__(self, returncode: int, stderr: bytes):
        super().__init__(f"helm exited {returncode}")
        self.returncode, self.stderr = returncode, stderr


class StatusRead:
    """`helm status -o json` of one release, started now and read when the plan needs it.

    apply starts these as soon as the target is known, so helm talks to the cluster while the
    image and config phases run (and pyhelm3 loads); the plan then only collects the answer.
    """

    def __init__(self, executable: str, release: str, namespace: str, *, kubeconfig: str | None, context: str):
        import subprocess

        argv = helm_argv(executable, ["status", release, "--namespace", namespace, "--output", "json"],
                         kubeconfig=single_kubeconfig(kubeconfig), context=context)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        watchdog.guard(self.proc.pid)

    def result(self) -> tuple[Revision | None, dict]:
        """Blocks until helm answers (at most STATUS_TIMEOUT_S): (current revision, user values) or (None, {})."""
        import json
        import subprocess

        try:
            stdout, stderr = self.proc.communicate(timeout=STATUS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise HelmCommandError(-1, f"Error: helm status gave no answer in {STATUS_TIMEOUT_S:.0f}s".encode()) from None
        watchdog.release(self.proc.pid)
        if self.proc.returncode != 0:
            if NOT_FOUND in stderr.decode(errors="replace").lower():
                return None, {}
            raise HelmCommandError(self.proc.returncode, stderr)
        return status_revision(json.loads(stdout))

    def stop(self) -> None:
        """Kill helm if it still runs (apply failed before the plan read it), and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        watchdog.release(self.proc.pid)


def status_revision(status: dict) -> tuple[Revision, dict]:
    """(revision, user values) from `helm status -o json`; its `config` holds the user values.

    Read straight from the JSON: pyhelm3's revision object would also parse the whole rendered
    manifest (pure-Python YAML) just to be discarded.
    """
    info = status.get("info") or {}
    revision = Revision(int(status["version"]), str(info.get("status", "")), _as_datetime_text(info.get("last_deployed")),
                        str(info.get("description") or ""))
    return revision, status.get("config") or {}


def remembered_version(executable: str) -> str:
    """`helm version` of this binary, remembered per (path, size, mtime) in the cache directory.

    Every command needs it (pyhelm3 picks flags by it) and it costs a helm start (~0.1 s); a binary
    that is replaced gets a new size or mtime and is asked again.
    """
    import json
    import subprocess

    from manual_deploy import paths

    info = os.stat(executable)
    key = f"{os.path.realpath(executable)}|{info.st_size}|{info.st_mtime_ns}"
    cache = paths.cache_dir() / "helm-versions.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    proc = subprocess.run([executable, "version", "--template", "{{ .Version }}"], capture_output=True, check=True, timeout=60)
    version = proc.stdout.decode().strip()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fresh = {k: v for k, v in (known if isinstance(known, dict) else {}).items() if os.path.exists(k.split("|")[0])}
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**fresh, key: version}))
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only cache only costs the next run the same question
    return version


def _exec_command_class():
    """pyhelm3's Command with two changes we rely on.

    - helm runs from an argument list (pyhelm3 goes through `sh -c`), in its own session so a
      terminal's Ctrl-C or SIGHUP reaches us, not helm, and we decide; the watchdog
      (`manual_deploy.watchdog`) stops it if we die without deciding;
    - a cancelled call really stops helm: SIGTERM, then SIGKILL after STOP_GRACE_S. helm 3 keeps
      waiting for pods after SIGTERM, and pyhelm3 would wait for it until --timeout.
    """
    import asyncio

    import semver
    from pyhelm3 import errors as helm_errors
    from pyhelm3.command import Command

    class ExecCommand(Command):
        def _argv(self, command: list) -> list[str]:
            return helm_argv(self._executable, command, kubeconfig=self._kubeconfig, context=self._kubecontext)

        def client_version(self) -> semver.VersionInfo:
            return semver.VersionInfo.parse(remembered_version(self._executable).lstrip("v"))

        async def run(self, command: list, input: bytes | None = None) -> bytes:
            import tempfile

            # helm writes into files, not pipes: if we die, a pipe with no reader would kill helm with
            # SIGPIPE on its next line, in the middle of the rollback it starts when the watchdog stops it
            with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
                proc = await asyncio.create_subprocess_exec(
                    *self._argv(command),
                    stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
                    stdout=out_file,
                    stderr=err_file,
                    start_new_session=True,
                )
                watchdog.guard(proc.pid)
                try:
                    await proc.communicate(input)
                except asyncio.CancelledError:
                    await _stop(proc)
                    raise
                finally:
                    if proc.returncode is not None:
                        watchdog.release(proc.pid)
                stdout, stderr = _read_back(out_file), _read_back(err_file)
            if proc.returncode == 0:
                return stdout
            text = stderr.decode(errors="replace").lower()
            if NOT_FOUND in text:
                raise helm_errors.ReleaseNotFoundError(proc.returncode, stdout, stderr)
            if "context canceled" in text:
                raise helm_errors.CommandCancelledError(proc.returncode, stdout, stderr)
            raise helm_errors.Error(proc.returncode, stdout, stderr)

    def _read_back(file) -> bytes:
        file.seek(0)
        return file.read()

    async def _stop(proc) -> None:
        if proc.returncode is not None:
            return
        try:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        except ProcessLookupError:
            pass

    return ExecCommand


class HelmDriver:
    """pyhelm3 (asyncio) bound to one helm binary, kubeconfig and context."""

    def __init__(self, executable: str, *, kubeconfig: str | None, context: str, timeout_s: float):
        import pyhelm3

        self.executable = executable
        command = _exec_command_class()(
            executable=executable,
            kubeconfig=single_kubeconfig(kubeconfig),
            kubecontext=context,
            default_timeout=f"{int(timeout_s)}s",
        )
        self.client = pyhelm3.Client(command=command, executable=executable)
        self.major = self.client.version.major
        self.version = f"v{self.client.version}"

    async def current(self, release: str, namespace: str) -> Revision | None:
        from pyhelm3.errors import ReleaseNotFoundError

        try:
            revision = await self.client.get_current_revision(release, namespace=namespace)
        except ReleaseNotFoundError:
            return None
        return _revision(revision)

    async def current_and_values(self, release: str, namespace: str) -> tuple[Revision | None, dict]:
        """The current revision and its user-supplied values, from one `helm status` (its JSON has `config`).

        One helm process instead of `status` + `get values` (see `status_revision`).
        """
        from pyhelm3.errors import ReleaseNotFoundError

        try:
            status = await self.client._command.status(release, namespace=namespace)
        except ReleaseNotFoundError:
            return None, {}
        return status_revision(status)

    async def values(self, release: str, namespace: str, number: int) -> dict:
        return await self.client._command.get_values(release, namespace=namespace, revision=number)

    async def history(self, release: str, namespace: str) -> list[Revision]:
        from pyhelm3.errors import ReleaseNotFoundError

        try:
            entries = await self.client._command.history(release, namespace=namespace)
        except ReleaseNotFoundError:
            return []
        return [
            Revision(int(e["revision"]), str(e.get("status", "")), str(e.get("updated", "")), str(e.get("description", "")))
            for e in entries
        ]

    async def manifest(self, release: str, namespace: str) -> str:
        docs = await self.client._command.get_resources(release, namespace=namespace)
        return _dump_docs(docs)

    async def template(self, release: str, chart_dir: Path, values: list[dict], namespace: str) -> str:
        chart = await self.chart(chart_dir)
        docs = await self.client.template_resources(chart, release, *values, namespace=namespace, is_upgrade=True)
        return _dump_docs(docs)

    async def chart(self, chart_dir: Path):
        """The chart with its metadata, for pyhelm3's upgrade.

        A local chart's metadata is its Chart.yaml, which is what `helm show chart` prints for a
        directory: reading it saves one helm process per app (eight of them compete for two cores
        in a multi-app apply). Anything unusual in it → helm is asked after all.
        """
        from pyhelm3.models import Chart, ChartMetadata

        from manual_deploy import yamlio

        try:
            metadata = ChartMetadata(**yamlio.safe_load((chart_dir / "Chart.yaml").read_text()))
        except Exception:  # noqa: BLE001 - helm's own reading is the reference
            return await self.client.get_chart(chart_dir)
        return Chart(self.client._command, ref=chart_dir, metadata=metadata)

    async def upgrade(self, release: str, chart, values: list[dict], *, namespace: str, description: str, timeout_s: float) -> Revision:
        """`helm upgrade --install --wait` of what `chart()` loaded, with rollback on failure, never creating namespaces."""
        on_failure = {"atomic": True} if self.major < 4 else {"rollback_on_failure": True}
        revision = await self.client.install_or_upgrade_release(
            release,
            chart,
            *values,
            namespace=namespace,
            create_namespace=False,
            description=description,
            wait=True,
            timeout=f"{int(timeout_s)}s",
            **on_failure,
        )
        return _revision(revision)

    async def rollback(self, release: str, namespace: str, number: int | None, *, timeout_s: float) -> None:
        await self.client._command.rollback(release, number, namespace=namespace, wait=True, timeout=f"{int(timeout_s)}s")

    async def uninstall(self, release: str, namespace: str, *, timeout_s: float) -> None:
        """Remove the release; one that is already gone counts as removed (helm's --atomic cleans up
        a failed first install itself when it is stopped, sometimes before we get to ask)."""
        from pyhelm3.errors import ReleaseNotFoundError

        try:
            await self.client._command.uninstall(release, namespace=namespace, wait=True, timeout=f"{int(timeout_s)}s")
        except ReleaseNotFoundError:
            pass


def driver_for(config, target, *, kubeconfig: str | None = None, timeout_s: float = 60.0) -> HelmDriver:
    """The helm driver for one target (config's helm binary, the target's context): built the same way
    by every verb, so a reader and a writer of one release never talk to different clusters."""
    return HelmDriver(find_helm(config.helm.executable), kubeconfig=kubeconfig, context=target.context, timeout_s=timeout_s)


async def manifest_diff(helm: HelmDriver, release: str, chart_dir, values: list[dict], namespace: str, *,
                        live_revision: int | None) -> str:
    """A unified diff of the live manifest vs `helm template` of the new values (what a dry run shows);
    `live_revision` None: a first install, diffed against nothing."""
    import difflib

    new = await helm.template(release, chart_dir, values, namespace)
    old = await helm.manifest(release, namespace) if live_revision is not None else ""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{release} (live revision {live_revision if live_revision is not None else '-'})",
        tofile=f"{release} (new)",
    )
    return "".join(lines)


def stored_values(values: list[dict]) -> dict:
    """The values helm stores for these layers: pyhelm3 merges them (mergeconcat) before sending them."""
    from pyhelm3.client import mergeconcat

    return mergeconcat({}, *values)


def _revision(revision) -> Revision:
    status = getattr(revision.status, "value", revision.status)
    return Revision(int(revision.revision), str(status), str(revision.updated), str(revision.description or ""))


def _as_datetime_text(stamp: str | None) -> str:
    """helm's RFC 3339 time as `str(datetime)`, the form pyhelm3's revisions carry (and `_revision` keeps)."""
    from datetime import datetime

    try:
        return str(datetime.fromisoformat(stamp or ""))
    except ValueError:
        return str(stamp or "")


def _dump_docs(docs) -> str:
    """Manifests as one YAML stream in a stable order (kind, name), for diffs."""
    import yaml

    items = [d for d in docs if isinstance(d, dict)]
    items.sort(key=lambda d: (str(d.get("kind")), str((d.get("metadata") or {}).get("name"))))
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=True) for d in items)
