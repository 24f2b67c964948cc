"""Small models in every format mlkube serves, written into a folder, for tests and benchmarks.

Each builder trains on generated or bundled data (scikit-learn's iris, ``make_classification``)
in well under two seconds and returns a `BuiltModel`: the written file, the in-process model it
came from and sample rows, so a test can compare served predictions with the library's own.
xgboost, lightgbm and torch are imported only by the builders that need them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from mlkube.spec import API_VERSION

Rows = npt.NDArray[np.float64]
Task = Literal["multiclass", "binary", "regression"]
SklearnKind = Literal["skops", "onnx", "joblib", "pickle"]


@dataclass(frozen=True, slots=True)
class Trained:
    """A fitted scikit-learn estimator and the rows it was trained on."""

    model: Any
    rows: Rows


@dataclass(frozen=True, slots=True)
class BuiltModel:
    """A model written to disk, ready to be named by a spec."""

    path: Path
    """The model file (for format python: the folder holding the module)."""

    format: str
    """The spec's ``model.format`` for this file."""

    model: Any
    """The in-process model the file was made from (estimator, booster, torch module...)."""

    rows: Rows
    """Sample input rows, float64, [rows, features]."""

    trust_pickle: bool = False
    entrypoint: str | None = None


def iris_classifier() -> Trained:
    """A logistic regression fitted on scikit-learn's bundled iris data (4 features, 3 classes)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    return Trained(LogisticRegression(max_iter=500).fit(x, y), np.asarray(x, dtype=np.float64))


def hgb_classifier(n_samples: int = 1000, n_features: int = 20, seed: int = 0) -> Trained:
    """A HistGradientBoostingClassifier on ``make_classification`` data (binary, float features).

    This is the benchmark model of issue 2: 20 float features, default hyper-parameters.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = _classification(n_samples, n_features, 2, seed)
    return Trained(HistGradientBoostingClassifier(random_state=seed).fit(x, y), x)


def regressor(seed: int = 0) -> Trained:
    """A ridge regression on ``make_regression`` data (5 features, one target)."""
    from sklearn.datasets import make_regression
    from sklearn.linear_model import Ridge

    x, y = make_regression(n_samples=200, n_features=5, noise=0.1, random_state=seed)
    return Trained(Ridge().fit(x, y), np.asarray(x, dtype=np.float64))


def save_sklearn(
    trained: Trained, folder: Path, kind: SklearnKind, name: str = "model"
) -> BuiltModel:
    """Write a fitted estimator as ``<name>.skops``, ``.onnx``, ``.joblib`` or ``.pkl``."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "onnx":
        path = _write_onnx(trained, folder / f"{name}.onnx")
    elif kind == "skops":
        import skops.io

        path = folder / f"{name}.skops"
        skops.io.dump(trained.model, path)
    elif kind == "joblib":
        joblib = importlib.import_module("joblib")

        path = folder / f"{name}.joblib"
        joblib.dump(trained.model, path)
    else:
        path = folder / f"{name}.pkl"
        pickle = importlib.import_module("pickle")  # a plain pickle, as users write them
        with path.open("wb") as file:
            pickle.dump(trained.model, file)
    return BuiltModel(
        path, "sklearn", trained.model, trained.rows, trust_pickle=kind in ("joblib", "pickle")
    )


def save_onnx(trained: Trained, folder: Path, name: str = "model") -> BuiltModel:
    """Export a fitted estimator to ONNX (format onnx): float input ``input``, no ZipMap."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _write_onnx(trained, folder / f"{name}.onnx")
    return BuiltModel(path, "onnx", trained.model, trained.rows)


def xgboost_model(
    folder: Path, task: Task = "multiclass", file_format: Literal["json", "ubj"] = "json"
) -> BuiltModel:
    """An XGBClassifier or XGBRegressor (10 trees) saved as ``xgboost-<task>.<file_format>``."""
    import xgboost

    x, y = _task_data(task)
    params: dict[str, Any] = {"n_estimators": 10, "max_depth": 3, "n_jobs": 1, "random_state": 0}
    model = (xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier)(**params)
    model.fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"xgboost-{task}.{file_format}"
    model.save_model(path)
    return BuiltModel(path, "xgboost", model, x)


def lightgbm_model(folder: Path, task: Task = "multiclass") -> BuiltModel:
    """An LGBMClassifier or LGBMRegressor (10 trees) saved as text, ``lightgbm-<task>.txt``."""
    import lightgbm

    x, y = _task_data(task)
    params: dict[str, Any] = {
        "n_estimators": 10,
        "num_leaves": 8,
        "n_jobs": 1,
        "verbose": -1,
        "random_state": 0,
    }
    model = (lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier)(**params)
    model.fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"lightgbm-{task}.txt"
    model.booster_.save_model(path)
    return BuiltModel(path, "lightgbm", model, x)


def torchscript_model(folder: Path, sidecar: bool = True) -> BuiltModel:
    """A small MLP (4 → 16 → 3) traced to TorchScript as ``mlp.pt``, with ``mlp.pt.json``."""
    torch = importlib.import_module("torch")
    module, rows = _mlp(torch)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mlp.pt"
    torch.jit.trace(module, torch.from_numpy(rows[:8].astype(np.float32))).save(str(path))
    if sidecar:
        io = {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
        }
        path.with_name(path.name + ".json").write_text(json.dumps(io), encoding="utf-8")
    return BuiltModel(path, "pytorch", module, rows)


