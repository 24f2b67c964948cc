"""Every switch between two rollout strategies, against the API-server double: the apply
succeeds, and no Deployment that both strategies keep ever drops below the count it started
with (the double's replicas timeline), re-applies included."""

from __future__ import annotations

import itertools

import pytest

from mlkube.backends.kubernetes.backend import KubernetesBackend
from mlkube.clock import ManualClock

pytestmark = pytest.mark.integration

BASE = """\
apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: ranker, namespace: ml}
spec:
  model: {uri: "s3://models/ranker.onnx", format: onnx}
  replicas: 2
  resources: {requests: {cpu: 500m, memory: 512Mi}}
  autoscaling: {minReplicas: 2, maxReplicas: 5, metrics: [{type: cpu, targetUtilization: 70}]}
  kubernetes: {createNamespace: true}
"""
STRATEGIES = {
    "RollingUpdate": "{strategy: RollingUpdate}",
    "BlueGreen": "{strategy: BlueGreen}",
    "Canary": "{strategy: Canary, steps: [{weight: 10}]}",
    "ABTest": "{strategy: ABTest, abTest: {weight: 30}}",
}


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(STRATEGIES, 2)))
def test_a_strategy_switch_keeps_the_replicas_of_what_it_keeps(api, tmp_path, before, after):
    spec = tmp_path / "ranker.yaml"
    backend = KubernetesBackend(clock=ManualClock())
    spec.write_text(BASE + f"  rollout: {STRATEGIES[before]}\n", encoding="utf-8")
    backend.apply((str(spec),))
    backend.apply((str(spec),))  # a re-apply first: the autoscalers own the counts now
    first = {name for (ns, name) in api.replicas if api.get("deployments", ns, name)}
    spec.write_text(BASE + f"  rollout: {STRATEGIES[after]}\n", encoding="utf-8")
    backend.apply((str(spec),))
    # BlueGreen's Deployments are <name>-blue/-green: a switch to or from it replaces them
    # (whether that costs downtime is prune-after-ready's business, not this test's).
    kept = {name for name in first if api.get("deployments", "ml", name) is not None}
    assert kept or "BlueGreen" in (before, after)
    for name in sorted(kept):
        timeline = api.replicas_timeline("ml", name)
        start = timeline[0]
        assert min(timeline) == start, f"{name}: {timeline}"
