"""model.uri is checked when the spec loads: a remote URI names its bucket, claim or host, and
an http(s) fragment is a SHA-256 (the local download checks it)."""

from __future__ import annotations

import pytest

from mlkube.errors import SpecError
from mlkube.spec import ModelDeployment, parse_documents

SPEC = """
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: m}
spec:
  model: {uri: "URI", format: onnx}
"""


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/key/model.onnx",
        "gs://bucket/prefix/",
        "https://host/m.onnx#sha256=" + "ab" * 32,
        "pvc://claim/sub",
        "./m.onnx",
    ],
)
def test_usable_uris_load(uri):
    document = parse_documents(SPEC.replace("URI", uri))[0]
    assert isinstance(document, ModelDeployment)
    assert document.spec.model.uri == uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("s3:///key", r"names no bucket \(expected s3://bucket/path\)"),
        ("gs://", "names no bucket"),
        ("pvc:///sub", "names no claim"),
        ("https:///m.onnx", "names no host"),
        ("https://host/m.onnx#md5=abc", "the only fragment understood is #sha256="),
    ],
)
def test_unusable_uris_are_refused_with_the_reason(uri, reason):
    with pytest.raises(SpecError, match=reason):
        parse_documents(SPEC.replace("URI", uri))
