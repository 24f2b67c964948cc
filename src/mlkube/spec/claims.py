"""A ``pvc://`` model URI read on this machine, through the spec's own hostPath volume.

Pure: no I/O. A spec that declares ``storage.persistentVolume.hostPath`` for the claim its
``pvc://claim/sub/path`` names keeps the model in a directory of the node; locally this machine
is the node, so the model is ``<hostPath>/sub/path``, the same files the pods mount at
``<mountPath>/sub/path``.
"""

from __future__ import annotations

import posixpath

from mlkube.spec.deployment import ModelDeployment

CLAIM_SCHEME = "pvc://"


def claim_host_path(deployment: ModelDeployment, uri: str | None = None) -> str | None:
    """The local path of a ``pvc://`` model URI (default: the first model's) whose claim the
    spec binds to a hostPath volume; None for any other URI or claim."""
    uri = deployment.spec.model.uri if uri is None else uri
    storage = deployment.spec.storage
    if not uri.startswith(CLAIM_SCHEME) or storage is None or storage.pvc is None:
        return None
    claim, _, sub = uri.removeprefix(CLAIM_SCHEME).partition("/")
    volume = storage.persistent_volume
    if volume is None or claim != storage.pvc.name:
        return None
    return posixpath.normpath(posixpath.join(volume.host_path, sub))
