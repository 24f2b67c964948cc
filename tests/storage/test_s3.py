"""s3:// models from moto's S3 server on loopback: what lands where, checksums, resume, reuse."""

from __future__ import annotations

import hashlib
import threading

import pytest

from mlkube.storage import FetchError, fetch

from .conftest import BUCKET, s3_client

BODY = bytes(range(256)) * 4096  # 1 MiB


def test_an_object_lands_as_the_init_container_puts_it(s3, tmp_path):
    s3_client(s3).put_object(Bucket=BUCKET, Key="iris/model.onnx", Body=BODY)
    path = fetch(f"s3://{BUCKET}/iris/model.onnx", tmp_path / "cache")
    assert path.name == "model.onnx"  # aws s3 cp s3://b/iris/model.onnx /models/model.onnx
    assert path.read_bytes() == BODY
    assert list(s3.faults.gets.values()) == [1]


def test_a_prefix_is_copied_recursively_into_a_folder(s3, tmp_path):
    client = s3_client(s3)
    for key in ("tf/half/1/saved_model.pb", "tf/half/1/variables/v.index", "tf/half/"):
        client.put_object(Bucket=BUCKET, Key=key, Body=b"" if key.endswith("/") else key.encode())
    client.put_object(Bucket=BUCKET, Key="tf/halfway.txt", Body=b"not under the prefix")
    path = fetch(f"s3://{BUCKET}/tf/half/", tmp_path / "cache")
    assert path.name == "half"  # aws s3 cp --recursive s3://b/tf/half/ /models/half
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    assert files == ["1/saved_model.pb", "1/variables/v.index"]
    assert (path / "1/saved_model.pb").read_bytes() == b"tf/half/1/saved_model.pb"


@pytest.mark.parametrize("checksums", [False, True], ids=["etag-md5", "botocore-crc"])
def test_wrong_bytes_are_detected_and_downloaded_again(s3, tmp_path, checksums):
    s3_client(s3, checksums=checksums).put_object(Bucket=BUCKET, Key="m.onnx", Body=BODY)
    s3.faults.pending = ["corrupt"]
    lines: list[str] = []
    path = fetch(f"s3://{BUCKET}/m.onnx", tmp_path / "cache", progress=lines.append)
    assert path.read_bytes() == BODY
    assert s3.faults.gets["/models/m.onnx"] == 2
    assert s3.faults.ranges == [None, None]  # the spoilt file is thrown away, not continued


def test_wrong_bytes_every_time_give_up_with_a_reason(s3, tmp_path):
    s3_client(s3, checksums=False).put_object(Bucket=BUCKET, Key="m.onnx", Body=BODY)
    s3.faults.pending = ["corrupt"] * 3
    with pytest.raises(FetchError, match=r"gave up after 3 tries: MD5 \w+ does not match"):
        fetch(f"s3://{BUCKET}/m.onnx", tmp_path / "cache", attempts=3)
    assert not list((tmp_path / "cache").glob("*/m.onnx"))  # no entry for bad bytes


def test_an_interrupted_download_continues_with_a_ranged_get(s3, tmp_path):
    s3_client(s3).put_object(Bucket=BUCKET, Key="m.onnx", Body=BODY)
    s3.faults.pending = ["cut"]
    cache = tmp_path / "cache"
    with pytest.raises(FetchError, match="gave up after 1 tries"):
        fetch(f"s3://{BUCKET}/m.onnx", cache, attempts=1)  # as if the replica was killed
    (part,) = cache.glob("*.partial/m.onnx.part")
    kept = part.stat().st_size
    assert 0 < kept < len(BODY)
    path = fetch(f"s3://{BUCKET}/m.onnx", cache)  # the next start goes on from there
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(BODY).digest()
    assert s3.faults.ranges == [None, f"bytes={kept}-"]


def test_replicas_starting_together_download_once(s3, tmp_path):
    s3_client(s3).put_object(Bucket=BUCKET, Key="m.onnx", Body=BODY)
    paths, errors = [], []

    def replica() -> None:
        try:
            paths.append(fetch(f"s3://{BUCKET}/m.onnx", tmp_path / "cache"))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(set(paths)) == 1
    assert s3.faults.gets["/models/m.onnx"] == 1


def test_a_new_object_version_is_a_new_entry(s3, tmp_path):
    client = s3_client(s3)
    client.put_object(Bucket=BUCKET, Key="m.onnx", Body=b"version one")
    first = fetch(f"s3://{BUCKET}/m.onnx", tmp_path / "cache")
    client.put_object(Bucket=BUCKET, Key="m.onnx", Body=b"version two")
    second = fetch(f"s3://{BUCKET}/m.onnx", tmp_path / "cache")
    assert first != second
    assert (first.read_bytes(), second.read_bytes()) == (b"version one", b"version two")


def test_a_damaged_entry_is_downloaded_again(s3, tmp_path):
    s3_client(s3).put_object(Bucket=BUCKET, Key="m.onnx", Body=BODY)
    path = fetch(f"s3://{BUCKET}/m.onnx", tmp_path / "cache")
    path.write_bytes(b"truncated")
    assert fetch(f"s3://{BUCKET}/m.onnx", tmp_path / "cache").read_bytes() == BODY
    assert s3.faults.gets["/models/m.onnx"] == 2


def test_missing_objects_are_named(s3, tmp_path):
    s3_client(s3)
    with pytest.raises(FetchError, match=r"s3://models/nope.onnx: no such object"):
        fetch(f"s3://{BUCKET}/nope.onnx", tmp_path / "cache")
    with pytest.raises(FetchError, match=r"s3://models/empty/: no objects under this prefix"):
        fetch(f"s3://{BUCKET}/empty/", tmp_path / "cache")
