"""The fast decode path gives exactly what the generic codecs give: the same arrays (dtype,
shape, bytes) or the same error (type and message), for valid and invalid bodies alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkube.runtimes.base import Batch, Datatype, TensorSpec
from mlkube.serving import binary_tensors, fast_decode, v1

SPECS = [
    (TensorSpec("x", Datatype.FP32, (-1, 3)),),
    (TensorSpec("x", Datatype.FP64, (-1, 3)),),
    (TensorSpec("x", Datatype.FP16, (-1, -1)),),
    (TensorSpec("x", Datatype.FP32, (-1,)),),
    (TensorSpec("x", Datatype.FP32, (-1, 2, 2)),),
    (TensorSpec("x", Datatype.INT64, (-1, 3)),),
    (TensorSpec("x", Datatype.FP32, (-1, 3)), TensorSpec("n", Datatype.FP32, (-1,))),
]
OUTPUTS = (TensorSpec("y", Datatype.FP32, (-1,)),)

ordinary_numbers = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
odd_values = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=3),  # unicode included
    st.integers(min_value=-(2**80), max_value=2**80),  # past int64 and 2**53
    st.floats(allow_nan=False, allow_infinity=False),  # up to 1.8e308: past FP32 and FP16
    st.floats(min_value=1e15, max_value=1e20),
    st.just({}),
    st.just({"b64": "AA=="}),
    st.lists(ordinary_numbers, max_size=2),  # a level too deep
)
values = st.one_of(ordinary_numbers, ordinary_numbers, ordinary_numbers, odd_values)


@st.composite
def rows(draw: st.DrawFn) -> list[Any]:
    """Mostly rectangular rows of numbers, sometimes ragged, empty or holding odd values."""
    count = draw(st.integers(min_value=0, max_value=4))
    width = draw(st.sampled_from([0, 1, 3, 3, 3, 4]))
    table: list[list[Any]] = [[draw(values) for _ in range(width)] for _ in range(count)]
    ragged: bool = draw(st.booleans())
    if table and ragged:
        table[draw(st.integers(0, len(table) - 1))].append(draw(values))  # ragged
    if draw(st.integers(0, 9)) == 0:
        return [draw(values) for _ in range(count)]  # flat
    if draw(st.integers(0, 9)) == 0:
        return [[row[:2], row[2:4]] for row in table]  # nested deeper
    return table


def ordinary_rows(count: int, width: int) -> st.SearchStrategy[list[list[Any]]]:
    row = st.lists(ordinary_numbers, min_size=width, max_size=width)
    return st.lists(row, min_size=count, max_size=count)


def v1_body(draw: st.DrawFn) -> bytes:
    payload: dict[str, Any] = {draw(st.sampled_from(["instances", "instances", "inputs"])): None}
    key = next(iter(payload))
    payload[key] = draw(st.one_of(rows(), values))
    if draw(st.integers(0, 9)) == 0:
        payload["signature_name"] = draw(st.sampled_from(["serving_default", "other"]))
    return json.dumps(payload).encode()


def v2_body(draw: st.DrawFn) -> bytes:
    table = draw(rows())
    flat = draw(st.booleans())
    data: Any = [v for row in table for v in (row if isinstance(row, list) else [row])]
    data = data if flat else table
    count = len(table)
    shape = draw(
        st.one_of(
            st.just([count, 3]),
            st.just([count * 3]),
            st.just([count, 2, 2]),
            st.lists(st.one_of(st.integers(-1, 5), st.booleans(), st.text(max_size=1)), max_size=3),
        )
    )
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["x", "x", "x", "n", 'é"x'])),
        "shape": shape,
        "datatype": draw(st.sampled_from(["FP32", "FP32", "FP64", "FP16", "INT64", "BOOL"])),
        "data": draw(st.one_of(st.just(data), st.just(data), values)),
    }
    if draw(st.integers(0, 9)) == 0:
        del tensor[draw(st.sampled_from(sorted(tensor)))]
    if draw(st.integers(0, 9)) == 0:
        tensor["parameters"] = {}
    if draw(st.booleans()):  # data first: its literals then sit before the last quote
        tensor = {key: tensor[key] for key in sorted(tensor, key=lambda key: key != "data")}
    payload: dict[str, Any] = {"inputs": [tensor]}
    if draw(st.integers(0, 9)) == 0:
        payload["id"] = draw(st.text(max_size=3))
    if draw(st.integers(0, 9)) == 0:
        payload["inputs"].append(dict(tensor, name="n"))
    return json.dumps(payload).encode()


@st.composite
def bodies(draw: st.DrawFn, protocol: str) -> bytes:
    body = v1_body(draw) if protocol == "v1" else v2_body(draw)
    mangle = draw(st.integers(0, 19))
    if mangle == 0:  # literals JSON does not allow, or no longer JSON at all
        body = body.replace(b"1", draw(st.sampled_from([b"NaN", b"Infinity", b"1e400", b"tru"])))
    elif mangle == 1:
        body = body[: draw(st.integers(0, len(body)))]
    elif mangle == 2:  # where simdjson and JSON (orjson) might part: a byte order mark,
        body = draw(st.sampled_from([b"\xef\xbb\xbf", b" \n\t", b"\r"])) + body  # space
    elif mangle == 3:  # the key twice (JSON keeps the last, a lookup may find the first)
        body = body[:-1] + b"," + body[1:]
    elif mangle == 4:  # numbers written otherwise: exponents, signs, leading zeros
        old = draw(st.sampled_from([b"1", b"0", b".", b", "]))
        new = draw(st.sampled_from([b"1e0", b"-0", b"01", b"1E+2", b"0.", b",", b" , "]))
        body = body.replace(old, new)
    return body


def outcome(call: Callable[[], Batch]) -> tuple[Any, ...]:
    try:
        batch = call()
    except Exception as error:  # the type and the words must match, whatever they are
        return ("error", type(error), str(error))
    return (
        "ok",
        tuple((name, a.dtype.str, a.shape, a.tobytes()) for name, a in batch.items()),
    )


def same_v1(body: bytes, specs: tuple[TensorSpec, ...]) -> None:
    fast = outcome(lambda: _with_format(fast_decode.decode_predict(body, specs)))
    generic = outcome(lambda: _with_format(v1.parse_predict(body, specs)))
    assert fast == generic, body


def _with_format(result: tuple[Batch, str]) -> Batch:
    batch, request_format = result
    assert request_format in (v1.ROW, v1.COLUMNAR)
    return {f"{name}/{request_format}": array for name, array in batch.items()}


def same_v2(body: bytes, specs: tuple[TensorSpec, ...]) -> None:
    def fast() -> Batch:
        request = fast_decode.decode_infer(body, None, specs, OUTPUTS)
        return _with_request(request)

    def generic() -> Batch:
        return _with_request(binary_tensors.parse_infer(body, None, specs, OUTPUTS))

    assert outcome(fast) == outcome(generic), body


def _with_request(request: Any) -> Batch:
    extra = (request.request_id, request.output_names, request.binary_outputs)
    return {f"{name}/{extra}": array for name, array in request.inputs.items()}


@settings(max_examples=600, deadline=None)
@given(bodies("v1"))
def test_v1_fast_path_matches_the_generic_path(body: bytes) -> None:
    for specs in SPECS:
        same_v1(body, specs)


@settings(max_examples=600, deadline=None)
@given(bodies("v2"))
def test_v2_fast_path_matches_the_generic_path(body: bytes) -> None:
    for specs in SPECS:
        same_v2(body, specs)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40).flatmap(lambda count: ordinary_rows(count, 3)))
def test_ordinary_bodies_take_the_fast_path_and_match(table: list[list[Any]]) -> None:
    """Were the fast path never taken, the tests above would prove nothing."""
    specs = SPECS[0]
    v1_body = json.dumps({"instances": table}).encode()
    assert fast_decode.fast_predict(v1_body, specs) is not None
    same_v1(v1_body, specs)
    flat = [value for row in table for value in row]
    tensor = {"name": "x", "shape": [len(table), 3], "datatype": "FP32", "data": flat}
    v2_body = json.dumps({"inputs": [tensor]}).encode()
    assert fast_decode.fast_infer(v2_body, specs) is not None
    same_v2(v2_body, specs)


def test_refusals_keep_the_generic_words() -> None:
    specs = SPECS[0]
    cases = {
        b'{"instances": [[1, 2, true]]}': "found numbers mixed with booleans",
        b'{"instances": [[1, 2], [3, 4, 5]]}': "rows must all have the same shape",
        b'{"instances": [[1, 2, 1e39]]}': "values too large for FP32",
        b'{"instances": [[1, 2, "3"]]}': "found strings",
        b'{"instances": [[1, 2, NaN]]}': "not valid JSON",
        b'{"instances": []}': "non-empty list of rows",
    }
    for body, words in cases.items():

        def decode(body: bytes = body) -> Batch:
            return fast_decode.decode_predict(body, specs)[0]

        fast = outcome(decode)
        assert fast[0] == "error" and words in fast[2], (body, fast)
        same_v1(body, specs)


def test_binary_tensor_bodies_take_the_generic_path() -> None:
    specs = SPECS[0]
    values = np.arange(6, dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": values.nbytes},
                }
            ]
        }
    ).encode()
    body = header + values.tobytes()
    request = fast_decode.decode_infer(body, str(len(header)), specs, OUTPUTS)
    assert request.inputs["x"].tolist() == values.reshape(2, 3).tolist()


def test_integers_past_2_to_the_53_round_as_the_generic_path_rounds() -> None:
    """2**60 + 2**36 + 1 rounds up to FP32 from int64 but, through float64 first, lands on
    the tie and rounds down: numpy's one-step ``np.array(rows, dtype=float32)`` differs
    from the generic path here (the first fast path's bug, found by this test)."""
    specs = SPECS[0]
    for number in (2**60 + 2**36 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 2**53 + 1):
        body = json.dumps({"instances": [[1, 2, number]]}).encode()
        same_v1(body, specs)


def test_v2_literals_and_strings_anywhere_keep_the_generic_words() -> None:
    specs = SPECS[0]
    for odd in ("true", "false", "null", '"1"', "[1]", "{}"):
        for data_first in (True, False):
            data = f'"data": [1, 2, {odd}]'
            rest = '"name": "x", "shape": [1, 3], "datatype": "FP32"'
            fields = f"{data}, {rest}" if data_first else f"{rest}, {data}"
            body = ('{"inputs": [{' + fields + "}]}").encode()
            same_v2(body, specs)
            assert fast_decode.fast_infer(body, specs) is None, body


def test_tables_convert_bit_for_bit_as_the_generic_path_at_the_edges() -> None:
    """The table conversion (``np.fromiter`` through float64) against ``np.asarray``: ints
    around 2**53 (float64 rounds them; an all-int table goes through int64), ints past
    int64, negative zero, mixed ints and floats, values past FP32."""
    edges: list[list[list[Any]]] = [
        [[2**53, 2**53 + 1, 3]],
        [[2**53 - 1, -(2**53), 0]],
        [[2**63 + 5, 1, 2]],
        [[-0.0, 0, -0]],
        [[1, 2.5, 16777217]],
        [[16777217, 16777219, 3]],
        [[3.4e38, 1, 2], [3.5e38, 1, 2]],
        [[1e-45, 1e-39, -1e-320]],
    ]
    for table in edges:
        body = json.dumps({"instances": table}).encode()
        for specs in SPECS:
            same_v1(body, specs)
        tensor = {"name": "x", "shape": [len(table), 3], "datatype": "FP32", "data": table}
        same_v2(json.dumps({"inputs": [tensor]}).encode(), SPECS[0])


def test_an_empty_v2_data_list_gets_the_generic_paths_error() -> None:
    # Found by the fuzz test above: the fast path looked at data[0] of an empty list.
    for datatype, shape in (("FP16", [1, 0]), ("FP32", [0, 3]), ("FP64", [0])):
        tensor = {"name": "x", "shape": shape, "datatype": datatype, "data": []}
        body = json.dumps({"inputs": [tensor]}).encode()
        for specs in SPECS:
            same_v2(body, specs)


def test_ordinary_bodies_need_no_python_float_per_number(monkeypatch: Any) -> None:
    """simdjson reads them (orjson, the second way, is never asked), as the generic path."""

    def refuse(body: bytes) -> Any:
        raise AssertionError("orjson was asked")

    monkeypatch.setattr(fast_decode, "_loads", refuse)
    table = [[1.5, -2, 3e-3], [0.25, 4, -0.0]]
    for specs in (SPECS[0], SPECS[1]):
        body = json.dumps({"instances": table}).encode()
        assert fast_decode.fast_predict(body, specs) is not None
        same_v1(body, specs)
        tensor = {"name": "x", "shape": [2, 3], "datatype": specs[0].datatype.value}
        body = json.dumps(
            {"inputs": [dict(tensor, data=[value for row in table for value in row])]}
        ).encode()
        assert fast_decode.fast_infer(body, specs) is not None
        same_v2(body, specs)
    flat = (TensorSpec("x", Datatype.FP32, (-1,)),)
    body = b'{"instances": [1, 2.5, -3]}'
    assert fast_decode.fast_predict(body, flat) is not None
    same_v1(body, flat)


def test_what_simdjson_reads_unlike_json_keeps_the_generic_words() -> None:
    """Found by reading simdjson: it skips a byte order mark, finds the first of two equal
    keys, and ``as_buffer`` flattens arrays at any depth. Each case here, read that way,
    would give an answer where the generic path refuses or answers otherwise."""
    pair = (TensorSpec("x", Datatype.FP32, (-1, 2)),)
    v1_cases = [
        b'\xef\xbb\xbf{"instances": [[1, 2], [3, 4]]}',
        b'{"instances": [[1, 2], [3, 4]], "instances": [[5, 6]]}',
        b'{"instances": [[1, [2]], [3, 4]]}',  # as many numbers as a 2x2 table
        b'{"instances": [[1, []], [3, 4, 5]]}',
        b'{"instances": [[[1, 2]], [[3, 4]]]}',
        b'{"instances": [1, [2]]}',
    ]
    for body in v1_cases:
        for specs in (pair, SPECS[3]):
            same_v1(body, specs)
    flat = SPECS[3]
    v2_cases = [
        b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [[1], [2]]}]}',
        b'{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [[1, 2], [], 3]}]}',
        b'{"inputs": [{"name": "\\u0078", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}',
        b'\xef\xbb\xbf{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
        b'{"inputs": [{"name": "x", "shape": [2], "datatype": "BOOL", "data": [1, 0]}]}',
        b'{"inputs": [{"name": "n", "shape": [2], "datatype": "FP32", "data": [1, 0]}]}',
        b'{"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [1, 2.5]}]}',
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "data": [2]}]}',
    ]
    for body in v2_cases:
        same_v2(body, flat)
    ordinary = (
        b'{"inputs": [{"name": "x", "shape": %b, "datatype": "%b", "data": [1, 2, 3e4, 7e4]}]}'
    )
    half = (TensorSpec("x", Datatype.FP16, (-1,)),)
    for shape in (b"[4]", b"[2, 2]", b"[1, 4]"):  # fits the table, the flat input, neither
        for specs in (SPECS[0], flat, half):
            same_v2(ordinary % (shape, specs[0].datatype.value.encode()), specs)
    bracketed = (TensorSpec("x[0]", Datatype.FP32, (-1,)),)
    for name in (b"x[0]", b"x\\u005b0]"):  # the bracket written as is, or escaped
        for data in (b"[1, 2]", b"[[1], 2]"):
            body = b'{"inputs": [{"name": "%b", "shape": [2], "datatype": "FP32", "data": %b}]}'
            same_v2(body % (name, data), bracketed)
