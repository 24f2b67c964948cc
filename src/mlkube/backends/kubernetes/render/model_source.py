"""Where a replica finds its model on a cluster: a PVC, a hostPath, or a download at start.

Pure: no I/O.

- ``pvc://claim/sub/path``: the claim is mounted at ``storage.mountPath``; the model is
  ``<mountPath>/sub/path``.
- a local path with ``storage.pvc``: the claim is mounted; the model is expected at
  ``<mountPath>/<file name>`` (copy it there first).
- a local path with ``kubernetes.modelHostPath``: that node directory is mounted read-only.
- ``s3://``, ``gs://``, ``http(s)://``: an init container downloads the model into an
  ``emptyDir`` at ``<mountPath>`` before the server starts.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render.manifest import Manifest
from mlkube.spec.deployment import MODELS_SCHEME, ModelDeployment
from mlkube.spec.model import ModelFormat

MODEL_VOLUME = "model-storage"
FETCH_IMAGES = {
    "s3": "amazon/aws-cli:2.22.35",
    "gs": "google/cloud-sdk:507.0.0-slim",
    "http": "curlimages/curl:8.12.1",
    "https": "curlimages/curl:8.12.1",
}
"""Pinned per scheme so a render never changes when an upstream ``latest`` moves."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """The pod volume holding the model and where the server reads it."""

    volume: Manifest
    mount_path: str
    read_only: bool
    container_path: str
    """The model's path inside the container (what the server's model.uri becomes)."""

    fetch_command: tuple[str, ...] | None = None
    fetch_image: str | None = None


def model_source(deployment: ModelDeployment, uri: str, subdir: str = "") -> ModelSource:
    """How the model at ``uri`` reaches the replicas of ``deployment``.

    ``subdir``: a download goes to ``<mountPath>/<subdir>/`` (each model of several its own).
    Pure. Raises RenderError when a local path has no way onto the cluster.
    """
    if uri.startswith(MODELS_SCHEME):
        raise RenderError(
            f"deployment '{deployment.name}': model.uri '{uri}' names a version in this "
            "machine's model registry, which a cluster cannot read; copy the version's file "
            "(`mlkube models show NAME` shows it) to a bucket or claim and use s3://, gs://, "
            "https:// or pvc://"
        )
    storage = deployment.spec.storage
    mount = storage.mount_path if storage is not None else "/models"
    if uri.startswith("pvc://"):
        return _from_claim_uri(deployment, uri, mount)
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in FETCH_IMAGES:
        return _download(
            deployment, uri, scheme, posixpath.join(mount, subdir) if subdir else mount
        )
    file_name = posixpath.basename(posixpath.normpath(uri.removeprefix("file://"))) or "model"
    host_path = deployment.spec.kubernetes.model_host_path
    if host_path is not None:
        volume = {"name": MODEL_VOLUME, "hostPath": {"path": host_path, "type": "Directory"}}
        return ModelSource(volume, mount, True, posixpath.join(mount, file_name))
    if storage is not None and storage.pvc is not None:
        volume = {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": storage.pvc.name}}
        return ModelSource(volume, mount, True, posixpath.join(mount, file_name))
    raise RenderError(
        f"deployment '{deployment.name}': model.uri '{uri}' is a path on this machine, which "
        "a cluster cannot read; use pvc://claim/path, s3://, gs://, https://, or set "
        "storage.pvc (copy the model onto the claim) or kubernetes.modelHostPath"
    )


def _from_claim_uri(deployment: ModelDeployment, uri: str, mount: str) -> ModelSource:
    claim, _, sub = uri.removeprefix("pvc://").partition("/")
    storage = deployment.spec.storage
    if storage is not None and storage.pvc is not None and storage.pvc.name != claim:
        raise RenderError(
            f"deployment '{deployment.name}': model.uri names claim '{claim}' but storage.pvc "
            f"is '{storage.pvc.name}'; use one claim"
        )
    if not claim:
        raise RenderError(
            f"deployment '{deployment.name}': model.uri '{uri}' has no claim name "
            "(expected pvc://claim/path)"
        )
    volume = {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": claim}}
    path = posixpath.join(mount, sub) if sub else mount
    return ModelSource(volume, mount, True, posixpath.normpath(path))


def _download(deployment: ModelDeployment, uri: str, scheme: str, folder: str) -> ModelSource:
    storage = deployment.spec.storage
    mount = storage.mount_path if storage is not None else "/models"
    parts = urlsplit(uri)
    name = posixpath.basename(parts.path.rstrip("/")) or "model"
    target = posixpath.join(folder, name)
    command: tuple[str, ...]
    if scheme == "s3":
        recursive = ("--recursive",) if uri.endswith("/") else ()
        command = ("aws", "s3", "cp", "--only-show-errors", *recursive, uri, target)
    elif scheme == "gs":
        command = ("gcloud", "storage", "cp", "--recursive", uri, target)
    else:
        command = (
            "curl",
            *(("--create-dirs",) if folder != mount else ()),
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--retry",
            "3",
            "--output",
            target,
            uri,
        )
    image = deployment.spec.kubernetes.fetch_image or FETCH_IMAGES[scheme]
    volume = {"name": MODEL_VOLUME, "emptyDir": {}}
    return ModelSource(volume, mount, False, target, command, image)


def model_sources(deployment: ModelDeployment, first_uri: str) -> list[tuple[str, ModelSource]]:
    """Where each model of ``deployment`` reaches its replicas, by served name; the first
    model's from ``first_uri`` (a track's: a canary's stable track serves another URI).

    Several models share the pod's one model volume: one claim (``pvc://CLAIM/...`` or
    ``storage.pvc``), one ``modelHostPath``, or downloads into one ``emptyDir``, each model
    in a folder named after it. Pure; RenderError names the model that does not fit.
    """
    models = deployment.spec.all_models
    if deployment.spec.models is None:
        return [(deployment.model_name, model_source(deployment, first_uri))]
    tensorflow = [i for i, m in enumerate(models) if m.format is ModelFormat.TENSORFLOW]
    if tensorflow and len(models) > 1:
        raise RenderError(
            f"deployment '{deployment.name}': spec.models[{tensorflow[0]}] is a tensorflow "
            "model, and TF Serving's image takes one model from its flags: serve it in a "
            "deployment of its own"
        )
    sources: list[tuple[str, ModelSource]] = []
    for index, model in enumerate(models):
        name = deployment.served_name(model)
        uri = first_uri if index == 0 else model.uri
        try:
            source = model_source(deployment, uri, subdir=name)
        except RenderError as error:
            raise RenderError(f"{error} (spec.models[{index}], model '{name}')") from None
        if sources and (
            source.volume != sources[0][1].volume or source.mount_path != sources[0][1].mount_path
        ):
            raise RenderError(
                f"deployment '{deployment.name}': spec.models[{index}].uri '{uri}' reaches the "
                f"pod another way than spec.models[0]'s; the models of one deployment share "
                "one model volume: put them on one claim, one modelHostPath, or download "
                "them all (s3://, gs://, https://)"
            )
        sources.append((name, source))
    paths = [source.container_path for _, source in sources]
    for index, path in enumerate(paths):
        if path in paths[:index]:
            raise RenderError(
                f"deployment '{deployment.name}': spec.models[{index}] and "
                f"spec.models[{paths.index(path)}] would both be read from {path}"
            )
    return sources
