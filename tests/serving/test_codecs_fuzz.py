"""No JSON a client can send makes the protocol codecs raise anything but InvalidInputError."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mlkube.errors import InvalidInputError
from mlkube.runtimes.base import Datatype, TensorSpec
from mlkube.serving import v1, v2

INPUTS = (TensorSpec("x", Datatype.FP32, (-1, 3)), TensorSpec("n", Datatype.INT64, (-1,)))
ONE_INPUT = (TensorSpec("x", Datatype.FP32, (-1, 3)),)
BYTES_INPUT = (TensorSpec("s", Datatype.BYTES, (-1,)),)
OUTPUTS = (TensorSpec("y", Datatype.FP32, (-1,)),)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "x",
                    "n",
                    "s",
                    "name",
                    "shape",
                    "datatype",
                    "data",
                    "instances",
                    "inputs",
                    "b64",
                    "id",
                ]
            ),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)
v2_tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "n", "s", "other"]),
        "shape": st.lists(st.integers(min_value=-1, max_value=4), max_size=3),
        "datatype": st.sampled_from([d.value for d in Datatype] + ["FLOAT"]),
        "data": json_values,
    }
)


def only_invalid_input(call) -> None:
    with contextlib.suppress(InvalidInputError):
        call()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.fixed_dictionaries({"instances": json_values}),
        st.fixed_dictionaries({"inputs": json_values}),
        json_values,
    )
)
def test_v1_parsing_only_ever_refuses_with_invalid_input(payload):
    body = json.dumps(payload).encode()
    for specs in (INPUTS, ONE_INPUT, BYTES_INPUT):
        only_invalid_input(lambda specs=specs: v1.parse_predict(body, specs))


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.fixed_dictionaries({"inputs": st.lists(v2_tensor, max_size=3)}),
        st.fixed_dictionaries({"inputs": json_values, "outputs": json_values}),
        json_values,
    )
)
def test_v2_parsing_only_ever_refuses_with_invalid_input(payload):
    body = json.dumps(payload).encode()
    for specs in (INPUTS, ONE_INPUT, BYTES_INPUT):
        only_invalid_input(lambda specs=specs: v2.parse_infer(body, specs, OUTPUTS))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_ever_refuse_with_invalid_input(body):
    only_invalid_input(lambda: v1.parse_predict(body, ONE_INPUT))
    only_invalid_input(lambda: v2.parse_infer(body, ONE_INPUT, OUTPUTS))
