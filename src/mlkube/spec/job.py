"""Jobs that run to completion: ``TrainingJob`` (one process, or a gang of distributed
workers) and ``BatchInference`` (a model over input files, in shards).

Pure: no I/O. Like a ModelDeployment, a job runs locally (processes on this machine, queued
by priority and quota) and on a cluster (an Indexed Job); the capability table says where the
two differ.
"""

from __future__ import annotations

import enum
import os
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, model_validator

from mlkube.spec.base import DNS_LABEL, DNS_SUBDOMAIN, Seconds, SpecModel
from mlkube.spec.deployment import API_VERSION, DEFAULT_IMAGE, Metadata
from mlkube.spec.model import ModelFormat, ModelSpec
from mlkube.spec.placement import PlacementSpec
from mlkube.spec.resources import ResourcesSpec

MAX_WORKERS = 64


class RunSpec(SpecModel):
    """What each worker runs: a Python module (``python -m``) or a script, with arguments."""

    module: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$")] | None = None
    """A module run as `python -m MODULE ARGS` (importable where the job runs)."""
    script: str | None = None
    """A Python file run as `python SCRIPT ARGS`; relative to the spec file's folder."""
    args: tuple[str, ...] = ()
    """Command-line arguments, as they are (no shell)."""
    image: str | None = None
    """Container image on a cluster (it must hold the module or script); defaults to the mlkube
    image. Ignored locally: the job runs in the Python that runs mlkube."""

    @model_validator(mode="after")
    def _one_entry(self) -> RunSpec:
        if (self.module is None) == (self.script is None):
            raise ValueError("set exactly one of module or script")
        return self


class RegisterSpec(SpecModel):
    """Register the job's output as a version of a model in the model registry."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    """The registered model's name; each finished job adds its next version."""
    file: str
    """The model file (or folder) inside the output directory, e.g. `model.onnx`."""
    format: ModelFormat
    """The model's format, as a ModelDeployment's `model.format`."""


class OutputSpec(SpecModel):
    """Where the job writes, and what becomes a model version when it succeeds."""

    path: str = "output"
    """The output directory (relative to the spec file's folder locally; an emptyDir or the
    claim below on a cluster). Workers find it in `MLKUBE_OUTPUT_DIR`."""
    model: RegisterSpec | None = None
    """Register a file of the output as the next version of a model when the job succeeds."""
    claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] | None = None
    """On a cluster: a PersistentVolumeClaim mounted as the output directory."""


class JobMetricsSpec(SpecModel):
    """Numbers the job reports, recorded with the run (and the model version it made)."""

    file: str = "metrics.json"
    """A JSON object of name → number, written by worker 0 into the output directory."""


class JobKubernetesSpec(SpecModel):
    """Settings used only on a cluster."""

    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Always, IfNotPresent (default) or Never, as on a container."""
    service_account_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] | None = None
    """The pods' service account."""
    kind: Literal["Auto", "Job", "PyTorchJob"] = "Auto"
    """Job: an Indexed Job with a headless Service for worker discovery; PyTorchJob: a
    Kubeflow training-operator PyTorchJob; Auto: PyTorchJob when its CRD is served, else Job."""
    run_as_user: Annotated[int, Field(ge=1)] = 1000
    """Non-root UID of the containers (runAsNonRoot is always set)."""


