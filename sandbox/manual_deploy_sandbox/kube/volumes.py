"""Injectable volume attach failures: a scheduled pod stuck in ContainerCreating, as EBS does it.

An EBS volume that will not attach (the attachdetach-controller's FailedAttachVolume, or the
Multi-Attach error of a ReadWriteOnce volume still on another node) leaves the pod scheduled but
never started; after the kubelet's mount timeout (2 minutes for real, MOUNT_TIMEOUT here) it adds
FailedMount. Failures are chosen by claim name (fnmatch glob) when the pod is scheduled.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from typing import Any

from manual_deploy_sandbox.kube.admission import NAME_SUFFIX_ALPHABET
from manual_deploy_sandbox.kube.events import NODE_NAME
from manual_deploy_sandbox.kube.storage import CLAIMS, claims_of, volume_id
from manual_deploy_sandbox.kube.store import Store

FAILED_ATTACH_VOLUME = "FailedAttachVolume"
MULTI_ATTACH = "Multi-Attach"
VOLUME_FAILURE_MODES = (FAILED_ATTACH_VOLUME, MULTI_ATTACH)
ATTACH_RETRY = 2.0  # seconds between the attachdetach-controller's retries (real back-off grows)
MOUNT_TIMEOUT = 3.0  # seconds until the kubelet gives up waiting for attachment (real: 2 minutes)
INSTANCE_ID = "i-0" + hashlib.sha256(NODE_NAME.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StuckVolume:
    """A pod volume whose attachment fails, with the PV behind its claim."""

    volume: str
    pv: str
    mode: str


class VolumeFailures:
    """The injected attach failures, by claim-name glob; replaced wholesale like Failures."""

    def __init__(self) -> None:
        self._items: tuple[tuple[str, str], ...] = ()

    def add(self, claim_glob: str, mode: str) -> None:
        if mode not in VOLUME_FAILURE_MODES:
            raise ValueError(f"unknown volume failure mode {mode!r}; expected one of "
                             f"{', '.join(VOLUME_FAILURE_MODES)}")
        self._items = (*self._items, (claim_glob, mode))

    def clear(self) -> None:
        self._items = ()

    def as_list(self) -> list[dict[str, str]]:
        return [{"claim": glob, "mode": mode} for glob, mode in self._items]

    def stuck(self, pod: dict[str, Any], store: Store) -> tuple[StuckVolume, ...]:
        """The pod's bound claims whose name matches an injected failure (the newest match wins)."""
        found = []
        for volume, claim_name in claims_of(pod):
            mode = next((m for g, m in reversed(self._items) if fnmatch.fnmatchcase(claim_name, g)), None)
            claim = store.get(CLAIMS, pod["metadata"]["namespace"], claim_name, copy=False)
            pv = ((claim or {}).get("spec") or {}).get("volumeName")
            if mode and pv:
                found.append(StuckVolume(volume, pv, mode))
        return tuple(found)


def attach_message(stuck: StuckVolume) -> str:
    """The attachdetach-controller's FailedAttachVolume message for the mode."""
    if stuck.mode == MULTI_ATTACH:
        return (f'Multi-Attach error for volume "{stuck.pv}" Volume is already exclusively attached to one node '
                "and can't be attached to another")
    vol = volume_id(stuck.pv)
    return (f'AttachVolume.Attach failed for volume "{stuck.pv}" : rpc error: code = Internal desc = Could not '
            f'attach volume "{vol}" to node "{INSTANCE_ID}": attachment of disk "{vol}" failed, expected device to '
            "be attached but was attaching")


def mount_message(pod: dict[str, Any], stuck: tuple[StuckVolume, ...]) -> str:
    """The kubelet's FailedMount after its timeout; lists the service account token volume too."""
    names = {v.get("name", "") for v in (pod.get("spec") or {}).get("volumes") or []}
    if not any(n.startswith("kube-api-access-") for n in names):
        digest = int(hashlib.sha256(pod["metadata"]["uid"].encode()).hexdigest(), 16)
        names.add("kube-api-access-" + "".join(NAME_SUFFIX_ALPHABET[digest >> (5 * i) & 15] for i in range(5)))
    unmounted = " ".join(sorted(s.volume for s in stuck))
    return (f"Unable to attach or mount volumes: unmounted volumes=[{unmounted}], unattached volumes="
            f"[{' '.join(sorted(names))}]: timed out waiting for the condition")
