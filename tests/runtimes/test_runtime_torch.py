from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlkube.errors import InvalidInputError, ModelLoadError
from mlkube.runtimes import Datatype, TensorSpec
from mlkube.runtimes.loader import load_runtime
from mlkube.spec import ModelDeployment
from mlkube.testing import models
from mlkube.testing.checks import assert_batch_invariant, assert_close, serve

torch = pytest.importorskip("torch")


def _expected(built: models.BuiltModel) -> np.ndarray:
    with torch.inference_mode():
        return np.asarray(built.model(torch.from_numpy(built.rows.astype(np.float32))).numpy())


@pytest.mark.parametrize("fixture", ["torchscript", "torch_export"])
def test_predictions_equal_the_module(request: pytest.FixtureRequest, fixture: str) -> None:
    built: models.BuiltModel = request.getfixturevalue(fixture)
    runtime = serve(built)
    assert runtime.platform == "pytorch"
    assert runtime.inputs == (TensorSpec("input", Datatype.FP32, (-1, 4)),)
    assert runtime.outputs == (TensorSpec("output", Datatype.FP32, (-1, 3)),)
    served = runtime.predict({"input": built.rows})
    assert_close(served["output"], _expected(built), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fixture", ["torchscript", "torch_export"])
def test_merged_rows_match_row_by_row(request: pytest.FixtureRequest, fixture: str) -> None:
    built: models.BuiltModel = request.getfixturevalue(fixture)
    runtime = serve(built)
    assert runtime.supports_batching
    # Matrix kernels differ with the row count: equal to float32 rounding, not bit for bit.
    assert_batch_invariant(runtime, built.rows[:16].astype(np.float32), exact=False)


def test_read_only_input_is_accepted(torchscript: models.BuiltModel) -> None:
    rows = torchscript.rows[:3].astype(np.float32)
    rows.flags.writeable = False
    served = serve(torchscript).predict({"input": rows})
    assert served["output"].shape == (3, 3)


def test_torchscript_without_sidecar_probes_with_the_default_input(tmp_path: Path) -> None:
    # The default input is FP32 [-1, -1]: a 1x1 zero batch, which a 4-feature MLP refuses.
    built = models.torchscript_model(tmp_path, sidecar=False)
    with pytest.raises(ModelLoadError, match=r"test prediction on zeros.*describe the inputs in"):
        serve(built)


def test_sidecar_with_bad_shape_is_refused(tmp_path: Path) -> None:
    built = models.torchscript_model(tmp_path)
    sidecar = built.path.with_name(built.path.name + ".json")
    sidecar.write_text(
        json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [4]}]})
    )
    with pytest.raises(ModelLoadError, match=r"mlp\.pt\.json.*inputs\[0\]\.shape must be"):
        serve(built)


def test_sidecar_with_unknown_key_is_refused(tmp_path: Path) -> None:
    built = models.torchscript_model(tmp_path)
    sidecar = built.path.with_name(built.path.name + ".json")
    sidecar.write_text(json.dumps({"input": []}))
    with pytest.raises(ModelLoadError, match=r"unknown keys: \['input'\]"):
        serve(built)


def test_sidecar_can_turn_batching_off(tmp_path: Path) -> None:
    built = models.torchscript_model(tmp_path)
    sidecar = built.path.with_name(built.path.name + ".json")
    io = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**io, "supportsBatching": False}))
    assert not serve(built).supports_batching


@pytest.mark.parametrize("what", ["state_dict", "module"])
def test_a_torch_save_file_says_how_to_save_a_runnable_model(tmp_path: Path, what: str) -> None:
    module = torch.nn.Linear(4, 3)
    path = tmp_path / "weights.pt"
    torch.save(module.state_dict() if what == "state_dict" else module, path)
    deployment = ModelDeployment.model_validate(
        {"metadata": {"name": "m"}, "spec": {"model": {"uri": str(path), "format": "pytorch"}}}
    )
    with pytest.raises(ModelLoadError, match=r"torch\.save .* torch\.jit\.script\(model\)\.save"):
        load_runtime(deployment)


def test_a_shape_the_module_cannot_use_is_the_callers_mistake(tmp_path: Path) -> None:
    # Inputs declared [-1, -1]: only the module's first matmul finds out it needs 4 columns.
    built = models.torchscript_model(tmp_path)
    sidecar = built.path.with_name(built.path.name + ".json")
    declared = json.loads(sidecar.read_text())
    declared["inputs"][0]["shape"] = [-1, -1]
    sidecar.write_text(json.dumps(declared))
    runtime = serve(built)
    assert len(runtime.predict({"input": built.rows[:2]})["output"]) == 2
    with pytest.raises(InvalidInputError, match="the model refused the input: RuntimeError"):
        runtime.predict({"input": built.rows[:2, :3]})
