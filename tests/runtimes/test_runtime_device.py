"""The device a runtime predicts on: the decision, and each runtime's CPU path with and without
a GPU given (this machine has none, so a given GPU must fall back with a reason)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from mlkube.errors import MlkubeError, ModelLoadError
from mlkube.runtimes import Datatype, TensorSpec
from mlkube.runtimes.device import (
    CPU,
    CUDA,
    DeviceChoice,
    GpuRequiredError,
    choose_device,
    device_for,
    gpu_given,
)
from mlkube.serving import v2
from mlkube.testing import models
from mlkube.testing.checks import serve


class Support:
    """A library's answer to "can you use a GPU?", counting how often it is asked."""

    def __init__(self, reason: str | None) -> None:
        self.reason = reason
        self.asked = 0

    def __call__(self) -> str | None:
        self.asked += 1
        return self.reason


@pytest.mark.parametrize(
    ("value", "given"),
    [
        (None, False),
        ("", False),
        ("-1", False),
        (" -1 ", False),
        ("0", True),
        ("1,3", True),
        ("GPU-8c0f4a2e-1b2c-4d5e-9f00-123456789abc", True),
    ],
)
def test_a_gpu_is_given_by_cuda_visible_devices(value: str | None, given: bool) -> None:
    environ = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert gpu_given(environ) is given


@pytest.mark.parametrize(
    ("value", "given"),
    [
        ("GPU-8c0f4a2e-1b2c-4d5e-9f00-123456789abc", True),  # what the device plugin sets
        ("0,1", True),
        ("/var/run/nvidia-container-devices", True),  # its volume-mounts strategy
        ("all", False),  # set by CUDA base images in every container
        ("void", False),
        ("none", False),
        ("", False),
    ],
)
def test_on_kubernetes_a_gpu_is_given_by_nvidia_visible_devices(value: str, given: bool) -> None:
    assert gpu_given({"NVIDIA_VISIBLE_DEVICES": value}) is given


