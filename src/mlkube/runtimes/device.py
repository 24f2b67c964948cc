"""Which device a replica's runtime predicts on: a GPU it was given, else the CPU.

A replica is given GPUs through ``CUDA_VISIBLE_DEVICES``: the local backend sets it to the
indexes it hands the replica (empty when none). On Kubernetes the NVIDIA device plugin sets
``NVIDIA_VISIBLE_DEVICES`` instead, to the devices it allocated to a container that asked for
``nvidia.com/gpu`` (https://github.com/NVIDIA/nvidia-container-toolkit/issues/27), which is read
when ``CUDA_VISIBLE_DEVICES`` is unset. A runtime uses a GPU only when one was
given *and* its library can use it; otherwise it uses the CPU, and when a GPU was given but
cannot be used the choice carries one sentence saying why (logged at load, shown in the model's
v2 metadata). No GPU given means the CPU, even if the machine has GPUs: they belong to other
replicas.

``MLKUBE_DEVICE`` overrides: ``cpu`` keeps the runtime off any GPU; ``gpu`` treats a GPU as
given when ``CUDA_VISIBLE_DEVICES`` is unset (e.g. ``mlkube serve`` on a workstation) and fails
the load when the runtime cannot use one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlkube.errors import MlkubeError, ModelLoadError

DEVICE_VARIABLE = "MLKUBE_DEVICE"
"""Environment variable: ``cpu`` or ``gpu`` overrides the choice (unset: automatic)."""

CPU = "cpu"
CUDA = "cuda"

GpuSupport = Callable[[], str | None]
"""Asks the runtime's library whether it can use a GPU: None when it can, else the reason."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """Where a runtime predicts: ``cuda`` or ``cpu``, and why not a GPU that was given."""

    device: str
    reason: str = ""
    """Empty unless a GPU was given (or asked for) and the runtime uses the CPU."""

    @property
    def on_gpu(self) -> bool:
        return self.device == CUDA

    def fell_back(self, reason: str) -> DeviceChoice:
        """The CPU, because the library could not start on the GPU after all."""
        return DeviceChoice(CPU, reason)

    def as_metadata(self) -> dict[str, str]:
        """The fields the v2 model metadata shows: ``device``, and ``device_reason`` if any."""
        fields = {"device": self.device}
        if self.reason:
            fields["device_reason"] = self.reason
        return fields


def gpu_given(environ: Mapping[str, str]) -> bool:
    """Whether ``CUDA_VISIBLE_DEVICES`` (else ``NVIDIA_VISIBLE_DEVICES``) gives a GPU. Pure.

    ``CUDA_VISIBLE_DEVICES``: empty and ``-1`` (CUDA's "hide every device") give none; indexes
    and UUIDs (``GPU-...``) give one. ``NVIDIA_VISIBLE_DEVICES``, read only when the first is
    unset: a device list (indexes, UUIDs, or the plugin's volume-mounts path) gives one; empty,
    ``void`` and ``none`` give none, and so does ``all``, which CUDA base images set for every
    container, asked for a GPU or not.
    """
    cuda = environ.get("CUDA_VISIBLE_DEVICES")
    if cuda is not None:
        return cuda.split(",", 1)[0].strip() not in ("", "-1")
    nvidia = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip().lower()
    return nvidia not in ("", "void", "none", "all")


def choose_device(support: GpuSupport, environ: Mapping[str, str] | None = None) -> DeviceChoice:
    """The device for a runtime whose library answers ``support``. Pure but for ``support``.

    ``support`` is only asked when a GPU was given (importing a library's GPU parts is slow).
    Raises MlkubeError for a bad ``MLKUBE_DEVICE`` and a `GpuRequiredError` when ``gpu`` was asked
    for and the runtime cannot use one.
    """
    env = os.environ if environ is None else environ
    override = env.get(DEVICE_VARIABLE, "").strip().lower()
    if override not in ("", CPU, "gpu"):
        raise MlkubeError(
            f"The environment variable {DEVICE_VARIABLE} must be cpu or gpu, "
            f"got '{env[DEVICE_VARIABLE]}'."
        )
    if override == CPU:
        return DeviceChoice(CPU)
    if override != "gpu" and not gpu_given(env):
        return DeviceChoice(CPU)
    reason = support()
    if reason is None:
        return DeviceChoice(CUDA)
    if override == "gpu":
        raise GpuRequiredError(reason)
    return DeviceChoice(CPU, reason)


class GpuRequiredError(MlkubeError):
    """``MLKUBE_DEVICE=gpu`` was set and the runtime cannot use a GPU (the message says why)."""

    def load_error(self, path: str, model_format: str) -> ModelLoadError:
        return ModelLoadError(path, model_format, f"{DEVICE_VARIABLE}=gpu, but {self.args[0]}")


def device_for(
    support: GpuSupport, path: str, model_format: str, environ: Mapping[str, str] | None = None
) -> DeviceChoice:
    """`choose_device` for loading ``path``: a refused ``gpu`` override is a ModelLoadError."""
    try:
        return choose_device(support, environ)
    except GpuRequiredError as error:
        raise error.load_error(path, model_format) from error


def log_choice(platform: str, path: str, choice: DeviceChoice) -> None:
    """One log line at load: where the model predicts, a warning if a given GPU sits idle."""
    extra = {"runtime": platform, "model_path": path, "device": choice.device}
    if choice.reason:
        logger.warning(
            "a GPU was given but the model predicts on the CPU: %s",
            choice.reason,
            extra={**extra, "reason": choice.reason},
        )
    else:
        logger.info("model predicts on %s", choice.device, extra=extra)
