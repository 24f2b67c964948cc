from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from mlkube.spec import load_spec
from mlkube.testing import models


def test_spec_names_the_model_relative_to_its_folder(tmp_path: Path) -> None:
    built = models.save_sklearn(models.iris_classifier(), tmp_path / "m", "skops", name="Iris_V1")
    spec = models.write_spec(built)
    assert spec == tmp_path / "m" / "iris-v1.yaml"
    document = yaml.safe_load(spec.read_text())
    assert document["spec"]["model"] == {"uri": "Iris_V1.skops", "format": "sklearn"}
    deployment = load_spec(spec)
    assert deployment.model_path() == str(built.path)


def test_spec_elsewhere_uses_an_absolute_path(tmp_path: Path) -> None:
    built = models.save_sklearn(models.iris_classifier(), tmp_path / "m", "joblib")
    spec = models.write_spec(built, folder=tmp_path / "specs", name="iris")
    deployment = load_spec(spec)
    assert deployment.spec.model.trust_pickle
    assert deployment.model_path() == str(built.path.resolve())


def test_python_model_spec_points_at_its_folder(tmp_path: Path) -> None:
    built = models.python_model(tmp_path / "py", module="mlkube_spec_user")
    deployment = load_spec(models.write_spec(built))
    assert deployment.spec.model.entrypoint == "mlkube_spec_user:LinearModel"
    assert deployment.model_path() == str(tmp_path / "py")


def test_hgb_classifier_is_the_benchmark_model() -> None:
    trained = models.hgb_classifier(n_samples=300)
    assert trained.rows.shape == (300, 20)
    assert trained.rows.dtype == np.float64
    assert type(trained.model).__name__ == "HistGradientBoostingClassifier"
    assert list(trained.model.classes_) == [0, 1]
