"""The tensorflow runtime: a SavedModel made at test time, served as TF Serving serves it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlkube.errors import InvalidInputError, ModelLoadError
from mlkube.runtimes import Datatype, TensorSpec, load_runtime
from mlkube.spec import load_spec
from mlkube.testing.checks import assert_batch_invariant, assert_close
from mlkube.testing.tensorflow_models import half_plus_two, two_inputs

ROWS = np.asarray([[1.0, 2.0, 5.0], [0.0, -4.0, 3.5], [8.0, 8.0, 8.0]], dtype=np.float32)


def _spec(folder: Path, uri: Path) -> Path:
    path = folder / "spec.yaml"
    path.write_text(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: half}\n"
        f"spec:\n  model: {{uri: '{uri}', format: tensorflow}}\n"
    )
    return path


def test_without_tensorflow_the_error_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_bytes(b"\x08\x01")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow → ImportError
    with pytest.raises(ModelLoadError, match=r"pip install 'mlkube\[tensorflow\]'"):
        load_runtime(load_spec(_spec(tmp_path, tmp_path / "m")))


def test_a_folder_without_a_saved_model_says_what_it_expects(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no saved_model.pb here nor in a numbered"):
        load_runtime(load_spec(_spec(tmp_path, tmp_path / "empty")))


# find_spec, not an import: collecting this file must not load TensorFlow into the test run
needs_tensorflow = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="the tensorflow extra is not installed (pip install 'mlkube[tensorflow]')",
)


@pytest.fixture(scope="module")
def tf() -> Any:
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def half(tmp_path_factory):
    return half_plus_two(tmp_path_factory.mktemp("half"))


@needs_tensorflow
def test_predictions_equal_the_module(tmp_path, half):
    runtime = load_runtime(load_spec(_spec(tmp_path, half.parent)))
    assert runtime.platform == "tensorflow"
    assert runtime.inputs == (TensorSpec("x", Datatype.FP32, (-1, 3)),)
    assert sorted(runtime.outputs, key=lambda s: s.name) == [
        TensorSpec("total", Datatype.FP32, (-1,)),
        TensorSpec("y", Datatype.FP32, (-1, 3)),
    ]
    served = runtime.predict({"x": ROWS})
    assert_close(served["y"], ROWS * 0.5 + 2.0)
    assert_close(served["total"], ROWS.sum(axis=1))
    assert runtime.supports_batching
    assert_batch_invariant(runtime, ROWS)


@needs_tensorflow
def test_the_highest_version_folder_is_served(tmp_path):
    base = tmp_path / "base"
    half_plus_two(base, 1)
    half_plus_two(base, 10, scale=3.0)  # 10 > 9 > 2: numbers, not names
    half_plus_two(base, 9, scale=1.0)
    runtime = load_runtime(load_spec(_spec(tmp_path, base)))
    assert_close(runtime.predict({"x": ROWS})["y"], ROWS * 3.0 + 2.0)


@needs_tensorflow
def test_a_wrong_shape_is_an_input_error(tmp_path, half):
    runtime = load_runtime(load_spec(_spec(tmp_path, half)))
    with pytest.raises(InvalidInputError, match=r"input 'x' has shape \[2, 5\]; the sign"):
        runtime.predict({"x": np.zeros((2, 5), dtype=np.float32)})


@needs_tensorflow
def test_a_saved_model_without_serving_default_is_refused(tmp_path, tf: Any):
    class Bare(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def f(self, x):
            return x

    module = Bare()
    tf.saved_model.save(module, str(tmp_path / "bare"), signatures={"other": module.f})
    with pytest.raises(ModelLoadError, match=r"no 'serving_default' signature \(it has: other\)"):
        load_runtime(load_spec(_spec(tmp_path, tmp_path / "bare")))


@needs_tensorflow
def test_v1_and_v2_answer_as_tf_serving_does(tmp_path):
    import httpx

    from mlkube.testing.server import running_replica

    base = two_inputs(tmp_path / "tagger")
    with (
        running_replica(load_spec(_spec(tmp_path, base))) as running,
        httpx.Client(base_url=running.url, timeout=30) as client,
    ):
        rows = {"instances": [{"price": 2.5, "count": 2}, {"price": 4.0, "count": 3}]}
        answer = client.post("/v1/models/half:predict", json=rows)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "predictions": [{"label": "small", "total": 5.0}, {"label": "big", "total": 12.0}]
        }
        named = {"signature_name": "serving_default", **rows}
        assert client.post("/v1/models/half:predict", json=named).json() == answer.json()
        unknown = client.post("/v1/models/half:predict", json={"signature_name": "x", **rows})
        assert unknown.status_code == 400
        assert "unknown signature_name 'x'" in unknown.text
        columns = {"inputs": {"price": [1.0, 30.0], "count": [1, 1]}}
        answer = client.post("/v1/models/half:predict", json=columns)
        assert answer.json() == {"outputs": {"label": ["small", "big"], "total": [1.0, 30.0]}}
        v2 = {
            "inputs": [
                {"name": "price", "datatype": "FP32", "shape": [1], "data": [20.0]},
                {"name": "count", "datatype": "INT64", "shape": [1], "data": [1]},
            ]
        }
        answer = client.post("/v2/models/half/infer", json=v2)
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        assert outputs["total"]["data"] == [20.0]
        assert outputs["label"] == {
            "name": "label",
            "datatype": "BYTES",
            "shape": [1],
            "data": ["big"],
        }
