"""gs:// models from a double of the Cloud Storage JSON API (doubles.GcsDouble says what it
models)."""

from __future__ import annotations

import pytest

from mlkube.storage import FetchError, fetch


def test_an_object_downloads_by_generation(gcs, tmp_path):
    gcs.put("bkt", "models/iris.onnx", b"onnx" * 1000)
    path = fetch("gs://bkt/models/iris.onnx", tmp_path / "cache")
    assert path.name == "iris.onnx"
    assert path.read_bytes() == b"onnx" * 1000


def test_a_folder_with_or_without_slash_is_copied_recursively(gcs, tmp_path):
    names = ["tf/m/1/saved_model.pb", "tf/m/1/variables/a", "tf/m/2/saved_model.pb"]
    for name in [*names, "tf/mm/other"]:
        gcs.put("bkt", name, name.encode())
    for uri in ("gs://bkt/tf/m", "gs://bkt/tf/m/"):
        path = fetch(uri, tmp_path / "cache")
        assert path.name == "m"  # gcloud storage cp --recursive gs://bkt/tf/m /models/m
        found = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
        assert found == ["1/saved_model.pb", "1/variables/a", "2/saved_model.pb"]


def test_the_md5_hash_catches_wrong_bytes(gcs, tmp_path):
    gcs.put("bkt", "m.onnx", b"x" * 5000)
    gcs.faults("bkt").pending = ["corrupt", "cut"]
    path = fetch("gs://bkt/m.onnx", tmp_path / "cache")
    assert path.read_bytes() == b"x" * 5000
    assert gcs.faults("bkt").ranges == [None, None, "bytes=2500-"]


def test_nothing_there_is_named(gcs, tmp_path):
    gcs.put("bkt", "a", b"a")
    with pytest.raises(FetchError, match="no such object, and no objects under nope/"):
        fetch("gs://bkt/nope", tmp_path / "cache")
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch("gs://other/a", tmp_path / "cache")
