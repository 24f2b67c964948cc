"""``kind: Pipeline``: train → evaluate → gate → deploy, as a DAG of steps.

Each step is a job (an inline TrainingJob spec under ``job``, or ``jobRef`` naming a
TrainingJob in the same files) or the final ``deploy``. Steps pass values with one syntax,
``{{steps.STEP.outputs.NAME}}`` (and ``{{params.NAME}}`` for the pipeline's parameters),
written in a job's ``run.args`` and ``env`` values. Every reference is checked when the file
is loaded: an unknown step or output, a step used without depending on it, or a cycle is an
error naming the field.

Outputs of a job step: ``outputDir`` always; ``modelName``, ``modelVersion`` and ``modelUri``
(``models:/NAME/VERSION``) when it registers a model (``output.model``); and the metrics it
declares in ``outputs`` (numbers it writes to ``metrics.json`` in its output directory).

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from mlkube.spec.base import DNS_LABEL, Seconds, SpecModel
from mlkube.spec.cron import parse_cron
from mlkube.spec.deployment import API_VERSION, Metadata
from mlkube.spec.job import TrainingJobSpec, _JobDocument

MAX_STEPS = 50
MODEL_OUTPUTS = ("modelName", "modelVersion", "modelUri")
"""What a step that registers a model outputs, besides ``outputDir``."""
REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
"""``{{ ... }}`` in an argument or an environment value."""
_STEP_OUTPUT = re.compile(r"^steps\.([a-z0-9-]+)\.outputs\.([A-Za-z_][\w]*)$")
_PARAM = re.compile(r"^params\.([A-Za-z_][\w-]*)$")
_METRIC_NAME = r"^[A-Za-z_][\w.-]*$"

GateOp = Literal[">=", ">", "<=", "<", "=="]


class Gate(SpecModel):
    """A condition on a metric the step reported; the pipeline stops when it fails."""

    metric: Annotated[str, Field(pattern=_METRIC_NAME)]
    """A number in the step's `metrics.json` (e.g. accuracy)."""
    op: GateOp
    """>=, >, <=, < or ==."""
    value: float | Literal["deployed"]
    """A number, or `deployed`: the same metric of the model version the pipeline's deploy
    step's deployment serves now (the gate passes when it serves no registered version, or
    that version has no such metric)."""


class DeployStep(SpecModel):
    """Point a ModelDeployment at the new version and roll it out with its own strategy."""

    deployment: Annotated[str, Field(pattern=DNS_LABEL)]
    """The ModelDeployment (already running, in the pipeline's namespace)."""
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    """The registered model whose new version is deployed; a step this one depends on must
    register it (`output.model.name`)."""


class PipelineStep(SpecModel):
    """One node of the DAG: a job, or the deploy."""

    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=40)]
    """Unique in the pipeline; a DNS label."""
    depends_on: tuple[str, ...] = ()
    """Steps that must succeed first."""
    job: TrainingJobSpec | None = None
    """An inline TrainingJob spec (`output.path` is chosen by the runner per cache entry)."""
    job_ref: Annotated[str, Field(pattern=DNS_LABEL)] | None = None
    """The name of a TrainingJob defined in the same files (the pipeline's namespace)."""
    deploy: DeployStep | None = None
    """The deploy step: no job, just a rollout."""
    outputs: tuple[Annotated[str, Field(pattern=_METRIC_NAME)], ...] = ()
    """Metrics the job promises in its `metrics.json`; usable by later steps as
    `{{steps.NAME.outputs.METRIC}}`. A run missing one fails the step."""
    gates: tuple[Gate, ...] = ()
    """Conditions on this step's metrics; all must pass or the pipeline stops here."""
    retries: Annotated[int, Field(ge=0, le=10)] = 0
    """Runs after a failed one before the step fails."""
    timeout: Seconds | None = None
    """A run longer than this fails (and may be retried)."""
    cache: bool = True
    """Reuse a previous run's outputs when nothing the step depends on changed."""

    @model_validator(mode="after")
    def _one_action(self) -> PipelineStep:
        chosen = [n for n in ("job", "jobRef", "deploy") if self._get(n) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"step '{self.name}': set exactly one of job, jobRef or deploy"
                + (f" (found {', '.join(chosen)})" if chosen else "")
            )
        if self.deploy is not None and (self.gates or self.outputs):
            raise ValueError(f"step '{self.name}': a deploy step has no gates or outputs")
        return self

    def _get(self, alias: str) -> object:
        return {"job": self.job, "jobRef": self.job_ref, "deploy": self.deploy}[alias]


