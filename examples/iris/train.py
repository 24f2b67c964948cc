"""Train a classifier on scikit-learn's bundled iris data; write ONNX and skops models.

Usage: python examples/iris/train.py [OUTPUT_DIR]   (default: examples/iris/models)
As a TrainingJob (examples/iris-train/job.yaml) it writes to $MLKUBE_OUTPUT_DIR, with its
accuracy in metrics.json there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import skops.io
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
    skops.io.dump(model, output / "iris.skops")
    accuracy = model.score(features, labels)
    (output / "metrics.json").write_text(json.dumps({"accuracy": accuracy}))
    print(f"wrote {output / 'iris.onnx'} and {output / 'iris.skops'} (accuracy {accuracy:.3f})")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        main(Path(os.environ.get("MLKUBE_OUTPUT_DIR") or Path(__file__).parent / "models"))
