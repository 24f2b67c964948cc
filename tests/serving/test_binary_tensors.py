"""The v2 binary tensor extension: parsing and encoding, and a real replica answering it
(https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md)."""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import Datatype, TensorSpec
from mlkube.serving import binary_tensors, v2
from mlkube.testing.server import running_replica

SPECS = (TensorSpec("input", Datatype.FP32, (-1, 4)),)
OUTPUTS = (
    TensorSpec("label", Datatype.INT64, (-1,)),
    TensorSpec("probabilities", Datatype.FP32, (-1, 3)),
)


def binary_body(
    rows: np.ndarray, *, datatype: str = "FP32", extra: dict | None = None, size: int | None = None
) -> tuple[bytes, str]:
    raw = rows.astype(rows.dtype.newbyteorder("<")).tobytes()
    header = {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw) if size is None else size},
            }
        ],
        **(extra or {}),
    }
    text = json.dumps(header).encode()
    return text + raw, str(len(text))


def test_binary_inputs_give_the_same_arrays_as_json():
    rows = np.arange(8, dtype=np.float32).reshape(2, 4) / 3
    body, length = binary_body(rows)
    parsed = binary_tensors.parse_infer(body, length, SPECS, OUTPUTS)
    as_json = v2.parse_infer(
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input",
                        "shape": [2, 4],
                        "datatype": "FP32",
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
        ).encode(),
        SPECS,
        OUTPUTS,
    )
    np.testing.assert_array_equal(parsed.inputs["input"], as_json.inputs["input"])
    assert parsed.inputs["input"].dtype == np.float32
    assert parsed.binary_outputs == frozenset()


def test_fp64_binary_input_is_cast_to_the_models_datatype_with_the_same_checks():
    rows = np.array([[1.0, 2.0, 3.0, 1e300]])
    body, length = binary_body(rows, datatype="FP64")
    with pytest.raises(InvalidInputError, match="too large for FP32"):
        binary_tensors.parse_infer(body, length, SPECS, OUTPUTS)
    body, length = binary_body(np.array([[1.0, 2.0, 3.0, np.nan]]), datatype="FP64")
    with pytest.raises(InvalidInputError, match="NaN"):
        binary_tensors.parse_infer(body, length, SPECS, OUTPUTS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"length": "abc"}, "must be a non-negative integer"),
        ({"length": "-4"}, "must be a non-negative integer"),
        ({"length": "100000"}, "but the body has"),
        ({"size": 12}, "add up to 12"),
        ({"size": 64}, "runs past the end"),
        ({"size": -1}, "binary_data_size must be a non-negative integer"),
        ({"trailing": b"xx"}, "add up to 32"),
        ({"datatype": "FP64"}, "shape [2, 4] needs 8 values, 'data' has 4"),
        ({"datatype": "INT64", "size": 30}, "not a whole number of INT64"),
        ({"datatype": "FP99"}, "unknown datatype"),
        ({"both": True}, "both 'data' and binary_data_size"),
        ({"json": b"{not json"}, "not valid JSON"),
        ({"binary_output": "yes"}, "binary_data_output must be true or false"),
    ],
)
def test_every_mistake_is_an_invalid_input_error(change, message):
    rows = np.zeros((2, 4), dtype=np.float32)
    body, length = binary_body(
        rows, datatype=change.get("datatype", "FP32"), size=change.get("size")
    )
    if "both" in change:
        header = json.loads(body[: int(length)])
        header["inputs"][0]["data"] = [0] * 8
        text = json.dumps(header).encode()
        body, length = text + body[int(length) :], str(len(text))
    if "binary_output" in change:
        header = json.loads(body[: int(length)])
        header["parameters"] = {"binary_data_output": change["binary_output"]}
        text = json.dumps(header).encode()
        body, length = text + body[int(length) :], str(len(text))
    if "json" in change:
        body, length = change["json"] + body[int(length) :], str(len(change["json"]))
    body += change.get("trailing", b"")
    length = change.get("length", length)
    with pytest.raises(InvalidInputError) as caught:
        binary_tensors.parse_infer(body, length, SPECS, OUTPUTS)
    assert message in str(caught.value)


