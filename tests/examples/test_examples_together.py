"""The examples can run side by side: no two claim the same node port or service port."""

from __future__ import annotations

from pathlib import Path

from mlkube.spec import ModelDeployment, load_documents

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_no_two_examples_claim_the_same_node_port():
    deployments = [d for d in load_documents(EXAMPLES) if isinstance(d, ModelDeployment)]
    node_ports = [d.spec.service.node_port for d in deployments if d.spec.service.node_port]
    assert len(node_ports) == len(set(node_ports)), node_ports
