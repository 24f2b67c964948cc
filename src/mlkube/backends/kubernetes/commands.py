"""The Kubernetes side of ``mlkube apply|status|delete|logs|scale --target kubernetes``.

The click commands live in ``cli/local.py`` (shared with the local backend); for the kubernetes
target they call these plain functions. Each one loads specs, talks to the cluster through
``client.py`` and prints through ``mlkube.cli.output``; failures are ``MlkubeError`` subclasses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from mlkube.backends.kubernetes.apply import NEVER_PRUNED, apply_objects, key_of
from mlkube.backends.kubernetes.client import Cluster, Target
from mlkube.backends.kubernetes.errors import ApiMissingError, ForbiddenError, ObjectNotFoundError
from mlkube.backends.kubernetes.render import render, with_namespace
from mlkube.backends.kubernetes.render.manifest import (
    KINDS,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    Manifest,
    apply_rank,
    kind_info,
)
from mlkube.backends.kubernetes.status import TABLE_COLUMNS, summarize, table_rows
from mlkube.backends.kubernetes.wait import wait_for_rollouts
from mlkube.cli.output import print_data, print_info, print_warning
from mlkube.clock import SystemClock
from mlkube.desired.capabilities import BackendKind, notes
from mlkube.spec import ModelDeployment, load_documents

STATUS_KINDS = ("Deployment", "HorizontalPodAutoscaler", "ScaledObject", "Service")


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
    documents = with_namespace(load_documents(*paths), namespace)
    rendered = render(documents)
    for note in notes(documents, BackendKind.KUBERNETES):
        print_warning(note.text())
    force = any(
        isinstance(d, ModelDeployment) and d.spec.kubernetes.force_conflicts for d in documents
    )
    prune = all(d.spec.kubernetes.prune for d in documents if isinstance(d, ModelDeployment))
    cluster = Cluster(Target(context=context, namespace=namespace))
    try:
        result = apply_objects(
            cluster, rendered.objects, dry_run=dry_run, force=force, prune=prune, report=print_info
        )
        print_info(
            f"{'dry run: ' if dry_run else ''}{len(result.applied)} objects applied, "
            f"{len(result.pruned)} pruned"
        )
        if wait and not dry_run:
            deployments = [
                (o["metadata"]["namespace"], o["metadata"]["name"])
                for o in rendered.objects
                if o["kind"] == "Deployment"
            ]
            asyncio.run(
                wait_for_rollouts(
                    cluster,
                    deployments,
                    timeout_s=timeout_s,
                    clock=SystemClock(),
                    report=print_info,
                )
            )
    finally:
        cluster.close()


def status_kubernetes(
    name: str | None, *, context: str | None, namespace: str | None, output: str
) -> None:
    """Print the state of one deployment (or all mlkube deployments) in the namespace."""
    cluster = Cluster(Target(context=context, namespace=namespace))
    try:
        ns = namespace or cluster.namespace
        objects = _owned(cluster, ns, name, STATUS_KINDS)
    finally:
        cluster.close()
    if name is not None and not any(o["kind"] == "Deployment" for o in objects):
        raise ObjectNotFoundError(f"no mlkube deployment '{name}' in namespace '{ns}'")
    summaries = summarize(objects)
    if output in ("json", "yaml"):
        print_data(summaries, output)
        return
    rows = [TABLE_COLUMNS, *table_rows(summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    for row in rows:
        print_info(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def delete_kubernetes(name: str, *, context: str | None, namespace: str | None) -> None:
    """Delete every object mlkube made for deployment ``name`` (claims and volumes are kept)."""
    cluster = Cluster(Target(context=context, namespace=namespace))
    try:
        ns = namespace or cluster.namespace
        kinds = tuple(info.kind for info in KINDS)
        objects = _owned(cluster, ns, name, kinds)
        if not objects:
            raise ObjectNotFoundError(f"no mlkube deployment '{name}' in namespace '{ns}'")
        for obj in sorted(objects, key=lambda o: -apply_rank(o["kind"])):
            key = key_of(obj)
            if obj["kind"] in NEVER_PRUNED:
                print_info(f"{key} kept (it holds data or other workloads; delete it yourself)")
                continue
            cluster.delete(kind_info(key.kind), key.name, key.namespace or None, dry_run=False)
            print_info(f"{key} deleted")
    finally:
        cluster.close()


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
    cluster = Cluster(Target(context=context, namespace=namespace))
    try:
        ns = namespace or cluster.namespace
        pods = sorted(
            (p["metadata"]["name"] for p in cluster.pods(ns, _labels(name))),
        )
        if not pods:
            raise ObjectNotFoundError(f"deployment '{name}' has no pods in namespace '{ns}'")
        if replica is not None:
            if not 0 <= replica < len(pods):
                raise ObjectNotFoundError(
                    f"deployment '{name}' has {len(pods)} pods; replica {replica} is not one "
                    f"(use 0-{len(pods) - 1})"
                )
            pods = [pods[replica]]
        elif follow and len(pods) > 1:
            print_warning(f"following {pods[0]} only; pass --replica N for another pod")
            pods = pods[:1]
        for pod in pods:
            prefix = f"[{pod}] " if len(pods) > 1 else ""
            for line in cluster.logs(pod, ns, follow=follow, since_s=since_s):
                print_info(prefix + line.rstrip("\n"))
    finally:
        cluster.close()


def scale_kubernetes(
    name: str, replicas: int, *, context: str | None, namespace: str | None
) -> None:
    """Set the replica count of the deployment (through its scale subresource)."""
    cluster = Cluster(Target(context=context, namespace=namespace))
    try:
        ns = namespace or cluster.namespace
        owned = _owned(cluster, ns, name, ("Deployment", "HorizontalPodAutoscaler", "ScaledObject"))
        deployments = [o["metadata"]["name"] for o in owned if o["kind"] == "Deployment"]
        if not deployments:
            raise ObjectNotFoundError(f"no mlkube deployment '{name}' in namespace '{ns}'")
        target = name if name in deployments else None
        if target is None:
            raise ObjectNotFoundError(
                f"deployment '{name}' runs as {', '.join(sorted(deployments))}; scale one of "
                "those with kubectl, or change the spec's replicas and apply"
            )
        if any(o["kind"] != "Deployment" for o in owned):
            print_warning(
                f"'{name}' has an autoscaler; it will move the count back within its bounds"
            )
        cluster.scale(target, ns, replicas)
        print_info(f"Deployment/{target} in {ns} scaled to {replicas}")
    finally:
        cluster.close()


def _labels(name: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: name}


def _owned(
    cluster: Cluster, namespace: str, name: str | None, kinds: Sequence[str]
) -> list[Manifest]:
    labels = _labels(name) if name is not None else {LABEL_MANAGED_BY: MANAGED_BY}
    objects: list[Manifest] = []
    for kind in kinds:
        info = kind_info(kind)
        try:
            objects.extend(cluster.list_objects(info, namespace, labels))
        except ApiMissingError:
            continue  # e.g. no KEDA installed: nothing of that kind can be ours
        except ForbiddenError as error:
            print_warning(str(error))
    if name is not None:
        return objects
    return [o for o in objects if o["kind"] != "Namespace"]
