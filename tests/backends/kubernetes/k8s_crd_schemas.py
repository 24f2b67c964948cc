"""JSON schemas for the CRD kinds mlkube renders, written from the CRDs' published OpenAPI.

kubernetes-validate ships only the built-in kinds. These schemas transcribe, for the fields
mlkube uses, the ``openAPIV3Schema`` of:

- ServiceMonitor, PrometheusRule: prometheus-operator
  ``example/prometheus-operator-crd/monitoring.coreos.com_{servicemonitors,prometheusrules}.yaml``
- ScaledObject: kedacore/keda ``config/crd/bases/keda.sh_scaledobjects.yaml`` (v1alpha1)
- VerticalPodAutoscaler: kubernetes/autoscaler
  ``vertical-pod-autoscaler/deploy/vpa-v1-crd-gen.yaml`` (v1)
- HTTPRoute: kubernetes-sigs/gateway-api
  ``config/crd/standard/gateway.networking.k8s.io_httproutes.yaml`` (v1), including the CEL
  rules that touch our fields (a Service backendRef needs a port; a path starts with "/"),
  which ``check_cel_rules`` applies in Python.
- PyTorchJob: kubeflow/training-operator ``manifests/base/crds/kubeflow.org_pytorchjobs.yaml``
  (v1; the version at commit 04538cc6b1339cba529b512e76e780bdf23c7938, controller-gen
  v0.6.0): ``spec.pytorchReplicaSpecs`` (a map of replica type to replicas, restartPolicy,
  template), ``spec.runPolicy`` and ``spec.elasticPolicy`` (listed, not used). Each replica's
  ``template`` is the CRD's expansion of core/v1 PodTemplateSpec; ``k8s_validation`` checks it
  against the official PodTemplateSpec schema of each Kubernetes version instead of a copy.

Every object is closed (``additionalProperties: false``) where the CRD lists its properties
(the API server prunes or, under server-side apply, rejects unknown fields there), so a typo
in the renderer fails here.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
PROM_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _closed(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_QUANTITY: Schema = {
    "anyOf": [{"type": "integer"}, {"type": "string", "pattern": QUANTITY_PATTERN}]
}
_METADATA: Schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "namespace": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    "required": ["name", "namespace"],
}
_LABEL_SELECTOR: Schema = _closed(
    {
        "matchLabels": _STRING_MAP,
        "matchExpressions": {"type": "array", "items": {"type": "object"}},
    }
)
_SCALING_RULES: Schema = _closed(
    {
        "policies": {
            "type": "array",
            "items": _closed(
                {
                    "type": {"type": "string"},
                    "value": {"type": "integer"},
                    "periodSeconds": {"type": "integer"},
                },
                ("periodSeconds", "type", "value"),
            ),
        },
        "selectPolicy": {"type": "string"},
        "stabilizationWindowSeconds": {"type": "integer"},
    }
)


_RELABEL: Schema = _closed(
    {
        "action": {
            "enum": [
                "replace",
                "Replace",
                "keep",
                "Keep",
                "drop",
                "Drop",
                "hashmod",
                "HashMod",
                "labelmap",
                "LabelMap",
                "labeldrop",
                "LabelDrop",
                "labelkeep",
                "LabelKeep",
                "lowercase",
                "Lowercase",
                "uppercase",
                "Uppercase",
                "keepequal",
                "KeepEqual",
                "dropequal",
                "DropEqual",
            ]
        },
        "sourceLabels": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[a-zA-Z_][a-zA-Z0-9_]*$"},
        },
        "targetLabel": {"type": "string"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "separator": {"type": "string"},
        "modulus": {"type": "integer"},
    }
)


def _document(api_version: str, kind: str, spec: Schema) -> Schema:
    return _closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


SERVICE_MONITOR = _document(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _closed(
        {
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": _closed(
                {"any": {"type": "boolean"}, "matchNames": {"type": "array"}}
            ),
            "jobLabel": {"type": "string"},
            "endpoints": {
                "type": "array",
                "items": _closed(
                    {
                        "port": {"type": "string"},
                        "targetPort": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "path": {"type": "string"},
                        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                        "interval": {"type": "string", "pattern": PROM_DURATION},
                        "scrapeTimeout": {"type": "string", "pattern": PROM_DURATION},
                        "relabelings": {"type": "array", "items": _RELABEL},
                    }
                ),
            },
        },
        ("selector",),
    ),
)

PROMETHEUS_RULE = _document(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    _closed(
        {
            "groups": {
                "type": "array",
                "items": _closed(
                    {
                        "name": {"type": "string", "minLength": 1},
                        "interval": {"type": "string", "pattern": PROM_DURATION},
                        "limit": {"type": "integer"},
                        "partial_response_strategy": {"type": "string"},
                        "labels": _STRING_MAP,
                        "query_offset": {"type": "string", "pattern": PROM_DURATION},
                        "rules": {
                            "type": "array",
                            "items": _closed(
                                {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                                    "for": {"type": "string", "pattern": PROM_DURATION},
                                    "keep_firing_for": {
                                        "type": "string",
                                        "minLength": 1,
                                        "pattern": PROM_DURATION,
                                    },
                                    "labels": _STRING_MAP,
                                    "annotations": _STRING_MAP,
                                },
                                ("expr",),
                            ),
                        },
                    },
                    ("name",),
                ),
            }
        }
    ),
)

SCALED_OBJECT = _document(
    "keda.sh/v1alpha1",
    "ScaledObject",
    _closed(
        {
            "scaleTargetRef": _closed(
                {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string"},
                    "envSourceContainerName": {"type": "string"},
                },
                ("name",),
            ),
            "pollingInterval": {"type": "integer"},
            "cooldownPeriod": {"type": "integer"},
            "initialCooldownPeriod": {"type": "integer"},
            "idleReplicaCount": {"type": "integer"},
            "minReplicaCount": {"type": "integer"},
            "maxReplicaCount": {"type": "integer"},
            "fallback": _closed(
                {"failureThreshold": {"type": "integer"}, "replicas": {"type": "integer"}},
                ("failureThreshold", "replicas"),
            ),
            "advanced": _closed(
                {
                    "horizontalPodAutoscalerConfig": _closed(
                        {
                            "name": {"type": "string"},
                            "behavior": _closed(
                                {"scaleUp": _SCALING_RULES, "scaleDown": _SCALING_RULES}
                            ),
                        }
                    ),
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                }
            ),
            "triggers": {
                "type": "array",
                "items": _closed(
                    {
                        "type": {"type": "string"},
                        "name": {"type": "string"},
                        "metricType": {"enum": ["Value", "AverageValue", "Utilization"]},
                        "useCachedMetrics": {"type": "boolean"},
                        "metadata": _STRING_MAP,
                        "authenticationRef": _closed(
                            {"kind": {"type": "string"}, "name": {"type": "string"}}, ("name",)
                        ),
                    },
                    ("metadata", "type"),
                ),
            },
        },
        ("scaleTargetRef", "triggers"),
    ),
)

VERTICAL_POD_AUTOSCALER = _document(
    "autoscaling.k8s.io/v1",
    "VerticalPodAutoscaler",
    _closed(
        {
            "targetRef": _closed(
                {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "name": {"type": "string"},
                },
                ("kind", "name"),
            ),
            "updatePolicy": _closed(
                {
                    "updateMode": {
                        "enum": ["Off", "Initial", "Recreate", "Auto", "InPlaceOrRecreate"]
                    },
                    "minReplicas": {"type": "integer"},
                }
            ),
            "resourcePolicy": _closed(
                {
                    "containerPolicies": {
                        "type": "array",
                        "items": _closed(
                            {
                                "containerName": {"type": "string"},
                                "mode": {"enum": ["Auto", "Off"]},
                                "minAllowed": {
                                    "type": "object",
                                    "additionalProperties": _QUANTITY,
                                },
                                "maxAllowed": {
                                    "type": "object",
                                    "additionalProperties": _QUANTITY,
                                },
                                "controlledResources": {
                                    "type": "array",
                                    "items": {"enum": ["cpu", "memory"]},
                                },
                                "controlledValues": {"enum": ["RequestsAndLimits", "RequestsOnly"]},
                            }
                        ),
                    }
                }
            ),
        },
        ("targetRef",),
    ),
)

_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+\-.^_\x60|~]+$"
HTTP_ROUTE = _document(
    "gateway.networking.k8s.io/v1",
    "HTTPRoute",
    _closed(
        {
            "parentRefs": {
                "type": "array",
                "maxItems": 32,
                "items": _closed(
                    {
                        "group": {
                            "type": "string",
                            "maxLength": 253,
                            "pattern": r"^$|" + DNS_SUBDOMAIN,
                        },
                        "kind": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 63,
                            "pattern": r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$",
                        },
                        "name": {"type": "string", "minLength": 1, "maxLength": 253},
                        "namespace": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 63,
                            "pattern": DNS_LABEL,
                        },
                        "sectionName": {"type": "string", "pattern": DNS_SUBDOMAIN},
                        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    },
                    ("name",),
                ),
            },
            "hostnames": {"type": "array", "maxItems": 16, "items": {"type": "string"}},
            "rules": {
                "type": "array",
                "minItems": 1,
                "maxItems": 16,
                "items": _closed(
                    {
                        "name": {"type": "string", "pattern": DNS_LABEL},
                        "matches": {
                            "type": "array",
                            "maxItems": 64,
                            "items": _closed(
                                {
                                    "path": _closed(
                                        {
                                            "type": {
                                                "enum": [
                                                    "Exact",
                                                    "PathPrefix",
                                                    "RegularExpression",
                                                ]
                                            },
                                            "value": {"type": "string", "maxLength": 1024},
                                        }
                                    ),
                                    "headers": {
                                        "type": "array",
                                        "maxItems": 16,
                                        "items": _closed(
                                            {
                                                "type": {"enum": ["Exact", "RegularExpression"]},
                                                "name": {
                                                    "type": "string",
                                                    "minLength": 1,
                                                    "maxLength": 256,
                                                    "pattern": _HEADER_NAME,
                                                },
                                                "value": {
                                                    "type": "string",
                                                    "minLength": 1,
                                                    "maxLength": 4096,
                                                },
                                            },
                                            ("name", "value"),
                                        ),
                                    },
                                    "method": {"type": "string"},
                                }
                            ),
                        },
                        "backendRefs": {
                            "type": "array",
                            "maxItems": 16,
                            "items": _closed(
                                {
                                    "group": {"type": "string", "maxLength": 253},
                                    "kind": {"type": "string", "minLength": 1, "maxLength": 63},
                                    "name": {"type": "string", "minLength": 1, "maxLength": 253},
                                    "namespace": {"type": "string", "pattern": DNS_LABEL},
                                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                                    "weight": {
                                        "type": "integer",
                                        "minimum": 0,
                                        "maximum": 1000000,
                                    },
                                },
                                ("name",),
                            ),
                        },
                    }
                ),
            },
        }
    ),
)

_PYTORCH_REPLICA: Schema = _closed(
    {
        "replicas": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
        # "One of Always, OnFailure, Never and ExitCode. Default to Never." (a string in the
        # CRD; the operator's validation refuses anything else)
        "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
        "template": {"type": "object"},  # PodTemplateSpec: checked by k8s_validation
    }
)
PYTORCH_JOB = _document(
    "kubeflow.org/v1",
    "PyTorchJob",
    _closed(
        {
            "elasticPolicy": {"type": "object"},
            "pytorchReplicaSpecs": {
                "type": "object",
                # the operator accepts the replica types Master and Worker only
                "propertyNames": {"enum": ["Master", "Worker"]},
                "additionalProperties": _PYTORCH_REPLICA,
            },
            "runPolicy": _closed(
                {
                    "activeDeadlineSeconds": {"type": "integer"},
                    "backoffLimit": {"type": "integer"},
                    "cleanPodPolicy": {"type": "string"},
                    "schedulingPolicy": _closed(
                        {
                            "minAvailable": {"type": "integer"},
                            "minResources": {"type": "object", "additionalProperties": _QUANTITY},
                            "priorityClass": {"type": "string"},
                            "queue": {"type": "string"},
                        }
                    ),
                    "ttlSecondsAfterFinished": {"type": "integer"},
                }
            ),
        },
        ("pytorchReplicaSpecs",),
    ),
)

CRD_SCHEMAS: dict[tuple[str, str], Schema] = {
    ("kubeflow.org/v1", "PyTorchJob"): PYTORCH_JOB,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("autoscaling.k8s.io/v1", "VerticalPodAutoscaler"): VERTICAL_POD_AUTOSCALER,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTP_ROUTE,
}


def check_cel_rules(obj: dict[str, Any]) -> list[str]:
    """The HTTPRoute CEL validations (x-kubernetes-validations) that concern our fields."""
    problems: list[str] = []
    if obj["kind"] != "HTTPRoute":
        return problems
    for rule in obj["spec"].get("rules", []):
        for ref in rule.get("backendRefs", []):
            core = ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
            if core and "port" not in ref:
                problems.append(f"backendRef {ref['name']}: Must have port for Service")
        for match in rule.get("matches", []):
            path = match.get("path")
            if path and not path.get("value", "/").startswith("/"):
                problems.append("value must be an absolute path and start with '/'")
    return problems
