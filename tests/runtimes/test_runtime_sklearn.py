from __future__ import annotations

import importlib
import os
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import SVC

from mlkube.errors import ModelLoadError
from mlkube.runtimes import Datatype, TensorSpec, load_runtime
from mlkube.spec import load_spec
from mlkube.testing import models
from mlkube.testing.checks import assert_batch_invariant, assert_close, serve


@pytest.mark.parametrize("kind", ["skops", "joblib", "pickle"])
def test_iris_predictions_equal_scikit_learn(
    tmp_path: Path, iris: models.Trained, kind: models.SklearnKind
) -> None:
    runtime = serve(models.save_sklearn(iris, tmp_path, kind))
    served = runtime.predict({"input": iris.rows})
    np.testing.assert_array_equal(served["label"], iris.model.predict(iris.rows))
    assert_close(served["probabilities"], iris.model.predict_proba(iris.rows))


def test_classifier_metadata(iris_skops: models.BuiltModel) -> None:
    runtime = serve(iris_skops)
    assert runtime.platform == "sklearn"
    assert runtime.inputs == (TensorSpec("input", Datatype.FP64, (-1, 4)),)
    assert runtime.outputs == (
        TensorSpec("label", Datatype.INT64, (-1,)),
        TensorSpec("probabilities", Datatype.FP64, (-1, 3)),
    )


def test_hist_gradient_boosting_labels_equal_predict(tmp_path: Path, hgb: models.Trained) -> None:
    runtime = serve(models.save_sklearn(hgb, tmp_path, "skops"))
    served = runtime.predict({"input": hgb.rows})
    np.testing.assert_array_equal(served["label"], hgb.model.predict(hgb.rows))
    np.testing.assert_array_equal(served["probabilities"], hgb.model.predict_proba(hgb.rows))


def test_k_neighbours_labels_equal_predict_with_one_neighbour_search(
    tmp_path: Path, hgb: models.Trained
) -> None:
    # KNeighborsClassifier's predict is the argmax of predict_proba (ties: predict decides),
    # so the runtime searches the neighbours once per call, not twice.
    from sklearn.neighbors import KNeighborsClassifier

    model = KNeighborsClassifier(n_neighbors=4).fit(hgb.rows, hgb.model.predict(hgb.rows))
    runtime = serve(models.save_sklearn(models.Trained(model, hgb.rows), tmp_path, "skops"))
    rows = hgb.rows[:200] + 0.3
    served = runtime.predict({"input": rows})
    np.testing.assert_array_equal(served["label"], model.predict(rows))
    assert runtime._fast_label  # type: ignore[attr-defined]


def test_tied_probabilities_take_the_label_predict_gives(tmp_path: Path) -> None:
    # decision 1e-17 > 0 → predict says class 1, but expit rounds it to 0.5: proba [0.5, 0.5],
    # where argmax alone would say class 0.
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    model.coef_ = np.zeros_like(model.coef_)
    model.intercept_ = np.array([1e-17])
    rows = np.array([[0.0], [5.0]])
    assert model.predict_proba(rows)[0, 0] == model.predict_proba(rows)[0, 1]
    runtime = serve(models.save_sklearn(models.Trained(model, rows), tmp_path, "skops"))
    np.testing.assert_array_equal(runtime.predict({"input": rows})["label"], model.predict(rows))


def test_classifier_without_argmax_rule_calls_predict(tmp_path: Path, iris: models.Trained) -> None:
    # SVC's predict does not follow its Platt-scaled probabilities.
    model = SVC(probability=True, random_state=0).fit(iris.rows, iris.model.predict(iris.rows))
    runtime = serve(models.save_sklearn(models.Trained(model, iris.rows), tmp_path, "skops"))
    served = runtime.predict({"input": iris.rows})
    np.testing.assert_array_equal(served["label"], model.predict(iris.rows))
    assert_close(served["probabilities"], model.predict_proba(iris.rows))


def test_pipeline_with_string_labels(tmp_path: Path, iris: models.Trained) -> None:
    names = np.array(["setosa", "versicolor", "virginica"])[iris.model.predict(iris.rows)]
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(iris.rows, names)
    runtime = serve(models.save_sklearn(models.Trained(model, iris.rows), tmp_path, "skops"))
    assert runtime.outputs[0] == TensorSpec("label", Datatype.BYTES, (-1,))
    served = runtime.predict({"input": iris.rows})
    np.testing.assert_array_equal(served["label"], model.predict(iris.rows))


def test_regressor_answers_prediction(tmp_path: Path) -> None:
    trained = models.regressor()
    runtime = serve(models.save_sklearn(trained, tmp_path, "skops"))
    assert runtime.outputs == (TensorSpec("prediction", Datatype.FP64, (-1,)),)
    served = runtime.predict({"input": trained.rows})
    np.testing.assert_array_equal(served["prediction"], trained.model.predict(trained.rows))


