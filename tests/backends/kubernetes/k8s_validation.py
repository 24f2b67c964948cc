"""Validation of rendered objects the way an API server would, offline.

Three layers:
1. built-in kinds: the official OpenAPI-derived JSON schemas of kubernetes-validate, strict
   mode (unknown fields fail), for every version in ``VERSIONS``;
2. CRD kinds: the schemas in ``k8s_crd_schemas`` (transcribed from the CRDs' OpenAPI);
3. ``semantic_problems``: rules the API server enforces in Go validation code that no JSON
   schema expresses (name formats, label syntax, selector ⊂ template labels, port-name length,
   HPA bounds, probe ports that exist, mounts of declared volumes).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
import kubernetes_validate
from k8s_crd_schemas import CRD_SCHEMAS, check_cel_rules
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

VERSIONS = tuple(f"1.{minor}.0" for minor in range(30, 38))
"""Kubernetes 1.30 through 1.37 (kubernetes-validate 1.37.0 ships all of them)."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_IANA_SVC = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_KINDS = {"Service"}
_LABEL_NAME_KINDS = {"Namespace"}


def validate(obj: dict[str, Any], version: str) -> list[str]:
    """Every problem a ``version`` API server would report for ``obj`` (empty: accepted)."""
    key = (obj["apiVersion"], obj["kind"])
    problems: list[str] = []
    if key in CRD_SCHEMAS:
        validator = jsonschema.Draft202012Validator(CRD_SCHEMAS[key])
        problems.extend(f"{e.json_path}: {e.message}" for e in validator.iter_errors(obj))
        problems.extend(check_cel_rules(obj))
    else:
        validator = builtin_validator(version, obj["apiVersion"], obj["kind"])
        problems.extend(f"{e.json_path}: {e.message}"[:500] for e in validator.iter_errors(obj))
    if obj["kind"] == "PyTorchJob":
        problems.extend(_replica_template_problems(obj, version))
    if obj["kind"] == "Pipeline":
        problems.extend(_tekton_pipeline_problems(obj, version))
    if obj["kind"] == "PipelineRun":
        for one in obj["spec"].get("taskRunSpecs", []):
            pod = one.get("podTemplate", {})
            where = f"taskRunSpecs.{one.get('pipelineTaskName')}.podTemplate"
            if "securityContext" in pod:
                problems.extend(
                    _core_problems(
                        f"{where}.securityContext",
                        pod["securityContext"],
                        "PodSecurityContext",
                        version,
                    )
                )
            for index, toleration in enumerate(pod.get("tolerations", [])):
                problems.extend(
                    _core_problems(
                        f"{where}.tolerations[{index}]", toleration, "Toleration", version
                    )
                )
    if obj["kind"] in ("Workflow", "CronWorkflow"):
        spec = obj["spec"] if obj["kind"] == "Workflow" else obj["spec"]["workflowSpec"]
        problems.extend(_argo_workflow_problems(spec, version))
    problems.extend(semantic_problems(obj))
    return [f"{obj['kind']}/{obj['metadata']['name']} ({version}): {p}" for p in problems]


def _replica_template_problems(obj: dict[str, Any], version: str) -> list[str]:
    """A PyTorchJob's pod templates, against the official PodTemplateSpec of ``version`` (the
    CRD's template schema is that type, expanded by controller-gen)."""
    validator = definition_validator(version, "io.k8s.api.core.v1.PodTemplateSpec")
    problems: list[str] = []
    for kind, replica in sorted(obj["spec"]["pytorchReplicaSpecs"].items()):
        template = replica.get("template", {})
        problems.extend(
            f"pytorchReplicaSpecs.{kind}.template{e.json_path[1:]}: {e.message}"[:500]
            for e in validator.iter_errors(template)
        )
        problems.extend(_pod_problems(template.get("spec", {})))
        names = [c["name"] for c in template.get("spec", {}).get("containers", [])]
        if "pytorch" not in names:
            problems.append(f"{kind}: the training-operator needs a container named pytorch")
    return problems


