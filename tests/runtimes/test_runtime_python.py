from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlkube.errors import ModelLoadError
from mlkube.runtimes import Datatype, TensorSpec
from mlkube.testing import models
from mlkube.testing.checks import assert_batch_invariant, assert_close, serve


def test_predictions_equal_the_user_class(python_user: models.BuiltModel) -> None:
    runtime = serve(python_user)
    assert runtime.platform == "python"
    served = runtime.predict({"input": python_user.rows})
    np.testing.assert_array_equal(served["label"], python_user.model.predict(python_user.rows))
    assert_close(served["scores"], python_user.model.decision_function(python_user.rows))


def test_declared_metadata(python_user: models.BuiltModel) -> None:
    runtime = serve(python_user)
    assert runtime.inputs == (TensorSpec("input", Datatype.FP64, (-1, 4)),)
    assert runtime.outputs == (
        TensorSpec("scores", Datatype.FP64, (-1, 3)),
        TensorSpec("label", Datatype.INT64, (-1,)),
    )
    assert runtime.supports_batching


def test_merged_rows_match_row_by_row(python_user: models.BuiltModel) -> None:
    assert_batch_invariant(serve(python_user), python_user.rows[::10], exact=False)


def _user_module(folder: Path, module: str, source: str) -> models.BuiltModel:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(source)
    return models.BuiltModel(folder, "python", None, np.zeros((1, 2)), entrypoint=f"{module}:Model")


def test_outputs_are_read_from_a_probe_when_not_declared(tmp_path: Path) -> None:
    source = (
        "import numpy as np\n"
        "class Model:\n"
        "    supports_batching = False\n"
        "    inputs = [{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 2]}]\n"
        "    def predict(self, batch):\n"
        "        return batch['x'].sum(axis=1).astype(np.int32)\n"
    )
    runtime = serve(_user_module(tmp_path, "mlkube_test_probe", source))
    assert runtime.outputs == (TensorSpec("output", Datatype.INT32, (-1,)),)
    assert not runtime.supports_batching
    rows = np.array([[1, 2], [3, 4]], dtype=np.float32)
    np.testing.assert_array_equal(runtime.predict({"x": rows})["output"], [3, 7])


def test_error_in_load_names_the_error_and_line(tmp_path: Path) -> None:
    source = (
        "class Model:\n"
        "    def load(self):\n"
        "        1 / 0\n"
        "    def predict(self, batch):\n"
        "        return batch\n"
    )
    with pytest.raises(
        ModelLoadError, match=r"ZeroDivisionError: division by zero \(at mlkube_test_load\.py:3\)"
    ):
        serve(_user_module(tmp_path, "mlkube_test_load", source))


def test_missing_class_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="has no class 'Model'"):
        serve(_user_module(tmp_path, "mlkube_test_empty", "x = 1\n"))


def test_missing_module_is_refused(tmp_path: Path) -> None:
    built = models.BuiltModel(
        tmp_path, "python", None, np.zeros((1, 1)), entrypoint="mlkube_nowhere:Model"
    )
    with pytest.raises(ModelLoadError, match="cannot import module 'mlkube_nowhere'"):
        serve(built)


def test_bad_declared_datatype_is_refused(tmp_path: Path) -> None:
    source = (
        "class Model:\n"
        "    inputs = [{'name': 'x', 'datatype': 'FLOAT', 'shape': [-1, 2]}]\n"
        "    def predict(self, batch):\n"
        "        return batch['x']\n"
    )
    with pytest.raises(ModelLoadError, match=r"inputs\[0\]\.datatype must be one of .*FLOAT"):
        serve(_user_module(tmp_path, "mlkube_test_dtype", source))


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    built = models.BuiltModel(
        tmp_path / "absent", "python", None, np.zeros((1, 1)), entrypoint="m:Model"
    )
    spec = models.write_spec(built, folder=tmp_path)
    from mlkube.runtimes import load_runtime
    from mlkube.spec import load_spec

    with pytest.raises(ModelLoadError, match="the folder does not exist"):
        load_runtime(load_spec(spec))
