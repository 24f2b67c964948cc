"""Evaluate an exported iris model (the ONNX file that will be served) on the iris data.

Usage: python examples/iris-pipeline/evaluate.py MODEL.onnx
As a pipeline step it writes {"accuracy": ...} to metrics.json in $MLKUBE_OUTPUT_DIR, where
the pipeline's gates read it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from sklearn.datasets import load_iris


def main(model: Path, output: Path) -> None:
    features, labels = load_iris(return_X_y=True)
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predicted = session.run(None, {name: features.astype(np.float32)})[0]
    accuracy = float(np.mean(np.asarray(predicted).reshape(-1) == labels))
    output.mkdir(parents=True, exist_ok=True)
    (output / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    print(f"{model}: accuracy {accuracy:.4f} on {len(labels)} rows")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(os.environ.get("MLKUBE_OUTPUT_DIR", ".")))
