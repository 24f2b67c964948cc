"""GPU detection: NVML through ``nvidia-smi`` (the driver's own tool; no Python binding needed).

Replicas asking for ``nvidia.com/gpu: N`` get N whole GPUs through ``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import logging
import shutil

from mlkube.backends.local import supervisor

logger = logging.getLogger(__name__)

NVIDIA_SMI_TIMEOUT_S = 10.0


def parse_gpu_list(text: str) -> tuple[int, ...]:
    """GPU indices from ``nvidia-smi --query-gpu=index --format=csv,noheader``. Pure."""
    indices = []
    for line in text.splitlines():
        line = line.strip()
        if line.isdigit():
            indices.append(int(line))
    return tuple(indices)


def detect_gpus() -> tuple[int, ...]:
    """The indices of this machine's NVIDIA GPUs; empty without a driver."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return ()
    code, out = supervisor.run_command(
        [tool, "--query-gpu=index", "--format=csv,noheader"], timeout_s=NVIDIA_SMI_TIMEOUT_S
    )
    if code != 0:
        logger.warning("nvidia-smi failed with exit code %s; assuming no GPU", code)
        return ()
    return parse_gpu_list(out)


def visible_devices(gpus: tuple[int, ...]) -> str:
    """The CUDA_VISIBLE_DEVICES value for ``gpus``; empty hides every GPU. Pure."""
    return ",".join(str(g) for g in gpus)