def test_cuda_visible_devices_decides_over_nvidia_visible_devices() -> None:
    assert not gpu_given({"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "GPU-1"})
    assert gpu_given({"CUDA_VISIBLE_DEVICES": "0", "NVIDIA_VISIBLE_DEVICES": "all"})


def test_no_gpu_given_means_the_cpu_without_asking_the_library() -> None:
    support = Support(None)
    assert choose_device(support, {"CUDA_VISIBLE_DEVICES": ""}) == DeviceChoice(CPU)
    assert choose_device(support, {}) == DeviceChoice(CPU)
    assert support.asked == 0


def test_a_given_gpu_is_used_when_the_library_can() -> None:
    choice = choose_device(Support(None), {"CUDA_VISIBLE_DEVICES": "0"})
    assert choice == DeviceChoice(CUDA) and choice.on_gpu
    assert choice.as_metadata() == {"device": "cuda"}


def test_a_given_gpu_the_library_cannot_use_falls_back_with_its_reason() -> None:
    choice = choose_device(Support("no CUDA here"), {"CUDA_VISIBLE_DEVICES": "0"})
    assert choice == DeviceChoice(CPU, "no CUDA here") and not choice.on_gpu
    assert choice.as_metadata() == {"device": "cpu", "device_reason": "no CUDA here"}


def test_mlkube_device_cpu_keeps_a_given_gpu_unused() -> None:
    support = Support(None)
    env = {"CUDA_VISIBLE_DEVICES": "0", "MLKUBE_DEVICE": "CPU"}
    assert choose_device(support, env) == DeviceChoice(CPU)
    assert support.asked == 0


def test_mlkube_device_gpu_uses_a_gpu_without_cuda_visible_devices() -> None:
    assert choose_device(Support(None), {"MLKUBE_DEVICE": "gpu"}) == DeviceChoice(CUDA)


def test_mlkube_device_gpu_fails_the_load_when_the_runtime_cannot() -> None:
    with pytest.raises(GpuRequiredError):
        choose_device(Support("no CUDA here"), {"MLKUBE_DEVICE": "gpu"})
    with pytest.raises(ModelLoadError, match=r"MLKUBE_DEVICE=gpu, but no CUDA here"):
        device_for(Support("no CUDA here"), "m.onnx", "onnx", {"MLKUBE_DEVICE": "gpu"})


def test_a_bad_mlkube_device_is_one_clear_error() -> None:
    with pytest.raises(MlkubeError, match=r"MLKUBE_DEVICE must be cpu or gpu, got 'tpu'"):
        choose_device(Support(None), {"MLKUBE_DEVICE": "tpu"})


# Each runtime's availability check, fed the library's answers (the attributes it reads).


def test_onnxruntime_without_the_cuda_provider_names_the_package() -> None:
    from mlkube.runtimes.onnx_runtime import cuda_provider_missing

    cpu_only = SimpleNamespace(
        __version__="1.20.0", get_available_providers=lambda: ["CPUExecutionProvider"]
    )
    reason = cuda_provider_missing(cpu_only)
    assert reason is not None and "onnxruntime-gpu" in reason
    gpu_build = SimpleNamespace(
        __version__="1.20.0",
        get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert cuda_provider_missing(gpu_build) is None


def test_xgboost_needs_2_0_and_a_cuda_build() -> None:
    from mlkube.runtimes.xgboost_runtime import cuda_missing

    def xgboost(version: str, cuda: object) -> object:
        return SimpleNamespace(__version__=version, build_info=lambda: {"USE_CUDA": cuda})

    assert "predates the device parameter" in str(cuda_missing(xgboost("1.7.6", True)))  # type: ignore[arg-type]
    assert "built without CUDA" in str(cuda_missing(xgboost("2.1.0", False)))  # type: ignore[arg-type]
    assert cuda_missing(xgboost("3.0.0", True)) is None  # type: ignore[arg-type]


def test_torch_without_cuda_says_why() -> None:
    from mlkube.runtimes.torch_runtime import cuda_missing

    def torch(available: bool, cuda: str | None) -> object:
        return SimpleNamespace(
            __version__="2.5.0",
            cuda=SimpleNamespace(is_available=lambda: available),
            version=SimpleNamespace(cuda=cuda),
        )

    assert "CPU-only wheel" in str(cuda_missing(torch(False, None)))
    assert "no usable CUDA device" in str(cuda_missing(torch(False, "12.4")))
    assert cuda_missing(torch(True, "12.4")) is None


def test_v2_metadata_shows_the_device_and_the_reason() -> None:
    spec = (TensorSpec("input", Datatype.FP32, (-1, 4)),)
    fields = DeviceChoice(CPU, "lightgbm predicts on the CPU only").as_metadata()
    body = orjson.loads(v2.model_metadata("m", [1], "lightgbm", spec, spec, fields))
    assert body["device"] == "cpu"
    assert body["device_reason"] == "lightgbm predicts on the CPU only"


# End to end on this machine's CPU: each runtime loaded the way the server loads it.


def _built(kind: str, folder: Path) -> models.BuiltModel:
    if kind == "onnx":
        return models.save_onnx(models.iris_classifier(), folder, "iris")
    pytest.importorskip(kind)
    if kind == "xgboost":
        return models.xgboost_model(folder)
    if kind == "lightgbm":
        return models.lightgbm_model(folder)
    return models.torchscript_model(folder)


REASONS = {
    "onnx": "onnxruntime-gpu package provides it",
    "xgboost": "xgboost",
    "lightgbm": "its device_type gpu/cuda is for training",
    "torch": "torch",
}
"""A piece of the reason each runtime gives for not using a given GPU on this machine."""


@pytest.mark.parametrize("kind", list(REASONS))
def test_a_given_gpu_falls_back_to_the_cpu_with_the_same_predictions(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    built = _built(kind, tmp_path)
    monkeypatch.delenv("MLKUBE_DEVICE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
    plain = serve(built)
    assert plain.device == DeviceChoice(CPU)  # type: ignore[attr-defined]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level(logging.INFO, logger="mlkube.runtimes.device"):
        given = serve(built)
    choice: DeviceChoice = given.device  # type: ignore[attr-defined]
    if choice.on_gpu:  # a machine with a GPU and a CUDA build: the gpu tests cover it
        pytest.skip(f"{kind} really runs on the GPU here")
    assert choice.device == CPU and REASONS[kind] in choice.reason
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert choice.reason in caplog.records[0].getMessage()
    name = plain.inputs[0].name
    rows = built.rows.astype(np.float32)
    expected, served = plain.predict({name: rows}), given.predict({name: rows})
    for output in plain.outputs:
        np.testing.assert_array_equal(served[output.name], expected[output.name])


def test_mlkube_device_cpu_loads_on_the_cpu_without_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _built("onnx", tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("MLKUBE_DEVICE", "cpu")
    assert serve(built).device == DeviceChoice(CPU)  # type: ignore[attr-defined]


def test_mlkube_device_gpu_refuses_a_runtime_that_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("lightgbm")
    built = _built("lightgbm", tmp_path)
    monkeypatch.setenv("MLKUBE_DEVICE", "gpu")
    with pytest.raises(ModelLoadError, match=r"MLKUBE_DEVICE=gpu, but lightgbm predicts"):
        serve(built)
