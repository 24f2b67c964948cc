"""Micro-benchmark: request bytes → model input array, today's codecs against the fast path.

    python bench/parse.py [--repeats 7] [--seconds 0.05]

For v1 ``{"instances": rows}`` and v2 ``{"inputs": [{..., "data": flat}]}`` bodies of 1, 32
and 256 rows × 20 float features (an FP32 input), each arm decodes the same body in the same
process; arms take turns within every repeat and the fastest repeat counts, so load from
other processes hits them alike. Arms:

- ``generic``: today's path (``v1.parse_predict``, ``binary_tensors.parse_infer``);
- ``fast``: what the server now calls (``fast_decode.decode_predict`` / ``decode_infer``):
  simdjson copies the numbers straight into a float64 buffer;
- ``orjson lists``: the fast path's second way (orjson, then its list-to-array conversion),
  what the server did before simdjson and still does for what simdjson declines;
- ``asarray+astype``: orjson, then numpy's two steps, no checks (an alternative measured);
- ``fromstring``: no orjson for the numbers, numpy parses the bracket-stripped text (an
  alternative measured; it cannot word errors as today does);
- ``orjson only``, ``simdjson only``: the parse alone, the floor for each parser.

Ratios are against ``generic`` in the same run (>1: faster). Writes bench/results/parse.json
and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import simdjson

from mlkube.runtimes.base import Datatype, TensorSpec
from mlkube.serving import binary_tensors, fast_decode, v1

ROOT = Path(__file__).resolve().parent.parent
FEATURES = 20
SPECS = (TensorSpec("x", Datatype.FP32, (-1, FEATURES)),)
OUTPUTS = (TensorSpec("y", Datatype.FP32, (-1,)),)


def bodies(rows: int) -> dict[str, bytes]:
    table = np.random.default_rng(rows).normal(size=(rows, FEATURES)).round(6).tolist()
    tensor = {
        "name": "x",
        "shape": [rows, FEATURES],
        "datatype": "FP32",
        "data": [value for row in table for value in row],
    }
    return {
        "v1": orjson.dumps({"instances": table}),
        "v2": orjson.dumps({"inputs": [tensor]}),
    }


def arms(protocol: str, body: bytes) -> dict[str, Callable[[], Any]]:
    if protocol == "v1":
        numbers = body[body.index(b"[") :]

        def generic() -> Any:
            return v1.parse_predict(body, SPECS)

        def fast() -> Any:
            return fast_decode.decode_predict(body, SPECS)

        def values() -> Any:
            return orjson.loads(body)["instances"]

    else:
        numbers = body[body.index(b'"data":') + 7 :]

        def generic() -> Any:
            return binary_tensors.parse_infer(body, None, SPECS, OUTPUTS)

        def fast() -> Any:
            return fast_decode.decode_infer(body, None, SPECS, OUTPUTS)

        def values() -> Any:
            return orjson.loads(body)["inputs"][0]["data"]

    return {"generic": generic, "fast": fast, **_alternatives(body, numbers, values)}


def _alternatives(
    body: bytes, numbers: bytes, values: Callable[[], Any]
) -> dict[str, Callable[[], Any]]:
    """The arms measured beside the server's: ``values`` gives the body's numbers as lists,
    ``numbers`` is the body from its first number's bracket on."""

    def orjson_lists() -> Any:
        array = fast_decode._floats(values(), Datatype.FP32)
        assert array is not None
        return array.reshape(-1, FEATURES)

    def two_steps() -> Any:
        return np.asarray(values()).astype(np.float32)

    def fromstring() -> Any:
        text = numbers.replace(b"[", b"").replace(b"]", b"").replace(b"}", b"")
        return np.fromstring(text, dtype=np.float32, sep=",").reshape(-1, FEATURES)

    def orjson_only() -> Any:
        return orjson.loads(body)

    def simdjson_only() -> Any:
        return simdjson.Parser().parse(body)

    return {
        "orjson lists": orjson_lists,
        "asarray+astype": two_steps,
        "fromstring": fromstring,
        "orjson only": orjson_only,
        "simdjson only": simdjson_only,
    }


def measure(call: Callable[[], Any], seconds: float, calibration: float) -> tuple[int, float]:
    """Calls per timing round (about ``seconds`` long) and one round's µs per call.

    The call count is calibrated as ``timeit``'s ``autorange`` does (1, 2, 5, 10, 20, ...
    calls until one round takes ``calibration`` seconds; autorange's is 0.2 s)."""
    timer = timeit.Timer(call)
    number = 1
    for number in (step * 10**power for power in itertools.count() for step in (1, 2, 5)):
        if timer.timeit(number) >= calibration:
            break
    number = max(1, int(number * seconds / calibration))
    return number, timer.timeit(number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.05)
    parser.add_argument(
        "--calibration",
        type=float,
        default=0.2,
        help="seconds a round takes when the call count is chosen (timeit's autorange: 0.2)",
    )
    parser.add_argument(
        "--idle-sample", type=float, default=1.0, help="seconds idle CPU is read for first"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/parse.json")
    args = parser.parse_args()
    busy = psutil.cpu_percent(interval=args.idle_sample)
    table = []
    for protocol in ("v1", "v2"):
        for rows in (1, 32, 256):
            calls = arms(protocol, bodies(rows)[protocol])
            expected = calls["generic"]()
            assert np.array_equal(_array(calls["fast"]()), _array(expected))
            numbers = {
                name: measure(call, args.seconds, args.calibration)[0]
                for name, call in calls.items()
            }
            best = {name: float("inf") for name in calls}
            for _ in range(args.repeats):
                for name, call in calls.items():
                    elapsed = timeit.Timer(call).timeit(numbers[name]) / numbers[name] * 1e6
                    best[name] = min(best[name], elapsed)
            for name, us in best.items():
                table.append(
                    {
                        "protocol": protocol,
                        "rows": rows,
                        "arm": name,
                        "us_per_body": round(us, 2),
                        "speedup_vs_generic": round(best["generic"] / us, 2),
                    }
                )
    idle = round(100 - busy, 1)
    report = {
        "machine": {"cpus": os.cpu_count(), "idle_cpu_percent_before": idle},
        "settings": {
            "repeats": args.repeats,
            "seconds": args.seconds,
            "calibration": args.calibration,
            "features": FEATURES,
        },
        "note": "shared, loaded machine: read the ratios within this run, not the µs",
        "table": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"idle CPU before: {idle}%")
    print(f"{'protocol':<9}{'rows':>5}  {'arm':<16}{'µs/body':>10}{'× generic':>11}")
    for row in table:
        print(
            f"{row['protocol']:<9}{row['rows']:>5}  {row['arm']:<16}"
            f"{row['us_per_body']:>10.2f}{row['speedup_vs_generic']:>11.2f}"
        )


def _array(result: Any) -> Any:
    if isinstance(result, tuple):
        result = result[0]
    if hasattr(result, "inputs"):
        result = result.inputs
    return result["x"]


if __name__ == "__main__":
    main()
