import numpy as np
import orjson
import pytest

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import Datatype, TensorSpec
from mlkube.serving import v1, v2

ONE_INPUT = (TensorSpec("x", Datatype.FP32, (-1, 3)),)
TWO_INPUTS = (TensorSpec("a", Datatype.FP32, (-1, 2)), TensorSpec("b", Datatype.INT64, (-1,)))
OUTPUTS = (TensorSpec("label", Datatype.INT64, (-1,)), TensorSpec("p", Datatype.FP32, (-1, 2)))


def body(value) -> bytes:
    return orjson.dumps(value)


def test_v1_rows_become_one_float32_array():
    batch, fmt = v1.parse_predict(body({"instances": [[1, 2, 3], [4.5, 5, 6]]}), ONE_INPUT)
    assert fmt == v1.ROW
    assert batch["x"].dtype == np.float32
    np.testing.assert_array_equal(batch["x"], [[1, 2, 3], [4.5, 5, 6]])


def test_v1_columnar_with_named_inputs():
    payload = {"inputs": {"a": [[1, 2], [3, 4]], "b": [7, 8]}}
    batch, fmt = v1.parse_predict(body(payload), TWO_INPUTS)
    assert fmt == v1.COLUMNAR
    assert batch["b"].dtype == np.int64
    assert batch["a"].shape == (2, 2)


def test_v1_instances_as_objects_for_several_inputs():
    payload = {"instances": [{"a": [1, 2], "b": 3}, {"a": [3, 4], "b": 5}]}
    batch, _ = v1.parse_predict(body(payload), TWO_INPUTS)
    np.testing.assert_array_equal(batch["b"], [3, 5])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"{nope", "not valid JSON", id="invalid-json"),
        pytest.param(b"[1, 2]", "JSON object", id="not-object"),
        pytest.param(b'{"instances": [[1, 2, NaN]]}', "not valid JSON", id="nan-literal"),
        pytest.param(b'{"instances": [[1, 2, Infinity]]}', "not valid JSON", id="inf-literal"),
        pytest.param(b'{"instances": [[1, 2, 1e400]]}', "infinity", id="overflow"),
        pytest.param(b'{"instances": []}', "non-empty", id="no-rows"),
        pytest.param(b'{"instances": [[1, 2]]}', "expected shape", id="too-few-features"),
        pytest.param(b'{"instances": [[1, 2, 3], [1, 2]]}', "same shape", id="ragged"),
        pytest.param(b'{"instances": [["a", "b", "c"]]}', "strings", id="strings"),
        pytest.param(b'{"instances": [[true, false, true]]}', "booleans", id="booleans"),
        pytest.param(
            b'{"instances": [[1, true, 3]]}', "numbers mixed with booleans", id="ints-and-bools"
        ),
        pytest.param(
            b'{"instances": [[1.5, 2, false]]}', "numbers mixed with booleans", id="floats-and-bool"
        ),
        pytest.param(
            b'{"instances": [[1, 2, 3]], "inputs": [[1, 2, 3]]}', "exactly one", id="both-formats"
        ),
        pytest.param(b'{"rows": [[1, 2, 3]]}', "unknown field", id="unknown-field"),
        pytest.param(b'{"instances": [[[1, 2, 3]]]}', "expected shape", id="too-deep"),
        pytest.param(b'{"instances": [1, 2, 3]}', "expected shape", id="too-flat"),
        pytest.param(
            b'{"signature_name": "other", "instances": [[1, 2, 3]]}',
            "signature_name",
            id="unknown-signature",
        ),
    ],
)
def test_v1_rejects_malformed_requests(payload, message):
    with pytest.raises(InvalidInputError, match=message):
        v1.parse_predict(payload, ONE_INPUT)


def test_v1_several_outputs_give_one_object_per_row():
    outputs = {"label": np.array([1, 0]), "p": np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)}
    decoded = orjson.loads(v1.encode_predict(outputs, v1.ROW))
    assert decoded["predictions"][0]["label"] == 1
    assert decoded["predictions"][1]["p"] == pytest.approx([0.8, 0.2])


def test_v1_one_output_gives_plain_rows():
    decoded = orjson.loads(v1.encode_predict({"y": np.array([[1.5], [2.5]])}, v1.ROW))
    assert decoded == {"predictions": [[1.5], [2.5]]}


def test_v2_flat_data_is_reshaped_and_cast():
    payload = {
        "id": "r1",
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}],
    }
    parsed = v2.parse_infer(body(payload), ONE_INPUT, OUTPUTS)
    assert parsed.request_id == "r1"
    assert parsed.inputs["x"].dtype == np.float32
    assert parsed.inputs["x"].shape == (2, 3)


