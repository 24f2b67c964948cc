"""A ``kind: Pipeline`` on a cluster: a Tekton Pipeline + PipelineRun, or an Argo Workflow.

Pure: no I/O. Which engine is the caller's to say (``engine_for``: what discovery found);
both get the same graph, built once here (``plan``):

- each job step is one pod of two containers run in order, sharing the output volume: the
  job's own (image, command, env, resources as ``render.jobs`` renders a TrainingJob's
  worker), then ``pipeline_steps outputs`` (the mlkube image), which reads ``metrics.json``
  and writes each declared output where the engine collects it (Tekton results in
  ``/tekton/results``; Argo output parameters from ``/mlkube/outputs`` of a containerSet's
  ``main`` container). On a claim (``output.claimName``) every run writes under
  ``<run name>/<step>``, so a registered model is ``pvc://CLAIM/<run>/<step>/<file>`` and its
  version is the run's name (there is no model registry on a cluster);
- a step's gates are one small task after it, ``pipeline_steps gate``, which fails with the
  reason; what depended on the step runs after its gates;
- the deploy step runs ``pipeline_steps deploy``: ``mlkube apply`` of the target
  ModelDeployment (from a ConfigMap) pointed at the new model, waiting for its rollout
  (a Canary's steps and analysis too), as a ServiceAccount whose Role allows exactly the
  verbs server-side apply and prune need on exactly the kinds that deployment renders;
- ``dependsOn`` is ``runAfter`` / ``dependencies``; ``{{steps.S.outputs.X}}`` and
  ``{{params.P}}`` become task parameters fed from Tekton results (Argo output parameters)
  and the pipeline's parameters; ``retries`` and ``timeout`` are the engine's own.

``mlkube apply`` starts one run named after a hash of what it runs (``<name>-<hash>``):
applying the same pipeline again starts no second run. With ``schedule`` it starts none;
a CronJob creates a PipelineRun on the schedule (``pipeline_steps trigger``), or Argo's
CronWorkflow a Workflow.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

import yaml

from mlkube.backends.kubernetes.errors import RenderError
from mlkube.backends.kubernetes.render.jobs import _placement
from mlkube.backends.kubernetes.render.manifest import (
    Manifest,
    kind_info,
    metadata,
    standard_labels,
)
from mlkube.spec.deployment import DEFAULT_IMAGE, ModelDeployment
from mlkube.spec.job import TrainingJob, TrainingJobSpec
from mlkube.spec.model import ModelFormat
from mlkube.spec.pipeline import (
    REFERENCE,
    DeployStep,
    Gate,
    Pipeline,
    PipelineStep,
    declared_outputs,
    step_job,
    topological_order,
)

Engine = Literal["tekton", "argo"]
TEKTON: Engine = "tekton"
ARGO: Engine = "argo"
STEPS_MODULE = "mlkube.backends.kubernetes.pipeline_steps"
"""The in-cluster commands (outputs, gate, deploy, trigger), run with the mlkube image."""
TOOLS_IMAGE = DEFAULT_IMAGE
OUTPUT_DIR = "/mnt/output"
TEKTON_RESULTS = "/tekton/results"
ARGO_OUTPUTS = "/mlkube/outputs"
CONFIG_DIR = "/etc/mlkube"
DEPLOYMENT_FILE = "deployment.yaml"
RUN_FILE = "run.yaml"
RUN_ENV = "MLKUBE_PIPELINE_RUN"
RUN_INPUT = "run"
DEPLOY_TIMEOUT_S = 600.0
"""How long the deploy step waits for the rollout when the step sets no timeout."""
COMPONENT = "pipeline"
DEPLOY_VERBS = ("get", "list", "patch", "create", "delete")
"""Server-side apply reads (get), creates (create) and patches (patch) each object; ``--wait``
and the held-Service check list Deployments; prune lists and deletes (``apply.py``)."""
TRIGGER_VERBS = ("get", "create", "patch")
"""The trigger server-side applies one PipelineRun: create (it is new) and patch."""
ARGO_EXECUTOR_RULE: Manifest = {
    "apiGroups": ["argoproj.io"],
    "resources": ["workflowtaskresults"],
    "verbs": ["create", "patch"],
}
"""What Argo's executor (the ``wait`` container) needs in every workflow pod to report its
outputs: https://argo-workflows.readthedocs.io/en/latest/workflow-rbac/"""
_RESULT_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SECURITY: Manifest = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


