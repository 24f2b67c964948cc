"""The Kubernetes side of ``mlkube apply|status|delete|logs|scale --target kubernetes``.

The click commands live in ``cli/local.py`` (shared with the local backend); for the kubernetes
target they call these plain functions. Each one loads specs, talks to the cluster through
``client.py`` and prints through ``mlkube.cli.output``; failures are ``MlkubeError`` subclasses.
"""

from __future__ import annotations


def apply_kubernetes(
    paths: tuple[str, ...],
    *,
    context: str | None,
    namespace: str | None,
    dry_run: bool,
    wait: bool,
    timeout_s: float,
) -> None:
    """Render the specs, server-side apply them in order, prune leftovers, wait for rollout."""
    raise NotImplementedError


def status_kubernetes(
    name: str | None, *, context: str | None, namespace: str | None, output: str
) -> None:
    """Print the state of one deployment (or all mlkube deployments) in the namespace."""
    raise NotImplementedError


def delete_kubernetes(name: str, *, context: str | None, namespace: str | None) -> None:
    """Delete every object mlkube made for deployment ``name``."""
    raise NotImplementedError


def logs_kubernetes(
    name: str,
    *,
    context: str | None,
    namespace: str | None,
    follow: bool,
    since_s: float | None,
    replica: int | None,
) -> None:
    """Print the logs of the deployment's pods (one pod when ``replica`` is given)."""
    raise NotImplementedError


def scale_kubernetes(
    name: str, replicas: int, *, context: str | None, namespace: str | None
) -> None:
    """Set the replica count of the deployment (through its scale subresource)."""
    raise NotImplementedError
