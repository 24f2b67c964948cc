"""The LightGBM runtime: a Booster loaded from a text model (``Booster.save_model``).

Needs the ``lightgbm`` extra. Threads: ``MLKUBE_LIGHTGBM_THREADS`` (default 1). Always predicts
on the CPU: LightGBM's ``device_type`` (gpu, cuda) selects the device for tree learning only,
and ``Booster.predict`` runs on the CPU even in GPU builds; a replica given a GPU says so.

One input ``input`` (FP64, [-1, num_features]). Outputs:

- ``prediction``: what ``Booster.predict`` answers (for ``binary`` the probability of class 1,
  for multiclass objectives [-1, classes] probabilities, for regression the value).
- for ``binary`` and the multiclass objectives also ``label`` (INT64, the class index, as
  ``LGBMClassifier.predict`` picks it) and ``probabilities`` ([-1, classes], as
  ``LGBMClassifier.predict_proba``).

Labels are class indices 0..k-1; the text model does not store the original class names.
"""

from __future__ import annotations

import re

import numpy as np

from mlkube.errors import ModelLoadError
from mlkube.runtimes.base import Array, Batch, Datatype, TensorSpec
from mlkube.runtimes.device import DeviceChoice, device_for, log_choice
from mlkube.runtimes.support import (
    check_file,
    empty_outputs,
    env_threads,
    load_failed,
    require_module,
)

FORMAT = "lightgbm"
THREADS_VARIABLE = "MLKUBE_LIGHTGBM_THREADS"
"""Environment variable: LightGBM prediction threads (default 1)."""

NO_GPU_PREDICT = (
    "lightgbm predicts on the CPU only (its device_type gpu/cuda is for training; "
    "Booster.predict has no GPU path)"
)
"""Why a LightGBM model never predicts on a GPU it was given."""

MULTICLASS_OBJECTIVES = frozenset(
    {"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"}
)


class LightGBMRuntime:
    """A LightGBM Booster served in process."""

    platform = "lightgbm"
    runs_user_code = False
    supports_batching = True

    def __init__(self, path: str) -> None:
        file = check_file(path, FORMAT)
        lightgbm = require_module("lightgbm", "lightgbm", path, FORMAT)
        self.device: DeviceChoice = device_for(lambda: NO_GPU_PREDICT, path, FORMAT)
        log_choice(self.platform, path, self.device)
        text = _checked_text(file.read_bytes(), path)
        try:
            booster = lightgbm.Booster(model_str=text)
            features = int(booster.num_feature())
            classes = int(booster.num_model_per_iteration())
        except Exception as error:
            raise load_failed(path, FORMAT, "LightGBM text model", error) from error
        objective = str(booster.params.get("objective", "")).split(" ", 1)[0]
        self.objective = objective
        self._booster_predict = booster.predict
        self._threads = env_threads(THREADS_VARIABLE)
        self._input_name = "input"
        self.inputs = (TensorSpec("input", Datatype.FP64, (-1, features)),)
        self._kind = (
            "binary"
            if objective == "binary"
            else "multiclass"
            if objective in MULTICLASS_OBJECTIVES
            else "other"
        )
        self.outputs = _outputs(self._kind, classes)

    def predict(self, batch: Batch) -> Batch:
        x = batch[self._input_name]
        if not len(x):
            return empty_outputs(self.outputs)
        prediction: Array = self._booster_predict(
            x, num_threads=self._threads, validate_features=False
        )
        if self._kind == "binary":
            probabilities = np.stack((1 - prediction, prediction), axis=1)
            label = probabilities.argmax(axis=1).astype(np.int64)
            return {"prediction": prediction, "label": label, "probabilities": probabilities}
        if self._kind == "multiclass":
            label = prediction.argmax(axis=1).astype(np.int64)
            return {"prediction": prediction, "label": label, "probabilities": prediction}
        return {"prediction": prediction}


def _checked_text(data: bytes, path: str) -> str:
    """The model text, after checks LightGBM lacks: it aborts the process on a truncated file.

    A text model starts with ``tree``, and its ``tree_sizes`` header gives the byte length of
    each tree, which must lead exactly from ``Tree=0`` to ``end of trees``.
    """
    problem = _text_problem(data)
    if problem:
        raise ModelLoadError(path, FORMAT, f"not a valid LightGBM text model ({problem})")
    return data.decode("utf-8")


def _text_problem(data: bytes) -> str | None:
    if not data.startswith(b"tree\n") and not data.startswith(b"tree\r\n"):
        return "it does not start with the line 'tree'"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "it is not UTF-8 text"
    end = data.find(b"\nend of trees")
    if end < 0:
        return "no 'end of trees' line: the file is truncated"
    sizes = re.search(rb"^tree_sizes=([0-9 ]*)\r?$", data, re.MULTILINE)
    if sizes is None:
        return None
    first = data.find(b"Tree=0")
    total = sum(int(size) for size in sizes.group(1).split())
    if first < 0 or first + total != end + 1:
        return "the trees do not match the tree_sizes header: the file is truncated or altered"
    return None


def _outputs(kind: str, classes: int) -> tuple[TensorSpec, ...]:
    label = TensorSpec("label", Datatype.INT64, (-1,))
    if kind == "binary":
        probabilities = TensorSpec("probabilities", Datatype.FP64, (-1, 2))
        return (TensorSpec("prediction", Datatype.FP64, (-1,)), label, probabilities)
    if kind == "multiclass":
        probabilities = TensorSpec("probabilities", Datatype.FP64, (-1, classes))
        return (TensorSpec("prediction", Datatype.FP64, (-1, classes)), label, probabilities)
    shape = (-1, classes) if classes > 1 else (-1,)
    return (TensorSpec("prediction", Datatype.FP64, shape),)
