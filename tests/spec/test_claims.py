"""A pvc:// model URI bound to the spec's hostPath volume is read from that path locally."""

from __future__ import annotations

from mlkube.backends.local.controller.deployment import revision_of
from mlkube.spec import parse_documents
from mlkube.spec.claims import claim_host_path

SPEC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: m}
spec:
  model: {uri: URI, format: tensorflow}
STORAGE"""
BOUND = """  storage:
    pvc: {name: claim}
    persistentVolume: {name: pv, hostPath: /mnt/models}
"""


def _doc(uri: str, storage: str = BOUND):
    return parse_documents(SPEC.replace("URI", uri).replace("STORAGE", storage))[0]


def test_a_bound_claim_maps_to_the_host_path():
    assert claim_host_path(_doc("pvc://claim/default")) == "/mnt/models/default"
    assert claim_host_path(_doc("pvc://claim")) == "/mnt/models"


def test_other_claims_and_uris_map_to_nothing():
    assert claim_host_path(_doc("pvc://other/default")) is None
    assert claim_host_path(_doc("pvc://claim/default", "")) is None
    no_volume = "  storage:\n    pvc: {name: claim}\n"
    assert claim_host_path(_doc("pvc://claim/default", no_volume)) is None
    assert claim_host_path(_doc("./model")) is None


def test_the_local_revision_names_the_host_path():
    # the revision keeps only the template sections (no storage): the path is resolved first
    revision = revision_of(_doc("pvc://claim/default"))
    assert revision["spec"]["model"]["uri"] == "/mnt/models/default"
    assert "storage" not in revision["spec"]
