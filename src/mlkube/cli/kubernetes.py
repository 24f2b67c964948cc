"""``mlkube render`` and ``mlkube doctor``: specs as Kubernetes objects, and a cluster preflight.

``apply``, ``status``, ``delete``, ``logs``, ``scale``, ``events`` and ``rollout`` are shared
with the local backend (``cli/deployments.py``) and get a ``KubernetesBackend`` for
``--target kubernetes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from mlkube.backends.kubernetes.render import render, with_namespace
from mlkube.backends.kubernetes.render.formats import Format, as_files, to_yaml
from mlkube.backends.kubernetes.render.jobs import auto_kind_notes
from mlkube.backends.kubernetes.render.pipelines import engine_notes
from mlkube.cli.output import print_info, print_warning
from mlkube.desired.capabilities import BackendKind, notes
from mlkube.errors import MlkubeError
from mlkube.spec import ModelDeployment, load_documents

_MARKS = {"pass": "ok  ", "warn": "WARN", "fail": "FAIL"}


@click.command("render")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "-o",
    "--output-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write files here instead of printing YAML to stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "kustomize", "helm"]),
    default="yaml",
    show_default=True,
    help="One YAML stream, a kustomize base or a Helm chart.",
)
@click.option("--namespace", default=None, help="Override every spec's namespace.")
def render_command(
    paths: tuple[str, ...], output_dir: str | None, fmt: str, namespace: str | None
) -> None:
    """Render specs as Kubernetes objects (deterministic: same spec, same bytes).

    \b
    Examples:
      mlkube render examples/k8s-ml-guide/spec.yaml
      mlkube render spec.yaml -o deploy/ --format kustomize
      mlkube render spec.yaml -o chart/ --format helm
    """
    documents = with_namespace(load_documents(*paths), namespace)
    rendered = render(documents)
    for note in notes(documents, BackendKind.KUBERNETES):
        print_warning(note.text())
    for text in [*auto_kind_notes(documents), *engine_notes(documents)]:
        print_warning(text)
    if output_dir is None:
        if fmt != "yaml":
            raise click.UsageError(f"--format {fmt} writes several files; give -o DIR")
        print_info(to_yaml(rendered.objects).rstrip("\n"))
        return
    name = Path(paths[0]).stem if len(paths) == 1 else "mlkube"
    deployments = [d for d in documents if isinstance(d, ModelDeployment)]
    files = as_files(rendered.objects, cast(Format, fmt), name, deployments)
    root = Path(output_dir)
    for relative, text in sorted(files.items()):
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    print_info(f"wrote {len(files)} files ({len(rendered.objects)} objects) to {root}")


@click.command()
@click.option("--context", default=None, help="kubeconfig context (default: the current one).")
@click.option("--namespace", default=None, help="Namespace to check permissions in.")
def doctor(context: str | None, namespace: str | None) -> None:
    """Check a cluster for ML serving: API, metrics-server, GPUs, storage, CRDs, taints, RBAC.

    Exit 1 when any check fails; warnings are features you may not need.

    \b
    Example:
      mlkube doctor --context kind-ml --namespace ml
    """
    # Imported here: rendering works without the optional Kubernetes client (lightkube).
    from mlkube.backends.kubernetes.client import Cluster, Target
    from mlkube.backends.kubernetes.doctor import run_doctor

    try:
        cluster = Cluster(Target(context=context, namespace=namespace))
    except MlkubeError as error:
        print_info(f"FAIL  API server: {error}")
        raise SystemExit(1) from error
    try:
        checks = run_doctor(cluster, namespace or cluster.namespace)
    finally:
        cluster.close()
    for check in checks:
        print_info(f"{_MARKS[check.verdict]}  {check.name}: {check.detail}")
        if check.fix and check.verdict != "pass":
            print_info(f"      fix: {check.fix}")
    if any(check.verdict == "fail" for check in checks):
        raise SystemExit(1)


COMMANDS = [render_command, doctor]
