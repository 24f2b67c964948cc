"""Helpers shipped for tests, examples and benchmarks: small models in every served format."""

from mlkube.testing.models import (
    BuiltModel,
    Trained,
    hgb_classifier,
    iris_classifier,
    lightgbm_model,
    python_model,
    regressor,
    save_onnx,
    save_sklearn,
    torch_export_model,
    torchscript_model,
    write_spec,
    xgboost_model,
)

__all__ = [
    "BuiltModel",
    "Trained",
    "hgb_classifier",
    "iris_classifier",
    "lightgbm_model",
    "python_model",
    "regressor",
    "save_onnx",
    "save_sklearn",
    "torch_export_model",
    "torchscript_model",
    "write_spec",
    "xgboost_model",
]