def _core_problems(where: str, value: Any, definition: str, version: str) -> list[str]:
    """``value`` against the official core/v1 ``definition`` of ``version`` (strict)."""
    validator = definition_validator(version, f"io.k8s.api.core.v1.{definition}")
    return [f"{where}{e.json_path[1:]}: {e.message}"[:500] for e in validator.iter_errors(value)]


_TEKTON_REF = re.compile(r"\$\((tasks|params)\.([^.)]+)(?:\.results\.([^.)]+))?\)")
_ARGO_REF = re.compile(
    r"\{\{(tasks|inputs|workflow)\.([^.}]+)\.(?:outputs\.)?parameters\.([^.}]+)\}\}"
)


def _tekton_pipeline_problems(obj: dict[str, Any], version: str) -> list[str]:
    """What Tekton's webhook checks beyond the schema (pipeline_validation.go): unique task
    names, runAfter and result references naming other tasks and declared results, params
    a task passes declared by its taskSpec; the core/v1 parts of each step against the
    official definitions."""
    problems: list[str] = []
    tasks = obj["spec"].get("tasks", []) + obj["spec"].get("finally", [])
    names = [t["name"] for t in tasks]
    if len(set(names)) != len(names):
        problems.append(f"pipeline task names must be unique: {names}")
    results = {
        t["name"]: {r["name"] for r in t.get("taskSpec", {}).get("results", [])} for t in tasks
    }
    pipeline_params = {p["name"] for p in obj["spec"].get("params", [])}
    for task in tasks:
        problems.extend(_tekton_task_problems(task, results, pipeline_params))
        problems.extend(_tekton_step_problems(task, version))
    return problems


def _tekton_task_problems(
    task: dict[str, Any], results: dict[str, set[str]], pipeline_params: set[str]
) -> list[str]:
    name = task["name"]
    problems = [
        f"{name}: runAfter names no other task: {after}"
        for after in task.get("runAfter", [])
        if after not in results or after == name
    ]
    declared = {p["name"] for p in task.get("taskSpec", {}).get("params", [])}
    for param in task.get("params", []):
        if param["name"] not in declared:
            problems.append(f"{name}: param {param['name']} is not declared by its taskSpec")
        for kind, ref, result in _TEKTON_REF.findall(str(param["value"])):
            if kind == "params" and ref not in pipeline_params:
                problems.append(f"{name}: $(params.{ref}) is not a pipeline param")
            if kind == "tasks" and result not in results.get(ref, set()):
                problems.append(f"{name}: $(tasks.{ref}.results.{result}) is not declared")
            if kind == "tasks" and ref not in task.get("runAfter", []):
                # Tekton orders by result references too; mlkube lists them in runAfter as
                # well, so that the order reads from one place
                problems.append(f"{name}: uses {ref}'s result without runAfter {ref}")
    return problems


def _tekton_step_problems(task: dict[str, Any], version: str) -> list[str]:
    spec = task.get("taskSpec", {})
    volumes = {v["name"] for v in spec.get("volumes", [])}
    problems: list[str] = []
    for index, volume in enumerate(spec.get("volumes", [])):
        problems.extend(
            _core_problems(f"{task['name']}.volumes[{index}]", volume, "Volume", version)
        )
    for step in spec.get("steps", []):
        where = f"{task['name']}.steps.{step['name']}"
        parts = [(f"{where}.env[{i}]", e, "EnvVar") for i, e in enumerate(step.get("env", []))]
        parts += [
            (f"{where}.volumeMounts[{i}]", m, "VolumeMount")
            for i, m in enumerate(step.get("volumeMounts", []))
        ]
        if "computeResources" in step:
            parts.append(
                (f"{where}.computeResources", step["computeResources"], "ResourceRequirements")
            )
        if "securityContext" in step:
            parts.append((f"{where}.securityContext", step["securityContext"], "SecurityContext"))
        for part in parts:
            problems.extend(_core_problems(*part, version))
        problems.extend(
            f"{where}: volumeMount {m['name']} names no volume"
            for m in step.get("volumeMounts", [])
            if m["name"] not in volumes
        )
        problems.extend(
            f"{where}: $(tasks.{ref}...) is not expanded in a step; pass it as a param"
            for kind, ref, _ in _TEKTON_REF.findall(" ".join(step.get("args", [])))
            if kind == "tasks"
        )
    return problems


