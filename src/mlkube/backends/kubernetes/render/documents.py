"""Spec documents → Kubernetes objects (plain dicts), in apply order.

Pure and deterministic: no I/O, no clock, no randomness. The same documents always give the
same objects in the same order with the same names, so GitOps diffs stay quiet. The pieces
live beside this module: ``render_workload`` (ConfigMap, Deployment, volumes, probes),
``render_scaling`` (HPA, KEDA, VPA, PDB), ``render_network`` (Services, HTTPRoute) and
``render_cluster`` (Namespace, quota, priority, storage, monitoring); ``jobs`` renders
TrainingJob and BatchInference documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render.cluster import (
    limit_range,
    monitoring_objects,
    namespace_object,
    priority_class,
    resource_quota,
    storage_objects,
)
from mlkube.backends.kubernetes.render.jobs import job_objects
from mlkube.backends.kubernetes.render.manifest import Manifest, apply_rank, label_problem
from mlkube.backends.kubernetes.render.network import network_objects
from mlkube.backends.kubernetes.render.pipelines import (
    TEKTON,
    Engine,
    pipeline_objects,
    referenced_jobs,
)
from mlkube.backends.kubernetes.render.rollout_controller import rollout_controller_objects
from mlkube.backends.kubernetes.render.scaling import scaling_objects
from mlkube.backends.kubernetes.render.standby import standby_objects
from mlkube.backends.kubernetes.render.tracks import tracks_of
from mlkube.backends.kubernetes.render.workload import workload_objects
from mlkube.spec.deployment import ModelDeployment, PriorityClass, Quota
from mlkube.spec.job import BatchInference, TrainingJob
from mlkube.spec.loading import SpecDocument
from mlkube.spec.pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class Rendered:
    """Objects in apply order. What a cluster cannot honour is the capability table's to say
    (``desired.capabilities``), not the renderer's."""

    objects: tuple[Manifest, ...]


def render(
    documents: Sequence[SpecDocument],
    *,
    pytorch_job_served: bool = False,
    pipeline_engine: Engine = TEKTON,
) -> Rendered:
    """Every Kubernetes object for ``documents``, sorted into apply order.

    ``pytorch_job_served``: the cluster serves Kubeflow's PyTorchJob (what discovery found;
    False without a cluster), so a TrainingJob of ``kubernetes.kind: Auto`` becomes one.
    ``pipeline_engine``: Tekton or Argo Workflows for Pipelines (``pipelines.engine_for``).
    A TrainingJob a Pipeline runs (``jobRef``) is a step of that pipeline, not a Job.
    Pure: no I/O. Raises RenderError when a spec cannot be expressed on Kubernetes.
    """
    objects: list[Manifest] = []
    in_pipelines = referenced_jobs(documents)
    for document in documents:
        if isinstance(document, ModelDeployment):
            objects.extend(render_deployment(document).objects)
        elif isinstance(document, Quota):
            objects.append(resource_quota(document))
            objects.extend(limit_range(document))
        elif isinstance(document, PriorityClass):
            objects.append(priority_class(document))
        elif isinstance(document, Pipeline):
            objects.extend(pipeline_objects(document, documents, pipeline_engine))
        elif isinstance(document, TrainingJob) and (
            (document.namespace, document.metadata.name) in in_pipelines
        ):
            continue
        else:
            objects.extend(job_objects(document, pytorch_job_served=pytorch_job_served))
    return Rendered(tuple(sort_objects(_unique(objects))))


def render_deployment(deployment: ModelDeployment) -> Rendered:
    """The objects of one ModelDeployment (Namespace first when asked for).

    Pure: no I/O.
    """
    for key, value in sorted(deployment.metadata.labels.items()):
        problem = label_problem(key, value)
        if problem is not None:
            raise RenderError(f"deployment '{deployment.name}': metadata.labels: {problem}")
    tracks = tracks_of(deployment)
    objects: list[Manifest] = []
    if deployment.spec.kubernetes.create_namespace:
        objects.append(namespace_object(deployment))
    objects.extend(storage_objects(deployment))
    objects.extend(workload_objects(deployment, tracks))
    objects.extend(standby_objects(deployment, tracks))
    objects.extend(network_objects(deployment, tracks))
    objects.extend(scaling_objects(deployment, tracks))
    objects.extend(monitoring_objects(deployment))
    objects.extend(rollout_controller_objects(deployment))
    return Rendered(tuple(sort_objects(_unique(objects))))


def sort_objects(objects: Sequence[Manifest]) -> list[Manifest]:
    """Apply order: by kind (Namespace first, consumers after what they use), then name."""
    return sorted(
        objects,
        key=lambda o: (
            apply_rank(o["kind"]),
            o["metadata"].get("namespace", ""),
            o["metadata"]["name"],
        ),
    )


def _unique(objects: list[Manifest]) -> list[Manifest]:
    # Two deployments in one namespace may both ask for that Namespace: keep one copy.
    seen: set[tuple[str, str, str]] = set()
    unique: list[Manifest] = []
    for obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if key in seen:
            if obj["kind"] == "Namespace":
                continue
            raise RenderError(
                f"two documents render the same {key[0]} '{key[2]}'"
                + (f" in namespace '{key[1]}'" if key[1] else "")
                + "; give them different names"
            )
        seen.add(key)
        unique.append(obj)
    return unique


def with_namespace(documents: Sequence[SpecDocument], namespace: str | None) -> list[SpecDocument]:
    """The documents with ``--namespace`` replacing each namespaced document's namespace.

    Pure: no I/O.
    """
    if namespace is None:
        return list(documents)
    out: list[SpecDocument] = []
    for document in documents:
        if isinstance(document, ModelDeployment | Quota | TrainingJob | BatchInference | Pipeline):
            meta = document.metadata.model_copy(update={"namespace": namespace})
            document = document.model_copy(update={"metadata": meta})
        out.append(document)
    return out