# --- engine choice ---------------------------------------------------------------------------
def engine_for(tekton_served: bool, argo_served: bool) -> tuple[Engine, str]:
    """The engine a cluster runs pipelines with, and why (one line). Tekton when its CRDs
    are served (the guide's CI/CD engine), else Argo; RenderError naming both when neither
    is. Pure."""
    if tekton_served:
        also = " (Argo Workflows is served too; Tekton is preferred)" if argo_served else ""
        return TEKTON, f"the cluster serves tekton.dev/v1 Pipelines{also}"
    if argo_served:
        return ARGO, "the cluster serves argoproj.io/v1alpha1 Workflows (no Tekton)"
    raise RenderError(
        "a Pipeline needs Tekton (tekton.dev/v1 pipelines) or Argo Workflows "
        "(argoproj.io/v1alpha1 workflows) on the cluster, and it serves neither: install one "
        "(mlkube doctor says what is served)"
    )


def engine_notes(documents: Sequence[object]) -> list[str]:
    """What ``mlkube render`` says about Pipelines: with no cluster to ask, Tekton. Pure."""
    return [
        f"pipeline '{d.metadata.name}': rendered for Tekton here; mlkube apply uses Argo "
        "Workflows when the cluster serves Argo and not Tekton"
        for d in documents
        if isinstance(d, Pipeline)
    ]


# --- the engine-neutral plan -----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Source:
    """Where a task's input comes from: a step's output, a pipeline parameter or the run."""

    kind: Literal["output", "param", "run"]
    step: str = ""
    name: str = ""


@dataclass(slots=True)
class Task:
    """One task of the graph (a pod): a job step, a step's gates, or the deploy."""

    name: str
    role: Literal["job", "gates", "deploy"]
    after: list[str]
    inputs: dict[str, Source]
    """Input name → where its value comes from (in the order used)."""
    containers: list[Manifest]
    """In run order; the last one writes the outputs (Argo collects them from ``main``)."""
    outputs: tuple[str, ...] = ()
    volumes: list[Manifest] = field(default_factory=list)
    retries: int = 0
    timeout_s: float | None = None
    pod: Manifest = field(default_factory=dict)
    """Pod-level fields: securityContext and placement."""
    service_account: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    pipeline: Pipeline
    tasks: tuple[Task, ...]
    deployment: ModelDeployment | None
    deploy_objects: tuple[Manifest, ...]
    """What the deploy step applies (its Role is computed from these)."""


def plan(pipeline: Pipeline, documents: Sequence[object]) -> Plan:
    """The graph of tasks for ``pipeline``; RenderError for what a cluster cannot run."""
    jobs = {
        d.metadata.name: d.spec
        for d in documents
        if isinstance(d, TrainingJob) and d.namespace == pipeline.namespace
    }
    by_name = {s.name: s for s in pipeline.spec.steps}
    gated = {s.name for s in pipeline.spec.steps if s.gates}
    tasks: list[Task] = []
    deployment: ModelDeployment | None = None
    deploy_objects: tuple[Manifest, ...] = ()
    for name in topological_order(pipeline.spec):
        step = by_name[name]
        after = [f"{d}-gates" if d in gated else d for d in step.depends_on]
        if step.deploy is not None:
            deployment, deploy_objects, task = _deploy_task(
                pipeline, step, step.deploy, after, documents, jobs
            )
            tasks.append(task)
            continue
        job = step_job(step, jobs)
        if job is None:  # the loader checked jobRef; a document list without it is a bug
            raise RenderError(f"pipeline '{pipeline.metadata.name}': step '{name}' has no job")
        tasks.append(_job_task(pipeline, step, job, after))
        if step.gates:
            tasks.append(_gates_task(pipeline, step))
    return Plan(pipeline, tuple(tasks), deployment, deploy_objects)


def _where(pipeline: Pipeline, step: PipelineStep) -> str:
    return f"pipeline '{pipeline.metadata.name}', step '{step.name}'"


