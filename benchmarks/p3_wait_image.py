"""P3 wait-image: latency from the image landing in the registry to the command exiting, and politeness.

The quay API is the QuayStandIn (its builds push real images into the real registry when they reach
`complete`); the registry is reached through a FaultProxy (no faults queued) so every request
`wait-image` makes to it is counted. Latency = process exit (wall clock) − QuayStandIn's
`published[(app, tag)]["at"]` (wall clock, taken right after the push finished).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CLI, Figure, Result, isolated_env, log, median, scratch, write_config  # noqa: E402

APP = "ingest-core"
SHORT_PHASES = [("waiting", 0.4), ("building", 1.2), ("pushing", 3.0), ("complete", 0)]  # pushing > one API poll (2 s)
LONG_PHASES = [("waiting", 5.0), ("build-scheduled", 2.0), ("building", 38.0), ("pushing", 15.0), ("complete", 0)]
LATENCY_TARGET_S = 1.0
API_RATE_TARGET = 1.0


def one_wait(env, config, quay, proxy, tag: str, phases, timeout: float = 300) -> dict:
    quay_before, reg_before = len(quay.requests), len(proxy.requests)
    started = time.time()
    quay.add_build(APP, tag, phases=phases)
    proc = subprocess.Popen([str(CLI), "--config", str(config), "wait-image", "--app", APP, "--tag", tag,
                             "--timeout", "5m"], env=env, cwd=env["HOME"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ended = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"wait-image exited {proc.returncode}:\n{err[-2000:]}")
    landed = quay.published[(APP, tag)]["at"]
    return {
        "latency": ended - landed,
        "duration": ended - started,
        "api": len(quay.requests) - quay_before,
        "registry": len(proxy.requests) - reg_before,
    }


def run(runs: int = 5, long: bool = True) -> Result:
    from manual_deploy_sandbox.faults import FaultProxy
    from manual_deploy_sandbox.quay import QuayStandIn
    from manual_deploy_sandbox.registry import start_registry

    result = Result("P3")
    with scratch("p3") as tmp:
        env = isolated_env(tmp)
        registry = quay = proxy = None
        try:
            registry = start_registry(tmp / "registry")
            quay = QuayStandIn(registry.url).start()
            proxy = FaultProxy(registry.url).start()
            config = write_config(tmp / "config.yaml", registry_url=proxy.url, api_url=quay.api_url,
                                  deploy_url=str(tmp / "no-deploy-repo.git"))
            stamp = int(time.time())
            log(f"P3 latency: 1 warm-up + {runs} short builds (~{sum(s for _, s in SHORT_PHASES):.1f}s each)")
            one_wait(env, config, quay, proxy, f"warm{stamp}", SHORT_PHASES)
            short = [one_wait(env, config, quay, proxy, f"s{i}x{stamp}", SHORT_PHASES) for i in range(runs)]
            lat = [s["latency"] for s in short]
            result.figures.append(Figure("P3a", "wait-image latency (landed -> exit)", median(lat), "s",
                                         LATENCY_TARGET_S, "le",
                                         "per run: " + ", ".join(f"{x:.2f}" for x in lat)))
            if long:
                log("P3 politeness: one build lasting ~60 s")
                w = one_wait(env, config, quay, proxy, f"long{stamp}", LONG_PHASES)
                api_rate = w["api"] / w["duration"]
                reg_rate = w["registry"] / w["duration"]
                result.figures.append(Figure("P3b", "quay API requests/s over a ~60 s wait", api_rate, "req/s",
                                             API_RATE_TARGET, "le",
                                             f"{w['api']} API requests, {w['registry']} registry requests in "
                                             f"{w['duration']:.1f}s; latency of this run {w['latency']:.2f}s"))
                result.notes.append(f"registry requests/s over the same ~60 s wait: {reg_rate:.2f} "
                                    f"(no target; README promises 1/s, 4/s while pushing)")
        finally:
            for server in (proxy, quay, registry):
                if server is not None:
                    server.stop()
    return result


if __name__ == "__main__":
    from common import print_result

    sys.exit(print_result(run(long="--short" not in sys.argv)))
