"""The benchmark's baseline: a minimal Starlette app under uvicorn, as a user would write one.

It serves the same model file the same way mlkube's v1 endpoint answers (labels and
probabilities per row), with nothing else: no batching, no metrics, no access log.
``BASELINE_MODEL`` names an .onnx file (onnxruntime, one thread) or a .skops file (sklearn).
"""

from __future__ import annotations

import os

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MODEL_PATH = os.environ["BASELINE_MODEL"]

if MODEL_PATH.endswith(".onnx"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(MODEL_PATH, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def predict(rows: list[list[float]]) -> list[dict[str, object]]:
        labels, probabilities = session.run(None, {input_name: np.asarray(rows, np.float32)})
        return [
            {"label": int(label), "probabilities": p}
            for label, p in zip(labels.tolist(), probabilities.tolist(), strict=True)
        ]
else:
    import skops.io

    model = skops.io.load(MODEL_PATH, trusted=skops.io.get_untrusted_types(file=MODEL_PATH))

    def predict(rows: list[list[float]]) -> list[dict[str, object]]:
        probabilities = model.predict_proba(np.asarray(rows, np.float64))
        labels = model.classes_.take(probabilities.argmax(axis=1))
        return [
            {"label": int(label), "probabilities": p}
            for label, p in zip(labels.tolist(), probabilities.tolist(), strict=True)
        ]


async def predict_endpoint(request: Request) -> JSONResponse:
    body = await request.json()
    return JSONResponse({"predictions": predict(body["instances"])})


app = Starlette(routes=[Route("/v1/models/{name}:predict", predict_endpoint, methods=["POST"])])
