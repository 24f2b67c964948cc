"""XGBoost and LightGBM: served predictions equal the scikit-learn wrappers' own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlkube.errors import ModelLoadError
from mlkube.runtimes import Datatype, TensorSpec
from mlkube.testing import models
from mlkube.testing.checks import assert_batch_invariant, assert_close, serve

pytest.importorskip("xgboost")
pytest.importorskip("lightgbm")


@pytest.mark.parametrize("file_format", ["json", "ubj"])
@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_xgboost_classifier_equals_xgbclassifier(
    tmp_path: Path, task: models.Task, file_format: str
) -> None:
    built = models.xgboost_model(tmp_path, task, file_format)  # type: ignore[arg-type]
    runtime = serve(built)
    served = runtime.predict({"input": built.rows})
    np.testing.assert_array_equal(served["label"], built.model.predict(built.rows))
    np.testing.assert_array_equal(served["probabilities"], built.model.predict_proba(built.rows))
    assert [spec.name for spec in runtime.outputs] == ["prediction", "label", "probabilities"]


def test_xgboost_metadata(xgboost_json: models.BuiltModel) -> None:
    runtime = serve(xgboost_json)
    assert runtime.platform == "xgboost"
    assert runtime.inputs == (TensorSpec("input", Datatype.FP32, (-1, 4)),)
    assert runtime.outputs[2] == TensorSpec("probabilities", Datatype.FP32, (-1, 3))


def test_xgboost_regressor(tmp_path: Path) -> None:
    built = models.xgboost_model(tmp_path, "regression")
    runtime = serve(built)
    assert runtime.outputs == (TensorSpec("prediction", Datatype.FP32, (-1,)),)
    served = runtime.predict({"input": built.rows})
    np.testing.assert_array_equal(served["prediction"], built.model.predict(built.rows))


def test_xgboost_merged_rows_equal_row_by_row(xgboost_json: models.BuiltModel) -> None:
    assert_batch_invariant(serve(xgboost_json), xgboost_json.rows[::5])


@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_lightgbm_classifier_equals_lgbmclassifier(tmp_path: Path, task: models.Task) -> None:
    built = models.lightgbm_model(tmp_path, task)
    runtime = serve(built)
    served = runtime.predict({"input": built.rows})
    np.testing.assert_array_equal(served["label"], built.model.predict(built.rows))
    assert_close(served["probabilities"], built.model.predict_proba(built.rows), rtol=1e-12)


def test_lightgbm_metadata(lightgbm_txt: models.BuiltModel) -> None:
    runtime = serve(lightgbm_txt)
    assert runtime.platform == "lightgbm"
    assert runtime.inputs == (TensorSpec("input", Datatype.FP64, (-1, 4)),)
    assert runtime.outputs == (
        TensorSpec("prediction", Datatype.FP64, (-1, 3)),
        TensorSpec("label", Datatype.INT64, (-1,)),
        TensorSpec("probabilities", Datatype.FP64, (-1, 3)),
    )


def test_lightgbm_regressor(tmp_path: Path) -> None:
    built = models.lightgbm_model(tmp_path, "regression")
    runtime = serve(built)
    assert runtime.outputs == (TensorSpec("prediction", Datatype.FP64, (-1,)),)
    served = runtime.predict({"input": built.rows})
    np.testing.assert_array_equal(served["prediction"], built.model.predict(built.rows))


def test_lightgbm_merged_rows_equal_row_by_row(lightgbm_txt: models.BuiltModel) -> None:
    assert_batch_invariant(serve(lightgbm_txt), lightgbm_txt.rows[::5])


def test_lightgbm_tree_edited_without_its_size_is_refused(
    tmp_path: Path, lightgbm_txt: models.BuiltModel
) -> None:
    # LightGBM itself aborts the whole process on such a file; the runtime checks first.
    text = lightgbm_txt.path.read_text().replace("shrinkage=1\n", "shrinkage=1.0\n", 1)
    path = tmp_path / "edited.txt"
    path.write_text(text)
    built = models.BuiltModel(path, "lightgbm", None, lightgbm_txt.rows)
    with pytest.raises(ModelLoadError, match="do not match the tree_sizes header"):
        serve(built)
