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
- Pipeline, PipelineRun (tekton.dev/v1): tektoncd/pipeline ``config/300-crds/300-pipeline.yaml``
  and ``300-pipelinerun.yaml`` (https://github.com/tektoncd/pipeline/tree/main/config/300-crds,
  generated from ``pkg/apis/pipeline/v1/*_types.go``). The CRD leaves a PipelineTask's
  ``taskSpec`` schemaless (``x-kubernetes-preserve-unknown-fields``), but Tekton's admission
  webhook decodes every Pipeline with unknown fields disallowed (``cmd/webhook/main.go``:
  "Whether to disallow unknown fields: true"), so ``TEKTON_TASK_SPEC`` closes it as the v1
  ``TaskSpec``/``Step`` types do (``task_types.go``, ``container_types.go``). A step's env,
  computeResources, securityContext and volumeMounts, and a taskSpec's volumes, are core/v1
  types: ``k8s_validation`` checks them against the official definitions.
- Workflow, CronWorkflow (argoproj.io/v1alpha1): argoproj/argo-workflows
  ``manifests/base/crds/full/argoproj.io_{workflows,cronworkflows}.yaml``
  (https://github.com/argoproj/argo-workflows/tree/main/manifests/base/crds/full, generated
  from ``pkg/apis/workflow/v1alpha1/workflow_types.go`` and ``cron_workflow_types.go``). The
  "full" CRDs are structural, so the API server prunes unknown fields everywhere; the
  default install's "minimal" CRDs preserve them and leave checking to the controller, so
  these schemas are the stricter of the two. A template's ``container`` and ``volumes`` and
  the pod-level fields are core/v1 types, checked by ``k8s_validation``. ``schedules`` (a list)
  replaced the single ``schedule`` in Argo 3.6 and is the only form in 4.0
  (``docs/deprecations.md``).

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

# --- Tekton (tekton.dev/v1) --------------------------------------------------------------------
GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
"""``metav1.Duration``: a string the webhook parses with Go's ``time.ParseDuration``."""
_ANY: Schema = {}
"""``x-kubernetes-preserve-unknown-fields`` with no type (a param's value: string, array or
object)."""
_CORE: Schema = {"type": "object"}
"""A core/v1 type embedded as is; ``k8s_validation`` checks it against the official schema."""
_STRINGS: Schema = {"type": "array", "items": {"type": "string"}}
_TEKTON_PARAM: Schema = _closed({"name": {"type": "string"}, "value": _ANY}, ("name", "value"))
_TEKTON_PARAM_SPEC: Schema = _closed(
    {
        "default": _ANY,
        "description": {"type": "string"},
        "enum": _STRINGS,
        "name": {"type": "string"},
        "properties": {
            "type": "object",
            "additionalProperties": _closed({"type": {"type": "string"}}),
        },
        "type": {"enum": ["string", "array", "object"]},
    },
    ("name",),
)
_TEKTON_RESULT: Schema = _closed(
    {
        "description": {"type": "string"},
        "name": {"type": "string"},
        "properties": {
            "type": "object",
            "additionalProperties": _closed({"type": {"type": "string"}}),
        },
        "type": {"enum": ["string", "array", "object"]},
        "value": _ANY,
    },
    ("name",),
)
_TEKTON_REF: Schema = _closed(
    {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "name": {"type": "string"},
        "params": {"type": "array", "items": _TEKTON_PARAM},
        "resolver": {"type": "string"},
    }
)
_TEKTON_WHEN: Schema = _closed(
    {
        "cel": {"type": "string"},
        "input": {"type": "string"},
        "operator": {"enum": ["in", "notin"]},
        "values": _STRINGS,
    }
)
_TEKTON_STEP: Schema = _closed(
    {
        "name": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
        "displayName": {"type": "string"},
        "image": {"type": "string"},
        "command": _STRINGS,
        "args": _STRINGS,
        "workingDir": {"type": "string"},
        "envFrom": {"type": "array", "items": _CORE},
        "env": {"type": "array", "items": _CORE},
        "computeResources": _CORE,
        "volumeMounts": {"type": "array", "items": _CORE},
        "volumeDevices": {"type": "array", "items": _CORE},
        "imagePullPolicy": {"enum": ["Always", "Never", "IfNotPresent"]},
        "securityContext": _CORE,
        "script": {"type": "string"},
        "timeout": {"type": "string", "pattern": GO_DURATION},
        "workspaces": {"type": "array", "items": {"type": "object"}},
        "onError": {"enum": ["continue", "stopAndFail"]},
        "stdoutConfig": _closed({"path": {"type": "string"}}),
        "stderrConfig": _closed({"path": {"type": "string"}}),
        "ref": _closed({"name": {"type": "string"}}),
        "params": {"type": "array", "items": _TEKTON_PARAM},
        "results": {"type": "array", "items": _TEKTON_RESULT},
        "when": {"type": "array", "items": _TEKTON_WHEN},
    },
    ("name",),
)
TEKTON_TASK_SPEC: Schema = _closed(
    {
        # EmbeddedTask: TypeMeta, a raw ``spec`` for custom tasks and PipelineTaskMetadata,
        # with TaskSpec inlined
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "spec": {"type": "object"},
        "metadata": _closed({"labels": _STRING_MAP, "annotations": _STRING_MAP}),
        "params": {"type": "array", "items": _TEKTON_PARAM_SPEC},
        "displayName": {"type": "string"},
        "description": {"type": "string"},
        "steps": {"type": "array", "minItems": 1, "items": _TEKTON_STEP},
        "volumes": {"type": "array", "items": _CORE},
        "stepTemplate": {"type": "object"},
        "sidecars": {"type": "array", "items": {"type": "object"}},
        "workspaces": {"type": "array", "items": {"type": "object"}},
        "results": {"type": "array", "items": _TEKTON_RESULT},
    }
)
_TEKTON_PIPELINE_TASK: Schema = _closed(
    {
        "description": {"type": "string"},
        "displayName": {"type": "string"},
        "matrix": {"type": "object"},
        # a PipelineTask name is a DNS label (pipeline_validation.go: validatePipelineTaskName)
        "name": {"type": "string", "pattern": DNS_LABEL, "maxLength": 63},
        "onError": {"enum": ["continue", "stopAndFail"]},
        "params": {"type": "array", "items": _TEKTON_PARAM},
        "pipelineRef": _TEKTON_REF,
        "pipelineSpec": {"type": "object"},
        "retries": {"type": "integer", "minimum": 0},
        "runAfter": _STRINGS,
        "taskRef": _TEKTON_REF,
        "taskSpec": TEKTON_TASK_SPEC,
        "timeout": {"type": "string", "pattern": GO_DURATION},
        "when": {"type": "array", "items": _TEKTON_WHEN},
        "workspaces": {
            "type": "array",
            "items": _closed(
                {
                    "name": {"type": "string"},
                    "subPath": {"type": "string"},
                    "workspace": {"type": "string"},
                },
                ("name",),
            ),
        },
    },
    ("name",),
)
TEKTON_PIPELINE = _document(
    "tekton.dev/v1",
    "Pipeline",
    _closed(
        {
            "description": {"type": "string"},
            "displayName": {"type": "string"},
            "finally": {"type": "array", "items": _TEKTON_PIPELINE_TASK},
            "params": {"type": "array", "items": _TEKTON_PARAM_SPEC},
            "results": {
                "type": "array",
                "items": _closed(
                    {
                        "description": {"type": "string"},
                        "name": {"type": "string"},
                        "type": {"type": "string"},
                        "value": _ANY,
                    },
                    ("name", "value"),
                ),
            },
            "tasks": {"type": "array", "minItems": 1, "items": _TEKTON_PIPELINE_TASK},
            "workspaces": {
                "type": "array",
                "items": _closed(
                    {
                        "description": {"type": "string"},
                        "name": {"type": "string"},
                        "optional": {"type": "boolean"},
                    },
                    ("name",),
                ),
            },
        }
    ),
)
_TEKTON_TIMEOUT: Schema = {"type": "string", "pattern": GO_DURATION}
_TEKTON_POD_TEMPLATE: Schema = _closed(
    {
        # pkg/apis/pipeline/pod/template.go: Template; the core/v1 parts are checked by
        # k8s_validation (securityContext, tolerations)
        "nodeSelector": _STRING_MAP,
        "env": {"type": "array", "items": _CORE},
        "tolerations": {"type": "array", "items": _CORE},
        "affinity": _CORE,
        "securityContext": _CORE,
        "volumes": {"type": "array", "items": _CORE},
        "runtimeClassName": {"type": "string"},
        "automountServiceAccountToken": {"type": "boolean"},
        "dnsPolicy": {"type": "string"},
        "dnsConfig": _CORE,
        "enableServiceLinks": {"type": "boolean"},
        "priorityClassName": {"type": "string"},
        "schedulerName": {"type": "string"},
        "imagePullSecrets": {"type": "array", "items": _CORE},
        "hostAliases": {"type": "array", "items": _CORE},
        "hostNetwork": {"type": "boolean"},
        "topologySpreadConstraints": {"type": "array", "items": _CORE},
    }
)
TEKTON_PIPELINE_RUN = _document(
    "tekton.dev/v1",
    "PipelineRun",
    _closed(
        {
            "managedBy": {"type": "string"},
            "params": {"type": "array", "items": _TEKTON_PARAM},
            "pipelineRef": _closed(
                {
                    "apiVersion": {"type": "string"},
                    "name": {"type": "string"},
                    "params": {"type": "array", "items": _TEKTON_PARAM},
                    "resolver": {"type": "string"},
                }
            ),
            "pipelineSpec": {"type": "object"},
            "status": {
                "enum": [
                    "Cancelled",
                    "CancelledRunFinally",
                    "StoppedRunFinally",
                    "PipelineRunPending",
                ]
            },
            "timeouts": _closed(
                {"pipeline": _TEKTON_TIMEOUT, "tasks": _TEKTON_TIMEOUT, "finally": _TEKTON_TIMEOUT}
            ),
            "taskRunTemplate": _closed(
                {"podTemplate": _TEKTON_POD_TEMPLATE, "serviceAccountName": {"type": "string"}}
            ),
            "workspaces": {"type": "array", "items": {"type": "object"}},
            "taskRunSpecs": {
                "type": "array",
                "items": _closed(
                    {
                        "pipelineTaskName": {"type": "string"},
                        "serviceAccountName": {"type": "string"},
                        "podTemplate": _TEKTON_POD_TEMPLATE,
                        "stepSpecs": {"type": "array", "items": {"type": "object"}},
                        "sidecarSpecs": {"type": "array", "items": {"type": "object"}},
                        "metadata": _closed({"labels": _STRING_MAP, "annotations": _STRING_MAP}),
                        "computeResources": _CORE,
                        "timeout": _TEKTON_TIMEOUT,
                    }
                ),
            },
        }
    ),
)

# --- Argo Workflows (argoproj.io/v1alpha1) ---------------------------------------------------
_INT_OR_STRING: Schema = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
_ARGO_VALUE_FROM: Schema = _closed(
    {
        "configMapKeyRef": _CORE,
        "default": {"type": "string"},
        "event": {"type": "string"},
        "expression": {"type": "string"},
        "jqFilter": {"type": "string"},
        "jsonPath": {"type": "string"},
        "parameter": {"type": "string"},
        "path": {"type": "string"},
        "supplied": {"type": "object"},
    }
)
_ARGO_PARAMETER: Schema = _closed(
    {
        "default": {"type": "string"},
        "description": {"type": "string"},
        "enum": _STRINGS,
        "globalName": {"type": "string"},
        "name": {"type": "string"},
        "value": {"type": "string"},
        "valueFrom": _ARGO_VALUE_FROM,
    },
    ("name",),
)
_ARGO_ARGUMENTS: Schema = _closed(
    {
        "artifacts": {"type": "array", "items": {"type": "object"}},
        "parameters": {"type": "array", "items": _ARGO_PARAMETER},
    }
)
_ARGO_DAG_TASK: Schema = _closed(
    {
        "arguments": _ARGO_ARGUMENTS,
        "continueOn": _closed({"error": {"type": "boolean"}, "failed": {"type": "boolean"}}),
        "dependencies": _STRINGS,
        "depends": {"type": "string"},
        "hooks": {"type": "object"},
        "inline": {"type": "object"},
        "name": {"type": "string"},
        "onExit": {"type": "string"},
        "template": {"type": "string"},
        "templateRef": {"type": "object"},
        "when": {"type": "string"},
        "withItems": {"type": "array"},
        "withParam": {"type": "string"},
        "withSequence": {"type": "object"},
    },
    ("name",),
)
_ARGO_RETRY: Schema = _closed(
    {
        "affinity": {"type": "object"},
        "backoff": _closed(
            {
                "cap": {"type": "string"},
                "duration": {"type": "string"},
                "factor": _INT_OR_STRING,
                "maxDuration": {"type": "string"},
            }
        ),
        "expression": {"type": "string"},
        "limit": _INT_OR_STRING,
        "retryPolicy": {"enum": ["Always", "OnFailure", "OnError", "OnTransientError"]},
    }
)
_ARGO_TEMPLATE: Schema = _closed(
    {
        "activeDeadlineSeconds": _INT_OR_STRING,
        "affinity": _CORE,
        "archiveLocation": {"type": "object"},
        "automountServiceAccountToken": {"type": "boolean"},
        "container": _CORE,  # core/v1 Container (name optional here)
        # ContainerSetTemplate: containers are core/v1 Containers plus ``dependencies``
        # (ContainerNode), checked by k8s_validation
        "containerSet": _closed(
            {
                "containers": {"type": "array", "minItems": 1, "items": _CORE},
                "retryStrategy": _closed(
                    {"duration": {"type": "string"}, "retries": _INT_OR_STRING}, ("retries",)
                ),
                "volumeMounts": {"type": "array", "items": _CORE},
            },
            ("containers",),
        ),
        "daemon": {"type": "boolean"},
        "dag": _closed(
            {
                "failFast": {"type": "boolean"},
                "target": {"type": "string"},
                "tasks": {"type": "array", "items": _ARGO_DAG_TASK},
            },
            ("tasks",),
        ),
        "data": {"type": "object"},
        "executor": _closed({"serviceAccountName": {"type": "string"}}),
        "failFast": {"type": "boolean"},
        "hostAliases": {"type": "array"},
        "http": {"type": "object"},
        "initContainers": {"type": "array"},
        "inputs": _closed(
            {
                "artifacts": {"type": "array", "items": {"type": "object"}},
                "parameters": {"type": "array", "items": _ARGO_PARAMETER},
            }
        ),
        "memoize": {"type": "object"},
        "metadata": _closed({"annotations": _STRING_MAP, "labels": _STRING_MAP}),
        "metrics": {"type": "object"},
        "name": {"type": "string"},
        "nodeSelector": _STRING_MAP,
        "outputs": _closed(
            {
                "artifacts": {"type": "array", "items": {"type": "object"}},
                "exitCode": {"type": "string"},
                "parameters": {"type": "array", "items": _ARGO_PARAMETER},
                "result": {"type": "string"},
            }
        ),
        "parallelism": {"type": "integer"},
        "plugin": {"type": "object"},
        "podSpecPatch": {"type": "string"},
        "priorityClassName": {"type": "string"},
        "resource": {"type": "object"},
        "retryStrategy": _ARGO_RETRY,
        "schedulerName": {"type": "string"},
        "script": {"type": "object"},
        "securityContext": _CORE,  # core/v1 PodSecurityContext
        "serviceAccountName": {"type": "string"},
        "sidecars": {"type": "array"},
        "steps": {"type": "array"},
        "suspend": {"type": "object"},
        "synchronization": {"type": "object"},
        "timeout": {"type": "string"},
        "tolerations": {"type": "array", "items": _CORE},
        "volumes": {"type": "array", "items": _CORE},
    }
)
ARGO_WORKFLOW_SPEC: Schema = _closed(
    {
        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
        "affinity": _CORE,
        "archiveLogs": {"type": "boolean"},
        "arguments": _ARGO_ARGUMENTS,
        "artifactGC": {"type": "object"},
        "artifactRepositoryRef": {"type": "object"},
        "automountServiceAccountToken": {"type": "boolean"},
        "dnsConfig": {"type": "object"},
        "dnsPolicy": {"type": "string"},
        "entrypoint": {"type": "string"},
        "executor": _closed({"serviceAccountName": {"type": "string"}}),
        "hooks": {"type": "object"},
        "hostAliases": {"type": "array"},
        "hostNetwork": {"type": "boolean"},
        "imagePullSecrets": {"type": "array"},
        "metrics": {"type": "object"},
        "nodeSelector": _STRING_MAP,
        "onExit": {"type": "string"},
        "parallelism": {"type": "integer"},
        "podDisruptionBudget": {"type": "object"},
        "podGC": _closed(
            {
                "deleteDelayDuration": {"type": "string"},
                "labelSelector": _LABEL_SELECTOR,
                "strategy": {
                    "enum": [
                        "OnPodCompletion",
                        "OnPodSuccess",
                        "OnWorkflowCompletion",
                        "OnWorkflowSuccess",
                    ]
                },
            }
        ),
        "podMetadata": _closed({"annotations": _STRING_MAP, "labels": _STRING_MAP}),
        "podPriorityClassName": {"type": "string"},
        "podSpecPatch": {"type": "string"},
        "priority": {"type": "integer"},
        "retryStrategy": _ARGO_RETRY,
        "schedulerName": {"type": "string"},
        "securityContext": _CORE,
        "serviceAccountName": {"type": "string"},
        "shutdown": {"type": "string"},
        "suspend": {"type": "boolean"},
        "synchronization": {"type": "object"},
        "templateDefaults": {"type": "object"},
        "templates": {"type": "array", "items": _ARGO_TEMPLATE},
        "tolerations": {"type": "array", "items": _CORE},
        "ttlStrategy": _closed(
            {
                "secondsAfterCompletion": {"type": "integer"},
                "secondsAfterFailure": {"type": "integer"},
                "secondsAfterSuccess": {"type": "integer"},
            }
        ),
        "volumeClaimGC": {"type": "object"},
        "volumeClaimTemplates": {"type": "array"},
        "volumes": {"type": "array", "items": _CORE},
        "workflowMetadata": {"type": "object"},
        "workflowTemplateRef": {"type": "object"},
    }
)
ARGO_WORKFLOW = _document("argoproj.io/v1alpha1", "Workflow", ARGO_WORKFLOW_SPEC)
ARGO_CRON_WORKFLOW = _document(
    "argoproj.io/v1alpha1",
    "CronWorkflow",
    _closed(
        {
            "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
            "failedJobsHistoryLimit": {"type": "integer", "minimum": 0},
            "schedules": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "startingDeadlineSeconds": {"type": "integer", "minimum": 0},
            "stopStrategy": _closed({"expression": {"type": "string"}}, ("expression",)),
            "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0},
            "suspend": {"type": "boolean"},
            "timezone": {"type": "string"},
            "when": {"type": "string"},
            "workflowMetadata": _closed({"annotations": _STRING_MAP, "labels": _STRING_MAP}),
            "workflowSpec": ARGO_WORKFLOW_SPEC,
        },
        ("schedules", "workflowSpec"),
    ),
)

CRD_SCHEMAS: dict[tuple[str, str], Schema] = {
    ("tekton.dev/v1", "Pipeline"): TEKTON_PIPELINE,
    ("tekton.dev/v1", "PipelineRun"): TEKTON_PIPELINE_RUN,
    ("argoproj.io/v1alpha1", "Workflow"): ARGO_WORKFLOW,
    ("argoproj.io/v1alpha1", "CronWorkflow"): ARGO_CRON_WORKFLOW,
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
