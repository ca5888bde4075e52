"""--force-refresh's delete of a Deployment before the upgrade: what the team's Makefile did (downtime).

Kept apart from the reads of a Deployment: it is the one write of one outside helm, and only apply does it.
"""

from __future__ import annotations

from manual_deploy.errors import OperationFailed


def delete_deployment(kube_client, namespace: str, name: str) -> None:
    """Delete the Deployment; one already gone counts as deleted (helm recreates it either way)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.AppsV1Api(kube_client).delete_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise OperationFailed(f"cannot delete deployment {name}: HTTP {exc.status}") from None