def _argo_workflow_problems(spec: dict[str, Any], version: str) -> list[str]:
    """What the workflow controller's validation (workflow/validate/validate.go) checks
    beyond the schema for the fields mlkube renders: the entrypoint and every referenced
    template exist, DAG dependencies name tasks of the same DAG, a task's arguments are its
    template's inputs and output references name declared outputs of a dependency; the
    core/v1 parts against the official definitions."""
    problems: list[str] = []
    templates = {t["name"]: t for t in spec.get("templates", [])}
    if spec.get("entrypoint") not in templates:
        problems.append(f"entrypoint {spec.get('entrypoint')} names no template")
    if "securityContext" in spec:
        problems.extend(
            _core_problems(
                "securityContext", spec["securityContext"], "PodSecurityContext", version
            )
        )
    for name, template in templates.items():
        problems.extend(_argo_pod_problems(name, template, version))
        tasks = {t["name"]: t for t in template.get("dag", {}).get("tasks", [])}
        for task in tasks.values():
            problems.extend(_argo_task_problems(task, tasks, templates))
    return problems


def _argo_pod_problems(name: str, template: dict[str, Any], version: str) -> list[str]:
    problems: list[str] = []
    volumes = template.get("volumes", [])
    if "container" in template:
        container = {"name": "main", **template["container"]}
        problems.extend(_core_problems(f"{name}.container", container, "Container", version))
        mounts = {v["name"] for v in volumes}
        problems.extend(f"{name}: {p}" for p in _container_problems(container, mounts))
    seen: list[str] = []
    for node in template.get("containerSet", {}).get("containers", []):
        container = {k: v for k, v in node.items() if k != "dependencies"}
        where = f"{name}.containerSet.{node.get('name')}"
        problems.extend(_core_problems(where, container, "Container", version))
        mounts = {v["name"] for v in volumes}
        problems.extend(f"{where}: {p}" for p in _container_problems(container, mounts))
        problems.extend(
            f"{where}: dependency {d} is not an earlier container"
            for d in node.get("dependencies", [])
            if d not in seen
        )
        seen.append(node.get("name", ""))
    outputs = template.get("outputs", {}).get("parameters")
    if outputs and "containerSet" in template and "main" not in seen:
        problems.append(f"{name}: Argo collects a containerSet's outputs from 'main'")
    parts = [(f"{name}.volumes[{i}]", v, "Volume") for i, v in enumerate(volumes)]
    parts += [
        (f"{name}.tolerations[{i}]", t, "Toleration")
        for i, t in enumerate(template.get("tolerations", []))
    ]
    if "securityContext" in template:
        parts.append((f"{name}.securityContext", template["securityContext"], "PodSecurityContext"))
    for part in parts:
        problems.extend(_core_problems(*part, version))
    return problems


def _argo_task_problems(
    task: dict[str, Any], tasks: dict[str, dict[str, Any]], templates: dict[str, dict[str, Any]]
) -> list[str]:
    name = task["name"]
    target = templates.get(task.get("template", ""))
    if target is None:
        return [f"{name}: template {task.get('template')} does not exist"]
    problems = [
        f"{name}: dependency {dependency} is not a task"
        for dependency in task.get("dependencies", [])
        if dependency not in tasks or dependency == name
    ]
    inputs = {p["name"] for p in target.get("inputs", {}).get("parameters", [])}
    for param in task.get("arguments", {}).get("parameters", []):
        if param["name"] not in inputs:
            problems.append(f"{name}: argument {param['name']} is not an input")
        for kind, ref, output in _ARGO_REF.findall(param.get("value", "")):
            source = templates.get(tasks.get(ref, {}).get("template", ""), {})
            declared = {p["name"] for p in source.get("outputs", {}).get("parameters", [])}
            if kind == "tasks" and (
                output not in declared or ref not in task.get("dependencies", [])
            ):
                problems.append(f"{name}: tasks.{ref}...{output} is not an output of a dependency")
    return problems


