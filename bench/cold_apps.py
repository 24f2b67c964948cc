"""The cold-start benchmark's bare apps: Starlette under uvicorn, one model file, written the
most direct way a user would write it for each library.

``bench/cold_start.py`` starts ``uvicorn cold_apps:app`` with ``COLD_MODEL`` (the file) and
``COLD_FORMAT`` (one of ``FORMATS``). At import the app loads the file with the library's own
loader and nothing else: no validation, no warm-up call, no metrics, no access log. It answers
``POST /v1/models/{name}:predict`` with ``{"instances": [[...], ...]}`` by calling the model
on the rows, as mlkube's v1 endpoint does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FORMATS = ("skops", "pickle", "onnx", "xgboost", "lightgbm", "torch")

Predict = Callable[[list[list[float]]], Any]


def _sklearn(model: Any) -> Predict:
    def predict(rows: list[list[float]]) -> Any:
        return model.predict_proba(np.asarray(rows, np.float64)).tolist()

    return predict


def load(model_format: str, path: str) -> Predict:
    """The predict function for the model at ``path``: rows in, JSON-ready answer out."""
    if model_format == "skops":
        import skops.io

        return _sklearn(skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path)))
    if model_format == "pickle":
        import pickle

        with open(path, "rb") as file:
            return _sklearn(pickle.load(file))  # noqa: S301 - our own file
    if model_format == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def onnx_predict(rows: list[list[float]]) -> Any:
            return session.run(None, {name: np.asarray(rows, np.float32)})[1].tolist()

        return onnx_predict
    if model_format == "xgboost":
        import xgboost

        booster = xgboost.Booster(model_file=path)
        booster.set_param({"nthread": 1})

        def xgboost_predict(rows: list[list[float]]) -> Any:
            return booster.inplace_predict(np.asarray(rows, np.float32)).tolist()

        return xgboost_predict
    if model_format == "lightgbm":
        import lightgbm

        gbm = lightgbm.Booster(model_file=path)

        def lightgbm_predict(rows: list[list[float]]) -> Any:
            return np.asarray(gbm.predict(np.asarray(rows, np.float64), num_threads=1)).tolist()

        return lightgbm_predict
    if model_format == "torch":
        import torch

        module = torch.jit.load(path).eval()

        def torch_predict(rows: list[list[float]]) -> Any:
            with torch.inference_mode():
                return module(torch.tensor(rows, dtype=torch.float32)).tolist()

        return torch_predict
    raise SystemExit(f"COLD_FORMAT must be one of {', '.join(FORMATS)}, not {model_format!r}")


predict_rows = load(os.environ.get("COLD_FORMAT", ""), os.environ.get("COLD_MODEL", ""))


async def predict_endpoint(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"predictions": predict_rows(body["instances"])})


app = Starlette(routes=[Route("/v1/models/{name}:predict", predict_endpoint, methods=["POST"])])
