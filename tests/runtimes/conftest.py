"""Models in every format, built once per test session, and a helper that serves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlkube.testing import models


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def iris() -> models.Trained:
    return models.iris_classifier()


@pytest.fixture(scope="session")
def hgb() -> models.Trained:
    return models.hgb_classifier()


@pytest.fixture(scope="session")
def iris_skops(model_dir: Path, iris: models.Trained) -> models.BuiltModel:
    return models.save_sklearn(iris, model_dir / "iris", "skops")


@pytest.fixture(scope="session")
def hgb_onnx(model_dir: Path, hgb: models.Trained) -> models.BuiltModel:
    return models.save_onnx(hgb, model_dir / "hgb", "hgb")


@pytest.fixture(scope="session")
def xgboost_json(model_dir: Path) -> models.BuiltModel:
    pytest.importorskip("xgboost")
    return models.xgboost_model(model_dir / "xgboost")


@pytest.fixture(scope="session")
def lightgbm_txt(model_dir: Path) -> models.BuiltModel:
    pytest.importorskip("lightgbm")
    return models.lightgbm_model(model_dir / "lightgbm")


@pytest.fixture(scope="session")
def torchscript(model_dir: Path) -> models.BuiltModel:
    pytest.importorskip("torch")
    return models.torchscript_model(model_dir / "torchscript")


@pytest.fixture(scope="session")
def torch_export(model_dir: Path) -> models.BuiltModel:
    pytest.importorskip("torch")
    return models.torch_export_model(model_dir / "export")


@pytest.fixture(scope="session")
def python_user(model_dir: Path) -> models.BuiltModel:
    return models.python_model(model_dir / "python", module="mlkube_test_user_model")
