"""v1's row-format answer is written by cutting each output's JSON into rows (``_rows_json``);
it must be byte for byte what building one object per row and serializing that gives."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlkube.runtimes.base import Batch
from mlkube.serving import v1

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.uint64, np.bool_]


def generic(outputs: Batch) -> bytes:
    """What encode_predict wrote before the spliced path: one dict per row."""
    return orjson.dumps({"predictions": v1._rows_of(outputs)}, option=orjson.OPT_SERIALIZE_NUMPY)


@st.composite
def output_sets(draw: st.DrawFn) -> Batch:
    rows = draw(st.integers(1, 6))
    count = draw(st.integers(2, 3))
    outputs: Batch = {}
    for index in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        shape = (rows,) if draw(st.booleans()) else (rows, draw(st.integers(0, 3)))
        outputs[draw(st.sampled_from(["label", "probabilities", 'é"x', f"o{index}"]))] = draw(
            hnp.arrays(dtype, shape)
        )
    return outputs


@settings(max_examples=400, deadline=None)
@given(output_sets())
def test_spliced_rows_equal_one_object_per_row(outputs: Batch) -> None:
    spliced = v1._rows_json(outputs)
    if len(outputs) > 1:
        assert spliced is not None
        assert spliced == generic(outputs)
        assert v1.encode_predict(outputs, v1.ROW) == spliced


def test_outputs_the_splice_does_not_cover_take_the_generic_path() -> None:
    labels = np.array([b"a,b", b"c"], dtype=object)
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    strings: Batch = {"label": labels, "probabilities": probabilities}
    assert v1._rows_json(strings) is None
    assert orjson.loads(v1.encode_predict(strings, v1.ROW))["predictions"][0]["label"] == "a,b"
    cube: Batch = {"a": np.zeros((2, 1, 1)), "b": np.zeros(2)}
    assert v1._rows_json(cube) is None
    ragged: Batch = {"a": np.zeros(2), "b": np.zeros(3)}
    assert v1._rows_json(ragged) is None
    empty: Batch = {"a": np.zeros(0), "b": np.zeros((0, 2))}
    assert v1._rows_json(empty) is None
    assert v1.encode_predict(empty, v1.ROW) == b'{"predictions":[]}'


def test_a_classifiers_answer_reads_as_before() -> None:
    outputs: Batch = {
        "label": np.array([1, 0]),
        "probabilities": np.array([[0.2061063, 0.7938937], [0.9, 0.1]], dtype=np.float32),
    }
    assert v1.encode_predict(outputs, v1.ROW) == (
        b'{"predictions":[{"label":1,"probabilities":[0.2061063,0.7938937]},'
        b'{"label":0,"probabilities":[0.9,0.1]}]}'
    )
