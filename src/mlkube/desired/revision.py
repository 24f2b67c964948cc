"""The revision template: the part of a spec whose change needs new replicas.

Pure: no I/O. A revision is what a Kubernetes pod template is: change the model, its server,
batching, resources, logging or placement and new replicas must start; change the replica
count, autoscaling, rollout, service or monitoring and the running replicas stay. The local
backend cuts a new revision exactly when ``revision_hash`` changes, and the Kubernetes renderer
puts the same hash on the pod template (``mlkube.dev/config-hash``) and the same document in
the ConfigMap the server reads, so both backends restart replicas for the same changes.

Fields that exist only on a cluster (``kubernetes.*`` such as the image, ``metadata.labels``)
also change the rendered pod template; the capability table says the local backend ignores
them, so they cut no local revision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mlkube.spec.deployment import ModelDeployment

TEMPLATE_SECTIONS = (
    "single_model",
    "models",
    "protocol",
    "resources",
    "batching",
    "server",
    "logging",
    "placement",
)
"""Spec sections a replica is started from. ``logging.files`` is left out: the local controller
rotates files by it (it applies to running replicas at once) and a cluster ignores it."""

HASH_CHARS = 16
"""Hex characters of the sha256 kept: 64 bits, plenty to tell revisions of one deployment apart."""


def revision_document(
    deployment: ModelDeployment,
    *,
    model_uri: str | None = None,
    model_uris: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The document a revision's replicas are started from. Pure.

    A valid ``ModelDeployment`` holding the name and the template sections only, defaults
    left out (so writing a default explicitly is no change). ``model_uri`` replaces the
    spec's ``model.uri``: the local backend passes the resolved absolute path, the renderer
    a track's model (the stable model of a canary) or the path mounted in the pod.
    ``model_uris`` does the same for the listed ``models`` by served name (the first model's
    entry may come from ``model_uri`` instead).
    """
    spec = deployment.spec.model_dump(
        mode="json", by_alias=True, exclude_defaults=True, include=set(TEMPLATE_SECTIONS)
    )
    uris = dict(model_uris or {})
    if model_uri is not None:
        uris[deployment.model_name] = model_uri
    if "models" in spec:
        for entry, model in zip(spec["models"], deployment.spec.all_models, strict=True):
            entry["uri"] = uris.get(deployment.served_name(model), entry["uri"])
    elif deployment.model_name in uris:
        spec["model"]["uri"] = uris[deployment.model_name]
    logging = spec.get("logging")
    if logging is not None:
        logging.pop("files", None)
        if not logging:
            del spec["logging"]
    return {
        "apiVersion": deployment.api_version,
        "kind": deployment.kind,
        "metadata": {"name": deployment.name, "namespace": deployment.namespace},
        "spec": spec,
    }


def revision_hash(document: dict[str, Any]) -> str:
    """A short, stable digest of a revision document (key order does not matter). Pure."""
    text = json.dumps(document["spec"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
