"""The model and how one replica serves it: format, protocols, batching, server limits.

Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from mlkube.spec.base import Seconds, SpecModel
from mlkube.spec.quantity import Quantity

_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_URI_SCHEMES = ("pvc://", "s3://", "gs://", "https://", "http://", "file://")
_SHA256_FRAGMENT = re.compile(r"^sha256=[0-9a-fA-F]{64}$")


class ModelFormat(enum.StrEnum):
    """The model file formats mlkube can serve."""

    SKLEARN = "sklearn"
    ONNX = "onnx"
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    PYTORCH = "pytorch"
    PYTHON = "python"
    TENSORFLOW = "tensorflow"


class Protocol(enum.StrEnum):
    """Inference protocols: TF Serving REST (v1) and the Open Inference Protocol (v2)."""

    V1 = "v1"
    V2 = "v2"


class BatchingSpec(SpecModel):
    """Adaptive batching: concurrent requests to one model merged into one predict call."""

    enabled: bool = True
    """On by default for runtimes that take batches; a lone request is never held back."""

    max_batch_size: Annotated[int, Field(ge=1, le=65536)] = 1024
    """Most rows in one predict call. A request with more rows is predicted alone, never
    refused; below the limit, requests are merged only when the model's measured cost says
    merging is faster than separate calls."""

    max_batch_requests: Annotated[int, Field(ge=1, le=4096)] = 32
    """Most requests merged into one predict call."""

    max_latency_ms: Annotated[float, Field(ge=0, le=60_000)] = 5.0
    """Longest a request waits for others to join its batch while the model has spare
    capacity. Requests waiting behind a running predict call join the next batch anyway."""


class VersionPolicy(SpecModel):
    """Which versions of a versioned model are served, as TF Serving's model_version_policy.

    A versioned model is a directory of numbered subdirectories (``1/``, ``2/``...), each
    holding one version. Set at most one of ``latest``, ``all`` and ``specific``; unset, the
    newest version is served (``latest: 1``).
    """

    latest: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Serve the N highest-numbered versions present."""

    all_versions: bool | None = Field(default=None, alias="all")
    """``all: true``: serve every version present."""

    specific: tuple[Annotated[int, Field(ge=1)], ...] | None = None
    """Serve exactly these versions (those present; a missing one is loaded when it appears)."""

    @model_validator(mode="after")
    def _one_policy(self) -> VersionPolicy:
        chosen = [
            key
            for key, value in (
                ("latest", self.latest),
                ("all", self.all_versions),
                ("specific", self.specific),
            )
            if value is not None
        ]
        if len(chosen) > 1:
            raise ValueError(f"set one of latest, all, specific; got {', '.join(chosen)}")
        if self.all_versions is False:
            raise ValueError("all: false means nothing; leave it out (latest: 1 is the default)")
        if self.specific is not None:
            if not self.specific:
                raise ValueError("specific must list at least one version number")
            if len(set(self.specific)) != len(self.specific):
                raise ValueError(f"specific lists a version twice: {list(self.specific)}")
        return self

    def select(self, present: Iterable[int]) -> tuple[int, ...]:
        """The versions to serve out of those ``present``, highest first. Pure."""
        ordered = sorted(set(present), reverse=True)
        if self.all_versions:
            return tuple(ordered)
        if self.specific is not None:
            wanted = set(self.specific)
            return tuple(v for v in ordered if v in wanted)
        return tuple(ordered[: self.latest or 1])

    def describe(self) -> str:
        """One short phrase for messages: ``latest 2``, ``all``, ``specific [1, 3]``."""
        if self.all_versions:
            return "all"
        if self.specific is not None:
            return f"specific {list(self.specific)}"
        return f"latest {self.latest or 1}"


