"""The LightGBM runtime: a Booster loaded from a text model (``Booster.save_model``).

Needs the ``lightgbm`` extra. Threads: ``MLKUBE_LIGHTGBM_THREADS`` (default 1).

One input ``input`` (FP64, [-1, num_features]). Outputs:

- ``prediction``: what ``Booster.predict`` answers (for ``binary`` the probability of class 1,
  for multiclass objectives [-1, classes] probabilities, for regression the value).
- for ``binary`` and the multiclass objectives also ``label`` (INT64, the class index, as
  ``LGBMClassifier.predict`` picks it) and ``probabilities`` ([-1, classes], as
  ``LGBMClassifier.predict_proba``).

Labels are class indices 0..k-1; the text model does not store the original class names.
"""

from __future__ import annotations

import numpy as np

from mlkube.runtimes.base import Array, Batch, Datatype, TensorSpec
from mlkube.runtimes.support import check_file, env_threads, load_failed, require_module

FORMAT = "lightgbm"
THREADS_VARIABLE = "MLKUBE_LIGHTGBM_THREADS"
"""Environment variable: LightGBM prediction threads (default 1)."""

MULTICLASS_OBJECTIVES = frozenset(
    {"multiclass", "softmax", "multiclassova", "multiclass_ova", "ova", "ovr"}
)


class LightGBMRuntime:
    """A LightGBM Booster served in process."""

    platform = "lightgbm"
    supports_batching = True

    def __init__(self, path: str) -> None:
        check_file(path, FORMAT)
        lightgbm = require_module("lightgbm", "lightgbm", path, FORMAT)
        try:
            booster = lightgbm.Booster(model_file=path)
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
        prediction: Array = self._booster_predict(
            batch[self._input_name], num_threads=self._threads, validate_features=False
        )
        if self._kind == "binary":
            probabilities = np.stack((1 - prediction, prediction), axis=1)
            label = probabilities.argmax(axis=1).astype(np.int64)
            return {"prediction": prediction, "label": label, "probabilities": probabilities}
        if self._kind == "multiclass":
            label = prediction.argmax(axis=1).astype(np.int64)
            return {"prediction": prediction, "label": label, "probabilities": prediction}
        return {"prediction": prediction}


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