def test_onnx_file_with_format_sklearn_uses_onnxruntime(
    tmp_path: Path, hgb: models.Trained
) -> None:
    runtime = serve(models.save_sklearn(hgb, tmp_path, "onnx"))
    assert runtime.platform == "onnxruntime"
    served = runtime.predict({"input": hgb.rows})
    np.testing.assert_array_equal(served["label"], hgb.model.predict(hgb.rows))
    assert_close(served["probabilities"], hgb.model.predict_proba(hgb.rows), atol=1e-6)


@pytest.mark.parametrize("fixture", ["iris", "hgb"])
def test_merged_rows_equal_row_by_row(
    tmp_path: Path, request: pytest.FixtureRequest, fixture: str
) -> None:
    trained: models.Trained = request.getfixturevalue(fixture)
    runtime = serve(models.save_sklearn(trained, tmp_path, "skops"))
    assert runtime.supports_batching
    # Tree ensembles sum in the same order either way; linear models go through BLAS, whose
    # kernels differ between one row and many in the last bit.
    assert_batch_invariant(runtime, trained.rows[:40], exact=fixture == "hgb")


@pytest.mark.parametrize("kind", ["joblib", "pickle"])
def test_pickle_without_trust_is_refused_naming_the_flag(
    tmp_path: Path, iris: models.Trained, kind: models.SklearnKind
) -> None:
    built = models.save_sklearn(iris, tmp_path, kind)
    spec = models.write_spec(built).read_text().replace("trustPickle: true", "trustPickle: false")
    (tmp_path / "spec.yaml").write_text(spec)
    with pytest.raises(ModelLoadError, match=r"spec\.model\.trustPickle: true") as caught:
        load_runtime(load_spec(tmp_path / "spec.yaml"))
    assert caught.value.path == str(built.path)
    assert caught.value.model_format == "sklearn"


def _untrusted_pipeline(folder: Path, iris: models.Trained) -> models.BuiltModel:
    model = make_pipeline(FunctionTransformer(os.getcwd), LogisticRegression())
    folder.mkdir()
    path = folder / "untrusted.skops"
    skops.io.dump(model, path)
    return models.BuiltModel(path, "sklearn", model, iris.rows)


def test_skops_with_unknown_types_is_refused(tmp_path: Path, iris: models.Trained) -> None:
    built = _untrusted_pipeline(tmp_path / "m", iris)
    with pytest.raises(ModelLoadError, match=r"posix\.getcwd.*trustPickle") as caught:
        serve(built)
    assert str(built.path) in str(caught.value)


def test_skops_with_unknown_types_loads_when_trusted(tmp_path: Path, iris: models.Trained) -> None:
    built = _untrusted_pipeline(tmp_path / "m", iris)
    trusted = models.BuiltModel(built.path, "sklearn", built.model, built.rows, trust_pickle=True)
    # The pipeline is not fitted: loading passes the type check and stops at the fit check.
    with pytest.raises(ModelLoadError, match="not fitted"):
        serve(trusted)


def test_skops_numpy_function_is_trusted(tmp_path: Path, iris: models.Trained) -> None:
    model = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500))
    model.fit(iris.rows, iris.model.predict(iris.rows))
    runtime = serve(models.save_sklearn(models.Trained(model, iris.rows), tmp_path, "skops"))
    np.testing.assert_array_equal(
        runtime.predict({"input": iris.rows})["label"], model.predict(iris.rows)
    )


def test_unknown_file_ending_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x04data")
    built = models.BuiltModel(path, "sklearn", None, np.zeros((1, 1)))
    with pytest.raises(ModelLoadError, match=r"unknown file ending '\.bin'.*\.skops"):
        serve(built)


def test_object_without_predict_is_refused(tmp_path: Path) -> None:
    built = models.save_sklearn(
        models.Trained(StandardScaler().fit([[0.0], [1.0]]), np.zeros((1, 1))), tmp_path, "skops"
    )
    with pytest.raises(ModelLoadError, match="StandardScaler has no predict method"):
        serve(built)


def test_loading_caps_openmp_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hgb: models.Trained
) -> None:
    threadpoolctl = importlib.import_module("threadpoolctl")  # ships with scikit-learn, untyped
    monkeypatch.setenv("MLKUBE_SKLEARN_THREADS", "1")
    serve(models.save_sklearn(hgb, tmp_path, "skops"))
    openmp = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "openmp"]
    assert openmp
    assert all(p["num_threads"] == 1 for p in openmp)
