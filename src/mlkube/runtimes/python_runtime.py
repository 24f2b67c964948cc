"""The python runtime: a user's class, named by ``spec.model.entrypoint: module:Class``.

The contract for the class:

- The folder given by ``spec.model.uri`` (or, for a file, the folder holding it) is put at the
  front of ``sys.path``, then ``module`` is imported and ``Class()`` is created with no arguments.
- ``load(self)``, when present, is called once, before any prediction: read weights here.
- ``predict(self, batch)`` gets a dict of input name → numpy array (first axis: rows) and returns
  a dict of output name → array-like with as many rows, or a single array-like when the model
  has one output.
- Optional class attributes:
  - ``inputs`` and ``outputs``: lists of ``{"name": str, "datatype": str, "shape": list[int]}``,
    the datatype an Open Inference Protocol name (FP32, INT64, BYTES, ...), the shape starting
    with -1 (the batch axis), -1 marking any size. Without ``inputs`` the model takes one input
    ``input`` (FP64, [-1, -1]). Without ``outputs`` they are read from a test prediction on
    zeros shaped like the inputs, made at load time.
  - ``supports_batching`` (default True): whether predict on merged rows answers the same as
    one call per row; set it to False to receive each request on its own.

``predict`` always runs in the replica's predict thread, never on its event loop, so a slow
call delays no probe and the spec's ``server.requestTimeout`` answers its caller on time. An
exception from ``predict`` answers 500 with its message; raise
``mlkube.errors.InvalidInputError("why")`` to answer 400 instead (the input was the problem).
When a merged batch raises, its requests are predicted again apart: only the request that
fails on its own gets an error.

Errors raised while importing, creating or loading the class are reported as a ModelLoadError
naming the error and the file and line where it was raised. A module is imported once per
process: a replica serves one model, so two models whose modules share a name cannot be loaded
side by side in one process.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlkube.errors import ModelLoadError
from mlkube.runtimes.base import Array, Batch, Datatype, TensorSpec, datatype_of, example_batch
from mlkube.runtimes.support import tensor_specs, user_code_reason

FORMAT = "python"
DEFAULT_INPUTS = (TensorSpec("input", Datatype.FP64, (-1, -1)),)


class PythonRuntime:
    """A user's Python class serving predictions in process."""

    platform = "python"
    runs_user_code = True

    def __init__(self, path: str, entrypoint: str) -> None:
        self._path = path
        instance = _instantiate(path, entrypoint)
        user_predict = getattr(instance, "predict", None)
        if not callable(user_predict):
            raise ModelLoadError(path, FORMAT, f"{entrypoint} has no predict(batch) method")
        self._user_predict: Callable[[Batch], Any] = user_predict
        self.supports_batching = bool(getattr(instance, "supports_batching", True))
        self.inputs = self._declared(instance, "inputs") or DEFAULT_INPUTS
        declared_outputs = self._declared(instance, "outputs")
        self._output_names = [spec.name for spec in declared_outputs]
        if declared_outputs:
            self.outputs = declared_outputs
        else:
            self.outputs = self._probe_outputs()
            self._output_names = [spec.name for spec in self.outputs]

    def predict(self, batch: Batch) -> Batch:
        result = self._user_predict(batch)
        if isinstance(result, dict):
            return {name: np.asarray(result[name]) for name in self._output_names}
        if len(self._output_names) == 1:
            return {self._output_names[0]: np.asarray(result)}
        raise TypeError(
            f"predict returned a {type(result).__name__}; a model with outputs "
            f"{self._output_names} must return a dict of them"
        )

    def _declared(self, instance: object, attribute: str) -> tuple[TensorSpec, ...]:
        raw = getattr(instance, attribute, None)
        if raw is None:
            return ()
        try:
            return tensor_specs(raw, attribute)
        except ValueError as error:
            raise ModelLoadError(self._path, FORMAT, f"the class attribute {error}") from error

    def _probe_outputs(self) -> tuple[TensorSpec, ...]:
        try:
            result = self._user_predict(example_batch(self.inputs))
        except Exception as error:
            raise ModelLoadError(
                self._path,
                FORMAT,
                "a test prediction on zeros shaped like the inputs failed "
                f"({user_code_reason(error)}); declare the class attributes inputs and outputs",
            ) from error
        values: dict[str, Array] = (
            {str(k): np.asarray(v) for k, v in result.items()}
            if isinstance(result, dict)
            else {"output": np.asarray(result)}
        )
        return tuple(
            TensorSpec(name, datatype_of(value.dtype), (-1, *value.shape[1:]))
            for name, value in values.items()
        )


def _instantiate(path: str, entrypoint: str) -> object:
    module_name, _, class_name = entrypoint.partition(":")
    folder = Path(path)
    if not folder.exists():
        raise ModelLoadError(path, FORMAT, "the folder does not exist")
    if not folder.is_dir():
        folder = folder.parent
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ModelLoadError(
            path, FORMAT, f"cannot import module '{module_name}' ({user_code_reason(error)})"
        ) from error
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ModelLoadError(path, FORMAT, f"module '{module_name}' has no class '{class_name}'")
    try:
        instance = cls()
        load = getattr(instance, "load", None)
        if callable(load):
            load()
    except Exception as error:
        raise ModelLoadError(
            path, FORMAT, f"{entrypoint} failed to load ({user_code_reason(error)})"
        ) from error
    return instance