def test_bytes_elements_are_length_prefixed_both_ways():
    values = np.array([b"ab", b"", "h\u00e9".encode()], dtype=object)
    raw = binary_tensors.encode_values(values)
    assert (
        raw
        == struct.pack("<I", 2)
        + b"ab"
        + struct.pack("<I", 0)
        + struct.pack("<I", 3)
        + "h\u00e9".encode()
    )
    assert list(binary_tensors.decode_values(raw, Datatype.BYTES, "x")) == list(values)
    with pytest.raises(InvalidInputError, match="inside a length prefix"):
        binary_tensors.decode_values(raw[:-6], Datatype.BYTES, "x")
    with pytest.raises(InvalidInputError, match="runs past"):
        binary_tensors.decode_values(raw[:-1], Datatype.BYTES, "x")


def test_binary_outputs_are_chosen_per_output_or_all():
    rows = np.zeros((1, 4), dtype=np.float32)
    body, length = binary_body(rows, extra={"parameters": {"binary_data_output": True}})
    assert binary_tensors.parse_infer(body, length, SPECS, OUTPUTS).binary_outputs == {
        "label",
        "probabilities",
    }
    body, length = binary_body(
        rows,
        extra={
            "outputs": [
                {"name": "label"},
                {"name": "probabilities", "parameters": {"binary_data": True}},
            ]
        },
    )
    parsed = binary_tensors.parse_infer(body, length, SPECS, OUTPUTS)
    assert parsed.binary_outputs == {"probabilities"}
    outputs = {
        "label": np.array([2]),
        "probabilities": np.array([[0.1, 0.2, 0.7]], dtype=np.float32),
    }
    answer, header_length = binary_tensors.encode_infer(
        outputs, model="m", version=1, request=parsed
    )
    assert header_length is not None
    header = json.loads(answer[:header_length])
    assert header["outputs"][0] == {"name": "label", "datatype": "INT64", "shape": [1], "data": [2]}
    assert header["outputs"][1]["parameters"] == {"binary_data_size": 12}
    assert "data" not in header["outputs"][1]
    np.testing.assert_array_equal(
        np.frombuffer(answer[header_length:], "<f4").reshape(1, 3), outputs["probabilities"]
    )


@pytest.mark.integration
def test_a_replica_answers_binary_requests_as_it_answers_json(served_models):
    served = served_models["onnx"]
    deployment = served.deployment(**{"server.maxRequestSize": "4Ki"})
    rows = served.rows.astype(np.float32)
    name = deployment.model_name
    with running_replica(deployment) as replica, httpx.Client(base_url=replica.url) as client:
        assert "binary_tensor_data" in client.get("/v2").json()["extensions"]
        as_json = client.post(
            f"/v2/models/{name}/infer",
            json={
                "inputs": [
                    {
                        "name": "input",
                        "shape": list(rows.shape),
                        "datatype": "FP32",
                        "data": rows.ravel().tolist(),
                    }
                ]
            },
        )
        assert as_json.status_code == 200
        body, length = binary_body(rows, extra={"parameters": {"binary_data_output": True}})
        answer = client.post(
            f"/v2/models/{name}/infer",
            content=body,
            headers={"Inference-Header-Content-Length": length},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"
        header_length = int(answer.headers["inference-header-content-length"])
        header = json.loads(answer.content[:header_length])
        offset = header_length
        for output, expected in zip(header["outputs"], as_json.json()["outputs"], strict=True):
            size = output["parameters"]["binary_data_size"]
            dtype = {"INT64": "<i8", "FP32": "<f4"}[output["datatype"]]
            values = np.frombuffer(answer.content[offset : offset + size], dtype)
            offset += size
            np.testing.assert_array_equal(values, np.array(expected["data"]).astype(dtype))
            assert output["shape"] == expected["shape"]
        assert offset == len(answer.content)
        # Mistakes: 400 in the v2 error shape; the body limit holds for binary bodies too.
        bad = client.post(
            f"/v2/models/{name}/infer",
            content=body,
            headers={"Inference-Header-Content-Length": "x"},
        )
        assert bad.status_code == 400
        assert set(bad.json()) == {"error"}
        big, big_length = binary_body(np.zeros((400, 4), np.float32))
        too_big = client.post(
            f"/v2/models/{name}/infer",
            content=big,
            headers={"Inference-Header-Content-Length": big_length},
        )
        assert too_big.status_code == 413
