"""The model registry: named models with integer versions, in MLflow's file-store layout.

Why not MLflow itself: mlflow-skinny 3.17 (45 packages, ~140 MB installed, ~2 s to import)
refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true`` ("maintenance mode"), and its
SQLite registry needs SQLAlchemy and Alembic on top (the first use ran migrations for ~10 s
here). So mlkube writes the same files MLflow's file store reads, with no MLflow installed::

    ROOT/1/meta.yaml                          the experiment "mlkube"
    ROOT/1/RUN/meta.yaml                      one run per registered version
    ROOT/1/RUN/{metrics,params,tags}/KEY      metrics, parameters, lineage tags
    ROOT/1/RUN/artifacts/model/FILE           a copy of the model file or folder
    ROOT/models/NAME/meta.yaml                the registered model
    ROOT/models/NAME/version-N/meta.yaml      version N: source, run_id, status READY
    ROOT/models/NAME/version-N/tags/KEY       mlkube.format, mlkube.file, mlkube.sha256

Concurrent writers are safe without a lock: a version number is claimed by creating its
folder (``mkdir`` fails for the loser, who takes the next), every file is written under a
temporary name and renamed, and a version counts only once its ``meta.yaml`` exists (written
last). Folders are 0700 and files 0600: models and metrics are the user's own.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlkube.clock import Clock, SystemClock
from mlkube.registry.uri import NAME_PATTERN, RegistryError, check_name, parse_model_uri
from mlkube.spec.model import ModelFormat

EXPERIMENT_ID = "1"
EXPERIMENT_NAME = "mlkube"
MODELS_DIR = "models"
VERSION_PREFIX = "version-"
ARTIFACT_DIR = "model"
RUN_FINISHED = 3  # mlflow.entities.RunStatus.FINISHED
SOURCE_LOCAL = 4  # mlflow.entities.SourceType.LOCAL
TAG_FORMAT = "mlkube.format"
TAG_FILE = "mlkube.file"
TAG_SHA256 = "mlkube.sha256"
LINEAGE_TAGS = {
    "job": "mlkube.job",
    "spec_hash": "mlkube.specHash",
    "inputs_hash": "mlkube.inputsHash",
    "run_id": "mlkube.jobRun",
}
DIR_MODE = 0o700
FILE_MODE = 0o600
_CHUNK = 1 << 20
NAME_RE = re.compile(NAME_PATTERN)


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version came from: the job, its spec, its inputs and the job's run."""

    job: str | None = None
    """``namespace/name`` of the job that made it (None: registered by hand)."""
    spec_hash: str | None = None
    """A hash of the job's spec, so a version can be traced to the exact document."""
    inputs_hash: str | None = None
    """A hash of the job's input files (``hash_paths``)."""
    run_id: str | None = None
    """The job's run (attempt) id."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version: where its file is, its format, numbers and lineage."""

    name: str
    version: int
    format: ModelFormat
    path: Path
    """The model file or folder inside the registry (what a deployment loads)."""
    run_id: str
    """The registry run holding its metrics, parameters and lineage (an MLflow run id)."""
    created_ms: int
    sha256: str
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    lineage: Lineage = Lineage()
    description: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A registered model: its name, how many versions it has and the newest one."""

    name: str
    versions: int
    latest: ModelVersion | None
    updated_ms: int


def hash_paths(paths: Iterable[str | Path]) -> str:
    """``sha256:HEX`` over the files under ``paths`` (their relative names and bytes, in
    order), so the same inputs give the same hash wherever they lie."""
    digest = hashlib.sha256()
    for top in sorted(Path(p) for p in paths):
        files = sorted(f for f in top.rglob("*") if f.is_file()) if top.is_dir() else [top]
        for file in files:
            name = file.relative_to(top) if top.is_dir() else Path(file.name)
            digest.update(str(name).encode() + b"\0")
            with file.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
            digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


class Registry:
    """The registry under ``root`` (see ``location.registry_root``)."""

    def __init__(self, root: str | Path, *, clock: Clock | None = None) -> None:
        self.root = Path(root)
        self.clock: Clock = clock or SystemClock()

    # writing ---------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        source: str | Path,
        format: ModelFormat | str,  # noqa: A002 - the spec's word for it
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, str] | None = None,
        lineage: Lineage | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Copy ``source`` (a file or folder) into the registry as ``name``'s next version."""
        check_name(name)
        model_format = _format(format)
        source = Path(source)
        if not source.exists():
            raise RegistryError(f"cannot register '{name}': no file or folder at {source}")
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        params = {k: str(v) for k, v in (params or {}).items()}
        lineage = lineage or Lineage()
        now = int(self.clock.wall() * 1000)
        self._ensure_experiment(now)
        run_id = uuid.uuid4().hex
        run_dir = self.root / EXPERIMENT_ID / run_id
        folder = run_dir / "artifacts" / ARTIFACT_DIR  # MLflow's source is a folder
        artifact = folder / source.name
        _copy(source, artifact)
        sha256 = hash_paths([artifact]).removeprefix("sha256:")
        self._write_run(run_dir, run_id, now, metrics, params, lineage, name)
        model_dir = self.root / MODELS_DIR / name
        self._ensure_model(model_dir, name, now)
        version, version_dir = self._claim_version(model_dir)
        tags = {TAG_FORMAT: str(model_format), TAG_FILE: source.name, TAG_SHA256: sha256}
        for key, value in tags.items():
            _write_text(version_dir / "tags" / key, value)
        _write_yaml(  # last: the version exists from here on
            version_dir / "meta.yaml",
            {
                "creation_timestamp": now,
                "current_stage": "None",
                "deployment_job_state": None,
                "description": description,
                "last_updated_timestamp": now,
                "model_id": None,
                "name": name,
                "run_id": run_id,
                "run_link": None,
                "source": folder.resolve().as_uri(),
                "status": "READY",
                "status_message": None,
                "storage_location": folder.resolve().as_uri(),
                "user_id": None,
                "version": version,
                "workspace": "default",
            },
        )
        self._touch_model(model_dir, now)
        return self.get(name, version)

    # reading ---------------------------------------------------------------------------------
    def resolve(self, uri: str) -> ModelVersion:
        """The version ``models:/NAME/VERSION`` (or ``models:/NAME/latest``) names."""
        parsed = parse_model_uri(uri)
        return self.get(parsed.name, parsed.version)

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """Version ``version`` of ``name`` (None: the latest)."""
        numbers = self._versions(name)
        if not numbers:
            known = ", ".join(m.name for m in self.list()) or "none yet"
            raise RegistryError(
                f"no registered model '{name}' in {self.root} (registered: {known})"
            )
        if version is None:
            version = numbers[-1]
        elif version not in numbers:
            raise RegistryError(
                f"model '{name}' has no version {version} (versions: "
                + ", ".join(map(str, numbers))
                + ")"
            )
        return self._read_version(name, version)

    def show(self, name: str) -> builtins.list[ModelVersion]:
        """Every version of ``name``, oldest first (RegistryError when there is none)."""
        numbers = self._versions(name)
        if not numbers:
            self.get(name)  # raises with the names that exist
        return [self._read_version(name, n) for n in numbers]

    def list(self) -> list[RegisteredModel]:
        """Every registered model with at least one version, by name."""
        folder = self.root / MODELS_DIR
        if not folder.is_dir():
            return []
        found = []
        for model_dir in sorted(folder.iterdir()):
            if not NAME_RE.match(model_dir.name):  # not a model's folder: not ours to read
                continue
            numbers = self._versions(model_dir.name)
            if not numbers:
                continue
            meta = _read_yaml(model_dir / "meta.yaml")
            latest = self._read_version(model_dir.name, numbers[-1])
            updated = int(meta.get("last_updated_timestamp") or latest.created_ms)
            found.append(RegisteredModel(model_dir.name, len(numbers), latest, updated))
        return found

    # internals -------------------------------------------------------------------------------
    def _versions(self, name: str) -> builtins.list[int]:
        check_name(name)
        model_dir = self.root / MODELS_DIR / name
        if not model_dir.is_dir():
            return []
        numbers: builtins.list[int] = []
        for entry in model_dir.iterdir():
            number = entry.name.removeprefix(VERSION_PREFIX)
            # a claimed version without meta.yaml is still being written: not yet
            done = (entry / "meta.yaml").is_file()
            if entry.name.startswith(VERSION_PREFIX) and number.isdigit() and done:
                numbers.append(int(number))
        return sorted(numbers)

    def _read_version(self, name: str, version: int) -> ModelVersion:
        version_dir = self.root / MODELS_DIR / name / f"{VERSION_PREFIX}{version}"
        try:
            return self._parse_version(name, version, version_dir)
        except (KeyError, ValueError, IndexError) as error:
            raise RegistryError(f"{version_dir}: damaged metadata ({error!r})") from None

    def _parse_version(self, name: str, version: int, version_dir: Path) -> ModelVersion:
        meta = _read_yaml(version_dir / "meta.yaml")
        tags = _read_folder(version_dir / "tags")
        run_id = str(meta["run_id"])
        run_dir = self.root / EXPERIMENT_ID / run_id
        run_tags = _read_folder(run_dir / "tags")
        metrics = {
            key: float(text.split()[1]) for key, text in _read_folder(run_dir / "metrics").items()
        }
        lineage = Lineage(**{k: run_tags.get(tag) for k, tag in LINEAGE_TAGS.items()})
        return ModelVersion(
            name=name,
            version=version,
            format=_format(tags.get(TAG_FORMAT, "")),
            path=run_dir / "artifacts" / ARTIFACT_DIR / tags.get(TAG_FILE, ""),
            run_id=run_id,
            created_ms=int(meta["creation_timestamp"]),
            sha256=tags.get(TAG_SHA256, ""),
            metrics=metrics,
            params=_read_folder(run_dir / "params"),
            lineage=lineage,
            description=meta.get("description"),
        )

    def _ensure_experiment(self, now: int) -> None:
        _mkdirs(self.root)
        meta = self.root / EXPERIMENT_ID / "meta.yaml"
        if meta.exists():
            return
        _write_yaml(
            meta,
            {
                "artifact_location": (self.root / EXPERIMENT_ID).resolve().as_uri(),
                "creation_time": now,
                "experiment_id": EXPERIMENT_ID,
                "last_update_time": now,
                "lifecycle_stage": "active",
                "name": EXPERIMENT_NAME,
                "workspace": "default",
            },
        )

    def _write_run(
        self,
        run_dir: Path,
        run_id: str,
        now: int,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
        lineage: Lineage,
        name: str,
    ) -> None:
        for key, value in metrics.items():
            _write_text(run_dir / "metrics" / _key(key), f"{now} {value!r} 0\n")
        for key, text in params.items():
            _write_text(run_dir / "params" / _key(key), text)
        tags = {"mlflow.runName": f"{name}-{run_id[:8]}"}
        tags.update({tag: v for k, tag in LINEAGE_TAGS.items() if (v := getattr(lineage, k))})
        for key, text in tags.items():
            _write_text(run_dir / "tags" / key, text)
        _write_yaml(
            run_dir / "meta.yaml",
            {
                "artifact_uri": (run_dir / "artifacts").resolve().as_uri(),
                "end_time": now,
                "entry_point_name": "",
                "experiment_id": EXPERIMENT_ID,
                "lifecycle_stage": "active",
                "run_id": run_id,
                "run_name": tags["mlflow.runName"],
                "source_name": lineage.job or "",
                "source_type": SOURCE_LOCAL,
                "source_version": "",
                "start_time": now,
                "status": RUN_FINISHED,
                "tags": [],
                "user_id": "mlkube",
            },
        )

    def _ensure_model(self, model_dir: Path, name: str, now: int) -> None:
        if (model_dir / "meta.yaml").exists():
            return
        _mkdirs(model_dir)
        _write_yaml(model_dir / "meta.yaml", _model_meta(name, now, now))

    def _touch_model(self, model_dir: Path, now: int) -> None:
        meta = _read_yaml(model_dir / "meta.yaml")
        created = int(meta.get("creation_timestamp") or now)
        _write_yaml(
            model_dir / "meta.yaml", _model_meta(meta.get("name", model_dir.name), created, now)
        )

    def _claim_version(self, model_dir: Path) -> tuple[int, Path]:
        taken = [
            int(e.name.removeprefix(VERSION_PREFIX))
            for e in model_dir.iterdir()
            if e.name.startswith(VERSION_PREFIX) and e.name.removeprefix(VERSION_PREFIX).isdigit()
        ]
        version = max(taken, default=0) + 1
        while True:
            folder = model_dir / f"{VERSION_PREFIX}{version}"
            try:
                folder.mkdir(mode=DIR_MODE)
            except FileExistsError:  # another writer took it: the next one is ours
                version += 1
                continue
            return version, folder


