"""Train the shop example's three models on scikit-learn's bundled data sets.

Usage: python examples/shop/train.py [OUTPUT_DIR]   (default: examples/shop/models)

Writes TF Serving's layout for the versioned model and single files for the others:

    models/iris/1/model.onnx    iris, a first (weaker) version       format onnx
    models/iris/2/model.onnx    iris, the second version             format onnx
    models/wine.skops           a wine classifier                    format sklearn
    models/diabetes.onnx        a diabetes progression regressor     format onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skops.io
from skl2onnx import to_onnx
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _onnx(model: object, features: np.ndarray, path: Path, classifier: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"zipmap": False} if classifier else None
    onnx_model = to_onnx(model, features[:1], options=options, target_opset=17)
    path.write_bytes(onnx_model.SerializeToString())


def main(output: Path) -> None:
    features, labels = load_iris(return_X_y=True)
    features = features.astype(np.float32)
    for version, strength in (("1", 0.01), ("2", 1.0)):
        iris = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=500))
        _onnx(iris.fit(features, labels), features, output / "iris" / version / "model.onnx")
    wine_features, wine_labels = load_wine(return_X_y=True)
    wine = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    wine.fit(wine_features, wine_labels)
    skops.io.dump(wine, output / "wine.skops")
    sugar, progression = load_diabetes(return_X_y=True)
    sugar = sugar.astype(np.float32)
    _onnx(Ridge().fit(sugar, progression), sugar, output / "diabetes.onnx", classifier=False)
    print(f"wrote iris versions 1 and 2, wine and diabetes under {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "models")
