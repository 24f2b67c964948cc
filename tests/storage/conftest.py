"""Loopback servers for the storage tests: moto's S3, an HTTPS file server, a GCS double."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from .doubles import GcsDouble, S3Server, WebServer

BUCKET = "models"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    pytest.importorskip("boto3", reason="s3:// needs boto3 (pip install 'mlkube[s3]')")
    pytest.importorskip("moto", reason="the S3 tests need moto (pip install 'mlkube[dev]')")
    server = S3Server()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLKUBE_S3_ENDPOINT": server.url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield server
    finally:
        server.close()


def s3_client(server: S3Server, *, checksums: bool = True):
    """A boto3 client of ``server``; ``checksums=False`` uploads without the CRC that newer
    boto3 adds, so only the ETag (the MD5) vouches for the bytes."""
    import boto3
    from botocore.config import Config

    calculation = "when_supported" if checksums else "when_required"
    config = Config(request_checksum_calculation=calculation)
    client = boto3.client("s3", endpoint_url=server.url, config=config)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory):
    trustme = pytest.importorskip("trustme", reason="the HTTPS tests need trustme")
    authority = trustme.CA()
    folder = tmp_path_factory.mktemp("tls")
    ca_file = folder / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return ca_file, context


@pytest.fixture
def https(certificates: tuple[Path, ssl.SSLContext], monkeypatch) -> Iterator[WebServer]:
    ca_file, context = certificates
    monkeypatch.setenv("MLKUBE_CA_BUNDLE", str(ca_file))
    server = WebServer(context)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsDouble]:
    double = GcsDouble()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://{double.host}")
    try:
        yield double
    finally:
        double.close()