class PipelineSpec(SpecModel):
    """The steps and what starts a run."""

    steps: Annotated[tuple[PipelineStep, ...], Field(min_length=1, max_length=MAX_STEPS)]
    parameters: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][\w-]*$")], str] = Field(
        default_factory=dict
    )
    """Named values steps use as `{{params.NAME}}`."""
    timeout: Seconds | None = None
    """The whole run fails when it takes longer than this."""
    schedule: str | None = None
    """Cron (5 fields, e.g. `0 3 * * *`, or @daily): run on this schedule (UTC) while the
    pipeline is registered (`mlkube apply`)."""
    watch: tuple[str, ...] = ()
    """Local files or folders (relative to the spec file): a change starts a run."""

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
        return value

    @model_validator(mode="after")
    def _graph(self) -> PipelineSpec:
        problems = list(graph_problems(self))
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Pipeline(_JobDocument):
    """A pipeline: the top-level document of a spec file, beside its TrainingJobs."""

    api_version: Literal["mlkube.dev/v1alpha1"] = API_VERSION
    """Always `mlkube.dev/v1alpha1`."""
    kind: Literal["Pipeline"] = "Pipeline"
    """Always `Pipeline`."""
    metadata: Metadata
    spec: PipelineSpec

    def step(self, name: str) -> PipelineStep:
        return next(s for s in self.spec.steps if s.name == name)


def references(text: str) -> Iterator[str]:
    """The ``{{ ... }}`` expressions in ``text``."""
    for match in REFERENCE.finditer(text):
        yield match.group(1)


def step_texts(job: TrainingJobSpec) -> Iterator[tuple[str, str]]:
    """(field path, text) of every value of ``job`` that may hold references."""
    for index, arg in enumerate(job.run.args):
        yield f"run.args[{index}]", arg
    for key, value in job.env.items():
        yield f"env.{key}", value


def declared_outputs(step: PipelineStep, job: TrainingJobSpec | None) -> tuple[str, ...]:
    """The outputs later steps may use: outputDir, the model's when it registers one, and
    the declared metrics."""
    if step.deploy is not None:
        return ()
    model = MODEL_OUTPUTS if job is not None and job.output.model is not None else ()
    return ("outputDir", *model, *step.outputs)


def graph_problems(
    spec: PipelineSpec, jobs: Mapping[str, TrainingJobSpec] | None = None
) -> Iterator[str]:
    """What is wrong with the DAG, one line each: duplicate or unknown steps, cycles,
    references to steps not depended on or to outputs a step does not have, deploys of a
    model no upstream step registers, ``deployed`` gates without a deploy step.

    ``jobs``: the TrainingJobs ``jobRef`` may name; None skips what needs them (checked
    again by the loader once every file is read).
    """
    yield from _name_problems(spec)
    cycle = _cycle(spec)
    if cycle:
        yield "dependsOn forms a cycle: " + " -> ".join(cycle)
        return
    deploys = [s for s in spec.steps if s.deploy is not None]
    if len(deploys) > 1:
        yield f"only one deploy step is allowed, found {len(deploys)}"
    for index, step in enumerate(spec.steps):
        ancestors = upstream(spec, step.name)
        job = step_job(step, jobs)
        if job is not None:
            for path, text in step_texts(job):
                for ref in references(text):
                    problem = _reference_problem(spec, ref, ancestors, jobs)
                    if problem:
                        yield f"steps[{index}].job.{path}: {problem}"
        if step.deploy is not None:
            yield from _deploy_problems(spec, index, ancestors, jobs)
        for gate_index, gate in enumerate(step.gates):
            if gate.value == "deployed" and not deploys:
                yield (
                    f"steps[{index}].gates[{gate_index}].value: 'deployed' compares with the "
                    "deploy step's deployment, and the pipeline has no deploy step"
                )


def _name_problems(spec: PipelineSpec) -> Iterator[str]:
    names = [s.name for s in spec.steps]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield f"step '{name}' is defined twice"
    for index, step in enumerate(spec.steps):
        for dep in step.depends_on:
            if dep not in names:
                yield f"steps[{index}].dependsOn: no step named '{dep}'"
            elif dep == step.name:
                yield f"steps[{index}].dependsOn: step '{dep}' depends on itself"


