"""Models in every format, built once per test session, and specs that serve them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mlkube.spec import ModelDeployment, load_spec
from mlkube.testing import models


@dataclass
class Served:
    """A built model, its spec, and what the library itself predicts for its sample rows."""

    name: str
    spec_path: Path
    rows: np.ndarray
    expected: dict[str, np.ndarray]
    exact: frozenset[str]

    def deployment(self, **spec_changes: Any) -> ModelDeployment:
        document = yaml.safe_load(self.spec_path.read_text())
        for dotted, value in spec_changes.items():
            target = document["spec"]
            *parents, leaf = dotted.split(".")
            for key in parents:
                target = target.setdefault(key, {})
            target[leaf] = value
        path = self.spec_path.with_name(f"{self.spec_path.stem}-variant.yaml")
        path.write_text(yaml.safe_dump(document))
        return load_spec(path)


def _sklearn_expected(model: Any, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {"label": model.predict(rows), "probabilities": model.predict_proba(rows)}


def _build(kind: str, folder: Path) -> Served:
    if kind == "sklearn-skops":
        trained = models.hgb_classifier(n_samples=300)
        built = models.save_sklearn(trained, folder, kind="skops")
        rows = trained.rows[:6]
        return Served(
            kind,
            models.write_spec(built),
            rows,
            _sklearn_expected(trained.model, rows),
            frozenset({"label"}),
        )
    if kind == "onnx":
        trained = models.iris_classifier()
        built = models.save_onnx(trained, folder)
        rows = trained.rows[::30]
        return Served(
            kind,
            models.write_spec(built),
            rows,
            _sklearn_expected(trained.model, rows),
            frozenset({"label"}),
        )
    if kind in ("xgboost", "lightgbm"):
        builder = models.xgboost_model if kind == "xgboost" else models.lightgbm_model
        built = builder(folder)
        rows = built.rows[:6]
        return Served(
            kind,
            models.write_spec(built),
            rows,
            _sklearn_expected(built.model, rows),
            frozenset({"label"}),
        )
    if kind == "pytorch":
        import torch

        built = models.torchscript_model(folder)
        rows = built.rows[:6]
        with torch.no_grad():
            output = built.model(torch.from_numpy(rows.astype(np.float32))).numpy()
        return Served(kind, models.write_spec(built), rows, {"output": output}, frozenset())
    if kind == "python":
        built = models.python_model(folder)
        rows = built.rows[::30]
        expected = {
            "label": built.model.predict(rows),
            "scores": built.model.decision_function(rows),
        }
        return Served(kind, models.write_spec(built), rows, expected, frozenset({"label"}))
    raise AssertionError(kind)


RUNTIME_KINDS = ["onnx", "sklearn-skops", "xgboost", "lightgbm", "pytorch", "python"]


@pytest.fixture(scope="session")
def served_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    root = tmp_path_factory.mktemp("served-models")
    return {kind: _build(kind, root / kind) for kind in RUNTIME_KINDS}
