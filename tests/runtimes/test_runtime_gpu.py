"""On a machine with a GPU: each runtime given one really predicts there, and answers as it does
on the CPU. Run by ``scripts/gpu-check``; skipped, with the reason, where there is no GPU or the
library installed has no CUDA."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mlkube.runtimes import Runtime
from mlkube.runtimes.device import CUDA, DeviceChoice
from mlkube.testing import models
from mlkube.testing.checks import serve

pytestmark = pytest.mark.gpu

GPU_RTOL = 1e-4
"""GPU kernels sum in another order than CPU ones: answers agree to float32 rounding, not bit for
bit."""


def _gpus() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (none without the driver)."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return []
    try:
        done = subprocess.run(
            [program, "-L"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in done.stdout.splitlines() if line.startswith("GPU ")]


@pytest.fixture(scope="module", autouse=True)
def a_gpu() -> None:
    if not _gpus():
        pytest.skip("no GPU here: nvidia-smi is missing or lists none")


def _on_gpu_and_on_cpu(
    built: models.BuiltModel, monkeypatch: pytest.MonkeyPatch
) -> tuple[Runtime, Runtime]:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("MLKUBE_DEVICE", "cpu")
    on_cpu = serve(built)
    monkeypatch.delenv("MLKUBE_DEVICE")
    on_gpu = serve(built)
    choice: DeviceChoice = on_gpu.device  # type: ignore[attr-defined]
    assert choice.device == CUDA, f"{on_gpu.platform} stayed on the CPU: {choice.reason}"
    return on_gpu, on_cpu


def _same_answers(on_gpu: Runtime, on_cpu: Runtime, rows: np.ndarray) -> None:
    name = on_cpu.inputs[0].name
    expected, served = on_cpu.predict({name: rows}), on_gpu.predict({name: rows})
    for spec in on_cpu.outputs:
        np.testing.assert_allclose(
            np.asarray(served[spec.name], dtype=np.float64),
            np.asarray(expected[spec.name], dtype=np.float64),
            rtol=GPU_RTOL,
            atol=1e-6,
            err_msg=spec.name,
        )


def test_onnx_runs_on_the_cuda_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider: pip install onnxruntime-gpu")
    built = models.save_onnx(models.iris_classifier(), tmp_path, "iris")
    on_gpu, on_cpu = _on_gpu_and_on_cpu(built, monkeypatch)
    assert on_gpu._session.get_providers()[0] == "CUDAExecutionProvider"  # type: ignore[attr-defined]
    _same_answers(on_gpu, on_cpu, built.rows.astype(np.float32))


def test_xgboost_runs_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xgboost = pytest.importorskip("xgboost")
    from mlkube.runtimes.xgboost_runtime import cuda_missing

    reason = cuda_missing(xgboost)
    if reason is not None:
        pytest.skip(reason)
    built = models.xgboost_model(tmp_path)
    # device cuda: the Booster's own config said cuda after set_param (it says cpu without a GPU)
    on_gpu, on_cpu = _on_gpu_and_on_cpu(built, monkeypatch)
    _same_answers(on_gpu, on_cpu, built.rows.astype(np.float32))


def test_pytorch_runs_on_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from mlkube.runtimes.torch_runtime import cuda_missing

    reason = cuda_missing(torch)
    if reason is not None:
        pytest.skip(reason)
    built = models.torchscript_model(tmp_path)
    on_gpu, on_cpu = _on_gpu_and_on_cpu(built, monkeypatch)
    assert torch.cuda.memory_allocated() > 0, "no tensor of the module is on the GPU"
    _same_answers(on_gpu, on_cpu, built.rows.astype(np.float32))


def test_lightgbm_given_a_gpu_says_it_predicts_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("lightgbm")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.delenv("MLKUBE_DEVICE", raising=False)
    runtime = serve(models.lightgbm_model(tmp_path))
    choice: DeviceChoice = runtime.device  # type: ignore[attr-defined]
    assert choice.device == "cpu" and "predicts on the CPU only" in choice.reason
