"""Pick and load the runtime for a deployment's model.

Each runtime lives in its own module and is imported only when a model of its format is loaded,
so a missing optional library (xgboost, lightgbm, torch) only matters to models that need it,
and the error then names the extra to install.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import PurePosixPath

from mlkube.errors import ModelLoadError
from mlkube.runtimes.base import Runtime
from mlkube.spec import ModelDeployment, ModelFormat
from mlkube.spec.claims import CLAIM_SCHEME, claim_host_path
from mlkube.spec.deployment import MODELS_SCHEME
from mlkube.spec.model import ModelSpec
from mlkube.storage.uri import is_fetched

logger = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3://", "gs://", "https://", "http://", "pvc://")
"""URI schemes that name a model somewhere else: a deployment's replicas download them (or read
a claim's hostPath); local batch jobs read local files only."""


def load_runtime(deployment: ModelDeployment) -> Runtime:
    """The loaded runtime for ``deployment``'s model, ready to predict.

    Raises ModelLoadError naming the file and the format when the model cannot be served here.
    """
    model = deployment.spec.model
    model_format = model.format
    path = local_model_path(deployment)
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
    if model_format is ModelFormat.TENSORFLOW:
        from mlkube.runtimes.tensorflow_runtime import TensorFlowRuntime

        return TensorFlowRuntime(path)
    if model_format is ModelFormat.PYTHON:
        from mlkube.runtimes.python_runtime import PythonRuntime

        if model.entrypoint is None:
            raise ModelLoadError(path, "python", "format python needs spec.model.entrypoint")
        return PythonRuntime(path, model.entrypoint)
    raise ModelLoadError(path, str(model_format), "no runtime serves this format")


PRELOADED: dict[ModelFormat, str] = {
    ModelFormat.XGBOOST: "xgboost",
    ModelFormat.LIGHTGBM: "lightgbm",
    ModelFormat.PYTORCH: "torch",
}
"""The library each format's runtime imports first, for `preload_libraries` (scikit-learn's
are picked by `sklearn_runtime.preload`). Not onnxruntime (it starts a thread at import and
costs ~25 ms), TensorFlow (not fork-safe) or user code (format python: its import may act)."""


def preload_libraries(deployment: ModelDeployment) -> None:
    """Import the libraries that loading ``deployment``'s models will import, now.

    For the parent of forked workers (``serving/workers.py``): each worker would otherwise
    import them again, N copies of the same seconds of CPU (scikit-learn and SciPy, XGBoost,
    torch: 1-3 s each) on the cores the workers share, where one import before the fork
    serves all of them (and its pages stay shared). Only libraries that start no thread of
    their own at import are preloaded, so the fork copies no lock a lost thread held (torch
    is forked this way by its own DataLoader workers; the BLAS thread pools NumPy and SciPy
    start are shut down across a fork by OpenBLAS itself, as NumPy's always was here).
    Nothing here may fail the start: a library that does not import is left for the
    worker's load to report as it always does.
    """
    for model in deployment.spec.all_models:
        try:
            if model.format is ModelFormat.SKLEARN:
                from mlkube.runtimes.sklearn_runtime import preload

                preload(PurePosixPath(model.uri).suffix.lower())
            elif model.format in PRELOADED:
                importlib.import_module(PRELOADED[model.format])
        except Exception as error:  # the worker's load reports it, with the file's name
            logger.debug("not preloaded", extra={"format": str(model.format), "error": str(error)})


def local_model_path(deployment: ModelDeployment) -> str:
    """Where the (first) model is on this machine; see ``model_location``."""
    return model_location(deployment, deployment.spec.model)


def is_elsewhere(uri: str) -> bool:
    """Whether ``uri`` is downloaded (s3://, gs://, http(s)://) or read through a claim."""
    return is_fetched(uri) or uri.startswith(CLAIM_SCHEME)


def model_location(deployment: ModelDeployment, model: ModelSpec) -> str:
    """Where ``model`` is on this machine: a path, a remote URI's copy in the model cache
    (downloaded now unless cached), or a ``pvc://`` claim's hostPath volume."""
    if is_fetched(model.uri):
        from mlkube.storage import FetchError, default_cache_dir, fetch  # only then: cold start

        try:
            return str(fetch(model.uri, default_cache_dir(), progress=_progress))
        except FetchError as error:
            raise ModelLoadError(model.uri, str(model.format), str(error)) from error
    if model.uri.startswith(CLAIM_SCHEME):
        path = claim_host_path(deployment, model.uri)
        if path is None:
            raise ModelLoadError(
                model.uri,
                str(model.format),
                "this names a Kubernetes PersistentVolumeClaim, which this machine can read "
                "only when the spec binds it to a hostPath volume "
                "(storage.pvc and storage.persistentVolume.hostPath); else set "
                "spec.model.uri to a local path",
            )
        return path
    return deployment.model_path(model)


def _progress(line: str) -> None:
    # stderr: the replica's lines for people (its stdout carries JSON log lines only)
    sys.stderr.write(f"mlkube: {line}\n")
    sys.stderr.flush()
