"""Per env: the cluster answers, the context's credentials can be obtained, and they allow every verb a deploy
uses. Only all three prove access."""

from __future__ import annotations

from manual_deploy import kube
from manual_deploy.doctor.report import FAIL, OK, WARN, Finding
from manual_deploy.doctor.runner import CHECK_TIMEOUT_S, Probe
from manual_deploy.errors import ManualDeployError
from manual_deploy.readiness import kinds

# What apply, rollback and status do in the env's namespace: (resource, API group, verbs, what for). The
# kinds' own needs come from the kind registry, so a new kind's permissions are checked without touching doctor.
ACCESS_NEEDED = (
    ("secrets", "", ("get", "list", "create", "update", "delete"), "helm's release records"),
    *(tuple(need) for need in kinds.access()),
    ("leases", "coordination.k8s.io", ("get", "create", "update", "delete"), "the deploy lock"),
    ("configmaps", "", ("get", "list", "create", "update"), "the team's deploy records"),
)

USER_KINDS = {"token": "a bearer token", "client-certificate": "a client certificate", "basic": "a user name and password",
              "auth-provider": "an auth-provider (deprecated)", "none": "no credentials"}

UNMAPPED_HINT = ("your role is probably not mapped in the cluster's aws-auth ConfigMap, or AWS_PROFILE points at another "
                 "account: `aws sts get-caller-identity` shows who you are; ask a cluster admin to map that role")


def cluster_probe(target: kube.Target) -> Probe:
    return Probe(f"cluster {target.env}", lambda: cluster_checks(target), _cluster_hint(target))


def _cluster_hint(target: kube.Target) -> str:
    return (
        f"check the VPN and your AWS credentials (`aws sts get-caller-identity`), "
        f"then `kubectl --context {target.context} version`"
    )


def cluster_checks(target: kube.Target) -> list[Finding]:
    """Reachable (anonymous /version), credentials obtained (exec plugin run, bounded), and authorized
    for every verb apply, rollback and status need (SelfSubjectAccessReview)."""
    creds = credentials_check(target)  # first: a plugin that hangs is cut off here, not in the client
    reach = cluster_check(target)
    if reach.status == FAIL or creds.status == FAIL:
        return [reach, creds]
    return [reach, creds, *access_checks(target), records_check(target)]


def cluster_check(target: kube.Target) -> Finding:
    """The cluster answers /version, asked without credentials: network and TLS, nothing about access
    (EKS answers /version to anyone)."""
    from kubernetes import client

    name = f"cluster {target.env}"
    try:
        api = kube.api_client(target, retries=False, anonymous=True)
        try:
            info = client.VersionApi(api).get_code(_request_timeout=CHECK_TIMEOUT_S)
        finally:
            api.close()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer this check reports
        return Finding(name, FAIL, f"{target.server} did not answer /version: {kube.error_line(exc)}", _cluster_hint(target))
    return Finding(name, OK, f"{target.server} answers: kubernetes {info.git_version} (reachable; access is checked below)")


def credentials_check(target: kube.Target) -> Finding:
    """What the context's user is, and for an exec plugin: it runs and gives a token (and when it expires)."""
    from manual_deploy import credentials

    name = f"credentials {target.env}"
    user = kube.context_user(target)
    if user.kind != "exec":
        status = WARN if user.kind in ("none", "auth-provider") else OK
        return Finding(name, status, f"user {user.name or '?'} has {USER_KINDS.get(user.kind, user.kind)}",
                       f"regenerate it: `{credentials.regenerate_command(user)}`")
    try:
        token = credentials.obtain(user, timeout_s=CHECK_TIMEOUT_S)
    except ManualDeployError as exc:
        return Finding(name, FAIL, exc.message, exc.hint)
    profile = f" (AWS_PROFILE {user.exec.profile})" if user.exec.profile else ""
    return Finding(name, OK, f"exec `{user.exec.display()}`{profile}: token {token.expiry()}")


def access_checks(target: kube.Target) -> list[Finding]:
    """One SelfSubjectAccessReview per verb and resource: ✓ once, or ✗ per missing permission."""
    name, ns = f"access {target.env}", target.namespace
    try:
        missing, asked = _missing_permissions(target)
    except Exception as exc:  # noqa: BLE001 - any failure is the answer this check reports
        if kube.is_refusal(exc):
            return [Finding(name, FAIL, f"the cluster refuses your credentials ({kube.error_line(exc)})", UNMAPPED_HINT)]
        return [Finding(name, FAIL, f"cannot ask what you may do: {kube.error_line(exc)}", _cluster_hint(target))]
    if not missing:
        return [Finding(name, OK, f"all {asked} permissions apply, rollback and status need in {ns}")]
    return [Finding(f"{name} {verb} {resource}", FAIL, f"cannot {verb} {resource} in {ns} (needed for {why})",
                    _missing_hint(target, verb, resource)) for verb, resource, why in missing]


def records_check(target: kube.Target) -> Finding:
    """The team's deploy records in the namespace are ours and readable; one edited by hand is named (deploys
    leave it alone and keep their records in the local queue)."""
    from manual_deploy import deploy_records

    name = f"records {target.env}"
    try:
        api = kube.api_client(target, retries=False)
        try:
            records, problems = deploy_records.read_namespace(api, target.namespace)
        finally:
            api.close()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer this check reports
        return Finding(name, WARN, f"the team's deploy records not read: {kube.error_line(exc)}",
                       "deploys still run; their records wait in this machine's audit log")
    if problems:
        return Finding(name, WARN, "; ".join(problems), "deploys still run; the records of those apps wait in the local queue "
                       "until the ConfigMap is fixed or deleted")
    return Finding(name, OK, f"{len(records)} deploy record(s) of the team in {target.namespace}")


def _missing_permissions(target: kube.Target) -> tuple[list[tuple[str, str, str]], int]:
    """(verb, resource, why) of each permission ACCESS_NEEDED names that the cluster denies, and how many were asked."""
    from kubernetes import client

    missing, asked = [], 0
    api = kube.api_client(target, retries=False)
    try:
        reviews = client.AuthorizationV1Api(api)
        for resource, group, verbs, why in ACCESS_NEEDED:
            plural, _, sub = resource.partition("/")
            for verb in verbs:
                attributes = client.V1ResourceAttributes(namespace=target.namespace, verb=verb, group=group,
                                                         resource=plural, subresource=sub or None)
                body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes))
                asked += 1
                review = reviews.create_self_subject_access_review(body, _request_timeout=CHECK_TIMEOUT_S)
                if not review.status.allowed:
                    missing.append((verb, f"{resource}.{group}" if group else resource, why))
    finally:
        api.close()
    return missing, asked


def _missing_hint(target: kube.Target, verb: str, resource: str) -> str:
    return (f"the role your credentials map to lacks it: ask a cluster admin to grant `{verb}` on {resource} in "
            f"{target.namespace}; if you expected to have it, check who you are (`aws sts get-caller-identity`) — "
            "a wrong AWS_PROFILE gives another role")