def _job_task(
    pipeline: Pipeline, step: PipelineStep, job: TrainingJobSpec, after: list[str]
) -> Task:
    where = _where(pipeline, step)
    if job.workers > 1:
        raise RenderError(
            f"{where}: a pipeline step runs one worker on a cluster (the step is one pod); "
            "set workers: 1, or run the distributed job as a TrainingJob of its own"
        )
    outputs = declared_outputs(step, job)
    for output in outputs:
        if not _RESULT_NAME.match(output):
            raise RenderError(
                f"{where}: output '{output}' cannot be a Tekton result or Argo parameter name "
                "(letters, digits, '-', '_', '.'; start and end with a letter or digit)"
            )
    claim = job.output.claim_name
    if job.output.model is not None and claim is None:
        raise RenderError(
            f"{where}: the step registers model '{job.output.model.name}', which on a cluster "
            "is a file on a claim: set output.claimName (the run writes under <run>/<step>)"
        )
    inputs: dict[str, Source] = {RUN_INPUT: Source("run")}
    args = [_substitute(text, inputs) for text in job.run.args]
    env = [{"name": k, "value": _substitute(v, inputs)} for k, v in sorted(job.env.items())]
    entry = ["-m", job.run.module] if job.run.module is not None else [job.run.script or ""]
    env += [
        {"name": RUN_ENV, "value": _input_ref(RUN_INPUT)},
        {"name": "MLKUBE_OUTPUT_DIR", "value": OUTPUT_DIR},
        {"name": "MLKUBE_JOB_NAME", "value": f"{pipeline.metadata.name}-{step.name}"},
    ]
    output_mount: Manifest = {"name": "output", "mountPath": OUTPUT_DIR}
    if claim is not None:
        output_mount["subPathExpr"] = f"$({RUN_ENV})/{step.name}"
    mounts = [output_mount, {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - the pod's own
    worker: Manifest = {
        "name": "job",
        "image": job.run.image or DEFAULT_IMAGE,
        "imagePullPolicy": job.kubernetes.image_pull_policy,
        "command": ["python"],
        "args": [*entry, *args],
        "env": env,
    }
    resources = _resources(job)
    if resources:
        worker["resources"] = resources
    worker["securityContext"] = _SECURITY
    worker["volumeMounts"] = mounts
    collect = [
        "outputs",
        "--dir",
        OUTPUT_DIR,
        "--to",
        "@OUTPUTS@",  # the engine's output folder, set per engine
        "--metrics-file",
        job.metrics.file,
        "--step",
        step.name,
        "--run",
        _input_ref(RUN_INPUT),
    ]
    if step.outputs:
        collect += ["--metrics", ",".join(step.outputs)]
    if claim is not None:
        collect += ["--claim", claim]
    if job.output.model is not None:
        collect += ["--model", job.output.model.name, "--model-file", job.output.model.file]
    outputs_container: Manifest = {
        "name": "outputs",
        "image": TOOLS_IMAGE,
        "imagePullPolicy": job.kubernetes.image_pull_policy,
        "command": ["python", "-m", STEPS_MODULE],
        "args": collect,
        "resources": _TOOL_RESOURCES,
        "securityContext": _SECURITY,
        "volumeMounts": [{**output_mount, "readOnly": True}],
        "env": [{"name": RUN_ENV, "value": _input_ref(RUN_INPUT)}],
    }
    volumes: list[Manifest] = [
        {"name": "output", "persistentVolumeClaim": {"claimName": claim}}
        if claim is not None
        else {"name": "output", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    uid = job.kubernetes.run_as_user
    pod: Manifest = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **_placement(job.placement, job.resources),
    }
    timeout = step.timeout if step.timeout is not None else job.active_deadline_seconds
    return Task(
        name=step.name,
        role="job",
        after=after,
        inputs=inputs,
        containers=[worker, outputs_container],
        outputs=outputs,
        volumes=volumes,
        retries=step.retries,
        timeout_s=timeout,
        pod=pod,
        service_account=job.kubernetes.service_account_name,
    )


_TOOL_RESOURCES: Manifest = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"memory": "512Mi"},
}


def _resources(job: TrainingJobSpec) -> Manifest:
    requests = {key: q.text for key, q in sorted(job.resources.requests.items())}
    limits = {key: q.text for key, q in sorted(job.resources.limits.items())}
    return {
        **({"requests": requests} if requests else {}),
        **({"limits": limits} if limits else {}),
    }


def _gates_task(pipeline: Pipeline, step: PipelineStep) -> Task:
    inputs: dict[str, Source] = {}
    args = ["gate", "--step", step.name]
    for gate in step.gates:
        name = f"metric-{_slug(gate.metric)}"
        inputs.setdefault(name, Source("output", step.name, gate.metric))
        args += ["--check", _gate_text(gate), _input_ref(name)]
    return Task(
        name=f"{step.name}-gates",
        role="gates",
        after=[step.name],
        inputs=inputs,
        containers=[_tool_container("gate", args)],
        volumes=[],
        pod=_tool_pod(),
    )


def _gate_text(gate: Gate) -> str:
    """``accuracy>=0.95``: what ``pipeline_steps gate --check`` parses. A ``deployed``
    threshold is kept as the word (see the capability table: no registry on a cluster)."""
    value = gate.value if isinstance(gate.value, str) else repr(gate.value)
    return f"{gate.metric}{gate.op}{value}"


def _deploy_task(
    pipeline: Pipeline,
    step: PipelineStep,
    deploy: DeployStep,
    after: list[str],
    documents: Sequence[object],
    jobs: dict[str, TrainingJobSpec],
) -> tuple[ModelDeployment, tuple[Manifest, ...], Task]:
    where = _where(pipeline, step)
    target = deploy.deployment
    found = [
        d
        for d in documents
        if isinstance(d, ModelDeployment) and d.name == target and d.namespace == pipeline.namespace
    ]
    if not found:
        raise RenderError(
            f"{where}: deployment '{target}' is not among the files applied; on a cluster the "
            "deploy step applies that ModelDeployment's spec, so pass its file too "
            f"(mlkube apply PIPELINE.yaml DEPLOYMENT.yaml --target kubernetes)"
        )
    deployment = found[0]
    by_name = {s.name: s for s in pipeline.spec.steps}
    # the loader checked that exactly one upstream step registers the model
    source, model, claim = next(
        (s, j.output.model, j.output.claim_name or "")
        for s in _ancestors(pipeline, step.name)
        if (j := step_job(by_name[s], jobs)) is not None
        and j.output.model is not None
        and j.output.model.name == deploy.model
    )
    example = f"pvc://{claim}/RUN/{source}/{model.file}"
    deploy_objects = deploy_render(deployment, example, model.format.value)
    inputs = {"model-uri": Source("output", source, "modelUri")}
    timeout = step.timeout if step.timeout is not None else DEPLOY_TIMEOUT_S
    args = [
        "deploy",
        f"{CONFIG_DIR}/{DEPLOYMENT_FILE}",
        "--model-uri",
        _input_ref("model-uri"),
        "--format",
        model.format.value,
        "--timeout",
        str(math.ceil(timeout)),
    ]
    container = _tool_container("deploy", args)
    container["volumeMounts"] = [
        {"name": "deployment", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own
    ]
    task = Task(
        name=step.name,
        role="deploy",
        after=after,
        inputs=inputs,
        containers=[container],
        volumes=[
            {"name": "deployment", "configMap": {"name": deploy_name(pipeline)}},
            {"name": "tmp", "emptyDir": {}},
        ],
        retries=step.retries,
        # the step's own deadline covers the wait plus starting the pod
        timeout_s=timeout + 120,
        pod=_tool_pod(),
        service_account=deploy_name(pipeline),
    )
    return deployment, deploy_objects, task


def _ancestors(pipeline: Pipeline, name: str) -> list[str]:
    by_name = {s.name: s for s in pipeline.spec.steps}
    seen: list[str] = []
    stack = list(by_name[name].depends_on)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.append(current)
            stack.extend(by_name[current].depends_on)
    return sorted(seen)


def deploy_render(deployment: ModelDeployment, uri: str, fmt: str) -> tuple[Manifest, ...]:
    """The objects the deploy step's ``mlkube apply`` makes: the deployment pointed at a
    model like the pipeline's (a claim path). Pure; RenderError for cluster-scoped kinds,
    which a namespaced Role cannot grant."""
    # documents imports this module (render dispatches Pipelines here): import it late
    from mlkube.backends.kubernetes.render.documents import render_deployment

    pointed = with_model(deployment, uri, fmt)
    objects = render_deployment(pointed).objects
    cluster_scoped = sorted({o["kind"] for o in objects if not kind_info(o["kind"]).namespaced})
    if cluster_scoped:
        raise RenderError(
            f"deployment '{deployment.name}': the pipeline's deploy step runs in the namespace "
            f"with a namespaced Role, and this deployment renders {', '.join(cluster_scoped)} "
            "(cluster-scoped); apply those yourself once (e.g. createNamespace: false)"
        )
    return tuple(objects)


def with_model(deployment: ModelDeployment, uri: str, fmt: str) -> ModelDeployment:
    """``deployment`` serving the model at ``uri`` (format ``fmt``). Pure."""
    model = deployment.spec.model.model_copy(update={"uri": uri, "format": ModelFormat(fmt)})
    spec = deployment.spec.model_copy(update={"model": model})
    return deployment.model_copy(update={"spec": spec})


def _tool_container(name: str, args: list[str]) -> Manifest:
    return {
        "name": name,
        "image": TOOLS_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", STEPS_MODULE],
        "args": args,
        "resources": _TOOL_RESOURCES,
        "securityContext": _SECURITY,
    }


def _tool_pod() -> Manifest:
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    }


# --- references ------------------------------------------------------------------------------
_INPUT = "\x00input:{}\x00"
"""A placeholder for an input reference, made engine-specific by ``_engine_text``."""


def _input_ref(name: str) -> str:
    return _INPUT.format(name)


def _substitute(text: str, inputs: dict[str, Source]) -> str:
    """``text`` with each ``{{steps.S.outputs.X}}`` / ``{{params.P}}`` turned into an input
    placeholder (one input per distinct reference)."""

    def replace(match: re.Match[str]) -> str:
        ref = match.group(1)
        parts = ref.split(".")
        if parts[0] == "params":
            source = Source("param", name=parts[1])
        else:
            source = Source("output", parts[1], ".".join(parts[3:]))
        for name, known in inputs.items():
            if known == source:
                return _input_ref(name)
        name = f"ref-{sum(1 for n in inputs if n.startswith('ref-'))}"
        inputs[name] = source
        return _input_ref(name)

    return REFERENCE.sub(replace, text)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"


def _engine_text(value: object, engine: Engine, outputs_dir: str) -> object:
    """Placeholders in ``value`` (recursively) in the engine's syntax."""
    if isinstance(value, str):
        text = value.replace("@OUTPUTS@", outputs_dir)
        form = "$(params.{})" if engine == TEKTON else "{{{{inputs.parameters.{}}}}}"
        return re.sub("\x00input:([^\x00]+)\x00", lambda m: form.format(m.group(1)), text)
    if isinstance(value, list):
        return [_engine_text(v, engine, outputs_dir) for v in value]
    if isinstance(value, dict):
        return {k: _engine_text(v, engine, outputs_dir) for k, v in value.items()}
    return value


def _engine_manifest(obj: Manifest, engine: Engine, outputs_dir: str) -> Manifest:
    return cast(Manifest, _engine_text(obj, engine, outputs_dir))


def _source_text(source: Source, engine: Engine) -> str:
    if engine == TEKTON:
        if source.kind == "run":
            return "$(context.pipelineRun.name)"
        if source.kind == "param":
            return f"$(params.{source.name})"
        return f"$(tasks.{source.step}.results.{source.name})"
    if source.kind == "run":
        return "{{workflow.name}}"
    if source.kind == "param":
        return f"{{{{workflow.parameters.{source.name}}}}}"
    return f"{{{{tasks.{source.step}.outputs.parameters.{source.name}}}}}"


# --- names and shared objects ----------------------------------------------------------------
def deploy_name(pipeline: Pipeline) -> str:
    """The deploy step's ServiceAccount, Role, RoleBinding and ConfigMap."""
    return f"{pipeline.metadata.name}-deploy"


def trigger_name(pipeline: Pipeline) -> str:
    return f"{pipeline.metadata.name}-trigger"


def steps_account(pipeline: Pipeline) -> str:
    """Argo: the ServiceAccount of the other steps (the executor's permission only)."""
    return f"{pipeline.metadata.name}-steps"


def _labels(pipeline: Pipeline) -> dict[str, str]:
    return standard_labels(pipeline.metadata.name, COMPONENT, dict(pipeline.metadata.labels))


def _meta(pipeline: Pipeline, name: str) -> Manifest:
    return metadata(name, pipeline.namespace, _labels(pipeline))


def role_rules(objects: Sequence[Manifest]) -> list[Manifest]:
    """One rule per API group: ``DEPLOY_VERBS`` on exactly the kinds among ``objects``. Pure."""
    groups: dict[str, set[str]] = {}
    for obj in objects:
        info = kind_info(obj["kind"])
        group = info.api_version.rpartition("/")[0]
        groups.setdefault(group, set()).add(info.plural)
    return [
        {"apiGroups": [group], "resources": sorted(plurals), "verbs": list(DEPLOY_VERBS)}
        for group, plurals in sorted(groups.items())
    ]


def _account_objects(pipeline: Pipeline, name: str, rules: list[Manifest]) -> list[Manifest]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(pipeline, name)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(pipeline, name),
            "rules": rules,
        },
        _binding(pipeline, name, name, [name]),
    ]