def _model_meta(name: str, created: int, updated: int) -> dict[str, Any]:
    return {
        "aliases": {},
        "creation_timestamp": created,
        "deployment_job_id": None,
        "deployment_job_state": None,
        "description": None,
        "last_updated_timestamp": updated,
        "name": name,
        "workspace": "default",
    }


def _format(value: ModelFormat | str) -> ModelFormat:
    try:
        return ModelFormat(value)
    except ValueError:
        known = ", ".join(f.value for f in ModelFormat)
        raise RegistryError(f"unknown model format '{value}' (expected one of {known})") from None


def _key(key: str) -> str:
    """A metric or parameter name as a file name: MLflow's rule (no path separators)."""
    if not key or key.startswith(".") or "/" in key or "\\" in key or "\0" in key:
        raise RegistryError(f"'{key}' is not a valid metric or parameter name")
    return key


def _mkdirs(path: Path) -> None:
    """``mkdir -p`` with every new level 0700 (os.makedirs gives parents the default mode)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue


def _write_bytes(path: Path, data: bytes) -> None:
    _mkdirs(path.parent)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    os.replace(temp, path)


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode())


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    _write_text(path, yaml.safe_dump(dict(data), sort_keys=True))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise RegistryError(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise RegistryError(f"{path} is not a registry metadata file")
    return data


def _read_folder(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        f.name: f.read_text().strip()
        for f in sorted(folder.iterdir())
        if f.is_file() and not f.name.startswith(".")
    }


def _copy(source: Path, target: Path) -> None:
    """Copy a model file or folder into the registry: folders 0700, files 0600."""
    if source.is_dir():
        _mkdirs(target.parent)
        shutil.copytree(source, target, copy_function=shutil.copyfile)
        for folder, _dirs, files in os.walk(target):
            os.chmod(folder, DIR_MODE)
            for name in files:
                os.chmod(os.path.join(folder, name), FILE_MODE)
        return
    _mkdirs(target.parent)
    temp = target.with_name(f".{target.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, _CHUNK)
    os.replace(temp, target)
