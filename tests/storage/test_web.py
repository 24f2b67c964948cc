"""https:// models from a loopback HTTPS server with a self-signed CA."""

from __future__ import annotations

import hashlib

import pytest

from mlkube.storage import FetchError, fetch

BODY = b"onnx bytes " * 50_000


def test_a_file_downloads_over_https_with_the_configured_ca(https, tmp_path):
    url = https.put("/files/iris.onnx", BODY)
    path = fetch(url, tmp_path / "cache")
    assert path.name == "iris.onnx"  # curl --output /models/iris.onnx
    assert path.read_bytes() == BODY
    again = fetch(url, tmp_path / "cache")
    assert again == path
    assert https.faults.gets["/files/iris.onnx"] == 1  # the ETag did not change: cached


def test_an_untrusted_certificate_is_refused(https, tmp_path, monkeypatch):
    monkeypatch.delenv("MLKUBE_CA_BUNDLE")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = https.put("/m.onnx", BODY)
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(url, tmp_path / "cache", attempts=1)


def test_a_dropped_connection_is_continued_with_range_and_if_range(https, tmp_path):
    url = https.put("/m.onnx", BODY)
    https.faults.pending = ["cut"]
    path = fetch(url, tmp_path / "cache")
    assert path.read_bytes() == BODY
    first, second = https.faults.ranges
    assert first is None
    assert second == f"bytes={len(BODY) // 2}-"


def test_a_changed_file_restarts_instead_of_mixing_versions(https, tmp_path):
    url = https.put("/m.onnx", BODY)
    https.faults.pending = ["cut"]
    with pytest.raises(FetchError):
        fetch(url, tmp_path / "cache", attempts=1)
    https.put("/m.onnx", b"new bytes " * 1000)  # new ETag: a new entry, from byte 0
    path = fetch(url, tmp_path / "cache")
    assert path.read_bytes() == b"new bytes " * 1000


def test_a_sha256_fragment_is_checked_and_a_bad_download_retried(https, tmp_path):
    digest = hashlib.sha256(BODY).hexdigest()
    url = https.put("/m.onnx", BODY) + f"#sha256={digest}"
    https.faults.pending = ["corrupt"]
    path = fetch(url, tmp_path / "cache")
    assert path.read_bytes() == BODY
    assert https.faults.gets["/m.onnx"] == 2
    wrong = https.put("/other.onnx", BODY) + "#sha256=" + "0" * 64
    with pytest.raises(FetchError, match=r"gave up after 2 tries: SHA-256 \w+ is not"):
        fetch(wrong, tmp_path / "cache", attempts=2)


def test_http_errors_are_one_line(https, tmp_path):
    with pytest.raises(FetchError, match=r"/missing.onnx: HTTP 404 Not Found$"):
        fetch(https.url + "/missing.onnx", tmp_path / "cache")
    with pytest.raises(FetchError, match="the only fragment understood is #sha256="):
        fetch(https.url + "/m.onnx#md5=abc", tmp_path / "cache")


def test_the_cached_copy_serves_when_the_server_is_gone(https, tmp_path):
    url = https.put("/m.onnx", BODY)
    path = fetch(url, tmp_path / "cache")
    https.close()
    lines: list[str] = []
    assert fetch(url, tmp_path / "cache", attempts=1, progress=lines.append) == path
    assert "the server did not answer" in lines[0]


def test_a_url_signed_for_get_only_downloads_as_curl_would(https, tmp_path):
    url = https.put("/signed/m.onnx", BODY)  # HEAD answers 403, GET 200
    path = fetch(url + "?X-Amz-Signature=abc", tmp_path / "cache")
    assert path.name == "m.onnx"
    assert path.read_bytes() == BODY


def test_a_partial_file_longer_than_the_object_is_started_over(https, tmp_path):
    url = https.put("/m.onnx", BODY)
    https.faults.pending = ["cut"]
    with pytest.raises(FetchError):
        fetch(url, tmp_path / "cache", attempts=1)
    (part,) = (tmp_path / "cache").glob("*.partial/m.onnx.part")
    part.write_bytes(b"x" * (len(BODY) + 10))  # not what this object's bytes can be
    assert fetch(url, tmp_path / "cache").read_bytes() == BODY
    assert https.faults.ranges == [None, None]  # no wasted try on bytes past the end
