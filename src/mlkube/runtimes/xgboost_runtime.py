"""The XGBoost runtime: a Booster loaded from a JSON (``.json``) or UBJSON (``.ubj``) model.

Needs the ``xgboost`` extra. Threads: ``MLKUBE_XGBOOST_THREADS`` (default 1). Predicts on a
GPU the replica was given (``device="cuda"``, XGBoost >= 2.0 built with CUDA, as the Linux
x86_64 wheels are), else on the CPU (see `mlkube.runtimes.device`).

One input ``input`` (FP32, [-1, num_features]; XGBoost computes in float32). Outputs:

- ``prediction``: what ``Booster.inplace_predict`` answers (for ``binary:logistic`` the
  probability of class 1, for ``multi:softprob`` [-1, classes] probabilities, for regression
  the value; [-1, targets] for multi-target models).
- for ``binary:logistic`` and ``multi:softprob`` also ``label`` (INT64, the class index as
  ``XGBClassifier.predict`` answers it) and ``probabilities`` ([-1, classes], as
  ``XGBClassifier.predict_proba``); for ``multi:softmax`` also ``label``.

Labels are class indices 0..k-1; a model file does not store the original class names.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from mlkube.runtimes.base import Batch, Datatype, TensorSpec
from mlkube.runtimes.device import CUDA, DeviceChoice, device_for, log_choice
from mlkube.runtimes.support import (
    as_dtype,
    check_file,
    empty_outputs,
    env_threads,
    load_failed,
    require_module,
)

FORMAT = "xgboost"
SUFFIXES = (".json", ".ubj")
THREADS_VARIABLE = "MLKUBE_XGBOOST_THREADS"
"""Environment variable: XGBoost prediction threads (default 1)."""

_FP32 = np.dtype(np.float32)


class XGBoostRuntime:
    """An XGBoost Booster served in process."""

    platform = "xgboost"
    runs_user_code = False
    supports_batching = True

    def __init__(self, path: str) -> None:
        check_file(path, FORMAT, SUFFIXES)
        xgboost = require_module("xgboost", "xgboost", path, FORMAT)
        try:
            booster = xgboost.Booster(model_file=path)
            config = json.loads(booster.save_config())
            features = int(booster.num_features())
        except Exception as error:
            raise load_failed(path, FORMAT, "XGBoost JSON or UBJSON model", error) from error
        booster.set_param({"nthread": env_threads(THREADS_VARIABLE)})
        self.device: DeviceChoice = _place(booster, xgboost, path)
        log_choice(self.platform, path, self.device)
        learner = config["learner"]
        self.objective: str = learner["objective"]["name"]
        params = learner["learner_model_param"]
        classes, targets = int(params.get("num_class", 0)), int(params.get("num_target", 1))
        self._predict = (
            _quiet(booster.inplace_predict) if self.device.on_gpu else (booster.inplace_predict)
        )
        self.inputs = (TensorSpec("input", Datatype.FP32, (-1, features)),)
        self._input_name = "input"
        self.outputs = _outputs(self.objective, classes, targets)

    def predict(self, batch: Batch) -> Batch:
        x = batch[self._input_name]
        if not len(x):
            return empty_outputs(self.outputs)
        prediction: npt.NDArray[np.float32] = self._predict(as_dtype(x, _FP32))
        objective = self.objective
        if objective == "binary:logistic":
            probabilities = np.stack((1 - prediction, prediction), axis=1)
            label = (prediction > 0.5).astype(np.int64)
            return {"prediction": prediction, "label": label, "probabilities": probabilities}
        if objective == "multi:softprob":
            label = prediction.argmax(axis=1).astype(np.int64)
            return {"prediction": prediction, "label": label, "probabilities": prediction}
        if objective == "multi:softmax":
            return {"prediction": prediction, "label": prediction.astype(np.int64)}
        return {"prediction": prediction}


def cuda_missing(xgboost: ModuleType) -> str | None:
    """None when this XGBoost can predict on CUDA, else why not (for `device_for`)."""
    version = str(xgboost.__version__)
    if int(version.split(".", 1)[0]) < 2:
        return f"xgboost {version} predates the device parameter (2.0 added it)"
    if str(xgboost.build_info().get("USE_CUDA", "")).upper() not in ("TRUE", "ON", "1"):
        return f"xgboost {version} was built without CUDA"
    return None


def _place(booster: Any, xgboost: ModuleType, path: str) -> DeviceChoice:
    """Put ``booster`` on the chosen device; the CPU if XGBoost finds no GPU there."""
    choice = device_for(lambda: cuda_missing(xgboost), path, FORMAT)
    if not choice.on_gpu:
        return choice
    with warnings.catch_warnings():  # its "no visible GPU" warning becomes our reason
        warnings.simplefilter("ignore")
        booster.set_param({"device": CUDA})
        config = json.loads(booster.save_config())  # the device is resolved here
    if not str(config["learner"]["generic_param"]["device"]).startswith(CUDA):
        return choice.fell_back("xgboost found no usable GPU (it moved the model to the CPU)")
    return choice


def _quiet(predict: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``predict`` without XGBoost's warning, on every call, that numpy rows on a CUDA model
    go through a DMatrix (they must: the rows arrive in host memory)."""

    def quiet(rows: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return predict(rows)

    return quiet


def _outputs(objective: str, classes: int, targets: int) -> tuple[TensorSpec, ...]:
    label = TensorSpec("label", Datatype.INT64, (-1,))
    if objective == "binary:logistic":
        return (
            TensorSpec("prediction", Datatype.FP32, (-1,)),
            label,
            TensorSpec("probabilities", Datatype.FP32, (-1, 2)),
        )
    if objective == "multi:softprob":
        probabilities = TensorSpec("probabilities", Datatype.FP32, (-1, classes))
        return (TensorSpec("prediction", Datatype.FP32, (-1, classes)), label, probabilities)
    if objective == "multi:softmax":
        return (TensorSpec("prediction", Datatype.FP32, (-1,)), label)
    shape = (-1, targets) if targets > 1 else (-1,)
    return (TensorSpec("prediction", Datatype.FP32, shape),)
