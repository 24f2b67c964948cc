"""The cache key of a step: what it runs, its code, the parameters, what its upstream steps
output and the watched data. The same key means the same outputs (Kubeflow Pipelines'
execution cache, keyed the same way).

``cache_key`` is pure; ``code_hash``, ``data_hash`` and ``fingerprint`` read files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlkube.registry.store import hash_paths
from mlkube.spec.job import TrainingJobSpec

KEY_VERSION = "1"  # bump when what goes into the key changes: old entries then miss


def cache_key(
    pipeline: str,
    step: str,
    job: TrainingJobSpec,
    code: str,
    params: Mapping[str, str],
    upstream: Mapping[str, Mapping[str, str]],
    data: str,
) -> str:
    """``sha256`` hex of every input of one step run. Pure."""
    document = {
        "v": KEY_VERSION,
        "pipeline": pipeline,
        "step": step,
        "job": job.model_dump(mode="json", by_alias=True),
        "code": code,
        "params": dict(sorted(params.items())),
        "upstream": {k: dict(sorted(v.items())) for k, v in sorted(upstream.items())},
        "data": data,
    }
    text = json.dumps(document, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def code_files(job: TrainingJobSpec, source_dir: str) -> list[Path]:
    """The files a job's code is: a script and the Python files beside it (what it can import
    from its folder), or a module's file (a package: every Python file in it)."""
    run = job.run
    if run.script is not None:
        script = Path(source_dir, run.script).resolve()
        siblings = sorted(script.parent.glob("*.py")) if script.parent.is_dir() else []
        return sorted({script, *siblings})
    try:
        found = importlib.util.find_spec(str(run.module))
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None or not os.path.exists(found.origin):
        return []
    origin = Path(found.origin)
    if origin.name == "__init__.py":
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def code_hash(job: TrainingJobSpec, source_dir: str) -> str:
    """``sha256:...`` of the job's code files (their names and bytes); a module that cannot
    be found hashes to its name, so it still runs (and fails there with its own error)."""
    files = [f for f in code_files(job, source_dir) if f.is_file()]
    if not files:
        return f"module:{job.run.module or job.run.script}"
    return hash_paths(files)


def data_hash(paths: Sequence[str]) -> str:
    """``sha256:...`` of the watched files (empty when nothing is watched or exists)."""
    existing = [p for p in paths if os.path.exists(p)]
    return hash_paths(existing) if existing else ""


def fingerprint(paths: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    """A cheap look at the watched paths (name, size, mtime of each file): what the watch
    trigger compares every few seconds, without reading the files."""
    seen: list[tuple[str, int, int]] = []
    for top in paths:
        if os.path.isfile(top):
            files = [top]
        else:
            files = [
                os.path.join(root, name)
                for root, _, names in os.walk(top)
                for name in names
                if not name.startswith(".")
            ]
        for file in sorted(files):
            try:
                info = os.stat(file)
            except OSError:
                continue
            seen.append((file, info.st_size, info.st_mtime_ns))
    return tuple(seen)
