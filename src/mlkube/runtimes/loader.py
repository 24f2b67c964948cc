"""Pick and load the runtime for a deployment's model.

Each runtime lives in its own module and is imported only when a model of its format is loaded,
so a missing optional library (xgboost, lightgbm, torch) only matters to models that need it,
and the error then names the extra to install.
"""

from __future__ import annotations

from mlkube.errors import ModelLoadError
from mlkube.runtimes.base import Runtime
from mlkube.spec import ModelDeployment, ModelFormat
from mlkube.spec.deployment import MODELS_SCHEME

REMOTE_SCHEMES = ("s3://", "gs://", "https://", "http://", "pvc://")
"""URI schemes that name a model somewhere else; local mode serves local files only."""


def load_runtime(deployment: ModelDeployment) -> Runtime:
    """The loaded runtime for ``deployment``'s model, ready to predict.

    Raises ModelLoadError naming the file and the format when the model cannot be served here.
    """
    model = deployment.spec.model
    model_format = model.format
    if model_format is ModelFormat.TENSORFLOW:
        raise ModelLoadError(
            model.uri,
            str(model_format),
            "tensorflow models are served only by the Kubernetes backend, which runs the "
            "TF Serving image; to serve it locally, convert it to ONNX (tf2onnx) and use "
            "format onnx",
        )
    check_local(model.uri, str(model_format))
    path = deployment.model_path()
    if path.startswith(MODELS_SCHEME):  # `mlkube serve` on it (replicas get the file's path)
        from mlkube.registry import RegistryError, resolve_model  # only then: cold start

        try:
            path = str(resolve_model(path, model_format).path)
        except RegistryError as error:
            raise ModelLoadError(model.uri, str(model_format), str(error)) from error
    if model_format is ModelFormat.ONNX:
        from mlkube.runtimes.onnx_runtime import OnnxRuntime

        return OnnxRuntime(path)
    if model_format is ModelFormat.SKLEARN:
        from mlkube.runtimes.sklearn_runtime import load_sklearn

        return load_sklearn(path, model.trust_pickle)
    if model_format is ModelFormat.XGBOOST:
        from mlkube.runtimes.xgboost_runtime import XGBoostRuntime

        return XGBoostRuntime(path)
    if model_format is ModelFormat.LIGHTGBM:
        from mlkube.runtimes.lightgbm_runtime import LightGBMRuntime

        return LightGBMRuntime(path)
    if model_format is ModelFormat.PYTORCH:
        from mlkube.runtimes.torch_runtime import TorchRuntime

        return TorchRuntime(path)
    if model_format is ModelFormat.PYTHON:
        from mlkube.runtimes.python_runtime import PythonRuntime

        if model.entrypoint is None:
            raise ModelLoadError(path, "python", "format python needs spec.model.entrypoint")
        return PythonRuntime(path, model.entrypoint)
    raise ModelLoadError(path, str(model_format), "no runtime serves this format")


def check_local(uri: str, model_format: str) -> None:
    """Refuse a remote URI: local mode serves local files only."""
    if uri.startswith(REMOTE_SCHEMES):
        scheme = uri.split("://", 1)[0]
        where = (
            "a Kubernetes PersistentVolumeClaim" if scheme == "pvc" else f"a remote {scheme} URI"
        )
        raise ModelLoadError(
            uri,
            model_format,
            f"this is {where}, and local mode serves local files only; download the model "
            "first and set spec.model.uri to the local path (remote URIs are for the "
            "Kubernetes backend)",
        )
