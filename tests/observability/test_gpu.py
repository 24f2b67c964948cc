"""GPU metrics from nvidia-smi's CSV (no GPU on the test machine: the reader is faked at the
edge we cannot reach, the nvidia-smi process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from mlkube.observability.gpu import GpuCollector, GpuSample, parse_nvidia_smi

SMI = "0, 37, 1024, 81559\n1, 100, 80000, 81559\n2, [N/A], 1, 2\nnot a row\n"


def test_parse_nvidia_smi():
    assert parse_nvidia_smi(SMI) == [
        GpuSample(0, 0.37, 1024 * 2**20, 81559 * 2**20),
        GpuSample(1, 1.0, 80000 * 2**20, 81559 * 2**20),
    ]


def test_collector_exports_only_the_replicas_gpus():
    registry = CollectorRegistry()
    GpuCollector(registry, gpus=(1,), reader=lambda: parse_nvidia_smi(SMI))
    get = registry.get_sample_value
    assert get("mlkube_gpu_utilization_ratio", {"gpu": "1"}) == 1.0
    assert get("mlkube_gpu_memory_total_bytes", {"gpu": "1"}) == 81559 * 2**20
    assert get("mlkube_gpu_utilization_ratio", {"gpu": "0"}) is None


def test_no_gpu_means_no_series():
    registry = CollectorRegistry()
    GpuCollector(registry, gpus=(0,), reader=list)
    assert get_all(registry) == []


def get_all(registry):
    return [s for m in registry.collect() for s in m.samples]


def test_nvidia_smi_reader_runs_the_tool_and_parses(monkeypatch):
    # The edge we cannot reach here is the nvidia-smi program: a fake run stands in for it.
    from mlkube.observability import gpu

    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/nvidia-smi")
    calls = []

    def run(argv, *, timeout_s):
        calls.append(argv)
        return 0, SMI

    assert [s.index for s in gpu.nvidia_smi_reader(run)()] == [0, 1]
    assert calls[0][1] == gpu.NVIDIA_SMI_QUERY
    assert gpu.nvidia_smi_reader(lambda argv, *, timeout_s: (1, ""))() == []
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert gpu.nvidia_smi_reader(run)() == []