def _binding(pipeline: Pipeline, name: str, role: str, accounts: list[str]) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(pipeline, name),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": a, "namespace": pipeline.namespace} for a in accounts
        ],
    }


def deployment_document(deployment: ModelDeployment) -> Manifest:
    """The ModelDeployment as the deploy step reads it from its ConfigMap. Pure."""
    data: Manifest = deployment.model_dump(by_alias=True, mode="json", exclude_defaults=True)
    return {"apiVersion": deployment.api_version, "kind": deployment.kind, **data}


def _deploy_objects(p: Plan) -> list[Manifest]:
    if p.deployment is None:
        return []
    pipeline = p.pipeline
    name = deploy_name(pipeline)
    text = yaml.safe_dump(deployment_document(p.deployment), sort_keys=True)
    config: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(pipeline, name),
        "data": {DEPLOYMENT_FILE: text},
    }
    return [*_account_objects(pipeline, name, role_rules(p.deploy_objects)), config]


# --- Tekton ----------------------------------------------------------------------------------
def tekton_pipeline(p: Plan) -> Manifest:
    """The ``tekton.dev/v1`` Pipeline: one PipelineTask per task, specs embedded."""
    tasks = []
    for task in p.tasks:
        body: Manifest = {"name": task.name}
        if task.after:
            body["runAfter"] = _run_after(task)
        if task.inputs:
            body["params"] = [
                {"name": n, "value": _source_text(s, TEKTON)} for n, s in task.inputs.items()
            ]
        if task.retries:
            body["retries"] = task.retries
        if task.timeout_s is not None:
            body["timeout"] = f"{math.ceil(task.timeout_s)}s"
        steps = [_engine_manifest(c, TEKTON, TEKTON_RESULTS) for c in task.containers]
        for step in steps:
            if "resources" in step:
                step["computeResources"] = step.pop("resources")
        spec: Manifest = {}
        if task.inputs:
            spec["params"] = [{"name": n, "type": "string"} for n in task.inputs]
        if task.outputs:
            spec["results"] = [{"name": o, "type": "string"} for o in task.outputs]
        spec["steps"] = steps
        if task.volumes:
            spec["volumes"] = task.volumes
        body["taskSpec"] = spec
        tasks.append(body)
    spec = {"tasks": tasks}
    if p.pipeline.spec.parameters:
        spec = {
            "params": [
                {"name": k, "type": "string", "default": v}
                for k, v in sorted(p.pipeline.spec.parameters.items())
            ],
            **spec,
        }
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "Pipeline",
        "metadata": _meta(p.pipeline, p.pipeline.metadata.name),
        "spec": spec,
    }