class TrainingJobSpec(SpecModel):
    """A training run: N workers with the torchrun environment, gang-scheduled and retried."""

    run: RunSpec
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables of every worker."""
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    """Processes of a distributed job; each gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT (torchrun's environment). All start together or none does (gang)."""
    resources: ResourcesSpec = ResourcesSpec()
    """Per worker; admission needs every worker's requests to fit at once."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """Restarts of the whole group after a worker fails, before the job fails."""
    active_deadline_seconds: Seconds | None = None
    """The job fails when it has run longer than this (e.g. 2h), retries included."""
    placement: PlacementSpec = PlacementSpec()
    """Node selection and `priorityClassName`: higher priority is admitted first and may
    preempt lower-priority jobs (SIGTERM, a grace period, then requeued)."""
    queue: Annotated[str, Field(pattern=DNS_LABEL)] | None = None
    """The queue the job waits in (Kueue's LocalQueue on a cluster); default: its namespace's."""
    termination_grace_period: Seconds = 30.0
    """How long a preempted or cancelled worker has after SIGTERM to checkpoint and exit."""
    output: OutputSpec = OutputSpec()
    metrics: JobMetricsSpec = JobMetricsSpec()
    kubernetes: JobKubernetesSpec = JobKubernetesSpec()


class _JobDocument(SpecModel):
    """What both job documents have: where their file is, and their namespace."""

    _source_file: str = PrivateAttr(default="<string>")
    _source_dir: str = PrivateAttr(default=".")
    """The directory of the spec file; relative paths are resolved against it."""

    metadata: Metadata

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def source_dir(self) -> str:
        return self._source_dir

    def local_path(self, path: str) -> str:
        """``path`` (a script, an input, the output directory) resolved against the spec's
        folder."""
        return os.path.normpath(os.path.join(self._source_dir, os.path.expanduser(path)))


class TrainingJob(_JobDocument):
    """A training job: the top-level document of a spec file, beside ModelDeployments."""

    api_version: Literal["mlkube.dev/v1alpha1"] = API_VERSION
    """Always `mlkube.dev/v1alpha1`."""
    kind: Literal["TrainingJob"] = "TrainingJob"
    """Always `TrainingJob`."""
    metadata: Metadata
    spec: TrainingJobSpec

    @property
    def image(self) -> str:
        return self.spec.run.image or DEFAULT_IMAGE


class InputFormat(enum.StrEnum):
    """How input rows are stored."""

    CSV = "csv"
    PARQUET = "parquet"
    JSON_LINES = "jsonl"


class BatchInputSpec(SpecModel):
    """The rows to predict on."""

    path: str
    """A file, a folder (every file in it) or a glob such as `data/*.csv`; relative to the
    spec file's folder."""
    format: InputFormat | None = None
    """csv, parquet or jsonl; default: from the file suffix."""
    id_column: str | None = None
    """A column that identifies each row, copied to the output; default: the row's position
    (file and line)."""
    columns: tuple[str, ...] = ()
    """The feature columns, in the model's order; default: every column but the id."""
    claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] | None = None
    """On a cluster: a PersistentVolumeClaim holding the input, mounted read-only; `path` is
    then relative to the claim's root."""


class BatchOutputSpec(SpecModel):
    """Where predictions go: one file per shard, with the row ids beside the outputs."""

    path: str = "predictions"
    """A folder (relative to the spec file's folder); finished shards are kept there, so an
    interrupted run resumes where it stopped."""
    format: Literal["csv", "jsonl", "parquet"] = "jsonl"
    """The shard files' format."""
    claim_name: Annotated[str, Field(pattern=DNS_SUBDOMAIN)] | None = None
    """On a cluster: a PersistentVolumeClaim the shards are written to (every worker mounts
    it, so it needs ReadWriteMany with several workers); `path` is relative to its root."""


class BatchInferenceSpec(SpecModel):
    """A model over input files, split into shards that N workers predict on."""

    model: ModelSpec
    """The model, as a ModelDeployment names it (a path, a URI, or `models:/NAME/VERSION`)."""
    input: BatchInputSpec
    output: BatchOutputSpec = BatchOutputSpec()
    workers: Annotated[int, Field(ge=1, le=MAX_WORKERS)] = 1
    """Processes predicting shards in parallel."""
    shard_rows: Annotated[int, Field(ge=1)] = 10_000
    """Rows per shard: the unit of retry and of resume."""
    batch_size: Annotated[int, Field(ge=1)] = 256
    """Rows per call to the model inside a shard."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 3
    """Retries of a failed shard before the job fails."""
    resources: ResourcesSpec = ResourcesSpec()
    """Per worker."""
    placement: PlacementSpec = PlacementSpec()
    queue: Annotated[str, Field(pattern=DNS_LABEL)] | None = None
    """The queue the job waits in (Kueue's LocalQueue on a cluster); default: its namespace's."""
    kubernetes: JobKubernetesSpec = JobKubernetesSpec()


class BatchInference(_JobDocument):
    """A batch inference job: the top-level document of a spec file."""

    api_version: Literal["mlkube.dev/v1alpha1"] = API_VERSION
    """Always `mlkube.dev/v1alpha1`."""
    kind: Literal["BatchInference"] = "BatchInference"
    """Always `BatchInference`."""
    metadata: Metadata
    spec: BatchInferenceSpec

    @property
    def image(self) -> str:
        return DEFAULT_IMAGE


JobDocument = TrainingJob | BatchInference
