"""Random specs (hypothesis): whatever renders validates, against a random 1.30-1.37 schema.

Each example validates every object against one Kubernetes version drawn from 1.30..1.37, so
the whole range is covered over the run without multiplying the cost by eight. Specs the
renderer refuses must fail with RenderError naming the deployment, never with another error.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from k8s_validation import VERSIONS, validate

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render import render
from mlkube.errors import SpecError
from mlkube.spec import parse_documents

_names = st.from_regex(r"[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,6})?", fullmatch=True)
_cpu = st.sampled_from(["100m", "250m", "500m", "1", "2", "1500m", "0.5"])
_memory = st.sampled_from(["128Mi", "512Mi", "1Gi", "2Gi", "1G"])


@st.composite
def _model(draw: st.DrawFn) -> dict[str, Any]:
    fmt = draw(st.sampled_from(["onnx", "sklearn", "tensorflow", "pytorch", "xgboost"]))
    uri = draw(
        st.sampled_from(
            [
                "pvc://models/m/model.bin",
                "s3://bucket/path/model.bin",
                "s3://bucket/path/dir/",
                "gs://bucket/model.bin",
                "https://example.com/models/model.bin?x=1",
                "./local/model.bin",
            ]
        )
    )
    model: dict[str, Any] = {"uri": uri, "format": fmt}
    if fmt == "sklearn":
        model["trustPickle"] = True
    return model


@st.composite
def _autoscaling(draw: st.DrawFn, *, gpu: bool) -> dict[str, Any] | None:
    if not draw(st.booleans()):
        return None
    engine = draw(st.sampled_from(["hpa", "keda"]))
    low = draw(st.integers(0 if engine == "keda" else 1, 3))
    high = draw(st.integers(max(low, 1), 12))
    metric_pool = [
        {"type": "cpu", "targetUtilization": draw(st.integers(10, 95))},
        {"type": "memory", "targetAverageValue": draw(_memory)},
        {"type": "concurrency", "target": draw(st.sampled_from([1, 4, 8.5, 0.25]))},
        {"type": "rps", "target": draw(st.sampled_from([10, 50.5, 200]))},
        {"type": "queueDepth", "target": draw(st.sampled_from([4, 16]))},
    ]
    if engine == "keda":
        metric_pool.append({"type": "latency", "targetMs": 250, "percentile": 99})
    metrics = draw(st.lists(st.sampled_from(metric_pool), min_size=1, max_size=3, unique_by=str))
    spec: dict[str, Any] = {
        "minReplicas": low,
        "maxReplicas": high,
        "metrics": metrics,
        "engine": engine,
    }
    if low == 0:
        spec["scaleToZero"] = {"idleAfter": draw(st.sampled_from(["60s", "5m"]))}
        spec["metrics"] = [*metrics, {"type": "concurrency", "target": 2}]
    if draw(st.booleans()):
        policy = {
            "type": draw(st.sampled_from(["Pods", "Percent"])),
            "value": 4,
            "periodSeconds": 60,
        }
        spec["behavior"] = {
            "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [policy]},
            "scaleDown": {"selectPolicy": draw(st.sampled_from(["Max", "Min", "Disabled"]))},
        }
    return spec


@st.composite
def deployment_specs(draw: st.DrawFn) -> str:
    name = draw(_names)
    gpu = draw(st.booleans())
    resources: dict[str, Any] = {
        "requests": {"cpu": draw(_cpu), "memory": "128Mi"},
        "limits": {"memory": draw(_memory)},
    }
    if gpu:
        resources["requests"]["nvidia.com/gpu"] = 1
        resources["limits"]["nvidia.com/gpu"] = 1
    spec: dict[str, Any] = {
        "model": draw(_model()),
        "replicas": draw(st.integers(0, 6)),
        "resources": resources,
        "server": {
            "port": draw(st.sampled_from([8501, 8080, 9000])),
            "drainTimeout": draw(st.sampled_from(["5s", "30s", "2m"])),
        },
        "service": _service(draw),
        "monitoring": {"enabled": draw(st.booleans())},
        "kubernetes": _kubernetes(draw),
        "placement": {
            "nodeSelector": draw(
                st.dictionaries(st.sampled_from(["pool", "zone"]), _names, max_size=2)
            ),
            "tolerations": draw(
                st.lists(
                    st.sampled_from(
                        [
                            {
                                "key": "dedicated",
                                "operator": "Equal",
                                "value": "ml",
                                "effect": "NoSchedule",
                            },
                            {"operator": "Exists"},
                            {
                                "key": "spot",
                                "operator": "Exists",
                                "effect": "NoExecute",
                                "tolerationSeconds": 30,
                            },
                        ]
                    ),
                    max_size=2,
                    unique_by=str,
                )
            ),
        },
    }
    autoscaling = draw(_autoscaling(gpu=gpu))
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    spec["rollout"] = _rollout(draw)
    if spec["model"]["uri"].startswith("./") or draw(st.booleans()):
        spec["storage"] = {
            "pvc": {
                "name": "models",
                "size": draw(st.sampled_from(["1Gi", "5Gi"])),
                "create": draw(st.booleans()),
            }
        }
        if draw(st.booleans()):
            spec["storage"]["persistentVolume"] = {"hostPath": "/mnt/models"}
    document = {
        "apiVersion": "mlkube.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": draw(_names),
            "labels": draw(
                st.dictionaries(st.sampled_from(["team", "example.com/tier"]), _names, max_size=2)
            ),
        },
        "spec": spec,
    }
    return yaml.safe_dump(document)


def _service(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]))
    service: dict[str, Any] = {"type": kind, "port": draw(st.sampled_from([80, 8501]))}
    if kind != "ClusterIP" and draw(st.booleans()):
        service["nodePort"] = draw(st.integers(30000, 32767))
    return service


def _kubernetes(draw: st.DrawFn) -> dict[str, Any]:
    kube: dict[str, Any] = {
        "createNamespace": draw(st.booleans()),
        "podDisruptionBudget": draw(st.booleans()),
    }
    vpa = draw(st.sampled_from([None, "Off", "Initial", "Recreate", "InPlaceOrRecreate"]))
    if vpa is not None:
        kube["verticalPodAutoscaler"] = vpa
    if draw(st.booleans()):
        kube["gateway"] = draw(st.sampled_from(["gw", "infra/public"]))
    if draw(st.booleans()):
        kube["stableModelUri"] = "s3://bucket/old/model.bin"
    kube["activeColor"] = draw(st.sampled_from(["blue", "green"]))
    return kube


def _rollout(draw: st.DrawFn) -> dict[str, Any]:
    strategy = draw(st.sampled_from(["RollingUpdate", "BlueGreen", "Canary", "ABTest"]))
    rollout: dict[str, Any] = {"strategy": strategy}
    if strategy == "Canary":
        first = draw(st.integers(0, 100))
        rollout["steps"] = [{"weight": first, "pause": "30s"}, {"weight": max(first, 50)}]
    if strategy == "ABTest":
        ab: dict[str, Any] = {"weight": draw(st.integers(0, 100))}
        if draw(st.booleans()):
            ab["header"] = "x-variant"
            if draw(st.booleans()):
                ab["headerValue"] = "b"
        rollout["abTest"] = ab
    return rollout


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(text=deployment_specs(), version=st.sampled_from(VERSIONS))
def test_random_specs_render_valid_objects_or_a_render_error(text, version):
    try:
        documents = parse_documents(text)
    except SpecError:
        event("spec refused")
        return  # the spec package refuses it; not the renderer's concern
    try:
        rendered = render(documents)
    except RenderError as error:
        message = str(error)
        assert f"deployment '{documents[0].metadata.name}'" in message
        event(f"render refused: {message.split(':', 1)[1][:40]}")
        return
    event("rendered")
    problems = [p for obj in rendered.objects for p in validate(obj, version)]
    assert problems == []
    assert render(documents) == rendered  # deterministic