def _run_after(task: Task) -> list[str]:
    """``after`` plus every task whose output the task reads (Tekton orders by both; listing
    them keeps the order in one place)."""
    sources = [s.step for s in task.inputs.values() if s.kind == "output"]
    return list(dict.fromkeys([*task.after, *sources]))


def tekton_run_spec(p: Plan) -> Manifest:
    """The PipelineRun's spec: the pipeline, its timeout, each task's account and pod."""
    spec: Manifest = {"pipelineRef": {"name": p.pipeline.metadata.name}}
    if p.pipeline.spec.timeout is not None:
        spec["timeouts"] = {"pipeline": f"{math.ceil(p.pipeline.spec.timeout)}s"}
    task_specs = []
    for task in p.tasks:
        one: Manifest = {"pipelineTaskName": task.name}
        pod = dict(task.pod)
        if task.service_account is not None:
            one["serviceAccountName"] = task.service_account
        if task.role != "deploy":
            # only the deploy step talks to the API server (as a TrainingJob's pods, none)
            pod["automountServiceAccountToken"] = False
        one["podTemplate"] = pod
        task_specs.append(one)
    spec["taskRunSpecs"] = task_specs
    return spec


def tekton_objects(p: Plan) -> list[Manifest]:
    pipeline = p.pipeline
    objects = [*_deploy_objects(p), tekton_pipeline(p)]
    run_spec = tekton_run_spec(p)
    schedule = pipeline.spec.schedule
    if schedule is None:
        run = {
            "apiVersion": "tekton.dev/v1",
            "kind": "PipelineRun",
            "metadata": _meta(pipeline, run_name(pipeline, objects, run_spec)),
            "spec": run_spec,
        }
        return [*objects, run]
    template = {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": _meta(pipeline, pipeline.metadata.name),
        "spec": run_spec,
    }
    return [*objects, *_trigger_objects(pipeline, schedule, template)]