class ModelSpec(SpecModel):
    """Where the model is and how to load it."""

    uri: str = Field(min_length=1)
    """Model location: a local path (relative to the spec file), pvc://claim/path, s3://,
    gs://, https:// (downloaded by the local backend's replicas into a cache; an http(s) URI
    may end in #sha256=HEX). For format python, the directory added to the import path
    (optional)."""

    format: ModelFormat
    """The model's format; decides the runtime that loads it."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None = None
    """The name the model is served under; defaults to the deployment's name. The name
    `default` always reaches it too, as TF Serving does."""

    version: Annotated[int, Field(ge=1)] = 1
    """The version number of a model that is one file (or a directory without numbered
    subdirectories): reported by the metadata endpoints and accepted in /versions/N. A
    directory of numbered subdirectories is a versioned model: each subdirectory is a version."""

    version_policy: VersionPolicy = VersionPolicy()
    """Which versions of a versioned model are served: `latest: N` (default 1), `all: true`
    or `specific: [..]`, as TF Serving's model_version_policy."""

    batching: BatchingSpec | None = None
    """This model's batching; unset, the deployment's `batching` section applies."""

    trust_pickle: bool = False
    """Allow pickle/joblib files. Unpickling runs arbitrary code: only for files you made."""

    entrypoint: str | None = None
    """For format python: `module:Class`, a class with load() and predict(batch)."""

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, uri: str) -> str:
        if "://" in uri and not uri.startswith(_URI_SCHEMES):
            scheme = uri.split("://", 1)[0]
            raise ValueError(
                f"unsupported URI scheme '{scheme}://' (expected a path, "
                + ", ".join(_URI_SCHEMES)
                + ")"
            )
        scheme, _, rest = uri.partition("://")
        if scheme in ("s3", "gs", "http", "https", "pvc") and not rest.split("/", 1)[0]:
            what = {"s3": "bucket", "gs": "bucket", "pvc": "claim"}.get(scheme, "host")
            raise ValueError(f"'{uri}' names no {what} (expected {scheme}://{what}/path)")
        fragment = rest.split("#", 1)[1] if "#" in rest else None
        if scheme in ("http", "https") and fragment and not _SHA256_FRAGMENT.match(fragment):
            raise ValueError(
                f"'{uri}': the only fragment understood is #sha256=<64 hex digits> "
                "(checked after the download)"
            )
        return uri

    @model_validator(mode="after")
    def _entrypoint_for_python(self) -> ModelSpec:
        if self.format is ModelFormat.PYTHON:
            if self.entrypoint is None:
                raise ValueError("format python needs entrypoint: 'module:Class'")
            if not _ENTRYPOINT.match(self.entrypoint):
                raise ValueError(
                    f"entrypoint '{self.entrypoint}' must look like 'package.module:ClassName'"
                )
        elif self.entrypoint is not None:
            raise ValueError(f"entrypoint is only used with format python, not {self.format}")
        return self


class GrpcSpec(SpecModel):
    """gRPC next to REST: the Open Inference Protocol v2 service and TF Serving's Predict
    and GetModelStatus, with the same models, batching, limits and metrics."""

    enabled: bool = False
    """Serve gRPC too (off by default: grpcio is loaded only when it is on)."""

    port: Annotated[int, Field(ge=1, le=65535)] = 8500
    """The gRPC port inside a container (TF Serving's); local replicas get their own."""


class ServerSpec(SpecModel):
    """Limits and knobs of each replica's HTTP server."""

    port: Annotated[int, Field(ge=1, le=65535)] = 8501
    """The port the server listens on inside a container (local replicas get their own)."""

    workers: Annotated[int, Field(ge=1, le=64)] = 1
    """Server processes per replica, sharing the port."""

    max_request_size: Quantity = Quantity.parse("16Mi")
    """Largest request body accepted; larger ones get 413."""

    request_timeout: Seconds = 30.0
    """A request not answered within this gets 504."""

    max_queue_size: Annotated[int, Field(ge=1)] = 2048
    """Most requests waiting for the model; more get 429 with Retry-After."""

    drain_timeout: Seconds = 30.0
    """On SIGTERM, how long in-flight requests may take before the process exits anyway.
    Also how long a removed model version's in-flight requests may take before it unloads."""

    version_poll_interval: Seconds = 5.0
    """How often each replica looks for new or removed version directories of versioned
    models (hot reload, as TF Serving's file system poll); 0 turns the watch off."""

    grpc: GrpcSpec = GrpcSpec()
    """The gRPC server, on its own port (maxRequestSize limits its messages too)."""

    @field_validator("max_request_size")
    @classmethod
    def _positive_size(cls, size: Quantity) -> Quantity:
        if size.value < 1:
            raise ValueError(f"maxRequestSize must be at least 1 byte, got '{size.text}'")
        return size
