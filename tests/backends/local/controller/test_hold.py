from mlkube.backends.local.controller.controller import apply_hold
from mlkube.backends.local.proxy import Router
from mlkube.spec import ModelDeployment
from mlkube.spec.loading import parse_documents

SPEC = """apiVersion: mlkube.dev/v1alpha1
kind: ModelDeployment
metadata: {name: m}
spec:
  model: {uri: m.onnx, format: onnx}
"""
TO_ZERO = (
    SPEC
    + """  autoscaling:
    minReplicas: 0
    maxReplicas: 2
    scaleToZero: {idleAfter: 30s, activationTimeout: 7s}
"""
)


def test_the_hold_follows_the_spec_on_every_apply():
    router = Router("m", hold_s=10.0)
    (to_zero,) = parse_documents(TO_ZERO)
    assert isinstance(to_zero, ModelDeployment)
    apply_hold(router, to_zero, 10.0)
    assert router.hold_s == 7.0
    (plain,) = parse_documents(SPEC)
    assert isinstance(plain, ModelDeployment)
    apply_hold(router, plain, 10.0)
    assert router.hold_s == 10.0