def run_name(pipeline: Pipeline, objects: Sequence[Manifest], run_spec: Manifest) -> str:
    """``<name>-<hash>``: the same pipeline (steps, deployment, run settings) gives the same
    name, so applying it again starts no second run. Pure."""
    text = json.dumps([list(objects), run_spec], sort_keys=True)
    return f"{pipeline.metadata.name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _trigger_objects(pipeline: Pipeline, schedule: str, template: Manifest) -> list[Manifest]:
    """A CronJob whose pod server-side applies the PipelineRun in ``template`` under a name
    of the scheduled minute (``pipeline_steps trigger``), as an account that may only do
    that."""
    name = trigger_name(pipeline)
    rules = [
        {"apiGroups": ["tekton.dev"], "resources": ["pipelineruns"], "verbs": list(TRIGGER_VERBS)}
    ]
    config: Manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(pipeline, name),
        "data": {RUN_FILE: yaml.safe_dump(template, sort_keys=True)},
    }
    container = _tool_container("trigger", ["trigger", f"{CONFIG_DIR}/{RUN_FILE}"])
    container["volumeMounts"] = [{"name": "run", "mountPath": CONFIG_DIR, "readOnly": True}]
    pod: Manifest = {
        "restartPolicy": "OnFailure",
        "serviceAccountName": name,
        **_tool_pod(),
        "containers": [container],
        "volumes": [{"name": "run", "configMap": {"name": name}}],
    }
    cron: Manifest = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(pipeline, pipeline.metadata.name),
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            # one trigger at a time; a missed schedule more than 5 minutes late is skipped
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": _labels(pipeline)},
                "spec": {
                    "backoffLimit": 3,
                    "template": {"metadata": {"labels": _labels(pipeline)}, "spec": pod},
                },
            },
        },
    }
    return [*_account_objects(pipeline, name, rules), config, cron]


