from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mlkube.errors import InvalidInputError, MlkubeError
from mlkube.runtimes import Datatype, TensorSpec, example_batch
from mlkube.runtimes.onnx_runtime import OnnxRuntime
from mlkube.testing import models
from mlkube.testing.checks import assert_batch_invariant, serve


def _session(path: Path) -> ort.InferenceSession:
    """The library's own session, with the runtime's thread counts (sums depend on them)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_predictions_equal_onnxruntime_in_process(hgb_onnx: models.BuiltModel) -> None:
    runtime = serve(hgb_onnx)
    rows = hgb_onnx.rows[:64]
    label, proba = _session(hgb_onnx.path).run(None, {"input": rows.astype(np.float32)})
    served = runtime.predict({"input": rows})
    np.testing.assert_array_equal(served["label"], label)
    np.testing.assert_array_equal(served["probabilities"], proba)
    np.testing.assert_array_equal(served["label"], hgb_onnx.model.predict(rows))


def test_metadata_comes_from_the_session(hgb_onnx: models.BuiltModel) -> None:
    runtime = serve(hgb_onnx)
    assert runtime.platform == "onnxruntime"
    assert runtime.inputs == (TensorSpec("input", Datatype.FP32, (-1, 20)),)
    assert runtime.outputs == (
        TensorSpec("label", Datatype.INT64, (-1,)),
        TensorSpec("probabilities", Datatype.FP32, (-1, 2)),
    )
    assert runtime.supports_batching


def test_warm_up_batch_predicts(hgb_onnx: models.BuiltModel) -> None:
    runtime = serve(hgb_onnx)
    out = runtime.predict(example_batch(runtime.inputs))
    assert list(out) == [spec.name for spec in runtime.outputs]
    assert out["probabilities"].shape == (1, 2)


def test_merged_rows_equal_row_by_row(hgb_onnx: models.BuiltModel) -> None:
    assert_batch_invariant(serve(hgb_onnx), hgb_onnx.rows[:32].astype(np.float32))


def test_input_of_another_float_dtype_is_converted(hgb_onnx: models.BuiltModel) -> None:
    runtime = serve(hgb_onnx)
    rows = hgb_onnx.rows[:8]
    as_64 = runtime.predict({"input": rows})["probabilities"]
    as_32 = runtime.predict({"input": rows.astype(np.float32)})["probabilities"]
    np.testing.assert_array_equal(as_64, as_32)


def test_zipmap_output_becomes_an_array(tmp_path: Path, iris: models.Trained) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    path = tmp_path / "zipmap.onnx"
    onx = to_onnx(iris.model, initial_types=[("input", FloatTensorType([None, 4]))])
    path.write_bytes(onx.SerializeToString())
    runtime = OnnxRuntime(str(path))
    zipmap = next(s for s in runtime.outputs if s.name == "output_probability")
    assert zipmap == TensorSpec("output_probability", Datatype.FP32, (-1, -1))
    served = runtime.predict({"input": iris.rows[:10]})["output_probability"]
    maps = _session(path).run(["output_probability"], {"input": iris.rows[:10].astype(np.float32)})
    expected = np.array([[row[k] for k in sorted(row)] for row in maps[0]], dtype=np.float32)
    np.testing.assert_array_equal(served, expected)


def _write_graph(path: Path, batch: int | str, output_type: int = TensorProto.FLOAT) -> Path:
    """A tiny graph: y = x + 1 (x: FLOAT [batch, 3])."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])
    y = helper.make_tensor_value_info("y", output_type, [batch, 3])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [helper.make_node("Add", ["x", "one"], ["y"])]
    graph = helper.make_graph(nodes, "add_one", [x], [y], initializer=[one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_fixed_batch_of_one_is_called_row_by_row(tmp_path: Path) -> None:
    runtime = OnnxRuntime(str(_write_graph(tmp_path / "fixed.onnx", 1)))
    assert not runtime.supports_batching
    assert runtime.inputs == (TensorSpec("x", Datatype.FP32, (-1, 3)),)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(runtime.predict({"x": rows})["y"], rows + 1)


def test_symbolic_batch_axis_supports_batching(tmp_path: Path) -> None:
    runtime = OnnxRuntime(str(_write_graph(tmp_path / "dynamic.onnx", "N")))
    assert runtime.supports_batching
    rows = np.ones((5, 3), dtype=np.float32)
    np.testing.assert_array_equal(runtime.predict({"x": rows})["y"], rows + 1)


def test_threads_are_overridable(
    monkeypatch: pytest.MonkeyPatch, hgb_onnx: models.BuiltModel
) -> None:
    monkeypatch.setenv("MLKUBE_ORT_THREADS", "2")
    runtime = OnnxRuntime(str(hgb_onnx.path))
    assert runtime.predict({"input": hgb_onnx.rows[:2]})["label"].shape == (2,)


@pytest.mark.parametrize("value", ["zero", "0", "-3"])
def test_bad_thread_count_is_refused(
    monkeypatch: pytest.MonkeyPatch, hgb_onnx: models.BuiltModel, value: str
) -> None:
    monkeypatch.setenv("MLKUBE_ORT_THREADS", value)
    with pytest.raises(MlkubeError, match=f"MLKUBE_ORT_THREADS must be a whole number.*'{value}'"):
        OnnxRuntime(str(hgb_onnx.path))


def test_a_shape_the_kernel_cannot_use_is_the_callers_mistake(tmp_path: Path) -> None:
    # x: FLOAT [N, K] with K symbolic, so only MatMul finds out that K must be 4.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "K"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    weights = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], [1.0] * 12)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul", [x], [y], [weights]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "matmul.onnx"))
    runtime = OnnxRuntime(str(tmp_path / "matmul.onnx"))
    assert runtime.predict({"x": np.ones((2, 4), np.float32)})["y"].shape == (2, 3)
    with pytest.raises(InvalidInputError, match=r"the model refused the input: .*dimension"):
        runtime.predict({"x": np.ones((2, 5), np.float32)})
