"""A stand-in for `aws eks get-token`: the exec credential plugin of an EKS kubeconfig.

    python -m manual_deploy_sandbox.kube.exec_plugin --cluster-name ingest-eks-prod --region us-east-1

Prints an ExecCredential whose token the kube emulator can verify (HMAC with the key in
$MANUAL_DEPLOY_SANDBOX_TOKEN_KEY, which the kubeconfig's exec `env` carries). The failures that
wake people at 3 a.m. are chosen with $MANUAL_DEPLOY_SANDBOX_EXEC_MODE and worded exactly as the
AWS CLI v2 words them, so the product's pre-flight and helm's error output can be tested for real.
Standard library only, and nothing heavy imported: clients run this before their first request.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Sequence

from manual_deploy_sandbox.kube.auth import DEFAULT_EXEC_USER, sign_token

KEY_ENV = "MANUAL_DEPLOY_SANDBOX_TOKEN_KEY"  # the HMAC key shared with the emulator (its token_key)
MODE_ENV = "MANUAL_DEPLOY_SANDBOX_EXEC_MODE"  # ok | sso-expired | no-credentials | profile-not-found | hang | garbage
USER_ENV = "MANUAL_DEPLOY_SANDBOX_EXEC_USER"  # the IAM identity in the token (--user wins)
LOG_ENV = "MANUAL_DEPLOY_SANDBOX_EXEC_LOG"  # if set: one JSON line appended per run (tests count runs)
HANG_ENV = "MANUAL_DEPLOY_SANDBOX_EXEC_HANG_SECONDS"  # how long `hang` sleeps (default 120), then fails as sso-expired
V1ALPHA1 = "client.authentication.k8s.io/v1alpha1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
V1 = "client.authentication.k8s.io/v1"
MODES = ("ok", "sso-expired", "no-credentials", "profile-not-found", "hang", "garbage")
HANG_SECONDS = 120.0
# The AWS CLI v2's own words (it prints a blank line first and exits 255 on these).
SSO_EXPIRED = "\nError when retrieving token from sso: Token has expired and refresh failed\n"
NO_CREDENTIALS = '\nUnable to locate credentials. You can configure credentials by running "aws configure".\n'
PROFILE_NOT_FOUND = "\nThe config profile ({profile}) could not be found\n"
GARBAGE = "Note: AWS CLI version 2, the latest major version of the AWS CLI, is now stable and recommended.\n"
AWS_ERROR_EXIT = 255
# The token outlives the expirationTimestamp it is reported with (the AWS CLI reports 14 minutes for a
# 15-minute token), so a client that checks expiry just before sending is never refused in flight.
SERVER_GRACE_SECONDS = 1


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aws eks get-token", description=__doc__.split("\n")[0])
    parser.add_argument("--cluster-name", "--cluster-id", dest="cluster_name", required=True)
    parser.add_argument("--region")
    parser.add_argument("--ttl", type=float, default=900.0, help="seconds the token is valid (EKS: 15 min)")
    parser.add_argument("--user", "--role-name", "--role-arn", dest="user", help=f"default ${USER_ENV} or "
                        f"{DEFAULT_EXEC_USER}")
    parser.add_argument("--output", default="json", help="accepted for compatibility; always JSON")
    return parser.parse_args(list(argv))


def credential(api_version: str, token: str, expires: float) -> dict:
    stamp = dt.datetime.fromtimestamp(expires, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "ExecCredential", "apiVersion": api_version, "spec": {},
            "status": {"expirationTimestamp": stamp, "token": token}}


def requested_api_version(environ: dict[str, str]) -> tuple[str, dict | None]:
    """The apiVersion the client asked for in KUBERNETES_EXEC_INFO (absent for v1alpha1 clients)."""
    try:
        info = json.loads(environ["KUBERNETES_EXEC_INFO"])
        return str(info.get("apiVersion") or V1BETA1), info
    except (KeyError, ValueError, AttributeError):
        return V1BETA1, None


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if environ is None else environ)
    mode = env.get(MODE_ENV) or "ok"
    api_version, info = requested_api_version(env)
    _log(env, {"mode": mode, "cluster": args.cluster_name, "apiVersion": api_version, "exec_info": info,
               "time": time.time(), "pid": os.getpid(), "ppid": os.getppid()})
    key = env.get(KEY_ENV)
    if mode == "sso-expired":
        return _fail(SSO_EXPIRED)
    if mode == "no-credentials" or (mode == "ok" and not key):
        return _fail(NO_CREDENTIALS)
    if mode == "profile-not-found":
        return _fail(PROFILE_NOT_FOUND.format(profile=env.get("AWS_PROFILE") or "default"))
    if mode == "hang":
        time.sleep(float(env.get(HANG_ENV) or HANG_SECONDS))
        return _fail(SSO_EXPIRED)
    if mode == "garbage":
        sys.stdout.write(GARBAGE)
        return 0
    if mode != "ok":
        sys.stderr.write(f"{MODE_ENV}={mode!r} is not one of {', '.join(MODES)}\n")
        return 2
    expires = math.ceil(time.time() + args.ttl)
    token = sign_token(key, args.user or env.get(USER_ENV) or DEFAULT_EXEC_USER, expires + SERVER_GRACE_SECONDS,
                       cluster=args.cluster_name)
    sys.stdout.write(json.dumps(credential(api_version, token, expires)) + "\n")
    return 0


def _fail(message: str) -> int:
    sys.stderr.write(message)
    return AWS_ERROR_EXIT


def _log(env: dict[str, str], entry: dict) -> None:
    path = env.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    sys.exit(main())
