"""The TensorFlow runtime: a SavedModel's ``serving_default`` signature, served in process.

Needs the ``tensorflow`` extra (``tensorflow-cpu`` on Linux). Runs on the CPU with
``MLKUBE_TF_THREADS`` intra-op threads (default 1: replicas scale by processes).

``model.uri`` is a SavedModel folder (holding ``saved_model.pb``), or, as TF Serving's
``model_base_path``, a folder of numbered version folders: the highest number is served (TF
Serving's default version policy, ``latest: 1``).

The signature's keyword inputs and its output dict become the model's inputs and outputs, by
name, as TF Serving maps them: a v1 request's ``instances`` are rows (objects keyed by input
name when there are several inputs), its ``inputs`` columns; ``signature_name`` may be
``serving_default`` (the only signature served). A signature whose batch axis is fixed at 1 is
called once per row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mlkube.errors import InvalidInputError, ModelLoadError
from mlkube.runtimes.base import NUMPY_DTYPES, Batch, Datatype, TensorSpec, datatype_of
from mlkube.runtimes.support import (
    as_dtype,
    env_threads,
    library_reason,
    load_failed,
    per_row,
    require_module,
)

FORMAT = "tensorflow"
THREADS_VARIABLE = "MLKUBE_TF_THREADS"
"""Environment variable: TensorFlow intra-op threads (default 1)."""
SIGNATURE = "serving_default"
_MARKERS = ("saved_model.pb", "saved_model.pbtxt")


def saved_model_dir(path: str) -> Path:
    """The SavedModel folder at ``path``, or its highest numbered version folder."""
    folder = Path(path)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is a file"
        raise ModelLoadError(path, FORMAT, f"{what}; expected a SavedModel folder")
    if any((folder / marker).is_file() for marker in _MARKERS):
        return folder
    versions = sorted(
        (int(child.name), child)
        for child in folder.iterdir()
        if child.name.isdigit() and any((child / m).is_file() for m in _MARKERS)
    )
    if not versions:
        raise ModelLoadError(
            path,
            FORMAT,
            "no saved_model.pb here nor in a numbered version folder (e.g. 1/saved_model.pb)",
        )
    return versions[-1][1]


class TensorFlowRuntime:
    """A SavedModel's serving signature."""

    platform = "tensorflow"
    runs_user_code = False

    def __init__(self, path: str) -> None:
        folder = saved_model_dir(path)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ info lines per replica
        self._tf = tf = require_module("tensorflow", "tensorflow", path, FORMAT)
        _set_threads(tf)
        try:
            loaded = tf.saved_model.load(str(folder))
        except Exception as error:
            raise load_failed(path, FORMAT, "TensorFlow SavedModel", error) from error
        signatures = dict(loaded.signatures)
        if SIGNATURE not in signatures:
            found = ", ".join(sorted(signatures)) or "none"
            raise ModelLoadError(
                path, FORMAT, f"the SavedModel has no '{SIGNATURE}' signature (it has: {found})"
            )
        self._loaded = loaded  # the signature's variables live as long as the object
        self._signature = signatures[SIGNATURE]
        _, keywords = self._signature.structured_input_signature
        if not keywords:
            raise ModelLoadError(path, FORMAT, f"'{SIGNATURE}' takes no named inputs")
        self.inputs = tuple(_spec(name, s) for name, s in keywords.items())
        self._dtypes = {spec.name: np.dtype(NUMPY_DTYPES[spec.datatype]) for spec in self.inputs}
        outputs = self._signature.structured_outputs
        self.outputs = tuple(_spec(name, s) for name, s in outputs.items())
        self.supports_batching = all(_batch_axis(s) is None for s in keywords.values())

    def predict(self, batch: Batch) -> Batch:
        if not self.supports_batching:
            return per_row(self._call, batch)
        return self._call(batch)

    def _call(self, batch: Batch) -> Batch:
        tf = self._tf
        for spec in self.inputs:  # a concrete function does not check shapes itself
            _check_shape(spec, batch[spec.name].shape)
        feeds = {name: tf.constant(as_dtype(batch[name], d)) for name, d in self._dtypes.items()}
        try:
            result = self._signature(**feeds)
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            reason = library_reason(error)
            raise InvalidInputError(f"the model refused the input: {reason}") from error
        return {spec.name: _numpy(result[spec.name]) for spec in self.outputs}


def _check_shape(spec: TensorSpec, shape: tuple[int, ...]) -> None:
    fits = len(shape) == len(spec.shape) and all(
        want in (-1, got) for want, got in zip(spec.shape[1:], shape[1:], strict=True)
    )
    if not fits:
        raise InvalidInputError(
            f"input '{spec.name}' has shape {list(shape)}; the signature takes "
            f"{list(spec.shape)} (-1: any size)"
        )


def _set_threads(tf: Any) -> None:
    threads = env_threads(THREADS_VARIABLE)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran an op in this process: it keeps its pools
        pass


def _spec(name: str, spec: Any) -> TensorSpec:
    dtype = spec.dtype
    datatype = (
        Datatype.BYTES if dtype.name == "string" else datatype_of(np.dtype(dtype.as_numpy_dtype))
    )
    dims = spec.shape.as_list() if spec.shape.rank is not None else [None]
    shape = [-1 if d is None else int(d) for d in dims] or [-1]
    shape[0] = -1
    return TensorSpec(name, datatype, tuple(shape))


def _batch_axis(spec: Any) -> int | None:
    if spec.shape.rank is None or spec.shape.rank == 0:
        return None
    first = spec.shape.as_list()[0]
    return None if first is None else int(first)


def _numpy(tensor: Any) -> Any:
    value = tensor.numpy()
    if value.dtype.kind in "OS":  # tf.string comes back as bytes: v1/v2 answer text
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(value)
    return value