def torch_export_model(folder: Path) -> BuiltModel:
    """The same small MLP saved with torch.export as ``mlp.pt2``, the batch axis dynamic."""
    torch = importlib.import_module("torch")
    module, rows = _mlp(torch)
    example = (torch.from_numpy(rows[:8].astype(np.float32)),)
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, example, dynamic_shapes=({0: batch},))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mlp.pt2"
    torch.export.save(program, str(path))
    return BuiltModel(path, "pytorch", module, rows)


_PYTHON_MODULE = '''\
"""A user model for mlkube's python runtime: a linear classifier read from an .npz file."""

from pathlib import Path

import numpy as np


class {class_name}:
    inputs = [{{"name": "input", "datatype": "FP64", "shape": [-1, {features}]}}]
    outputs = [
        {{"name": "scores", "datatype": "FP64", "shape": [-1, {classes}]}},
        {{"name": "label", "datatype": "INT64", "shape": [-1]}},
    ]

    def load(self):
        weights = np.load(Path(__file__).with_name("{weights}"))
        self.coef, self.intercept = weights["coef"], weights["intercept"]

    def predict(self, batch):
        scores = batch["input"] @ self.coef.T + self.intercept
        return {{"scores": scores, "label": scores.argmax(axis=1)}}
'''


def python_model(
    folder: Path, module: str = "user_model", class_name: str = "LinearModel"
) -> BuiltModel:
    """A user class (``module:class_name``) wrapping the iris classifier's weights.

    ``model`` is the fitted LogisticRegression: the class's ``scores`` equal its
    ``decision_function`` and its ``label`` its ``predict``.
    """
    trained = iris_classifier()
    folder.mkdir(parents=True, exist_ok=True)
    weights = f"{module}_weights.npz"
    np.savez(folder / weights, coef=trained.model.coef_, intercept=trained.model.intercept_)
    source = _PYTHON_MODULE.format(
        class_name=class_name,
        features=trained.rows.shape[1],
        classes=len(trained.model.classes_),
        weights=weights,
    )
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    return BuiltModel(
        folder, "python", trained.model, trained.rows, entrypoint=f"{module}:{class_name}"
    )


def write_spec(built: BuiltModel, folder: Path | None = None, name: str | None = None) -> Path:
    """Write a ModelDeployment spec for ``built`` and return its path.

    The spec goes to ``folder`` (default: beside the model) as ``<name>.yaml``; the model's
    ``uri`` is relative to the spec's folder when it can be.
    """
    folder = folder or (built.path if built.format == "python" else built.path.parent)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or _dns_label(
        built.path.stem if built.format != "python" else built.entrypoint or "python"
    )
    try:
        uri = built.path.resolve().relative_to(folder.resolve()).as_posix() or "."
    except ValueError:
        uri = str(built.path.resolve())
    model: dict[str, object] = {"uri": uri, "format": built.format}
    if built.trust_pickle:
        model["trustPickle"] = True
    if built.entrypoint:
        model["entrypoint"] = built.entrypoint
    document = {
        "apiVersion": API_VERSION,
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {"model": model},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:53] or "model"


def _classification(n_samples: int, n_features: int, classes: int, seed: int) -> tuple[Rows, Any]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=min(n_features, 10),
        n_classes=classes,
        random_state=seed,
    )
    return np.asarray(x, dtype=np.float64), y


def _task_data(task: Task) -> tuple[Rows, Any]:
    if task == "multiclass":
        from sklearn.datasets import load_iris

        x, y = load_iris(return_X_y=True)
        return np.asarray(x, dtype=np.float64), y
    x, y = _classification(300, 20, 2, 0)
    return (x, y) if task == "binary" else (x, x[:, 0] * 2.0 + x[:, 1])


def _mlp(torch: Any) -> tuple[Any, Rows]:
    from sklearn.datasets import load_iris

    torch.manual_seed(0)
    nn = torch.nn
    module = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = load_iris(return_X_y=True)[0]
    return module, np.asarray(x, dtype=np.float64)


def _write_onnx(trained: Trained, path: Path) -> Path:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    features = trained.rows.shape[1]
    options = {"zipmap": False} if is_classifier(trained.model) else None
    with _skl2onnx_tree_fix():
        onx = to_onnx(
            trained.model,
            initial_types=[("input", FloatTensorType([None, features]))],
            options=options,
        )
    path.write_bytes(onx.SerializeToString())
    return path


@contextlib.contextmanager
def _skl2onnx_tree_fix() -> Iterator[None]:
    """Work around skl2onnx 1.20 passing a bool in an int list for HistGradientBoosting.

    Its leaves set ``nodes_missing_value_tracks_true=False``; onnx ≥ 1.18 with protobuf's upb
    backend refuses a bool in an integer attribute. We pass ``int(...)`` for the conversion only.
    """
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        missing = int(nodes_missing_value_tracks_true)
        return original(*args, nodes_missing_value_tracks_true=missing, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original
