"""The local cache lays out a remote model exactly where the Kubernetes init container puts it."""

from __future__ import annotations

import posixpath

import pytest

from mlkube.backends.kubernetes.render.model_source import model_source
from mlkube.spec import load_spec
from mlkube.storage.uri import parse

URIS = [
    "s3://bucket/models/iris.onnx",
    "s3://bucket/models/resnet/",
    "s3://bucket/",
    "gs://bucket/tf/half_plus_two",
    "gs://bucket/tf/half_plus_two/",
    "https://example.com/files/model.onnx",
    "https://example.com/",
]


@pytest.mark.parametrize("uri", URIS)
def test_the_name_matches_the_init_containers_target(tmp_path, uri):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: m}\n"
        f"spec:\n  model: {{uri: '{uri}', format: onnx}}\n"
    )
    source = model_source(load_spec(spec), uri)
    assert source.container_path == posixpath.join("/models", parse(uri).name)


def test_s3_folders_need_the_trailing_slash_as_aws_cli_does():
    assert parse("s3://b/models/resnet/").folder
    assert not parse("s3://b/models/resnet").folder


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("s3:///key", "has no bucket"),
        ("https:///x", "has no host"),
        ("gs://b/x?y=1", "a bucket URI takes no"),
        ("ftp://h/x", "is not an s3://"),
    ],
)
def test_unusable_uris_say_why(uri, reason):
    with pytest.raises(ValueError, match=reason):
        parse(uri)