def test_v2_nested_data_is_accepted():
    payload = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2, 3]]}]}
    assert v2.parse_infer(body(payload), ONE_INPUT, OUTPUTS).inputs["x"].shape == (1, 3)


def x_input(**overrides):
    tensor = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    tensor.update(overrides)
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        pytest.param({"inputs": []}, "non-empty", id="no-inputs"),
        pytest.param({"inputs": [1]}, "must be an object", id="input-not-object"),
        pytest.param(x_input(shape=[1, 4]), "needs 4 values", id="shape-vs-data"),
        pytest.param(x_input(shape=[3, 1], data=[1, 2, 3]), "expected shape", id="model-shape"),
        pytest.param(x_input(shape=[1, -3]), "non-negative", id="negative-dim"),
        pytest.param(x_input(shape="1x3"), "list of non-negative", id="shape-not-list"),
        pytest.param(x_input(datatype="FLOAT"), "unknown datatype", id="bad-datatype"),
        pytest.param(
            x_input(datatype="BYTES", data=["a", "b", "c"]), "does not fit", id="bytes-for-numbers"
        ),
        pytest.param(
            x_input(datatype="INT32", data=[1.5, 2, 3]), "fractions", id="fraction-as-int"
        ),
        pytest.param(
            x_input(datatype="INT8", data=[1000, 2, 3]), "out of range", id="int-overflow"
        ),
        pytest.param(x_input(data=["1", "2", "3"]), "strings", id="strings-as-floats"),
        pytest.param(x_input(data=[1, True, 3]), "mixed with booleans", id="number-and-bool"),
        pytest.param(
            x_input(datatype="BOOL", data=[1, True, False]),
            "mixed with booleans",
            id="bool-tensor-with-a-number",
        ),
        pytest.param(
            x_input(name="X"), r"unknown input 'X'; this model's inputs are 'x'", id="wrong-name"
        ),
        pytest.param(x_input(extra=1), "unknown field", id="unknown-tensor-field"),
        pytest.param(
            {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"}]},
            "missing 'data'",
            id="no-data",
        ),
        pytest.param(
            {**x_input(), "outputs": [{"name": "nope"}]}, "unknown output", id="unknown-output"
        ),
        pytest.param({**x_input(), "id": 5}, "'id' must be a string", id="id-not-string"),
        pytest.param({**x_input(), "priority": 1}, "unknown field", id="unknown-request-field"),
        pytest.param(
            {"inputs": [x_input()["inputs"][0], x_input()["inputs"][0]]},
            "appears twice|unknown input",
            id="duplicate-input",
        ),
    ],
)
def test_v2_rejects_malformed_requests(payload, message):
    with pytest.raises(InvalidInputError, match=message):
        v2.parse_infer(body(payload), ONE_INPUT, OUTPUTS)


def test_v2_missing_input_of_two_is_named():
    payload = {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    with pytest.raises(InvalidInputError, match=r"missing input\(s\) \['b'\]"):
        v2.parse_infer(body(payload), TWO_INPUTS, OUTPUTS)


def test_v2_response_selects_requested_outputs():
    payload = {**x_input(), "outputs": [{"name": "p"}]}
    request = v2.parse_infer(body(payload), ONE_INPUT, OUTPUTS)
    outputs = {"label": np.array([1]), "p": np.array([[0.25, 0.75]], np.float32)}
    decoded = orjson.loads(v2.encode_infer(outputs, model="m", version=3, request=request))
    assert decoded["model_version"] == "3"
    assert [o["name"] for o in decoded["outputs"]] == ["p"]
    assert decoded["outputs"][0] == {
        "name": "p",
        "datatype": "FP32",
        "shape": [1, 2],
        "data": [0.25, 0.75],
    }


def test_v2_values_are_checked_against_the_models_datatype_too():
    too_big = x_input(datatype="FP64", data=[1e300, 2, 3])
    with pytest.raises(InvalidInputError, match="too large for FP32"):
        v2.parse_infer(body(too_big), ONE_INPUT, OUTPUTS)
    fraction_for_int = {
        "inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [1.5]},
        ]
    }
    with pytest.raises(InvalidInputError, match="expected integers"):
        v2.parse_infer(body(fraction_for_int), TWO_INPUTS, OUTPUTS)


@pytest.mark.filterwarnings("error")
def test_finite_values_whose_sum_overflows_the_dtype_are_accepted():
    # Found by test_codecs_fuzz: the FP32 sum of two large finite values overflowed with a
    # RuntimeWarning (an error under pytest's warning filter) instead of being accepted.
    spec = (TensorSpec("x", Datatype.FP32, (-1,)),)
    values = [1.7014116824866205e38, 1.7014117838986683e38]
    batch, _ = v1.parse_predict(body({"instances": values}), spec)
    np.testing.assert_array_equal(batch["x"], np.asarray(values, np.float32))