# --- Argo ------------------------------------------------------------------------------------
def argo_workflow_spec(p: Plan) -> Manifest:
    """The WorkflowSpec: a ``pipeline`` DAG template over one template per task."""
    dag_tasks = []
    templates: list[Manifest] = []
    for task in p.tasks:
        entry: Manifest = {"name": task.name, "template": task.name}
        after = _run_after(task)
        if after:
            entry["dependencies"] = after
        if task.inputs:
            entry["arguments"] = {
                "parameters": [
                    {"name": n, "value": _source_text(s, ARGO)} for n, s in task.inputs.items()
                ]
            }
        dag_tasks.append(entry)
        templates.append(_argo_template(task))
    spec: Manifest = {"entrypoint": "pipeline", "serviceAccountName": steps_account(p.pipeline)}
    if p.pipeline.spec.parameters:
        spec["arguments"] = {
            "parameters": [
                {"name": k, "value": v} for k, v in sorted(p.pipeline.spec.parameters.items())
            ]
        }
    if p.pipeline.spec.timeout is not None:
        spec["activeDeadlineSeconds"] = math.ceil(p.pipeline.spec.timeout)
    spec["podGC"] = {"strategy": "OnWorkflowSuccess"}
    spec["templates"] = [{"name": "pipeline", "dag": {"tasks": dag_tasks}}, *templates]
    return spec


