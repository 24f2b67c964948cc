"""s3:// models through boto3 (the ``s3`` extra), on AWS or any S3-compatible server.

The endpoint is ``$MLKUBE_S3_ENDPOINT``, else what boto3 reads itself (``$AWS_ENDPOINT_URL_S3``,
``$AWS_ENDPOINT_URL``, the AWS config file), the same variables the init container's aws-cli
reads. Credentials come from boto3's usual chain; with none, requests go unsigned (public
buckets). An object's ETag is its MD5 unless it was uploaded in parts or encrypted with KMS
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_Object.html, "ETag"): only then is it
not compared with the downloaded bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from mlkube.storage.objects import CorruptError, FetchError, RemoteObject, TransientError
from mlkube.storage.uri import RemoteUri

ENDPOINT_VARIABLE = "MLKUBE_S3_ENDPOINT"
CHUNK = 1 << 20
_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')


class S3Source:
    """The objects of one s3:// URI."""

    def __init__(self, remote: RemoteUri) -> None:
        self.remote = remote
        self._client = _client(remote.uri)
        from botocore import exceptions

        self._errors = exceptions

    def list_objects(self) -> list[RemoteObject]:
        remote = self.remote
        if not remote.folder:
            return [self._head(remote.key, remote.name)]
        keys = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=remote.bucket, Prefix=remote.key):
                keys += [item["Key"] for item in page.get("Contents", [])]
        except self._errors.ClientError as error:
            raise FetchError(f"{remote.uri}: cannot list the objects: {_reason(error)}") from None
        except self._errors.BotoCoreError as error:
            raise TransientError(f"{remote.uri}: cannot list the objects: {error}") from None
        # "folder/" keys are the console's empty folder markers, not files
        files = [key for key in keys if not key.endswith("/")]
        if not files:
            raise FetchError(f"{remote.uri}: no objects under this prefix")
        return [self._head(key, f"{remote.name}/{key[len(remote.key) :]}") for key in files]

    def _head(self, key: str, path: str) -> RemoteObject:
        where = f"s3://{self.remote.bucket}/{key}"
        try:
            head = self._client.head_object(Bucket=self.remote.bucket, Key=key)
        except self._errors.ClientError as error:
            raise FetchError(f"{where}: {_reason(error)}") from None
        except self._errors.BotoCoreError as error:
            raise TransientError(f"{where}: {error}") from None
        etag = str(head.get("ETag", ""))
        match = _MD5_ETAG.match(etag)
        kms = str(head.get("ServerSideEncryption", "")).startswith("aws:kms")
        version = str(head.get("VersionId") or etag)
        md5 = match.group(1) if match and not kms else None
        return RemoteObject(path, key, int(head["ContentLength"]), version, md5)

    def close(self) -> None:
        self._client.close()

    def read(self, item: RemoteObject, offset: int) -> tuple[int, Iterator[bytes]]:
        arguments: dict[str, Any] = {"Bucket": self.remote.bucket, "Key": item.locator}
        if offset:
            arguments["Range"] = f"bytes={offset}-"
        try:
            response = self._client.get_object(**arguments)
        except self._errors.ClientError as error:
            raise FetchError(
                f"s3://{self.remote.bucket}/{item.locator}: {_reason(error)}"
            ) from None
        except self._errors.BotoCoreError as error:
            raise TransientError(f"s3://{self.remote.bucket}/{item.locator}: {error}") from None
        start = offset if response.get("ContentRange") else 0
        return start, self._chunks(response["Body"], item)

    def _chunks(self, body: Any, item: RemoteObject) -> Iterator[bytes]:
        where = f"s3://{self.remote.bucket}/{item.locator}"
        try:
            yield from body.iter_chunks(CHUNK)
        except self._errors.FlexibleChecksumError as error:  # botocore checked a full GET
            raise CorruptError(f"{where}: {error}") from None
        except (self._errors.BotoCoreError, OSError) as error:
            raise TransientError(f"{where}: the download stopped: {error}") from None
        finally:
            body.close()


def _client(uri: str) -> Any:
    try:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config
    except ImportError:
        raise FetchError(
            f"{uri}: s3:// models need boto3, which is not installed; install it with: "
            "pip install 'mlkube[s3]'"
        ) from None
    session = boto3.session.Session()
    signing = {} if session.get_credentials() is not None else {"signature_version": UNSIGNED}
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, **signing)
    endpoint = os.environ.get(ENDPOINT_VARIABLE) or None
    return session.client("s3", endpoint_url=endpoint, config=config)


def _reason(error: Any) -> str:
    info = error.response.get("Error", {})
    code = str(info.get("Code", ""))
    if code in ("404", "NoSuchKey", "NotFound"):
        return "no such object"
    if code == "NoSuchBucket":
        return "no such bucket"
    if code in ("403", "AccessDenied"):
        return "access denied (check the credentials boto3 finds)"
    return f"{code}: {info.get('Message', '')}".strip(": ")