def _deploy_problems(
    spec: PipelineSpec,
    index: int,
    ancestors: set[str],
    jobs: Mapping[str, TrainingJobSpec] | None,
) -> Iterator[str]:
    step = spec.steps[index]
    if step.deploy is None:
        return
    by_name = {s.name: s for s in spec.steps}
    registers = [
        a
        for a in ancestors
        if (j := step_job(by_name[a], jobs)) is not None
        and j.output.model is not None
        and j.output.model.name == step.deploy.model
    ]
    unknown = jobs is None and any(by_name[a].job_ref is not None for a in ancestors)
    if not registers and not unknown:
        yield (
            f"steps[{index}].deploy.model: no step '{step.name}' depends on registers "
            f"model '{step.deploy.model}' (output.model.name)"
        )
    if len(registers) > 1:
        yield (
            f"steps[{index}].deploy.model: steps {', '.join(sorted(registers))} all register "
            f"model '{step.deploy.model}'; which version to deploy is unclear"
        )


def step_job(
    step: PipelineStep, jobs: Mapping[str, TrainingJobSpec] | None
) -> TrainingJobSpec | None:
    """The job a step runs: inline, or the referenced one (None when unknown or a deploy)."""
    if step.job is not None:
        return step.job
    if step.job_ref is not None and jobs is not None:
        return jobs.get(step.job_ref)
    return None


def upstream(spec: PipelineSpec, name: str) -> set[str]:
    """Every step ``name`` depends on, directly or not."""
    by_name = {s.name: s for s in spec.steps}
    seen: set[str] = set()
    stack = list(by_name[name].depends_on) if name in by_name else []
    while stack:
        current = stack.pop()
        if current in seen or current not in by_name:
            continue
        seen.add(current)
        stack.extend(by_name[current].depends_on)
    return seen


def topological_order(spec: PipelineSpec) -> list[str]:
    """Step names, each after the steps it depends on; ties in file order."""
    order: list[str] = []
    done: set[str] = set()
    remaining = list(spec.steps)
    while remaining:
        ready = [s for s in remaining if all(d in done for d in s.depends_on)]
        if not ready:  # a cycle: the validator reports it; keep the rest in file order
            ready = remaining[:1]
        step = ready[0]
        order.append(step.name)
        done.add(step.name)
        remaining.remove(step)
    return order


def _cycle(spec: PipelineSpec) -> list[str]:
    by_name = {s.name: s for s in spec.steps}
    state: dict[str, int] = {}  # 1 on the path, 2 finished
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in by_name[name].depends_on:
            if dep not in by_name or dep == name:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return []

    for step in spec.steps:
        if step.name not in state:
            found = visit(step.name)
            if found:
                return found
    return []


def _reference_problem(
    spec: PipelineSpec,
    ref: str,
    ancestors: set[str],
    jobs: Mapping[str, TrainingJobSpec] | None,
) -> str | None:
    param = _PARAM.match(ref)
    if param:
        if param.group(1) not in spec.parameters:
            return f"{{{{{ref}}}}}: no parameter named '{param.group(1)}'"
        return None
    output = _STEP_OUTPUT.match(ref)
    if not output:
        return f"{{{{{ref}}}}}: expected {{{{steps.STEP.outputs.NAME}}}} or {{{{params.NAME}}}}"
    step_name, key = output.groups()
    by_name = {s.name: s for s in spec.steps}
    if step_name not in by_name:
        return f"{{{{{ref}}}}}: no step named '{step_name}'"
    if step_name not in ancestors:
        return f"{{{{{ref}}}}}: the step does not depend on '{step_name}' (add it to dependsOn)"
    source = by_name[step_name]
    if source.job_ref is not None and jobs is None:
        return None  # known once the referenced TrainingJob is loaded
    outputs = declared_outputs(source, step_job(source, jobs))
    if key not in outputs:
        have = ", ".join(outputs) if outputs else "none"
        return f"{{{{{ref}}}}}: step '{step_name}' has no output '{key}' (it has: {have})"
    return None


def cross_document_problems(
    pipeline: Pipeline, jobs: Mapping[str, TrainingJobSpec]
) -> list[tuple[str, str]]:
    """(field, problem) for what needs the other documents: ``jobRef`` names a TrainingJob
    of the pipeline's namespace that exists, and references to its outputs hold."""
    problems: list[tuple[str, str]] = []
    for index, step in enumerate(pipeline.spec.steps):
        if step.job_ref is not None and step.job_ref not in jobs:
            problems.append(
                (
                    f"spec.steps[{index}].jobRef",
                    f"no TrainingJob named '{step.job_ref}' in namespace "
                    f"'{pipeline.namespace}' in the files loaded",
                )
            )
    if problems:
        return problems
    if any(s.job_ref is not None for s in pipeline.spec.steps):
        for line in graph_problems(pipeline.spec, jobs):
            problems.append(("spec", line))
    return problems
