"""``mlkube validate`` and ``mlkube schema``: check specs, print the JSON Schema."""

from __future__ import annotations

import json

import click

from mlkube.cli.capabilities import capability_notes_text
from mlkube.cli.output import print_error, print_info
from mlkube.desired.capabilities import BackendKind, Document, notes
from mlkube.errors import SpecError
from mlkube.spec import ModelDeployment, load_documents
from mlkube.spec.loading import spec_files
from mlkube.spec.schema import spec_json_schema


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--target",
    type=click.Choice([str(kind) for kind in BackendKind]),
    default=None,
    help="Also say what this backend cannot honour exactly (approximated, ignored, "
    "unsupported), and check what it needs (local: the model file; kubernetes: the render).",
)
def validate(paths: tuple[str, ...], target: str | None) -> None:
    """Check spec files (or folders of them) and report every problem at once.

    Exit 0 when all are valid, 1 when any is not (or is unsupported on --target).

    \b
    Examples:
      mlkube validate examples/iris/iris.yaml
      mlkube validate --target kubernetes examples/k8s-ml-guide/spec.yaml
    """
    kind = BackendKind(target) if target is not None else None
    failed = False
    try:
        files = spec_files(paths)
    except SpecError as error:
        print_error(str(error))
        raise SystemExit(1) from error
    for path in files:
        try:
            documents = load_documents(path)
        except SpecError as error:
            print_error(str(error))
            failed = True
            continue
        for document in documents:
            detail = ""
            if isinstance(document, ModelDeployment) and document.spec.models is not None:
                detail = f" ({len(document.spec.models)} models)"
            elif isinstance(document, ModelDeployment):
                detail = f" (model {document.spec.model.format}: {document.spec.model.uri})"
            print_info(f"{path}: {document.kind} '{document.metadata.name}' is valid{detail}")
            if kind is not None:
                failed = _check_target(document, kind) or failed
    if not failed:
        try:  # the same document in two files: one would silently replace the other
            load_documents(*files)
        except SpecError as error:
            print_error(str(error))
            failed = True
    if failed:
        raise SystemExit(1)


def _check_target(document: Document, kind: BackendKind) -> bool:
    """Print ``document``'s capability notes for ``kind``; True when it cannot run there."""
    found = notes([document], kind)
    for line in capability_notes_text(found):
        print_info(line)
    # An unsupported row already says why; the deeper checks speak when the table is silent.
    problems = [n.text() for n in found if n.is_error] or target_problems(document, kind)
    for problem in problems:
        print_error(problem)
    return bool(problems)


def target_problems(document: Document, kind: BackendKind) -> list[str]:
    """What stops ``document`` on ``kind`` beyond the table: a missing model file locally,
    an object the renderer refuses on a cluster."""
    if kind is BackendKind.KUBERNETES:
        from mlkube.backends.kubernetes.errors import RenderError
        from mlkube.backends.kubernetes.render import render

        try:
            render([document])
        except RenderError as error:
            return [str(error)]
        return []
    from mlkube.backends.local.backend import local_problems  # the controller client: lazily

    return local_problems([document])


@click.command()
@click.option(
    "--kind",
    type=click.Choice(["ModelDeployment", "Quota", "PriorityClass", "all"]),
    default="all",
    show_default=True,
    help="Which document kind to describe.",
)
def schema(kind: str) -> None:
    """Print the JSON Schema of spec files, for editors (YAML language server).

    \b
    Example:
      mlkube schema > mlkube.schema.json
      # then in your spec: # yaml-language-server: $schema=./mlkube.schema.json
    """
    print_info(json.dumps(spec_json_schema(kind), indent=2))


COMMANDS = [validate, schema]
