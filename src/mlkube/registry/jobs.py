"""A finished TrainingJob's output becomes the next version of its ``output.model``.

The job runner calls ``register_job_output`` once the job succeeded; the version records the
job's metrics, what it ran (as parameters) and its lineage: the job, a hash of its spec, a
hash of its inputs (when the runner knows them) and the run id.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from mlkube.registry.location import registry_root
from mlkube.registry.store import Lineage, ModelVersion, Registry
from mlkube.registry.uri import RegistryError
from mlkube.spec.job import TrainingJob


def spec_hash(job: TrainingJob) -> str:
    """``sha256:HEX`` of the job's document (camelCase JSON, keys sorted): the same spec
    gives the same hash wherever it is applied."""
    text = json.dumps(job.model_dump(mode="json", by_alias=True), sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def job_params(job: TrainingJob) -> dict[str, str]:
    """What the job ran, as MLflow-style parameters."""
    run = job.spec.run
    params = {"workers": str(job.spec.workers)}
    if run.module is not None:
        params["module"] = run.module
    if run.script is not None:
        params["script"] = run.script
    if run.args:
        params["args"] = shlex.join(run.args)
    return params


def register_job_output(
    job: TrainingJob,
    *,
    run_id: str,
    metrics: Mapping[str, float] | None = None,
    inputs_hash: str | None = None,
    output_dir: str | Path | None = None,
    state_dir: str | Path | None = None,
) -> ModelVersion | None:
    """Register ``output.model.file`` of the job's output folder (``output_dir``, default the
    spec's ``output.path``) as the next version of ``output.model.name``; None when the job
    names no model. RegistryError when the file is missing."""
    wanted = job.spec.output.model
    if wanted is None:
        return None
    folder = (
        Path(output_dir) if output_dir is not None else Path(job.local_path(job.spec.output.path))
    )
    source = folder / wanted.file
    if not os.path.exists(source):
        raise RegistryError(
            f"job '{job.namespace}/{job.metadata.name}' succeeded but wrote no "
            f"output.model.file '{wanted.file}' in {folder}"
        )
    return Registry(registry_root(state_dir)).register(
        wanted.name,
        source,
        wanted.format,
        metrics=metrics,
        params=job_params(job),
        lineage=Lineage(
            job=f"{job.namespace}/{job.metadata.name}",
            spec_hash=spec_hash(job),
            inputs_hash=inputs_hash,
            run_id=run_id,
        ),
    )