def _argo_template(task: Task) -> Manifest:
    template: Manifest = {"name": task.name}
    if task.inputs:
        template["inputs"] = {"parameters": [{"name": n} for n in task.inputs]}
    if task.outputs:
        template["outputs"] = {
            "parameters": [
                {"name": o, "valueFrom": {"path": f"{ARGO_OUTPUTS}/{o}"}} for o in task.outputs
            ]
        }
    containers = [_engine_manifest(c, ARGO, ARGO_OUTPUTS) for c in task.containers]
    volumes = list(task.volumes)
    if len(containers) == 1:
        (container,) = containers
        template["container"] = {k: v for k, v in container.items() if k != "name"}
    else:
        # a containerSet runs them in order in one pod; Argo collects outputs from the
        # container named main
        nodes = []
        previous: str | None = None
        for index, container in enumerate(containers):
            node = dict(container)
            if index == len(containers) - 1:
                node["name"] = "main"
                node["volumeMounts"] = [
                    *node.get("volumeMounts", []),
                    {"name": "outputs", "mountPath": ARGO_OUTPUTS},
                ]
            if previous is not None:
                node["dependencies"] = [previous]
            previous = node["name"]
            nodes.append(node)
        volumes.append({"name": "outputs", "emptyDir": {}})
        template["containerSet"] = {"containers": nodes}
    if volumes:
        template["volumes"] = volumes
    if task.retries:
        template["retryStrategy"] = {"limit": str(task.retries), "retryPolicy": "OnFailure"}
    if task.timeout_s is not None:
        template["activeDeadlineSeconds"] = math.ceil(task.timeout_s)
    if task.service_account is not None:
        template["serviceAccountName"] = task.service_account
    template.update(task.pod)
    return template


def argo_objects(p: Plan) -> list[Manifest]:
    pipeline = p.pipeline
    steps = steps_account(pipeline)
    executor = f"{pipeline.metadata.name}-argo-executor"
    accounts = [steps] + ([deploy_name(pipeline)] if p.deployment is not None else [])
    objects: list[Manifest] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(pipeline, steps)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(pipeline, executor),
            "rules": [ARGO_EXECUTOR_RULE],
        },
        _binding(pipeline, executor, executor, accounts),
        *_deploy_objects(p),
    ]
    spec = argo_workflow_spec(p)
    if pipeline.spec.schedule is None:
        name = run_name(pipeline, objects, spec)
        workflow = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": _meta(pipeline, name),
            "spec": spec,
        }
        return [*objects, workflow]
    cron = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "CronWorkflow",
        "metadata": _meta(pipeline, pipeline.metadata.name),
        "spec": {
            "schedules": [pipeline.spec.schedule],
            "timezone": "UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "workflowMetadata": {"labels": _labels(pipeline)},
            "workflowSpec": spec,
        },
    }
    return [*objects, cron]


def pipeline_objects(
    pipeline: Pipeline, documents: Sequence[object], engine: Engine = TEKTON
) -> list[Manifest]:
    """Every object of ``pipeline`` for ``engine``. Pure; RenderError when a cluster cannot
    run it as written."""
    p = plan(pipeline, documents)
    return tekton_objects(p) if engine == TEKTON else argo_objects(p)


def referenced_jobs(documents: Sequence[object]) -> set[tuple[str, str]]:
    """(namespace, name) of the TrainingJobs a Pipeline runs as a step (``jobRef``): they are
    rendered inside the pipeline, not as Jobs of their own. Pure."""
    return {
        (d.namespace, s.job_ref)
        for d in documents
        if isinstance(d, Pipeline)
        for s in d.spec.steps
        if s.job_ref is not None
    }


__all__ = [
    "ARGO",
    "TEKTON",
    "Engine",
    "engine_for",
    "engine_notes",
    "pipeline_objects",
    "referenced_jobs",
]