@functools.lru_cache(maxsize=16)
def definition_validator(version: str, definition: str) -> jsonschema.Draft202012Validator:
    """The strict schema of one definition (e.g. PodTemplateSpec) of ``version``."""
    minor = ".".join(version.split(".")[:2])
    schema_dir = f"v{minor}.0-local-strict"
    definitions = schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    schema = {"$ref": f"{definitions['$id']}#/$defs/{definition}"}
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=256)
def builtin_validator(version: str, api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's strict schema for a kind and version, built once.

    Same files and validator class as ``kubernetes_validate.validate(..., strict=True)``, which
    re-reads the (large) definitions file on every call; this caches the compiled validator.
    """
    minor = ".".join(version.split(".")[:2])
    schema_dir = f"v{minor}.0-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json"
    schema = schema_contents(path, version)
    definitions = schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def official_validate(obj: dict[str, Any], version: str) -> None:
    """The package's own entry point, used by a test to prove the cache agrees with it."""
    kubernetes_validate.validate(obj, version, strict=True)


def semantic_problems(obj: dict[str, Any]) -> list[str]:
    """API-server validation rules beyond the schemas, for the kinds mlkube renders."""
    problems = _name_problems(obj)
    for key, value in obj["metadata"].get("labels", {}).items():
        problems.extend(_label_problems(key, value))
    kind = obj["kind"]
    if kind == "Deployment":
        problems.extend(_deployment_problems(obj))
    elif kind == "Job":
        problems.extend(_job_problems(obj))
    elif kind == "Service":
        problems.extend(_service_problems(obj))
    elif kind == "HorizontalPodAutoscaler":
        spec = obj["spec"]
        if spec.get("minReplicas", 1) < 1:
            problems.append("minReplicas must be at least 1 (HPAScaleToZero is alpha)")
        if spec["maxReplicas"] < spec.get("minReplicas", 1):
            problems.append("maxReplicas must not be less than minReplicas")
    elif kind == "ScaledObject":
        spec = obj["spec"]
        if spec.get("maxReplicaCount", 100) < spec.get("minReplicaCount", 0):
            problems.append("maxReplicaCount must not be less than minReplicaCount")
    elif kind == "PodDisruptionBudget":
        for key, value in obj["spec"]["selector"]["matchLabels"].items():
            problems.extend(_label_problems(key, value))
    return problems


def _name_problems(obj: dict[str, Any]) -> list[str]:
    name = obj["metadata"]["name"]
    kind = obj["kind"]
    if kind in _DNS_1035_KINDS:
        ok = bool(_DNS_1035.match(name)) and len(name) <= 63
        return [] if ok else [f"name '{name}' must be a DNS-1035 label"]
    if kind in _LABEL_NAME_KINDS or kind == "Deployment":
        ok = bool(_DNS_LABEL.match(name)) and len(name) <= 63
        return [] if ok else [f"name '{name}' must be a DNS-1123 label"]
    ok = bool(_DNS_SUBDOMAIN.match(name)) and len(name) <= 253
    return [] if ok else [f"name '{name}' must be a DNS-1123 subdomain"]


def _label_problems(key: str, value: str) -> list[str]:
    problems: list[str] = []
    prefix, _, name = key.rpartition("/")
    if prefix and (not _DNS_SUBDOMAIN.match(prefix) or len(prefix) > 253):
        problems.append(f"label key prefix '{prefix}' is not a DNS subdomain")
    if not _LABEL_NAME.match(name) or len(name) > 63:
        problems.append(f"label key '{key}' is not a qualified name")
    if value and (not _LABEL_NAME.match(value) or len(value) > 63):
        problems.append(f"label value '{value}' is not valid")
    return problems


def _deployment_problems(obj: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    spec = obj["spec"]
    template = spec["template"]
    labels = template["metadata"]["labels"]
    for key, value in labels.items():
        problems.extend(_label_problems(key, value))
    for key, value in spec["selector"]["matchLabels"].items():
        if labels.get(key) != value:
            problems.append(f"selector {key}={value} does not match the template labels")
    pod = template["spec"]
    volumes = {v["name"] for v in pod.get("volumes", [])}
    if len(volumes) != len(pod.get("volumes", [])):
        problems.append("volume names must be unique")
    for container in pod.get("initContainers", []) + pod["containers"]:
        problems.extend(_container_problems(container, volumes))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < 0:
        problems.append("terminationGracePeriodSeconds must be >= 0")
    return problems


def _pod_problems(pod: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    volumes = {v["name"] for v in pod.get("volumes", [])}
    if len(volumes) != len(pod.get("volumes", [])):
        problems.append("volume names must be unique")
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        problems.extend(_container_problems(container, volumes))
    subdomain = pod.get("subdomain")
    if subdomain is not None and (not _DNS_LABEL.match(subdomain) or len(subdomain) > 63):
        problems.append(f"subdomain '{subdomain}' must be a DNS-1123 label")
    return problems


def _job_problems(obj: dict[str, Any]) -> list[str]:
    """The Job validation rules (pkg/apis/batch/validation) for the fields mlkube sets."""
    spec = obj["spec"]
    template = spec["template"]
    pod = template["spec"]
    problems = _pod_problems(pod)
    for key, value in template.get("metadata", {}).get("labels", {}).items():
        problems.extend(_label_problems(key, value))
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append("template.spec.restartPolicy: Unsupported value (Never or OnFailure)")
    if "podFailurePolicy" in spec and pod.get("restartPolicy") != "Never":
        problems.append("podFailurePolicy: only allowed with restartPolicy Never")
    indexed = spec.get("completionMode") == "Indexed"
    if indexed and spec.get("completions") is None:
        problems.append("completions: Required value when completionMode is Indexed")
    if "backoffLimitPerIndex" in spec and not indexed:
        problems.append("backoffLimitPerIndex: requires completionMode Indexed")
    if "backoffLimitPerIndex" in spec and pod.get("restartPolicy") != "Never":
        problems.append("backoffLimitPerIndex: requires restartPolicy Never")
    if indexed and spec.get("completions", 0) > 100_000:
        problems.append("completions: must be at most 100000 when completionMode is Indexed")
    if spec.get("parallelism", 1) > spec.get("completions", spec.get("parallelism", 1)):
        problems.append("parallelism greater than completions starts pods that never finish")
    name = obj["metadata"]["name"]
    if indexed and len(f"{name}-{spec.get('completions', 1) - 1}") > 63:
        problems.append("pod hostnames <job>-<index> would exceed 63 characters")
    return problems


def _container_problems(container: dict[str, Any], volumes: set[str]) -> list[str]:
    problems: list[str] = []
    if not _DNS_LABEL.match(container["name"]):
        problems.append(f"container name '{container['name']}' must be a DNS label")
    ports = {p.get("name") for p in container.get("ports", [])}
    for port in container.get("ports", []):
        name = port.get("name")
        if name is not None and (len(name) > 15 or not _IANA_SVC.match(name)):
            problems.append(f"port name '{name}' must be an IANA_SVC_NAME (<= 15 chars)")
    problems.extend(
        f"volumeMount '{mount['name']}' names no volume"
        for mount in container.get("volumeMounts", [])
        if mount["name"] not in volumes
    )
    for probe_key in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = (container.get(probe_key) or {}).get("httpGet", {}).get("port")
        if isinstance(port, str) and port not in ports:
            problems.append(f"{probe_key} port '{port}' not declared")
    return problems


def _service_problems(obj: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    spec = obj["spec"]
    for port in spec["ports"]:
        if "nodePort" in port and spec.get("type") == "ClusterIP":
            problems.append("nodePort needs type NodePort or LoadBalancer")
        if not 30000 <= port.get("nodePort", 30000) <= 32767:
            problems.append(f"nodePort {port['nodePort']} outside 30000-32767")
        if len(spec["ports"]) > 1 and "name" not in port:
            problems.append("ports need names when there are several")
    for key, value in spec.get("selector", {}).items():
        problems.extend(_label_problems(key, value))
    return problems
