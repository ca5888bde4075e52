"""Run the emulator as its own process, for drills and for tests that need a separate apiserver.

    python -m manual_deploy_sandbox.kube --kubeconfig PATH [--token T] [--ready-file F]

Writes a kubeconfig with the three ingest contexts pointing at itself, then (atomically) the ready
file as JSON {"url", "pid", "kubeconfig", "ca_pem"}, and serves until SIGTERM/SIGINT; exits 0 after a
clean stop and removes the ready file so nobody mistakes a stopped emulator for a running one.
With --token it serves HTTPS (client-go sends tokens over TLS only); `ca_pem` is the CA to trust when
driving `/_emulator/failures` or `/_emulator/ingress-failures` from another process (null over plain http).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from manual_deploy_sandbox.kube.emulator import KubeEmulator
from manual_deploy_sandbox.kube.kubeconfig import ingest_contexts, write_kubeconfig


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m manual_deploy_sandbox.kube", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True, type=Path, help="where to write the kubeconfig")
    parser.add_argument("--token", help="bearer token the emulator requires (and the kubeconfig carries)")
    parser.add_argument("--ready-file", type=Path, help="written with the URL and PID once serving")
    parser.add_argument("--pod-start-delay", type=float, default=0.2, help="seconds until healthy pods are Ready")
    parser.add_argument("--progress-deadline", type=float, default=2.0,
                        help="seconds until an unschedulable rollout exceeds its progress deadline")
    return parser.parse_args(argv)


def write_ready_file(path: Path, payload: dict) -> None:
    """Atomically, so a poller never reads a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    emulator = KubeEmulator(token=args.token, pod_start_delay=args.pod_start_delay,
                            progress_deadline=args.progress_deadline).start()
    try:
        write_kubeconfig(args.kubeconfig, ingest_contexts(emulator.url), token=args.token)
        if args.ready_file:
            write_ready_file(args.ready_file, {
                "url": emulator.url, "pid": os.getpid(), "kubeconfig": str(args.kubeconfig),
                "ca_pem": emulator.ca_pem.decode("ascii") if emulator.ca_pem else None})
        print(f"kube emulator serving at {emulator.url} (kubeconfig {args.kubeconfig})", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
        if args.ready_file:
            args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
