"""``mlkube validate`` and ``mlkube schema``: check specs, print the JSON Schema."""

from __future__ import annotations

import json

import click

from mlkube.cli.output import print_error, print_info
from mlkube.errors import SpecError
from mlkube.spec import ModelDeployment, load_documents
from mlkube.spec.schema import spec_json_schema


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def validate(paths: tuple[str, ...]) -> None:
    """Check spec files (or folders of them) and report every problem at once.

    Exit 0 when all are valid, 1 when any is not.

    \b
    Example:
      mlkube validate examples/iris/iris.yaml
    """
    failed = False
    for path in paths:
        try:
            documents = load_documents(path)
        except SpecError as error:
            print_error(str(error))
            failed = True
            continue
        for document in documents:
            detail = ""
            if isinstance(document, ModelDeployment):
                detail = f" (model {document.spec.model.format}: {document.spec.model.uri})"
            print_info(f"{path}: {document.kind} '{document.metadata.name}' is valid{detail}")
    if failed:
        raise SystemExit(1)


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
