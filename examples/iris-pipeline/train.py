"""Train the iris classifier and export it to ONNX, the pipeline's first step.

Usage: python examples/iris-pipeline/train.py [OUTPUT_DIR]   (default: $MLKUBE_OUTPUT_DIR)
Writes iris.onnx and metrics.json ({"accuracy": ...}, recorded with the registered version).
The same model as examples/iris/train.py, without the skops copy (half the start-up).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main(output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    features, labels = load_iris(return_X_y=True)
    features = features.astype(np.float32)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(features, labels)
    onnx_model = to_onnx(model, features[:1], options={"zipmap": False}, target_opset=17)
    (output / "iris.onnx").write_bytes(onnx_model.SerializeToString())
    accuracy = float(model.score(features, labels))
    (output / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    print(f"wrote {output / 'iris.onnx'} (accuracy {accuracy:.4f})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MLKUBE_OUTPUT_DIR", ".")))
