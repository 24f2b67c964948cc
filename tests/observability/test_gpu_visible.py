import pytest
from prometheus_client import CollectorRegistry

from mlkube.observability.gpu import GpuCollector, GpuSample, visible_gpus
from mlkube.serving.server import Replica, ReplicaOptions
from mlkube.spec.loading import parse_documents


@pytest.mark.parametrize(
    ("value", "gpus"),
    [(None, ()), ("", ()), ("-1", ()), ("0", (0,)), ("1,3", (1, 3)), ("GPU-5f1c", ())],
)
def test_visible_gpus(value, gpus):
    assert visible_gpus(value) == gpus


def test_a_replica_registers_the_gpu_collector_it_is_given():
    (deployment,) = parse_documents(
        "apiVersion: mlkube.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: g}\n"
        "spec:\n  model: {uri: m.onnx, format: onnx}\n"
    )

    # A fake reader stands in for nvidia-smi: there is no GPU on this machine.
    def reader():
        return [GpuSample(1, 0.5, 2**30, 2**34), GpuSample(2, 0.9, 1, 2)]

    def add(registry: CollectorRegistry) -> object:
        return GpuCollector(registry, gpus=(1,), reader=reader)

    replica = Replica(deployment, ReplicaOptions(collectors=(add,)))  # type: ignore[arg-type]
    value = replica.registry.get_sample_value("mlkube_gpu_utilization_ratio", {"gpu": "1"})
    assert value == 0.5
    assert replica.registry.get_sample_value("mlkube_gpu_utilization_ratio", {"gpu": "2"}) is None
