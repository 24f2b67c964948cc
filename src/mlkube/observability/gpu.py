"""GPU metrics of a replica that was given GPUs (catalogue: ``GPU_METRICS``).

``GpuCollector`` reads the GPUs at scrape time through a reader function, so tests pass a
fake one and no GPU library is imported where there is no GPU. ``nvidia_smi_reader(run)``
asks ``nvidia-smi`` through a run function (``backends.local.supervisor.run_command``, the
one place that runs programs) and parses its CSV with the pure ``parse_nvidia_smi``.

Wiring (where a replica is given GPUs): ``GpuCollector(registry, gpus=(0,),
reader=nvidia_smi_reader(run_command))``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlkube.observability.catalogue import GPU_METRICS

NVIDIA_SMI_QUERY = "--query-gpu=index,utilization.gpu,memory.used,memory.total"
NVIDIA_SMI_TIMEOUT_S = 2.0
_HELP = {m.name: m.help for m in GPU_METRICS}
_MIB = 2**20


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one moment."""

    index: int
    utilization_ratio: float
    memory_used_bytes: int
    memory_total_bytes: int


def parse_nvidia_smi(text: str) -> list[GpuSample]:
    """Rows of ``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total
    --format=csv,noheader,nounits`` (percent and MiB). Pure; unreadable rows are skipped."""
    samples = []
    for row in text.splitlines():
        parts = [p.strip() for p in row.split(",")]
        if len(parts) != 4:
            continue
        try:
            index, util, used, total = (
                int(parts[0]),
                float(parts[1]),
                float(parts[2]),
                float(parts[3]),
            )
        except ValueError:
            continue  # "[N/A]" on GPUs that do not report a field
        samples.append(GpuSample(index, util / 100, int(used * _MIB), int(total * _MIB)))
    return samples


RunCommand = Callable[..., tuple[int, str]]
"""``run(argv, timeout_s=...) -> (exit code, stdout)``: ``supervisor.run_command``."""


def nvidia_smi_reader(run: RunCommand) -> Callable[[], list[GpuSample]]:
    """A reader that asks nvidia-smi through ``run``; it returns [] when nvidia-smi is
    missing or fails. ``run`` is passed in so this package never imports a backend."""

    def read() -> list[GpuSample]:
        binary = shutil.which("nvidia-smi")
        if binary is None:
            return []
        code, out = run(
            [binary, NVIDIA_SMI_QUERY, "--format=csv,noheader,nounits"],
            timeout_s=NVIDIA_SMI_TIMEOUT_S,
        )
        return parse_nvidia_smi(out) if code == 0 else []

    return read


def visible_gpus(value: str | None) -> tuple[int, ...]:
    """GPU indexes named by ``CUDA_VISIBLE_DEVICES`` (how the local backend hands out GPUs).

    Pure. Unset, empty, ``-1`` or UUIDs give no index: the replica then exports no GPU metric
    rather than another replica's GPU."""
    if not value:
        return ()
    indexes = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit():
            return ()
        indexes.append(int(part))
    return tuple(indexes)


class GpuCollector(Collector):
    """Utilization and memory of the GPUs ``gpus`` (indexes), read when Prometheus scrapes."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        *,
        gpus: Sequence[int],
        reader: Callable[[], list[GpuSample]],
    ) -> None:
        self._gpus = frozenset(gpus)
        self._reader = reader
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # reading GPUs at register time would run nvidia-smi for nothing

    def collect(self) -> Iterator[Metric]:
        names = (
            "mlkube_gpu_utilization_ratio",
            "mlkube_gpu_memory_used_bytes",
            "mlkube_gpu_memory_total_bytes",
        )
        families = {n: GaugeMetricFamily(n, _HELP[n], labels=["gpu"]) for n in names}
        for sample in self._reader():
            if sample.index not in self._gpus:
                continue
            label = [str(sample.index)]
            families["mlkube_gpu_utilization_ratio"].add_metric(label, sample.utilization_ratio)
            families["mlkube_gpu_memory_used_bytes"].add_metric(label, sample.memory_used_bytes)
            families["mlkube_gpu_memory_total_bytes"].add_metric(label, sample.memory_total_bytes)
        yield from families.values()
