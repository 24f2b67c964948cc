"""Helpers shared by the runtimes: file checks, optional imports, errors, thread counts.

Every runtime turns a library failure into a `ModelLoadError` naming the file and the format,
with the library's own reason shortened to one line: no raw traceback reaches the user.
"""

from __future__ import annotations

import importlib
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from mlkube.errors import MlkubeError, ModelLoadError
from mlkube.runtimes.base import NUMPY_DTYPES, Array, Batch, Datatype, TensorSpec

_REASON_CHARS = 300
"""Longest piece of a library's error message quoted in a ModelLoadError."""


def require_module(module: str, extra: str, path: str, model_format: str) -> ModuleType:
    """Import an optional library, or fail with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ModelLoadError(
            path,
            model_format,
            f"the {model_format} runtime needs the '{module}' package, which is not installed "
            f"({error}); install it with: pip install 'mlkube[{extra}]'",
        ) from error


def check_file(path: str, model_format: str, suffixes: tuple[str, ...] = ()) -> Path:
    """The model file at ``path``, after checking it exists, is a file and is not empty.

    ``suffixes`` (lower case, with the dot), when given, are the only file endings accepted.
    """
    file = Path(path)
    if not file.exists():
        raise ModelLoadError(path, model_format, "the file does not exist")
    if file.is_dir():
        raise ModelLoadError(path, model_format, "this is a directory, expected a model file")
    if suffixes and file.suffix.lower() not in suffixes:
        raise ModelLoadError(
            path,
            model_format,
            f"unknown file ending '{file.suffix}'; expected one of {', '.join(suffixes)}",
        )
    try:
        size = file.stat().st_size
    except OSError as error:
        reason = f"cannot read the file: {error.strerror}"
        raise ModelLoadError(path, model_format, reason) from error
    if size == 0:
        raise ModelLoadError(path, model_format, "the file is empty (0 bytes)")
    return file


def library_reason(error: BaseException) -> str:
    """One line describing ``error``: its type and the first line of its message, shortened."""
    lines = str(error).strip().splitlines()
    message = lines[0].strip() if lines else ""
    if len(message) > _REASON_CHARS:
        message = message[: _REASON_CHARS - 3] + "..."
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def user_code_reason(error: BaseException) -> str:
    """Like `library_reason`, plus the file and line of user code where ``error`` was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return library_reason(error) + where


def load_failed(path: str, model_format: str, what: str, error: BaseException) -> ModelLoadError:
    """A ModelLoadError for a library that refused the file: ``what`` says what was expected."""
    return ModelLoadError(path, model_format, f"not a valid {what} ({library_reason(error)})")


def env_threads(variable: str, default: int = 1) -> int:
    """Thread count for a library from the environment variable ``variable`` (default 1).

    Replicas scale by processes, so each library gets one thread unless told otherwise.
    """
    raw = os.environ.get(variable)
    if raw is None or raw.strip() == "":
        return default
    try:
        threads = int(raw)
    except ValueError:
        threads = -1
    if threads < 1:
        raise MlkubeError(
            f"The environment variable {variable} must be a whole number ≥ 1, got '{raw}'."
        )
    return threads


def per_row(predict: Callable[[Batch], Batch], batch: Batch) -> Batch:
    """Call ``predict`` once per row and stack the results: for models with a fixed batch of 1."""
    rows = len(next(iter(batch.values())))
    if rows <= 1:
        return predict(batch)
    parts = [
        predict({name: rows_of[i : i + 1] for name, rows_of in batch.items()}) for i in range(rows)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def as_dtype(value: Array, dtype: np.dtype[np.generic]) -> Array:
    """``value`` as ``dtype``, copying only when its dtype differs."""
    if value.dtype == dtype:
        return value
    return np.asarray(value, dtype=dtype)


def tensor_specs(raw: object, what: str) -> tuple[TensorSpec, ...]:
    """Tensor specs from a list of ``{name, datatype, shape}`` dicts (a sidecar, a user class).

    Raises ValueError with a sentence naming ``what`` (e.g. "inputs") and the bad entry.
    """
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError(
            f"{what} must be a non-empty list of {{name, datatype, shape}}, got {raw!r}"
        )
    specs = tuple(_tensor_spec(entry, f"{what}[{i}]") for i, entry in enumerate(raw))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{what} repeats a name: {names}")
    return specs


def _tensor_spec(entry: object, where: str) -> TensorSpec:
    if not isinstance(entry, dict) or set(entry) != {"name", "datatype", "shape"}:
        raise ValueError(f"{where} must be a dict with keys name, datatype, shape; got {entry!r}")
    name, datatype, shape = entry["name"], entry["datatype"], entry["shape"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name must be a non-empty string, got {name!r}")
    if datatype not in Datatype.__members__:
        known = ", ".join(Datatype.__members__)
        raise ValueError(f"{where}.datatype must be one of {known}; got {datatype!r}")
    if (
        not isinstance(shape, list | tuple)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape)
        or shape[0] != -1
    ):
        raise ValueError(
            f"{where}.shape must be a list of whole numbers starting with -1 (the batch axis), "
            f"-1 marking any size; got {shape!r}"
        )
    return TensorSpec(name, Datatype(datatype), tuple(shape))


def empty_outputs(outputs: tuple[TensorSpec, ...]) -> Batch:
    """The answer to a batch of zero rows (which some libraries refuse): empty arrays."""
    return {
        spec.name: np.empty(
            (0, *(max(d, 0) for d in spec.shape[1:])), dtype=NUMPY_DTYPES[spec.datatype]
        )
        for spec in outputs
    }
